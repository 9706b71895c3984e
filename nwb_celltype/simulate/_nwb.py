"""Write a simulated recording (:class:`SimulationResult`) as an NWB file: probe, electrodes,
units with waveforms and defects, and the ground-truth labels with their evidence."""

from __future__ import annotations

import datetime
import logging
import uuid
from pathlib import Path

import numpy as np

from .._atomic_files import write_nwbfile
from ..errors import OutputError
from ..vocabulary import C4_CLASSES
from ._ids import assign_object_ids
from ._params import Preset, get_preset
from ._result import _EVIDENCE, _START, _UUID_NS, SimulationResult
from ._waveforms import (
    LAYER_SUFFIX_TO_C4,
    neuropixels_geometry,
)

logger = logging.getLogger(__name__)


def site_layers(segs: list[tuple]) -> tuple[np.ndarray, np.ndarray]:
    """Layer suffix (``mo``/``pu``/``gr``) and CCF-style location of each of the 384 sites."""
    y = neuropixels_geometry()[:, 1]
    starts = np.array([s[0] for s in segs])
    j = np.clip(np.searchsorted(starts, y, side="right") - 1, 0, len(segs) - 1)
    suffix = np.array([segs[k][2] for k in j])
    loc = np.array([f"{segs[k][3]}{segs[k][2]}" for k in j])
    return suffix, loc


def _h5(data: np.ndarray, compression: str | None):
    from hdmf.backends.hdf5 import H5DataIO

    if compression is None or data.size == 0:
        return data
    return H5DataIO(data, compression=compression, compression_opts=4, shuffle=True, chunks=True)


def write_nwb(
    path: str | Path,
    result: SimulationResult,
    segs: list[tuple],
    *,
    compression: str | None = "gzip",
    overwrite: bool = True,
) -> bool:
    """Write a simulated recording as an NWB file; return whether ground-truth annotations were
    written through ``nwb_celltype.nwb.add_annotations`` (False when that layer is unavailable).
    The file is written through :func:`nwb_celltype._atomic.atomic_write` (OutputError on failure,
    nothing left behind)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputError(f"{path} exists; pass overwrite=True or choose another path.")
    if not path.parent.exists():
        raise OutputError(f"cannot write {path}: folder {path.parent} does not exist; create it first.")
    pre = get_preset(result.preset)
    start = _START + datetime.timedelta(minutes=result.seed % 100000)
    nwbfile = _session(result, pre, path.name, start)
    nwbfile.electrodes = _electrodes_table(_probe_group(nwbfile), segs)
    nwbfile.units = _units_table(result, nwbfile.electrodes, compression)
    written = _add_ground_truth(nwbfile, result, start)
    # hdmf draws a random UUID4 object_id for every container: replace them by ids derived from
    # the identifier (preset, seed, units, duration, file name) and the data, so that the bytes
    # repeat, and files that differ in anything else (class counts, defects, rate) share no ids
    assign_object_ids(nwbfile, key=f"{nwbfile.identifier}/{_content_digest(result, compression)}")
    # a pid-stamped temporary file renamed onto ``path`` when complete: an interrupted or failed
    # write leaves no half-written file there, and an older file is replaced only by a whole one
    write_nwbfile(nwbfile, path, replace=overwrite)
    return written


def _content_digest(result: SimulationResult, compression) -> str:
    """sha256 of what a simulated file holds beyond its identifier: classes, labels, spike trains,
    waveforms and their rate, and the compression asked for."""
    import hashlib

    h = hashlib.sha256(f"{result.waveform_rate_hz!r}/{compression!r}".encode())
    for a in (result.classes, result.labelled, result.spike_counts, result.waveforms, result.spike_times_s):
        a = np.ascontiguousarray(np.asarray(a if a is not None else ()))
        h.update(f"{a.dtype.str}{a.shape}".encode() + (a.astype(str) if a.dtype == object else a).tobytes())
    return h.hexdigest()


def _session(result: SimulationResult, pre: Preset, file_name: str, start: datetime.datetime):
    """An empty NWBFile with the simulated session's metadata and subject (ids from the seed)."""
    from pynwb import NWBFile
    from pynwb.file import Subject

    n = len(result)
    ident = uuid.uuid5(_UUID_NS, f"{result.preset}/{result.seed}/{n}/{result.duration_s}/{file_name}")
    return NWBFile(
        session_description=(
            f"SIMULATED cerebellar Neuropixels recording ({pre.species}, preset {pre.name!r}, seed "
            f"{result.seed}, {n} units) made by nwb_celltype.simulate; not real data."
        ),
        identifier=str(ident),
        session_start_time=start,
        file_create_date=[start],
        session_id=f"sim-{pre.name}-{result.seed}",
        experimenter=["Simulator, NWB Celltype"],
        lab="nwb-celltype simulator",
        institution="nwb-celltype",
        experiment_description=(
            "Spike trains and mean waveforms of simulated cerebellar cortex units (Purkinje simple and "
            "complex spikes, molecular layer interneurons, Golgi cells, mossy fibre boutons and "
            "unidentified units); parameters and their sources: docs/simulation.md of nwb-celltype."
        ),
        keywords=["cerebellum", "cell type", "simulation", "Neuropixels", "ground truth"],
        subject=Subject(
            subject_id=f"sim-{pre.name}-{result.seed}",
            species=pre.species,
            sex="U",
            age="P90D" if pre.name == "mouse" else "P6Y",
            description="simulated animal (no animal was used)",
        ),
    )


