"""One simulated unit of a class: its spike train (drawn from the per-unit fits to real units, or
the class's closed-form discharge model) and its peak-channel mean waveform. Recordings
(:mod:`._recording`) place many such units on a probe and add defects."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidValueError
from ._checks import _check_duration
from ._model import model_rate_hz, mu_for_rate
from ._params import (
    OTHER,
    SIM_CLASSES,
    ClassParams,
    FittedClass,
    Preset,
    fitted_pool,
    get_preset,
)
from ._spikes import (
    burst_train,
    gamma_train,
    mixture_train,
)
from ._waveforms import (
    fitted_phases,
    render_waveforms,
    template_phases,
    waveform_time_ms,
)

__all__ = ["CS_RATE", "class_spike_train", "class_waveform", "jitter_discharge"]


def _draw_rate(rng: np.random.Generator, p: ClassParams) -> float:
    rate = p.rate_hz * np.exp(p.rate_log_sd * rng.standard_normal())
    return float(np.clip(rate, *p.rate_range_hz))


def _u(rng: np.random.Generator, rng_pair: tuple[float, float]) -> float:
    return float(rng.uniform(*rng_pair))


#: Complex-spike rate (Hz): log-normal median and log-sd, clip range. The tables' 100 ms window
#: cannot measure it (Zhou et al. 2014, Van Dijck et al. 2013: ~1 Hz, 0.5-2 Hz).
CS_RATE = (1.0, 0.35, (0.3, 2.5))


def jitter_discharge(rng: np.random.Generator, row: np.ndarray, n_rows: int) -> np.ndarray:
    """A fitted unit's discharge parameters with unit-to-unit jitter (log-sd 0.1 on every time
    scale and shape, 0.2 on the burst weight; 0.25 where the class has fewer than 5 real units, so
    that few fits still give a spread population)."""
    s = 0.1 if n_rows >= 5 else 0.25
    q = np.array(row, dtype=np.float64)
    q[1:6] *= np.exp(s * rng.standard_normal(5))
    q[0] = min(q[0] * float(np.exp(2 * s * rng.standard_normal())), 0.9)
    q[6] *= float(np.exp(s * rng.standard_normal()))
    q[3] = max(q[3], 1.0)
    q[4] = max(q[4], 0.3)
    return q


def _fitted_train(
    rng: np.random.Generator, cls: str, fit: FittedClass, p: ClassParams, duration_s: float
) -> tuple[np.ndarray, float, str]:
    """Spike train, rate and source real unit of a unit drawn from the per-unit fits of its class."""
    j = int(rng.integers(len(fit.discharge)))
    q = jitter_discharge(rng, fit.discharge[j], len(fit.discharge))
    if cls == "PkC_cs":
        med, sd, (lo, hi) = CS_RATE
        q[5] = mu_for_rate(q, float(np.clip(med * np.exp(sd * rng.standard_normal()), lo, hi)))
    t = mixture_train(rng, q, duration_s, log_rate_tau_s=_u(rng, p.log_rate_tau_s))
    return t, model_rate_hz(q), str(fit.discharge_ids[j]) if fit.discharge_ids else ""


def _class_train(
    rng: np.random.Generator,
    cls: str,
    kind: str,
    preset: Preset,
    duration_s: float,
    pool: dict[str, FittedClass] | None = None,
) -> tuple[np.ndarray, float, str]:
    """Spike train (s), target rate (Hz) and source of one unit of class ``cls``: the real unit
    whose fitted row it was drawn from (``"a+b"`` for a merge of two, ``""`` for none). ``pool``:
    the fitted rows allowed (:func:`._params.fitted_pool`; default all of the preset's)."""
    p = preset.classes[cls]
    pool = fitted_pool(preset.name) if pool is None else pool
    fit = pool.get(cls)
    if cls != OTHER and fit is not None and len(fit.discharge):
        return _fitted_train(rng, cls, fit, p, duration_s)
    rate = _draw_rate(rng, p)
    common = dict(
        log_rate_sd=_u(rng, p.log_rate_sd),
        log_rate_tau_s=_u(rng, p.log_rate_tau_s),
    )
    dead = _u(rng, p.dead_time_ms) * 1e-3
    if cls == "MFB" or (cls == OTHER and kind == "granule"):
        if kind == "granule":
            rate = float(np.clip(0.8 * np.exp(0.7 * rng.standard_normal()), 0.1, 5.0))
        t = burst_train(
            rng,
            rate,
            duration_s,
            mean_burst_size=_u(rng, p.burst_size),
            intra_isi_s=_u(rng, p.intra_burst_isi_ms) * 1e-3,
            shape=_u(rng, p.gamma_shape),
            dead_time_s=dead,
            **common,
        )
        return t, rate, ""
    if cls == OTHER and kind == "mixture":
        # two cells merged by the sorter: the sum of two trains of random classes
        a, b = rng.choice(["PkC_ss", "MLI", "GoC", "MFB", "PkC_cs"], size=2, replace=False)
        ta, ra, sa = _class_train(rng, str(a), "", preset, duration_s, pool)
        tb, rb, sb = _class_train(rng, str(b), "", preset, duration_s, pool)
        t = np.concatenate([ta, tb])
        t.sort()
        return t, ra + rb, "+".join(x for x in (sa, sb) if x)
    if cls == OTHER and kind == "noise":
        return gamma_train(rng, rate, duration_s, shape=1.0, dead_time_s=0.0, **common), rate, ""
    rate = min(rate, 0.5 / dead)
    t = gamma_train(rng, rate, duration_s, shape=_u(rng, p.gamma_shape), dead_time_s=dead, **common)
    return t, rate, ""


def class_spike_train(
    rng: np.random.Generator,
    cls: str,
    duration_s: float,
    *,
    preset: str | Preset = "mouse",
    kind: str = "",
) -> tuple[np.ndarray, float]:
    """Spike train of one unit of class ``cls`` (no pause, no defects).

    Parameters
    ----------
    rng : numpy.random.Generator
    cls : str
        A C4 class or ``"other"`` (then ``kind`` in ``"granule"``, ``"mixture"``, ``"noise"``,
        ``"irregular"``).
    duration_s : float
        Length in seconds.
    preset : {"mouse", "macaque"}

    Returns
    -------
    times : (k,) float64
        Sorted spike times in seconds.
    rate_hz : float
        The drawn target rate of the generating process.
    """
    if cls not in SIM_CLASSES:
        raise InvalidValueError(f"unknown class {cls!r}; expected one of {SIM_CLASSES}.")
    t, rate, _ = _class_train(rng, cls, kind, get_preset(preset), _check_duration(duration_s))
    return t, rate


def class_waveform(
    rng: np.random.Generator,
    cls: str,
    *,
    preset: str | Preset = "mouse",
    kind: str = "",
    waveform_rate_hz: float = 30000.0,
    n_spikes: int = 10000,
) -> np.ndarray:
    """Peak-channel mean waveform of one unit of class ``cls`` (MFB ``kind="positive"`` for a
    positive-going axonal spike).

    Returns
    -------
    (samples,) float32
        Volts; 4 ms window (trough at 1.3 ms) at ``waveform_rate_hz``.
    """
    if cls not in SIM_CLASSES:
        raise InvalidValueError(f"unknown class {cls!r}; expected one of {SIM_CLASSES}.")
    pre = get_preset(preset)
    phases, amp_v, space_um, noise_v, _ = _unit_waveform_params(rng, cls, kind, pre, n_spikes)
    t_ms = waveform_time_ms(waveform_rate_hz)
    wave = render_waveforms(
        phases, t_ms, np.zeros(1), amplitude_v=amp_v, space_um=space_um, noise_v=noise_v, rng=rng
    )
    return wave[:, 0]


def _unit_waveform_params(
    rng: np.random.Generator,
    cls: str,
    kind: str,
    pre: Preset,
    n_spikes: int,
    pool: dict[str, FittedClass] | None = None,
) -> tuple[np.ndarray, float, float, float, str]:
    """Phases, peak amplitude (V), spatial decay (um), noise sd (V) and source real unit (``""``
    if none) of one unit's waveform: from a real unit's fitted phases where the class has fits
    (granule-like "other" units: the Hausser granule cells), else from the class template.
    ``pool``: the fitted rows allowed (:func:`._params.fitted_pool`; default all)."""
    p = pre.classes[cls]
    key = "GrC" if (cls == OTHER and kind == "granule") else cls
    fits = (fitted_pool(pre.name) if pool is None else pool).get(key)
    log_sd = 0.35
    rel_noise = 0.0
    source = ""
    if (cls != OTHER or key == "GrC") and fits is not None and fits.waveforms:
        rows = np.arange(len(fits.waveforms))
        if cls == "MFB" and kind in ("positive", "negative"):  # a requested polarity of the main phase
            sign = np.array([w[np.argmax(np.abs(w[:, 0])), 0] > 0 for w in fits.waveforms])
            rows = rows[sign == (kind == "positive")] if (sign == (kind == "positive")).any() else rows
        j = int(rows[rng.integers(len(rows))])
        phases = fitted_phases(rng, fits.waveforms[j])
        rel_noise = float(fits.waveform_noise[j])
        source = str(fits.waveform_ids[j]) if fits.waveform_ids else ""
        log_sd = fits.amplitude_log_sd or log_sd
    else:
        phases = template_phases(rng, cls, pre.width_scale, kind)
    amp_v = p.amplitude_uv * float(np.exp(log_sd * rng.standard_normal())) * 1e-6
    # the residue of averaging n spikes, plus the real fit's residual (noise and unmodelled shape)
    noise_v = float(np.hypot((10.0 / np.sqrt(max(n_spikes, 1)) + 1.0) * 1e-6, 0.5 * rel_noise * amp_v))
    return phases, amp_v, _u(rng, p.space_um), noise_v, source
