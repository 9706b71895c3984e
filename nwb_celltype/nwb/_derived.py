"""The derived NWB file written for a remote (immutable) source: the Units rows the annotations
refer to, the source's electrodes and session metadata (the whole Subject, the timestamps reference
time), its identity, and the source Units table's resolution and simple per-unit columns
(``unit_name``, ``cluster_id``, quality metrics...: see ``_derived_source.py``).

Column names avoid the ``_index`` ending (SpikeInterface's NWB reader drops every column ending
in ``_index``); the source's probe (devices, electrode groups, electrodes table) is copied so that
the file is recognisably extracellular electrophysiology (``dandi organize`` names it ``_ecephys``)
and each unit keeps its electrodes. The waveform kept is the peak channel's alone, so a
``peak_electrode`` column says which of the unit's electrodes that is: reading the file again gives
each unit the location of the electrode the source's reading gave it.
"""

from __future__ import annotations

import logging
import uuid

import numpy as np

from ._derived_source import copy_subject, source_resolution, source_unit_columns

logger = logging.getLogger(__name__)

#: Keywords every derived file carries (the source's own keywords come first).
DERIVED_KEYWORDS = ("cell types", "cerebellum", "nwb-celltype", "derived")


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def _copy_probe(srcfile, nwbfile) -> dict:
    """Copy devices (with their models), electrode groups and the electrodes table's 1-D columns.
    Returns source electrode group name -> new group. A source without electrode groups gets one
    placeholder group, so the file still declares its modality."""
    models = {}
    for name, m in (getattr(srcfile, "device_models", None) or {}).items():
        models[name] = nwbfile.create_device_model(
            name=name, manufacturer=_text(m.manufacturer), description=_text(m.description) or None
        )
    devices = {}
    for name, d in srcfile.devices.items():
        model = getattr(d, "model", None)
        if model is None and getattr(d, "manufacturer", None):
            # older files keep the maker on the Device itself: carry it on a DeviceModel
            model = nwbfile.create_device_model(
                name=f"{name} model",
                manufacturer=_text(d.manufacturer),
                description=f"maker of {name} (Device.manufacturer in the source)",
            )
        elif model is not None:
            model = models.get(model.name)
        devices[name] = nwbfile.create_device(
            name=name, description=_text(d.description) or name, model=model
        )
    groups = {}
    for name, g in srcfile.electrode_groups.items():
        if g.device.name not in devices:
            devices[g.device.name] = nwbfile.create_device(
                name=g.device.name, description=_text(g.device.description) or g.device.name
            )
        groups[name] = nwbfile.create_electrode_group(
            name=name,
            description=_text(g.description) or name,
            location=_text(g.location) or "unknown",
            device=devices[g.device.name],
        )
    if not groups:
        dev = nwbfile.create_device(
            name="source_probe", description="probe of the source (not described there)"
        )
        groups["source_probe"] = nwbfile.create_electrode_group(
            name="source_probe",
            description="placeholder: the source file describes no electrode group",
            location="unknown",
            device=dev,
        )
    return groups


def _copy_electrodes(srcfile, nwbfile, groups: dict) -> bool:
    """Copy the source's electrodes table (its 1-D columns, 'group' mapped to the copied groups).
    Returns whether a table was copied."""
    from hdmf.common import ElementIdentifiers, VectorData, VectorIndex
    from pynwb.file import ElectrodesTable

    table = srcfile.electrodes
    if table is None or len(table) == 0:
        return False
    cols = []
    for name in table.colnames:
        col = table[name]
        if isinstance(col, VectorIndex) or f"{name}_index" in table.colnames:
            continue  # ragged columns stay in the source
        data = col.data[:] if not isinstance(col.data, list) else col.data
        if name == "group":
            data = [groups[g.name] for g in data]
        elif np.ndim(data) != 1:
            continue
        elif isinstance(data, np.ndarray) and data.dtype == object:
            data = [_text(x) for x in data]
        cols.append(VectorData(name=name, description=_text(col.description) or name, data=data))
    names = {c.name for c in cols}
    if not {"location", "group"} <= names:
        return False
    if "group_name" not in names:
        group_col = next(c for c in cols if c.name == "group")
        cols.append(
            VectorData(
                name="group_name",
                description="name of the electrode group",
                data=[g.name for g in group_col.data],
            )
        )
    nwbfile.electrodes = ElectrodesTable(
        id=ElementIdentifiers(name="id", data=np.asarray(table.id[:])), columns=cols
    )
    return True


