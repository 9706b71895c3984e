"""The feature configuration (every setting that changes feature values, typed, frozen and hashed)
and the :class:`FeatureSet` container. Pure Python + numpy: importing this does not import JAX."""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from dataclasses import asdict, dataclass, field, fields
from typing import ClassVar

import numpy as np

from ..errors import FeatureError


@dataclass(frozen=True)
class Allowed:
    """What one configuration setting may hold: its kind (bool, int, float or str) and, for numbers,
    the range ``lo <= value <= hi`` (``lo < value`` where ``lo_open``)."""

    kind: type
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False

    def accepts(self, value) -> bool:
        """Whether ``value`` is of this kind (ints count as floats, bools never as numbers) and in range."""
        if self.kind is bool or isinstance(value, bool):
            return self.kind is bool and isinstance(value, bool)
        if self.kind is str:
            return isinstance(value, str)
        number = numbers.Integral if self.kind is int else numbers.Real
        if not isinstance(value, number) or not math.isfinite(value):
            return False
        above = self.lo is None or (value > self.lo if self.lo_open else value >= self.lo)
        return above and (self.hi is None or value <= self.hi)

    def describe(self) -> str:
        if self.kind is bool:
            return "true or false (a JSON boolean, not a string or number)"
        if self.kind is str:
            return "a string"
        what = "an integer" if self.kind is int else "a number"
        lo = "" if self.lo is None else f"{'>' if self.lo_open else '>='} {_number(self.lo)}"
        hi = "" if self.hi is None else f"<= {_number(self.hi)}"
        return f"{what} {' and '.join(x for x in (lo, hi) if x)}".rstrip()


def _number(x: float) -> str:
    """``x`` for messages: whole numbers with thousands separators, others as ``%g``."""
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:g}"


class ConfigMixin:
    """JSON round trip and hashing shared by every family's frozen configuration dataclass.

    A subclass lists what each setting may hold in ``ALLOWED`` (:class:`Allowed`; every field must
    be listed) and checks settings that must agree with each other in ``_check_consistency``.
    """

    ALLOWED: ClassVar[dict[str, Allowed]] = {}

    def to_dict(self) -> dict:
        """Plain dict of all settings (JSON-serialisable)."""
        return asdict(self)

    def to_json(self) -> str:
        """Canonical JSON (sorted keys), the form that is hashed and stored in NWB / model cards."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def sha256(self) -> str:
        """sha256 of :meth:`to_json`: two configurations give equal features iff hashes match."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def differences(self, other) -> str:
        """The settings that differ from ``other``'s, as ``name=mine (other's)``, comma-separated."""
        a, b = self.to_dict(), other.to_dict()
        keys = sorted(set(a) | set(b))
        return ", ".join(f"{k}={a.get(k)!r} ({b.get(k)!r})" for k in keys if a.get(k) != b.get(k))

    def check_same(self, expected, what: str) -> None:
        """Raise :class:`~nwb_celltype.errors.ModelMismatchError` naming the settings in which these
        features' configuration differs from ``expected`` (``what``: the model that expects it)."""
        if self.sha256 != expected.sha256:
            from ..errors import ModelMismatchError

            raise ModelMismatchError(
                f"the features were computed with other settings than {what} expects: "
                f"{self.differences(expected) or 'another configuration'} (the model's values in "
                "brackets). Recompute them with the model's configuration (`nwb-celltype features SOURCE "
                "--model MODEL`, or extract with bundle.feature_config)."
            )

    @classmethod
    def from_dict(cls, d: dict):
        """Inverse of :meth:`to_dict`; unknown keys are an error that names them."""
        if not isinstance(d, dict):
            raise FeatureError(f"a feature configuration must be a JSON object, got {type(d).__name__}.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise FeatureError(
                f"unknown {cls.family} feature configuration keys {unknown}; known keys: {sorted(known)}. "
                "The configuration may come from a newer nwb-celltype: upgrade the package."
            )
        if d.get("family", cls.family) != cls.family:
            raise FeatureError(f"configuration of family {d['family']!r} given to {cls.family!r}.")
        return cls(**d)  # checked on construction (:meth:`__post_init__`)

    def __post_init__(self) -> None:
        # every configuration is checked when made (constructor, replace(), from_dict): the package
        # never computes, saves or trains with one it would refuse to read back
        self.check_settings()

    def check_settings(self) -> None:
        """Raise a one-line :class:`~nwb_celltype.errors.FeatureError` naming the first setting whose
        type or value is not allowed (``ALLOWED``), or settings that disagree with each other.

        Called on construction: configurations made in Python, read from JSON (``--config``, model
        cards, feature files) or changed with ``dataclasses.replace`` are checked before any feature
        is computed, saved or trained with them."""
        for f in fields(self):
            allowed, value = self.ALLOWED.get(f.name), getattr(self, f.name)
            if allowed is None:  # a field added without saying what it may hold
                raise FeatureError(f"{self.family} feature configuration: {f.name} has no allowed range.")
            if not allowed.accepts(value):
                raise FeatureError(
                    f"{self.family} feature configuration: {f.name}={value!r} is not allowed; expected "
                    f"{allowed.describe()}."
                )
        self._check_consistency()

    def _check_consistency(self) -> None:
        """Settings that must agree with each other (each in its range already); none by default."""

    @classmethod
    def from_json(cls, s: str):
        return cls.from_dict(json.loads(s))


