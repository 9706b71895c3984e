"""Assemble simulated cerebellar recordings (classes, probe placement, spike trains, defects,
waveforms, ground-truth labels) and write them as NWB files; also whole labelled libraries."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .._atomic_folder import atomic_folder
from ..errors import InvalidValueError
from ..vocabulary import C4_CLASSES
from ._checks import _check_counts, _check_duration, _check_fraction, _check_int
from ._nwb import write_nwb
from ._params import (
    C4_LABELLED_COUNTS,
    C4_UNLABELLED_COUNT,
    DEFAULT_MIX,
    LABEL_MIN_SPIKES,
    PRESETS,
    SIM_CLASSES,
    Preset,
    fitted_pool,
    get_preset,
)
from ._population import (
    _choose_labelled,
    _draw_classes,
    _name_mfb_polarity,
    _nearest_sites,
    _pair_purkinje,
    _peak_layers,
    _place_units,
    _render_units,
    _spike_trains,
)
from ._result import SimulationResult
from ._unit import class_spike_train, class_waveform
from ._waveforms import make_layer_profile

logger = logging.getLogger(__name__)

__all__ = [
    "SimulationResult",
    "class_spike_train",
    "class_waveform",
    "simulate_library",
    "simulate_recording",
    "simulate_units",
]


def _default_counts(n_units: int) -> dict[str, int]:
    """Split ``n_units`` over DEFAULT_MIX by largest remainders (PkC_cs <= PkC_ss)."""
    names = list(DEFAULT_MIX)
    raw = np.array([DEFAULT_MIX[c] for c in names]) * n_units
    base = np.floor(raw).astype(int)
    rest = n_units - base.sum()
    order = np.argsort(-(raw - base), kind="stable")
    base[order[:rest]] += 1
    counts = dict(zip(names, base.tolist(), strict=True))
    if counts["PkC_cs"] > counts["PkC_ss"]:
        counts["PkC_ss"], counts["PkC_cs"] = counts["PkC_cs"], counts["PkC_ss"]
    return counts


def _check_purkinje_pairs(class_counts: dict[str, int]) -> None:
    """Refuse more PkC_cs than PkC_ss units (each complex-spike unit needs its cell's simple spikes)."""
    if class_counts.get("PkC_cs", 0) > class_counts.get("PkC_ss", 0):
        raise InvalidValueError(
            f"class_counts asks for {class_counts.get('PkC_cs', 0)} PkC_cs units but only "
            f"{class_counts.get('PkC_ss', 0)} PkC_ss units; every complex-spike unit belongs to a "
            "Purkinje cell whose simple spikes are also a unit, so give at least as many PkC_ss."
        )


def _check_waveform_rate(waveform_rate_hz: float | None, pre: Preset) -> float:
    """The waveform sampling rate (the preset's by default), checked to lie in 5-100 kHz."""
    wrate = float(pre.waveform_rate_hz if waveform_rate_hz is None else waveform_rate_hz)
    if not np.isfinite(wrate) or not 5000.0 <= wrate <= 100000.0:
        raise InvalidValueError(
            f"waveform_rate_hz must be between 5 and 100 kHz, got {waveform_rate_hz!r} "
            "(Neuropixels records at 30 kHz)."
        )
    return wrate


def simulate_units(
    *,
    preset: str | Preset = "mouse",
    class_counts: dict[str, int],
    duration_s: float,
    seed: int = 0,
    defects: bool = True,
    waveform_rate_hz: float | None = None,
    labelled_counts: dict[str, int] | None = None,
    labelled_fraction: float = 0.0,
    exclude_real_units=None,
    discharge_rows: dict | None = None,
    label_min_spikes: int = LABEL_MIN_SPIKES,
) -> tuple[SimulationResult, list[tuple]]:
    """Simulate units (no file written): the pure-numpy core of :func:`simulate_recording`.

    Parameters
    ----------
    exclude_real_units : iterable of str, optional
        Real units (``neuron_id`` of the real-c4 tables, e.g. ``"lisberger_12"``) whose fitted rows
        no simulated unit may be drawn from, neither its spike train nor its waveform (e.g. the
        real units a sim-to-real transfer test scores).
    discharge_rows : dict, optional
        ``{class: (rows (k, 7), neuron_ids (k,))}``: discharge rows to draw that class from instead
        of the shipped ones (e.g. refitted without the held-out units). Other arguments:
        :func:`simulate_recording` (no warning here when fewer units than ``labelled_counts`` have
        ``label_min_spikes`` spikes: compare ``result.labelled`` with it).

    Returns
    -------
    result : SimulationResult
        With spike times kept (``path`` is None).
    segments : list of (start_um, end_um, suffix, region)
        The layer profile along the probe (see ``make_layer_profile``).
    """
    pre = get_preset(preset)
    duration_s = _check_duration(duration_s)
    class_counts = _check_counts(class_counts, "class_counts", SIM_CLASSES)
    seed = _check_int("seed", seed, 0)
    labelled_fraction = _check_fraction(labelled_fraction)
    label_min_spikes = _check_int("label_min_spikes", label_min_spikes, 0)
    if labelled_counts is not None:
        labelled_counts = _check_counts(labelled_counts, "labelled_counts", C4_CLASSES)
    _check_purkinje_pairs(class_counts)
    wrate = _check_waveform_rate(waveform_rate_hz, pre)
    pool = fitted_pool(pre.name, exclude_real_units, discharge_rows)
    root = np.random.SeedSequence([seed, 7919])
    s_layout, s_units, s_labels, s_wave = root.spawn(4)
    lrng = np.random.default_rng(s_layout)

    classes, subtypes = _draw_classes(lrng, class_counts)
    partner, cell_ids = _pair_purkinje(lrng, classes)
    segs = make_layer_profile(lrng)
    pos = _place_units(lrng, classes, subtypes, partner, segs)

    flat, offsets, rates, sources, defect_flags = _spike_trains(
        s_units, classes, subtypes, partner, class_counts, pre, duration_s, pool, defects, wrate
    )
    counts = np.diff(offsets)

    # waveforms on the 12 sites nearest each unit
    d_all, electrodes, peak_elec, peak_channels = _nearest_sites(pos)
    waves, wave_sources = _render_units(
        np.random.default_rng(s_wave), classes, subtypes, pre, counts, pool, wrate, d_all, electrodes
    )
    _name_mfb_polarity(classes, subtypes, waves, peak_channels)
    layers, locations = _peak_layers(segs, peak_elec)

    labelled = _choose_labelled(
        np.random.default_rng(s_labels),
        classes,
        partner,
        labelled_counts,
        labelled_fraction,
        counts,
        label_min_spikes,
    )
    result = SimulationResult(
        path=None,
        preset=pre.name,
        seed=seed,
        duration_s=duration_s,
        waveform_rate_hz=wrate,
        classes=classes,
        subtypes=subtypes,
        labelled=labelled,
        cell_ids=cell_ids,
        partner=partner,
        rates_hz=rates,
        layers=layers,
        locations=locations,
        electrodes=electrodes.astype(np.int64),
        peak_channels=peak_channels,
        waveforms=waves,
        spike_counts=counts,
        spike_times_s=flat,
        spike_offsets=offsets,
        defects=defect_flags,
        discharge_sources=sources.astype(str),
        waveform_sources=wave_sources.astype(str),
    )
    return result, segs


# --------------------------------------------------------------------------------------------
# NWB writing


def simulate_recording(
    path: str | Path | None,
    *,
    preset: str = "mouse",
    n_units: int = 150,
    duration_s: float = 600.0,
    seed: int = 0,
    labelled_fraction: float = 0.3,
    class_counts: dict[str, int] | None = None,
    labelled_counts: dict[str, int] | None = None,
    defects: bool = True,
    waveform_rate_hz: float | None = None,
    compression: str | None = "gzip",
    keep_spikes: bool = True,
    exclude_real_units=None,
    label_min_spikes: int = LABEL_MIN_SPIKES,
) -> SimulationResult:
    """Simulate a cerebellar Neuropixels recording and write it as an NWB file.

    Parameters
    ----------
    path : str, Path or None
        NWB file to write (overwritten); None simulates without writing.
    preset : {"mouse", "macaque"}
        Species preset (rates, spike widths; see docs/simulation.md).
    n_units : int
        Number of units, split over the classes by the default mix (ignored with ``class_counts``).
    duration_s : float
        Session length in seconds.
    seed : int
        Seed; the same seed (and arguments and file name) gives the same units, spikes,
        waveforms and a byte-identical file (object_ids derived from the identifier).
    labelled_fraction : float in [0, 1]
        Fraction of the units of each C4 class that get a ground-truth label (only units with
        ``label_min_spikes`` spikes are labelled, so 1.0 may label fewer).
    class_counts : dict, optional
        Units per class (``"GoC"``, ``"MLI"``, ``"MFB"``, ``"PkC_ss"``, ``"PkC_cs"``, ``"other"``);
        every PkC_cs unit is paired with a PkC_ss unit of the same cell.
    labelled_counts : dict, optional
        Number of labelled units per C4 class (overrides ``labelled_fraction``); fewer, with a
        logged warning, where fewer units of the class have ``label_min_spikes`` spikes.
    defects : bool
        Simulate recording defects (refractory violations, amplitude drift, units that stop
        firing, units with very few spikes) at the rates of ``DEFECT_RATES``.
    waveform_rate_hz : float, optional
        Sampling rate of the waveforms and of the spike-time grid (default 30 kHz).
    compression : str or None
        HDF5 filter for spike times and waveforms ("gzip" default, None for speed).
    keep_spikes : bool
        Keep the spike times in the result (False frees them once written).
    exclude_real_units : iterable of str, optional
        Real units whose fitted rows no simulated unit may be drawn from (see
        :func:`simulate_units`); ``result.discharge_sources`` / ``waveform_sources`` say which
        real units were used.
    label_min_spikes : int
        Fewest spikes a labelled unit has (default 100, the minimum of ``library validate`` and
        of the feature layer: ground truth on a unit no classifier scores is of no use).

    Returns
    -------
    SimulationResult
        Ground truth in table order.
    """
    n_units = _check_int("n_units", n_units, 1)
    labelled_fraction = _check_fraction(labelled_fraction)
    if class_counts is None:
        class_counts = _default_counts(n_units)
    if labelled_counts is not None:
        labelled_counts = _check_counts(labelled_counts, "labelled_counts", C4_CLASSES)
    result, segs = simulate_units(
        preset=preset,
        class_counts=class_counts,
        duration_s=duration_s,
        seed=seed,
        defects=defects,
        waveform_rate_hz=waveform_rate_hz,
        labelled_counts=labelled_counts,
        labelled_fraction=labelled_fraction,
        exclude_real_units=exclude_real_units,
        label_min_spikes=label_min_spikes,
    )
    _warn_unlabelled(labelled_counts, [result], label_min_spikes)
    n_spikes = len(result.spike_times_s)
    result = _write(path, result, segs, compression, keep_spikes)
    if path is not None:
        logger.info("wrote %s: %d units, %d spikes", path, len(result), n_spikes)
    return result


def _write(
    path: str | Path | None, result: SimulationResult, segs: list, compression: str | None, keep_spikes: bool
) -> SimulationResult:
    """Write ``result`` to ``path`` (None: no file); drop its spike times unless ``keep_spikes``."""
    if path is not None:
        result.annotations_written = write_nwb(path, result, segs, compression=compression)
        result.path = Path(path)
    if not keep_spikes:
        result.spike_times_s = None
        result.spike_offsets = None
    return result


def _warn_unlabelled(asked: dict[str, int] | None, results: list[SimulationResult], min_spikes: int) -> None:
    """Log a warning where fewer units than ``asked`` (summed over ``results``) got a label because
    too few units of their class have ``min_spikes`` spikes."""
    if not asked:
        return
    got = {c: sum(int((r.labelled & (r.classes == c)).sum()) for r in results) for c in asked}
    short = [f"{got[c]} of {k} {c}" for c, k in asked.items() if got[c] < k]
    if short:
        logger.warning(
            "labelled only %s units: the other units have fewer than %d spikes (the fewest a "
            "library's labelled unit needs); simulate a longer duration for more",
            ", ".join(short),
            min_spikes,
        )


def _split(total: int, parts: int) -> np.ndarray:
    base = np.full(parts, total // parts)
    base[: total % parts] += 1
    return base


#: What a simulated library folder holds (:func:`~nwb_celltype._atomic_folder.atomic_folder`
#: patterns): its session files, ``<preset>_s<seed>_<k>.nwb``.
LIBRARY_FILES: tuple[str, ...] = tuple(f"{name}_s*_*.nwb" for name in PRESETS)


def simulate_library(
    out_dir: str | Path,
    *,
    preset: str = "mouse",
    labelled_counts: dict[str, int] | None = None,
    n_unlabelled: int = C4_UNLABELLED_COUNT,
    n_sessions: int = 12,
    duration_s: float = 600.0,
    seed: int = 0,
    waveform_rates_hz: tuple[float, ...] | None = None,
    defects: bool = True,
    compression: str | None = None,
    keep_spikes: bool = False,
    overwrite: bool = False,
    label_min_spikes: int = LABEL_MIN_SPIKES,
) -> list[SimulationResult]:
    """Simulate a labelled library split over several session files (C4's shape by default).

    The labelled units (``labelled_counts``, default C4's 69 PkC_ss / 58 PkC_cs / 27 MLI /
    18 GoC / 30 MFB) and ``n_unlabelled`` unlabelled units (all classes and "other", in the
    default mix) are spread evenly over ``n_sessions`` files ``<preset>_s<seed>_<k>.nwb``.
    Only units with ``label_min_spikes`` spikes are labelled (see :func:`simulate_recording`):
    short sessions label fewer, with a logged warning. Sessions use waveform rates cycling through
    ``waveform_rates_hz`` (default: mostly 30 kHz, some 25 and 40 kHz). Datasets are uncompressed
    by default: a library is usually generated at run time for training, where speed matters more
    than disk (``compression="gzip"`` to keep it).

    The folder is written whole or not at all (:func:`nwb_celltype._atomic.atomic_folder`): the
    sessions are written into a hidden folder beside ``out_dir``, renamed into place when all are
    complete; a failure or an interruption leaves ``out_dir`` as it was.

    Parameters
    ----------
    overwrite : bool
        Replace a non-empty ``out_dir`` as a whole (its older session files go with it). Without
        it a non-empty ``out_dir`` is refused; with it, one holding files other than session files
        (:data:`LIBRARY_FILES`) still is. Other parameters: above and :func:`simulate_recording`.

    Returns
    -------
    list of SimulationResult
        One per session (spike times dropped unless ``keep_spikes``).

    Raises
    ------
    AnnotationExistsError
        ``out_dir`` is not empty and ``overwrite`` is not given; nothing is written.
    OutputError
        ``out_dir`` is a file, holds other files, or cannot be written.
    """
    out_dir = Path(out_dir)
    n_sessions = _check_int("n_sessions", n_sessions, 1)
    n_unlabelled = _check_int("n_unlabelled", n_unlabelled, 0)
    seed = _check_int("seed", seed, 0)
    lab = _check_counts(
        dict(C4_LABELLED_COUNTS) if labelled_counts is None else labelled_counts,
        "labelled_counts",
        C4_CLASSES,
    )
    if waveform_rates_hz is None:
        waveform_rates_hz = (30000.0, 30000.0, 25000.0, 30000.0, 40000.0, 30000.0)
    pre = get_preset(preset)
    # checked before anything is written (each session checks its own rate again)
    rates = [_check_waveform_rate(r, pre) for r in np.atleast_1d(np.asarray(waveform_rates_hz, dtype=object))]
    if not rates:
        raise InvalidValueError("waveform_rates_hz is empty; give at least one rate in Hz (e.g. (30000.0,)).")
    name = pre.name
    lab_split = {c: _split(k, n_sessions) for c, k in lab.items()}
    unl = _default_counts(n_unlabelled)
    unl_split = {c: _split(k, n_sessions) for c, k in unl.items()}
    results = []
    owned = tuple(dict.fromkeys((*LIBRARY_FILES, f"{name}_s*_*.nwb")))  # a custom preset's names too
    with atomic_folder(out_dir, replace=overwrite, owned=owned, what="a simulated library") as tmp:
        for s in range(n_sessions):
            counts = {
                c: int(unl_split[c][s] + (lab_split[c][s] if c in lab_split else 0)) for c in SIM_CLASSES
            }
            lab_s = {c: int(v[s]) for c, v in lab_split.items()}
            if counts["PkC_cs"] > counts["PkC_ss"]:  # keep pairs possible: add unlabelled SS units
                counts["PkC_ss"] = counts["PkC_cs"]
            result, segs = simulate_units(
                preset=preset,
                class_counts=counts,
                duration_s=duration_s,
                seed=seed * 1000 + s,
                defects=defects,
                waveform_rate_hz=rates[s % len(rates)],
                labelled_counts=lab_s,
                label_min_spikes=label_min_spikes,
            )
            results.append(
                _write(tmp / f"{name}_s{seed}_{s:02d}.nwb", result, segs, compression, keep_spikes)
            )
    for r in results:  # where they are now that the folder is in place
        r.path = out_dir / r.path.name
    logger.info("wrote the library %s: %d sessions, %d units", out_dir, len(results), sum(map(len, results)))
    _warn_unlabelled(lab, results, label_min_spikes)
    return results
