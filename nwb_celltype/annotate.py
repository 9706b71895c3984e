"""The package's main job for one source: read every unit, compute features, classify, and write
the labels, probabilities and provenance into NWB — atomically, so that an interrupted run never
damages the input nor leaves a half-written output.

Call it as ``nwb_celltype.annotate(source, ...)`` (this module is callable as its :func:`annotate`,
whichever import came first) or ``from nwb_celltype.annotate import annotate``."""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import json
import logging
import os
import sys
import time
import types
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ._annotate_input import Reading, UnitsSummary, collect
from ._annotate_output import (
    OutputPlan,
    append_to_copy,
    check_before_reading,
    check_pynwb_reads,
    checkpoint,
    output_plan,
    python_call,
    write_derived,
)
from ._annotate_result import AnnotationResult
from ._atomic import as_output_error, atomic_write, cleanup_on_signals, is_disk_full, scratch_file
from ._location_rule import n_outside, withhold_outside
from .errors import InvalidValueError

logger = logging.getLogger(__name__)


def _resolve_model(model):
    from .model.shipped import resolve_model

    return resolve_model(model)


def _checked_bundle(model, model_sha256: str | None, ignore_waveforms: bool):
    """``(bundle, is_demo, family)`` for ``model``, checked for ``ignore_waveforms``, then the pin."""
    from .features.families import family_of

    bundle, is_demo = _resolve_model(model)
    family = family_of(bundle)
    if ignore_waveforms:
        family.check_ignore_waveforms()
    if model_sha256 is not None:
        from .model.shipped import check_pinned

        check_pinned(bundle, model_sha256)
    return bundle, is_demo, family


def _model_identity(bundle) -> dict:
    """``name``, ``version`` and ``sha256`` of a bundle, as results and provenance record it."""
    return {"name": str(bundle.name), "version": str(bundle.version), "sha256": bundle.sha256}


def table_name_for(bundle) -> str:
    """Name of the annotation table a bundle writes: readable and unique per model."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(bundle.name))
    return f"celltype_{safe}_{bundle.sha256[:8]}"


def _software_versions() -> dict[str, str]:
    """The NWB stack's versions plus those of the compute layers used by annotate."""
    from importlib.metadata import PackageNotFoundError, version

    from .nwb import default_software_versions

    out = {"python": sys.version.split()[0], **default_software_versions()}
    for pkg in ("jax", "torch", "remfile", "dandi"):
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out


@dataclass(frozen=True)
class _Labelling:
    """The model and the settings a run labels units with, as the provenance records them."""

    bundle: object
    table_name: str
    threshold: float
    call: str
    precision: str | None
    pinned: bool
    ignore_waveforms: bool
    #: the units' species, the source's ``general/subject/species`` unless stated ("" for none): the
    #: model withholds the labels that species gave it too few training units of
    #: (:mod:`nwb_celltype.model.real_species`)
    species: str = ""
    #: the source's own ``general/subject/species`` ("" for none), recorded beside ``species``
    subject_species: str = ""
    #: label units recorded outside the cerebellar cortex too (:mod:`nwb_celltype.model.scope`)
    any_region: bool = False

    @functools.cached_property
    def species_coverage(self):
        """``species`` against the model's training species (:class:`.model.real_species.SpeciesCoverage`;
        computed once per labelling: the provenance, the warning and the result share it)."""
        return self.bundle.species_coverage(self.species or None)


