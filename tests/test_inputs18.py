"""Audit 18 fixes about inputs: `predict --out`, `export --tsv` / `--phy` and `export_phy` never write
over what they read (the input itself, through a symlink or a hard link, or a file in an input
folder), even with --overwrite; the bridges read an h5py File (an h5py Group is a Mapping, and was
taken for a dict of records) and pick, for an h5py File or a pynwb NWBFile, the table a path picks;
wrong objects given to set_pynapple_metadata / set_spikeinterface_properties get an
InvalidValueError naming what was expected and what was given."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from nwb_celltype.bridges import (
    annotations_dataframe,
    set_pynapple_metadata,
    set_spikeinterface_properties,
)
from nwb_celltype.cli import main
from nwb_celltype.errors import InvalidValueError, OutputError
from nwb_celltype.phy import export_phy

GROUND_TRUTH = "ground_truth"


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _folder_digest(folder: Path) -> dict[str, str]:
    return {p.name: _digest(p) for p in sorted(Path(folder).iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A simulated recording (with a ground-truth table) annotated by the default model, its
    features file and a table folder of those features, all made with the real CLI."""
    d = tmp_path_factory.mktemp("in18")
    src = d / "s.nwb"
    res = _run("simulate", src, "--units", 10, "--duration", 10)
    assert res.exit_code == 0, res.output
    annotated = d / "s.celltype.nwb"
    res = _run("annotate", src, "--out", annotated, "-q")
    assert res.exit_code == 0, res.output
    feats = d / "f.npz"
    res = _run("features", src, "--out", feats, "-q")
    assert res.exit_code == 0, res.output
    from nwb_celltype.features.families import load_features_any
    from nwb_celltype.library.tables import write_feature_tables

    tables = write_feature_tables(d / "tables", load_features_any(feats), {"species": "mouse"})
    return {"annotated": annotated, "features": feats, "tables": tables}


@pytest.fixture
def annotated(made, tmp_path):
    """A copy of the annotated file in its own folder (the tests link to it and try to replace it)."""
    path = tmp_path / "a.nwb"
    shutil.copy2(made["annotated"], path)
    return path


# --------------------------------------------------------------------------------------------------
# 1. outputs that are an input


@pytest.mark.parametrize("how", ["same", "spelled", "symlink", "hardlink"])
@pytest.mark.parametrize("overwrite", [True, False])
def test_export_tsv_refuses_its_input(annotated, how, overwrite, monkeypatch):
    monkeypatch.chdir(annotated.parent)
    out = {
        "same": annotated,
        "spelled": Path("sub/../a.nwb"),
        "symlink": annotated.parent / "link.tsv",
        "hardlink": annotated.parent / "hard.tsv",
    }[how]
    (annotated.parent / "sub").mkdir()
    if how == "symlink":
        out.symlink_to(annotated.name)
    if how == "hardlink":
        os.link(annotated, out)
    before = _digest(annotated)
    res = _run("export", annotated, "--tsv", out, *(["--overwrite"] if overwrite else []))
    assert res.exit_code != 0
    assert "is the input" in res.output and "itself" in res.output, res.output
    assert "--overwrite" not in res.output  # no advice that would destroy it
    assert len(res.output.strip().splitlines()) == 1
    assert _digest(annotated) == before
    with h5py.File(annotated, "r") as f:  # still the annotated NWB file
        assert "processing" in f


