"""model layer of nwb-celltype (PyTorch): the C4 network and its batched ensemble, semi-supervised
training, calibration, model bundles (safetensors + JSON card), prediction and evaluation.

Names are imported on first use: loading and running the default (real-data) model needs no torch
(its small ensemble runs in numpy, :mod:`.real_inference`); training and the C4 family import it."""

from __future__ import annotations

from .._lazy import lazy_exports

_LAZY = {
    "CNNCerebellum": ".network",
    "EnsembleCNN": ".network",
    "EvaluationReport": ".evaluate",
    "ModelBundle": ".bundle",
    "Predictions": ".predict",
    "TrainConfig": ".training",
    "build_network": ".network",
    "bundle_from_states": ".bundle",
    "classification_metrics": ".metrics",
    "convert_npyx_state_dict": ".network",
    "evaluate_model": ".evaluate",
    "load_bundle": ".bundle",
    "load_demo_bundle": ".shipped",
    "predict_cell_types": ".predict",
    "save_bundle": ".bundle",
    "train_model": ".training",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
