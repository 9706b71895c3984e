"""End-to-end annotate: local copy, in place, HTTP and DANDI sources, kills, bad inputs."""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from nwb_celltype.annotate import annotate, table_name_for
from nwb_celltype.cli import main
from nwb_celltype.errors import (
    AnnotationExistsError,
    InvalidValueError,
    ModelError,
    OutputError,
)
from nwb_celltype.inspect_file import load_annotations
from nwb_celltype.testing.checksums import dataset_checksums as _dataset_checksums

N_UNITS = 24


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    from nwb_celltype.simulate import simulate_recording

    path = tmp_path_factory.mktemp("rec") / "session.nwb"
    simulate_recording(path, n_units=N_UNITS, duration_s=240.0, seed=11, labelled_fraction=0.0)
    return path


@pytest.fixture
def rec_copy(recording, tmp_path) -> Path:
    dst = tmp_path / "in.nwb"
    dst.write_bytes(recording.read_bytes())
    return dst


@pytest.fixture(scope="module")
def demo_bundle():
    from nwb_celltype.model import load_demo_bundle

    return load_demo_bundle()


def test_annotated_copy_has_a_row_per_unit_and_leaves_input_untouched(rec_copy, demo_bundle):
    before = _sha(rec_copy)
    res = annotate(rec_copy, model=demo_bundle)
    assert _sha(rec_copy) == before
    out = Path(res.output_path)
    assert out.name == "in.celltype.nwb" and out.exists()
    assert res.n_units == N_UNITS == sum(res.label_counts.values())
    assert res.n_classified + res.n_unclassified + res.n_not_classifiable == N_UNITS
    assert set(res.timings) == {"read", "features", "model", "write"}
    recs = load_annotations(out)
    rec = recs[table_name_for(demo_bundle)]
    assert len(rec.labels) == N_UNITS
    assert sorted(rec.unit_indices.tolist()) == list(range(N_UNITS))
    clf = rec.classifier
    assert clf["weights_sha256"] == demo_bundle.card["weights_sha256"]
    params = clf["parameters"]
    assert params["bundle_sha256"] == demo_bundle.sha256
    assert "call" in params and "skipped_units" in params
    assert json.loads(clf["feature_config"]) == demo_bundle.feature_config.to_dict()
    # every pre-existing dataset of the input is byte-identical in the copy
    src = _dataset_checksums(rec_copy)
    dst = _dataset_checksums(out)
    assert all(dst[k] == v for k, v in src.items())


