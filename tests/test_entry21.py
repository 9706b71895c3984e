"""Audit 21 fixes to the non-NWB entry points, with the real SpikeInterface and pynapple:

- `export --phy` / ``export_phy`` into a phy folder written by SpikeInterface's ``export_to_phy``
  (phy's clusters are 0..n-1 there, the units without spikes left out, and the SpikeInterface unit ids
  kept in ``cluster_si_unit_ids.tsv``) put each label on the cluster of its unit, not on the cluster
  whose number is the unit's SpikeInterface id; a damaged map is refused; text unit ids
  (``classify_sorting``'s DataFrame) are mapped, never written as cluster ids;
- ``classify_tsgroup`` refuses waveforms that are no single spike's (a dict of (samples, channels)
  templates, a rate given in kHz) or no numbers;
- ``classify_sorting`` sets aside templates spanning no spike's window and refuses a sorting whose
  sampling frequency is under 1 kHz;
- `predict` reads a sorting saved as zarr, names a phy folder and a saved recording, and keeps a
  sorting's unit ids and locations for a c4-3d model;
- the bridges take a predictions TSV read back with ``read_predictions``.
"""

from __future__ import annotations

import csv
import logging
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

si = pytest.importorskip("spikeinterface.core")

from nwb_celltype.cli import main  # noqa: E402
from nwb_celltype.errors import InvalidUnitsError  # noqa: E402

#: SpikeInterface unit ids of the sorting behind the phy folder: not 0..n-1, and unit 7 has no spikes
SI_IDS = [3, 10, 7, 42, 5]
EMPTY = 7


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _phy_rows(path: Path) -> dict[int, str]:
    """cluster_id -> label, as phy's load_metadata reads a cluster_<field>.tsv."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t")
        next(reader)
        return {int(r[0]): r[1] for r in reader}


def _analyzer_exported_to_phy(sorting, rec, folder):
    """A sorting analyzer of ``sorting`` with templates, exported to ``folder`` by SpikeInterface's own
    export_to_phy (no PCs, amplitudes or binary copy)."""
    from spikeinterface.exporters import export_to_phy

    an = si.create_sorting_analyzer(sorting, rec, sparse=False)
    with warnings.catch_warnings():  # SpikeInterface's own (empty units, serialisation)
        warnings.simplefilter("ignore")
        an.compute(["random_spikes", "templates"], verbose=False)
        export_to_phy(
            an, folder, compute_pc_features=False, compute_amplitudes=False, copy_binary=False, verbose=False
        )
    return an


@pytest.fixture(scope="module")
def si_phy(tmp_path_factory):
    """(sorting, phy folder): a sorting with the ids SI_IDS (unit 7 empty) exported to phy by
    SpikeInterface's own export_to_phy."""

    d = tmp_path_factory.mktemp("phy21")
    rec, gt = si.generate_ground_truth_recording(durations=[30.0], num_units=5, seed=0)
    trains = {new: gt.get_unit_spike_train(old) for new, old in zip(SI_IDS, gt.unit_ids, strict=True)}
    trains[EMPTY] = np.zeros(0, dtype=np.int64)
    sorting = si.NumpySorting.from_unit_dict([trains], sampling_frequency=gt.get_sampling_frequency())
    _analyzer_exported_to_phy(sorting, rec, d / "phy")
    return sorting, d / "phy"


def _labels_frame():
    """Annotations as annotations_dataframe gives them, written by hand: NWB ids 0..4, the
    SpikeInterface ids in unit_name, a different label per unit."""
    import pandas as pd

    return pd.DataFrame(
        {
            "cell_type": ["PkC_ss", "MLI", "not_classifiable", "GoC", "MFB"],
            "unit_name": [str(u) for u in SI_IDS],
        },
        index=pd.Index(range(5), name="unit_id"),
    )


