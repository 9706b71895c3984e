"""Import of published-layout C4 ensembles, safety of loading, the Laplace mathematics against dense
references, and C4's decision rule. No npyx needed (see test_c4_parity.py for the oracle)."""

from __future__ import annotations

import io
import math
import tarfile

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from numpy_network import numpy_c4_forward

from nwb_celltype.errors import ModelError, ModelMismatchError, UnsafeFileError
from nwb_celltype.features.config import FeatureConfig, FeatureSet
from nwb_celltype.model.bundle import load_bundle, save_bundle
from nwb_celltype.model.c4 import (
    C4_HESSIANS_URLS,
    C4_MODELS_URLS,
    c4_member_outputs,
    import_c4_ensemble,
    predict_c4,
)
from nwb_celltype.model.ensemble_cnn import EnsembleCNN, StackedEnsemble
from nwb_celltype.model.laplace import (
    KronPosterior,
    fit_prior_precision,
    log_marginal_likelihood,
    posterior_from_hessians,
    predictive_variance,
    probit_probabilities,
)
from nwb_celltype.model.network import CNNCerebellum
from nwb_celltype.model.predict import predict_cell_types


def _psd(n: int, g: torch.Generator, scale: float = 1.0) -> torch.Tensor:
    a = torch.randn(n, n + 3, generator=g, dtype=torch.float64)
    return (a @ a.T / (n + 3) * scale).to(torch.float32)


def _kron_dict(k: int, p: int, g: torch.Generator, damping: bool = False) -> dict:
    out = {"eigenvalues": [], "eigenvectors": []}
    for group in ([_psd(k, g, 20.0), _psd(p, g, 0.5)], [_psd(k, g, 20.0)]):
        ls, qs = [], []
        for h in group:
            lam, q = torch.linalg.eigh(h)
            ls.append(lam)
            qs.append(q)
        out["eigenvalues"].append(ls)
        out["eigenvectors"].append(qs)
    out["deltas"] = torch.zeros(2)
    out["damping"] = damping
    return out


def _random_member(k: int, use_layer: bool, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    net = CNNCerebellum(n_classes=k, use_layer=use_layer)
    with torch.no_grad():
        for mod in net.modules():
            if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                mod.running_mean.normal_(0, 0.1)
                mod.running_var.uniform_(0.001, 0.01)  # small variances: the latent spread reaches the head
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0, 0.2)
        net.fc2.weight.mul_(5.0)
    return net.state_dict()


def _write_c4_files(tmp_path, m=3, k=5, use_layer=False, seed=0, hessian_extra=None):
    """Files in the published layout: tar.gz of models/model_{i}.pt + hessians.pt (list of dicts)."""
    g = torch.Generator().manual_seed(seed)
    states = [_random_member(k, use_layer, seed * 100 + i) for i in range(m)]
    archive = tmp_path / "trained_models.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("models")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        for i, st in enumerate(states):
            buf = io.BytesIO()
            torch.save(st, buf)
            data = buf.getvalue()
            info = tarfile.TarInfo(f"models/model_{i}.pt")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    p = 104 if use_layer else 100
    hess = [_kron_dict(k, p, g, damping=(i % 2 == 1)) for i in range(m)]
    if hessian_extra is not None:
        hess = hessian_extra(hess)
    hpath = tmp_path / "hessians.pt"
    torch.save(hess, hpath)
    return archive, hpath, states, hess


def _inputs(n: int, seed: int = 1, use_layer: bool = False):
    rng = np.random.default_rng(seed)
    acg = (rng.gamma(2.0, 0.5, size=(n, 10, 101)) * rng.uniform(0.2, 5, size=(n, 1, 1))).astype(np.float32)
    wvf = (rng.normal(size=(n, 90)) * 0.3).astype(np.float32)
    layer = np.eye(4, dtype=np.float32)[rng.integers(0, 4, n)]
    return acg, wvf, layer


