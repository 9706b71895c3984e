"""Start-up cost (issue 19): what each entry point imports, checked in fresh processes; the ACG
kernel compiles once per bucket whatever the threads do; the persistent compilation cache makes a
second process load instead of compile; the scipy replacements on the features path give scipy's
results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from nwb_celltype.features import _pairs as pairs_mod
from nwb_celltype.features import acg as acg_mod
from nwb_celltype.features.acg import compute_acg_3d_batch

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "nwb_celltype" / "data" / "demo_mouse.nwb"
HEAVY = (
    "pynwb",
    "hdmf",
    "jax",
    "torch",
    "scipy",
    "pandas",
    "matplotlib",
    "sklearn",
    "h5py",
    "numpy",
    "requests",
    "remfile",
    "dandi",
)
#: The HTTP stack: only remote sources need it.
HTTP = {"requests", "remfile", "dandi"}

# runs the CLI in-process (exit status ignored) and prints the heavy top-level modules it imported
_PROBE = """
import json, sys
from nwb_celltype.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    if exc.code not in (0, None):
        raise
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def _imports(*args: str, env: dict | None = None) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE.format(heavy=HEAVY), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_package_import_is_light():
    code = f"import sys, json, nwb_celltype; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["features", "--help"], ["annotate", "--help"]])
def test_help_and_version_import_nothing_heavy(args):
    assert _imports(*args) == set()


def test_features_commands_import_no_torch_nor_pynwb(tmp_path):
    c4 = _imports("features", str(DEMO), "--out", str(tmp_path / "c4.npz"), "--family", "c4-3d")
    assert "jax" in c4  # (the probe sees what the command really ran)
    assert not c4 & {"torch", "pynwb", "hdmf", "scipy", "pandas", "matplotlib", "sklearn", *HTTP}
    default = _imports("features", str(DEMO), "--out", str(tmp_path / "d.npz"))
    assert not default & {"torch", "jax", "pynwb", "hdmf", "scipy", "pandas", "matplotlib", "sklearn", *HTTP}


def test_default_model_commands_import_no_torch_nor_jax(tmp_path):
    """The default (real-data) model loads and runs in numpy: annotate, predict and the demo import
    neither torch nor JAX (nor the HTTP stack for a local file); the C4-family demo model does."""
    annotate = _imports("annotate", str(DEMO), "--out", str(tmp_path / "a.nwb"), "-q")
    assert "pynwb" in annotate  # (the probe sees what the command really ran: it wrote NWB)
    assert not annotate & {"torch", "jax", *HTTP}
    _imports("features", str(DEMO), "--out", str(tmp_path / "d.npz"), "-q")
    predict = _imports("predict", str(tmp_path / "d.npz"), "--out", str(tmp_path / "p.tsv"), "-q")
    assert (tmp_path / "p.tsv").exists() and not predict & {"torch", "jax", "pynwb", *HTTP}
    demo = _imports("demo", "--out", str(tmp_path / "demo.nwb"))
    assert (tmp_path / "demo.nwb").exists() and not demo & {"torch", "jax", *HTTP}
    c4 = _imports(
        "annotate",
        str(DEMO),
        "--out",
        str(tmp_path / "c4.nwb"),
        "-q",
        "--model",
        str(DEMO.parent / "demo_model"),
    )
    assert {"torch", "jax"} <= c4


def test_namespace_loaded_whenever_pynwb_is_imported():
    # the post-import hook: importing the package first, pynwb later (or the other way round, or
    # through our own nwb layer) always leaves pynwb knowing ndx-celltype
    for first in (
        "import nwb_celltype; import pynwb",
        "import pynwb; import nwb_celltype",
        "import nwb_celltype.nwb",
    ):
        code = f"{first}\nimport pynwb\nprint('ndx-celltype' in pynwb.available_namespaces())"
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.strip() == "True", first


def _trains(seed: int, n_units: int = 12):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_units):
        rate = float(rng.uniform(2, 120))
        n = int(rng.integers(50, 40_000))
        out.append(np.sort(rng.uniform(0, n / rate, n)))
    return out


