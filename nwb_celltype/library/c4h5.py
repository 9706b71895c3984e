"""Importer for the C4 collaboration's per-neuron HDF5 library format (the ground-truth dataset of
Beau et al., Cell 2025, UCL figshare DOI 10.5522/04/23702850) -> one NWB file per recording
(``dataset_id``) with Units, electrodes and ground-truth / expert annotation tables.

The format, as npyx writes and reads it: one group per neuron named ``<lab_id>_neuron_<n>`` (with a
hard link ``datasets/<dataset_id>/<unit>``) holding datasets such as ``spike_indices`` (samples),
``sampling_rate`` (Hz), ``mean_waveform_preprocessed`` (channels x samples), ``channel_ids``,
``channelmap`` (channels x 2, µm), ``ground_truth_label``, ``ground_truth_source``,
``expert_label``, ``phyllum_layer``, ``human_layer``, ``optostims`` (k x 2 on/off, s),
``sane_spikes`` / ``fn_fp_filtered_spikes`` (bool per spike), ``lab_id``, ``dataset_id``,
``neuron_relative_id``, ``line``. docs/library.md documents where each field goes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .._atomic_files import write_nwbfile
from ..errors import LibraryError, NotNWBError, OutputError, SourceNotFoundError
from ..vocabulary import EVIDENCE_TYPES, LAYERS
from ._annotations import LABEL_VOCABULARY

logger = logging.getLogger(__name__)

_NEURON_GROUP = re.compile(r"^(?P<lab>.+)_neuron_(?P<n>\d+)$")
#: C4 labels meaning "no label".
_UNLABELLED = {"", "0", "unlabelled", "unlabeled", "none", "nan"}
#: C4 ``phyllum_layer`` / ``human_layer`` values -> our layer vocabulary (case-insensitive).
_LAYER_MAP = {
    "gcl": "GCL",
    "granular": "GCL",
    "granular layer": "GCL",
    "pcl": "PCL",
    "purkinje": "PCL",
    "purkinje layer": "PCL",
    "ml": "ML",
    "molecular": "ML",
    "molecular layer": "ML",
}
#: Recording start stored in the files: the C4 format records no date.
UNKNOWN_START = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _text(v) -> str:
    if isinstance(v, np.ndarray):
        if v.size == 0:
            return ""
        v = v.ravel()[0]
    if isinstance(v, (bytes, np.bytes_)):
        return v.decode("utf-8", "replace").strip()
    if isinstance(v, (int, np.integer)) and v == 0:
        return ""  # npyx writes 0 for "no label"
    return str(v).strip()


def _slug(s: str) -> str:
    """DANDI-safe identifier piece: letters, digits and '-' only."""
    return re.sub(r"-+", "-", re.sub(r"[^A-Za-z0-9]+", "-", s)).strip("-") or "unknown"


def evidence_type_from_source(source: str) -> str:
    """Our evidence type for a C4 ``ground_truth_source`` text (the text itself is kept as
    ``evidence_text``): anything mentioning opto/ChR -> optotagging, pharmac/drug/gabazine/NBQX ->
    pharmacology, juxta -> juxtacellular, histolog/anatom/morpholog -> anatomy, expert/visual/
    complex spike -> expert, empty -> optotagging (the C4 library's ground truth is optotagged unless
    said otherwise), else other."""
    s = source.lower()
    if not s:
        return "optotagging"
    if "opto" in s or "chr" in s or "light" in s:
        return "optotagging"
    if any(k in s for k in ("pharmac", "drug", "gabazine", "nbqx", "muscimol")):
        return "pharmacology"
    if "juxta" in s:
        return "juxtacellular"
    if any(k in s for k in ("histolog", "anatom", "morpholog", "track")):
        return "anatomy"
    if any(k in s for k in ("expert", "visual", "complex spike", "pause", "cs-ss")):
        return "expert"
    return "other"


@dataclass
class C4Neuron:
    """One neuron group of a C4 file, decoded (spike times in seconds)."""

    key: str
    lab: str
    dataset: str
    relative_id: int
    spike_times_s: np.ndarray
    sampling_rate_hz: float
    waveform: np.ndarray | None  # (samples, channels)
    channel_ids: np.ndarray | None
    channel_xy: np.ndarray | None  # (channels, 2) µm
    ground_truth_label: str = ""
    ground_truth_source: str = ""
    expert_label: str = ""
    phyllum_layer: str = ""
    human_layer: str = ""
    line: str = ""
    optostims: np.ndarray | None = None
    n_spikes_raw: int = 0
    extra: dict = field(default_factory=dict)


def read_c4h5(path: str | os.PathLike, *, quality_filter: bool = True) -> list[C4Neuron]:
    """Decode every ``<lab>_neuron_<n>`` group of a C4 HDF5 file.

    Parameters
    ----------
    path : path
    quality_filter : bool
        Keep only spikes passing both ``sane_spikes`` and ``fn_fp_filtered_spikes`` where present,
        as C4's training did.

    Raises
    ------
    NotNWBError
        Not an HDF5 file, or no neuron groups.
    LibraryError
        A neuron lacks ``spike_indices`` or ``sampling_rate`` (named).
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise SourceNotFoundError(f"C4 file {path} does not exist.")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise NotNWBError(f"{path} is not an HDF5 file ({exc}); expected a C4 library .h5 file.") from exc
    neurons = []
    with f:
        keys = [k for k in f if _NEURON_GROUP.match(k) and isinstance(f[k], h5py.Group)]
        if not keys:
            raise NotNWBError(
                f"{path} has no '<lab>_neuron_<n>' groups (top level: {sorted(f)[:10]}); it is not in "
                "the C4 per-neuron format."
            )
        keys.sort(key=lambda k: int(_NEURON_GROUP.match(k)["n"]))
        for k in keys:
            g = f[k]
            m = _NEURON_GROUP.match(k)

            def get(name, g=g):
                return g[name][()] if name in g else None

            missing = [n for n in ("spike_indices", "sampling_rate") if n not in g]
            if missing:
                raise LibraryError(f"{path}:{k} lacks {missing}; every C4 neuron needs spike times and rate.")
            fs = float(np.asarray(get("sampling_rate")).ravel()[0])
            if not fs > 0:
                raise LibraryError(f"{path}:{k}: sampling_rate {fs} is not positive.")
            spikes = np.asarray(get("spike_indices")).ravel().astype(np.int64)
            n_raw = len(spikes)
            if quality_filter:
                mask = np.ones(n_raw, dtype=bool)
                for qn in ("sane_spikes", "fn_fp_filtered_spikes"):
                    q = get(qn)
                    if q is not None:
                        q = np.asarray(q).ravel().astype(bool)
                        if len(q) != n_raw:
                            raise LibraryError(
                                f"{path}:{k}: {qn} has {len(q)} entries for {n_raw} spikes; pass "
                                "quality_filter=False to import all spikes."
                            )
                        mask &= q
                spikes = spikes[mask]
            wf = get("mean_waveform_preprocessed")
            chan_ids = get("channel_ids")
            xy = get("channelmap")
            if wf is not None:
                wf = np.asarray(wf, dtype=np.float32)
                if wf.ndim == 1:
                    wf = wf[None, :]
                n_ch = len(chan_ids) if chan_ids is not None else (len(xy) if xy is not None else None)
                # stored channels x samples; a file written the other way round is transposed
                if (n_ch is not None and wf.shape[1] == n_ch and wf.shape[0] != n_ch) or (
                    n_ch is None and wf.shape[0] > wf.shape[1]
                ):
                    wf = wf.T
                wf = wf.T  # -> samples x channels
            opto = get("optostims")
            lab = _text(get("lab_id")) or m["lab"]
            rel = get("neuron_relative_id")
            neurons.append(
                C4Neuron(
                    key=k,
                    lab=lab,
                    dataset=_text(get("dataset_id")) or "unknown-dataset",
                    relative_id=int(np.asarray(rel).ravel()[0]) if rel is not None else int(m["n"]),
                    spike_times_s=np.sort(spikes / fs),
                    sampling_rate_hz=fs,
                    waveform=wf,
                    channel_ids=None if chan_ids is None else np.asarray(chan_ids).ravel().astype(np.int64),
                    channel_xy=None if xy is None else np.asarray(xy, dtype=np.float64).reshape(-1, 2),
                    ground_truth_label=_text(get("ground_truth_label")),
                    ground_truth_source=_text(get("ground_truth_source")),
                    expert_label=_text(get("expert_label")),
                    phyllum_layer=_text(get("phyllum_layer")),
                    human_layer=_text(get("human_layer")),
                    line=_text(get("line")),
                    optostims=None
                    if opto is None or np.size(opto) == 0
                    else np.asarray(opto, dtype=np.float64).reshape(-1, 2),
                    n_spikes_raw=n_raw,
                )
            )
    return neurons