def _dense_member_probs(state, hess, tau, acg, wvf, layer, use_layer, k, dtype=torch.float32):
    """Per-member reference: the network written in numpy (tests/numpy_network.py, float64) + dense
    float64 posterior and explicit Jacobians. The posterior covariance is the inverse of the re-assembled precision (float32), or
    (float64) the dense eigen-form ``(Q_A ⊗ Q_B) diag(1 / (λ_A λ_B + δ)) (Q_A ⊗ Q_B)ᵀ`` that
    laplace-torch uses: the two differ by ~1e-7 because float32 eigenvectors are orthogonal only to
    float32 precision."""
    lg, phi = numpy_c4_forward(state, acg, wvf, layer if use_layer else None)  # hand-written, float64
    logits, phi = torch.from_numpy(lg), torch.from_numpy(phi)
    (la, lb), (lc,) = hess["eigenvalues"]
    (qa, qb), (qc,) = hess["eigenvectors"]
    amat = (qa.double() * la.double()) @ qa.double().T
    bmat = (qb.double() * lb.double()) @ qb.double().T
    cmat = (qc.double() * lc.double()) @ qc.double().T
    p = phi.shape[1]
    pw = torch.kron(amat, bmat) + (hess["deltas"][0].double() + tau) * torch.eye(k * p, dtype=torch.float64)
    pb = cmat + (hess["deltas"][1].double() + tau) * torch.eye(k, dtype=torch.float64)
    pw_inv, pb_inv = torch.linalg.inv(pw), torch.linalg.inv(pb)
    if dtype == torch.float64:
        kq = torch.kron(qa.double(), qb.double())
        lam = torch.outer(la.double(), lb.double()).reshape(-1) + hess["deltas"][0].double() + tau
        pw_inv = (kq / lam) @ kq.T
        pb_inv = (qc.double() / (lc.double() + hess["deltas"][1].double() + tau)) @ qc.double().T
    var = torch.zeros_like(logits)
    for c in range(k):
        jw = torch.zeros(phi.shape[0], k * p, dtype=torch.float64)
        jw[:, c * p : (c + 1) * p] = phi
        var[:, c] = torch.einsum("ni,ij,nj->n", jw, pw_inv, jw) + pb_inv[c, c]
    probs = torch.softmax(logits / torch.sqrt(1 + math.pi / 8 * var), dim=-1)
    return logits.numpy(), probs.numpy()


# ---------------------------------------------------------------- Laplace mathematics


def test_predictive_variance_matches_dense_posterior():
    g = torch.Generator().manual_seed(3)
    k, p, m, n = 4, 7, 3, 5
    hs = [_kron_dict(k, p, g) for _ in range(m)]
    post = posterior_from_hessians(hs, n_classes=k, n_inputs=p)
    post.prior_precision = torch.tensor([0.3, 1.0, 4.0])
    feats = torch.randn(m, n, p, generator=g)
    var = predictive_variance(post, feats).double()
    for i in range(m):
        (la, lb), (lc,) = hs[i]["eigenvalues"]
        (qa, qb), (qc,) = hs[i]["eigenvectors"]
        tau = float(post.prior_precision[i])
        pw = torch.kron((qa * la) @ qa.T, (qb * lb) @ qb.T).double() + tau * torch.eye(
            k * p, dtype=torch.float64
        )
        pb = ((qc * lc) @ qc.T).double() + tau * torch.eye(k, dtype=torch.float64)
        for c in range(k):
            j = torch.zeros(n, k * p, dtype=torch.float64)
            j[:, c * p : (c + 1) * p] = feats[i].double()
            want = torch.einsum("ni,ij,nj->n", j, torch.linalg.inv(pw), j) + torch.linalg.inv(pb)[c, c]
            np.testing.assert_allclose(var[i, :, c].numpy(), want.numpy(), rtol=2e-4)


def test_log_marginal_likelihood_matches_dense_logdet():
    g = torch.Generator().manual_seed(4)
    k, p = 3, 6
    hs = [_kron_dict(k, p, g)]
    post = posterior_from_hessians(hs, n_classes=k, n_inputs=p)
    w, b = torch.randn(1, k, p, generator=g), torch.randn(1, k, generator=g)
    tau = 0.7
    got = float(log_marginal_likelihood(post, torch.tensor([tau]), w, b)[0])
    (la, lb), (lc,) = hs[0]["eigenvalues"]
    (qa, qb), (qc,) = hs[0]["eigenvectors"]
    pw = torch.kron((qa * la) @ qa.T, (qb * lb) @ qb.T).double() + tau * torch.eye(k * p, dtype=torch.float64)
    pb = ((qc * lc) @ qc.T).double() + tau * torch.eye(k, dtype=torch.float64)
    theta = torch.cat([w.flatten(), b.flatten()]).double()
    n_par = k * p + k
    want = -0.5 * (torch.logdet(pw) + torch.logdet(pb) - n_par * math.log(tau) + tau * theta @ theta)
    assert got == pytest.approx(float(want), rel=1e-5)


