"""Model cards (``model_card.json``, docs/classifier.md): what every bundle kind's card records about
itself and where it came from.

- :func:`card_header`: the fields every card starts with (format, identity, creation time, the
  classes in output order with their Cell Ontology ids);
- :func:`software_versions`: the software, code digest and machine that produced a bundle;
- :func:`training_card`: the training record of a C4-family ensemble (:func:`.training.train_model`:
  method, settings, unit and class counts, the training data's references and evidence, the
  cross-validated metrics).

Each bundle kind assembles its own card from these (:func:`.bundle.bundle_from_states`,
:func:`.discharge_bundle.make_discharge_bundle`); :mod:`.bundle` saves, loads and verifies it.
"""

from __future__ import annotations

import datetime as _dt
import platform
from typing import Any

import numpy as np

from ..vocabulary import CELL_ONTOLOGY_IDS
from ._bundle_digest import _json_safe

__all__ = ["BUNDLE_FORMAT", "BUNDLE_FORMAT_VERSION", "card_header", "software_versions", "training_card"]

BUNDLE_FORMAT = "nwb-celltype-model"
BUNDLE_FORMAT_VERSION = 1


def card_header(*, name: str, version: str, description: str, classes) -> dict[str, Any]:
    """The fields every bundle kind's model card starts with: format, identity, creation time and
    the classes in output order with their Cell Ontology ids."""
    return {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_FORMAT_VERSION,
        "name": name,
        "version": version,
        "description": description,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "classes": [
            {"name": c, "index": i, "cell_ontology_id": CELL_ONTOLOGY_IDS.get(c, "")}
            for i, c in enumerate(classes)
        ],
    }


def software_versions() -> dict[str, str]:
    """Versions of the software that produced a bundle."""
    from importlib.metadata import version

    import safetensors

    import nwb_celltype

    from .._code_identity import code_digest

    return {
        "nwb_celltype": nwb_celltype.__version__,
        "nwb_celltype_code": code_digest(),
        "torch": version("torch"),
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
        # floating-point results (and so the weights' last bits) depend on the CPU's instruction set
        "machine": f"{platform.machine()} {_cpu_model()}".strip(),
    }


def _cpu_model() -> str:
    """The CPU's model name where the platform says it (Linux /proc/cpuinfo), else ""."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or ""


def training_card(result, training_set, *, config, seed, metrics, train_seconds) -> dict[str, Any]:
    """The card fields of a C4-family ensemble trained by :func:`.training.train_ensemble`
    (``result``, a :class:`~.training.TrainResult`) on ``training_set`` with ``config`` and
    ``seed``: ``training`` (method, settings, unit and class counts, the layer choice and its
    reason, duration), the training data's references (no absolute paths) and evidence, and
    ``metrics.cross_validated`` (``metrics``)."""
    from .training_inputs import evidence_card, training_data_card

    feats = training_set.features
    labels = np.asarray(training_set.labels, dtype=object)
    n_lab = int(sum(1 for v in labels if isinstance(v, str) and v))
    counts = np.bincount(result.y, minlength=len(result.classes)).tolist()
    return {
        "training": {
            "method": "semi-supervised: VAEs pre-trained on all units (labels unused), ensemble of "
            "classifier heads over repeated stratified CV folds, temperature scaling on out-of-fold logits",
            "config": config.to_dict(),
            "seed": int(seed),
            "use_layer_setting": config.use_layer,
            "use_layer_reason": (
                "set explicitly"
                if config.use_layer in (True, False)
                else (
                    "auto: some labelled units have a known layer"
                    if result.use_layer
                    else "auto: no labelled unit has a known layer"
                )
            ),
            "n_units": len(feats),
            "n_labelled": n_lab,
            "n_labelled_usable": int(len(result.y)),
            "n_unlabelled": len(feats) - n_lab,
            "class_counts": dict(zip(result.classes, counts, strict=True)),
            "pretrain_units": result.history.get("n_pretrain_units"),
            "seconds": float(train_seconds),
            "threads": config.n_threads,
            "vae_final_loss": {
                k: (v[-1] if v else None) for k, v in result.history.items() if k.endswith("vae_loss")
            },
        },
        **_json_safe(training_data_card(training_set)),  # sources and manifest, no absolute paths
        "metrics": {"cross_validated": metrics},
        **evidence_card(training_set),
    }
