"""Whole commands, end to end (issue 19): every command runs in a fresh process, as a user runs it,
cold (empty JAX compilation cache, input file evicted from the page cache) and warm (cache filled,
file cached); npyx 4.3.1's ACG (``crosscorr_vs_firing_rate`` + ``convert_acg_log``, the part of C4
that our ``features`` replaces) is timed on the same spike trains in the same run, in the oracle
environment (``NWB_CELLTYPE_ORACLE_PYTHON``, see tests/oracle/requirements.txt).

    python benchmarks/bench_end_to_end.py [--sizes 100x600,500x3600] [--repeats 3] [--oracle PY]
        [--data-dir DIR] [--json OUT]

Rows: ``nwb-celltype --help``; ``features --family c4-3d``; ``annotate --model`` the C4-family demo
bundle; ``features`` (default family acg-isi-wave); ``annotate`` with the default model when the
package ships one. Per row: wall time of the whole process (interpreter start to exit), CPU time
(user + sys) and peak RSS of that process, cold and the median of ``--repeats`` warm runs, and
the ratios npyx / ours: wall time, and CPU time (npyx's is its process CPU time over the same loop;
CPU ratios move less than wall ratios when other jobs share the machine). A last probe reports what a fresh process spends tracing and compiling the
ACG kernel with an empty and with a filled cache.

Sessions are simulated (``simulate_recording``, seed 0, uncompressed) into ``--data-dir`` once and
reused.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

NPYX_SCRIPT = """
import json, sys, time
import numpy as np
import torchvision_ops  # noqa: F401  (tests/oracle/torchvision_ops.py: npyx must import torchvision)
import npyx.corr as c
d = np.load(sys.argv[1])
w = np.round(np.cumsum(np.random.default_rng(0).exponential(1 / 20, 2000)) * 30000).astype(np.int64)
_, a = c.crosscorr_vs_firing_rate(w, w, 2000, 1)  # numba compilation, not timed
c.convert_acg_log(a, 1, 2000)
t0, c0 = time.perf_counter(), time.process_time()
for k in d.files:
    t = d[k]
    if len(t) < 2:
        continue
    _, a = c.crosscorr_vs_firing_rate(t, t, 2000, 1)
    c.convert_acg_log(a, 1, 2000)
print(json.dumps({"acg_s": time.perf_counter() - t0, "acg_cpu_s": time.process_time() - c0}))
"""

COMPILE_PROBE = """
import json
import numpy as np
from jax import monitoring
ev = {"trace_s": 0.0, "lower_s": 0.0, "compile_s": 0.0, "hits": 0, "misses": 0}
names = {"/jax/core/compile/jaxpr_trace_duration": "trace_s",
         "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_s",
         "/jax/core/compile/backend_compile_duration": "compile_s"}
def dur(name, secs, **kw):
    if name in names:
        ev[names[name]] += secs
def event(name, **kw):
    if name.endswith("/cache_hits"):
        ev["hits"] += 1
    elif name.endswith("/cache_misses"):
        ev["misses"] += 1
monitoring.register_event_duration_secs_listener(dur)
monitoring.register_event_listener(event)
from nwb_celltype.features.acg import compute_acg_3d_batch
rng = np.random.default_rng(0)
compute_acg_3d_batch([np.sort(rng.uniform(0, 100, 3000))], positive_lags_only=True)
print(json.dumps(ev))
"""


def session(data_dir: Path, n_units: int, duration: float) -> tuple[Path, int]:
    """The simulated session file (made once) and its spike count."""
    import h5py

    path = data_dir / f"units{n_units}_{int(duration)}s.nwb"
    if not path.exists():
        from nwb_celltype.simulate import simulate_recording

        print(f"simulating {path} ...", flush=True)
        simulate_recording(
            path.with_suffix(".tmp.nwb"),
            n_units=n_units,
            duration_s=duration,
            seed=0,
            compression=None,
            keep_spikes=False,
        )
        path.with_suffix(".tmp.nwb").rename(path)
    with h5py.File(path, "r") as f:
        return path, int(f["units/spike_times"].shape[0])


def evict(path: Path) -> None:
    """Drop the file's pages from the page cache (clean pages; no root needed)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def run_process(argv: list[str], env: dict) -> dict:
    """Run one command in a fresh process: wall s, CPU s (user + sys), peak RSS MB."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{err.decode()[-3000:]}{out.decode()[-1000:]}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_mb": usage.ru_maxrss / 1024}


def time_command(args: list[str], input_path: Path | None, out: Path | None, repeats: int, env: dict) -> dict:
    """Cold (fresh empty JAX cache, input evicted) then ``repeats`` warm runs of one command."""
    argv = [sys.executable, *args] if args[0] == "-c" else [sys.executable, "-m", "nwb_celltype.cli", *args]
    with tempfile.TemporaryDirectory() as cache:
        env = {**env, "NWB_CELLTYPE_JAX_CACHE": cache}
        if out is not None and out.exists():
            out.unlink()
        if input_path is not None:
            evict(input_path)
        cold = run_process(argv, env)
        warm = []
        for _ in range(repeats):
            if out is not None and out.exists():
                out.unlink()
            warm.append(run_process(argv, env))
    med = {k: statistics.median(r[k] for r in warm) for k in warm[0]}
    return {"cold": cold, "warm_median": med, "warm_all": warm}


def time_npyx(python: str, path: Path) -> dict | None:
    """npyx's ACG of every unit of the file, timed inside the oracle process: wall and CPU s."""
    import h5py

    with h5py.File(path, "r") as f:
        st = f["units/spike_times"][:]
        idx = f["units/spike_times_index"][:]
    start = np.concatenate([[0], idx[:-1]])
    with tempfile.TemporaryDirectory() as d:
        trains = {
            f"u{i}": np.round(st[a:b] * 30000).astype(np.int64)
            for i, (a, b) in enumerate(zip(start, idx, strict=True))
        }
        np.savez(Path(d) / "in.npz", **trains)
        (Path(d) / "run.py").write_text(NPYX_SCRIPT)
        env = {**os.environ, "PYTHONPATH": str(ROOT / "tests" / "oracle")}
        proc = subprocess.run([python, "run.py", "in.npz"], capture_output=True, text=True, cwd=d, env=env)
        if proc.returncode != 0:
            print("npyx failed:", proc.stderr[-2000:], file=sys.stderr)
            return None
        return json.loads(proc.stdout.strip().splitlines()[-1])


