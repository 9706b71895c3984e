"""The bundles shipped inside the package (the default model, trained on real identified neurons, and
the simulated demo model), digest pinning, and what a user's ``model`` argument resolves to."""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ModelError
from .bundle import CARD_FILE, ModelBundle, load_bundle

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

#: (name, version) of the demo bundles already warned about in this process (once each)
_DEMO_WARNED: set[tuple[str, str]] = set()

__all__ = [
    "DEFAULT_MODEL_DIR",
    "check_pinned",
    "default_bundle_path",
    "demo_bundle_path",
    "load_default_bundle",
    "load_demo_bundle",
    "resolve_model",
]


def demo_bundle_path() -> Path:
    """Location of the demo bundle shipped inside the package."""
    return Path(str(resources.files("nwb_celltype") / "data" / "demo_model"))


def load_demo_bundle(*, device: str | torch.device = "cpu") -> ModelBundle:
    """The demo model shipped with the package: TRAINED ON SIMULATED DATA, not for scientific
    conclusions (its card says so). Train a real one with ``nwb-celltype train``."""
    return _load_shipped(
        demo_bundle_path(), "demo", "regenerate it with `python benchmarks/make_demo_bundle.py`", device
    )


#: folder of the default model inside the package (trained on real identified neurons)
DEFAULT_MODEL_DIR = "default_model"


def default_bundle_path() -> Path:
    """Location of the default model shipped inside the package (trained on real identified units;
    see its model card and docs/validation.md)."""
    return Path(str(resources.files("nwb_celltype") / "data" / DEFAULT_MODEL_DIR))


def load_default_bundle(*, device: str | torch.device = "cpu"):
    """The package's default model: the ensemble trained on real, identified cerebellar neurons
    (``acg-isi-wave`` features; the model card lists the data, protocol and validated numbers)."""
    return _load_shipped(
        default_bundle_path(),
        "default",
        "rebuild it with `python benchmarks/make_real_bundle.py` (docs/validation.md)",
        device,
    )


def _load_shipped(path: Path, what: str, rebuild: str, device):
    """Load a bundle shipped inside the package, or say how to get it back when it is missing."""
    if not (path / CARD_FILE).is_file():
        raise ModelError(
            f"the {what} model is missing from the installation ({path}); {rebuild} or reinstall nwb-celltype."
        )
    return load_bundle(path, device=device)


def check_pinned(bundle, expected_sha256: str) -> None:
    """Refuse ``bundle`` unless its bundle digest (weights + card, see :attr:`ModelBundle.sha256`)
    equals ``expected_sha256`` (hex; a prefix of >= 12 characters is accepted). The digest alone only
    guards against corruption — a card edited with its digest recomputed still loads — so pin the
    digest you obtained from the bundle's publisher to guard against substitution."""
    want = str(expected_sha256).strip().lower()
    if len(want) < 12 or any(c not in "0123456789abcdef" for c in want):
        raise ModelError(
            f"model sha256 pin {expected_sha256!r} is not a hex digest (>= 12 of its 64 characters); "
            "copy it from `nwb-celltype show` or the bundle's publisher."
        )
    got = str(bundle.sha256)
    if not got.startswith(want):
        raise ModelError(
            f"model bundle {getattr(bundle, 'name', '?')} has sha256 {got[:16]}..., not the pinned "
            f"{want[:16]}...; it is a different or modified bundle. Use the bundle you pinned, or update "
            "the pin (--model-sha256)."
        )


def resolve_model(model, *, device: str | torch.device = "cpu"):
    """``(bundle, is_demo)`` for what a user passed as a model: None -> the default model, a path ->
    :func:`load_bundle`, a loaded bundle -> itself. ``is_demo`` is True for the simulated demo model."""
    if model is None:
        return load_default_bundle(device=device), False
    if isinstance(model, (str, Path)) or hasattr(model, "__fspath__"):
        path = Path(model)
        bundle = load_bundle(path, device=device)
    else:
        bundle = model
    is_demo = bool(bundle.card.get("trained_on_simulated_data", False)) or (
        bundle.path is not None and Path(bundle.path).resolve() == demo_bundle_path().resolve()
    )
    if is_demo:
        _warn_demo(bundle)
    return bundle, is_demo


def _warn_demo(bundle) -> None:
    """Log (once per process and bundle) that the demo model's labels are no science: the Python API
    says so as the CLI's summary does (a logging warning, not :mod:`warnings`)."""
    from .. import _notices

    key = (str(bundle.card.get("name", "")), str(bundle.card.get("version", "")))
    if not _notices.demo_warning or key in _DEMO_WARNED:
        return
    _DEMO_WARNED.add(key)
    logger.warning(
        "model %s %s was trained on simulated data (as the DEMO model is): its labels are for trying the "
        "package out, not for scientific conclusions (model=None uses the default model, trained on real "
        "neurons)",
        *key,
    )
