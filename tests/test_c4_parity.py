"""Parity with the C4 reference (npyx 4.3.1 + laplace-torch 0.1a2, run in the oracle environment).

Random-weight ensembles are built with npyx's own classes and calibrated with laplace-torch, saved in
the published layout with npyx's helpers (``save_ensemble`` + ``get_kronecker_hessian_attributes``),
predicted by npyx's own path (``load_ensemble(laplace=True)`` -> ``ensemble_predict`` ->
``format_predictions``), then imported with our CLI and predicted by us on the same inputs.
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from nwb_celltype.features.config import FeatureConfig
from nwb_celltype.features.selection import select_unit_c4

pytestmark = [pytest.mark.oracle, pytest.mark.slow]  # npyx imports + laplace fits: ~1-4 min

_MAKE_AND_PREDICT = r"""
import os, sys
os.environ["TQDM_DISABLE"] = "1"
os.environ["HOME"] = os.getcwd()  # npyx writes caches under HOME
import numpy as np, torch
from torch.utils.data import DataLoader, TensorDataset
from npyx.c4 import run_deep_classifier as rdc
from npyx.c4.dl_utils import CNNCerebellum, Encoder, load_acg_vae, load_waveform_encoder
from npyx.c4.predict_cell_types import format_predictions
from laplace import Laplace

out = {}
for variant, K, use_layer, seed in zip(variants_, ks_, use_layers_, seeds_):
  variant, K, use_layer, seed, M, n = str(variant), int(K), bool(use_layer), int(seed), int(m_), int(n_)
  work = os.path.join(str(root_), variant)
  os.makedirs(work, exist_ok=True)
  os.chdir(work)  # save_ensemble / load_ensemble use ./models
  torch.manual_seed(seed)
  rng = np.random.default_rng(seed)

  def make_x(n):
      acg = (rng.gamma(2.0, 0.5, size=(n, 1010)) * rng.uniform(0.2, 5, size=(n, 1))).astype(np.float32)
      wvf = (rng.normal(size=(n, 90)) * 0.3).astype(np.float32)
      parts = [acg, wvf]
      if use_layer:
          parts.append(np.eye(4, dtype=np.float32)[rng.integers(0, 4, n)])
      return np.concatenate(parts, axis=1)

  Xtr = torch.tensor(make_x(64))
  ytr = torch.tensor(rng.integers(0, K, 64))
  W2 = torch.randn(K, 100 + (4 if use_layer else 0), generator=torch.Generator().manual_seed(1)) * 1.5
  states, hs = [], []
  for i in range(M):
      acg_head = load_acg_vae(None, rdc.WIN_SIZE // 2, rdc.BIN_SIZE, initialise=False, pool="avg").encoder
      wv = load_waveform_encoder(rdc.WVF_ENCODER_ARGS_SINGLE, None, in_features=90, initialise=False)
      model = CNNCerebellum(acg_head, Encoder(wv.encoder, 10), K, use_layer=use_layer)
      bns = [md for md in model.modules() if isinstance(md, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d))]
      with torch.no_grad():
          for md in bns:
              md.momentum = 1.0  # running statistics = those of the training batch, as after training
              md.weight.uniform_(0.5, 1.5)
              md.bias.normal_(0, 0.2)
          model.train()
          model(Xtr)
          for md in bns:
              md.momentum = 0.1
          model.fc1.weight.mul_(2.0)
          model.fc2.weight.copy_(W2 + 0.3 * model.fc2.weight)
      model.eval()
      la = Laplace(model, "classification", subset_of_weights="last_layer", hessian_structure="kron",
                   last_layer_name="fc2", damping=bool(i % 2))
      la.fit(DataLoader(TensorDataset(Xtr, ytr), batch_size=32))
      hs.append(la.H)
      states.append(model.state_dict())
  torch.save(rdc.get_kronecker_hessian_attributes(*hs), "hessians.pt")
  rdc.save_ensemble(states, "trained_models.tar.gz")

  X = make_x(n)
  ens = rdc.load_ensemble("trained_models.tar.gz", device=torch.device("cpu"), n_classes=K,
                          use_layer=use_layer, laplace=True)
  loader = DataLoader(TensorDataset(torch.tensor(X), torch.zeros(n)), batch_size=n)
  raw = rdc.ensemble_predict(ens, loader, device=torch.device("cpu"), method="raw")  # (n, k, M)
  with torch.no_grad():
      logits = np.stack([la.model(torch.tensor(X)).numpy() for la in ens])
      # npyx's own network classes in double precision on the same weights and inputs
      # (after its float32 prediction above: .double() converts the members in place)
      logits64 = np.stack([la.model.double()(torch.tensor(X, dtype=torch.float64)).numpy() for la in ens])
  pred, top, _, votes, ratio = format_predictions(raw)
  res = dict(X=X, raw=raw, logits=logits, logits64=logits64, pred=pred, votes=votes, ratio=ratio, top=top,
             tau=np.array([float(la.prior_precision) for la in ens]))
  out.update({f"{variant}/{key}": v for key, v in res.items()})
