"""Remote reading through real loopback servers: the Range server (remfile + disk cache), the real
``dandi`` client against the DANDI-shaped API server, and fault injection."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from test_io_units import write_units_nwb

from nwb_celltype.errors import InvalidValueError, NotNWBError, RemoteError, SourceNotFoundError
from nwb_celltype.io import list_dandiset_assets, open_source, parse_source, read_units
from nwb_celltype.io._remote import BoundedDiskCache
from nwb_celltype.testing._threaded_app import _ThreadedApp
from nwb_celltype.testing.servers import DandiApiServer, RangeServer

pytestmark = pytest.mark.network

DS = "000123"
DS_MIXED = "000555"
VERSION = "0.260101.1200"


def _digest(batches) -> dict:
    ids, spikes, waves = [], [], []
    for b in batches:
        ids.append(b.unit_ids)
        spikes.append(b.spike_times_s)
        waves.append(np.nan_to_num(b.waveforms, nan=-1e9))
    return {
        "ids": np.concatenate(ids).tolist(),
        "spikes": float(np.concatenate(spikes).sum()),
        "n_spikes": int(sum(len(s) for s in spikes)),
        "waves": float(np.concatenate(waves).sum()),
    }


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    (root / "sub-1").mkdir()
    (root / "sub-2").mkdir()
    truth = write_units_nwb(root / "sub-1" / "sub-1_ecephys.nwb", layout="3d", n_units=40, seed=1)
    write_units_nwb(root / "sub-2" / "sub-2_ecephys.nwb", layout="ragged", n_units=5, seed=2)
    write_units_nwb(root / "published.nwb", layout="2d", n_units=3, seed=3)
    (root / "notes.txt").write_text("not an asset we list by default")
    (root / "junk.nwb").write_bytes(b"\0" * 5000)
    (root / "page.nwb").write_text("<!DOCTYPE html>\n<html><body>Not found</body></html>\n")  # a soft 404
    (root / "empty.nwb").write_bytes(b"")
    whole = (root / "published.nwb").read_bytes()
    (root / "truncated.nwb").write_bytes(whole[: len(whole) // 2])
    with RangeServer(root) as files, DandiApiServer(files) as api:
        ids = {
            "sub1": api.add_asset(DS, "sub-1/sub-1_ecephys.nwb", root / "sub-1" / "sub-1_ecephys.nwb"),
            "sub2": api.add_asset(DS, "sub-2/sub-2_ecephys.nwb", root / "sub-2" / "sub-2_ecephys.nwb"),
            "notes": api.add_asset(DS, "notes.txt", root / "notes.txt"),
            "pub": api.add_asset(DS, "sub-1/sub-1_ecephys.nwb", root / "published.nwb", version=VERSION),
        }
        # NWB files in any case, files that are not NWB, and folders whose names share a prefix
        for path, file in [
            ("sub-1/rec.NWB", "published.nwb"),
            ("sub-1/notes.txt", "notes.txt"),
            ("sub-1/raw.nwb.zarr", "notes.txt"),
            ("sub-10/sub-10.nwb", "published.nwb"),
        ]:
            api.add_asset(DS_MIXED, path, root / file)
        yield {"root": root, "files": files, "api": api, "truth": truth, "ids": ids}


@pytest.fixture
def fresh(served):
    served["files"].faults.__init__()
    served["api"].faults.__init__()
    served["files"].reset_stats()
    yield served
    served["files"].faults.__init__()
    served["api"].faults.__init__()


def test_url_matches_local_and_second_run_makes_one_small_request(fresh, tmp_path):
    files, root = fresh["files"], fresh["root"]
    local = _digest(read_units(root / "sub-1" / "sub-1_ecephys.nwb", batch_size=7))
    url = files.url_for("sub-1/sub-1_ecephys.nwb")
    first = _digest(read_units(url, batch_size=7, cache_dir=tmp_path / "c"))
    assert first == local
    n_first = files.stats().range_requests
    assert n_first >= 1
    files.reset_stats()
    second = _digest(read_units(url, batch_size=7, cache_dir=tmp_path / "c"))
    assert second == local
    # one byte checks that the file is unchanged; the chunks all came from the disk cache
    assert files.stats().ranges == [("/sub-1/sub-1_ecephys.nwb", 0, 0)]
    with open_source(url, cache_dir=tmp_path / "c") as src:
        d = src.info.to_dict()
        assert d["kind"] == "url" and d["url"] == url
        assert d["size"] == (root / "sub-1" / "sub-1_ecephys.nwb").stat().st_size
        assert len(src.nwbfile.units) == 40


@pytest.mark.parametrize(
    "form",
    [
        "DANDI:{ds}/draft/sub-1/sub-1_ecephys.nwb",
        "dandi://dandi/{ds}@draft/sub-1/sub-1_ecephys.nwb",
        "{ds}@draft/sub-1/sub-1_ecephys.nwb",
        "{ds}/draft/sub-1/sub-1_ecephys.nwb",
        "https://dandiarchive.org/dandiset/{ds}/draft/files?location=sub-1%2Fsub-1_ecephys.nwb",
        "{aid}",
        "{api}/assets/{aid}/download/",
        "{api}/dandisets/{ds}/versions/draft/assets/{aid}/download/",
    ],
)
def test_dandi_forms(fresh, tmp_path, form):
    api = fresh["api"]
    src_str = form.format(ds=DS, aid=fresh["ids"]["sub1"], api=api.api_url)
    with open_source(src_str, dandi_api_url=api.api_url, cache_dir=False) as src:
        info = src.info
        assert info.kind == "dandi"
        assert info.asset_id == fresh["ids"]["sub1"]
        assert info.asset_path == "sub-1/sub-1_ecephys.nwb"
        assert info.url == fresh["files"].url_for("sub-1/sub-1_ecephys.nwb")
        assert info.sha256 is not None and info.size > 0
        if "{ds}" in form:
            assert (info.dandiset_id, info.version) == (DS, "draft")
        got = _digest(read_units(src))
    assert got["ids"] == fresh["truth"]["ids"]


def test_version_pinning_and_env_api_url(fresh, monkeypatch):
    monkeypatch.setenv("NWB_CELLTYPE_DANDI_API_URL", fresh["api"].api_url)
    with open_source(f"DANDI:{DS}/{VERSION}/sub-1/sub-1_ecephys.nwb", cache_dir=False) as src:
        assert src.info.version == VERSION and src.info.asset_id == fresh["ids"]["pub"]
        assert len(list(read_units(src))[0]) == 3
    # no version: the most recent published version wins over draft (dandi client semantics)
    with open_source(f"{DS}/sub-1/sub-1_ecephys.nwb", cache_dir=False) as src:
        assert src.info.version == VERSION


def test_list_assets(fresh):
    api = fresh["api"]
    assets = list_dandiset_assets(f"DANDI:{DS}/draft", dandi_api_url=api.api_url)
    assert [a.path for a in assets] == ["sub-1/sub-1_ecephys.nwb", "sub-2/sub-2_ecephys.nwb"]
    root = fresh["root"]
    assert assets[0].size == (root / "sub-1" / "sub-1_ecephys.nwb").stat().st_size
    assert assets[0].version == "draft" and assets[0].asset_id == fresh["ids"]["sub1"]
    assert json.dumps(assets[0].to_dict())
    everything = list_dandiset_assets(DS, "draft", dandi_api_url=api.api_url, include="*")
    # notes.txt (first page of 2) is not an NWB file; sub-2 is on the second page
    assert [a.path for a in everything] == ["sub-1/sub-1_ecephys.nwb", "sub-2/sub-2_ecephys.nwb"]
    only2 = list_dandiset_assets(f"{DS}/draft/sub-2/", dandi_api_url=api.api_url)
    assert [a.path for a in only2] == ["sub-2/sub-2_ecephys.nwb"]
    # the listed download URL works as a source
    with open_source(assets[1].url, dandi_api_url=api.api_url, cache_dir=False) as src:
        assert src.info.asset_path == "sub-2/sub-2_ecephys.nwb"


def test_cli_assets(fresh):
    from click.testing import CliRunner

    from nwb_celltype.cli import main

    res = CliRunner().invoke(main, ["assets", DS, "--version", "draft", "--api-url", fresh["api"].api_url])
    assert res.exit_code == 0, res.output
    assert "sub-1/sub-1_ecephys.nwb" in res.output and "2 NWB assets" in res.output
    res = CliRunner().invoke(main, ["assets", "999999", "--api-url", fresh["api"].api_url])
    assert res.exit_code == 1 and "Error:" in res.output and "not found" in res.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("source", "setup", "exc", "match"),
    [
        ("DANDI:999999/draft/x.nwb", None, SourceNotFoundError, "not found"),
        ("DANDI:{ds}/draft/sub-9/none.nwb", None, SourceNotFoundError, "not found"),
        ("DANDI:{ds}/0.999999.9999/sub-1/sub-1_ecephys.nwb", None, SourceNotFoundError, "not found"),
        ("00000000-0000-4000-8000-000000000000", None, SourceNotFoundError, "not found"),
        ("DANDI:{ds}/draft", None, InvalidValueError, "not one file"),
        (
            "https://dandiarchive.org/dandiset/{ds}/draft/files?location=sub-2%2F",
            None,
            InvalidValueError,
            r"names a dandiset or folder, not one file. Give an asset path, e.g. \d+/sub-2/sub-2_ecephys.nwb "
            r"\(list them with `nwb-celltype assets \d+@draft/sub-2/`\)",
        ),
        ("{ds}/draft/sub-2", None, InvalidValueError, "names a dandiset or folder, not one file"),
        ("{ds}/draft/sub", None, SourceNotFoundError, "not found"),
        ("DANDI:{ds}/draft/notes.txt", None, NotNWBError, "not an HDF5 file"),
        ("{files}/missing.nwb", None, SourceNotFoundError, "HTTP 404"),
        ("{files}/junk.nwb", None, NotNWBError, "not an HDF5 file"),
        (
            "{files}/page.nwb",
            None,
            NotNWBError,
            r"answered an HTML page \(HTTP 206, \d+ bytes\), not the file",
        ),
        ("{files}/page.nwb", {"ignore_range": True}, NotNWBError, r"answered an HTML page \(HTTP 200"),
        ("{files}/empty.nwb", None, NotNWBError, r"is empty \(0 bytes"),
        ("{files}/truncated.nwb", None, NotNWBError, r"is truncated: the server has \d+ of the \d+ bytes"),
        ("{files}/published.nwb", {"status": 403}, RemoteError, "HTTP 403"),
        ("{files}/published.nwb", {"status": 503}, RemoteError, "failed after 2 attempts"),
        ("{files}/published.nwb", {"ignore_range": True}, RemoteError, "ignored the HTTP Range"),
        ("{files}/published.nwb", {"stall_after_bytes": 0, "only_ranges": False}, RemoteError, "no data"),
        ("{files}/published.nwb", {"cut_after_bytes": 0, "only_ranges": False}, RemoteError, "cut"),
        ("http://127.0.0.1:{port}/x.nwb", None, RemoteError, "failed after 2 attempts"),
        ("DANDI:{ds}/draft/x.nwb", "dead-api", RemoteError, "failed after 2 attempts"),
    ],
)
def test_bad_remote_sources_fail_fast(fresh, tmp_path, source, setup, exc, match):
    files, api = fresh["files"], fresh["api"]
    api_url = api.api_url
    if setup == "dead-api":
        api_url = f"http://127.0.0.1:{_free_port()}/api"
    elif setup:
        for k, v in setup.items():
            setattr(files.faults, k, v)
    s = source.format(ds=DS, files=files.url, port=_free_port())
    t0 = time.monotonic()
    with pytest.raises(exc, match=match):
        list(read_units(s, dandi_api_url=api_url, cache_dir=False, timeout_s=1.0, retries=1))
    assert time.monotonic() - t0 < 15


@pytest.mark.parametrize(
    "fault",
    [{"stall_after_bytes": 1000}, {"cut_after_bytes": 1000}, {"status": 500}],
)
def test_failure_mid_read_is_ours_and_bounded(fresh, fault):
    files = fresh["files"]
    url = files.url_for("sub-1/sub-1_ecephys.nwb")
    with open_source(url, cache_dir=False, timeout_s=1.0, retries=1, min_chunk_bytes=4096) as src:
        for k, v in fault.items():
            setattr(files.faults, k, v)
        t0 = time.monotonic()
        with pytest.raises(RemoteError, match="sub-1_ecephys.nwb"):
            list(read_units(src, batch_size=5))
        assert time.monotonic() - t0 < 15


def test_transient_errors_are_retried(fresh):
    files = fresh["files"]
    files.faults.fail_first = 2
    url = files.url_for("sub-1/sub-1_ecephys.nwb")
    got = _digest(read_units(url, cache_dir=False, retries=3))
    assert got["ids"] == fresh["truth"]["ids"]
    assert files.stats().by_path["/sub-1/sub-1_ecephys.nwb"] >= 3


_READER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from nwb_celltype.io import read_units
    url, cache, out = sys.argv[1:4]
    ids, total = [], 0.0
    for b in read_units(url, batch_size=4, cache_dir=cache, min_chunk_bytes=8192):
        ids += b.unit_ids.tolist()
        total += float(b.spike_times_s.sum())
    json.dump({"ids": ids, "total": total}, open(out, "w"))
    """
)


