"""Time ``nwb-celltype report`` on a simulated session annotated by the default model: total wall time
and seconds per unit (features recomputed, figures drawn), for 1 and 2 drawing processes, plus the
start-up time of ``nwb-celltype --help``.

    python benchmarks/bench_report.py [--units 150] [--duration 600] [--workers 1 2] [--baseline-src DIR]

``--baseline-src DIR`` also times the ``write_report`` of another source tree (e.g. a checkout of
an older version) on the same annotated file, in a subprocess, for a comparison under the same load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _help_startup_s(repeats: int = 5) -> float:
    """Best wall time of ``python -m nwb_celltype.cli --help`` in a fresh interpreter."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "nwb_celltype.cli", "--help"], check=True, capture_output=True)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--units", type=int, default=150)
    ap.add_argument("--duration", type=float, default=600.0)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--model",
        choices=["default", "demo"],
        default="default",
        help="annotate with the package's default (real-trained) model or the simulated demo model",
    )
    ap.add_argument("--baseline-src", type=Path, default=None, help="source tree to compare with")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()

    from nwb_celltype.annotate import annotate
    from nwb_celltype.model import load_demo_bundle
    from nwb_celltype.model.shipped import load_default_bundle
    from nwb_celltype.report import write_report
    from nwb_celltype.simulate import simulate_recording

    results: dict = {
        "units": args.units,
        "duration_s": args.duration,
        "machine": platform.processor() or platform.machine(),
        "model": args.model,
        "load_average_at_start": os.getloadavg()[0],
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "session.nwb"
        simulate_recording(src, n_units=args.units, duration_s=args.duration, seed=args.seed)
        res = annotate(src, model=load_default_bundle() if args.model == "default" else load_demo_bundle())
        # warm-up: JIT compilation of the feature code is billed once per process
        write_report(res.output_path, tmp / "warm", table=res.table_name, max_units=2, workers=1)
        for w in args.workers:
            t0 = time.perf_counter()
            write_report(res.output_path, tmp / f"report{w}", table=res.table_name, workers=w)
            wall = time.perf_counter() - t0
            assert len(list((tmp / f"report{w}" / "units").glob("*.png"))) == args.units
            results[f"workers_{w}"] = {"wall_s": round(wall, 2), "s_per_unit": round(wall / args.units, 4)}
            print(f"report, {w} process(es): {wall:.1f} s = {wall / args.units:.3f} s per unit", flush=True)
        if args.baseline_src is not None:
            code = (
                "import sys, time; from nwb_celltype.inspect_file import write_report; "
                "write_report(sys.argv[1], sys.argv[2] + '_warm', table=sys.argv[3], max_units=2); "
                "t = time.perf_counter(); write_report(sys.argv[1], sys.argv[2], table=sys.argv[3]); "
                "print(time.perf_counter() - t)"
            )
            env = {**os.environ, "PYTHONPATH": str(args.baseline_src.resolve())}
            out = subprocess.run(
                [sys.executable, "-c", code, res.output_path, str(tmp / "baseline"), res.table_name],
                env=env,
                cwd=tmp,  # not this checkout: `python -c` puts the working folder first on sys.path
                check=True,
                capture_output=True,
                text=True,
            )
            wall = float(out.stdout.split()[-1])
            assert len(list((tmp / "baseline" / "units").glob("*.png"))) == args.units
            results["baseline"] = {"src": str(args.baseline_src), "wall_s": round(wall, 2)}
            print(
                f"baseline {args.baseline_src}: {wall:.1f} s = {wall / args.units:.3f} s per unit", flush=True
            )
    results["help_startup_s"] = round(_help_startup_s(), 3)
    print(f"nwb-celltype --help: {results['help_startup_s']:.2f} s (best of 5)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
