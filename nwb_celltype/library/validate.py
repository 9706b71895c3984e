"""Checks of a ground-truth library before it is trained on or shared: every file present and
unchanged, every labelled unit present and usable, labels in the vocabulary, evidence recorded,
nothing labelled twice."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import LibraryError, NwbCelltypeError
from ..vocabulary import EVIDENCE_TYPES
from ._annotations import (
    LABEL_VOCABULARY,
    RELABEL_EXPERT,
    default_units_table,
    expert_tables,
    read_ground_truth,
    units_of,
    units_tables,
)
from ._hashing import sha256_file
from ._open import open_nwb, spike_counts
from .manifest import Manifest, as_manifest

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Issue:
    """One finding: ``severity`` is ``"error"`` (the library cannot be used as is) or ``"warning"``."""

    severity: str
    code: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity.upper()} [{self.code}] {self.where}: {self.message}"


@dataclass
class ValidationReport:
    """Result of :func:`validate_library`."""

    library: str
    n_files: int = 0
    n_labelled: int = 0
    issues: list[Issue] = field(default_factory=list)

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        head = (
            f"library {self.library!r}: {self.n_files} files, {self.n_labelled} labelled units, "
            f"{len(self.errors)} errors, {len(self.warnings)} warnings"
        )
        return "\n".join([head, *map(str, self.issues)])

    def raise_if_errors(self) -> None:
        if self.errors:
            raise LibraryError(
                f"library {self.library!r} has {len(self.errors)} errors; first: {self.errors[0]}. "
                "Run `nwb-celltype library validate` for the full list."
            )


def validate_library(
    manifest: Manifest | str | Path,
    *,
    min_spikes: int = 100,
    require_waveforms: bool = True,
    check_hashes: bool = True,
    check_features: bool = False,
    config=None,
    cache_dir=None,
) -> ValidationReport:
    """Check a library.

    Errors: missing or changed file (sha256), unreadable file, no ground-truth table, labelled unit
    out of range, label outside the vocabulary, missing or unknown evidence type, no labeller, the
    same unit labelled twice (within or across tables), the same file listed twice (equal sha256 or
    equal NWB identifier), the same neurons in two table folders (equal dataset.json ``lab``,
    ``neuron_id`` and ACG/ISI counts or waveform), labelled unit with fewer than ``min_spikes``
    spikes, labelled unit without a mean waveform of finite, not all equal samples
    (``require_waveforms``). Warnings: empty evidence text or time.

    Parameters
    ----------
    manifest : Manifest or path
    min_spikes : int
        C4's minimum of 100 spikes by default.
    require_waveforms : bool
        Whether a labelled unit needs a ``waveform_mean`` with finite samples, not all equal: the
        ``c4-3d`` family (what ``train`` uses for a library of NWB files only) needs one; the
        ``acg-isi-wave`` family scores a unit without one from its discharge alone.
    check_hashes : bool
        Compare local files with their recorded sha256 (reads each file once).
    check_features : bool
        Also compute (or take from the cache) the features of every unit with ``config`` and report
        each labelled unit the feature layer marks unusable, with its reason (error
        ``unusable-unit``). Only run when the other checks pass.
    config : FeatureConfig or DischargeConfig, optional
        The features ``check_features`` computes; default, as ``train --family auto``: the
        ``acg-isi-wave`` family's (``DischargeConfig()``) when the manifest lists table folders,
        else the ``c4-3d`` family's.
    cache_dir : path, optional
        Feature cache (see :func:`~nwb_celltype.library.load_training_set`).
    """
    manifest = as_manifest(manifest)
    rep = ValidationReport(library=manifest.name, n_files=len(manifest.entries))

    def add(sev, code, where, msg):
        rep.issues.append(Issue(sev, code, where, msg))

    by_hash: dict[str, str] = {}
    by_identifier: dict[str, str] = {}
    by_neuron: dict[tuple, str] = {}  # (dataset, neuron id, fingerprint) of table rows -> folder
    for entry in manifest.entries:
        where = entry.identity()
        source = entry.source(manifest.root)
        if entry.is_tables:
            rep.n_labelled += _check_tables(entry, source, where, check_hashes, add, by_hash, by_neuron)
            continue
        if entry.is_local:
            if not Path(source).is_file():
                add("error", "missing-file", where, f"file {source} does not exist")
                continue
            if check_hashes:
                sha = sha256_file(source)
                if entry.sha256 and sha != entry.sha256:
                    add(
                        "error",
                        "hash-mismatch",
                        where,
                        f"sha256 {sha[:16]}... differs from the manifest's {entry.sha256[:16]}...; the file "
                        "changed - re-create the manifest if that is intended",
                    )
                if not entry.sha256:
                    add("warning", "no-hash", where, "no sha256 recorded; `library create` records it")
                if sha in by_hash:
                    add("error", "duplicate-file", where, f"same content as {by_hash[sha]} (listed twice)")
                by_hash.setdefault(sha, where)
        elif not entry.sha256:
            add("warning", "no-hash", where, "remote entry without a recorded sha256")
        try:
            with open_nwb(source) as nwbfile:
                ident = str(nwbfile.identifier)
                if ident in by_identifier:
                    add(
                        "error",
                        "duplicate-session",
                        where,
                        f"NWB identifier {ident!r} is also that of {by_identifier[ident]}: the same "
                        "recording is in the library twice, so its units would be labelled twice",
                    )
                by_identifier.setdefault(ident, where)
                _check_file(nwbfile, entry.annotation, where, min_spikes, require_waveforms, add, rep)
        except NwbCelltypeError as exc:
            add("error", "unreadable", where, str(exc))
        except (OSError, ValueError, KeyError) as exc:
            add("error", "unreadable", where, f"{type(exc).__name__}: {exc}")
    if check_features and rep.ok:
        from .training import load_training_set

        ts = load_training_set(manifest, config=_feature_config(manifest, config), cache_dir=cache_dir)
        bad = np.flatnonzero(ts.labelled & ~np.asarray(ts.features.usable, dtype=bool))
        for i in bad:
            ref = ts.references[int(ts.file_index[i])]
            add(
                "error",
                "unusable-unit",
                f"{ref['source']} [{ts.evidence['annotation'][i]}]",
                f"unit {int(ts.features.unit_ids[i])} ({ts.labels[i]}): features unusable: "
                f"{ts.features.reasons[i] or 'no reason given'}",
            )
    return rep


def _feature_config(manifest: Manifest, config):
    """The configuration ``check_features`` computes features with: ``config``, or the family
    ``train --family auto`` picks (acg-isi-wave when the manifest lists table folders, else c4-3d).
    A c4-3d configuration with table folders is refused, with the option that fixes it."""
    from ..features.families import get_family

    tables = [e.identity() for e in manifest.entries if e.is_tables]
    if config is None:
        return get_family("acg-isi-wave" if tables else "c4-3d").default_config()
    if tables and config.family != "acg-isi-wave":
        raise LibraryError(
            f"{tables[0]} is a folder of feature tables, which hold 'acg-isi-wave' features only, but the "
            f"features asked for are {config.family!r}; validate with the acg-isi-wave family "
            "(`library validate --features --family acg-isi-wave`, or auto; Python: config=DischargeConfig())."
        )
    return config


def _check_tables(entry, source, where, check_hashes, add, by_hash: dict, by_neuron: dict) -> int:
    """A tables entry: readable layout, aligned rows, known labels, matching hash, not the same
    content or the same neurons as another entry (errors as issues). Returns its number of labelled
    rows (0 when unreadable)."""
    from .tables import read_feature_tables
    from .training import describe_repeated, repeated_neurons, table_neurons

    if not Path(source).exists():  # as an NWB entry's missing file is reported
        add("error", "missing-file", where, f"table folder {Path(source).resolve()} does not exist")
        return 0
    try:
        fs = read_feature_tables(source)
    except NwbCelltypeError as exc:
        add("error", "bad-tables", where, str(exc))
        return 0
    if check_hashes and entry.sha256 and fs.meta["sha256"] != entry.sha256:
        add("error", "hash-mismatch", where, "tables changed since the manifest was made; re-import them")
    if not entry.sha256:
        add("warning", "no-hash", where, "no sha256 recorded; `library import-tables` records it")
    sha = fs.meta["sha256"]
    if sha in by_hash:
        add("error", "duplicate-file", where, f"same tables as {by_hash[sha]} (listed twice)")
    else:  # the same neurons in another folder whose content differs (re-exported, relabelled, ...)
        dataset, neurons = table_neurons(fs)
        first, repeated = repeated_neurons(dataset, neurons, by_neuron, where)
        if repeated:
            add(
                "error",
                "duplicate-neuron",
                where,
                describe_repeated(dataset, first, repeated) + "; remove one folder",
            )
    by_hash.setdefault(sha, where)
    labelled = np.array([x != "unlabeled" for x in fs.labels], dtype=bool)
    if not labelled.any():
        add("warning", "no-ground-truth", where, "no labelled rows (usable for pre-training only)")
    for i in np.flatnonzero(labelled & ~fs.has_discharge):
        ids = fs.meta["neuron_ids"]
        add(
            "warning",
            "no-discharge",
            where,
            f"row {int(i) + 1} ({ids[i]}, {fs.labels[i]}): no ACG/ISI, waveform only",
        )
    return int(labelled.sum())


def _check_file(nwbfile, annotation, where, min_spikes, require_waveforms, add, rep) -> None:
    """The ground-truth tables of an open NWB file, each against the Units table its rows refer to
    (``/units`` or a sorting in a processing module)."""
    try:
        tables = read_ground_truth(nwbfile, name=annotation)
        problem = "no ground-truth annotation table (label it with `library label`)"
        experts = expert_tables(nwbfile) if not tables else []
        if experts:
            problem = (
                f"no ground-truth annotation table, only expert table(s) {', '.join(map(repr, experts))}; "
                + RELABEL_EXPERT
            )
    except LibraryError as exc:
        tables, problem = [], str(exc)
    if not tables:
        default = default_units_table(nwbfile)
        if not units_tables(nwbfile) or (default is not None and len(units_of(nwbfile, default)) == 0):
            add("error", "no-units", where, "no Units table (or it is empty)")
        else:
            add("error", "no-ground-truth", where, problem)
        return
    paths = list(dict.fromkeys(gt.units_table for gt in tables))
    if len(paths) > 1:
        add(
            "error",
            "several-units-tables",
            where,
            "ground-truth tables label units of several Units tables ("
            + ", ".join(f"{gt.table!r} -> {gt.units_table}" for gt in tables)
            + "), possibly the same neurons sorted twice; name one table with annotation = NAME in "
            "the manifest",
        )
    units = {p: units_of(nwbfile, p) for p in paths}
    seen: dict[tuple[str, int], tuple[str, str]] = {}
    for gt in tables:
        if len(units[gt.units_table]) == 0:
            add("error", "no-units", f"{where} [{gt.table}]", f"its Units table {gt.units_table} is empty")
            continue
        _check_rows(
            gt, units[gt.units_table], f"{where} [{gt.table}]", seen, add, rep, min_spikes, require_waveforms
        )
    per_class = defaultdict(int)
    for _, lab in seen.values():
        per_class[lab] += 1
    logger.info("%s: %d labelled units %s", where, len(seen), dict(per_class))


def _check_rows(gt, units, tw, seen: dict, add, rep, min_spikes, require_waveforms) -> None:
    """The rows of the ground-truth table ``gt`` against its Units table ``units``; ``seen``: (Units
    table, unit id) -> (table, label) of the units labelled so far in the file."""
    n_units = len(units)
    ids = np.asarray(units.id.data[:], dtype=np.int64)
    counts = spike_counts(units)
    has_wf = "waveform_mean" in units.colnames
    name = "Units" if gt.units_table == "/units" else f"Units table {gt.units_table}"
    for row, lab, etype, etext, who, when in zip(
        gt.unit_indices,
        gt.labels,
        gt.evidence["evidence_type"],
        gt.evidence["evidence_text"],
        gt.evidence["labelled_by"],
        gt.evidence["labelled_at"],
        strict=True,
    ):
        if not 0 <= row < n_units:
            add("error", "unit-out-of-range", tw, f"row {row} but {name} has {n_units} rows")
            continue
        uid = int(ids[row])
        u = f"unit {uid}"
        rep.n_labelled += 1
        if lab not in LABEL_VOCABULARY:
            add("error", "unknown-label", tw, f"{u}: label {lab!r} not in {list(LABEL_VOCABULARY)}")
        types = [t for t in etype.split("; ") if t]
        if not types:
            add("error", "no-evidence", tw, f"{u}: no evidence type recorded")
        elif any(t not in EVIDENCE_TYPES for t in types):
            add(
                "error", "unknown-evidence", tw, f"{u}: evidence type {etype!r} not in {list(EVIDENCE_TYPES)}"
            )
        if not who:
            add("error", "no-labeller", tw, f"{u}: who labelled it is not recorded")
        if not etext:
            add("warning", "no-evidence-text", tw, f"{u}: no free-text evidence")
        if not when:
            add("warning", "no-time", tw, f"{u}: labelling time not recorded")
        if (gt.units_table, uid) in seen:
            prev_table, prev_label = seen[gt.units_table, uid]
            kind = "conflicting" if prev_label != lab else "repeated"
            add(
                "error",
                "duplicate-label",
                tw,
                f"{u} labelled twice ({kind}): {prev_label!r} in {prev_table!r}, {lab!r} here; name one "
                "table with annotation = NAME in the manifest",
            )
        seen[gt.units_table, uid] = (gt.table, lab)
        if counts is not None and counts[row] < min_spikes:
            add("error", "too-few-spikes", tw, f"{u}: {counts[row]} spikes < {min_spikes}")
        if counts is None:
            add("error", "no-spikes", tw, f"{u}: {name} has no spike_times")
        if require_waveforms and not has_wf:
            add("error", "no-waveform", tw, f"{u}: {name} has no waveform_mean column")
        elif require_waveforms:
            problem = _waveform_problem(units["waveform_mean"][row])
            if problem:
                add("error", "no-waveform", tw, f"{u}: its waveform_mean {problem}")


def _waveform_problem(wf) -> str:
    """Why a unit's ``waveform_mean`` (any shape) is no waveform at all, or ``""``: no finite sample
    (all NaN, as files write for units without one), or every finite sample equal (e.g. all zeros)."""
    try:
        w = np.asarray(wf, dtype=np.float64).ravel()
    except (TypeError, ValueError):  # a ragged or non-numeric layout: left to the feature layer
        return ""
    finite = w[np.isfinite(w)]
    if finite.size == 0:
        return "has no finite sample (NaN or infinite): the unit has no waveform"
    if np.ptp(finite) == 0:
        return "is flat (every sample equal, e.g. all zeros): the unit has no waveform"
    return ""
