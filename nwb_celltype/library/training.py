"""Training sets from a library: features of every unit of every file, with the ground-truth label
of each labelled unit and where it came from. Features are cached on disk keyed by the file's
content hash and the feature configuration's hash, so a second run reads no spikes."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import LibraryError, NwbCelltypeError
from ..features.config import FeatureConfig, FeatureSet
from ._annotations import (
    EVIDENCE_FIELDS,
    RELABEL_EXPERT,
    expert_tables,
    labelled_units_table,
    read_ground_truth,
    units_of,
)
from ._hashing import cached_sha256, sha256_file
from ._table_neurons import describe_repeated, repeated_neurons, table_neurons  # also imported from here
from .manifest import LibraryEntry, Manifest, identify_manifest, is_manifest_path, load_manifest

logger = logging.getLogger(__name__)

CACHE_ENV = "NWB_CELLTYPE_CACHE_DIR"
_CACHE_FORMAT = "1"


def default_cache_dir() -> Path:
    """``$NWB_CELLTYPE_CACHE_DIR`` or ``~/.cache/nwb-celltype``, with ``features/`` below it."""
    base = os.environ.get(CACHE_ENV)
    return Path(base) if base else Path.home() / ".cache" / "nwb-celltype"


@dataclass
class TrainingSet:
    """Features and labels of a library.

    Attributes
    ----------
    features : FeatureSet or DischargeFeatureSet
        All units of all files (labelled or not), file by file in manifest order, in the feature
        family of the configuration the set was loaded with.
    labels : (n,) object (str)
        Ground-truth class per unit, ``""`` where unlabelled.
    references : list of dict
        One per file: ``source`` (the entry's path, URL or table folder), ``sha256``, ``library``,
        ``annotation_tables``, ``n_units``, ``n_labelled`` (stored in model cards as the training
        library's identity); ``lab`` (an NWB file's ``general/lab``, a table folder's dataset.json
        ``lab``: the loss balances labs), ``species``; for table folders also ``kind``, ``name`` and
        ``dataset_source`` (dataset.json's ``source`` text).
    file_index : (n,) int64
        Index into ``references`` of each unit's file.
    evidence : dict of field -> (n,) object (str)
        Per-unit ``evidence_type``, ``evidence_text``, ``labelled_by``, ``labelled_at`` and
        ``annotation`` (the table the label came from); ``""`` where unlabelled.
    manifest : dict or None
        The manifest file the set was loaded from, without its location (file name, sha256, size:
        :func:`~nwb_celltype.library.manifest.identify_manifest`); None when not loaded from a file.
    neuron_ids : (n,) object (str)
        The tables' own ``neuron_id`` of each row of a feature-table entry (its ``features.unit_ids``
        are row numbers 0..n-1, repeated across folders); ``""`` for units of NWB files, which their
        Units id (``features.unit_ids``) and file (``references[file_index]``) identify.
    """

    features: FeatureSet
    labels: np.ndarray
    references: list[dict]
    file_index: np.ndarray
    evidence: dict[str, np.ndarray] = field(default_factory=dict)
    neuron_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    manifest: dict | None = None

    def __repr__(self) -> str:  # short: counts, never the arrays
        from .._repr import compact_repr, counts

        return compact_repr(
            self,
            n_units=len(self.labels),
            labelled=counts(self.labels[self.labels != ""]),
            files=len(self.references),
            features=type(self.features).__name__,
            manifest=(self.manifest or {}).get("file_name"),
        )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def labelled(self) -> np.ndarray:
        """(n,) bool: units with a ground-truth label."""
        return self.labels != ""

    def class_counts(self) -> dict[str, int]:
        names, counts = np.unique(self.labels[self.labelled].astype(str), return_counts=True)
        return {str(k): int(v) for k, v in zip(names, counts, strict=True)}


# -- cache -------------------------------------------------------------------------------------


def _cache_paths(cache_dir: Path, sha: str, config, annotation: str | None) -> tuple[Path, Path]:
    d = cache_dir / "features"
    stem = f"{sha}-{config.sha256[:16]}"
    ann = "all" if annotation is None else annotation.replace("/", "_")
    return d / f"{stem}.npz", d / f"{sha}-labels-{ann}.json"


def _save_featureset(path: Path, fs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fs.family != "c4-3d":  # other families: their own features file, written atomically
        from ..features.families import family_of

        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        family_of(fs).save_features(tmp, fs)
        os.replace(tmp, path)
        return
    arrays = {
        "unit_ids": fs.unit_ids,
        "acg": fs.acg,
        "waveform": fs.waveform,
        "layer": fs.layer,
        "usable": fs.usable,
        "reasons": np.asarray(fs.reasons, dtype=str),
        "config": np.asarray(fs.config.to_json()),
        "format": np.asarray(_CACHE_FORMAT),
    }
    arrays.update({f"stats__{k}": v for k, v in fs.stats.items()})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _load_featureset(path: Path, config):
    if config.family != "c4-3d":
        from ..features.families import family_of

        try:
            fs = family_of(config).load_features(path)
        except LibraryError:
            raise
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("ignoring unreadable feature cache %s (%s)", path, exc)
            return None
        return fs if fs.config == config else None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["format"]) != _CACHE_FORMAT or FeatureConfig.from_json(str(z["config"])) != config:
                return None
            return FeatureSet(
                unit_ids=z["unit_ids"],
                acg=z["acg"],
                waveform=z["waveform"],
                layer=z["layer"],
                stats={k[7:]: z[k] for k in z.files if k.startswith("stats__")},
                usable=z["usable"],
                reasons=z["reasons"].astype(object),
                config=config,
            )
    except (OSError, ValueError, KeyError) as exc:
        logger.warning("ignoring unreadable feature cache %s (%s)", path, exc)
        return None


# -- one file ----------------------------------------------------------------------------------


def _labels_of(nwbfile, unit_ids: np.ndarray, tables: list, units_table: str | None, where: str) -> dict:
    """Per-unit labels + evidence from the file's ground-truth ``tables``, whose rows refer to the
    Units table at ``units_table`` (the one whose units ``unit_ids`` are); conflicts are errors."""
    file_ids = np.asarray(units_of(nwbfile, units_table).id.data[:], dtype=np.int64) if tables else []
    n = len(unit_ids)
    pos = {int(u): i for i, u in enumerate(unit_ids)}
    labels = np.full(n, "", dtype=object)
    ev = {f: np.full(n, "", dtype=object) for f in (*EVIDENCE_FIELDS, "annotation")}
    for gt in tables:
        for row, lab, *evs in zip(
            gt.unit_indices, gt.labels, *(gt.evidence[f] for f in EVIDENCE_FIELDS), strict=True
        ):
            if not 0 <= row < len(file_ids):
                raise LibraryError(
                    f"{where}: table {gt.table!r} points at row {row} of the Units table "
                    f"{units_table}, which has {len(file_ids)} rows; the file is inconsistent - relabel it."
                )
            i = pos[int(file_ids[row])]
            if labels[i] and labels[i] != lab:
                raise LibraryError(
                    f"{where}: unit {file_ids[row]} is labelled {labels[i]!r} in table "
                    f"{ev['annotation'][i]!r} and {lab!r} in table {gt.table!r}; pick one table with "
                    "annotation = NAME in the manifest or remove the conflict."
                )
            labels[i] = lab
            for f, v in zip(EVIDENCE_FIELDS, evs, strict=True):
                ev[f][i] = v
            ev["annotation"][i] = gt.table
    return {
        "labels": labels.tolist(),
        "evidence": {k: v.tolist() for k, v in ev.items()},
        "tables": [g.table for g in tables],
        "lab": str(nwbfile.lab or ""),  # general/lab: the loss balances labs, not files
    }


def _featurise(source: str, config, annotation: str | None, where: str, layer_column):
    from ..features.families import family_of
    from ..io import open_source, read_units

    family = family_of(config)
    sets = []
    with open_source(source) as src:
        # the units the labels refer to: /units or a sorting in a processing module
        tables = read_ground_truth(src.nwbfile, name=annotation)
        units_table = labelled_units_table(src.nwbfile, tables, where)
        # families that classify units without a waveform read files without waveform_mean too
        need_waves = family.name == "c4-3d"
        for batch in read_units(
            src, layer_column=layer_column, require_waveforms=need_waves, units_table=units_table
        ):
            sets.append(family.extract_features(batch, config))
        if not sets:
            raise LibraryError(f"{where}: the file has no units; remove it from the library.")
        fs = family.concatenate(sets)
        family.note_species(fs, src.species)  # for the model's species rule (and the cache)
        labels = _labels_of(src.nwbfile, fs.unit_ids, tables, units_table, where)
        if not tables:  # labels written as kind expert are not read: say so (see load_training_set)
            labels["expert_tables"] = expert_tables(src.nwbfile)
        info = src.info.to_dict() if hasattr(src, "info") else {}
    return fs, labels, info


def _tables_entry(entry: LibraryEntry, source: str, config, where: str):
    """Features + labels of a tables entry (read directly; the CSVs are the cache)."""
    from .tables import read_feature_tables, table_training_labels

    if config.family != "acg-isi-wave":
        raise LibraryError(
            f"{where} is a folder of feature tables, which hold 'acg-isi-wave' features only, but the "
            f"features asked for are {config.family!r}; train or evaluate with the acg-isi-wave family "
            "(nwb_celltype.features.DischargeConfig; CLI: --family acg-isi-wave, or auto with a manifest)."
        )
    fs = read_feature_tables(source, config)
    if entry.sha256 and fs.meta["sha256"] != entry.sha256:
        raise LibraryError(
            f"{where}: the tables' content sha256 {fs.meta['sha256'][:16]}... does not match the manifest's "
            f"{entry.sha256[:16]}...; the tables changed since the manifest was made. Re-import them "
            "(`library import-tables`) if the change is intended."
        )
    return fs, table_training_labels(fs), fs.meta["sha256"]


def _entry_sha(entry: LibraryEntry, source: str, memo_dir: Path) -> str | None:
    if entry.is_local:
        p = Path(source)
        if not p.exists():
            return entry.sha256  # may still be served from the cache
        sha = cached_sha256(p, memo_dir)
        if entry.sha256 and sha != entry.sha256:
            raise LibraryError(
                f"{entry.identity()}: content sha256 {sha[:16]}... does not match the manifest's "
                f"{entry.sha256[:16]}...; the file changed since the manifest was made. Re-create the "
                "manifest (`library create`) if the change is intended."
            )
        return sha
    return entry.sha256


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _lab_of(entry: LibraryEntry, source: str, where: str) -> str:
    """The NWB file's ``general/lab`` (no spikes read), for labels cached before they recorded it;
    "" (the file balanced as its own lab) when a local file is gone."""
    from ._open import open_nwb

    if entry.is_local and not Path(source).exists():
        logger.warning("%s: file missing, so its lab is unknown; it is balanced as a lab of its own", where)
        return ""
    with open_nwb(source) as nwbfile:
        return str(nwbfile.lab or "")


def _nwb_entry(entry: LibraryEntry, source: str, where: str, annotation, config, cache: Path, layer_column):
    """Features + labels of an NWB entry, from the feature cache when its hash is known."""
    sha = _entry_sha(entry, source, cache)
    fs = labels = None
    fpath = lpath = None
    if sha:
        fpath, lpath = _cache_paths(cache, sha, config, annotation)
        if fpath.exists() and lpath.exists():
            fs = _load_featureset(fpath, config)
            labels = json.loads(lpath.read_text()) if fs is not None else None
            if labels is not None and "lab" not in labels:  # cached before the labels kept the lab
                labels["lab"] = _lab_of(entry, source, where)
                _write_json(lpath, labels)
    if fs is None:
        if entry.is_local and not Path(source).exists():
            raise LibraryError(
                f"{where}: file {source} is missing and its features are not cached in {cache}; "
                "restore the file or fix the manifest path."
            )
        logger.info("computing features of %s", where)
        try:
            fs, labels, info = _featurise(source, config, annotation, where, layer_column)
        except NwbCelltypeError as exc:
            if where in str(exc):
                raise
            raise type(exc)(f"{where}: {exc}") from exc  # which file of the library
        remote_sha = str(info.get("sha256") or "")
        if entry.sha256 and len(remote_sha) == 64 and remote_sha != entry.sha256:
            raise LibraryError(
                f"{where}: the source reports sha256 {remote_sha[:16]}..., the manifest "
                f"{entry.sha256[:16]}...; the asset is not the one the manifest lists. Fix the "
                "manifest (version / path / hash)."
            )
        if not sha:
            sha = info.get("sha256") or (sha256_file(source) if entry.is_local else None)
        if sha:
            fpath, lpath = _cache_paths(cache, sha, config, annotation)
            _save_featureset(fpath, fs)
            _write_json(lpath, labels)
    else:
        logger.info("features of %s served from cache %s", where, fpath)
    return fs, labels, sha


def _source_entry(source: str) -> LibraryEntry:
    """The library entry of one NWB source given by itself: a URL or DANDI id, else a local path."""
    if source.startswith(("http://", "https://", "dandi://")) or source.upper().startswith("DANDI:"):
        return LibraryEntry(url=source, library="sources")
    return LibraryEntry(path=str(Path(source).resolve()), library="sources")


def _sources_manifest(sources: str | os.PathLike | Sequence[str | os.PathLike]) -> Manifest:
    """A manifest named ``sources`` of NWB paths / URLs / DANDI ids; a manifest among them is an
    error (a manifest is given alone)."""
    srcs = [sources] if isinstance(sources, (str, os.PathLike)) else sources
    manifests = [str(s) for s in srcs if is_manifest_path(s)]
    if manifests:
        raise LibraryError(
            f"{', '.join(manifests)}: a manifest is given alone; give one manifest (merge several with "
            "`nwb-celltype library merge`) or NWB files, not both."
        )
    return Manifest(name="sources", entries=[_source_entry(str(s)) for s in srcs])


def _resolve_library(sources_or_manifest) -> tuple[Manifest, dict | None]:
    """The manifest to load (given, read from a manifest file, or made of sources) and, when read
    from a file, what a model card records of that file; a library listing no files is an error."""
    manifest_id = None
    if isinstance(sources_or_manifest, Manifest):
        manifest = sources_or_manifest
    elif isinstance(sources_or_manifest, (str, os.PathLike)) and is_manifest_path(sources_or_manifest):
        manifest = load_manifest(sources_or_manifest)
        manifest_id = identify_manifest(sources_or_manifest)  # what a model card records of it
    else:
        manifest = _sources_manifest(sources_or_manifest)
    if not manifest.entries:
        raise LibraryError(f"library {manifest.name!r} lists no files.")
    return manifest, manifest_id


@dataclass
class _EntryData:
    """One library entry as loaded: its features, labels (as cached), content hash, the fields its
    reference adds (``extra``) and the tables' neuron id of each unit (``""`` for NWB units)."""

    where: str
    fs: object
    labels: dict
    sha: str | None
    extra: dict
    names: list[str]


def _table_extra(fs) -> dict:
    """The reference fields of a feature-table folder, from its dataset.json."""
    extra = {"kind": "feature tables"}
    extra.update({f: str(fs.meta[f]) for f in ("name", "lab", "species") if f in fs.meta})
    if "source" in fs.meta:  # dataset.json's text; "source" stays the folder, as for files
        extra["dataset_source"] = str(fs.meta["source"])
    return extra


def _nwb_extra(entry: LibraryEntry, fs, labels: dict) -> dict:
    """The reference fields of an NWB entry: species, lab and, for DANDI assets, where it is."""
    species = (getattr(fs, "meta", None) or {}).get("species")
    extra = {"species": str(species)} if species else {}
    if labels.get("lab"):  # files of one lab are balanced as one lab, not one lab each
        extra["lab"] = labels["lab"]
    if entry.dandiset:
        extra.update({"dandiset": entry.dandiset, "version": entry.version or "draft"})
        extra["asset_path"] = entry.asset_path
    return extra


def _warn_expert_only(where: str, labels: dict) -> None:
    """Say that a file's only labels are expert tables, which training does not read."""
    if labels.get("expert_tables"):
        logger.warning(
            "%s: no ground-truth table, only expert table(s) %s, whose labels are not used; %s",
            where,
            ", ".join(map(repr, labels["expert_tables"])),
            RELABEL_EXPERT,
        )


def _load_entry(
    entry: LibraryEntry, root, config, cache: Path, annotation_name: str | None, layer_column
) -> _EntryData:
    """Features, labels and reference fields of one entry: a feature-table folder or an NWB file."""
    source = entry.source(root)
    where = entry.identity()
    annotation = annotation_name if annotation_name is not None else entry.annotation
    if entry.is_tables:
        fs, labels, sha = _tables_entry(entry, source, config, where)
        names = [str(x) for x in fs.meta["neuron_ids"]]
        return _EntryData(where, fs, labels, sha, _table_extra(fs), names)
    fs, labels, sha = _nwb_entry(entry, source, where, annotation, config, cache, layer_column)
    _warn_expert_only(where, labels)
    return _EntryData(where, fs, labels, sha, _nwb_extra(entry, fs, labels), [""] * len(fs))


def _check_not_repeated(entry: LibraryEntry, data: _EntryData, seen: dict, seen_neurons: dict) -> None:
    """An entry whose content (or, for table folders, whose neurons) an earlier entry has is an error.
    ``seen`` (content hash -> entry) and ``seen_neurons`` (see :func:`repeated_neurons`) are updated."""
    where, sha = data.where, data.sha
    if sha and sha in seen:
        raise LibraryError(
            f"{where} has the same content as {seen[sha]} (sha256 {sha[:12]}...): a file listed twice "
            "would put its units on both sides of the cross-validation and count them twice. Remove "
            "one of them (`nwb-celltype library validate` lists every such problem)."
        )
    if sha:
        seen[sha] = where
    if entry.is_tables:
        dataset, neurons = table_neurons(data.fs)
        first, repeated = repeated_neurons(dataset, neurons, seen_neurons, where)
        if repeated:
            raise LibraryError(
                f"{where}: {describe_repeated(dataset, first, repeated)}. Remove one of the folders "
                "(`nwb-celltype library validate` lists every such problem)."
            )


class _Collector:
    """The entries' features, labels, evidence, references and neuron ids, entry by entry, joined
    into one :class:`TrainingSet` at the end."""

    def __init__(self) -> None:
        self.sets, self.labels, self.refs, self.file_index, self.neuron_ids = [], [], [], [], []
        self.evidence: dict[str, list] = {f: [] for f in (*EVIDENCE_FIELDS, "annotation")}

    def add(self, k: int, entry: LibraryEntry, data: _EntryData) -> None:
        """Append entry number ``k`` of the manifest."""
        fs, labels = data.fs, data.labels
        lab = np.asarray(labels["labels"], dtype=object)
        self.sets.append(fs)
        self.labels.append(lab)
        for f in self.evidence:
            self.evidence[f].extend(labels["evidence"][f])
        self.file_index.append(np.full(len(fs), k, dtype=np.int64))
        self.neuron_ids += data.names
        self.refs.append(
            {
                "source": data.where,
                "sha256": data.sha or "",
                "library": entry.library,
                "annotation_tables": labels["tables"],
                "n_units": len(fs),
                "n_labelled": int((lab != "").sum()),
                **data.extra,
            }
        )

    def training_set(self, config, manifest_id: dict | None) -> TrainingSet:
        """All entries added so far as one training set."""
        from ..features.families import family_of

        return TrainingSet(
            features=family_of(config).concatenate(self.sets),
            labels=np.concatenate(self.labels),
            references=self.refs,
            file_index=np.concatenate(self.file_index),
            evidence={f: np.asarray(v, dtype=object) for f, v in self.evidence.items()},
            neuron_ids=np.asarray(self.neuron_ids, dtype=object),
            manifest=manifest_id,
        )


def load_training_set(
    sources_or_manifest: str | os.PathLike | Manifest | Sequence[str | os.PathLike],
    *,
    config: FeatureConfig | None = None,
    cache_dir: str | os.PathLike | None = None,
    annotation_name: str | None = None,
    layer_column: str | None = None,
    progress: bool = False,
) -> TrainingSet:
    """Features and ground-truth labels of a library.

    Parameters
    ----------
    sources_or_manifest : manifest path, Manifest, or source(s)
        A manifest (``.toml`` / ``.json`` / ``.yaml``), or NWB paths / URLs / DANDI ids.
    config : FeatureConfig or DischargeConfig, optional
        Feature settings; their type picks the feature family (default C4's ``c4-3d``). Folders of
        feature tables in the manifest need the ``acg-isi-wave`` family (``DischargeConfig``).
    cache_dir : path, optional
        Feature cache folder (default ``$NWB_CELLTYPE_CACHE_DIR`` or ``~/.cache/nwb-celltype``).
        Entries are keyed by the file's sha256 and ``config.sha256``; a hit reads no spikes, and for
        a manifest entry with a recorded hash it does not even need the file.
    annotation_name : str, optional
        Ground-truth table to use in every file (overrides the manifest's per-file choice).
    layer_column : str, optional
        Units column holding layers, passed to ``read_units``.
    progress : bool
        Show a progress bar over files.

    Returns
    -------
    TrainingSet
    """
    config = config or FeatureConfig()
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    manifest, manifest_id = _resolve_library(sources_or_manifest)
    it = manifest.entries
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="library files", unit="file")
    collected = _Collector()
    seen: dict[str, str] = {}  # content hash -> the entry that had it
    seen_neurons: dict[tuple, str] = {}  # (dataset, neuron id, fingerprint) of table rows -> folder
    for k, entry in enumerate(it):
        data = _load_entry(entry, manifest.root, config, cache, annotation_name, layer_column)
        _check_not_repeated(entry, data, seen, seen_neurons)
        collected.add(k, entry, data)
    return collected.training_set(config, manifest_id)
