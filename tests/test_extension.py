"""ndx-celltype extension: every type written, read back equal and validated; bad values rejected
with our own errors; reading without our classes (h5py) gives the same records."""

from __future__ import annotations

from datetime import datetime, timezone

import h5py
import numpy as np
import pytest
from hdmf.testing import TestCase
from pynwb import NWBHDF5IO, validate

from nwb_celltype.errors import AnnotationExistsError, InvalidAnnotationError
from nwb_celltype.nwb import (
    CellTypeAnnotations,
    CellTypeClassifier,
    CellTypeEvidence,
    add_annotations,
    add_classifier,
    read_annotations,
)
from nwb_celltype.testing import (
    MOCK_WEIGHTS_SHA256,
    mock_CellTypeAnnotations,
    mock_CellTypeClassifier,
    mock_CellTypeEvidence,
    mock_NWBFile_with_units,
)
from nwb_celltype.vocabulary import C4_CLASSES, CELL_ONTOLOGY_IDS


def _write(nwbfile, path):
    with NWBHDF5IO(path, "w") as io:
        io.write(nwbfile)
    return path


def _assert_records_equal(a, b):
    assert a.keys() == b.keys()
    for name in a:
        ra, rb = a[name], b[name]
        assert ra.classes == rb.classes
        for field in ("unit_indices", "unit_ids", "labels", "ontology_ids", "kinds", "status", "reasons"):
            np.testing.assert_array_equal(getattr(ra, field), getattr(rb, field), err_msg=f"{name}.{field}")
        for field in ("probabilities", "confidence", "votes"):
            va, vb = getattr(ra, field), getattr(rb, field)
            assert (va is None) == (vb is None), f"{name}.{field}"
            if va is not None:
                np.testing.assert_array_equal(va, vb, err_msg=f"{name}.{field}")
        assert ra.classifier == rb.classifier
        assert (ra.evidence is None) == (rb.evidence is None)
        if ra.evidence is not None:
            for key in ra.evidence:
                np.testing.assert_array_equal(ra.evidence[key], rb.evidence[key])


@pytest.fixture
def full_file():
    """A file with every type: a classifier, its predictions, ground truth + evidence."""
    nwbfile = mock_NWBFile_with_units(8)
    clf = mock_CellTypeClassifier(nwbfile=nwbfile, name="c4_base")
    mock_CellTypeAnnotations(nwbfile=nwbfile, name="c4_base_predictions", classifier=clf)
    mock_CellTypeEvidence(nwbfile=nwbfile, name="ground_truth")
    return nwbfile


def test_every_type_round_trips_equal_and_validates(full_file, tmp_path):
    before = read_annotations(full_file)
    path = _write(full_file, tmp_path / "all.nwb")
    assert validate(path=str(path)) == []
    with NWBHDF5IO(path, "r") as io:
        read = io.read()
        module = read.processing["cell_types"]
        tc = TestCase()
        for name in ("c4_base", "c4_base_predictions", "ground_truth", "ground_truth_evidence"):
            tc.assertContainerEqual(full_file.processing["cell_types"][name], module[name])
        assert isinstance(module["c4_base"], CellTypeClassifier)
        assert isinstance(module["c4_base_predictions"], CellTypeAnnotations)
        assert isinstance(module["ground_truth_evidence"], CellTypeEvidence)
        assert module["c4_base_predictions"].classifier is module["c4_base"]
        after = read_annotations(read)
    _assert_records_equal(before, after)
    with h5py.File(path, "r") as f:
        _assert_records_equal(before, read_annotations(f))


