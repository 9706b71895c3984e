"""The C4 network: architecture, parameter count, npyx state-dict compatibility, batched ensemble."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nwb_celltype.errors import ModelError, ModelMismatchError
from nwb_celltype.model.network import (
    CNNCerebellum,
    EnsembleCNN,
    build_network,
    convert_npyx_state_dict,
    count_parameters,
    expected_state_shapes,
)

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _warm(net: CNNCerebellum, seed: int) -> CNNCerebellum:
    """Give batch-norm layers non-trivial running statistics, then switch to eval."""
    g = torch.Generator().manual_seed(seed)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(
                torch.randn(32, 10, 101, generator=g),
                torch.randn(32, 90, generator=g),
                torch.eye(4)[torch.randint(0, 4, (32,), generator=g)],
            )
    return net.eval()


@pytest.mark.parametrize(("use_layer", "n_classes", "expected"), [(False, 5, 322_177), (True, 5, 322_605)])
def test_parameter_count(use_layer, n_classes, expected):
    # 322,177 is the count of C4's base variant (DESIGN.md); layer adds 4 to BN (8), fc1 (400), fc2 (20)
    assert count_parameters(build_network(n_classes, use_layer)) == expected


def test_state_dict_uses_c4_names_and_shapes():
    shapes = expected_state_shapes(5, False)
    assert shapes["acg_head.conv1.weight"] == (8, 1, 1, 10)
    assert shapes["acg_head.conv2.weight"] == (16, 8, 5, 1)
    assert shapes["acg_head.fc1.weight"] == (200, 368)
    assert shapes["acg_head.fc2.weight"] == (20, 200)
    assert shapes["wvf_head.encoder.0.weight"] == (600, 90)
    assert shapes["wvf_head.encoder.3.weight"] == (300, 600)
    assert shapes["wvf_head.encoder.6.weight"] == (20, 300)
    assert shapes["batch_norm.weight"] == (20,)
    assert shapes["fc1.weight"] == (100, 20)
    assert shapes["fc2.weight"] == (5, 100)
    lay = expected_state_shapes(5, True)
    assert (
        lay["batch_norm.weight"] == (24,) and lay["fc1.weight"] == (100, 24) and lay["fc2.weight"] == (5, 104)
    )


def test_convert_accepts_module_prefix_and_infers_variant():
    net = build_network(6, True)
    sd = {"module." + k: v for k, v in net.state_dict().items()}
    out = convert_npyx_state_dict(sd)
    assert set(out) == set(net.state_dict())


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda sd: sd.pop("acg_head.conv1.weight"), "missing keys"),
        (lambda sd: sd.__setitem__("extra.weight", torch.zeros(1)), "unexpected keys"),
        (lambda sd: sd.__setitem__("acg_head.fc1.weight", torch.zeros(200, 367)), "acg_head.fc1.weight"),
        (lambda sd: sd.pop("fc2.weight"), "not a C4 CNNCerebellum"),
    ],
)
def test_convert_rejects_bad_state(edit, match):
    sd = dict(build_network().state_dict())
    edit(sd)
    with pytest.raises(ModelMismatchError, match=match):
        convert_npyx_state_dict(sd)


@pytest.mark.parametrize("use_layer", [False, True])
@pytest.mark.parametrize("pool", ["avg", "max"])
def test_ensemble_matches_members(use_layer, pool):
    torch.manual_seed(0)
    nets = [_warm(CNNCerebellum(5, use_layer, pool), i) for i in range(3)]
    ens = EnsembleCNN([n.state_dict() for n in nets], pool=pool).eval()
    assert not ens.shared_encoders and ens.n_members == 3
    acg, wvf = torch.randn(17, 10, 101), torch.randn(17, 90)
    lay = torch.eye(4)[torch.randint(0, 4, (17,))]
    logits, feats = ens(acg, wvf, lay)
    with torch.no_grad():
        ref = torch.stack([n(acg, wvf, lay) for n in nets])
        ref_f = torch.stack([n.features(acg, wvf, lay) for n in nets])
    assert logits.shape == (3, 17, 5)
    assert feats.shape == (3, 17, 104 if use_layer else 100)
    torch.testing.assert_close(logits, ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(feats, ref_f, rtol=1e-4, atol=1e-5)
    # member_state gives back each member exactly
    for i, n in enumerate(nets):
        back = ens.member_state(i)
        for k, v in n.state_dict().items():
            if not k.endswith("num_batches_tracked"):
                torch.testing.assert_close(back[k], v)


def test_shared_encoders_are_stored_once():
    base = _warm(build_network(), 0)
    states = []
    for i in range(4):
        sd = {k: v.clone() for k, v in base.state_dict().items()}
        g = torch.Generator().manual_seed(i)
        sd["fc2.weight"] = torch.randn(sd["fc2.weight"].shape, generator=g)
        states.append(sd)
    ens = EnsembleCNN(states)
    assert ens.shared_encoders and ens.n_encoders == 1
    stacked = ens.stacked_tensors()
    assert stacked["acg_head.fc1.weight"].shape[0] == 1 and stacked["fc2.weight"].shape[0] == 4
    acg, wvf = torch.randn(9, 10, 101), torch.randn(9, 90)
    logits, _ = ens(acg, wvf)
    nets = [CNNCerebellum().eval() for _ in states]
    for n, sd in zip(nets, states, strict=True):
        n.load_state_dict(sd)
    with torch.no_grad():
        ref = torch.stack([n(acg, wvf) for n in nets])
    torch.testing.assert_close(logits, ref, rtol=1e-4, atol=1e-5)
    again = EnsembleCNN.from_stacked(stacked, 4)
    torch.testing.assert_close(again(acg, wvf)[0], logits)


def test_layer_network_requires_layer():
    net = build_network(use_layer=True).eval()
    with pytest.raises(ModelMismatchError, match="layer"):
        net(torch.zeros(2, 10, 101), torch.zeros(2, 90))
    ens = EnsembleCNN([net.state_dict()])
    with pytest.raises(ModelMismatchError, match="layer"):
        ens(torch.zeros(2, 10, 101), torch.zeros(2, 90))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"n_classes": 1}, "at least 2 classes"), ({"pool": "median"}, "pool")],
)
def test_bad_network_arguments(kwargs, match):
    with pytest.raises(ModelError, match=match):
        CNNCerebellum(**kwargs)


def test_empty_ensemble_is_an_error():
    with pytest.raises(ModelError, match="at least one member"):
        EnsembleCNN([])


@pytest.fixture(scope="module")
def npyx_models(oracle):
    """Randomly initialised npyx CNNCerebellum models (base and layer variants, built as npyx's
    load_ensemble builds them), their state dicts and logits on random inputs: one oracle run."""
    rng = np.random.default_rng(1)
    n = 11
    x = rng.normal(size=(n, 1010 + 90 + 4)).astype(np.float32)
    x[:, -4:] = np.eye(4, dtype=np.float32)[rng.integers(0, 4, n)]
    code = """
