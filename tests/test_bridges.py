"""Bridges to the tools units are analysed with, tested with the real libraries (optional test
dependencies: spikeinterface, pynapple): an annotated file read by SpikeInterface's
``read_nwb_sorting`` and pynapple's ``load_file`` shows the labels unaided; the one-line helpers
set them on objects loaded otherwise; phy's cluster_celltype.tsv; the DataFrame indexed by unit id."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from nwb_celltype.annotate import annotate
from nwb_celltype.bridges import (
    annotations_dataframe,
    set_pynapple_metadata,
    set_spikeinterface_properties,
)
from nwb_celltype.cli import main
from nwb_celltype.errors import InvalidValueError, OutputError
from nwb_celltype.inspect_file import load_annotations
from nwb_celltype.phy import export_phy, unit_column

N_UNITS = 10


@pytest.fixture(scope="module")
def annotated(tmp_path_factory) -> tuple[Path, Path, str]:
    """(source, annotated copy, table name): a simulated recording annotated by the demo model."""
    from nwb_celltype.model import load_demo_bundle
    from nwb_celltype.simulate import simulate_recording

    d = tmp_path_factory.mktemp("bridges")
    src = d / "session.nwb"
    simulate_recording(src, n_units=N_UNITS, duration_s=200.0, seed=7, labelled_fraction=0.0)
    res = annotate(src, model=load_demo_bundle())
    return src, Path(res.output_path), res.table_name


def _record(annotated):
    _, out, table = annotated
    return load_annotations(out)[table]


def test_dataframe_is_indexed_by_unit_id(annotated):
    rec = _record(annotated)
    df = annotations_dataframe(annotated[1])
    assert df.index.name == "unit_id"
    assert df.index.tolist() == rec.unit_ids.tolist()
    assert df["cell_type"].tolist() == rec.labels.tolist()
    assert df["status"].tolist() == rec.status.tolist()
    np.testing.assert_allclose(df["confidence"], rec.confidence, equal_nan=True)
    for j, cls in enumerate(rec.classes):
        np.testing.assert_allclose(df[f"p_{cls}"], rec.probabilities[:, j])
        np.testing.assert_array_equal(df[f"votes_{cls}"], rec.votes[:, j])
    np.testing.assert_allclose(df["probability"], rec.probabilities.max(axis=1))
    assert df.attrs["table"] == annotated[2]
    # the same from a record, and an unknown table is a clear error
    assert annotations_dataframe(rec)["cell_type"].tolist() == rec.labels.tolist()
    with pytest.raises(InvalidValueError, match="no annotation table"):
        annotations_dataframe(annotated[1], table="nope")


def test_spikeinterface_reads_the_labels_from_the_file(annotated):
    from spikeinterface.extractors import read_nwb_sorting

    rec = _record(annotated)
    sorting = read_nwb_sorting(str(annotated[1]))
    assert "cell_type" in sorting.get_property_keys()
    by_id = dict(zip(rec.unit_ids.tolist(), rec.labels.tolist(), strict=True))
    got = dict(
        zip([int(u) for u in sorting.unit_ids], sorting.get_property("cell_type").tolist(), strict=True)
    )
    assert got == by_id
    conf = sorting.get_property("cell_type_confidence")
    np.testing.assert_allclose(conf, rec.confidence, equal_nan=True)


def test_pynapple_reads_the_labels_from_the_file(annotated):
    import pynapple as nap

    rec = _record(annotated)
    data = nap.load_file(str(annotated[1]))
    units = data["units"]
    data.close()  # pynapple keeps an NWBHDF5IO open until then
    by_id = dict(zip(rec.unit_ids.tolist(), rec.labels.tolist(), strict=True))
    assert {int(i): str(v) for i, v in units.cell_type.items()} == by_id
    # the filter pynapple users write
    pkc = [u for u, lab in by_id.items() if lab == rec.labels[0]]
    assert sorted(int(i) for i in units[units.cell_type == rec.labels[0]].index) == sorted(pkc)


def test_one_line_helpers_on_objects_loaded_without_labels(annotated):
    import pynapple as nap
    from spikeinterface.core import NumpySorting
    from spikeinterface.extractors import read_nwb_sorting

    src, out, _ = annotated
    rec = _record(annotated)
    by_id = dict(zip(rec.unit_ids.tolist(), rec.labels.tolist(), strict=True))

    sorting = read_nwb_sorting(str(src))  # the un-annotated source
    assert "cell_type" not in sorting.get_property_keys()
    set_spikeinterface_properties(sorting, out)
    assert (
        dict(zip([int(u) for u in sorting.unit_ids], sorting.get_property("cell_type"), strict=True)) == by_id
    )

    # a sorting of other origin holding only some of the units (and one the file does not know)
    ids = np.array([2, 5, 999])
    spikes = {int(u): np.array([10, 20, 30]) for u in ids}
    other = NumpySorting.from_unit_dict([spikes], sampling_frequency=30000.0)
    set_spikeinterface_properties(other, out)
    got = other.get_property("cell_type").tolist()
    assert got == [by_id[2], by_id[5], ""]
    assert np.isnan(other.get_property("cell_type_probability")[2])

    tsgroup = nap.TsGroup(
        {int(u): nap.Ts(t=np.sort(np.random.default_rng(0).uniform(0, 10, 20))) for u in (1, 3, 4)}
    )
    set_pynapple_metadata(tsgroup, out)  # a TsGroup built by hand
    assert tsgroup.cell_type.tolist() == [by_id[1], by_id[3], by_id[4]]
    np.testing.assert_allclose(
        tsgroup.cell_type_probability.to_numpy(), rec.probabilities[[1, 3, 4]].max(axis=1), rtol=1e-12
    )
    with pytest.raises(InvalidValueError, match="none of the object's unit ids"):
        set_pynapple_metadata(nap.TsGroup({12345: nap.Ts(t=np.array([1.0, 2.0]))}), out)


def test_phy_export(annotated, tmp_path):
    rec = _record(annotated)
    path = export_phy(annotated[1], tmp_path)
    assert path == tmp_path / "cluster_celltype.tsv"
    rows = list(csv.reader(path.read_text().splitlines(), delimiter="\t"))
    assert rows[0] == ["cluster_id", "celltype"]
    assert rows[1:] == [[str(u), lab] for u, lab in zip(rec.unit_ids, rec.labels, strict=True)]
    with pytest.raises(OutputError, match="exists"):
        export_phy(annotated[1], tmp_path)
    # sorter cluster ids from a Units column: the peak channel repeats, so it cannot be one
    with pytest.raises(InvalidValueError, match="cluster ids repeat"):
        export_phy(
            annotated[1], tmp_path / "by_col.tsv", cluster_ids=unit_column(annotated[1], "peak_channel")
        )
    ids = {int(u): 1000 + 3 * int(u) for u in rec.unit_ids}
    export_phy(annotated[1], tmp_path / "by_col.tsv", cluster_ids=ids)
    got = [r.split("\t")[0] for r in (tmp_path / "by_col.tsv").read_text().splitlines()[1:]]
    assert got == [str(ids[int(u)]) for u in rec.unit_ids]


def test_cli_export(annotated, tmp_path):
    rec = _record(annotated)
    runner = CliRunner()
    res = runner.invoke(
        main, ["export", str(annotated[1]), "--phy", str(tmp_path), "--tsv", str(tmp_path / "a.tsv")]
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "cluster_celltype.tsv").exists()
    lines = (tmp_path / "a.tsv").read_text().splitlines()
    assert (
        lines[0].split("\t")[:3] == ["unit_id", "cell_type", "status"] and len(lines) == len(rec.labels) + 1
    )
    res = runner.invoke(main, ["export", str(annotated[1])])
    assert res.exit_code == 1 and "--phy" in res.output
    res = runner.invoke(main, ["export", str(annotated[1]), "--phy", str(tmp_path)])
    assert res.exit_code == 1 and "--overwrite" in res.output


def _trains(src: Path) -> list[np.ndarray]:
    import pynwb

    with pynwb.NWBHDF5IO(str(src), "r") as io:
        return [np.asarray(t) for t in io.read().units["spike_times"][:]]


def _write_sortings(path: Path, trains, *, unit_names=None, tables: dict | None = None) -> Path:
    """An NWB file as NeuroConv / SpikeInterface write sortings: NWB ids 0..n-1 in /units, the sorter's
    ids in ``unit_name`` (text) or ``cluster_id``; ``tables``: more Units tables in processing/ecephys,
    name -> cluster ids."""
    from datetime import datetime, timezone

    import pynwb
    from pynwb.file import Subject
    from pynwb.misc import Units

    nf = pynwb.NWBFile(
        "s",
        path.stem,
        datetime(2024, 1, 1, tzinfo=timezone.utc),
        subject=Subject(subject_id="m", species="Mus musculus"),
    )
    if unit_names is not None:
        nf.add_unit_column("unit_name", "the sorter's unit id")
    else:
        nf.add_unit_column("cluster_id", "the sorter's cluster id")
    for i, t in enumerate(trains):
        extra = {"unit_name": str(unit_names[i])} if unit_names is not None else {"cluster_id": 100 + i}
        nf.add_unit(spike_times=t, id=i, **extra)
    if tables:
        mod = nf.create_processing_module("ecephys", "sortings")
        for name, cids in tables.items():
            u = Units(name=name, description=f"sorting {name}")
            u.add_column("cluster_id", "the sorter's cluster id")
            for i, t in enumerate(trains):
                u.add_unit(spike_times=t, id=i, cluster_id=int(cids[i]))
            mod.add(u)
    nf.units.resolution = 1 / 30000  # SpikeInterface's reader needs a sampling rate
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nf)
    return path


def test_a_sorting_read_by_unit_name_gets_its_own_units_labels(annotated, tmp_path):
    """NeuroConv's layout: NWB ids 0..n-1, the sorter's id in unit_name, which SpikeInterface's reader
    makes the unit ids. The helper matched those names against the NWB ids as text: where they
    overlapped, units got other units' labels, silently."""
    pytest.importorskip("spikeinterface")
    from spikeinterface.extractors import read_nwb_sorting

    trains = _trains(annotated[0])
    names = [0, 2, 3, 5, 7, 8, 9, 11, 12, 14][: len(trains)]
    src = _write_sortings(tmp_path / "nc.nwb", trains, unit_names=names)
    out = annotate(src, out=tmp_path / "nc.celltype.nwb").output_path
    truth = read_nwb_sorting(str(out))  # the Units columns the file holds, by unit_name
    want = dict(zip(truth.unit_ids, truth.get_property("cell_type"), strict=True))
    raw = set_spikeinterface_properties(read_nwb_sorting(str(src)), out)
    got = dict(zip(raw.unit_ids, raw.get_property("cell_type"), strict=True))
    assert got == want and len({str(v) for v in got.values()}) > 1


