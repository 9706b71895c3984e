"""Benchmark of the simulator (nwb_celltype.simulate).

Measures, on this machine:
1. a 500-unit, one-hour mouse recording: generation time, NWB write time (gzip and uncompressed)
   and peak memory (each case in a fresh process, ru_maxrss, minus the imports' baseline); wall
   time and the process's CPU time (user + sys: less sensitive to other jobs on a shared machine);
2. the default C4-shaped library (3,292 units over 12 files, 600 s each): total time;
3. ratios against plain references run in the same process on the same data:
   - spike trains: our vectorised generator of the fitted discharge model vs a textbook per-spike
     Python loop (same process, same units, same parameters and durations);
   - writing Units: our bulk column construction vs pynwb's ``add_unit`` row by row.

Run: ``python benchmarks/bench_simulate.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_CHILD = r"""
import json, resource, sys, time
import numpy as np
from nwb_celltype.simulate import simulate_recording, simulate_library
_ru = resource.getrusage(resource.RUSAGE_SELF)
base, cpu0 = _ru.ru_maxrss, _ru.ru_utime + _ru.ru_stime
case, out, units, dur, comp = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
comp = None if comp == "none" else comp
t0 = time.perf_counter()
if case == "recording":
    r = simulate_recording(None if out == "-" else out, n_units=units, duration_s=dur, seed=3, compression=comp)
    spikes = int(r.spike_counts.sum())
    n = len(r)
else:
    res = simulate_library(out, duration_s=dur, seed=0, compression=comp)
    spikes = int(sum(r.spike_counts.sum() for r in res))
    n = sum(len(r) for r in res)