def _layer(value: str) -> str:
    if value in LAYERS:
        return value
    return _LAYER_MAP.get(value.lower(), "unknown")


def _label(value: str, mapping: dict[str, str], where: str, unknown: list[str]) -> str:
    if value.lower() in _UNLABELLED:
        return ""
    lab = mapping.get(value, value)
    if lab and lab not in LABEL_VOCABULARY:
        unknown.append(f"{where} ({value!r})")
        return ""
    return lab


#: Units table columns of an imported file (besides the ragged ``optostims``) -> their descriptions.
_UNIT_COLUMNS = {
    "c4_neuron": "HDF5 group of the neuron in the C4 file",
    "c4_relative_id": "neuron_relative_id (the unit id in the lab's spike sorting)",
    "lab_id": "C4 lab_id",
    "layer": f"cerebellar layer in {list(LAYERS)} (from phyllum_layer, else human_layer)",
    "phyllum_layer": "C4 phyllum_layer (as stored)",
    "human_layer": "C4 human_layer (as stored)",
    "expert_label": "C4 expert_label (as stored)",
    "ground_truth_label": "C4 ground_truth_label (as stored)",
    "ground_truth_source": "C4 ground_truth_source (as stored)",
    "genetic_line": "C4 line (mouse genetic line)",
    "n_spikes_c4": "number of spikes in the C4 file before the quality filter",
}
#: The annotation tables an import writes: (kind, index in a neuron's label pair, table name).
_LABEL_TABLES = (("ground_truth", 0, "ground_truth"), ("expert", 1, "expert_labels"))