import torch
from npyx.c4.dl_utils import CNNCerebellum, Encoder, load_acg_vae, load_waveform_encoder
from npyx.c4.run_deep_classifier import WVF_ENCODER_ARGS_SINGLE
torch.manual_seed(0)
out = {}
for use_layer in (False, True):
    acg = load_acg_vae(None, 1000, 1, initialise=False, pool="avg", device=torch.device("cpu"))
    wvf = load_waveform_encoder(dict(WVF_ENCODER_ARGS_SINGLE), None, in_features=90, initialise=False)
    model = CNNCerebellum(acg.encoder, Encoder(wvf.encoder, 10), 5, use_layer=use_layer)
    xt = torch.from_numpy(x if use_layer else x[:, :-4])
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(xt + torch.randn_like(xt))
    model.eval()
    with torch.no_grad():
        out[f"{use_layer}/logits"] = model(xt).numpy()
    out[f"{use_layer}/n_params"] = np.array(sum(p.numel() for p in model.parameters()))
    out.update({f"{use_layer}/sd/" + k: v.numpy() for k, v in model.state_dict().items()})
"""
    return x, oracle.run(code, x=x)


@pytest.mark.oracle
@pytest.mark.parametrize("use_layer", [False, True])
def test_npyx_state_dict_loads_and_agrees(npyx_models, use_layer):
    """npyx's state dict loads into ours with strict key matching and gives the same logits, both as
    one network and inside the batched ensemble."""
    x, res = npyx_models
    n = x.shape[0]
    pre = f"{use_layer}/sd/"
    sd = {k.removeprefix(pre): torch.from_numpy(np.asarray(v)) for k, v in res.items() if k.startswith(pre)}
    net = CNNCerebellum(5, use_layer, "avg").eval()
    net.load_state_dict(convert_npyx_state_dict(sd), strict=True)
    assert int(res[f"{use_layer}/n_params"]) == count_parameters(net)
    xt = torch.from_numpy(x)
    acg, wvf = xt[:, :1010].reshape(n, 10, 101), xt[:, 1010:1100]
    lay = xt[:, -4:] if use_layer else None
    with torch.no_grad():
        ours = net(acg, wvf, lay)
    want = res[f"{use_layer}/logits"]
    np.testing.assert_allclose(ours.numpy(), want, rtol=1e-4, atol=1e-5)
    ens_logits, _ = EnsembleCNN([sd, sd]).eval()(acg, wvf, lay)
    np.testing.assert_allclose(ens_logits[1].numpy(), want, rtol=1e-4, atol=1e-5)


def test_member_probabilities_in_float64_for_own_bundles():
    """``dtype`` of the prediction path for bundles of our own training (softmax with temperature):
    float64 equals the float64 members, the bundle's float32 weights are left as they are."""
    from nwb_celltype.model.bundle import ModelBundle
    from nwb_celltype.model.predict import predict_member_probabilities

    torch.manual_seed(1)
    nets = [_warm(CNNCerebellum(5, False, "avg"), 10 + i) for i in range(2)]
    ens = EnsembleCNN([n.state_dict() for n in nets]).eval()
    bundle = ModelBundle(ensemble=ens, card={"name": "t"}, temperature=1.7)
    acg, wvf = torch.rand(11, 10, 101) * 3, torch.randn(11, 90) * 0.3
    lay = torch.zeros(11, 4)
    p64 = predict_member_probabilities(bundle, acg, wvf, lay, dtype="float64")
    p32 = predict_member_probabilities(bundle, acg, wvf, lay)
    assert p64.dtype == torch.float64 and p32.dtype == torch.float32
    with torch.no_grad():
        ref = torch.stack([torch.softmax(n.double()(acg.double(), wvf.double()) / 1.7, -1) for n in nets])
    torch.testing.assert_close(p64, ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(p32, ref.float(), rtol=0, atol=1e-5)
    assert all(t.dtype == torch.float32 for t in bundle.ensemble.buffers())
    with pytest.raises(ModelError, match="dtype must be"):
        predict_member_probabilities(bundle, acg, wvf, lay, dtype=torch.float16)
