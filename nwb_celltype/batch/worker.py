"""What runs on a worker (a pool process or a Dask worker): annotate one asset of a dandiset with
a model loaded once per worker process, write the derived file and its state record."""

from __future__ import annotations

import logging
import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import ModelMismatchError

logger = logging.getLogger(__name__)

#: model key -> loaded bundle; one per worker process (a Dask worker with one thread, or a pool
#: process), so each worker loads the model once whatever the number of assets it annotates.
_MODELS: dict[tuple[str | None, str], Any] = {}
_MODELS_LOCK = threading.Lock()
#: how many times this process loaded a model (reported per asset; tests check it stays 1).
_LOAD_COUNT = 0
#: True in the processes of the local pool (:func:`init_pool_worker`).
_POOL_PROCESS = False


def load_worker_model(model_path: str | None, model_sha256: str) -> Any:
    """The model bundle for this worker process, loaded on first use and cached.

    Parameters
    ----------
    model_path : str or None
        Path of the bundle; ``None`` for the bundled demo model.
    model_sha256 : str
        The sha256 the run planned with; a bundle that loads with another sha256 (the file changed
        under the run) raises :class:`~nwb_celltype.errors.ModelMismatchError`.
    """
    global _LOAD_COUNT
    key = (model_path, model_sha256)
    with _MODELS_LOCK:
        bundle = _MODELS.get(key)
        if bundle is None:
            from ..model.shipped import resolve_model

            bundle, _ = resolve_model(model_path)
            if bundle.sha256 != model_sha256:
                raise ModelMismatchError(
                    f"model bundle {model_path or '(default)'} loaded on worker pid {os.getpid()} has sha256 "
                    f"{bundle.sha256[:12]}, but the run was planned with {model_sha256[:12]}; the file "
                    "changed during the run: restart the run"
                )
            _MODELS[key] = bundle
            _LOAD_COUNT += 1
            logger.info("worker %d loaded model %s (%s)", os.getpid(), bundle.name, bundle.sha256[:12])
        return bundle


def init_pool_worker(model_path: str | None, model_sha256: str) -> None:
    """Initializer of pool processes: quiet the libraries and load the model up front."""
    from .._notices import quiet_demo_warning

    global _POOL_PROCESS
    _POOL_PROCESS = True
    quiet_demo_warning()  # the driver said it, once
    _quiet_worker()
    _die_with_parent()
    load_worker_model(model_path, model_sha256)


