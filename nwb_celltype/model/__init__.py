"""model layer of nwb-celltype (PyTorch): the C4 network and its batched ensemble, semi-supervised
training, calibration, model bundles (safetensors + JSON card), prediction and evaluation.

Names are imported on first use: loading and running the default (real-data) model needs no torch
(its small ensemble runs in numpy, :mod:`.real_inference`); training and the C4 family import it."""

from __future__ import annotations

from typing import TYPE_CHECKING

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

if (
    TYPE_CHECKING
):  # what type checkers and IDEs see behind the lazy names (tests/test_typing20.py keeps it equal to _LAZY)
    from .bundle import (
        ModelBundle as ModelBundle,
    )
    from .bundle import (
        bundle_from_states as bundle_from_states,
    )
    from .bundle import (
        load_bundle as load_bundle,
    )
    from .bundle import (
        save_bundle as save_bundle,
    )
    from .evaluate import EvaluationReport as EvaluationReport
    from .evaluate import evaluate_model as evaluate_model
    from .metrics import classification_metrics as classification_metrics
    from .network import (
        CNNCerebellum as CNNCerebellum,
    )
    from .network import (
        EnsembleCNN as EnsembleCNN,
    )
    from .network import (
        build_network as build_network,
    )
    from .network import (
        convert_npyx_state_dict as convert_npyx_state_dict,
    )
    from .predict import Predictions as Predictions
    from .predict import predict_cell_types as predict_cell_types
    from .shipped import load_demo_bundle as load_demo_bundle
    from .training import TrainConfig as TrainConfig
    from .training import train_model as train_model

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
