"""The units of one simulated recording, drawn step by step for :func:`simulate_units`: classes in
table order with their Purkinje pairs, places on the probe, spike trains with recording defects,
mean waveforms on the sites nearest each unit, and which units carry a ground-truth label."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidValueError
from ..vocabulary import C4_CLASSES
from ._nwb import site_layers
from ._params import OTHER, OTHER_KIND_P, OTHER_KINDS, SIM_CLASSES, Preset
from ._result import DEFECT_RATES, N_CHANNELS
from ._spikes import add_refractory_violations, apply_amplitude_cutoff, apply_cs_pause
from ._unit import _class_train, _unit_waveform_params
from ._waveforms import LAYER_SUFFIX_TO_C4, neuropixels_geometry, render_waveforms, waveform_time_ms

# --------------------------------------------------------------------------------------------
# classes and places


def _draw_classes(rng: np.random.Generator, class_counts: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Class of each unit in table order, and the kind of each "other" unit ("" for the rest)."""
    classes = np.concatenate([np.full(class_counts.get(c, 0), c, dtype=object) for c in SIM_CLASSES])
    n = len(classes)
    if n == 0:
        raise InvalidValueError("no units requested: give n_units >= 1 or non-zero class_counts.")
    # table order is a random permutation (as spike sorters number clusters)
    classes = classes[rng.permutation(n)].astype(str)
    subtypes = np.full(n, "", dtype=object)
    is_other = classes == OTHER
    subtypes[is_other] = rng.choice(OTHER_KINDS, size=is_other.sum(), p=OTHER_KIND_P)
    return classes, subtypes.astype("<U16")


