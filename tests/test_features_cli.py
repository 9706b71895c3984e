"""`nwb-celltype features`: the waveforms' sampling rate can be stated (--waveform-rate, as for
annotate), is recorded in the features file, and a rate the file does not state is named with the
option that states it."""

from __future__ import annotations

import datetime

import numpy as np
import pytest
from click.testing import CliRunner

from nwb_celltype.cli import main
from nwb_celltype.features.families import load_features_any


@pytest.fixture(scope="module")
def no_rate_file(tmp_path_factory):
    """An NWB file whose Units hold 60-sample waveform_mean rows and no waveform_rate."""
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.misc import Units

    rng = np.random.default_rng(0)
    nwb = NWBFile(
        session_description="features cli test",
        identifier="features-cli-test",
        session_start_time=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
    )
    units = Units(name="units")
    t = np.arange(60)
    for u in range(3):
        wave = -100.0 * np.exp(-0.5 * ((t - 20) / (2.0 + u)) ** 2) + 30.0 * np.exp(
            -0.5 * ((t - 32) / 5.0) ** 2
        )
        units.add_unit(spike_times=np.sort(rng.uniform(0, 100, 2000)), waveform_mean=wave.astype(np.float32))
    nwb.units = units
    path = tmp_path_factory.mktemp("nwb") / "norate.nwb"
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


def _features(path, out, *extra):
    res = CliRunner().invoke(main, ["features", str(path), "--out", str(out), *extra])
    assert res.exit_code == 0, res.output
    return res.output, load_features_any(out)


def test_features_takes_the_waveform_rate_and_records_it(no_rate_file, tmp_path):
    out, assumed = _features(no_rate_file, tmp_path / "assumed.npz")
    assert assumed.meta["waveform_rate"] == {"hz": 30000.0, "source": "assumed"}
    # the note names this command's option
    assert "assumed 30000 Hz (state it with --waveform-rate" in out
    out, stated = _features(no_rate_file, tmp_path / "stated.npz", "--waveform-rate", "40000")
    assert stated.meta["waveform_rate"] == {"hz": 40000.0, "source": "stated"}
    assert "assumed" not in out
    # the stated rate is the one the waveforms were read at: a 60-sample spike is shorter at 40 kHz
    assert stated.has_waveform.all() and not np.allclose(stated.waveform, assumed.waveform)


@pytest.mark.parametrize(
    "bad",
    [["--waveform-rate", "0"], ["--waveform-rate", "-30000"], ["--batch-size", "0"]],
)
def test_features_refuses_bad_rates_and_batch_sizes(no_rate_file, tmp_path, bad):
    res = CliRunner().invoke(main, ["features", str(no_rate_file), "--out", str(tmp_path / "f.npz"), *bad])
    assert res.exit_code != 0 and "Invalid value" in res.output, res.output
    assert not (tmp_path / "f.npz").exists()
