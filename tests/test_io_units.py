"""Units reader: real NWB files written with pynwb in each waveform layout, read back as batches and
checked against the values written."""

from __future__ import annotations

import datetime
import logging
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from nwb_celltype.errors import InvalidValueError, NotNWBError, SourceNotFoundError
from nwb_celltype.io import map_location_to_layer, open_source, read_units

LOCATIONS = ["CENT3mo", "SIMpu", "CUL4, 5gr", "DG-mo"]  # ML, PCL, GCL, unknown


def make_waveform(n_samples: int, peak: float, rng: np.random.Generator) -> np.ndarray:
    """A spike-like mean waveform: trough of ``peak`` (negative) or peak (positive) at 1/3."""
    t = np.arange(n_samples)
    w = peak * np.exp(-0.5 * ((t - n_samples // 3) / 2.0) ** 2)
    return (w + rng.normal(0, abs(peak) * 0.01, n_samples)).astype(np.float32)


def write_units_nwb(
    path: Path,
    *,
    layout: str = "2d",
    n_units: int = 7,
    n_samples: int = 40,
    n_channels: int = 4,
    seed: int = 0,
    rate_hz: float | None = 30000.0,
    empty_units: tuple[int, ...] = (),
    no_wave_units: tuple[int, ...] = (),
    positive_units: tuple[int, ...] = (),
    layer_column: bool = False,
    electrodes: bool = True,
    obs_intervals: bool = True,
) -> dict:
    """Write a real NWB file with a Units table; returns what was written (for checks).

    layout: "2d" (units, samples), "3d" (units, samples, channels), "ragged" (rows per channel with
    waveform_mean_index, as in Allen Institute files) or "none" (no waveform_mean column).
    """
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.misc import Units

    rng = np.random.default_rng(seed)
    nwb = NWBFile(
        session_description="io test",
        identifier=f"io-test-{seed}",
        session_start_time=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
    )
    kwargs = {"waveform_rate": rate_hz} if rate_hz is not None else {}
    if electrodes:
        dev = nwb.create_device(name="probe")
        grp = nwb.create_electrode_group(name="shank", description="s", location="cerebellum", device=dev)
        for c in range(n_channels):
            nwb.add_electrode(group=grp, location=LOCATIONS[c % len(LOCATIONS)])
        kwargs["electrode_table"] = nwb.electrodes
    units = Units(name="units", **kwargs)
    if layout == "ragged":
        with warnings.catch_warnings():  # hdmf warns that the predefined column has no index
            warnings.simplefilter("ignore", UserWarning)
            units.add_column(name="waveform_mean", description="mean per channel", index=True)
    if layer_column:
        units.add_column(name="brain_layer", description="layer")
    truth = {"ids": [], "spikes": [], "peak": [], "wave": [], "sign": [], "layer": [], "obs": []}
    for u in range(n_units):
        n_sp = 0 if u in empty_units else int(rng.integers(20, 200))
        st = np.sort(rng.uniform(0, 100, n_sp))
        pk = int(rng.integers(0, n_channels))
        amp = 80.0 if u in positive_units else -100.0
        chans = np.stack(
            [make_waveform(n_samples, amp * (1.0 if c == pk else 0.3), rng) for c in range(n_channels)],
            axis=1,
        )
        if u in no_wave_units:
            chans[:] = np.nan
        row: dict = {"spike_times": st, "id": 1000 + u}
        if layout == "2d":
            row["waveform_mean"] = chans[:, pk]
        elif layout == "3d":
            row["waveform_mean"] = chans
        elif layout == "ragged":
            row["waveform_mean"] = [chans[:, c] for c in range(n_channels)]
        if electrodes:
            row["electrodes"] = list(range(n_channels)) if layout != "2d" else [pk]
        if layer_column:
            row["brain_layer"] = ["molecular layer", "PCL", "GCL", "xx"][u % 4]
        if obs_intervals:
            row["obs_intervals"] = np.array([[0.0, 50.0], [60.0, 100.0]])
        units.add_unit(**row)
        truth["ids"].append(1000 + u)
        truth["spikes"].append(st)
        truth["peak"].append(-1 if u in no_wave_units else (0 if layout == "2d" else pk))
        truth["wave"].append(chans[:, pk])
        truth["sign"].append(0 if u in no_wave_units else (1 if u in positive_units else -1))
        truth["layer"].append(map_location_to_layer(LOCATIONS[pk % len(LOCATIONS)]))
    nwb.units = units
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return truth


def _collect(batches):
    batches = list(batches)
    ids = np.concatenate([b.unit_ids for b in batches])
    spikes = [b.spike_times(i) for b in batches for i in range(len(b))]
    waves = np.concatenate([b.waveforms for b in batches]) if batches[0].waveforms is not None else None
    peaks = np.concatenate([b.peak_channels for b in batches])
    signs = np.concatenate([b.extra["peak_sign"] for b in batches])
    layers = np.concatenate([b.layers for b in batches])
    reasons = np.concatenate([b.extra["reasons"] for b in batches])
    return batches, ids, spikes, waves, peaks, signs, layers, reasons


@pytest.mark.parametrize("layout", ["2d", "3d", "ragged"])
@pytest.mark.parametrize("batch_size", [1, 3, 256])
def test_layouts_round_trip(tmp_path, layout, batch_size):
    f = tmp_path / f"{layout}.nwb"
    truth = write_units_nwb(
        f, layout=layout, empty_units=(2,), no_wave_units=(4,), positive_units=(5,), n_units=8
    )
    batches, ids, spikes, waves, peaks, signs, layers, reasons = _collect(
        read_units(f, batch_size=batch_size)
    )
    assert [len(b) for b in batches] == [min(batch_size, 8 - i) for i in range(0, 8, batch_size)]
    np.testing.assert_array_equal(ids, truth["ids"])
    for got, want in zip(spikes, truth["spikes"], strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(peaks, truth["peak"])
    np.testing.assert_array_equal(signs, truth["sign"])
    assert waves.dtype == np.float32 and waves.shape == (8, 40)
    for i in range(8):
        if i == 4:
            assert np.isnan(waves[i]).all()
        else:
            np.testing.assert_allclose(waves[i], truth["wave"][i], rtol=1e-6)
    assert batches[0].waveform_rate_hz == 30000.0
    assert reasons[2] == "no spikes" and reasons[4] == "no waveform"
    assert all(r == "" for i, r in enumerate(reasons) if i not in (2, 4))
    skipped = [s for b in batches for s in b.extra["skipped"]]
    assert [(s.unit_id, s.reason) for s in skipped] == [(1002, "no spikes"), (1004, "no waveform")]
    problems = {k: v for b in batches for k, v in b.extra["problems"].items()}
    assert problems == {1002: "no spikes", 1004: "no waveform"}
    # layers from the peak channel's electrode location (unit 4 has no peak: all electrodes differ)
    for i in range(8):
        want = "unknown" if (i == 4 and layout != "2d") else truth["layer"][i]
        assert layers[i] == want, (i, layers[i], want)
    obs = [o for b in batches for o in b.obs_intervals]
    np.testing.assert_array_equal(obs[0], [[0.0, 50.0], [60.0, 100.0]])


def test_layer_column_and_unit_ids(tmp_path):
    f = tmp_path / "layer.nwb"
    write_units_nwb(f, layer_column=True, n_units=8)
    (b,) = list(read_units(f, layer_column="brain_layer", unit_ids=[1005, 1001, 1006]))
    np.testing.assert_array_equal(b.unit_ids, [1001, 1005, 1006])
    np.testing.assert_array_equal(b.unit_indices, [1, 5, 6])
    assert list(b.layers) == ["PCL", "PCL", "GCL"]
    with pytest.raises(InvalidValueError, match="not a column"):
        list(read_units(f, layer_column="nope"))
    with pytest.raises(InvalidValueError, match="unit_ids not in the Units table"):
        list(read_units(f, unit_ids=[5]))
    with pytest.raises(InvalidValueError, match="batch_size"):
        list(read_units(f, batch_size=0))


def test_missing_rate_falls_back_with_warning(tmp_path, caplog):
    f = tmp_path / "norate.nwb"
    write_units_nwb(f, rate_hz=None, n_units=2)
    with caplog.at_level(logging.WARNING, logger="nwb_celltype.io._units_layout"):
        (b,) = list(read_units(f))
    assert b.waveform_rate_hz == 30000.0
    assert "no sampling_rate" in caplog.text


def test_no_waveforms(tmp_path):
    f = tmp_path / "nowave.nwb"
    write_units_nwb(f, layout="none", n_units=3)
    with pytest.raises(NotNWBError, match="no waveform_mean column"):
        list(read_units(f))
    (b,) = list(read_units(f, require_waveforms=False))
    assert b.waveforms is None and list(b.extra["reasons"]) == ["no waveform"] * 3
    assert b.spike_counts.min() > 0


@pytest.mark.parametrize(
    ("location", "layer"),
    [
        ("CENT3mo", "ML"),
        ("SIMpu", "PCL"),
        ("CUL4, 5gr", "GCL"),
        ("PFLgr", "GCL"),
        ("molecular layer", "ML"),
        ("Purkinje layer", "PCL"),
        ("GCL", "GCL"),
        ("DG-mo", "unknown"),
        ("CA1", "unknown"),
        ("", "unknown"),
        (b"ANcr1mo", "ML"),
        ("FLpu", "PCL"),
        ("NODgr", "GCL"),
        ("MOBgr", "unknown"),  # the olfactory bulb's granule layer
        ("AOBgr", "unknown"),
        ("Sumo", "unknown"),
        (None, "unknown"),
    ],
)
def test_location_mapping(location, layer):
    assert map_location_to_layer(location) == layer


def _not_nwb_hdf5(p: Path) -> None:
    with h5py.File(p, "w") as f:
        f["x"] = np.arange(3)


def _no_units(p: Path) -> None:
    from pynwb import NWBHDF5IO, NWBFile

    nwb = NWBFile(
        session_description="x",
        identifier="x",
        session_start_time=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
    )
    with NWBHDF5IO(str(p), "w") as io:
        io.write(nwb)


def _half_of_a_file(p):
    write_units_nwb(p.with_name("whole.nwb"), n_units=20)
    whole = p.with_name("whole.nwb").read_bytes()
    p.write_bytes(whole[: len(whole) // 2])


@pytest.mark.parametrize(
    ("make", "exc", "match"),
    [
        (None, SourceNotFoundError, "No such file"),
        (lambda p: p.write_bytes(b"hello, not hdf5" * 100), NotNWBError, "not an HDF5 file"),
        (_not_nwb_hdf5, NotNWBError, "not NWB"),
        (_no_units, NotNWBError, "no Units table"),
        (lambda p: p.mkdir(), NotNWBError, "directory"),
        (
            _half_of_a_file,
            NotNWBError,
            r"is truncated: it holds \d+ of the \d+ bytes its HDF5 header declares",
        ),
    ],
)
def test_bad_local_sources(tmp_path, make, exc, match):
    p = tmp_path / "bad.nwb"
    if make is not None:
        make(p)
    with pytest.raises(exc, match=match):
        list(read_units(p))


def test_source_info_and_nwbfile(tmp_path):
    f = tmp_path / "a.nwb"
    write_units_nwb(f, n_units=3)
    with open_source(str(f)) as src:
        d = src.info.to_dict()
        assert d["kind"] == "local" and d["path"] == str(f.resolve()) and d["size"] == f.stat().st_size
        assert d["sha256"] is None
        import hashlib

        assert src.compute_sha256() == hashlib.sha256(f.read_bytes()).hexdigest()
        assert len(src.nwbfile.units) == 3
        (b,) = list(read_units(src))
        assert b.extra["source"]["path"] == str(f.resolve())
