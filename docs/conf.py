"""Sphinx configuration of the nwb-celltype docs (Markdown pages through myst-parser).

The format reference of the ndx-celltype extension is generated from spec/*.yaml at build time
(``_generated/format.md``), so the docs cannot drift from the committed spec.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _format_reference import write_format_reference  # noqa: E402

project = "nwb-celltype"
author = "nwb-celltype developers"
copyright = "nwb-celltype developers"
release = "0.1.0"

extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
html_theme = "alabaster"
# Pages link to files outside docs/ (../shared/DESIGN.md, source files): those links are for readers
# of the repository, not targets Sphinx can resolve.
suppress_warnings = ["myst.xref_missing"]

write_format_reference(HERE.parent / "spec", HERE / "_generated" / "format.md")
