"""Files whose spike-sorted units are not (only) in ``NWBFile.units``: a sorting stored as a Units table
in a processing module, or several sortings side by side. Reading finds or takes the table asked for,
and annotate writes its table, Units columns and provenance against that table: as a copy, in place,
and as a derived file for a remote source (a real loopback Range server)."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timezone

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from pynwb import NWBHDF5IO, NWBFile
from pynwb.file import Subject
from pynwb.misc import Units

from nwb_celltype.annotate import annotate
from nwb_celltype.errors import NotNWBError
from nwb_celltype.io import open_source, read_units, resolve_units_table, units_table_paths
from nwb_celltype.nwb import read_annotations
from nwb_celltype.simulate import demo_recording_path

CLI = __import__("nwb_celltype.cli", fromlist=["main"]).main
KS, CURATED = "processing/ecephys/kilosort", "processing/ecephys/curated"
#: the curated sorting keeps every other unit of the demo's first 40, under other ids
CURATED_ROWS = np.arange(0, 40, 2)
CURATED_ID0 = 1000


@pytest.fixture(scope="module")
def demo_units():
    with NWBHDF5IO(str(demo_recording_path()), "r") as io:
        u = io.read().units
        ids = np.asarray(u.id[:])
        trains = [np.asarray(u["spike_times"][i]) for i in range(len(ids))]
        waves = np.asarray(u["waveform_mean"][:])
        return ids, trains, waves, float(u.waveform_rate)


def _write(path, demo_units, *, tables: dict[str, np.ndarray], main: bool = False):
    """An NWB file (mouse Subject) with the demo's units in ``units`` (``main``) and/or Units tables
    ``processing/ecephys/<name>`` holding the demo rows ``tables[name]`` (curated ids renumbered)."""
    ids, trains, waves, rate = demo_units
    f = NWBFile("sortings", "s1", datetime(2026, 1, 1, tzinfo=timezone.utc))
    f.subject = Subject(subject_id="m1", species="Mus musculus")

    def fill(u: Units, rows, id0=None):
        for k, r in enumerate(rows):
            uid = int(ids[r]) if id0 is None else id0 + k
            u.add_unit(spike_times=trains[r], waveform_mean=waves[r], id=uid)

    if main:
        f.units = Units(name="units", description="main sorting", waveform_rate=rate)
        fill(f.units, np.arange(len(ids)))
    if tables:
        mod = f.create_processing_module("ecephys", "sortings")
        for name, rows in tables.items():
            u = Units(name=name, description=f"{name} sorting", waveform_rate=rate)
            fill(u, rows, CURATED_ID0 if name == "curated" else None)
            mod.add(u)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(f)
    return path


def _annotation(path):
    with NWBHDF5IO(str(path), "r") as io:
        recs = read_annotations(io.read())
    (rec,) = [r for r in recs.values() if r.kind == "prediction"]  # the demo also holds ground truth
    params = rec.classifier["parameters"]
    return rec, json.loads(params) if isinstance(params, str) else params


def _columns(path, table: str) -> list[str]:
    with h5py.File(path, "r") as f:
        return [c.decode() if isinstance(c, bytes) else str(c) for c in f[table].attrs["colnames"]]


def test_the_units_table_is_found_or_named(tmp_path, demo_units):
    n = len(demo_units[0])
    one = _write(tmp_path / "one.nwb", demo_units, tables={"kilosort": np.arange(n)})
    two = _write(tmp_path / "two.nwb", demo_units, tables={"kilosort": np.arange(n), "curated": CURATED_ROWS})
    both = _write(tmp_path / "both.nwb", demo_units, tables={"curated": CURATED_ROWS}, main=True)
    with h5py.File(one) as f:
        assert units_table_paths(f) == [KS] and resolve_units_table(f) == KS
    with h5py.File(two) as f:
        assert sorted(units_table_paths(f)) == [CURATED, KS]
        with pytest.raises(NotNWBError, match="several Units tables.*curated.*kilosort.*--units-table"):
            resolve_units_table(f)
        assert resolve_units_table(f, "/" + CURATED + "/") == CURATED
        with pytest.raises(
            NotNWBError, match=r"no Units table at /processing/ecephys/nope; its Units tables"
        ):
            resolve_units_table(f, "processing/ecephys/nope")
    with h5py.File(both) as f:  # NWBFile.units is the default where it exists
        assert units_table_paths(f) == ["units", CURATED] and resolve_units_table(f) == "units"
    # reading a named table yields its units, ids and spike trains
    batches = list(read_units(two, units_table=CURATED, require_waveforms=False))
    ids = np.concatenate([b.unit_ids for b in batches])
    np.testing.assert_array_equal(ids, CURATED_ID0 + np.arange(len(CURATED_ROWS)))
    first = batches[0].spike_times_s[batches[0].spike_offsets[0] : batches[0].spike_offsets[1]]
    np.testing.assert_array_equal(first, demo_units[1][CURATED_ROWS[0]])


def test_annotate_a_sorting_kept_in_a_processing_module(tmp_path, demo_units):
    """Before, such a file was read but its annotations could not be written ("no Units table")."""
    n = len(demo_units[0])
    one = _write(tmp_path / "one.nwb", demo_units, tables={"kilosort": np.arange(n)})
    ref = annotate(demo_recording_path(), out=tmp_path / "demo-a.nwb")
    res = annotate(one, out=tmp_path / "one-a.nwb")
    assert res.units_table == f"/{KS}" and ref.units_table == "/units"
    rec, params = _annotation(tmp_path / "one-a.nwb")
    want, _ = _annotation(tmp_path / "demo-a.nwb")
    assert rec.units_table == f"/{KS}" and params["units_table"] == f"/{KS}"
    # the same units, the same labels as the demo file's own Units table gets
    np.testing.assert_array_equal(rec.unit_ids, want.unit_ids)
    np.testing.assert_array_equal(rec.labels, want.labels)
    assert "cell_type" in _columns(tmp_path / "one-a.nwb", KS)
    with NWBHDF5IO(str(tmp_path / "one-a.nwb"), "r") as io:  # pynwb reads the columns back
        ks = io.read().processing["ecephys"]["kilosort"]
        np.testing.assert_array_equal(np.asarray(ks["cell_type"][:], dtype=str), np.asarray(want.labels, str))
    # in place too; `show` names the table
    res = annotate(one, in_place=True)
    assert res.mode == "in_place" and "cell_type" in _columns(one, KS)
    shown = CliRunner().invoke(CLI, ["show", str(one), "--max-units", "1"])
    assert shown.exit_code == 0 and f"units of /{KS})" in shown.output, shown.output


def test_annotate_one_of_several_sortings(tmp_path, demo_units):
    n = len(demo_units[0])
    two = _write(tmp_path / "two.nwb", demo_units, tables={"kilosort": np.arange(n), "curated": CURATED_ROWS})
    before = two.read_bytes()
    res = CliRunner().invoke(CLI, ["annotate", str(two), "--out", str(tmp_path / "x.nwb"), "-q"])
    assert res.exit_code != 0 and "several Units tables" in res.output and "--units-table" in res.output
    assert not (tmp_path / "x.nwb").exists() and two.read_bytes() == before

    out = tmp_path / "two-a.nwb"
    res = CliRunner().invoke(CLI, ["annotate", str(two), "--out", str(out), "--units-table", CURATED])
    assert res.exit_code == 0, res.output
    assert f"the units of the source's /{CURATED}" in res.output
    rec, params = _annotation(out)
    assert params["units_table"] == f"/{CURATED}" and rec.units_table == f"/{CURATED}"
    np.testing.assert_array_equal(rec.unit_ids, CURATED_ID0 + np.arange(len(CURATED_ROWS)))
    assert "cell_type" in _columns(out, CURATED) and "cell_type" not in _columns(out, KS)
    # the curated units are the demo's rows CURATED_ROWS: the same labels as those rows get
    annotate(two, out=tmp_path / "ks.nwb", units_table=KS)
    full, _ = _annotation(tmp_path / "ks.nwb")
    np.testing.assert_array_equal(rec.labels, np.asarray(full.labels)[CURATED_ROWS])

    # re-annotating the other sorting with the same model replaces the table and moves the columns
    res = annotate(out, in_place=True, overwrite=True, units_table=KS)
    rec, params = _annotation(out)
    assert params["units_table"] == f"/{KS}" and len(rec) == n
    assert "cell_type" in _columns(out, KS) and "cell_type" not in _columns(out, CURATED)
    # `features` reads the table asked for, and `predict` gives annotate's labels
    npz = tmp_path / "curated.npz"
    res = CliRunner().invoke(CLI, ["features", str(two), "--out", str(npz), "--units-table", CURATED, "-q"])
    assert res.exit_code == 0, res.output
    tsv = tmp_path / "curated.tsv"
    res = CliRunner().invoke(CLI, ["predict", str(npz), "--out", str(tsv), "-q"])
    assert res.exit_code == 0, res.output
    labels = [line.split("\t")[1] for line in tsv.read_text().splitlines()[2:]]
    assert labels == [str(x) for x in np.asarray(full.labels)[CURATED_ROWS]]


@pytest.mark.network
def test_a_derived_file_of_a_remote_sorting_holds_the_table_asked_for(tmp_path, demo_units):
    from nwb_celltype.testing.servers import RangeServer

    n = len(demo_units[0])
    root = tmp_path / "served"
    root.mkdir()
    _write(root / "two.nwb", demo_units, tables={"kilosort": np.arange(n), "curated": CURATED_ROWS})
    out = tmp_path / "derived.nwb"
    with RangeServer(root) as files:
        url = files.url_for("two.nwb")
        res = annotate(url, out=out, units_table=CURATED, cache_dir=tmp_path / "cache")
    assert res.mode == "derived" and res.units_table == f"/{CURATED}"
    rec, params = _annotation(out)
    assert params["units_table"] == f"/{CURATED}" and rec.units_table == "/units"
    with NWBHDF5IO(str(out), "r") as io:
        units = io.read().units
        np.testing.assert_array_equal(units.id[:], CURATED_ID0 + np.arange(len(CURATED_ROWS)))
        np.testing.assert_array_equal(units["spike_times"][0], demo_units[1][CURATED_ROWS[0]])
        assert CURATED in units["source_unit_row"].description
    with open_source(root / "two.nwb") as src:  # the source was only read
        assert sorted(units_table_paths(src.h5)) == [CURATED, KS]


def test_labels_of_another_sorting_are_not_compared_with_ground_truth():
    """Unit ids of two sortings name different units: agreement pairs tables of one Units table."""
    from nwb_celltype.agreement import agreements
    from nwb_celltype.nwb import AnnotationRecord

    def record(kind, labels, units_table):
        n = len(labels)
        return AnnotationRecord(
            name=kind,
            classes=("PkC_ss", "MLI"),
            unit_indices=np.arange(n),
            unit_ids=np.arange(n),
            labels=np.array(labels, dtype=object),
            ontology_ids=np.array([""] * n, dtype=object),
            kinds=np.array([kind] * n, dtype=object),
            status=np.array(["classified"] * n, dtype=object),
            reasons=np.array([""] * n, dtype=object),
            units_table=units_table,
        )

    truth = record("ground_truth", ["PkC_ss", "MLI"], "/units")
    same = record("prediction", ["PkC_ss", "PkC_ss"], "/units")
    other = record("prediction", ["MLI", "MLI"], f"/{KS}")
    assert [a.reference for a in agreements({"t": truth, "p": same})] == ["t"]
    assert agreements({"t": truth, "p": other}) == []


def _with_waveforms(path, demo_units, waves, rate):
    """The demo's units in ``units`` with ``waves`` as waveform_mean, sampled at ``rate`` (None: the
    file states no rate, as neuroconv's exports)."""
    ids, trains, _, _ = demo_units
    f = NWBFile("waveforms", "w1", datetime(2026, 1, 1, tzinfo=timezone.utc))
    f.subject = Subject(subject_id="m1", species="Mus musculus")
    f.units = Units(name="units", description="sorting", waveform_rate=rate)
    for i in range(len(ids)):
        f.units.add_unit(spike_times=trains[i], waveform_mean=waves[i], id=int(ids[i]))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(f)
    return path


