"""Fast batched inference of large C4 ensembles (issue 10): folded weights, tiling, O(1) loading."""

from __future__ import annotations

import pytest
import torch

import nwb_celltype.model.network as network
from nwb_celltype.errors import ModelMismatchError
from nwb_celltype.model.ensemble_cnn import EnsembleCNN
from nwb_celltype.model.network import CNNCerebellum

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _members(m: int, *, use_layer: bool, pool: str, seed: int) -> list[dict[str, torch.Tensor]]:
    """Random members with non-trivial batch-norm statistics (small variances, as in C4's models)."""
    torch.manual_seed(seed)
    states = []
    for _ in range(m):
        net = CNNCerebellum(n_classes=6 if use_layer else 5, use_layer=use_layer, pool=pool)
        with torch.no_grad():
            for mod in net.modules():
                if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                    mod.running_mean.normal_(0.0, 0.5)
                    mod.running_var.uniform_(0.05, 2.0)
                    mod.weight.uniform_(0.5, 1.5)
                    mod.bias.normal_(0.0, 0.3)
        states.append(net.eval().state_dict())
    return states


def _inputs(n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    acg = torch.rand(n, 10, 101, generator=g) * torch.rand(n, 1, 1, generator=g) * 4
    wvf = torch.randn(n, 90, generator=g) * 0.3
    layer = torch.eye(4)[torch.randint(0, 4, (n,), generator=g)]
    return acg, wvf, layer


@pytest.mark.parametrize(("pool", "use_layer"), [("avg", False), ("avg", True), ("max", False)])
@pytest.mark.parametrize(("work_units", "tile_members"), [(7, 2), (7, 3), (2048, 2), (2048, 8)])
def test_batched_forward_equals_each_member(pool, use_layer, work_units, tile_members, monkeypatch):
    states = _members(5, use_layer=use_layer, pool=pool, seed=3)
    ens = EnsembleCNN(states, pool=pool).eval()
    # 7 unit-members per tile, 2 (3) members per group: tiles of 3 (2) units with remainders
    # (13 units), member groups 2, 2, 1 (3, 2)
    monkeypatch.setattr(ens, "WORK_UNITS", work_units)
    monkeypatch.setattr(ens, "TILE_MEMBERS", tile_members)
    acg, wvf, layer = _inputs(13)
    lay = layer if use_layer else None
    with torch.inference_mode():
        logits, feats = ens(acg, wvf, lay)
    assert logits.shape == (5, 13, 6 if use_layer else 5) and logits.dtype == torch.float32
    assert feats.shape == (5, 13, 104 if use_layer else 100) and logits.is_contiguous()
    for i, sd in enumerate(states):
        net = CNNCerebellum(n_classes=logits.shape[2], use_layer=use_layer, pool=pool)
        net.load_state_dict(sd)
        with torch.no_grad():
            want, want_f = net.eval()(acg, wvf, lay), net.features(acg, wvf, lay)
        torch.testing.assert_close(logits[i], want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
        torch.testing.assert_close(feats[i], want_f, rtol=1e-4, atol=1e-4 * float(want_f.abs().max()))
        torch.testing.assert_close(
            ens.latent(acg, wvf)[i], net.latent(acg, wvf), rtol=1e-4, atol=1e-5 * float(want.abs().max())
        )


@pytest.mark.parametrize(("pool", "use_layer"), [("avg", False), ("avg", True), ("max", False)])
def test_float64_forward_equals_each_member_in_float64(pool, use_layer, monkeypatch):
    """In float64 the folded / tiled computation equals the plain network to ~1e-13: what separates
    the float32 results is float32 rounding, not a different computation."""
    states = _members(4, use_layer=use_layer, pool=pool, seed=12)
    ens = EnsembleCNN(states, pool=pool).eval().to(torch.float64)
    monkeypatch.setattr(ens, "WORK_UNITS", 10)
    acg, wvf, layer = _inputs(9, seed=13)
    lay = layer if use_layer else None
    with torch.inference_mode():
        logits, feats = ens(acg, wvf, lay)  # float32 inputs are converted to the weights' dtype
    assert logits.dtype == torch.float64 and feats.dtype == torch.float64
    for i, sd in enumerate(states):
        net = CNNCerebellum(n_classes=logits.shape[2], use_layer=use_layer, pool=pool)
        net.load_state_dict(sd)
        net.eval().to(torch.float64)
        with torch.no_grad():
            want = net(acg.double(), wvf.double(), None if lay is None else lay.double())
        scale = float(want.abs().max())
        torch.testing.assert_close(logits[i], want, rtol=0, atol=1e-11 * scale)


def test_posterior_to_dtype():
    from nwb_celltype.model.laplace import KronPosterior, predictive_variance

    m, k, p = 3, 5, 100
    g = torch.Generator().manual_seed(14)
    rot = lambda d: torch.linalg.qr(torch.randn(m, d, d, generator=g))[0].contiguous()  # noqa: E731
    post = KronPosterior(
        out_eigvals=torch.rand(m, k, generator=g) * 20, out_eigvecs=rot(k),
        in_eigvals=torch.rand(m, p, generator=g), in_eigvecs=rot(p),
        bias_eigvals=torch.rand(m, k, generator=g), bias_eigvecs=rot(k), deltas=torch.zeros(m, 2),
        damping=torch.tensor([True, False, True]), prior_precision=torch.rand(m, generator=g) + 0.5,
    )  # fmt: skip
    p64 = post.to(torch.float64)
    assert p64.in_eigvecs.dtype == torch.float64 and p64.prior_precision.dtype == torch.float64
    assert p64.damping.dtype == torch.bool and p64.damping.tolist() == [True, False, True]
    assert post.in_eigvecs.dtype == torch.float32  # a copy; the original is unchanged
    assert torch.equal(p64.in_eigvecs.float(), post.in_eigvecs)
    feats = torch.rand(m, 6, p, generator=g, dtype=torch.float64)
    v64 = predictive_variance(post, feats)  # converted to the features' dtype
    assert v64.dtype == torch.float64
    torch.testing.assert_close(v64, predictive_variance(p64, feats), rtol=0, atol=0)
    torch.testing.assert_close(predictive_variance(post, feats.float()), v64.float(), rtol=1e-5, atol=0)


def test_folded_weights_follow_buffer_changes():
    ens = EnsembleCNN(_members(2, use_layer=False, pool="avg", seed=4)).eval()
    acg, wvf, _ = _inputs(6)
    before = ens(acg, wvf)[0]
    with torch.no_grad():
        ens.fc2__bias.add_(1.0)  # in place: same storage, new version -> cache must be rebuilt
    after = ens(acg, wvf)[0]
    torch.testing.assert_close(after, before + 1.0)
    ens.to(torch.float64).to(torch.float32)  # new storages
    torch.testing.assert_close(ens(acg, wvf)[0], after)


def test_from_stacked_validates_once_not_per_member(monkeypatch):
    ens = EnsembleCNN(_members(40, use_layer=True, pool="avg", seed=5)).eval()
    stacked = ens.stacked_tensors()

    def forbidden(*args, **kwargs):
        raise AssertionError("from_stacked must not validate member by member")

    monkeypatch.setattr(network, "convert_npyx_state_dict", forbidden)
    again = EnsembleCNN.from_stacked(stacked, 40)
    assert again.n_members == 40 and again.use_layer and again.n_classes == 6 and not again.shared_encoders
    assert list(again.stacked_tensors()) == list(stacked)
    acg, wvf, layer = _inputs(5)
    torch.testing.assert_close(again(acg, wvf, layer)[0], ens(acg, wvf, layer)[0], rtol=0, atol=0)


def test_from_stacked_shared_encoders_round_trip():
    states = _members(3, use_layer=False, pool="avg", seed=6)
    for sd in states[1:]:
        for k in sd:
            if k.startswith(("acg_head.", "wvf_head.")):
                sd[k] = states[0][k].clone()
    ens = EnsembleCNN(states).eval()
    again = EnsembleCNN.from_stacked(ens.stacked_tensors(), 3)
    assert again.shared_encoders and again.n_encoders == 1
    acg, wvf, _ = _inputs(4)
    torch.testing.assert_close(again(acg, wvf)[0], ens(acg, wvf)[0], rtol=0, atol=0)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda t: t.pop("acg_head.fc1.weight"), r"missing \['acg_head.fc1.weight'\]"),
        (lambda t: t.update({"extra.weight": torch.zeros(4, 3)}), r"unexpected \['extra.weight'\]"),
        (lambda t: t.update({"fc1.bias": torch.zeros(4, 99)}), r"fc1.bias: expected \(M, 100\)"),
        (lambda t: t.update({"fc1.bias": torch.zeros(3, 100)}), "leading sizes"),
        (lambda t: t.update({"acg_head.conv1.bias": torch.zeros(1, 8)}), "encoder leading sizes"),
        (lambda t: t.pop("fc2.weight"), "lack 'fc2.weight'"),
    ],
)
def test_from_stacked_rejects_inconsistent_tensors(edit, match):
    stacked = EnsembleCNN(_members(4, use_layer=False, pool="avg", seed=7)).stacked_tensors()
    edit(stacked)
    with pytest.raises(ModelMismatchError, match=match):
        EnsembleCNN.from_stacked(stacked, 4)