def test_export_phy_follows_spikeinterface_cluster_map(si_phy, tmp_path, caplog):
    from nwb_celltype.phy import export_phy

    _, phy = si_phy
    # export_to_phy numbered the non-empty units 0.. in the sorting's order: 3->0, 10->1, 42->2, 5->3
    assert (phy / "cluster_si_unit_ids.tsv").is_file()
    caplog.set_level(logging.WARNING, logger="nwb_celltype")
    path = export_phy(_labels_frame(), phy)
    assert _phy_rows(path) == {0: "PkC_ss", 1: "MLI", 2: "GoC", 3: "MFB"}
    assert "unit ids [2], not written" in caplog.text  # unit 7 (no spikes) has no phy cluster
    # SpikeInterface reads the folder back with every cluster, each with its own unit's label
    from spikeinterface.extractors import read_phy

    back = read_phy(phy)
    assert list(back.unit_ids) == [3, 10, 42, 5]
    assert list(back.get_property("celltype")) == ["PkC_ss", "MLI", "GoC", "MFB"]
    # a phy folder of another sorting (no unit_name of ours among its si_unit_id) is refused
    other = _labels_frame()
    other["unit_name"] = ["a", "b", "c", "d", "e"]
    with pytest.raises(Exception, match="another sorting's clusters"):
        export_phy(other, phy, overwrite=True)
    # an explicit mapping is taken as given
    path = export_phy(_labels_frame(), tmp_path / "x.tsv", cluster_ids={i: 100 + i for i in range(5)})
    assert sorted(_phy_rows(path)) == [100, 101, 102, 103, 104]
    # ... whatever type holds its integral keys (review 21: float keys matched before the text lookup)
    for keys in (
        [float(i) for i in range(5)],
        list(np.arange(5, dtype=np.float64)),
        [str(i) for i in range(5)],
    ):
        path = export_phy(
            _labels_frame(),
            tmp_path / "y.tsv",
            cluster_ids={k: 200 + i for i, k in enumerate(keys)},
            overwrite=True,
        )
        assert _phy_rows(path) == {200: "PkC_ss", 201: "MLI", 202: "not_classifiable", 203: "GoC", 204: "MFB"}
    # unit_name held as floats (a pandas column with a missing value is float) meets the map's "3"
    floats = _labels_frame()
    floats["unit_name"] = [float(u) for u in SI_IDS]
    path = export_phy(floats, phy, overwrite=True)
    assert _phy_rows(path) == {0: "PkC_ss", 1: "MLI", 2: "GoC", 3: "MFB"}


def test_cli_export_phy_into_a_spikeinterface_phy_folder(si_phy, tmp_path):
    """The sorting written to NWB as NeuroConv writes one (the SpikeInterface ids in unit_name),
    annotated, exported into the phy folder: each phy cluster gets its own unit's label."""
    import pynwb
    from pynwb.file import Subject

    from nwb_celltype.bridges import annotations_dataframe

    sorting, phy = si_phy
    fs = sorting.get_sampling_frequency()
    nf = pynwb.NWBFile(
        "s",
        "x",
        datetime(2024, 1, 1, tzinfo=timezone.utc),
        subject=Subject(subject_id="m", species="Mus musculus"),
    )
    nf.add_unit_column("unit_name", "SpikeInterface unit id")
    for i, u in enumerate(sorting.unit_ids):
        nf.add_unit(spike_times=sorting.get_unit_spike_train(u) / fs, id=i, unit_name=str(u))
    with pynwb.NWBHDF5IO(str(tmp_path / "s.nwb"), "w") as io:
        io.write(nf)
    out = tmp_path / "s.celltype.nwb"
    assert _run("annotate", tmp_path / "s.nwb", "--out", out, "-q").exit_code == 0
    labels = annotations_dataframe(out).set_index("unit_name")["cell_type"]
    res = _run("export", out, "--phy", phy, "--field", "celltype_cli")
    assert res.exit_code == 0, res.output
    assert "4 clusters, cluster ids from SpikeInterface's cluster_si_unit_ids.tsv" in res.output
    rows = _phy_rows(phy / "cluster_celltype_cli.tsv")
    assert rows == {0: labels["3"], 1: labels["10"], 2: labels["42"], 3: labels["5"]}
    # --id-column id still writes the NWB unit ids, every unit
    res = _run("export", out, "--phy", tmp_path / "ids.tsv", "--id-column", "id")
    assert res.exit_code == 0, res.output
    assert sorted(_phy_rows(tmp_path / "ids.tsv")) == [0, 1, 2, 3, 4]