def test_a_waveform_rate_the_file_does_not_state_can_be_given(tmp_path, demo_units):
    _, _, waves, rate = demo_units
    bare = _with_waveforms(tmp_path / "bare.nwb", demo_units, waves, None)
    with h5py.File(bare) as f:
        assert (
            "sampling_rate" not in f["units/waveform_mean"].attrs and "waveform_rate" not in f["units"].attrs
        )
    ref = annotate(demo_recording_path(), out=tmp_path / "ref.nwb")
    runs = {}
    for name, stated in (("assumed", None), ("stated", rate), ("wrong", 2 * rate)):
        res = annotate(bare, out=tmp_path / f"{name}.nwb", waveform_rate_hz=stated)
        rec, params = _annotation(res.output_path)
        runs[name] = rec
        want = rate if stated is None else stated
        assert res.waveform_rate == {"hz": want, "source": name if name != "wrong" else "stated"}
        assert (params["waveform_rate_hz"], params["waveform_rate_source"]) == (
            want,
            res.waveform_rate["source"],
        )
    want, _ = _annotation(ref.output_path)
    assert ref.waveform_rate == {"hz": rate, "source": "file"}
    # 30 kHz assumed or stated: the demo's labels; a rate stated wrongly is used (and changes labels)
    np.testing.assert_array_equal(runs["assumed"].labels, want.labels)
    np.testing.assert_array_equal(runs["stated"].labels, want.labels)
    assert not np.allclose(np.nan_to_num(runs["wrong"].probabilities), np.nan_to_num(want.probabilities))
    # the CLI says when it assumed the rate; a bad rate is refused before anything is written
    out = CliRunner().invoke(CLI, ["annotate", str(bare), "--out", str(tmp_path / "cli.nwb")])
    assert out.exit_code == 0 and "assumed 30000 Hz (state it with --waveform-rate" in out.output, out.output
    out = CliRunner().invoke(
        CLI, ["annotate", str(bare), "--out", str(tmp_path / "x.nwb"), "--waveform-rate", "0"]
    )
    assert out.exit_code != 0 and not (tmp_path / "x.nwb").exists()
    with pytest.raises(Exception, match="positive sampling rate"):
        annotate(bare, out=tmp_path / "y.nwb", waveform_rate_hz=float("nan"))
    assert not (tmp_path / "y.nwb").exists()


