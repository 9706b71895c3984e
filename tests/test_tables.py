"""Per-unit feature tables (HIPPIE/C4 layout) as a library, and the acg-isi-wave family computed
from spike trains: the NWB path fed spike trains yields exactly what the table path yields."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from nwb_celltype.errors import LibraryError
from nwb_celltype.features.discharge import (
    DischargeConfig,
    align_waveform,
    compute_acg_counts,
    compute_isi_counts,
    extract_discharge_features,
)
from nwb_celltype.library.tables import import_tables, read_feature_tables, write_feature_tables
from nwb_celltype.testing.real_data import real_c4_dir

REAL = real_c4_dir() or Path("/nonexistent/real-c4")


def _brute_acg(t: np.ndarray, lags: int = 100) -> np.ndarray:
    """Reference from the definition: every ordered pair, its lag rounded to the nearest ms."""
    d = (t[None, :] - t[:, None]) * 1000.0
    d = d[(d > 0) & (d < lags + 1)]
    return np.array([np.sum((d >= k - 0.5) & (d < k + 0.5)) for k in range(1, lags + 1)], dtype=float)


def _brute_isi(t: np.ndarray, bins: int = 100) -> np.ndarray:
    isi = np.diff(np.sort(t)) * 1000.0
    return np.array([np.sum((isi >= k) & (isi < k + 1)) for k in range(bins)], dtype=float)


def _trains(seed: int, n_units: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for u in range(n_units):
        rate = [5.0, 40.0, 90.0, 1.0][u % 4]
        isi = rng.gamma(2.0, 1 / (2 * rate), size=int(rate * 15) + 120) + 0.001
        out.append(np.cumsum(isi))
    return out


def _waveform(rng, n: int, rate_hz: float) -> np.ndarray:
    t = (np.arange(n) - n * 0.4) / rate_hz * 1000.0  # ms, trough at 40 % of the window
    w = -np.exp(-(t**2) / (2 * 0.12**2)) + 0.35 * np.exp(-((t - 0.45) ** 2) / (2 * 0.25**2))
    return 80.0 * w + rng.normal(0, 0.5, n)


def _write_tables(folder: Path, acg_pos, isi, waves, rate_hz, labels) -> Path:
    """A table folder written by the test itself (not by the package) from counts and waveforms."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset.json").write_text(
        json.dumps(
            {
                "name": folder.name,
                "lab": "Test lab",
                "species": "mouse",
                "waveform_rate_hz": rate_hz,
                "labels": "optogenetically identified (test)",
            }
        )
    )
    with open(folder / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label"])
        w.writerows([[x] for x in labels])
    acg_full = np.concatenate([acg_pos[:, ::-1], np.full((len(acg_pos), 1), 7.0), acg_pos], axis=1)
    for name, arr, cols in (
        ("acg.csv", acg_full, [f"{k:.2f}" for k in range(-100, 101)]),
        ("isi_dist.csv", isi, [str(k) for k in range(100)]),
        ("waveforms.csv", waves, [str(k) for k in range(waves.shape[1])]),
    ):
        with open(folder / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(cols)
            w.writerows(arr.tolist())
    return folder


def test_counts_match_the_definition():
    for t in _trains(3):
        assert np.array_equal(compute_acg_counts(t), _brute_acg(t))
        assert np.array_equal(compute_isi_counts(t), _brute_isi(t))
    # unsorted input; lags 1.2, 2.3, 10.6, 1.1, 9.4, 8.3 ms -> centred bins 1, 2, 11, 1, 9, 8
    t = np.array([0.0106, 0.0, 0.0012, 0.0023])
    acg = compute_acg_counts(t)
    assert {k + 1: int(v) for k, v in enumerate(acg) if v} == {1: 2, 2: 1, 8: 1, 9: 1, 11: 1}
    isi = compute_isi_counts(t)  # ISIs 1.2, 1.1, 8.3 ms -> [k, k+1) bins 1, 1, 8
    assert {k: int(v) for k, v in enumerate(isi) if v} == {1: 2, 8: 1}


def test_nwb_path_equals_table_path(tmp_path):
    """The same spike trains and waveforms, once through an NWB file (read_units ->
    extract_discharge_features) and once as tables written by this test from reference counts."""
    from datetime import datetime, timezone

    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.misc import Units

    from nwb_celltype.io import read_units

    rng = np.random.default_rng(7)
    trains = _trains(11, 6)
    waves = np.stack([_waveform(rng, 100, 40000.0) for _ in trains])
    nwbfile = NWBFile(
        session_description="t", identifier="t", session_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc)
    )
    nwbfile.units = Units(name="units", description="test units", waveform_rate=40000.0, resolution=1 / 40000)
    for t, w in zip(trains, waves, strict=True):
        nwbfile.add_unit(spike_times=t, waveform_mean=w)
    path = tmp_path / "s.nwb"
    with NWBHDF5IO(path, "w") as io:
        io.write(nwbfile)
    batch = next(read_units(str(path), batch_size=100))
    nwb_fs = extract_discharge_features(batch)

    acg = np.stack([_brute_acg(t) for t in trains])
    isi = np.stack([_brute_isi(t) for t in trains])
    folder = _write_tables(tmp_path / "tables", acg, isi, waves, 40000, ["PkC_ss"] * len(trains))
    tab_fs = read_feature_tables(folder)

    assert np.array_equal(nwb_fs.acg_counts, tab_fs.acg_counts)
    assert np.array_equal(nwb_fs.isi_counts, tab_fs.isi_counts)
    np.testing.assert_allclose(nwb_fs.waveform, tab_fs.waveform, atol=1e-6)
    assert nwb_fs.has_waveform.all() and tab_fs.has_waveform.all()
    assert nwb_fs.usable.all() and tab_fs.usable.all()
    # and the waveform is where the docs say: main peak at 1 ms (sample 30 at 30 kHz), |peak| = 1
    assert np.argmax(np.abs(tab_fs.waveform), axis=1).tolist() == [30] * len(trains)
    assert np.allclose(np.abs(tab_fs.waveform).max(1), 1.0)
    assert (tab_fs.waveform[:, 30] < 0).all()  # sign kept: the trough stays negative

    # the NWB path's features written as tables (to share them) read back as the same features
    mine = write_feature_tables(tmp_path / "mine", nwb_fs, {"species": "mouse", "lab": "test lab"})
    back = read_feature_tables(mine)
    assert np.array_equal(back.acg_counts, nwb_fs.acg_counts)
    assert np.array_equal(back.isi_counts, nwb_fs.isi_counts)
    np.testing.assert_allclose(back.waveform, nwb_fs.waveform, atol=1e-6)
    assert list(back.labels) == ["unlabeled"] * len(trains)
    meta = json.loads((mine / "dataset.json").read_text())
    assert meta["species"] == "mouse" and meta["waveform_rate_hz"] == nwb_fs.config.waveform_rate_hz
    assert sorted(p.name for p in mine.iterdir()) == [
        "acg.csv",
        "dataset.json",
        "isi_dist.csv",
        "labels.csv",
        "waveforms.csv",
    ]


@pytest.mark.parametrize("rate_hz", [20000.0, 25000.0, 30000.0, 32000.0, 40000.0])
def test_align_waveform_matches_an_analytic_signal(rate_hz):
    """A Gaussian trough sampled at any rate lands on the same 30 kHz samples as the analytic shape."""
    sigma_ms, n = 0.15, int(rate_hz * 0.004)
    t = (np.arange(n) - n // 2) / rate_hz * 1000.0
    w = -50.0 * np.exp(-(t**2) / (2 * sigma_ms**2))
    out = align_waveform(w, rate_hz)
    t30 = (np.arange(75) - 30) / 30.0
    ref = -np.exp(-(t30**2) / (2 * sigma_ms**2))
    np.testing.assert_allclose(out[20:40], ref[20:40], atol=0.02)


@pytest.mark.parametrize("rate_hz", [20_000, 30_000, 32_000, 40_000])
def test_counts_on_a_sample_grid_do_not_depend_on_the_time_origin(rate_hz):
    """Spike times on a sample grid put many differences exactly on the 1 ms bin edges (at 30 kHz,
    every whole ms): the counts equal exact integer arithmetic on the samples at any offset of the
    times, where float rounding used to send such pairs to either bin."""
    rng = np.random.default_rng(rate_hz)
    # intervals of whole samples, many of them whole ms (edges), the rest anything
    steps = np.where(
        rng.uniform(size=4000) < 0.5,
        rng.integers(1, 40, 4000) * rate_hz // 1000,
        rng.integers(1, int(0.04 * rate_hz), 4000),
    )
    samples = np.cumsum(steps)
    d = samples[None, :] - samples[:, None]
    d = d[(d > 0) & (2 * d * 1000 < (2 * 100 + 1) * rate_hz)]  # lags below 100.5 ms
    lag_bin = (2 * d * 1000 + rate_hz) // (2 * rate_hz)  # k: k - 0.5 <= lag < k + 0.5 ms, exactly
    want_acg = np.bincount(lag_bin, minlength=101)[1:101].astype(float)
    isi = np.diff(samples)
    isi_bin = isi[isi * 1000 < 100 * rate_hz] * 1000 // rate_hz
    want_isi = np.bincount(isi_bin, minlength=100)[:100].astype(float)
    assert want_isi.sum() > 3000 and want_acg.sum() > 10_000
    for offset_s in (0.0, 3600.0, 86_400.0, 600_000.0, -3600.0):
        t = offset_s + samples / rate_hz
        np.testing.assert_array_equal(compute_acg_counts(t), want_acg, err_msg=f"offset {offset_s}")
        np.testing.assert_array_equal(compute_isi_counts(t), want_isi, err_msg=f"offset {offset_s}")


def test_bad_spike_times_are_dropped_with_a_note():
    """NaN and exact duplicates are dropped (no neuron fires twice at one instant), times before the
    session's reference time are kept (the counts use differences only): the unit is classified
    from the same counts as its clean train, and its reasons say what was dropped."""
    from nwb_celltype.units import UnitsBatch

    clean = _trains(2, 1)[0]
    dirty = np.r_[clean[::-1], np.nan, np.inf, clean[::10]]  # unsorted, 2 non-finite, duplicates
    early = clean - 5.0  # the first seconds before 0
    trains = [clean, dirty, early]
    batch = UnitsBatch(
        unit_ids=np.array([1, 2, 3]),
        unit_indices=np.array([0, 1, 2]),
        spike_times_s=np.concatenate(trains),
        spike_offsets=np.r_[0, np.cumsum([len(x) for x in trains])],
    )
    fs = extract_discharge_features(batch)
    assert fs.usable.all()
    for i in (1, 2):
        np.testing.assert_array_equal(fs.acg_counts[i], fs.acg_counts[0])
        np.testing.assert_array_equal(fs.isi_counts[i], fs.isi_counts[0])
    n_dup = len(clean[::10])
    assert f"2 non-finite spike times dropped; {n_dup} duplicate spike times dropped" in fs.reasons[1]
    assert "dropped" not in fs.reasons[0] and "dropped" not in fs.reasons[2]


def test_units_without_waveform_stay_usable():
    from nwb_celltype.units import UnitsBatch

    t = _trains(1, 2)
    batch = UnitsBatch(
        unit_ids=np.array([3, 4]),
        unit_indices=np.array([0, 1]),
        spike_times_s=np.concatenate(t),
        spike_offsets=np.r_[0, np.cumsum([len(x) for x in t])],
    )
    fs = extract_discharge_features(batch)
    assert fs.usable.all() and not fs.has_waveform.any()
    assert all("no waveform" in r for r in fs.reasons)
    short = UnitsBatch(
        unit_ids=np.array([1]),
        unit_indices=np.array([0]),
        spike_times_s=np.arange(50.0),
        spike_offsets=np.array([0, 50]),
    )
    fs = extract_discharge_features(short)
    assert not fs.usable[0] and "min_spikes" in fs.reasons[0]


@pytest.mark.skipif(
    not REAL.is_dir(), reason="the real tables are not on this machine (set NWB_CELLTYPE_REAL_C4)"
)
def test_real_tables_read_as_documented():
    hull = read_feature_tables(REAL / "hull")
    lis = read_feature_tables(REAL / "lisberger")
    hau = read_feature_tables(REAL / "hausser")
    # counts from ../shared/real-c4/README.md
    assert len(hull) == 79 and len(lis) == 984 and len(hau) == 1970
    vals, counts = np.unique(hull.labels, return_counts=True)
    assert dict(zip(vals, counts, strict=True)) == {
        "PkC_ss": 27,
        "PkC_cs": 26,
        "MFB": 14,
        "MLI": 10,
        "GoC": 2,
    }
    assert int((lis.labels == "unlabeled").sum()) == 484 and int((hau.labels == "GrC").sum()) == 7
    assert hull.has_discharge.all() and not hau.has_discharge.any() and hau.has_waveform.all()
    # raw counts kept as counts: ACG lag +1 is the table's column "1.00"
    with open(REAL / "hull" / "acg.csv") as f:
        header = next(csv.reader(f))
        first = next(csv.reader(f))
    assert float(first[header.index("1.00")]) == hull.acg_counts[0, 0]
    assert hull.meta["species"] == "mouse" and lis.meta["waveform_rate_hz"] == 40000


def _good(tmp_path, n=5):
    rng = np.random.default_rng(0)
    trains = _trains(5, n)
    return _write_tables(
        tmp_path / "t",
        np.stack([_brute_acg(t) for t in trains]),
        np.stack([_brute_isi(t) for t in trains]),
        np.stack([_waveform(rng, 75, 30000.0) for _ in trains]),
        30000,
        ["PkC_ss", "MLI", "unlabeled", "GoC", "GrC"][:n],
    )


def _drop_last_row(p: Path):
    lines = p.read_text().splitlines()
    p.write_text("\n".join(lines[:-1]) + "\n")


def _edit_all(fn):
    def edit(folder: Path):
        for name in ("labels.csv", "acg.csv", "isi_dist.csv", "waveforms.csv"):
            _edit_csv(name, fn)(folder)

    return edit


def _set_rate(folder: Path, rate) -> None:
    d = json.loads((folder / "dataset.json").read_text())
    d["waveform_rate_hz"] = rate
    (folder / "dataset.json").write_text(json.dumps(d))


def _edit_csv(name, fn):
    def edit(folder: Path):
        p = folder / name
        with open(p, newline="") as f:
            rows = fn(list(csv.reader(f)))
        with open(p, "w", newline="") as f:
            csv.writer(f).writerows(rows)

    return edit


BAD = [
    (
        "misaligned rows",
        lambda f: _drop_last_row(f / "isi_dist.csv"),
        "isi_dist.csv has 4 rows but the labels have 5",
    ),
    (
        "unknown label",
        _edit_csv("labels.csv", lambda r: r[:1] + [["Purkinje"]] + r[2:]),
        "unknown labels \\['Purkinje'\\]",
    ),
    ("wrong column count", _edit_csv("acg.csv", lambda r: [x[:-1] for x in r]), "expected 201 columns"),
    (
        "non-numeric",
        _edit_csv("isi_dist.csv", lambda r: r[:2] + [r[2][:7] + ["x"] + r[2][8:]] + r[3:]),
        "row 2, column 8 \\('7'\\) holds 'x', not a number",
    ),
    ("empty cell", _edit_csv("isi_dist.csv", lambda r: r[:1] + [[""] + r[1][1:]] + r[2:]), "row 1, column 1"),
    ("ragged row", _edit_csv("waveforms.csv", lambda r: r[:2] + [r[2][:-3]] + r[3:]), "row 2 has 72 values"),
    ("no dataset.json", lambda f: (f / "dataset.json").unlink(), "has no dataset.json"),
    (
        "no rate",
        lambda f: (f / "dataset.json").write_text('{"name": "t"}'),
        "waveform_rate_hz must be a positive",
    ),
    ("not an object", lambda f: (f / "dataset.json").write_text("[1, 2]"), "must hold a JSON object"),
    ("acg without isi", lambda f: (f / "isi_dist.csv").unlink(), "come together"),
    ("no labels", lambda f: (f / "labels.csv").unlink(), "neither labels.csv nor units.csv"),
    ("not utf-8", lambda f: (f / "labels.csv").write_bytes(b"label\n\xff\xfe\n"), "not UTF-8"),
    (
        "negative counts",
        _edit_csv("acg.csv", lambda r: r[:2] + [["-1"] * 201] + r[3:]),
        "acg.csv: row 2 \\(t_1\\) has a negative count",
    ),
    ("header rows only", _edit_all(lambda r: r[:1]), "hold no units"),
    (
        "no header on waveforms",
        _edit_csv("waveforms.csv", lambda r: r[1:] + r[1:2]),
        "is numbers, not a header",
    ),
    (
        "labels disagree",
        lambda f: (f / "units.csv").write_text("neuron_id,label\na,PkC_ss\nb,MLI\nc,MFB\nd,GoC\ne,GrC\n"),
        "disagree first at row 3 \\('unlabeled' vs 'MFB'\\)",
    ),
    (
        "repeated ids",
        lambda f: (f / "units.csv").write_text(
            "neuron_id,label\na,PkC_ss\nb,MLI\na,unlabeled\nd,GoC\ne,GrC\n"
        ),
        "neuron_id a \\(x2\\) are repeated",
    ),
    ("rate NaN", lambda f: _set_rate(f, float("nan")), "must be a positive number"),
    ("rate true", lambda f: _set_rate(f, True), "must be a positive number"),
    ("rate in kHz", lambda f: _set_rate(f, 30), "In kHz\\? Then write 30000"),
    (
        "semicolons",
        lambda f: (f / "acg.csv").write_text(";".join(str(k) for k in range(-100, 101)) + "\n"),
        "separated by ';'",
    ),
    ("nan", _edit_csv("isi_dist.csv", lambda r: r[:1] + [["nan"] * 100] + r[2:]), "NaN or infinite"),
]


@pytest.mark.parametrize("case,edit,match", BAD, ids=[b[0] for b in BAD])
def test_bad_tables_get_clear_errors(tmp_path, case, edit, match):
    folder = _good(tmp_path)
    read_feature_tables(folder)  # the unedited folder is fine
    edit(folder)
    with pytest.raises(LibraryError, match=match):
        read_feature_tables(folder)


def test_tables_join_manifests_stats_validate_training(tmp_path):
    from nwb_celltype.library import (
        library_stats,
        load_manifest,
        load_training_set,
        merge_manifests,
        validate_library,
    )

    folder = _good(tmp_path)
    m, infos = import_tables(folder, tmp_path / "lib" / "lib.toml")
    assert infos[0].n_units == 5 and len(m) == 1
    again = load_manifest(tmp_path / "lib" / "lib.toml")
    assert again.entries[0].tables == "../t" and again.entries[0].sha256 == infos[0].sha256
    st = library_stats(tmp_path / "lib" / "lib.toml")
    assert st.n_units == 5 and sorted(r["label"] for r in st.records) == ["GoC", "GrC", "MLI", "PkC_ss"]
    assert {r["evidence_type"] for r in st.records} == {"optotagging"}
    rep = validate_library(tmp_path / "lib" / "lib.toml")
    assert rep.ok, rep.issues
    # the labelled rows are counted as `library stats` counts them (it said "0 labelled units")
    assert rep.n_labelled == len(st.records) == 4 and "4 labelled units" in rep.summary()
    ts = load_training_set(tmp_path / "lib" / "lib.toml", config=DischargeConfig())
    assert ts.labels.tolist() == ["PkC_ss", "MLI", "", "GoC", "GrC"]
    assert ts.references[0]["kind"] == "feature tables" and ts.references[0]["sha256"] == infos[0].sha256
    # C4 features cannot come from tables: a clear error, not a crash
    with pytest.raises(LibraryError, match="acg-isi-wave"):
        load_training_set(tmp_path / "lib" / "lib.toml")
    # a changed table is caught by its hash
    shutil.copy(folder / "labels.csv", tmp_path / "labels.bak")
    (folder / "labels.csv").write_text("label\nPkC_ss\nMLI\nunlabeled\nGoC\nMFB\n")
    assert not validate_library(tmp_path / "lib" / "lib.toml").ok
    with pytest.raises(LibraryError, match="changed since the manifest"):
        load_training_set(tmp_path / "lib" / "lib.toml", config=DischargeConfig())
    merged = merge_manifests([again, again], name="m")
    assert len(merged) == 1


def test_import_tables_cli(tmp_path):
    from click.testing import CliRunner

    from nwb_celltype.cli import main

    folder = _good(tmp_path)
    res = CliRunner().invoke(
        main, ["library", "import-tables", str(folder), "--manifest", str(tmp_path / "l.toml")]
    )
    assert res.exit_code == 0, res.output
    assert "5 units" in res.output and (tmp_path / "l.toml").is_file()
    (folder / "acg.csv").write_text("1,2\n3,4\n")
    res = CliRunner().invoke(
        main, ["library", "import-tables", str(folder), "--manifest", str(tmp_path / "l2.toml")]
    )
    assert res.exit_code == 1 and res.output.startswith("Error: ") and "expected 201 columns" in res.output
    assert not (tmp_path / "l2.toml").exists()


def test_discharge_features_file_round_trip(tmp_path):
    from nwb_celltype.features import load_features_any
    from nwb_celltype.features.discharge import save_discharge_features

    fs = read_feature_tables(_good(tmp_path))
    p = save_discharge_features(tmp_path / "f.npz", fs)
    back = load_features_any(p)
    assert back.family == "acg-isi-wave" and back.labels.tolist() == fs.labels.tolist()
    assert np.array_equal(back.acg_counts, fs.acg_counts) and np.array_equal(back.waveform, fs.waveform)
    from nwb_celltype.errors import FeatureError
    from nwb_celltype.features import load_features

    with pytest.raises(FeatureError, match="not C4"):
        load_features(p)


def test_tables_saved_with_a_byte_order_mark_read_as_without(tmp_path):
    """Excel's "CSV UTF-8" starts each file with a BOM: it is not part of the first column's name."""
    folder = _good(tmp_path)
    plain = read_feature_tables(folder)
    (folder / "units.csv").write_text("neuron_id,label\na,PkC_ss\nb,MLI\nc,unlabeled\nd,GoC\ne,GrC\n")
    for name in ("labels.csv", "units.csv", "acg.csv", "dataset.json"):
        p = folder / name
        p.write_bytes(b"\xef\xbb\xbf" + p.read_bytes())
    bom = read_feature_tables(folder)
    np.testing.assert_array_equal(bom.acg_counts, plain.acg_counts)
    assert bom.labels.tolist() == plain.labels.tolist() and bom.meta["neuron_ids"] == list("abcde")


def test_tables_without_labels_are_read_for_classifying_only(tmp_path, caplog):
    folder = _good(tmp_path)
    (folder / "labels.csv").unlink()
    with pytest.raises(LibraryError, match="neither labels.csv nor units.csv"):
        read_feature_tables(folder)  # a training library needs them
    fs = read_feature_tables(folder, labels_required=False)
    assert fs.labels is None and len(fs) == 5 and fs.meta["neuron_ids"] == [f"t_{i}" for i in range(5)]
    (folder / "units.csv").write_text("neuron_id\na\nb\nc\nd\ne\n")
    assert read_feature_tables(folder, labels_required=False).meta["neuron_ids"] == list("abcde")
    (folder / "units.csv").write_text("neuron_id,label\na,Purkinje\nb,MLI\nc,x\nd,GoC\ne,GrC\n")
    with pytest.raises(LibraryError, match="unknown labels"):
        read_feature_tables(folder)
    fs = read_feature_tables(folder, labels_required=False)
    assert fs.labels.tolist() == ["unlabeled", "MLI", "unlabeled", "GoC", "GrC"]
    assert "read as unlabeled" in caplog.text


def test_import_tables_needs_a_folder_and_validate_finds_one_listed_twice(tmp_path):
    from nwb_celltype.library import validate_library

    with pytest.raises(LibraryError, match="no table folders given"):
        import_tables([], tmp_path / "l.toml")
    folder = _good(tmp_path)
    copy = shutil.copytree(folder, tmp_path / "copy")
    import_tables([folder, copy], tmp_path / "l.toml")
    rep = validate_library(tmp_path / "l.toml")
    assert not rep.ok and [i.code for i in rep.issues if i.severity == "error"] == ["duplicate-file"]


def test_predict_cli_on_broken_inputs_and_odd_outputs(tmp_path):
    """One-line errors that say what the input is; an existing output refused before any work; a
    symbolic link written through; a FIFO refused; a folder without labels classified."""
    import os

    from click.testing import CliRunner

    from nwb_celltype.cli import main
    from nwb_celltype.simulate import demo_recording_path

    def predict(src, out, *extra):
        return CliRunner().invoke(main, ["predict", str(src), "--out", str(out), "-q", *extra])

    folder = _good(tmp_path)
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "notes.npz").write_text("not an archive")
    shutil.copy(demo_recording_path(), tmp_path / "demo.nwb")
    for src, match in (
        ("empty.npz", "is not a features file: it is empty"),
        ("notes.npz", "it is not a .npz archive"),
        ("demo.nwb", "it is an NWB file: label its units with `nwb-celltype annotate`"),
    ):
        res = predict(tmp_path / src, tmp_path / "p.tsv")
        assert res.exit_code == 1 and res.output.startswith("Error: ") and match in res.output, res.output
    (tmp_path / "exists.tsv").write_text("mine")
    res = predict(tmp_path / "empty.npz", tmp_path / "exists.tsv")  # the output is checked first
    assert res.exit_code == 1 and "exists.tsv exists; pass --overwrite" in res.output
    target = tmp_path / "target.tsv"
    target.write_text("old")
    (tmp_path / "link.tsv").symlink_to(target)
    (folder / "labels.csv").unlink()  # classifying needs no labels
    res = predict(folder, tmp_path / "link.tsv", "--overwrite")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "link.tsv").is_symlink() and target.read_text().count("\n") == 1 + 1 + 5
    os.mkfifo(tmp_path / "fifo")
    res = predict(folder, tmp_path / "fifo", "--overwrite")
    assert res.exit_code == 1 and "is not a regular file" in res.output
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary or lock files


