"""Two ways to run asset tasks behind one small interface: a local process pool
(:class:`concurrent.futures.ProcessPoolExecutor`) and a Dask distributed cluster."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import multiprocessing
from typing import Any

from ..errors import InvalidValueError, RemoteError

logger = logging.getLogger(__name__)


class PoolRunner:
    """Local process pool; each process loads the model once in its initializer.

    Processes are started with ``spawn``: the driver may hold threads (HTTP clients, progress
    bars) that ``fork`` would copy in an undefined state.
    """

    kind = "local"

    def __init__(self, n_workers: int, model_path: str | None, model_sha256: str):
        from .worker import init_pool_worker

        self.n_workers = n_workers
        self._args = (model_path, model_sha256)
        self._init = init_pool_worker
        self._pool = self._new_pool()
        self.dashboard_link: str | None = None

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(
            max_workers=self.n_workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=self._init,
            initargs=self._args,
        )

    def submit(self, fn, arg) -> Any:
        return self._pool.submit(fn, arg)

    def wait(self, futures, timeout: float | None):
        done, _ = cf.wait(list(futures), timeout=timeout, return_when=cf.FIRST_COMPLETED)
        return done

    @staticmethod
    def outcome(fut) -> tuple[Any, BaseException | None]:
        exc = fut.exception()
        return (None, exc) if exc is not None else (fut.result(), None)

    def is_broken(self, exc: BaseException) -> bool:
        return isinstance(exc, cf.process.BrokenProcessPool)

    def restart(self) -> None:
        """Replace a pool whose process died (killed, out of memory); in-flight tasks are lost."""
        logger.warning("a worker process died; starting a new pool")
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._new_pool()

    def close(self, abort: bool = False) -> None:
        """Wait for the pool's processes to finish; with ``abort`` (the run was interrupted) kill
        them first: waiting on workers that a second Ctrl-C caught mid-task hung the run for good.
        Their assets are in ``tmp/``, which the next run empties."""
        if abort:
            for p in list((getattr(self._pool, "_processes", None) or {}).values()):
                with contextlib.suppress(Exception):
                    p.kill()
            self._pool.shutdown(wait=False, cancel_futures=True)
            return
        self._pool.shutdown(wait=True, cancel_futures=True)


class DaskRunner:
    """A Dask distributed cluster: an existing scheduler (``address``), a given ``Client``, or a
    local cluster started here (only when the dashboard is asked for without a scheduler).

    The model is loaded once per worker by a :class:`~distributed.WorkerPlugin` (and cached by
    the worker process, so tasks find it there).
    """

    kind = "dask"

    def __init__(
        self,
        model_path: str | None,
        model_sha256: str,
        *,
        address: str | None = None,
        client: Any = None,
        n_workers: int | None = None,
        dashboard_address: str | None = None,
    ):
        try:
            import distributed
        except ImportError as exc:  # pragma: no cover - dask is an optional extra
            raise InvalidValueError(
                "running on a Dask cluster needs dask[distributed]: pip install 'nwb-celltype[dask]'"
            ) from exc
        from ._dask import ModelPlugin

        if logging.getLogger().getEffectiveLevel() > logging.INFO:  # its INFO lines only with -v
            logging.getLogger("distributed").setLevel(logging.WARNING)
        self._distributed = distributed
        self._own_client = client is None
        self._cluster = None
        if client is None:
            if address is not None:
                try:
                    client = distributed.Client(address, timeout="20s")
                except (OSError, TimeoutError) as exc:
                    raise RemoteError(
                        f"cannot connect to the Dask scheduler at {address}: {exc}; check the address "
                        "(tcp://HOST:PORT) and that the scheduler is running"
                    ) from exc
            else:
                self._cluster = distributed.LocalCluster(
                    n_workers=n_workers or 1,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=dashboard_address,
                    silence_logs=logging.getLogger("distributed").getEffectiveLevel(),
                )
                client = distributed.Client(self._cluster)
        self.client = client
        self.dashboard_link = client.dashboard_link if _has_dashboard(client) else None
        self.client.register_plugin(ModelPlugin(model_path, model_sha256), name="nwb-celltype-model")
        workers = self.client.scheduler_info().get("workers", {})
        self.n_workers = max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))

    def submit(self, fn, arg) -> Any:
        # pure=False: a retried asset is a new task, not a cached result; retries are ours.
        return self.client.submit(fn, arg, pure=False, retries=0)

    def wait(self, futures, timeout: float | None):
        futs = list(futures)
        try:
            done, _ = self._distributed.wait(futs, timeout=timeout, return_when="FIRST_COMPLETED")
        except TimeoutError:
            return set()
        return done

    @staticmethod
    def outcome(fut) -> tuple[Any, BaseException | None]:
        if fut.status == "finished":
            return fut.result(), None
        try:
            exc = fut.exception()
        except Exception as e:  # cancelled / lost futures raise here
            exc = e
        return None, exc if exc is not None else RuntimeError(f"task {fut.key} ended as {fut.status}")

    def is_broken(self, exc: BaseException) -> bool:
        return False

    def restart(self) -> None:  # pragma: no cover - Dask reschedules lost tasks itself
        pass

    def close(self, abort: bool = False) -> None:  # Dask's own shutdown stops its workers either way
        if self._own_client:
            self.client.close()
            if self._cluster is not None:
                self._cluster.close()


def _has_dashboard(client: Any) -> bool:
    try:
        return "dashboard" in client.scheduler_info().get("services", {})
    except Exception:
        return False
