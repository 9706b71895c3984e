"""Whole-dandiset annotation: every NWB asset of a dandiset into a derived dandiset folder, on a
local process pool or a Dask cluster, resumably."""

from __future__ import annotations

from .run import DandisetRunResult, annotate_dandiset, parse_dandiset_spec, summary_rows
from .state import derived_asset_path

__all__ = [
    "DandisetRunResult",
    "annotate_dandiset",
    "derived_asset_path",
    "parse_dandiset_spec",
    "summary_rows",
]
