"""One reading of DANDI references: annotate-dandiset and assets take a dandiset by the argument's
form alone, so a local folder of that name (an --out called 000409, a `dandi download` folder)
changes nothing; annotate reads a bare DANDI form that is also a local path as that local path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_dandiset import model_path as model_path  # a fixture: a small real model bundle

from nwb_celltype.errors import InvalidValueError


@pytest.fixture
def shadowed(tmp_path, monkeypatch) -> Path:
    """A current folder holding ./000409/sub-1/x.nwb and ./000409@draft/sub-1/: local paths that
    spell DANDI references."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DANDI_INSTANCE", raising=False)
    (tmp_path / "000409" / "sub-1").mkdir(parents=True)
    (tmp_path / "000409" / "sub-1" / "x.nwb").write_bytes(b"")
    (tmp_path / "000409@draft" / "sub-1").mkdir(parents=True)
    return tmp_path


@pytest.mark.parametrize(
    ("spec", "target"),
    [
        ("000409", ("000409", None, None)),
        ("000409/", ("000409", None, None)),
        ("000409@draft", ("000409", "draft", None)),
        ("000409/sub-1/", ("000409", None, "sub-1/")),
        ("000409/sub-1", ("000409", None, "sub-1")),
        ("000409/sub-1/x.nwb", ("000409", None, "sub-1/x.nwb")),
        ("000409@draft/sub-1/", ("000409", "draft", "sub-1/")),
    ],
)
def test_a_local_folder_of_that_name_does_not_shadow_the_dandiset(shadowed, spec, target):
    """annotate-dandiset 000409/sub-1/ beside a folder ./000409/sub-1 (the --out of an earlier run
    mirrors the dandiset's folders) said "cannot read the dandiset"."""
    from nwb_celltype.batch._selection import parse_dandiset_target

    assert Path(spec).exists()  # the local path that spelled it
    assert parse_dandiset_target(spec) == target
    from nwb_celltype.io import parse_dandiset_reference  # what `assets` reads it with

    ref = parse_dandiset_reference(spec)
    assert (ref.kind, ref.dandiset_id, ref.version, ref.asset_path or None) == ("dandi", *target)


@pytest.mark.parametrize("spec", ["./000409", "/data/000409", "no/such/folder"])
def test_a_local_path_is_no_dandiset(shadowed, spec):
    from nwb_celltype.batch._selection import parse_dandiset_target

    with pytest.raises(
        InvalidValueError, match=r"DANDISET\[@VERSION\].*reads as a local path.*annotate FILE"
    ):
        parse_dandiset_target(spec)


@pytest.mark.parametrize(
    "spec",
    [
        "000409",
        "000409@draft",
        "000409/DRAFT",  # _SPEC_RE read a version, parse_source a folder "DRAFT"
        "000409/latest/sub-1/",
        "000409@0.230101.1234/",
        "000409/0.230101.1234/sub-1/x.nwb",
        "DANDI:000409@draft",
        "dandi:000409/draft/sub-1/",
        "dandi://dandi-sandbox/000409@draft/sub-2/",
        "https://dandiarchive.org/dandiset/000409/draft/files?location=sub-1%2F",
    ],
)
def test_annotate_dandiset_and_annotate_read_a_reference_alike(tmp_path, monkeypatch, spec):
    """Where no local path is in the way, the dandiset, version and path that annotate-dandiset
    reads are those that annotate (parse_source) reads: one parser, no second regex to drift."""
    from nwb_celltype.batch._selection import parse_dandiset_target
    from nwb_celltype.io import parse_source

    monkeypatch.chdir(tmp_path)
    src = parse_source(spec)
    assert src.kind == "dandi"
    assert parse_dandiset_target(spec) == (src.dandiset_id, src.version, src.asset_path or None)


