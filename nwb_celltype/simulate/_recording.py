"""Assemble simulated cerebellar recordings (classes, probe placement, spike trains, defects,
waveforms, ground-truth labels) and write them as NWB files; also whole labelled libraries."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import InvalidValueError, OutputError
from ..vocabulary import C4_CLASSES
from ._checks import _check_counts, _check_duration, _check_fraction, _check_int
from ._nwb import site_layers, write_nwb
from ._params import (
    C4_LABELLED_COUNTS,
    C4_UNLABELLED_COUNT,
    DEFAULT_MIX,
    OTHER,
    OTHER_KIND_P,
    OTHER_KINDS,
    SIM_CLASSES,
    Preset,
    fitted_pool,
    get_preset,
)
from ._result import DEFECT_RATES, N_CHANNELS, SimulationResult
from ._spikes import (
    add_refractory_violations,
    apply_amplitude_cutoff,
    apply_cs_pause,
)
from ._unit import (
    _class_train,
    _unit_waveform_params,
    class_spike_train,
    class_waveform,
)
from ._waveforms import (
    LAYER_SUFFIX_TO_C4,
    make_layer_profile,
    neuropixels_geometry,
    render_waveforms,
    waveform_time_ms,
)

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


# --------------------------------------------------------------------------------------------
# per-unit generation


def _apply_defects(
    rng: np.random.Generator, t: np.ndarray, duration_s: float, flags: dict[str, bool]
) -> np.ndarray:
    if flags["refractory_violations"]:
        t = add_refractory_violations(rng, t, rng.uniform(0.005, 0.04))
    if flags["amplitude_drift"]:
        t, _ = apply_amplitude_cutoff(rng, t, duration_s, drift=rng.uniform(-0.7, 0.5))
    if flags["stops_firing"]:
        lost = rng.uniform(0.2, 0.6) * duration_s
        mode = rng.integers(3)
        if mode == 0:  # drifts away: stops early
            t = t[t < duration_s - lost]
        elif mode == 1:  # drifts in: starts late
            t = t[t >= lost]
        else:  # silent gap in the middle
            a = rng.uniform(0, duration_s - lost)
            t = t[(t < a) | (t >= a + lost)]
    if flags["few_spikes"] and len(t) > 0:
        k = int(rng.integers(15, 90))
        if len(t) > k:
            t = np.sort(rng.choice(t, size=k, replace=False))
    return t


def _place_units(
    rng: np.random.Generator,
    classes: np.ndarray,
    subtypes: np.ndarray,
    partner: np.ndarray,
    segs: list[tuple],
) -> np.ndarray:
    """(n, 3) positions (x, y along the probe, z distance from the probe plane), um."""
    n = len(classes)
    want = np.empty(n, dtype=object)
    for i, (c, k) in enumerate(zip(classes, subtypes, strict=True)):
        if c in ("PkC_ss", "PkC_cs"):
            want[i] = "pu"
        elif c == "MLI":
            want[i] = "mo"
        elif c in ("GoC", "MFB") or k == "granule":
            want[i] = "gr"
        else:
            want[i] = ("mo", "pu", "gr")[rng.integers(3)]
    misplaced = rng.uniform(size=n) < 0.07  # layer noise: boundaries are not sharp in vivo
    want[misplaced] = np.array(["mo", "pu", "gr"], dtype=object)[rng.integers(3, size=misplaced.sum())]
    starts = np.array([s[0] for s in segs])
    ends = np.array([s[1] for s in segs])
    suffix = np.array([s[2] for s in segs])
    pos = np.empty((n, 3))
    for i in range(n):
        cand = np.flatnonzero(suffix == want[i])
        if len(cand) == 0:
            cand = np.arange(len(segs))
        lengths = ends[cand] - starts[cand]
        j = cand[rng.choice(len(cand), p=lengths / lengths.sum())]
        if want[i] == "pu":  # somata sit in the middle of the thin Purkinje layer
            mid, half = (starts[j] + ends[j]) / 2, (ends[j] - starts[j]) / 4
            pos[i, 1] = rng.uniform(mid - half, mid + half)
        else:
            pos[i, 1] = rng.uniform(starts[j], ends[j])
    pos[:, 0] = rng.uniform(-15.0, 75.0, size=n)
    pos[:, 2] = rng.uniform(5.0, 40.0, size=n)
    # the complex-spike unit of a Purkinje cell sits with its simple-spike unit (same soma/dendrite)
    cs = np.flatnonzero((classes == "PkC_cs") & (partner >= 0))
    pos[cs] = pos[partner[cs]] + np.column_stack(
        [rng.normal(0, 5, len(cs)), rng.uniform(-8, 12, len(cs)), rng.normal(0, 3, len(cs)).clip(-2)]
    )
    pos[:, 2] = np.maximum(np.abs(pos[:, 2]), 3.0)
    return pos


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
        :func:`simulate_recording`.

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
    if labelled_counts is not None:
        labelled_counts = _check_counts(labelled_counts, "labelled_counts", C4_CLASSES)
    if class_counts.get("PkC_cs", 0) > class_counts.get("PkC_ss", 0):
        raise InvalidValueError(
            f"class_counts asks for {class_counts.get('PkC_cs', 0)} PkC_cs units but only "
            f"{class_counts.get('PkC_ss', 0)} PkC_ss units; every complex-spike unit belongs to a "
            "Purkinje cell whose simple spikes are also a unit, so give at least as many PkC_ss."
        )
    wrate = float(waveform_rate_hz or pre.waveform_rate_hz)
    if not np.isfinite(wrate) or not 5000.0 <= wrate <= 100000.0:
        raise InvalidValueError(
            f"waveform_rate_hz must be between 5 and 100 kHz, got {waveform_rate_hz!r} "
            "(Neuropixels records at 30 kHz)."
        )
    pool = fitted_pool(pre.name, exclude_real_units, discharge_rows)
    root = np.random.SeedSequence([seed, 7919])
    s_layout, s_units, s_labels, s_wave = root.spawn(4)
    lrng = np.random.default_rng(s_layout)

    classes = np.concatenate([np.full(class_counts.get(c, 0), c, dtype=object) for c in SIM_CLASSES])
    n = len(classes)
    if n == 0:
        raise InvalidValueError("no units requested: give n_units >= 1 or non-zero class_counts.")
    # table order is a random permutation (as spike sorters number clusters)
    classes = classes[lrng.permutation(n)].astype(str)
    subtypes = np.full(n, "", dtype=object)
    is_other = classes == OTHER
    subtypes[is_other] = lrng.choice(OTHER_KINDS, size=is_other.sum(), p=OTHER_KIND_P)
    subtypes = subtypes.astype("<U16")
    # pair each PkC_cs unit with a PkC_ss unit of the same cell
    partner = np.full(n, -1, dtype=np.int64)
    ss_idx = np.flatnonzero(classes == "PkC_ss")
    cs_idx = np.flatnonzero(classes == "PkC_cs")
    mates = lrng.choice(ss_idx, size=len(cs_idx), replace=False) if len(cs_idx) else ss_idx[:0]
    partner[cs_idx] = mates
    partner[mates] = cs_idx
    cell_ids = np.arange(n, dtype=np.int64)
    cell_ids[cs_idx] = mates

    segs = make_layer_profile(lrng)
    pos = _place_units(lrng, classes, subtypes, partner, segs)

    # spike trains: one independent stream per unit. Complex spikes first (tiny): the simple
    # spikes of the same cell need them for their pause.
    unit_seeds = s_units.spawn(n)
    rates = np.zeros(n)
    sources = np.full(n, "", dtype=object)  # the real unit each unit's fitted rows came from
    wave_sources = np.full(n, "", dtype=object)
    cs_trains: dict[int, np.ndarray] = {}
    for j in np.flatnonzero(classes == "PkC_cs"):
        cs_trains[j], rates[j], sources[j] = _class_train(
            np.random.default_rng(unit_seeds[j]), "PkC_cs", "", pre, duration_s, pool
        )
    defect_flags = {k: np.zeros(n, dtype=bool) for k in DEFECT_RATES}
    # Units are written straight into one flat array in table order, so that peak memory stays
    # ~8 bytes per spike: the buffer is over-allocated (untouched pages cost no memory) and grown
    # only if the generous estimate is exceeded.
    expect = sum(pre.classes[c].rate_hz * n_c for c, n_c in class_counts.items()) * duration_s
    buf = np.empty(int(3 * expect) + 100_000, dtype=np.float64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    for i in range(n):
        rng = np.random.default_rng(unit_seeds[i])
        if classes[i] == "PkC_cs":
            t = cs_trains[i]
        else:
            t, rates[i], sources[i] = _class_train(rng, classes[i], subtypes[i], pre, duration_s, pool)
            if classes[i] == "PkC_ss" and partner[i] >= 0:
                pause = rng.uniform(*pre.cs_pause_ms) * 1e-3
                t = apply_cs_pause(t, cs_trains[partner[i]], pause, rng=rng)
        drng = np.random.default_rng(unit_seeds[i].spawn(1)[0])
        flags = {k: bool(defects and drng.uniform() < r) for k, r in DEFECT_RATES.items()}
        for k, v in flags.items():
            defect_flags[k][i] = v
        t = _apply_defects(drng, t, duration_s, flags)
        # spike sorters report sample-quantised times
        t = np.round(t * wrate) / wrate
        if len(t) > 1:  # sorted already; drop spikes made simultaneous by the rounding
            t = t[np.concatenate([[True], np.diff(t) > 0])]
        end = offsets[i] + len(t)
        if end > len(buf):
            grown = np.empty(int(1.5 * end) + 100_000, dtype=np.float64)
            grown[: offsets[i]] = buf[: offsets[i]]
            buf = grown
        buf[offsets[i] : end] = t
        offsets[i + 1] = end
    flat = buf[: offsets[-1]]
    counts = np.diff(offsets)

    # waveforms on the 12 sites nearest each unit
    geom = neuropixels_geometry()
    t_ms = waveform_time_ms(wrate)
    wrng = np.random.default_rng(s_wave)
    d_all = np.sqrt(
        (geom[None, :, 0] - pos[:, None, 0]) ** 2
        + (geom[None, :, 1] - pos[:, None, 1]) ** 2
        + pos[:, None, 2] ** 2
    )  # (n, 384)
    near = np.argsort(d_all, axis=1, kind="stable")[:, :N_CHANNELS]
    electrodes = np.sort(near, axis=1)
    peak_elec = near[:, 0]
    peak_channels = np.argmax(electrodes == peak_elec[:, None], axis=1).astype(np.int64)
    waves = np.empty((n, len(t_ms), N_CHANNELS), dtype=np.float32)
    for i in range(n):
        phases, amp_v, space_um, noise_v, wave_sources[i] = _unit_waveform_params(
            wrng, classes[i], subtypes[i], pre, int(counts[i]), pool
        )
        waves[i] = render_waveforms(
            phases,
            t_ms,
            d_all[i, electrodes[i]],
            amplitude_v=amp_v,
            space_um=space_um,
            noise_v=noise_v,
            rng=wrng,
        )
        if classes[i] == "MFB":  # axonal spikes: positive-going or negative-going main deflection
            w = waves[i, :, peak_channels[i]]
            subtypes[i] = "positive" if w.max() > -w.min() else "negative"
    site_suffix, site_loc = site_layers(segs)
    layers = np.array([LAYER_SUFFIX_TO_C4[site_suffix[e]] for e in peak_elec])
    locations = site_loc[peak_elec]

    labelled = _choose_labelled(
        np.random.default_rng(s_labels), classes, partner, labelled_counts, labelled_fraction
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


def _choose_labelled(
    rng: np.random.Generator,
    classes: np.ndarray,
    partner: np.ndarray,
    labelled_counts: dict[str, int] | None,
    fraction: float,
) -> np.ndarray:
    n = len(classes)
    labelled = np.zeros(n, dtype=bool)
    for c in ("PkC_cs", *[c for c in C4_CLASSES if c != "PkC_cs"]):  # CS first: SS follow pairs
        idx = np.flatnonzero(classes == c)
        k = labelled_counts.get(c, 0) if labelled_counts is not None else int(round(fraction * len(idx)))
        if k > len(idx):
            raise InvalidValueError(
                f"labelled_counts asks for {k} labelled {c} units but only {len(idx)} are simulated; "
                f"raise class_counts[{c!r}] to at least {k}."
            )
        if k == 0:
            continue
        idx = rng.permutation(idx)
        if c == "PkC_ss":  # Purkinje cells identified by their CS pause are labelled as pairs
            paired = labelled[partner[idx].clip(0)] & (partner[idx] >= 0)
            idx = np.concatenate([idx[paired], idx[~paired]])
        labelled[idx[:k]] = True
    return labelled


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
        Seed; the same seed gives the same units, spikes, waveforms and file contents.
    labelled_fraction : float in [0, 1]
        Fraction of the units of each C4 class that get a ground-truth label.
    class_counts : dict, optional
        Units per class (``"GoC"``, ``"MLI"``, ``"MFB"``, ``"PkC_ss"``, ``"PkC_cs"``, ``"other"``);
        every PkC_cs unit is paired with a PkC_ss unit of the same cell.
    labelled_counts : dict, optional
        Exact number of labelled units per C4 class (overrides ``labelled_fraction``).
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
    )
    if path is not None:
        result.annotations_written = write_nwb(path, result, segs, compression=compression)
        result.path = Path(path)
        logger.info("wrote %s: %d units, %d spikes", path, len(result), len(result.spike_times_s))
    if not keep_spikes:
        result.spike_times_s = None
        result.spike_offsets = None
    return result


def _split(total: int, parts: int) -> np.ndarray:
    base = np.full(parts, total // parts)
    base[: total % parts] += 1
    return base


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
) -> list[SimulationResult]:
    """Simulate a labelled library split over several session files (C4's shape by default).

    The labelled units (``labelled_counts``, default C4's 69 PkC_ss / 58 PkC_cs / 27 MLI /
    18 GoC / 30 MFB) and ``n_unlabelled`` unlabelled units (all classes and "other", in the
    default mix) are spread evenly over ``n_sessions`` files ``<preset>_s<seed>_<k>.nwb``.
    Sessions use waveform rates cycling through ``waveform_rates_hz`` (default: mostly 30 kHz,
    some 25 and 40 kHz). Datasets are uncompressed by default: a library is usually generated at
    run time for training, where speed matters more than disk (``compression="gzip"`` to keep it).

    Returns
    -------
    list of SimulationResult
        One per session (spike times dropped unless ``keep_spikes``).
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
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create library folder {out_dir}: {exc}") from exc
    lab_split = {c: _split(k, n_sessions) for c, k in lab.items()}
    unl = _default_counts(n_unlabelled)
    unl_split = {c: _split(k, n_sessions) for c, k in unl.items()}
    results = []
    for s in range(n_sessions):
        counts = {c: int(unl_split[c][s] + (lab_split[c][s] if c in lab_split else 0)) for c in SIM_CLASSES}
        lab_s = {c: int(v[s]) for c, v in lab_split.items()}
        if counts["PkC_cs"] > counts["PkC_ss"]:  # keep pairs possible: add unlabelled SS units
            counts["PkC_ss"] = counts["PkC_cs"]
        res = simulate_recording(
            out_dir / f"{get_preset(preset).name}_s{seed}_{s:02d}.nwb",
            preset=preset,
            n_units=max(sum(counts.values()), 1),
            duration_s=duration_s,
            seed=seed * 1000 + s,
            class_counts=counts,
            labelled_counts=lab_s,
            defects=defects,
            waveform_rate_hz=waveform_rates_hz[s % len(waveform_rates_hz)],
            compression=compression,
            keep_spikes=keep_spikes,
        )
        results.append(res)
    return results