dt = time.perf_counter() - t0
_ru = resource.getrusage(resource.RUSAGE_SELF)
peak, cpu = _ru.ru_maxrss, _ru.ru_utime + _ru.ru_stime - cpu0
print(json.dumps({"seconds": dt, "cpu_s": cpu, "spikes": spikes, "units": n, "peak_mb": (peak - base) / 1024}))
"""


def _child(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _naive_mixture_train(rng, params, duration):
    """Textbook reference: one interval at a time in a Python loop (the fitted discharge model of
    ``mixture_train`` without rate fluctuations)."""
    w_b, m_b, d, k_d, k, mu, _sigma = params
    t, out = 0.0, []
    while True:
        if rng.uniform() < w_b:
            t += rng.gamma(2.0, m_b / 2.0) * 1e-3
        else:
            t += (rng.gamma(k_d, d / k_d) + rng.gamma(k, mu / k)) * 1e-3
        if t >= duration:
            return out
        out.append(t)


def bench_trains(n_units: int, duration: float) -> dict:
    """The simulator's generator (``mixture_train``, fitted rows of the mouse preset) against the
    per-spike loop, same units (rate fluctuations off, so both draw the same process)."""
    import numpy as np

    from nwb_celltype.simulate import mixture_train
    from nwb_celltype.simulate._params import fitted_classes

    rows = np.vstack([f.discharge for f in fitted_classes("mouse").values() if len(f.discharge)])
    rng = np.random.default_rng(0)
    params = rows[rng.integers(len(rows), size=n_units)].copy()
    params[:, 6] = 0.0
    t0 = time.perf_counter()
    ours = [mixture_train(rng, p, duration) for p in params]
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = [_naive_mixture_train(rng, p, duration) for p in params]
    t_ref = time.perf_counter() - t0
    n_ours, n_ref = sum(map(len, ours)), sum(map(len, ref))
    return {
        "ours_s": t_ours,
        "ref_s": t_ref,
        "spikes": n_ours,
        "ref_spikes": n_ref,
        "speedup": t_ref / t_ours,
    }


def bench_units_write(n_units: int, duration: float, tmp: Path) -> dict:
    import numpy as np
    from pynwb import NWBHDF5IO

    from nwb_celltype.simulate import simulate_units, write_nwb

    r, segs = simulate_units(
        class_counts={"PkC_ss": n_units // 2, "MLI": n_units - n_units // 2}, duration_s=duration
    )
    t0 = time.perf_counter()
    write_nwb(tmp / "ours.nwb", r, segs, compression=None)
    t_ours = time.perf_counter() - t0
    # reference: same file built with pynwb's row-by-row add_unit
    import datetime

    from pynwb import NWBFile

    t0 = time.perf_counter()
    f = NWBFile(
        session_description="ref",
        identifier="ref",
        session_start_time=datetime.datetime.now(datetime.timezone.utc),
    )
    dev = f.create_device(name="probe")
    g = f.create_electrode_group(name="g", description="d", location="cerebellum", device=dev)
    for _ in range(384):
        f.add_electrode(group=g, location="SIMmo")
    for i in range(len(r)):
        f.add_unit(
            spike_times=r.spike_times(i),
            obs_intervals=[[0.0, duration]],
            electrodes=r.electrodes[i].tolist(),
            waveform_mean=r.waveforms[i],
        )
    with NWBHDF5IO(str(tmp / "ref.nwb"), "w") as io:
        io.write(f)
    t_ref = time.perf_counter() - t0
    return {
        "ours_s": t_ours,
        "ref_s": t_ref,
        "units": len(r),
        "spikes": int(np.sum(r.spike_counts)),
        "speedup": t_ref / t_ours,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller sizes (smoke run)")
    args = ap.parse_args()
    units, dur = (100, 600.0) if args.quick else (500, 3600.0)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        print(f"== {units}-unit, {dur:g} s mouse recording (fresh process each) ==")
        gen = _child("recording", "-", str(units), str(dur), "none")
        print(
            f"generate only      : {gen['seconds']:.1f} s (CPU {gen['cpu_s']:.1f} s), {gen['spikes'] / 1e6:.1f} M spikes, peak +{gen['peak_mb']:.0f} MB"
        )
        raw = _child("recording", str(tmp / "raw.nwb"), str(units), str(dur), "none")
        print(
            f"+ write (no gzip)  : {raw['seconds']:.1f} s (CPU {raw['cpu_s']:.1f} s), peak +{raw['peak_mb']:.0f} MB, "
            f"{(tmp / 'raw.nwb').stat().st_size / 1e6:.0f} MB file"
        )
        gz = _child("recording", str(tmp / "gz.nwb"), str(units), str(dur), "gzip")
        print(
            f"+ write (gzip 4)   : {gz['seconds']:.1f} s (CPU {gz['cpu_s']:.1f} s), peak +{gz['peak_mb']:.0f} MB, "
            f"{(tmp / 'gz.nwb').stat().st_size / 1e6:.0f} MB file"
        )
        for p in tmp.glob("*.nwb"):
            p.unlink()
        lib_dur = 120.0 if args.quick else 600.0
        print(f"== default C4-shaped library, {lib_dur:g} s sessions, uncompressed ==")
        lib = _child("library", str(tmp / "lib"), "0", str(lib_dur), "none")
        print(
            f"library            : {lib['seconds']:.1f} s (CPU {lib['cpu_s']:.1f} s), {lib['units']} units, {lib['spikes'] / 1e6:.1f} M spikes, "
            f"peak +{lib['peak_mb']:.0f} MB"
        )
        print("== ratios against plain references, same run, same data ==")
        tr = bench_trains(20 if args.quick else 50, 600.0)
        print(
            f"spike trains       : vectorised {tr['ours_s']:.3f} s vs per-spike loop {tr['ref_s']:.2f} s "
            f"({tr['spikes']} vs {tr['ref_spikes']} spikes) -> {tr['speedup']:.0f}x"
        )
        wr = bench_units_write(40 if args.quick else 100, 300.0, tmp)
        print(
            f"Units write        : bulk columns {wr['ours_s']:.2f} s vs add_unit rows {wr['ref_s']:.2f} s "
            f"({wr['units']} units, {wr['spikes']} spikes) -> {wr['speedup']:.1f}x"
        )


if __name__ == "__main__":
    main()