def _units_electrodes(h5, rows: np.ndarray, nwbfile, units_path: str = "units"):
    """The source Units' ``electrodes`` region for ``rows`` (data, index), or None (none there, or
    values that are not rows of the copied electrodes table)."""
    units = h5.get(units_path) if h5 is not None else None
    if units is None or "electrodes" not in units or "electrodes_index" not in units:
        return None
    ends = np.asarray(units["electrodes_index"][()], dtype=np.int64)
    data = np.asarray(units["electrodes"][()], dtype=np.int64)
    starts = np.concatenate([[0], ends[:-1]])
    parts = [data[starts[r] : ends[r]] for r in rows]
    if nwbfile.electrodes is None or (
        len(data) and (data.max() >= len(nwbfile.electrodes) or data.min() < 0)
    ):
        return None
    return np.concatenate(parts) if parts else np.zeros(0, np.int64), np.cumsum([len(p) for p in parts])


def _peak_electrodes(src, rows: np.ndarray, units_path: str, waveforms, given) -> np.ndarray:
    """Electrodes-table row of each unit's peak channel (-1 unknown): ``given`` (the reader's
    ``batch.extra["peak_electrodes"]``, as ``annotate`` passes them) where passed, else as the reader
    determines it from the source (its waveforms read again, in batches: only for callers without the
    reader's output); all unknown without waveforms (none read, or set aside)."""
    if given is not None:
        given = np.asarray(given, dtype=np.int64)
        if given.shape != rows.shape:
            raise ValueError(f"peak_electrodes has shape {given.shape} for {len(rows)} units")
        return given
    if waveforms is None:
        return np.full(len(rows), -1, dtype=np.int64)
    from ..io._units import unit_peak_electrodes

    return unit_peak_electrodes(src, units_path, rows)


def _session_file(src):
    """A new NWBFile with the source's session metadata (timestamps reference time and whole
    Subject included) and identity in its notes; also the source's name for descriptions."""
    from pynwb import NWBFile

    srcfile = src.nwbfile
    info = src.info.to_dict()
    where = info.get("asset_path") or info.get("url") or info.get("path")
    keywords = [_text(k) for k in (srcfile.keywords[:] if srcfile.keywords is not None else [])]
    keywords += [k for k in DERIVED_KEYWORDS if k not in keywords]
    experiment = _text(srcfile.experiment_description) or f"spike-sorted units of {where}"
    nwbfile = NWBFile(
        session_description=f"cell-type annotations of {where}: " + _text(srcfile.session_description),
        identifier=str(uuid.uuid4()),
        session_start_time=srcfile.session_start_time,
        timestamps_reference_time=srcfile.timestamps_reference_time,  # spike times keep their meaning
        session_id=srcfile.session_id,
        institution=srcfile.institution,
        lab=srcfile.lab,
        experimenter=srcfile.experimenter,
        experiment_description=f"{experiment} -- annotated with cell types by nwb-celltype",
        keywords=keywords,
        source_script="nwb-celltype annotate",
        source_script_file_name="nwb_celltype/annotate.py",
        notes=f"Derived from {info}",
    )
    if srcfile.subject is not None:
        nwbfile.subject = copy_subject(srcfile.subject)  # every field the source sets
    return nwbfile, where


