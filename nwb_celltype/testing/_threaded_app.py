"""The loopback servers' common part: an aiohttp application served on 127.0.0.1 from a daemon
thread with its own event loop, and the pause of automatic garbage collection while any runs.

Why the pause: a collection in the server thread can free an h5py object, which waits for h5py's
global lock; the client thread holds that lock while h5py reads the served file through us and waits
for this very server -- a deadlock until the client's read times out. It hung late, intermittent,
full-suite runs (tests/test_servers.py reproduces it)."""

from __future__ import annotations

import asyncio
import gc
import threading

from aiohttp import web

_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = True


def _pause_gc() -> None:
    """Collect once, then pause automatic garbage collection until every in-process server has
    stopped (:func:`_resume_gc`). Why: the module docstring."""
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.collect()  # in the starting thread, which holds no lock a collection could need
            gc.disable()
        _gc_pauses += 1


def _resume_gc() -> None:
    """Undo one :func:`_pause_gc`; the last one restores the state found by the first."""
    global _gc_pauses
    with _gc_lock:
        _gc_pauses = max(_gc_pauses - 1, 0)
        if _gc_pauses == 0 and _gc_was_enabled:
            gc.enable()


class _ThreadedApp:
    """Runs an aiohttp application on 127.0.0.1 in a daemon thread with its own event loop."""

    def __init__(self, port: int = 0) -> None:
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._gc_paused = False
        self.port: int | None = None

    def _make_app(self) -> web.Application:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``."""
        if self.port is None:
            raise RuntimeError("server not started; use it as a context manager or call start()")
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> _ThreadedApp:
        """Start serving; returns self once the port is bound."""
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                runner = web.AppRunner(self._make_app(), handle_signals=False, shutdown_timeout=0.5)
                loop.run_until_complete(runner.setup())
                site = web.TCPSite(runner, "127.0.0.1", self._port)
                loop.run_until_complete(site.start())
                self._runner = runner
                self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            except BaseException as exc:  # reported to the starting thread
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in pending:
                t.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

        if not self._gc_paused:
            _pause_gc()
            self._gc_paused = True
        self._thread = threading.Thread(target=run, name=type(self).__name__, daemon=True)
        self._thread.start()
        if not ready.wait(30):
            self.stop()
            raise RuntimeError(f"{type(self).__name__} did not start within 30 s")
        if errors:
            self.stop()
            raise RuntimeError(f"{type(self).__name__} failed to start: {errors[0]!r}") from errors[0]
        return self

    def stop(self) -> None:
        """Stop serving and join the thread (open connections are dropped)."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop = None
        self._thread = None
        if self._gc_paused:
            self._gc_paused = False
            _resume_gc()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
