"""The C4 per-neuron HDF5 importer, on small files written here in that format."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from nwb_celltype.errors import LibraryError, NotNWBError, OutputError
from nwb_celltype.library import import_c4h5, read_c4h5, validate_library
from nwb_celltype.library.c4h5 import evidence_type_from_source
from nwb_celltype.library.manifest import create_manifest

RATE = 30000.0


def write_c4_file(path, neurons, lab="hausser"):
    """Write ``neurons`` (dicts of C4 fields) the way npyx does: one ``<lab>_neuron_<n>`` group each
    plus a hard link ``datasets/<dataset>/<unit>``; strings as UTF-8 bytes."""
    with h5py.File(path, "w") as f:
        for n, fields in enumerate(neurons):
            g = f.create_group(f"{lab}_neuron_{n}")
            for k, v in fields.items():
                g[k] = np.bytes_(v.encode()) if isinstance(v, str) else v
            f[f"datasets/{fields['dataset_id']}/{fields['neuron_relative_id']}"] = g
    return path


def c4_neuron(rng, dataset, unit, label="", source="", expert="", layer="", n_spikes=400, n_ch=4):
    spikes = np.sort(rng.choice(int(120 * RATE), n_spikes, replace=False)).astype(np.uint32)
    sane = np.ones(n_spikes, bool)
    sane[:10] = False  # C4's quality masks drop these
    wf = rng.normal(0, 0.05, (n_ch, 120)).astype(np.float32)
    wf[1, 40:44] -= 1.0
    return {
        "lab_id": "hausser",
        "dataset_id": dataset,
        "neuron_relative_id": unit,
        "sampling_rate": RATE,
        "spike_indices": spikes,
        "sane_spikes": sane,
        "fn_fp_filtered_spikes": np.ones(n_spikes, bool),
        "mean_waveform_preprocessed": wf,
        "channel_ids": np.arange(10 + unit, 10 + unit + n_ch, dtype=np.uint16),
        "channelmap": np.c_[np.zeros(n_ch), 20.0 * np.arange(n_ch)],
        "ground_truth_label": label,
        "ground_truth_source": source,
        "expert_label": expert,
        "phyllum_layer": layer,
        "human_layer": "",
        "optostims": np.array([[1.0, 1.05], [2.0, 2.05]]),
        "line": "Pvalb-Cre",
    }


@pytest.fixture
def c4_file(tmp_path):
    rng = np.random.default_rng(0)
    neurons = [
        c4_neuron(rng, "2020-01-01_m1_probe1", 3, "PkC_ss", "optotagging ChR2", "PkC_ss", "PCL"),
        c4_neuron(rng, "2020-01-01_m1_probe1", 7, "", "", "MLI", "ML"),
        c4_neuron(rng, "2020-01-01_m1_probe1", 9, "unlabelled", "", "", "GCL"),
        c4_neuron(rng, "2020-02-02_m2_probe1", 1, "GoC", "gabazine pharmacology", "", "granular"),
        c4_neuron(rng, "2020-02-02_m2_probe1", 2, "MFB", "", "", ""),
    ]
    return write_c4_file(tmp_path / "c4.h5", neurons)


def test_read_c4h5_decodes_fields_and_applies_quality_mask(c4_file):
    neurons = read_c4h5(c4_file)
    assert [n.key for n in neurons] == [f"hausser_neuron_{i}" for i in range(5)]
    n0 = neurons[0]
    assert n0.ground_truth_label == "PkC_ss" and n0.ground_truth_source == "optotagging ChR2"
    assert n0.n_spikes_raw == 400 and len(n0.spike_times_s) == 390  # 10 insane spikes dropped
    assert n0.waveform.shape == (120, 4)  # samples x channels
    assert np.argmin(n0.waveform.min(axis=0)) == 1
    assert n0.optostims.shape == (2, 2)
    assert len(read_c4h5(c4_file, quality_filter=False)[0].spike_times_s) == 400


def test_import_c4h5_writes_one_file_per_dataset_with_labels(c4_file, tmp_path):
    from pynwb import NWBHDF5IO

    from nwb_celltype.library._annotations import read_ground_truth

    files = import_c4h5(c4_file, tmp_path / "nwb", labelled_at="2023-06-01T00:00:00+00:00")
    assert [f.name for f in files] == ["hausser_2020-01-01-m1-probe1.nwb", "hausser_2020-02-02-m2-probe1.nwb"]
    with NWBHDF5IO(str(files[0]), "r") as io:
        nwb = io.read()
        units = nwb.units
        assert len(units) == 3
        assert list(units["c4_relative_id"].data[:]) == [3, 7, 9]
        assert list(units["layer"].data[:]) == ["PCL", "ML", "GCL"]
        assert units["waveform_mean"].data.shape == (3, 120, 4)
        np.testing.assert_allclose(units.get_unit_spike_times(0)[:3] * RATE % 1, 0, atol=1e-6)
        np.testing.assert_allclose(units["optostims"][0], [1.0, 1.05, 2.0, 2.05])
        assert nwb.subject.species == "Mus musculus"
        gts = {g.table: g for g in read_ground_truth(nwb, kinds=("ground_truth", "expert"))}
    assert list(gts["ground_truth"].labels) == ["PkC_ss"]
    assert list(gts["ground_truth"].evidence["evidence_type"]) == ["optotagging"]
    assert "optotagging ChR2" in gts["ground_truth"].evidence["evidence_text"][0]
    assert list(gts["expert_labels"].labels) == ["PkC_ss", "MLI"]
    assert list(gts["expert_labels"].unit_indices) == [0, 1]
    with NWBHDF5IO(str(files[1]), "r") as io:
        nwb = io.read()
        g = read_ground_truth(nwb)[0]
        assert list(g.labels) == ["GoC", "MFB"]
        assert list(g.evidence["evidence_type"]) == ["pharmacology", "optotagging"]
        assert list(nwb.units["layer"].data[:]) == ["GCL", "unknown"]
    # the imported files form a valid library (C4 neurons have 390 spikes >= 100)
    rep = validate_library(create_manifest(files, name="c4", root=tmp_path))
    assert rep.ok, rep.summary()


def test_import_c4h5_unknown_label_names_neuron(tmp_path):
    rng = np.random.default_rng(1)
    f = write_c4_file(tmp_path / "c4.h5", [c4_neuron(rng, "d1", 0, "GrC", "opto")])
    with pytest.raises(LibraryError, match=r"hausser_neuron_0/ground_truth_label \('GrC'\)"):
        import_c4h5(f, tmp_path / "out")
    assert import_c4h5(f, tmp_path / "out2", mapping={"GrC": ""})  # mapped away: imported unlabelled
    assert import_c4h5(f, tmp_path / "out3", skip_unknown_labels=True)


def test_import_c4h5_neuron_without_channel_ids_beside_others(tmp_path):
    """A neuron whose record lacks channel_ids, in a recording whose other neurons have them, is
    imported with no electrodes (it used to fail inside hdmf with a TypeError)."""
    from pynwb import NWBHDF5IO

    rng = np.random.default_rng(2)
    neurons = [c4_neuron(rng, "d1", 0, "PkC_ss", "opto"), c4_neuron(rng, "d1", 1), c4_neuron(rng, "d1", 2)]
    del neurons[1]["channel_ids"]
    (out,) = import_c4h5(write_c4_file(tmp_path / "c4.h5", neurons), tmp_path / "out")
    with NWBHDF5IO(str(out), "r") as io:
        units = io.read().units
        rows = [list(units["electrodes"][i].index) for i in range(3)]
        channels = [list(units["electrodes"][i]["channel_id"]) for i in range(3)]
    assert len(rows[0]) == 4 and rows[1] == [] and len(rows[2]) == 4
    assert channels[0] == [10, 11, 12, 13] and channels[2] == [12, 13, 14, 15]


def test_import_c4h5_failed_write_leaves_nothing(c4_file, tmp_path, monkeypatch):
    """A write that fails half-way leaves neither the output nor a temporary file, and an existing
    output replaced with overwrite keeps its old content until the new one is complete."""
    from pynwb import NWBHDF5IO

    out = tmp_path / "nwb"
    first = import_c4h5(c4_file, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken_write(self, *args, **kwargs):
        raise RuntimeError("disk went away")

    monkeypatch.setattr(NWBHDF5IO, "write", broken_write)
    with pytest.raises(OutputError):
        import_c4h5(c4_file, out, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no temp file, old content
    fresh = tmp_path / "fresh"
    with pytest.raises(OutputError):
        import_c4h5(c4_file, fresh)
    assert list(fresh.iterdir()) == []
    assert len(first) == 2


def test_import_c4h5_rejects_other_hdf5(tmp_path):
    p = tmp_path / "x.h5"
    with h5py.File(p, "w") as f:
        f["data"] = np.arange(3)
    with pytest.raises(NotNWBError, match="not in the C4 per-neuron format"):
        read_c4h5(p)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("", "optotagging"),
        ("opto ChR2", "optotagging"),
        ("gabazine", "pharmacology"),
        ("juxtacellular", "juxtacellular"),
        ("histology", "anatomy"),
        ("expert: complex spikes", "expert"),
        ("something", "other"),
    ],
)
def test_evidence_type_from_source(source, expected):
    assert evidence_type_from_source(source) == expected
