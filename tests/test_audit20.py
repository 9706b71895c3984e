"""Session 20's robustness audit of session 19's new reading paths (/work/notes/audit20_robust.md):
each test reproduces a defect the audit found and fails on a2480a2."""

from __future__ import annotations

import logging

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from pynwb import NWBHDF5IO
from test_units_writers19 import _es_file, _per_spike_file, messages, read

from nwb_celltype.cli import main
from nwb_celltype.errors import FeatureError
from nwb_celltype.features.discharge import DischargeConfig, align_waveform, extract_discharge_features
from nwb_celltype.features.families import get_family
from nwb_celltype.nwb import read_annotations
from nwb_celltype.units import UnitsBatch, reason_parts


def _dangling_raw_series(tmp_path):
    """A sorting file whose raw ElectricalSeries is an external link to a file not there (the raw
    file never downloaded, or moved), and whose Units table states no waveform rate."""
    path = _es_file(tmp_path / "sorting.nwb", {})
    with h5py.File(path, "a") as h5:
        h5["acquisition/ElectricalSeriesAP"] = h5py.ExternalLink("raw.nwb", "/acquisition/ElectricalSeriesAP")
    return path


def test_a_dangling_link_does_not_stop_the_search_for_the_recording_rate(tmp_path, caplog):
    """h5py raises RuntimeError (not KeyError / OSError) for an external link whose file is missing:
    the search for the recording's rate gave up the whole read; now that link is passed over and the
    rate is assumed, as with no raw series at all."""
    path = _dangling_raw_series(tmp_path)
    with caplog.at_level(logging.WARNING, logger="nwb_celltype.io"):
        batch = read(path)
    assert (batch.waveform_rate_hz, batch.extra["waveform_rate_source"]) == (30000.0, "assumed")
    assert "assuming 30000 Hz" in messages(caplog)
    res = CliRunner().invoke(main, ["features", str(path), "--out", str(tmp_path / "f.npz")])
    assert res.exit_code == 0, res.output


@pytest.mark.filterwarnings(
    "ignore:Path to Group altered/broken:hdmf.backends.hdf5.h5tools.BrokenLinkWarning"
)
def test_a_dangling_link_does_not_stop_annotate(tmp_path):
    path = _dangling_raw_series(tmp_path)
    res = CliRunner().invoke(main, ["annotate", str(path), "--out", str(tmp_path / "a.nwb")])
    assert res.exit_code == 0, res.output


def test_a_unit_whose_per_spike_waveforms_cannot_be_averaged_is_scored_from_its_discharge(tmp_path):
    """The reader's reason for such a unit holds "; " inside its parentheses ("... waveforms each;
    NWB expects ..."), the separator of a unit's reasons: its second half was read as a problem of
    the spike train and a unit with 1200 good spikes became not classifiable. A waveform problem is
    a note: the unit is scored from its discharge alone."""
    path = _per_spike_file(tmp_path / "spikes.nwb")
    with h5py.File(path, "a") as h5:  # the 6th spike of unit 1 (rows 20-1219) loses an electrode's row
        index = h5["units/waveforms_index"]
        index[25] = index[25] - 1
    batch = read(path)
    why = batch.extra["reasons"][1]
    assert why.startswith("no waveform (its spikes have [3, 4, 5] per-spike waveforms each; NWB"), why
    fam = get_family("acg-isi-wave")
    feats = fam.extract_features(batch, fam.default_config())
    assert bool(feats.usable[1]) and not bool(feats.has_waveform[1])
    assert bool(feats.has_waveform[0]) and bool(feats.has_waveform[2])  # the others keep theirs


def test_reasons_split_outside_brackets_only():
    assert reason_parts("no waveform (a; b); too few spikes (3 [1; 2])") == [
        "no waveform (a; b)",
        "too few spikes (3 [1; 2])",
    ]
    assert reason_parts("") == [] and reason_parts("one") == ["one"]


def test_the_table_names_the_readers_reason_for_a_missing_waveform(tmp_path):
    """A unit whose per-spike waveforms the reader set aside (a malformed index) is scored from its
    discharge alone, and its row says why, in the reader's words: it said "waveform contains NaN or
    infinite samples" (the NaN row the reader leaves such a unit), which sent the user looking for
    NaN values the file does not hold."""
    path = _per_spike_file(tmp_path / "spikes.nwb")
    with h5py.File(path, "a") as h5:  # unit 1's rows 20-1219: the 6th spike ends before the 5th
        index = h5["units/waveforms_index"]
        index[25] = index[24] - 1
    out = tmp_path / "a.nwb"
    res = CliRunner().invoke(main, ["annotate", str(path), "--out", str(out)])
    assert res.exit_code == 0, res.output
    with NWBHDF5IO(str(out), "r") as io:
        (record,) = read_annotations(io.read()).values()
        why = str(record.reasons[list(record.unit_ids).index(1)])
    assert "no usable waveform: waveforms_index is malformed for this unit" in why, why
    assert "NaN" not in why, why


