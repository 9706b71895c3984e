"""Reading layer: open NWB sources (local path, http(s) URL, DANDI archive) and stream their units
as plain numpy batches. The only layer that touches h5py, remfile and the dandi client."""

from ._dandi import AssetInfo, list_dandiset_assets
from ._parse import SourceSpec, parse_source
from ._source import Source, SourceInfo, open_source
from ._units import map_location_to_layer, read_units

__all__ = [
    "AssetInfo",
    "Source",
    "SourceInfo",
    "SourceSpec",
    "list_dandiset_assets",
    "map_location_to_layer",
    "open_source",
    "parse_source",
    "read_units",
]