"""


_VARIANTS = [
    ("base", 5, False),
    ("mli_clustering", 6, False),
    ("layer_information", 5, True),
    ("layer_information_mli_clustering", 6, True),
]


@pytest.fixture(scope="module")
def npyx_runs(oracle):
    """One oracle run (npyx imports once) that builds, saves and predicts an ensemble per variant."""
    return oracle.run(
        _MAKE_AND_PREDICT,
        variants_=np.array([v for v, _, _ in _VARIANTS]),
        ks_=np.array([k for _, k, _ in _VARIANTS]),
        use_layers_=np.array([u for _, _, u in _VARIANTS]),
        seeds_=np.array([7 + i for i in range(len(_VARIANTS))]),
        m_=np.array(4),
        n_=np.array(60),
        root_=np.array(str(oracle.workdir / "c4_models")),
    )


@pytest.mark.parametrize(("variant", "k", "use_layer"), _VARIANTS)
def test_imported_ensemble_matches_npyx_prediction(oracle, npyx_runs, tmp_path, variant, k, use_layer):
    from nwb_celltype.cli import main
    from nwb_celltype.model.bundle import load_bundle
    from nwb_celltype.model.c4 import predict_c4

    work = oracle.workdir / "c4_models" / variant
    ref = {key.split("/", 1)[1]: v for key, v in npyx_runs.items() if key.startswith(variant + "/")}
    res = CliRunner().invoke(
        main,
        [
            "c4",
            "import",
            str(work / "trained_models.tar.gz"),
            str(work / "hessians.pt"),
            "--variant",
            variant,
            "--out",
            str(tmp_path / "bundle"),
        ],
    )
    assert res.exit_code == 0, res.output
    bundle = load_bundle(tmp_path / "bundle")
    x = ref["X"]
    pred = predict_c4(
        bundle,
        x[:, :1010].reshape(-1, 10, 101),
        x[:, 1010:1100],
        x[:, 1100:] if use_layer else None,
        keep_members=True,
    )
    np.testing.assert_allclose(bundle.laplace.prior_precision.numpy(), ref["tau"], rtol=1e-4)
    # logits equal to 1e-5 (absolute): both networks in float64 on the same (float32) weights and
    # inputs, ours batched with pooling and batch norms folded, npyx's member by member
    assert ref["logits64"].dtype == np.float64
    pred64 = predict_c4(
        bundle,
        x[:, :1010].reshape(-1, 10, 101),
        x[:, 1010:1100],
        x[:, 1100:] if use_layer else None,
        keep_members=True,
        dtype="float64",
    )
    assert pred64.member_logits.dtype == np.float64
    np.testing.assert_allclose(pred64.member_logits, ref["logits64"], rtol=0, atol=1e-5)
    scale = max(1.0, float(np.abs(ref["logits64"]).max()))  # |logit| up to ~40-100 here
    assert np.abs(pred64.member_logits - ref["logits64"]).max() <= 1e-12 * scale  # same computation
    # float32 on both sides (C4's own path): float32 rounding, ~1e-6 relative to the logits' scale.
    # (npyx's own float32 logits differ from its float64 ones by up to ~3e-5 here: no float32
    # computation in another order can match them to 1e-5 absolute at this scale.)
    assert np.abs(pred.member_logits - ref["logits"]).max() <= 1e-5 * scale
    assert np.abs(ref["logits"] - ref["logits64"]).max() <= 1e-5 * scale
    # the float64 path keeps C4's decisions (npyx: float32)
    np.testing.assert_allclose(pred64.probabilities, ref["raw"].mean(axis=2), atol=1e-4)
    assert np.array_equal(pred64.predicted, ref["pred"])
    np.testing.assert_allclose(pred.member_probabilities, ref["raw"].transpose(2, 0, 1), atol=1e-4)
    np.testing.assert_allclose(pred.probabilities, ref["raw"].mean(axis=2), atol=1e-4)
    assert np.array_equal(pred.predicted, ref["pred"])
    np.testing.assert_allclose(pred.confidence, ref["ratio"], rtol=1e-4)
    assert np.array_equal(pred.votes[np.arange(len(pred.predicted)), pred.predicted], ref["votes"])
    # the fixture must exercise the decision rule: several labels, both sides of the threshold
    assert len(np.unique(ref["pred"])) >= 2
    assert 0 < int((ref["ratio"] >= 2).sum()) < len(ref["ratio"])
    kept = ref["ratio"] >= 2  # npyx drops these rows from its TSVs; we label them "unclassified"
    assert np.all((pred.labels == "unclassified") == ~kept)
    assert list(pred.labels[kept]) == [bundle.classes[i] for i in ref["pred"][kept]]


_NPYX_SELECTION = r"""
import os
os.environ["HOME"] = os.getcwd()
import numpy as np
import npyx.spk_t as S

