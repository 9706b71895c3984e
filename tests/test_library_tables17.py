"""Audit 17 (libraries, show, report): label CSVs split only at real row breaks, TOML manifests with
characters outside the BMP, species counted canonically, `show --json` like the text, missing table
folders named as missing, table label files (blank lines, spaces, case, semicolons, one warning),
report panels without a waveform or with long reasons, `stats --figure` outputs, and import-tables
keeping an entry's library."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from nwb_celltype.cli import main
from nwb_celltype.errors import LibraryError, OutputError, SourceNotFoundError
from nwb_celltype.library import (
    create_manifest,
    import_tables,
    label_file,
    library_stats,
    load_manifest,
    mock_library_file,
    read_feature_tables,
    read_label_table,
    validate_library,
)
from nwb_celltype.library.manifest import LibraryEntry, Manifest
from nwb_celltype.library.tables import inspect_tables

EV = {"evidence_type": "optotagging", "labelled_by": "me"}


def _tables(
    folder: Path, labels, *, species="mouse", lab="Test lab", sep=",", seed=0, neuron_ids=None
) -> Path:
    """A small table folder written by the test (labels.csv + acg/isi/waveforms, aligned rows, random
    counts from ``seed``); with ``neuron_ids``, units.csv (neuron_id, label) instead of labels.csv."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    folder.mkdir(parents=True)
    (folder / "dataset.json").write_text(
        json.dumps({"name": folder.name, "lab": lab, "species": species, "waveform_rate_hz": 30000})
    )
    if neuron_ids is None:
        (folder / "labels.csv").write_text("label\n" + "".join(f"{x}\n" for x in labels))
    else:
        rows = "".join(f"{i},{x}\n" for i, x in zip(neuron_ids, labels, strict=True))
        (folder / "units.csv").write_text("neuron_id,label\n" + rows)
    for name, cols, data in (
        ("acg.csv", range(-100, 101), rng.integers(1, 20, (n, 201))),
        ("isi_dist.csv", range(100), rng.integers(0, 20, (n, 100))),
        (
            "waveforms.csv",
            range(60),
            -80 * np.exp(-(((np.arange(60) - 24) / 4.0) ** 2)) + rng.normal(0, 1, (n, 60)),
        ),
    ):
        d = sep if name == "waveforms.csv" else ","
        lines = [d.join(map(str, cols))] + [d.join(f"{v:g}" for v in row) for row in data]
        (folder / name).write_text("\n".join(lines) + "\n")
    return folder


# -- F2: label tables split at row breaks only ---------------------------------------------------


@pytest.mark.parametrize("suffix,sep", [(".csv", ","), (".txt", ";")])
def test_a_line_separator_character_is_text_not_a_new_row(tmp_path, suffix, sep):
    p = tmp_path / f"ls{suffix}"
    # str.splitlines read "5<sep>GoC" as a row of its own: unit 5 labelled GoC
    p.write_text(f"unit_id{sep}label{sep}evidence\n1{sep}MLI{sep}see\u20285{sep}GoC\n3{sep}PkC_ss{sep}x\fy\n")
    t = read_label_table(p, **EV)
    assert t.unit_ids.tolist() == [1, 3] and t.labels.tolist() == ["MLI", "PkC_ss"]  # no unit 5 'GoC'
    assert t.evidence["evidence_text"].tolist() == ["see\u20285", "x\fy"]
    assert t.rows.tolist() == [f"ls{suffix}:2", f"ls{suffix}:3"]


def test_a_quoted_multi_line_cell_keeps_its_newline_and_lines_stay_numbered(tmp_path):
    p = tmp_path / "ml.csv"
    p.write_text('unit_id,label,evidence\n1,MLI,"line one\nline two"\n\n3,PkC_ss,x\n5,Foo,y\n')
    with pytest.raises(LibraryError, match=r"ml\.csv:6 \('Foo'\)"):
        read_label_table(p, **EV)
    p.write_text('unit_id,label,evidence\r\n1,MLI,"line one\nline two"\r\n\r\n3,PkC_ss,x\r\n')
    t = read_label_table(p, **EV)
    assert t.evidence["evidence_text"].tolist() == ["line one\nline two", "x"]
    assert t.rows.tolist() == ["ml.csv:2", "ml.csv:5"]


