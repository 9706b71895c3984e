"""Training sets from libraries: labels aligned with features, provenance per label, and the
on-disk feature cache keyed by content hash + feature configuration."""

from __future__ import annotations

import numpy as np
import pytest

import nwb_celltype.features as features_pkg
import nwb_celltype.io as io_pkg
from nwb_celltype.errors import LibraryError
from nwb_celltype.features.config import FeatureConfig, FeatureSet
from nwb_celltype.library import (
    create_manifest,
    label_file,
    load_training_set,
    merge_manifests,
    mock_library_file,
)


def _fake_extract(batch, config=None):
    """A cheap stand-in feature extractor (the cache, not the features, is under test here): the
    spike count and first spike time land in the arrays so that rows can be traced back to units."""
    config = config or FeatureConfig()
    n = len(batch)
    counts = batch.spike_counts.astype(np.float32)
    acg = np.zeros((n, config.acg_rate_bins, config.acg_log_points + 1), np.float32)
    acg[:, 0, 0] = counts
    first = np.array([batch.spike_times(i)[0] if c else np.nan for i, c in enumerate(batch.spike_counts)])
    return FeatureSet(
        unit_ids=np.asarray(batch.unit_ids, dtype=np.int64),
        acg=acg,
        waveform=np.zeros((n, config.waveform_samples), np.float32),
        layer=np.zeros((n, 4), np.float32),
        stats={"first_spike_s": first},
        usable=counts >= config.min_spikes,
        reasons=np.array(["" if c >= config.min_spikes else "too few spikes" for c in counts], dtype=object),
        config=config,
    )


@pytest.fixture
def counting(monkeypatch):
    """Count read_units calls; use the real extractor when the features layer provides one."""
    calls = {"read_units": 0}
    real_read = io_pkg.read_units

    def read_units(*a, **k):
        calls["read_units"] += 1
        yield from real_read(*a, **k)

    monkeypatch.setattr(io_pkg, "read_units", read_units)
    try:
        from nwb_celltype.features import extract_features  # noqa: F401
    except (ImportError, AttributeError):  # the features layer is optional for these cache tests
        monkeypatch.setattr(features_pkg, "extract_features", _fake_extract, raising=False)
    return calls


def _library(tmp_path):
    a = mock_library_file(tmp_path / "a.nwb", n_units=5, seed=1, subject_id="m1")
    b = mock_library_file(tmp_path / "b.nwb", n_units=4, seed=2, subject_id="m2", unit_ids=[10, 11, 12, 13])
    (tmp_path / "la.csv").write_text(
        "unit_id,label,evidence_type\n0,PkC_ss,optotagging\n3,MLI,pharmacology\n"
    )
    (tmp_path / "lb.csv").write_text("unit_id,label\n12,GoC\n")
    la = label_file(a, tmp_path / "la.csv", labelled_by="alice")
    lb = label_file(b, tmp_path / "lb.csv", labelled_by="bob", evidence_type="expert", evidence_text="pauses")
    return la, lb


def test_training_set_labels_features_and_provenance(tmp_path, counting):
    la, lb = _library(tmp_path)
    ma = create_manifest([la], name="labA", root=tmp_path)
    mb = create_manifest([lb], name="labB", root=tmp_path)
    manifest = merge_manifests([ma, mb], name="both")
    path = manifest.save(tmp_path / "lib.toml")
    ts = load_training_set(path, cache_dir=tmp_path / "cache")
    assert len(ts) == 9 and len(ts.features) == 9
    assert ts.features.unit_ids.tolist() == [0, 1, 2, 3, 4, 10, 11, 12, 13]
    assert ts.labels.tolist() == ["PkC_ss", "", "", "MLI", "", "", "", "GoC", ""]
    assert ts.class_counts() == {"GoC": 1, "MLI": 1, "PkC_ss": 1}
    assert ts.evidence["labelled_by"][[0, 3, 7]].tolist() == ["alice", "alice", "bob"]
    assert ts.evidence["evidence_type"][[0, 3, 7]].tolist() == ["optotagging", "pharmacology", "expert"]
    assert ts.evidence["annotation"][7] == "ground_truth"
    assert ts.file_index.tolist() == [0] * 5 + [1] * 4
    assert [r["library"] for r in ts.references] == ["labA", "labB"]
    assert ts.references[0]["sha256"] == ma.entries[0].sha256
    assert ts.references[1]["n_labelled"] == 1 and ts.references[1]["annotation_tables"] == ["ground_truth"]
    assert counting["read_units"] == 2


