"""Readiness of the npyx oracle environment: run with its Python (``python tests/oracle/ready.py``).

Imports exactly what the oracle tests import, checks that npyx's C4 classes are the real torch
modules (npyx swaps in stubs that raise on use when torch or torchvision fail to import), builds one
C4 network and fits laplace-torch's last-layer Kronecker Laplace on a tiny model, as the tests do.
Prints one JSON line of versions and exits 0; on any failure prints the reason and exits 1.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import traceback
from pathlib import Path


def check() -> dict:
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ["HOME"] = tempfile.mkdtemp(prefix="npyx-home-")  # npyx writes caches under HOME
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import torchvision_ops  # noqa: F401  (before torchvision: see its docstring)

    # isort: split
    # the imports of tests/test_features_parity.py, test_c4_parity.py and test_model_network.py
    import npyx.corr
    import npyx.spk_t
    import numpy as np
    import torch
    import torchvision
    from laplace import Laplace
    from npyx.c4 import dl_utils
    from npyx.c4 import run_deep_classifier as rdc
    from npyx.c4.dl_utils import CNNCerebellum, Encoder, load_acg_vae, load_waveform_encoder
    from npyx.c4.predict_cell_types import format_predictions  # noqa: F401
    from npyx.datasets import preprocess_template  # noqa: F401
    from torchvision import transforms  # noqa: F401  (npyx's import guard)

    if not getattr(dl_utils, "TORCH_AVAILABLE", False):
        raise RuntimeError("npyx.c4.dl_utils.TORCH_AVAILABLE is False: npyx replaced its C4 classes by stubs")
    for cls in (CNNCerebellum, Encoder):
        if not issubclass(cls, torch.nn.Module):
            raise RuntimeError(f"npyx's {cls.__name__} is a stub ({cls.__mro__}), not a torch module")
    for name in ("load_ensemble", "ensemble_predict", "save_ensemble", "get_kronecker_hessian_attributes"):
        if not callable(getattr(rdc, name, None)):
            raise RuntimeError(f"npyx.c4.run_deep_classifier.{name} is missing")
    for name in ("crosscorr_vs_firing_rate", "convert_acg_log"):
        if not callable(getattr(npyx.corr, name, None)):
            raise RuntimeError(f"npyx.corr.{name} is missing")
    if not callable(getattr(npyx.spk_t, "trn_filtered", None)):
        raise RuntimeError("npyx.spk_t.trn_filtered is missing")

    torch.manual_seed(0)
    acg = load_acg_vae(None, rdc.WIN_SIZE // 2, rdc.BIN_SIZE, initialise=False, pool="avg").encoder
    wvf = load_waveform_encoder(dict(rdc.WVF_ENCODER_ARGS_SINGLE), None, in_features=90, initialise=False)
    model = CNNCerebellum(acg, Encoder(wvf.encoder, 10), 5, use_layer=False).eval()
    x = torch.randn(4, 1010 + 90)
    with torch.no_grad():
        logits = model(x)
    if tuple(logits.shape) != (4, 5) or not torch.isfinite(logits).all():
        raise RuntimeError(f"npyx's CNNCerebellum gave {tuple(logits.shape)} logits")

    tiny = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    xs, ys = torch.randn(16, 3), torch.randint(0, 2, (16,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xs, ys), batch_size=8)
    la = Laplace(tiny, "classification", subset_of_weights="last_layer", hessian_structure="kron")
    la.fit(loader)
    p = la(xs[:2], link_approx="probit")
    if not np.allclose(p.sum(-1).detach().numpy(), 1.0):
        raise RuntimeError("laplace-torch's probit predictive does not sum to 1")

    import importlib.metadata as md

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "torchvision": torchvision.__version__,
        "torchvision_compiled_ops": torchvision.extension._has_ops(),
        "npyx": md.version("npyx"),
        "laplace-torch": md.version("laplace-torch"),
    }


if __name__ == "__main__":
    try:
        info = check()
    except BaseException:  # the reason goes to the caller
        print("npyx oracle environment is not ready:\n" + traceback.format_exc(), file=sys.stderr)
        sys.exit(1)
    print(json.dumps(info))