def test_two_processes_share_the_cache(fresh, tmp_path):
    files, root = fresh["files"], fresh["root"]
    files.faults.latency_s = 0.01  # interleave the two readers' chunk writes
    url = files.url_for("sub-1/sub-1_ecephys.nwb")
    cache = tmp_path / "shared-cache"
    script = tmp_path / "reader.py"
    script.write_text(_READER)
    env = {**os.environ, "PYTHONWARNINGS": "error::UserWarning"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), url, str(cache), str(tmp_path / f"out{i}.json")], env=env
        )
        for i in range(2)
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0
    outs = [json.loads((tmp_path / f"out{i}.json").read_text()) for i in range(2)]
    local = [b for b in read_units(root / "sub-1" / "sub-1_ecephys.nwb")]
    want_total = float(sum(b.spike_times_s.sum() for b in local))
    for o in outs:
        assert o["ids"] == fresh["truth"]["ids"]
        assert o["total"] == pytest.approx(want_total, rel=0, abs=1e-9)
    files.reset_stats()  # a third reader, in this process, finds everything in the shared cache
    again = list(read_units(url, batch_size=4, cache_dir=cache, min_chunk_bytes=8192))
    assert float(sum(b.spike_times_s.sum() for b in again)) == pytest.approx(want_total, rel=0, abs=1e-9)
    assert files.stats().ranges == [("/sub-1/sub-1_ecephys.nwb", 0, 0)]  # the check that it is unchanged
    assert not list(cache.rglob(".tmp-*"))


