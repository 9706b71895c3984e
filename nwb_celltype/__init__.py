"""nwb-celltype: cell-type classification of spike-sorted units in NWB files.

Importing the package makes pynwb know the ``ndx-celltype`` NWB extension namespace: at once if
pynwb is already imported, else right after pynwb's first import (so ``import nwb_celltype`` stays
light and commands that never touch pynwb never import it). The public API is re-exported lazily so
that ``import nwb_celltype`` imports neither pynwb, JAX, PyTorch nor scipy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
    "parse_dandiset_reference": ".io",
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

if (
    TYPE_CHECKING
):  # what type checkers and IDEs see behind the lazy names (tests/test_typing20.py keeps it equal to _LAZY)
    from .agreement import (
        Agreement as Agreement,
    )
    from .agreement import (
        agreements as agreements,
    )
    from .agreement import (
        agreements_in_file as agreements_in_file,
    )
    from .annotate import annotate as annotate
    from .batch import DandisetRunResult as DandisetRunResult
    from .batch import annotate_dandiset as annotate_dandiset
    from .classify import classify_sorting as classify_sorting
    from .classify import classify_tsgroup as classify_tsgroup
    from .features import (
        FeatureConfig as FeatureConfig,
    )
    from .features import (
        FeatureSet as FeatureSet,
    )
    from .features import (
        extract_features as extract_features,
    )
    from .features import (
        load_features as load_features,
    )
    from .features import (
        save_features as save_features,
    )
    from .io import (
        AssetInfo as AssetInfo,
    )
    from .io import (
        Source as Source,
    )
    from .io import (
        SourceInfo as SourceInfo,
    )
    from .io import (
        SourceSpec as SourceSpec,
    )
    from .io import (
        list_dandiset_assets as list_dandiset_assets,
    )
    from .io import (
        open_source as open_source,
    )
    from .io import (
        parse_dandiset_reference as parse_dandiset_reference,
    )
    from .io import (
        parse_source as parse_source,
    )
    from .io import (
        read_units as read_units,
    )
    from .library import (
        TrainingSet as TrainingSet,
    )
    from .library import (
        create_manifest as create_manifest,
    )
    from .library import (
        export_dandiset as export_dandiset,
    )
    from .library import (
        import_c4h5 as import_c4h5,
    )
    from .library import (
        label_file as label_file,
    )
    from .library import (
        library_stats as library_stats,
    )
    from .library import (
        load_manifest as load_manifest,
    )
    from .library import (
        load_training_set as load_training_set,
    )
    from .library import (
        merge_manifests as merge_manifests,
    )
    from .library import (
        validate_library as validate_library,
    )
    from .model import (
        EvaluationReport as EvaluationReport,
    )
    from .model import (
        ModelBundle as ModelBundle,
    )
    from .model import (
        Predictions as Predictions,
    )
    from .model import (
        TrainConfig as TrainConfig,
    )
    from .model import (
        evaluate_model as evaluate_model,
    )
    from .model import (
        load_bundle as load_bundle,
    )
    from .model import (
        load_demo_bundle as load_demo_bundle,
    )
    from .model import (
        predict_cell_types as predict_cell_types,
    )
    from .model import (
        save_bundle as save_bundle,
    )
    from .model import (
        train_model as train_model,
    )
    from .model.c4 import import_c4_ensemble as import_c4_ensemble
    from .nwb import (
        AnnotationRecord as AnnotationRecord,
    )
    from .nwb import (
        CellTypeAnnotations as CellTypeAnnotations,
    )
    from .nwb import (
        CellTypeClassifier as CellTypeClassifier,
    )
    from .nwb import (
        CellTypeEvidence as CellTypeEvidence,
    )
    from .nwb import (
        add_annotations as add_annotations,
    )
    from .nwb import (
        add_classifier as add_classifier,
    )
    from .nwb import (
        read_annotations as read_annotations,
    )
    from .simulate import (
        SimulationResult as SimulationResult,
    )
    from .simulate import (
        demo_recording_path as demo_recording_path,
    )
    from .simulate import (
        simulate_library as simulate_library,
    )
    from .simulate import (
        simulate_recording as simulate_recording,
    )


_lazy_getattr, __dir__ = lazy_exports(__name__, _LAZY, globals())


def __getattr__(name: str):
    if name == "annotate":
        # the submodule, callable as its annotate function: importing it binds it here anyway (as
        # ``import nwb_celltype.annotate`` does), so the name is the same object whatever came first
        import importlib

        return importlib.import_module(".annotate", __name__)
    return _lazy_getattr(name)


__all__ = ["NwbCelltypeError", "__version__", *_LAZY]