def compile_probe(env: dict) -> dict:
    """Trace / lowering / backend-compile seconds of a fresh process, empty then filled cache."""
    res = {}
    with tempfile.TemporaryDirectory() as cache:
        for name in ("empty_cache", "filled_cache"):
            argv = [sys.executable, "-c", COMPILE_PROBE]
            proc = subprocess.run(
                argv, env={**env, "NWB_CELLTYPE_JAX_CACHE": cache}, cwd=ROOT, capture_output=True, text=True
            )
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr[-3000:])
            res[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    return res


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100x600,500x3600", help="UNITSxSECONDS,...")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--oracle", default=os.environ.get("NWB_CELLTYPE_ORACLE_PYTHON"))
    ap.add_argument("--data-dir", type=Path, default=Path.home() / ".cache" / "nwb-celltype" / "bench-e2e")
    ap.add_argument("--no-annotate-large", action="store_true", help="annotate only the first size")
    ap.add_argument("--no-npyx-large", action="store_true", help="time npyx on the first size only")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    demo_model = ROOT / "nwb_celltype" / "data" / "demo_model"
    default_model = ROOT / "nwb_celltype" / "data" / "default_model"
    have_npyx = bool(args.oracle) and Path(args.oracle).exists()
    results: dict = {
        "machine": machine(),
        "load_before": os.getloadavg(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "rows": [],
    }
    print(results["machine"], "load", results["load_before"], flush=True)

    def row(name: str, cmd: list[str], path=None, out=None, npyx=None, spikes=None):
        r = time_command(cmd, path, out, args.repeats, env)
        r.update(name=name, npyx=npyx, spikes=spikes)
        w, c = r["warm_median"], r["cold"]
        ratio = ""
        if npyx:
            r["ratio_wall_cold"] = npyx["acg_s"] / c["wall_s"]
            r["ratio_wall_warm"] = npyx["acg_s"] / w["wall_s"]
            r["ratio_cpu_warm"] = npyx["acg_cpu_s"] / w["cpu_s"]
            ratio = (
                f"  npyx {npyx['acg_s']:.1f} s (cpu {npyx['acg_cpu_s']:.1f}) -> wall {r['ratio_wall_cold']:.1f}x "
                f"cold, {r['ratio_wall_warm']:.1f}x warm; cpu {r['ratio_cpu_warm']:.1f}x warm"
            )
        results["rows"].append(r)
        print(
            f"{name}: cold {c['wall_s']:.2f} s (cpu {c['cpu_s']:.2f}, {c['peak_mb']:.0f} MB), warm "
            f"{w['wall_s']:.2f} s (cpu {w['cpu_s']:.2f}, {w['peak_mb']:.0f} MB){ratio}",
            flush=True,
        )

    row("python -c pass (the interpreter alone)", ["-c", "pass"])
    row("nwb-celltype --help", ["--help"])
    row("nwb-celltype --version", ["--version"])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for k, size in enumerate(args.sizes.split(",")):
            n_units, duration = (float(x) for x in size.split("x"))
            path, spikes = session(args.data_dir, int(n_units), duration)
            label = f"{int(n_units)} units x {int(duration)} s ({spikes / 1e6:.2f} M spikes)"
            npyx = time_npyx(args.oracle, path) if have_npyx and not (k and args.no_npyx_large) else None
            if npyx:
                print(f"npyx ACG, {label}: {npyx['acg_s']:.1f} s (cpu {npyx['acg_cpu_s']:.1f} s)", flush=True)
            f_out = tmp / "f.npz"
            row(
                f"features --family c4-3d, {label}",
                ["features", str(path), "--family", "c4-3d", "--out", str(f_out), "--overwrite"],
                path,
                f_out,
                npyx,
                spikes,
            )
            row(
                f"features (acg-isi-wave), {label}",
                ["features", str(path), "--out", str(f_out), "--overwrite"],
                path,
                f_out,
                npyx,
                spikes,
            )
            if k > 0 and args.no_annotate_large:
                continue
            a_out = tmp / "a.nwb"
            row(
                f"annotate --model demo_model (c4-3d), {label}",
                ["annotate", str(path), "--model", str(demo_model), "--out", str(a_out), "-q"],
                path,
                a_out,
                npyx,
                spikes,
            )
            if default_model.exists():
                row(
                    f"annotate (default model, acg-isi-wave), {label}",
                    ["annotate", str(path), "--out", str(a_out), "-q"],
                    path,
                    a_out,
                    npyx,
                    spikes,
                )
    results["compile_probe"] = compile_probe(env)
    results["load_after"] = os.getloadavg()
    print("compile probe:", json.dumps(results["compile_probe"]), "load", results["load_after"], flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
