"""Folders of feature tables in a training set: each keeps its folder as ``source`` (dataset.json's
``source`` text goes to ``dataset_source``) and each unit its ``neuron_id``; and a short row of
labels.csv / units.csv is an error naming the file and line, not an IndexError."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from nwb_celltype.errors import LibraryError
from nwb_celltype.features.discharge import DischargeConfig
from nwb_celltype.library import load_training_set
from nwb_celltype.library.tables import import_tables, read_feature_tables

CLI = __import__("nwb_celltype.cli", fromlist=["main"]).main
LABELS = ["PkC_ss", "MLI", "GoC", "unlabeled"]


def _write(path: Path, header, rows) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _folder(path: Path, lab: str, seed: int, units_rows=None) -> Path:
    """A table folder written by the test: 4 units with random ACG / ISI counts and waveforms, a
    units.csv with neuron ids ``<lab>_<k>`` (or ``units_rows``), and a dataset.json ``source`` text."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    meta = {"name": path.name, "lab": lab, "species": "mouse", "waveform_rate_hz": 30000}
    meta |= {"labels": "optogenetically identified", "source": "Doe et al. 2024, figshare"}
    (path / "dataset.json").write_text(json.dumps(meta))
    rows = units_rows or [[f"{lab}_{k}", lab_] for k, lab_ in enumerate(LABELS)]
    _write(path / "units.csv", ["neuron_id", "label"], rows)
    half = rng.poisson(20.0, (4, 100)).astype(float)
    acg = np.concatenate([half[:, ::-1], np.zeros((4, 1)), half], axis=1)
    _write(path / "acg.csv", range(-100, 101), acg.tolist())
    _write(path / "isi_dist.csv", range(100), rng.poisson(30.0, (4, 100)).tolist())
    t = np.arange(90) / 30.0
    wave = -np.exp(-((t - 1.0) ** 2) / 0.05)[None] + rng.normal(0, 0.01, (4, 90))
    _write(path / "waveforms.csv", range(90), wave.tolist())
    return path


def test_table_folders_keep_their_folder_as_source_and_neuron_ids(tmp_path):
    """Before, both references' ``source`` was dataset.json's text, the same for both folders."""
    a = _folder(tmp_path / "hull", "hull", 1)
    b = _folder(tmp_path / "lisberger", "lisberger", 2)
    m, _ = import_tables([a, b], tmp_path / "real.toml")
    ts = load_training_set(tmp_path / "real.toml", config=DischargeConfig(), cache_dir=tmp_path / "c")
    assert [r["source"] for r in ts.references] == [e.identity() for e in m.entries]
    assert ts.references[0]["source"] != ts.references[1]["source"]
    assert {r["dataset_source"] for r in ts.references} == {"Doe et al. 2024, figshare"}
    assert [r["lab"] for r in ts.references] == ["hull", "lisberger"]
    # unit_ids are row numbers, repeated across folders; the tables' own ids tell the units apart
    assert ts.features.unit_ids.tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    assert ts.neuron_ids.tolist() == [f"{lab}_{k}" for lab in ("hull", "lisberger") for k in range(4)]


def test_evaluation_rows_name_the_folder_of_each_unit(tmp_path):
    from nwb_celltype.model.evaluation_report import EvaluationReport, describe_data

    a = _folder(tmp_path / "hull", "hull", 1)
    b = _folder(tmp_path / "lisberger", "lisberger", 2)
    import_tables([a, b], tmp_path / "real.toml")
    ts = load_training_set(tmp_path / "real.toml", config=DischargeConfig(), cache_dir=tmp_path / "c")
    rows = np.array([0, 4])  # unit 0 of each folder
    empty = EvaluationReport(
        classes=("PkC_ss",), y=np.zeros(2, int), probabilities=np.ones((2, 1)), metrics={}
    )
    rep = describe_data(empty, ts, None, rows)
    src = rep.units["source"].tolist()
    assert src[0] != src[1] and src[0].endswith("hull") and src[1].endswith("lisberger")
    assert rep.units["neuron_id"].tolist() == ["hull_0", "lisberger_0"]  # the tables' own ids


@pytest.mark.parametrize("name", ["units.csv", "labels.csv"])
def test_a_short_label_row_names_file_and_line(tmp_path, name):
    """Before, an IndexError traceback from read_feature_tables (predict) and import-tables."""
    rows = [["n1", "PkC_ss"], ["n9"], ["n3", "MLI"], ["n4", "GoC"]]
    folder = _folder(tmp_path / "t", "hull", 3, units_rows=rows)
    if name == "labels.csv":  # the same short row in labels.csv, units.csv without labels
        (folder / "units.csv").unlink()
        _write(folder / "labels.csv", ["neuron_id", "label"], rows)
    match = rf"t[/\\]{name}:3: the row \(n9\) has 1 value\(s\) but the header has 2 columns .*no 'label' cell"
    with pytest.raises(LibraryError, match=match):
        read_feature_tables(folder, labels_required=False)  # what predict reads
    res = CliRunner().invoke(
        CLI, ["library", "import-tables", str(folder), "--manifest", str(tmp_path / "m.toml")]
    )
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1 and f"{name}:3:" in res.output


def test_a_short_neuron_id_row_and_blank_lines(tmp_path):
    # the line number counts blank lines; a row without its neuron_id is named too
    folder = _folder(tmp_path / "t", "hull", 4, units_rows=[["n1", "PkC_ss"]])
    (folder / "units.csv").write_text("label,neuron_id\nPkC_ss,n1\n\nMLI\nGoC,n3\nunlabeled,n4\n")
    with pytest.raises(LibraryError, match=r"units\.csv:4: .* no 'neuron_id' cell"):
        read_feature_tables(folder)