def test_tsgroup_waveforms_of_several_channels_or_a_khz_rate_are_refused(caplog):
    caplog.set_level(logging.WARNING, logger="nwb_celltype")
    nap = pytest.importorskip("pynapple")
    from nwb_celltype import classify_tsgroup

    rng = np.random.default_rng(0)
    tg = nap.TsGroup({u: nap.Ts(np.sort(rng.uniform(0, 60.0, 1500))) for u in (2, 9)})
    t = np.arange(60) / 30_000.0
    spike = -np.exp(-(((t - 0.7e-3) / 0.15e-3) ** 2)) + 0.3 * np.exp(-(((t - 1.2e-3) / 0.3e-3) ** 2))
    template = np.outer(spike, [0.2, 1.0, 0.5, 0.1])  # (60 samples, 4 channels)
    with pytest.raises(InvalidUnitsError, match=r"unit 2 has shape \(60, 4\).*peak-channel"):
        classify_tsgroup(
            tg, waveforms={2: template, 9: template}, waveform_rate_hz=30_000, set_metadata=False
        )
    # 60 samples at 30 Hz span 2 s: the rate was given in kHz
    with pytest.raises(InvalidUnitsError, match=r"60 samples, 2000 ms at waveform_rate_hz=30.*in Hz"):
        classify_tsgroup(tg, waveforms=np.stack([spike, spike]), waveform_rate_hz=30, set_metadata=False)
    # four channels laid end to end: 240 samples, 8 ms at 30 kHz is a spike's span, at 20 kHz 12 ms is
    # not, nor are 15 samples (0.5 ms) at 30 kHz: set aside with a warning, as the NWB reader does
    # (review 21: refusing the call was stricter than the reader), each unit scored from its discharge
    bare = classify_tsgroup(tg, set_metadata=False)
    for w, rate, span in ((template.T.ravel(), 20_000, "12 ms"), (spike[15:30], 30_000, "0.5 ms")):
        caplog.clear()
        df = classify_tsgroup(tg, waveforms=np.stack([w, w]), waveform_rate_hz=rate, set_metadata=False)
        assert not df["used_waveform"].any()
        assert df["reason"].str.contains(f"the waveforms set aside .*{span} at waveform_rate_hz={rate}").all()
        np.testing.assert_allclose(df["p_PkC_ss"], bare["p_PkC_ss"], atol=1e-9)
        assert "set aside, the units are classified from their discharge alone" in caplog.text
    # one channel per unit, or a (samples, 1) column, at a rate in Hz: used
    df = classify_tsgroup(
        tg, waveforms={2: spike, 9: spike[:, None]}, waveform_rate_hz=30_000, set_metadata=False
    )
    assert df["used_waveform"].all()
    # a dict naming no unit gives no waveform (nothing to check): every unit from its discharge
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df = classify_tsgroup(tg, waveforms={}, waveform_rate_hz=30_000, set_metadata=False)
    assert not df["used_waveform"].any()


@pytest.mark.filterwarnings("ignore:The (extractor|Recording) is not serializable:UserWarning")
def test_predict_reads_a_sorting_saved_as_zarr(tmp_path):
    from nwb_celltype import classify_sorting

    _, gt = si.generate_ground_truth_recording(durations=[60.0], num_units=3, seed=1)
    sorting = gt.rename_units(["a", "b", "c"])
    sorting.save(format="zarr", folder=tmp_path / "sorting.zarr")
    res = _run("predict", tmp_path / "sorting.zarr", "--out", tmp_path / "p.tsv")
    assert res.exit_code == 0, res.output
    with open(tmp_path / "p.tsv") as f:
        assert f.readline().startswith("# model:")
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert [r["neuron_id"] for r in rows] == ["a", "b", "c"]
    assert [r["used_waveform"] for r in rows] == ["False"] * 3
    want = classify_sorting(sorting, set_properties=False)
    np.testing.assert_allclose([float(r["confidence"]) for r in rows], want["confidence"], rtol=1e-5)