def test_waveforms_with_their_axes_swapped_are_set_aside(tmp_path, demo_units, caplog):
    """(units, channels, samples), as some writers store them: 12 "samples" are 0.4 ms at 30 kHz, no
    spike waveform; the units are scored from their discharge alone, and every reason says why."""
    import logging

    _, _, waves, rate = demo_units
    swapped = _with_waveforms(
        tmp_path / "swapped.nwb", demo_units, np.ascontiguousarray(waves.transpose(0, 2, 1)), rate
    )
    with pytest.raises(NotNWBError, match=r"its axes may be \(units, channels, samples\)"):
        next(read_units(swapped))
    batch = next(read_units(swapped, require_waveforms=False))
    assert batch.waveforms is None and all(
        r.startswith("waveform_mean set aside") for r in batch.extra["reasons"]
    )
    with caplog.at_level(logging.WARNING, logger="nwb_celltype"):
        res = annotate(swapped, out=tmp_path / "a.nwb")
    assert any("shorter than a spike waveform" in m.getMessage() for m in caplog.records)
    ref = annotate(demo_recording_path(), out=tmp_path / "ref.nwb", ignore_waveforms=True)
    rec, _ = _annotation(res.output_path)
    want, _ = _annotation(ref.output_path)
    np.testing.assert_array_equal(rec.labels, want.labels)  # the discharge alone, as asked for there
    assert res.n_classified > 0


