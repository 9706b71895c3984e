"""``mock_<Type>()`` factories of the ndx-celltype types, seeded and valid by default, for our tests
and for users' tests (in the style of ``pynwb.testing.mock``). Each returns an object already placed
in an NWB file (created if not given), because every type refers to the file's Units table."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
from pynwb import NWBFile
from pynwb.file import Subject

from ..nwb import (
    CellTypeAnnotations,
    CellTypeClassifier,
    CellTypeEvidence,
    add_annotations,
    add_classifier,
    get_cell_types_module,
)
from ..vocabulary import C4_CLASSES, EVIDENCE_TYPES

#: sha256 of b"mock weights": a fixed, well-formed checksum for mock classifiers.
MOCK_WEIGHTS_SHA256 = "7032befe5059e23188485a9cce733a9783a61660b057cfcedf530e9996649b45"


def mock_NWBFile_with_units(num_units: int = 8, *, seed: int = 0) -> NWBFile:
    """An in-memory NWB file with a Units table of ``num_units`` units (sorted random spike times,
    in seconds, over 100 s) and the metadata the NWB Inspector expects."""
    rng = np.random.default_rng(seed)
    nwbfile = NWBFile(
        session_description="mock session for nwb-celltype tests",
        identifier=f"mock-nwb-celltype-{seed}",
        session_start_time=datetime(2024, 1, 1, 12, 0, tzinfo=timezone.utc),
        experimenter=["Doe, Jane"],
        institution="Mock Institute",
        lab="Mock Lab",
        experiment_description="Mock recording to exercise the ndx-celltype extension.",
        session_id="mock-session",
        keywords=["cerebellum", "cell type"],
    )
    nwbfile.subject = Subject(
        subject_id="mock-mouse", species="Mus musculus", sex="U", age="P90D", description="mock subject"
    )
    from pynwb.misc import Units

    nwbfile.units = Units(name="units", description="Mock spike-sorted units.", resolution=1 / 30000)
    for _ in range(num_units):
        n = int(rng.integers(50, 200))
        nwbfile.add_unit(spike_times=np.sort(rng.uniform(0.0, 100.0, n)))
    return nwbfile


def _ensure_file(nwbfile: NWBFile | None, num_units: int, seed: int) -> NWBFile:
    if nwbfile is None:
        return mock_NWBFile_with_units(num_units, seed=seed)
    if nwbfile.units is None or len(nwbfile.units) == 0:
        rng = np.random.default_rng(seed)
        for _ in range(num_units):
            nwbfile.add_unit(spike_times=np.sort(rng.uniform(0.0, 100.0, 100)))
    return nwbfile


def mock_CellTypeClassifier(
    *,
    nwbfile: NWBFile | None = None,
    name: str = "mock_classifier",
    classes: tuple[str, ...] = C4_CLASSES,
    threshold: float | None = 2.0,
    seed: int = 0,
) -> CellTypeClassifier:
    """A classifier provenance object added to ``nwbfile`` (a new mock file if None)."""
    nwbfile = _ensure_file(nwbfile, 8, seed)
    return add_classifier(
        nwbfile,
        name=name,
        version="0.0.1",
        weights_sha256=MOCK_WEIGHTS_SHA256,
        classes=classes,
        feature_config_json='{"acg_bin_ms":1.0,"version":"1"}',
        training_data=["https://dandiarchive.org/dandiset/000000/draft"],
        software_versions={"nwb-celltype": "0.1.0"},
        threshold=threshold,
        parameters={"seed": seed},
        source={"kind": "local", "path": "mock.nwb"},
        description="Mock classifier for tests.",
        created=datetime(2024, 1, 2, 12, 0, tzinfo=timezone.utc),
    )


def mock_CellTypeAnnotations(
    *,
    nwbfile: NWBFile | None = None,
    name: str = "mock_annotations",
    classifier: CellTypeClassifier | None = None,
    num_units: int = 8,
    kind: str = "prediction",
    threshold: float = 2.0,
    seed: int = 0,
) -> CellTypeAnnotations:
    """A prediction table over every unit of ``nwbfile``: Dirichlet probabilities, argmax labels,
    ratio confidences with ``threshold``, votes from 10 members, and one not-classifiable unit
    (NaN probabilities) when there are at least 3 units. A classifier is created if none is given."""
    nwbfile = _ensure_file(nwbfile, num_units, seed)
    if classifier is None:
        classifier = mock_CellTypeClassifier(nwbfile=nwbfile, name=f"{name}_classifier", seed=seed)
    classes = tuple(str(c) for c in classifier.classes)
    n, k = len(nwbfile.units), len(classes)
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(k, 0.5), size=n)
    top = np.sort(p, axis=1)
    confidence = top[:, -1] / np.maximum(top[:, -2], 1e-12)
    labels = np.array([classes[i] for i in p.argmax(axis=1)], dtype=object)
    labels[confidence < threshold] = "unclassified"
    votes = rng.multinomial(10, p.clip(0, 1) / p.sum(axis=1, keepdims=True))
    reasons = np.where(labels == "unclassified", "confidence ratio below threshold", "").astype(object)
    if n >= 3:
        p[-1] = np.nan
        confidence[-1] = np.nan
        votes[-1] = 0
        labels[-1] = "not_classifiable"
        reasons[-1] = "fewer than 100 spikes"
    return add_annotations(
        nwbfile,
        name=name,
        units_region=np.arange(n),
        labels=labels,
        classes=classes,
        probabilities=p,
        confidence=confidence,
        kind=kind,
        reasons=reasons,
        votes=votes,
        classifier=classifier,
        description="Mock cell-type predictions.",
    )


def mock_CellTypeEvidence(
    *,
    nwbfile: NWBFile | None = None,
    name: str = "mock_ground_truth",
    num_units: int = 6,
    seed: int = 0,
) -> CellTypeEvidence:
    """A ground-truth annotation table (one label per unit, cycling through the C4 classes) with
    its evidence table (one or two items per unit); returns the evidence table."""
    nwbfile = _ensure_file(nwbfile, num_units, seed)
    n = len(nwbfile.units)
    labels = [C4_CLASSES[i % len(C4_CLASSES)] for i in range(n)]
    types = [EVIDENCE_TYPES[i % 3] for i in range(n)]
    rows = list(range(n)) + [0]
    add_annotations(
        nwbfile,
        name=name,
        units_region=np.arange(n),
        labels=labels,
        classes=C4_CLASSES,
        kind="ground_truth",
        evidence={
            "row": rows,
            "evidence_type": [*types, "expert"],
            "evidence_text": [f"identified unit {i}" for i in range(n)] + ["confirmed by review"],
            "labelled_by": ["Doe, Jane"] * (n + 1),
            "labelled_at": ["2024-01-03T00:00:00+00:00"] * n + [""],
        },
        description="Mock ground-truth labels.",
    )
    return get_cell_types_module(nwbfile)[f"{name}_evidence"]


__all__ = [
    "MOCK_WEIGHTS_SHA256",
    "mock_CellTypeAnnotations",
    "mock_CellTypeClassifier",
    "mock_CellTypeEvidence",
    "mock_NWBFile_with_units",
]
