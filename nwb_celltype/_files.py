"""File modes of what we write: ``tempfile.mkstemp`` (and safetensors) create files readable by
their owner only (0600); a file we hand to the user must instead get the mode any new file gets
(0666 minus the umask), and a file rewritten in place must keep its own mode."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def current_umask() -> int:
    """The process's umask, read without changing it where Linux allows (``/proc/self/status``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)  # pragma: no cover - non-Linux: set and restore
    os.umask(old)
    return old


def new_file_mode() -> int:
    """Permission bits a newly created regular file gets: 0666 minus the umask."""
    return 0o666 & ~current_umask()


def give_mode(path: str | os.PathLike, like: str | os.PathLike | None = None) -> None:
    """Set ``path``'s permission bits to those of the existing file ``like`` (a file rewritten in
    place keeps its mode), or to :func:`new_file_mode` when ``like`` is None or absent."""
    mode = new_file_mode()
    if like is not None:
        try:
            mode = stat.S_IMODE(os.stat(like).st_mode)
        except FileNotFoundError:
            pass
    os.chmod(path, mode)
