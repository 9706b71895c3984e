"""Feature layer: named feature families (``c4-3d``: C4's 3D autocorrelogram, waveform, layer,
discharge statistics; ``acg-isi-wave``: ACG/ISI counts to 100 ms + aligned waveform, the real-data
family; see :mod:`.families`). Only this layer imports JAX, and only when an ACG is computed: importing
``nwb_celltype.features`` or its ``config`` module stays light."""

from __future__ import annotations

from .._lazy import lazy_exports

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
    "FeatureFamily": ".families",
    "get_family": ".families",
    "list_families": ".families",
    "register_family": ".families",
    "family_of": ".families",
    "load_features_any": ".families",
    "DischargeConfig": ".discharge",
    "DischargeFeatureSet": ".discharge",
    "extract_discharge_features": ".discharge",
    "compute_acg_counts": ".discharge",
    "compute_isi_counts": ".discharge",
    "align_waveform": ".discharge",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())

__all__ = list(_LAZY)
