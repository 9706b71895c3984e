"""Persistent JAX compilation cache for the feature kernels, so that a second process on the same
machine loads the compiled pair counter from disk instead of compiling it again.

Where: ``$NWB_CELLTYPE_JAX_CACHE`` if it names a folder, else
``$XDG_CACHE_HOME/nwb-celltype/jax`` (``~/.cache/nwb-celltype/jax`` when ``XDG_CACHE_HOME`` is unset).
Off: ``NWB_CELLTYPE_JAX_CACHE=0`` (or ``off``/``false``/``no``), or ``nwb-celltype --no-jit-cache``.
A cache folder the user configured for JAX itself (``JAX_COMPILATION_CACHE_DIR`` /
``jax.config.update("jax_compilation_cache_dir", ...)``) is left as it is.

Every kernel compiles in well under JAX's default 1 s threshold for caching, so the threshold is
set to 0 for the process. Concurrent processes are safe: JAX's cache reads and writes each entry
under a file lock when the cache has a size bound, which is set here (``MAX_BYTES``; the least
recently used entries are evicted beyond it). A cache that cannot be created (read-only home) is
skipped with a log message: compilation then simply happens in every process.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)

#: environment variable: a folder for the cache, or 0/off/false/no to disable it
ENV = "NWB_CELLTYPE_JAX_CACHE"
#: size bound of the cache folder (bytes); also what makes JAX lock its entries across processes
MAX_BYTES = 256 * 1024 * 1024
_OFF = {"0", "off", "false", "no", "none", ""}

_lock = threading.Lock()
_state: dict[str, Path | None] = {}


def cache_dir() -> Path | None:
    """The folder the cache uses in this environment, or None when it is switched off.

    Returns
    -------
    pathlib.Path or None
    """
    value = os.environ.get(ENV)
    if value is not None:
        return None if value.strip().lower() in _OFF else Path(value).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "nwb-celltype" / "jax"


def configure_compilation_cache() -> Path | None:
    """Point JAX's persistent compilation cache at :func:`cache_dir` (once per process; call
    before the first compilation). Idempotent and thread-safe.

    Returns
    -------
    pathlib.Path or None
        The cache folder in use, or None (switched off, unwritable, or JAX's own setting kept).
    """
    with _lock:
        if "dir" in _state:
            return _state["dir"]
        _state["dir"] = _configure()
        return _state["dir"]


def _configure() -> Path | None:
    import jax

    if jax.config.jax_compilation_cache_dir:  # the user's own JAX cache wins
        log.debug("JAX compilation cache already set to %s", jax.config.jax_compilation_cache_dir)
        return None
    path = cache_dir()
    if path is None:
        log.debug("JAX compilation cache switched off (%s)", ENV)
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.info("JAX compilation cache disabled: cannot create %s (%s); set %s", path, exc, ENV)
        return None
    try:
        import filelock  # noqa: F401  (JAX locks entries with it once a size bound is set)

        jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    except ImportError:
        log.debug("filelock is not installed: JAX cache entries are written without locks")
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax.config.update("jax_compilation_cache_dir", str(path))
    log.debug("JAX compilation cache: %s", path)
    return path