def _probe_group(nwbfile):
    """Add the simulated Neuropixels probe (model, device) and return its electrode group."""
    # the maker belongs to a DeviceModel (Device(manufacturer=...) is deprecated in NWB 2.9)
    model = nwbfile.create_device_model(
        name="Neuropixels 1.0", manufacturer="IMEC", description="Neuropixels 1.0 probe"
    )
    device = nwbfile.create_device(
        name="NeuropixelsProbe",
        description="Neuropixels 1.0 geometry (384 sites, 20 um pitch, 4-column checkerboard), simulated",
        model=model,
    )
    return nwbfile.create_electrode_group(
        name="probe0",
        description="simulated Neuropixels 1.0 shank",
        location="cerebellar cortex",
        device=device,
    )


def _electrodes_table(group, segs: list[tuple]):
    """The 384 sites with their position on the probe, depth, region and layer."""
    from hdmf.common import ElementIdentifiers, VectorData
    from pynwb.ecephys import ElectrodesTable

    geom = neuropixels_geometry()
    suffix, loc = site_layers(segs)
    top = float(geom[:, 1].max()) + 300.0
    n_sites = len(geom)
    # built column-wise: add_electrode row by row costs ~0.5 s per file in hdmf's argument checks
    ecols = [
        VectorData(
            name="location", description="CCF-style acronym of the site's region and layer", data=loc.tolist()
        ),
        VectorData(name="group", description="electrode group of the site", data=[group] * n_sites),
        VectorData(name="group_name", description="name of the electrode group", data=[group.name] * n_sites),
        VectorData(name="rel_x", description="x of the site on the probe, um", data=geom[:, 0].copy()),
        VectorData(
            name="rel_y", description="y of the site on the probe (from the tip), um", data=geom[:, 1].copy()
        ),
        VectorData(
            name="depth", description="depth of the site below the brain surface, um", data=top - geom[:, 1]
        ),
        VectorData(
            name="layer",
            description="cerebellar cortex layer of the site (C4 vocabulary)",
            data=[LAYER_SUFFIX_TO_C4[x] for x in suffix],
        ),
    ]
    return ElectrodesTable(id=ElementIdentifiers(name="id", data=np.arange(n_sites)), columns=ecols)


def _indexed(column, ends: np.ndarray) -> list:
    """A ragged column and its index (row ``i`` ends before element ``ends[i]``)."""
    from hdmf.common import VectorIndex

    return [column, VectorIndex(name=f"{column.name}_index", data=ends, target=column)]


