"""A derived file (remote source) keeps what its source says about the units and the session
(audit 18, items 1, 2, 3 and 5):

- the whole Subject (date_of_birth, strain, genotype, weight): a source giving a date of birth and no
  age gave a derived file failing DANDI's nwbinspector configuration (CRITICAL check_subject_age);
- ``timestamps_reference_time`` (spike times are copied unchanged, so their reference must be too);
- the sorter's simple per-unit columns (``unit_name``, ``cluster_id``, ``KSLabel``, metrics), so that
  SpikeInterface's ``read_nwb_sorting``, the bridges and ``export --id-column`` find the units;
- the source Units' own ``resolution`` (not 1/waveform rate).
"""

from __future__ import annotations

import datetime

import numpy as np
import pytest
from pynwb import NWBHDF5IO, NWBFile
from pynwb.file import Subject
from pynwb.misc import Units

from nwb_celltype.simulate import demo_recording_path

pytestmark = pytest.mark.network  # the derived files come from a loopback HTTP server

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
T_REF = T0 + datetime.timedelta(minutes=5)
BORN = datetime.datetime(2025, 10, 1, tzinfo=datetime.timezone.utc)
N = 12
NAMES = ["Ünït-α β", "tab\tname", "日本語", "12", "3", "45", "clu#7", "ü", "x y", "-1", "β2", "ω"]
CLUSTER_IDS = np.array([12, 3, 45, 7, 100, 2, 9, 31, 0, 8, 64, 5], dtype=np.int64)
KS = ["good", "mua"] * (N // 2)
AMPLITUDE = np.linspace(20.0, 80.0, N)
IS_GOOD = np.arange(N) % 3 != 0


def write_source(path, *, resolution=1 / 25000, waveform_rate=30000.0):
    """A NeuroConv/Kilosort-like source: ids 0..n-1, the sorter's names and metrics in columns, a
    Subject with a date of birth and no age, a timestamps reference 5 min after the session start."""
    with NWBHDF5IO(str(demo_recording_path()), "r") as io:
        u = io.read().units
        trains = [np.asarray(u["spike_times"][i]) for i in range(N)]
        waves = np.asarray(u["waveform_mean"].data[:N])
    subject = Subject(
        subject_id="m1",
        species="Mus musculus",
        sex="F",
        description="a mouse",
        date_of_birth=BORN,
        strain="C57BL/6J",
        genotype="Pcp2-Cre",
        weight="0.025 kg",
    )
    nwb = NWBFile(
        "fidelity",
        "fidelity-src",
        T0,
        timestamps_reference_time=T_REF,
        subject=subject,
        institution="somewhere",
    )
    dev = nwb.create_device(name="probe")
    grp = nwb.create_electrode_group(name="shank", description="s", location="brain", device=dev)
    for _ in range(waves.shape[-1]):
        nwb.add_electrode(group=grp, location="SIMgr")
    kw = {"resolution": resolution} if resolution is not None else {}
    nwb.units = Units(
        name="units",
        description="units",
        waveform_rate=waveform_rate,
        electrode_table=nwb.electrodes,
        **kw,
    )
    nwb.add_unit_column("unit_name", "the sorter's unit name")
    nwb.add_unit_column("cluster_id", "phy cluster id")
    nwb.add_unit_column("KSLabel", "Kilosort label")
    nwb.add_unit_column("amplitude", "mean amplitude, uV")
    nwb.add_unit_column("is_good", "curated good")
    nwb.add_unit_column("tags", "ragged: stays in the source", index=True)
    for i in range(N):
        nwb.add_unit(
            spike_times=trains[i],
            waveform_mean=waves[i],
            electrodes=list(range(waves.shape[-1])),
            unit_name=NAMES[i],
            cluster_id=int(CLUSTER_IDS[i]),
            KSLabel=KS[i],
            amplitude=float(AMPLITUDE[i]),
            is_good=bool(IS_GOOD[i]),
            tags=["a", "b"][: i % 3],
        )
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


@pytest.fixture(scope="module")
def fidelity_derived(tmp_path_factory):
    """(source path, derived path), annotated once over a loopback server."""
    from nwb_celltype.annotate import annotate
    from nwb_celltype.testing.servers import RangeServer

    root = tmp_path_factory.mktemp("fidelity")
    served = root / "served"
    served.mkdir()
    src = write_source(served / "src.nwb")
    with RangeServer(served) as files:
        res = annotate(files.url_for("src.nwb"), out=root / "derived.nwb", cache_dir=False)
    assert res.mode == "derived"
    return src, res.output_path


def test_subject_is_kept_whole_and_passes_dandi_inspection(fidelity_derived, inspect_nwb):
    from nwbinspector import Importance

    _, out = fidelity_derived
    critical = [m for m in inspect_nwb(out) if m.importance == Importance.CRITICAL]
    assert critical == [], [(m.check_function_name, m.message) for m in critical]
    with NWBHDF5IO(str(out), "r") as io:
        s = io.read().subject
        assert (s.subject_id, s.species, s.sex, s.description) == ("m1", "Mus musculus", "F", "a mouse")
        assert s.date_of_birth == BORN and s.age is None
        assert (s.strain, s.genotype, s.weight) == ("C57BL/6J", "Pcp2-Cre", "0.025 kg")


def test_timestamps_reference_time_is_kept(fidelity_derived):
    src, out = fidelity_derived
    with NWBHDF5IO(str(out), "r") as io, NWBHDF5IO(str(src), "r") as sio:
        f, s = io.read(), sio.read()
        assert f.timestamps_reference_time == T_REF != f.session_start_time
        np.testing.assert_array_equal(f.units["spike_times"][0], s.units["spike_times"][0])


def test_units_resolution_is_the_sources(fidelity_derived):
    _, out = fidelity_derived
    with NWBHDF5IO(str(out), "r") as io:
        units = io.read().units
        assert units.resolution == pytest.approx(1 / 25000)
        assert units.waveform_rate == pytest.approx(30000.0)


def test_sorter_columns_are_kept_with_unicode_names(fidelity_derived):
    _, out = fidelity_derived
    with NWBHDF5IO(str(out), "r") as io:
        units = io.read().units
        df = units.to_dataframe()
        assert len(set(units.colnames)) == len(units.colnames)
        assert "tags" not in units.colnames and "tags_index" not in units.colnames
        assert df["unit_name"].tolist() == NAMES
        np.testing.assert_array_equal(df["cluster_id"].to_numpy(), CLUSTER_IDS)
        assert df["KSLabel"].tolist() == KS
        np.testing.assert_allclose(df["amplitude"].to_numpy(), AMPLITUDE)
        np.testing.assert_array_equal(df["is_good"].to_numpy(dtype=bool), IS_GOOD)
        assert units["unit_name"].description == "the sorter's unit name"
        assert df["cell_type"].notna().all()  # the annotation's own columns keep the plain names


def test_spikeinterface_reads_the_unit_names_and_the_bridge_matches(fidelity_derived):
    pytest.importorskip("spikeinterface")
    from spikeinterface.extractors import read_nwb_sorting

    from nwb_celltype.bridges import set_spikeinterface_properties

    src, out = fidelity_derived
    sorting = read_nwb_sorting(str(out))
    assert [str(u) for u in sorting.unit_ids] == NAMES
    assert sorting.get_sampling_frequency() == pytest.approx(25000.0)
    labelled = set_spikeinterface_properties(read_nwb_sorting(str(src)), out)
    want = dict(zip(sorting.unit_ids, sorting.get_property("cell_type"), strict=True))
    assert dict(zip(labelled.unit_ids, labelled.get_property("cell_type"), strict=True)) == want


def test_export_maps_phy_cluster_ids_through_the_kept_column(fidelity_derived, tmp_path):
    from click.testing import CliRunner

    from nwb_celltype.cli import main

    _, out = fidelity_derived
    res = CliRunner().invoke(main, ["export", str(out), "--phy", str(tmp_path), "--id-column", "cluster_id"])
    assert res.exit_code == 0, res.output
    lines = (tmp_path / "cluster_celltype.tsv").read_text().splitlines()
    assert lines[0].split("\t")[0] == "cluster_id"
    assert sorted(int(x.split("\t")[0]) for x in lines[1:]) == sorted(CLUSTER_IDS.tolist())


def test_subset_of_rows_and_fallback_resolution(tmp_path):
    """derived_nwbfile on some rows of a source stating no resolution: each row keeps its own
    values, and the resolution is 1/waveform rate as before."""
    from nwb_celltype.io import open_source
    from nwb_celltype.nwb import derived_nwbfile

    src = write_source(tmp_path / "nores.nwb", resolution=None)
    rows = np.array([1, 4, 10])
    with open_source(src) as s:
        nwbfile = derived_nwbfile(
            s,
            unit_ids=rows,
            unit_rows=rows,
            spike_counts=np.zeros(3, dtype=np.int64),
            spike_data=np.zeros(0),
            layers=["GCL"] * 3,
            waveforms=np.zeros((3, 8)),
            waveform_rate_hz=30000.0,
        )
        df = nwbfile.units.to_dataframe()
        assert df["unit_name"].tolist() == [NAMES[r] for r in rows]
        np.testing.assert_array_equal(df["cluster_id"].to_numpy(), CLUSTER_IDS[rows])
        assert nwbfile.units.resolution == pytest.approx(1 / 30000)


def test_columns_of_an_earlier_annotation_are_not_copied(tmp_path):
    """An annotated source's own cell_type columns belong to its annotation table, which stays in
    the source: a derived file of it has only the columns of its own annotation."""
    from nwb_celltype.annotate import annotate
    from nwb_celltype.io import open_source
    from nwb_celltype.nwb import derived_nwbfile

    src = write_source(tmp_path / "src.nwb")
    copy = annotate(src, out=tmp_path / "src.celltype.nwb").output_path
    rows = np.arange(N)
    with open_source(copy) as s:
        nwbfile = derived_nwbfile(
            s,
            unit_ids=rows,
            unit_rows=rows,
            spike_counts=np.zeros(N, dtype=np.int64),
            spike_data=np.zeros(0),
            layers=["GCL"] * N,
            waveforms=None,
            waveform_rate_hz=None,
        )
        names = nwbfile.units.colnames
    assert "unit_name" in names and not any(c.startswith("cell_type") for c in names)
    assert nwbfile.units.resolution == pytest.approx(1 / 25000)  # without waveforms too
