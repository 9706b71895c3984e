"""`nwb-celltype simulate`: a --library folder is written whole or not at all (refused when not empty
unless --overwrite, nothing left by an interruption, --waveform-rate honoured), and no simulated
unit with fewer spikes than a library allows carries a ground-truth label."""

from __future__ import annotations

import inspect
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from nwb_celltype.cli import main
from nwb_celltype.simulate import (
    DEMO_ARGS,
    LABEL_MIN_SPIKES,
    simulate_library,
    simulate_recording,
    simulate_units,
)

SMALL_LAB = {"PkC_ss": 2, "PkC_cs": 1, "MLI": 2, "GoC": 1, "MFB": 2}


@pytest.fixture
def small_library(monkeypatch):
    """The CLI's --library, shrunk to a few units per session (its defaults are C4-sized)."""
    monkeypatch.setitem(simulate_library.__kwdefaults__, "labelled_counts", SMALL_LAB)
    monkeypatch.setitem(simulate_library.__kwdefaults__, "n_unlabelled", 12)


def _simulate(*args: str):
    return CliRunner().invoke(main, ["simulate", *args, "--no-compression"])


def _listing(folder: Path) -> list[str]:
    """Every entry under ``folder`` (hidden ones too), as relative paths."""
    out = []
    for root, dirs, files in os.walk(folder):
        out += [os.path.relpath(os.path.join(root, n), folder) for n in dirs + files]
    return sorted(out)


def _rate(path: Path) -> float:
    with h5py.File(path, "r") as f:
        return float(f["units/waveform_mean"].attrs["sampling_rate"])


# --- --library: the folder ----------------------------------------------------------------------


def test_library_refuses_a_non_empty_folder(tmp_path, small_library):
    lib = tmp_path / "L"
    lib.mkdir()
    (lib / "mouse_s0_00.nwb").write_text("precious")
    res = _simulate(str(lib), "--library", "--sessions", "1", "--duration", "30")
    assert res.exit_code == 1
    assert "exists; pass --overwrite" in res.output
    assert (lib / "mouse_s0_00.nwb").read_text() == "precious"
    assert _listing(tmp_path) == ["L", "L/mouse_s0_00.nwb"]


def test_library_overwrite_replaces_the_folder_whole(tmp_path, small_library):
    lib = tmp_path / "L"
    assert _simulate(str(lib), "--library", "--sessions", "2", "--duration", "30").exit_code == 0
    assert _listing(tmp_path) == ["L", "L/mouse_s0_00.nwb", "L/mouse_s0_01.nwb"]
    # another seed into the same folder: refused, not mixed in
    res = _simulate(str(lib), "--library", "--sessions", "1", "--duration", "30", "--seed", "1")
    assert res.exit_code == 1 and "pass --overwrite" in res.output
    assert _listing(tmp_path) == ["L", "L/mouse_s0_00.nwb", "L/mouse_s0_01.nwb"]
    res = _simulate(
        str(lib), "--library", "--sessions", "1", "--duration", "30", "--seed", "1", "--overwrite"
    )
    assert res.exit_code == 0, res.output
    assert _listing(tmp_path) == ["L", "L/mouse_s1_00.nwb"]
    assert f"wrote {lib / 'mouse_s1_00.nwb'}:" in res.output  # the final path, not the hidden folder's


def test_library_overwrite_keeps_a_folder_with_other_files(tmp_path, small_library):
    lib = tmp_path / "L"
    lib.mkdir()
    (lib / "mouse_s0_00.nwb").write_text("old session")
    (lib / "notes.txt").write_text("mine")
    res = _simulate(str(lib), "--library", "--sessions", "1", "--duration", "30", "--overwrite")
    assert res.exit_code == 1
    assert "notes.txt" in res.output and "Nothing was written" in res.output
    assert _listing(tmp_path) == ["L", "L/mouse_s0_00.nwb", "L/notes.txt"]


def test_library_honours_waveform_rate(tmp_path, small_library):
    lib = tmp_path / "L"
    res = _simulate(str(lib), "--library", "--sessions", "3", "--duration", "30", "--waveform-rate", "20000")
    assert res.exit_code == 0, res.output
    files = sorted(lib.glob("*.nwb"))
    assert len(files) == 3 and {_rate(p) for p in files} == {20000.0}
    assert res.output.count("waveforms at 20000 Hz") == 3
    bad = _simulate(str(tmp_path / "M"), "--library", "--sessions", "1", "--waveform-rate", "1000")
    assert bad.exit_code == 1 and "waveform_rate_hz must be between 5 and 100 kHz" in bad.output
    assert not (tmp_path / "M").exists()