def test_plain_pynwb_reads_output_without_the_package(rec_copy, demo_bundle):
    res = annotate(rec_copy, model=demo_bundle)
    code = (
        "import sys; sys.modules['nwb_celltype'] = None\n"
        "from pynwb import NWBHDF5IO\n"
        f"with NWBHDF5IO({res.output_path!r}, 'r') as io:\n"
        "    f = io.read()\n"
        f"    t = f.processing['cell_types'][{res.table_name!r}]\n"
        "    print(len(t), t.neurodata_type)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(N_UNITS), "CellTypeAnnotations"]


def test_output_is_inspector_clean(rec_copy, demo_bundle, inspect_nwb):
    from nwbinspector import Importance

    res = annotate(rec_copy, model=demo_bundle)
    msgs = [
        m
        for m in inspect_nwb(res.output_path)
        if m.importance.value > Importance.BEST_PRACTICE_SUGGESTION.value
    ]
    assert msgs == []


def test_in_place_keeps_existing_datasets_and_rerun_needs_overwrite(rec_copy, demo_bundle):
    before = _dataset_checksums(rec_copy)
    res = annotate(rec_copy, model=demo_bundle, in_place=True)
    assert Path(res.output_path) == rec_copy and res.mode == "in_place"
    after = _dataset_checksums(rec_copy)
    assert all(after[k] == v for k, v in before.items())
    with pytest.raises(AnnotationExistsError, match="overwrite"):
        annotate(rec_copy, model=demo_bundle, in_place=True)
    res2 = annotate(rec_copy, model=demo_bundle, in_place=True, overwrite=True)
    recs = load_annotations(rec_copy)
    assert list(recs).count(res2.table_name) == 1


def test_two_models_keep_both_tables(rec_copy, demo_bundle, tmp_path):
    from nwb_celltype.testing.bundles import renamed_bundle

    # a second, distinct bundle: the demo bundle's weights under another name (its hash changes)
    demo_bundle_copy = renamed_bundle(demo_bundle, "second-model", tmp_path / "b2")
    assert demo_bundle_copy.sha256 != demo_bundle.sha256
    annotate(rec_copy, model=demo_bundle, in_place=True)
    annotate(rec_copy, model=demo_bundle_copy, in_place=True)
    recs = load_annotations(rec_copy)
    assert {table_name_for(demo_bundle), table_name_for(demo_bundle_copy)} <= set(recs)


def test_units_without_spikes_or_waveform_get_rows_with_reasons(tmp_path, demo_bundle):
    from datetime import datetime, timezone

    from pynwb import NWBHDF5IO, NWBFile

    rng = np.random.default_rng(0)
    f = NWBFile("s", "id1", datetime(2024, 1, 1, tzinfo=timezone.utc))
    wf = np.zeros(82, np.float32)
    wf[30:40] = -np.hanning(10) * 80
    f.add_unit(spike_times=np.sort(rng.uniform(0, 300, 3000)), waveform_mean=wf)
    f.add_unit(spike_times=np.array([1.0, 2.0]), waveform_mean=wf)
    f.add_unit(spike_times=np.sort(rng.uniform(0, 300, 3000)), waveform_mean=np.full(82, np.nan, np.float32))
    f.units.waveform_rate = 30000.0
    path = tmp_path / "odd.nwb"
    with NWBHDF5IO(path, "w") as io:
        io.write(f)
    res = annotate(path, model=demo_bundle)
    rec = load_annotations(res.output_path)[res.table_name]
    assert len(rec.labels) == 3
    assert rec.status[1] == "not_classifiable" and rec.reasons[1]
    assert rec.status[2] == "not_classifiable" and "waveform" in rec.reasons[2]
    assert {d["unit_id"] for d in res.skipped} >= {1, 2}


@pytest.mark.network
def test_http_and_dandi_sources_write_derived_files(recording, tmp_path, demo_bundle):
    from nwb_celltype.testing.servers import DandiApiServer, RangeServer

    served = tmp_path / "served"
    served.mkdir()
    (served / "sub-1_ses-1_ecephys.nwb").write_bytes(recording.read_bytes())
    with RangeServer(served) as files, DandiApiServer(files) as api:
        aid = api.add_asset("000999", "sub-1/sub-1_ses-1_ecephys.nwb", served / "sub-1_ses-1_ecephys.nwb")
        url = files.url_for("sub-1_ses-1_ecephys.nwb")
        with pytest.raises(InvalidValueError, match="--out"):
            annotate(url, model=demo_bundle, cache_dir=tmp_path / "c")
        with pytest.raises(InvalidValueError, match="in-place"):
            annotate(url, model=demo_bundle, in_place=True, cache_dir=tmp_path / "c")
        r1 = annotate(url, model=demo_bundle, out=tmp_path / "http.nwb", cache_dir=tmp_path / "c")
        r2 = annotate(
            "DANDI:000999/draft/sub-1/sub-1_ses-1_ecephys.nwb",
            model=demo_bundle,
            out=tmp_path / "dandi.nwb",
            dandi_api_url=api.api_url,
            cache_dir=tmp_path / "c2",
        )
    local = annotate(recording, model=demo_bundle, out=tmp_path / "local.nwb")
    for r in (r1, r2):
        assert r.mode == "derived"
        rec = load_annotations(r.output_path)[r.table_name]
        ref = load_annotations(local.output_path)[local.table_name]
        assert rec.labels.tolist() == ref.labels.tolist()
        np.testing.assert_allclose(rec.probabilities, ref.probabilities, atol=1e-5, equal_nan=True)
        with h5py.File(r.output_path, "r") as f:
            assert len(f["units/id"]) == N_UNITS
            assert "spike_times" in f["units"] and "waveform_mean" in f["units"]
    assert not list(tmp_path.glob(".*.spikes")) and not list(tmp_path.glob(".*.tmp.nwb"))  # no scratch left
    assert r2.source["dandiset_id"] == "000999" and r2.source["asset_id"] == aid
    clf = load_annotations(r2.output_path)[r2.table_name].classifier
    assert clf["source"]["asset_id"] == aid


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["opened", "features", "copied", "before-write", "written"])
@pytest.mark.parametrize("in_place", [False, True])
def test_kill_at_any_stage_loses_nothing(rec_copy, stage, in_place, tmp_path):
    before = _sha(rec_copy)
    out = tmp_path / "out.nwb"
    args = [sys.executable, "-m", "nwb_celltype.cli", "annotate", str(rec_copy), "-q"]
    args += ["--in-place"] if in_place else ["--out", str(out)]
    env = {**os.environ, "NWB_CELLTYPE_PAUSE_AT": stage}
    with subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True) as proc:
        deadline = time.monotonic() + 240
        line = ""
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if "PAUSED AT" in line or not line:
                break
        alive = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        rest = proc.stderr.read()
    assert "PAUSED AT" in line and alive, f"process ended before {stage}: {rest}"
    assert _sha(rec_copy) == before
    assert not out.exists()
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(rec_copy, "r") as io:
        assert len(io.read().units) == N_UNITS


