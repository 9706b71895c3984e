"""nwb-celltype: cell-type classification of spike-sorted units in NWB files.

Importing the package makes pynwb know the ``ndx-celltype`` NWB extension namespace: at once if
pynwb is already imported, else right after pynwb's first import (so ``import nwb_celltype`` stays
light and commands that never touch pynwb never import it). The public API is re-exported lazily so
that ``import nwb_celltype`` imports neither pynwb, JAX, PyTorch nor scipy.
"""

from __future__ import annotations

from ._lazy import after_import, lazy_exports
from .errors import *  # noqa: F403
from .errors import NwbCelltypeError

__version__ = "0.1.0"


def _load_namespace() -> None:
    # pynwb must know ndx-celltype before any file with our tables is read; loading the namespace
    # (from the installed spec dir, else the source tree's spec/) imports pynwb but not our classes.
    from .nwb._namespace import load_namespace

    load_namespace()


after_import("pynwb", _load_namespace)

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
    "agreements": ".agreement",
    "agreements_in_file": ".agreement",
    "Agreement": ".agreement",
    "classify_sorting": ".classify",
    "classify_tsgroup": ".classify",
    # the submodule nwb_celltype.annotate, callable as nwb_celltype.annotate.annotate (see __getattr__)
    "annotate": ".annotate",
}


_lazy_getattr, __dir__ = lazy_exports(__name__, _LAZY, globals())


def __getattr__(name: str):
    if name == "annotate":
        # the submodule, callable as its annotate function: importing it binds it here anyway (as
        # ``import nwb_celltype.annotate`` does), so the name is the same object whatever came first
        import importlib

        return importlib.import_module(".annotate", __name__)
    return _lazy_getattr(name)


__all__ = ["NwbCelltypeError", "__version__", *_LAZY]
