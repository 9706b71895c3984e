"""Which code ran: a digest of the package's own Python sources.

The version number (``nwb_celltype.__version__``) stays the same across changes that alter results,
and an installed package carries no commit; the digest tells two installs apart whenever any of
their ``.py`` files differ. Provenance records it beside the versions (annotated files'
``software_versions["nwb-celltype-code"]``, model cards' ``software["nwb_celltype_code"]``).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

#: Hex digits of the digest that are recorded (64 bits: ample to tell code versions apart).
DIGEST_HEX = 16


def code_digest(root: str | Path | None = None) -> str:
    """sha256 (first :data:`DIGEST_HEX` hex digits) over every ``.py`` file under ``root`` (default:
    the installed package), each as its path relative to ``root`` and its bytes, in sorted order."""
    if root is None:
        return _package_digest()
    return _digest(Path(root))


@functools.lru_cache(maxsize=1)
def _package_digest() -> str:
    return _digest(Path(__file__).resolve().parent)


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts):
        rel = path.relative_to(root).as_posix().encode()
        data = path.read_bytes()
        h.update(len(rel).to_bytes(4, "little") + rel + len(data).to_bytes(8, "little") + data)
    return h.hexdigest()[:DIGEST_HEX]