def test_export_phy_refuses_its_input(annotated):
    phy = annotated.parent / "phy"
    phy.mkdir()
    (phy / "cluster_celltype.tsv").symlink_to(annotated)
    before = _digest(annotated)
    res = _run("export", annotated, "--phy", phy, "--overwrite")
    assert res.exit_code != 0 and "is the input" in res.output, res.output
    # with --tsv too: nothing written (both outputs checked before either is written)
    res = _run("export", annotated, "--phy", phy, "--tsv", annotated.parent / "t.tsv", "--overwrite")
    assert res.exit_code != 0 and "is the input" in res.output, res.output
    assert not (annotated.parent / "t.tsv").exists()
    # the Python API: a .tsv path that is a link to the annotated file
    link = annotated.parent / "link.tsv"
    link.symlink_to(annotated)
    with pytest.raises(OutputError, match="is the input"):
        export_phy(annotated, link, overwrite=True)
    assert _digest(annotated) == before
    # other outputs still work
    res = _run("export", annotated, "--tsv", annotated.parent / "t.tsv")
    assert res.exit_code == 0, res.output
    assert export_phy(annotated, annotated.parent / "phy.tsv").is_file()


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
def test_predict_refuses_its_features_file(made, tmp_path, how):
    feats = tmp_path / "f.npz"
    shutil.copy2(made["features"], feats)
    out = {"same": feats, "symlink": tmp_path / "p.tsv", "hardlink": tmp_path / "p.tsv"}[how]
    if how == "symlink":
        out.symlink_to(feats)
    if how == "hardlink":
        os.link(feats, out)
    before = _digest(feats)
    res = _run("predict", feats, "--out", out, "--overwrite", "-q")
    assert res.exit_code != 0
    assert "is the input" in res.output and "itself" in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1
    assert _digest(feats) == before


@pytest.mark.parametrize("where", ["table", "link_to_table", "link_target"])
def test_predict_refuses_a_file_of_its_table_folder(made, tmp_path, where):
    tables = tmp_path / "h"
    shutil.copytree(made["tables"], tables)
    outside = tmp_path / "outside.csv"
    if where == "link_target":  # the folder reads acg.csv through a link: its target is an input too
        shutil.move(tables / "acg.csv", outside)
        (tables / "acg.csv").symlink_to(outside)
    before = _folder_digest(tables)
    outside_before = _digest(outside) if outside.exists() else None
    out = {
        "table": tables / "labels.csv",
        "link_to_table": tmp_path / "p.tsv",
        "link_target": outside,
    }[where]
    if where == "link_to_table":
        out.symlink_to(tables / "acg.csv")
    res = _run("predict", tables, "--out", out, "--overwrite", "-q")
    assert res.exit_code != 0
    assert "input folder" in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1
    assert _folder_digest(tables) == before
    if outside_before is not None:
        assert _digest(outside) == outside_before
    res = _run("predict", tables, "--out", tmp_path / "ok.tsv", "-q")  # the folder still reads
    assert res.exit_code == 0, res.output


def test_predict_writes_a_new_file_inside_its_table_folder(made, tmp_path):
    """A file beside the tables is none the table reader opens: it is written, and written again with
    --overwrite (asked for it without); the tables are unchanged."""
    tables = tmp_path / "h"
    shutil.copytree(made["tables"], tables)
    out = tables / "predictions.tsv"
    before = _folder_digest(tables)
    res = _run("predict", tables, "--out", out, "-q")
    assert res.exit_code == 0, res.output
    first = out.read_text()
    res = _run("predict", tables, "--out", out, "-q")  # the usual answer, not "a file of the input"
    assert res.exit_code == 1 and "exists; pass --overwrite" in res.output, res.output
    assert "input folder" not in res.output
    out.write_text("older\n")
    res = _run("predict", tables, "--out", out, "--overwrite", "-q")  # the same command again
    assert res.exit_code == 0, res.output
    assert out.read_text() == first
    assert {k: v for k, v in _folder_digest(tables).items() if k != out.name} == before


def test_predict_refuses_every_file_the_table_reader_opens(made, tmp_path):
    """units.csv and the others are refused in a table folder even where they do not exist yet (the
    reader would read them next time); a file of another name is not."""
    from nwb_celltype._output_paths import check_not_input
    from nwb_celltype.library.tables import TABLE_FILES

    tables = tmp_path / "h"
    shutil.copytree(made["tables"], tables)
    assert not (tables / "units.csv").exists()
    for name in TABLE_FILES:
        with pytest.raises(OutputError, match="lies in the input folder"):
            check_not_input(tables / name, (tables,))
    (tables / "notes.txt").write_text("mine")
    check_not_input(tables / "notes.txt", (tables,))


