"""The device part of the 3D ACG (:mod:`.acg`): the compiled pair counter (JAX, int32), how units'
occupied bins are cut into rows and packed into equal-shape device calls, and the host threads that
prepare units and dispatch calls. One compilation per geometry and bucket per process, whatever the
thread timing; the persistent compilation cache makes a second process load it."""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import FeatureError
from ._geometry import AcgGeometry

if TYPE_CHECKING:
    from .acg import _UnitPrep

log = logging.getLogger(__name__)

#: most trigger entries (occupied bins) in one device row; a unit with more is split into rows,
#: each with at most half + 1 context entries: bounded memory
_ROW_SPIKES = 1 << 15
#: most entries in one device call: bounds a call's memory
_CALL_SPIKES = 1 << 17
#: most rows (histogram slots) in one device call: bounds the histogram's memory (many tiny units)
_CALL_ROWS = 64
#: most device calls a host thread leaves pending before it adds the oldest to the counts
_IN_FLIGHT = 3

#: number of times the jitted kernel was traced (Python side effect at trace time; tests read it)
TRACE_COUNT = {"pairs": 0}


# --------------------------------------------------------------------------------------------
# device part (JAX)


def _next_pow2(x: int, minimum: int = 16) -> int:
    return max(minimum, 1 << max(0, int(x) - 1).bit_length())


_KERNELS: dict = {}
_KERNELS_LOCK = threading.Lock()
#: trigger entries per block of the device loop (consecutive occupied bins of a row)
_BLOCK = 4096
#: neighbour offsets per iteration of a block's loop (one termination test per _UNROLL offsets)
_UNROLL = 4
#: cells that receive the pairs outside the window (a power of two)
_DROP_CELLS = 256


