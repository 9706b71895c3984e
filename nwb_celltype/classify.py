"""Classify units without NWB: given as features (per-unit feature tables in the HIPPIE/C4 CSV
layout, a features file written by ``nwb-celltype features``), as a SpikeInterface sorting or
sorting analyzer (in memory, :func:`classify_sorting`, or saved to disk) or as a pynapple TsGroup
(:func:`classify_tsgroup`); one row per unit out, as a TSV (``nwb-celltype predict``; its first line
is a ``# model: ...`` comment naming the model; read it back with :func:`read_predictions`) or
a DataFrame."""

from __future__ import annotations

import csv
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._atomic_files import write_text_file
from ._output_paths import check_not_input, check_output_path  # noqa: F401  (importable from here too)
from .agreement import Agreement
from .errors import FeatureError, ModelMismatchError

logger = logging.getLogger(__name__)


@dataclass
class FeaturePredictions:
    """What :func:`predict_features` returns.

    Attributes
    ----------
    predictions : nwb_celltype.model.Predictions
    features : the feature set that was classified (its ``labels`` are the ground truth, if any)
    model : dict
        name, version, sha256 and feature family of the model.
    species : SpeciesCoverage or None
        The units' species against the model's training species
        (:class:`nwb_celltype.model.real_species.SpeciesCoverage`): ``kind`` and a ``note`` where the
        species is not stated or not one the model learnt from.
    neuron_ids : list of str or None
        The units' own ids where the features cannot carry them (a saved SpikeInterface sorting read
        for a ``c4-3d`` model: the sorting's unit ids); None: the features' ``meta["neuron_ids"]``.
    """

    predictions: object
    features: object
    model: dict
    species: object = None
    neuron_ids: list | None = None

    def __repr__(self) -> str:  # short: the predictions and features are summarised, never shown
        from ._repr import compact_repr, counts

        p = self.predictions
        return compact_repr(
            self,
            n_units=len(p),
            model=f"{self.model.get('name')} {self.model.get('version')}",
            labels=counts(p.labels),
            status=counts(p.status),
            features=type(self.features).__name__,
            species=getattr(self.species, "kind", None),
        )

    def rows(self) -> list[dict]:
        """One dict per unit: unit_id (features of NWB units: the Units id), or, where the input names
        its units itself (feature tables, SpikeInterface sortings), row (the position) and neuron_id
        (the unit's own id); true_label where known; label, status,
        confidence, p_<class> ..., out_of_distribution, used_waveform, acg_pairs (acg-isi-wave
        features: the pairs its ACG holds at lags 1-100 ms, the depth that picks the model's floors;
        empty without a discharge), reason."""
        from .model.real_depth import acg_pairs

        p, fs = self.predictions, self.features
        ids = self.neuron_ids
        if ids is None:
            ids = (getattr(fs, "meta", None) or {}).get("neuron_ids")
        truth = getattr(fs, "labels", None)
        acg = getattr(fs, "acg_counts", None)
        pairs = None if acg is None else acg_pairs(acg)
        has_d = getattr(fs, "has_discharge", None)
        out = []
        for i in range(len(p)):
            if ids is not None:  # a position beside the unit's own id (a "unit_id" here was misread as it)
                r: dict = {"row": int(p.unit_ids[i]), "neuron_id": str(ids[i])}
            else:
                r = {"unit_id": int(p.unit_ids[i])}
            if truth is not None:
                r["true_label"] = str(truth[i])
            r["label"] = str(p.labels[i])
            r["status"] = str(p.status[i])
            r["confidence"] = float(p.confidence[i])
            for k, c in enumerate(p.classes):
                r[f"p_{c}"] = float(p.probabilities[i, k])
            if p.out_of_distribution is not None:
                r["out_of_distribution"] = bool(p.out_of_distribution[i])
            if p.used_waveform is not None:
                r["used_waveform"] = bool(p.used_waveform[i])
            if pairs is not None:
                deep = has_d is None or bool(has_d[i])
                r["acg_pairs"] = int(round(float(pairs[i]))) if deep else None
            r["reason"] = str(p.reasons[i])
            out.append(r)
        return out


