"""Benchmark of the classifier (issue 6) on simulated libraries.

1. Simulated mouse library (C4's labelled counts + unlabelled units): 5-fold stratified CV of the
   whole training procedure; balanced accuracy at threshold 2 + fraction classified; baselines
   (logistic regression, width + rate rules) on the same folds.
2. Train on the mouse preset, test on the macaque preset (cross-species check).
3. Training time, 200 labelled + 3,000 unlabelled units, full default ensemble.
4. Inference throughput of the batched ensemble vs a Python loop over members (the reference, same
   run, same data, same weights).

Usage: python benchmarks/bench_model.py [--quick] [--out benchmarks/results/model.json]
Prints a ratio for each timing against its reference measured in the same run.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from nwb_celltype.features.config import FeatureSet
from nwb_celltype.model import TrainConfig, evaluate_model, predict_cell_types, train_model
from nwb_celltype.model.network import CNNCerebellum
from nwb_celltype.model.training import tensors_from_features


class _TS:
    def __init__(self, features, labels, references=()):
        self.features, self.labels, self.references = features, labels, list(references)


def simulated_library(out: Path, preset: str, n_unlabelled: int, duration_s: float, seed: int):
    from nwb_celltype.library import load_training_set
    from nwb_celltype.simulate import simulate_library

    d = out / f"{preset}_{n_unlabelled}_{int(duration_s)}_{seed}"
    if not glob.glob(str(d / "*.nwb")):
        simulate_library(
            d, preset=preset, n_unlabelled=n_unlabelled, n_sessions=6, duration_s=duration_s, seed=seed
        )
    files = sorted(glob.glob(str(d / "*.nwb")))
    return load_training_set(files, cache_dir=out / "cache")


def bench_inference(bundle, feats: FeatureSet, n_units: int) -> dict:
    reps = int(np.ceil(n_units / len(feats)))
    big = FeatureSet.concatenate([feats] * reps).subset(np.arange(n_units))
    big.usable[:] = True
    predict_cell_types(bundle, big.subset(np.arange(64)))  # warm-up
    t = time.perf_counter()
    predict_cell_types(bundle, big)
    t_ours = time.perf_counter() - t
    # reference: every member as its own nn.Module, one after another (as npyx's ensemble_predict)
    nets = []
    for i in range(bundle.n_members):
        net = CNNCerebellum(len(bundle.classes), bundle.uses_layer, bundle.ensemble.pool).eval()
        net.load_state_dict(bundle.ensemble.member_state(i))
        nets.append(net)
    acg, wvf, lay = tensors_from_features(big)
    t = time.perf_counter()
    with torch.inference_mode():
        probs = [
            torch.softmax(n(acg, wvf, lay if n.use_layer else None) / bundle.temperature, -1) for n in nets
        ]
        torch.stack(probs).mean(0)
    t_ref = time.perf_counter() - t
    return {
        "n_units": n_units,
        "members": bundle.n_members,
        "seconds": t_ours,
        "units_per_s": n_units / t_ours,
        "reference_loop_seconds": t_ref,
        "speedup_vs_loop": t_ref / t_ours,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small libraries and settings (smoke test)")
    ap.add_argument("--workdir", default="/tmp/nwb_celltype_bench_model")
    ap.add_argument("--out", default="benchmarks/results/model.json")
    ap.add_argument("--skip-cv", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    n_unl = 300 if args.quick else 3000
    dur = 300.0
    cfg = TrainConfig(vae_epochs=5, repeats=1) if args.quick else TrainConfig()
    results: dict = {
        "machine": f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), no GPU",
        "torch_threads": torch.get_num_threads(),
        "config": cfg.to_dict(),
    }

    t = time.perf_counter()
    mouse = simulated_library(work, "mouse", n_unl, dur, seed=1)
    macaque = simulated_library(work, "macaque", 300 if not args.quick else 100, dur, seed=2)
    results["library_seconds"] = time.perf_counter() - t
    results["mouse_counts"] = mouse.class_counts()
    results["mouse_units"] = len(mouse.labels)
    results["macaque_counts"] = macaque.class_counts()
    print(
        f"libraries ready in {results['library_seconds']:.0f} s: mouse {results['mouse_counts']}", flush=True
    )

    # 3. training time: 200 labelled + 3,000 unlabelled, full ensemble
    t = time.perf_counter()
    bundle = train_model(mouse, config=cfg, seed=0, name="bench")
    t_train = time.perf_counter() - t
    tr = bundle.card["training"]
    results["training"] = {
        "seconds": t_train,
        "n_labelled": tr["n_labelled"],
        "n_unlabelled": tr["n_unlabelled"],
        "members": bundle.n_members,
        "budget_seconds": 600.0,
        "ratio_to_budget": t_train / 600.0,
        "cv_metrics_of_card": {
            k: bundle.card["metrics"]["cross_validated"][k]
            for k in ("balanced_accuracy", "fraction_classified", "balanced_accuracy_all")
        },
    }
    print(
        f"training: {t_train:.0f} s for {tr['n_labelled']} labelled + {tr['n_unlabelled']} unlabelled",
        flush=True,
    )

    # 4. inference
    results["inference"] = bench_inference(bundle, mouse.features.subset(mouse.features.usable), 10_000)
    inf = results["inference"]
    print(
        f"inference: {inf['units_per_s']:.0f} units/s ({inf['members']} members); "
        f"{inf['speedup_vs_loop']:.1f}x the per-member loop",
        flush=True,
    )

    # 2. cross-species
    rep = evaluate_model(mouse, test_set=macaque, config=cfg, seed=0)
    results["mouse_to_macaque"] = {
        "ensemble": _short(rep.metrics),
        **{k: _short(v) for k, v in rep.baselines.items()},
    }
    print("mouse -> macaque:", json.dumps(results["mouse_to_macaque"]), flush=True)

    # 1. cross-validation on the mouse library
    if not args.skip_cv:
        rep = evaluate_model(mouse, folds=5, config=replace(cfg), seed=0)
        results["mouse_cv"] = {
            "ensemble": _short(rep.metrics),
            **{k: _short(v) for k, v in rep.baselines.items()},
        }
        results["mouse_cv"]["seconds"] = rep.protocol["seconds"]
        rep.write(work / "mouse_cv_report")
        print("mouse 5-fold CV:", json.dumps(results["mouse_cv"]), flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=float))
    print(f"wrote {out}")


def _short(m: dict) -> dict:
    return {
        "balanced_accuracy_at_threshold": m["balanced_accuracy"],
        "fraction_classified": m["fraction_classified"],
        "balanced_accuracy_all": m["balanced_accuracy_all"],
        "ece": m["calibration"]["ece"],
        "macro_f1": m["macro_f1"],
    }


if __name__ == "__main__":
    main()
