"""Benchmark of the library's feature cache: time to load a training set from a simulated library
the first time (read spikes + compute features) vs the second time (cache), same files, same run.

    python benchmarks/bench_library.py [--units 150] [--sessions 3] [--duration 600]

Prints both times and their ratio (cold / warm): how much faster a second training run starts.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--units", type=int, default=150, help="units per session")
    ap.add_argument("--sessions", type=int, default=3)
    ap.add_argument("--duration", type=float, default=600.0, help="session length (s)")
    args = ap.parse_args()

    from nwb_celltype.library import create_manifest, load_training_set
    from nwb_celltype.simulate import simulate_recording

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = [
            simulate_recording(
                tmp / f"s{k}.nwb", n_units=args.units, duration_s=args.duration, seed=k, labelled_fraction=0.3
            ).path
            for k in range(args.sessions)
        ]
        manifest = create_manifest(files, name="bench", root=tmp)
        t0 = time.perf_counter()
        ts = load_training_set(manifest, cache_dir=tmp / "cache")
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        load_training_set(manifest, cache_dir=tmp / "cache")
        warm = time.perf_counter() - t0
        print(
            f"library: {args.sessions} sessions x {args.units} units x {args.duration:g} s "
            f"({len(ts)} units, {int(ts.labelled.sum())} labelled)"
        )
        print(f"cold (read spikes + features): {cold:.2f} s")
        print(f"warm (feature cache):          {warm:.3f} s")
        print(f"ratio cold / warm: {cold / warm:.1f}x")


if __name__ == "__main__":
    main()
