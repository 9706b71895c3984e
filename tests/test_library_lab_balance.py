"""The lab of an NWB file (``general/lab``) in the training set's references, so that the
lab-balanced loss groups the files of one lab as one lab; files without a lab stay one group each."""

from __future__ import annotations

import json
import logging

from nwb_celltype.library import create_manifest, load_training_set, mock_library_file


def _groups(ts) -> list[str]:
    """The loss's group of each file, as the model code forms it (``lab or source``)."""
    return [str(r.get("lab") or r.get("source")) for r in ts.references]


def _library(tmp_path):
    files = [
        mock_library_file(tmp_path / "a.nwb", seed=1, session_id="a", lab="Hull lab"),
        mock_library_file(tmp_path / "b.nwb", seed=2, session_id="b", lab="Hull lab"),
        mock_library_file(tmp_path / "c.nwb", seed=3, session_id="c", lab=None),
    ]
    return create_manifest(files, name="lib", root=tmp_path).save(tmp_path / "lib.toml")


def test_files_of_one_lab_are_one_group(tmp_path):
    """Before, every NWB file was a group of its own (its references had no lab)."""
    manifest = _library(tmp_path)
    ts = load_training_set(manifest, cache_dir=tmp_path / "cache")
    assert [r.get("lab") for r in ts.references] == ["Hull lab", "Hull lab", None]
    assert _groups(ts) == ["Hull lab", "Hull lab", ts.references[2]["source"]]
    assert ts.neuron_ids.tolist() == [""] * len(ts)  # NWB units: file + Units id
    # from the cache: the same
    again = load_training_set(manifest, cache_dir=tmp_path / "cache")
    assert [r.get("lab") for r in again.references] == ["Hull lab", "Hull lab", None]


def test_labels_cached_without_the_lab_get_it_from_the_file(tmp_path, caplog):
    manifest = _library(tmp_path)
    load_training_set(manifest, cache_dir=tmp_path / "cache")
    cached = sorted((tmp_path / "cache" / "features").glob("*-labels-*.json"))
    assert len(cached) == 3
    for p in cached:  # as written before the labels kept the lab
        p.write_text(json.dumps({k: v for k, v in json.loads(p.read_text()).items() if k != "lab"}))
    ts = load_training_set(manifest, cache_dir=tmp_path / "cache")
    assert [r.get("lab") for r in ts.references] == ["Hull lab", "Hull lab", None]
    assert all("lab" in json.loads(p.read_text()) for p in cached)  # written back
    # a file gone (its features cached): balanced on its own, with a warning
    for p in cached:
        p.write_text(json.dumps({k: v for k, v in json.loads(p.read_text()).items() if k != "lab"}))
    (tmp_path / "a.nwb").unlink()
    with caplog.at_level(logging.WARNING, logger="nwb_celltype.library.training"):
        ts = load_training_set(manifest, cache_dir=tmp_path / "cache")
    assert [r.get("lab") for r in ts.references] == [None, "Hull lab", None]
    assert "a.nwb: file missing, so its lab is unknown" in caplog.text