def test_member_blocks_on_worker_threads_equal_sequential():
    from nwb_celltype.model.bundle import ModelBundle
    from nwb_celltype.model.c4 import c4_member_outputs
    from nwb_celltype.model.laplace import KronPosterior

    m, k, p = 7, 5, 100
    ens = EnsembleCNN(_members(m, use_layer=False, pool="avg", seed=8)).eval()
    g = torch.Generator().manual_seed(9)

    def rot(d: int) -> torch.Tensor:
        return torch.linalg.qr(torch.randn(m, d, d, generator=g))[0].contiguous()

    post = KronPosterior(
        out_eigvals=torch.rand(m, k, generator=g) * 20, out_eigvecs=rot(k),
        in_eigvals=torch.rand(m, p, generator=g), in_eigvecs=rot(p),
        bias_eigvals=torch.rand(m, k, generator=g), bias_eigvecs=rot(k), deltas=torch.zeros(m, 2),
        damping=torch.zeros(m, dtype=torch.bool), prior_precision=torch.ones(m),
    )  # fmt: skip
    bundle = ModelBundle(ensemble=ens, card={"name": "t"}, laplace=post)
    acg, wvf, _ = _inputs(11)
    threads = torch.get_num_threads()
    seq = c4_member_outputs(bundle, acg, wvf, None, member_block=2, unit_block=4, workers=1)
    par = c4_member_outputs(bundle, acg, wvf, None, member_block=2, unit_block=4, workers=3)
    assert torch.get_num_threads() == threads  # restored
    for a, b in zip(seq, par, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    seq64 = c4_member_outputs(
        bundle, acg, wvf, None, member_block=2, unit_block=4, workers=1, dtype="float64"
    )
    par64 = c4_member_outputs(
        bundle, acg, wvf, None, member_block=2, unit_block=4, workers=3, dtype="float64"
    )
    for a, b, c in zip(seq64, par64, seq, strict=True):
        assert a.dtype == torch.float64
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(c, a.float(), rtol=1e-4, atol=1e-4)
    assert all(t.dtype == torch.float32 for t in ens.buffers())  # converted block by block, not in place
    with torch.inference_mode():
        torch.testing.assert_close(seq[0], ens(acg, wvf)[0], rtol=1e-5, atol=1e-5)