def test_read_annotations_content(full_file):
    recs = read_annotations(full_file)
    assert set(recs) == {"c4_base_predictions", "ground_truth"}
    pred, gt = recs["c4_base_predictions"], recs["ground_truth"]
    assert pred.kind == "prediction" and gt.kind == "ground_truth"
    assert pred.classes == C4_CLASSES
    assert pred.probabilities.shape == (8, 5) and pred.votes.shape == (8, 5)
    assert np.isnan(pred.probabilities[-1]).all() and pred.labels[-1] == "not_classifiable"
    ok = ~np.isnan(pred.probabilities).any(axis=1)
    np.testing.assert_allclose(pred.probabilities[ok].sum(axis=1), 1.0, atol=1e-9)
    assert pred.classifier["name"] == "c4_base"
    assert pred.classifier["weights_sha256"] == MOCK_WEIGHTS_SHA256
    assert pred.classifier["threshold"] == 2.0
    assert pred.classifier["source"] == {"kind": "local", "path": "mock.nwb"}
    assert gt.classifier is None and pred.evidence is None
    # one item per unit plus a second item for row 0
    np.testing.assert_array_equal(gt.evidence["row"], [*range(8), 0])
    assert gt.evidence["evidence_type"][-1] == "expert"
    # ontology ids come from the vocabulary: Purkinje cell for both spike types, none for MLI/MFB
    for label, oid in zip(gt.labels, gt.ontology_ids, strict=True):
        assert oid == CELL_ONTOLOGY_IDS.get(label, "")
    assert CELL_ONTOLOGY_IDS["PkC_ss"] == CELL_ONTOLOGY_IDS["PkC_cs"] == "CL:0000121"
    assert "MLI" not in CELL_ONTOLOGY_IDS and "MFB" not in CELL_ONTOLOGY_IDS


def test_two_models_and_ground_truth_in_one_file(tmp_path):
    nwbfile = mock_NWBFile_with_units(6)
    a = mock_CellTypeClassifier(nwbfile=nwbfile, name="model_a")
    b = mock_CellTypeClassifier(nwbfile=nwbfile, name="model_b", threshold=3.0)
    mock_CellTypeAnnotations(nwbfile=nwbfile, name="pred_a", classifier=a, seed=1)
    mock_CellTypeAnnotations(nwbfile=nwbfile, name="pred_b", classifier=b, seed=2)
    add_annotations(
        nwbfile, name="expert", units_region=[1, 4], labels=["MLI", "GoC"], classes=C4_CLASSES, kind="expert"
    )
    path = _write(nwbfile, tmp_path / "two.nwb")
    assert validate(path=str(path)) == []
    with NWBHDF5IO(path, "r") as io:
        recs = read_annotations(io.read())
    assert set(recs) == {"pred_a", "pred_b", "expert"}
    assert recs["pred_a"].classifier["name"] == "model_a"
    assert recs["pred_b"].classifier["threshold"] == 3.0
    assert not np.array_equal(recs["pred_a"].probabilities, recs["pred_b"].probabilities, equal_nan=True)
    np.testing.assert_array_equal(recs["expert"].unit_indices, [1, 4])
    np.testing.assert_array_equal(recs["expert"].status, ["classified", "classified"])


def test_region_refers_to_rows_not_ids(tmp_path):
    nwbfile = mock_NWBFile_with_units(0)
    rng = np.random.default_rng(0)
    for uid in (10, 20, 30):
        nwbfile.add_unit(id=uid, spike_times=np.sort(rng.uniform(0, 10, 20)))
    add_annotations(nwbfile, name="t", units_region=[2, 0], labels=["GoC", "MLI"], classes=C4_CLASSES)
    path = _write(nwbfile, tmp_path / "ids.nwb")
    with NWBHDF5IO(path, "r") as io:
        rec = read_annotations(io.read())["t"]
    np.testing.assert_array_equal(rec.unit_indices, [2, 0])
    np.testing.assert_array_equal(rec.unit_ids, [30, 10])


def test_add_classifier_defaults():
    nwbfile = mock_NWBFile_with_units(2)
    clf = add_classifier(
        nwbfile, name="clf", version="1", weights_sha256="", classes=["GoC", "MLI", "PkC_cs"]
    )
    assert list(clf.class_ontology_ids) == ["CL:0000119", "", "CL:0000121"]
    assert datetime.fromisoformat(clf.created).tzinfo is not None
    assert "pynwb" in clf.software_versions


def _good(n=3):
    p = np.array([[0.7, 0.2, 0.1, 0.0, 0.0]] * n)
    return dict(
        name="t",
        units_region=list(range(n)),
        labels=["GoC"] * n,
        classes=C4_CLASSES,
        probabilities=p,
        confidence=np.full(n, 3.5),
        votes=np.ones((n, 5), dtype=int),
    )