keep, good = [], []
for u in range(len(offsets) - 1):
    t = samples[offsets[u]:offsets[u + 1]].astype(np.int64)
    a = amplitudes[offsets[u]:offsets[u + 1]]
    S.trn = lambda dp, unit, *args, _t=t, **kw: _t.copy()
    S.load_amplitudes = lambda dp, unit, *args, _a=a, **kw: _a.copy()
    dp = os.path.join(os.getcwd(), f"dp_sel_{u}")
    os.makedirs(dp, exist_ok=True)
    if len(t) < 100:  # C4's predict_cell_types checks this first
        keep.append(False); good.append(np.zeros(len(t), bool)); continue
    tf, m = S.trn_filtered(dp, u, period_m=None, fp_threshold=0.05, fn_threshold=0.05,
                           consecutive_n_seconds=180, again=True, save=False)
    ok = len(tf) >= 10
    keep.append(ok)
    good.append(np.isin(t, tf) if ok else np.zeros(len(t), bool))
out = dict(keep=np.array(keep), good=np.concatenate(good))
"""


def _selection_units(rng):
    """Spike trains (samples at 30 kHz) + amplitudes covering each branch of C4's selection."""
    fs = 30000

    def poisson(rate, dur, refr_s=0.002, start=0.0):
        isi = rng.exponential(1 / rate, size=int(rate * dur * 1.3) + 10) + refr_s
        t = start + np.cumsum(isi)
        return t[t < start + dur]

    def contaminate(t, t0, t1, rate):
        extra = rng.uniform(t0, t1, size=int(rate * (t1 - t0)))
        return np.sort(np.concatenate([t, extra]))

    units = []
    t = poisson(15, 600)
    units.append((t, rng.normal(100, 12, len(t))))  # clean: kept
    t = contaminate(poisson(15, 600), 0, 600, 8)
    units.append((t, rng.normal(100, 12, len(t))))  # contaminated everywhere: rejected
    t = contaminate(poisson(15, 600), 200, 330, 10)
    units.append((t, rng.normal(100, 12, len(t))))  # contaminated 200-330 s: partly good
    t = poisson(15, 600)
    a = rng.normal(100, 12, len(t))
    first = t < 300
    a[first] = np.where(a[first] < 100, 100 + (100 - a[first]), a[first])  # amplitudes cut below the mean
    units.append((t, a))  # amplitude cut-off in the first half
    t = poisson(15, 170)
    units.append((t, rng.normal(100, 12, len(t))))  # too short: rejected
    t = poisson(0.8, 300)
    units.append((t, rng.normal(100, 12, len(t))))  # <= 300 spikes: rejected
    t = poisson(20, 4)
    units.append((t, rng.normal(100, 12, len(t))))  # < 100 spikes
    out = []
    for t, a in units:
        s = np.unique(np.round(t * fs).astype(np.int64))
        out.append((s, a[: len(s)]))
    return out


def test_unit_selection_matches_npyx(oracle):
    rng = np.random.default_rng(11)
    units = _selection_units(rng)
    samples = np.concatenate([s for s, _ in units])
    amps = np.concatenate([a for _, a in units])
    offsets = np.r_[0, np.cumsum([len(s) for s, _ in units])]
    ref = oracle.run(_NPYX_SELECTION, samples=samples, amplitudes=amps, offsets=offsets)
    cfg = FeatureConfig(c4_unit_selection=True)
    keep = []
    good = []
    for s, a in units:
        r = select_unit_c4(s / 30000.0, a, cfg)
        keep.append(r.keep)
        good.append(r.good_spikes)
        assert r.amplitude_cutoff_applied
    assert keep == list(ref["keep"])
    assert np.array_equal(np.concatenate(good), ref["good"])
    # the fixture covers kept, rejected and partly good units
    assert keep[0] and not keep[1] and not keep[4] and not keep[5] and not keep[6]
    g2 = good[2]
    assert keep[2] and 0 < g2.sum() < len(g2)


