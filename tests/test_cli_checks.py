"""Bad option values a user can type get one-line errors before any work (audit of session 16):
a negative --max-units, a figure name matplotlib cannot write, two manifests to train on."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from nwb_celltype.cli import main
from nwb_celltype.library.tables import import_tables
from nwb_celltype.simulate import demo_recording_path
from nwb_celltype.testing.real_data import real_c4_dir

REAL_C4 = real_c4_dir()


@pytest.mark.parametrize("cmd", ["report", "show"])
def test_a_negative_max_units_is_refused(cmd, tmp_path):
    args = [cmd, str(demo_recording_path()), "--max-units", "-1"]
    if cmd == "report":
        args += ["--out", str(tmp_path / "r")]
    r = CliRunner().invoke(main, args)
    assert r.exit_code != 0 and "-1 is not in the range x>=0" in r.output, r.output
    assert not (tmp_path / "r").exists()


@pytest.fixture
def manifest(tmp_path):
    import_tables([REAL_C4 / "hull"], tmp_path / "hull.toml")
    return tmp_path / "hull.toml"


def test_a_figure_matplotlib_cannot_write_is_one_line(manifest, tmp_path):
    r = CliRunner().invoke(main, ["library", "stats", str(manifest), "--figure", str(tmp_path / "st.txt")])
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert "cannot write a figure as st.txt" in r.output and not (tmp_path / "st.txt").exists()


def test_two_manifests_to_train_on_are_named(manifest, tmp_path):
    other = tmp_path / "other.toml"
    other.write_bytes(manifest.read_bytes())
    r = CliRunner().invoke(main, ["train", str(manifest), str(other), "--out", str(tmp_path / "m")])
    assert r.exit_code == 1 and "library merge" in r.output and "not an HDF5 file" not in r.output, r.output
    assert not (tmp_path / "m").exists()


def _stderr_of_annotate(tmp_path, name: str, tty: bool) -> str:
    """``nwb-celltype annotate`` on the demo recording in a subprocess, its stderr a terminal (a
    pseudo-terminal) or a pipe; returns what it wrote there."""
    import fcntl
    import os
    import pty
    import select
    import struct
    import subprocess
    import sys
    import termios

    cmd = [sys.executable, "-m", "nwb_celltype.cli", "annotate", str(demo_recording_path())]
    cmd += ["--out", str(tmp_path / f"{name}.nwb"), "--batch-size", "8"]
    if not tty:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stderr
    master, slave = pty.openpty()
    # a terminal of 80 columns (a fresh pseudo-terminal has 0, where tqdm draws nothing)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                data = b""
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    assert proc.wait(timeout=300) == 0
    return b"".join(chunks).decode(errors="replace")


def test_progress_bars_are_drawn_on_a_terminal_only(tmp_path):
    """Before, a run whose stderr went to a log file wrote every redraw of its progress bar there."""
    assert "unit/s" in _stderr_of_annotate(tmp_path, "tty", tty=True)
    logged = _stderr_of_annotate(tmp_path, "log", tty=False)
    assert "unit/s" not in logged and "\r" not in logged, logged