def _file_mtime_iso(path: Path) -> str:
    """``path``'s modification time, UTC, whole seconds, ISO 8601 (the default ``labelled_at``)."""
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).replace(microsecond=0).isoformat()


def _by_recording(neurons: list[C4Neuron]) -> dict[tuple[str, str], list[C4Neuron]]:
    """The neurons grouped by recording, ``(lab, dataset_id)``, each group in file order."""
    by_ds: dict[tuple[str, str], list[C4Neuron]] = defaultdict(list)
    for nrn in neurons:
        by_ds[(nrn.lab, nrn.dataset)].append(nrn)
    return by_ds


def _vocabulary_labels(
    neurons: list[C4Neuron], mapping: dict[str, str], path: Path, skip_unknown_labels: bool
) -> dict[str, tuple[str, str]]:
    """Each neuron's (ground-truth, expert) label in our vocabulary, "" for none; LibraryError naming
    those outside it unless ``skip_unknown_labels``."""
    unknown: list[str] = []
    labels = {
        n.key: (
            _label(n.ground_truth_label, mapping, f"{n.key}/ground_truth_label", unknown),
            _label(n.expert_label, mapping, f"{n.key}/expert_label", unknown),
        )
        for n in neurons
    }
    if unknown and not skip_unknown_labels:
        raise LibraryError(
            f"labels outside our vocabulary {list(LABEL_VOCABULARY)} in {path}: {', '.join(unknown[:10])}"
            f"{' ...' if len(unknown) > 10 else ''}. Map them (e.g. --map GrC=) or pass --skip-unknown-labels."
        )
    return labels


