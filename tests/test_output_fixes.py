"""The bugs of issue 16, each pinned: file modes of outputs, strict JSON from ``show --json``,
hashes named for what they are and readable confidences, the report's unit rows, the README's
``library label`` command, error messages naming options that exist, and the simulator's
deprecated ``Device(manufacturer=)``."""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from nwb_celltype.annotate import annotate
from nwb_celltype.cli import main
from nwb_celltype.errors import LibraryError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    from nwb_celltype.simulate import simulate_recording

    path = tmp_path_factory.mktemp("rec") / "session.nwb"
    simulate_recording(path, n_units=8, duration_s=200.0, seed=3)
    return path


@pytest.fixture
def umask_002():
    old = os.umask(0o002)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_in_place_keeps_the_mode_and_new_outputs_honour_the_umask(
    recording, demo_bundle, tmp_path, umask_002
):
    src = tmp_path / "in.nwb"
    src.write_bytes(recording.read_bytes())
    os.chmod(src, 0o640)
    annotate(src, model=demo_bundle, in_place=True)
    assert _mode(src) == 0o640
    res = annotate(recording, model=demo_bundle, out=tmp_path / "copy.nwb")
    assert _mode(res.output_path) == 0o664  # 0666 minus umask 002
    res = annotate(recording, model=demo_bundle, out=tmp_path / "copy.nwb", overwrite=True)
    assert _mode(res.output_path) == 0o664
    os.umask(0o027)
    res = annotate(recording, model=demo_bundle, out=tmp_path / "copy2.nwb")
    assert _mode(res.output_path) == 0o640


def test_labelled_copy_and_bundle_weights_honour_the_umask(recording, demo_bundle, tmp_path, umask_002):
    from nwb_celltype.library import label_file
    from nwb_celltype.model import save_bundle

    labels = tmp_path / "labels.csv"
    labels.write_text("unit_id,label\n0,MLI\n")
    out = label_file(recording, labels, out=tmp_path / "l.nwb", evidence_type="expert", labelled_by="me")
    assert _mode(out) == 0o664
    bdir = save_bundle(demo_bundle, tmp_path / "bundle")
    assert {p.name: _mode(p) for p in Path(bdir).iterdir()} == {
        "weights.safetensors": 0o664,
        "model_card.json": 0o664,
    }


def _with_unclassifiable_unit(path: Path) -> Path:
    from pynwb import NWBHDF5IO, NWBFile

    rng = np.random.default_rng(0)
    f = NWBFile("s", "nan-1", datetime(2024, 1, 1, tzinfo=timezone.utc))
    wf = np.zeros(82, np.float32)
    wf[30:40] = -np.hanning(10) * 80
    f.add_unit(spike_times=np.sort(rng.uniform(0, 300, 3000)), waveform_mean=wf)
    f.add_unit(spike_times=np.array([1.0, 2.0]), waveform_mean=wf)  # too few spikes: NaN probabilities
    f.units.waveform_rate = 30000.0
    with NWBHDF5IO(path, "w") as io:
        io.write(f)
    return path


def _strict(text: str):
    def no_constants(name):
        raise ValueError(f"invalid JSON constant {name}")

    return json.loads(text, parse_constant=no_constants)


def test_show_json_is_strict_json(tmp_path, demo_bundle):
    res = annotate(_with_unclassifiable_unit(tmp_path / "odd.nwb"), model=demo_bundle)
    out = CliRunner().invoke(main, ["show", res.output_path, "--json"])
    assert out.exit_code == 0, out.output
    tables = _strict(out.stdout)
    t = tables[res.table_name]
    assert t["status"][1] == "not_classifiable"
    assert t["confidence"][1] is None and t["probabilities"][1] == [None] * len(t["classes"])
    out = CliRunner().invoke(main, ["annotate", str(tmp_path / "odd.nwb"), "--json", "--overwrite"])
    _strict(out.stdout)


def test_show_names_hashes_and_caps_confidence(recording, demo_bundle, tmp_path):
    from nwb_celltype.inspect_file import format_confidence

    src = tmp_path / "in.nwb"
    src.write_bytes(recording.read_bytes())
    runner = CliRunner()
    res = runner.invoke(main, ["annotate", str(src), "--model", str(demo_bundle.path)])
    assert f"bundle sha256 {demo_bundle.sha256[:12]}" in res.output
    out = runner.invoke(main, ["show", str(tmp_path / "in.celltype.nwb")]).output
    assert f"bundle sha256 {demo_bundle.sha256[:12]}" in out
    assert f"weights sha256 {demo_bundle.card['weights_sha256'][:12]}" in out
    assert not re.search(r"\d{5,}\.\d\d", out), "unbounded confidence ratios printed"
    assert format_confidence(228824364466617.25) == ">1000"
    assert format_confidence(4.4789) == "4.48" and format_confidence(float("nan")) == ""