def test_analyzer_templates_of_no_spike_window_are_set_aside(caplog):
    """Templates spanning less than 0.8 ms or more than 10 ms (the spans the NWB reader sets a
    waveform_mean aside outside of) are set aside, the units scored from their discharge alone, as
    annotate scores the same templates written to NWB; a usual window (1 ms + 2 ms) is used."""
    from nwb_celltype import classify_sorting

    rec, sorting = si.generate_ground_truth_recording(durations=[40.0], num_units=3, seed=5)
    fs = sorting.get_sampling_frequency()
    caplog.set_level(logging.WARNING, logger="nwb_celltype")
    for before, after in ((0.3, 0.4), (5.0, 20.0)):
        an = si.create_sorting_analyzer(sorting, rec, sparse=False)
        an.compute("random_spikes", seed=0, verbose=False)
        an.compute("templates", ms_before=before, ms_after=after, verbose=False)
        n = an.get_extension("templates").get_data().shape[1]
        span_ms = n / fs * 1e3
        assert span_ms < 0.8 or span_ms > 10.0  # SpikeInterface's window, not a spike's
        caplog.clear()
        df = classify_sorting(an, set_properties=False)
        assert f"templates have {n} samples, {span_ms:.4g} ms at {fs:g} Hz" in caplog.text
        assert not df["used_waveform"].any()
        assert df["reason"].str.contains("no usable waveform: the analyzer's templates set aside").all()
        bare = classify_sorting(an, ignore_waveforms=True, set_properties=False)
        cols = [c for c in df if c.startswith("p_")]
        np.testing.assert_allclose(df[cols].to_numpy(), bare[cols].to_numpy(), atol=1e-9)
    an = si.create_sorting_analyzer(sorting, rec, sparse=False)
    an.compute("random_spikes", seed=0, verbose=False)
    an.compute("templates", ms_before=1.0, ms_after=2.0, verbose=False)
    assert classify_sorting(an, set_properties=False)["used_waveform"].all()


def test_a_sorting_whose_sampling_frequency_is_in_khz_is_refused():
    """A sorting built with its sampling frequency in kHz (30 for 30 kHz) made every spike time 1000
    times too late, scored without a word (every unit out of distribution); it is refused, the
    frames read as they are at a rate in Hz."""
    from nwb_celltype import classify_sorting

    _, gt = si.generate_ground_truth_recording(durations=[60.0], num_units=3, seed=0)
    fs = gt.get_sampling_frequency()
    trains = {u: gt.get_unit_spike_train(u) for u in gt.unit_ids}
    khz = si.NumpySorting.from_unit_dict([trains], fs / 1000)
    with pytest.raises(InvalidUnitsError, match=rf"sampling frequency is {fs / 1000:g} Hz.*given in kHz"):
        classify_sorting(khz, set_properties=False)
    assert "cell_type" not in khz.get_property_keys()
    # 1 kHz (spike times in ms as frames) resolves the 1 ms bins: read, each time frame / 1000
    from nwb_celltype.io._sorting import units_from_sorting

    ms = {u: np.round(t / fs * 1000).astype(np.int64) for u, t in trains.items()}
    batch, _ = units_from_sorting(si.NumpySorting.from_unit_dict([ms], 1000.0))
    np.testing.assert_array_equal(batch.spike_times(0), np.sort(ms[gt.unit_ids[0]]) / 1000.0)


@pytest.mark.filterwarnings("ignore:The (extractor|Recording) is not serializable:UserWarning")
def test_predict_names_a_phy_folder_and_a_saved_recording(si_phy, tmp_path):
    """A phy folder (SpikeInterface's export_to_phy) given to predict was told it 'has no
    dataset.json; write one', as if it were feature tables; a saved recording got a Python hint.
    Each is named for what it is, with the way to a folder predict reads."""
    _, phy = si_phy
    res = _run("predict", phy, "--out", tmp_path / "p.tsv")
    assert res.exit_code == 1 and res.output.startswith("Error: "), res.output
    assert "is a phy / Kilosort output folder" in res.output and "read_phy" in res.output
    assert "dataset.json" not in res.output
    rec, _ = si.generate_ground_truth_recording(durations=[2.0], num_units=2, seed=0)
    rec.save(format="zarr", folder=tmp_path / "rec.zarr", verbose=False)  # a binary folder leaves a file open
    res = _run("predict", tmp_path / "rec.zarr", "--out", tmp_path / "p.tsv")
    assert res.exit_code == 1 and res.output.startswith("Error: "), res.output
    assert "holds a SpikeInterface recording (ZarrRecordingExtractor), not a sorting" in res.output
    assert not (tmp_path / "p.tsv").exists()


def test_tsgroup_waveforms_that_are_no_numbers_get_our_error():
    """Rows of different lengths in a list, or text, raised numpy's ValueError ('inhomogeneous
    shape', 'could not convert string to float'); they get InvalidUnitsError saying what to give."""
    nap = pytest.importorskip("pynapple")
    from nwb_celltype import classify_tsgroup

    rng = np.random.default_rng(0)
    tg = nap.TsGroup({u: nap.Ts(np.sort(rng.uniform(0, 60.0, 1500))) for u in (1, 2)})
    for bad in ([np.zeros(60), np.zeros(82)], np.array([["a"] * 60, ["b"] * 60])):
        with pytest.raises(
            InvalidUnitsError, match=r"cannot be read as numbers.*\(units, samples\) float array"
        ):
            classify_tsgroup(tg, waveforms=bad, waveform_rate_hz=30_000, set_metadata=False)