def _recording_nwbfile(path: Path, lab: str, ds: str, *, species: str, age: str | None):
    """An empty NWBFile, with its Subject, for recording ``ds`` of ``lab`` imported from ``path``."""
    from pynwb import NWBFile
    from pynwb.file import Subject

    ident = hashlib.sha256(f"{path.name}|{lab}|{ds}".encode()).hexdigest()[:32]
    return NWBFile(
        session_description=(
            f"C4 ground-truth library neurons of recording {ds!r} (lab {lab}), imported from {path.name}. "
            "The C4 format records no session date: session_start_time is a placeholder (1970-01-01)."
        ),
        identifier=ident,
        session_start_time=UNKNOWN_START,
        session_id=_slug(ds),
        lab=lab,
        subject=Subject(
            subject_id=_slug(f"{lab}-{ds}"),
            species=species,
            sex="U",
            age=age,
            description=f"C4 dataset {ds}",
        ),
        source_script="nwb_celltype.library.c4h5.import_c4h5",
        source_script_file_name="c4h5.py",
    )


def _add_probe_electrodes(nwb, group: list[C4Neuron]) -> dict[int, int]:
    """Add the probe and one electrode per channel of ``group``'s neurons (positions from
    ``channelmap``, NaN where unknown); returns channel id -> electrode row."""
    device = nwb.create_device(name="probe", description="Neuropixels probe (C4 library recording)")
    egroup = nwb.create_electrode_group(
        name="probe",
        description="channels of the C4 neurons' waveforms",
        location="Cerebellum",
        device=device,
    )
    # electrodes: union of the neurons' channels, positions from channelmap
    chan_pos: dict[int, tuple[float, float]] = {}
    for nrn in group:
        if nrn.channel_ids is not None:
            xy = (
                nrn.channel_xy
                if nrn.channel_xy is not None and len(nrn.channel_xy) == len(nrn.channel_ids)
                else None
            )
            for j, c in enumerate(nrn.channel_ids):
                chan_pos.setdefault(int(c), tuple(xy[j]) if xy is not None else (np.nan, np.nan))
    order = sorted(chan_pos)
    if order:
        nwb.add_electrode_column(name="channel_id", description="probe channel index (C4 channel_ids)")
        for c in order:
            x, y = chan_pos[c]
            nwb.add_electrode(
                group=egroup, location="Cerebellum", x=float(x), y=float(y), z=0.0, channel_id=c
            )
    return {c: i for i, c in enumerate(order)}


def _recording_rate(path: Path, ds: str, group: list[C4Neuron]) -> float:
    """The sampling rate (Hz) of recording ``ds``; LibraryError if its neurons mix rates."""
    rate = group[0].sampling_rate_hz
    if any(n.sampling_rate_hz != rate for n in group):
        raise LibraryError(
            f"{path}: dataset {ds!r} mixes sampling rates; the C4 format has one per recording."
        )
    return rate


def _unit_waveform_mean(path: Path, nrn: C4Neuron, shapes: set) -> np.ndarray | None:
    """A unit's ``waveform_mean``: the whole waveform where the recording's waveforms (``shapes``)
    share one shape, else its peak channel; None without one (LibraryError if others have one)."""
    if nrn.waveform is None:
        if shapes != {None}:
            raise LibraryError(f"{path}:{nrn.key} has no mean_waveform_preprocessed while others do.")
        return None
    if len(shapes) == 1 and None not in shapes:
        return nrn.waveform
    peak = int(np.argmax(np.abs(nrn.waveform).max(axis=0)))
    return nrn.waveform[:, peak]