def test_report_index_lists_every_unit(recording, demo_bundle, tmp_path):
    from nwb_celltype.inspect_file import load_annotations, write_report

    src = tmp_path / "in.nwb"
    src.write_bytes(recording.read_bytes())
    res = annotate(src, model=demo_bundle)
    index = write_report(res.output_path, tmp_path / "rep", table=res.table_name, max_units=2)
    page = index.read_text()
    rec = load_annotations(res.output_path)[res.table_name]
    rows = re.findall(r"<tr><td>(?:<a href=\"#unit-\d+\">)?(\d+)(?:</a>)?</td>", page)
    assert [int(r) for r in rows] == rec.unit_ids.tolist()  # every unit, the 2 drawn ones linked
    assert re.findall(r"<tr><td><a href=\"#unit-(\d+)\">", page) == [str(u) for u in rec.unit_ids[:2]]
    # the table lists every unit: no "... N more unit rows (--max-units to show more)" above it
    assert "more rows" not in page and "more unit rows" not in page
    assert "unit_id  label" not in page  # no text header without rows


def _readme_command(prefix: str) -> list[str]:
    text = (REPO / "README.md").read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith(prefix))
    return shlex.split(line.split("  #")[0])[1:]


def test_readme_library_label_command_runs(recording, tmp_path, monkeypatch, umask_002):
    from nwb_celltype.simulate import demo_recording_path

    monkeypatch.chdir(tmp_path)
    Path("session.nwb").write_bytes(demo_recording_path().read_bytes())  # has a ground_truth table
    Path("labels.csv").write_text("unit_id,label\n0,MLI\n1,PkC_ss\n")
    args = _readme_command("nwb-celltype library label")
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    # the recording already has a 'ground_truth' table: the new one gets a free name
    assert "ground_truth_2" in res.output
    from nwb_celltype.inspect_file import load_annotations

    rec = load_annotations("session.labelled.nwb")["ground_truth_2"]
    assert rec.labels.tolist() == ["MLI", "PkC_ss"]


