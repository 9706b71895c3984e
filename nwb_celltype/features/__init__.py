"""Feature layer: the C4 features of units (3D autocorrelogram, waveform, layer, discharge
statistics). Only this layer imports JAX, and only when an ACG is computed: importing
``nwb_celltype.features`` or its ``config`` module stays light."""

from __future__ import annotations

import importlib

_LAZY: dict[str, str] = {
    "FeatureConfig": ".config",
    "FeatureSet": ".config",
    "compute_acg_3d": ".acg",
    "compute_acg_3d_batch": ".acg",
    "compute_log_acg": ".acg",
    "spike_times_to_samples": ".acg",
    "preprocess_waveform": ".waveform",
    "compute_spike_stats": ".stats",
    "STAT_NAMES": ".stats",
    "extract_features": ".extract",
    "save_features": ".extract",
    "load_features": ".extract",
    "reference_acg_3d": ".reference",
}


def __getattr__(name: str):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'nwb_celltype.features' has no attribute {name!r}")
    return getattr(importlib.import_module(mod, __name__), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = list(_LAZY)
