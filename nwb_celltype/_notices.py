"""Notices given once per process, and where they are said otherwise.

``demo_warning``: whether the Python API's logging warning about the demo model is due. A CLI
command says it in its own summary line (``[DEMO model ...]``) and pool workers leave it to their
driver, so both turn it off (:func:`demo_warning_said_elsewhere`, :func:`quiet_demo_warning`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

demo_warning = True


def quiet_demo_warning() -> None:
    """Leave the demo-model warning to the caller for the rest of this process (a pool worker)."""
    global demo_warning
    demo_warning = False


@contextlib.contextmanager
def demo_warning_said_elsewhere() -> Iterator[None]:
    """No demo-model warning while the block runs (a CLI command, whose summary says it)."""
    global demo_warning
    before, demo_warning = demo_warning, False
    try:
        yield
    finally:
        demo_warning = before