def test_second_run_reads_no_spikes_and_survives_missing_file(tmp_path, counting):
    la, lb = _library(tmp_path)
    path = create_manifest([la, lb], name="lib", root=tmp_path).save(tmp_path / "lib.json")
    cache = tmp_path / "cache"
    first = load_training_set(path, cache_dir=cache)
    assert counting["read_units"] == 2
    second = load_training_set(path, cache_dir=cache)
    assert counting["read_units"] == 2  # served from the cache: no units read again
    np.testing.assert_array_equal(first.features.acg, second.features.acg)
    np.testing.assert_array_equal(first.labels, second.labels)
    # the files are gone: the manifest's hashes still find their features and labels
    la.unlink()
    lb.unlink()
    third = load_training_set(path, cache_dir=cache)
    assert counting["read_units"] == 2
    np.testing.assert_array_equal(first.features.waveform, third.features.waveform)
    assert third.labels.tolist() == first.labels.tolist()
    # another feature configuration is another cache key: it needs the files
    with pytest.raises(LibraryError, match="missing and its features are not cached"):
        load_training_set(path, cache_dir=cache, config=FeatureConfig(min_spikes=50))


def test_cache_dir_from_environment_and_changed_file(tmp_path, counting, monkeypatch):
    la, lb = _library(tmp_path)
    monkeypatch.setenv("NWB_CELLTYPE_CACHE_DIR", str(tmp_path / "envcache"))
    manifest = create_manifest([la], name="lib", root=tmp_path)
    load_training_set(manifest)
    assert any((tmp_path / "envcache" / "features").glob("*.npz"))
    # plain sources (no manifest) work too, keyed by the file's own hash
    ts = load_training_set([str(lb)])
    assert ts.labels.tolist() == ["", "", "GoC", ""]
    # a file changed after the manifest was made is refused, not silently trained on
    label_file(la, tmp_path / "la.csv", labelled_by="x", in_place=True, name="second")
    with pytest.raises(LibraryError, match="does not match the manifest"):
        load_training_set(manifest)


def test_conflicting_tables_are_an_error_unless_one_is_named(tmp_path, counting):
    la, _ = _library(tmp_path)
    (tmp_path / "c.csv").write_text("unit_id,label\n0,PkC_cs\n")
    label_file(
        la, tmp_path / "c.csv", labelled_by="carol", evidence_type="expert", in_place=True, name="carol"
    )
    with pytest.raises(
        LibraryError,
        match=r"unit 0 is labelled '\w+' in table '(carol|ground_truth)' and '\w+' in table '(carol|ground_truth)'",
    ):
        load_training_set([la], cache_dir=tmp_path / "c1")
    ts = load_training_set([la], cache_dir=tmp_path / "c2", annotation_name="carol")
    assert ts.labels.tolist() == ["PkC_cs", "", "", "", ""]


@pytest.mark.network
def test_remote_entries_validate_train_and_cache(tmp_path, counting):
    """A library whose files are served over HTTP (Range requests, as DANDI's S3): validated and
    loaded through the reading layer; once cached, it loads with the server gone."""
    from nwb_celltype.library import Manifest, library_stats, validate_library
    from nwb_celltype.library._hashing import sha256_file
    from nwb_celltype.library.manifest import LibraryEntry
    from nwb_celltype.testing.servers import RangeServer

    la, lb = _library(tmp_path)
    cache = tmp_path / "cache"
    with RangeServer(tmp_path) as server:
        manifest = Manifest(
            "remote",
            [LibraryEntry(url=server.url_for(p), sha256=sha256_file(p), library="remote") for p in (la, lb)],
        )
        rep = validate_library(manifest)
        assert rep.ok, rep.summary()
        assert library_stats(manifest).counts("label") == {"GoC": 1, "MLI": 1, "PkC_ss": 1}
        first = load_training_set(manifest, cache_dir=cache)
        assert counting["read_units"] == 2
    second = load_training_set(manifest, cache_dir=cache)  # server stopped: the cache serves
    assert counting["read_units"] == 2
    assert second.labels.tolist() == first.labels.tolist() == ["PkC_ss", "", "", "MLI", "", "", "", "GoC", ""]
    assert second.references[0]["source"].startswith("http://127.0.0.1")


