"""Regenerate the demo model shipped in nwb_celltype/data/demo_model, deterministically:
simulate a mouse library (fixed seed), extract features, train with fixed settings and seed.

THE DEMO MODEL IS TRAINED ON SIMULATED DATA. It exists so that the pipeline runs out of the box; it
is not for scientific conclusions. Train a real model on a ground-truth library with
``nwb-celltype train``.

Usage: python benchmarks/make_demo_bundle.py [--out nwb_celltype/data/demo_model] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

import torch

from nwb_celltype.model import TrainConfig, save_bundle, train_model

SIM_ARGS = {"preset": "mouse", "n_unlabelled": 600, "n_sessions": 6, "duration_s": 300.0, "seed": 2026}
CONFIG = TrainConfig(vae_epochs=30, repeats=2, folds=5)
SEED = 0
WARNING = (
    "DEMO MODEL TRAINED ON SIMULATED DATA (nwb_celltype.simulate, mouse preset). Not for scientific "
    "conclusions: its labels say nothing about real neurons. Train a real model on a ground-truth "
    "library with `nwb-celltype train` (see docs/classifier.md)."
)


def main() -> None:
    from nwb_celltype.library import load_training_set
    from nwb_celltype.simulate import simulate_library

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).parents[1] / "nwb_celltype" / "data" / "demo_model"))
    ap.add_argument("--workdir", default="/tmp/nwb_celltype_demo_model")
    args = ap.parse_args()
    work = Path(args.workdir)
    lib = work / "library"
    if not glob.glob(str(lib / "*.nwb")):
        simulate_library(lib, **SIM_ARGS)
    files = sorted(glob.glob(str(lib / "*.nwb")))
    ts = load_training_set(files, cache_dir=work / "cache", progress=True)
    # references point at temporary files: keep only what identifies them (name + content hash)
    ts.references = [
        {
            "source": Path(str(r.get("source", ""))).name,
            "sha256": r.get("sha256"),
            "n_units": r.get("n_units"),
        }
        for r in ts.references
    ]
    torch.set_num_threads(1)
    bundle = train_model(
        ts,
        config=CONFIG,
        seed=SEED,
        progress=True,
        name="nwb-celltype-demo-simulated-mouse",
        version="0.1.0",
        description=WARNING,
        card_extra={
            "trained_on_simulated_data": True,
            "intended_use": WARNING,
            "simulation": {"function": "nwb_celltype.simulate.simulate_library", **SIM_ARGS},
            "regenerate": "python benchmarks/make_demo_bundle.py",
        },
    )
    save_bundle(bundle, args.out, overwrite=True)
    m = bundle.card["metrics"]["cross_validated"]
    print(
        f"wrote {args.out}: {bundle.n_members} members, sha256 {bundle.sha256[:12]}, CV balanced accuracy "
        f"{m['balanced_accuracy']:.3f} ({m['fraction_classified']:.0%} classified)"
    )


if __name__ == "__main__":
    main()