def test_bad_inputs_give_clear_errors(rec_copy, demo_bundle, tmp_path):
    with pytest.raises(OutputError, match="is the input"):
        annotate(rec_copy, model=demo_bundle, out=rec_copy)
    with pytest.raises(OutputError, match="does not exist"):
        annotate(rec_copy, model=demo_bundle, out=tmp_path / "no" / "such" / "dir.nwb")
    with pytest.raises(InvalidValueError, match="threshold"):
        annotate(rec_copy, model=demo_bundle, threshold=0.5)
    with pytest.raises(InvalidValueError, match="not both"):
        annotate(rec_copy, model=demo_bundle, out=tmp_path / "x.nwb", in_place=True)
    with pytest.raises(InvalidValueError, match="precision"):
        annotate(rec_copy, model=demo_bundle, precision="float16")


def test_float64_precision_matches_float32_and_is_recorded(rec_copy, demo_bundle, tmp_path):
    r32 = annotate(rec_copy, model=demo_bundle, out=tmp_path / "a32.nwb")
    r64 = annotate(rec_copy, model=demo_bundle, out=tmp_path / "a64.nwb", precision="float64")
    a32 = load_annotations(r32.output_path)[table_name_for(demo_bundle)]
    a64 = load_annotations(r64.output_path)[table_name_for(demo_bundle)]
    assert a32.classifier["parameters"]["precision"] == "float32"
    assert a64.classifier["parameters"]["precision"] == "float64"
    assert list(a32.labels) == list(a64.labels)
    np.testing.assert_allclose(a32.probabilities, a64.probabilities, atol=1e-4)


def test_tampered_model_is_refused_in_one_line(rec_copy, demo_bundle, tmp_path):
    from nwb_celltype.model import save_bundle

    bdir = Path(save_bundle(demo_bundle, tmp_path / "bundle"))
    weights = next(p for p in bdir.rglob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    res = CliRunner().invoke(main, ["annotate", str(rec_copy), "--model", str(bdir)])
    assert res.exit_code == 1
    assert res.output.count("\n") <= 2 and "Error:" in res.output
    from nwb_celltype.model import load_bundle

    with pytest.raises(ModelError):
        load_bundle(bdir)


def _mount(kind: str, where: Path, opts: str) -> bool:
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, kind, str(where)], capture_output=True)
    return r.returncode == 0


def test_full_disk_and_read_only_locations(rec_copy, demo_bundle, tmp_path):
    tiny = tmp_path / "tiny"
    if not _mount("tmpfs", tiny, "size=64k"):
        pytest.skip("cannot mount a tiny tmpfs here (needs root and mount rights)")
    try:
        with pytest.raises(OutputError, match="Nothing was written"):
            annotate(rec_copy, model=demo_bundle, out=tiny / "out.nwb")
        assert list(tiny.iterdir()) == []
    finally:
        subprocess.run(["umount", str(tiny)], check=False)
    ro = tmp_path / "ro"
    if not _mount("tmpfs", ro, "ro,size=64k"):
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        with pytest.raises(OutputError):
            annotate(rec_copy, model=demo_bundle, out=ro / "out.nwb")
    finally:
        subprocess.run(["umount", str(ro)], check=False)


