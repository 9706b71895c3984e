"""Benchmark: import + prediction of a C4 ensemble in the published layout, against npyx's own path.

A random-weight 100-member ensemble is written as ``trained_models.tar.gz`` + ``hessians.pt``; the same
500 units (random C4-shaped features) are classified by

* nwb-celltype: ``nwb-celltype c4 import`` (read, validate, fit the prior precision once, save the
  bundle), ``load_bundle`` and ``predict_cell_types`` (members batched);
* npyx 4.3.1 (oracle environment, ``NWB_CELLTYPE_ORACLE_PYTHON``): ``load_ensemble(laplace=True)``
  (extract, build one model per member, re-fit every prior precision) + ``ensemble_predict`` +
  ``format_predictions`` — what ``predict_cell_types`` does each run.

Both measured in this run on this machine; labels are compared. Usage:
``NWB_CELLTYPE_ORACLE_PYTHON=.venv-oracle/bin/python python benchmarks/bench_c4.py [--members 100] [--units 500]``

``--large`` times instead the batched prediction of a random 2,000-member ensemble (every member its own
encoders, as in C4) on 1,000 units (``c4_member_outputs``: network + Laplace probit, member blocks),
against the plain per-member loop (one ``CNNCerebellum`` per member, as npyx predicts) measured in the
same run on ``--ref-members`` of the members and scaled to all of them; it also reports the achieved
GFLOP/s (~0.75 MFLOP per unit and member after pooling is folded into the convolutions), the rate of
a plain 2,048 x 2,048 single-precision matmul measured in the same run (one thread, and ``--threads``
single-threaded matmuls at once, as the prediction's worker threads run), and the process CPU time
(CPU / wall < threads means other jobs held the cores). ``--dtype float64`` times the double-precision
path instead.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import torch

NPYX_SCRIPT = textwrap.dedent(
    """
    import os, sys, time, json
    os.environ["TQDM_DISABLE"] = "1"
    os.environ["HOME"] = os.getcwd()
    import numpy as np, torch
    import torchvision_ops  # noqa: F401  (tests/oracle/torchvision_ops.py: npyx must import torchvision)
    torch.set_num_threads(int(sys.argv[3]))
    from torch.utils.data import DataLoader, TensorDataset
    from npyx.c4 import run_deep_classifier as rdc
    from npyx.c4.predict_cell_types import format_predictions
    X = np.load(sys.argv[1]); K = int(sys.argv[2])
    t0 = time.perf_counter()
    ens = rdc.load_ensemble("trained_models.tar.gz", device=torch.device("cpu"), n_classes=K, laplace=True)
    t1 = time.perf_counter()
    loader = DataLoader(TensorDataset(torch.tensor(X), torch.zeros(len(X))), batch_size=len(X))
    raw = rdc.ensemble_predict(ens, loader, device=torch.device("cpu"), method="raw")
    pred, _, _, votes, ratio = format_predictions(raw)
    t2 = time.perf_counter()
    np.save("npyx_pred.npy", pred)
    print(json.dumps({"load_s": t1 - t0, "predict_s": t2 - t1}))
    """
)


def write_published_layout(folder: Path, m: int, k: int, seed: int = 0) -> None:
    from nwb_celltype.model.network import CNNCerebellum

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    with tarfile.open(folder / "trained_models.tar.gz", "w:gz") as tar:
        for i in range(m):
            net = CNNCerebellum(n_classes=k)
            with torch.no_grad():
                for mod in net.modules():
                    if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                        mod.running_var.uniform_(0.001, 0.01)
                net.fc2.weight.mul_(5.0)
            buf = io.BytesIO()
            torch.save(net.state_dict(), buf)
            info = tarfile.TarInfo(f"models/model_{i}.pt")
            info.size = len(buf.getvalue())
            tar.addfile(info, io.BytesIO(buf.getvalue()))
    hess = []
    for _ in range(m):
        ev, evec = [], []
        for dims in ((k, 100), (k,)):
            ls, qs = [], []
            for d in dims:
                a = torch.randn(d, d + 3, generator=g)
                lam, q = torch.linalg.eigh(a @ a.T / (d + 3) * (20.0 if d == k else 0.5))
                ls.append(lam)
                qs.append(q)
            ev.append(ls)
            evec.append(qs)
        hess.append({"eigenvalues": ev, "eigenvectors": evec, "deltas": torch.zeros(2), "damping": False})
    torch.save(hess, folder / "hessians.pt")


#: Multiply-accumulates per unit and member of the batched network (avg pooling folded in): conv1 on
#: row-pair sums 8x5x46 outputs x 11 taps, conv2 16x23 x 80, ACG fc 368x200 + 200x10, waveform MLP
#: 90x600 + 600x300 + 300x10, head 20x100 + 100x5, Laplace features 104x104 + small.
MACS_PER_UNIT_MEMBER = 8 * 5 * 46 * 11 + 16 * 23 * 80 + 368 * 200 + 200 * 10 + 90 * 600 + 600 * 300
MACS_PER_UNIT_MEMBER += 300 * 10 + 20 * 100 + 100 * 5 + 104 * 104


def sgemm_rate(threads: int, seconds: float = 1.5, size: int = 2048) -> float:
    """GFLOP/s of ``threads`` concurrent single-threaded float32 matmuls (size x size x size)."""
    from concurrent.futures import ThreadPoolExecutor

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b

    def loop() -> int:
        torch.set_num_threads(1)  # OpenMP's thread count is per thread
        count, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            a @ b
            count += 1
        return count

    try:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            total = sum(f.result() for f in [pool.submit(loop) for _ in range(threads)])
        wall = time.perf_counter() - t0
    finally:
        torch.set_num_threads(old)
    return 2 * size**3 * total / wall / 1e9


def large(args: argparse.Namespace) -> None:
    """2,000 members x 1,000 units: batched prediction vs the per-member loop (on a subset, scaled)."""
    from nwb_celltype.model.bundle import ModelBundle
    from nwb_celltype.model.c4 import c4_member_outputs
    from nwb_celltype.model.ensemble_cnn import EnsembleCNN
    from nwb_celltype.model.laplace import KronPosterior
    from nwb_celltype.model.network import CNNCerebellum

    m, n, k, p = args.members, args.units, 5, 100
    torch.manual_seed(0)
    template = {key: v.to(torch.float32) for key, v in CNNCerebellum(n_classes=k).state_dict().items()}
    stacked = {
        key: v * (1.0 + 0.1 * torch.randn(m, *v.shape)) if v.dim() > 0 else v
        for key, v in template.items()
        if not key.endswith("num_batches_tracked")
    }
    for key in [key for key in stacked if key.endswith("running_var")]:
        stacked[key] = torch.rand(m, *template[key].shape) * 0.009 + 0.001
    t0 = time.perf_counter()
    ens = EnsembleCNN.from_stacked(stacked, m).eval()
    t_build = time.perf_counter() - t0
    eye = lambda d: torch.eye(d).expand(m, d, d).contiguous()  # noqa: E731
    post = KronPosterior(
        out_eigvals=torch.rand(m, k) * 20, out_eigvecs=eye(k), in_eigvals=torch.rand(m, p), in_eigvecs=eye(p),
        bias_eigvals=torch.rand(m, k), bias_eigvecs=eye(k), deltas=torch.zeros(m, 2),
        damping=torch.zeros(m, dtype=torch.bool), prior_precision=torch.ones(m),
    )  # fmt: skip
    bundle = ModelBundle(ensemble=ens, card={"name": "bench"}, laplace=post)
    rng = np.random.default_rng(1)
    acg = torch.from_numpy(
        (rng.gamma(2.0, 0.5, size=(n, 10, 101)) * rng.uniform(0.2, 5, size=(n, 1, 1))).astype(np.float32)
    )
    wvf = torch.from_numpy((rng.normal(size=(n, 90)) * 0.3).astype(np.float32))
    peak1, peak_n = sgemm_rate(1), sgemm_rate(args.threads)
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    logits, _ = c4_member_outputs(bundle, acg, wvf, None, dtype=args.dtype)
    t_batched = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
    logits = logits.float()

    r = min(args.ref_members, m)
    t0 = time.perf_counter()
    with torch.inference_mode():
        ref = []
        for i in range(r):
            net = CNNCerebellum(n_classes=k)
            net.load_state_dict(ens.member_state(i))
            ref.append(net.eval()(acg, wvf))
    t_ref = (time.perf_counter() - t0) * m / r
    err = max(float((logits[i] - ref[i]).abs().max() / ref[i].abs().max()) for i in range(r))
    rate = 2 * MACS_PER_UNIT_MEMBER * m * n / t_batched / 1e9
    print(
        f"C4 large ensemble: {m} members (own encoders), {n} units, {args.threads} threads, {args.dtype}, "
        f"torch {torch.__version__}, load average {os.getloadavg()[0]:.2f}"
    )
    print(f"load-equivalent EnsembleCNN.from_stacked: {t_build:.2f} s (O(1) validation)")
    print(
        f"plain float32 matmul 2048^3 in this run: {peak1:.1f} GFLOP/s on 1 thread, {peak_n:.1f} GFLOP/s "
        f"as {args.threads} single-threaded matmuls at once"
    )
    print(
        f"batched c4_member_outputs: {t_batched:.1f} s = {1e6 * t_batched / (m * n):.1f} us per unit-member, "
        f"{rate:.1f} GFLOP/s ({100 * rate / peak_n:.0f}% of the matmul rate); process CPU {cpu:.1f} s "
        f"({cpu / t_batched:.2f} cores busy)"
    )
    print(
        f"per-member CNNCerebellum loop ({r} members timed, scaled x{m / r:.0f}): {t_ref:.1f} s; "
        f"ratio loop/batched {t_ref / t_batched:.1f}x; max relative logit difference {err:.1e}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=None, help="default 100 (2000 with --large)")
    ap.add_argument("--units", type=int, default=None, help="default 500 (1000 with --large)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--large", action="store_true", help="time a 2,000-member x 1,000-unit prediction")
    ap.add_argument("--ref-members", type=int, default=100, help="members timed in the per-member loop")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="precision (--large)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.large:
        args.members = args.members or 2000
        args.units = args.units or 1000
        large(args)
        return
    args.members = args.members or 100
    args.units = args.units or 500
    k = 5
    from click.testing import CliRunner

    from nwb_celltype.cli import main as cli
    from nwb_celltype.features.config import FeatureSet
    from nwb_celltype.model.bundle import load_bundle
    from nwb_celltype.model.predict import predict_cell_types

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_published_layout(tmp, args.members, k)
        rng = np.random.default_rng(1)
        n = args.units
        acg = (rng.gamma(2.0, 0.5, size=(n, 10, 101)) * rng.uniform(0.2, 5, size=(n, 1, 1))).astype(
            np.float32
        )
        wvf = (rng.normal(size=(n, 90)) * 0.3).astype(np.float32)
        np.save(tmp / "X.npy", np.concatenate([acg.reshape(n, -1), wvf], axis=1))

        t0 = time.perf_counter()
        res = CliRunner().invoke(
            cli,
            ["c4", "import", str(tmp / "trained_models.tar.gz"), str(tmp / "hessians.pt"), "--variant", "base",
             "--out", str(tmp / "bundle")],
        )  # fmt: skip
        if res.exit_code != 0:
            raise SystemExit(res.output)
        t1 = time.perf_counter()
        bundle = load_bundle(tmp / "bundle")
        t2 = time.perf_counter()
        fs = FeatureSet(
            unit_ids=np.arange(n),
            acg=acg,
            waveform=wvf,
            layer=np.tile(np.eye(4, dtype=np.float32)[0], (n, 1)),
            stats={},
            usable=np.ones(n, bool),
            reasons=np.full(n, "", dtype=object),
            config=bundle.feature_config,
        )
        preds = predict_cell_types(bundle, fs)
        t3 = time.perf_counter()
        ours = {"import_s": t1 - t0, "load_s": t2 - t1, "predict_s": t3 - t2}

        oracle = os.environ.get("NWB_CELLTYPE_ORACLE_PYTHON") or str(
            Path.home() / ".cache/nwb-celltype/oracle-venv/bin/python"
        )
        npyx, npyx_failed = None, False
        if Path(oracle).exists():
            (tmp / "npyx_bench.py").write_text(NPYX_SCRIPT)
            proc = subprocess.run(
                [oracle, "npyx_bench.py", str(tmp / "X.npy"), str(k), str(args.threads)],
                cwd=tmp,
                capture_output=True,
                text=True,
                env={
                    **os.environ,
                    "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "tests" / "oracle"),
                },
            )
            if proc.returncode != 0:
                npyx_failed = True
                print(proc.stderr[-3000:], file=sys.stderr)
            else:
                npyx = json.loads(proc.stdout.strip().splitlines()[-1])
                npyx_pred = np.load(tmp / "npyx_pred.npy")
                ours_pred = np.argmax(preds.probabilities, axis=1)
                npyx["labels_equal"] = bool(np.array_equal(npyx_pred, ours_pred))

    per_unit = lambda s: 1e3 * s / n  # noqa: E731
    print(
        f"C4 ensemble: {args.members} members, {n} units, {args.threads} threads, torch {torch.__version__}"
    )
    print(
        f"nwb-celltype: import {ours['import_s']:.2f} s (once), load bundle {ours['load_s']:.2f} s, "
        f"predict {ours['predict_s']:.2f} s = {per_unit(ours['predict_s']):.2f} ms/unit; "
        f"load+predict {per_unit(ours['load_s'] + ours['predict_s']):.2f} ms/unit"
    )
    if npyx is None:
        why = (
            f"the npyx run with {oracle} failed (its error above)"
            if npyx_failed
            else f"no oracle python at {oracle} (set NWB_CELLTYPE_ORACLE_PYTHON, or `make oracle`)"
        )
        print(f"npyx reference not timed: {why}")
        return
    print(
        f"npyx 4.3.1:   load_ensemble(laplace=True) {npyx['load_s']:.2f} s, predict {npyx['predict_s']:.2f} s "
        f"= {per_unit(npyx['predict_s']):.2f} ms/unit; load+predict "
        f"{per_unit(npyx['load_s'] + npyx['predict_s']):.2f} ms/unit; labels equal: {npyx['labels_equal']}"
    )
    print(
        f"ratio npyx/ours: predict {npyx['predict_s'] / ours['predict_s']:.1f}x, "
        f"load+predict {(npyx['load_s'] + npyx['predict_s']) / (ours['load_s'] + ours['predict_s']):.1f}x"
    )


if __name__ == "__main__":
    main()