BAD_ANNOTATIONS = [
    ({"units_region": [0, 1, 99]}, r"outside the Units table \(it has 4 rows"),
    ({"units_region": [0, 1, -1]}, r"outside the Units table"),
    ({"units_region": [0, 0, 1]}, r"annotated more than once"),
    ({"units_region": [0.0, 1.0, 2.0]}, r"integer row indices"),
    ({"units_region": [0, 1]}, r"labels has shape \(3,\), expected \(2,\)|'label' has 3 rows"),
    ({"labels": ["GoC", "Neuron", "GoC"]}, r"labels not in the class list .*row 1: 'Neuron'"),
    ({"classes": ("GoC", "GoC", "MFB", "PkC_ss", "PkC_cs")}, r"duplicates"),
    ({"classes": ()}, r"class list is empty"),
    ({"classes": "GoC"}, r"classes must be a sequence of class names"),
    ({"probabilities": np.full((3, 4), 0.25)}, r"probabilities has shape \(3, 4\), expected \(3, 5\)"),
    ({"probabilities": np.array([[0.9, 0.9, 0, 0, 0]] * 3)}, r"must sum to 1 .*row 0 sums to 1.8"),
    ({"probabilities": np.array([[1.5, -0.5, 0, 0, 0]] * 3)}, r"must lie in \[0, 1\]"),
    ({"probabilities": np.array([[np.nan, 1.0, 0, 0, 0]] * 3)}, r"all finite or all NaN"),
    ({"confidence": [1.0, -2.0, 3.0]}, r"confidence must be >= 0"),
    ({"confidence": [1.0, 2.0]}, r"confidence has shape \(2,\), expected \(3,\)"),
    ({"votes": np.ones((3, 5)) * 0.5}, r"votes must be integers"),
    ({"votes": -np.ones((3, 5), dtype=int)}, r"votes must be >= 0"),
    ({"votes": [[1, 2], [3]]}, r"votes must be (numeric array data|a numeric array)"),
    ({"probabilities": [["a"] * 5] * 3}, r"probabilities must be numeric array data"),
    ({"kind": "guess"}, r"kind must be one of \['prediction', 'ground_truth', 'expert'\]"),
    ({"status": ["classified", "unclassified", "classified"]}, r"status disagrees with label"),
    ({"status": ["done"] * 3}, r"status must be one of"),
    ({"ontology_ids": ["CL:0000119", "purkinje", ""]}, r"ontology ids must look like 'CL:0000121'"),
    ({"name": "a/b"}, r"without '/' or ':'"),
    ({"evidence": {"evidence_type": ["optotagging", "telepathy", ""]}}, r"evidence_type must be one of"),
    ({"evidence": {"evidence_type": ["expert"]}}, r"1 entries for 3 annotated units"),
    ({"evidence": {"kind": ["expert"] * 3}}, r"evidence must be a dict with keys"),
    ({"evidence": {"evidence_type": ["expert"], "row": [7]}}, r"evidence rows point outside"),
]


@pytest.mark.parametrize(("change", "match"), BAD_ANNOTATIONS)
def test_add_annotations_rejects_bad_values(change, match):
    nwbfile = mock_NWBFile_with_units(4)
    kwargs = {**_good(), **change}
    with pytest.raises(InvalidAnnotationError, match=match):
        add_annotations(nwbfile, **kwargs)
    # nothing half-added: not even the cell_types module
    assert "cell_types" not in nwbfile.processing


@pytest.mark.parametrize(("change", "match"), [c for c in BAD_ANNOTATIONS if "evidence" in c[0]])
def test_refused_evidence_leaves_file_and_classifier_untouched(change, match):
    """A new classifier given with refused evidence is neither added to the file nor parented."""
    from nwb_celltype.nwb import CellTypeClassifier

    nwbfile = mock_NWBFile_with_units(4)
    fresh = CellTypeClassifier(
        name="new_clf",
        version="1",
        weights_sha256="",
        classes=list(C4_CLASSES),
        class_ontology_ids=[""] * len(C4_CLASSES),
        feature_config="{}",
        software_versions="{}",
        created="2024-01-02T12:00:00+00:00",
        description="made by hand, not yet in any file",
    )
    with pytest.raises(InvalidAnnotationError, match=match):
        add_annotations(nwbfile, **{**_good(), **change}, classifier=fresh)
    assert "cell_types" not in nwbfile.processing and fresh.parent is None