def test_cache_is_bounded(fresh, tmp_path):
    bound = 64 * 1024
    # its own server: this test makes many small requests and must not share a connection pool or
    # event loop with handlers that earlier fault-injection tests left stalled
    with RangeServer(fresh["root"]) as files:
        url = files.url_for("sub-1/sub-1_ecephys.nwb")
        list(read_units(url, cache_dir=tmp_path / "small", cache_max_bytes=bound, min_chunk_bytes=8192))
    cache = BoundedDiskCache(tmp_path / "small", max_bytes=bound)
    assert 0 < cache.total_bytes() <= bound


def test_parse_source_forms():
    p = parse_source("DANDI:000409/0.260309.1324")
    assert (p.kind, p.dandiset_id, p.version, p.asset_path) == ("dandi", "000409", "0.260309.1324", None)
    p = parse_source("dandi://dandi-sandbox/000409@draft/a/b.nwb")
    assert (p.instance, p.version, p.asset_path) == ("dandi-sandbox", "draft", "a/b.nwb")
    p = parse_source("https://dandiarchive.org/dandiset/000409")
    assert (p.dandiset_id, p.version) == ("000409", None)
    p = parse_source("https://dandiarchive.org/dandiset/000409/draft/files?location=sub-2%2F")
    assert (p.dandiset_id, p.version, p.asset_path) == ("000409", "draft", "sub-2/")  # a folder
    p = parse_source("https://dandiarchive.org/dandiset/000409/draft/files?location=%2Fsub-2%2Fx.nwb")
    assert p.asset_path == "sub-2/x.nwb"
    p = parse_source("https://example.org/data/file.nwb?x=1")
    assert (p.kind, p.url) == ("url", "https://example.org/data/file.nwb?x=1")
    assert parse_source("no/such/file.nwb").kind == "local"
    with pytest.raises(InvalidValueError):
        parse_source("  ")
    with pytest.raises(InvalidValueError):
        parse_source("https://dandiarchive.org/about")


