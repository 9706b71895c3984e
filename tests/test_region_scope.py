"""Units recorded outside the cerebellar cortex get no label: the Allen CCF scope of an electrode's
location, the reader's per-unit location, and ``annotate`` on the demo recording with its electrodes
relabelled (a real NWB file, the default model, the CLI)."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from nwb_celltype.annotate import annotate
from nwb_celltype.cli import main
from nwb_celltype.io import location_scope
from nwb_celltype.simulate import demo_recording_path

ELECTRODES = "general/extracellular_ephys/electrodes/location"


@pytest.mark.parametrize(
    ("location", "scope"),
    [
        ("CA1", "outside"),  # hippocampus
        ("VISp5", "outside"),  # visual cortex, layer 5
        ("MOBgr", "outside"),  # the olfactory bulb's granule layer, not the cerebellum's
        ("IP", "outside"),  # interposed nucleus: cerebellar, but no C4 class lives there
        ("DN", "outside"),  # dentate nucleus
        ("PL", "outside"),  # prelimbic area (IBL, Steinmetz et al. 2019), not "Purkinje layer"
        ("pl", "cerebellar cortex"),
        # Allen acronyms are case-sensitive, and cerebellar labs write some of them for other things
        ("ca1", "unknown"),
        ("VI", "unknown"),  # lobule VI, not Allen's abducens nucleus
        ("IV", "unknown"),
        ("LS", "unknown"),  # lobulus simplex
        ("PF", "unknown"),  # paraflocculus
        ("GR", "unknown"),  # granular layer
        ("gr", "unknown"),
        ("sim", "cerebellar cortex"),
        ("SIM", "cerebellar cortex"),
        ("CENT3mo", "cerebellar cortex"),
        ("CUL4, 5gr", "cerebellar cortex"),
        ("PFLgr", "cerebellar cortex"),
        ("granular layer", "cerebellar cortex"),
        ("arb", "unknown"),  # arbor vitae: a fibre tract
        ("CB", "unknown"),  # the whole cerebellum: cortex and nuclei
        ("root", "unknown"),
        ("cerebellum, lobule V", "unknown"),  # free text
        ("", "unknown"),
        (None, "unknown"),
    ],
)
def test_location_scope(location, scope):
    assert location_scope(location) == scope


def _demo_with_locations(tmp_path, name: str, location: str | None):
    path = tmp_path / name
    shutil.copyfile(demo_recording_path(), path)
    if location is not None:
        with h5py.File(path, "r+") as f:
            loc = f[ELECTRODES]
            loc[...] = np.array([location.encode()] * len(loc), dtype=object)
    return path


def _record(path):
    from nwb_celltype.nwb import read_annotations

    with h5py.File(path, "r") as f:
        (rec,) = [r for r in read_annotations(f).values() if r.classifier is not None]
    return rec


def _cell_types(path) -> tuple[np.ndarray, np.ndarray]:
    """Each unit's label and reason, in the Units table's order."""
    rec = _record(path)
    order = np.argsort(rec.unit_indices)
    return np.asarray(rec.labels, dtype=str)[order], np.asarray(rec.reasons, dtype=str)[order]


def _parameters(path) -> dict:
    return _record(path).classifier["parameters"]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """The demo recording (its sites name cerebellar lobules and layers) annotated as shipped."""
    tmp = tmp_path_factory.mktemp("scope")
    res = annotate(_demo_with_locations(tmp, "demo.nwb", None), out=tmp / "demo.annotated.nwb")
    return res, *_cell_types(tmp / "demo.annotated.nwb")


def test_cerebellar_sites_withhold_nothing(baseline):
    res, labels, _ = baseline
    assert res.outside_cerebellar_cortex == 0
    assert res.n_classified > 0


def test_units_in_the_hippocampus_get_no_label(tmp_path, baseline):
    base, base_labels, _ = baseline
    path = _demo_with_locations(tmp_path, "ca1.nwb", "CA1")
    res = annotate(path, out=tmp_path / "ca1.annotated.nwb")
    labels, reasons = _cell_types(tmp_path / "ca1.annotated.nwb")
    scored = base_labels != "not_classifiable"
    assert res.outside_cerebellar_cortex == scored.sum() > 0
    assert res.n_classified == 0
    assert set(labels[scored]) == {"unclassified"}
    assert all(
        r.startswith("recorded outside the cerebellar cortex (electrode location 'CA1')")
        for r in reasons[scored]
    )
    np.testing.assert_array_equal(labels[~scored], base_labels[~scored])
    # the provenance records the rule and its count
    params = _parameters(tmp_path / "ca1.annotated.nwb")
    assert params["any_region"] is False and params["outside_cerebellar_cortex"] == scored.sum()


def test_any_region_labels_them_as_before(tmp_path, baseline):
    _, base_labels, _ = baseline
    path = _demo_with_locations(tmp_path, "ca1.nwb", "CA1")
    out = tmp_path / "ca1.any.nwb"
    r = CliRunner().invoke(main, ["annotate", str(path), "--out", str(out), "--any-region", "--quiet"])
    assert r.exit_code == 0, r.output
    labels, _ = _cell_types(out)
    np.testing.assert_array_equal(labels, base_labels)
    assert _parameters(out)["any_region"] is True


def test_cli_summary_says_how_many(tmp_path):
    path = _demo_with_locations(tmp_path, "vis.nwb", "VISp5")
    r = CliRunner().invoke(main, ["annotate", str(path), "--out", str(tmp_path / "vis.annotated.nwb")])
    assert r.exit_code == 0, r.output
    assert "recorded outside the cerebellar cortex" in r.output and "--any-region" in r.output


def test_fibre_tract_sites_withhold_nothing(tmp_path, baseline):
    _, base_labels, _ = baseline
    path = _demo_with_locations(tmp_path, "arb.nwb", "arb")
    res = annotate(path, out=tmp_path / "arb.annotated.nwb")
    assert res.outside_cerebellar_cortex == 0
    np.testing.assert_array_equal(_cell_types(tmp_path / "arb.annotated.nwb")[0], base_labels)


def test_reader_gives_each_unit_its_electrode_location(tmp_path):
    """The location of a unit's one electrode; of its peak channel's electrode when it has several;
    "" when several electrodes disagree and no waveform says which is the peak (a NaN waveform)."""
    import datetime

    from pynwb import NWBHDF5IO, NWBFile

    from nwb_celltype.io import read_units

    nwb = NWBFile("regions", "regions", datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc))
    dev = nwb.create_device(name="probe")
    grp = nwb.create_electrode_group(name="shank", description="s", location="brain", device=dev)
    for loc in ("CA1", "SIMpu", "VISp5"):
        nwb.add_electrode(group=grp, location=loc)
    t = np.arange(200) * 0.05
    wave = np.zeros((40, 2), dtype=np.float32)
    wave[13, 1] = -100.0  # the second channel is the peak
    one = np.zeros((40, 2), dtype=np.float32)
    one[13, 0] = -100.0
    nwb.add_unit(spike_times=t, electrodes=[0], waveform_mean=one)
    nwb.add_unit(spike_times=t, electrodes=[0, 1], waveform_mean=wave)
    nwb.add_unit(spike_times=t, electrodes=[1, 2], waveform_mean=np.full((40, 2), np.nan, np.float32))
    with NWBHDF5IO(str(tmp_path / "r.nwb"), "w") as io:
        io.write(nwb)
    (batch,) = list(read_units(tmp_path / "r.nwb", require_waveforms=False))
    assert list(batch.extra["locations"]) == ["CA1", "SIMpu", ""]


@pytest.mark.network
def test_annotate_dandiset_applies_the_rule_and_any_region_redoes(tmp_path, baseline):
    """A dandiset whose asset's sites say CA1: every scored unit withheld and counted in the record
    and the summary; a rerun with any_region labels them (the asset is redone, as a changed setting)."""
    import csv

    from nwb_celltype.batch import annotate_dandiset
    from nwb_celltype.testing.servers import DandiApiServer, RangeServer

    _, base_labels, _ = baseline
    root = tmp_path / "ds"
    (root / "sub-1").mkdir(parents=True)
    asset = _demo_with_locations(root / "sub-1", "sub-1_ecephys.nwb", "CA1")
    out = tmp_path / "out"
    with RangeServer(root) as files, DandiApiServer(files) as api:
        api.add_asset("000078", "sub-1/sub-1_ecephys.nwb", asset)
        res = annotate_dandiset("000078@draft", out, workers=1, dandi_api_url=api.api_url)
        (rec,) = res.to_dict()["assets"]
        scored = int((base_labels != "not_classifiable").sum())
        assert (
            rec["status"] == "done"
            and rec["outside_cerebellar_cortex"] == scored
            and rec["n_classified"] == 0
        )
        with open(out / "celltype-summary.tsv") as fh:
            (row,) = list(csv.DictReader(fh, delimiter="\t"))
        assert int(row["outside_cerebellar_cortex"]) == scored
        res = annotate_dandiset("000078@draft", out, workers=1, dandi_api_url=api.api_url, any_region=True)
        (rec,) = res.to_dict()["assets"]
        assert rec["this_run"] and rec["outside_cerebellar_cortex"] == 0
        np.testing.assert_array_equal(_cell_types(out / rec["output"])[0], base_labels)


def test_features_then_predict_keep_the_locations(tmp_path, baseline):
    """`nwb-celltype features` keeps each unit's electrode location; `predict` applies the rule to
    them (and `--any-region` labels them as annotate does)."""
    import csv

    _, base_labels, _ = baseline
    path = _demo_with_locations(tmp_path, "ca1.nwb", "CA1")
    runner = CliRunner()
    r = runner.invoke(main, ["features", str(path), "--out", str(tmp_path / "f.npz"), "--quiet"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["predict", str(tmp_path / "f.npz"), "--out", str(tmp_path / "p.tsv")])
    assert r.exit_code == 0 and "recorded outside the cerebellar cortex" in r.output, r.output

    def labels(tsv):
        with open(tsv) as fh:
            rows = list(csv.DictReader((x for x in fh if not x.startswith("#")), delimiter="\t"))
        return np.array([row["label"] for row in rows]), [row["reason"] for row in rows]

    got, reasons = labels(tmp_path / "p.tsv")
    scored = base_labels != "not_classifiable"
    assert set(got[scored]) == {"unclassified"}
    assert all(
        r.startswith("recorded outside the cerebellar cortex (electrode location 'CA1')")
        for r in np.array(reasons)[scored]
    )
    r = runner.invoke(
        main,
        ["predict", str(tmp_path / "f.npz"), "--out", str(tmp_path / "q.tsv"), "--any-region", "--quiet"],
    )
    assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(labels(tmp_path / "q.tsv")[0], base_labels)


def _demo_trains():
    with h5py.File(demo_recording_path(), "r") as f:
        st, idx = f["units/spike_times"][()], f["units/spike_times_index"][()]
    return np.split(st, idx[:-1])


def test_a_tsgroup_brain_area_is_its_location():
    import pandas as pd
    import pynapple as nap

    from nwb_celltype import classify_tsgroup

    trains = _demo_trains()[:20]

    def group(area):
        meta = None if area is None else pd.DataFrame({"brain_area": [area] * len(trains)})
        return nap.TsGroup({i: nap.Ts(t) for i, t in enumerate(trains)}, metadata=meta)

    plain = classify_tsgroup(group(None), set_metadata=False)
    assert (plain["status"] == "classified").any()
    pd.testing.assert_series_equal(
        classify_tsgroup(group("SIM"), set_metadata=False)["cell_type"], plain["cell_type"]
    )
    ca1 = classify_tsgroup(group("CA1"), set_metadata=False)
    assert not (ca1["status"] == "classified").any()
    scored = plain["status"] != "not_classifiable"
    assert ca1.loc[scored, "reason"].str.startswith("recorded outside the cerebellar cortex").all()
    pd.testing.assert_series_equal(
        classify_tsgroup(group("CA1"), set_metadata=False, any_region=True)["cell_type"], plain["cell_type"]
    )


def test_a_sorting_brain_area_property_is_its_location():
    pytest.importorskip("spikeinterface")
    import pandas as pd
    from spikeinterface.core import NumpySorting

    from nwb_celltype import classify_sorting

    trains = _demo_trains()[:20]
    fs = 30000.0
    spikes = {i: np.round(t * fs).astype(np.int64) for i, t in enumerate(trains)}
    plain = classify_sorting(NumpySorting.from_unit_dict([spikes], fs), set_properties=False)
    sorting = NumpySorting.from_unit_dict([spikes], fs)
    sorting.set_property("brain_area", np.array(["VISp5"] * 10 + ["CENT3gr"] * 10))
    got = classify_sorting(sorting, set_properties=False)
    first = got.index[:10]
    assert (plain.loc[first, "status"] == "classified").any()  # so the rule has labels to withhold
    assert not (got.loc[first, "status"] == "classified").any()
    assert (
        got.loc[first, "reason"].str.startswith("recorded outside the cerebellar cortex")
        | (plain.loc[first, "status"] == "not_classifiable")
    ).all()
    pd.testing.assert_series_equal(got["cell_type"].iloc[10:], plain["cell_type"].iloc[10:])


def test_c4_family_models_apply_the_rule_too():
    """A c4-3d feature set keeps no metadata: the locations reach the rule directly (they were lost,
    and a C4 model labelled a TsGroup's hippocampal units)."""
    import pandas as pd
    import pynapple as nap

    from nwb_celltype import classify_tsgroup
    from nwb_celltype.io import read_units
    from nwb_celltype.model import load_demo_bundle

    (batch,) = list(read_units(demo_recording_path(), batch_size=1000))
    rows = np.arange(20)
    waves = {int(i): batch.waveforms[i] for i in rows}

    def group(area):
        meta = None if area is None else pd.DataFrame({"brain_area": [area] * len(rows)})
        return nap.TsGroup({int(i): nap.Ts(batch.spike_times(i)) for i in rows}, metadata=meta)

    kw = dict(
        waveforms=waves, waveform_rate_hz=batch.waveform_rate_hz, model=load_demo_bundle(), threshold=1.0
    )
    plain = classify_tsgroup(group(None), set_metadata=False, **kw)
    assert (plain["status"] == "classified").any()  # so the rule has labels to withhold
    got = classify_tsgroup(group("CA1"), set_metadata=False, **kw)
    assert not (got["status"] == "classified").any()
    assert got.loc[plain["status"] != "not_classifiable", "reason"].str.startswith("recorded outside").all()
