"""Tests written for the survivors of mutation audit 19b (notes/audit19_mutation2.md). Every expected
value is built by hand from the documented rule, never computed by the code under test."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
from pynwb import NWBHDF5IO, NWBFile
from pynwb.misc import Units

from nwb_celltype.library import label_file
from nwb_celltype.nwb import read_annotations

EV = {"evidence_type": "optotagging", "evidence_text": "light", "labelled_by": "alice"}


def _file_with_float_cluster_ids(path):
    """Three units, NWB ids 0..2, whose sorter ids sit in a float ``cluster_id`` column (10.0, 11.0,
    12.0), as a pandas round trip of the sorter's table leaves them."""
    f = NWBFile("float ids", "float-ids", datetime(2024, 1, 1, tzinfo=timezone.utc))
    units = Units(name="units", description="sorting")
    units.add_column("cluster_id", "the sorter's id, stored as float")
    rng = np.random.default_rng(0)
    for k, cid in enumerate([10.0, 11.0, 12.0]):
        units.add_unit(id=k, spike_times=np.sort(rng.uniform(0, 10, 50)), cluster_id=cid)
    f.units = units
    with NWBHDF5IO(str(path), "w") as io:
        io.write(f)
    return path


def test_label_table_keys_match_a_float_cluster_id_column(tmp_path):
    """Mutant LT4 (library/label_tables.py `_key`: a float 11.0 kept as the text "11.0"): the label
    of cluster 11 must land on the unit whose cluster_id is 11.0, NWB id 1 (by construction)."""
    src = _file_with_float_cluster_ids(tmp_path / "in.nwb")
    (tmp_path / "labels.csv").write_text("cluster_id,label\n11,MLI\n")
    out = label_file(src, tmp_path / "labels.csv", out=tmp_path / "out.nwb", **EV)
    with NWBHDF5IO(str(out), "r") as io:
        recs = read_annotations(io.read())
    (rec,) = recs.values()
    assert rec.unit_ids.tolist() == [1]
    assert [str(x) for x in rec.labels] == ["MLI"]


# -- whole-dandiset runs: which assets, which derived names, what a rerun redoes or removes -------

from types import SimpleNamespace  # noqa: E402

import nwb_celltype.io  # noqa: E402
from nwb_celltype.batch._selection import _nwb_assets, _selection  # noqa: E402
from nwb_celltype.batch.state import STATE_DIRNAME, derived_asset_path, is_done, remove_outputs  # noqa: E402

LISTED = ["sub-1/a.nwb", "sub-2/b.nwb", "sub-3/c.nwb", "sub-[1]/d.nwb"]


def _selected(monkeypatch, spec_path, include):
    listing = SimpleNamespace(
        assets=[SimpleNamespace(path=p, asset_id=f"id-{i}") for i, p in enumerate(LISTED)], version="draft"
    )
    monkeypatch.setattr(nwb_celltype.io, "dandiset_listing", lambda *a, **k: listing, raising=False)
    assets, _, _ = _nwb_assets("000001", None, None, _selection(spec_path, include))
    return [a.path for a in assets]


def test_several_include_globs_select_the_union(monkeypatch):
    """Mutant SE3 (an asset had to match every --include glob, not any): two globs on two folders
    select the assets of both folders (and nothing else)."""
    assert _selected(monkeypatch, None, ["sub-1/*", "sub-2/*"]) == ["sub-1/a.nwb", "sub-2/b.nwb"]


def test_a_folder_named_in_the_reference_is_matched_literally(monkeypatch):
    """Mutant SE2 (the folder of ``000001@draft/sub-[1]/`` used as a glob): ``[1]`` is part of the
    folder's name, so only sub-[1]/d.nwb is selected, not sub-1/a.nwb."""
    assert _selected(monkeypatch, "sub-[1]/", None) == ["sub-[1]/d.nwb"]


def test_of_several_desc_entities_the_last_is_extended():
    """Mutant ST5 (the first desc entity extended): the docstring says "of several, the last"."""
    assert (
        derived_asset_path("sub-1/sub-1_desc-a_desc-b_ecephys.nwb")
        == "sub-1/sub-1_desc-a_desc-bCelltype_ecephys.nwb"
    )


def test_a_record_of_another_derived_name_is_not_done(tmp_path):
    """Mutant ST3 (the record's output name not compared): an asset whose record names a file of an
    earlier naming is annotated again, even though that file is intact."""
    (tmp_path / "old.nwb").write_bytes(b"x" * 5)
    rec = {
        "path": "sub-1/a.nwb", "status": "done", "asset_id": "A", "version": "draft", "model_sha256": "m",
        "threshold": 2.0, "ignore_waveforms": False, "any_region": False,
        "output": "old.nwb", "output_size": 5,
    }  # fmt: skip
    kw = {"asset_id": "A", "version": "draft", "model_sha256": "m"}
    assert is_done(rec, tmp_path, **kw, output="old.nwb")  # the same name: done
    assert not is_done(rec, tmp_path, **kw, output="sub-1/a_desc-celltype.nwb")


def test_superseded_outputs_never_reach_into_the_state_folder(tmp_path):
    """Mutant ST7 (the state-folder guard dropped): a record naming a .nwb file inside
    .nwb-celltype/ (hand-edited) must not make the run delete it."""
    inside = tmp_path / STATE_DIRNAME / "x.nwb"
    inside.parent.mkdir()
    inside.write_bytes(b"keep")
    mine = tmp_path / "sub-1" / "a_desc-celltype.nwb"
    mine.parent.mkdir()
    mine.write_bytes(b"old")
    removed = remove_outputs(tmp_path, [f"{STATE_DIRNAME}/x.nwb", "sub-1/a_desc-celltype.nwb"])
    assert removed == ["sub-1/a_desc-celltype.nwb"]
    assert inside.read_bytes() == b"keep" and not mine.exists()


def test_a_dangling_symlink_at_the_output_is_not_replaced_without_overwrite(tmp_path):
    """Mutant OP4 (only ``exists()`` asked: False for a dangling link): the user's link at --out is
    a path that exists, so it is refused without --overwrite like any other."""
    import pytest

    from nwb_celltype._output_paths import check_output_path
    from nwb_celltype.errors import OutputError

    link = tmp_path / "out.tsv"
    link.symlink_to(tmp_path / "nowhere.tsv")
    with pytest.raises(OutputError, match="exists"):
        check_output_path(link, overwrite=False)