def test_a_damaged_spikeinterface_cluster_map_is_refused(si_phy, tmp_path):
    """A cluster_si_unit_ids.tsv without its columns, or with cluster ids that are no integers, is
    refused naming the file (not a KeyError or a ValueError)."""
    import shutil

    from nwb_celltype.errors import InvalidValueError
    from nwb_celltype.phy import export_phy

    _, phy = si_phy
    for text, match in (
        ("cluster\tunit\n0\t3\n", "columns cluster_id and si_unit_id"),
        ("cluster_id\tsi_unit_id\nx\t3\n", r"cluster_id column holds \['x'\], where phy's cluster ids are"),
        ("cluster_id\tsi_unit_id\n0\t3\n0\t10\n", "cluster_id column repeats ids"),
    ):
        bad = tmp_path / "phy"
        shutil.rmtree(bad, ignore_errors=True)
        bad.mkdir()
        (bad / "cluster_si_unit_ids.tsv").write_text(text)
        with pytest.raises(InvalidValueError, match=match):
            export_phy(_labels_frame(), bad)
        assert not (bad / "cluster_celltype.tsv").exists()
    assert (phy / "cluster_si_unit_ids.tsv").is_file()


@pytest.mark.filterwarnings("ignore:The (extractor|Recording) is not serializable:UserWarning")
def test_predict_with_a_c4_model_keeps_the_sortings_unit_ids_and_locations(tmp_path, demo_bundle):
    """A c4-3d model's features carry no metadata: `predict --model <c4 bundle>` on a saved analyzer
    wrote unit_id 0..n-1, which a sorting with the ids 3, 10, 7 would be joined on wrongly, and lost
    the sorting's brain_area, so units recorded outside the cerebellar cortex kept their labels. The
    rows now carry the sorting's ids (neuron_id, and row the position) and its locations count."""
    from nwb_celltype.classify import predict_features, read_predictions
    from nwb_celltype.reasons import OUTSIDE_REASON

    rec, gt = si.generate_ground_truth_recording(durations=[60.0], num_units=3, seed=0)
    sorting = gt.rename_units(np.array([3, 10, 7]))
    sorting.set_property("brain_area", np.array(["CA1", "CA1", "CA1"]))
    an = si.create_sorting_analyzer(sorting, rec, sparse=False)
    an.compute(["random_spikes", "templates"], verbose=False)
    an.save_as(format="binary_folder", folder=tmp_path / "an")
    assert demo_bundle.feature_family == "c4-3d"
    res = _run("predict", tmp_path / "an", "--out", tmp_path / "p.tsv", "--model", demo_bundle.path)
    assert res.exit_code == 0, res.output
    df = read_predictions(tmp_path / "p.tsv")
    assert list(df["neuron_id"]) == ["3", "10", "7"] and list(df["row"]) == [0, 1, 2]
    assert "unit_id" not in df
    assert (df["label"] == "unclassified").all() and df["reason"].str.contains(OUTSIDE_REASON).all()
    assert "3 units recorded outside the cerebellar cortex" in res.output
    # --any-region: the same units labelled as the model sees them, ids kept
    free = predict_features(tmp_path / "an", model=demo_bundle, any_region=True)
    assert [r["neuron_id"] for r in free.rows()] == ["3", "10", "7"]
    assert not any(OUTSIDE_REASON in r["reason"] for r in free.rows())