def _write_tables(
    nwbfile,
    *,
    labelling: _Labelling,
    preds,
    unit_indices,
    source,
    skipped,
    units_path: str,
    read: UnitsSummary,
) -> list[str]:
    """Add the classifier (provenance), the annotation table and its Units columns to ``nwbfile``,
    whose Units table at ``units_path`` holds the units (``read``: what was read from the source,
    whose table and waveform rate are recorded); returns the names of those columns."""
    from .nwb import add_annotations, add_classifier, add_units_columns, units_table_at
    from .vocabulary import CELL_ONTOLOGY_IDS

    bundle, table_name, threshold = labelling.bundle, labelling.table_name, labelling.threshold
    classes = list(bundle.classes)
    card = bundle.card
    classifier = add_classifier(
        nwbfile,
        name=f"{table_name}_classifier",
        version=str(bundle.version),
        weights_sha256=str(card.get("weights_sha256") or bundle.sha256),
        classes=classes,
        class_ontology_ids=[CELL_ONTOLOGY_IDS.get(c, "") for c in classes],
        feature_config_json=bundle.feature_config.to_json(),
        training_data=[
            r if isinstance(r, str) else json.dumps(r, sort_keys=True) for r in card.get("training_data", [])
        ],
        software_versions=_software_versions(),
        threshold=float(threshold),
        parameters={
            "model_name": str(bundle.name),
            "bundle_sha256": bundle.sha256,
            "feature_family": str(getattr(bundle, "feature_family", "c4-3d")),
            "call": labelling.call,
            "precision": labelling.precision,
            "bundle_pinned": bool(labelling.pinned),
            "ignore_waveforms": bool(labelling.ignore_waveforms),
            "subject_species": labelling.subject_species,
            "species": labelling.species,
            "species_coverage": labelling.species_coverage.kind,
            "any_region": bool(labelling.any_region),
            "outside_cerebellar_cortex": n_outside(preds),
            "units_table": f"/{read.table_path}",
            "waveform_rate_hz": read.waveform_rate_hz,
            "waveform_rate_source": read.waveform_rate_source,
            "skipped_units": skipped,
            "model_card_description": str(card.get("description", "")),
        },
        source=source,
        description=f"nwb-celltype classifier {bundle.name} {bundle.version}",
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(),
    )
    ontology = np.array([CELL_ONTOLOGY_IDS.get(str(lbl), "") for lbl in preds.labels], dtype=object)
    units = units_table_at(nwbfile, units_path)
    table = add_annotations(
        nwbfile,
        units=units,
        name=table_name,
        units_region=np.asarray(unit_indices, dtype=np.int64),
        labels=np.asarray(preds.labels, dtype=object),
        classes=classes,
        probabilities=preds.probabilities,
        confidence=preds.confidence,
        kind="prediction",
        status=np.asarray(preds.status, dtype=object),
        reasons=np.asarray(preds.reasons, dtype=object),
        votes=preds.votes,
        ontology_ids=ontology,
        classifier=classifier,
        description=f"cell types predicted by {bundle.name} (threshold {threshold})",
    )
    # the labels where analysis tools look: 1-D Units columns copied from the table
    return add_units_columns(nwbfile, table, units=units)


def _check_arguments(
    precision: str,
    threshold: float,
    in_place: bool,
    out,
    batch_size: int,
    waveform_rate_hz=None,
    species=None,
) -> float | None:
    """Refuse option values annotate cannot use, before anything is opened; returns the stated
    waveform rate as float (None if not stated)."""
    from .io._units_layout import checked_waveform_rate
    from .model.decision import check_threshold

    if precision not in ("float32", "float64"):
        raise InvalidValueError(f"precision={precision!r}; expected 'float32' or 'float64'.")
    check_threshold(threshold)
    if in_place and out is not None:
        raise InvalidValueError("give either out (--out) or in_place (--in-place), not both")
    if not isinstance(batch_size, int | np.integer) or isinstance(batch_size, bool) or batch_size < 1:
        raise InvalidValueError(
            f"batch_size must be a positive int (units read at a time), got {batch_size!r}."
        )
    if species is not None and not isinstance(species, str):
        raise InvalidValueError(
            f"species must be a species name (str, e.g. 'mouse' or 'Mus musculus') or None (the file's), "
            f"got {species!r} ({type(species).__name__})."
        )
    return checked_waveform_rate(waveform_rate_hz)


def _unit_reasons(preds, unit_ids, problems: dict[int, str]) -> tuple[list[dict], list[dict]]:
    """Give each not-classifiable unit without a reason of its own the reader's (``problems``: unit
    id -> reason), in ``preds.reasons``; return ``{"unit_id", "reason"}`` of the not-classifiable
    (skipped) and of the unclassified units."""
    reasons = np.asarray(preds.reasons, dtype=object).copy()
    for i, uid in enumerate(unit_ids):
        if preds.status[i] == "not_classifiable" and int(uid) in problems and not reasons[i]:
            reasons[i] = problems[int(uid)]
    preds.reasons = reasons
    rows = list(zip(unit_ids, preds.status, reasons, strict=True))
    return tuple(
        [{"unit_id": int(uid), "reason": str(r)} for uid, s, r in rows if s == wanted]
        for wanted in ("not_classifiable", "unclassified")
    )


def _open_spill(stack: contextlib.ExitStack, final: Path):
    """A scratch file beside ``final`` for a derived output's spike times: ``(path, open file)``."""
    # memory-mapped when the derived file is written: memory stays bounded by the batch size
    spill_path = stack.enter_context(scratch_file(final, "spikes"))
    try:
        spill = stack.enter_context(open(spill_path, "xb"))
    except OSError as exc:
        raise as_output_error(exc, final) from exc
    return spill_path, spill