def test_server_honours_range_and_counts(served):
    import requests

    files = served["files"]
    files.reset_stats()
    url = files.url_for("published.nwb")
    r = requests.get(url, headers={"Range": "bytes=10-19"}, timeout=5)
    assert r.status_code == 206 and len(r.content) == 10
    assert r.content == Path(served["root"] / "published.nwb").read_bytes()[10:20]
    st = files.stats()
    assert (st.requests, st.range_requests, st.bytes_sent) == (1, 1, 10)
    assert st.ranges == [("/published.nwb", 10, 19)]


def _write_chunked(
    path: Path, n_units: int = 60, n_spikes: int = 3000, raw_mb: float = 0.0, compression: str | None = "gzip"
) -> np.ndarray:
    """Units with spike_times in chunks of 4096 values (44 chunks; gzip-compressed by default),
    and ``raw_mb`` MB of "raw data" (an int16 TimeSeries in acquisition) that readers of the units
    do not need."""
    import datetime

    from hdmf.backends.hdf5 import H5DataIO
    from hdmf.common import ElementIdentifiers, VectorData, VectorIndex
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.misc import Units

    rng = np.random.default_rng(5)
    flat = np.sort(rng.uniform(0, 600, (n_units, n_spikes)), axis=1).ravel()
    nwb = NWBFile(
        session_description="chunked",
        identifier="chunked",
        session_start_time=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
    )
    if raw_mb:
        from pynwb import TimeSeries

        raw = rng.integers(-500, 500, (int(raw_mb * 1e6 / 2 / 64), 64), dtype=np.int16)
        nwb.add_acquisition(TimeSeries(name="raw", data=raw, unit="uV", rate=30000.0))
    st = VectorData(
        name="spike_times", description="s", data=H5DataIO(flat, chunks=(4096,), compression=compression)
    )
    sti = VectorIndex(name="spike_times_index", data=np.arange(1, n_units + 1) * n_spikes, target=st)
    wave = rng.normal(size=(n_units, 50)).astype("f4")
    wm = VectorData(name="waveform_mean", description="w", data=H5DataIO(wave, chunks=(8, 50)))
    nwb.units = Units(
        name="units",
        id=ElementIdentifiers(name="id", data=np.arange(n_units)),
        columns=[st, sti, wm],
        waveform_rate=30000.0,
    )
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return flat