def _pairs_kernel(n_rate_bins: int, half: int, both: bool, n_slots: int, length: int):
    """The compiled pair counter for one (rate bins, half window, direction) geometry and one
    bucket (histogram slots, padded entry count), compiled once per process -- under a lock, so
    threads that need the same bucket at the same time wait for one compilation -- and loaded from
    the persistent compilation cache (:mod:`nwb_celltype.features._jax_cache`) when an earlier
    process compiled it.

    Input: the occupied bins of several rows laid end to end on one compressed axis ``u`` (int32,
    strictly increasing: a gap longer than ``half`` bins is shortened to ``half + 1``, which
    changes no lag that is counted, and rows are ``half + 1`` apart so that no pair crosses rows),
    with each entry's histogram base (row slot and rate bin) and weight (the number of counted
    trigger spikes in that bin: duplicate spikes share their bin, hence their rate bin). The
    entries are cut into blocks of ``_BLOCK`` consecutive ones; for neighbour offset k = 1, 2, ...
    every entry of the block looks at entry ``i + k`` -- a contiguous slice, no gather -- and,
    while the lag ``u[i + k] - u[i]`` is at most ``half``, adds its weight to its (row, rate bin,
    lag) cell: one flat scatter-add per offset. A block stops after the first group of
    ``_UNROLL`` offsets whose last one leaves no entry a neighbour in the window (lags only grow
    with k). The work is O(occupied bins x neighbours): the number of blocks is an argument, so
    padding a call to its bucket costs memory, not time.

    With ``both``, the same pair also counts for the later entry at lag ``-(u[i + k] - u[i])``
    (its own rate bin and weight), but only if entry ``i`` belongs to the row's trigger range:
    a row's trailing context bins (the neighbours of its last triggers, which are the next row's
    triggers) must not count their own pairs twice.

    Pairs outside the window go to extra "drop" cells after the histogram (spread over
    ``_DROP_CELLS`` cells by lane, so they are not one chain of updates of one word), so every
    index is in bounds and the scatter is compiled with ``mode="promise_in_bounds"``: on XLA:CPU
    this is ~10x faster per element than the bounds-checked ``mode="drop"``.
    """
    key = (n_rate_bins, half, both, n_slots, length)
    kernel = _KERNELS.get(key)
    if kernel is not None:
        return kernel
    with _KERNELS_LOCK:
        if key in _KERNELS:
            return _KERNELS[key]
        import jax
        import jax.numpy as jnp
        from jax import lax

        from ._jax_cache import configure_compilation_cache

        configure_compilation_cache()
        width = 2 * half + 1 if both else half + 1
        size = n_rate_bins * width
        off = half if both else 0

        def count(u, base, w_fwd, w_bwd, own, n_blocks):
            TRACE_COUNT["pairs"] += 1  # runs only while tracing: counts compilations
            # extra "drop" cells after the histogram: in bounds, discarded below; spread over
            # _DROP_CELLS cells so that dropped elements do not all update one memory word
            drop = n_slots * size + (lax.iota(jnp.int32, _BLOCK) & (_DROP_CELLS - 1))

            def block(i, hist):
                s = i * _BLOCK

                def sl(a, start):
                    return lax.dynamic_slice(a, (start,), (_BLOCK,))

                u0, b0, w0 = sl(u, s), sl(base, s) + off, sl(w_fwd, s)
                if both:
                    own0 = sl(own, s) > 0

                def body(carry):
                    k, h, _ = carry
                    for j in range(_UNROLL):
                        lag = sl(u, s + k + j) - u0
                        ok = lag <= half
                        h = h.at[jnp.where(ok, b0 + lag, drop)].add(w0, mode="promise_in_bounds")
                        if both:
                            cell = jnp.where(ok & own0, sl(base, s + k + j) + off - lag, drop)
                            h = h.at[cell].add(sl(w_bwd, s + k + j), mode="promise_in_bounds")
                    # lags grow with k: none left at the last offset means none after it
                    return k + _UNROLL, h, ok.any()

                def more(carry):  # (the bound on k only guards against malformed input)
                    return carry[2] & (carry[0] <= half + 1)

                init = (jnp.int32(1), hist, jnp.bool_(True))
                return lax.while_loop(more, body, init)[1]

            hist = jnp.zeros(n_slots * size + _DROP_CELLS, jnp.int32)
            hist = lax.fori_loop(0, n_blocks, block, hist)
            return hist[: n_slots * size].reshape(n_slots, size)

        i32 = jax.ShapeDtypeStruct((length,), jnp.int32)
        own = jax.ShapeDtypeStruct((length,) if both else (1,), jnp.int8 if both else jnp.int32)
        w_bwd = i32 if both else jax.ShapeDtypeStruct((1,), jnp.int32)
        scalar = jax.ShapeDtypeStruct((), jnp.int32)
        # ahead of time: exactly one trace and one compilation (or cache load) per bucket
        kernel = jax.jit(count).lower(i32, i32, i32, w_bwd, own, scalar).compile()
        _KERNELS[key] = kernel
        return kernel


@dataclass
class _Row:
    """A slice of one unit's occupied bins for the device: triggers ``[0, n_own)`` and trailing
    context (the occupied bins within ``half`` of the last trigger, which are not triggers here)."""

    unit: int
    coords: np.ndarray  # (m,) int64 compressed bin coordinates, strictly increasing
    rbin: np.ndarray  # (m,) int64 rate bin of each entry (0 where not counted: weight 0)
    w_fwd: np.ndarray  # (m,) int64 counted trigger spikes in the bin (0 in the context)
    w_bwd: np.ndarray  # (m,) int64 counted trigger spikes in the bin (context included)
    n_own: int


def _rows_of(unit: int, prep: _UnitPrep, geo: AcgGeometry) -> list[_Row]:
    """Split a unit's occupied bins into rows of at most ``_ROW_SPIKES`` triggers (bounded memory)."""
    m = len(prep.ubins)
    if m == 0 or not prep.weight.any():
        return []
    rbin = np.maximum(prep.entry_rbin, 0)
    if m <= _ROW_SPIKES:  # the common case: one row, no context, no copies
        return [_Row(unit, prep.coords, rbin, prep.weight, prep.weight, m)]
    rows = []
    for s in range(0, m, _ROW_SPIKES):
        e = min(s + _ROW_SPIKES, m)
        # context: the bins within half of the last trigger (at most half + 1 of them)
        c = int(np.searchsorted(prep.coords, prep.coords[e - 1] + geo.half, side="right"))
        w_fwd = prep.weight[s:c].copy()
        w_fwd[e - s :] = 0
        rows.append(_Row(unit, prep.coords[s:c], rbin[s:c], w_fwd, prep.weight[s:c], e - s))
    return rows


