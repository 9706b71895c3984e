"""Benchmark of the 3D ACG and of whole-file feature extraction.

On the same spike trains in one run: ours (host numpy + JAX) vs npyx 4.3.1 (run in the oracle
environment, timed inside that process) -- 100 units (~3 M spikes) and single units of 1e3..1e7
spikes; SpikeInterface's ``acgs_3d`` when importable. Then a local 500-unit NWB session: whole-file
feature extraction vs the time h5py takes to read its spike times and waveforms.

    python benchmarks/bench_features.py [--oracle PYTHON] [--quick]

Prints µs per spike, compile time (separately) and speed-up ratios.
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

import numpy as np

NPYX_SCRIPT = """
import json, sys, time
import numpy as np
import npyx.corr as c
d = np.load(sys.argv[1])
res = {}
for k in d.files:
    t = d[k]
    t0 = time.perf_counter()
    _, a = c.crosscorr_vs_firing_rate(t, t, 2000, 1)
    c.convert_acg_log(a, 1, 2000)
    res[k] = time.perf_counter() - t0
print(json.dumps(res))
"""


def make_trains(seed: int, quick: bool):
    rng = np.random.default_rng(seed)
    duration = 400.0 if quick else 1200.0
    pop = []
    for _ in range(100):
        rate = float(np.clip(rng.lognormal(np.log(18), 0.8), 0.5, 150))
        cv = rng.uniform(0.2, 1.2)
        k = 1 / cv**2
        isi = rng.gamma(k, 1 / (k * rate), int(rate * duration * 1.2) + 10)
        t = np.cumsum(isi)
        pop.append(np.round(t[t < duration] * 30000) / 30000)
    singles = {}
    for n in [10**3, 10**4, 10**5, 10**6] + ([] if quick else [10**7]):
        isi = rng.gamma(4, 1 / (4 * 50.0), n)
        singles[n] = np.round(np.cumsum(isi) * 30000) / 30000
    return pop, singles


def time_ours(trains, positive_only: bool = False, repeat: int = 2, with_median: bool = False):
    """(first call, best warm call[, median warm call]) in s: linear 3D ACG (all lags, or only
    lags >= 0, which is all the log ACG uses) + log conversion."""
    from nwb_celltype.features.acg import compute_acg_3d_batch, compute_log_acg

    times = []
    for _ in range(1 + repeat):
        t0 = time.perf_counter()
        lin, _ = compute_acg_3d_batch(trains, positive_lags_only=positive_only)
        compute_log_acg(lin)
        times.append(time.perf_counter() - t0)
    if with_median:
        return times[0], min(times[1:]), float(np.median(times[1:]))
    return times[0], min(times[1:])


def time_npyx(python: str, arrays: dict[str, np.ndarray]) -> dict[str, float] | None:
    with tempfile.TemporaryDirectory() as d:
        inp = Path(d) / "in.npz"
        np.savez(inp, **arrays)
        script = Path(d) / "run.py"
        script.write_text(NPYX_SCRIPT)
        proc = subprocess.run([python, str(script), str(inp)], capture_output=True, text=True, cwd=d)
        if proc.returncode != 0:
            print("npyx failed:", proc.stderr[-2000:], file=sys.stderr)
            return None
        return json.loads(proc.stdout.strip().splitlines()[-1])


def write_session(path: Path, n_units: int, duration: float, seed: int) -> int:
    from datetime import datetime, timezone

    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.misc import Units

    rng = np.random.default_rng(seed)
    nwb = NWBFile("benchmark session", "bench-features", datetime(2024, 1, 1, tzinfo=timezone.utc))
    nwb.units = Units(name="units", description="simulated", waveform_rate=30000.0)
    x = np.arange(120) / 30.0
    total = 0
    for _ in range(n_units):
        rate = float(np.clip(rng.lognormal(np.log(10), 0.9), 0.3, 120))
        t = np.cumsum(rng.exponential(1 / rate, int(rate * duration * 1.3) + 10))
        t = np.round(t[t < duration] * 30000) / 30000
        total += len(t)
        peak = rng.uniform(1.1, 1.6)
        w = -np.exp(-(((x - peak) / 0.15) ** 2)) + 0.3 * np.exp(-(((x - peak - 0.5) / 0.3) ** 2))
        nwb.add_unit(spike_times=t, waveform_mean=(rng.uniform(40, 200) * w).astype(np.float32))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return total


def time_h5py_read(path: Path) -> float:
    import h5py

    t0 = time.perf_counter()
    with h5py.File(path, "r") as f:
        u = f["units"]
        u["spike_times"][:]
        u["spike_times_index"][:]
        u["waveform_mean"][:]
    return time.perf_counter() - t0


def time_whole_file(path: Path) -> float:
    from nwb_celltype.features import extract_features
    from nwb_celltype.io import open_source, read_units

    t0 = time.perf_counter()
    with open_source(str(path)) as src:
        for batch in read_units(src, batch_size=500):
            extract_features(batch)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--oracle",
        default=os.environ.get("NWB_CELLTYPE_ORACLE_PYTHON", "/work/main/.venv-oracle/bin/python"),
    )
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    from nwb_celltype.features import acg

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, no GPU")
    print(
        f"load average at start: {os.getloadavg()[0]:.2f}; host worker threads: {acg._WORKERS}; "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}"
    )
    pop, singles = make_trains(0, args.quick)
    n_pop = sum(len(t) for t in pop)

    # best of 5 warm calls (a call takes ~0.3 s, so one burst of other jobs on this shared
    # machine can spoil one of them); the median is printed too
    first, warm_all, med_all = time_ours(pop, repeat=5, with_median=True)
    first_pos, warm, med = time_ours(pop, positive_only=True, repeat=5, with_median=True)
    print(f"\n100 units, {n_pop} spikes")
    print(
        f"  ours, all lags        : {warm_all:.2f} s warm = {warm_all / n_pop * 1e6:.3f} us/spike "
        f"(median {med_all / n_pop * 1e6:.3f}); first call {first:.2f} s "
        f"(compilation ~{first - warm_all:.2f} s)"
    )
    print(
        f"  ours, lags >= 0 (model): {warm:.2f} s warm = {warm / n_pop * 1e6:.3f} us/spike "
        f"(median {med / n_pop * 1e6:.3f}); first call {first_pos:.2f} s "
        f"(compilation ~{first_pos - warm:.2f} s)"
    )
    have_npyx = Path(args.oracle).exists()
    npyx_pop = None
    if have_npyx:
        samples = {f"u{i}": np.round(t * 30000).astype(np.int64) for i, t in enumerate(pop)}
        res = time_npyx(args.oracle, samples)
        if res:
            npyx_pop = sum(res.values())
            print(f"  npyx   : {npyx_pop:.2f} s = {npyx_pop / n_pop * 1e6:.2f} us/spike")
            print(
                f"  speed-up: {npyx_pop / warm_all:.1f}x (all lags), {npyx_pop / warm:.1f}x "
                f"(lags >= 0, what the log ACG uses; {npyx_pop / med:.1f}x on the median call)"
            )
    else:
        print(f"  npyx   : skipped (no oracle python at {args.oracle})")
    try:
        import spikeinterface  # noqa: F401

        print("  spikeinterface: importable but not benchmarked here")
    except ImportError:
        print("  spikeinterface acgs_3d: skipped (spikeinterface not installed)")

    print("\nsingle units (ours: lags >= 0)")
    for n, t in singles.items():
        first, warm = time_ours([t], positive_only=True, repeat=1 if n > 10**6 else 5)
        line = f"  {n:>9} spikes: ours {warm:.3f} s ({warm / n * 1e6:.3f} us/spike, first {first:.2f} s)"
        if have_npyx and n <= 10**6:
            res = time_npyx(args.oracle, {"u": np.round(t * 30000).astype(np.int64)})
            if res:
                line += f"; npyx {res['u']:.2f} s ({res['u'] / n * 1e6:.2f} us/spike); {res['u'] / warm:.1f}x"
        elif n > 10**6:
            line += "; npyx not run (would take minutes)"
        print(line)

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "session.nwb"
        total = write_session(path, 500, 300.0 if args.quick else 600.0, 1)
        read = min(time_h5py_read(path) for _ in range(3))
        cold = time_whole_file(path)
        warm = time_whole_file(path)
        print(f"\nwhole file: 500 units, {total} spikes")
        print(f"  h5py read of spike times + waveforms: {read:.3f} s")
        print(
            f"  open + read_units + extract_features: {warm:.2f} s warm ({cold:.2f} s cold); "
            f"ratio {warm / read:.1f}x the h5py read"
        )
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
