"""The reading side of an annotation run (for :func:`nwb_celltype.annotate.annotate`): the units of
the chosen Units table read batch by batch, their features computed, and what the write step needs
of them kept without their spike times (bounded memory; a derived file's spike times are spilled to
a scratch file as they are read)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from .errors import EmptyUnitsError, InvalidUnitsError

logger = logging.getLogger(__name__)


@dataclass
class UnitsSummary:
    """What the write step needs of the units, without their spike times (bounded memory)."""

    unit_ids: np.ndarray
    unit_indices: np.ndarray
    spike_counts: np.ndarray
    layers: np.ndarray
    waveforms: np.ndarray | None
    waveform_rate_hz: float | None
    problems: dict[int, str]
    #: HDF5 path of the source's Units table they were read from (``units``, or a Units table in a
    #: processing module: :func:`nwb_celltype.io.resolve_units_table`)
    table_path: str = "units"
    #: where ``waveform_rate_hz`` came from: "file", "stated" (the user's), "electrical_series:<name>"
    #: (the recording's) or "assumed" (30 kHz)
    waveform_rate_source: str = ""
    #: (n,) the ``location`` of each unit's electrode ("" where unknown; None: not read)
    locations: np.ndarray | None = None
    #: (n,) int64 electrodes-table row of each unit's peak channel, -1 unknown (the reader's
    #: ``batch.extra["peak_electrodes"]``; None: not read): the derived file's ``peak_electrode``
    #: column, so that writing it does not read the waveforms again
    peak_electrodes: np.ndarray | None = None


@dataclass(frozen=True)
class Reading:
    """What the user said about the source's units (:func:`nwb_celltype.io.read_units`)."""

    #: the Units table to read (None: ``units``, else the file's only one)
    units_table: str | None = None
    #: the waveforms' sampling rate (None: the file's, else 30 kHz assumed)
    waveform_rate_hz: float | None = None


def _other_tables(source_obj, table_path: str) -> str | None:
    """For an error about an empty Units table (e.g. a ``/units`` placeholder beside the sorting in
    ``processing/ecephys``): "; the file's Units tables with spike times: ... pass one with
    --units-table", "" where the file has no other, or None where they could not be read (a remote
    read that failed: whether the file has another is unknown)."""
    from .io import units_table_paths

    try:
        h5 = source_obj.h5
        others = [
            p
            for p in units_table_paths(h5)
            if p != table_path and "spike_times" in h5[p] and len(h5[p]["spike_times"]) > 0
        ]
    except Exception as exc:  # a hint only: reading it must not hide the error it adds to
        logger.debug("could not list the other Units tables: %s", exc)
        return None
    if not others:
        return ""
    listed = ", ".join(f"/{p}" for p in others)
    return (
        f"; the file's Units tables with spike times: {listed}. Pass one with --units-table "
        f"{others[0]} (units_table=...)"
    )


def _no_units(source_obj, table_path: str, why: str) -> InvalidUnitsError:
    """The error for a Units table with nothing to classify: :class:`EmptyUnitsError` (a
    whole-dandiset run skips the asset) where the file has no other table with spike times, else a
    plain :class:`InvalidUnitsError` (a failure: the user chose the wrong one) naming those tables,
    or saying that they could not be read (a failed read must not turn a failure into a skip)."""
    others = _other_tables(source_obj, table_path)
    if others is None:
        return InvalidUnitsError(
            f"the source's Units table /{table_path} {why}; the file's other Units tables could not "
            "be read to tell whether it holds another (pass one with --units-table, or try again)"
        )
    kind = InvalidUnitsError if others else EmptyUnitsError
    return kind(f"the source's Units table /{table_path} {why}{others}")


