"""Running the tasks of a whole-dandiset run: about two per worker in flight, retries with
exponential backoff for failures that look transient, and the record of an asset that failed for
good (keeping an earlier run's derived file where :func:`~._outputs.earlier_output` says so)."""

from __future__ import annotations

import heapq
import logging
import sys
import time
from typing import Any

from ..errors import NwbCelltypeError, RemoteError
from ._outputs import earlier_output
from .state import RunState, remove_outputs

logger = logging.getLogger(__name__)

#: the most seconds between two tries of a failing asset.
MAX_BACKOFF_S = 60.0


def _is_retriable(exc: BaseException) -> bool:
    """Transient-looking failures are retried: remote errors and anything not raised on purpose
    by this package (lost workers, broken connections). Our other errors (not an NWB file, bad
    units, model mismatch, output not writable) would fail the same way again."""
    if isinstance(exc, RemoteError):
        return True
    if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: an interruption, not a fault
        return False
    return not isinstance(exc, NwbCelltypeError)


def _is_ctrl_c(exc: BaseException) -> bool:
    """A task ended by SIGINT: KeyboardInterrupt, or the ``Interrupted`` of a write's cleanup."""
    import signal

    from .._atomic import Interrupted

    return isinstance(exc, KeyboardInterrupt) or (
        isinstance(exc, Interrupted) and exc.signum == signal.SIGINT
    )


def _one_line(exc: BaseException) -> str:
    msg = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {msg}"[:1000]


def main_guard_hint() -> str:
    """Why a process pool that broke before any task ended may have: the script that runs the
    driver (``__main__``) has no ``if __name__ == "__main__":`` guard, so each spawned worker,
    which re-imports it, starts the run again and dies. "" unless ``__main__`` is such a script
    (a file whose text never names ``__main__``)."""
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    if not path or not str(path).endswith(".py"):
        return ""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return ""
    if "__main__" in text:
        return ""
    return (
        f"; the worker processes died at start-up: {path} calls annotate_dandiset without an "
        '`if __name__ == "__main__":` guard, so each worker, which re-imports that script, runs it '
        "again; put the call under that guard (docs/dandiset.md)"
    )


def _with_guard_hint(exc: BaseException) -> BaseException:
    """``exc`` (a broken pool) with :func:`main_guard_hint` added to its message, where it applies."""
    hint = main_guard_hint()
    if not hint:
        return exc
    try:
        hinted = type(exc)(f"{exc}{hint}")
    except Exception:  # an exception type that takes other arguments: keep it as it is
        return exc
    hinted.__cause__ = exc
    return hinted


def _execute(
    runner, tasks: list[dict], state: RunState, retries: int, backoff_s: float, progress: bool, total: int
):
    """Run the tasks, keeping about two per worker in flight; yield each asset's final record."""
    from tqdm.auto import tqdm

    from .worker import run_asset_task

    pending = list(reversed(tasks))  # pop() from the end keeps the sorted order
    waiting: list[tuple[float, int, dict]] = []  # (due time, tiebreak, task) of retries
    inflight: dict[Any, dict] = {}
    max_inflight = max(1, 2 * runner.n_workers)
    failed = 0
    seq = 0
    any_ended = False  # a task ended (either way) on a working pool: the workers do start
    bar = tqdm(
        total=total, initial=total - len(tasks), unit="asset", desc="annotate-dandiset", disable=not progress
    )
    try:
        while pending or waiting or inflight:
            now = time.monotonic()
            while waiting and waiting[0][0] <= now:
                pending.append(heapq.heappop(waiting)[2])
            while pending and len(inflight) < max_inflight:
                task = pending.pop()
                task = {**task, "attempt": task["attempt"] + 1}
                inflight[runner.submit(run_asset_task, task)] = task
            if not inflight:
                time.sleep(max(0.0, min(1.0, waiting[0][0] - time.monotonic())))
                continue
            timeout = max(0.05, waiting[0][0] - now) if waiting else None
            for fut in runner.wait(inflight, timeout):
                if fut not in inflight:  # lost with a dead worker's pool, already scheduled again
                    continue
                task = inflight.pop(fut)
                rec, exc = runner.outcome(fut)
                if exc is None or not runner.is_broken(exc):
                    any_ended = True
                if exc is None:
                    bar.update(1)
                    yield rec
                    continue
                if _is_ctrl_c(exc):
                    # Ctrl-C reached a worker (the terminal signals the whole process group): the user
                    # interrupted the run, whether or not this process has seen its own SIGINT yet.
                    # Retrying it started the task again and the run waited on it for good.
                    raise KeyboardInterrupt(f"{task['path']}: its worker was interrupted (SIGINT)")
                if runner.is_broken(exc):
                    # a worker process died: every task in flight is lost, not only this one
                    if not any_ended:  # at start-up: a script without a __main__ guard?
                        exc = _with_guard_hint(exc)
                    lost = [task, *inflight.values()]
                    inflight.clear()
                    runner.restart()
                else:
                    lost = [task]
                for t in lost:
                    if _is_retriable(exc) and t["attempt"] <= retries:
                        delay = min(MAX_BACKOFF_S, backoff_s * 2 ** (t["attempt"] - 1))
                        logger.warning(
                            "%s failed (try %d of %d), retrying in %.1f s: %s",
                            t["path"],
                            t["attempt"],
                            retries + 1,
                            delay,
                            _one_line(exc),
                        )
                        seq += 1
                        heapq.heappush(waiting, (time.monotonic() + delay, seq, t))
                        continue
                    failed += 1
                    rec = _record_failure(state, t, exc)
                    logger.error("%s failed after %d tries: %s", t["path"], t["attempt"], rec["error"])
                    bar.update(1)
                    bar.set_postfix(failed=failed)
                    yield rec
    finally:
        bar.close()


def _record_failure(state: RunState, task: dict, exc: BaseException) -> dict:
    """Write (and return) the ``failed`` record of a task that failed for good. Its earlier derived
    files go first, except one that a failure keeps (:func:`~._outputs.earlier_output`), which the
    new record names as ``earlier_output``: a kill at any point leaves each derived file named by
    the asset's record on disk then (the earlier record until the failed one replaces it)."""
    rec = _failed_record(task, exc)
    kept = earlier_output(state.read_record(task["path"]), task["output"], task["asset_id"], state.out_dir)
    keep = kept["output"] if kept else None
    outputs = [o for o in [*task.get("stale_outputs", ()), task.get("output")] if o != keep]
    rec["removed_outputs"] = remove_outputs(state.out_dir, outputs)
    if kept:
        rec["earlier_output"] = kept
        logger.warning(
            "%s: keeping the earlier output %s (model %s, run %s): not replaced, since this run failed",
            task["path"],
            keep,
            str(kept["model_sha256"])[:12],
            kept["run_id"],
        )
    state.write_record(rec)
    return rec


def _failed_record(task: dict, exc: BaseException) -> dict:
    return {
        "path": task["path"],
        "asset_id": task["asset_id"],
        "version": task["version"],
        "dandiset_id": task["dandiset_id"],
        "model_sha256": task["model_sha256"],
        "status": "failed",
        "error": _one_line(exc),
        "attempts": task["attempt"],
        "run_id": task["run_id"],
        "output": None,
        "finished": time.time(),
    }