def test_label_errors_come_all_at_once_and_name_real_options(recording, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("unit_id,label\n0,MLI\n1,Purkinje\n")
    res = CliRunner().invoke(main, ["library", "label", str(recording), "--labels", str(bad)])
    assert res.exit_code == 1
    for part in ("unknown labels", "evidence type", "labeller"):
        assert part in res.output
    from nwb_celltype.library.labels import read_label_table

    odd = tmp_path / "odd.csv"
    odd.write_text("cluster,kind\n0,MLI\n")
    with pytest.raises(LibraryError) as err:
        read_label_table(odd, evidence_type="expert", labelled_by="me")
    named = re.findall(r"--[a-z-]+", str(err.value))
    help_text = CliRunner().invoke(main, ["library", "label", "--help"]).output
    assert named and all(opt in help_text for opt in named)
    res = CliRunner().invoke(
        main,
        [
            "library",
            "label",
            str(recording),
            "--labels",
            str(odd),
            "--unit-column",
            "cluster",
            "--label-column",
            "kind",
        ]
        + ["--evidence-type", "expert", "--labelled-by", "me", "--out", str(tmp_path / "o.nwb")],
    )
    assert res.exit_code == 0, res.output


def test_simulator_uses_a_device_model_not_deprecated_manufacturer(tmp_path):
    from pynwb import NWBHDF5IO

    from nwb_celltype.simulate import demo_recording_path, simulate_recording

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        simulate_recording(tmp_path / "s.nwb", n_units=2, duration_s=30.0, seed=0)
        for path in (tmp_path / "s.nwb", demo_recording_path()):
            with NWBHDF5IO(path, "r") as io:
                dev = io.read().devices["NeuropixelsProbe"]
                assert dev.model is not None and dev.model.manufacturer == "IMEC"
    assert not [w for w in caught if "manufacturer" in str(w.message)]


def test_report_figures_read_in_physical_units_and_show_reasons(tmp_path, demo_bundle, capsys):
    from nwb_celltype.report import _UnitFigure, write_report

    res = annotate(_with_unclassifiable_unit(tmp_path / "odd.nwb"), model=demo_bundle)
    drawn = {}
    orig = _UnitFigure.draw

    def spy(self, path, **kw):
        orig(self, path, **kw)
        drawn[kw["title"]] = {
            "wave_max": float(np.nanmax(np.abs(self.wave.get_ydata()))) if self.wave.get_visible() else None,
            "mesh": self.mesh.get_visible(),
            "acg_note": self.acg_note.get_text(),
            "prob_note": self.prob_note.get_text(),
            "labels": (self.ax_w.get_ylabel(), self.ax_a.get_xlabel(), self.ax_c.get_ylabel()),
        }

    _UnitFigure.draw = spy
    try:
        index = write_report(res.output_path, tmp_path / "rep", progress=True, workers=1)
    finally:
        _UnitFigure.draw = orig
    assert "report" in capsys.readouterr().err  # the progress bar
    good, bad = drawn["unit 0"], drawn["unit 1"]
    assert good["labels"] == ("µV", "lag (ms)", "rate (Hz)")
    assert good["mesh"] and good["acg_note"] == ""
    assert good["wave_max"] == pytest.approx(80.0, rel=0.05)  # the waveform's peak, in µV
    assert not bad["mesh"] and "spikes" in bad["acg_note"] and "spikes" in bad["prob_note"]
    assert len(list((tmp_path / "rep" / "units").glob("*.png"))) == 2 and index.exists()


def test_report_pool_draws_the_same_figures(recording, demo_bundle, tmp_path):
    from nwb_celltype.report import write_report

    res = annotate(recording, model=demo_bundle, out=tmp_path / "a.nwb")
    write_report(res.output_path, tmp_path / "one", workers=1)
    write_report(res.output_path, tmp_path / "two", workers=2)
    one = sorted((tmp_path / "one" / "units").glob("*.png"))
    assert len(one) == 8
    for p in one:
        assert p.read_bytes() == (tmp_path / "two" / "units" / p.name).read_bytes(), p.name


def test_waveforms_in_volts_are_drawn_in_microvolts():
    from nwb_celltype.report import _microvolts

    np.testing.assert_allclose(_microvolts(np.array([-1.2e-4, 5e-5, np.nan])), [-120.0, 50.0, np.nan])
    np.testing.assert_allclose(_microvolts(np.array([-80.0, 10.0])), [-80.0, 10.0])  # written in µV


def test_reason_counts_group_units_by_reason():
    from nwb_celltype.cli._common import reason_counts

    skipped = [
        {"unit_id": 1, "reason": "34 spikes < min_spikes=100"},
        {"unit_id": 2, "reason": "51 spikes < min_spikes=100"},
        {"unit_id": 3, "reason": "no waveform"},
    ]
    assert reason_counts(skipped) == {"N spikes < min_spikes=100": 2, "no waveform": 1}


def test_every_option_of_every_command_has_help():
    import click

    ctx = click.Context(main)
    missing = []

    def walk(cmd, path):
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name), [*path, name])
            return
        missing.extend(
            f"{' '.join(path)} {p.opts[0]}" for p in cmd.params if isinstance(p, click.Option) and not p.help
        )

    walk(main, [])
    assert missing == []
    show = CliRunner().invoke(main, ["show", "--help"]).output
    assert "--max-units" in show  # the same name as report's


