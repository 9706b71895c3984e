"""Tests from mutation audit 19 round 2b (/work/notes/audit19_mutation2.md): each pins a documented
behaviour a mutant of the package got past the suite with. Expected values are written by hand
from the docstrings, never computed by the code under test."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from nwb_celltype.errors import InvalidValueError

# -- model/scope.py (SC3) ----------------------------------------------------------------------


def test_a_withheld_unclassified_unit_keeps_its_own_reason_after_the_location_reason():
    """``withhold_outside_cerebellar_cortex``: "unclassified ones keep their status, with this reason
    first" - the unit's own reason (why it was unclassified) stays, after the location's."""
    from nwb_celltype.model.scope import withhold_outside_cerebellar_cortex

    preds = SimpleNamespace(
        labels=np.array(["PkC_ss", "unclassified"], dtype=object),
        status=np.array(["classified", "unclassified"], dtype=object),
        reasons=np.array(["", "confidence 1.3 below the threshold 2"], dtype=object),
    )
    hit = withhold_outside_cerebellar_cortex(preds, np.array([True, True]), np.array(["CA1", "VPM"]))
    assert hit.tolist() == [True, True]
    assert preds.labels.tolist() == ["unclassified", "unclassified"]
    assert preds.status.tolist() == ["unclassified", "unclassified"]
    assert preds.reasons.tolist() == [
        "recorded outside the cerebellar cortex (electrode location 'CA1'); the model knows cerebellar "
        "cortex cells only",
        "recorded outside the cerebellar cortex (electrode location 'VPM'); the model knows cerebellar "
        "cortex cells only; confidence 1.3 below the threshold 2",
    ]


# -- phy.py (PH1, PH2) -------------------------------------------------------------------------


def _annotations(unit_ids, labels, **columns):
    """An annotations DataFrame as annotations_dataframe gives (index unit_id), built by hand."""
    n = len(unit_ids)
    data = {
        "cell_type": list(labels),
        "probability": np.full(n, 0.9),
        "confidence": np.full(n, 3.0),
        **columns,
    }
    return pd.DataFrame(data, index=pd.Index(list(unit_ids), name="unit_id"))


def test_repeated_unit_names_leave_phy_the_nwb_unit_ids(tmp_path):
    """default_cluster_ids: unit_name's integers only "where they are distinct"; otherwise None (the NWB
    unit ids), so `export --phy` of such a file writes the NWB ids instead of refusing."""
    from nwb_celltype.phy import default_cluster_ids, export_phy

    df = _annotations([0, 1, 2], ["PkC_ss", "GoC", "MLI"], unit_name=["5", "5", "7"])
    assert default_cluster_ids(df) is None
    path = export_phy(df, tmp_path)
    assert path.read_text() == "cluster_id\tcelltype\n0\tPkC_ss\n1\tGoC\n2\tMLI\n"
    # distinct names are used (the contrast: the rule is about repeats only)
    df2 = _annotations([0, 1, 2], ["PkC_ss", "GoC", "MLI"], unit_name=["5", "6", "7"])
    assert default_cluster_ids(df2) == {0: 5, 1: 6, 2: 7}


def test_a_cluster_id_mapping_missing_units_is_a_clear_error(tmp_path):
    from nwb_celltype.phy import export_phy

    df = _annotations([0, 1, 2], ["PkC_ss", "GoC", "MLI"])
    with pytest.raises(InvalidValueError, match=r"no cluster id for unit ids \[2\]"):
        export_phy(df, tmp_path, cluster_ids={0: 10, 1: 11})
    assert not (tmp_path / "cluster_celltype.tsv").exists()


# -- bridges.py (BR5, BR6, BR7) ----------------------------------------------------------------


def test_one_spike_more_than_annotated_is_another_sortings_unit():
    """_check_same_units: "a matched unit with more spikes than the annotated unit of that id is not
    that unit" - one spike more is more."""
    nap = pytest.importorskip("pynapple")
    from nwb_celltype.bridges import set_pynapple_metadata

    df = _annotations([0, 1], ["PkC_ss", "GoC"], n_spikes=[3, 3])
    units = nap.TsGroup({0: nap.Ts(t=np.array([1.0, 2.0, 3.0, 4.0])), 1: nap.Ts(t=np.array([1.0, 2.0, 3.0]))})
    with pytest.raises(
        InvalidValueError, match=r"1 of the 2 matched units have more spikes.*unit 0: 4 here, 3"
    ):
        set_pynapple_metadata(units, df)


def _sorting(unit_ids):
    pytest.importorskip("spikeinterface")
    from spikeinterface.core import NumpySorting

    spikes = {u: np.array([10, 20, 30]) for u in unit_ids}
    return NumpySorting.from_unit_dict([spikes], sampling_frequency=30000.0)


