"""Whole-dandiset throughput: assets per minute with 1 and 2 local workers (and optionally a Dask
LocalCluster with 2 workers) against the loopback DANDI-shaped API and Range server with 30 ms
added latency per request. The 1-worker run is the reference measured in the same run on the same
data; the script prints the ratio.

    python benchmarks/bench_dandiset.py [--assets 16] [--units 40] [--duration 180] [--latency 0.03] [--repeat 2] [--dask]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("DANDI_NO_ET", "1")

HERE = Path(__file__).resolve().parent
DANDISET = "000123"


def make_assets(root: Path, n_assets: int, n_units: int, duration_s: float) -> list[str]:
    from nwb_celltype.simulate import simulate_recording

    stamp = root / f".made-{n_assets}-{n_units}-{duration_s:g}"
    rels = [f"sub-B{i // 2}/sub-B{i // 2}_ses-S{i % 2}_ecephys.nwb" for i in range(n_assets)]
    if not stamp.exists():
        shutil.rmtree(root, ignore_errors=True)
        for i, rel in enumerate(rels):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            simulate_recording(
                root / rel,
                preset="mouse",
                n_units=n_units,
                duration_s=duration_s,
                seed=1000 + i,
                labelled_fraction=0.0,
            )
        stamp.write_text("ok")
    return rels


def run_once(api_url: str, workers: int | None, scheduler: str | None, batch_size: int) -> dict:
    from nwb_celltype.batch import annotate_dandiset

    # a fresh output folder and an empty byte cache: every run streams every asset
    with tempfile.TemporaryDirectory(prefix="bench-dandiset-") as tmp:
        t0 = time.perf_counter()
        res = annotate_dandiset(
            f"{DANDISET}@draft",
            Path(tmp) / "out",
            workers=workers,
            scheduler=scheduler,
            retries=0,
            dandi_api_url=api_url,
            cache_dir=Path(tmp) / "cache",
            batch_size=batch_size,
        )
        wall = time.perf_counter() - t0
    done = [a for a in res.assets if a["status"] == "done"]
    if len(done) != len(res.assets):
        raise SystemExit(f"benchmark run had failures: {res.counts}")
    per_asset = sorted(a["time_s"] for a in done)
    # steady state: from the first asset's start to the last one's end on the workers (leaves out
    # the driver's listing and model load and the workers' start-up)
    span = max(a["finished"] for a in done) - min(a["started"] for a in done)
    return {
        "workers": res.n_workers,
        "executor": res.executor,
        "assets": len(done),
        "wall_s": round(wall, 2),
        "assets_per_min": round(60 * len(done) / wall, 2),
        "steady_assets_per_min": round(60 * len(done) / span, 2),
        "median_asset_s": round(per_asset[len(per_asset) // 2], 2),
        "peak_rss_mb": max(a["worker_peak_rss_mb"] for a in done),
        "units": sum(a["n_units"] for a in done),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--assets", type=int, default=16)
    ap.add_argument("--units", type=int, default=40)
    ap.add_argument("--duration", type=float, default=180.0)
    ap.add_argument("--latency", type=float, default=0.03, help="seconds added to every file request")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--dask", action="store_true", help="also run on a Dask LocalCluster (2 workers)")
    ap.add_argument("--repeat", type=int, default=2, help="interleaved repeats; the best of each is reported")
    ap.add_argument("--data", type=Path, default=HERE / "_data" / "dandiset")
    args = ap.parse_args()

    from nwb_celltype.testing.servers import DandiApiServer, RangeServer

    rels = make_assets(args.data, args.assets, args.units, args.duration)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, no GPU; python {platform.python_version()}"
    )
    print(
        f"data: {len(rels)} simulated assets x {args.units} units x {args.duration:g} s, latency {args.latency * 1e3:g} ms"
    )
    configs = [("local", 1), ("local", 2)] + ([("dask", 2)] if args.dask else [])
    runs: dict[tuple, list[dict]] = {c: [] for c in configs}
    with RangeServer(args.data, latency_s=args.latency) as files, DandiApiServer(files, page_size=100) as api:
        for rel in rels:
            api.add_asset(DANDISET, rel, args.data / rel)
        # interleaved repeats, best of each: the machine is shared, so load changes during a run
        for rep in range(args.repeat):
            for kind, n in configs:
                files.reset_stats()
                if kind == "local":
                    r = run_once(api.api_url, n, None, args.batch_size)
                else:
                    from distributed import LocalCluster

                    with LocalCluster(
                        n_workers=n,
                        threads_per_worker=1,
                        processes=True,
                        host="127.0.0.1",
                        dashboard_address=None,
                    ) as cluster:
                        r = run_once(api.api_url, None, cluster.scheduler_address, args.batch_size)
                r["requests"] = files.stats().requests
                r["repeat"] = rep
                r["load_avg_1min"] = round(os.getloadavg()[0], 2)
                runs[(kind, n)].append(r)
                print(json.dumps(r), flush=True)
    best = {c: max(rs, key=lambda r: r["assets_per_min"]) for c, rs in runs.items()}
    base = best[configs[0]]
    for c in configs:
        b = best[c]
        print(
            f"best of {args.repeat}: {c[0]} x{c[1]}: {b['assets_per_min']:.2f} assets/min end to end "
            f"(ratio {b['assets_per_min'] / base['assets_per_min']:.2f}), {b['steady_assets_per_min']:.2f} steady "
            f"(ratio {b['steady_assets_per_min'] / base['steady_assets_per_min']:.2f})"
        )


if __name__ == "__main__":
    main()
