"""A second, distinct model bundle for tests of several models annotating one file."""

from __future__ import annotations

import copy
import os


def renamed_bundle(bundle, name: str, path: str | os.PathLike):
    """``bundle``'s weights under another name, saved to ``path`` and loaded back: a different
    model as far as files are concerned (its sha256, hence its table name, changes)."""
    from ..model import ModelBundle, load_bundle, save_bundle

    card = copy.deepcopy(bundle.card)
    card.pop("sha256", None)
    card["name"] = name
    other = ModelBundle(
        ensemble=bundle.ensemble, card=card, temperature=bundle.temperature, laplace=bundle.laplace
    )
    return load_bundle(save_bundle(other, path))
