"""Units tables as pipelines write them (audit 19): real NWB files written with pynwb, read with
``read_units`` (and the ``features`` command), checked on what a user sees: the waveforms and
features read, the warnings and each unit's reason.

- channels-first ``waveform_mean`` (units, channels, samples) is set aside, not read as
  (units, samples, channels), also where the units list no electrodes, only their peak one or
  differing numbers, and where samples and channels are as many; the genuine layouts are read;
- spike times in seconds that are unsorted, slow and regular, or a week after the reference time
  get no "milliseconds" warning; times in ms still do;
- a waveform rate stated only by the recording's ElectricalSeries is the rate the waveforms are
  read at (``--waveform-rate`` still overrides, a rate in Units is still the file's), where the
  series holds the units' electrodes (where they list none: the file's only raw series, over the
  whole electrodes table); a series they cannot be tied to (EMG, sync, other electrodes) is not;
- a table holding only per-spike ``waveforms`` is read as the mean of each unit's first 1000; a
  malformed per-spike index sets them aside, and a remote read counts the bytes they cost;
- (review 19) a correct (units, samples, channels) array whose samples equal the electrodes
  table's size is read where the units list electrodes;
- spike times rounded to float32 before pynwb wrote them as float64 are named as such.
"""

from __future__ import annotations

import datetime
import logging

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from pynwb import NWBHDF5IO, NWBFile
from pynwb.ecephys import LFP, ElectricalSeries
from pynwb.misc import Units

from nwb_celltype.cli import main
from nwb_celltype.errors import InvalidUnitsError, NotNWBError
from nwb_celltype.features.families import get_family, load_features_any
from nwb_celltype.io import read_units

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
SWAPPED = "its axes may be (units, channels, samples)"


def spike(t_ms: np.ndarray) -> np.ndarray:
    """An extracellular spike at times ``t_ms`` (ms from its trough): a trough, then a slower
    repolarisation of 30 % of its depth."""
    return -np.exp(-0.5 * (t_ms / 0.12) ** 2) + 0.3 * np.exp(-0.5 * ((t_ms - 0.45) / 0.25) ** 2)