def test_units_tables_that_would_mislead_are_named_in_warnings(tmp_path, demo_units, caplog):
    """Repeated unit ids, float32 spike times far from 0 and times that look like milliseconds (by
    the last spike, or, for a session under 173 s, by the intervals) are read as written, with one
    warning each; a report draws units sharing an id into separate figures."""
    import logging

    from nwb_celltype.inspect_file import write_report

    ids, trains, waves, rate = demo_units

    def write(path, *, unit_ids, scale=1.0, offset=0.0, dtype=np.float64, until=np.inf):
        f = NWBFile("odd", "o1", datetime(2026, 1, 1, tzinfo=timezone.utc))
        f.units = Units(name="units", description="odd", waveform_rate=rate)
        for k, uid in enumerate(unit_ids):
            t = trains[k][trains[k] < until]
            f.units.add_unit(spike_times=(t + offset) * scale, waveform_mean=waves[k], id=int(uid))
        with NWBHDF5IO(str(path), "w") as io:
            io.write(f)
        if dtype != np.float64:  # pynwb writes float64 only; other writers (h5py, MatNWB) may not
            with h5py.File(path, "a") as h:
                old = h["units/spike_times"]
                data, attrs = old[()].astype(dtype), dict(old.attrs)
                del h["units/spike_times"]
                new = h["units"].create_dataset("spike_times", data=data)
                new.attrs.update(attrs)
        return path

    cases = {
        "repeated": (write(tmp_path / "rep.nwb", unit_ids=[0, 1, 2, 0, 1, 2]), "occur more than once"),
        "float32": (
            write(tmp_path / "f32.nwb", unit_ids=range(6), offset=10_000.0, dtype=np.float32),
            "resolved to only",
        ),
        "ms": (write(tmp_path / "ms.nwb", unit_ids=range(6), scale=1000.0), "in milliseconds"),
        "short ms": (
            write(tmp_path / "ms100.nwb", unit_ids=range(6), scale=1000.0, until=100.0),
            "look like milliseconds",
        ),
        "short": (write(tmp_path / "s100.nwb", unit_ids=range(6), until=100.0), None),
        "plain": (write(tmp_path / "ok.nwb", unit_ids=range(6)), None),
    }
    for name, (path, warning) in cases.items():
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="nwb_celltype.io"):
            list(read_units(path))
        said = " ".join(m.getMessage() for m in caplog.records)
        assert (warning in said) if warning else not said, (name, said)
        assert said.count("milliseconds") <= 1, (name, said)
    res = annotate(cases["repeated"][0], out=tmp_path / "rep-a.nwb")
    index = write_report(res.output_path, tmp_path / "report", table=res.table_name)
    drawn = sorted(p.name for p in (tmp_path / "report" / "units").iterdir())
    assert drawn == ["unit_0_row0.png", "unit_0_row3.png", "unit_1_row1.png", "unit_1_row4.png"] + [
        "unit_2_row2.png",
        "unit_2_row5.png",
    ]
    page = index.read_text()
    assert page.count('href="#unit-0-row3"') == 1 and page.count('id="unit-0-row3"') == 1


