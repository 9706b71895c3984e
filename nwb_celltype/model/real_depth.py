"""Recording depth: the discharge tables of a shorter recording (numpy).

The labelled real units are deep: their ACGs hold 10^4-10^6 pairs at lags 1-100 ms (a complex-spike
train a few hundred). A unit of a 10-minute recording, or one that fires slowly, has far fewer, and
its ACG and ISI shapes are noisier than any training unit's of its class. :func:`thin_counts`
makes such tables from deep ones: each counted pair and interval is kept with probability
``scale`` (binomial thinning), as if only that share of the recording had been made.
:func:`depth_copies` draws thinned copies of labelled units for training
(``RealModelConfig.depth_copies``), so that the members learn the classes at every depth a user's
file may have and the calibration sees shallow units too. benchmarks/bench_real_validation.py
scores held-out units thinned to fixed depths with the same function.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..features.discharge_inputs import WAVEFORM_PEAK as _PEAK

__all__ = ["acg_pairs", "depth_copies", "donate_waveforms", "stretch_waveforms", "thin_counts"]


def acg_pairs(acg_counts: np.ndarray) -> np.ndarray:
    """Depth of each unit: its ACG pair count over the lags given (n,)."""
    return np.nan_to_num(np.asarray(acg_counts, float)).sum(1)


def thin_counts(
    raw: Mapping[str, np.ndarray], scale: np.ndarray, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """``raw`` with its ``acg_counts`` and ``isi_counts`` binomially thinned, unit i by ``scale[i]``
    in [0, 1] (1 = unchanged); other arrays are passed through."""
    s = np.clip(np.asarray(scale, float), 0.0, 1.0)[:, None]
    out = dict(raw)
    for key in ("acg_counts", "isi_counts"):
        counts = np.rint(np.nan_to_num(np.asarray(raw[key], float))).astype(np.int64)
        out[key] = rng.binomial(np.maximum(counts, 0), s).astype(float)
    return out


def stretch_waveforms(waveform: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """Each waveform row stretched in time about its main peak (sample 30) by ``factor[i]``
    (> 1: wider), linearly interpolated; samples beyond the ends take the end values. NaN rows
    (no waveform) stay NaN."""
    w = np.asarray(waveform, float)
    t = np.arange(w.shape[1], dtype=float)
    out = np.empty_like(w)
    for i, (row, f) in enumerate(zip(w, np.asarray(factor, float), strict=True)):
        out[i] = np.interp(_PEAK + (t - _PEAK) / f, t, row)
    return out


def depth_copies(
    raw: Mapping[str, np.ndarray],
    rows: np.ndarray,
    k: int,
    min_pairs: float,
    seed: int,
    stretch_sd: float = 0.0,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``k`` thinned copies of each unit in ``rows`` whose ACG holds more than ``min_pairs`` pairs.

    Each copy's depth (ACG pairs) is drawn log-uniformly between ``min_pairs`` and the unit's own,
    so every order of magnitude a shorter recording could have is covered equally. With
    ``stretch_sd`` > 0, each copy's waveform is also stretched in time by a log-normal factor of
    that log-sd (:func:`stretch_waveforms`), as another lab's probe, filter or alignment may widen
    or narrow a class's spike; the thinning draws do not change with it.

    Returns
    -------
    source : (m,) int
        Row of ``raw`` each copy was made from.
    copies : dict
        The raw arrays of the copies (``acg_counts``, ``isi_counts``, ``waveform`` and, where
        ``raw`` has them, the availability masks), in the order of ``source``.
    """
    rows = np.asarray(rows, np.int64)
    depth = acg_pairs(np.asarray(raw["acg_counts"])[rows])
    deep = depth > min_pairs
    source = np.repeat(rows[deep], k)
    rng = np.random.default_rng([seed, 4])
    own = np.log(np.repeat(depth[deep], k))
    target = np.exp(rng.uniform(np.log(min_pairs), own))
    picked = {key: np.asarray(v)[source] for key, v in raw.items()}
    if stretch_sd > 0 and "waveform" in picked:
        factor = np.exp(np.random.default_rng([seed, 5]).normal(0.0, stretch_sd, len(source)))
        picked["waveform"] = stretch_waveforms(picked["waveform"], factor)
    return source, thin_counts(picked, target / np.exp(own), rng)


def donate_waveforms(
    waveform: np.ndarray,
    labels: np.ndarray,
    donor_waveform: np.ndarray,
    donor_labels: np.ndarray,
    share: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Waveforms of copies of labelled units, a ``share`` of them replaced by a donor's.

    Each row ``i`` (of class ``labels[i]``) is picked with probability ``share``; a picked row takes
    the waveform of a donor drawn uniformly from the donors of its class (rows whose class has no
    donor keep theirs). A "class" is any key: the trainer uses class and species, so that a mouse
    spike never goes with a macaque discharge. A donor is a labelled unit known by its waveform alone (a table without
    ACG/ISI, e.g. Hausser's): pairing its spike with another unit's discharge of the same class
    assumes that, within a class, the waveform says nothing more about the discharge - the same
    assumption as scoring held-out units with another lab's waveforms.

    Returns
    -------
    waveform : (n, s)
        The copies' waveforms.
    donated : (n,) bool
        Rows that took a donor's waveform.
    """
    out = np.array(waveform, dtype=float, copy=True)
    labels, donor_labels = np.asarray(labels).astype(str), np.asarray(donor_labels).astype(str)
    rng = np.random.default_rng([seed, 6])
    picked = rng.random(len(out)) < share
    draw = rng.random(len(out))  # one uniform per row: the donor drawn does not depend on the others
    donated = np.zeros(len(out), dtype=bool)
    for c in np.unique(labels):
        pool = np.flatnonzero(donor_labels == c)
        rows = np.flatnonzero(picked & (labels == c))
        if len(pool) and len(rows):
            out[rows] = np.asarray(donor_waveform, float)[pool[(draw[rows] * len(pool)).astype(int)]]
            donated[rows] = True
    return out, donated