def _units_table(result: SimulationResult, electrodes, compression: str | None):
    """The Units table: spike times, observation intervals, sites and mean waveform of each unit,
    then its ground truth (class, subtype, cell, pair, peak channel, layer, defects)."""
    from hdmf.common import DynamicTableRegion, ElementIdentifiers, VectorData
    from pynwb.misc import Units

    n = len(result)
    st = VectorData(
        name="spike_times",
        description="spike times of each unit, s",
        data=_h5(result.spike_times_s, compression),
    )
    obs = VectorData(
        name="obs_intervals",
        description="observation intervals of each unit, s (the whole session)",
        data=np.tile([[0.0, result.duration_s]], (n, 1)),
    )
    el = DynamicTableRegion(
        name="electrodes",
        description="the sites of each unit's waveform_mean channels, in order",
        data=result.electrodes.ravel(),
        table=electrodes,
    )
    cols = [
        *_indexed(st, result.spike_offsets[1:]),
        *_indexed(obs, np.arange(1, n + 1)),
        *_indexed(el, np.arange(1, n + 1) * result.electrodes.shape[1]),
        VectorData(
            name="waveform_mean",
            description="mean waveform per unit, (units, samples, channels), volts",
            data=_h5(result.waveforms, compression),
        ),
    ]
    for name, (desc, data) in _truth_columns(result).items():
        cols.append(VectorData(name=name, description=desc, data=np.asarray(data)))
    return Units(
        name="units",
        description="simulated spike-sorted units (nwb_celltype.simulate)",
        id=ElementIdentifiers(name="id", data=np.arange(n)),
        columns=cols,
        waveform_rate=result.waveform_rate_hz,
        waveform_unit="volts",
        resolution=1.0 / result.waveform_rate_hz,
        electrode_table=electrodes,
    )


def _truth_columns(result: SimulationResult) -> dict[str, tuple[str, np.ndarray]]:
    """The Units table's ground-truth columns: name -> (description, values)."""
    return {
        "simulated_class": ("true class of the simulated unit (C4 class or 'other')", result.classes),
        "simulated_subtype": (
            "kind within the class (e.g. MFB positive/negative, other granule)",
            result.subtypes,
        ),
        "simulated_cell": (
            "simulated cell; PkC_ss and PkC_cs units of one Purkinje cell share it",
            result.cell_ids,
        ),
        "paired_unit": ("row of the other unit of the same Purkinje cell, -1 if none", result.partner),
        "peak_channel": ("index of the peak channel within the unit's electrodes", result.peak_channels),
        "layer": ("layer of the peak site (C4 vocabulary: ML, PCL, GCL)", result.layers),
        "simulated_defects": (
            "recording defects simulated in this unit, ';'-separated ('none' if none)",
            _defect_strings(result.defects, len(result)),
        ),
    }


def _defect_strings(defects: dict, n: int) -> np.ndarray:
    out = []
    for i in range(n):
        names = [k for k, v in defects.items() if v[i]]
        out.append(";".join(names) if names else "none")
    return np.array(out)


def _add_ground_truth(nwbfile, result: SimulationResult, when: datetime.datetime) -> bool:
    rows = np.flatnonzero(result.labelled)
    if len(rows) == 0:
        return False
    try:
        from ..nwb import add_annotations
    except ImportError:
        logger.warning(
            "nwb_celltype.nwb.add_annotations is unavailable: ground-truth labels of %d units are "
            "only in the simulated_class column",
            len(rows),
        )
        return False
    from .. import __version__

    labels = result.classes[rows]
    add_annotations(
        nwbfile,
        name="ground_truth",
        units_region=rows,
        labels=labels,
        classes=C4_CLASSES,
        kind="ground_truth",
        evidence={
            "evidence_type": [_EVIDENCE[c][0] for c in labels],
            "evidence_text": [f"SIMULATED unit; stands in for {_EVIDENCE[c][1]}" for c in labels],
            "labelled_by": [f"nwb_celltype.simulate {__version__}"] * len(rows),
            "labelled_at": [when.isoformat()] * len(rows),
        },
    )
    return True


# --------------------------------------------------------------------------------------------
# public API
