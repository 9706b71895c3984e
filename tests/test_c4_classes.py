"""Class names given to the C4 import (``--classes``): refused at import, with nothing written, where
they could not label the model's outputs (duplicates, empty, reserved labels, wrong number)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from test_c4 import _write_c4_files

from nwb_celltype.cli import main
from nwb_celltype.errors import ModelError, ModelMismatchError
from nwb_celltype.model.c4 import import_c4_ensemble

BAD_CLASSES = [
    (["GoC", "GoC", "MFB", "PkC_ss", "PkC_cs"], ModelError, r"\['GoC'\] given more than once"),
    (["GoC", "MLI", "MFB", "PkC_ss", "unclassified"], ModelError, r"'unclassified'\] is a reserved"),
    (["GoC", "MLI", "MFB", "not_classifiable", "PkC_cs"], ModelError, "reserved label"),
    (["GoC", "", "MFB", "PkC_ss", "PkC_cs"], ModelError, "empty, non-string or space-padded"),
    (["GoC", " MLI", "MFB", "PkC_ss", "PkC_cs"], ModelError, "space-padded"),
    (["GoC", 3, "MFB", "PkC_ss", "PkC_cs"], ModelError, "non-string"),
    ([], ModelError, "no class names"),
    ("GoC,MLI,MFB,PkC_ss,PkC_cs", ModelError, "got the string"),
    (["GoC", "MLI", "MFB", "PkC_ss"], ModelMismatchError, "5 outputs but"),
]


@pytest.fixture(scope="module")
def c4_files(tmp_path_factory):
    return _write_c4_files(tmp_path_factory.mktemp("c4"), m=2)[:2]


@pytest.mark.parametrize(("classes", "exc", "match"), BAD_CLASSES)
def test_import_refuses_unusable_class_names(c4_files, classes, exc, match):
    archive, hpath = c4_files
    with pytest.raises(exc, match=match):
        import_c4_ensemble(archive, hpath, variant="base", classes=classes)


def test_import_keeps_valid_class_names(c4_files):
    archive, hpath = c4_files
    names = ("A", "B", "C", "D", "E")
    assert import_c4_ensemble(archive, hpath, variant="base", classes=list(names)).classes == names


@pytest.mark.parametrize(
    ("classes", "match"),
    [
        ("GoC,GoC,MFB,PkC_ss,PkC_cs", "given more than once"),
        ("GoC,MLI,MFB,PkC_ss,unclassified", "reserved label"),
        ("GoC,,MFB,PkC_ss,PkC_cs", "empty"),
        ("GoC,MLI,MFB,PkC_ss", "outputs"),
    ],
)
def test_cli_import_refuses_bad_classes_writing_nothing(c4_files, tmp_path, classes, match):
    archive, hpath = c4_files
    out = tmp_path / "bundle"
    args = ["c4", "import", str(archive), str(hpath), "--variant", "base", "--out", str(out)]
    res = CliRunner().invoke(main, [*args, "--classes", classes])
    assert res.exit_code == 1, res.output
    assert match in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == []
