"""Registry of feature families: a family is a named unit (configuration type + extractor + feature
container + file format) that model bundles declare (``model_card.json["feature_family"]``) and that
``annotate``, ``features`` and ``predict`` dispatch on — adding a family touches this registry only.

Registered here:

- ``c4-3d``: C4's features (3D autocorrelogram, 90-sample waveform, layer); exact to npyx 4.3.1, for
  imported C4 ensembles and models trained on NWB libraries (:mod:`.extract`);
- ``acg-isi-wave``: ACG pair counts to 100 ms, ISI histogram to 100 ms and an aligned 30 kHz waveform,
  computable from spike trains *and* from published per-unit tables: the family of the models trained
  on real identified neurons (:mod:`.discharge`).

Importing this module is light (no JAX, no scipy): extractors are imported on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import FeatureError, InvalidValueError

#: family of bundles and feature files that do not name one (written before families existed)
DEFAULT_FAMILY = "c4-3d"
#: family of the package's default model (tests check that the shipped model declares it); what
#: ``nwb-celltype features`` computes when no family or model is given
DEFAULT_MODEL_FAMILY = "acg-isi-wave"


def _resolve(spec: str) -> Callable:
    mod, attr = spec.split(":")
    return getattr(importlib.import_module(mod, __package__), attr)


@dataclass(frozen=True)
class FeatureFamily:
    """One feature family.

    Attributes
    ----------
    name : str
        Registry key, recorded in bundles, feature files and NWB provenance.
    description : str
        One line for docs and ``--help``.
    config : str
        ``"module:Class"`` of the frozen configuration (``from_dict``, ``to_json``, ``sha256``).
    features : str
        ``"module:Class"`` of the feature container (``concatenate``, ``subset``, ``usable``).
    extract : str
        ``"module:function"``: ``(UnitsBatch, config, progress=False) -> features``.
    save, load : str
        ``"module:function"`` writing / reading the family's ``.npz`` features file.
    without_waveforms : str or None
        ``"module:function"``: ``features -> features`` with every unit's waveform set aside, for
        families whose models can classify from the discharge alone; None where the waveform is a
        required input (C4).
    precision_choice : bool
        Whether the family's models can run in float64 as a reference (``annotate --precision``):
        C4 (torch) bundles can; ``acg-isi-wave`` bundles run their stored weights one way.
    """

    name: str
    description: str
    config: str
    features: str
    extract: str
    save: str
    load: str
    without_waveforms: str | None = None
    precision_choice: bool = False

    def check_precision(self, precision: str) -> None:
        """Refuse a precision other than the default where the family's models have no choice."""
        if precision != "float32" and not self.precision_choice:
            raise InvalidValueError(
                f"--precision {precision} applies to C4 (c4-3d) models; this model's feature family "
                f"{self.name!r} runs its stored weights one way only: drop the option"
            )

    @property
    def config_type(self) -> type:
        return _resolve(self.config)

    @property
    def features_type(self) -> type:
        return _resolve(self.features)

    def default_config(self) -> Any:
        return self.config_type()

    def config_from_dict(self, d: dict) -> Any:
        return self.config_type.from_dict(d)

    def extract_features(self, batch, config=None, progress: bool = False):
        """Features of one batch of units (:class:`~nwb_celltype.units.UnitsBatch`)."""
        return _resolve(self.extract)(
            batch, config if config is not None else self.default_config(), progress
        )

    def concatenate(self, sets: list):
        return self.features_type.concatenate(sets)

    def save_features(self, path, fs):
        return _resolve(self.save)(path, fs)

    def load_features(self, path):
        return _resolve(self.load)(path)

    def check_ignore_waveforms(self) -> None:
        """Raise :class:`FeatureError` unless this family's models can classify without waveforms."""
        if self.without_waveforms is None:
            raise FeatureError(
                f"models of the {self.name!r} feature family need each unit's waveform, so its waveforms "
                "cannot be ignored; drop the ignore-waveforms option, or use a model that classifies from "
                "the discharge alone (the default model, family 'acg-isi-wave')."
            )

    def note_species(self, fs, species: str) -> None:
        """Record a source's species (its NWB Subject's; "" for none) in ``fs`` where the family's
        features keep source metadata (``fs.meta``, saved with them: ``acg-isi-wave``, whose models
        withhold the labels a species gave them too few training units of); other families keep none."""
        meta = getattr(fs, "meta", None)
        if species and isinstance(meta, dict):
            meta["species"] = species

    def drop_waveforms(self, fs):
        """``fs`` with every unit's waveform set aside (see ``without_waveforms``)."""
        self.check_ignore_waveforms()
        return _resolve(self.without_waveforms)(fs)


_FAMILIES: dict[str, FeatureFamily] = {}


def register_family(family: FeatureFamily, *, replace: bool = False) -> FeatureFamily:
    """Add ``family`` to the registry (``replace=True`` to redefine a name)."""
    if family.name in _FAMILIES and not replace:
        raise FeatureError(f"feature family {family.name!r} is already registered; pass replace=True.")
    _FAMILIES[family.name] = family
    return family


def get_family(name: str | None) -> FeatureFamily:
    """The family registered as ``name`` (None: :data:`DEFAULT_FAMILY`)."""
    name = DEFAULT_FAMILY if name is None else str(name)
    try:
        return _FAMILIES[name]
    except KeyError:
        raise FeatureError(
            f"unknown feature family {name!r}; known families: {sorted(_FAMILIES)}. The model or file may "
            "come from a newer nwb-celltype: upgrade the package."
        ) from None


def list_families() -> list[str]:
    """Names of the registered families."""
    return sorted(_FAMILIES)


def family_of(obj) -> FeatureFamily:
    """The family of a feature set, configuration or model bundle (anything with a ``family`` or
    ``feature_family`` attribute; C4 objects that predate families count as :data:`DEFAULT_FAMILY`)."""
    name = getattr(obj, "feature_family", None) or getattr(obj, "family", None)
    return get_family(name if isinstance(name, str) else None)


def read_family_name(path) -> str:
    """Family of a saved ``.npz`` features file (files without the key are :data:`DEFAULT_FAMILY`)."""
    from ._npz import read_npz

    d = read_npz(path, keys=("family",))
    return str(d["family"]) if "family" in d else DEFAULT_FAMILY


def load_features_any(path):
    """Read a features file of any registered family."""
    from pathlib import Path

    if not Path(path).exists():
        raise FeatureError(f"features file {path} does not exist; write it with `nwb-celltype features`.")
    return get_family(read_family_name(path)).load_features(path)


register_family(
    FeatureFamily(
        name="c4-3d",
        description="C4 (npyx 4.3.1): 3D autocorrelogram (10 x 101 log lags), 90-sample waveform, layer",
        config=".config:FeatureConfig",
        features=".config:FeatureSet",
        extract=".extract:extract_features",
        save=".extract:save_features",
        load=".extract:load_features",
        precision_choice=True,
    )
)
register_family(
    FeatureFamily(
        name="acg-isi-wave",
        description="ACG pair counts 1-100 ms + ISI histogram 0-100 ms + 75-sample aligned 30 kHz waveform; "
        "computable from spike trains and from per-unit feature tables",
        config=".discharge:DischargeConfig",
        features=".discharge:DischargeFeatureSet",
        extract=".discharge:extract_discharge_features",
        save=".discharge:save_discharge_features",
        load=".discharge:load_discharge_features",
        without_waveforms=".discharge:without_waveforms",
    )
)
