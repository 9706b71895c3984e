"""The bad-input table of issue 18: every case is generated from one list (:data:`CASES`) and run
through the CLI in-process. Each must end in our own one-line error (``Error: ...``, no traceback)
with exit status 1, raised as the expected error type, within a bounded time, and leave every
input file sha256-identical with no temporary file behind. docs/robustness.md shows the table."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import click
import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from nwb_celltype.cli import main
from nwb_celltype.errors import (
    AnnotationExistsError,
    InvalidUnitsError,
    LibraryError,
    ModelError,
    NotNWBError,
    NwbCelltypeError,
    OutputError,
    SourceError,
    SourceNotFoundError,
)
from nwb_celltype.testing.faults import edit_units, replace_dataset

#: Seconds one case may take (generous: the machine may be shared).
BOUND_S = 30.0

# -- inputs: {name: how to make it} ---------------------------------------------------------------


def _mock(path: Path) -> None:
    from nwb_celltype.library._mock import mock_library_file

    mock_library_file(path, n_units=6)


def _edit_units(fn):
    def make(path: Path, good: Path) -> None:
        shutil.copyfile(good, path)
        edit_units(path, fn)

    return make


def _no_units(path: Path, good: Path) -> None:
    shutil.copyfile(good, path)
    with h5py.File(path, "r+") as f:
        del f["units"]


def _plain_hdf5(path: Path, good: Path) -> None:
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(3)


def _bytes(data: bytes):
    return lambda path, good: path.write_bytes(data)


def _truncated(fraction: float):
    return lambda path, good: path.write_bytes(good.read_bytes()[: int(good.stat().st_size * fraction)])


#: Bad NWB sources: name -> (maker, expected error type).
SOURCES = {
    "missing": (None, SourceNotFoundError),
    "directory": (lambda p, g: p.mkdir(), NotNWBError),
    "fifo": (lambda p, g: os.mkfifo(p), NotNWBError),
    "empty": (_bytes(b""), NotNWBError),
    "random-bytes": (_bytes(np.random.default_rng(1).bytes(4096)), NotNWBError),
    "text": (_bytes(b"unit_id,label\n0,PkC_ss\n"), NotNWBError),
    "truncated-half": (_truncated(0.5), SourceError),
    "truncated-header": (_truncated(0.001), NotNWBError),
    "plain-hdf5": (_plain_hdf5, NotNWBError),
    "dangling-symlink": (lambda p, g: p.symlink_to(p.with_name("nowhere.nwb")), SourceNotFoundError),
}
#: NWB files whose Units table is broken (read by annotate only: labels and show do not read spikes).
UNITS = {
    "no-units": (_no_units, NotNWBError),
    "index-not-monotonic": (
        _edit_units(replace_dataset("spike_times_index", lambda a: a[::-1])),
        InvalidUnitsError,
    ),
    "index-past-end": (
        _edit_units(replace_dataset("spike_times_index", lambda a: a + 10**6)),
        InvalidUnitsError,
    ),
    "index-negative": (
        _edit_units(replace_dataset("spike_times_index", lambda a: a - 10**7)),
        InvalidUnitsError,
    ),
    "index-missing": (_edit_units(lambda g: g.__delitem__("spike_times_index")), NotNWBError),
    "index-wrong-length": (_edit_units(replace_dataset("spike_times_index", lambda a: a[:-1])), NotNWBError),
}


def _bundle_edit(fn):
    def make(path: Path, demo: Path) -> None:
        shutil.copytree(demo, path)
        fn(path)

    return make


def _card(fn):
    def edit(path: Path) -> None:
        card = path / "model_card.json"
        card.write_text(fn(json.loads(card.read_text())))

    return edit


def _flip_weights(path: Path) -> None:
    w = path / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))


#: Bad model bundles: name -> maker(path, demo bundle dir).
MODELS = {
    "bundle-missing": None,
    "bundle-empty-dir": lambda p, d: p.mkdir(),
    "bundle-is-a-file": lambda p, d: p.write_text("{}"),
    "card-not-json": _bundle_edit(_card(lambda c: "{not json")),
    "card-a-list": _bundle_edit(_card(lambda c: json.dumps([c]))),
    "card-a-string": _bundle_edit(_card(lambda c: json.dumps("model"))),
    "card-empty": _bundle_edit(_card(lambda c: "")),
    "card-format-version-abc": _bundle_edit(_card(lambda c: json.dumps({**c, "format_version": "abc"}))),
    "card-format-version-future": _bundle_edit(_card(lambda c: json.dumps({**c, "format_version": 999}))),
    "card-wrong-format": _bundle_edit(_card(lambda c: json.dumps({**c, "format": "other"}))),
    "card-edited": _bundle_edit(_card(lambda c: json.dumps({**c, "description": "edited"}))),
    "card-unknown-family": _bundle_edit(_card(lambda c: json.dumps({**c, "feature_family": "nope"}))),
    "weights-missing": _bundle_edit(lambda p: (p / "weights.safetensors").unlink()),
    "weights-random": _bundle_edit(lambda p: (p / "weights.safetensors").write_bytes(os.urandom(512))),
    "weights-flipped-bit": _bundle_edit(_flip_weights),
    "pickle-checkpoint": lambda p, d: p.with_suffix(".pt").write_bytes(b"\x80\x04K\x01."),
}

GOOD_LABELS = "unit_id,label\n0,PkC_ss\n1,MLI\n"
#: Bad label tables: name -> content (bytes) or None (absent).
LABELS = {
    "labels-missing": None,
    "labels-not-utf8": b"unit_id,label\n0,PkC\xff\xfe_ss\n",
    "labels-no-label-column": b"unit_id,kind\n0,PkC_ss\n",
    "labels-no-unit-column": b"who,label\n0,PkC_ss\n",
    "labels-unknown-label": b"unit_id,label\n0,Pyramidal\n",
    "labels-non-integer-id": b"unit_id,label\nzero,PkC_ss\n",
    "labels-conflicting-duplicates": b"unit_id,label\n0,PkC_ss\n0,MLI\n",
    "labels-header-only": b"unit_id,label\n",
    "labels-unknown-unit": b"unit_id,label\n999,PkC_ss\n",
    "labels-random-bytes": bytes(range(256)) * 4,
}

# -- the one list -----------------------------------------------------------------------------------

ANNOTATE = ["annotate", "{src}", "--model", "{model}", "-q"]
LABEL = ["library", "label", "{src}", "--labels", "{labels}", "--evidence-type", "optotagging"]
LABEL += ["--labelled-by", "tester"]


def _cases() -> list[tuple[str, list[str], type]]:
    cases = []
    for name, (_make, exc) in SOURCES.items():
        src = f"{{dir}}/{name}.nwb"
        cases.append((f"annotate-copy/{name}", _sub(ANNOTATE, src=src) + ["--out", "{dir}/out.nwb"], exc))
        cases.append((f"annotate-in-place/{name}", _sub(ANNOTATE, src=src) + ["--in-place"], exc))
        cases.append((f"show/{name}", ["show", src], exc))
        # library label's SOURCE is a click.Path(exists=True, dir_okay=False): click refuses these
        lexc = click.UsageError if name in ("missing", "directory", "dangling-symlink") else exc
        cases.append((f"label-in-place/{name}", _sub(LABEL, src=src) + ["--in-place"], lexc))
        cases.append((f"label-copy/{name}", _sub(LABEL, src=src) + ["--out", "{dir}/out.nwb"], lexc))
    for name, (_make, exc) in UNITS.items():
        src = f"{{dir}}/{name}.nwb"
        cases.append((f"annotate-copy/{name}", _sub(ANNOTATE, src=src) + ["--out", "{dir}/out.nwb"], exc))
        cases.append((f"annotate-in-place/{name}", _sub(ANNOTATE, src=src) + ["--in-place"], exc))
    for name in MODELS:
        model = f"{{dir}}/{name}" + (".pt" if name == "pickle-checkpoint" else "")
        exc = click.UsageError if name == "bundle-missing" else ModelError
        cases.append((f"model/{name}", _sub(ANNOTATE, model=model) + ["--out", "{dir}/out.nwb"], exc))
    # a wrong full sha256; the demo bundle's own sha256 cut to 8 digits (a right but too short
    # prefix: read from its card, so that a rebuilt demo bundle keeps the case); not hex; empty
    pins = {
        "0" * 64: "0" * 64,
        "short-prefix": _demo_sha256()[:8],
        "not-hex-not-hex": "not-hex-not-hex",
        "empty": "",
    }
    for name, pin in pins.items():
        argv = _sub(ANNOTATE) + ["--out", "{dir}/out.nwb", "--model-sha256", pin]
        cases.append((f"pin/{name}", argv, ModelError))
    for name in LABELS:
        exc = click.UsageError if name == "labels-missing" else LibraryError  # click checks --labels
        labels = f"{{dir}}/{name}.csv"
        cases.append((f"label-copy/{name}", _sub(LABEL, labels=labels) + ["--out", "{dir}/out.nwb"], exc))
        cases.append((f"label-in-place/{name}", _sub(LABEL, labels=labels) + ["--in-place"], exc))
    outputs = [
        ("out-folder-missing", ["--out", "{dir}/no/such/o.nwb"], OutputError),
        ("out-is-input", ["--out", "{good}"], OutputError),
        ("out-exists", ["--out", "{dir}/exists.nwb"], AnnotationExistsError),
        ("out-is-a-directory", ["--out", "{dir}/directory.nwb"], click.UsageError),
        ("in-place-read-only", ["--in-place"], OutputError),
        ("in-place-hard-linked", ["--in-place"], OutputError),
    ]
    for name, extra, exc in outputs:
        src = {"in-place-read-only": "{dir}/readonly.nwb", "in-place-hard-linked": "{dir}/linked.nwb"}.get(
            name, "{good}"
        )
        cases.append((f"output/{name}", _sub(ANNOTATE, src=src) + extra, exc))
    usage = [
        ("unknown-option", ["annotate", "{good}", "--bogus"]),
        ("missing-argument", ["annotate"]),
        ("threshold-not-a-number", _sub(ANNOTATE) + ["--threshold", "abc"]),
        ("batch-size-zero", _sub(ANNOTATE) + ["--batch-size", "0"]),
        ("precision-choice", _sub(ANNOTATE) + ["--precision", "float16"]),
        ("no-such-command", ["annotat", "{good}"]),
        ("show-missing-argument", ["show"]),
        ("label-bad-kind", _sub(LABEL) + ["--kind", "guess"]),
        ("library-no-subcommand-option", ["library", "--nope"]),
        ("c4-import-missing-files", ["c4", "import", "{dir}/none.tar.gz", "{dir}/none.pt"]),
    ]
    for name, argv in usage:
        cases.append((f"usage/{name}", argv, click.UsageError))
    ours = [
        ("threshold-below-one", _sub(ANNOTATE) + ["--out", "{dir}/out.nwb", "--threshold", "0.5"]),
        ("in-place-and-out", _sub(ANNOTATE) + ["--in-place", "--out", "{dir}/out.nwb"]),
        ("label-in-place-and-out", _sub(LABEL) + ["--in-place", "--out", "{dir}/out.nwb"]),
        ("label-bad-mapping", _sub(LABEL) + ["--map", "PC", "--out", "{dir}/out.nwb"]),
    ]
    for name, argv in ours:
        cases.append((f"options/{name}", argv, NwbCelltypeError))
    for name in ("tar-truncated", "tar-random-bytes"):
        cases.append(
            (
                f"c4-import/{name}",
                [
                    "c4",
                    "import",
                    f"{{dir}}/{name}.tar.gz",
                    "{dir}/h.pt",
                    "--variant",
                    "base",
                    "--out",
                    "{dir}/c4-bundle",
                ],
                ModelError,
            )
        )
    return cases


def _demo_sha256() -> str:
    import json

    from nwb_celltype.model.shipped import demo_bundle_path

    return json.loads((demo_bundle_path() / "model_card.json").read_text())["sha256"]


def _sub(argv: list[str], **kw: str) -> list[str]:
    kw = {"src": "{good}", "model": "{demo}", "labels": "{dir}/good.csv", **kw}
    return [a.format(**kw) if a in ("{src}", "{model}", "{labels}") else a for a in argv]


CASES = _cases()


def test_the_table_has_at_least_100_cases():
    assert len(CASES) >= 100
    assert len({c[0] for c in CASES}) == len(CASES)


# -- running a case -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    from nwb_celltype.model.shipped import demo_bundle_path

    d = tmp_path_factory.mktemp("bad")
    good = d / "good.nwb"
    _mock(good)
    for name, (make, _exc) in {**SOURCES, **UNITS}.items():
        if make is not None:
            make(d / f"{name}.nwb", good)
    for name, make in MODELS.items():
        if make is not None:
            make(d / name, demo_bundle_path())
    for name, content in LABELS.items():
        if content is not None:
            (d / f"{name}.csv").write_bytes(content)
    (d / "good.csv").write_text(GOOD_LABELS)
    shutil.copyfile(good, d / "exists.nwb")
    shutil.copyfile(good, d / "readonly.nwb")
    (d / "readonly.nwb").chmod(0o444)
    shutil.copyfile(good, d / "linked.nwb")
    os.link(d / "linked.nwb", d / "linked-too.nwb")
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for i in range(3):
            data = os.urandom(200_000)
            info = tarfile.TarInfo(f"models/model_{i}.pt")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (d / "tar-truncated.tar.gz").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (d / "tar-random-bytes.tar.gz").write_bytes(os.urandom(5000))
    (d / "h.pt").write_bytes(b"\x80\x04K\x01.")
    return d


def _digests(d: Path) -> dict[str, str]:
    out = {}
    for p in sorted(d.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(d))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, folder):
    from nwb_celltype.model.shipped import demo_bundle_path

    name, argv, expected = case
    paths = {"dir": str(folder), "good": str(folder / "good.nwb"), "demo": str(demo_bundle_path())}
    argv = [a.format(**paths) for a in argv]
    before = _digests(folder)
    t0 = time.monotonic()
    res = CliRunner().invoke(main, argv)
    elapsed = time.monotonic() - t0
    assert elapsed < BOUND_S, f"{name} took {elapsed:.1f} s"
    assert res.exit_code == 1, (res.exit_code, res.output, res.exception)
    cause = res.exception.__context__ if isinstance(res.exception, SystemExit) else res.exception
    assert isinstance(cause, expected), f"{name}: {type(cause).__name__}: {cause}"
    if not isinstance(cause, click.UsageError):
        assert isinstance(cause, NwbCelltypeError)
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("Error: "), res.output
    assert "Traceback" not in res.output
    assert sum(ln.startswith("Error: ") for ln in lines) == 1
    assert _digests(folder) == before, f"{name} changed an input"
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")], "temporary files left"
    assert not (folder / "out.nwb").exists()


def test_docs_list_every_case():
    doc = (Path(__file__).parents[1] / "docs" / "robustness.md").read_text()
    missing = [name for name, _argv, _exc in CASES if f"`{name.partition('/')[2]}`" not in doc]
    assert not missing, f"docs/robustness.md lacks {missing}"
    assert f"generates {len(CASES)} cases" in doc


def test_a_bare_group_prints_its_help_not_an_error():
    for argv in ([], ["library"]):
        res = CliRunner().invoke(main, argv)
        assert res.exit_code == 0 and res.output.startswith("Usage:") and "Error" not in res.output
