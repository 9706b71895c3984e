"""Benchmark: read every unit of a 500-unit x 20k-spike NWB file over HTTP (loopback server with
added latency per request) and count requests, bytes, time and peak memory, for our reader and two
references measured side by side in the same run on the same file:

- ``pynwb+remfile``: ``remfile.File(url)`` (defaults) -> h5py -> ``NWBHDF5IO``, then
  ``units["spike_times"][i]`` and ``units["waveform_mean"][i]`` for each unit;
- ``pynwb.read_nwb``: ``pynwb.read_nwb(url)`` (fsspec HTTP backend, its defaults), same loop.

Each reader runs in its own process (fresh imports, its own peak RSS); the server counts requests.

    python benchmarks/bench_read.py [--units 500] [--spikes 20000] [--latency-ms 30]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _reset_peak() -> None:
    """Reset the kernel's peak-RSS mark (VmHWM) so the peak covers the reading only."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:  # not Linux, or not allowed: the peak then includes the imports
        pass


def _peak_mb() -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_file(path: Path, n_units: int, n_spikes: int, n_channels: int = 16) -> None:
    """A Units table written with pynwb: spike_times chunked in 2**20 values (8 MiB), waveform_mean
    (units, 82, channels) float32 chunked by 64 units, electrodes with cerebellar locations."""
    from hdmf.backends.hdf5 import H5DataIO
    from hdmf.common import DynamicTableRegion, ElementIdentifiers, VectorData, VectorIndex
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.misc import Units

    rng = np.random.default_rng(0)
    flat = np.sort(rng.uniform(0, 2000, (n_units, n_spikes)), axis=1).ravel()
    nwb = NWBFile(
        session_description="bench",
        identifier="bench",
        session_start_time=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
    )
    dev = nwb.create_device(name="probe")
    grp = nwb.create_electrode_group(name="shank", description="s", location="cerebellum", device=dev)
    for c in range(n_channels):
        nwb.add_electrode(group=grp, location=["CENT3mo", "CENT3pu", "CENT3gr"][c % 3])
    t = np.arange(82)
    wave = (-np.exp(-0.5 * ((t - 30) / 3.0) ** 2))[None, :, None] * rng.uniform(
        0.1, 1, (n_units, 1, n_channels)
    )
    st = VectorData(name="spike_times", description="s", data=H5DataIO(flat, chunks=(1 << 20,)))
    sti = VectorIndex(name="spike_times_index", data=np.arange(1, n_units + 1) * n_spikes, target=st)
    wm = VectorData(
        name="waveform_mean",
        description="w",
        data=H5DataIO(wave.astype("f4"), chunks=(64, 82, n_channels)),
    )
    el = DynamicTableRegion(
        name="electrodes", description="e", data=np.tile(np.arange(n_channels), n_units), table=nwb.electrodes
    )
    eli = VectorIndex(name="electrodes_index", data=np.arange(1, n_units + 1) * n_channels, target=el)
    units = Units(
        name="units",
        id=ElementIdentifiers(name="id", data=np.arange(n_units)),
        columns=[st, sti, wm, el, eli],
        waveform_rate=30000.0,
        electrode_table=nwb.electrodes,
    )
    nwb.units = units
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)


def needed_bytes(path: Path) -> int:
    """Storage bytes of the datasets our reader needs (ids, spike times + index, waveforms,
    electrodes region + index, electrode locations)."""
    import h5py

    names = ["id", "spike_times", "spike_times_index", "waveform_mean", "electrodes", "electrodes_index"]
    with h5py.File(path, "r") as f:
        total = sum(f["units"][n].id.get_storage_size() for n in names if n in f["units"])
        total += f["general/extracellular_ephys/electrodes/location"].id.get_storage_size()
    return total


# -- readers (run in a child process) ---------------------------------------------------------


def run_ours(url: str, batch_size: int, cache_dir: str | None) -> dict:
    from nwb_celltype.io import read_units

    total, n = 0.0, 0
    for b in read_units(url, batch_size=batch_size, cache_dir=cache_dir or False):
        total += float(b.spike_times_s.sum()) + float(np.nansum(b.waveforms))
        n += len(b)
    return {"units": n, "checksum": total}


def _loop_pynwb(nwbfile) -> dict:
    units = nwbfile.units
    total, n = 0.0, 0
    for i in range(len(units)):
        total += float(np.sum(units["spike_times"][i]))
        w = np.asarray(units["waveform_mean"][i])
        ptp = w.max(axis=0) - w.min(axis=0)
        total += float(np.nansum(w[:, int(np.argmax(ptp))]))
        n += 1
    return {"units": n, "checksum": total}


def run_pynwb_remfile(url: str) -> dict:
    import h5py
    import remfile
    from pynwb import NWBHDF5IO

    rf = remfile.File(url)
    with h5py.File(rf, "r") as h5, NWBHDF5IO(file=h5, mode="r", load_namespaces=True) as io:
        return _loop_pynwb(io.read())