def _pair_purkinje(rng: np.random.Generator, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pair each PkC_cs unit with a PkC_ss unit of the same cell: partner rows and cell ids."""
    n = len(classes)
    partner = np.full(n, -1, dtype=np.int64)
    ss_idx = np.flatnonzero(classes == "PkC_ss")
    cs_idx = np.flatnonzero(classes == "PkC_cs")
    mates = rng.choice(ss_idx, size=len(cs_idx), replace=False) if len(cs_idx) else ss_idx[:0]
    partner[cs_idx] = mates
    partner[mates] = cs_idx
    cell_ids = np.arange(n, dtype=np.int64)
    cell_ids[cs_idx] = mates
    return partner, cell_ids


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


# --------------------------------------------------------------------------------------------
# spike trains


def _apply_defects(
    rng: np.random.Generator, t: np.ndarray, duration_s: float, flags: dict[str, bool]
) -> np.ndarray:
    """Apply the recording defects named in ``flags`` to a spike train (draws from ``rng``)."""
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


def _discharge(
    rng: np.random.Generator,
    cls: str,
    subtype: str,
    cs_train: np.ndarray | None,
    pre: Preset,
    duration_s: float,
    pool: dict,
) -> tuple[np.ndarray, float, str]:
    """One unit's spike train, rate and source unit; a paired PkC_ss pauses after its cell's CS."""
    t, rate, source = _class_train(rng, cls, subtype, pre, duration_s, pool)
    if cs_train is not None:
        pause = rng.uniform(*pre.cs_pause_ms) * 1e-3
        t = apply_cs_pause(t, cs_train, pause, rng=rng)
    return t, rate, source


def _with_defects(
    unit_seed: np.random.SeedSequence, t: np.ndarray, duration_s: float, defects: bool
) -> tuple[np.ndarray, dict[str, bool]]:
    """Draw a unit's recording defects (from a child of its seed) and apply them to its train."""
    drng = np.random.default_rng(unit_seed.spawn(1)[0])
    flags = {k: bool(defects and drng.uniform() < r) for k, r in DEFECT_RATES.items()}
    return _apply_defects(drng, t, duration_s, flags), flags


def _sample_quantised(t: np.ndarray, rate_hz: float) -> np.ndarray:
    """Spike times on the sample grid, as spike sorters report them (one spike per sample)."""
    t = np.round(t * rate_hz) / rate_hz
    if len(t) > 1:  # sorted already; drop spikes made simultaneous by the rounding
        t = t[np.concatenate([[True], np.diff(t) > 0])]
    return t


class _FlatSpikes:
    """All units' spike times in one flat array in table order (peak memory ~8 bytes per spike)."""

    def __init__(self, n: int, expected_spikes: float):
        # over-allocated (untouched pages cost no memory); grown only if the estimate is exceeded
        self.buf = np.empty(int(3 * expected_spikes) + 100_000, dtype=np.float64)
        self.offsets = np.zeros(n + 1, dtype=np.int64)

    def put(self, i: int, t: np.ndarray) -> None:
        """Store unit ``i``'s spike times after those of units ``0 .. i-1``."""
        end = self.offsets[i] + len(t)
        if end > len(self.buf):
            grown = np.empty(int(1.5 * end) + 100_000, dtype=np.float64)
            grown[: self.offsets[i]] = self.buf[: self.offsets[i]]
            self.buf = grown
        self.buf[self.offsets[i] : end] = t
        self.offsets[i + 1] = end

    def flat(self) -> np.ndarray:
        """The spike times of all units, concatenated in table order."""
        return self.buf[: self.offsets[-1]]


def _spike_trains(
    s_units: np.random.SeedSequence,
    classes: np.ndarray,
    subtypes: np.ndarray,
    partner: np.ndarray,
    class_counts: dict[str, int],
    pre: Preset,
    duration_s: float,
    pool: dict,
    defects: bool,
    rate_hz: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Every unit's sample-quantised spike train with its defects (one seed per unit, spawned from
    ``s_units``): flat spike times, offsets, rates, source units and defect flags."""
    n = len(classes)
    unit_seeds = s_units.spawn(n)
    rates = np.zeros(n)
    sources = np.full(n, "", dtype=object)  # the real unit each unit's fitted rows came from
    # one independent stream per unit. Complex spikes first (tiny): the simple spikes of the same
    # cell need them for their pause.
    cs_trains: dict[int, np.ndarray] = {}
    for j in np.flatnonzero(classes == "PkC_cs"):
        cs_trains[j], rates[j], sources[j] = _class_train(
            np.random.default_rng(unit_seeds[j]), "PkC_cs", "", pre, duration_s, pool
        )
    defect_flags = {k: np.zeros(n, dtype=bool) for k in DEFECT_RATES}
    expect = sum(pre.classes[c].rate_hz * n_c for c, n_c in class_counts.items()) * duration_s
    spikes = _FlatSpikes(n, expect)
    for i in range(n):
        if classes[i] == "PkC_cs":
            t = cs_trains[i]
        else:
            paired = classes[i] == "PkC_ss" and partner[i] >= 0
            cs_train = cs_trains[partner[i]] if paired else None
            rng = np.random.default_rng(unit_seeds[i])
            t, rates[i], sources[i] = _discharge(
                rng, classes[i], subtypes[i], cs_train, pre, duration_s, pool
            )
        t, flags = _with_defects(unit_seeds[i], t, duration_s, defects)
        for k, v in flags.items():
            defect_flags[k][i] = v
        spikes.put(i, _sample_quantised(t, rate_hz))
    return spikes.flat(), spikes.offsets, rates, sources, defect_flags


# --------------------------------------------------------------------------------------------
# waveforms


def _nearest_sites(pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each unit's distances to all sites, its N_CHANNELS nearest sites (ascending), peak site and
    peak channel (the peak site's index among those sites)."""
    geom = neuropixels_geometry()
    d_all = np.sqrt(
        (geom[None, :, 0] - pos[:, None, 0]) ** 2
        + (geom[None, :, 1] - pos[:, None, 1]) ** 2
        + pos[:, None, 2] ** 2
    )  # (n, 384)
    near = np.argsort(d_all, axis=1, kind="stable")[:, :N_CHANNELS]
    electrodes = np.sort(near, axis=1)
    peak_elec = near[:, 0]
    peak_channels = np.argmax(electrodes == peak_elec[:, None], axis=1).astype(np.int64)
    return d_all, electrodes, peak_elec, peak_channels


def _render_units(
    rng: np.random.Generator,
    classes: np.ndarray,
    subtypes: np.ndarray,
    pre: Preset,
    spike_counts: np.ndarray,
    pool: dict,
    rate_hz: float,
    d_all: np.ndarray,
    electrodes: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean waveforms (units, samples, N_CHANNELS) on each unit's sites, and their source units."""
    n = len(classes)
    t_ms = waveform_time_ms(rate_hz)
    waves = np.empty((n, len(t_ms), N_CHANNELS), dtype=np.float32)
    wave_sources = np.full(n, "", dtype=object)
    for i in range(n):
        phases, amp_v, space_um, noise_v, wave_sources[i] = _unit_waveform_params(
            rng, classes[i], subtypes[i], pre, int(spike_counts[i]), pool
        )
        waves[i] = render_waveforms(
            phases,
            t_ms,
            d_all[i, electrodes[i]],
            amplitude_v=amp_v,
            space_um=space_um,
            noise_v=noise_v,
            rng=rng,
        )
    return waves, wave_sources


def _name_mfb_polarity(
    classes: np.ndarray, subtypes: np.ndarray, waves: np.ndarray, peak_channels: np.ndarray
) -> None:
    """Set each MFB unit's subtype (in place) to the sign of its main deflection on the peak channel."""
    for i in np.flatnonzero(classes == "MFB"):  # axonal spikes: positive- or negative-going
        w = waves[i, :, peak_channels[i]]
        subtypes[i] = "positive" if w.max() > -w.min() else "negative"


def _peak_layers(segs: list[tuple], peak_elec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Layer (C4 vocabulary) and CCF-style location of each unit's peak site."""
    site_suffix, site_loc = site_layers(segs)
    return np.array([LAYER_SUFFIX_TO_C4[site_suffix[e]] for e in peak_elec]), site_loc[peak_elec]


# --------------------------------------------------------------------------------------------
# ground-truth labels


def _choose_labelled(
    rng: np.random.Generator,
    classes: np.ndarray,
    partner: np.ndarray,
    labelled_counts: dict[str, int] | None,
    fraction: float,
    spike_counts: np.ndarray,
    min_spikes: int,
) -> np.ndarray:
    """Which units carry a ground-truth label: per C4 class, ``labelled_counts`` or ``fraction`` of
    its units, drawn among those with at least ``min_spikes`` spikes (a PkC_cs unit also needs its
    PkC_ss unit to have them: it is identified by that unit's pause). Fewer are labelled where too
    few units qualify."""
    n = len(classes)
    labelled = np.zeros(n, dtype=bool)
    enough = np.asarray(spike_counts) >= min_spikes
    eligible = enough.copy()
    cs = np.flatnonzero(classes == "PkC_cs")
    eligible[cs] &= (partner[cs] >= 0) & enough[partner[cs].clip(0)]
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
        # filtered after the draw, which is as before: a qualifying unit keeps its label, and a unit
        # with too few spikes hands it to the next one drawn
        labelled[idx[eligible[idx]][:k]] = True
    return labelled
