"""Inference speed of real-data (acg-isi-wave) bundles: units per second of ``predict_real_ensemble``
(numpy, one thread) on the Lisberger tables repeated ten times (9,840 units), best of three, for
every bundle given, in the same run (compare a new default model with the previous one).

Run:  OMP_NUM_THREADS=1 nice -n 5 python benchmarks/bench_real_inference.py [BUNDLE ...] [--data DIR]
      (no BUNDLE: the package's default model; e.g. add the previous default from a worktree of an
      earlier commit to compare). Writes benchmarks/results/real_inference.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from bench_real_validation import _raw, load_tables

from nwb_celltype.model import load_bundle
from nwb_celltype.model.real_ensemble import predict_real_ensemble
from nwb_celltype.model.shipped import load_default_bundle

REPO = Path(__file__).resolve().parents[1]


def units_per_second(bundle, raw: dict, repeats: int = 3) -> float:
    """Best of ``repeats`` timings of one ``predict_real_ensemble`` call over every unit of ``raw``."""
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict_real_ensemble(bundle.tensors, bundle.card["model_meta"], raw)
        best = min(best, time.perf_counter() - t0)
    return len(raw["acg_counts"]) / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundles", nargs="*", help="bundle folders (default: the package's default model)")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "real-c4"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "real_inference.json"))
    args = ap.parse_args()
    data, _ = load_tables(args.data)
    one = _raw(data["lisberger"])
    raw = {k: np.concatenate([v] * 10) for k, v in one.items()}
    # each unit named by its species, as an NWB Subject or the tables name it (models from 1.7 check it)
    raw["species"] = np.full(len(raw["acg_counts"]), data["lisberger"].meta["species"], dtype=object)
    bundles = [load_bundle(b) for b in args.bundles] or [load_default_bundle()]
    rows = [
        {
            "bundle": f"{b.name} {b.version}",
            "sha256": b.sha256,
            "units_per_s": round(units_per_second(b, raw)),
        }
        for b in bundles
    ]
    res = {
        "units": int(len(raw["acg_counts"])),
        "machine": platform.processor() or platform.machine(),
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
