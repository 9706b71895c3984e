"""Neuropixels 1.0 probe geometry, cerebellar layer profiles along the probe and per-class
multi-channel mean waveforms (pure numpy; sums of Gaussian phases, spatial decay and noise)."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidValueError
from ._params import OTHER

__all__ = [
    "LAYER_SUFFIX_TO_C4",
    "REGIONS",
    "fitted_phases",
    "make_layer_profile",
    "neuropixels_geometry",
    "render_waveforms",
    "template_phases",
    "waveform_time_ms",
]

#: Neuropixels 1.0: 384 sites, 2 per row, 20 um vertical pitch, columns at x = 43, 11, 59, 27 um.
N_SITES = 384
_NP1_X = np.array([43.0, 11.0, 59.0, 27.0])
#: Waveform window around the trough, in ms (C4 needs at least 1 ms before and 2 ms after).
PRE_MS = 1.3
POST_MS = 2.7

#: Lobules/regions of the cerebellar cortex (Allen CCF acronyms) used to name layer segments.
REGIONS: tuple[str, ...] = (
    "SIM",
    "CUL4, 5",
    "ANcr1",
    "ANcr2",
    "PRM",
    "COPY",
    "PFL",
    "FL",
    "DEC",
    "FOTU",
    "PYR",
    "UVU",
    "NOD",
)
#: CCF layer suffix -> C4 layer vocabulary (``vocabulary.LAYERS``).
LAYER_SUFFIX_TO_C4: dict[str, str] = {"mo": "ML", "pu": "PCL", "gr": "GCL"}


def neuropixels_geometry() -> np.ndarray:
    """Site positions of a Neuropixels 1.0 probe.

    Returns
    -------
    (384, 2) float64
        ``(x, y)`` in um relative to the probe tip (x across, y along the shank).
    """
    ch = np.arange(N_SITES)
    return np.stack([_NP1_X[ch % 4], 20.0 * (ch // 2)], axis=1)


def make_layer_profile(rng: np.random.Generator, extent_um: float = 3840.0) -> list[tuple]:
    """Layers met by a probe crossing successive cerebellar folia, from the tip upwards.

    Each folium crossing gives granular -> Purkinje -> molecular layer, then the molecular layer
    of the next folium across the fissure -> Purkinje -> granular, and so on.

    Returns
    -------
    list of (start_um, end_um, suffix, region)
        ``suffix`` in ``("mo", "pu", "gr")``; segments tile ``[0, extent_um)``.
    """
    segs: list[tuple] = []
    y = 0.0
    order = ["gr", "pu", "mo", "mo", "pu"]
    region = REGIONS[rng.integers(len(REGIONS))]
    k = int(rng.integers(len(order)))
    while y < extent_um:
        suffix = order[k % len(order)]
        if suffix == "gr":
            length = rng.uniform(180.0, 420.0)
        elif suffix == "pu":
            length = rng.uniform(30.0, 60.0)
        else:
            length = rng.uniform(120.0, 280.0)
        if k % len(order) == 3:  # crossing a fissure: a new folium, maybe a new lobule
            region = REGIONS[rng.integers(len(REGIONS))]
        segs.append((y, min(y + length, extent_um), suffix, region))
        y += length
        k += 1
    return segs


def waveform_time_ms(rate_hz: float) -> np.ndarray:
    """Sample times (ms, trough at 0) of a waveform window of 4 ms at ``rate_hz``."""
    n_pre = int(round(PRE_MS * 1e-3 * rate_hz))
    n = int(round((PRE_MS + POST_MS) * 1e-3 * rate_hz))
    return (np.arange(n) - n_pre) / rate_hz * 1e3


def _ph(amp: float, mu: float, sd: float) -> tuple[float, float, float]:
    return (amp, mu, sd)


def template_phases(rng: np.random.Generator, cls: str, width: float, kind: str = "") -> np.ndarray:
    """Phases of a unit's peak-channel waveform: rows ``(amplitude, centre_ms, sd_ms)``, the
    waveform being the sum of Gaussians; the main phase has amplitude -1 (or +1 when
    positive-going). ``width`` scales every time constant (species, unit-to-unit variability)."""
    w = width * float(np.exp(0.08 * rng.standard_normal()))
    r = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    if cls == "PkC_ss":
        ph = [_ph(-1, 0, 0.085 * w), _ph(r(0.3, 0.6), 0.28 * w, 0.13 * w), _ph(-0.06, 0.9 * w, 0.3 * w)]
        if rng.uniform() < 0.5:
            ph.append(_ph(r(0.05, 0.2), -0.18 * w, 0.08 * w))
    elif cls == "PkC_cs":
        ph = [
            _ph(-1, 0, 0.13 * w),
            _ph(r(0.4, 0.7), 0.5 * w, 0.22 * w),
            _ph(r(0.15, 0.35), 1.35 * w, 0.5 * w),
        ]
        gap = r(0.45, 0.65) * w
        for i in range(int(rng.integers(2, 5))):
            ph.append(_ph(-r(0.25, 0.45) * 0.7**i, 0.85 * w + i * gap, 0.07 * w))
    elif cls == "MLI":
        ph = [_ph(-1, 0, 0.065 * w), _ph(r(0.4, 0.7), 0.2 * w, 0.09 * w), _ph(-0.05, 0.6 * w, 0.2 * w)]
    elif cls == "GoC":
        ph = [_ph(-1, 0, 0.17 * w), _ph(r(0.25, 0.45), 0.6 * w, 0.28 * w)]
    elif cls == "MFB":
        if kind == "positive":
            ph = [
                _ph(1, 0, 0.06 * w),
                _ph(-r(0.3, 0.55), 0.15 * w, 0.07 * w),
                _ph(-0.15, -0.12 * w, 0.05 * w),
            ]
        else:
            ph = [
                _ph(r(0.3, 0.6), -0.13 * w, 0.055 * w),
                _ph(-1, 0, 0.055 * w),
                _ph(r(0.5, 0.9), 0.13 * w, 0.07 * w),
            ]
    elif cls == OTHER:
        if kind == "mixture":
            a, b = rng.choice(["PkC_ss", "MLI", "GoC", "MFB", "PkC_cs"], size=2, replace=False)
            pa = template_phases(rng, str(a), width)
            pb = template_phases(rng, str(b), width)
            pb[:, 1] += r(-0.1, 0.1)
            mix = r(0.3, 0.7)
            pa[:, 0] *= mix
            pb[:, 0] *= 1 - mix
            out = np.concatenate([pa, pb])
            return out / np.abs(out[:, 0]).max()
        if kind == "noise":
            n = int(rng.integers(2, 5))
            return np.stack(
                [rng.uniform(-1, 1, n), rng.uniform(-0.5, 1.2, n), rng.uniform(0.05, 0.4, n)], axis=1
            )
        if kind == "granule":
            ph = [_ph(-1, 0, 0.07 * w), _ph(r(0.2, 0.5), 0.25 * w, 0.12 * w)]
        else:  # unidentified cell types: anything between narrow and broad
            s = r(0.06, 0.22)
            ph = [_ph(-1, 0, s * w), _ph(r(0.15, 0.6), 3.2 * s * w, 1.6 * s * w)]
    else:
        raise InvalidValueError(
            f"unknown simulated class {cls!r}; expected one of the C4 classes or 'other'."
        )
    out = np.array(ph, dtype=np.float64)
    # unit-to-unit variability of every phase except the reference (main) phase amplitude
    out[1:, 0] *= np.exp(0.12 * rng.standard_normal(len(out) - 1))
    out[1:, 1] += 0.02 * w * rng.standard_normal(len(out) - 1)
    out[:, 2] *= np.exp(0.08 * rng.standard_normal(len(out)))
    return out


def fitted_phases(rng: np.random.Generator, phases: np.ndarray) -> np.ndarray:
    """A real unit's fitted phases (rows ``(amplitude, centre_ms, sd_ms)``, main peak at 0 ms) with
    unit-to-unit jitter: a global time stretch (log-sd 0.05). The phases' amplitudes are not
    jittered one by one: fitted sums can hold nearly cancelling pairs, whose independent jitter
    would distort the shape (measured: median half-widths 15-30 % too narrow). Only the amplitudes
    are rescaled (largest |amplitude| 1): centres and widths keep their milliseconds."""
    out = np.array(phases, dtype=np.float64)
    out[:, 1:] *= float(np.exp(0.05 * rng.standard_normal()))
    out[:, 0] /= np.abs(out[:, 0]).max()
    return out


def render_waveforms(
    phases: np.ndarray,
    t_ms: np.ndarray,
    distances_um: np.ndarray,
    *,
    amplitude_v: float,
    space_um: float,
    noise_v: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Render a unit's mean waveform on its channels.

    Amplitude decays as ``exp(-(d - d_min) / space_um)`` away from the closest site; far sites see
    a slightly delayed and broadened waveform (dendritic/axonal filtering); white noise of sd
    ``noise_v`` (lightly smoothed) is added, as left in a mean of finitely many spikes.

    Returns
    -------
    (samples, channels) float32
        Volts.
    """
    rel = distances_um - distances_um.min()
    stretch = 1.0 + 0.004 * rel  # (ch,)
    delay = 0.0015 * rel  # ms
    tt = (t_ms[:, None] - delay[None, :]) / stretch[None, :]  # (s, ch)
    amp, mu, sd = phases[:, 0], phases[:, 1], phases[:, 2]
    wave = np.einsum(
        "p,psc->sc", amp, np.exp(-0.5 * ((tt[None] - mu[:, None, None]) / sd[:, None, None]) ** 2)
    )
    peak = np.abs(wave[:, np.argmin(rel)]).max()
    wave *= amplitude_v / max(peak, 1e-12) * np.exp(-rel / space_um)[None, :]
    noise = rng.standard_normal(wave.shape) * noise_v
    noise = (noise + np.roll(noise, 1, axis=0) + np.roll(noise, -1, axis=0)) / np.sqrt(3)
    return (wave + noise).astype(np.float32)