def test_help_imports_no_heavy_library():
    """`nwb-celltype --help` (and each command's --help) imports none of the NWB / compute stack:
    that is what made it take 1.3 s (pynwb, hdmf, pandas and zarr came with the package import)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from nwb_celltype.cli import main\n"
        "for args in (['--help'], ['annotate', '--help'], ['report', '--help'], ['library', 'label', '--help']):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = ('pynwb', 'hdmf', 'pandas', 'zarr', 'jax', 'torch', 'matplotlib', 'h5py', 'dandi')\n"
        "print('HEAVY', sorted(m for m in heavy if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY []"


def test_commands_that_write_refuse_to_overwrite_without_the_option(tmp_path, recording, demo_bundle):
    runner = CliRunner()
    sim = tmp_path / "sim.nwb"
    args = ["simulate", str(sim), "--units", "3", "--duration", "20", "--no-compression"]
    assert runner.invoke(main, args).exit_code == 0
    res = runner.invoke(main, args)
    assert res.exit_code == 1 and "--overwrite" in res.output
    assert runner.invoke(main, [*args, "--overwrite"]).exit_code == 0
    out = annotate(recording, model=demo_bundle, out=tmp_path / "a.nwb").output_path
    rep = ["report", out, "--out", str(tmp_path / "rep"), "--max-units", "1", "-q"]
    assert runner.invoke(main, rep).exit_code == 0
    res = runner.invoke(main, rep)
    assert res.exit_code == 1 and "--overwrite" in res.output
    assert runner.invoke(main, [*rep, "--overwrite"]).exit_code == 0


def test_report_defaults_to_the_prediction_table_not_ground_truth(tmp_path, demo_bundle):
    from nwb_celltype.report import default_table
    from nwb_celltype.simulate import demo_recording_path

    res = annotate(demo_recording_path(), model=demo_bundle, out=tmp_path / "a.nwb")
    from nwb_celltype.inspect_file import load_annotations

    records = load_annotations(res.output_path)
    gt_first = {"ground_truth": records.pop("ground_truth"), **records}
    assert default_table(res.output_path, gt_first) == res.table_name  # owner of Units.cell_type
    assert default_table(demo_recording_path(), gt_first) == res.table_name  # no owner: 1st prediction


def test_manifest_commands_refuse_to_replace_without_overwrite(tmp_path):
    """library create / merge keep an earlier manifest unless --overwrite (one wording everywhere)."""
    from nwb_celltype.testing.mock import mock_NWBFile_with_units

    nwb = tmp_path / "l.nwb"
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(nwb), "w") as io:
        io.write(mock_NWBFile_with_units(2))
    r = CliRunner()
    lib = tmp_path / "lib.toml"
    assert r.invoke(main, ["library", "create", str(lib), str(nwb)]).exit_code == 0
    before = lib.read_bytes()
    res = r.invoke(main, ["library", "create", str(lib), str(nwb), "--name", "other"])
    assert res.exit_code == 1 and "--overwrite" in res.output and lib.read_bytes() == before
    assert (
        r.invoke(main, ["library", "create", str(lib), str(nwb), "--name", "other", "--overwrite"]).exit_code
        == 0
    )
    assert lib.read_bytes() != before
    out = tmp_path / "all.toml"
    assert r.invoke(main, ["library", "merge", str(lib), "--out", str(out)]).exit_code == 0
    res = r.invoke(main, ["library", "merge", str(lib), "--out", str(out)])
    assert res.exit_code == 1 and "--overwrite" in res.output
    assert r.invoke(main, ["library", "merge", str(lib), "--out", str(out), "--overwrite"]).exit_code == 0
    for cmd in (["library", "create", "--help"], ["library", "merge", "--help"], ["evaluate", "--help"]):
        assert "--overwrite" in r.invoke(main, cmd).output


def test_predict_of_the_wrong_family_names_a_features_command_that_works(recording, demo_bundle, tmp_path):
    """Features of another family than the model's: the error's `nwb-celltype features ...` command
    runs and gives features the model reads (it named the model, which `--model` does not take)."""
    runner = CliRunner()
    c4, acg = tmp_path / "c4.npz", tmp_path / "acg.npz"
    for out, family in ((c4, "c4-3d"), (acg, "acg-isi-wave")):
        res = runner.invoke(main, ["features", str(recording), "--out", str(out), "--family", family, "-q"])
        assert res.exit_code == 0, res.output
    for k, (model, wrong) in enumerate(((None, c4), (demo_bundle.path, acg))):
        given = [] if model is None else ["--model", str(model)]
        res = runner.invoke(main, ["predict", str(wrong), "--out", str(tmp_path / f"p{k}.tsv"), *given])
        assert res.exit_code == 1 and "reads" in res.output, res.output
        command = shlex.split(re.search(r"`nwb-celltype (features [^`]*)`", res.output).group(1))
        right = tmp_path / f"right{k}.npz"
        command = [
            str(recording) if a == "SOURCE" else str(right) if a == "FEATURES.npz" else a for a in command
        ]
        res = runner.invoke(main, [*command, "-q"])
        assert res.exit_code == 0, res.output
        res = runner.invoke(main, ["predict", str(right), "--out", str(tmp_path / f"p{k}.tsv"), "-q", *given])
        assert res.exit_code == 0, res.output