_NPYX_PIPELINE = r"""
import os
os.environ["TQDM_DISABLE"] = "1"
os.environ["HOME"] = os.getcwd()
import numpy as np, torch
from torch.utils.data import DataLoader, TensorDataset
import npyx.spk_t as S
import npyx.corr as corr
from npyx.datasets import preprocess_template
from npyx.c4 import run_deep_classifier as rdc
from npyx.c4.predict_cell_types import format_predictions

# NWB files carry no per-spike amplitudes: the amplitude test is skipped on both sides
S.estimate_bins = lambda x, rule: 10
S.gaussian_amp_est = lambda x, n_bins: (None, None, None, None, None, 0.0)
rows, feats = [], []
for u in range(len(offsets) - 1):
    t = samples[offsets[u]:offsets[u + 1]].astype(np.int64)
    t = t[np.r_[True, np.diff(t) > 0]] if len(t) else t  # npyx's trn drops duplicates
    if len(t) < 100:
        continue
    S.trn = lambda dp, unit, *args, _t=t, **kw: _t.copy()
    S.load_amplitudes = lambda dp, unit, *args, _n=len(t), **kw: np.ones(_n)
    dp = os.path.join(os.getcwd(), f"dp_e2e_{u}")
    os.makedirs(dp, exist_ok=True)
    tf, _ = S.trn_filtered(dp, u, period_m=None, fp_threshold=0.05, fn_threshold=0.05,
                           consecutive_n_seconds=180, again=True, save=False)
    if len(tf) < 10:
        continue
    w = preprocess_template(waveforms[u], original_sampling_rate=float(rate), peak_sign="negative")
    _, acg = corr.crosscorr_vs_firing_rate(tf, tf, 2000, 1)
    acg, _ = corr.convert_acg_log(acg, 1, 2000)
    # npyx 4.3.1's convert_acg_log returns both halves (10, 201); its predict_cell_types ravels that
    # and crashes in the model (2,010 + 90 inputs). The models take lag 0 + positive lags (10, 101).
    rows.append(u)
    feats.append(np.concatenate([acg[:, 100:].ravel() * 10, w]))
os.chdir(str(models_dir))
ens = rdc.load_ensemble("trained_models.tar.gz", device=torch.device("cpu"), n_classes=5, laplace=True)
X = np.array(feats, dtype=np.float32)
raw = rdc.ensemble_predict(ens, DataLoader(TensorDataset(torch.tensor(X), torch.zeros(len(X))),
                           batch_size=len(X)), device=torch.device("cpu"), method="raw")
pred, _, _, votes, ratio = format_predictions(raw)
out = dict(rows=np.array(rows), pred=pred, ratio=ratio, votes=votes)
"""


def test_end_to_end_annotate_matches_npyx_pipeline(oracle, npyx_runs, tmp_path):
    """Simulated NWB recording: our annotate with the imported bundle vs npyx's pipeline (selection,
    features, ensemble) on the same spike trains and waveforms."""
    import h5py

    from nwb_celltype.annotate import annotate
    from nwb_celltype.io import read_units
    from nwb_celltype.model.bundle import save_bundle
    from nwb_celltype.model.c4 import import_c4_ensemble
    from nwb_celltype.nwb import read_annotations
    from nwb_celltype.simulate import simulate_recording

    rec = tmp_path / "rec.nwb"
    simulate_recording(rec, n_units=14, duration_s=400.0, seed=5, compression=None)
    work = oracle.workdir / "c4_models" / "base"
    bundle = import_c4_ensemble(work / "trained_models.tar.gz", work / "hessians.pt", variant="base")
    save_bundle(bundle, tmp_path / "bundle")
    result = annotate(str(rec), model=str(tmp_path / "bundle"), out=tmp_path / "out.nwb")
    with h5py.File(tmp_path / "out.nwb", "r") as f:
        ours = read_annotations(f)
    rec_ours = next(v for k, v in ours.items() if k.endswith(result.table_name))

    batches = list(read_units(str(rec)))
    times = np.concatenate([b.spike_times_s for b in batches])
    counts = np.concatenate([b.spike_counts for b in batches])
    wave = np.concatenate([b.waveforms for b in batches])
    ref = oracle.run(
        _NPYX_PIPELINE,
        samples=np.round(times * 30000).astype(np.int64),
        offsets=np.r_[0, np.cumsum(counts)],
        waveforms=wave.astype(np.float64),
        rate=np.array(batches[0].waveform_rate_hz),
        models_dir=np.array(str(work)),
    )
    order = np.argsort(rec_ours.unit_indices)
    labels = rec_ours.labels[order]
    classified_by_npyx = np.zeros(len(labels), bool)
    classified_by_npyx[ref["rows"]] = True
    # same units selected (npyx drops the others; we write them as not_classifiable with a reason)
    assert np.array_equal(labels != "not_classifiable", classified_by_npyx)
    assert classified_by_npyx.sum() >= 5
    want = np.array(
        [
            bundle.classes[p] if r >= 2 else "unclassified"
            for p, r in zip(ref["pred"], ref["ratio"], strict=True)
        ],
        dtype=object,
    )
    assert list(labels[ref["rows"]]) == list(want)