@pytest.mark.network
def test_a_dandiset_of_two_sorting_assets_is_annotated_from_the_table_asked_for(tmp_path, demo_units):
    """annotate-dandiset takes the Units table and the waveform rate for every asset: without them
    each asset fails with the error naming its tables; with them every asset is labelled as annotate
    labels that table of the file, the summary says which table and rate were used, and a rerun
    redoes an asset only when the table or the rate asked for changed."""
    from nwb_celltype.batch import annotate_dandiset
    from nwb_celltype.testing.servers import DandiApiServer, RangeServer

    ids, trains, waves, _ = demo_units
    unstated = (ids, trains, waves, None)  # like neuroconv's exports: no waveform rate
    root = tmp_path / "ds"
    paths = []
    for k in range(2):
        p = root / f"sub-{k}" / f"sub-{k}_ecephys.nwb"
        p.parent.mkdir(parents=True)
        _write(p, unstated, tables={"kilosort": np.arange(len(ids)), "curated": CURATED_ROWS})
        paths.append(p)
    local = annotate(paths[0], out=tmp_path / "local.nwb", units_table=CURATED, waveform_rate_hz=30000)
    want, _ = _annotation(local.output_path)
    with RangeServer(root) as files, DandiApiServer(files) as api:
        for p in paths:
            api.add_asset("000077", p.relative_to(root).as_posix(), p)

        def run(out, **kw):
            res = annotate_dandiset("000077@draft", out, workers=1, dandi_api_url=api.api_url, **kw)
            return res, {r["path"]: r for r in res.to_dict()["assets"]}

        res, recs = run(tmp_path / "auto")
        assert res.counts["failed"] == 2
        assert all("several Units tables" in r["error"] for r in recs.values())

        out = tmp_path / "out"
        res, recs = run(out, units_table=f"/{CURATED}", waveform_rate_hz=30000)
        assert res.counts["done"] == 2
        for r in recs.values():
            assert r["source_units_table"] == f"/{CURATED}"
            assert r["source_waveform_rate"] == {"hz": 30000.0, "source": "stated"}
            got, params = _annotation(out / r["output"])
            assert params["units_table"] == f"/{CURATED}"
            assert [str(x) for x in got.labels] == [str(x) for x in want.labels]
        with open(out / "celltype-summary.tsv") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        assert {(r["units_table"], r["waveform_rate"]) for r in rows} == {(f"/{CURATED}", "30000 (stated)")}

        _, recs = run(out, units_table=CURATED, waveform_rate_hz=30000.0)  # the same settings
        assert not any(r["this_run"] for r in recs.values())
        _, recs = run(out, units_table=KS, waveform_rate_hz=30000.0)
        assert all(r["this_run"] and r["source_units_table"] == f"/{KS}" for r in recs.values())
        _, recs = run(out, units_table=KS)  # the rate left to the files: assumed, redone
        assert all(r["this_run"] and r["source_waveform_rate"]["source"] == "assumed" for r in recs.values())
