"""Model bundles: a trained ensemble + calibration as safetensors weights and a JSON model card, saved
to and loaded from a directory, verified by sha256, and never unpickled.

On disk a bundle is a directory::

    <bundle>/weights.safetensors   stacked member weights ("ensemble.<C4 name>", leading axis = member,
                                   or 1 for encoders shared by all members), "calibration.temperature",
                                   optionally "laplace.<name>" (last-layer Kronecker posterior)
    <bundle>/model_card.json       everything else (see docs/classifier.md)

``model_card.json["weights_sha256"]`` is a sha256 over the weight tensors (names, dtypes, shapes and
bytes, in name order; not ``sha256sum`` of the file, whose header may order them otherwise);
``["sha256"]`` (the bundle's identity, recorded in NWB provenance) is the sha256 of that digest + the
canonical JSON of the card without the ``sha256`` field. Loading recomputes both and refuses a bundle that does not match.
:func:`save_bundle` writes the folder whole or not at all (built beside it, then swapped in). What
the card records about the model's origin (header, software, training record) is built in :mod:`.card`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelError, ModelMismatchError, OutputError, UnsafeFileError
from ..features.config import FeatureConfig
from ._bundle_digest import _bundle_digest, _json_safe, _verify_digests, _weights_digest
from .card import BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION, card_header, software_versions, training_card

if TYPE_CHECKING:  # torch only where a C4-family bundle is built or run: see load_bundle
    import torch

    from .ensemble_cnn import EnsembleCNN

logger = logging.getLogger(__name__)

__all__ = [
    "BUNDLE_FORMAT",
    "ModelBundle",
    "bundle_from_states",
    "check_bundle_folder",
    "load_bundle",
    "save_bundle",
]

WEIGHTS_FILE = "weights.safetensors"
CARD_FILE = "model_card.json"
#: What a bundle folder holds (:func:`nwb_celltype._atomic.atomic_folder` patterns): a save replaces
#: the folder as a whole, so a folder holding anything else is refused.
BUNDLE_FILES = (WEIGHTS_FILE, CARD_FILE)
_PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".dill")


class CardProperties:
    """What every bundle kind reads from its model card (``self.card``) and weights (``_tensors``)."""

    card: dict

    @property
    def sha256(self) -> str:
        """Identity of the bundle (sha256 over weights + card), as recorded in NWB provenance."""
        if "sha256" not in self.card:
            self.card["weights_sha256"] = _weights_digest(self._tensors())
            self.card["sha256"] = _bundle_digest(self.card)
        return self.card["sha256"]

    @property
    def feature_family(self) -> str:
        return str(self.card.get("feature_family", "c4-3d"))

    @property
    def feature_config(self):
        """The card's feature configuration, as the family's configuration type (cached)."""
        if self._feature_config is None:
            from ..features.families import get_family

            self._feature_config = get_family(self.feature_family).config_from_dict(
                self.card["feature_config"]
            )
        return self._feature_config

    @property
    def name(self) -> str:
        return self.card["name"]

    @property
    def version(self) -> str:
        return self.card["version"]

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(c["name"] for c in self.card["classes"])

    def species_coverage(self, species):
        """How ``species`` (the units' species: None, a name, or one per unit) stands to the species
        the model was trained on (:func:`nwb_celltype.model.real_species.species_coverage`; kind
        ``unrecorded`` for models whose card names none)."""
        from .real_species import species_coverage

        meta = self.card.get("model_meta")
        return species_coverage(meta if isinstance(meta, dict) else {}, species)


def _bundle_repr(bundle: CardProperties, **extra) -> str:
    """A bundle's short repr (:func:`nwb_celltype._repr.compact_repr`): name, version, classes, family,
    the digest where known (not computed for a repr), the path."""
    from .._repr import compact_repr

    card = bundle.card
    sha = card.get("sha256")
    return compact_repr(
        bundle,
        name=card.get("name"),
        version=card.get("version"),
        classes=", ".join(c.get("name", "?") for c in card.get("classes", []) if isinstance(c, dict)),
        feature_family=bundle.feature_family,
        **extra,
        sha256=sha[:12] + "..." if isinstance(sha, str) else None,
        path=bundle.path,
    )


@dataclass
class ModelBundle(CardProperties):
    """A calibrated ensemble and its model card.

    Attributes
    ----------
    ensemble : EnsembleCNN
        The M members, stacked (inference only).
    card : dict
        The model card (JSON-serialisable); see docs/classifier.md.
    temperature : float
        Temperature applied to every member's logits before the softmax.
    laplace : KronPosterior or None
        Last-layer Laplace posterior (probit predictive) when the bundle carries one.
    path : Path or None
        Where the bundle was loaded from / saved to.
    """

    ensemble: EnsembleCNN
    card: dict
    temperature: float = 1.0
    laplace: Any = None
    path: Path | None = None
    _feature_config: FeatureConfig | None = field(default=None, repr=False)

    def __repr__(self) -> str:  # short: never the weights
        return _bundle_repr(self, n_members=getattr(self.ensemble, "n_members", None))

    @property
    def uses_layer(self) -> bool:
        return bool(self.card["uses_layer"])

    @property
    def n_members(self) -> int:
        return self.ensemble.n_members

    @property
    def device(self) -> torch.device:
        return next(iter(self.ensemble.buffers())).device

    def to(self, device: str | torch.device) -> ModelBundle:
        """Move the weights (and posterior) to ``device`` in place; returns self."""
        self.ensemble.to(device)
        if self.laplace is not None:
            for n in self.laplace.TENSOR_NAMES:
                v = getattr(self.laplace, n)
                if v is not None:
                    setattr(self.laplace, n, v.to(device))
        return self

    def _tensors(self) -> dict[str, torch.Tensor]:
        import torch

        out = {
            f"ensemble.{k}": v.detach().cpu().contiguous() for k, v in self.ensemble.stacked_tensors().items()
        }
        out["calibration.temperature"] = torch.tensor([float(self.temperature)], dtype=torch.float32)
        if self.laplace is not None:
            out.update(
                {f"laplace.{k}": v.detach().cpu().contiguous() for k, v in self.laplace.to_tensors().items()}
            )
        return out


def bundle_from_states(
    states: list[dict[str, torch.Tensor]] | EnsembleCNN,
    *,
    classes: tuple[str, ...],
    feature_config: FeatureConfig,
    name: str,
    version: str,
    description: str = "",
    temperature: float = 1.0,
    laplace: Any = None,
    pool: str = "avg",
    card_extra: dict | None = None,
) -> ModelBundle:
    """Wrap member state dicts (C4 naming; e.g. imported from the published C4 ensembles) in a bundle.

    Parameters
    ----------
    states : list of state dicts or EnsembleCNN
    classes : tuple of str
        Output order of the members' logits.
    feature_config : FeatureConfig
        Configuration the features must have been computed with.
    name, version, description : str
    temperature : float
        Logit temperature (1 = none).
    laplace : KronPosterior, optional
        Last-layer posterior; predictions then use the probit predictive.
    pool : {"avg", "max"}
    card_extra : dict, optional
        More card fields (training data references, metrics, provenance ...), merged last.
    """
    from .ensemble_cnn import EnsembleCNN
    from .network import build_network, count_parameters

    ens = states if isinstance(states, EnsembleCNN) else EnsembleCNN(states, pool=pool)
    ens.eval()
    if len(classes) != ens.n_classes:
        raise ModelMismatchError(
            f"{len(classes)} class names {list(classes)} given for members with {ens.n_classes} outputs."
        )
    calib = "laplace" if laplace is not None else ("temperature" if temperature != 1.0 else "none")
    card: dict[str, Any] = {
        **card_header(name=name, version=version, description=description, classes=classes),
        "uses_layer": bool(ens.use_layer),
        "feature_config": feature_config.to_dict(),
        "feature_config_sha256": feature_config.sha256,
        "architecture": {
            "network": "C4 CNNCerebellum (npyx 4.3.1 layout)",
            "n_members": ens.n_members,
            "shared_encoders": bool(ens.shared_encoders),
            "pool": ens.pool,
            "parameters_per_member": count_parameters(build_network(ens.n_classes, ens.use_layer)),
            "inputs": {"acg": [10, 101], "waveform": [90], "layer": [4] if ens.use_layer else []},
        },
        "calibration": {"method": calib, "temperature": float(temperature)},
        "decision": "mean probability over members; label = argmax; confidence = p(top1) / p(top2)",
        "software": software_versions(),
        "weights_file": WEIGHTS_FILE,
    }
    card.update(card_extra or {})
    bundle = ModelBundle(ensemble=ens, card=card, temperature=float(temperature), laplace=laplace)
    bundle.card["weights_sha256"] = _weights_digest(bundle._tensors())
    bundle.card["sha256"] = _bundle_digest(bundle.card)
    return bundle


def bundle_from_training(
    result, training_set, *, config, seed, name, version, description, metrics, train_seconds, card_extra=None
) -> ModelBundle:
    """Bundle of a :class:`~.training.TrainResult` with its training provenance in the card
    (:func:`.card.training_card`; ``card_extra`` merged last)."""
    extra = training_card(
        result, training_set, config=config, seed=seed, metrics=metrics, train_seconds=train_seconds
    )
    extra.update(card_extra or {})
    return bundle_from_states(
        result.states,
        classes=result.classes,
        feature_config=training_set.features.config,
        name=name,
        version=version,
        description=description,
        temperature=result.temperature,
        pool=config.pool,
        card_extra=extra,
    )


def check_bundle_folder(path: str | Path, *, overwrite: bool = False) -> None:
    """Refuse, before any work, a ``path`` that :func:`save_bundle` would not write (``train`` and
    ``c4 import`` call it before training or importing).

    Raises
    ------
    OutputError
        ``path`` is a file; it is a folder holding files that are not a bundle's
        (:data:`BUNDLE_FILES`, with or without ``overwrite``: the folder is replaced whole); or it is
        not empty and ``overwrite`` is not given.
    """
    from .._atomic import check_folder

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(
            f"cannot write a model bundle to {path}: it exists and is a file; choose a new path."
        )
    check_folder(path, replace=True, owned=BUNDLE_FILES, what="a model bundle")
    existing = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
    if existing and not overwrite:
        raise OutputError(
            f"{path} is not empty ({existing[:5]}); pass --overwrite (overwrite=True) "
            "or choose a new directory."
        )


def save_bundle(bundle: ModelBundle, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``bundle`` as a directory ``path`` (weights.safetensors + model_card.json).

    The folder is written whole or not at all (:func:`nwb_celltype._atomic.atomic_folder`): both files
    are written into a new folder beside ``path``, which replaces an older bundle there only once
    complete, so a failed or interrupted save leaves the older bundle as it was (and loadable).

    Raises
    ------
    OutputError
        ``path`` is a file, holds files other than a bundle's, or is not empty and ``overwrite`` is
        not given (:func:`check_bundle_folder`); or a file could not be written.
    """
    from safetensors.torch import save_file

    from .._atomic import atomic_folder, atomic_write
    from .._atomic_files import write_text_file

    path = Path(path)
    check_bundle_folder(path, overwrite=overwrite)
    tensors = bundle._tensors()
    bundle.card["weights_sha256"] = _weights_digest(tensors)
    bundle.card["sha256"] = _bundle_digest(bundle.card)
    card = json.dumps(_json_safe(bundle.card), indent=1, sort_keys=True, allow_nan=False)
    with atomic_folder(path, replace=overwrite, owned=BUNDLE_FILES, what="a model bundle") as tmp:
        with atomic_write(tmp / WEIGHTS_FILE, replace=True, lock=False) as w:
            save_file(tensors, str(w), metadata={"format": BUNDLE_FORMAT})
        write_text_file(tmp / CARD_FILE, card)
    bundle.path = path
    logger.info("saved model bundle %s (%s) to %s", bundle.name, bundle.sha256[:12], path)
    return path


def load_bundle(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    feature_config: FeatureConfig | None = None,
    verify: bool = True,
) -> ModelBundle:
    """Load and verify a bundle directory written by :func:`save_bundle`.

    Parameters
    ----------
    path : str or Path
        The bundle directory (or its model_card.json).
    device : str or torch.device
        Where to put the weights ("cpu", "cuda", "cuda:1", ...).
    feature_config : FeatureConfig, optional
        If given, the bundle must have been trained on features of exactly this configuration.
    verify : bool
        Recompute and check the sha256 digests (default True).

    Raises
    ------
    UnsafeFileError
        ``path`` is a pickle-based checkpoint (.pt, .pkl, ...): refused, never unpickled.
    ModelError
        Not a bundle, unreadable, or its digests do not match its content (corrupt / edited).
    ModelMismatchError
        The feature configuration differs from ``feature_config`` or from its recorded hash.
    """
    path = _bundle_dir(path)
    card_path, w_path = path / CARD_FILE, path / WEIGHTS_FILE
    card = _read_card(card_path)
    c4_family = card.get("feature_family", "c4-3d") == "c4-3d"
    # other families' models run in numpy (no torch import: see real_inference.py)
    tensors = _read_weights(w_path, torch_tensors=c4_family)
    if verify:
        _verify_digests(path, card, tensors)
    if not c4_family:
        return _load_numpy_family(path, card, tensors, feature_config).to(device)
    fc = _c4_feature_config(path, card_path, card, feature_config)
    bundle = _c4_bundle(path, card, tensors, fc)
    try:
        bundle.to(device)
    except (RuntimeError, AssertionError) as exc:
        raise ModelError(f"cannot move model {bundle.name} to device {device!r}: {exc}") from exc
    return bundle


def _bundle_dir(path: str | Path) -> Path:
    """The bundle directory ``path`` names; refuses pickle checkpoints and directories without both files."""
    path = Path(path)
    if path.is_file() and path.name == CARD_FILE:
        path = path.parent
    if path.suffix.lower() in _PICKLE_SUFFIXES and path.is_file():
        raise UnsafeFileError(
            f"{path} looks like a pickle-based PyTorch checkpoint; loading it could execute code, so it is "
            "refused. Convert C4 ensembles with `nwb-celltype c4 import`, or pass a bundle directory."
        )
    if not path.is_dir() or not (path / CARD_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
        raise ModelError(
            f"{path} is not a model bundle: expected a directory with {CARD_FILE} and {WEIGHTS_FILE}. "
            "Create one with `nwb-celltype train` or nwb_celltype.save_bundle."
        )
    return path


def _read_card(card_path: Path) -> dict:
    """The model card at ``card_path``, checked to be an nwb-celltype card of a format this version reads."""
    try:
        card = json.loads(card_path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the model card {card_path}: {exc}") from exc
    if not isinstance(card, dict):
        raise ModelError(f"{card_path} must hold a JSON object (the model card), got {type(card).__name__}.")
    if card.get("format") != BUNDLE_FORMAT:
        raise ModelError(f"{card_path} is not an nwb-celltype model card (format={card.get('format')!r}).")
    try:
        version = int(card.get("format_version", 0))
    except (TypeError, ValueError):
        raise ModelError(
            f"{card_path}: format_version {card.get('format_version')!r} is not an integer; the card is "
            "damaged. Re-download or re-train the bundle."
        ) from None
    if version > BUNDLE_FORMAT_VERSION:
        raise ModelError(
            f"bundle format version {card.get('format_version')} is newer than this nwb-celltype supports "
            f"({BUNDLE_FORMAT_VERSION}); upgrade nwb-celltype."
        )
    return card


def _read_weights(w_path: Path, *, torch_tensors: bool) -> dict:
    """The tensors of the weights file, as torch tensors on the CPU or (without importing torch) numpy arrays."""
    from safetensors import SafetensorError

    try:
        if torch_tensors:
            from safetensors.torch import load_file

            return load_file(str(w_path), device="cpu")
        from safetensors.numpy import load_file

        return load_file(str(w_path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"cannot read the weights {w_path} (not a valid safetensors file?): {exc}") from exc


def _load_numpy_family(path: Path, card: dict, tensors: dict, feature_config: FeatureConfig | None):
    """The bundle of a feature family other than C4's (a numpy model: see :mod:`.discharge_bundle`)."""
    from ..features.families import get_family
    from .discharge_bundle import load_discharge_bundle

    get_family(card["feature_family"])  # a clear error for families this version does not know
    if feature_config is not None and feature_config.sha256 != card.get("feature_config_sha256"):
        raise ModelMismatchError(
            f"model {card.get('name')} was trained on {card['feature_family']} features with another "
            "configuration; recompute the features with the bundle's configuration."
        )
    return load_discharge_bundle(path, card, tensors)


def _c4_feature_config(
    path: Path, card_path: Path, card: dict, feature_config: FeatureConfig | None
) -> FeatureConfig:
    """The card's C4 feature configuration, checked against its recorded hash and ``feature_config``."""
    try:
        fc = FeatureConfig.from_dict(card["feature_config"])
    except (TypeError, ValueError, KeyError) as exc:  # any failure here means an unusable card
        raise ModelMismatchError(f"feature configuration in {card_path} is unreadable: {exc}") from exc
    if fc.sha256 != card.get("feature_config_sha256"):
        raise ModelMismatchError(
            f"feature configuration of {path} hashes to {fc.sha256[:12]} but the card records "
            f"{str(card.get('feature_config_sha256'))[:12]}; this nwb-celltype interprets the configuration "
            "differently from the one that trained the model. Use the nwb-celltype version in the card's "
            "software section, or re-train."
        )
    if feature_config is not None and feature_config.sha256 != fc.sha256:
        diff = {
            k: (v, feature_config.to_dict().get(k))
            for k, v in fc.to_dict().items()
            if feature_config.to_dict().get(k) != v
        }
        raise ModelMismatchError(
            f"model {card.get('name')} was trained on features with a different configuration "
            f"(bundle {fc.sha256[:12]} vs data {feature_config.sha256[:12]}; differing settings "
            f"{{name: (bundle, data)}} = {diff}); recompute the features with the bundle's configuration."
        )
    return fc


def _c4_bundle(path: Path, card: dict, tensors: dict[str, torch.Tensor], fc: FeatureConfig) -> ModelBundle:
    """The C4-family bundle of verified weights: stacked ensemble, temperature and Laplace posterior."""
    from .ensemble_cnn import EnsembleCNN

    ens_t = {k.removeprefix("ensemble."): v for k, v in tensors.items() if k.startswith("ensemble.")}
    n_members = int(card["architecture"]["n_members"])
    ens = EnsembleCNN.from_stacked(ens_t, n_members, pool=card["architecture"].get("pool", "avg")).eval()
    temperature = (
        float(tensors["calibration.temperature"][0]) if "calibration.temperature" in tensors else 1.0
    )
    laplace = None
    lap_t = {k.removeprefix("laplace."): v for k, v in tensors.items() if k.startswith("laplace.")}
    if lap_t:
        from .laplace import KronPosterior

        laplace = KronPosterior.from_tensors(lap_t)
    return ModelBundle(
        ensemble=ens, card=card, temperature=temperature, laplace=laplace, path=path, _feature_config=fc
    )
