"""Reading layer: open NWB sources (local path, http(s) URL, DANDI archive) and stream their units
as plain numpy batches. The only layer that touches h5py, remfile and the dandi client.

The HTTP stack (requests, remfile, the dandi client) is imported only when a remote source or a
DANDI listing needs it: reading a local file does not load it."""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports
from ._parse import SourceSpec, is_nwb_path, parse_dandiset_reference, parse_source
from ._regions import location_scope
from ._source import Source, SourceInfo, open_source
from ._units import map_location_to_layer, read_units, resolve_units_table, units_table_paths

__all__ = [
    "AssetInfo",
    "AssetListing",
    "Source",
    "SourceInfo",
    "SourceSpec",
    "dandiset_listing",
    "is_nwb_path",
    "list_dandiset_assets",
    "location_scope",
    "map_location_to_layer",
    "open_source",
    "parse_dandiset_reference",
    "parse_source",
    "read_units",
    "resolve_units_table",
    "units_table_paths",
]

_LAZY = {
    "AssetInfo": "._dandi",
    "AssetListing": "._dandi",
    "dandiset_listing": "._dandi",
    "list_dandiset_assets": "._dandi",
}

if (
    TYPE_CHECKING
):  # what type checkers and IDEs see behind the lazy names (tests/test_typing20.py keeps it equal to _LAZY)
    from ._dandi import (
        AssetInfo as AssetInfo,
    )
    from ._dandi import (
        AssetListing as AssetListing,
    )
    from ._dandi import (
        dandiset_listing as dandiset_listing,
    )
    from ._dandi import (
        list_dandiset_assets as list_dandiset_assets,
    )

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