def test_cli_json_quiet_and_show(rec_copy):
    runner = CliRunner()
    res = runner.invoke(main, ["annotate", str(rec_copy), "--json"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    # no --model: the default model, trained on real neurons (not the simulated demo model)
    assert payload["n_units"] == N_UNITS and payload["demo_model"] is False
    assert payload["model"]["name"] == "nwb-celltype-real-c4"
    res = runner.invoke(main, ["annotate", str(rec_copy), "-q", "--overwrite"])
    assert res.exit_code == 0 and res.stdout == ""
    res = runner.invoke(main, ["show", payload["output_path"]])
    assert res.exit_code == 0
    assert "label counts" in res.output and payload["table_name"] in res.output
    res = runner.invoke(main, ["show", payload["output_path"], "--json"])
    tables = json.loads(res.stdout)
    assert len(tables[payload["table_name"]]["labels"]) == N_UNITS


def test_report_draws_figures(rec_copy, demo_bundle, tmp_path):
    from nwb_celltype.inspect_file import write_report

    res = annotate(rec_copy, model=demo_bundle)
    index = write_report(res.output_path, tmp_path / "report", max_units=3)
    assert index.exists() and (tmp_path / "report" / "summary.png").exists()
    assert len(list((tmp_path / "report" / "units").glob("*.png"))) == 3
    # the table links the drawn units only (it linked every unit to anchors that did not exist)
    page = index.read_text()
    links = re.findall(r'href="#(unit-[^"]+)"', page)
    assert len(links) == 3 and all(f'id="{a}"' in page for a in links)
    assert "Figures of the first 3 of" in page


def test_report_of_the_default_model(rec_copy, tmp_path):
    """`report` after a plain `annotate` (the default model reads acg-isi-wave features, whose
    configuration the 3D-ACG figures cannot use): it failed with 'unknown c4-3d feature
    configuration keys'."""
    from nwb_celltype.cli import main

    runner = CliRunner()
    res = runner.invoke(main, ["annotate", str(rec_copy), "--out", str(tmp_path / "a.nwb"), "-q"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        main, ["report", str(tmp_path / "a.nwb"), "--out", str(tmp_path / "rep"), "--max-units", "3"]
    )
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "rep" / "units").glob("*.png"))) == 3
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "nwb-celltype-real-c4" in page
    assert "agreement with" not in page  # this recording holds no ground truth


def test_report_compares_with_the_files_ground_truth(tmp_path):
    """The summary page of a file that holds ground truth (the demo recording) gives the agreement
    `show` prints, with the same numbers."""
    from nwb_celltype.agreement import agreements_in_file, format_agreement
    from nwb_celltype.inspect_file import write_report
    from nwb_celltype.simulate import demo_recording_path

    res = annotate(demo_recording_path(), out=tmp_path / "demo.nwb", progress=False)
    page = write_report(res.output_path, tmp_path / "rep", max_units=1).read_text()
    [a] = agreements_in_file(res.output_path)
    assert "agreement with the ground_truth labels" in page
    assert html.escape(format_agreement(a)) in page


def test_training_data_in_the_provenance_is_json(tmp_path):
    """The classifier's training_data references are JSON objects any reader can parse (they were
    Python reprs), one per training library entry of the model card."""
    import json

    from pynwb import NWBHDF5IO

    from nwb_celltype.model.shipped import resolve_model
    from nwb_celltype.nwb import read_annotations
    from nwb_celltype.simulate import demo_recording_path

    res = annotate(demo_recording_path(), out=tmp_path / "a.nwb")
    with NWBHDF5IO(str(res.output_path), "r") as io:
        rec = read_annotations(io.read())[res.table_name]
        refs = [json.loads(str(r)) for r in rec.classifier["training_data"]]
    card = resolve_model(None)[0].card
    assert refs == card["training_data"] and {r["name"] for r in refs} >= {"hull", "lisberger"}
