"""Dask pieces that need ``distributed`` at import time (imported only for Dask runs)."""

from __future__ import annotations

from distributed import WorkerPlugin


class ModelPlugin(WorkerPlugin):
    """Loads the model bundle once when a worker starts (and on workers that join later), into
    the per-process cache that the asset tasks read."""

    def __init__(self, model_path: str | None, model_sha256: str):
        self.model_path = model_path
        self.model_sha256 = model_sha256

    def setup(self, worker) -> None:
        from .worker import _quiet_worker, load_worker_model

        _quiet_worker()
        load_worker_model(self.model_path, self.model_sha256)
