"""Ground-truth libraries: label tables, labelling NWB files safely, manifests, merge, validate,
stats, and export to a dandiset that passes dandi's own offline validation."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from nwb_celltype.errors import LibraryError, OutputError
from nwb_celltype.library import (
    create_manifest,
    export_dandiset,
    label_file,
    library_stats,
    load_manifest,
    merge_manifests,
    mock_library_file,
    read_ground_truth,
    read_label_table,
    validate_dandiset,
    validate_library,
)
from nwb_celltype.library.manifest import LibraryEntry


def _gt(path, **kw):
    from pynwb import NWBHDF5IO

    import nwb_celltype.nwb  # noqa: F401

    with NWBHDF5IO(str(path), "r") as io:
        return {g.table: g for g in read_ground_truth(io.read(), **kw)}


def _csv(path, text):
    path.write_text(text)
    return path


@pytest.fixture
def nwb_file(tmp_path):
    return mock_library_file(
        tmp_path / "rec.nwb", n_units=6, extra_columns={"cell_type": ["PC", "CS", "", "MLI", "GoC", "PC"]}
    )


# -- label tables ------------------------------------------------------------------------------


def test_read_label_table_phy_tsv_with_mapping_and_row_evidence(tmp_path):
    p = _csv(
        tmp_path / "cluster_group.tsv",
        "cluster_id\tgroup\tevidence_type\tevidence\n4\tPC\toptotagging\tlight response 3 ms\n"
        "7\tMLI\t\t\n7\tMLI\t\t\n9\tnoise\t\t\n",
    )
    t = read_label_table(p, mapping=["PC=PkC_ss", "noise="], evidence_type="expert", labelled_by="ann")
    assert t.unit_ids.tolist() == [4, 7]  # identical duplicate collapsed, "noise" mapped to unlabelled
    assert t.labels.tolist() == ["PkC_ss", "MLI"]
    assert t.evidence["evidence_type"].tolist() == ["optotagging", "expert"]
    assert t.evidence["evidence_text"].tolist() == ["light response 3 ms", ""]
    assert t.evidence["labelled_by"].tolist() == ["ann", "ann"]
    assert t.evidence["labelled_at"][0].endswith("+00:00")


@pytest.mark.parametrize(
    ("text", "kwargs", "match"),
    [
        ("unit_id,label\n1,PkC_ss\n2,Purkinje\n", {}, r"unknown labels in rows t\.csv:3 \('Purkinje'\)"),
        ("unit_id,label\n1,PkC_ss\n1,MLI\n", {}, r"unit 1: t\.csv:2 says 'PkC_ss', t\.csv:3 says 'MLI'"),
        ("unit_id,label\nx,PkC_ss\n", {}, r"unit ids in rows t\.csv:2 \('x'\) are not integers"),
        ("unit,cls\n1,MLI\n", {}, r"no label column"),
        (
            "unit_id,label\n1,MLI\n",
            {"evidence_type": None},
            r"evidence type missing or unknown in rows t\.csv:2",
        ),
        ("unit_id,label\n1,MLI\n", {"evidence_type": "vibes"}, r"'vibes'"),
        ("unit_id,label\n1,MLI\n", {"labelled_by": None}, r"no labeller for rows t\.csv:2"),
        ("unit_id,label\n1,MLI\n", {"mapping": ["MLI"]}, r"has no '='"),
        ("unit_id,label\n1,MLI\n", {"mapping": ["MLI=Basket"]}, r"not in the vocabulary"),
        # dates must be ISO 8601: the option's value once, a column's values by row
        ("unit_id,label\n1,MLI\n", {"labelled_at": "yesterday"}, r"--labelled-at 'yesterday' .*ISO 8601"),
        ("unit_id,label\n1,MLI\n", {"labelled_at": "2024-13-45"}, r"--labelled-at '2024-13-45' .*ISO 8601"),
        (
            "unit_id,label,date\n1,MLI,2024-05-01\n2,MLI,2024-13-45\n",
            {},
            r"labelled_at values in rows t\.csv:3 \('2024-13-45'\) are not ISO 8601",
        ),
    ],
)
def test_read_label_table_errors_name_rows(tmp_path, text, kwargs, match):
    p = _csv(tmp_path / "t.csv", text)
    kw = {"evidence_type": "optotagging", "labelled_by": "me", **kwargs}
    with pytest.raises(LibraryError, match=match):
        read_label_table(p, **kw)


def test_read_label_table_dates_are_iso_8601_and_normalised(tmp_path):
    p = _csv(tmp_path / "t.csv", "unit_id,label,labelled_at\n1,MLI,2024-05-01 10:00\n2,GoC,\n")
    t = read_label_table(p, evidence_type="expert", labelled_by="me", labelled_at="2024-05-02")
    assert t.evidence["labelled_at"].tolist() == ["2024-05-01T10:00:00", "2024-05-02"]


def test_bad_evidence_type_option_is_reported_once_not_per_row(tmp_path):
    from nwb_celltype.cli import main

    rows = "".join(f"{i},MLI\n" for i in range(12))
    p = _csv(tmp_path / "labels0.csv", "unit_id,label\n" + rows)
    with pytest.raises(LibraryError) as err:
        read_label_table(p, evidence_type="optogenetics", labelled_by="me")
    msg = str(err.value)
    assert msg.count("'optogenetics'") == 1 and "--evidence-type 'optogenetics'" in msg
    assert "labels0.csv:" not in msg and "more" not in msg
    # a row's own bad value is still named with its row, next to the option's
    p2 = _csv(tmp_path / "l2.csv", "unit_id,label,evidence_type\n0,MLI,vibes\n1,MLI,\n")
    with pytest.raises(LibraryError) as err:
        read_label_table(p2, evidence_type="optogenetics", labelled_by="me")
    assert "l2.csv:2 ('vibes')" in str(err.value) and "l2.csv:3" not in str(err.value)
    assert str(err.value).count("'optogenetics'") == 1
    src = mock_library_file(tmp_path / "rec.nwb", n_units=12)
    res = CliRunner().invoke(
        main,
        ["library", "label", str(src), "--labels", str(p), "--evidence-type", "optogenetics"]
        + ["--labelled-by", "a", "--out", str(tmp_path / "o.nwb")],
    )
    assert res.exit_code == 1 and res.output.count("optogenetics") == 1, res.output
    assert not (tmp_path / "o.nwb").exists()


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("tab.csv", "unit_id\tlabel\n1\tMLI\n", r"tab-separated but its suffix \.csv says comma.*tab\.tsv"),
        ("semicolon.csv", "unit_id;label\n1;MLI\n", r"semicolon-separated but its suffix \.csv"),
        ("phy.tsv", "cluster_id,group\n1,MLI\n", r"comma-separated but its suffix \.tsv.*phy\.csv"),
    ],
)
def test_wrong_delimiter_is_named_not_blamed_on_the_column(tmp_path, name, text, match):
    p = _csv(tmp_path / name, text)
    with pytest.raises(LibraryError, match=match) as err:
        read_label_table(p, evidence_type="expert", labelled_by="me")
    assert "no unit id column" not in str(err.value)


def test_wrong_delimiter_with_another_suffix_is_sniffed(tmp_path):
    p = _csv(tmp_path / "semicolon.txt", "unit_id;label\n1;MLI\n")
    assert read_label_table(p, evidence_type="expert", labelled_by="me").unit_ids.tolist() == [1]


# -- labelling files ---------------------------------------------------------------------------


def test_label_file_copy_then_in_place_second_table(nwb_file, tmp_path):
    p = _csv(tmp_path / "l.csv", "unit_id,label,evidence\n0,PkC_ss,opto\n3,MLI,opto\n")
    before = nwb_file.read_bytes()
    out = label_file(
        nwb_file, p, evidence_type="optotagging", labelled_by="alice", labelled_at="2024-05-01T10:00:00+00:00"
    )
    assert out == tmp_path / "rec.labelled.nwb"
    assert nwb_file.read_bytes() == before  # the source is untouched by default
    gt = _gt(out)["ground_truth"]
    assert gt.unit_indices.tolist() == [0, 3]
    assert gt.labels.tolist() == ["PkC_ss", "MLI"]
    assert gt.evidence["labelled_by"].tolist() == ["alice", "alice"]
    assert gt.evidence["labelled_at"].tolist() == ["2024-05-01T10:00:00+00:00"] * 2
    # in place, a NEW table (tables on disk cannot take add_row) from the Units column with a mapping
    label_file(
        out,
        column="cell_type",
        mapping=["PC=PkC_ss", "CS=PkC_cs"],
        in_place=True,
        name="expert",
        evidence_type="expert",
        labelled_by="bob",
        kind="expert",
    )
    tables = _gt(out, kinds=("ground_truth", "expert"))
    assert sorted(tables) == ["expert", "ground_truth"]
    assert tables["expert"].labels.tolist() == ["PkC_ss", "PkC_cs", "MLI", "GoC", "PkC_ss"]
    assert tables["expert"].kind == "expert"
    with pytest.raises(LibraryError, match="already has an annotation table 'expert'"):
        label_file(
            out,
            column="cell_type",
            mapping=["PC=PkC_ss", "CS=PkC_cs"],
            in_place=True,
            name="expert",
            evidence_type="expert",
            labelled_by="bob",
        )


def test_label_file_unknown_units_fail_without_leaving_output(nwb_file, tmp_path):
    p = _csv(tmp_path / "l.csv", "unit_id,label\n0,PkC_ss\n42,MLI\n43,GoC\n")
    out = tmp_path / "o.nwb"
    with pytest.raises(
        LibraryError, match=r"unknown units in rows l\.csv:3 \(unit 42\), l\.csv:4 \(unit 43\)"
    ):
        label_file(nwb_file, p, out=out, evidence_type="expert", labelled_by="me")
    assert not out.exists()
    assert [f.name for f in tmp_path.iterdir() if f.name.startswith(".")] == []  # no temp left behind


def test_label_file_output_rules(nwb_file, tmp_path):
    p = _csv(tmp_path / "l.csv", "unit_id,label\n0,PkC_ss\n")
    kw = {"evidence_type": "expert", "labelled_by": "me"}
    with pytest.raises(OutputError, match="is the source itself"):
        label_file(nwb_file, p, out=nwb_file, **kw)
    with pytest.raises(LibraryError, match="exclude each other"):
        label_file(nwb_file, p, out=tmp_path / "x.nwb", in_place=True, **kw)
    with pytest.raises(LibraryError, match="exactly one of"):
        label_file(nwb_file, **kw)
    label_file(nwb_file, p, out=tmp_path / "x.nwb", **kw)
    with pytest.raises(OutputError, match="exists"):
        label_file(nwb_file, p, out=tmp_path / "x.nwb", **kw)
    with pytest.raises(LibraryError, match="Units has no column 'kind'"):
        label_file(nwb_file, column="kind", out=tmp_path / "y.nwb", **kw)


# NeuroConv / SpikeInterface exports: NWB ids 0..19, the sorter's ids kept in a cluster_id column
PHY_CLUSTERS = [0, 2, 3, 5, 8, 9, 11, 12, 14, 15, 17, 20, 21, 23, 26, 27, 29, 30, 32, 33]


def test_label_file_cluster_ids_map_through_the_units_cluster_id_column(tmp_path):
    from nwb_celltype.cli import main

    src = mock_library_file(tmp_path / "phy_like.nwb", n_units=20, extra_columns={"cluster_id": PHY_CLUSTERS})
    p = _csv(tmp_path / "phy_labels.csv", "cluster_id,group\n2,GoC\n5,PkC_cs\n8,PkC_ss\n")
    kw = {"evidence_type": "expert", "labelled_by": "a"}
    out = label_file(src, p, out=tmp_path / "out.nwb", **kw)
    gt = _gt(out)["ground_truth"]
    assert gt.unit_indices.tolist() == [1, 3, 4]  # the rows whose cluster_id is 2, 5, 8
    assert gt.labels.tolist() == ["GoC", "PkC_cs", "PkC_ss"]
    # --id-column id: the keys are NWB ids after all
    out = label_file(src, p, out=tmp_path / "by_id.nwb", id_column="id", **kw)
    assert _gt(out)["ground_truth"].unit_indices.tolist() == [2, 5, 8]
    # any Units column, named; keys missing from it are an error naming the rows
    p2 = _csv(tmp_path / "u.csv", "unit,label\n33,MLI\n7,GoC\n")
    with pytest.raises(LibraryError, match=r"unknown units in rows u\.csv:3 \(cluster_id 7\)"):
        label_file(src, p2, out=tmp_path / "u.nwb", id_column="cluster_id", **kw)
    assert not (tmp_path / "u.nwb").exists()
    with pytest.raises(LibraryError, match=r"Units has no column 'sorter_id' \(--id-column\)"):
        label_file(src, p2, out=tmp_path / "u.nwb", id_column="sorter_id", **kw)
    # the CLI option
    res = CliRunner().invoke(
        main,
        ["library", "label", str(src), "--labels", str(p2), "--id-column", "cluster_id"]
        + ["--evidence-type", "expert", "--labelled-by", "a", "--out", str(tmp_path / "cli.nwb")],
    )
    assert res.exit_code == 1 and "u.csv:3 (cluster_id 7)" in res.output, res.output
    res = CliRunner().invoke(
        main,
        ["library", "label", str(src), "--labels", str(p), "--evidence-type", "expert"]
        + ["--labelled-by", "a", "--out", str(tmp_path / "cli.nwb")],
    )
    assert res.exit_code == 0, res.output
    assert _gt(tmp_path / "cli.nwb")["ground_truth"].unit_indices.tolist() == [1, 3, 4]


def test_label_file_ambiguous_cluster_ids_and_unit_names(tmp_path):
    # two sortings in one Units table: cluster ids repeat
    src = mock_library_file(
        tmp_path / "two.nwb",
        n_units=6,
        extra_columns={"cluster_id": [0, 1, 2, 0, 1, 7], "unit_name": ["a0", "a1", "a2", "b0", "b1", "b7"]},
    )
    kw = {"evidence_type": "expert", "labelled_by": "a"}
    p = _csv(tmp_path / "l.csv", "cluster_id,label\n7,MLI\n1,GoC\n")
    with pytest.raises(
        LibraryError, match=r"ambiguous units in rows l\.csv:3 \(cluster_id 1: Units row 1 \(id 1\), row 4"
    ):
        label_file(src, p, out=tmp_path / "o.nwb", **kw)
    assert not (tmp_path / "o.nwb").exists()
    # names (not integers) as keys, matched through the Units unit_name column
    p = _csv(tmp_path / "n.csv", "unit_name,label\nb1,GoC\na2,MLI\n")
    out = label_file(src, p, out=tmp_path / "n.nwb", **kw)
    assert _gt(out)["ground_truth"].unit_indices.tolist() == [4, 2]
    # names cannot be NWB ids
    with pytest.raises(LibraryError, match=r"rows n\.csv:2 \('b1'\), n\.csv:3 \('a2'\) are not integers"):
        label_file(src, p, out=tmp_path / "m.nwb", id_column="id", **kw)


def test_label_file_refuses_the_same_labels_twice(nwb_file, tmp_path):
    from nwb_celltype.cli import main

    p = _csv(tmp_path / "l.csv", "unit_id,label\n0,PkC_ss\n3,MLI\n")
    args = ["library", "label", str(nwb_file), "--labels", str(p), "--evidence-type", "optotagging"]
    args += ["--labelled-by", "alice", "--in-place"]
    r = CliRunner()
    res = r.invoke(main, args)
    assert res.exit_code == 0, res.output
    before = nwb_file.read_bytes()
    res = r.invoke(main, args)  # a rerun (another time stamp): refused, nothing written
    assert res.exit_code == 1, res.output
    assert "already holds these labels: table 'ground_truth'" in res.output
    assert "Nothing was written" in res.output
    assert nwb_file.read_bytes() == before
    with pytest.raises(LibraryError, match="already holds these labels"):
        label_file(nwb_file, p, out=tmp_path / "o.nwb", evidence_type="optotagging", labelled_by="alice")
    assert not (tmp_path / "o.nwb").exists()
    # different labels (or another evidence type) for the same units: a second table, as before
    p2 = _csv(tmp_path / "l2.csv", "unit_id,label\n0,PkC_cs\n3,MLI\n")
    label_file(nwb_file, p2, in_place=True, evidence_type="optotagging", labelled_by="alice")
    label_file(nwb_file, p, in_place=True, evidence_type="pharmacology", labelled_by="alice")
    assert sorted(_gt(nwb_file)) == ["ground_truth", "ground_truth_2", "ground_truth_3"]


# -- manifests, merge --------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".toml", ".json", ".yaml"])
def test_manifest_round_trip(tmp_path, nwb_file, suffix):
    m = create_manifest([nwb_file], name="lab1", annotation="ground_truth", root=tmp_path)
    m.entries.append(
        LibraryEntry(
            dandiset="000409",
            version="0.230101.1234",
            asset_path="sub-1/sub-1_ses-a_ecephys.nwb",
            sha256="ab" * 32,
        )
    )
    path = m.save(tmp_path / "sub" / f"lib{suffix}")
    back = load_manifest(path)
    assert back.name == "lab1" and len(back) == 2
    assert back.entries[0].path == "../rec.nwb"  # relative to the manifest's folder
    assert back.sources()[0] == str(tmp_path / "sub" / "../rec.nwb")
    assert os.path.samefile(back.sources()[0], nwb_file)
    assert back.entries[0].sha256 == m.entries[0].sha256 and len(m.entries[0].sha256) == 64
    assert back.entries[1].source() == "dandi://DANDI/000409@0.230101.1234/sub-1/sub-1_ses-a_ecephys.nwb"
    assert back.entries[1].library == "lab1"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('name = "x"\n', "must be a table with a 'files' list"),
        ('name = "x"\n[[files]]\npath = "a.nwb"\ncolour = "red"\n', r"unknown keys \['colour'\]"),
        ('name = "x"\n[[files]]\ndandiset = "000409"\n', "needs asset_path"),
        ('name = "x"\n[[files]]\npath = "a.nwb"\nurl = "https://x/a.nwb"\n', "exactly one of"),
        ('name = "x\n', "does not parse as TOML"),
        ("format_version = 9\nfiles = []\n", "format_version 9"),
    ],
)
def test_manifest_errors(tmp_path, text, match):
    p = tmp_path / "m.toml"
    p.write_text(text)
    with pytest.raises(LibraryError, match=match):
        load_manifest(p)


def test_merge_keeps_provenance_and_refuses_conflicts(tmp_path):
    a = mock_library_file(tmp_path / "a" / "a.nwb", seed=1, subject_id="m1")
    b = mock_library_file(tmp_path / "b" / "b.nwb", seed=2, subject_id="m2")
    ma = create_manifest([a], name="labA", root=tmp_path / "a")
    ma.save(tmp_path / "a" / "lib.toml")
    mb = create_manifest([b, a], name="labB", root=tmp_path / "b")
    mb.save(tmp_path / "b" / "lib.json")
    merged = merge_manifests(
        [load_manifest(tmp_path / "a" / "lib.toml"), load_manifest(tmp_path / "b" / "lib.json")], name="all"
    )
    assert [e.library for e in merged.entries] == ["labA+labB", "labB"]
    merged.save(tmp_path / "all.toml")
    back = load_manifest(tmp_path / "all.toml")
    assert [os.path.basename(s) for s in back.sources()] == ["a.nwb", "b.nwb"]
    assert all(os.path.isfile(s) for s in back.sources())
    mc = create_manifest([a], name="labC", annotation="other_table", root=tmp_path)
    with pytest.raises(LibraryError, match="same file with different annotation tables"):
        merge_manifests([ma, mc], name="bad")


# -- validate, stats ---------------------------------------------------------------------------


def _labelled_library(tmp_path, n_files=2, labels=None):
    files = []
    for k in range(n_files):
        f = mock_library_file(
            tmp_path / f"raw{k}.nwb", seed=k, subject_id=f"m{k}", session_id=f"s{k}", lab=f"lab{k % 2}"
        )
        csv = _csv(
            tmp_path / f"l{k}.csv",
            labels
            or "unit_id,label,evidence_type\n0,PkC_ss,optotagging\n1,MLI,pharmacology\n2,GoC,optotagging\n",
        )
        files.append(
            label_file(f, csv, out=tmp_path / f"lab{k}.nwb", labelled_by="me", evidence_text="tagged")
        )
    return files


def test_validate_clean_library(tmp_path):
    files = _labelled_library(tmp_path)
    rep = validate_library(create_manifest(files, name="ok", root=tmp_path))
    assert rep.ok, rep.summary()
    assert rep.n_files == 2 and rep.n_labelled == 6


def test_validate_finds_problems(tmp_path):
    files = _labelled_library(tmp_path)
    unlabelled = mock_library_file(tmp_path / "plain.nwb", seed=5, subject_id="m5", session_id="s5")
    few = mock_library_file(tmp_path / "few.nwb", seed=6, subject_id="m6", session_id="s6", duration_s=5.0)
    few_l = label_file(
        few, _csv(tmp_path / "f.csv", "unit_id,label\n0,MFB\n"), evidence_type="anatomy", labelled_by="me"
    )
    m = create_manifest([*files, files[0], unlabelled, few_l], name="bad", root=tmp_path)
    # a second table labelling the same unit again, and a changed file
    label_file(
        files[1],
        _csv(tmp_path / "g.csv", "unit_id,label\n0,PkC_cs\n"),
        in_place=True,
        name="again",
        evidence_type="expert",
        labelled_by="me",
    )
    rep = validate_library(m)
    codes = {i.code for i in rep.errors}
    assert {
        "duplicate-file",
        "duplicate-session",
        "no-ground-truth",
        "too-few-spikes",
        "duplicate-label",
        "hash-mismatch",
    } <= codes
    msgs = [i.message for i in rep.errors if i.code == "duplicate-label"]
    assert any("unit 0 labelled twice (conflicting)" in s for s in msgs), msgs
    assert any(i.code == "no-evidence-text" for i in rep.warnings)  # few.nwb rows have no free text
    with pytest.raises(LibraryError, match="errors"):
        rep.raise_if_errors()


def test_stats_table_and_figure(tmp_path):
    files = _labelled_library(tmp_path, n_files=3)
    m = create_manifest(files, name="st", root=tmp_path)
    st = library_stats(m)
    assert st.counts("label") == {"GoC": 3, "MLI": 3, "PkC_ss": 3}
    assert st.counts("evidence_type") == {"optotagging": 6, "pharmacology": 3}
    assert st.counts("lab") == {"lab0": 6, "lab1": 3}
    assert st.counts("species") == {"Mus musculus": 9}
    assert st.n_units == 18
    table = st.to_table()
    assert "MLI" in table and "pharmacology" in table and "lab0: 6" in table
    png = st.plot(tmp_path / "stats.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


# -- export ------------------------------------------------------------------------------------


def test_export_dandiset_passes_dandi_validate(tmp_path):
    files = _labelled_library(tmp_path)
    m = create_manifest(files, name="exp", description="two mock sessions", root=tmp_path)
    out = tmp_path / "dandiset"
    mapping = export_dandiset(m, out)
    names = sorted(p.relative_to(out).as_posix() for p in mapping.values())
    assert names == ["sub-m0/sub-m0_ses-s0_ecephys.nwb", "sub-m1/sub-m1_ses-s1_ecephys.nwb"]
    assert (out / "dandiset.yaml").exists()
    assert validate_dandiset(out) == []
    # the real dandi CLI agrees (offline: nothing is uploaded or fetched)
    env = {**os.environ, "DANDI_NO_ET": "1", "DANDI_CACHE": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "dandi.cli.command", "validate", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=out,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the exported manifest points at the organized files with unchanged hashes, labels intact
    exported = load_manifest(out / "nwb-celltype-library.json")
    assert [e.sha256 for e in exported.entries] == [e.sha256 for e in m.entries]
    assert validate_library(exported).ok
    with pytest.raises(OutputError, match="not empty"):
        export_dandiset(m, out)


def test_export_refuses_files_without_subject(tmp_path):
    from datetime import datetime, timezone

    from pynwb import NWBHDF5IO, NWBFile

    f = NWBFile(
        session_description="x", identifier="x", session_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc)
    )
    f.add_unit(spike_times=[0.1, 0.2])
    with NWBHDF5IO(str(tmp_path / "x.nwb"), "w") as io:
        io.write(f)
    with pytest.raises(LibraryError, match="no subject"):
        export_dandiset(create_manifest([tmp_path / "x.nwb"], name="x", root=tmp_path), tmp_path / "out")
    with pytest.raises(LibraryError, match="cannot export remote entries"):
        from nwb_celltype.library import Manifest

        export_dandiset(Manifest("r", [LibraryEntry(url="https://example.org/a.nwb")]), tmp_path / "out2")


# -- CLI ---------------------------------------------------------------------------------------


def test_cli_label_create_validate_stats_merge(tmp_path, nwb_file):
    from nwb_celltype.cli import main

    r = CliRunner()
    csv = _csv(tmp_path / "l.csv", "unit_id,label\n0,PkC_ss\n1,PkC_cs\n")
    res = r.invoke(
        main,
        [
            "library",
            "label",
            str(nwb_file),
            "--labels",
            str(csv),
            "--evidence-type",
            "optotagging",
            "--labelled-by",
            "me",
            "--out",
            str(tmp_path / "l.nwb"),
        ],
    )
    assert res.exit_code == 0, res.output
    res = r.invoke(
        main,
        [
            "library",
            "label",
            str(nwb_file),
            "--labels",
            str(_csv(tmp_path / "b.csv", "unit_id,label\n99,MLI\n")),
            "--evidence-type",
            "expert",
            "--labelled-by",
            "me",
            "--out",
            str(tmp_path / "z.nwb"),
        ],
    )
    assert res.exit_code == 1 and "unknown units in rows b.csv:2 (unit 99)" in res.output
    res = r.invoke(main, ["library", "create", str(tmp_path / "lib.toml"), str(tmp_path / "l.nwb")])
    assert res.exit_code == 0, res.output
    res = r.invoke(main, ["library", "validate", str(tmp_path / "lib.toml")])
    assert res.exit_code == 0, res.output
    assert "1 files, 2 labelled units, 0 errors" in res.output
    res = r.invoke(
        main, ["library", "stats", str(tmp_path / "lib.toml"), "--json", "--figure", str(tmp_path / "s.png")]
    )
    assert res.exit_code == 0, res.output
    counts = json.loads(res.stdout)
    assert counts["label"] == {"PkC_cs": 1, "PkC_ss": 1} and (tmp_path / "s.png").exists()
    res = r.invoke(
        main,
        [
            "library",
            "merge",
            str(tmp_path / "lib.toml"),
            str(tmp_path / "lib.toml"),
            "--out",
            str(tmp_path / "m.yaml"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert len(load_manifest(tmp_path / "m.yaml")) == 1
    # an invalid library exits 1 and lists the errors
    (tmp_path / "bad.toml").write_text('name = "bad"\n[[files]]\npath = "nope.nwb"\n')
    res = r.invoke(main, ["library", "validate", str(tmp_path / "bad.toml")])
    assert res.exit_code == 1 and "missing-file" in res.output


def test_cli_import_c4h5_and_export(tmp_path):
    from test_library_c4h5 import c4_neuron, write_c4_file

    from nwb_celltype.cli import main

    rng = np.random.default_rng(3)
    h5 = write_c4_file(
        tmp_path / "c4.h5",
        [c4_neuron(rng, "d1", 0, "MLI", "opto"), c4_neuron(rng, "d2", 5, "PkC_cs", "opto")],
    )
    r = CliRunner()
    res = r.invoke(
        main,
        [
            "library",
            "import-c4h5",
            str(h5),
            "--out",
            str(tmp_path / "nwb"),
            "--manifest",
            str(tmp_path / "c4.toml"),
        ],
    )
    assert res.exit_code == 0, res.output
    res = r.invoke(main, ["library", "export", str(tmp_path / "c4.toml"), "--out", str(tmp_path / "ds")])
    assert res.exit_code == 1 and "neither age nor date_of_birth" in res.output  # C4 files record no age
    res = r.invoke(
        main,
        [
            "library",
            "import-c4h5",
            str(h5),
            "--out",
            str(tmp_path / "nwb"),
            "--age",
            "P60D/P120D",
            "--overwrite",
            "--manifest",
            str(tmp_path / "c4.toml"),
        ],
    )
    assert res.exit_code == 0, res.output
    res = r.invoke(main, ["library", "export", str(tmp_path / "c4.toml"), "--out", str(tmp_path / "ds")])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "ds").rglob("*.nwb")) == [
        "sub-hausser-d1_ses-d1_ecephys.nwb",
        "sub-hausser-d2_ses-d2_ecephys.nwb",
    ]


def test_create_manifest_lists_dandi_assets_offline(monkeypatch):
    monkeypatch.setenv("DANDI_NO_ET", "1")
    m = create_manifest(["dandi://DANDI/000409@0.230101.1234/sub-1/sub-1_ses-a_ecephys.nwb"], name="remote")
    e = m.entries[0]
    assert (e.dandiset, e.version, e.asset_path) == (
        "000409",
        "0.230101.1234",
        "sub-1/sub-1_ses-a_ecephys.nwb",
    )
    assert e.source() == "dandi://DANDI/000409@0.230101.1234/sub-1/sub-1_ses-a_ecephys.nwb"