def _read_features(
    src,
    labelling: _Labelling,
    family,
    batch_size: int,
    progress: bool,
    spill,
    plan: OutputPlan,
    reading: Reading,
):
    """:func:`._annotate_input.collect` (as ``reading`` says) and its timings, without waveforms if so
    set; a file pynwb cannot build is refused once the Units table was checked, before any unit is
    read (:func:`._annotate_output.check_pynwb_reads`); a full disk spilling: OutputError."""
    final = plan.final
    check = functools.partial(check_pynwb_reads, src, plan)
    try:
        units, features, t_read, t_feat = collect(
            src, labelling.bundle, batch_size, progress, spill, reading, before_reading=check
        )
        if spill is not None:
            spill.close()
    except OSError as exc:
        if spill is None or not is_disk_full(exc):
            raise
        raise as_output_error(exc, final) from exc
    if labelling.ignore_waveforms:
        features = family.drop_waveforms(features)
    return units, features, {"read": t_read, "features": t_feat}


@contextlib.contextmanager
def _timed(timings: dict[str, float], key: str):
    """Record in ``timings[key]`` the seconds the block took (when it succeeds)."""
    t0 = time.perf_counter()
    yield
    timings[key] = time.perf_counter() - t0


def _predict(labelling: _Labelling, features, read: UnitsSummary, timings: dict[str, float]):
    """Run the model (timed) on units of ``labelling.species`` (the file's Subject, "" for none),
    withhold the labels of units recorded outside the cerebellar cortex (unless ``any_region``):
    ``(predictions, skipped, unclassified)`` (see :func:`_unit_reasons`)."""
    from .model import predict_cell_types

    with _timed(timings, "model"):
        preds = predict_cell_types(
            labelling.bundle,
            features,
            threshold=labelling.threshold,
            dtype=labelling.precision,
            species=labelling.species or None,
        )
    note = labelling.species_coverage.note
    if note:
        logger.warning("%s", note)
    if not labelling.any_region and read.locations is not None:
        withhold_outside(preds, read.locations)
    return (preds, *_unit_reasons(preds, features.unit_ids, read.problems))


def _write_output(
    plan: OutputPlan, src, units: UnitsSummary, spill_path, overwrite: bool, labelling, preds, info, skipped
) -> list[str]:
    """Write the derived file, or the input's copy, with our tables added, through atomic_write;
    returns the names of the Units columns written."""
    columns: list[str] = []

    def write_tables(nwbfile, *, unit_indices, units_path):
        columns[:] = _write_tables(
            nwbfile,
            labelling=labelling,
            preds=preds,
            unit_indices=unit_indices,
            source=info,
            skipped=skipped,
            units_path=units_path,
            read=units,
        )

    in_place = plan.mode == "in_place"
    # a replaced file keeps its permission bits (the input in place; an existing output with
    # --overwrite): a user who restricted a file does not find it widened; a new file gets the umask's
    keep = plan.final if in_place or overwrite else None
    n_units = len(units.unit_indices)
    with atomic_write(plan.final, replace=overwrite or in_place, keep_mode_of=keep) as tmp:
        if plan.mode == "derived":  # the derived file's Units rows are the source's units in order
            add_tables = functools.partial(write_tables, unit_indices=np.arange(n_units), units_path="units")
            write_derived(tmp, src, units, spill_path, add_tables)
        else:
            add_tables = functools.partial(
                write_tables, unit_indices=units.unit_indices, units_path=units.table_path
            )
            append_to_copy(plan.input_path, tmp, add_tables, labelling.table_name, overwrite, n_units, info)
    return columns


def _annotation_result(
    plan: OutputPlan,
    labelling: _Labelling,
    preds,
    timings,
    info,
    is_demo,
    skipped,
    unclassified,
    columns,
    read: UnitsSummary,
) -> AnnotationResult:
    """What the run did, counted from the predictions (see :func:`_unit_reasons` for the lists)."""
    counts = Counter(str(lbl) for lbl in preds.labels)
    status = Counter(str(s) for s in preds.status)
    return AnnotationResult(
        output_path=str(plan.final),
        table_name=labelling.table_name,
        mode=plan.mode,
        n_units=len(preds.labels),
        n_classified=status.get("classified", 0),
        n_unclassified=status.get("unclassified", 0),
        n_not_classifiable=status.get("not_classifiable", 0),
        label_counts=dict(sorted(counts.items())),
        threshold=float(labelling.threshold),
        timings=timings,
        source=info,
        model=_model_identity(labelling.bundle),
        skipped=skipped,
        demo_model=is_demo,
        unclassified=unclassified,
        ignore_waveforms=bool(labelling.ignore_waveforms),
        units_columns=list(columns),
        species=labelling.species_coverage.to_dict(),
        units_table=f"/{read.table_path}",
        waveform_rate={"hz": read.waveform_rate_hz, "source": read.waveform_rate_source},
        outside_cerebellar_cortex=n_outside(preds),
    )