def template(n_samples: int, n_channels: int, peak: int, rate: float = 30000.0) -> np.ndarray:
    """(samples, channels) in volts: the trough a third into the window, largest on ``peak`` and
    decaying across channels with one sign (a spatial profile)."""
    t_ms = (np.arange(n_samples) - n_samples // 3) / rate * 1e3
    gain = np.exp(-0.5 * ((np.arange(n_channels) - peak) / 2.0) ** 2)
    return (100e-6 * spike(t_ms)[:, None] * gain[None, :]).astype(np.float64)


def trains(n_units: int, seed: int = 0, duration: float = 200.0, rate: float = 10.0) -> list[np.ndarray]:
    """Poisson trains in seconds with a 2 ms refractory period, sorted."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_units):
        isi = 0.002 + rng.exponential(1.0 / rate, int(duration * rate * 1.2))
        t = np.cumsum(isi)
        out.append(t[t < duration])
    return out


def nwb_file(n_electrodes: int, reference_offset_s: float = 0.0) -> NWBFile:
    f = NWBFile(
        "writers",
        "writers19",
        T0,
        timestamps_reference_time=T0 - datetime.timedelta(seconds=reference_offset_s),
    )
    if n_electrodes:
        dev = f.create_device(name="probe")
        grp = f.create_electrode_group(name="shank", description="s", location="cerebellum", device=dev)
        for _ in range(n_electrodes):
            f.add_electrode(group=grp, location="SIMgr")
    return f


def write(path, units: list[dict], *, n_electrodes: int = 32, rate=30000.0, f=None, **file_kw):
    """``units``: dicts of add_unit arguments (spike_times, waveform_mean / waveforms, electrodes)."""
    f = f or nwb_file(n_electrodes, **file_kw)
    kw = {"waveform_rate": rate} if rate is not None else {}
    if any("electrodes" in u for u in units):
        kw["electrode_table"] = f.electrodes
    f.units = Units(name="units", description="units", **kw)
    for u in units:
        f.units.add_unit(**u)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(f)
    return path


def read(path, **kw):
    batches = list(read_units(path, require_waveforms=False, **kw))
    assert len(batches) == 1
    return batches[0]


def messages(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records)


def features(batch):
    fam = get_family("acg-isi-wave")
    return fam.extract_features(batch, fam.default_config())


# --- finding 1: channels-first waveform_mean -------------------------------------------------

N_UNITS = 6
PEAKS = [3, 8, 13, 18, 23, 28]  # each unit's peak channel of 32


def _units_with(waves: list[np.ndarray], electrodes=None) -> list[dict]:
    tr = trains(len(waves))
    out = []
    for i, w in enumerate(waves):
        u = {"spike_times": tr[i], "waveform_mean": w}
        if electrodes is not None:
            u["electrodes"] = electrodes[i]
        out.append(u)
    return out


def _electrode_lists(electrodes: str | None):
    """Each unit's electrodes: none listed (None), only its peak one ("peak", on a 384-row table),
    or one or two ("differing")."""
    if electrodes == "peak":
        return [[100 + p] for p in PEAKS]
    if electrodes == "differing":
        return [[p] if i % 2 else [p, p + 1] for i, p in enumerate(PEAKS)]
    return None


@pytest.mark.parametrize(
    ("n_samples", "n_electrodes", "electrodes", "why"),
    [
        # the doc's case: a 32-row electrodes table, Units without an electrodes column
        (82, 32, None, "match the electrodes table's 32 rows (the units list none)"),
        # each unit lists only its peak electrode, on a 384-row table
        (82, 384, "peak", "spike's phases (a peak and an opposite phase) along its last axis"),
        # units listing differing numbers of electrodes, 32-row table
        (82, 32, "differing", "match the electrodes table's 32 rows"),
        # 32 samples on a 32-channel probe: the sizes cannot tell, the content does
        (32, 32, None, "as many samples as channels (32)"),
    ],
)
def test_channels_first_waveforms_are_set_aside(tmp_path, caplog, n_samples, n_electrodes, electrodes, why):
    """(units, channels, samples) by construction: never read as NWB's layout (the "peak channel"
    would be a time sample, the "waveform" a spatial profile): set aside with the warning and
    reason the linked case gets, and an error where waveforms are required."""
    waves = [np.ascontiguousarray(template(n_samples, 32, p).T) for p in PEAKS]  # (channels, samples)
    lists = _electrode_lists(electrodes)
    path = write(tmp_path / "chfirst.nwb", _units_with(waves, lists), n_electrodes=n_electrodes)
    with pytest.raises(NotNWBError, match=r"its axes may be \(units, channels, samples\)"):
        next(read_units(path))
    with caplog.at_level(logging.WARNING, logger="nwb_celltype.io"):
        batch = read(path)
    assert batch.waveforms is None
    assert list(batch.peak_channels) == [-1] * N_UNITS
    for r in batch.extra["reasons"]:
        assert r.startswith("waveform_mean set aside") and SWAPPED in r and why in r, r
    said = messages(caplog)
    assert SWAPPED in said and why in said and "set aside" in said, said


@pytest.mark.parametrize(
    ("n_samples", "n_electrodes", "electrodes"),
    [
        (82, 32, None),  # no electrodes column, channels = the table's rows
        (32, 32, None),  # as many samples as channels: the content says NWB's layout
        (32, 384, "peak"),  # 32 samples, 32 channels, peak electrode listed
        (82, 128, "differing"),
    ],
)
def test_genuine_layouts_are_still_read(tmp_path, caplog, n_samples, n_electrodes, electrodes):
    """The same spikes in NWB's (units, samples, channels): read, peak channel and waveform as
    constructed, no warning."""
    waves = [template(n_samples, 32, p) for p in PEAKS]
    lists = _electrode_lists(electrodes)
    path = write(tmp_path / "ok.nwb", _units_with(waves, lists), n_electrodes=n_electrodes)
    with caplog.at_level(logging.WARNING, logger="nwb_celltype.io"):
        batch = read(path)
    # (units listing 2 electrodes of 128 for 32 channels get a note on their location, as before)
    assert "set aside" not in messages(caplog) and "axes" not in messages(caplog), messages(caplog)
    assert list(batch.extra["reasons"]) == [""] * N_UNITS
    np.testing.assert_array_equal(batch.peak_channels, PEAKS)
    want = np.stack([w[:, p] for w, p in zip(waves, PEAKS, strict=True)]).astype(np.float32)
    np.testing.assert_array_equal(batch.waveforms, want)


def _jittered(n_units: int, n_samples: int = 64, n_channels: int = 32, seed: int = 0):
    """(units, samples, channels) waveforms in NWB's layout whose content cannot tell the axes
    apart: troughs jittered +-6 samples (not aligned), a dipole of half the peak 11 channels away
    and noise (no clean spatial profile), each unit's peak on a random channel (returned)."""
    rng = np.random.default_rng(seed)
    waves, peaks = [], []
    for _ in range(n_units):
        t_ms = (np.arange(n_samples) - n_samples // 3 - int(rng.integers(-6, 7))) / 30.0
        c = int(rng.integers(0, n_channels))
        ch = np.arange(n_channels)
        prof = np.exp(-np.abs(ch - c) / 3.0) - 0.5 * np.exp(-np.abs(ch - (c + 11) % n_channels) / 3.0)
        noise = 0.02 * 100e-6 * rng.standard_normal((n_samples, n_channels))
        waves.append(100e-6 * spike(t_ms)[:, None] * prof[None, :] + noise)
        peaks.append(c)
    return waves, peaks


@pytest.mark.parametrize("listed", ["12 each", "peak only"])
def test_samples_matching_the_table_size_do_not_set_aside_a_correct_layout(tmp_path, caplog, listed):
    """Review 19: (units, 64 samples, 32 channels) in NWB's layout on a 64-row electrodes table,
    the units listing 12 electrodes each (or only their peak one), content that cannot tell: the
    table's size is no channel count where the units list electrodes, so the array is read."""
    from nwb_celltype.io._waveform_checks import _content_axes

    waves, peaks = _jittered(20)
    assert _content_axes(np.stack(waves)) == (None, None)  # only the sizes could set it aside
    lists = [list(range(12)) if listed == "12 each" else [p] for p in peaks]
    units = [
        {"spike_times": t, "waveform_mean": w, "electrodes": e}
        for t, w, e in zip(trains(20), waves, lists, strict=True)
    ]
    path = write(tmp_path / "t64.nwb", units, n_electrodes=64)
    with caplog.at_level(logging.WARNING, logger="nwb_celltype.io"):
        batch = read(path)
    said = messages(caplog)
    assert "set aside" not in said and "axes" not in said, said
    if listed == "peak only":
        assert said == ""
    else:  # the only warning: which of its 12 electrodes a 32-channel unit peaks on is unknown
        assert [r.getMessage().split(": ", 1)[1][:30] for r in caplog.records] == [
            "waveform_mean has 32 channels,"
        ], said
    assert list(batch.extra["reasons"]) == [""] * 20
    np.testing.assert_array_equal(batch.peak_channels, peaks)
    want = np.stack([w[:, p] for w, p in zip(waves, peaks, strict=True)]).astype(np.float32)
    np.testing.assert_array_equal(batch.waveforms, want)
    assert len(list(read_units(path))) == 1  # waveforms required: read as well


# --- finding 3: no false "milliseconds" warnings ---------------------------------------------


def _time_scale_warnings(path) -> list[str]:
    """The warnings reading ``path`` gives that mention milliseconds."""
    logger = logging.getLogger("nwb_celltype.io")
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        list(read_units(path, require_waveforms=False))
    finally:
        logger.removeHandler(handler)
    return [r.getMessage() for r in records if "milliseconds" in r.getMessage()]


def _slow_regular(n_units: int) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    cv = 0.15
    return [np.cumsum(rng.gamma(1 / cv**2, 0.2 * cv**2, 1500)) for _ in range(n_units)]  # 5 Hz


@pytest.mark.parametrize(
    ("name", "make", "offset"),
    [
        ("unsorted", lambda: [np.random.default_rng(1).permutation(t) for t in trains(6)], 0.0),
        ("slow regular 5 Hz", lambda: _slow_regular(6), 0.0),
        ("a week after the reference time", lambda: [t + 7 * 86400.0 for t in trains(6)], 7 * 86400.0),
    ],
)
def test_valid_second_based_times_get_no_millisecond_warning(tmp_path, name, make, offset):
    units = [{"spike_times": t} for t in make()]
    path = write(tmp_path / "s.nwb", units, rate=None, reference_offset_s=offset)
    assert _time_scale_warnings(path) == [], name


def test_times_in_milliseconds_are_still_named(tmp_path):
    """The same trains in ms: 100 s (1.2 days read as seconds) by the intervals, 300 s (3.5 days)
    by the span as well."""
    short = write(
        tmp_path / "ms100.nwb", [{"spike_times": t * 1000} for t in trains(6, duration=100.0)], rate=None
    )
    (said,) = _time_scale_warnings(short)
    assert "the spike times look like milliseconds" in said and "divide them by 1000" in said, said
    long = write(
        tmp_path / "ms300.nwb", [{"spike_times": t * 1000} for t in trains(6, duration=300.0)], rate=None
    )
    (said,) = _time_scale_warnings(long)
    assert "are the times in milliseconds?" in said and "Their intervals agree" in said, said


# --- finding 4: the rate of the recording the waveforms were cut from ------------------------

RATE_40K = 40000.0


def _es_file(path, series: dict[str, tuple[float, list[int]]], *, units_rate=None, lfp=False, listed=True):
    """Units on electrodes 0-3 and 4-7 (8-row table; ``listed`` False: the units list none),
    waveforms sampled at 40 kHz, with ElectricalSeries ``series`` (name -> (rate, electrodes)) in
    acquisition."""
    f = nwb_file(8)
    for name, (rate, rows) in series.items():
        region = f.create_electrode_table_region(rows, f"{name} electrodes")
        data = np.zeros((10, len(rows)), dtype=np.int16)
        f.add_acquisition(ElectricalSeries(name=name, data=data, electrodes=region, rate=rate))
    if lfp:
        container = LFP(name="LFP")
        f.create_processing_module("ecephys", "lfp").add(container)
        region = f.create_electrode_table_region(list(range(8)), "lfp electrodes")
        container.create_electrical_series(name="lfp", data=np.zeros((10, 8)), electrodes=region, rate=2500.0)
    tr = trains(4)
    units = [
        {
            "spike_times": tr[i],
            "waveform_mean": template(80, 4, i % 4, rate=RATE_40K),  # 2 ms at 40 kHz
            "electrodes": list(range(4 * (i % 2), 4 * (i % 2) + 4)),
        }
        for i in range(4)
    ]
    if not listed:
        for u in units:
            del u["electrodes"]
    return write(path, units, rate=units_rate, f=f)


def test_a_rate_stated_only_by_the_recording_is_used(tmp_path, caplog):
    es = _es_file(tmp_path / "es.nwb", {"raw": (RATE_40K, list(range(8)))}, lfp=True)
    ref = _es_file(tmp_path / "ref.nwb", {}, units_rate=RATE_40K)  # the reference layout
    with caplog.at_level(logging.WARNING, logger="nwb_celltype.io"):
        batch = read(es)
    assert (batch.waveform_rate_hz, batch.extra["waveform_rate_source"]) == (
        RATE_40K,
        "electrical_series:raw",
    )
    said = messages(caplog)
    assert "ElectricalSeries 'raw' is at 40000 Hz" in said and "--waveform-rate" in said, said
    want = features(read(ref))
    got = features(batch)
    np.testing.assert_array_equal(got.waveform, want.waveform)
    assert got.has_waveform.all()
    # the features command records where the rate came from, and says nothing was assumed
    res = CliRunner().invoke(main, ["features", str(es), "--out", str(tmp_path / "f.npz")])
    assert res.exit_code == 0, res.output
    assert load_features_any(tmp_path / "f.npz").meta["waveform_rate"] == {
        "hz": RATE_40K,
        "source": "electrical_series:raw",
    }
    assert "assumed" not in res.output
    assert "read at 40000 Hz, the rate of the recording's ElectricalSeries 'raw'" in res.output
    # and so does annotate's closing summary
    res = CliRunner().invoke(main, ["annotate", str(es), "--out", str(tmp_path / "a.nwb")])
    assert res.exit_code == 0, res.output
    assert "read at 40000 Hz, the rate of the recording's ElectricalSeries 'raw'" in res.output


def test_recording_rates_that_do_not_say_one_rate(tmp_path, caplog):
    """Stated rates override; a rate in Units is the file's; a raw series that does not hold all
    the units' electrodes (an EMG or sync channel, another probe) does not set the rate: 30 kHz
    assumed, and the warning names the series, its rate and why; an LFP series is not a
    recording the waveforms are cut from; two raw series at two rates under the units: 30 kHz
    assumed, and the warning names both."""
    es = _es_file(tmp_path / "es.nwb", {"raw": (RATE_40K, list(range(8)))})
    b = read(es, waveform_rate_hz=30000.0)
    assert (b.waveform_rate_hz, b.extra["waveform_rate_source"]) == (30000.0, "stated")
    stated = _es_file(tmp_path / "stated.nwb", {"raw": (RATE_40K, list(range(8)))}, units_rate=30000.0)
    b = read(stated)
    assert (b.waveform_rate_hz, b.extra["waveform_rate_source"]) == (30000.0, "file")
    # a raw series holding only some of the units' electrodes: not taken, and the warning says why
    partial = _es_file(tmp_path / "partial.nwb", {"raw": (RATE_40K, [6, 7])})
    with caplog.at_level(logging.WARNING, logger="nwb_celltype.io"):
        b = read(partial)
    assert (b.waveform_rate_hz, b.extra["waveform_rate_source"]) == (30000.0, "assumed")
    said = messages(caplog)
    assert "assuming 30000 Hz" in said and "'raw' (40000 Hz) hold 2 of the 8 electrodes" in said, said
    caplog.clear()
    only_lfp = _es_file(tmp_path / "lfp.nwb", {}, lfp=True)
    b = read(only_lfp)
    assert (b.waveform_rate_hz, b.extra["waveform_rate_source"]) == (30000.0, "assumed")
    two = _es_file(tmp_path / "two.nwb", {"a": (20000.0, [0, 1, 2, 3]), "b": (RATE_40K, [4, 5, 6, 7])})
    with caplog.at_level(logging.WARNING, logger="nwb_celltype.io"):
        b = read(two)
    assert (b.waveform_rate_hz, b.extra["waveform_rate_source"]) == (30000.0, "assumed")
    said = messages(caplog)
    assert "assuming 30000 Hz" in said and "'a', 'b' are at 20000 / 40000 Hz" in said, said


def test_a_raw_series_is_taken_for_units_listing_no_electrodes_only_over_the_whole_table(tmp_path, caplog):
    """Units listing no electrodes: the file's only raw series sets the rate where it records the
    whole electrodes table; an EMG or sync series on some rows, or two raw series, do not (30 kHz
    assumed, the warning names them and why)."""
    whole = _es_file(tmp_path / "whole.nwb", {"raw": (RATE_40K, list(range(8)))}, listed=False)
    b = read(whole)
    assert (b.waveform_rate_hz, b.extra["waveform_rate_source"]) == (RATE_40K, "electrical_series:raw")
    emg = _es_file(tmp_path / "emg.nwb", {"emg": (20000.0, [7])}, listed=False)
    with caplog.at_level(logging.WARNING, logger="nwb_celltype.io"):
        b = read(emg)
    assert (b.waveform_rate_hz, b.extra["waveform_rate_source"]) == (30000.0, "assumed")
    said = messages(caplog)
    assert "'emg' (20000 Hz) records 1 of the electrodes table's 8 rows, not the whole table" in said, said
    caplog.clear()
    two = _es_file(
        tmp_path / "two.nwb", {"raw": (RATE_40K, list(range(8))), "sync": (25000.0, [0])}, listed=False
    )
    with caplog.at_level(logging.WARNING, logger="nwb_celltype.io"):
        b = read(two)
    assert (b.waveform_rate_hz, b.extra["waveform_rate_source"]) == (30000.0, "assumed")
    said = messages(caplog)
    assert "'raw' (40000 Hz), 'sync' (25000 Hz)" in said and "the units list no electrodes" in said, said


# --- finding 5: per-spike waveforms only ----------------------------------------------------


def test_per_spike_waveforms_are_averaged(tmp_path, caplog):
    """NWB's doubly ragged Units.waveforms (spikes x electrodes per unit), no waveform_mean: each
    unit's waveform is the mean of its first 1000 spikes' waveforms on its peak channel (the
    1200-spike unit's last 200 are three times larger and must not count)."""
    rng = np.random.default_rng(3)
    tr = trains(4, duration=300.0)
    n_spikes = [20, 1200, 50, 7]
    peaks = [0, 1, 2, 3]
    units, expected = [], []
    for i, k in enumerate(n_spikes):
        base = template(60, 4, peaks[i]).T  # (electrodes, samples)
        per_spike = base[None] * (1 + 0.1 * rng.standard_normal((k, 1, 1)))
        if k > 1000:
            per_spike[1000:] *= 3.0
        expected.append(per_spike[:1000].mean(axis=0)[peaks[i]])
        t = np.sort(rng.choice(tr[i], k, replace=False)) if len(tr[i]) >= k else tr[i]
        units.append({"spike_times": t, "waveforms": per_spike, "electrodes": list(range(4))})
    path = write(tmp_path / "spikes.nwb", units, n_electrodes=4)
    with caplog.at_level(logging.WARNING, logger="nwb_celltype.io"):
        batch = read(path)
    assert list(batch.extra["reasons"]) == [""] * 4
    np.testing.assert_array_equal(batch.peak_channels, peaks)
    np.testing.assert_allclose(batch.waveforms, np.stack(expected), rtol=1e-5, atol=1e-12)
    np.testing.assert_array_equal(batch.extra["peak_electrodes"], peaks)
    assert "per-spike waveforms" in messages(caplog) and "first 1000" in messages(caplog)
    assert len(list(read_units(path))) == 1  # waveforms required: these are waveforms
    # the reference layout: waveform_mean holding those means
    ref_units = [
        {"spike_times": u["spike_times"], "waveform_mean": u["waveforms"][:1000].mean(axis=0).T}
        for u in units
    ]
    ref = read(write(tmp_path / "ref.nwb", ref_units, n_electrodes=4))
    np.testing.assert_allclose(features(batch).waveform, features(ref).waveform, atol=1e-5)


def test_per_spike_waveforms_in_another_layout_are_named(tmp_path, caplog):
    units = [
        {"spike_times": t, "waveforms": template(60, 2, 0).T[None].repeat(5, 0), "electrodes": [0, 1]}
        for t in trains(3)
    ]
    path = write(tmp_path / "spikes.nwb", units, n_electrodes=2)
    with h5py.File(path, "a") as f:
        del f["units/waveforms_index_index"]
    with caplog.at_level(logging.WARNING, logger="nwb_celltype.io"):
        batch = read(path)
    assert batch.waveforms is None
    for r in batch.extra["reasons"]:
        assert "per-spike waveforms" in r and "not averaged" in r, r
    assert "per-spike waveforms" in messages(caplog)


def _per_spike_file(path, *, n_electrodes: int = 4, listed=None):
    """Per-spike waveforms only (4 per spike, 60 samples): units of 20, 1200 and 7 spikes."""
    tr = trains(3, duration=300.0)
    units = []
    for i, k in enumerate([20, 1200, 7]):
        per_spike = np.repeat(template(60, 4, i).T[None], k, axis=0)
        units.append({"spike_times": tr[i][:k], "waveforms": per_spike})
        units[-1]["electrodes"] = list(range(4)) if listed is None else listed
    return write(path, units, n_electrodes=n_electrodes)


def test_malformed_per_spike_index_sets_the_waveforms_aside(tmp_path, caplog):
    """Review 19: a waveforms_index_index past the end of waveforms_index (an optional column)
    does not stop the read: the spikes are read, the waveforms set aside with a warning and a
    reason on every unit; where waveforms are required, the index error."""
    path = _per_spike_file(tmp_path / "bad.nwb")
    with h5py.File(path, "a") as f:
        f["units/waveforms_index_index"][-1] += 5
    with caplog.at_level(logging.WARNING, logger="nwb_celltype.io"):
        batch = read(path)
    assert batch.waveforms is None
    assert np.diff(batch.spike_offsets).tolist() == [20, 1200, 7]
    why = "per-spike waveforms are set aside: waveforms_index_index ends at 1232, past the 1227 values"
    for r in batch.extra["reasons"]:
        assert why in r and "; " not in r, r
    assert why in messages(caplog)
    with pytest.raises(InvalidUnitsError, match="waveforms_index_index ends at 1232"):
        next(read_units(path))


def test_per_spike_channel_note_names_the_per_spike_waveforms(tmp_path, caplog):
    """Units listing 3 electrodes with 4 per-spike waveforms each, on an 8-row table: the note
    that the peak electrode cannot be told names the per-spike waveforms, not waveform_mean."""
    path = _per_spike_file(tmp_path / "ps.nwb", n_electrodes=8, listed=[0, 1, 2])
    with caplog.at_level(logging.WARNING, logger="nwb_celltype.io"):
        read(path)
    said = messages(caplog)
    assert "its per-spike waveforms have 4 channels, but unit row 0 lists 3 electrodes" in said, said
    assert "waveform_mean" not in said.replace("no waveform_mean but", ""), said


def test_bytes_to_read_counts_the_averaged_per_spike_waveforms(tmp_path):
    """What a remote read weighs a whole-file fetch against includes the per-spike waveforms that
    will be read: each unit's first 1000 spikes' rows (1227 spikes, 1027 read), and their index."""
    from nwb_celltype.io._source import open_source
    from nwb_celltype.io._units_layout import _bytes_to_read, _inspect

    path = _per_spike_file(tmp_path / "ps.nwb")
    with h5py.File(path) as f:
        g = f["units"]
        others = ["id", "spike_times", "spike_times_index", "electrodes", "electrodes_index"]
        size = {k: g[k].size * g[k].dtype.itemsize for k in g}
        per_spike = size["waveforms"] + size["waveforms_index"]
        assert g["waveforms_index"].shape == (1227,)
        want = sum(size[k] for k in others) + size["waveforms_index_index"] + per_spike * 1027 / 1227
        assert abs(_bytes_to_read(g, None, None) - want) <= 2
    with open_source(path) as src:
        lay = _inspect(src, None, False, True, None)
        one_unit = _bytes_to_read(lay.group, lay, np.array([1]))  # the 1200-spike unit: 1000 read
        assert abs(one_unit - (1200 * 8 + per_spike * 1000 / 1227)) <= 2


# --- finding 6: float32-rounded spike times stored as float64 -----------------------------------


def test_float32_rounded_times_are_named(tmp_path, caplog):
    """Times an hour into the session rounded to float32, then written by pynwb as float64 (as it
    writes a float32 array, with a warning):
    near 3600-4096 s float32 steps are 2**-12 s = 0.244 ms."""
    tr = [t + 3600.0 for t in trains(6, duration=300.0)]
    rounded = write(
        tmp_path / "f32.nwb",
        [{"spike_times": t.astype(np.float32).astype(np.float64)} for t in tr],
        rate=None,
    )
    with h5py.File(rounded) as f:
        assert f["units/spike_times"].dtype == np.float64
    with caplog.at_level(logging.WARNING, logger="nwb_celltype.io"):
        list(read_units(rounded, require_waveforms=False))
    said = messages(caplog)
    assert "rounded to float32 before being written" in said and f"{2**-12 * 1e3:.3g} ms" in said, said
    caplog.clear()
    exact = write(tmp_path / "f64.nwb", [{"spike_times": t} for t in tr], rate=None)
    samples = write(
        tmp_path / "samples.nwb", [{"spike_times": np.round(t * 3e4)} for t in trains(6)], rate=None
    )
    with caplog.at_level(logging.WARNING, logger="nwb_celltype.io"):
        list(read_units(exact, require_waveforms=False))
        list(read_units(samples, require_waveforms=False))
    assert "rounded to float32" not in messages(caplog), messages(caplog)
