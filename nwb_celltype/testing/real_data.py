"""Where the real C4 feature tables are (``real-c4/``: hull, lisberger, hausser; see
docs/validation.md for their source). They are not shipped with the package: tests, benchmarks and
the default model's build script find them with :func:`real_c4_dir`."""

from __future__ import annotations

import os
from pathlib import Path

#: environment variable naming the real-c4 folder
REAL_C4_ENV = "NWB_CELLTYPE_REAL_C4"


def real_c4_dir() -> Path | None:
    """``$NWB_CELLTYPE_REAL_C4``, else ``shared/real-c4`` beside the repository or under ``/work``;
    None when none exists."""
    env = os.environ.get(REAL_C4_ENV)
    here = Path(__file__).resolve().parents[2]
    for cand in ([Path(env)] if env else []) + [
        here.parent / "shared" / "real-c4",
        Path("/work/shared/real-c4"),
    ]:
        if (cand / "hull" / "dataset.json").is_file():
            return cand
    return None
