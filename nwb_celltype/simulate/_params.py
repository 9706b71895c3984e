"""Per-class, per-species parameters of the simulator. Every number here is documented, with its
source and how approximate it is, in docs/simulation.md (section "Parameters and sources")."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import InvalidValueError

#: Classes the simulator draws, in addition to the five C4 classes: unlabelled "other" units.
OTHER = "other"
SIM_CLASSES: tuple[str, ...] = ("GoC", "MLI", "MFB", "PkC_ss", "PkC_cs", OTHER)

#: Kinds of "other" unit and their relative frequency (see docs/simulation.md).
OTHER_KINDS: tuple[str, ...] = ("granule", "mixture", "noise", "irregular")
OTHER_KIND_P: tuple[float, ...] = (0.3, 0.25, 0.15, 0.3)


@dataclass(frozen=True)
class ClassParams:
    """Distribution of spike-train and waveform parameters of one simulated class.

    Rates are drawn log-normally (median ``rate_hz``, log-sd ``rate_log_sd``) and clipped to
    ``rate_range_hz``; the other per-unit parameters are uniform in their ranges.
    """

    rate_hz: float
    rate_log_sd: float
    rate_range_hz: tuple[float, float]
    gamma_shape: tuple[float, float]  # renewal-process shape (1 = Poisson, larger = more regular)
    dead_time_ms: tuple[float, float]  # absolute refractory period
    log_rate_sd: tuple[float, float]  # slow rate fluctuations (log-normal OU process), sd
    log_rate_tau_s: tuple[float, float]  # and their time constant
    amplitude_uv: float  # median peak-channel amplitude (log-normal, sd 0.35)
    space_um: tuple[float, float]  # spatial decay length of the amplitude across sites
    # burst-only parameters (MFB, granule-like): spikes per burst (mean) and intra-burst ISI
    burst_size: tuple[float, float] = (1.0, 1.0)
    intra_burst_isi_ms: tuple[float, float] = (2.0, 2.0)


@dataclass(frozen=True)
class Preset:
    """A species preset: per-class parameters plus waveform time scaling."""

    name: str
    species: str
    classes: dict
    width_scale: float  # multiplies every waveform time constant (wider spikes > 1)
    cs_pause_ms: tuple[float, float]  # simple-spike pause after a complex spike
    waveform_rate_hz: float


_MOUSE = {
    "PkC_ss": ClassParams(
        rate_hz=65.0,
        rate_log_sd=0.35,
        rate_range_hz=(25.0, 160.0),
        gamma_shape=(3.0, 8.0),
        dead_time_ms=(2.0, 3.0),
        log_rate_sd=(0.12, 0.3),
        log_rate_tau_s=(0.5, 3.0),
        amplitude_uv=150.0,
        space_um=(35.0, 60.0),
    ),
    "PkC_cs": ClassParams(
        rate_hz=1.0,
        rate_log_sd=0.3,
        rate_range_hz=(0.3, 2.5),
        gamma_shape=(1.0, 2.0),
        dead_time_ms=(40.0, 90.0),
        log_rate_sd=(0.1, 0.3),
        log_rate_tau_s=(2.0, 10.0),
        amplitude_uv=130.0,
        space_um=(45.0, 75.0),
    ),
    "MLI": ClassParams(
        rate_hz=16.0,
        rate_log_sd=0.5,
        rate_range_hz=(3.0, 60.0),
        gamma_shape=(1.1, 2.2),
        dead_time_ms=(1.5, 2.5),
        log_rate_sd=(0.3, 0.6),
        log_rate_tau_s=(0.3, 2.0),
        amplitude_uv=90.0,
        space_um=(20.0, 35.0),
    ),
    "GoC": ClassParams(
        rate_hz=10.0,
        rate_log_sd=0.45,
        rate_range_hz=(2.0, 35.0),
        gamma_shape=(6.0, 14.0),
        dead_time_ms=(6.0, 12.0),
        log_rate_sd=(0.1, 0.25),
        log_rate_tau_s=(1.0, 5.0),
        amplitude_uv=100.0,
        space_um=(30.0, 50.0),
    ),
    "MFB": ClassParams(
        rate_hz=35.0,
        rate_log_sd=0.6,
        rate_range_hz=(5.0, 150.0),
        gamma_shape=(0.8, 1.5),  # of the burst onsets
        dead_time_ms=(0.7, 1.0),
        log_rate_sd=(0.3, 0.7),
        log_rate_tau_s=(0.3, 3.0),
        amplitude_uv=110.0,
        space_um=(12.0, 22.0),
        burst_size=(1.8, 4.0),
        intra_burst_isi_ms=(1.3, 3.5),
    ),
    OTHER: ClassParams(
        rate_hz=6.0,
        rate_log_sd=0.9,
        rate_range_hz=(0.2, 80.0),
        gamma_shape=(0.7, 3.0),
        dead_time_ms=(1.0, 3.0),
        log_rate_sd=(0.2, 0.7),
        log_rate_tau_s=(0.3, 5.0),
        amplitude_uv=60.0,
        space_um=(15.0, 45.0),
        burst_size=(1.5, 3.5),
        intra_burst_isi_ms=(3.0, 8.0),
    ),
}


def _scale_rate(p: ClassParams, factor: float) -> ClassParams:
    lo, hi = p.rate_range_hz
    return replace(p, rate_hz=p.rate_hz * factor, rate_range_hz=(lo * factor, hi * factor))


# Macaque: somewhat lower spontaneous rates (factors in docs/simulation.md) and wider spikes.
_MACAQUE = {
    "PkC_ss": _scale_rate(_MOUSE["PkC_ss"], 0.85),
    "PkC_cs": _scale_rate(_MOUSE["PkC_cs"], 0.9),
    "MLI": _scale_rate(_MOUSE["MLI"], 0.9),
    "GoC": _scale_rate(_MOUSE["GoC"], 0.85),
    "MFB": _scale_rate(_MOUSE["MFB"], 0.9),
    OTHER: _MOUSE[OTHER],
}

PRESETS: dict[str, Preset] = {
    "mouse": Preset(
        name="mouse",
        species="Mus musculus",
        classes=_MOUSE,
        width_scale=1.0,
        cs_pause_ms=(10.0, 30.0),
        waveform_rate_hz=30000.0,
    ),
    "macaque": Preset(
        name="macaque",
        species="Macaca mulatta",
        classes=_MACAQUE,
        width_scale=1.15,
        cs_pause_ms=(12.0, 35.0),
        waveform_rate_hz=30000.0,
    ),
}

#: Default class mix of a recording (fractions of n_units; PkC_cs never exceeds PkC_ss).
DEFAULT_MIX: dict[str, float] = {
    "PkC_ss": 0.18,
    "PkC_cs": 0.10,
    "MLI": 0.17,
    "GoC": 0.08,
    "MFB": 0.12,
    OTHER: 0.35,
}

#: Labelled class counts of the C4 mouse ground-truth library (Beau et al. 2025).
C4_LABELLED_COUNTS: dict[str, int] = {"PkC_ss": 69, "PkC_cs": 58, "MLI": 27, "GoC": 18, "MFB": 30}
#: Number of unlabelled units used by C4 to pre-train its autoencoders (approximately).
C4_UNLABELLED_COUNT: int = 3090
#: Fewest spikes a unit needs to get a ground-truth label: the minimum of C4 that
#: ``library validate`` (``validate_library(min_spikes=100)``) and the feature layer
#: (``FeatureConfig.min_spikes``) apply, so a simulated library validates and every label is scored.
LABEL_MIN_SPIKES: int = 100


def get_preset(preset: str | Preset) -> Preset:
    """Return the :class:`Preset` named ``preset`` ("mouse" or "macaque")."""
    if isinstance(preset, Preset):
        return preset
    if preset not in PRESETS:
        raise InvalidValueError(
            f"unknown simulation preset {preset!r}; expected one of {sorted(PRESETS)}. "
            "Pass preset='mouse' or preset='macaque'."
        )
    return PRESETS[preset]


#: The parameter file fitted to real units by ``python -m nwb_celltype.simulate._fit``.
FITTED_PARAMS_FILE = Path(__file__).with_name("fitted_params.json")


@dataclass(frozen=True)
class FittedClass:
    """Per-unit fits of one class of one species: rows to draw simulated units from.

    Attributes
    ----------
    discharge : (n_units, 7) float64
        ``_model.DISCHARGE_FIELDS`` per real unit (empty when the tables have no spike data).
    waveforms : tuple of (n_phases, 3) float64 arrays
        Gaussian phases (amplitude, centre ms, sd ms; main peak at 0 ms) per real unit.
    waveform_noise : (n_units,) float64
        Residual sd of each waveform fit, relative to the main peak.
    amplitude_log_sd : float or None
        Spread (sd of the natural log) of the real peak amplitudes, None where not measured.
    discharge_ids, waveform_ids : tuple of str
        The real unit behind each discharge / waveform row (``neuron_id``, e.g. ``"hull_12"``).
    """

    discharge: np.ndarray
    waveforms: tuple
    waveform_noise: np.ndarray
    amplitude_log_sd: float | None
    discharge_ids: tuple = ()
    waveform_ids: tuple = ()

    def without(self, excluded: frozenset[str]) -> FittedClass:
        """The same class without the rows fitted to the real units in ``excluded``."""
        kd = np.array([u not in excluded for u in self.discharge_ids], dtype=bool)
        kw = np.array([u not in excluded for u in self.waveform_ids], dtype=bool)
        return replace(
            self,
            discharge=self.discharge[kd] if len(kd) else self.discharge,
            waveforms=tuple(w for w, k in zip(self.waveforms, kw, strict=True) if k),
            waveform_noise=self.waveform_noise[kw] if len(kw) else self.waveform_noise,
            discharge_ids=tuple(u for u, k in zip(self.discharge_ids, kd, strict=True) if k),
            waveform_ids=tuple(u for u, k in zip(self.waveform_ids, kw, strict=True) if k),
        )


@lru_cache(maxsize=4)
def fitted_classes(preset_name: str) -> dict[str, FittedClass]:
    """The fitted rows of every class of a preset (``{}`` if the preset has none)."""
    data = json.loads(FITTED_PARAMS_FILE.read_text())
    entry = data["presets"].get(preset_name)
    if entry is None:
        return {}
    out = {}
    for cls in set(entry["discharge"]) | set(entry["waveform"]):
        waves = entry["waveform"].get(cls, [])
        amp = entry["amplitude_log"].get(cls)
        out[cls] = FittedClass(
            discharge=np.array(entry["discharge"].get(cls, []), dtype=np.float64).reshape(-1, 7),
            waveforms=tuple(np.array(w["phases"], dtype=np.float64) for w in waves),
            waveform_noise=np.array([w["noise"] for w in waves], dtype=np.float64),
            amplitude_log_sd=None if amp is None else float(amp[1]),
            discharge_ids=tuple(entry.get("discharge_ids", {}).get(cls, ())),
            waveform_ids=tuple(entry.get("waveform_ids", {}).get(cls, ())),
        )
    return out


def fitted_pool(
    preset_name: str, exclude_real_units=None, discharge_rows: dict | None = None
) -> dict[str, FittedClass]:
    """The fitted rows a simulation may draw from: the preset's classes (plus the mouse preset's
    waveform-only classes it lacks, e.g. granule cells for macaque), without the rows fitted to the
    real units named in ``exclude_real_units`` (``neuron_id`` strings such as ``"lisberger_12"``).
    ``discharge_rows`` replaces a class's discharge rows: ``{class: (rows (k, 7), neuron_ids (k,))}``
    (e.g. rows refitted without some units).

    Raises
    ------
    InvalidValueError
        An excluded name is not a real unit behind any row of the preset, the exclusion leaves a
        C4 class without a discharge or a waveform row, or replacement rows are malformed.
    """
    pool = dict(fitted_classes(preset_name))
    for cls, fit in fitted_classes("mouse").items():
        pool.setdefault(cls, fit)
    for cls, (rows, ids) in (discharge_rows or {}).items():
        rows = np.asarray(rows, dtype=np.float64)
        if cls not in pool or rows.ndim != 2 or rows.shape[1] != 7 or len(ids) != len(rows):
            raise InvalidValueError(
                f"discharge_rows[{cls!r}] must be (rows of shape (k, 7), k neuron_ids) for a class of "
                f"the {preset_name!r} preset; got {rows.shape} rows and {len(ids)} ids."
            )
        pool[cls] = replace(pool[cls], discharge=rows, discharge_ids=tuple(str(u) for u in ids))
    if exclude_real_units is None:
        return pool
    if isinstance(exclude_real_units, str):
        exclude_real_units = [exclude_real_units]
    excluded = frozenset(str(u) for u in exclude_real_units)
    if not excluded:
        return pool
    known = {u for f in pool.values() for u in (*f.discharge_ids, *f.waveform_ids)}
    unknown = sorted(excluded - known)
    if unknown:
        raise InvalidValueError(
            f"exclude_real_units names {len(unknown)} unit(s) behind no fitted row of the "
            f"{preset_name!r} preset (e.g. {unknown[:3]}); give the real units' neuron_id as in the "
            "tables' units.csv (e.g. 'hull_12'), only of the labs the preset was fitted to."
        )
    out = {cls: fit.without(excluded) for cls, fit in pool.items()}
    for cls, fit in out.items():
        emptied = (len(pool[cls].discharge) and not len(fit.discharge)) or (
            pool[cls].waveforms and not fit.waveforms
        )
        if emptied:
            raise InvalidValueError(
                f"exclude_real_units leaves no fitted row of class {cls!r} in the {preset_name!r} "
                "preset; keep at least one real unit of every class to draw simulated units from."
            )
    return out