def _trough_at(n: int, trough: int, width_ms: float, rate: float = 30000.0) -> np.ndarray:
    t_ms = (np.arange(n) - trough) / rate * 1e3
    return -np.exp(-0.5 * (t_ms / width_ms) ** 2) + 0.3 * np.exp(-0.5 * ((t_ms - 0.45) / 0.25) ** 2)


@pytest.mark.parametrize("width_ms", [0.05, 0.07, 0.10, 0.12, 0.20])
def test_a_window_cut_0_47_ms_after_the_trough_is_set_aside_however_blunt_the_trough(width_ms):
    """A 75-sample window whose trough lies one sample past the central 60 % (0.47 ms before the
    window's end, < EDGE_MIN_POST_MS): sharp troughs were set aside, blunt ones (the central pick on
    the trough's own flank, < 1.1x) were used with the repolarisation cut off."""
    with pytest.raises(FeatureError, match="cut too close to the spike") as info:
        align_waveform(_trough_at(75, 60, width_ms), 30000.0)
    # where the central pick is the trough's flank, the message places the pick, not the trough
    flank = "the central pick on its flank at 1.97 ms after the window's start, 0.50 ms before its end"
    assert (flank in str(info.value)) == (width_ms >= 0.1), str(info.value)


@pytest.mark.parametrize("width_ms", [0.10, 0.20])
def test_a_blunt_trough_past_the_centre_with_room_after_it_is_kept_on_its_flank(width_ms, caplog):
    """Room enough after the central pick (19 samples >= 18): kept there, and the log says it is the
    deflection's flank; the trough inside the centre is aligned as always."""
    out = align_waveform(_trough_at(95, 76, width_ms), 30000.0)
    assert np.argmin(out) == DischargeConfig().waveform_align + 1  # the pick: one sample before the trough
    with caplog.at_level(logging.WARNING):
        extract_discharge_features(
            UnitsBatch(
                unit_ids=np.array([7]),
                unit_indices=np.array([0]),
                spike_times_s=np.sort(np.random.default_rng(0).uniform(0, 100, 500)),
                spike_offsets=np.array([0, 500]),
                waveforms=_trough_at(95, 76, width_ms)[None].astype(np.float32),
                waveform_rate_hz=30000.0,
            )
        )
    assert "unit 7" in caplog.text and "on that deflection's flank" in caplog.text, caplog.text
    align_waveform(_trough_at(75, 59, width_ms), 30000.0)  # in the centre: no edge rule


def _timestamped_series_file(
    path, timestamps, *, stated_rate=None, listed=True, stated_rows=None, unit_rows=None
):
    """Units whose waveforms are at 40 kHz and state no rate (on electrodes ``unit_rows``, default
    0-7), beside a raw ElectricalSeries stored with ``timestamps`` instead of a rate, over the
    electrodes the units are on (and, with ``stated_rate``, another over ``stated_rows``, default
    0-7, that states that rate: a recording and its processed copy, or another probe)."""
    from pynwb.ecephys import ElectricalSeries
    from test_units_writers19 import RATE_40K, nwb_file, template, trains, write

    unit_rows = list(range(8)) if unit_rows is None else list(unit_rows)
    f = nwb_file(8)
    region = f.create_electrode_table_region(unit_rows, "raw electrodes")
    data = np.zeros((len(timestamps), len(unit_rows)), dtype=np.int16)
    f.add_acquisition(ElectricalSeries(name="raw", data=data, electrodes=region, timestamps=timestamps))
    if stated_rate is not None:
        rows = list(range(8)) if stated_rows is None else list(stated_rows)
        region = f.create_electrode_table_region(rows, "recorded electrodes")
        data = np.zeros((10, len(rows)), dtype=np.int16)
        f.add_acquisition(ElectricalSeries(name="recorded", data=data, electrodes=region, rate=stated_rate))
    units = [
        {
            "spike_times": t,
            "waveform_mean": template(80, len(unit_rows), 0, rate=RATE_40K),
            "electrodes": unit_rows,
        }
        for t in trains(3)
    ]
    if not listed:
        for u in units:
            del u["electrodes"]
    return write(path, units, rate=None, f=f)