def run_read_nwb(url: str) -> dict:
    import pynwb

    nwbfile = pynwb.read_nwb(url)
    return _loop_pynwb(nwbfile)


def child(argv: list[str]) -> None:
    import warnings

    warnings.simplefilter("ignore")
    method, url = argv[0], argv[1]
    import h5py  # noqa: F401  (imports before the RSS baseline)
    import pynwb  # noqa: F401

    import nwb_celltype.io  # noqa: F401

    base = _rss_mb()
    _reset_peak()
    t0 = time.perf_counter()
    if method == "ours":
        out = run_ours(url, int(argv[2]), argv[3] if len(argv) > 3 else None)
    elif method == "pynwb+remfile":
        out = run_pynwb_remfile(url)
    elif method == "pynwb.read_nwb":
        out = run_read_nwb(url)
    else:
        raise SystemExit(f"unknown method {method}")
    out["seconds"] = time.perf_counter() - t0
    out["peak_mb_over_baseline"] = _peak_mb() - base
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--units", type=int, default=500)
    ap.add_argument("--spikes", type=int, default=20000)
    ap.add_argument("--latency-ms", type=float, default=30.0)
    ap.add_argument("--repeats", type=int, default=5, help="runs per reader; the median time is shown")
    ap.add_argument("--skip-references", action="store_true")
    args = ap.parse_args()

    from nwb_celltype.testing.servers import RangeServer

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        f = tmp / "bench.nwb"
        write_file(f, args.units, args.spikes)
        need = needed_bytes(f)
        print(
            f"file: {args.units} units x {args.spikes} spikes, {f.stat().st_size / 1e6:.1f} MB; "
            f"needed datasets {need / 1e6:.1f} MB; latency {args.latency_ms:g} ms/request"
        )
        # (label, method, args per repeat): the cold-cache runs each fill a fresh cache directory;
        # the warm-cache runs reuse the one the first cold run filled.
        runs = [
            ("ours (batch 256)", "ours", lambda r: ["256"]),
            ("ours (batch 64)", "ours", lambda r: ["64"]),
            ("ours (batch 256, cold disk cache)", "ours", lambda r: ["256", str(tmp / f"cache{r}")]),
            ("ours (batch 256, warm disk cache)", "ours", lambda r: ["256", str(tmp / "cache0")]),
        ]
        if not args.skip_references:
            runs += [
                ("pynwb+remfile", "pynwb+remfile", lambda r: []),
                ("pynwb.read_nwb", "pynwb.read_nwb", lambda r: []),
            ]
        results = []
        reps: dict[str, list[dict]] = {label: [] for label, _, _ in runs}
        with RangeServer(tmp, latency_s=args.latency_ms / 1000) as server:
            url = server.url_for(f)
            # round robin over the readers, so that each sees the same (shared, noisy) machine
            for rep in range(args.repeats):
                for label, method, extra in runs:
                    server.reset_stats()
                    proc = subprocess.run(
                        [sys.executable, __file__, "--child", method, url, *extra(rep)],
                        capture_output=True,
                        text=True,
                        check=False,
                    )
                    if proc.returncode != 0:
                        print(f"{label} failed:\n{proc.stderr[-3000:]}")
                        continue
                    res = json.loads(proc.stdout.strip().splitlines()[-1])
                    st = server.stats()
                    res.update(requests=st.requests, bytes=st.bytes_sent)
                    reps[label].append(res)
        for label, _, _ in runs:
            rs = reps[label]
            if not rs:
                continue
            res = dict(rs[0])
            res["seconds"] = float(np.median([r["seconds"] for r in rs]))
            res["seconds_all"] = [round(r["seconds"], 2) for r in rs]
            res["peak_mb_over_baseline"] = max(r["peak_mb_over_baseline"] for r in rs)
            res["requests"] = max(r["requests"] for r in rs)
            res["bytes"] = max(r["bytes"] for r in rs)
            res["label"] = label
            results.append(res)
        sums = {round(r["checksum"], 3) for r in results}
        print(f"all readers read the same values: {len(sums) == 1} ({sums})")
        head = f"{'reader':<36}{'requests':>9}{'MB':>9}{'x needed':>9}{'median s':>9}{'peak MB':>9}  runs (s)"
        print(head)
        for r in results:
            print(
                f"{r['label']:<36}{r['requests']:>9}{r['bytes'] / 1e6:>9.1f}{r['bytes'] / need:>9.2f}"
                f"{r['seconds']:>9.2f}{r['peak_mb_over_baseline']:>9.0f}  {r['seconds_all']}"
            )
        ours = results[0]
        for r in (r for r in results if not r["label"].startswith("ours")):
            print(
                f"vs {r['label']}: {r['requests'] / max(ours['requests'], 1):.1f}x the requests, "
                f"{r['seconds'] / ours['seconds']:.1f}x the time, {r['bytes'] / max(ours['bytes'], 1):.2f}x the bytes"
            )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
    else:
        main()
