"""The per-unit fit of the simulator's discharge model (``nwb_celltype.simulate._fit``): it leaves
its starting point for sharp refractory edges like real Purkinje cells', and the class prior of
sparse tables keeps their short-interval mass."""

from __future__ import annotations

import numpy as np

from nwb_celltype.simulate._fit import fit_discharge, shrink_to_class
from nwb_celltype.simulate._model import model_rate_hz, model_tables


def test_fit_finds_a_sharp_refractory_edge():
    """Tables of a fast unit whose intervals start abruptly at ~3.5 ms (k_d 35, as Hull's PkC_ss):
    the fit recovers the edge and the rate. An optimiser whose finite differences were too small
    for the model's grid stopped near its start (k_d 6, d 2 ms) on such tables."""
    p = np.array([0.005, 2.0, 3.5, 35.0, 1.0, 5.0, 0.3])
    isi, acg = model_tables(p)
    n = 2e5  # spikes: the counts of a long real recording, noise-free
    q, r2 = fit_discharge(acg * n, isi * n)
    assert r2 > 0.995
    assert q[3] > 15.0, q  # a steep refractory onset, not the start's 6
    assert abs(q[2] / p[2] - 1) < 0.2, q
    assert abs(model_rate_hz(q) / model_rate_hz(p) - 1) < 0.1
    mi, ma = model_tables(q)
    assert np.abs(ma / ma[60:].mean() - acg / acg[60:].mean()).max() < 0.1  # the ACG's peak too


def test_class_prior_keeps_short_intervals_of_sparse_tables():
    """Complex-spike-like tables: each unit has a handful of intervals, a few of them short, in
    different bins. Most units' bin is empty, so a per-bin median erased the short mass; the class
    shape (mean of the units' normalised tables) keeps it."""
    rng = np.random.default_rng(0)
    n_units = 40
    acg = np.zeros((n_units, 100))
    isi = np.zeros((n_units, 100))
    for u in range(n_units):
        isi[u, rng.integers(60, 100, size=12)] += 1  # long intervals
        isi[u, rng.integers(1, 10)] += 1  # one short interval (a spikelet)
        acg[u] = isi[u]
    short_frac = float(np.mean(isi[:, :10].sum(1) / isi.sum(1)))
    shrunk = shrink_to_class(acg, isi)
    empty = np.zeros((1, 100))
    prior_isi = shrunk[0][1] - isi[0]
    assert abs(prior_isi[:10].sum() / prior_isi.sum() - short_frac) < 1e-9
    assert np.median(isi[:, :10] / isi.sum(1, keepdims=True), axis=0).sum() == 0  # what a median gives
    assert len(shrink_to_class(empty, empty)) == 1  # no counts at all: a flat prior, no error