def test_the_line_numbers_count_blank_lines(tmp_path):
    p = tmp_path / "blank.csv"
    p.write_text("unit_id,label\n1,MLI\n\n3,PkC_ss\n5,Foo\n")
    with pytest.raises(LibraryError, match=r"blank\.csv:5 \('Foo'\)"):
        read_label_table(p, **EV)


def test_a_labelled_file_stores_the_multi_line_evidence(tmp_path):
    from pynwb import NWBHDF5IO

    import nwb_celltype.nwb  # noqa: F401
    from nwb_celltype.library import read_ground_truth

    nwb = mock_library_file(tmp_path / "rec.nwb", n_units=6)
    p = tmp_path / "l.csv"
    p.write_text('unit_id,label,evidence\n1,MLI,"line one\nline two"\n2,GoC,"see\u20285,PkC_ss"\n')
    out = label_file(nwb, p, out=tmp_path / "o.nwb", **EV)
    with NWBHDF5IO(str(out), "r") as io:
        [gt] = read_ground_truth(io.read())
        assert gt.labels.tolist() == ["MLI", "GoC"]
        assert gt.evidence["evidence_text"].tolist() == ["line one\nline two", "see\u20285,PkC_ss"]


# -- F3: TOML manifests with characters outside the BMP -------------------------------------------


def test_a_toml_manifest_with_an_emoji_reads_back(tmp_path):
    import tomllib

    folder = tmp_path / "d😀"
    folder.mkdir()
    nwb = mock_library_file(folder / "r🧠.nwb", n_units=3)
    text = 'Purkinje 🧠 cells\tfrom "lab" \\ é\u2028\x7f\x01'
    m = create_manifest([nwb], name="emoji 🧠", description=text, root=tmp_path)
    m.save(tmp_path / "e.toml")
    raw = (tmp_path / "e.toml").read_bytes()
    tomllib.loads(raw.decode("utf-8"))  # valid TOML (no surrogate escapes)
    back = load_manifest(tmp_path / "e.toml")
    assert back.description == text and back.name == "emoji 🧠"
    assert back.entries[0].path == "d😀/r🧠.nwb" and back.sources() == [str(tmp_path / "d😀" / "r🧠.nwb")]
    r = CliRunner().invoke(main, ["library", "stats", str(tmp_path / "e.toml")])
    assert r.exit_code == 0 and "3 units" in r.output, r.output


def test_a_file_name_that_is_not_utf8_is_refused_in_toml(tmp_path):
    m = Manifest(name="x", entries=[LibraryEntry(path="a\udcff.nwb", sha256="0" * 64)], root=tmp_path)
    with pytest.raises(LibraryError, match="not valid UTF-8.*save the manifest as .json"):
        m.save(tmp_path / "x.toml")
    assert not (tmp_path / "x.toml").exists()


# -- F7: species as training counts them -----------------------------------------------------------


