"""Benchmark of the 3D ACG and of whole-file feature extraction.

On the same spike trains in one run: ours (host numpy + JAX) vs npyx 4.3.1 (run in the oracle
environment, timed inside that process) vs SpikeInterface's ``compute_acgs_3d`` (the ``acgs_3d``
extension; run in its own benchmark-only environment, see benchmarks/requirements-si.txt, timed
inside that process) -- 100 units (~3 M spikes) and single units of 1e3..1e7 spikes. Then a local
500-unit NWB session: whole-file feature extraction vs the time h5py takes to read its spike times
and waveforms.

    python benchmarks/bench_features.py [--oracle PYTHON] [--si-python PYTHON] [--si-n-jobs N] [--quick]

SpikeInterface is not a dependency of this package; make its environment with

    python -m venv ~/.cache/nwb-celltype/si-venv
    ~/.cache/nwb-celltype/si-venv/bin/pip install -r benchmarks/requirements-si.txt

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
import torchvision_ops  # noqa: F401  (tests/oracle/torchvision_ops.py: npyx must import torchvision)
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

# SpikeInterface's 3D ACG at C4 settings (2000 ms window, 1 ms bins, 10 firing-rate quantiles,
# 250 ms boxcar) on a NumpySorting of the trains in samples at 30 kHz. Its output is the linear
# ACG over all lags, P(spike in lag bin | trigger spike), lag 0 zeroed -- no log conversion.
# It has no numba: a python loop per spike; the first call (warm-up) is timed separately anyway.
SI_SCRIPT = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import spikeinterface
from spikeinterface.core import NumpySorting
from spikeinterface.postprocessing import compute_acgs_3d
res = {"version": spikeinterface.__version__, "import_s": time.perf_counter() - t0, "times": {}}
cfg = json.loads(sys.argv[2])
d = np.load(sys.argv[1])
kw = dict(window_ms=2000.0, bin_ms=1.0, num_firing_rate_quantiles=10, smoothing_factor=250,
          n_jobs=cfg["n_jobs"], progress_bar=False)
rng = np.random.default_rng(0)
w = {"w": np.round(np.cumsum(rng.exponential(1 / 20, 1000)) * 30000).astype(np.int64)}
for key in ("warmup_first_s", "warmup_second_s"):
    ws = NumpySorting.from_unit_dict([w], 30000.0)
    t0 = time.perf_counter()
    compute_acgs_3d(ws, **kw)
    res[key] = time.perf_counter() - t0
for name, keys in cfg["groups"].items():
    sorting = NumpySorting.from_unit_dict([{k: d[k] for k in keys}], 30000.0)
    t0 = time.perf_counter()
    acg, _, _ = compute_acgs_3d(sorting, **kw)
    res["times"][name] = time.perf_counter() - t0
    if name == cfg.get("save"):
        np.save(cfg["out"], acg)
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
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "tests" / "oracle")}
        proc = subprocess.run([python, str(script), str(inp)], capture_output=True, text=True, cwd=d, env=env)
        if proc.returncode != 0:
            print("npyx failed:", proc.stderr[-2000:], file=sys.stderr)
            return None
        return json.loads(proc.stdout.strip().splitlines()[-1])


def default_si_python() -> str | None:
    env = os.environ.get("NWB_CELLTYPE_SI_PYTHON")
    if env:
        return env
    venv = Path.home() / ".cache/nwb-celltype/si-venv/bin/python"
    return str(venv) if venv.exists() else None


def time_si(
    python: str, groups: dict[str, list[np.ndarray]], n_jobs: int = 1, save: str | None = None
) -> tuple[dict, np.ndarray | None] | None:
    """Run SpikeInterface's compute_acgs_3d in its own process: one call (one NumpySorting) per
    group of trains (seconds, converted to samples at 30 kHz). Returns its JSON (version, import
    and warm-up times, seconds per group) and the ACGs of group ``save``."""
    arrays, cfg_groups = {}, {}
    for name, trains in groups.items():
        keys = []
        for i, t in enumerate(trains):
            keys.append(f"{name}_{i}")
            arrays[keys[-1]] = np.round(t * 30000).astype(np.int64)
        cfg_groups[name] = keys
    with tempfile.TemporaryDirectory() as d:
        inp = Path(d) / "in.npz"
        np.savez(inp, **arrays)
        out = Path(d) / "acg.npy"
        cfg = {"groups": cfg_groups, "n_jobs": n_jobs, "save": save, "out": str(out)}
        script = Path(d) / "run_si.py"
        script.write_text(SI_SCRIPT)
        proc = subprocess.run(
            [python, str(script), str(inp), json.dumps(cfg)], capture_output=True, text=True, cwd=d
        )
        if proc.returncode != 0:
            print("spikeinterface failed:", proc.stderr[-2000:], file=sys.stderr)
            return None
        acg = np.load(out) if save is not None and out.exists() else None
        return json.loads(proc.stdout.strip().splitlines()[-1]), acg


def compare_with_si(train: np.ndarray, si_acg: np.ndarray) -> str:
    """Ours (all lags) vs SpikeInterface's linear 3D ACG of one unit: both are P(spike in lag bin |
    trigger spike) with rows by firing-rate quantile and lag 0 zeroed, so no rescaling is needed.
    The two define the instantaneous rate and its quantiles differently, so they are not expected
    to agree bin for bin."""
    from nwb_celltype.features.acg import compute_acg_3d_batch

    ours = compute_acg_3d_batch([train])[0][0]
    si = np.asarray(si_acg)[0]
    if ours.shape != si.shape:
        return f"shapes differ: ours {ours.shape}, spikeinterface {si.shape}"
    r = np.corrcoef(ours.ravel(), si.ravel())[0, 1]
    r_mean = np.corrcoef(ours.mean(0), si.mean(0))[0, 1]
    return (
        f"shape {ours.shape}; max |ours - SI| = {np.abs(ours - si).max():.2e} "
        f"(peak of ours {ours.max():.2e}); Pearson r {r:.6f} over all bins, "
        f"{r_mean:.6f} for the rate-averaged ACG"
    )


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
        default=os.environ.get(
            "NWB_CELLTYPE_ORACLE_PYTHON", str(Path.home() / ".cache/nwb-celltype/oracle-venv/bin/python")
        ),
    )
    ap.add_argument(
        "--si-python",
        default=default_si_python(),
        help="python of an environment with spikeinterface (benchmarks/requirements-si.txt); default: "
        "$NWB_CELLTYPE_SI_PYTHON, else ~/.cache/nwb-celltype/si-venv/bin/python if it exists",
    )
    ap.add_argument("--si-n-jobs", type=int, default=1, help="n_jobs for compute_acgs_3d (default 1)")
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
    have_si = bool(args.si_python) and Path(args.si_python).exists()
    si_single: dict[str, float] = {}
    si_compare = None
    if have_si:
        groups = {"pop": pop} | {f"n{n}": [t] for n, t in singles.items() if n <= 10**6}
        cmp_n = 10**5 if 10**5 in singles else min(singles)
        out = time_si(args.si_python, groups, n_jobs=args.si_n_jobs, save=f"n{cmp_n}")
        if out:
            res, si_acg = out
            si_pop = res["times"]["pop"]
            si_single = res["times"]
            print(
                f"  spikeinterface {res['version']} compute_acgs_3d (n_jobs={args.si_n_jobs}, linear "
                f"ACG, all lags, no log conversion): {si_pop:.2f} s = {si_pop / n_pop * 1e6:.2f} us/spike"
            )
            print(
                f"    (import {res['import_s']:.2f} s; no numba: warm-up call on 1000 spikes "
                f"{res['warmup_first_s'] * 1e3:.1f} ms first, {res['warmup_second_s'] * 1e3:.1f} ms second)"
            )
            print(
                f"  speed-up vs spikeinterface: {si_pop / warm_all:.1f}x (all lags), {si_pop / warm:.1f}x "
                f"(lags >= 0; {si_pop / med:.1f}x on the median call)"
            )
            if si_acg is not None:
                si_compare = (cmp_n, compare_with_si(singles[cmp_n], si_acg))
    else:
        print(
            "  spikeinterface acgs_3d: skipped (no --si-python / NWB_CELLTYPE_SI_PYTHON, and no "
            "~/.cache/nwb-celltype/si-venv; see benchmarks/requirements-si.txt)"
        )

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
        if f"n{n}" in si_single:
            ts = si_single[f"n{n}"]
            line += f"; spikeinterface {ts:.2f} s ({ts / n * 1e6:.2f} us/spike); {ts / warm:.1f}x"
        elif have_si and n > 10**6:
            line += "; spikeinterface not run (would take minutes)"
        print(line)
    if si_compare:
        print(f"  ours (all lags) vs spikeinterface, {si_compare[0]}-spike unit: {si_compare[1]}")

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