def collect(
    source_obj,
    bundle,
    batch_size: int,
    progress: bool,
    spill=None,
    reading: Reading = Reading(),
    before_reading=None,
):
    """Read all units of the Units table ``reading.units_table`` (default:
    :func:`~nwb_celltype.io.resolve_units_table`) and compute features, one batch at a time; memory is bounded by the batch size plus the small
    per-unit arrays. With ``spill`` (a binary file object), every batch's spike times (float64) are
    appended to it, for a derived file to memory-map later. ``before_reading`` (no arguments) is
    called once the table was found and has spike times, before any unit is read.
    Returns (UnitsSummary, FeatureSet, read_s, features_s)."""
    from tqdm.auto import tqdm

    from .features.families import family_of
    from .io import read_units, resolve_units_table

    family = family_of(bundle)  # the feature family the model declares
    with source_obj.guard("finding the Units table"):
        table_path = resolve_units_table(source_obj.h5, reading.units_table)
        no_spikes = "spike_times" not in source_obj.h5[table_path]
    if no_spikes:  # every unit would be "not classifiable: no spikes"
        raise _no_units(
            source_obj,
            table_path,
            "has no spike_times column: it has no units to classify (the cell types are read from "
            "the spike trains)",
        )
    if before_reading is not None:
        before_reading()

    sets, ids, indices, counts, layers, waves, locations, peaks = [], [], [], [], [], [], [], []
    problems: dict[int, str] = {}
    rate = None
    t_read = t_feat = 0.0
    try:
        total = int(source_obj.h5[f"{table_path}/id"].shape[0])
    except (AttributeError, KeyError, TypeError):
        total = None
    bar = tqdm(total=total, unit="unit", desc="annotate", disable=not progress, leave=False)
    # every unit gets a row: a file without waveforms yields 'no waveform' rows, not an error
    it = read_units(
        source_obj,
        batch_size=batch_size,
        require_waveforms=False,
        units_table=table_path,
        waveform_rate_hz=reading.waveform_rate_hz,
    )
    rate_source = ""
    while True:
        t0 = time.perf_counter()
        batch = next(it, None)
        t_read += time.perf_counter() - t0
        if batch is None:
            break
        ids.append(np.asarray(batch.unit_ids))
        indices.append(np.asarray(batch.unit_indices))
        counts.append(batch.spike_counts)
        layers.append(np.asarray(batch.layers, dtype=object))
        locations.append(np.asarray((batch.extra or {}).get("locations", [""] * len(batch)), dtype=object))
        waves.append(batch.waveforms)
        peak = (batch.extra or {}).get("peak_electrodes")
        peaks.append(None if peak is None else np.asarray(peak, dtype=np.int64))
        rate = rate or batch.waveform_rate_hz
        rate_source = rate_source or (batch.extra or {}).get("waveform_rate_source", "")
        if spill is not None:
            spill.write(np.ascontiguousarray(batch.spike_times_s, dtype="<f8").tobytes())
        for uid, reason in (batch.extra.get("problems") or {}).items():
            problems[int(uid)] = reason
        t0 = time.perf_counter()
        sets.append(family.extract_features(batch, bundle.feature_config))
        t_feat += time.perf_counter() - t0
        bar.update(len(batch))
    bar.close()
    if not sets:
        raise _no_units(source_obj, table_path, "has no units; nothing to annotate")
    waveforms = None
    if all(w is not None for w in waves) and len({w.shape[1] for w in waves}) == 1:
        waveforms = np.concatenate(waves).astype(np.float32)
    summary = UnitsSummary(
        unit_ids=np.concatenate(ids),
        unit_indices=np.concatenate(indices),
        spike_counts=np.concatenate(counts),
        layers=np.concatenate(layers),
        waveforms=waveforms,
        waveform_rate_hz=rate,
        problems=problems,
        table_path=table_path,
        waveform_rate_source=rate_source if waveforms is not None else "",
        locations=np.concatenate(locations),
        peak_electrodes=None if any(p is None for p in peaks) else np.concatenate(peaks),
    )
    return summary, family.concatenate(sets), t_read, t_feat