def test_one_compilation_per_bucket_threaded_and_repeated(monkeypatch):
    """Fresh kernels; four threads each run three batches of different sizes (different packing of
    units into calls, racing for the first compilation): exactly one trace per (geometry,
    direction) bucket, and the results equal the single-threaded ones."""
    monkeypatch.setattr(pairs_mod, "_KERNELS", {})
    batches = [_trains(s, n) for s, n in ((1, 12), (2, 3), (3, 25))]
    before = acg_mod.TRACE_COUNT["pairs"]
    results: dict[tuple[int, int, bool], np.ndarray] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def run(k: int) -> None:
        try:
            barrier.wait()
            for b, trains in enumerate(batches):
                for positive in (True, False):
                    results[(k, b, positive)] = compute_acg_3d_batch(trains, positive_lags_only=positive)[0]
        except BaseException as exc:  # (reported by the main thread)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert acg_mod.TRACE_COUNT["pairs"] - before == 2  # one per direction: one bucket each
    assert len(pairs_mod._KERNELS) == 2
    for (_, b, positive), got in results.items():
        np.testing.assert_array_equal(got, results[(0, b, positive)])
    # and later calls in this process trace nothing
    compute_acg_3d_batch(_trains(9, 40), positive_lags_only=True)
    assert acg_mod.TRACE_COUNT["pairs"] - before == 2


_CACHE_PROBE = """
import json, time
import numpy as np
import jax
from jax import monitoring
events = {"hits": 0, "misses": 0, "compile_s": 0.0}
def on_event(name, **kw):
    if name == "/jax/compilation_cache/cache_hits":
        events["hits"] += 1
    elif name == "/jax/compilation_cache/cache_misses":
        events["misses"] += 1
def on_duration(name, secs, **kw):
    if name == "/jax/core/compile/backend_compile_duration":
        events["compile_s"] += secs
monitoring.register_event_listener(on_event)
monitoring.register_event_duration_secs_listener(on_duration)
from nwb_celltype.features.acg import compute_acg_3d_batch
rng = np.random.default_rng(0)
compute_acg_3d_batch([np.sort(rng.uniform(0, 100, 3000))], positive_lags_only=True)
print(json.dumps(events))
"""


def _cache_run(env: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _CACHE_PROBE],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_persistent_cache_second_process_compiles_nothing(tmp_path):
    env = {"NWB_CELLTYPE_JAX_CACHE": str(tmp_path / "jax")}
    first = _cache_run(env)
    assert first["misses"] == 1 and first["hits"] == 0
    assert any((tmp_path / "jax").glob("*-cache"))
    second = _cache_run(env)
    assert second["hits"] == 1 and second["misses"] == 0


def test_persistent_cache_follows_xdg_and_can_be_switched_off(tmp_path):
    xdg = tmp_path / "xdg"
    env = {"XDG_CACHE_HOME": str(xdg), "NWB_CELLTYPE_JAX_CACHE": ""}
    off = _cache_run(env)  # empty value: off
    assert off["hits"] == off["misses"] == 0
    assert not xdg.exists()
    env = {k: v for k, v in os.environ.items() if k != "NWB_CELLTYPE_JAX_CACHE"}
    env["XDG_CACHE_HOME"] = str(xdg)
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-c", _CACHE_PROBE], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert any((xdg / "nwb-celltype" / "jax").glob("*-cache"))


def test_concurrent_processes_share_the_cache(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NWB_CELLTYPE_JAX_CACHE": str(tmp_path / "jax")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CACHE_PROBE],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(3)
    ]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        assert "Error reading persistent compilation cache" not in err
    assert _cache_run({"NWB_CELLTYPE_JAX_CACHE": str(tmp_path / "jax")})["hits"] == 1


def test_find_peaks_and_gaussian_equal_scipy():
    from scipy.signal import find_peaks as scipy_find_peaks
    from scipy.stats import norm

    from nwb_celltype.features._geometry import _smooth_gaussian_matrix
    from nwb_celltype.features.waveform import find_peaks

    rng = np.random.default_rng(0)
    for trial in range(3000):
        x = rng.normal(size=int(rng.integers(0, 140)))
        if trial % 3 == 0:  # plateaus
            x = np.repeat(np.round(x * 2), rng.integers(1, 4))
        height = 0.5 * np.std(x) if trial % 2 and len(x) else None
        distance = None if trial % 4 == 0 else max(1, len(x) // 20) + 0.5 * (trial % 7 == 0)
        np.testing.assert_array_equal(
            find_peaks(x, height=height, distance=distance),
            scipy_find_peaks(x, height=height, distance=distance)[0],
        )
    sd = 3
    x = np.arange(-4 * sd, 4 * sd + 1)
    kernel = norm.pdf(x, 0, sd)
    kernel = kernel / kernel.sum()
    mat = _smooth_gaussian_matrix(40, sd)
    np.testing.assert_array_equal(mat[20, 20 - 4 * sd : 20 + 4 * sd + 1], kernel)
