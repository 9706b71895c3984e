"""Which code made a file or a model: the version number stays 0.1.0 across changes that alter
results, so provenance records a digest of the package's Python sources beside it."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from test_provenance19 import classifier_json

import nwb_celltype as nc
from nwb_celltype._code_identity import DIGEST_HEX, code_digest
from nwb_celltype.simulate import demo_recording_path

PACKAGE = Path(nc.__file__).resolve().parent


def test_the_digest_is_of_the_sources_and_moves_with_any_change(tmp_path):
    tree = tmp_path / "pkg"
    shutil.copytree(PACKAGE, tree, ignore=shutil.ignore_patterns("__pycache__", "data", "*.pyc"))
    before = code_digest(tree)
    assert before == code_digest() and len(before) == DIGEST_HEX
    # independent of the code under test: the same sha256 over (path, bytes) built here
    h = hashlib.sha256()
    for p in sorted(p for p in tree.rglob("*.py")):
        rel, data = p.relative_to(tree).as_posix().encode(), p.read_bytes()
        h.update(len(rel).to_bytes(4, "little") + rel + len(data).to_bytes(8, "little") + data)
    assert before == h.hexdigest()[:DIGEST_HEX]
    # one byte of one module, a renamed module, a new module: each is another code
    target = tree / "model" / "decision.py"
    target.write_bytes(target.read_bytes() + b"\n")
    edited = code_digest(tree)
    (tree / "model" / "decision.py").rename(tree / "model" / "decision2.py")
    renamed = code_digest(tree)
    (tree / "extra.py").write_text("x = 1\n")
    assert len({before, edited, renamed, code_digest(tree)}) == 4
    # compiled files and data are not code
    now = code_digest(tree)
    (tree / "__pycache__").mkdir(exist_ok=True)
    (tree / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"junk")
    (tree / "__pycache__" / "stale.py").write_text("y = 2\n")  # a .py under __pycache__ too
    (tree / "data").mkdir(exist_ok=True)
    (tree / "data" / "weights.bin").write_bytes(b"\0" * 64)
    assert code_digest(tree) == now


def test_an_annotated_file_records_the_code(tmp_path):
    out = tmp_path / "a.nwb"
    nc.annotate(demo_recording_path(), out=out)
    versions = classifier_json(out, "software_versions")
    assert versions["nwb-celltype-code"] == code_digest()
    assert versions["nwb-celltype"]  # the version number is still there


def test_a_model_card_records_the_code_and_the_machine():
    from nwb_celltype.model.card import software_versions

    soft = software_versions()
    assert soft["nwb_celltype_code"] == code_digest()
    assert soft["machine"].split()[0]  # e.g. "x86_64 AMD EPYC ...": the CPU sets the weights' last bits
