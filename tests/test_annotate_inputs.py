"""What annotate makes of inputs a reader finds wanting: a Units table without spike times, and
spikes set aside before counting (outside a unit's observation intervals), which the unit's row
in the file says (audit findings of session 16)."""

from __future__ import annotations

import hashlib
import shutil

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from nwb_celltype.annotate import annotate
from nwb_celltype.cli import main
from nwb_celltype.errors import InvalidValueError
from nwb_celltype.simulate import demo_recording_path


def _copy(tmp_path, name):
    path = tmp_path / name
    shutil.copyfile(demo_recording_path(), path)
    return path


def test_a_units_table_without_spike_times_is_an_error(tmp_path):
    path = _copy(tmp_path, "nospikes.nwb")
    with h5py.File(path, "r+") as f:
        del f["units/spike_times"], f["units/spike_times_index"]
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(InvalidValueError, match="has no spike_times column"):
        annotate(path, out=tmp_path / "out.nwb")
    r = CliRunner().invoke(main, ["annotate", str(path), "--out", str(tmp_path / "out.nwb")])
    assert r.exit_code != 0 and "has no spike_times column" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "out.nwb").exists()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_spikes_outside_the_observation_are_said_in_the_row(tmp_path):
    from nwb_celltype.nwb import read_annotations

    path = _copy(tmp_path, "obs.nwb")
    with h5py.File(path, "r+") as f:
        ends = f["units/obs_intervals_index"][()]
        assert ends[0] == 1  # unit 0 has one interval: the whole session
        f["units/obs_intervals"][0] = [0.0, 100.0]
        n_after = int(np.sum(f["units/spike_times"][: f["units/spike_times_index"][0]] > 100.0))
    assert n_after > 0
    annotate(path, out=tmp_path / "obs.annotated.nwb")
    with h5py.File(tmp_path / "obs.annotated.nwb", "r") as f:
        (rec,) = [r for r in read_annotations(f).values() if r.classifier is not None]
    row = int(np.flatnonzero(np.asarray(rec.unit_indices) == 0)[0])
    assert f"{n_after} spikes outside the unit's observation intervals ignored" in str(rec.reasons[row])
    others = np.asarray(rec.unit_indices) != 0
    assert not any("observation intervals" in str(r) for r in np.asarray(rec.reasons)[others])


def test_a_file_another_process_writes_is_named_so(tmp_path):
    """HDF5's file lock (another process has the file open for writing) is said as such, not as
    'not an HDF5 file'."""
    import subprocess
    import sys
    import time

    from nwb_celltype.errors import SourceError

    path = _copy(tmp_path, "locked.nwb")
    ready = tmp_path / "ready"
    code = (
        "import h5py, pathlib, time, sys\n"
        f"f = h5py.File({str(path)!r}, 'a')\n"
        f"pathlib.Path({str(ready)!r}).touch()\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the writer did not start"
            time.sleep(0.05)
        with pytest.raises(SourceError, match="open for writing in another process"):
            annotate(path, out=tmp_path / "out.nwb")
    finally:
        proc.kill()
        proc.wait()
    assert not (tmp_path / "out.nwb").exists()