def common_config(sets: list):
    """The one configuration of feature sets about to be stacked (an error if they differ or none)."""
    if not sets:
        raise FeatureError("no feature sets to concatenate")
    cfg = sets[0].config
    for s in sets[1:]:
        if s.config != cfg:
            raise FeatureError(
                f"cannot concatenate {cfg.family} features computed with different configurations "
                f"({cfg.sha256[:12]} vs {s.config.sha256[:12]}); recompute with one configuration."
            )
    return cfg


@dataclass(frozen=True)
class FeatureConfig(ConfigMixin):
    """Settings of the feature extractor. Defaults reproduce C4 (npyx 4.3.1).

    Shape-deciding settings are Python ints so that they can be static arguments of jitted code.
    """

    sampling_rate_hz: float = 30000.0  # spike times are converted to samples at this rate (C4: 30 kHz)
    acg_bin_ms: float = 1.0
    acg_window_ms: float = 2000.0
    acg_rate_bins: int = 10
    acg_smooth_ms: float = 250.0  # boxcar over the inverse-ISI rate
    acg_log_points: int = 100  # log-spaced lags from acg_bin_ms to window/2
    acg_log_smooth_sigma: float = 1.0
    acg_scale: float = 10.0  # C4 multiplies the log ACG (P(spike per 1 ms bin)) by 10: 1.0 = 100 Hz
    waveform_rate_hz: float = 30000.0
    waveform_samples: int = 90  # -1 ms .. +2 ms at 30 kHz
    waveform_pre_ms: float = 1.0
    waveform_post_ms: float = 2.0
    min_spikes: int = 100
    refractory_ms: float = 0.8
    stats_burst_isi_ms: float = 10.0  # ISIs shorter than this count towards the burst index
    stats_long_isi_s: float = 2.0  # ISIs longer than this count as long (silences)
    c4_unit_selection: bool = False  # C4's 10 s chunk filter (refractory violations, amplitude cut-off)
    chunk_s: float = 10.0
    max_refractory_violation: float = 0.05
    max_amplitude_cutoff: float = 0.05
    min_good_duration_s: float = 180.0
    version: str = "1"
    family: ClassVar[str] = "c4-3d"  # the feature family (features/families.py); not a setting

    #: Ranges: C4's value (npyx 4.3.1) times a generous factor where a setting sizes arrays or
    #: loops (ACG window 2 s -> 20 s, at most 20,000 linear lags: log_geometry's matrix then
    #: takes ~1 GB), physically meaningful bounds elsewhere (fractions in [0, 1]).
    ALLOWED: ClassVar[dict[str, Allowed]] = {
        "sampling_rate_hz": Allowed(float, 0, 1e6, lo_open=True),
        "acg_bin_ms": Allowed(float, 0, 100.0, lo_open=True),
        "acg_window_ms": Allowed(float, 0, 20_000.0, lo_open=True),
        "acg_rate_bins": Allowed(int, 1, 100),
        "acg_smooth_ms": Allowed(float, 0, 10_000.0),
        "acg_log_points": Allowed(int, 2, 1000),
        "acg_log_smooth_sigma": Allowed(float, 0, 100.0),
        "acg_scale": Allowed(float, 0, 1e6, lo_open=True),
        "waveform_rate_hz": Allowed(float, 0, 1e6, lo_open=True),
        "waveform_samples": Allowed(int, 3, 10_000),
        "waveform_pre_ms": Allowed(float, 0, 10.0),
        "waveform_post_ms": Allowed(float, 0, 10.0),
        "min_spikes": Allowed(int, 2, 10**9),
        "refractory_ms": Allowed(float, 0, 10.0, lo_open=True),
        "stats_burst_isi_ms": Allowed(float, 0, 1000.0, lo_open=True),
        "stats_long_isi_s": Allowed(float, 0, 3600.0, lo_open=True),
        "c4_unit_selection": Allowed(bool),
        "chunk_s": Allowed(float, 0, 3600.0, lo_open=True),
        "max_refractory_violation": Allowed(float, 0, 1.0),
        "max_amplitude_cutoff": Allowed(float, 0, 1.0),
        "min_good_duration_s": Allowed(float, 0, 1e6),
        "version": Allowed(str),
    }
    #: Most linear ACG lags (acg_window_ms / acg_bin_ms): C4 uses 2,000.
    MAX_ACG_LAGS: ClassVar[int] = 20_000

    def _check_consistency(self) -> None:
        where = f"{self.family} feature configuration"
        lags = self.acg_window_ms / self.acg_bin_ms
        if lags > self.MAX_ACG_LAGS:
            raise FeatureError(
                f"{where}: acg_window_ms={self.acg_window_ms} / acg_bin_ms={self.acg_bin_ms} gives "
                f"{lags:.0f} linear ACG lags; at most {self.MAX_ACG_LAGS} are allowed (C4: 2000 / 1)."
            )
        sigma = self.acg_log_smooth_sigma
        if sigma != int(sigma):
            raise FeatureError(f"{where}: acg_log_smooth_sigma={sigma} must be a whole number of log bins.")
        # the formula of features/waveform.py, so that no unit fails later for this reason
        n = int(round((self.waveform_pre_ms / 1000 + self.waveform_post_ms / 1000) * self.waveform_rate_hz))
        if n != self.waveform_samples:
            raise FeatureError(
                f"{where}: waveform_samples={self.waveform_samples} but waveform_pre_ms + waveform_post_ms "
                f"= {self.waveform_pre_ms} + {self.waveform_post_ms} ms at {self.waveform_rate_hz} Hz is "
                f"{n} samples; make them agree."
            )
        from ._geometry import acg_geometry  # cheap (no large arrays); raises for unusable ACG settings

        try:
            n_lags = acg_geometry(self).n_lags
        except FeatureError as exc:
            raise FeatureError(f"{where}: {exc}") from exc
        # log_geometry's own check, made here without building its (lags x lags) matrix
        cbin, cwin = self.acg_bin_ms, self.acg_window_ms
        if len(np.arange(-cwin // 2, cwin // 2 + cbin, cbin)) != n_lags:
            raise FeatureError(
                f"{where}: acg_window_ms={cwin} is not a multiple of 2 x acg_bin_ms={cbin} ms; "
                "use a window that is a multiple of 2 bins."
            )


@dataclass
class FeatureSet:
    """Features of a set of units, as the classifier sees them.

    Attributes
    ----------
    unit_ids : (n,) int64
    acg : (n, acg_rate_bins, acg_log_points + 1) float32
        Log-lag 3D autocorrelogram (lag 0 + positive log lags), scaled as C4 (x10: 1.0 = 100 Hz).
    waveform : (n, waveform_samples) float32
        Preprocessed peak-channel waveform (peak negative, scaled to -1).
    layer : (n, 4) float32
        One-hot layer in ``vocabulary.LAYERS`` order.
    stats : dict of name -> (n,) float64
        Discharge statistics (mean rate, CV, CV2, ...).
    usable : (n,) bool
        False where a unit could not be featurised; ``reasons[i]`` says why.
    reasons : (n,) object
        Empty string for usable units.
    config : FeatureConfig
    """

    unit_ids: np.ndarray
    acg: np.ndarray
    waveform: np.ndarray
    layer: np.ndarray
    stats: dict[str, np.ndarray]
    usable: np.ndarray
    reasons: np.ndarray
    config: FeatureConfig = field(default_factory=FeatureConfig)
    family: ClassVar[str] = "c4-3d"

    def __len__(self) -> int:
        return len(self.unit_ids)

    def __repr__(self) -> str:  # short: shapes, never the arrays
        from .._repr import compact_repr

        return compact_repr(
            self,
            family=self.family,
            n_units=len(self),
            n_usable=int(np.count_nonzero(self.usable)),
            acg=self.acg,
            waveform=self.waveform,
            layer=self.layer,
            stats=", ".join(self.stats),
        )

    def subset(self, index) -> FeatureSet:
        """Rows ``index`` (mask or integer array) as a new FeatureSet."""
        return FeatureSet(
            unit_ids=self.unit_ids[index],
            acg=self.acg[index],
            waveform=self.waveform[index],
            layer=self.layer[index],
            stats={k: v[index] for k, v in self.stats.items()},
            usable=self.usable[index],
            reasons=self.reasons[index],
            config=self.config,
        )

    @staticmethod
    def concatenate(sets: list[FeatureSet]) -> FeatureSet:
        """Stack feature sets computed with one configuration; mixing configurations is an error."""
        cfg = common_config(sets)
        return FeatureSet(
            unit_ids=np.concatenate([s.unit_ids for s in sets]),
            acg=np.concatenate([s.acg for s in sets]),
            waveform=np.concatenate([s.waveform for s in sets]),
            layer=np.concatenate([s.layer for s in sets]),
            stats={k: np.concatenate([s.stats[k] for s in sets]) for k in sets[0].stats},
            usable=np.concatenate([s.usable for s in sets]),
            reasons=np.concatenate([s.reasons for s in sets]),
            config=cfg,
        )
