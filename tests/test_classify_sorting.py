"""Classifying a SpikeInterface sorting or sorting analyzer directly (nwb_celltype.classify_sorting),
with the real SpikeInterface: the units' spike frames and peak-channel templates, taken here with
SpikeInterface's own methods, give the same predictions as the package's feature path fed by hand."""

from __future__ import annotations

import numpy as np
import pytest

si = pytest.importorskip("spikeinterface.core")

from nwb_celltype import classify_sorting  # noqa: E402
from nwb_celltype.classify import predict_features  # noqa: E402
from nwb_celltype.errors import InvalidUnitsError  # noqa: E402
from nwb_celltype.features.discharge import extract_discharge_features  # noqa: E402
from nwb_celltype.units import UnitsBatch  # noqa: E402

CLASSES = ("PkC_ss", "PkC_cs", "MLI", "GoC", "MFB")


@pytest.fixture(scope="module")
def analyzer():
    rec, sorting = si.generate_ground_truth_recording(durations=[90.0], num_units=5, seed=3)
    sorting = sorting.rename_units([f"cell-{k}" for k in range(5)])  # string ids, as many sorters give
    an = si.create_sorting_analyzer(sorting, rec, sparse=False)
    an.compute(["random_spikes", "templates"], verbose=False)
    return an


def _by_hand(an, with_waveforms: bool) -> np.ndarray:
    """Probabilities of the default model for the analyzer's units, built here from SpikeInterface's
    own spike frames and templates (peak channel = largest peak-to-peak)."""
    s = an.sorting
    fs = s.get_sampling_frequency()
    times = [np.sort(s.get_unit_spike_train(u, segment_index=0) / fs) for u in s.unit_ids]
    tmpl = an.get_extension("templates").get_data(operator="average")
    peak = [t[:, np.argmax(t.max(0) - t.min(0))] for t in tmpl]
    batch = UnitsBatch(
        unit_ids=np.arange(len(times)),
        unit_indices=np.arange(len(times)),
        spike_times_s=np.concatenate(times),
        spike_offsets=np.r_[0, np.cumsum([len(t) for t in times])],
        waveforms=np.array(peak, dtype=np.float32) if with_waveforms else None,
        waveform_rate_hz=fs if with_waveforms else None,
    )
    return predict_features(extract_discharge_features(batch)).predictions.probabilities


def test_analyzer_units_are_classified_with_their_templates(analyzer):
    df = classify_sorting(analyzer)
    assert list(df.index) == [f"cell-{k}" for k in range(5)]
    np.testing.assert_allclose(
        df[[f"p_{c}" for c in CLASSES]].to_numpy(), _by_hand(analyzer, True), atol=1e-6
    )
    assert df["used_waveform"].all()
    assert set(df["status"]) <= {"classified", "unclassified", "not_classifiable"}
    p = df[[f"p_{c}" for c in CLASSES]].to_numpy()
    np.testing.assert_allclose(df["probability"], p.max(1))
    # the labels are on the sorting too, unit by unit
    np.testing.assert_array_equal(analyzer.sorting.get_property("cell_type"), df["cell_type"].to_numpy())
    np.testing.assert_allclose(analyzer.sorting.get_property("cell_type_confidence"), df["confidence"])
    assert df.attrs["model"]["feature_family"] == "acg-isi-wave"


def test_a_plain_sorting_is_classified_from_its_discharge(analyzer):
    s = analyzer.sorting
    trains = {u: s.get_unit_spike_train(u, segment_index=0) for u in s.unit_ids}
    sorting = si.NumpySorting.from_unit_dict([trains], sampling_frequency=s.get_sampling_frequency())
    df = classify_sorting(sorting, set_properties=False)
    np.testing.assert_allclose(
        df[[f"p_{c}" for c in CLASSES]].to_numpy(), _by_hand(analyzer, False), atol=1e-6
    )
    assert not df["used_waveform"].any()
    assert df["reason"].str.contains("discharge alone").all()
    assert "cell_type" not in sorting.get_property_keys()
    # an analyzer's units with their waveforms ignored score as the plain sorting's
    ignored = classify_sorting(analyzer, ignore_waveforms=True, set_properties=False)
    np.testing.assert_allclose(
        ignored[[f"p_{c}" for c in CLASSES]], df[[f"p_{c}" for c in CLASSES]], atol=1e-6
    )
    assert ignored["reason"].str.contains("waveforms ignored on request").all()


