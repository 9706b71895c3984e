"""Annotate a simulated session end to end, from the loopback Range server (30 ms added latency per
request) and, as the reference in the same run, from the local file; print the wall time split into
reading, features, model and writing.

    python benchmarks/bench_annotate.py [--units 500] [--duration 3600] [--latency-ms 30]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--units", type=int, default=500)
    ap.add_argument("--duration", type=float, default=3600.0)
    ap.add_argument("--latency-ms", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()

    from nwb_celltype.annotate import annotate
    from nwb_celltype.model import load_demo_bundle
    from nwb_celltype.simulate import simulate_recording
    from nwb_celltype.testing.servers import RangeServer

    bundle = load_demo_bundle()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        served = tmp / "served"
        served.mkdir()
        src = served / "session.nwb"
        t0 = time.perf_counter()
        simulate_recording(
            src,
            n_units=args.units,
            duration_s=args.duration,
            seed=args.seed,
            compression=None,
            keep_spikes=False,
        )
        t_sim = time.perf_counter() - t0
        size = src.stat().st_size
        # warm-up on a tiny file so that JIT compilation is not billed to the first real run
        warm = tmp / "warm.nwb"
        simulate_recording(warm, n_units=8, duration_s=120.0, seed=1)
        annotate(warm, model=bundle, out=tmp / "warm_out.nwb")

        results = {}
        with RangeServer(served, latency_s=args.latency_ms / 1e3) as files:
            t0 = time.perf_counter()
            r = annotate(
                files.url_for(src), model=bundle, out=tmp / "remote_out.nwb", cache_dir=tmp / "cache"
            )
            results["remote"] = {"wall_s": time.perf_counter() - t0, **r.timings}
            stats = files.stats()
            results["remote"].update(requests=stats.requests, bytes=stats.bytes_sent)
        t0 = time.perf_counter()
        r_local = annotate(src, model=bundle, out=tmp / "local_out.nwb")
        results["local"] = {"wall_s": time.perf_counter() - t0, **r_local.timings}
        import h5py

        with h5py.File(src, "r") as f:
            n_spikes = int(f["units/spike_times"].shape[0])

    report = {
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPU cores, no GPU",
        "units": args.units,
        "duration_s": args.duration,
        "spikes": n_spikes,
        "file_bytes": size,
        "latency_ms": args.latency_ms,
        "simulate_s": t_sim,
        "labels": r_local.label_counts,
        "results": results,
    }
    print(json.dumps(report, indent=2))
    print()
    print("| source | wall (s) | read | features | model | write | requests | MB sent |")
    print("|---|---|---|---|---|---|---|---|")
    for k, v in results.items():
        print(
            f"| {k} | {v['wall_s']:.1f} | {v['read']:.1f} | {v['features']:.1f} | {v['model']:.2f} | "
            f"{v['write']:.1f} | {v.get('requests', '-')} | "
            + (f"{v['bytes'] / 1e6:.0f}" if "bytes" in v else "-")
            + " |"
        )
    rem, loc = results["remote"]["wall_s"], results["local"]["wall_s"]
    print(f"\nremote / local wall time: {rem / loc:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