def _unit_layer(nrn: C4Neuron) -> str:
    """A unit's layer in our vocabulary: from ``phyllum_layer``, else ``human_layer``."""
    layer = _layer(nrn.phyllum_layer)
    return layer if layer != "unknown" else _layer(nrn.human_layer)


def _add_units(
    nwb, path: Path, ds: str, group: list[C4Neuron], electrode_row: dict[int, int], *, quality_filter: bool
) -> None:
    """Add the Units table: one unit per neuron of ``group`` (spike times, waveform, electrodes and
    the C4 columns); LibraryError on mixed sampling rates or a missing waveform."""
    from pynwb.misc import Units

    rate = _recording_rate(path, ds, group)
    shapes = {None if n.waveform is None else n.waveform.shape for n in group}
    nwb.units = Units(
        name="units",
        description=(
            "C4 library neurons; spike times are C4's quality-checked spikes (sane_spikes & "
            "fn_fp_filtered_spikes)"
            if quality_filter
            else "C4 library neurons; all spikes"
        ),
        resolution=1.0 / rate,
        waveform_rate=rate,
        waveform_unit="a.u. (C4 mean_waveform_preprocessed)",
    )
    for cname, cdesc in _UNIT_COLUMNS.items():
        nwb.add_unit_column(name=cname, description=cdesc)
    nwb.add_unit_column(name="optostims", description="C4 optostims: on/off times (s)", index=True)
    for i, nrn in enumerate(group):
        kw = {}
        waveform_mean = _unit_waveform_mean(path, nrn, shapes)
        if waveform_mean is not None:
            kw["waveform_mean"] = waveform_mean
        if electrode_row:  # a neuron without channel ids gets none (the column is the table's)
            ids = () if nrn.channel_ids is None else nrn.channel_ids
            kw["electrodes"] = [electrode_row[int(c)] for c in ids]
        opto = nrn.optostims.ravel().tolist() if nrn.optostims is not None else []
        nwb.add_unit(
            id=i,
            spike_times=nrn.spike_times_s,
            c4_neuron=nrn.key,
            c4_relative_id=nrn.relative_id,
            lab_id=nrn.lab,
            layer=_unit_layer(nrn),
            phyllum_layer=nrn.phyllum_layer,
            human_layer=nrn.human_layer,
            expert_label=nrn.expert_label,
            ground_truth_label=nrn.ground_truth_label,
            ground_truth_source=nrn.ground_truth_source,
            genetic_line=nrn.line,
            n_spikes_c4=nrn.n_spikes_raw,
            optostims=opto,
            **kw,
        )


def _label_evidence(kind: str, nrns: list[C4Neuron]) -> tuple[list[str], list[str]]:
    """Evidence types and texts of ``nrns``' labels in the annotation table of ``kind``."""
    if kind == "ground_truth":
        etype = [evidence_type_from_source(n.ground_truth_source) for n in nrns]
        etext = [
            f"C4 ground_truth_source: {n.ground_truth_source or '(empty)'}; neuron {n.key}" for n in nrns
        ]
    else:
        etype = ["expert"] * len(nrns)
        etext = [f"C4 expert_label; neuron {n.key}" for n in nrns]
    if any(t not in EVIDENCE_TYPES for t in etype):  # pragma: no cover - mapping returns known types
        raise LibraryError(f"internal: evidence types {etype} outside {EVIDENCE_TYPES}")
    return etype, etext


def _add_label_tables(
    nwb, group: list[C4Neuron], labels: dict[str, tuple[str, str]], *, labelled_by: str, labelled_at: str
) -> None:
    """Add the ``ground_truth`` and ``expert_labels`` annotation tables, each where a unit has one."""
    from ._annotations import write_ground_truth

    for kind, slot, tname in _LABEL_TABLES:
        rows = [i for i, n in enumerate(group) if labels[n.key][slot]]
        if not rows:
            continue
        nrns = [group[i] for i in rows]
        etype, etext = _label_evidence(kind, nrns)
        write_ground_truth(
            nwb,
            name=tname,
            unit_indices=np.asarray(rows),
            labels=np.asarray([labels[n.key][slot] for n in nrns], dtype=object),
            evidence={
                "evidence_type": np.asarray(etype, dtype=object),
                "evidence_text": np.asarray(etext, dtype=object),
                "labelled_by": np.asarray([labelled_by] * len(rows), dtype=object),
                "labelled_at": np.asarray([labelled_at] * len(rows), dtype=object),
            },
            kind=kind,
        )