@pytest.mark.filterwarnings("ignore:The (extractor|Recording) is not serializable:UserWarning")
def test_bridges_take_a_predictions_tsv_read_back(tmp_path):
    """`predict` on a saved sorting, its TSV read back with read_predictions, given to the bridges:
    a KeyError('cell_type') before; now each unit of the sorting gets its row's label, confidence and
    top probability, matched on neuron_id. A DataFrame with neither layout is refused naming the
    columns."""
    import pandas as pd

    nap = pytest.importorskip("pynapple")
    from nwb_celltype.bridges import set_pynapple_metadata, set_spikeinterface_properties
    from nwb_celltype.classify import read_predictions
    from nwb_celltype.errors import InvalidValueError

    _, gt = si.generate_ground_truth_recording(durations=[60.0], num_units=3, seed=2)
    sorting = gt.rename_units(np.array([12, 4, 30]))
    sorting.save(folder=tmp_path / "s")
    assert _run("predict", tmp_path / "s", "--out", tmp_path / "p.tsv", "-q").exit_code == 0
    with open(tmp_path / "p.tsv") as f:  # the file as written, read here without the package
        f.readline()
        rows = {r["neuron_id"]: r for r in csv.DictReader(f, delimiter="\t")}
    df = read_predictions(tmp_path / "p.tsv")
    # the sorting in another order: matched by id, not by row
    other = sorting.select_units([30, 12, 4])
    set_spikeinterface_properties(other, df)
    for u, label, conf, prob in zip(
        other.unit_ids,
        other.get_property("cell_type"),
        other.get_property("cell_type_confidence"),
        other.get_property("cell_type_probability"),
        strict=True,
    ):
        r = rows[str(u)]
        assert label == r["label"]
        assert conf == pytest.approx(float(r["confidence"]), rel=1e-5)
        assert prob == pytest.approx(max(float(v) for k, v in r.items() if k.startswith("p_")), rel=1e-5)
    tg = nap.TsGroup({u: nap.Ts(np.sort(sorting.get_unit_spike_train(u) / 25_000.0)) for u in (4, 30)})
    set_pynapple_metadata(tg, df)
    assert list(tg.cell_type) == [rows["4"]["label"], rows["30"]["label"]]
    with pytest.raises(InvalidValueError, match=r"needs a cell_type column.*has neither"):
        set_spikeinterface_properties(sorting, pd.DataFrame({"x": [1, 2, 3]}))
    with pytest.raises(InvalidValueError, match=r"lack the columns \['confidence', 'probability'\]"):
        set_pynapple_metadata(tg, pd.DataFrame({"cell_type": ["MLI"]}, index=[4]))


def test_classify_sorting_labels_go_to_the_sortings_phy_folder(tmp_path):
    """Before NWB: classify_sorting's DataFrame (indexed by the sorting's own ids, text here) given to
    export_phy for the phy folder SpikeInterface exported from the same analyzer: each cluster gets its
    unit's label (int() of 'cell-3' raised ValueError before); without a map the text ids are refused
    as phy cluster ids, not written."""

    from nwb_celltype import classify_sorting
    from nwb_celltype.errors import InvalidValueError
    from nwb_celltype.phy import export_phy

    rec, gt = si.generate_ground_truth_recording(durations=[60.0], num_units=3, seed=3)
    sorting = gt.rename_units(["cell-3", "cell-0", "cell-9"])
    an = _analyzer_exported_to_phy(sorting, rec, tmp_path / "phy")
    df = classify_sorting(an, set_properties=False, threshold=1.0)
    path = export_phy(df, tmp_path / "phy")
    # export_to_phy numbered the clusters in the sorting's order
    assert _phy_rows(path) == {
        0: df.loc["cell-3", "cell_type"],
        1: df.loc["cell-0", "cell_type"],
        2: df.loc["cell-9", "cell_type"],
    }
    (tmp_path / "bare").mkdir()
    with pytest.raises(InvalidValueError, match=r"cluster ids must be integers .*'cell-3'"):
        export_phy(df, tmp_path / "bare")
    assert list((tmp_path / "bare").iterdir()) == []


@pytest.mark.filterwarnings("ignore:The (extractor|Recording) is not serializable:UserWarning")
def test_predict_reads_an_analyzers_templates_only(tmp_path):
    """A saved analyzer is read for its templates alone: its other extensions (here per-spike
    waveforms whose data file is gone) are not loaded, so they neither cost memory nor warn (warnings
    are errors here: SpikeInterface warns 'Found no data for waveforms' where it loads them all)."""
    import os

    rec, sorting = si.generate_ground_truth_recording(durations=[40.0], num_units=3, seed=2)
    an = si.create_sorting_analyzer(
        sorting, rec, format="binary_folder", folder=tmp_path / "an", sparse=False
    )
    an.compute("random_spikes", seed=0, verbose=False)
    an.compute(["waveforms", "templates"], verbose=False)
    os.remove(tmp_path / "an" / "extensions" / "waveforms" / "waveforms.npy")
    res = _run("predict", tmp_path / "an", "--out", tmp_path / "p.tsv")
    assert res.exit_code == 0, res.output
    with open(tmp_path / "p.tsv") as f:
        f.readline()
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert [r["used_waveform"] for r in rows] == ["True"] * 3
