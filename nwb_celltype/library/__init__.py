"""Ground-truth libraries: label NWB files, import the C4 library format, list files in a manifest,
validate, summarise, merge and export a library as a dandiset, and load it as a training set
(features cached by content hash + feature configuration)."""

from __future__ import annotations

from ._annotations import EVIDENCE_FIELDS, LABEL_VOCABULARY, GroundTruth, read_ground_truth
from ._mock import mock_library_file
from .c4h5 import import_c4h5, read_c4h5
from .export import export_dandiset, validate_dandiset
from .labels import LabelTable, label_file, labels_from_units_column, parse_mapping, read_label_table
from .manifest import LibraryEntry, Manifest, create_manifest, load_manifest, merge_manifests
from .stats import LibraryStats, library_stats
from .tables import import_tables, read_feature_tables
from .training import TrainingSet, default_cache_dir, load_training_set
from .validate import Issue, ValidationReport, validate_library

__all__ = [
    "EVIDENCE_FIELDS",
    "LABEL_VOCABULARY",
    "GroundTruth",
    "Issue",
    "LabelTable",
    "LibraryEntry",
    "LibraryStats",
    "Manifest",
    "TrainingSet",
    "ValidationReport",
    "create_manifest",
    "default_cache_dir",
    "export_dandiset",
    "import_c4h5",
    "import_tables",
    "label_file",
    "labels_from_units_column",
    "library_stats",
    "load_manifest",
    "load_training_set",
    "merge_manifests",
    "mock_library_file",
    "parse_mapping",
    "read_c4h5",
    "read_ground_truth",
    "read_feature_tables",
    "read_label_table",
    "validate_dandiset",
    "validate_library",
]
