"""A model card names the manifest its training data came from (file name, sha256 of its bytes,
size) without the build machine's paths, and a user holding a manifest can check it is that one.

Before: ``training_data`` listed each source relative to a manifest the card did not name, and a
source given by an absolute path went into the shipped card as that path."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from types import SimpleNamespace

import pytest

from nwb_celltype.errors import ModelError, ModelMismatchError
from nwb_celltype.model import TrainConfig, load_bundle, save_bundle, train_model
from nwb_celltype.model._synthetic import make_synthetic_training_set
from nwb_celltype.model.training_inputs import identify_manifest, verify_training_manifest

TINY = TrainConfig(vae_epochs=1, head_epochs=2, folds=3, repeats=1, vae_batch_size=32)
MANIFEST = """format_version = 1
name = "lab"
description = ""

[[files]]
path = "rec/a.nwb"
sha256 = "{a}"

[[files]]
path = "{b_abs}"
sha256 = "{b}"
"""

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A bundle saved from a training set that records its manifest (``lib.toml``: one entry by a
    path relative to it, one by an absolute path); -> (tmp folder, manifest path, card text)."""
    d = tmp_path_factory.mktemp("build")
    b_abs = d / "elsewhere" / "b.nwb"
    shas = {"a": "a" * 64, "b": "b" * 64}
    manifest = d / "lib.toml"
    manifest.write_text(MANIFEST.format(b_abs=b_abs, **shas))
    ts = make_synthetic_training_set({"GoC": 6, "MLI": 6, "PkC_ss": 6}, n_unlabelled=0, seed=2)
    refs = [  # as load_training_set writes them: the entry's path as the manifest lists it
        {"source": "rec/a.nwb", "sha256": shas["a"], "library": "lab", "n_units": 9},
        {"source": str(b_abs), "sha256": shas["b"], "library": "lab", "n_units": 9},
    ]
    ts = SimpleNamespace(
        features=ts.features, labels=ts.labels, references=refs, manifest=identify_manifest(manifest)
    )
    path = save_bundle(train_model(ts, config=TINY, seed=0, name="m"), d / "model")
    return d, manifest, (path / "model_card.json").read_text()


def test_the_card_names_the_manifest_without_its_location(trained):
    d, manifest, text = trained
    card = json.loads(text)
    record = card["training_manifest"]
    assert record["file_name"] == "lib.toml"
    assert record["sha256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert record["size_bytes"] == manifest.stat().st_size
    assert "sha256sum" in record["verify"] and "relative to its folder" in record["sources"]
    # the sources: as the manifest lists them, an absolute one cut to its file name
    assert [r["source"] for r in card["training_data"]] == ["rec/a.nwb", "b.nwb"]
    assert [r["sha256"] for r in card["training_data"]] == ["a" * 64, "b" * 64]
    # nothing of the build machine's folders anywhere in the card
    for folder in {str(d), os.path.realpath(d), str(d.parent)}:
        assert folder not in text, folder


def test_the_documented_verification(trained, tmp_path):
    d, manifest, _ = trained
    bundle = load_bundle(d / "model")
    # without nwb-celltype: the file's sha256 (what `sha256sum lib.toml` prints) is the card's
    assert hashlib.sha256(manifest.read_bytes()).hexdigest() == bundle.card["training_manifest"]["sha256"]
    # with it: the same manifest anywhere, under any name, passes; another version of it does not
    moved = shutil.copy(manifest, tmp_path / "renamed.toml")
    assert verify_training_manifest(bundle, moved)["file_name"] == "lib.toml"
    assert (
        verify_training_manifest(bundle.card, manifest)["sha256"]
        == bundle.card["training_manifest"]["sha256"]
    )
    edited = tmp_path / "lib.toml"
    edited.write_text(manifest.read_text().replace('description = ""', 'description = "v2"'))
    with pytest.raises(ModelMismatchError, match=r"is not the manifest model m was trained from \(lib.toml"):
        verify_training_manifest(bundle, edited)
    without = {k: v for k, v in bundle.card.items() if k != "training_manifest"}
    with pytest.raises(ModelError, match="records no training manifest"):
        verify_training_manifest(without, manifest)
