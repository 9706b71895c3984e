"""Session 20's robustness audit of session 19's new reading paths (/work/notes/audit20_robust.md):
each test reproduces a defect the audit found and fails on a2480a2."""

from __future__ import annotations

import logging

import h5py
import pytest
from click.testing import CliRunner
from test_units_writers19 import _es_file, messages, read

from nwb_celltype.cli import main


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
