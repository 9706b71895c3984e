"""Build (or reuse) the npyx oracle environment: ``python tests/oracle/build.py [--dir DIR]``.

A virtual environment of the running interpreter with tests/oracle/requirements.txt (npyx 4.3.1,
laplace-torch 0.1a2 and their dependencies on CPU torch 2.13.0), checked by tests/oracle/ready.py.
It is reused while its key matches (the requirements, this script, the interpreter's version and
path, and whether PyTorch's CPU index was reachable, which decides the torchvision build: see
torchvision_ops.py) and it passes ready.py; otherwise it is rebuilt from scratch.

Exit status: 0 when the environment is ready. When it cannot be built or is not ready, the reason is
printed and the exit status is 1 in CI (``CI=true``); elsewhere 0 after a WARNING (the oracle tests
then skip loudly).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import runpy
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
READY = HERE / "ready.py"
#: With PyPI's CPU index reachable, torchvision's CPU build (with its compiled ops) is taken.
TORCHVISION_CPU = "torchvision==0.28.0+cpu"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def cache_key(requirements: Path, index_args: list[str]) -> str:
    """sha256 of what decides the environment's content."""
    h = hashlib.sha256()
    for part in (
        requirements.read_bytes(),
        Path(__file__).read_bytes(),
        sys.version.encode(),
        os.path.realpath(sys.executable).encode(),
        " ".join(index_args).encode(),
    ):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()


def _size_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def build(target: Path, requirements: Path, index_args: list[str]) -> dict:
    """Create the environment afresh at ``target``, install, check readiness; returns the readiness
    report with size and build time. Raises RuntimeError with the reason on failure (and removes
    what it built, so that nothing half-built is reused)."""
    t0 = time.perf_counter()
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        venv = subprocess.run([sys.executable, "-m", "venv", str(target)], capture_output=True, text=True)
        if venv.returncode != 0:
            raise RuntimeError(f"{sys.executable} -m venv failed:\n{venv.stderr[-2000:]}")
        extra = [TORCHVISION_CPU] if index_args else []
        cmd = [str(target / "bin" / "python"), "-m", "pip", "install", "-q", *index_args]
        pip = subprocess.run([*cmd, "-r", str(requirements), *extra], capture_output=True, text=True)
        if pip.returncode != 0:
            errors = [ln for ln in pip.stderr.splitlines() if ln.startswith("ERROR")]
            raise RuntimeError(
                f"pip could not install {requirements}:\n" + ("\n".join(errors) or pip.stderr)[-4000:]
            )
        report = _ready(target)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    report["build_s"] = round(time.perf_counter() - t0, 1)
    report["size_bytes"] = _size_bytes(target)
    return report


def _ready(env: Path) -> dict:
    proc = subprocess.run([str(env / "bin" / "python"), str(READY)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-4000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", type=Path, default=Path.home() / ".cache/nwb-celltype/oracle-venv")
    ap.add_argument("--requirements", type=Path, default=REQUIREMENTS)
    ap.add_argument("--torch-index", default=None, help="PyTorch's CPU wheel index (default: its URL)")
    args = ap.parse_args(argv)
    probe = runpy.run_path(str(HERE.parents[1] / ".ci" / "torch_index.py"))
    index_args = probe["index_args"](args.torch_index if args.torch_index is not None else probe["DEFAULT"])
    key = cache_key(args.requirements, index_args)
    stamp = args.dir / "nwb-celltype-oracle.json"
    if stamp.exists() and json.loads(stamp.read_text()).get("key") == key:
        try:
            _ready(args.dir)
            print(f"npyx oracle environment up to date and ready: {args.dir}")
            return 0
        except (RuntimeError, OSError) as exc:  # damaged since it was built: build it again
            print(f"npyx oracle environment in {args.dir} is not ready, rebuilding:\n{exc}", flush=True)
    print(f"building the npyx oracle environment in {args.dir} (CPU torch; a few minutes) ...", flush=True)
    try:
        report = build(args.dir, args.requirements, index_args)
    except RuntimeError as exc:
        msg = f"could not build the npyx oracle environment in {args.dir}: {exc}"
        if in_ci():
            print(f"ERROR (CI=true): {msg}", file=sys.stderr)
            return 1
        print(f"WARNING: {msg}\nThe oracle (npyx parity) tests will be SKIPPED.", file=sys.stderr)
        return 0
    report["key"] = key
    stamp.write_text(json.dumps(report, indent=1))
    print(
        f"npyx oracle environment ready in {report['build_s']:.0f} s, "
        f"{report['size_bytes'] / 1e9:.2f} GB: {json.dumps({k: report[k] for k in report if k != 'key'})}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