def import_c4h5(
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    species: str = "Mus musculus",
    age: str | None = None,
    labelled_by: str = "C4 collaboration (Beau et al. 2025)",
    labelled_at: str | None = None,
    mapping: dict[str, str] | None = None,
    skip_unknown_labels: bool = False,
    quality_filter: bool = True,
    overwrite: bool = False,
) -> list[Path]:
    """Convert a C4 HDF5 file into NWB files, one per ``dataset_id`` (recording).

    Each file gets: a Units table (spike times in s; ``waveform_mean`` (samples x channels) where
    every neuron of the dataset has the same waveform shape, else the peak channel only; columns
    ``c4_neuron``, ``c4_relative_id``, ``lab_id``, ``layer`` (our vocabulary, from
    ``phyllum_layer``, else ``human_layer``), ``phyllum_layer``, ``human_layer``, ``expert_label``,
    ``ground_truth_label``, ``ground_truth_source``, ``genetic_line``, ``n_spikes_c4``, and ragged
    ``optostims`` (on/off times, s)); electrodes for the neurons' channels (positions from
    ``channelmap``); a ``ground_truth`` annotation table (kind ``ground_truth``, evidence type from
    :func:`evidence_type_from_source`, the source text as evidence text) and an ``expert_labels``
    table (kind ``expert``) where there are such labels.

    Parameters
    ----------
    path : path
        The C4 ``.h5`` file.
    out_dir : path
        Folder for ``<lab>_<dataset>.nwb`` files.
    species : str
        Latin name for ``Subject.species`` (the format does not record it; the published C4
        library is mouse; the macaque recordings are a separate set).
    age : str, optional
        ISO 8601 age (``"P90D"``) or range (``"P60D/P120D"``) for ``Subject.age``. The format does not
        record it; DANDI needs it (``library export`` refuses files without it).
    labelled_by, labelled_at : str
        Recorded with each label (``labelled_at`` defaults to the C4 file's modification time).
    mapping : dict, optional
        C4 label -> our label for labels outside our vocabulary (e.g. ``{"GrC": ""}`` to skip).
    skip_unknown_labels : bool
        Leave units with labels outside the vocabulary unlabelled instead of failing.
    quality_filter : bool
        Keep only C4's quality-checked spikes (see :func:`read_c4h5`).
    overwrite : bool
        Replace existing output files.

    Returns
    -------
    list of pathlib.Path
        The NWB files written.
    """
    path = Path(path)
    neurons = read_c4h5(path, quality_filter=quality_filter)
    mapping = dict(mapping or {})
    if labelled_at is None:
        labelled_at = _file_mtime_iso(path)
    by_ds = _by_recording(neurons)
    labels = _vocabulary_labels(neurons, mapping, path, skip_unknown_labels)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for (lab, ds), group in sorted(by_ds.items()):
        target = out_dir / f"{_slug(lab)}_{_slug(ds)}.nwb"
        if target.exists() and not overwrite:
            raise OutputError(f"{target} exists; pass --overwrite (overwrite=True) or another output folder.")
        nwb = _recording_nwbfile(path, lab, ds, species=species, age=age)
        electrode_row = _add_probe_electrodes(nwb, group)
        _add_units(nwb, path, ds, group, electrode_row, quality_filter=quality_filter)
        _add_label_tables(nwb, group, labels, labelled_by=labelled_by, labelled_at=labelled_at)
        write_nwbfile(nwb, target, replace=overwrite)  # whole or not at all
        written.append(target)
        logger.info("wrote %s (%d neurons)", target, len(group))
    return written
