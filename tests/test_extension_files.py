"""ndx-celltype in real files: appending to a file written without the extension leaves every
existing dataset byte-identical; plain pynwb reads our tables without nwb_celltype (cached spec);
the NWB Inspector (DANDI config) is clean on good files and our checks flag bad ones; the spec YAML
regenerates identically and validates against the NWB schema language."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from pynwb import NWBHDF5IO, validate

from nwb_celltype.nwb import add_annotations, add_classifier, add_units_columns, read_annotations
from nwb_celltype.testing import (
    mock_CellTypeAnnotations,
    mock_CellTypeClassifier,
    mock_CellTypeEvidence,
    mock_NWBFile_with_units,
)
from nwb_celltype.testing.checksums import dataset_checksums as _dataset_checksums
from nwb_celltype.vocabulary import C4_CLASSES

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "spec"


PLAIN_WRITER = textwrap.dedent(
    """
    import sys
    sys.modules["nwb_celltype"] = None  # written by a process that cannot import nwb_celltype
    from datetime import datetime, timezone
    import numpy as np
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.misc import Units
    f = NWBFile(session_description="plain", identifier="plain-1",
                session_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc))
    f.units = Units(name="units", description="units", resolution=1 / 30000)
    rng = np.random.default_rng(3)
    for _ in range(6):
        f.add_unit(spike_times=np.sort(rng.uniform(0, 100, 150)))
    with NWBHDF5IO(sys.argv[1], "w") as io:
        io.write(f)
    """
)


def _write_plain_file(path: Path) -> None:
    """An NWB file written with plain pynwb in a process without nwb_celltype (no ndx-celltype in
    its cached specs)."""
    script = path.parent / "plain_writer.py"
    script.write_text(PLAIN_WRITER)
    proc = subprocess.run(
        [sys.executable, str(script), str(path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_append_keeps_existing_datasets_byte_identical(tmp_path):
    path = tmp_path / "plain.nwb"
    _write_plain_file(path)
    with h5py.File(path, "r") as f:
        assert "processing" not in f or "cell_types" not in f["processing"]
        assert "ndx-celltype" not in f.get("specifications", {})
    before = _dataset_checksums(path)
    assert len(before) > 10

    with NWBHDF5IO(path, "a") as io:
        nwbfile = io.read()
        clf = add_classifier(
            nwbfile, name="c4", version="1", weights_sha256="0" * 64, classes=C4_CLASSES, threshold=2.0
        )
        p = np.random.default_rng(0).dirichlet(np.ones(5), size=6)
        table = add_annotations(
            nwbfile,
            name="c4_predictions",
            units_region=np.arange(6),
            labels=[C4_CLASSES[i] for i in p.argmax(1)],
            classes=C4_CLASSES,
            probabilities=p,
            classifier=clf,
        )
        # no confidence given, so no confidence column
        assert add_units_columns(nwbfile, table) == ["cell_type", "cell_type_probability"]
        io.write(nwbfile)
    # a second append session: ground truth next to the predictions
    with NWBHDF5IO(path, "a") as io:
        nwbfile = io.read()
        add_annotations(
            nwbfile,
            name="gt",
            units_region=[0, 2],
            labels=["MLI", "PkC_cs"],
            classes=C4_CLASSES,
            kind="ground_truth",
            evidence={"evidence_type": ["optotagging", "pharmacology"], "labelled_by": ["A", "B"]},
        )
        # the plain names are taken by the first table: this one's columns get its name as suffix
        # (ground truth has no probabilities or confidence: only the label column)
        assert add_units_columns(nwbfile, nwbfile.processing["cell_types"]["gt"]) == ["cell_type_gt"]
        io.write(nwbfile)

    after = _dataset_checksums(path)
    changed = sorted(k for k in before if after.get(k) != before[k])
    assert changed == [], f"pre-existing datasets changed by the append: {changed}"
    new = set(after) - set(before)
    assert any(k.startswith("processing/cell_types/c4_predictions/") for k in new)
    assert any(k.startswith("specifications/ndx-celltype/") for k in new)
    assert {"units/cell_type", "units/cell_type_probability", "units/cell_type_gt"} <= new
    with h5py.File(path, "r") as f:
        gt = f["units/cell_type_gt"][()].astype(str).tolist()
        assert gt[0] == "MLI" and gt[2] == "PkC_cs" and gt[1] == ""  # '' where gt has no row
    assert validate(path=str(path)) == []
    with NWBHDF5IO(path, "r") as io:
        recs = read_annotations(io.read())
    assert set(recs) == {"c4_predictions", "gt"}
    assert recs["gt"].evidence["labelled_by"].tolist() == ["A", "B"]


def _file_with_everything(path: Path) -> Path:
    nwbfile = mock_NWBFile_with_units(8)
    clf = mock_CellTypeClassifier(nwbfile=nwbfile, name="c4_base")
    mock_CellTypeAnnotations(nwbfile=nwbfile, name="c4_base_predictions", classifier=clf)
    mock_CellTypeEvidence(nwbfile=nwbfile, name="ground_truth")
    with NWBHDF5IO(path, "w") as io:
        io.write(nwbfile)
    return path


PLAIN_READER = textwrap.dedent(
    """
    import json, sys
    sys.modules["nwb_celltype"] = None  # make `import nwb_celltype` fail
    try:
        import nwb_celltype  # noqa: F401
        raise SystemExit("nwb_celltype is importable")
    except ImportError:
        pass
    import numpy as np
    from pynwb import NWBHDF5IO, validate
    path = sys.argv[1]
    errors = validate(path=path)
    with NWBHDF5IO(path, "r") as io:
        f = io.read()
        m = f.processing["cell_types"]
        t = m["c4_base_predictions"]
        ev = m["ground_truth_evidence"]
        out = {
            "validation_errors": [str(e) for e in errors],
            "table_type": type(t).__name__,
            "table_module": type(t).__module__,
            "classes": list(t.classes),
            "labels": [str(x) for x in t["label"].data[:]],
            "probabilities": np.asarray(t["probabilities"].data[:]).tolist(),
            "units": np.asarray(t["units"].data[:]).tolist(),
            "units_target": t["units"].table.name,
            "classifier": t.classifier.name,
            "weights_sha256": t.classifier.weights_sha256,
            "evidence_target": ev["annotations"].table.name,
            "evidence_type": [str(x) for x in ev["evidence_type"].data[:]],
            "modules": sorted(k for k, v in sys.modules.items() if k.startswith("nwb_celltype") and v is not None),
        }
    print(json.dumps(out))
    """
)


def test_plain_pynwb_reads_file_without_our_package(tmp_path):
    path = _file_with_everything(tmp_path / "all.nwb")
    with NWBHDF5IO(path, "r") as io:
        expected = read_annotations(io.read())
    script = tmp_path / "plain_reader.py"
    script.write_text(PLAIN_READER)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-W", "error::UserWarning", str(script), str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["modules"] == []
    assert out["validation_errors"] == []
    assert out["table_type"] == "CellTypeAnnotations"
    assert not out["table_module"].startswith("nwb_celltype")  # pynwb's class generated from the cached spec
    rec = expected["c4_base_predictions"]
    assert out["classes"] == list(rec.classes)
    assert out["labels"] == rec.labels.tolist()
    np.testing.assert_array_equal(np.array(out["probabilities"], dtype=float), rec.probabilities)
    assert out["units"] == rec.unit_indices.tolist() and out["units_target"] == "units"
    assert out["classifier"] == "c4_base" and out["weights_sha256"] == rec.classifier["weights_sha256"]
    assert out["evidence_target"] == "ground_truth"
    assert out["evidence_type"] == expected["ground_truth"].evidence["evidence_type"].tolist()


# --- NWB Inspector --------------------------------------------------------------------------------


def test_inspector_dandi_config_clean_on_our_tables(tmp_path, inspect_nwb):
    import nwbinspector

    path = _file_with_everything(tmp_path / "all.nwb")
    messages = inspect_nwb(path)
    above = [
        (m.importance.name, m.check_function_name, m.message)
        for m in messages
        if m.importance.value > nwbinspector.Importance.BEST_PRACTICE_SUGGESTION.value
    ]
    assert above == []


def test_our_inspector_checks_are_registered():
    import nwbinspector

    import nwb_celltype.nwb.inspector_checks as checks

    names = {c.__name__ for c in nwbinspector.available_checks}
    for name in (
        "check_cell_type_annotations_consistent",
        "check_cell_type_evidence",
        "check_cell_type_classifier",
    ):
        assert name in names
        assert hasattr(checks, name)


def test_our_inspector_checks_catch_a_bad_file(tmp_path, inspect_nwb):
    path = _file_with_everything(tmp_path / "bad.nwb")
    with h5py.File(path, "a") as f:
        g = f["processing/cell_types/c4_base_predictions"]
        p = g["probabilities"][()]
        p[0] = [0.9, 0.9, 0.0, 0.0, 0.0]
        g["probabilities"][...] = p
        u = g["units"][()]
        u[1] = 99
        g["units"][...] = u
        e = f["processing/cell_types/ground_truth_evidence/evidence_type"]
        x = e[()]
        x[0] = b"telepathy"
        e[...] = x
        ids = f["processing/cell_types/c4_base/class_ontology_ids"]
        y = ids[()]
        y[0] = b"purkinje"
        ids[...] = y
    # hdmf warns (rather than fails) when it reads the out-of-range region back
    with pytest.warns(UserWarning, match="out of bounds"):
        messages = inspect_nwb(path)
    ours = {(m.check_function_name, m.importance.name): m.message for m in messages}
    crit = [msg for (fn, _), msg in ours.items() if fn == "check_cell_type_annotations_consistent"]
    text = " | ".join(m.message for m in messages)
    assert "row 0 sums to 1.8" in text
    assert "points outside the Units table (it has 8 rows" in text
    assert "evidence_type must be one of" in text and "'telepathy'" in text
    assert "malformed Cell Ontology ids ['purkinje']" in text
    assert crit, "annotation check did not report"
    assert ("check_cell_type_annotations_consistent", "CRITICAL") in ours


# --- spec ------------------------------------------------------------------------------------------


def test_spec_regenerates_identically(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SPEC / "create_extension_spec.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("ndx-celltype.namespace.yaml", "ndx-celltype.extensions.yaml"):
        assert (tmp_path / name).read_bytes() == (SPEC / name).read_bytes(), (
            f"spec/{name} is stale: run `python spec/create_extension_spec.py` and commit the result"
        )


def _nwb_metaschema() -> dict:
    import pynwb

    path = Path(pynwb.__file__).parent / "nwb-schema" / "nwb.schema.json"
    return json.loads(path.read_text())


@pytest.mark.parametrize("name", ["ndx-celltype.namespace.yaml", "ndx-celltype.extensions.yaml"])
def test_spec_validates_against_nwb_schema_language(name):
    import jsonschema

    schema = _nwb_metaschema()
    jsonschema.validate(yaml.safe_load((SPEC / name).read_text()), schema)


def test_schema_language_validation_can_fail():
    import jsonschema

    spec = yaml.safe_load((SPEC / "ndx-celltype.extensions.yaml").read_text())
    spec["groups"][0]["datasets"][0]["dtype"] = "not-a-dtype"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(spec, _nwb_metaschema())


def test_spec_types_and_namespace():
    ns = yaml.safe_load((SPEC / "ndx-celltype.namespace.yaml").read_text())["namespaces"][0]
    assert ns["name"] == "ndx-celltype"
    # only the types the extension builds on are included (loading then registers 4 types, not ~500)
    assert {"namespace": "core", "neurodata_types": ["NWBDataInterface"]} in ns["schema"]
    assert {
        "namespace": "hdmf-common",
        "neurodata_types": ["DynamicTable", "VectorData", "DynamicTableRegion"],
    } in ns["schema"]
    types = {
        g["neurodata_type_def"]: g
        for g in yaml.safe_load((SPEC / "ndx-celltype.extensions.yaml").read_text())["groups"]
    }
    assert set(types) == {"CellTypeClassifier", "CellTypeAnnotations", "CellTypeEvidence"}
    cols = {d["name"] for d in types["CellTypeAnnotations"]["datasets"]}
    assert {
        "units",
        "label",
        "ontology_id",
        "kind",
        "status",
        "reason",
        "probabilities",
        "confidence",
        "votes",
    } <= cols
    assert [link["name"] for link in types["CellTypeAnnotations"]["links"]] == ["classifier"]


GENERATED_CLASSES_READER = textwrap.dedent(
    """
    import json, sys, types
    from pathlib import Path
    # import nwb_celltype.nwb._read without running the package's __init__ (which would register our
    # classes): pynwb then builds its own classes from the file's cached spec
    pkg = Path(sys.argv[2])
    for name, path in (("nwb_celltype", pkg), ("nwb_celltype.nwb", pkg / "nwb")):
        mod = types.ModuleType(name)
        mod.__path__ = [str(path)]
        sys.modules[name] = mod
    from nwb_celltype.nwb._read import read_annotations
    from pynwb import NWBHDF5IO
    assert "nwb_celltype.nwb._types" not in sys.modules
    with NWBHDF5IO(sys.argv[1], "r") as io:
        f = io.read()
        t = f.processing["cell_types"]["c4_base_predictions"]
        recs = read_annotations(f)
    r = recs["c4_base_predictions"]
    print(json.dumps({
        "class_module": type(t).__module__,
        "names": sorted(recs),
        "labels": r.labels.tolist(),
        "probabilities": r.probabilities.tolist(),
        "classifier": r.classifier,
        "evidence_rows": recs["ground_truth"].evidence["row"].tolist(),
    }))
    """
)


def test_read_annotations_with_pynwb_generated_classes(tmp_path):
    path = _file_with_everything(tmp_path / "all.nwb")
    with NWBHDF5IO(path, "r") as io:
        expected = read_annotations(io.read())
    script = tmp_path / "generated_reader.py"
    script.write_text(GENERATED_CLASSES_READER)
    pkg = Path(__import__("nwb_celltype").__file__).parent
    proc = subprocess.run(
        [sys.executable, str(script), str(path), str(pkg)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not out["class_module"].startswith("nwb_celltype")
    assert out["names"] == sorted(expected)
    rec = expected["c4_base_predictions"]
    assert out["labels"] == rec.labels.tolist()
    np.testing.assert_array_equal(np.array(out["probabilities"], dtype=float), rec.probabilities)
    assert out["classifier"] == rec.classifier
    assert out["evidence_rows"] == expected["ground_truth"].evidence["row"].tolist()