def test_a_bare_reference_that_is_also_a_local_path_is_read_locally_and_says_so(
    shadowed, monkeypatch, caplog
):
    """annotate 000409/sub-1/x.nwb where `dandi download` made a file of that name reads that file,
    as the shell names it, and an INFO line says how to name the DANDI source instead; the forms
    with a scheme are the DANDI source whatever exists locally."""
    import logging

    from nwb_celltype.io import parse_source

    with caplog.at_level(logging.INFO, logger="nwb_celltype.io"):
        spec = parse_source("000409/sub-1/x.nwb")
    assert (spec.kind, Path(spec.path)) == ("local", Path("000409/sub-1/x.nwb"))
    said = caplog.text
    assert "read as the local file" in said and "the asset 'sub-1/x.nwb' of dandiset 000409" in said, said
    assert "write DANDI:000409/sub-1/x.nwb" in said, said
    assert parse_source("./000409/sub-1/x.nwb").kind == "local"
    assert parse_source(str(shadowed / "000409/sub-1/x.nwb")).kind == "local"
    assert parse_source(Path("000409/sub-1/x.nwb")).kind == "local"  # a Path is always local
    asset = parse_source("DANDI:000409/sub-1/x.nwb")
    assert (asset.kind, asset.dandiset_id, asset.asset_path) == ("dandi", "000409", "sub-1/x.nwb")
    caplog.clear()
    # an asset id that is also a file name; where $DANDI_INSTANCE picks the archive, the note keeps it
    uuid = "0a1b2c3d-0000-4000-8000-00000000abcd"
    Path(uuid).write_bytes(b"")
    with caplog.at_level(logging.INFO, logger="nwb_celltype.io"):
        assert parse_source(uuid).kind == "local"
    assert f"dandi://dandi/{uuid}" in caplog.text, caplog.text
    monkeypatch.setenv("DANDI_INSTANCE", "dandi-sandbox")
    with caplog.at_level(logging.INFO, logger="nwb_celltype.io"):
        parse_source("000409/sub-1/x.nwb")
    assert "dandi://dandi-sandbox/000409/sub-1/x.nwb" in caplog.text, caplog.text
    # no local path of that name: the dandiset, as before
    assert parse_source("000410/sub-1/x.nwb").dandiset_id == "000410"


def test_cli_annotate_reads_the_downloaded_file(shadowed):
    """What the shell names is what annotate reads: a file `dandi download` put at 000409/sub-1/x.nwb
    is annotated as a local file (a copy beside it, or --out)."""
    import shutil

    from click.testing import CliRunner

    from nwb_celltype.cli import main
    from nwb_celltype.simulate import demo_recording_path

    shutil.copyfile(demo_recording_path(), "000409/sub-1/x.nwb")
    res = CliRunner().invoke(main, ["annotate", "000409/sub-1/x.nwb", "--out", "o.nwb"])
    assert res.exit_code == 0, res.output
    assert Path("o.nwb").exists()


# ---------------------------------------------------------------------------------------------
# annotate-dandiset and assets into an --out named as the dandiset, on a served dandiset
# ---------------------------------------------------------------------------------------------

DANDISET = "000062"
ASSETS = ["sub-1/sub-1_ecephys.nwb", "sub-2/sub-2_ecephys.nwb"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from nwb_celltype import simulate
    from nwb_celltype.testing.servers import DandiApiServer, RangeServer

    root = tmp_path_factory.mktemp("served62")
    for k, rel in enumerate(ASSETS):
        (root / rel).parent.mkdir(parents=True)
        simulate.simulate_recording(
            root / rel, n_units=4, duration_s=20.0, seed=620 + k, labelled_fraction=0.0
        )
    with RangeServer(root) as files, DandiApiServer(files) as api:
        for rel in ASSETS:
            api.add_asset(DANDISET, rel, root / rel)
        yield api


@pytest.mark.network
@pytest.mark.slow
def test_out_folder_named_as_the_dandiset(served, model_path, tmp_path, monkeypatch):
    """`annotate-dandiset 000062 --out 000062`, then again (a resume) and for one folder: the second
    run read 000062 as the local --out ("'000062' is not a dandiset") and 000062/sub-1/ as a
    local folder ("cannot read the dandiset")."""
    from click.testing import CliRunner

    from nwb_celltype.cli import main

    monkeypatch.chdir(tmp_path)
    common = ["--out", DANDISET, "--model", str(model_path), "--workers", "1", "--json"]
    common += ["--dandi-api-url", served.api_url, "--cache-dir", str(tmp_path / "cache")]

    def run(spec: str) -> dict:
        res = CliRunner().invoke(main, ["annotate-dandiset", spec, *common])
        assert res.exit_code == 0, res.output
        return json.loads(res.output)

    first = run(DANDISET)
    assert first["counts"]["done"] == 2 and first["counts"]["annotated"] == 2
    assert (tmp_path / DANDISET / "sub-1").is_dir()  # the --out now spells the dandiset and its folders
    again = run(DANDISET)
    assert again["counts"]["reused"] == 2 and again["counts"]["annotated"] == 0
    folder = run(f"{DANDISET}/sub-1/")
    assert [a["path"] for a in folder["assets"]] == [ASSETS[0]]
    # the derived files under the --out, by the relative paths a user types: local files
    derived = f"{DANDISET}/{folder['assets'][0]['output']}"
    shown = CliRunner().invoke(main, ["show", derived, "--json"])
    assert shown.exit_code == 0, shown.output
    report = CliRunner().invoke(main, ["report", derived, "--out", "rep", "--max-units", "1", "--quiet"])
    assert report.exit_code == 0, report.output
    assert len(list((tmp_path / "rep" / "units").glob("*.png"))) == 1
    listed = CliRunner().invoke(main, ["assets", f"{DANDISET}/sub-2", "--api-url", served.api_url, "--json"])
    assert listed.exit_code == 0, listed.output
    assert [a["path"] for a in json.loads(listed.output)] == [ASSETS[1]]
