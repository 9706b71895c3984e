"""Which Units table of an NWB file to read: ``/units`` (``NWBFile.units``) or a Units table in a
processing module (a second sorting), found or named."""

from __future__ import annotations

from ..errors import NotNWBError, NoUnitsTableError

__all__ = ["resolve_units_table", "units_table_paths"]


def _is_units(obj) -> bool:
    nt = obj.attrs.get("neurodata_type") if hasattr(obj, "attrs") else None
    return (nt.decode() if isinstance(nt, bytes) else nt) == "Units"


def _is_units_table(h5, path: str) -> bool:
    """Whether ``path`` is a Units table this reader and the writers can use: ``units`` (a group),
    or a group of type Units at ``processing/<module>/<name>``."""
    obj = h5.get(path)
    if obj is None or not hasattr(obj, "keys"):
        return False
    parts = path.split("/")
    return parts == ["units"] or (len(parts) == 3 and parts[0] == "processing" and _is_units(obj))


def units_table_paths(h5) -> list[str]:
    """HDF5 paths of the file's Units tables: ``units`` (``NWBFile.units``) first if present, then
    every Units table in a processing module (``processing/<module>/<name>``, e.g. a second sorting)."""
    found = ["units"] if _is_units_table(h5, "units") else []
    proc = h5.get("processing")
    if proc is not None:
        for mod_name, mod in proc.items():
            for name in getattr(mod, "keys", list)():
                if _is_units_table(h5, f"processing/{mod_name}/{name}"):
                    found.append(f"processing/{mod_name}/{name}")
    return found


def resolve_units_table(h5, requested: str | None = None) -> str:
    """The HDF5 path of the Units table to read: ``requested`` (a path in the file such as
    ``processing/ecephys/kilosort``; a leading "/" is allowed) where given, else ``units``, else the
    file's only Units table in a processing module. Raises :class:`~nwb_celltype.errors.NotNWBError`
    naming the file's Units tables when ``requested`` is not one, or when several could be meant.
    The processing modules are listed only where the answer needs them (remote reads)."""
    want = "units" if requested is None else str(requested).strip().strip("/")
    if _is_units_table(h5, want):
        return want
    paths = units_table_paths(h5)
    listed = ", ".join(f"/{p}" for p in paths) or "none"
    if requested is not None:
        raise NotNWBError(
            f"the file has no Units table at /{want}; its Units tables: {listed}. Pass one of them "
            "(units_table=..., --units-table)."
        )
    if len(paths) == 1:
        return paths[0]
    if paths:
        raise NotNWBError(
            f"the file has no /units table but several Units tables ({listed}); choose one with "
            "units_table=... (--units-table)."
        )
    raise NoUnitsTableError(
        "the file has no Units table (/units); expected spike-sorted units. Add them with "
        "NWBFile.add_unit (pynwb) or export your sorting with a tool that writes NWB Units."
    )