def test_chunked_compressed_file_is_read_in_few_requests(fresh):
    files, root = fresh["files"], fresh["root"]
    flat = _write_chunked(root / "chunked.nwb")
    got = list(
        read_units(files.url_for("chunked.nwb"), batch_size=30, cache_dir=False, min_chunk_bytes=16384)
    )
    np.testing.assert_array_equal(np.concatenate([b.spike_times_s for b in got]), flat)
    # 44 spike chunks + 8 waveform chunks, 60 units: far fewer requests than chunks or units
    assert files.stats().range_requests <= 12, files.stats().ranges


def test_cache_dir_from_env_and_json_listing(fresh, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from nwb_celltype.cli import main

    monkeypatch.setenv("NWB_CELLTYPE_CACHE_DIR", str(tmp_path / "envcache"))
    with open_source(fresh["files"].url_for("published.nwb")) as src:
        assert src.cache is not None and Path(src.cache.root) == tmp_path / "envcache"
        with pytest.raises(InvalidValueError, match="already open"):
            list(read_units(src, timeout_s=3))
        list(read_units(src))
    assert BoundedDiskCache(tmp_path / "envcache", max_bytes=1 << 30).total_bytes() > 0
    res = CliRunner().invoke(
        main, ["assets", f"DANDI:{DS}/draft", "--json", "--api-url", fresh["api"].api_url]
    )
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert {r["path"] for r in rows} == {"sub-1/sub-1_ecephys.nwb", "sub-2/sub-2_ecephys.nwb"}
    assert all(r["size"] > 0 and r["version"] == "draft" for r in rows)


@pytest.mark.parametrize(
    ("fault", "exc", "match"),
    [
        ({"status": 503}, RemoteError, "failed after 2 attempts"),
        ({"status": 403}, RemoteError, "HTTP 403"),
        ({"latency_s": 30.0}, RemoteError, "no data for 1 s"),
        ({"fail_first": 1}, None, None),  # transient: retried, then works
    ],
)
def test_dandi_api_faults(fresh, fault, exc, match):
    api = fresh["api"]
    for k, v in fault.items():
        setattr(api.faults, k, v)
    src = f"DANDI:{DS}/draft/sub-2/sub-2_ecephys.nwb"
    t0 = time.monotonic()
    if exc is None:
        assert len(list_dandiset_assets(DS, "draft", dandi_api_url=api.api_url, retries=2)) == 2
        return
    with pytest.raises(exc, match=match):
        list(read_units(src, dandi_api_url=api.api_url, cache_dir=False, timeout_s=1.0, retries=1))
    assert time.monotonic() - t0 < 15


def _needed_bytes(path: Path) -> int:
    import h5py

    with h5py.File(path, "r") as f:
        return sum(d.id.get_storage_size() for d in f["units"].values())


def test_units_only_file_is_fetched_in_one_stream(fresh, tmp_path):
    """When the Units table is most of the file, the rest of the file comes in one streamed
    request after the metadata reads: few requests, bytes close to what is needed."""
    files, root = fresh["files"], fresh["root"]
    flat = _write_chunked(root / "plain.nwb", n_units=40, n_spikes=20000, compression=None)
    size, need = (root / "plain.nwb").stat().st_size, _needed_bytes(root / "plain.nwb")
    got = list(read_units(files.url_for("plain.nwb"), batch_size=16, cache_dir=False, min_chunk_bytes=65536))
    np.testing.assert_array_equal(np.concatenate([b.spike_times_s for b in got]), flat)
    st = files.stats()
    assert st.range_requests <= 4, st.ranges
    assert st.bytes_sent <= 1.3 * need, (st.bytes_sent, need, size)
    assert max(b - a + 1 for _p, a, b in st.ranges) > 0.8 * size  # one stream carried the data


def test_raw_data_is_not_downloaded(fresh):
    """A file whose raw data dwarfs the units: only the units' bytes are fetched, by ranges."""
    files, root = fresh["files"], fresh["root"]
    flat = _write_chunked(root / "with_raw.nwb", raw_mb=8.0)
    size = (root / "with_raw.nwb").stat().st_size
    got = list(
        read_units(files.url_for("with_raw.nwb"), batch_size=30, cache_dir=False, min_chunk_bytes=16384)
    )
    np.testing.assert_array_equal(np.concatenate([b.spike_times_s for b in got]), flat)
    st = files.stats()
    assert st.bytes_sent < 0.25 * size, (st.bytes_sent, size)
    assert st.range_requests <= 12, st.ranges


def test_cut_stream_is_resumed(fresh):
    files, root = fresh["files"], fresh["root"]
    flat = _write_chunked(root / "plain2.nwb", n_units=20, n_spikes=20000, compression=None)
    files.faults.cut_after_bytes = 300_000
    files.faults.cut_count = 2
    got = list(read_units(files.url_for("plain2.nwb"), cache_dir=False, retries=3, min_chunk_bytes=65536))
    np.testing.assert_array_equal(np.concatenate([b.spike_times_s for b in got]), flat)
    assert files.faults.cut_count == 0
    starts = [a for _p, a, _b in files.stats().ranges]
    assert len(starts) == len(set(starts))  # each resume starts where the cut left off


def test_spill_failure_falls_back_to_ranges(fresh, tmp_path, monkeypatch):
    """No room for the spill file (simulated ENOSPC): reading goes on with targeted requests."""
    import errno

    from nwb_celltype.io import _remote

    def no_space(self, dirname):
        raise OSError(errno.ENOSPC, "No space left on device", str(dirname))

    monkeypatch.setattr(_remote._Spill, "__init__", no_space)
    files, root = fresh["files"], fresh["root"]
    flat = _write_chunked(root / "plain3.nwb", n_units=20, n_spikes=20000, compression=None)
    got = list(read_units(files.url_for("plain3.nwb"), cache_dir=tmp_path / "c", min_chunk_bytes=65536))
    np.testing.assert_array_equal(np.concatenate([b.spike_times_s for b in got]), flat)
    assert not list((tmp_path / "c").rglob(".nwb-celltype-spill-*"))


def test_server_ignoring_ranges_is_not_downloaded_whole(fresh):
    """A server that answers range requests with the whole file (200): we refuse after the
    headers instead of reading a file that may be GBs into memory."""
    files, root = fresh["files"], fresh["root"]
    _write_chunked(root / "big_raw.nwb", raw_mb=40.0)
    size = (root / "big_raw.nwb").stat().st_size
    files.faults.ignore_range = True
    with pytest.raises(RemoteError, match="ignored the HTTP Range"):
        open_source(files.url_for("big_raw.nwb"), cache_dir=False)
    time.sleep(0.2)  # let the server notice the closed connections
    assert files.stats().bytes_sent < 0.5 * size, (files.stats().bytes_sent, size)


def _ids(url: str, **kw) -> list[int]:
    return [int(i) for b in read_units(url, **kw) for i in b.unit_ids]


def test_a_replaced_url_is_read_again_not_from_the_cache(tmp_path, caplog):
    """The content behind a plain URL can change: a cached URL is checked with one small request,
    and the chunks of a file that changed are dropped (with a warning), also when the new file has
    the same size (its ETag / Last-Modified differ)."""
    root, cache = tmp_path / "www", tmp_path / "cache"
    root.mkdir()
    rec = root / "rec.nwb"
    write_units_nwb(rec, n_units=5, seed=1)
    with RangeServer(root) as files:
        url = files.url_for("rec.nwb")
        assert len(_ids(url, cache_dir=cache)) == 5
        files.reset_stats()
        assert len(_ids(url, cache_dir=cache)) == 5
        assert files.stats().ranges == [("/rec.nwb", 0, 0)]  # unchanged: one byte, then the cache
        for same_size in (False, True):  # a new recording; then new spike times in place
            size = rec.stat().st_size
            time.sleep(0.01)
            if same_size:
                with h5py.File(rec, "r+") as f:
                    f["units/spike_times"][:] = f["units/spike_times"][:] + 1.0
            else:
                write_units_nwb(rec, n_units=9, seed=2)
            local = _digest(read_units(rec))
            caplog.clear()
            with caplog.at_level("WARNING", logger="nwb_celltype.io"):
                assert _digest(read_units(url, cache_dir=cache)) == local
            assert "changed since it was cached" in caplog.text and "read again" in caplog.text
        assert rec.stat().st_size == size  # the last replacement kept the size
        files.reset_stats()
        assert _digest(read_units(url, cache_dir=cache)) == local  # and is cached in turn
        assert files.stats().ranges == [("/rec.nwb", 0, 0)]


def test_a_file_changing_while_it_is_read_is_said_so(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    write_units_nwb(root / "rec.nwb", n_units=5, seed=1)
    with RangeServer(root) as files:
        with open_source(files.url_for("rec.nwb"), cache_dir=False, min_chunk_bytes=4096) as src:
            write_units_nwb(root / "rec.nwb", n_units=40, seed=2)  # re-exported meanwhile
            with pytest.raises(RemoteError, match="changed while it was being read: the server now reports"):
                list(read_units(src))


def test_no_cache_option(tmp_path, monkeypatch):
    """``--no-cache`` reads without the disk cache (over $NWB_CELLTYPE_CACHE_DIR too) and excludes
    ``--cache-dir``."""
    import importlib

    from click.testing import CliRunner

    from nwb_celltype.cli import main

    seen = []
    module = importlib.import_module("nwb_celltype.annotate")
    monkeypatch.setattr(module, "annotate", lambda source, **kw: seen.append(kw["cache_dir"]) or sys.exit(0))
    monkeypatch.setenv("NWB_CELLTYPE_CACHE_DIR", str(tmp_path / "env"))
    url = "http://127.0.0.1:9/rec.nwb"
    for extra, want in (([], str(tmp_path / "env")), (["--no-cache"], False), (["--cache-dir", "c"], "c")):
        res = CliRunner().invoke(main, ["annotate", url, "--out", str(tmp_path / "o.nwb"), *extra])
        assert res.exit_code == 0, res.output
        assert seen.pop() == want
    res = CliRunner().invoke(main, ["annotate", url, "--out", "o.nwb", "--cache-dir", "c", "--no-cache"])
    assert res.exit_code != 0 and "--no-cache and --cache-dir exclude each other" in res.output
    assert not seen


def test_listing_holds_only_nwb_files_of_the_folder_named(fresh):
    """``include`` narrows the NWB files, never adds other files; ``.NWB`` counts; a folder
    matches only itself (sub-1 is not sub-10); the listing says which version it listed."""
    from nwb_celltype.io import dandiset_listing

    api = fresh["api"].api_url
    paths = lambda *a, **kw: [x.path for x in list_dandiset_assets(*a, dandi_api_url=api, **kw)]  # noqa: E731
    assert paths(DS_MIXED, "draft") == ["sub-1/rec.NWB", "sub-10/sub-10.nwb"]
    assert paths(DS_MIXED, "draft", include="sub-1/*") == ["sub-1/rec.NWB"]
    assert paths(DS_MIXED, "draft", include=["*.txt", "*.zarr"]) == []
    for folder in ("sub-1", "sub-1/"):
        assert paths(f"{DS_MIXED}/draft/{folder}") == ["sub-1/rec.NWB"]
    assert paths(f"{DS_MIXED}/draft/sub-1/rec.NWB") == ["sub-1/rec.NWB"]
    listing = dandiset_listing(f"{DS}/sub-2/", dandi_api_url=api)  # the published version has no sub-2
    assert (listing.dandiset_id, listing.version, listing.assets) == (DS, VERSION, [])


def test_cli_assets_lists_nwb_files_only_and_names_the_version(fresh):
    from click.testing import CliRunner

    from nwb_celltype.cli import main

    api = ["--api-url", fresh["api"].api_url]
    res = CliRunner().invoke(main, ["assets", DS_MIXED, "--version", "draft", "--include", "sub-1/*", *api])
    assert res.exit_code == 0, res.output
    assert "sub-1/rec.NWB" in res.output and "notes.txt" not in res.output and ".zarr" not in res.output
    assert "1 NWB assets" in res.output
    res = CliRunner().invoke(main, ["assets", f"{DS}/sub-2/", *api])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == f"no matching NWB assets in dandiset {DS}@{VERSION}"


class _HtmlSite(_ThreadedApp):
    """Answers every request with a web page (an archive's site, a proxy's sign-in page)."""

    def _make_app(self):
        from aiohttp import web

        async def page(request):
            return web.Response(
                text="<!DOCTYPE html><html><body>Sign in</body></html>", content_type="text/html"
            )

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", page)
        return app


def test_a_wrong_api_url_is_named_so(fresh):
    """An API URL that answers web pages, or one without /api, is said to be the problem (not the
    JSON decoder's message, nor "no such dandiset")."""
    with _HtmlSite() as site, pytest.raises(RemoteError, match="not JSON") as err:
        list_dandiset_assets(DS, "draft", dandi_api_url=f"{site.url}/api", retries=0)
    assert "Expecting value" not in str(err.value) and "which ends in /api" in str(err.value)
    root = fresh["api"].api_url.removesuffix("/api")
    with pytest.raises(
        SourceNotFoundError, match="does not end in /api: check that it is a DANDI API.s base URL"
    ):
        list_dandiset_assets(DS, "draft", dandi_api_url=root, retries=0)
    with pytest.raises(SourceNotFoundError) as err:  # a real not-found on a real API: no such hint
        list_dandiset_assets("999999", dandi_api_url=fresh["api"].api_url, retries=0)
    assert "does not end in /api" not in str(err.value)


def test_a_cached_url_is_read_when_its_server_cannot_be_reached(tmp_path, caplog):
    root, cache = tmp_path / "www", tmp_path / "cache"
    root.mkdir()
    write_units_nwb(root / "rec.nwb", n_units=6, seed=4)
    local = _digest(read_units(root / "rec.nwb"))
    with RangeServer(root) as files:
        url = files.url_for("rec.nwb")
        assert _digest(read_units(url, cache_dir=cache)) == local
    with caplog.at_level("WARNING", logger="nwb_celltype.io"):  # the server is gone
        assert _digest(read_units(url, cache_dir=cache, timeout_s=1.0, retries=0)) == local
    assert "could not check whether" in caplog.text and "reading the cached copy" in caplog.text


def test_a_cached_url_whose_server_does_not_answer_falls_back_quickly(tmp_path, caplog):
    """The check of a cached URL is one attempt with a short timeout (min(timeout_s, 5 s)), not the
    read's retries and timeouts: offline (packets dropped, a hung server) every open of a cached
    URL waited (retries + 1) x timeout_s, up to 2 minutes, before reading the cached copy."""
    root, cache = tmp_path / "www", tmp_path / "cache"
    root.mkdir()
    write_units_nwb(root / "rec.nwb", n_units=6, seed=4)
    local = _digest(read_units(root / "rec.nwb"))
    with RangeServer(root) as files:
        url, port = files.url_for("rec.nwb"), files.port
        assert _digest(read_units(url, cache_dir=cache)) == local
    # the server's port now accepts connections and never answers
    silent = socket.socket()
    silent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    silent.bind(("127.0.0.1", port))
    silent.listen(16)
    try:
        t0 = time.monotonic()
        with caplog.at_level("WARNING", logger="nwb_celltype.io"):
            assert _digest(read_units(url, cache_dir=cache, timeout_s=12.0, retries=1)) == local
        elapsed = time.monotonic() - t0
    finally:
        silent.close()
    assert "could not check whether" in caplog.text and "reading the cached copy" in caplog.text
    assert elapsed < 9.0, elapsed  # one attempt of 5 s, well under the read's 2 x 12 s


def test_a_dandi_asset_whose_archive_size_is_wrong_is_reopened_with_the_servers(tmp_path, caplog):
    """The probe corrects an archive's wrong size (with a warning); the corrected size is kept with
    the cache's record of the asset, so a reopen that reads uncached ranges does not take the
    server's size for a file that changed while it was being read."""
    root = tmp_path / "www"
    root.mkdir()
    f = root / "rec.nwb"
    write_units_nwb(f, layout="3d", n_units=40, seed=5)
    local, size = _digest(read_units(f)), f.stat().st_size
    with RangeServer(root) as files, DandiApiServer(files) as api:
        aid = api.add_asset(DS, "sub-1/rec.nwb", f)
        api._find_asset(aid).size = size + 1000  # the archive lists another size than the server's
        source = f"DANDI:{DS}/draft/sub-1/rec.nwb"
        kw = {"dandi_api_url": api.api_url, "cache_dir": tmp_path / "c", "min_chunk_bytes": 4096}
        with caplog.at_level("WARNING", logger="nwb_celltype.io"):
            with open_source(source, **kw) as src:  # opened only: the units' chunks are not cached
                assert src.info.size == size
        assert f"the archive lists {size + 1000} bytes, the server has {size}" in caplog.text
        files.reset_stats()
        assert _digest(read_units(source, **kw)) == local
        assert files.stats().range_requests >= 1  # some ranges came from the server
        with open_source(source, **kw) as src:
            assert src.info.size == size