def spikeinterface_object(path: Path) -> str | None:
    """The kind of SpikeInterface object saved in the folder ``path`` (``"SortingAnalyzer"``, a
    sorting class name, ...), from its ``spikeinterface_info.json`` (binary folders) or zarr
    attributes; None when it is not one."""
    import json

    for name, key, field in (
        ("spikeinterface_info.json", None, "object"),  # an analyzer (binary folder)
        (".zattrs", "spikeinterface_info", "object"),  # an analyzer (zarr)
        (".zattrs", "zarr_class_info", "class"),  # a sorting or recording (zarr)
        ("si_folder.json", None, "class"),  # a saved sorting or recording
    ):
        f = path / name
        if f.is_file():
            try:
                info = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return None
            info = info.get(key, {}) if key else info
            obj = info.get(field) if isinstance(info, dict) else None
            if obj:  # else the next file may say (a zarr folder's .zattrs, analyzer or sorting)
                return str(obj).rsplit(".", 1)[-1]
    return None


def _spikeinterface_features(path: Path, config=None, kind: str | None = None):
    """(features, the sorting's unit ids as text, the units' locations or None) of the SpikeInterface
    object saved in ``path``: :func:`features_from_spikeinterface`."""
    kind = kind or spikeinterface_object(path)
    if kind and "Recording" in kind:
        raise FeatureError(
            f"{path} holds a SpikeInterface recording ({kind}), not a sorting: give the folder of the sorting "
            "(sorting.save(folder=...)) or of a sorting analyzer (analyzer.save_as(...))."
        )
    from .features.discharge import DischargeConfig
    from .features.families import family_of
    from .io._sorting import units_from_sorting

    try:
        import spikeinterface.core as si
    except ImportError as exc:
        raise FeatureError(
            f"{path} is a saved SpikeInterface object; reading it needs spikeinterface (pip install spikeinterface)."
        ) from exc
    try:
        if kind == "SortingAnalyzer":  # only its templates are read: not every extension (waveforms)
            obj = si.load_sorting_analyzer(path, load_extensions=False)
            obj.get_extension("templates")  # loaded here, so that a damaged one is said as such
        else:
            obj = si.load(path)
    except Exception as exc:  # SpikeInterface's own errors for damaged or incomplete folders
        raise FeatureError(
            f"{path} looks like a saved SpikeInterface {kind} but SpikeInterface cannot load it "
            f"({type(exc).__name__}: {exc}); save it again (analyzer.save_as / sorting.save)."
        ) from exc
    batch, target = units_from_sorting(obj)
    config = DischargeConfig() if config is None else config
    fs = family_of(config).extract_features(batch, config)
    ids = [str(u) for u in target.unit_ids]
    if getattr(fs, "meta", None) is not None:
        fs.meta["neuron_ids"] = ids
        fs.meta["source"] = f"SpikeInterface {kind} at {path}"
        _keep_locations(fs, batch)
    return fs, ids, (batch.extra or {}).get("locations")


def features_from_spikeinterface(path: Path, config=None, kind: str | None = None):
    """Features of the units of a SpikeInterface sorting analyzer or sorting saved in ``path``
    (:func:`nwb_celltype.io._sorting.units_from_sorting`); ``kind``: what
    :func:`spikeinterface_object` says it is (read when not given). ``meta["neuron_ids"]`` holds the
    sorting's unit ids (families whose features carry no ``meta``, such as ``c4-3d``, keep none:
    :func:`predict_features` given the path keeps them beside the predictions)."""
    return _spikeinterface_features(path, config, kind)[0]


def _keep_locations(fs, batch) -> None:
    """The units' locations (a sorting's ``brain_area`` / ``location`` property) in
    ``fs.meta["locations"]``, where the location rule of :func:`predict_features` finds them."""
    if "locations" in (batch.extra or {}) and getattr(fs, "meta", None) is not None:
        fs.meta["locations"] = [str(x) for x in batch.extra["locations"]]


#: Files every phy / Kilosort output folder holds (spike frames and their clusters' parameters).
PHY_FILES = ("params.py", "spike_times.npy")


def read_feature_input(path: str | os.PathLike, config=None):
    """Features from a table folder (read with ``config``, an ``acg-isi-wave`` configuration), a
    saved SpikeInterface sorting analyzer or sorting (computed with ``config``), or a ``.npz``
    features file of any family."""
    return _read_input(path, config)[0]