def test_features_of_other_settings_are_refused_naming_the_settings(tmp_path):
    from nwb_celltype.errors import ModelMismatchError
    from nwb_celltype.model import predict_cell_types
    from nwb_celltype.model.shipped import resolve_model

    bundle, _ = resolve_model(None)
    fs = read_feature_tables(_good(tmp_path), DischargeConfig(acg_lags_ms=50))
    with pytest.raises(ModelMismatchError, match=r"acg_lags_ms=50 \(100\)"):
        predict_cell_types(bundle, fs)


def test_library_create_with_a_folder_says_to_list_its_files(tmp_path):
    from nwb_celltype.errors import SourceNotFoundError
    from nwb_celltype.library import create_manifest

    (tmp_path / "half").mkdir()
    with pytest.raises(
        SourceNotFoundError, match=r"half is a folder; list its NWB files \(e\.g\. .*half/\*\.nwb\)"
    ):
        create_manifest([tmp_path / "half"], name="x")


def test_train_names_options_the_family_does_not_read(tmp_path, monkeypatch):
    """`train TABLES.toml --use-layer yes`: the real-data family reads no --use-layer; it was
    silently ignored."""
    from click.testing import CliRunner

    import nwb_celltype.model.discharge_bundle as db
    from nwb_celltype.cli import main

    def stop(*a, **k):
        raise LibraryError("stopped before training")

    monkeypatch.setattr(db, "train_discharge_model", stop)
    import_tables(_good(tmp_path), tmp_path / "t.toml")
    args = [
        "train",
        str(tmp_path / "t.toml"),
        "--out",
        str(tmp_path / "m"),
        "--cache-dir",
        str(tmp_path / "c"),
    ]
    res = CliRunner().invoke(main, [*args, "--use-layer", "yes", "--vae-epochs", "3"])
    assert res.exit_code == 1 and "stopped before training" in res.output
    assert "--vae-epochs, --use-layer are not read by the acg-isi-wave family" in res.output, res.output
    res = CliRunner().invoke(main, [*args, "--kernel-share", "0.5"])
    assert "not read by" not in res.output
