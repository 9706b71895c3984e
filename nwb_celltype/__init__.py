"""nwb-celltype: cell-type classification of spike-sorted units in NWB files.

The public API is re-exported lazily so that ``import nwb_celltype`` imports neither pynwb, JAX
nor PyTorch (``nwb-celltype --help`` starts in a fraction of a second). The ``ndx-celltype``
namespace and our classes for its types are registered with pynwb when the NWB layer is imported
(``import nwb_celltype.nwb``, which every reading and writing function of the package does); a
file read by plain pynwb without it still reads, with classes generated from its cached spec.
"""

from __future__ import annotations

from ._lazy import lazy_exports
from .errors import *  # noqa: F403
from .errors import NwbCelltypeError

__version__ = "0.1.0"


#: public name -> module (relative) that defines it; resolved on first access.
_LAZY: dict[str, str] = {
    "add_annotations": ".nwb",
    "add_classifier": ".nwb",
    "read_annotations": ".nwb",
    "AnnotationRecord": ".nwb",
    "CellTypeAnnotations": ".nwb",
    "CellTypeClassifier": ".nwb",
    "CellTypeEvidence": ".nwb",
    "open_source": ".io",
    "read_units": ".io",
    "list_dandiset_assets": ".io",
    "parse_source": ".io",
    "Source": ".io",
    "SourceInfo": ".io",
    "SourceSpec": ".io",
    "AssetInfo": ".io",
    "simulate_recording": ".simulate",
    "simulate_library": ".simulate",
    "SimulationResult": ".simulate",
    "demo_recording_path": ".simulate",
    "predict_cell_types": ".model",
    "Predictions": ".model",
    "train_model": ".model",
    "TrainConfig": ".model",
    "evaluate_model": ".model",
    "EvaluationReport": ".model",
    "ModelBundle": ".model",
    "load_bundle": ".model",
    "save_bundle": ".model",
    "load_demo_bundle": ".model",
    "import_c4_ensemble": ".model.c4",
    "load_training_set": ".library",
    "TrainingSet": ".library",
    "label_file": ".library",
    "import_c4h5": ".library",
    "create_manifest": ".library",
    "load_manifest": ".library",
    "merge_manifests": ".library",
    "validate_library": ".library",
    "library_stats": ".library",
    "export_dandiset": ".library",
    "extract_features": ".features",
    "save_features": ".features",
    "load_features": ".features",
    "FeatureConfig": ".features",
    "FeatureSet": ".features",
    "annotate_dandiset": ".batch",
    "DandisetRunResult": ".batch",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())

__all__ = ["NwbCelltypeError", "__version__", *_LAZY]