def test_a_hard_link_of_a_folder_file_is_no_input(made, tmp_path):
    """Outputs are written by rename: a hard link of a file of an input folder is replaced as a name,
    and the folder's file keeps its content. Only a symlink in the folder makes a file an input."""
    tables = tmp_path / "h"
    shutil.copytree(made["tables"], tables)
    before = _folder_digest(tables)
    out = tmp_path / "p.tsv"
    os.link(tables / "acg.csv", out)
    res = _run("predict", tables, "--out", out, "--overwrite", "-q")
    assert res.exit_code == 0, res.output
    assert _folder_digest(tables) == before and out.read_text().startswith("# model:")


def _model_folder(tmp_path: Path, n_files: int = 0) -> Path:
    from nwb_celltype.model.shipped import resolve_model

    model = tmp_path / "model"
    shutil.copytree(resolve_model(None)[0].path, model)
    for i in range(n_files):
        (model / f"extra{i}.bin").write_bytes(b"x")
    return model


def test_a_model_folder_refuses_its_files_and_its_links_targets_only(made, tmp_path):
    from nwb_celltype._output_paths import check_not_input

    model = _model_folder(tmp_path)
    sub = model / "sub" / "deeper"
    sub.mkdir(parents=True)
    linked, elsewhere = tmp_path / "linked.json", tmp_path / "elsewhere"
    linked.write_text("{}")
    elsewhere.mkdir()
    (elsewhere / "x.tsv").write_text("x")
    (sub / "card.json").symlink_to(linked)  # read through a link in a sub-folder
    (model / "ext").symlink_to(elsewhere)  # a linked folder: its files are read too
    # read as a whole: any path in it, new or not (a second run is refused as the first), and the
    # targets of its links
    # (also a new file behind a link: a second run must be refused as the first one)
    for out in (
        model / "model_card.json",
        model / "new.tsv",
        linked,
        elsewhere / "x.tsv",
        elsewhere / "new.tsv",
    ):
        with pytest.raises(OutputError, match="lies in the input folder"):
            check_not_input(out, (model,))
    hard = tmp_path / "hard.json"
    os.link(model / "model_card.json", hard)
    for out in (hard, tmp_path / "other.tsv"):
        check_not_input(out, (model,))


def test_check_not_input_stats_no_file_of_a_folder(made, tmp_path, monkeypatch):
    """Whether an existing output is a file of an input folder is told from the folder's entries (its
    symbolic links), without a stat of every file in it (NFS, zarr folders of many files)."""
    from nwb_celltype._output_paths import check_not_input

    model = _model_folder(tmp_path, n_files=50)
    out = tmp_path / "p.tsv"
    out.write_text("older")
    stats = []
    real_stat = os.stat

    def counting_stat(path, *args, **kwargs):
        if Path(os.fsdecode(path)).name.startswith("extra"):
            stats.append(path)
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", counting_stat)
    check_not_input(out, (model,))
    assert stats == []


def test_predict_refuses_a_path_in_its_model_folder_named_by_its_card(made, tmp_path):
    """``--model FOLDER/model_card.json`` (a bundle named by its card) let an output into the folder."""
    from nwb_celltype.model.shipped import resolve_model

    model = tmp_path / "model"
    shutil.copytree(resolve_model(None)[0].path, model)
    before = _folder_digest(model)
    res = _run(
        "predict", made["features"], "--model", model / "model_card.json", "--out", model / "inside.tsv"
    )
    assert res.exit_code != 0 and "input folder" in res.output, res.output
    assert _folder_digest(model) == before


def test_predict_refuses_a_file_in_its_model_folder(made, tmp_path):
    from nwb_celltype.model.shipped import resolve_model

    model = tmp_path / "model"
    shutil.copytree(resolve_model(None)[0].path, model)
    before = _folder_digest(model)
    res = _run(
        "predict", made["features"], "--model", model, "--out", model / "model_card.json", "--overwrite"
    )
    assert res.exit_code != 0 and "input folder" in res.output, res.output
    assert _folder_digest(model) == before


