"""Audit 18 (interop) fixes to ``nwb-celltype export`` and the outputs other tools read: both outputs
checked (and a failed second write taking the first back), phy's cluster ids following unit_name as
the SpikeInterface bridge does, a phy field per model, predictions TSVs read back with a '#' in an id,
the Units column's description of 'unclassified', and the file named when it has no annotations."""

from __future__ import annotations

import csv
import errno
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from nwb_celltype.cli import main
from nwb_celltype.errors import InvalidValueError

N_UNITS = 10
#: NeuroConv's layout: NWB ids 0..n-1, phy's cluster ids as text in unit_name (overlapping the NWB ids).
NAMES = [12, 3, 45, 7, 8, 0, 1, 30, 9, 2]


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _phy_rows(path: Path) -> tuple[dict[int, str], list[str]]:
    """(cluster_id -> label, header) as phy's load_metadata reads the file (tab-separated, a header row)."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t")
        header = next(reader)
        return {int(r[0]): r[1] for r in reader}, header


@pytest.fixture(scope="module")
def demo_annotated(tmp_path_factory):
    """The demo recording, annotated by the default model with the real CLI."""
    from nwb_celltype.simulate import demo_recording_path

    d = tmp_path_factory.mktemp("e18")
    out = d / "demo.celltype.nwb"
    res = _run("annotate", demo_recording_path(), "--out", out, "-q")
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def neuroconv(tmp_path_factory):
    """(source, annotated): demo recording units written as NeuroConv writes a sorting (NWB ids 0..n-1,
    phy's cluster ids in unit_name), annotated with the real CLI."""
    import pynwb
    from pynwb.file import Subject

    from nwb_celltype.simulate import demo_recording_path

    d = tmp_path_factory.mktemp("nc18")
    with pynwb.NWBHDF5IO(str(demo_recording_path()), "r") as io:
        trains = [np.asarray(t) for t in io.read().units["spike_times"][:N_UNITS]]
    nf = pynwb.NWBFile(
        "s",
        "nc",
        datetime(2024, 1, 1, tzinfo=timezone.utc),
        subject=Subject(subject_id="m", species="Mus musculus"),
    )
    nf.add_unit_column("unit_name", "the sorter's unit id")
    for i, t in enumerate(trains):
        nf.add_unit(spike_times=t, id=i, unit_name=str(NAMES[i]))
    nf.units.resolution = 1 / 30000
    src = d / "nc.nwb"
    with pynwb.NWBHDF5IO(str(src), "w") as io:
        io.write(nf)
    out = d / "nc.celltype.nwb"
    res = _run("annotate", src, "--out", out, "-q")
    assert res.exit_code == 0, res.output
    return src, out


# ----------------------------------------------------------- 4: both outputs checked, then undone


def test_a_tsv_in_a_missing_folder_is_refused_before_the_phy_file_is_written(demo_annotated, tmp_path):
    phy = tmp_path / "phy"
    phy.mkdir()
    res = _run("export", demo_annotated, "--phy", phy, "--tsv", tmp_path / "nodir" / "x.tsv")
    assert res.exit_code == 1 and "nodir" in res.output and "does not exist" in res.output, res.output
    assert "phy labels:" not in res.output
    assert list(phy.iterdir()) == []  # nothing written, as the message says


def test_a_missing_phy_folder_is_refused_before_the_tsv_is_written(demo_annotated, tmp_path):
    tsv = tmp_path / "t.tsv"
    res = _run("export", demo_annotated, "--phy", tmp_path / "nophy", "--tsv", tsv)
    assert res.exit_code == 1 and "nophy" in res.output, res.output
    assert not tsv.exists()


@pytest.mark.parametrize("existing", [False, True])
def test_a_failed_tsv_write_takes_back_the_phy_file(demo_annotated, tmp_path, monkeypatch, existing):
    """The TSV write fails after the phy file was written (disk full): the phy file is removed, or
    the one --overwrite replaced is put back, so that 'Nothing was written' is true."""
    import pandas as pd

    phy = tmp_path / "phy"
    phy.mkdir()
    target = phy / "cluster_celltype.tsv"
    if existing:
        target.write_text("cluster_id\tcelltype\n1\tmine\n")

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    args = ["export", demo_annotated, "--phy", phy, "--tsv", tmp_path / "t.tsv"]
    res = _run(*args, *(["--overwrite"] if existing else []))
    assert res.exit_code == 1 and "Nothing was written" in res.output, res.output
    assert not (tmp_path / "t.tsv").exists()
    if existing:
        assert target.read_text() == "cluster_id\tcelltype\n1\tmine\n"
    else:
        assert not target.exists()
    assert sorted(p.name for p in phy.iterdir()) == (["cluster_celltype.tsv"] if existing else [])


@pytest.mark.parametrize("existing", [False, True])
def test_a_signal_after_the_tsv_is_in_place_keeps_the_phy_file(
    demo_annotated, tmp_path, monkeypatch, existing
):
    """A signal once the TSV is renamed into place (Interrupted naming it, as the atomic write raises
    it): both outputs are complete, as the message says, and the phy file stays the one this run wrote
    (not removed, not the older one put back)."""
    import contextlib
    import signal

    from nwb_celltype import _atomic

    phy = tmp_path / "phy"
    phy.mkdir()
    target, tsv = phy / "cluster_celltype.tsv", tmp_path / "t.tsv"
    if existing:
        target.write_text("cluster_id\tcelltype\n1\tmine\n")
    real = _atomic.atomic_write

    @contextlib.contextmanager
    def write_then_signal(final, **kwargs):
        with real(final, **kwargs) as tmp:
            yield tmp
        if Path(final) == tsv:
            raise _atomic.Interrupted(signal.SIGTERM, written=final)

    monkeypatch.setattr(_atomic, "atomic_write", write_then_signal)
    res = _run("export", demo_annotated, "--phy", phy, "--tsv", tsv, *(["--overwrite"] if existing else []))
    assert res.exit_code == 128 + signal.SIGTERM, res.output
    assert f"interrupted by SIGTERM after {tsv} was written in full" in res.output, res.output
    assert "phy labels:" in res.output and tsv.is_file()
    rows, header = _phy_rows(target)
    assert header == ["cluster_id", "celltype"] and "mine" not in rows.values() and len(rows) > 1


# ------------------------------------------------- 6: phy's cluster ids follow unit_name by default


def test_phy_cluster_ids_default_to_integer_unit_names_as_the_spikeinterface_bridge_matches(
    neuroconv, tmp_path
):
    pytest.importorskip("spikeinterface")
    from spikeinterface.extractors import read_nwb_sorting

    from nwb_celltype.bridges import set_spikeinterface_properties

    src, annotated = neuroconv
    sorting = set_spikeinterface_properties(read_nwb_sorting(str(src)), annotated)
    bridge = {
        int(u): str(v) for u, v in zip(sorting.unit_ids, sorting.get_property("cell_type"), strict=True)
    }
    assert sorted(bridge) == sorted(NAMES) and len(set(bridge.values())) > 1

    phy = tmp_path / "phy"
    phy.mkdir()
    res = _run("export", annotated, "--phy", phy)
    assert res.exit_code == 0, res.output
    assert "cluster ids from Units column unit_name" in res.output
    rows, header = _phy_rows(phy / "cluster_celltype.tsv")
    assert header == ["cluster_id", "celltype"]
    assert rows == bridge  # phy shows each cluster the label the bridge gives it

    # --id-column id: the NWB unit ids, said so
    res = _run("export", annotated, "--phy", phy, "--id-column", "id", "--overwrite")
    assert res.exit_code == 0 and "cluster ids from the NWB unit ids" in res.output, res.output
    by_id, _ = _phy_rows(phy / "cluster_celltype.tsv")
    assert sorted(by_id) == list(range(N_UNITS)) and by_id != bridge
    assert by_id == {i: bridge[NAMES[i]] for i in range(N_UNITS)}


def test_phy_cluster_ids_stay_the_nwb_ids_without_integer_unit_names(demo_annotated, tmp_path):
    from nwb_celltype.bridges import annotations_dataframe
    from nwb_celltype.phy import default_cluster_ids

    res = _run("export", demo_annotated, "--phy", tmp_path)
    assert res.exit_code == 0 and "cluster ids from the NWB unit ids" in res.output, res.output
    rows, _ = _phy_rows(tmp_path / "cluster_celltype.tsv")
    df = annotations_dataframe(demo_annotated)
    assert list(rows) == [int(i) for i in df.index]
    # text, integers repeated, not phy's ids, not written as an integer
    for names in (["a", "1"], ["1", "01"], ["-1", "2"], [" 1", "2"]):
        two = df.iloc[:2].copy()
        two["unit_name"] = names
        assert default_cluster_ids(two) is None


def test_export_phy_defaults_to_the_cli_cluster_ids(neuroconv, tmp_path):
    """export_phy's default (cluster_ids="auto") is the command's: the same phy file from Python and
    from the CLI; the output line says the unit_name integers are not the NWB unit ids."""
    from nwb_celltype.phy import export_phy

    _, annotated = neuroconv
    res = _run("export", annotated, "--phy", tmp_path / "cli.tsv")
    assert res.exit_code == 0, res.output
    assert "not the NWB unit ids: e.g. unit id 0 is cluster 12" in res.output, res.output
    written = export_phy(annotated, tmp_path / "py.tsv")
    assert written.read_text() == (tmp_path / "cli.tsv").read_text()
    assert sorted(_phy_rows(written)[0]) == sorted(NAMES)
    by_id = export_phy(annotated, tmp_path / "ids.tsv", cluster_ids=None)  # None: the NWB unit ids
    assert sorted(_phy_rows(by_id)[0]) == list(range(N_UNITS))
    with pytest.raises(InvalidValueError, match="cluster_ids must be 'auto', None or a mapping"):
        export_phy(annotated, tmp_path / "bad.tsv", cluster_ids="unit_name")
    assert not (tmp_path / "bad.tsv").exists()


def test_the_output_line_says_when_unit_names_are_the_nwb_ids():
    from nwb_celltype.phy import describe_cluster_ids

    assert describe_cluster_ids(None) == "the NWB unit ids"
    assert "the same as the NWB unit ids" in describe_cluster_ids({0: 0, 1: 1})
    assert "e.g. unit id 1 is cluster 5" in describe_cluster_ids({0: 0, 1: 5})
    assert "cluster_ids=None for the NWB unit ids" in describe_cluster_ids({0: 5})  # Python's way
    assert "--id-column id for the NWB unit ids" in describe_cluster_ids({0: 5}, "--id-column id")


# -------------------------------------------------------------- 7: a phy field per model; --tsv line


def test_phy_field_keeps_two_models_apart_and_is_validated(demo_annotated, tmp_path):
    res = _run("export", demo_annotated, "--phy", tmp_path, "--field", "celltype_a")
    assert res.exit_code == 0 and "field celltype_a" in res.output, res.output
    res = _run("export", demo_annotated, "--phy", tmp_path, "--field", "celltype_b")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cluster_celltype_a.tsv", "cluster_celltype_b.tsv"]
    rows, header = _phy_rows(tmp_path / "cluster_celltype_b.tsv")
    assert (
        header == ["cluster_id", "celltype_b"] and rows == _phy_rows(tmp_path / "cluster_celltype_a.tsv")[0]
    )
    for bad in ("a/b", "1x", "cell type", "group", "", "../x"):
        res = _run("export", demo_annotated, "--phy", tmp_path, "--field", bad)
        assert res.exit_code == 1 and "Traceback" not in res.output and "phy field" in res.output, (
            bad,
            res.output,
        )
    res = _run("export", demo_annotated, "--tsv", tmp_path / "t.tsv", "--field", "x")
    assert res.exit_code == 1 and "--phy" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cluster_celltype_a.tsv", "cluster_celltype_b.tsv"]


def test_tsv_output_line_names_table_and_model_without_comment_lines(demo_annotated, tmp_path):
    import pandas as pd

    from nwb_celltype.bridges import annotations_dataframe

    df = annotations_dataframe(demo_annotated)
    res = _run("export", demo_annotated, "--tsv", tmp_path / "t.tsv")
    assert res.exit_code == 0, res.output
    model = df.attrs["classifier"]["parameters"]["model_name"]
    assert f"table {df.attrs['table']}" in res.output and f"model {model}" in res.output, res.output
    back = pd.read_csv(tmp_path / "t.tsv", sep="\t", index_col="unit_id")
    assert not (tmp_path / "t.tsv").read_text().startswith("#")
    assert back["cell_type"].tolist() == df["cell_type"].tolist()


# ------------------------------------------------------- 8: predictions TSV with a '#' inside an id


# an in-memory sorting has no provenance to save: SpikeInterface warns so
@pytest.mark.filterwarnings("ignore:The extractor is not serializable:UserWarning")
def test_read_predictions_keeps_a_hash_inside_a_unit_id(tmp_path):
    pytest.importorskip("spikeinterface")
    import pandas as pd
    import pynwb
    from spikeinterface.core import NumpySorting

    from nwb_celltype.classify import read_predictions
    from nwb_celltype.simulate import demo_recording_path

    with pynwb.NWBHDF5IO(str(demo_recording_path()), "r") as io:
        trains = [np.asarray(t) for t in io.read().units["spike_times"][:3]]
    ids = ["clu#7", "clu8", "NA"]
    fs = 30000.0
    sorting = NumpySorting.from_unit_dict(
        [{u: np.round(t * fs).astype(np.int64) for u, t in zip(ids, trains, strict=True)}],
        sampling_frequency=fs,
    )
    sorting.save(folder=tmp_path / "si", format="numpy_folder")
    out = tmp_path / "p.tsv"
    res = _run("predict", tmp_path / "si", "--out", out, "-q")
    assert res.exit_code == 0, res.output

    df = read_predictions(out)
    assert df["neuron_id"].tolist() == ids
    assert df.attrs["model"].split()[0] and "sha256=" in df.attrs["model"]
    assert df["label"].notna().all() and df["confidence"].notna().all() and df["reason"].ne("").all()
    # the recipe docs/library.md gives for pandas alone
    plain = pd.read_csv(out, sep="\t", skiprows=1, dtype={"neuron_id": str}, keep_default_na=False)
    assert plain["neuron_id"].tolist() == ids and plain["label"].tolist() == df["label"].tolist()


def test_docs_no_longer_recommend_comment_hash():
    text = (Path(__file__).parents[1] / "docs" / "library.md").read_text(encoding="utf-8")
    assert 'comment="#")`. Its columns' not in text and "read_predictions" in text


# ---------------------------------------------------------- 9: Units cell_type column description


def test_units_cell_type_description_covers_abstentions(demo_annotated):
    with h5py.File(demo_annotated, "r") as f:
        text = f["units/cell_type"].attrs["description"]
    text = text.decode() if isinstance(text, bytes) else str(text)
    assert "(confidence below the threshold)" not in text
    assert "below the threshold or the model abstained" in text and "'reason'" in text
    from nwb_celltype.nwb import units_columns_on_disk

    with h5py.File(demo_annotated, "r") as f:  # the owner is still read from the description
        assert units_columns_on_disk(f["units"])["cell_type"].startswith("celltype_")


# ------------------------------------------------------------- 10: the file without annotations


def test_export_of_an_unannotated_file_names_it(tmp_path):
    sim = tmp_path / "plain_session.nwb"
    made = _run("simulate", sim, "--units", 5, "--duration", 30, "--no-compression")
    assert made.exit_code == 0, made.output
    res = _run("export", sim, "--tsv", tmp_path / "t.tsv")
    assert res.exit_code == 1 and "no cell-type annotations found in" in res.output, res.output
    assert "plain_session.nwb" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "t.tsv").exists()