def test_library_interrupted_leaves_nothing(tmp_path):
    """Ctrl-C once the first session is written: no library folder, no hidden folder or file, and
    the message that says so is true."""
    lib = tmp_path / "L"
    cmd = [sys.executable, "-c", "from nwb_celltype.cli import main; main()", "simulate", str(lib)]
    cmd += ["--library", "--sessions", "12", "--duration", "60", "--no-compression"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not any(p.endswith("mouse_s0_00.nwb") for p in _listing(tmp_path)):
            assert proc.poll() is None, "the run ended before its first session was written"
            assert time.monotonic() < deadline, "no session written in 120 s"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGINT)
        err = proc.communicate(timeout=120)[1].decode()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == 128 + signal.SIGINT, err
    assert err.startswith("Error: interrupted by SIGINT") and "Traceback" not in err, err
    assert _listing(tmp_path) == []


# --- labels only on units a library can use ------------------------------------------------------


def test_label_minimum_is_the_library_minimum():
    from nwb_celltype.features.config import FeatureConfig
    from nwb_celltype.library import validate_library

    assert LABEL_MIN_SPIKES == inspect.signature(validate_library).parameters["min_spikes"].default
    assert LABEL_MIN_SPIKES == FeatureConfig().min_spikes


def test_simulated_recordings_validate_as_a_library(tmp_path):
    """The report: every unit labelled (--labelled-fraction 1.0) failed `library validate` with
    too-few-spikes on the units of the "very few spikes" defect."""
    lib = tmp_path / "lib"
    lib.mkdir()
    for k in (1, 2, 3):
        args = [str(lib / f"rec{k}.nwb"), "--units", "40", "--duration", "300", "--seed", str(k)]
        res = _simulate(*args, "--labelled-fraction", "1.0")
        assert res.exit_code == 0, res.output
    files = sorted(str(p) for p in lib.glob("*.nwb"))
    res = CliRunner().invoke(main, ["library", "create", str(tmp_path / "lib.toml"), *files])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["library", "validate", str(tmp_path / "lib.toml")])
    assert res.exit_code == 0, res.output
    assert "too-few-spikes" not in res.output


@pytest.mark.parametrize(
    "kwargs",
    [
        {"class_counts": DEMO_ARGS["class_counts"], "labelled_counts": DEMO_ARGS["labelled_counts"]},
        {
            "class_counts": {"PkC_ss": 20, "PkC_cs": 20, "MLI": 20, "GoC": 20, "MFB": 20},
            "labelled_fraction": 1.0,
        },
    ],
    ids=["demo", "all"],
)
def test_labels_move_only_off_units_with_too_few_spikes(kwargs):
    """Same data as without the minimum; units with too few spikes lose their label (a complex-spike
    unit also when its simple-spike unit has too few), every other labelled unit keeps its own, and
    labelled_counts are still met where enough units qualify."""
    args = {"preset": "mouse", "duration_s": 300.0, "seed": DEMO_ARGS["seed"], **kwargs}
    old, _ = simulate_units(**args, label_min_spikes=0)
    new, _ = simulate_units(**args)
    for name in ("classes", "spike_counts", "spike_times_s", "waveforms", "partner", "layers"):
        np.testing.assert_array_equal(getattr(new, name), getattr(old, name))
    enough = new.spike_counts >= LABEL_MIN_SPIKES
    cs = new.classes == "PkC_cs"
    enough[cs] &= new.spike_counts[new.partner[cs]] >= LABEL_MIN_SPIKES
    assert old.labelled[~enough].any()  # the case this is about (seed 2025: two MFB units)
    assert not new.labelled[~enough].any()
    if "labelled_counts" in kwargs:
        kept = old.labelled & enough & (new.classes != "PkC_ss")  # SS labels follow their CS pairs
        assert new.labelled[kept].all()
        for c, k in kwargs["labelled_counts"].items():
            assert int((new.labelled & (new.classes == c)).sum()) == k
    else:
        np.testing.assert_array_equal(new.labelled, old.labelled & enough)


def test_too_few_qualifying_units_label_fewer_with_a_warning(tmp_path, caplog):
    counts = {"PkC_ss": 4, "PkC_cs": 4, "MLI": 2, "GoC": 2, "MFB": 2}
    with caplog.at_level(logging.WARNING, logger="nwb_celltype.simulate"):
        res = simulate_recording(
            tmp_path / "short.nwb", class_counts=counts, labelled_counts=counts, duration_s=20.0, seed=4
        )
    assert not res.labelled[res.spike_counts < LABEL_MIN_SPIKES].any()
    got = int((res.labelled & (res.classes == "PkC_cs")).sum())
    assert got < 4  # complex spikes at ~1 Hz: none has 100 spikes in 20 s
    assert f"labelled only {got} of 4 PkC_cs units" in caplog.text


def test_library_api_refuses_a_non_empty_folder(tmp_path):
    from nwb_celltype.errors import AnnotationExistsError

    (tmp_path / "mouse_s0_00.nwb").write_text("precious")
    with pytest.raises(AnnotationExistsError, match="pass --overwrite"):
        simulate_library(tmp_path, labelled_counts=SMALL_LAB, n_unlabelled=4, n_sessions=1, duration_s=10.0)
    assert (tmp_path / "mouse_s0_00.nwb").read_text() == "precious"
