"""Audit 18 ("nothing is lost"): a replaced output keeps its permission bits, a signal after the
commit rename does not say "nothing was written", ``library stats --figure`` refuses an existing
file and its own inputs, and ``features --model`` names a path that is not a bundle clearly."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from nwb_celltype import _atomic, _atomic_files, _atomic_folder
from nwb_celltype.cli import main
from nwb_celltype.library import create_manifest, mock_library_file


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def library(tmp_path):
    """A small labelled NWB file and a manifest listing it."""
    nwb = mock_library_file(tmp_path / "lib.nwb", n_units=3)
    manifest = tmp_path / "lib.toml"
    create_manifest([nwb], name="lib", root=tmp_path).save(manifest)
    return manifest, nwb


# -- 3: a replaced file keeps its mode ---------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o600, 0o444, 0o640], ids=oct)
def test_a_replaced_file_keeps_its_mode_by_default(tmp_path, umask_022, mode):
    f = tmp_path / "out.tsv"
    f.write_text("old")
    f.chmod(mode)
    _atomic_files.write_text_file(f, "new")
    assert f.read_text() == "new" and _mode(f) == mode
    new = _atomic_files.write_text_file(tmp_path / "new.tsv", "x")
    assert _mode(new) == 0o644  # a new file: 0666 minus the umask, as before
    assert _leftovers(tmp_path) == []


def test_npz_and_figure_writers_keep_the_mode_and_drop_setuid(tmp_path, umask_022):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    npz = tmp_path / "f.npz"
    npz.write_bytes(b"old")
    npz.chmod(0o600)
    _atomic_files.write_npz(npz, {"a": [1, 2]})
    assert _mode(npz) == 0o600
    png = tmp_path / "f.png"
    png.write_bytes(b"old")
    png.chmod(0o4640)  # a set-user-ID bit is not carried onto the new file
    fig = plt.figure()
    try:
        _atomic_files.write_figure(fig, png)
    finally:
        plt.close(fig)
    assert png.read_bytes()[:4] == b"\x89PNG" and _mode(png) == 0o640


def test_an_explicit_keep_mode_of_still_wins(tmp_path, umask_022):
    """annotate and library label pass keep_mode_of (the input, in place): it is applied once."""
    src, out = tmp_path / "src.nwb", tmp_path / "out.nwb"
    src.write_bytes(b"s")
    src.chmod(0o640)
    out.write_bytes(b"o")
    out.chmod(0o600)
    with _atomic.atomic_write(out, replace=True, keep_mode_of=src) as tmp:
        tmp.write_bytes(b"n")
    assert out.read_bytes() == b"n" and _mode(out) == 0o640
    with _atomic.atomic_write(out, replace=True, keep_mode_of=out) as tmp:
        tmp.write_bytes(b"m")
    assert _mode(out) == 0o640


def test_a_write_through_a_link_keeps_the_targets_mode(tmp_path, umask_022):
    real = tmp_path / "real.tsv"
    real.write_text("old")
    real.chmod(0o600)
    link = tmp_path / "link.tsv"
    link.symlink_to(real)
    _atomic_files.write_text_file(link, "new")
    assert link.is_symlink() and real.read_text() == "new" and _mode(real) == 0o600


def test_an_updated_manifest_keeps_its_mode(tmp_path, umask_022):
    """library import-tables / create --overwrite rewrite a manifest through Manifest.save."""
    nwb = mock_library_file(tmp_path / "a.nwb", n_units=2)
    manifest = tmp_path / "m.toml"
    create_manifest([nwb], name="m", root=tmp_path).save(manifest)
    assert _mode(manifest) == 0o644
    manifest.chmod(0o600)
    create_manifest([nwb], name="m2", root=tmp_path).save(manifest)
    assert "m2" in manifest.read_text() and _mode(manifest) == 0o600
    r = CliRunner().invoke(main, ["library", "create", str(manifest), str(nwb), "--overwrite"])
    assert r.exit_code == 0, r.output
    assert _mode(manifest) == 0o600


def test_features_overwrite_keeps_a_read_only_outputs_mode(tmp_path, umask_022):
    nwb = mock_library_file(tmp_path / "a.nwb", n_units=2)
    out = tmp_path / "f.npz"
    out.write_bytes(b"old")
    out.chmod(0o444)
    r = CliRunner().invoke(main, ["features", str(nwb), "--out", str(out), "--overwrite", "-q"])
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:2] == b"PK" and _mode(out) == 0o444


def test_a_replaced_folder_keeps_its_files_modes(tmp_path, umask_022):
    out = tmp_path / "rep"
    with _atomic_folder.atomic_folder(out, replace=True, owned=("*",)) as tmp:
        (tmp / "a.txt").write_text("1")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.txt").write_text("1")
    (out / "a.txt").chmod(0o600)
    (out / "sub" / "b.txt").chmod(0o444)
    with _atomic_folder.atomic_folder(out, replace=True, owned=("*",)) as tmp:
        (tmp / "a.txt").write_text("2")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.txt").write_text("2")
        (tmp / "c.txt").write_text("2")
    assert (out / "a.txt").read_text() == "2" and _mode(out / "a.txt") == 0o600
    assert (out / "sub" / "b.txt").read_text() == "2" and _mode(out / "sub" / "b.txt") == 0o444
    assert _mode(out / "c.txt") == 0o644  # new to the output: a new file's mode
    assert _leftovers(tmp_path) == []


# -- 4: a signal after the commit rename -------------------------------------------------------------


def _signal_after_rename(monkeypatch, module, folder: Path, how):
    """Make the directory fsync after the commit rename deliver a signal (``how``: a signal number
    sent to this process, or an exception class raised as a KeyboardInterrupt would be)."""
    real = module._fsync_dir
    calls = []

    def fsync_then_signal(path):
        real(path)
        if Path(path) == folder:
            calls.append(path)
            if isinstance(how, int):
                signal.raise_signal(how)
            else:
                raise how()

    monkeypatch.setattr(module, "_fsync_dir", fsync_then_signal)
    return calls


@pytest.fixture
def sighup_at_default():
    """SIGHUP at its default disposition for the test, whatever pytest was started with: under
    ``nohup`` it is inherited ignored, and a write then rightly leaves it ignored (no handler, no
    Interrupted), which is not what these tests are about (test_review18 covers that case)."""
    old = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGHUP, old)


@pytest.mark.usefixtures("sighup_at_default")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
@pytest.mark.parametrize("replace", [True, False])
def test_a_signal_after_the_rename_says_the_file_was_written(tmp_path, monkeypatch, sig, replace):
    f = tmp_path / "out.tsv"
    if replace:
        f.write_text("old")
    before = {s: signal.getsignal(s) for s in _atomic.CLEANUP_SIGNALS}
    calls = _signal_after_rename(monkeypatch, _atomic, tmp_path, sig)
    with pytest.raises(_atomic.Interrupted) as info, _atomic.atomic_write(f, replace=replace) as tmp:
        tmp.write_text("new")
    assert calls, "the hook did not run"
    err = info.value
    assert err.code == 128 + sig and err.written == f
    assert "nothing was written" not in str(err) and f"{f} was written in full" in str(err)
    assert f.read_text() == "new" and _leftovers(tmp_path) == []  # the lock file is released
    assert {s: signal.getsignal(s) for s in _atomic.CLEANUP_SIGNALS} == before


def test_a_keyboard_interrupt_after_the_rename_says_the_file_was_written(tmp_path, monkeypatch):
    f = tmp_path / "out.tsv"
    _signal_after_rename(monkeypatch, _atomic, tmp_path, KeyboardInterrupt)
    # KeyboardInterrupt listed so that a failure here does not stop the whole pytest session
    with (
        pytest.raises((_atomic.Interrupted, KeyboardInterrupt)) as info,
        _atomic.atomic_write(f, replace=True) as tmp,
    ):
        tmp.write_text("new")
    assert isinstance(info.value, _atomic.Interrupted), repr(info.value)
    assert info.value.code == 130 and "was written in full" in str(info.value)
    assert f.read_text() == "new" and _leftovers(tmp_path) == []


def test_a_signal_before_the_rename_still_says_nothing_was_written(tmp_path):
    f = tmp_path / "out.tsv"
    f.write_text("old")
    with pytest.raises(_atomic.Interrupted) as info, _atomic.atomic_write(f, replace=True) as tmp:
        tmp.write_text("new")
        signal.raise_signal(signal.SIGTERM)
    assert str(info.value) == "interrupted by SIGTERM; nothing was written" and info.value.written is None
    assert f.read_text() == "old" and _leftovers(tmp_path) == []


@pytest.mark.parametrize("existing", [True, False])
def test_a_signal_after_a_folder_swap_says_the_folder_was_written(tmp_path, monkeypatch, existing):
    out = tmp_path / "rep"
    if existing:
        out.mkdir()
        (out / "a.txt").write_text("old")
    calls = _signal_after_rename(monkeypatch, _atomic_folder, tmp_path, signal.SIGINT)
    with (
        pytest.raises(_atomic.Interrupted) as info,
        _atomic_folder.atomic_folder(out, replace=True, owned=("*",)) as tmp,
    ):
        (tmp / "a.txt").write_text("new")
    assert calls
    assert info.value.code == 130 and info.value.written == out
    assert "nothing was written" not in str(info.value)
    assert (out / "a.txt").read_text() == "new" and _leftovers(tmp_path) == []


def test_a_signal_after_a_file_is_renamed_into_a_folder_being_built_stops_the_build(tmp_path, monkeypatch):
    """The file is not written until its folder is swapped in: nothing was written."""
    out = tmp_path / "rep"
    out.mkdir()
    (out / "a.txt").write_text("old")
    real = _atomic._fsync_dir

    def fsync_then_signal(path):
        real(path)
        if Path(path).name.endswith(".tmp.dir"):
            signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(_atomic, "_fsync_dir", fsync_then_signal)
    with (
        pytest.raises(_atomic.Interrupted) as info,
        _atomic_folder.atomic_folder(out, replace=True, owned=("*",)) as tmp,
    ):
        _atomic_files.write_text_file(tmp / "a.txt", "new")
        pytest.fail("the signal held during the write of a.txt is acted on when that write ends")
    assert str(info.value) == "interrupted by SIGTERM; nothing was written" and info.value.written is None
    assert (out / "a.txt").read_text() == "old" and _leftovers(tmp_path) == []


def test_an_export_that_takes_its_folder_back_out_says_nothing_was_written(tmp_path, monkeypatch):
    """library export removes its dandiset again when a signal held through the swap is acted on:
    that interruption must not say the folder was written."""
    from nwb_celltype.library import export_dandiset, label_file

    lib = tmp_path / "lib"
    lib.mkdir()
    raw = mock_library_file(lib / "raw.nwb", subject_id="m0", session_id="s0")
    csv = lib / "l.csv"
    csv.write_text("unit_id,label,evidence_type\n0,PkC_ss,optotagging\n")
    labelled = label_file(raw, csv, out=lib / "lab.nwb", labelled_by="me", evidence_text="tagged")
    manifest = create_manifest([labelled], name="lib", root=lib).save(lib / "lib.toml")
    out = tmp_path / "ds"
    calls = _signal_after_rename(monkeypatch, _atomic_folder, tmp_path, signal.SIGTERM)
    with pytest.raises(_atomic.Interrupted) as info:
        export_dandiset(manifest, out, validate=False)
    assert calls
    assert str(info.value) == "interrupted by SIGTERM; nothing was written" and not out.exists()


def test_the_cli_reports_a_signal_after_the_write_truthfully(tmp_path, monkeypatch):
    nwb = mock_library_file(tmp_path / "a.nwb", n_units=2)
    out = tmp_path / "f.npz"
    _signal_after_rename(monkeypatch, _atomic, tmp_path, signal.SIGTERM)
    r = CliRunner().invoke(main, ["features", str(nwb), "--out", str(out), "-q"])
    assert r.exit_code == 128 + signal.SIGTERM, r.output
    assert f"interrupted by SIGTERM after {out} was written in full" in r.output, r.output
    assert "nothing was written" not in r.output and out.read_bytes()[:2] == b"PK"


# -- 2: library stats --figure ------------------------------------------------------------------------


def test_stats_refuses_an_existing_figure_without_overwrite(library, tmp_path, umask_022):
    manifest, _ = library
    fig = tmp_path / "keep.png"
    fig.write_text("precious")
    fig.chmod(0o600)
    r = CliRunner().invoke(main, ["library", "stats", str(manifest), "--figure", str(fig)])
    assert r.exit_code == 1 and "exists; pass --overwrite" in r.output, r.output
    assert fig.read_text() == "precious"
    r = CliRunner().invoke(main, ["library", "stats", str(manifest), "--figure", str(fig), "--overwrite"])
    assert r.exit_code == 0, r.output
    assert fig.read_bytes()[:4] == b"\x89PNG" and _mode(fig) == 0o600


def test_stats_refuses_a_figure_that_is_its_manifest_or_a_listed_file(library, tmp_path):
    manifest, nwb = library
    kept = {p: p.read_bytes() for p in (manifest, nwb)}
    for name, target in (("m.png", manifest), ("n.png", nwb)):
        link = tmp_path / name
        link.symlink_to(target)
        r = CliRunner().invoke(
            main, ["library", "stats", str(manifest), "--figure", str(link), "--overwrite"]
        )
        assert r.exit_code == 1 and "is the input" in r.output and "itself" in r.output, r.output
        assert "Traceback" not in r.output
    assert {p: p.read_bytes() for p in kept} == kept


def test_stats_refuses_a_figure_over_a_file_of_a_listed_table_folder(tmp_path):
    """The table folder's files (labels.csv, ...) are refused, through a symbolic link too; a new file
    beside them, which the table reader never opens, is written."""
    from nwb_celltype.library import LibraryEntry, Manifest

    folder = tmp_path / "tables"
    folder.mkdir()
    (folder / "labels.csv").write_text("label\nPkC_ss\n")
    m = Manifest(name="t", entries=[LibraryEntry(tables="tables")], root=tmp_path)
    from nwb_celltype.cli.library import _refuse_input_as_figure
    from nwb_celltype.errors import OutputError

    link = tmp_path / "fig.png"
    link.symlink_to(folder / "labels.csv")
    with pytest.raises(OutputError, match="lies in the input folder"):
        _refuse_input_as_figure(str(link), str(tmp_path / "t.toml"), m)
    _refuse_input_as_figure(str(folder / "fig.png"), str(tmp_path / "t.toml"), m)  # a new file: fine
    _refuse_input_as_figure(str(tmp_path / "other.png"), str(tmp_path / "t.toml"), m)  # elsewhere: fine


# -- 5: features --model that is not a bundle -----------------------------------------------------------


@pytest.mark.parametrize("kind", ["folder", "binary", "json"])
def test_features_model_that_is_not_a_bundle_is_named_like_predict(tmp_path, kind):
    nwb = mock_library_file(tmp_path / "a.nwb", n_units=2)
    if kind == "folder":
        model = tmp_path / "adir"
        model.mkdir()
    elif kind == "binary":
        model = tmp_path / "ok.npz"
        model.write_bytes(b"PK\x03\x04\x14\x00\x00\x00\xe3\xff\x00")
    else:
        model = tmp_path / "m"
        model.mkdir()
        (model / "model_card.json").write_text('{"format": "something else"}')
        (model / "weights.safetensors").write_bytes(b"")
    out = tmp_path / "x.npz"
    r = CliRunner().invoke(main, ["features", str(nwb), "--out", str(out), "--model", str(model)])
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    if kind == "json":
        assert "is not an nwb-celltype model card" in r.output, r.output
    else:
        assert f"{model} is not a model bundle: expected a directory with model_card.json" in r.output
        assert "nwb-celltype train" in r.output and "Errno" not in r.output and "codec" not in r.output
    assert not out.exists()