# --------------------------------------------------------------------------------------------------
# 2. and 3. an h5py File and a pynwb NWBFile pick what a path picks


def _same_frame(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a, b)
    assert a.attrs["table"] == b.attrs["table"]
    assert a.attrs["units_table"] == b.attrs["units_table"]


def test_annotations_dataframe_of_an_h5py_file(made):
    path = made["annotated"]
    by_path = annotations_dataframe(path)
    truth = annotations_dataframe(path, table=GROUND_TRUTH)
    assert by_path.attrs["table"] != GROUND_TRUTH  # two tables: the path picks the prediction
    with h5py.File(path, "r") as f:
        _same_frame(annotations_dataframe(f), by_path)
        _same_frame(annotations_dataframe(f, table=by_path.attrs["table"]), by_path)
        _same_frame(annotations_dataframe(f, table=GROUND_TRUTH), truth)
        with pytest.raises(InvalidValueError, match="no annotation table 'nope'; there are"):
            annotations_dataframe(f, table="nope")


def test_export_phy_of_an_h5py_file(made, tmp_path):
    with h5py.File(made["annotated"], "r") as f:
        written = export_phy(f, tmp_path)
    assert written.read_text() == export_phy(made["annotated"], tmp_path / "b.tsv").read_text()


def test_annotations_dataframe_of_a_pynwb_file_picks_as_a_path(made):
    import pynwb

    path = made["annotated"]
    by_path = annotations_dataframe(path)
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        nwbfile = io.read()
        _same_frame(annotations_dataframe(nwbfile), by_path)  # no table= needed, the same pick
        _same_frame(
            annotations_dataframe(nwbfile, table=GROUND_TRUTH),
            annotations_dataframe(path, table=GROUND_TRUTH),
        )


def test_set_pynapple_metadata_from_an_h5py_file(made):
    nap = pytest.importorskip("pynapple")
    import pynwb

    with pynwb.NWBHDF5IO(str(made["annotated"]), "r") as io:
        units = io.read().units
        trains = {
            int(i): nap.Ts(np.asarray(t)) for i, t in zip(units.id[:], units["spike_times"][:], strict=True)
        }
    group = nap.TsGroup(trains)
    with h5py.File(made["annotated"], "r") as f:
        set_pynapple_metadata(group, f)
    want = annotations_dataframe(made["annotated"])
    assert [str(x) for x in group.cell_type] == [str(want.loc[i, "cell_type"]) for i in group.index]


# --------------------------------------------------------------------------------------------------
# 4. wrong objects given to the set_* helpers


@pytest.mark.parametrize("obj, given", [([1, 2], "list"), (None, "None"), ("x.nwb", "str 'x.nwb'")])
def test_set_pynapple_metadata_wrong_object(made, obj, given):
    with pytest.raises(InvalidValueError, match=f"expected a pynapple TsGroup, got {given}"):
        set_pynapple_metadata(obj, made["annotated"])


def test_set_pynapple_metadata_dataframe(made):
    with pytest.raises(InvalidValueError, match="expected a pynapple TsGroup, got DataFrame"):
        set_pynapple_metadata(pd.DataFrame({"a": [1]}), made["annotated"])


@pytest.mark.parametrize("obj, given", [("x.nwb", "str 'x.nwb'"), ([1, 2], "list"), (None, "None")])
def test_set_spikeinterface_properties_wrong_object(made, obj, given):
    with pytest.raises(
        InvalidValueError, match=f"expected a SpikeInterface sorting \\(a BaseSorting\\), got {given}"
    ):
        set_spikeinterface_properties(obj, made["annotated"])


def test_set_spikeinterface_properties_analyzer_hint(made):
    class Analyzer:  # what a SortingAnalyzer looks like to the helper: a .sorting, no set_property
        sorting = None

    with pytest.raises(InvalidValueError, match=r"got Analyzer; for a sorting analyzer pass its sorting"):
        set_spikeinterface_properties(Analyzer(), made["annotated"])