def _die_with_parent() -> None:
    """Ask Linux to kill this pool process when the driver dies (e.g. SIGKILL), so that no orphan
    goes on annotating an asset that the restarted run is doing again."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):  # pragma: no cover - no prctl: orphans finish their task
        logger.debug("prctl(PR_SET_PDEATHSIG) unavailable")
    if os.getppid() == 1:  # the driver died before prctl took effect
        os._exit(1)


def _quiet_worker() -> None:
    # Each worker is one process with one task at a time: keep numeric libraries to one thread so
    # N workers use N cores instead of fighting over them.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    os.environ.setdefault("DANDI_NO_ET", "1")
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")


def _peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in kilobytes on Linux, bytes on macOS
    return round(kb / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def run_asset_task(task: dict) -> dict:
    """Annotate one asset (:func:`_annotate_asset`); a pool process whose task a signal other
    than SIGINT ended (SIGTERM, SIGHUP: ``Interrupted``, after the task's own cleanup) ends too, so
    that the driver starts a new one and retries its assets, as for a process that died: a read cut
    short can leave library state of the process (pynwb's type map) unusable for the next asset.
    SIGINT (Ctrl-C) goes back to the driver, which ends the run. An error goes back to the driver
    pickled: one that would not unpickle there as itself goes as :func:`_portable` makes it."""
    import signal

    try:
        return _annotate_asset(task)
    except Exception as exc:
        portable = _portable(exc)
        if portable is exc:
            raise
        logger.debug("%s: %r does not unpickle; sent as %r", task["path"], exc, portable, exc_info=exc)
        raise portable from None
    except SystemExit as exc:
        signum = getattr(exc, "signum", None)
        if _POOL_PROCESS and signum is not None and signum != signal.SIGINT:
            logger.warning(
                "%s: worker %d ended by signal %d; the run retries its asset",
                task["path"],
                os.getpid(),
                signum,
            )
            logging.shutdown()
            os._exit(128 + int(signum))
        raise


def _portable(exc: Exception) -> Exception:
    """``exc`` where it unpickles as itself, as the driver (another process) must read it; else an
    instance of its nearest base class that does, its message naming ``exc``'s class. An error
    that does not unpickle in the driver (an ``__init__`` that takes other arguments than the
    message) broke the whole pool there: every asset in flight was lost and tried again."""
    if _unpickles(exc):
        return exc
    try:
        text = f"{type(exc).__qualname__}: {exc}"
    except Exception:  # a __str__ that fails too
        text = type(exc).__qualname__
    for base in type(exc).__mro__[1:]:
        if not issubclass(base, Exception):
            continue
        try:
            alt = base(text)
        except Exception:
            continue
        if _unpickles(alt):
            return alt
    return RuntimeError(text)  # pragma: no cover - Exception(text) always unpickles


def _unpickles(exc: BaseException) -> bool:
    import pickle

    try:
        return type(pickle.loads(pickle.dumps(exc))) is type(exc)
    except Exception:
        return False


def _annotate_asset(task: dict) -> dict:
    """Annotate one asset; the unit of work shipped to workers.

    Parameters
    ----------
    task : dict
        Built by the driver: ``path``, ``asset_id``, ``version``, ``dandiset_id``, ``source`` (what
        :func:`~nwb_celltype.io.open_source` opens), ``output`` (relative to ``out_dir``),
        ``out_dir``, ``tmp_name``, ``model_path``, ``model_sha256``, ``threshold``, ``ignore_waveforms``, ``units_table``, ``waveform_rate_hz``, ``batch_size``,
        ``dandi_api_url``, ``cache_dir``, ``attempt``, ``run_id``, and ``stale_outputs``: derived
        files (relative paths) of earlier runs for this asset under other names, removed before its
        new record is written, as is a file at ``output`` (a ``done`` record's file then replaces it).

    Returns
    -------
    dict
        The asset's state record (status ``done`` or ``skipped``). Errors propagate as exceptions;
        the driver decides whether to retry.

    Notes
    -----
    Order of writes, chosen so that a kill at any instant is safe: the derived file is written to
    a scratch path (atomically, by :func:`~nwb_celltype.annotate.annotate`), then the ``done``
    record (atomically), then the file is renamed into place. A record without its file, or a
    scratch file without a record, makes the next run redo the asset; nothing is done twice once
    both exist. Superseded derived files of earlier runs go before the new record is written
    (:func:`~nwb_celltype.batch.state.remove_outputs`), so no record ever sits beside a derived
    file it does not account for.
    """
    from ..annotate import annotate
    from ..errors import NwbCelltypeError
    from .state import RunState, remove_outputs

    _quiet_worker()
    t0 = time.perf_counter()
    started = time.time()
    bundle = load_worker_model(task["model_path"], task["model_sha256"])
    state = RunState(Path(task["out_dir"]))
    final = state.out_dir / task["output"]
    scratch = state.tmp_dir / task["tmp_name"]
    scratch.parent.mkdir(parents=True, exist_ok=True)
    base = {
        "path": task["path"],
        "asset_id": task["asset_id"],
        "version": task["version"],
        "dandiset_id": task["dandiset_id"],
        "model_sha256": task["model_sha256"],
        "threshold": float(task["threshold"]),
        "ignore_waveforms": bool(task.get("ignore_waveforms", False)),
        "units_table": task.get("units_table"),
        "waveform_rate_hz": task.get("waveform_rate_hz"),
        "any_region": bool(task.get("any_region", False)),
        "attempts": task["attempt"],
        "run_id": task["run_id"],
        "worker": f"{os.uname().nodename}:{os.getpid()}",
        "started": started,
    }
    try:
        result = annotate(
            task["source"],
            model=bundle,
            out=scratch,
            threshold=task["threshold"],
            ignore_waveforms=base["ignore_waveforms"],
            units_table=base["units_table"],
            waveform_rate_hz=base["waveform_rate_hz"],
            any_region=base["any_region"],
            overwrite=True,
            dandi_api_url=task["dandi_api_url"],
            cache_dir=task["cache_dir"],
            batch_size=task["batch_size"],
            model_sha256=task["model_sha256"] if task.get("model_pinned") else None,
            call=f"nwb-celltype annotate-dandiset {task['dandiset_id']}@{task['version']} ({task['path']})",
        )
    except NwbCelltypeError as exc:
        if not _is_no_units(exc):
            raise
        result = None
        reason = str(exc)
    stale = task.get("stale_outputs") or ()
    if result is None:
        rec = {
            **base,
            "status": "skipped",
            "error": f"no units: {reason}",
            "output": None,
            "removed_outputs": remove_outputs(state.out_dir, [*stale, task["output"]]),
            "finished": time.time(),
            "time_s": round(time.perf_counter() - t0, 3),
        }
        state.write_record(rec)
        return rec
    rec = _done_record(base, task["output"], scratch, result, t0)
    # the file at this output too: a kill before the rename below must not leave an earlier run's
    # file beside this record (it might even have the size this record states)
    removed = remove_outputs(state.out_dir, [*stale, task["output"]])
    rec["removed_outputs"] = [r for r in removed if r != task["output"]]  # replaced, not removed
    state.write_record(rec)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(scratch, final)
    return rec


def _done_record(base: dict, output: str, scratch: Path, result, t0: float) -> dict:
    """The state record of an annotated asset: what ``result`` (an AnnotationResult) counted, the
    scratch output's size, this worker's model loads and memory, and the time since ``t0``."""
    return {
        **base,
        "status": "done",
        "error": None,
        "output": output,
        "output_size": scratch.stat().st_size,
        "table_name": result.table_name,
        "n_units": result.n_units,
        "n_classified": result.n_classified,
        "n_unclassified": result.n_unclassified,
        "n_not_classifiable": result.n_not_classifiable,
        "label_counts": dict(result.label_counts),
        "species": result.species,
        "source_units_table": result.units_table,
        "source_waveform_rate": result.waveform_rate,
        "outside_cerebellar_cortex": result.outside_cerebellar_cortex,
        "timings": {k: round(float(v), 4) for k, v in result.timings.items()},
        "model": result.model,
        "source": result.source,
        "worker_model_loads": _LOAD_COUNT,
        "worker_peak_rss_mb": _peak_rss_mb(),
        "finished": time.time(),
        "time_s": round(time.perf_counter() - t0, 3),
    }


def _is_no_units(exc: BaseException) -> bool:
    """Whether an error means "this NWB file has no units to classify" (no Units table, or an empty
    one and no other with spike times: :class:`~nwb_celltype.errors.NoUnitsError`): such assets are
    skipped and reported, not failed. A ``--units-table`` the file lacks, or an empty table beside
    one with spike times, raises another error and fails."""
    from ..errors import NoUnitsError

    return isinstance(exc, NoUnitsError)
