"""Content hashes of library files, with a small stat-keyed memo so that an unchanged file is not
read again just to learn its hash (the feature cache is keyed by it)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

_CHUNK = 1 << 22


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 hex digest of a file's bytes (read in 4 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _stat_key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def cached_sha256(path: str | os.PathLike, memo_dir: Path | None) -> str:
    """sha256 of ``path``, memoised in ``memo_dir/hashes.json`` by (absolute path, size, mtime).

    A file rewritten in place gets a new mtime and is hashed again; the memo never serves a hash
    for content it has not seen.
    """
    path = Path(path)
    if memo_dir is None:
        return sha256_file(path)
    memo_file = memo_dir / "hashes.json"
    key = _stat_key(path)
    memo: dict[str, str] = {}
    if memo_file.exists():
        try:
            memo = json.loads(memo_file.read_text())
        except (OSError, ValueError):
            logger.warning("ignoring unreadable hash memo %s", memo_file)
    if key in memo:
        return memo[key]
    digest = sha256_file(path)
    memo[key] = digest
    memo_dir.mkdir(parents=True, exist_ok=True)
    tmp = memo_file.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(memo, indent=0, sort_keys=True))
    os.replace(tmp, memo_file)
    return digest