def test_export_reads_cluster_ids_from_the_annotated_table_and_checks_them(tmp_path, annotated):
    trains = _trains(annotated[0])
    ks_ids = [200 + 3 * i for i in range(len(trains))]
    src = _write_sortings(tmp_path / "two.nwb", trains, tables={"kilosort": ks_ids})
    annotate(src, out=tmp_path / "two.celltype.nwb", units_table="processing/ecephys/kilosort")
    res = CliRunner().invoke(
        main,
        ["export", str(tmp_path / "two.celltype.nwb"), "--phy", str(tmp_path), "--id-column", "cluster_id"],
    )
    assert res.exit_code == 0, res.output
    with open(tmp_path / "cluster_celltype.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert [int(r["cluster_id"]) for r in rows] == ks_ids  # the kilosort table's, not /units' 100..
    (tmp_path / "cluster_celltype.tsv").unlink()
    with pytest.raises(InvalidValueError, match="cluster ids repeat"):
        export_phy(tmp_path / "two.celltype.nwb", tmp_path, cluster_ids=dict.fromkeys(range(len(trains)), 7))
    with pytest.raises(InvalidValueError, match="must be integers"):
        export_phy(
            tmp_path / "two.celltype.nwb", tmp_path, cluster_ids=dict.fromkeys(range(len(trains)), "ML")
        )
    # both outputs are checked before either is written
    (tmp_path / "labels.tsv").write_text("mine")
    res = CliRunner().invoke(
        main,
        [
            "export",
            str(tmp_path / "two.celltype.nwb"),
            "--phy",
            str(tmp_path),
            "--tsv",
            str(tmp_path / "labels.tsv"),
        ],
    )
    assert res.exit_code == 1 and "labels.tsv exists" in res.output
    assert not (tmp_path / "cluster_celltype.tsv").exists()


def test_labels_of_another_sorting_with_the_same_ids_are_refused(annotated, tmp_path, caplog):
    """A file annotated on processing/ecephys/ks, whose /units holds another sorting with the same
    ids: matching ids alone put the ks labels on /units' units, silently. Units with more spikes than
    the annotated unit of their id are refused; fewer (a subset of its spikes) is a warning."""
    from datetime import datetime, timezone

    import pynapple as nap
    import pynwb
    from pynwb.misc import Units

    trains = _trains(annotated[0])
    halves = [t[: len(t) // 2] for t in trains]  # the ks sorting: other units, fewer spikes
    nf = pynwb.NWBFile("s", "two", datetime(2024, 1, 1, tzinfo=timezone.utc))
    for i, t in enumerate(trains):
        nf.add_unit(spike_times=t, id=i)
    ks = Units(name="ks", description="another sorting")
    for i, t in enumerate(halves):
        ks.add_unit(spike_times=t, id=i)
    nf.create_processing_module("ecephys", "sortings").add(ks)
    nf.units.resolution = 1 / 30000
    with pynwb.NWBHDF5IO(str(tmp_path / "two.nwb"), "w") as io:
        io.write(nf)
    out = annotate(
        tmp_path / "two.nwb", out=tmp_path / "two.celltype.nwb", units_table="processing/ecephys/ks"
    )
    df = annotations_dataframe(out.output_path)
    assert list(df["n_spikes"]) == [len(t) for t in halves]
    units = nap.TsGroup({i: nap.Ts(t) for i, t in enumerate(trains)})
    with pytest.raises(InvalidValueError, match="label another sorting's units"):
        set_pynapple_metadata(units, out.output_path)
    own = nap.TsGroup({i: nap.Ts(t) for i, t in enumerate(halves)})
    set_pynapple_metadata(own, out.output_path)
    assert list(own.cell_type) == list(df["cell_type"])
    fewer = nap.TsGroup({i: nap.Ts(t[: len(t) // 2]) for i, t in enumerate(halves)})
    set_pynapple_metadata(fewer, out.output_path)
    assert "fewer spikes than the annotated units" in caplog.text
    pytest.importorskip("spikeinterface")
    from spikeinterface.extractors import read_nwb_sorting

    with pytest.raises(InvalidValueError, match="label another sorting's units"):
        set_spikeinterface_properties(read_nwb_sorting(str(tmp_path / "two.nwb")), out.output_path)


def test_phy_names_still_reachable_from_bridges():
    """phy's helpers moved to nwb_celltype.phy; code importing them from bridges keeps working, and
    bridges names nothing else it does not have."""
    import nwb_celltype.bridges as bridges
    import nwb_celltype.phy as phy

    for name in phy.__all__:
        assert getattr(bridges, name) is getattr(phy, name)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        bridges.nope  # noqa: B018
