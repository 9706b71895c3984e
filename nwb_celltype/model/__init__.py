"""model layer of nwb-celltype (PyTorch): the C4 network and its batched ensemble, semi-supervised
training, calibration, model bundles (safetensors + JSON card), prediction and evaluation."""

from __future__ import annotations

from .bundle import ModelBundle, bundle_from_states, load_bundle, load_demo_bundle, save_bundle
from .evaluate import EvaluationReport, evaluate_model
from .metrics import classification_metrics
from .network import CNNCerebellum, EnsembleCNN, build_network, convert_npyx_state_dict
from .predict import Predictions, predict_cell_types
from .training import TrainConfig, train_model

__all__ = [
    "CNNCerebellum",
    "EnsembleCNN",
    "EvaluationReport",
    "ModelBundle",
    "Predictions",
    "TrainConfig",
    "build_network",
    "bundle_from_states",
    "classification_metrics",
    "convert_npyx_state_dict",
    "evaluate_model",
    "load_bundle",
    "load_demo_bundle",
    "predict_cell_types",
    "save_bundle",
    "train_model",
]