def test_not_classifiable_rows_may_be_nan():
    nwbfile = mock_NWBFile_with_units(4)
    kw = _good()
    kw["probabilities"][2] = np.nan
    kw["confidence"][2] = np.nan
    kw["labels"] = ["GoC", "unclassified", "not_classifiable"]
    table = add_annotations(nwbfile, **kw, reasons=["", "ratio 1.2 < 2", "too few spikes"])
    assert list(table["status"].data) == ["classified", "unclassified", "not_classifiable"]


def test_no_units_table_and_duplicate_names():
    from pynwb.testing.mock.file import mock_NWBFile

    with pytest.raises(InvalidAnnotationError, match="has no Units table"):
        add_annotations(mock_NWBFile(), **_good())
    nwbfile = mock_NWBFile_with_units(4)
    add_annotations(nwbfile, **_good())
    with pytest.raises(AnnotationExistsError, match="processing/cell_types/t already exists"):
        add_annotations(nwbfile, **_good())


def test_classifier_mismatch_with_annotations():
    nwbfile = mock_NWBFile_with_units(4)
    clf = mock_CellTypeClassifier(nwbfile=nwbfile, classes=("A", "B"))
    with pytest.raises(InvalidAnnotationError, match="differ from the classifier's classes"):
        add_annotations(nwbfile, **_good(), classifier=clf)


BAD_CLASSIFIERS = [
    ({"weights_sha256": "abc"}, r"weights_sha256 must be 64 lowercase hex digits"),
    ({"classes": ["GoC", "GoC"]}, r"non-empty list of unique names"),
    ({"classes": "GoC"}, r"classes must be a sequence of class names"),
    ({"class_ontology_ids": ["CL:0000119"]}, r"1 entries for 2 classes"),
    ({"class_ontology_ids": ["CL:119", ""]}, r"not Cell Ontology ids"),
    ({"threshold": float("nan")}, r"threshold must be finite"),
    ({"feature_config_json": "{not json"}, r"feature_config must be JSON text"),
    ({"created": datetime(2024, 1, 1)}, r"has no time zone"),
    ({"name": "x:y"}, r"without '/' or ':'"),
    ({"parameters": {"f": object()}}, None),  # stored with default=str: allowed
]


@pytest.mark.parametrize(("change", "match"), BAD_CLASSIFIERS)
def test_add_classifier_rejects_bad_values(change, match):
    nwbfile = mock_NWBFile_with_units(2)
    kwargs = dict(name="clf", version="1", weights_sha256=MOCK_WEIGHTS_SHA256, classes=["GoC", "MLI"])
    kwargs.update(change)
    if match is None:
        add_classifier(nwbfile, **kwargs)
        return
    with pytest.raises(InvalidAnnotationError, match=match):
        add_classifier(nwbfile, **kwargs)


def test_constructor_checks_values():
    """Building a table by hand runs the same checks as add_annotations."""
    from hdmf.common import DynamicTableRegion, VectorData

    nwbfile = mock_NWBFile_with_units(3)
    cols = [
        DynamicTableRegion(name="units", data=[0, 2], description="rows", table=nwbfile.units),
        VectorData(name="label", data=["GoC", "GoC"], description="l"),
        VectorData(name="ontology_id", data=["", ""], description="o"),
        VectorData(name="reason", data=["", ""], description="r"),
        VectorData(name="kind", data=["prediction"] * 2, description="k"),
        VectorData(name="status", data=["classified"] * 2, description="s"),
        VectorData(name="probabilities", data=[[0.9, 0.9, 0, 0, 0]] * 2, description="p"),
    ]
    with pytest.raises(
        InvalidAnnotationError, match="annotation table 'bad': probability rows must sum to 1"
    ):
        CellTypeAnnotations(name="bad", classes=list(C4_CLASSES), columns=cols)


def test_read_annotations_rejects_other_objects():
    with pytest.raises(InvalidAnnotationError, match="needs a pynwb NWBFile or an h5py File"):
        read_annotations("file.nwb")


def test_created_is_stored_verbatim(tmp_path):
    nwbfile = mock_NWBFile_with_units(2)
    t = datetime(2025, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
    add_classifier(nwbfile, name="c", version="1", weights_sha256="", classes=["GoC"], created=t)
    path = _write(nwbfile, tmp_path / "c.nwb")
    with NWBHDF5IO(path, "r") as io:
        assert io.read().processing["cell_types"]["c"].created == t.isoformat()
