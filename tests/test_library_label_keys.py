"""``library label`` with a label table keyed by the sorter's ``cluster_id`` on a file whose Units
table has no ``cluster_id`` column (NeuroConv: NWB ids 0..n-1, the sorter's ids in ``unit_name``) is
refused rather than matched against the NWB ids; ``--id-column`` says which column holds them."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from pynwb import NWBHDF5IO

from nwb_celltype.errors import LibraryError
from nwb_celltype.library import label_file, mock_library_file
from nwb_celltype.nwb import read_annotations

CLI = __import__("nwb_celltype.cli", fromlist=["main"]).main
EV = {"evidence_type": "optotagging", "labelled_by": "alice"}
# NWB ids 0..29; the sorter's cluster ids, as NeuroConv keeps them, in unit_name
SORTER_IDS = [5, 8, 11, 12, 14, 17, 20, 21, 23, 26, 27, 29, 30, 32, 33, 35, 38, 40, 41, 44]
SORTER_IDS += [45, 47, 50, 51, 53, 56, 57, 59, 60, 62]


@pytest.fixture
def neuroconv_file(tmp_path):
    return mock_library_file(
        tmp_path / "nc.nwb", n_units=30, extra_columns={"unit_name": [str(c) for c in SORTER_IDS]}
    )


def _labelled(path) -> tuple[list[int], list[str]]:
    with NWBHDF5IO(str(path), "r") as io:
        rec = read_annotations(io.read())["ground_truth"]
    return rec.unit_ids.tolist(), [str(x) for x in rec.labels]


def test_cluster_ids_without_a_cluster_id_column_are_refused(neuroconv_file, tmp_path):
    """Before, cluster ids 8 and 11 were taken as NWB ids 8 and 11: the wrong units, silently."""
    csv = tmp_path / "phy.csv"
    csv.write_text("cluster_id,label\n8,PkC_ss\n11,MLI\n")
    out = tmp_path / "o.nwb"
    with pytest.raises(
        LibraryError,
        match=r"keyed by 'cluster_id' .* has no 'cluster_id' column .*: use --id-column unit_name",
    ):
        label_file(neuroconv_file, csv, out=out, **EV)
    assert not out.exists()
    # told which column: the units whose unit_name is 8 and 11 (NWB ids 1 and 2)
    label_file(neuroconv_file, csv, out=out, id_column="unit_name", **EV)
    assert _labelled(out) == ([1, 2], ["PkC_ss", "MLI"])
    # the user says the cluster ids are the NWB ids: that is their call
    label_file(neuroconv_file, csv, out=tmp_path / "ids.nwb", id_column="id", **EV)
    assert _labelled(tmp_path / "ids.nwb") == ([8, 11], ["PkC_ss", "MLI"])


def test_no_unit_name_hint_when_its_values_do_not_match(tmp_path):
    src = mock_library_file(tmp_path / "plain.nwb", n_units=4)
    csv = tmp_path / "phy.csv"
    csv.write_text("cluster_id,label\n1,PkC_ss\n")
    with pytest.raises(LibraryError, match="has no 'cluster_id' column") as err:
        label_file(src, csv, out=tmp_path / "o.nwb", **EV)
    assert "unit_name" not in str(err.value) and "--id-column id" in str(err.value)
    named = mock_library_file(tmp_path / "named.nwb", n_units=4, extra_columns={"unit_name": list("abcd")})
    with pytest.raises(LibraryError, match="has no 'cluster_id' column") as err:
        label_file(named, csv, out=tmp_path / "o.nwb", **EV)
    assert "use --id-column unit_name" not in str(err.value)


def test_keys_named_as_nwb_ids_still_match_the_nwb_ids(neuroconv_file, tmp_path):
    csv = tmp_path / "ids.csv"
    csv.write_text("unit_id,label\n8,PkC_ss\n")
    label_file(neuroconv_file, csv, out=tmp_path / "o.nwb", **EV)
    assert _labelled(tmp_path / "o.nwb") == ([8], ["PkC_ss"])


def test_cli_refusal_is_one_line(neuroconv_file, tmp_path):
    csv = tmp_path / "phy.csv"
    csv.write_text("cluster_id,label\n8,PkC_ss\n")
    args = ["library", "label", str(neuroconv_file), "--labels", str(csv), "--out", str(tmp_path / "o.nwb")]
    args += ["--evidence-type", "optotagging", "--labelled-by", "alice"]
    res = CliRunner().invoke(CLI, args)
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1 and "use --id-column unit_name" in res.output
    res = CliRunner().invoke(CLI, [*args, "--id-column", "unit_name"])
    assert res.exit_code == 0, res.output
    assert _labelled(tmp_path / "o.nwb") == ([1], ["PkC_ss"])
