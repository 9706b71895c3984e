"""Helpers for tests of nwb-celltype and of code that uses it: ``mock_<Type>()`` factories of the
ndx-celltype types (see :mod:`nwb_celltype.testing.mock`)."""

from __future__ import annotations

from .mock import (
    MOCK_WEIGHTS_SHA256,
    mock_CellTypeAnnotations,
    mock_CellTypeClassifier,
    mock_CellTypeEvidence,
    mock_NWBFile_with_units,
)

__all__ = [
    "MOCK_WEIGHTS_SHA256",
    "mock_CellTypeAnnotations",
    "mock_CellTypeClassifier",
    "mock_CellTypeEvidence",
    "mock_NWBFile_with_units",
]