def test_stats_counts_mouse_and_mus_musculus_as_one_species(tmp_path):
    _tables(tmp_path / "a", ["MLI", "GoC", "unlabeled"], species="mouse")
    _tables(tmp_path / "b", ["PkC_ss", "PkC_cs"], species="Mus musculus")
    import_tables([tmp_path / "a", tmp_path / "b"], tmp_path / "lib.toml")
    st = library_stats(tmp_path / "lib.toml")
    assert st.counts("species") == {"Mus musculus": 4}
    assert st.counts("species_as_written") == {"mouse": 2, "Mus musculus": 2}
    assert "by species:\n  Mus musculus: 4\n" in st.to_table()
    r = CliRunner().invoke(main, ["library", "stats", str(tmp_path / "lib.toml"), "--json"])
    d = json.loads(r.stdout)
    assert d["species"] == {"Mus musculus": 4} and d["species_as_written"] == {"mouse": 2, "Mus musculus": 2}
    # the canonical names come without the model's compute stack
    code = (
        "import sys; from nwb_celltype.library import library_stats; "
        f"library_stats({str(tmp_path / 'lib.toml')!r}); "
        "print(sorted(m for m in ('torch', 'jax', 'flax') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out


# -- F8: show --json ------------------------------------------------------------------------------


@pytest.fixture
def labelled(tmp_path):
    nwb = mock_library_file(tmp_path / "rec.nwb", n_units=6)
    p = tmp_path / "l.csv"
    p.write_text("unit_id,label\n0,PkC_ss\n1,MLI\n2,GoC\n4,MFB\n")
    return label_file(nwb, p, out=tmp_path / "o.nwb", **EV)


def test_show_json_refuses_a_missing_table_as_the_text_does(labelled):
    r = CliRunner()
    for extra in ([], ["--json"], ["--agreement"], ["--agreement", "--json"]):
        res = r.invoke(main, ["show", str(labelled), "--table", "nope", *extra])
        assert res.exit_code == 1, (extra, res.output)
        assert "no annotation table 'nope'; the file has ['ground_truth']" in res.output, res.output
        assert "Traceback" not in res.output and "{}" not in res.output


def test_show_json_takes_max_units(labelled):
    r = CliRunner()
    full = json.loads(r.invoke(main, ["show", str(labelled), "--json"]).stdout)["ground_truth"]
    assert len(full["unit_ids"]) == full["n_units"] == 4
    cut = json.loads(r.invoke(main, ["show", str(labelled), "--json", "--max-units", "2"]).stdout)
    cut = cut["ground_truth"]
    assert cut["n_units"] == 4 and cut["unit_ids"] == full["unit_ids"][:2]
    for key in ("labels", "status", "kinds", "reasons"):
        assert cut[key] == full[key][:2]
    assert "--json" in r.invoke(main, ["show", "--help"]).output.split("--max-units")[1][:200]


# -- F9: a missing table folder ---------------------------------------------------------------


def test_a_missing_table_folder_is_named_missing(tmp_path):
    _tables(tmp_path / "lib" / "t", ["MLI", "GoC"])
    import_tables([tmp_path / "lib" / "t"], tmp_path / "lib" / "m.toml")
    (tmp_path / "moved").mkdir()
    moved = tmp_path / "moved" / "m.toml"
    moved.write_bytes((tmp_path / "lib" / "m.toml").read_bytes())  # the folder is no longer beside it
    with pytest.raises(SourceNotFoundError, match="does not exist"):
        inspect_tables(tmp_path / "moved" / "t")
    rep = validate_library(moved)
    [issue] = rep.issues
    assert f"table folder {tmp_path / 'moved' / 't'} does not exist" in issue.message, issue
    assert issue.code == "missing-file"  # as a missing NWB file is reported
    assert "not a folder of feature tables" not in issue.message
    r = CliRunner().invoke(main, ["library", "stats", str(moved)])
    assert r.exit_code == 1 and f"{tmp_path / 'moved' / 't'} does not exist" in r.output, r.output
    (tmp_path / "f").write_text("x")
    with pytest.raises(LibraryError, match="is not a folder of feature tables.*it is a file"):
        inspect_tables(tmp_path / "f")


# -- F10: table label files -----------------------------------------------------------------------


def test_a_blank_line_in_labels_csv_is_named_not_skipped(tmp_path):
    t = _tables(tmp_path / "t", ["MLI", "GoC", "PkC_ss", "MFB"])
    (t / "labels.csv").write_text("label\nMLI\n\nPkC_ss\nMFB\n")
    for required in (True, False):
        with pytest.raises(LibraryError, match=r"labels\.csv:3: the line is blank"):
            read_feature_tables(t, labels_required=required)
    (t / "labels.csv").write_text("label\nMLI\nGoC\nPkC_ss\nMFB\n\n\n")  # trailing blank lines: fine
    assert read_feature_tables(t).labels.tolist() == ["MLI", "GoC", "PkC_ss", "MFB"]


def test_an_empty_label_in_units_csv_is_named_with_its_line(tmp_path):
    t = _tables(tmp_path / "t", ["MLI", "GoC", "PkC_ss"])
    (t / "labels.csv").unlink()
    (t / "units.csv").write_text("neuron_id,label\nn0,MLI\nn1,\nn2,PkC_ss\n")
    with pytest.raises(LibraryError, match=r"units\.csv:3: empty label; write 'unlabeled'"):
        import_tables([t])
    fs = read_feature_tables(t, labels_required=False)  # classifying: no label to compare with
    assert fs.labels.tolist() == ["MLI", "unlabeled", "PkC_ss"]


def test_labels_are_stripped_and_a_case_variant_gets_a_hint(tmp_path, caplog):
    t = _tables(tmp_path / "t", [" GoC ", "MLI", "PkC_ss"])
    assert read_feature_tables(t).labels.tolist() == ["GoC", "MLI", "PkC_ss"]
    (t / "units.csv").write_text("neuron_id,label\nn0 , GoC\nn1,MLI\nn2,PkC_ss\n")  # agrees once stripped
    fs = read_feature_tables(t)
    assert fs.labels.tolist() == ["GoC", "MLI", "PkC_ss"] and fs.meta["neuron_ids"][0] == "n0"
    (t / "units.csv").unlink()
    (t / "labels.csv").write_text("label\ngoc\nMLI\nPkC_ss\n")
    with pytest.raises(LibraryError, match=r"unknown labels \['goc'\] \(did you mean 'GoC'\?\)"):
        import_tables([t])
    (t / "labels.csv").write_text("label\nFoo\nmli \ngoc\n")
    with pytest.raises(
        LibraryError, match=r"\['Foo', 'goc', 'mli'\] \(did you mean 'GoC' for 'goc', 'MLI' for 'mli'\?\)"
    ):
        import_tables([t])
    (t / "labels.csv").write_text("label\ngoc\nMLI\nPkC_ss\n")
    with caplog.at_level(logging.WARNING, logger="nwb_celltype.library.tables"):
        fs = read_feature_tables(t, labels_required=False)
    assert fs.labels.tolist() == ["unlabeled", "MLI", "PkC_ss"]
    warned = [r.getMessage() for r in caplog.records if "vocabulary" in r.getMessage()]
    assert len(warned) == 1, warned  # once, not once per read of the labels
    assert "['goc'] (did you mean 'GoC'?)" in warned[0]


def test_a_semicolon_separated_waveforms_csv_says_so(tmp_path):
    t = _tables(tmp_path / "t", ["MLI", "GoC"], sep=";")
    with pytest.raises(LibraryError, match=r"waveforms\.csv: .*separated by ';', not commas") as exc:
        import_tables([t])
    assert len(str(exc.value)) < 300, str(exc.value)


# -- F12: report panels ---------------------------------------------------------------------------


def test_report_panel_without_waveform_and_with_a_long_reason(tmp_path):
    from nwb_celltype.features._geometry import log_geometry
    from nwb_celltype.features.config import FeatureConfig
    from nwb_celltype.report import NO_WAVE_SPAN_MS, _UnitFigure

    cfg = FeatureConfig()
    classes = ["PkC_ss", "PkC_cs", "MLI", "GoC", "MFB"]
    fig = _UnitFigure(classes, np.asarray(log_geometry(cfg).log_lags_ms, float), int(cfg.acg_rate_bins), 1.0)
    reason = "; ".join(
        ["no spikes", "waveform: waveform contains NaN or infinite samples", "0 spikes < min_spikes=100"] * 3
    )
    kw = dict(title="unit 6", label="not_classifiable", status="not_classifiable", t_ms=None, wave_uv=None)
    fig.draw(tmp_path / "u.png", reason=reason, acg=None, probs=None, **kw)
    assert fig.wave_note.get_text() == "no waveform" and not fig.wave.get_visible()
    assert fig.ax_w.get_xlim() == pytest.approx(NO_WAVE_SPAN_MS)
    renderer = fig.canvas.get_renderer()
    width = fig.fig.bbox.width
    for note in (fig.acg_note, fig.prob_note):
        box = note.get_window_extent(renderer)
        assert "\n" in note.get_text() and 0 <= box.x0 and box.x1 <= width, (note.get_text(), box)
    assert fig.acg_note.get_window_extent(renderer).x1 <= fig.ax_c.get_window_extent(renderer).x0
    # a unit with a waveform clears the note
    t = np.arange(60) / 30.0
    fig.draw(
        tmp_path / "v.png", reason="", acg=None, probs=None, **{**kw, "t_ms": t, "wave_uv": np.sin(t) * 50}
    )
    assert fig.wave_note.get_text() == "" and fig.wave.get_visible()


# -- F13: stats --figure ----------------------------------------------------------------------------


def test_stats_figure_refuses_a_missing_folder(tmp_path):
    from nwb_celltype.library.stats import check_figure_path

    _tables(tmp_path / "t", ["MLI", "GoC"])
    import_tables([tmp_path / "t"], tmp_path / "lib.toml")
    st = library_stats(tmp_path / "lib.toml")
    with pytest.raises(OutputError, match=r"folder .*new[/\\]sub does not exist; create it first"):
        st.plot(tmp_path / "new" / "sub" / "s.png")
    assert not (tmp_path / "new").exists()
    r = CliRunner().invoke(
        main, ["library", "stats", str(tmp_path / "lib.toml"), "--figure", str(tmp_path / "n2" / "s.png")]
    )
    assert (
        r.exit_code == 1 and "does not exist; create it first" in r.output and not (tmp_path / "n2").exists()
    )
    assert "labelled" not in r.output and "MLI" not in r.output, r.output  # refused before the table
    with pytest.raises(OutputError, match="cannot write a figure as s.txt"):
        check_figure_path(tmp_path / "s.txt")
    (tmp_path / "d.png").mkdir()
    with pytest.raises(OutputError, match="not a regular file"):
        check_figure_path(tmp_path / "d.png")
    assert st.plot(tmp_path / "s.png").is_file()


# -- F14: import-tables keeps an entry's library ---------------------------------------------------


def test_import_tables_keeps_the_library_of_an_entry_it_updates(tmp_path):
    from nwb_celltype.library import merge_manifests

    _tables(tmp_path / "hull", ["MLI", "GoC"])
    _tables(tmp_path / "other", ["PkC_ss"])
    hull, _ = import_tables([tmp_path / "hull"], tmp_path / "hull.toml")
    nwb = create_manifest([mock_library_file(tmp_path / "r.nwb", n_units=2)], name="nwb2", root=tmp_path)
    merged = merge_manifests([nwb, hull], name="nwb2")
    merged.save(tmp_path / "nwb2.toml")
    assert [e.library for e in load_manifest(tmp_path / "nwb2.toml").entries] == ["nwb2", "hull"]
    m, _ = import_tables([tmp_path / "hull", tmp_path / "other"], tmp_path / "nwb2.toml")
    back = load_manifest(tmp_path / "nwb2.toml")
    assert [(e.identity(), e.library) for e in back.entries] == [
        ("r.nwb", "nwb2"),
        ("hull", "hull"),  # updated in place, still from library 'hull'
        ("other", "nwb2"),  # new: the manifest's library
    ]


def test_a_figure_is_written_through_a_temporary_file_named_for_it(tmp_path, monkeypatch):
    """The temporary file of a figure was named `.s.png.pidN.XXXXXXXX.tmp.nwb` (shown in errors)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nwb_celltype import _atomic, _atomic_files

    seen = []
    real = _atomic.temp_path
    monkeypatch.setattr(
        _atomic, "temp_path", lambda final, tag="tmp.nwb": seen.append(tag) or real(final, tag)
    )
    fig = plt.figure()
    _atomic_files.write_figure(fig, tmp_path / "s.png")
    plt.close(fig)
    assert seen == ["tmp.png"] and (tmp_path / "s.png").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["s.png"]