def test_prior_precision_fit_equals_torch_adam_per_member():
    g = torch.Generator().manual_seed(5)
    k, p, m = 5, 100, 4
    post = posterior_from_hessians([_kron_dict(k, p, g) for _ in range(m)], n_classes=k, n_inputs=p)
    w, b = torch.randn(m, k, p, generator=g) * 0.3, torch.randn(m, k, generator=g)
    tau = fit_prior_precision(post, w, b).clone()
    for i in range(m):  # laplace-torch's loop: one torch.optim.Adam per member
        sub = post.subset(slice(i, i + 1))
        log_t = torch.zeros(1, requires_grad=True)
        opt = torch.optim.Adam([log_t], lr=0.1)
        for _ in range(100):
            opt.zero_grad()
            (-log_marginal_likelihood(sub, log_t.exp(), w[i : i + 1], b[i : i + 1])).sum().backward()
            opt.step()
        assert float(tau[i]) == pytest.approx(float(log_t.detach().exp()), rel=1e-6)
    assert torch.all(tau > 0)


def test_probit_reduces_to_softmax_without_variance():
    logits = torch.randn(2, 3, 5)
    np.testing.assert_allclose(
        probit_probabilities(logits, torch.zeros_like(logits)), torch.softmax(logits, -1), rtol=1e-6
    )


def _feature_set(bundle, acg, wvf, layer) -> FeatureSet:
    """C4-shaped inputs as the FeatureSet that ``predict_cell_types`` takes."""
    n = len(acg)
    return FeatureSet(
        unit_ids=np.arange(n),
        acg=acg,
        waveform=wvf,
        layer=layer,
        stats={},
        usable=np.ones(n, bool),
        reasons=np.full(n, "", dtype=object),
        config=bundle.feature_config,
    )


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda h: {"eigenvalues": h["eigenvalues"]}, "eigenvectors"),
        (
            lambda h: {**h, "eigenvalues": [h["eigenvalues"][0]], "eigenvectors": [h["eigenvectors"][0]]},
            "two",
        ),
        (lambda h: {**h, "deltas": torch.zeros(3)}, "deltas"),
        (
            lambda h: {
                **h,
                "eigenvalues": [[h["eigenvalues"][0][0][:2], h["eigenvalues"][0][1]], h["eigenvalues"][1]],
            },
            "Linear",
        ),
    ],
)
def test_posterior_from_hessians_rejects_bad_structures(mutate, match):
    h = _kron_dict(3, 4, torch.Generator().manual_seed(0))
    with pytest.raises(ModelMismatchError, match=match):
        posterior_from_hessians([mutate(h)], n_classes=3, n_inputs=4)


def test_posterior_tensors_round_trip_and_check():
    post = posterior_from_hessians(
        [_kron_dict(3, 4, torch.Generator().manual_seed(0))], n_classes=3, n_inputs=4
    )
    with pytest.raises(ModelError, match="not been fitted"):
        post.to_tensors()
    post.prior_precision = torch.tensor([2.0])
    again = KronPosterior.from_tensors(post.to_tensors())
    assert torch.equal(again.in_eigvecs, post.in_eigvecs)
    t = post.to_tensors()
    t["deltas"] = torch.zeros(1, 3)
    with pytest.raises(ModelMismatchError, match="deltas"):
        KronPosterior.from_tensors(t)


# ---------------------------------------------------------------- import + prediction


