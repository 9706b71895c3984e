"""Feature layer: named feature families (``c4-3d``: C4's 3D autocorrelogram, waveform, layer,
discharge statistics; ``acg-isi-wave``: ACG/ISI counts to 100 ms + aligned waveform, the real-data
family; see :mod:`.families`). Only this layer imports JAX, and only when an ACG is computed: importing
``nwb_celltype.features`` or its ``config`` module stays light."""

from __future__ import annotations

from typing import TYPE_CHECKING

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

if (
    TYPE_CHECKING
):  # what type checkers and IDEs see behind the lazy names (tests/test_typing20.py keeps it equal to _LAZY)
    from .acg import (
        compute_acg_3d as compute_acg_3d,
    )
    from .acg import (
        compute_acg_3d_batch as compute_acg_3d_batch,
    )
    from .acg import (
        compute_log_acg as compute_log_acg,
    )
    from .acg import (
        spike_times_to_samples as spike_times_to_samples,
    )
    from .config import FeatureConfig as FeatureConfig
    from .config import FeatureSet as FeatureSet
    from .discharge import (
        DischargeConfig as DischargeConfig,
    )
    from .discharge import (
        DischargeFeatureSet as DischargeFeatureSet,
    )
    from .discharge import (
        align_waveform as align_waveform,
    )
    from .discharge import (
        compute_acg_counts as compute_acg_counts,
    )
    from .discharge import (
        compute_isi_counts as compute_isi_counts,
    )
    from .discharge import (
        extract_discharge_features as extract_discharge_features,
    )
    from .extract import (
        extract_features as extract_features,
    )
    from .extract import (
        load_features as load_features,
    )
    from .extract import (
        save_features as save_features,
    )
    from .families import (
        FeatureFamily as FeatureFamily,
    )
    from .families import (
        family_of as family_of,
    )
    from .families import (
        get_family as get_family,
    )
    from .families import (
        list_families as list_families,
    )
    from .families import (
        load_features_any as load_features_any,
    )
    from .families import (
        register_family as register_family,
    )
    from .reference import reference_acg_3d as reference_acg_3d
    from .stats import STAT_NAMES as STAT_NAMES
    from .stats import compute_spike_stats as compute_spike_stats
    from .waveform import preprocess_waveform as preprocess_waveform


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())

__all__ = list(_LAZY)
