"""How the ratio-floor rule and its budget were chosen (docs/validation.md), on training data only.

Trains the shipped recipe (every labelled Hull + Lisberger unit; encoders pre-trained with the
unlabelled Lisberger units and unlabelled Hausser waveforms, as bench_real_validation does), takes
the inner out-of-fold probabilities the floors are fitted on (each unit scored by the members that
never saw it), and compares floor rules
by fitting them on one stratified half of those units and scoring the other half (both ways,
``--repeats`` random splits). No benchmark test fold and no non-C4 unit is read.

Rules: no floors; the 1.2-1.3 rule (per predicted class, the lowest grid ratio above which at most
3 % of the units given that label were wrong); the 1.4 rule (:func:`ratio_floors`: one budget of
confidently wrong labels, labs weighted equally, shared by all classes to keep the most balanced
recall) at several budgets.

Run:  nice -n 5 python benchmarks/bench_floor_rules.py [--data ../shared/real-c4] [--repeats 10]
Writes benchmarks/results/floor_rules.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from nwb_celltype.model.decision import confidence_ratio
from nwb_celltype.model.real_floors import FLOOR_THRESHOLD, per_label_floors, ratio_floors
from nwb_celltype.model.real_networks import RealModelConfig
from nwb_celltype.model.real_training import train_real_ensemble

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_real_validation import CLASSES, load_tables, pooled_units

BUDGETS = (0.01, 0.02, 0.03)


def scores(p: np.ndarray, y: np.ndarray, w: np.ndarray, floors: list[float]) -> dict:
    """Coverage, confidently wrong (plain and lab-weighted) and balanced recall with abstentions as
    misses, at the threshold the floors are fitted for."""
    pred, ratio = p.argmax(1), confidence_ratio(p)
    labelled = ratio >= np.maximum(np.asarray(floors)[pred], FLOOR_THRESHOLD)
    wrong = labelled & (pred != y)
    recall = {CLASSES[c]: float(np.mean((labelled & (pred == c))[y == c])) for c in np.unique(y)}
    return {
        "classified": float(labelled.mean()),
        "confidently_wrong": float(wrong.mean()),
        "confidently_wrong_lab_weighted": float((w * wrong).sum() / w.sum()),
        "balanced_recall_abstain_as_miss": float(np.mean(list(recall.values()))),
        "recall": recall,
    }


def _halves(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A stratified random half of the units (bool mask)."""
    a = np.zeros(len(y), bool)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        a[idx[: len(idx) // 2]] = True
    return a


def compare(view: dict, rules: dict, repeats: int, seed: int = 0) -> dict:
    """Mean held-out scores of each rule over ``repeats`` splits x 2 directions."""
    p, y, w = view["p"], view["y"], view["w"]
    rng = np.random.default_rng(seed)
    rows: dict[str, list[dict]] = {name: [] for name in rules}
    for _ in range(repeats):
        half = _halves(y, rng)
        for fit, test in ((half, ~half), (~half, half)):
            for name, rule in rules.items():
                floors = rule(p[fit], y[fit], w[fit])
                rows[name].append(scores(p[test], y[test], w[test], floors))
    out = {}
    for name, rs in rows.items():
        out[name] = {k: float(np.mean([r[k] for r in rs])) for k in rs[0] if k != "recall"}
        out[name]["recall"] = {c: float(np.mean([r["recall"][c] for r in rs])) for c in rs[0]["recall"]}
        out[name]["floors_all_units"] = rule_floors = rules[name](p, y, w)
        out[name]["in_sample_all_units"] = scores(p, y, w, rule_floors)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "real-c4"))
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    data, unl = load_tables(args.data)
    both, labels, groups = pooled_units(data)
    oof: dict = {}
    # the study of 1.4 (docs/validation.md): the members of the 1.4 recipe and their units' own
    # out-of-fold rows, without the depth copies of 1.5 (whose floors are fitted per depth band)
    cfg = RealModelConfig(n_threads=1, depth_copies=0)
    train_real_ensemble(both, labels, CLASSES, unl, cfg, groups, oof=oof)
    n = len(CLASSES)
    rules = {
        "no floors": lambda p, y, w: [1.0] * n,
        "per label 3 % (1.2-1.3; mixed view not raised)": lambda p, y, w: per_label_floors(p, y, n, 0.03),
    }
    for b in BUDGETS:
        rules[f"shared budget {b:.0%} (1.4)"] = lambda p, y, w, b=b: ratio_floors(p, y, n, b, w)
    res = {view: compare(oof[view], rules, args.repeats) for view in oof}
    res = {"repeats": args.repeats, "views": res, "n_units": {v: int(len(oof[v]["y"])) for v in oof}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "floor_rules.json").write_text(json.dumps(res, indent=1))
    print(
        "| view | rule | classified @2 | confidently wrong (lab-weighted) | bal. recall @2, abstentions as misses | MLI recall | floors (all units) |"
    )
    print("|---|---|---|---|---|---|---|")
    for view, r in res["views"].items():
        for name, m in r.items():
            print(
                f"| {view} | {name} | {m['classified']:.3f} | {m['confidently_wrong']:.3f} "
                f"({m['confidently_wrong_lab_weighted']:.3f}) | {m['balanced_recall_abstain_as_miss']:.3f} | "
                f"{m['recall']['MLI']:.2f} | {m['floors_all_units']} |"
            )


if __name__ == "__main__":
    main()