class _PairCounter:
    """Packs rows into device calls of at most ``_CALL_SPIKES`` entries and ``_CALL_ROWS`` rows, and
    dispatches each call as soon as it is full. JAX dispatch is asynchronous, so the host prepares
    the next units while the device counts. Every call has the same shape (one bucket: the
    histogram has ``_CALL_ROWS`` slots and the entries are padded to ``_CALL_SPIKES``), so the
    compilations do not depend on how units fall into calls or on thread timing. At most
    ``_IN_FLIGHT`` calls are pending: the oldest is then added to the counts, which bounds memory
    (histograms, and the rows each call keeps alive). :meth:`result` waits for the rest."""

    def __init__(self, counts: np.ndarray, geo: AcgGeometry, positive_only: bool = False) -> None:
        self.geo = geo
        self.both = not positive_only
        # a histogram row covers lags -half..+half (both) or 0..+half (positive lags only)
        self.width = geo.n_lags if self.both else geo.half + 1
        self.size = geo.n_rate_bins * self.width
        self.n_units = len(counts)
        self.flat = counts.reshape(self.n_units, self.size)
        self.pending: list[_Row] = []
        self.n_pending = 0
        self.launched: list[tuple[object, list[_Row]]] = []
        self.n_launched = 0
        #: packed calls waiting for the kernel while another thread imports JAX and compiles it:
        #: the host keeps preparing units meanwhile (at most _IN_FLIGHT calls wait)
        self.deferred: list[tuple[tuple, tuple, list[_Row]]] = []
        #: dispatch every other call from the worker pool (set when this counter is the only one)
        self.split_calls = False

    def add(self, rows: list[_Row]) -> None:
        for r in rows:
            full = self.n_pending + len(r.coords) > _CALL_SPIKES or len(self.pending) >= _CALL_ROWS
            if full and self.pending:
                self._launch()
            self.pending.append(r)
            self.n_pending += len(r.coords)

    def _launch(self) -> None:
        call, half, size = self.pending, self.geo.half, self.size
        self.pending, self.n_pending = [], 0
        n = sum(len(r.coords) for r in call)
        slots, L = _bucket(n, half)
        if (L + len(call)) * (half + 1.0) >= 2**31:  # the largest coordinate, padding included
            raise FeatureError(
                f"an ACG window of {2 * half + 1} bins is too long for the int32 device kernel; "
                "use a shorter acg_window_ms or a larger acg_bin_ms."
            )
        u = np.empty(L, np.int32)
        base = np.zeros(L, np.int32)
        w_fwd = np.zeros(L, np.int32)
        j = 0
        origin = 0  # rows are half + 1 apart on the compressed axis: no pair crosses rows
        for slot, r in enumerate(call):
            m = len(r.coords)
            np.add(r.coords, origin - int(r.coords[0]), out=u[j : j + m], casting="unsafe")
            np.add(r.rbin * self.width, slot * size, out=base[j : j + m], casting="unsafe")
            w_fwd[j : j + m] = r.w_fwd
            origin = int(u[j + m - 1]) + half + 1
            j += m
        # padding: half + 1 apart, so that no padded entry is anyone's neighbour
        u[j:] = origin + (half + 1) * np.arange(L - j, dtype=np.int32)
        if self.both:
            w_bwd = np.zeros(L, np.int32)
            own = np.zeros(L, np.int8)
            j = 0
            for r in call:
                m = len(r.coords)
                w_bwd[j : j + m] = r.w_bwd
                own[j : j + r.n_own] = 1
                j += m
        else:  # unused by the positive-lags kernel
            w_bwd = own = np.zeros(1, np.int32)
        key = (self.geo.n_rate_bins, half, self.both, slots, L)
        args = (u, base, w_fwd, w_bwd, own, np.int32(-(-n // _BLOCK)))
        if key not in _KERNELS and len(self.deferred) < _IN_FLIGHT:
            self.deferred.append((key, args, call))  # the kernel is still loading: go on preparing
            return
        self._dispatch_deferred()
        self._dispatch(_pairs_kernel(*key), args, call)

    def _dispatch_deferred(self) -> None:
        while self.deferred:
            key, args, call = self.deferred.pop(0)
            self._dispatch(_pairs_kernel(*key), args, call)  # waits for the kernel if need be

    def _dispatch(self, kernel, args: tuple, call: list[_Row]) -> None:
        if self.split_calls and self.n_launched % 2:
            # every other call from the idle worker thread: XLA:CPU runs calls from two threads
            # at the same time (one unit's rows would otherwise be counted one call at a time)
            self.launched.append((_executor().submit(_run_blocking, kernel, args), call))
        else:
            self.launched.append((kernel(*args), call))
        self.n_launched += 1
        while len(self.launched) > _IN_FLIGHT:
            self._collect()

    def _collect(self) -> None:
        """Wait for the oldest pending call and add its counts."""
        hist, call = self.launched.pop(0)
        hist = np.asarray(hist.result() if isinstance(hist, Future) else hist)
        for slot, r in enumerate(call):
            self.flat[r.unit] += hist[slot]

    def result(self) -> None:
        """Wait for all calls; the counts array given at construction then holds every pair."""
        if self.pending:
            self._launch()
        self._dispatch_deferred()
        while self.launched:
            self._collect()


def _bucket(n_entries: int, half: int) -> tuple[int, int]:
    """(histogram slots, padded entry count) of a call with ``n_entries`` entries: the same for
    every call of a geometry -- larger only if one row alone exceeds ``_CALL_SPIKES`` (windows of
    ~100,000 bins) -- so that it compiles once. A block's last slice ends at most
    ``half + _UNROLL`` entries past the padded block count."""
    S = max(_next_pow2(_CALL_SPIKES, _BLOCK), _next_pow2(n_entries, _BLOCK))
    return _next_pow2(_CALL_ROWS, 1), S + half + _UNROLL


def _prefetch_kernel(geo: AcgGeometry, both: bool) -> None:
    """Import JAX and compile (or load) the usual bucket's kernel, on a thread of its own, while
    the host prepares the first units; errors surface later, on the thread that needs it."""
    try:
        _pairs_kernel(geo.n_rate_bins, geo.half, both, *_bucket(0, geo.half))
    except Exception as exc:  # (the dispatching thread compiles again and raises)
        log.debug("kernel prefetch failed: %s", exc)


def _run_blocking(kernel, args):
    return kernel(*args).block_until_ready()


#: host threads that prepare units and dispatch their device calls: numpy's array loops and XLA's
#: execution release the GIL, and XLA:CPU runs calls dispatched from different threads at the same
#: time (calls from one thread run one after the other)
_WORKERS = max(1, min(2, os.cpu_count() or 1))
#: batches with fewer spikes run on the calling thread only
_PARALLEL_MIN_SPIKES = 50_000
_EXECUTOR: list = []
#: its own lock: _KERNELS_LOCK is held while JAX is imported and a kernel compiled (on the prefetch
#: thread), and the host threads must start preparing units meanwhile, not wait for it
_EXECUTOR_LOCK = threading.Lock()


def _executor():
    with _EXECUTOR_LOCK:
        if not _EXECUTOR:
            _EXECUTOR.append(ThreadPoolExecutor(max(1, _WORKERS - 1), thread_name_prefix="nwb-acg"))
        return _EXECUTOR[0]


def _schedule(trains: list[np.ndarray], geo: AcgGeometry) -> tuple[list[int], int]:
    """(units in decreasing estimated cost, number of host threads). Threads take the next unit
    of this list when they are free, so they finish together and the last device calls are
    short. The cost model: ~100 ns of host work per spike plus ~1.5 ns per (spike, neighbour)
    pair. Small batches run on the calling thread only."""
    sizes = [len(t) for t in trains]
    if _WORKERS < 2 or len(sizes) < 2 or sum(sizes) < _PARALLEL_MIN_SPIKES:
        return list(range(len(sizes))), 1
    window_s = geo.half * geo.bin_s
    cost = []
    for t in trains:
        span = float(t.max() - t.min()) if len(t) > 1 else 0.0
        pairs = min(len(t) / span * window_s, geo.half) if span > 0 else 0.0
        cost.append(len(t) * (100.0 + 1.5 * pairs))
    return sorted(range(len(sizes)), key=lambda i: -cost[i]), _WORKERS
