"""Real-data bundles on short recordings: simulated C4 units (``nwb_celltype.simulate``, mouse and
macaque presets, 20 per class, 1,200 s trains, seed 5) cut to their first N spikes, their ACG and ISI
counted from those spikes only (as ``features`` counts an NWB unit's), scored by every bundle given.

This is the spike-train counterpart of the depth table of bench_real_validation.py (which thins the
real tables' counts binomially): a short recording keeps whole stretches of time. The simulated
units are not real ones (docs/simulation.md: the real-trained model gets 0.62-0.79 of them right at
full length), so read the change with N, not the level.

Run:  nice -n 5 python benchmarks/bench_short_recordings.py [BUNDLE ...]
      (no BUNDLE: the package's default model). Writes benchmarks/results/short_recordings.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from bench_real_validation import THRESHOLD, _abstain

from nwb_celltype.features.discharge import align_waveform, compute_acg_counts, compute_isi_counts
from nwb_celltype.model import load_bundle
from nwb_celltype.model.decision import confidence_ratio
from nwb_celltype.model.real_ensemble import predict_real_ensemble
from nwb_celltype.model.shipped import load_default_bundle
from nwb_celltype.simulate import class_spike_train, class_waveform

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("PkC_ss", "PkC_cs", "MLI", "GoC", "MFB")
#: Spike counts the trains are cut to (None: the whole 1,200 s train).
SPIKES = (100, 300, 1000, 3000, None)


def simulated_units(preset: str, n_per_class: int = 20, duration_s: float = 1200.0, seed: int = 5):
    """Spike trains, waveforms and class indices of simulated C4 units of ``preset``."""
    rng = np.random.default_rng(seed)
    trains, waves, y = [], [], []
    for ci, cls in enumerate(CLASSES):
        for _ in range(n_per_class):
            t, _ = class_spike_train(rng, cls, duration_s, preset=preset)
            trains.append(t)
            waves.append(align_waveform(class_waveform(rng, cls, preset=preset), 30000.0))
            y.append(ci)
    return trains, np.array(waves, dtype=np.float32), np.array(y)


def score(bundle, trains, waves, y, n_spikes: int | None, species: str | None = None) -> dict:
    """Coverage at threshold 2 with the model's own abstentions, accuracy of the labelled units,
    confidently wrong fraction, accuracy of the most probable class, median confidence ratio.
    ``species``: the units' species, as the simulated recording's Subject names it (models from 1.7
    withhold the labels that species gave them too few training units of)."""
    cut = [t[:n_spikes] for t in trains]
    raw = {
        "acg_counts": np.array([compute_acg_counts(t) for t in cut]),
        "isi_counts": np.array([compute_isi_counts(t) for t in cut]),
        "waveform": waves,
        "species": species,
    }
    out = predict_real_ensemble(bundle.tensors, bundle.card["model_meta"], raw)
    p = out["probabilities"]
    ratio = confidence_ratio(p)
    pred = p.argmax(1)
    labelled = (ratio >= THRESHOLD) & ~_abstain(out)
    return {
        "median_spikes": float(np.median([len(t) for t in cut])),
        "median_acg_pairs": float(np.median(raw["acg_counts"].sum(1))),
        "accuracy_most_probable": float(np.mean(pred == y)),
        "coverage_at_2": float(labelled.mean()),
        "accuracy_of_labelled": float(np.mean(pred[labelled] == y[labelled])) if labelled.any() else None,
        "confidently_wrong": float(np.mean(labelled & (pred != y))),
        "median_confidence_ratio": float(np.median(ratio)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundles", nargs="*", help="bundle folders (default: the package's default model)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "short_recordings.json"))
    args = ap.parse_args()
    bundles = [load_bundle(b) for b in args.bundles] or [load_default_bundle()]
    units = {preset: simulated_units(preset) for preset in ("mouse", "macaque")}
    res = {"spikes": [n or "all" for n in SPIKES], "bundles": {}}
    for b in bundles:
        rows = {
            preset: {str(n or "all"): score(b, *units[preset], n, species=preset) for n in SPIKES}
            for preset in units
        }
        res["bundles"][f"{b.name} {b.version}"] = {"sha256": b.sha256, "presets": rows}
        for preset, by_n in rows.items():
            for n, r in by_n.items():
                print(
                    f"{b.version} {preset:7s} N={n:>5s}: coverage {r['coverage_at_2']:.2f}, confidently wrong "
                    f"{r['confidently_wrong']:.2f}, most probable right {r['accuracy_most_probable']:.2f}, "
                    f"median ratio {r['median_confidence_ratio']:.1f}"
                )
    Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