def test_segments_follow_one_another_without_shared_intervals():
    from nwb_celltype.io._sorting import SEGMENT_GAP_S, units_from_sorting

    fs = 30_000.0
    rng = np.random.default_rng(0)
    seg = [{"a": np.sort(rng.choice(300_000, 400, replace=False))} for _ in range(2)]
    sorting = si.NumpySorting.from_unit_dict(seg, sampling_frequency=fs)
    batch, target = units_from_sorting(sorting)
    t = batch.spike_times(0)
    assert len(t) == 800 and target is sorting
    first, second = t[:400], t[400:]
    np.testing.assert_allclose(first, seg[0]["a"] / fs)
    # the second segment starts a gap after the first one's last spike
    np.testing.assert_allclose(second, seg[1]["a"] / fs + seg[0]["a"].max() / fs + SEGMENT_GAP_S)
    assert second.min() - first.max() >= SEGMENT_GAP_S


def test_not_a_sorting_is_refused_clearly():
    with pytest.raises(InvalidUnitsError, match="SpikeInterface sorting"):
        classify_sorting(np.zeros(3))
    empty = si.NumpySorting.from_unit_dict([{}], sampling_frequency=30_000.0)
    with pytest.raises(InvalidUnitsError, match="no units"):
        classify_sorting(empty)


