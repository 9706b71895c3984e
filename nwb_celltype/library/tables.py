"""Per-unit feature tables as a ground-truth library: the HIPPIE/C4 CSV layout (``labels.csv``,
``acg.csv``, ``isi_dist.csv``, ``waveforms.csv`` + ``dataset.json``; one row per unit, rows aligned
across files), read into ``acg-isi-wave`` features (:mod:`nwb_celltype.features.discharge`).

Layout (see docs/library.md):

- ``dataset.json``: ``waveform_rate_hz`` (required when ``waveforms.csv`` exists), ``species``, ``lab``,
  ``name``, ``source`` ...;
- ``labels.csv``: a ``label`` column (a C4 class, ``GrC`` or another known non-C4 type, or
  ``unlabeled``); or ``units.csv`` with ``neuron_id`` + ``label``;
- ``acg.csv``: raw pair counts, 201 columns named by lag -100..100 ms (1 ms bins, centre = lag 0);
- ``isi_dist.csv``: raw counts, 100 columns named 0..99 (ms);
- ``waveforms.csv``: peak-channel mean waveform, any number of samples at ``waveform_rate_hz``.

At least one of acg/isi (both, in fact: they come together) or waveforms must exist.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._atomic_files import write_text_file
from ..errors import LibraryError, NwbCelltypeError, SourceNotFoundError
from ..features.discharge import DischargeConfig, DischargeFeatureSet, align_waveform
from ..reasons import join_reasons, no_waveform, waveform_problem
from ._table_csv import (  # noqa: F401  (the table reader's names, importable from here too)
    TABLE_LABELS,
    UNLABELLED,
    _check_unique_ids,
    _count_rows,
    _csv_rows,
    _first_non_numeric,
    _label_column,
    _label_hint,
    _looks_numeric,
    _more,
    _numeric_table,
    _read_csv,
    _read_csv_lines,
    _read_label_lines,
    _read_labels,
    _refuse_blank_lines,
    _text_column,
)

logger = logging.getLogger(__name__)

TABLE_FILES = ("dataset.json", "labels.csv", "units.csv", "acg.csv", "isi_dist.csv", "waveforms.csv")


@dataclass(frozen=True)
class TableInfo:
    """What a table folder holds (without reading the big files)."""

    path: Path
    name: str
    species: str
    lab: str
    n_units: int
    has_acg: bool
    has_waveforms: bool
    sha256: str
    dataset: dict


def _dataset_json(folder: Path) -> dict:
    p = folder / "dataset.json"
    if not p.exists():
        raise LibraryError(
            f"{folder} has no dataset.json; write one with at least waveform_rate_hz, species and lab."
        )
    try:
        d = json.loads(p.read_text(encoding="utf-8-sig"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise LibraryError(f"{p} is not valid JSON: {exc}") from exc
    if not isinstance(d, dict):
        raise LibraryError(f"{p} must hold a JSON object, got {type(d).__name__}.")
    return d


def table_sha256(folder: str | Path) -> str:
    """Content hash of a table folder (its known files, in a fixed order)."""
    folder = Path(folder)
    h = hashlib.sha256()
    for name in TABLE_FILES:
        p = folder / name
        if p.exists():
            h.update(name.encode())
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def inspect_tables(folder: str | Path, labels_required: bool = True) -> TableInfo:
    """Check a table folder's layout cheaply and describe it (no feature computation); without
    ``labels_required`` a folder without labels.csv / units.csv is described too (its unit count
    from its first data file)."""
    return _inspect(folder, labels_required)[0]


def _inspect(
    folder: str | Path, labels_required: bool
) -> tuple[TableInfo, np.ndarray | None, np.ndarray | None]:
    """:func:`inspect_tables`, with the labels and neuron ids it read (:func:`_read_labels`, read
    once: its warnings are given once)."""
    folder = Path(folder)
    if not folder.exists():
        raise SourceNotFoundError(
            f"table folder {folder.resolve()} does not exist (a folder of feature tables: labels.csv, "
            "acg.csv, ...)."
        )
    if not folder.is_dir():
        raise LibraryError(
            f"{folder.resolve()} is not a folder of feature tables (labels.csv, acg.csv, ...): it is a file."
        )
    d = _dataset_json(folder)
    labels, ids = _read_labels(folder, required=labels_required)
    has_acg = (folder / "acg.csv").exists()
    has_isi = (folder / "isi_dist.csv").exists()
    if has_acg != has_isi:
        raise LibraryError(f"{folder}: acg.csv and isi_dist.csv come together; one of them is missing.")
    has_wave = (folder / "waveforms.csv").exists()
    if not (has_acg or has_wave):
        raise LibraryError(f"{folder} has neither acg.csv + isi_dist.csv nor waveforms.csv: no features.")
    n = (
        len(labels)
        if labels is not None
        else _count_rows(folder / ("acg.csv" if has_acg else "waveforms.csv"))
    )
    if n == 0:
        raise LibraryError(
            f"{folder}: the tables hold no units (header rows only); add one row per unit to every file."
        )
    if has_wave:
        _check_waveform_rate(folder, d.get("waveform_rate_hz"))
    info = TableInfo(
        path=folder,
        name=str(d.get("name", folder.name)),
        species=str(d.get("species", "unknown")),
        lab=str(d.get("lab", "unknown")),
        n_units=n,
        has_acg=has_acg,
        has_waveforms=has_wave,
        sha256=table_sha256(folder),
        dataset=d,
    )
    return info, labels, ids


def _check_waveform_rate(folder: Path, rate) -> None:
    """``waveform_rate_hz`` must be a plausible sampling rate in Hz (1-200 kHz)."""
    ok = isinstance(rate, (int, float)) and not isinstance(rate, bool) and np.isfinite(rate)
    if not ok or rate <= 0:
        raise LibraryError(
            f"{folder}/dataset.json: waveform_rate_hz must be a positive number (Hz), got {rate!r}."
        )
    if not 1_000 <= rate <= 200_000:
        hint = f" In kHz? Then write {rate * 1000:g}." if rate < 1_000 else ""
        raise LibraryError(
            f"{folder}/dataset.json: waveform_rate_hz is {rate:g} Hz, outside 1,000-200,000 Hz, the "
            f"sampling rates of extracellular probes.{hint}"
        )


def read_feature_tables(
    folder: str | Path, config: DischargeConfig | None = None, *, labels_required: bool = True
) -> DischargeFeatureSet:
    """Read a table folder as ``acg-isi-wave`` features (one row per table row).

    Parameters
    ----------
    folder : path
        Folder in the layout of this module's docstring.
    config : DischargeConfig
        Must have ``acg_lags_ms`` <= 100 and ``isi_bins_ms`` <= 100 (what the tables hold).
    labels_required : bool
        Refuse a folder without labels (a training library's); False (classifying the units) reads
        one without labels.csv / units.csv (``labels`` None) and reads labels outside the tables'
        vocabulary as unlabeled.

    Returns
    -------
    DischargeFeatureSet
        ``labels`` from the table; ``meta`` = dataset.json + ``neuron_ids`` + ``sha256``; units
        without ACG/ISI tables are not ``usable`` for classification (``has_discharge`` False) but
        keep their waveforms (for encoder pre-training).

    Raises
    ------
    LibraryError
        Missing files, misaligned rows, wrong column counts, unknown labels, non-numeric cells.
    """
    config = DischargeConfig() if config is None else config
    info, labels, ids = _inspect(folder, labels_required)
    folder = info.path
    n = info.n_units
    if ids is None:
        ids = np.array([f"{folder.name}_{i}" for i in range(n)], dtype=object)
    elif len(ids) != n:
        raise LibraryError(
            f"{folder}: units.csv has {len(ids)} rows but the tables {n}; rows must be aligned."
        )
    acg = np.zeros((n, config.acg_lags_ms))
    isi = np.zeros((n, config.isi_bins_ms))
    has_discharge = np.zeros(n, dtype=bool)
    if info.has_acg:
        a = _numeric_table(folder / "acg.csv", list(range(-100, 101)))
        s = _numeric_table(folder / "isi_dist.csv", list(range(0, 100)))
        for name, t in (("acg.csv", a), ("isi_dist.csv", s)):
            if len(t) != n:
                raise LibraryError(
                    f"{folder}: {name} has {len(t)} rows but the labels have {n}; rows must be aligned "
                    "(one row per unit, same order in every file)."
                )
        for name, t in (("acg.csv", a), ("isi_dist.csv", s)):
            if (t < 0).any():
                i, j = (int(x[0]) for x in np.nonzero(t < 0))
                raise LibraryError(
                    f"{folder}/{name}: row {i + 1} ({ids[i]}) has a negative count ({t[i, j]:g}); "
                    "the tables hold raw pair and interval counts."
                )
        if config.acg_lags_ms > 100 or config.isi_bins_ms > 100:
            raise LibraryError(f"{folder}: tables hold 100 ms of ACG/ISI; the configuration asks for more.")
        acg = a[:, 101 : 101 + config.acg_lags_ms].copy()
        isi = s[:, : config.isi_bins_ms].copy()
        has_discharge = (acg.sum(1) + isi.sum(1)) > 0
    wave = np.zeros((n, config.waveform_samples), dtype=np.float32)
    has_wave = np.zeros(n, dtype=bool)
    reasons = [[] for _ in range(n)]
    if info.has_waveforms:
        rate = info.dataset["waveform_rate_hz"]  # checked by inspect_tables
        w = _numeric_table(folder / "waveforms.csv", None)
        if len(w) != n:
            raise LibraryError(
                f"{folder}: waveforms.csv has {len(w)} rows but the labels have {n}; rows must be aligned."
            )
        for i in range(n):
            try:
                wave[i] = align_waveform(w[i], float(rate), config)
                has_wave[i] = True
            except NwbCelltypeError as exc:
                reasons[i].append(waveform_problem(exc))
    else:
        for r in reasons:
            r.append(no_waveform())
    for i in np.flatnonzero(~has_discharge):
        reasons[i].append("no ACG/ISI in the tables")
    meta = dict(info.dataset)
    meta.update({"folder": str(folder), "sha256": info.sha256, "neuron_ids": [str(x) for x in ids]})
    return DischargeFeatureSet(
        unit_ids=np.arange(n, dtype=np.int64),
        acg_counts=acg,
        isi_counts=isi,
        waveform=wave,
        has_discharge=has_discharge,
        has_waveform=has_wave,
        usable=has_discharge.copy(),
        reasons=np.array([join_reasons(r) for r in reasons], dtype=object),
        labels=None if labels is None else np.asarray(labels, dtype=object),
        meta=meta,
        config=config,
    )


def write_feature_tables(folder: str | Path, fs: DischargeFeatureSet, dataset: dict | None = None) -> Path:
    """Write raw ``acg-isi-wave`` features as a table folder (the inverse of
    :func:`read_feature_tables` up to the ACG's mirrored negative lags and the waveform, which is
    written aligned at ``config.waveform_rate_hz``). Useful to share features of one's own units."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = fs.config
    if cfg.acg_lags_ms != 100 or cfg.isi_bins_ms != 100:
        raise LibraryError("write_feature_tables writes the 100 ms layout; use the default configuration.")
    n = len(fs)
    labels = fs.labels if fs.labels is not None else np.full(n, UNLABELLED, dtype=object)
    label_text = io.StringIO()
    w = csv.writer(label_text)
    w.writerow(["label"])
    w.writerows([[str(x)] for x in labels])
    full = np.concatenate([fs.acg_counts[:, ::-1], np.zeros((n, 1)), fs.acg_counts], axis=1)
    d = {"name": folder.name, "species": "unknown", "lab": "unknown"}
    d.update(dataset or {})
    d["waveform_rate_hz"] = cfg.waveform_rate_hz
    files = {  # all made before any is written; each written whole or not at all
        "labels.csv": label_text.getvalue(),
        "acg.csv": _csv_text(full, range(-100, 101), "%.17g"),
        "isi_dist.csv": _csv_text(fs.isi_counts, range(100), "%.17g"),
        "waveforms.csv": _csv_text(fs.waveform, range(fs.waveform.shape[1]), "%.9g"),
        "dataset.json": json.dumps(d, indent=1),
    }
    for name, text in files.items():
        write_text_file(folder / name, text)
    return folder


def _csv_text(rows: np.ndarray, columns, fmt: str) -> str:
    """``rows`` as comma-separated text under a header of ``columns``."""
    buf = io.StringIO()
    np.savetxt(buf, rows, delimiter=",", fmt=fmt, header=",".join(map(str, columns)), comments="")
    return buf.getvalue()


def evidence_type_of(dataset: dict) -> str:
    """Evidence type (``vocabulary.EVIDENCE_TYPES``) from a table's ``dataset.json`` ``labels`` text."""
    text = str(dataset.get("labels", "")).lower()
    if "opto" in text:
        return "optotagging"
    if "expert" in text:
        return "expert"
    if "pharmac" in text:
        return "pharmacology"
    return "other"


def table_label_records(folder: str | Path, library: str = "", where: str = "") -> list[dict]:
    """One record per labelled row (label, evidence_type, lab, species, library, file, unit_id), the
    shape :func:`~.stats.library_stats` collects from NWB ground-truth tables."""
    info, labels, _ = _inspect(folder, True)
    etype = evidence_type_of(info.dataset)
    return [
        {
            "label": str(lab),
            "evidence_type": etype,
            "lab": info.lab,
            "species": info.species,
            "library": library,
            "subject": "",
            "file": where or str(folder),
            "unit_id": i,
        }
        for i, lab in enumerate(labels)
        if lab != UNLABELLED
    ]


def table_training_labels(fs: DischargeFeatureSet) -> dict:
    """Labels + evidence of a table folder's rows in the form the training-set loader keeps for NWB
    files (``""`` for unlabelled rows)."""
    n = len(fs)
    labels = ["" if x == UNLABELLED else str(x) for x in fs.labels]
    etype = evidence_type_of(fs.meta)
    ev = {
        "evidence_type": [etype if x else "" for x in labels],
        "evidence_text": [str(fs.meta.get("labels", "")) if x else "" for x in labels],
        "labelled_by": [str(fs.meta.get("lab", "")) if x else "" for x in labels],
        "labelled_at": [""] * n,
        "annotation": ["tables" if x else "" for x in labels],
    }
    return {"labels": labels, "evidence": ev, "tables": ["tables"]}


def import_tables(
    folders,
    manifest: str | Path | None = None,
    *,
    name: str | None = None,
    description: str = "",
):
    """Check table folders (full read: layout, aligned rows, labels, numbers) and list them in a
    library manifest, with their content hashes, so that they join ``library stats``, ``validate``,
    ``merge`` and ``train`` like NWB files.

    Parameters
    ----------
    folders : path or sequence of paths
        Table folders (layout in this module's docstring).
    manifest : path, optional
        Manifest to create, or to add the folders to if it exists (a folder already listed is
        updated). Without it, the manifest is returned but not saved.
    name : str, optional
        Library name of a new manifest (default: the manifest's stem, or the first folder's name).

    Returns
    -------
    (Manifest, list of TableInfo)
    """
    import os

    from .manifest import LibraryEntry, Manifest, load_manifest

    if isinstance(folders, (str, Path)):
        folders = [folders]
    folders = list(folders)
    if not folders:
        raise LibraryError("no table folders given; name at least one folder of feature tables.")
    infos = []
    for f in folders:
        fs = read_feature_tables(f)  # raises a LibraryError that names the problem
        infos.append(inspect_tables(f))
        logger.info("%s: %d units (%d with ACG/ISI)", f, len(fs), int(fs.has_discharge.sum()))
    mpath = Path(manifest) if manifest is not None else None
    if mpath is not None and mpath.exists():
        m = load_manifest(mpath)
        if name is not None and name != m.name:
            logger.warning("%s exists: its library name %r is kept (name %r not used)", mpath, m.name, name)
    else:
        default = mpath.stem if mpath is not None else Path(str(folders[0])).name
        root = mpath.parent.resolve() if mpath is not None else Path.cwd().resolve()
        m = Manifest(name=name or default, entries=[], description=description, root=root)
    for info in infos:
        rel = os.path.relpath(info.path.resolve(), m.root)
        same = [
            i
            for i, e in enumerate(m.entries)
            if e.is_tables and (m.root / e.tables).resolve() == info.path.resolve()
        ]
        # an updated entry keeps its place and the library it came from (provenance through merges)
        library = m.entries[same[0]].library if same else m.name
        new = LibraryEntry(tables=rel, sha256=info.sha256, library=library or m.name)
        if same:
            m.entries[same[0]] = new
            m.entries = [e for i, e in enumerate(m.entries) if i not in same[1:]]
        else:
            m.entries.append(new)
    if mpath is not None:
        m.save(mpath)
    return m, infos