@pytest.mark.parametrize(
    ("variant", "k", "use_layer"), [("base", 5, False), ("layer_information_mli_clustering", 6, True)]
)
def test_import_predict_matches_unbatched_dense_reference(tmp_path, variant, k, use_layer):
    archive, hpath, states, hess = _write_c4_files(tmp_path, m=3, k=k, use_layer=use_layer)
    bundle = import_c4_ensemble(archive, hpath, variant=variant)
    save_bundle(bundle, tmp_path / "bundle")
    bundle = load_bundle(tmp_path / "bundle")
    card = bundle.card
    assert card["citation"].startswith("Beau")
    assert card["c4"]["variant"] == variant and card["c4"]["member_indices"] == [0, 1, 2]
    assert len(card["c4"]["sources"]["trained_models"]["sha256"]) == 64
    assert card["c4"]["sources"]["hessians"]["url"] == C4_HESSIANS_URLS[variant]
    assert card["calibration"]["damping_flags"] == [False, True]
    assert bundle.feature_config.c4_unit_selection
    assert bundle.uses_layer == use_layer and bundle.n_members == 3

    acg, wvf, layer = _inputs(40, use_layer=use_layer)
    pred = predict_c4(bundle, acg, wvf, layer, keep_members=True)
    tau = bundle.laplace.prior_precision.double()
    ref_p = []
    for i in range(3):
        lg, pr = _dense_member_probs(states[i], hess[i], float(tau[i]), acg, wvf, layer, use_layer, k)
        np.testing.assert_allclose(pred.member_logits[i], lg, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(pred.member_probabilities[i], pr, atol=1e-5)
        ref_p.append(pr)
    ref_p = np.stack(ref_p)
    mean = ref_p.mean(0)
    np.testing.assert_allclose(pred.probabilities, mean, atol=1e-5)
    assert np.array_equal(pred.predicted, mean.argmax(1))
    srt = np.sort(mean, axis=1)
    np.testing.assert_allclose(pred.confidence, srt[:, -1] / srt[:, -2], rtol=1e-4)
    want_votes = np.stack([(ref_p.argmax(2) == c).sum(0) for c in range(k)], axis=1)
    assert np.array_equal(pred.votes, want_votes)
    low = pred.confidence < 2
    assert set(pred.labels[low]) <= {"unclassified"}
    assert all(
        lbl == bundle.classes[i] for lbl, i in zip(pred.labels[~low], pred.predicted[~low], strict=True)
    )

    # the generic entry point dispatches C4 bundles to the same computation
    fs = _feature_set(bundle, acg, wvf, layer)
    preds = predict_cell_types(bundle, fs)
    np.testing.assert_allclose(preds.probabilities, pred.probabilities, atol=1e-6)
    assert np.array_equal(preds.votes, pred.votes)
    assert list(preds.labels) == list(pred.labels)


@pytest.mark.parametrize(("k", "use_layer"), [(5, False), (6, True)])
def test_float64_prediction_matches_float64_reference(tmp_path, k, use_layer):
    """dtype=float64 runs the batched network (folded pooling / batch norms) and the Kronecker
    posterior in double precision: equal to the unbatched float64 network + dense posterior to ~1e-12."""
    variant = "layer_information_mli_clustering" if use_layer else "base"
    archive, hpath, states, hess = _write_c4_files(tmp_path, m=3, k=k, use_layer=use_layer, seed=2)
    bundle = import_c4_ensemble(archive, hpath, variant=variant)
    acg, wvf, layer = _inputs(30, seed=3, use_layer=use_layer)
    acg64 = acg.astype(np.float64) * (1 + 1e-9)  # float64 inputs stay float64 (not rounded to float32)
    pred = predict_c4(bundle, acg64, wvf, layer, keep_members=True, dtype="float64")
    pred32 = predict_c4(bundle, acg, wvf, layer, keep_members=True)
    assert pred.member_logits.dtype == np.float64 and pred32.member_logits.dtype == np.float32
    tau = bundle.laplace.prior_precision.double()
    ref_p = []
    for i in range(3):
        lg, pr = _dense_member_probs(
            states[i], hess[i], float(tau[i]), acg64, wvf, layer, use_layer, k, dtype=torch.float64
        )
        assert np.abs(pred.member_logits[i] - lg).max() <= 1e-10 * max(1.0, np.abs(lg).max())
        np.testing.assert_allclose(pred.member_probabilities[i], pr, rtol=0, atol=1e-10)
        ref_p.append(pr)
        # float32 (default) differs from the float64 reference by float32 rounding only
        assert np.abs(pred32.member_logits[i] - lg).max() <= 1e-5 * max(1.0, np.abs(lg).max())
    ref_p = np.stack(ref_p)
    np.testing.assert_allclose(pred.probabilities, ref_p.mean(0), rtol=0, atol=1e-10)
    assert np.array_equal(pred.votes, np.stack([(ref_p.argmax(2) == c).sum(0) for c in range(k)], axis=1))
    fs = _feature_set(bundle, acg64, wvf, layer)
    preds = predict_cell_types(bundle, fs, dtype=torch.float64)
    np.testing.assert_allclose(preds.probabilities, pred.probabilities, rtol=0, atol=1e-12)
    assert list(preds.labels) == list(pred.labels)
    for bad in ("float16", torch.bfloat16, "int8"):
        with pytest.raises(ModelError, match="dtype must be"):
            predict_c4(bundle, acg, wvf, layer, dtype=bad)
        with pytest.raises(ModelError, match="dtype must be"):
            predict_cell_types(bundle, fs, dtype=bad)
    # the bundle itself stays float32
    assert all(t.dtype == torch.float32 for t in bundle.ensemble.buffers())
    assert bundle.laplace.in_eigvecs.dtype == torch.float32


def test_member_blocks_equal_one_batch_and_plain_ensemble(tmp_path):
    archive, hpath, states, _ = _write_c4_files(tmp_path, m=5)
    bundle = import_c4_ensemble(archive, hpath, variant="base")
    acg, wvf, _ = _inputs(30)
    a, w = torch.from_numpy(acg), torch.from_numpy(wvf)
    lg1, pr1 = c4_member_outputs(bundle, a, w, None, member_block=2, unit_block=7)
    lg2, pr2 = c4_member_outputs(bundle, a, w, None, member_block=64, unit_block=256)
    torch.testing.assert_close(lg1, lg2, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(pr1, pr2, rtol=1e-5, atol=1e-6)
    plain = EnsembleCNN(states).eval()
    stacked = StackedEnsemble(plain.stacked_tensors(), plain.n_classes, plain.use_layer, plain.pool)
    with torch.no_grad():
        torch.testing.assert_close(stacked(a, w)[0], plain(a, w)[0], rtol=0, atol=0)


def test_cli_import_writes_bundle(tmp_path):
    from nwb_celltype.cli import main

    archive, hpath, _, _ = _write_c4_files(tmp_path, m=2)
    out = tmp_path / "b"
    res = CliRunner().invoke(
        main, ["c4", "import", str(archive), str(hpath), "--variant", "base", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert (out / "weights.safetensors").is_file() and (out / "model_card.json").is_file()
    assert load_bundle(out).card["c4"]["n_members"] == 2
    res = CliRunner().invoke(
        main,
        [
            "c4",
            "import",
            str(archive),
            str(hpath),
            "--variant",
            "mli_clustering",
            "--out",
            str(tmp_path / "c"),
        ],
    )
    assert res.exit_code == 1
    assert "outputs" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(main, ["c4", "fetch", "--variant", "layer_information"])
    assert res.exit_code == 0 and C4_MODELS_URLS["layer_information"] in res.output


@pytest.mark.network
def test_fetch_downloads_whole_files_or_nothing(tmp_path, monkeypatch):
    """``c4 fetch --dest`` against a loopback server: whole files arrive; a connection cut mid-body
    is an error of ours, leaves no partial file and keeps an earlier complete download."""
    from nwb_celltype.cli import main
    from nwb_celltype.model import c4 as c4_module
    from nwb_celltype.testing.servers import RangeServer

    rng = np.random.default_rng(0)
    root = tmp_path / "figshare"
    root.mkdir()
    (root / "models").write_bytes(rng.bytes(300_000))
    (root / "hessians").write_bytes(rng.bytes(50_000))
    with RangeServer(root) as srv:
        monkeypatch.setitem(c4_module.C4_MODELS_URLS, "base", srv.url_for("models"))
        monkeypatch.setitem(c4_module.C4_HESSIANS_URLS, "base", srv.url_for("hessians"))

        def fetch(dest):
            return CliRunner().invoke(main, ["c4", "fetch", "--variant", "base", "--dest", str(dest)])

        res = fetch(tmp_path / "ok")
        assert res.exit_code == 0, res.output
        assert (tmp_path / "ok" / "trained_models.tar.gz").read_bytes() == (root / "models").read_bytes()
        assert (tmp_path / "ok" / "hessians.pt").read_bytes() == (root / "hessians").read_bytes()
        srv.faults.only_ranges = False
        srv.faults.cut_after_bytes = 100_000
        res = fetch(tmp_path / "cut")
        assert res.exit_code != 0 and "Traceback" not in res.output
        assert "closed after 100000 of 300000 bytes" in res.output
        assert list((tmp_path / "cut").iterdir()) == []
        res = fetch(tmp_path / "ok")  # a cut download does not replace the complete file
        assert res.exit_code != 0
        assert (tmp_path / "ok" / "trained_models.tar.gz").read_bytes() == (root / "models").read_bytes()
        assert sorted(p.name for p in (tmp_path / "ok").iterdir()) == ["hessians.pt", "trained_models.tar.gz"]


class _Evil:
    """Unpickling this would create a file: proves that nothing is executed."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickled_code_is_refused_not_executed(tmp_path):
    marker = tmp_path / "executed"
    archive, _, _, _ = _write_c4_files(tmp_path, m=1)
    evil = tmp_path / "hessians.pt"
    torch.save([_Evil(marker)], evil)
    with pytest.raises(UnsafeFileError, match="arbitrary code"):
        import_c4_ensemble(archive, evil, variant="base")
    assert not marker.exists()

    # a member file with code inside the archive
    bad = tmp_path / "bad.tar.gz"
    buf = io.BytesIO()
    torch.save({"fc2.weight": _Evil(marker)}, buf)
    with tarfile.open(bad, "w:gz") as tar:
        info = tarfile.TarInfo("models/model_0.pt")
        info.size = len(buf.getvalue())
        tar.addfile(info, io.BytesIO(buf.getvalue()))
    (tmp_path / "good").mkdir()
    _, hpath, _, _ = _write_c4_files(tmp_path / "good", m=1)
    with pytest.raises(UnsafeFileError, match="model_0.pt"):
        import_c4_ensemble(bad, hpath, variant="base")
    assert not marker.exists()


def test_links_in_archive_are_refused(tmp_path):
    archive = tmp_path / "trained_models.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("models/model_0.pt")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    (tmp_path / "h").mkdir()
    _, hpath, _, _ = _write_c4_files(tmp_path / "h", m=1)
    with pytest.raises(UnsafeFileError, match="link"):
        import_c4_ensemble(archive, hpath, variant="base")


@pytest.mark.parametrize(
    ("case", "exc", "match"),
    [
        ("garbage_hessians", ModelError, "not a torch file"),
        ("garbage_archive", ModelError, "tar archive"),
        ("count_mismatch", ModelMismatchError, "2 members but"),
        ("layer_variant", ModelMismatchError, "layer information"),
        ("class_count", ModelMismatchError, "outputs"),
        ("unknown_variant", ModelError, "unknown C4 variant"),
        ("tensor_hessians", ModelMismatchError, "list of per-member"),
        ("missing", ModelError, "does not exist"),
    ],
)
def test_import_rejects_bad_inputs(tmp_path, case, exc, match):
    archive, hpath, _, hess = _write_c4_files(tmp_path, m=2)
    variant = "base"
    if case == "garbage_hessians":
        hpath.write_bytes(b"<html>not found</html>")
    elif case == "garbage_archive":
        archive.write_bytes(b"nope")
    elif case == "count_mismatch":
        torch.save(hess[:1], hpath)
    elif case == "layer_variant":
        variant = "layer_information"
    elif case == "class_count":
        variant = "mli_clustering"
    elif case == "unknown_variant":
        variant = "huge"
    elif case == "tensor_hessians":
        torch.save(torch.zeros(5, 5, 2), hpath)
    elif case == "missing":
        hpath = tmp_path / "nope.pt"
    with pytest.raises(exc, match=match):
        import_c4_ensemble(archive, hpath, variant=variant)


def test_predict_c4_input_checks(tmp_path):
    archive, hpath, _, _ = _write_c4_files(tmp_path, m=1, k=5, use_layer=True)
    bundle = import_c4_ensemble(archive, hpath, variant="layer_information")
    acg, wvf, layer = _inputs(3, use_layer=True)
    with pytest.raises(ModelMismatchError, match="layer"):
        predict_c4(bundle, acg, wvf, None)
    with pytest.raises(ModelMismatchError, match=r"\(n, 10, 101\)"):
        predict_c4(bundle, acg[:, :5], wvf, layer)
    assert FeatureConfig.from_dict(bundle.card["feature_config"]).c4_unit_selection