def test_repeated_unit_names_cannot_name_a_sortings_units():
    from nwb_celltype.bridges import set_spikeinterface_properties

    df = _annotations([0, 1, 2], ["PkC_ss", "GoC", "MLI"], unit_name=["a", "a", "b"])
    with pytest.raises(InvalidValueError, match="unit_name values repeat"):
        set_spikeinterface_properties(_sorting(["a", "b"]), df)


def test_a_sorting_matched_by_name_only_when_every_id_is_a_name(caplog):
    """_aligned: ids match the NWB unit ids, or, "where every id is one", the unit_name values. A
    sorting whose ids 0, 1, 2 are the NWB ids, one of which happens to be a unit_name, is matched by NWB
    id: every unit gets its own label."""
    from nwb_celltype.bridges import set_spikeinterface_properties

    df = _annotations([0, 1, 2], ["PkC_ss", "GoC", "MLI"], unit_name=["2", "7", "8"])
    sorting = _sorting([0, 1, 2])
    with caplog.at_level(logging.WARNING):
        set_spikeinterface_properties(sorting, df)
    assert sorting.get_property("cell_type").tolist() == ["PkC_ss", "GoC", "MLI"]
    assert "have no annotation" not in caplog.text


# -- library/training.py (TR5) -----------------------------------------------------------------


def test_a_label_table_row_one_past_the_units_table_is_named():
    """A ground-truth table pointing at row n of an n-row Units table: the file is inconsistent, said
    as such (not an IndexError)."""
    import pynwb

    from nwb_celltype.errors import LibraryError
    from nwb_celltype.library.training import EVIDENCE_FIELDS, _labels_of

    nf = pynwb.NWBFile("s", "x", datetime(2024, 1, 1, tzinfo=timezone.utc))
    for i in range(3):
        nf.add_unit(spike_times=[0.1, 0.2], id=i)
    gt = SimpleNamespace(
        table="gt",
        unit_indices=np.array([3]),
        labels=np.array(["PkC_ss"], dtype=object),
        evidence={f: np.array([""], dtype=object) for f in EVIDENCE_FIELDS},
    )
    with pytest.raises(LibraryError, match="points at row 3 of the Units table /units, which has 3 rows"):
        _labels_of(nf, np.array([0, 1, 2]), [gt], "/units", "f.nwb")


# -- batch/run.py: which earlier records a rerun reuses (RN1, RN2, RN4, RN3) -------------------


def _split(tmp_path, record, *, units_table=None, asset_id="id-1", version="0.240101.0000"):
    from nwb_celltype.batch.run import _split_done
    from nwb_celltype.batch.state import labelling_settings

    path = "sub-1/sub-1_ecephys.nwb"
    asset = SimpleNamespace(path=path, asset_id=asset_id, version=version)
    state = SimpleNamespace(read_record=lambda p: record if p == path else None, out_dir=tmp_path)
    settings = labelling_settings(units_table=units_table)
    derived = {path: "sub-1/sub-1_desc-celltype_ecephys.nwb"}
    records, todo, superseded = _split_done([asset], state, "0.240101.0000", "f" * 64, settings, derived)
    return path, records, todo, superseded


SKIPPED = {
    "path": "sub-1/sub-1_ecephys.nwb",
    "status": "skipped",
    "asset_id": "id-1",
    "version": "0.240101.0000",
    "units_table": None,
    "error": "no units",
}


def test_a_skipped_asset_is_reused_only_for_the_same_asset_version_and_units_table(tmp_path):
    """_split_done: an asset recorded skipped (no units) is not done again - for the same asset, at the
    same version, looked for in the same Units table; any of those changed, it is done again."""
    path, records, todo, _ = _split(tmp_path, dict(SKIPPED))
    assert list(records) == [path] and todo == [] and records[path]["this_run"] is False
    for change in (
        {"units_table": "processing/ecephys/kilosort"},  # no units in /units says nothing of that table
        {"asset_id": "id-2"},  # the asset was replaced
        {"version": "0.250101.0000"},  # another version of the dandiset
    ):
        path, records, todo, _ = _split(tmp_path, dict(SKIPPED), **change)
        assert records == {} and [a.path for a in todo] == [path], change


def test_a_failed_records_kept_output_is_superseded_by_the_rerun(tmp_path):
    """_named_outputs: the derived files an asset's record accounts for are a done record's output and
    a failed one's kept earlier output; a rerun of that asset supersedes them."""
    from nwb_celltype.batch.run import _named_outputs

    failed = {
        **SKIPPED,
        "status": "failed",
        "output": None,
        "earlier_output": {"output": "sub-1/sub-1_desc-old_ecephys.nwb", "run_id": "r1"},
    }
    assert _named_outputs(failed) == ["sub-1/sub-1_desc-old_ecephys.nwb"]
    path, records, todo, superseded = _split(tmp_path, failed)
    assert records == {} and superseded == {path: ["sub-1/sub-1_desc-old_ecephys.nwb"]}