def test_a_raw_series_with_regular_timestamps_gives_the_rate(tmp_path, caplog):
    """NeuroConv writes a recording's time vector as timestamps: such a series was passed over and
    waveforms cut at 40 kHz were read at an assumed 30 kHz (4 of 16 labels changed in the audit)."""
    t = 12.5 + np.arange(20_000) / 40_000.0
    b = read(_timestamped_series_file(tmp_path / "ts.nwb", t))
    assert (b.waveform_rate_hz, b.extra["waveform_rate_source"]) == (40_000.0, "electrical_series:raw")
    gap = t.copy()
    gap[5000:] += 1.0  # a pause in the recording within the first timestamps: no one rate
    with caplog.at_level(logging.WARNING, logger="nwb_celltype.io"):
        b = read(_timestamped_series_file(tmp_path / "gap.nwb", gap))
    assert (b.waveform_rate_hz, b.extra["waveform_rate_source"]) == (30000.0, "assumed")


def test_a_timestamped_copy_beside_a_rate_stated_recording_changes_nothing(tmp_path):
    """Review 20: a processed copy stored with timestamps beside the rate-stated recording made two
    raw series, so units listing no electrodes fell back to an assumed 30 kHz (a2480a2: 40 kHz)."""
    t = np.arange(20_000) / 40_000.0
    path = _timestamped_series_file(tmp_path / "two.nwb", t, stated_rate=40_000.0, listed=False)
    b = read(path)
    assert (b.waveform_rate_hz, b.extra["waveform_rate_source"]) == (40_000.0, "electrical_series:recorded")


def test_a_timestamps_rate_keeps_its_decimals(tmp_path):
    """Review 20: TDT's 24414.0625 Hz from timestamps was rounded to 24414.062 Hz (to the mHz)."""
    rate = 24414.0625
    b = read(_timestamped_series_file(tmp_path / "tdt.nwb", 3.0 + np.arange(20_000) / rate))
    assert (b.waveform_rate_hz, b.extra["waveform_rate_source"]) == (rate, "electrical_series:raw")


def test_a_timestamped_probe_beside_a_rate_stated_one_gives_its_rate(tmp_path):
    """Review 20b: probe A states 30 kHz, probe B (the units') is stored with 40 kHz timestamps:
    the stated series alone do not tie the units to a rate, so B's timestamps do (40 kHz, as at
    7c00911; 58f5af1 assumed 30 kHz)."""
    t = np.arange(20_000) / 40_000.0
    path = _timestamped_series_file(
        tmp_path / "probes.nwb", t, stated_rate=30_000.0, stated_rows=range(4), unit_rows=range(4, 8)
    )
    b = read(path)
    assert (b.waveform_rate_hz, b.extra["waveform_rate_source"]) == (40_000.0, "electrical_series:raw")


@pytest.mark.parametrize("start_s", [0.0, 1000.0, 54_321.5])
def test_late_timestamps_give_the_rate_to_its_digits(tmp_path, start_s):
    """Review 20b: 1 / the median interval of timestamps starting at 1000 s gave 39999.9999 Hz (the
    intervals of large times lose digits), and two probes starting at 0 and 1000 s two rates."""
    b = read(_timestamped_series_file(tmp_path / "late.nwb", start_s + np.arange(20_000) / 40_000.0))
    assert b.waveform_rate_hz == 40_000.0


@pytest.mark.parametrize("ignore_waveforms", [False, True])
def test_the_table_says_which_units_were_aligned_near_their_windows_edge(tmp_path, ignore_waveforms):
    """Audit 20: windows the edge rule aligns still move labels (10-15 of 80 demo units against the
    uncut windows), and only the log said which units: the annotated row now notes it where the
    waveform was used."""
    from test_units_writers19 import template, trains, write

    from nwb_celltype.features._main_peak import EDGE_NOTE

    units = [
        {"spike_times": t, "waveform_mean": template(90, 4, 0)[20 if i == 1 else 0 :][:70]}
        for i, t in enumerate(trains(3, duration=300.0))
    ]  # unit 1's window starts 0.33 ms before its trough
    path = write(tmp_path / "cut.nwb", units)
    out = tmp_path / "a.nwb"
    args = ["annotate", str(path), "--out", str(out)] + (["--ignore-waveforms"] if ignore_waveforms else [])
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    with NWBHDF5IO(str(out), "r") as io:
        (record,) = read_annotations(io.read()).values()
        reasons = [str(r) for r in record.reasons]
    noted = [EDGE_NOTE in r for r in reasons]
    assert noted == [False, not ignore_waveforms, False], reasons
