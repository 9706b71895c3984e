"""The feature configuration (every setting that changes feature values, typed, frozen and hashed)
and the :class:`FeatureSet` container. Pure Python + numpy: importing this does not import JAX."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import ClassVar

import numpy as np

from ..errors import FeatureError


class ConfigMixin:
    """JSON round trip and hashing shared by every family's frozen configuration dataclass."""

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
        return cls(**d)

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