def test_a_pynapple_tsgroup_scores_as_its_annotated_nwb_file(tmp_path):
    """The demo recording loaded by pynapple (spike times) with its peak-channel mean waveforms read
    by pynwb gives the same probabilities as `annotate` writes for the file."""
    nap = pytest.importorskip("pynapple")
    from pynwb import NWBHDF5IO

    from nwb_celltype import classify_tsgroup
    from nwb_celltype.annotate import annotate
    from nwb_celltype.bridges import annotations_dataframe
    from nwb_celltype.simulate import demo_recording_path

    out = annotate(demo_recording_path(), out=tmp_path / "a.nwb", progress=False)
    expected = annotations_dataframe(out.output_path)
    with NWBHDF5IO(str(demo_recording_path()), "r") as io:
        f = io.read()
        ids = f.units.id[:]
        wm = np.asarray(f.units["waveform_mean"].data[:])  # (units, samples, channels)
        rate = float(f.units.waveform_rate)
        species = f.subject.species  # annotate reads it from the file; pynapple users say it
    peak = np.ptp(wm, axis=1).argmax(axis=1)  # the channel of largest peak-to-peak, as annotate reads it
    waves = {int(u): wm[i, :, peak[i]] for i, u in enumerate(ids)}
    data = nap.load_file(str(demo_recording_path()))
    units = data["units"]
    df = classify_tsgroup(units, waveforms=waves, waveform_rate_hz=rate, species=species)
    unnamed = classify_tsgroup(units, waveforms=waves, waveform_rate_hz=rate, set_metadata=False)
    data.close()
    assert list(df.index) == list(expected.index)
    cols = [f"p_{c}" for c in CLASSES]
    np.testing.assert_allclose(df[cols].to_numpy(), expected[cols].to_numpy(), atol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(df["cell_type"].to_numpy(), expected["cell_type"].to_numpy())
    np.testing.assert_array_equal(np.asarray(units.cell_type), df["cell_type"].to_numpy())  # metadata set
    # without the species, only the labels the species rule withheld differ (mouse: GoC)
    from nwb_celltype.model.real_species import SPECIES_REASON

    withheld = expected["reason"].str.startswith(SPECIES_REASON).to_numpy()
    assert species == "Mus musculus" and withheld.any()
    # (a withheld unit may also be below its floor: unlabelled either way)
    assert unnamed["cell_type"][withheld].isin(["GoC", "unclassified"]).all()
    assert (unnamed["cell_type"] == "GoC").any() and (unnamed["cell_type"] != "GoC")[~withheld].all()
    np.testing.assert_array_equal(unnamed["cell_type"][~withheld], expected["cell_type"][~withheld])
    # without waveforms: every unit from its discharge alone
    bare = classify_tsgroup(nap.TsGroup({int(u): units[u] for u in units.index}), set_metadata=False)
    assert not bare["used_waveform"].any()


def test_tsgroup_input_errors_are_clear():
    nap = pytest.importorskip("pynapple")
    from nwb_celltype import classify_tsgroup

    tg = nap.TsGroup({1: nap.Ts(np.sort(np.random.default_rng(0).uniform(0, 100, 500)))})
    with pytest.raises(InvalidUnitsError, match="waveform_rate_hz"):
        classify_tsgroup(tg, waveforms=np.zeros((1, 60)))
    with pytest.raises(InvalidUnitsError, match="one row per unit"):
        classify_tsgroup(tg, waveforms=np.zeros((2, 60)), waveform_rate_hz=30_000)
    with pytest.raises(InvalidUnitsError, match="pynapple TsGroup"):
        classify_tsgroup([1, 2, 3])


def test_an_analyzer_without_templates_says_how_to_use_the_waveforms(analyzer, caplog):
    bare = si.create_sorting_analyzer(analyzer.sorting, analyzer.recording, sparse=False)
    with caplog.at_level("WARNING"):
        df = classify_sorting(bare, set_properties=False)
    assert not df["used_waveform"].any()
    assert "compute(['random_spikes', 'templates'])" in caplog.text


@pytest.mark.filterwarnings("ignore:The (extractor|Recording) is not serializable:UserWarning")
def test_predict_reads_a_saved_analyzer_or_sorting(analyzer, tmp_path):
    """`nwb-celltype predict FOLDER` on a SpikeInterface analyzer saved to disk (binary folder and
    zarr) and on a saved sorting: one row per unit, its SpikeInterface id as neuron_id, the same
    probabilities as classify_sorting on the object in memory."""
    import csv

    from click.testing import CliRunner

    from nwb_celltype.cli import main

    expected = classify_sorting(analyzer, set_properties=False)
    cols = [f"p_{c}" for c in CLASSES]
    plain = classify_sorting(analyzer, ignore_waveforms=True, set_properties=False)
    saved = {
        "binary": analyzer.save_as(format="binary_folder", folder=tmp_path / "an"),
        "zarr": analyzer.save_as(format="zarr", folder=tmp_path / "an.zarr"),
    }
    analyzer.sorting.save(folder=tmp_path / "sorting")
    for folder, want, waveform in (
        (tmp_path / "an", expected, True),
        (tmp_path / "an.zarr", expected, True),
        (tmp_path / "sorting", plain, False),
    ):
        out = tmp_path / f"{folder.name}.tsv"
        res = CliRunner().invoke(main, ["predict", str(folder), "--out", str(out)])
        assert res.exit_code == 0, res.output
        with open(out) as f:
            f.readline()
            rows = list(csv.DictReader(f, delimiter="\t"))
        assert [r["neuron_id"] for r in rows] == [str(u) for u in want.index]
        got = np.array([[float(r[c]) for c in cols] for r in rows])
        np.testing.assert_allclose(got, want[cols].to_numpy(), atol=1e-5)
        assert all((r["used_waveform"] == "True") == waveform for r in rows)
    assert saved


def test_median_templates_damaged_folders_and_existing_labels(analyzer, tmp_path, caplog):
    """From an audit: an analyzer whose templates hold a median only raised SpikeInterface's
    "operator=average" error; a damaged saved analyzer printed a traceback; labels already on the
    sorting were replaced without a word."""
    import logging
    import shutil

    from click.testing import CliRunner

    from nwb_celltype.cli import main

    rec, sorting = si.generate_ground_truth_recording(durations=[60.0], num_units=3, seed=4)
    med = si.create_sorting_analyzer(sorting, rec, sparse=False)
    med.compute(["random_spikes", "waveforms"], verbose=False)
    med.compute("templates", operators=["median"], verbose=False)
    caplog.set_level(logging.WARNING, logger="nwb_celltype")
    df = classify_sorting(med)
    assert df["used_waveform"].all() and "median templates" in caplog.text
    caplog.clear()
    classify_sorting(med)  # the sorting now has cell_type: a second run says it replaces them
    assert "replacing the existing unit properties of the sorting cell_type" in caplog.text
    import warnings

    with warnings.catch_warnings():  # SpikeInterface: "provenance will not be saved" (not ours)
        warnings.simplefilter("ignore", UserWarning)
        med.save_as(format="binary_folder", folder=tmp_path / "an")
    shutil.rmtree(tmp_path / "an" / "sorting")
    res = CliRunner().invoke(main, ["predict", str(tmp_path / "an"), "--out", str(tmp_path / "p.tsv")])
    assert res.exit_code == 1 and res.output.startswith("Error: ") and "cannot load it" in res.output, (
        res.output
    )


def test_tsgroup_in_milliseconds_a_dataframe_and_unknown_waveform_keys_are_named(caplog):
    import logging

    import pandas as pd

    nap = pytest.importorskip("pynapple")
    from nwb_celltype import classify_tsgroup

    rng = np.random.default_rng(0)
    trains = {u: np.sort(rng.uniform(0, 120.0, 600)) for u in (3, 8, 11)}
    caplog.set_level(logging.WARNING, logger="nwb_celltype")
    classify_tsgroup(nap.TsGroup({u: nap.Ts(t * 1000.0) for u, t in trains.items()}), set_metadata=False)
    assert "look like milliseconds" in caplog.text
    caplog.clear()
    g = nap.TsGroup({u: nap.Ts(t) for u, t in trains.items()})
    classify_tsgroup(g, waveforms={"3": np.zeros(60)}, waveform_rate_hz=30000, set_metadata=False)
    assert "name no unit of the TsGroup" in caplog.text and "milliseconds" not in caplog.text
    with pytest.raises(InvalidUnitsError, match="got a pandas DataFrame"):
        classify_tsgroup(pd.DataFrame({"spike_times": [trains[3]]}))