def derived_nwbfile(
    src,
    *,
    unit_ids,
    unit_rows,
    spike_counts,
    spike_data,
    layers,
    waveforms,
    waveform_rate_hz,
    units_path: str = "units",
    peak_electrodes=None,
):
    """An in-memory NWBFile holding the source's units (ids, spike times, peak-channel waveforms,
    layer, source row and id, electrodes and peak electrode, the source's simple per-unit columns
    and resolution), its probe and session metadata.

    Parameters
    ----------
    src : nwb_celltype.io.Source
        The opened source (``.nwbfile``, ``.h5``, ``.info``).
    unit_ids, unit_rows, spike_counts : (n,) int
        Ids of the units, their rows in the source's Units table, their spike counts.
    spike_data : (sum(spike_counts),) float64 array-like
        Concatenated spike times, s (e.g. a memory-mapped file wrapped in ``H5DataIO``).
    layers : (n,) str
    waveforms : (n, samples) float or None
    waveform_rate_hz : float or None
    units_path : str
        HDF5 path of the source's Units table the units come from (``units``, or a Units table in a
        processing module); the derived file holds them as its ``units``.
    peak_electrodes : (n,) int or None
        Electrodes-table row of each unit's peak channel, -1 unknown (``read_units``'
        ``batch.extra["peak_electrodes"]``, which ``annotate`` passes); default: determined from the
        source again, which reads its waveforms a second time (in batches). Written as
        the ``peak_electrode`` column next to the unit's ``electrodes``, which the reader uses for
        the one-channel waveform kept here.
    """
    from hdmf.common import DynamicTableRegion, ElementIdentifiers, VectorData, VectorIndex
    from pynwb.misc import Units

    srcfile = src.nwbfile
    nwbfile, where = _session_file(src)
    groups = _copy_probe(srcfile, nwbfile)
    _copy_electrodes(srcfile, nwbfile, groups)

    st = VectorData(
        name="spike_times", description="spike times of each unit, s (from the source)", data=spike_data
    )
    cols = [
        st,
        VectorIndex(name="spike_times_index", data=np.cumsum(spike_counts), target=st),
        VectorData(
            name="source_unit_row",
            description=f"row of the unit in the source's Units table /{units_path} (0-based)",
            data=np.asarray(unit_rows, dtype=np.int64),
        ),
        VectorData(
            name="source_unit_id",
            description=f"id of the unit in the source's Units table /{units_path} (its id column; the same as id here)",
            data=np.asarray(unit_ids, dtype=np.int64),
        ),
        VectorData(
            name="layer",
            description="layer of the unit (C4 vocabulary: unknown, GCL, PCL, ML)",
            data=[str(x) for x in layers],
        ),
    ]
    rows = np.asarray(unit_rows, dtype=np.int64)
    with src.guard("reading the source's Units columns"):
        cols += source_unit_columns(src.h5, units_path, rows)  # unit_name, cluster_id, metrics...
        resolution = source_resolution(src.h5, units_path)
    region = _units_electrodes(src.h5, rows, nwbfile, units_path)
    if region is not None:
        el = DynamicTableRegion(
            name="electrodes",
            description="electrodes of each unit (from the source)",
            data=region[0],
            table=nwbfile.electrodes,
        )
        cols += [el, VectorIndex(name="electrodes_index", data=region[1], target=el)]
        cols.append(
            VectorData(
                name="peak_electrode",
                description=(
                    "row (0-based) of the electrodes table of the electrode whose waveform is "
                    "waveform_mean (the unit's peak channel in the source); -1: unknown (the "
                    "source's waveform had one channel, or none)"
                ),
                data=_peak_electrodes(src, rows, units_path, waveforms, peak_electrodes),
            )
        )
    kwargs = {} if resolution is None else {"resolution": resolution}
    if waveforms is not None:
        cols.append(
            VectorData(
                name="waveform_mean",
                description="peak-channel mean waveform of each unit (from the source)",
                data=np.nan_to_num(waveforms),
            )
        )
        if waveform_rate_hz:
            kwargs["waveform_rate"] = float(waveform_rate_hz)
            kwargs.setdefault("resolution", 1.0 / waveform_rate_hz)  # the source states none
    nwbfile.units = Units(
        name="units",
        description=f"units of the source ({where}, /{units_path}) that the cell-type annotations refer to",
        id=ElementIdentifiers(name="id", data=np.asarray(unit_ids)),
        columns=cols,
        electrode_table=nwbfile.electrodes,
        **kwargs,
    )
    return nwbfile