def annotate(
    source,
    *,
    model=None,
    out: str | os.PathLike | None = None,
    in_place: bool = False,
    threshold: float = 2.0,
    overwrite: bool = False,
    dandi_api_url: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 256,
    progress: bool = False,
    call: str | None = None,
    precision: str = "float32",
    model_sha256: str | None = None,
    allow_read_only: bool = False,
    allow_hard_links: bool = False,
    ignore_waveforms: bool = False,
    species: str | None = None,
    units_table: str | None = None,
    waveform_rate_hz: float | None = None,
    any_region: bool = False,
) -> AnnotationResult:
    """Classify every unit of ``source`` and write the annotations into NWB.

    Parameters
    ----------
    source : str or path
        Anything :func:`nwb_celltype.io.open_source` opens: a local path, an http(s) URL, a DANDI id.
    model : path, ModelBundle or None
        The model bundle; ``None`` uses the package's default model (trained on real identified
        cerebellar neurons, docs/validation.md).
    out : path, optional
        Output file. Local sources default to ``<input stem>.celltype.nwb`` beside the input (an
        annotated copy); remote sources need it (a derived NWB file is written there).
    in_place : bool
        Append to the local input file itself (opt-in). Done on a copy that then atomically
        replaces the input, so a killed run leaves the original intact.
    threshold : float
        Confidence ratio (best / second-best probability) below which a unit is "unclassified"
        (a number >= 1; C4's 2).
    overwrite : bool
        In place: replace annotations already written by the same model instead of raising
        :class:`~nwb_celltype.errors.AnnotationExistsError`. As a copy (``out``): replace an existing
        output file, with every table it held; to add a second model's table to an annotated copy,
        annotate that copy in place.
    dandi_api_url : str, optional
        The DANDI API a DANDI id or ``dandi://`` source is resolved with (default: the public
        archive's; see :func:`nwb_celltype.io.open_source`).
    cache_dir : path, optional
        Where a remote source's bytes are cached while it is read (see
        :func:`nwb_celltype.io.open_source`).
    batch_size : int
        Units read and featurised at a time (a positive int): bounds the memory a large file needs.
    progress : bool
        Log per-stage progress at INFO level (the CLI turns it on).
    call : str, optional
        The call recorded in the provenance (``parameters.call``); default
        ``"nwb_celltype.annotate('<source>', ...)"`` with every option that changes what is written
        and was given a value other than its default (the CLI records its command line).
    precision : {"float32", "float64"}
        Precision the ensemble runs in (see :func:`nwb_celltype.model.predict_cell_types`); float64
        is a slower reference for checking float32 results. Recorded in the provenance.
    model_sha256 : str, optional
        Pin the bundle: refuse it (:class:`~nwb_celltype.errors.ModelError`) unless its bundle
        digest equals this hex string (a prefix of at least 12 characters is accepted). Recorded in
        the provenance.
    allow_read_only, allow_hard_links : bool
        In place only: replace a read-only input, or one with other hard links (which then keep
        the old content); both are refused by default (see :mod:`nwb_celltype._atomic`).
    ignore_waveforms : bool
        Classify every unit from its discharge (ACG, ISI) alone, as if the file had no mean
        waveforms: for waveforms that are not comparable to the training labs' (another probe or
        processing, templates instead of means). Only for models that can (the default model's
        family); recorded in the provenance. What it costs and buys on real held-out units:
        docs/validation.md, "Units without a waveform".
    species : str, optional
        The units' species ("mouse", "Mus musculus", "macaque", ...), for files whose
        ``general/subject/species`` is missing or wrong; default: the file's. A model of the default
        family gives units of a species it was trained on no label of a class that species gave it
        fewer than ``min_species_class_units`` training units of (the default model: no GoC for mouse
        units; :mod:`nwb_celltype.model.real_species`). The provenance records the file's species
        (``subject_species``) and the one used (``species``).
    units_table : str, optional
        Path of the Units table to annotate in the file, for files holding several (e.g.
        ``processing/ecephys/kilosort``, a second sorting); default ``units`` (``NWBFile.units``),
        else the file's only Units table. The annotation table refers to its rows, its Units
        columns go into it (a derived file for a remote source holds its units as ``units``), and
        the provenance records it (``units_table``).
    waveform_rate_hz : float, optional
        Sampling rate of the file's ``waveform_mean`` in Hz, where the file does not state it
        (neuroconv's exports do not) or states it wrongly; default: the file's, else the rate of
        the raw ElectricalSeries holding the units' electrodes where they share one, else 30 kHz,
        with a warning. The provenance
        records the rate used and where it came from (``waveform_rate_hz``,
        ``waveform_rate_source``: file, stated, electrical_series:<name> or assumed).
    any_region : bool
        Label units whose electrode's ``location`` names a brain region outside the cerebellar
        cortex (an Allen CCF acronym such as ``CA1`` or ``VISp5``, or a cerebellar nucleus); by
        default their labels are withheld (status unclassified, reason "recorded outside the
        cerebellar cortex ..."; :mod:`nwb_celltype.model.scope`). Locations that name no region
        withhold nothing. Recorded in the provenance (``any_region``, ``outside_cerebellar_cortex``).

    Every write goes through :func:`nwb_celltype._atomic.atomic_write`: a pid-stamped copy beside
    the target, fsync, rename, under a lock per target file; SIGTERM/SIGINT/SIGHUP and a full disk
    leave the input and the target untouched and no temporary file behind.

    Returns
    -------
    AnnotationResult

    Raises
    ------
    InvalidValueError
        An option of the wrong type or value (``threshold``, ``batch_size``, ``waveform_rate_hz``,
        ``species``, ``precision``, ``out`` with ``in_place``), before anything is opened.
    AnnotationExistsError
        The output exists (without ``overwrite``), or in place: the file holds this model's table.

    The demo model (:func:`nwb_celltype.load_demo_bundle`) is trained on simulated data: a logging
    warning says so, and ``AnnotationResult.demo_model`` is True.
    """
    from .io import open_source

    waveform_rate_hz = _check_arguments(
        precision, threshold, in_place, out, batch_size, waveform_rate_hz, species
    )
    bundle, is_demo, family = _checked_bundle(model, model_sha256, ignore_waveforms)
    family.check_precision(precision)
    if not family.precision_choice:
        precision = None  # recorded as such: these models have no precision to choose
    table_name = table_name_for(bundle)
    if call is None:
        call = python_call(source, locals())  # it picks the options it records (CALL_OPTIONS)
    pinned = model_sha256 is not None
    labelling = _Labelling(
        bundle, table_name, threshold, call, precision, pinned, ignore_waveforms, any_region=bool(any_region)
    )
    reading = Reading(units_table, waveform_rate_hz)

    with contextlib.ExitStack() as stack:
        stack.enter_context(cleanup_on_signals())
        src = stack.enter_context(open_source(source, dandi_api_url=dandi_api_url, cache_dir=cache_dir))
        info = src.info.to_dict()
        plan = output_plan(
            source, info, out, in_place, overwrite, allow_read_only, allow_hard_links, table_name
        )
        check_before_reading(src, plan, table_name, overwrite)
        checkpoint("opened")

        spill_path, spill = _open_spill(stack, plan.final) if plan.mode == "derived" else (None, None)
        units, features, timings = _read_features(
            src, labelling, family, batch_size, progress, spill, plan, reading
        )
        checkpoint("features")

        named = src.species
        labelling = replace(
            labelling, subject_species=named, species=named if species is None else str(species)
        )
        preds, skipped, unclassified = _predict(labelling, features, units, timings)
        with _timed(timings, "write"):
            columns = _write_output(plan, src, units, spill_path, overwrite, labelling, preds, info, skipped)

    result = _annotation_result(
        plan, labelling, preds, timings, info, is_demo, skipped, unclassified, columns, units
    )
    logger.info("annotated %d units of %s -> %s", result.n_units, source, plan.final)
    return result


class _CallableModule(types.ModuleType):
    """This module, callable as :func:`annotate`: ``nwb_celltype.annotate`` names both the package's
    main function and this submodule, and importing a submodule binds its name on the package to the
    module (``import nwb_celltype.annotate``, ``from nwb_celltype.annotate import annotate``), so
    ``nwb_celltype.annotate(...)`` must work whichever the package attribute is; the module stays a
    module (its helpers, ``monkeypatch.setattr``, pickling by name all unchanged)."""

    def __call__(self, *args, **kwargs) -> AnnotationResult:
        return annotate(*args, **kwargs)

    @property
    def __signature__(self):  # inspect.signature(nwb_celltype.annotate): the function's
        import inspect

        return inspect.signature(annotate)

    def __reduce__(self):  # pickled by name (a process pool, Dask): the module, callable again
        import importlib

        return importlib.import_module, (self.__name__,)


_CallableModule.__call__.__doc__ = annotate.__doc__


sys.modules[__name__].__class__ = _CallableModule