def _read_input(path, config):
    """(features, neuron ids, locations) of ``path`` (:func:`read_feature_input`): a saved SpikeInterface
    object's unit ids and locations come beside its features, which may have no ``meta`` to hold them
    (the ``c4-3d`` family); None for other inputs (their features keep what they have)."""
    path = Path(path)
    kind = spikeinterface_object(path) if path.is_dir() else None
    if kind:
        return _spikeinterface_features(path, config, kind)
    return _read_other_input(path, config), None, None


def _read_other_input(path: Path, config):
    """Features of ``path``, no saved SpikeInterface object: a table folder or a features file."""
    from .features.families import load_features_any

    if path.is_dir() and all((path / f).is_file() for f in PHY_FILES):
        raise FeatureError(
            f"{path} is a phy / Kilosort output folder ({', '.join(PHY_FILES)}), not feature tables: read it "
            "with spikeinterface (se.read_phy or se.read_kilosort) and save the sorting (sorting.save(folder=...)) "
            "to give that folder here, or classify it in Python with nwb_celltype.classify_sorting."
        )
    if path.is_dir():
        from .library.tables import read_feature_tables

        if config is not None and config.family != "acg-isi-wave":
            raise ModelMismatchError(
                f"{path} is a folder of feature tables ('acg-isi-wave' features), but the model reads "
                f"{config.family!r} features; use a model trained on tables (e.g. the default model)."
            )
        return read_feature_tables(path, config, labels_required=False)
    if not path.exists():
        raise FeatureError(
            f"{path} does not exist; give a folder of feature tables (labels.csv, acg.csv, isi_dist.csv, "
            "waveforms.csv, dataset.json), a saved SpikeInterface sorting analyzer or sorting, or a "
            "features .npz written by `nwb-celltype features`."
        )
    return load_features_any(path)


def predict_features(
    features,
    *,
    model=None,
    threshold: float = 2.0,
    ignore_waveforms: bool = False,
    species: str | None = None,
    any_region: bool = False,
    locations=None,
) -> FeaturePredictions:
    """Classify units given as features.

    Parameters
    ----------
    features : path or feature set
        A table folder, a features ``.npz`` (:func:`read_feature_input`), or a feature set.
    model : path, bundle or None
        None: the default model (trained on real identified neurons).
    threshold : float
        Confidence ratio p(top1)/p(top2) below which a unit is ``unclassified``.
    ignore_waveforms : bool
        Classify every unit from its discharge alone (models that can: the default model's family).
    species : str, optional
        The units' species ("mouse", "Mus musculus", "macaque", ...); default: the tables'
        dataset.json ``species``, else none. A model of the default family withholds from units of a
        species it was trained on the labels too few of that species' training units had
        (:mod:`nwb_celltype.model.real_species`).
    any_region : bool
        Label units whose location (``meta["locations"]``: kept by ``nwb-celltype features`` from the
        electrodes table, or a sorting's ``brain_area`` / ``location``) names a region outside the
        cerebellar cortex; by default their labels are withheld (:mod:`nwb_celltype.model.scope`).
    locations : sequence of str, optional
        Each unit's location, where the features cannot carry it (the ``c4-3d`` family keeps no
        metadata); default ``meta["locations"]``.
    """
    from ._location_rule import withhold_outside
    from .features.families import family_of
    from .model.predict import predict_cell_types
    from .model.shipped import resolve_model

    bundle, _ = resolve_model(model)
    neuron_ids = None
    if isinstance(features, (str, os.PathLike)):
        features, neuron_ids, found = _read_input(features, bundle.feature_config)
        locations = found if locations is None else locations
    family = getattr(bundle, "feature_family", "c4-3d")
    if features.family != family:
        # --model takes the bundle's folder, not its name
        how = (
            ""
            if model is None
            else f" --model {bundle.path}"
            if getattr(bundle, "path", None) is not None
            else f" --family {family}"
        )
        raise ModelMismatchError(
            f"model {bundle.name} reads {family!r} features but these are {features.family!r}; compute "
            f"them with `nwb-celltype features SOURCE --out FEATURES.npz{how}` or use another model."
        )
    if ignore_waveforms:
        features = family_of(bundle).drop_waveforms(features)
    preds = predict_cell_types(bundle, features, threshold=threshold, species=species)
    if locations is None:
        locations = (getattr(features, "meta", None) or {}).get("locations")
    if not any_region and locations is not None and len(locations) == len(preds.labels):
        withhold_outside(preds, locations)
    info = {"name": bundle.name, "version": bundle.version, "sha256": bundle.sha256, "feature_family": family}
    named = species if species is not None else (getattr(features, "meta", None) or {}).get("species")
    coverage = bundle.species_coverage(named)
    if coverage.note:
        logger.warning("%s", coverage.note)
    return FeaturePredictions(
        predictions=preds, features=features, model=info, species=coverage, neuron_ids=neuron_ids
    )


