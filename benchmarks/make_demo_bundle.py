"""Regenerate the demo model shipped in nwb_celltype/data/demo_model, deterministically:
simulate a mouse library (fixed seed), extract features, train with fixed settings and seed.

THE DEMO MODEL IS TRAINED ON SIMULATED DATA. It exists so that the pipeline runs out of the box; it
is not for scientific conclusions. Train a real model on a ground-truth library with
``nwb-celltype train``.

Usage: python benchmarks/make_demo_bundle.py [--out DIR] [--workdir DIR]

``--out`` defaults to the SHIPPED folder, nwb_celltype/data/demo_model, which is replaced: that is
what the script is for. To rebuild without touching the shipped bundle, pass e.g.
``--out /tmp/demo_model_rebuilt`` and compare the two cards. Whenever --out already holds a bundle,
the script prints whether the new training files (sha256) and weights equal that bundle's before it is
replaced.

The library is always simulated afresh, never reused: by default into a new temporary folder that is
removed at the end; with ``--workdir DIR`` into DIR (kept, for inspection), which must not exist or be
empty — a non-empty one is refused, so a library left by another run or an older simulator is never
trained on without notice. The simulator writes the same bytes for the same seed and file name, so the
training files' sha256 in the card (``training_data``) are reproduced by every rebuild.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from nwb_celltype.model import TrainConfig, save_bundle, train_model

SHIPPED = Path(__file__).resolve().parents[1] / "nwb_celltype" / "data" / "demo_model"
SIM_ARGS = {"preset": "mouse", "n_unlabelled": 600, "n_sessions": 6, "duration_s": 300.0, "seed": 2026}
CONFIG = TrainConfig(vae_epochs=30, repeats=2, folds=5)
SEED = 0
WARNING = (
    "DEMO MODEL TRAINED ON SIMULATED DATA (nwb_celltype.simulate, mouse preset). Not for scientific "
    "conclusions: its labels say nothing about real neurons. Train a real model on a ground-truth "
    "library with `nwb-celltype train` (see docs/classifier.md)."
)
TRAINING_FILES = (
    "training_data lists the simulated session files by name, unit count and the sha256 of their bytes. "
    "simulate_library with the arguments in `simulation` writes the same bytes for the same seed and file "
    "name, and benchmarks/make_demo_bundle.py always simulates the library afresh, so a rebuild reproduces "
    "these sha256 (and weights_sha256)"
)


def _fresh_workdir(path: Path) -> Path:
    """``path`` created if missing; refused when it already holds anything."""
    if path.exists() and not path.is_dir():
        raise SystemExit(f"--workdir {path} is a file, not a folder")
    if path.is_dir() and any(path.iterdir()):
        raise SystemExit(
            f"--workdir {path} is not empty: this script simulates its library afresh and will not train on, "
            "or mix with, files left there by another run (perhaps of an older simulator). Name a new or empty "
            "folder, or leave --workdir out to use a temporary one."
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


def _compare_with_previous(old_card_text: str | None, card: dict, out: Path) -> None:
    """Print whether the new card's training files and weights equal those of the bundle that was in
    ``out`` before (its card's text, read before the bundle was replaced)."""
    try:
        old = json.loads(old_card_text) if old_card_text is not None else None
    except ValueError:
        old = None
    if not isinstance(old, dict):
        return
    old_files = {d.get("source"): d.get("sha256") for d in old.get("training_data") or []}
    new_files = {d.get("source"): d.get("sha256") for d in card.get("training_data") or []}
    same_files = sum(1 for k, v in new_files.items() if old_files.get(k) == v)
    same_weights = old.get("weights_sha256") == card.get("weights_sha256")
    print(
        f"compared with the bundle {out} held before (created {old.get('created', '?')}): training files "
        f"{same_files}/{len(new_files)} with equal sha256 (it listed {len(old_files)}); weights_sha256 "
        f"{'equal' if same_weights else 'DIFFERENT'} "
        f"({str(old.get('weights_sha256'))[:12]} -> {str(card.get('weights_sha256'))[:12]})"
    )


def build(work: Path, out: Path):
    """Simulate the library into ``work`` (fresh), train, and save the bundle to ``out``."""
    from nwb_celltype.library import load_training_set
    from nwb_celltype.simulate import simulate_library

    lib = work / "library"
    results = simulate_library(lib, **SIM_ARGS)
    written = sorted(Path(str(r.path)).name for r in results)
    on_disk = sorted(str(p) for p in lib.glob("*.nwb"))
    if [Path(f).name for f in on_disk] != written:  # the folder was empty: only what was just written
        raise SystemExit(f"{lib} holds {[Path(f).name for f in on_disk]}, the simulation wrote {written}")
    ts = load_training_set(on_disk, cache_dir=work / "cache", progress=True)
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
            "training_files": TRAINING_FILES,
            "regenerate": "python benchmarks/make_demo_bundle.py (--out defaults to this shipped folder)",
        },
    )
    save_bundle(bundle, out, overwrite=True)
    return bundle


def main() -> None:
    ap = argparse.ArgumentParser(
        description="Regenerate the simulated demo model (deterministic: same weights every run).",
        epilog="With no --out the SHIPPED bundle in nwb_celltype/data/demo_model is replaced.",
    )
    ap.add_argument(
        "--out",
        default=str(SHIPPED),
        help=f"bundle folder to write (default: the shipped folder {SHIPPED}, which is REPLACED; "
        "name another folder to rebuild for comparison)",
    )
    ap.add_argument(
        "--workdir",
        default=None,
        help="folder to simulate the library and feature cache into, kept afterwards; must not exist or be "
        "empty (default: a new temporary folder, removed at the end)",
    )
    args = ap.parse_args()
    out = Path(args.out)
    card_file = out / "model_card.json"
    old_card = card_file.read_text() if card_file.is_file() else None
    if args.workdir is not None:
        work = _fresh_workdir(Path(args.workdir))
        bundle = build(work, out)
        print(f"library and feature cache kept in {work}")
    else:
        with tempfile.TemporaryDirectory(prefix="nwb_celltype_demo_model_") as tmp:
            bundle = build(Path(tmp), out)
    _compare_with_previous(old_card, bundle.card, out)
    m = bundle.card["metrics"]["cross_validated"]
    print(
        f"wrote {out}: {bundle.n_members} members, sha256 {bundle.sha256[:12]}, weights_sha256 "
        f"{bundle.card['weights_sha256'][:12]}, CV balanced accuracy {m['balanced_accuracy']:.3f} "
        f"({m['fraction_classified']:.0%} classified)"
    )


if __name__ == "__main__":
    main()