def test_validate_with_features_reports_unusable_labelled_units(tmp_path, counting):
    from nwb_celltype.library import validate_library

    la, lb = _library(tmp_path)
    manifest = create_manifest([la, lb], name="lib", root=tmp_path)
    assert validate_library(manifest, check_features=True, cache_dir=tmp_path / "c").ok
    # a feature configuration that needs more spikes than the units have makes them unusable
    rep = validate_library(
        manifest, check_features=True, cache_dir=tmp_path / "c", config=FeatureConfig(min_spikes=100_000)
    )
    bad = [i for i in rep.errors if i.code == "unusable-unit"]
    assert len(bad) == 3 and "unit 0 (PkC_ss): features unusable" in bad[0].message, rep.summary()


@pytest.mark.network
def test_dandiset_library_from_fake_archive(tmp_path, counting, monkeypatch):
    """A whole dandiset as a library: listed through the (fake, local) DANDI API, validated,
    summarised and loaded as a training set through the reading layer."""
    from nwb_celltype.library import library_stats, validate_library
    from nwb_celltype.testing.servers import DandiApiServer, RangeServer

    la, lb = _library(tmp_path)
    with RangeServer(tmp_path) as files, DandiApiServer(files) as api:
        api.add_asset("000123", "sub-m1/sub-m1_ses-1_ecephys.nwb", la, version="0.240101.0000")
        api.add_asset("000123", "sub-m2/sub-m2_ses-1_ecephys.nwb", lb, version="0.240101.0000")
        monkeypatch.setenv("NWB_CELLTYPE_DANDI_API_URL", api.api_url)
        monkeypatch.setenv("DANDI_NO_ET", "1")
        manifest = create_manifest(["DANDI:000123/0.240101.0000"], name="archive")
        assert [(e.dandiset, e.version, e.asset_path) for e in manifest.entries] == [
            ("000123", "0.240101.0000", "sub-m1/sub-m1_ses-1_ecephys.nwb"),
            ("000123", "0.240101.0000", "sub-m2/sub-m2_ses-1_ecephys.nwb"),
        ]
        manifest.save(tmp_path / "archive.toml")
        rep = validate_library(tmp_path / "archive.toml")
        assert rep.ok and {i.code for i in rep.warnings} == {"no-hash", "no-evidence-text"}, rep.summary()
        assert library_stats(manifest).counts("label") == {"GoC": 1, "MLI": 1, "PkC_ss": 1}
        ts = load_training_set(tmp_path / "archive.toml", cache_dir=tmp_path / "cache")
    assert ts.labels.tolist() == ["PkC_ss", "", "", "MLI", "", "", "", "GoC", ""]
    assert ts.references[1]["dandiset"] == "000123" and ts.references[1]["version"] == "0.240101.0000"
    assert counting["read_units"] == 2


def test_a_file_listed_twice_or_without_units_is_named(tmp_path, counting):
    """A file listed twice (same content) would sit on both sides of the cross-validation and count
    twice: refused, naming both entries. A file's own error names the file."""
    import shutil

    from pynwb import NWBHDF5IO
    from pynwb.testing.mock.file import mock_NWBFile

    la, lb = _library(tmp_path)
    shutil.copy(la, tmp_path / "copy.nwb")
    with pytest.raises(LibraryError, match=r"copy\.nwb has the same content as \S*a\.labelled\.nwb"):
        load_training_set([la, lb, tmp_path / "copy.nwb"], cache_dir=tmp_path / "cache")
    with NWBHDF5IO(str(tmp_path / "nounits.nwb"), "w") as io:
        io.write(mock_NWBFile())
    with pytest.raises(Exception, match=r"nounits\.nwb.*no Units table"):
        load_training_set([la, tmp_path / "nounits.nwb"], cache_dir=tmp_path / "cache")