def write_predictions_tsv(
    result: FeaturePredictions, path: str | os.PathLike, *, overwrite: bool = False
) -> Path:
    """Write :meth:`FeaturePredictions.rows` as a tab-separated file (atomically: a failed write
    leaves no partial file). Header comments give the model's identity."""
    path = Path(path)
    check_output_path(path, overwrite)
    rows = result.rows()
    fields = list(rows[0]) if rows else ["unit_id", "label", "status", "confidence", "reason"]
    f = io.StringIO()
    m = result.model
    ignored = " waveforms=ignored" if _waveforms_ignored(result.features) else ""
    f.write(
        f"# model: {m['name']} {m['version']} sha256={m['sha256']} family={m['feature_family']}{ignored}\n"
    )
    w = csv.DictWriter(f, fieldnames=fields, delimiter="\t", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return write_text_file(path, f.getvalue(), replace=overwrite)


#: Text columns of a predictions TSV, read back as written (an id "NA", "007" or "clu#7" stays that).
PREDICTION_TEXT_COLUMNS = ("neuron_id", "true_label", "label", "status", "reason")


def read_predictions(path: str | os.PathLike):
    """Read a predictions TSV (:func:`write_predictions_tsv`, ``nwb-celltype predict --out``) as a
    pandas DataFrame, one row per unit, in the file's column order.

    Only the leading ``#`` lines are comments: a ``#`` inside a field (a unit id ``clu#7``) is data,
    which ``pandas.read_csv(..., comment="#")`` would cut the row at. The text columns
    (:data:`PREDICTION_TEXT_COLUMNS`) keep their text as written (no NaN for an empty reason or an
    id "NA", no number for an id "007"); the others are parsed as numbers and booleans.
    ``df.attrs["model"]`` holds the ``# model:`` line's text (name, version, sha256, family) and
    ``df.attrs["comments"]`` every leading comment line, without its ``#``.
    """
    import pandas as pd

    text = Path(path).read_text(encoding="utf-8")
    comments, pos = [], 0
    while text.startswith("#", pos):
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end + 1
        comments.append(text[pos + 1 : end].strip())
        pos = end
    body = text[pos:]
    header = next(csv.reader(io.StringIO(body), delimiter="\t"), [])
    texts = [c for c in header if c in PREDICTION_TEXT_COLUMNS]
    df = pd.read_csv(
        io.StringIO(body),
        sep="\t",
        dtype=dict.fromkeys(texts, str),
        keep_default_na=False,
        na_values={c: ["", "nan", "NaN"] for c in header if c not in texts},
    )
    model = next((c.split(":", 1)[1].strip() for c in comments if c.startswith("model:")), None)
    df.attrs = {"model": model, "comments": comments}
    return df


def _waveforms_ignored(features) -> bool:
    """Whether the features' waveforms were set aside on request (families whose sets carry no
    ``meta``, such as C4's, never are)."""
    return bool((getattr(features, "meta", None) or {}).get("waveforms_ignored", False))


def summarise(result: FeaturePredictions) -> dict:
    """Label counts, and (where the features carry ground truth) accuracy, coverage and the
    confidently-wrong fraction of every unit with a true label, counted as annotate counts them
    (:class:`nwb_celltype.agreement.Agreement`): a unit whose true type is none of the model's
    classes (a granule cell, say) is wrong if labelled at all. ``n_labelled`` counts those units,
    ``n_given_label`` how many of them the model labelled, and ``n_outside_classes`` /
    ``n_outside_classes_given_label`` how many are of a type the model does not know (and how many of
    those got a label, each one wrong)."""
    from ._location_rule import n_outside
    from .agreement import NO_LABEL
    from .vocabulary import PARENT_CLASS

    p = result.predictions
    labels, counts = np.unique(np.asarray(p.labels, dtype=str), return_counts=True)
    out: dict = {
        "n_units": len(p),
        "label_counts": dict(zip(labels.tolist(), counts.tolist(), strict=True)),
        "ignore_waveforms": _waveforms_ignored(result.features),
    }
    if result.species is not None:
        out["species"] = result.species.to_dict()
    out["outside_cerebellar_cortex"] = n_outside(p)
    truth = getattr(result.features, "labels", None)
    if truth is not None:
        truth = np.asarray(truth, dtype=str)
        known = ~np.isin(truth, list(NO_LABEL))  # every real label, of the model's classes or not
        if known.any():
            ag = Agreement(
                prediction="predictions",
                reference="labels",
                reference_kind="table",
                classes=tuple(p.classes),
                unit_ids=np.asarray(p.unit_ids)[known],
                truth=truth[known],
                predicted=np.asarray(p.labels, dtype=str)[known],
            )
            d = ag.to_dict()
            ours = {*map(str, p.classes), *(PARENT_CLASS.get(str(c), str(c)) for c in p.classes)}
            alien = ~np.isin(ag.truth, list(ours))
            out.update(
                n_labelled=d["n_units"],
                n_given_label=d["n_labelled"],
                n_outside_classes=int(alien.sum()),
                n_outside_classes_given_label=int((alien & ag.labelled).sum()),
                coverage=d["coverage"],
                accuracy_of_classified=d["accuracy_of_labelled"],
                balanced_accuracy_abstentions_as_misses=d["balanced_recall_abstentions_as_misses"],
                confidently_wrong=d["confidently_wrong"],
                per_class=d["per_class"],
            )
    return out


def _classify_units(
    batch, ids, model, threshold: float, ignore_waveforms: bool, species: str | None = None, any_region=False
):
    """One DataFrame row per unit of ``batch`` (indexed by ``ids``): what :func:`classify_sorting` and
    :func:`classify_tsgroup` return."""
    import pandas as pd

    from .features.families import family_of
    from .model.shipped import resolve_model

    bundle, _ = resolve_model(model)
    features = family_of(bundle).extract_features(batch, bundle.feature_config)
    result = predict_features(
        features,
        model=bundle,
        threshold=threshold,
        ignore_waveforms=ignore_waveforms,
        species=species,
        any_region=any_region,
        locations=(batch.extra or {}).get("locations"),  # passed, not kept: c4-3d features have no metadata
    )
    rows = pd.DataFrame(result.rows())
    df = rows.drop(columns=[c for c in ("unit_id", "row") if c in rows]).rename(
        columns={"label": "cell_type"}
    )
    p = np.asarray(result.predictions.probabilities, dtype=np.float64)
    ok = np.isfinite(p).all(axis=1)
    top = np.full(len(p), np.nan)
    top[ok] = p[ok].max(axis=1)
    df.insert(df.columns.get_loc("confidence") + 1, "probability", top)
    df.index = pd.Index(list(ids), name="unit_id")
    df.attrs = {
        "model": result.model,
        "threshold": float(threshold),
        "ignore_waveforms": bool(ignore_waveforms),
        "species": species,
        "species_coverage": result.species.to_dict() if result.species is not None else None,
    }
    return df


def classify_sorting(
    sorting,
    *,
    model=None,
    threshold: float = 2.0,
    ignore_waveforms: bool = False,
    set_properties: bool = True,
    species: str | None = None,
    any_region: bool = False,
):
    """Classify the units of a SpikeInterface sorting or sorting analyzer, without an NWB file.

    Parameters
    ----------
    sorting : spikeinterface BaseSorting or SortingAnalyzer
        Spike times from the sorting; with an analyzer whose ``templates`` extension is computed,
        each unit's average template on its peak channel is its waveform
        (:func:`nwb_celltype.io._sorting.units_from_sorting`; templates spanning less than 0.8 ms or
        more than 10 ms are set aside, as the NWB reader sets such waveforms aside). A plain
        sorting's units are scored from their discharge alone, and their reason says so.
    model : path, bundle or None
        None: the default model (trained on real identified neurons).
    threshold : float
        Confidence ratio p(top1)/p(top2) below which a unit is ``unclassified``.
    ignore_waveforms : bool
        Score every unit from its discharge alone even where the analyzer has templates.
    set_properties : bool
        Also set ``cell_type``, ``cell_type_probability`` and ``cell_type_confidence`` as unit
        properties of the sorting (as :func:`nwb_celltype.bridges.set_spikeinterface_properties`).
    species : str, optional
        The animal's species ("mouse", "Mus musculus", "macaque", ...): a unit of a species the model
        was trained on gets no label of a class that species gave it too few training units of
        (:mod:`nwb_celltype.model.real_species`; the default model: no GoC for mouse units).
    any_region : bool
        Label units whose ``brain_area`` (or ``location``) unit property names a brain region
        outside the cerebellar cortex (IBL's extractor sets Allen acronyms there); by default their
        labels are withheld (:mod:`nwb_celltype.model.scope`).

    Returns
    -------
    pandas.DataFrame
        Indexed by the sorting's unit ids: ``cell_type`` (a class, ``unclassified`` or
        ``not_classifiable``), ``status``, ``confidence``, ``probability`` (of the most probable
        class), ``p_<class>``, ``out_of_distribution``, ``used_waveform``, ``acg_pairs`` (the depth
        that picks the model's floors), ``reason``. ``df.attrs["model"]`` names the model.
    """
    from .bridges import set_spikeinterface_properties
    from .io._sorting import units_from_sorting
    from .model.decision import check_threshold

    check_threshold(threshold)  # before the spike trains are read
    batch, target = units_from_sorting(sorting)
    df = _classify_units(batch, target.unit_ids, model, threshold, ignore_waveforms, species, any_region)
    if set_properties:
        set_spikeinterface_properties(target, df)
    return df


def classify_tsgroup(
    tsgroup,
    *,
    waveforms=None,
    waveform_rate_hz: float | None = None,
    model=None,
    threshold: float = 2.0,
    ignore_waveforms: bool = False,
    set_metadata: bool = True,
    species: str | None = None,
    any_region: bool = False,
):
    """Classify the units of a pynapple TsGroup, without an NWB file.

    Parameters
    ----------
    tsgroup : pynapple TsGroup
        Spike times per unit (seconds).
    waveforms : array (n, samples) or dict unit -> (samples,), optional
        Each unit's peak-channel mean waveform, in the TsGroup's index order, or by unit; a unit the
        dict leaves out is scored from its discharge alone (its reason says so). Without them every
        unit is.
    waveform_rate_hz : float, optional
        The waveforms' sampling rate in Hz; required with ``waveforms``. A rate under 1 kHz (one
        given in kHz) is refused, as are dict values of several channels; waveforms spanning less
        than 0.8 ms or more than 10 ms at that rate (channels laid end to end) are set aside with a
        warning, as the NWB reader sets them aside, and every unit is scored from its discharge.
    model, threshold, ignore_waveforms, species : as in :func:`classify_sorting`.
    set_metadata : bool
        Also set ``cell_type``, ``cell_type_probability`` and ``cell_type_confidence`` metadata on
        the TsGroup (:func:`nwb_celltype.bridges.set_pynapple_metadata`).
    any_region : bool
        As in :func:`classify_sorting`, with the TsGroup's ``brain_area`` or ``location`` metadata.

    Returns
    -------
    pandas.DataFrame
        That of :func:`classify_sorting`, indexed by the TsGroup's index.
    """
    from .bridges import set_pynapple_metadata
    from .io._sorting import units_from_tsgroup
    from .model.decision import check_threshold

    check_threshold(threshold)  # before the spike trains are read
    batch = units_from_tsgroup(tsgroup, waveforms, waveform_rate_hz)
    df = _classify_units(
        batch, np.asarray(tsgroup.index), model, threshold, ignore_waveforms, species, any_region
    )
    if set_metadata:
        set_pynapple_metadata(tsgroup, df)
    return df
