"""Features of a batch of units (:func:`extract_features`) and their file format
(:func:`save_features` / :func:`load_features`: a compressed ``.npz`` with the configuration JSON)."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .. import vocabulary
from .._atomic_files import write_npz
from ..errors import FeatureError, NwbCelltypeError
from ..reasons import join_reasons, no_waveform, too_few_spikes, waveform_problem
from ..units import UnitsBatch
from ._guards import check_train
from ._npz import read_npz
from .acg import compute_acg_3d_batch, compute_log_acg
from .config import FeatureConfig, FeatureSet
from .stats import STAT_NAMES, compute_spike_stats
from .waveform import preprocess_waveform

log = logging.getLogger(__name__)

#: version of the saved-features file layout (bump on incompatible changes)
FILE_FORMAT_VERSION = "1"


def _spike_stats(trains: list[np.ndarray], config: FeatureConfig) -> dict[str, np.ndarray]:
    """:func:`compute_spike_stats` of every train, as one (n_units,) array per statistic."""
    stats = {k: np.full(len(trains), np.nan) for k in STAT_NAMES}
    for i, t in enumerate(trains):
        for k, v in compute_spike_stats(t, config).items():
            stats[k][i] = v
    return stats


def _other_family(obj, what: str) -> str | None:
    """The feature family of ``obj`` (a configuration or feature set) where it is not C4's
    (``c4-3d``), None for C4's; :class:`FeatureError` for an object of no family."""
    family = getattr(obj, "family", None)
    if not isinstance(family, str):
        expected = (
            "a feature configuration (e.g. FeatureConfig, or a model's bundle.feature_config)"
            if what == "config"
            else "a feature set (e.g. FeatureSet, or what extract_features returns)"
        )
        raise FeatureError(f"{what} must be {expected}, got {type(obj).__name__}.")
    return None if family == FeatureConfig.family else family


def extract_features(
    batch: UnitsBatch, config: FeatureConfig | None = None, progress: bool = False
) -> FeatureSet:
    """Compute the C4 features of every unit of a batch, or those of ``config``'s feature family
    (e.g. the default model's ``bundle.feature_config``, family ``acg-isi-wave``: its
    :func:`~nwb_celltype.features.extract_discharge_features`).

    Parameters
    ----------
    batch : UnitsBatch
        Units as read by :func:`nwb_celltype.io.read_units` (times in s; waveforms (n, samples) at
        ``waveform_rate_hz``, peak channel, NaN rows where missing).
    config : FeatureConfig
        Default: C4 settings.
    progress : bool
        Log per-stage progress at INFO level (the CLI turns it on).

    Returns
    -------
    FeatureSet
        One row per unit of ``batch``, in order. ``usable[i]`` is False, with ``reasons[i]`` set,
        when a unit has fewer than ``min_spikes`` spikes, an implausible train (see
        :func:`nwb_celltype.features._guards.check_train`: non-finite/negative or far too late
        times, too many spikes, too high a rate; such a train is not processed), no or an
        unusable waveform (NaN, flat), or is rejected by C4 unit selection (if enabled). Its arrays
        are still filled where computable (zeros otherwise), so rows always align with units.
    """
    if config is not None and (family := _other_family(config, "config")) is not None:
        from .families import get_family

        return get_family(family).extract_features(batch, config, progress)
    config = FeatureConfig() if config is None else config
    n = len(batch)
    reasons: list[list[str]] = [[] for _ in range(n)]
    extra_reasons = batch.extra.get("reasons") if batch.extra else None
    if extra_reasons is not None and len(extra_reasons) == n:
        for i, r in enumerate(extra_reasons):
            if r:
                reasons[i].append(str(r))

    selections = None
    if config.c4_unit_selection:
        from .selection import select_units_c4

        selections = select_units_c4(batch, config)

    trains = []
    for i in range(n):
        t, why = check_train(batch.spike_times(i))
        if why:
            reasons[i].append(why)
        if selections is not None:
            sel = selections[i]
            if not sel.keep:
                reasons[i].append(f"C4 unit selection: {sel.reason}")
            elif not why:
                t = t[sel.good_spikes]
        if len(t) < config.min_spikes:
            reasons[i].append(too_few_spikes(len(t), config.min_spikes))
        trains.append(t)
    if progress:
        log.info("3D ACGs of %d units (%d spikes)", n, sum(len(t) for t in trains))
    # the discharge statistics run on their own thread while the ACG threads wait for the device
    # (their numpy loops release the GIL): they are ~free next to the pair counting
    with ThreadPoolExecutor(1, thread_name_prefix="nwb-stats") as pool:
        stats_future = pool.submit(_spike_stats, trains, config)
        # the log ACG uses lag 0 and positive lags only: counting forward pairs halves the work and
        # gives the same counts at those lags (tests/test_features_perf.py)
        lin, _ = compute_acg_3d_batch(trains, config, positive_lags_only=True)
        acg = compute_log_acg(lin, config).astype(np.float32)
        stats = stats_future.result()

    wave = np.zeros((n, config.waveform_samples), dtype=np.float32)
    if batch.waveforms is None or batch.waveform_rate_hz is None:
        for r in reasons:
            r.append(no_waveform())
    else:
        for i in range(n):
            try:
                wave[i] = preprocess_waveform(batch.waveforms[i], batch.waveform_rate_hz, config)
            except NwbCelltypeError as exc:
                reasons[i].append(waveform_problem(exc))

    layer = np.zeros((n, len(vocabulary.LAYERS)), dtype=np.float32)
    layers = batch.layers if batch.layers is not None else np.full(n, "unknown", dtype=object)
    for i, name in enumerate(layers):
        name = str(name)
        if name not in vocabulary.LAYERS:
            raise FeatureError(
                f"unit {batch.unit_ids[i]}: layer {name!r} is not one of {vocabulary.LAYERS}; map "
                "locations with nwb_celltype.io.map_location_to_layer."
            )
        layer[i, vocabulary.LAYERS.index(name)] = 1.0

    reason_arr = np.array([join_reasons(dict.fromkeys(r)) for r in reasons], dtype=object)
    return FeatureSet(
        unit_ids=np.asarray(batch.unit_ids, dtype=np.int64),
        acg=acg,
        waveform=wave,
        layer=layer,
        stats=stats,
        usable=np.array([not r for r in reasons], dtype=bool),
        reasons=reason_arr,
        config=config,
    )


def save_features(path: str | os.PathLike, fs: FeatureSet) -> Path:
    """Write a :class:`FeatureSet` to ``path`` (``.npz``, compressed; see docs/features.md).

    Arrays: ``unit_ids``, ``acg``, ``waveform``, ``layer``, ``usable``, ``reasons`` (unicode),
    ``stats__<name>`` per statistic; scalars ``config_json``, ``config_sha256``, ``format_version``.
    No pickles: :func:`load_features` reads it with ``allow_pickle=False``. Another family's
    features (e.g. the default model's ``acg-isi-wave``) are written in that family's format
    (:meth:`~nwb_celltype.features.families.FeatureFamily.save_features`); read any family's file
    with :func:`~nwb_celltype.features.load_features_any`.
    """
    if (family := _other_family(fs, "fs")) is not None:
        from .families import get_family

        return get_family(family).save_features(path, fs)
    arrays = {
        "unit_ids": np.asarray(fs.unit_ids, dtype=np.int64),
        "acg": np.asarray(fs.acg, dtype=np.float32),
        "waveform": np.asarray(fs.waveform, dtype=np.float32),
        "layer": np.asarray(fs.layer, dtype=np.float32),
        "usable": np.asarray(fs.usable, dtype=bool),
        "reasons": np.asarray([str(r) for r in fs.reasons], dtype=str).reshape(len(fs)),
        "config_json": np.array(fs.config.to_json()),
        "config_sha256": np.array(fs.config.sha256),
        "format_version": np.array(FILE_FORMAT_VERSION),
    }
    for k, v in fs.stats.items():
        arrays[f"stats__{k}"] = np.asarray(v, dtype=np.float64)
    return write_npz(path, arrays)


def load_features(path: str | os.PathLike) -> FeatureSet:
    """Read a file written by :func:`save_features` of C4 features; checks the format version and
    config hash. Another family's file (e.g. the default model's ``acg-isi-wave`` features) is
    refused with a pointer to :func:`~nwb_celltype.features.load_features_any`, which reads any."""
    path = Path(path)
    if not path.exists():
        raise FeatureError(f"features file {path} does not exist; write it with `nwb-celltype features`.")
    d = read_npz(path)
    if "family" in d and str(d["family"]) != "c4-3d":
        raise FeatureError(
            f"{path} holds {str(d['family'])!r} features, not C4 ('c4-3d') features; read it with "
            "nwb_celltype.features.load_features_any."
        )
    missing = {"unit_ids", "acg", "waveform", "layer", "usable", "reasons", "config_json"} - set(d)
    if missing:
        raise FeatureError(f"{path} lacks {sorted(missing)}: not written by save_features.")
    version = str(d.get("format_version", ""))
    if version != FILE_FORMAT_VERSION:
        raise FeatureError(
            f"{path} has features file format {version!r}, this nwb-celltype reads "
            f"{FILE_FORMAT_VERSION!r}; recompute the features with this version."
        )
    config = FeatureConfig.from_json(str(d["config_json"]))
    if "config_sha256" in d and str(d["config_sha256"]) != config.sha256:
        raise FeatureError(f"{path}: stored configuration hash does not match its JSON; the file is corrupt.")
    stats = {k[len("stats__") :]: v for k, v in d.items() if k.startswith("stats__")}
    return FeatureSet(
        unit_ids=d["unit_ids"],
        acg=d["acg"],
        waveform=d["waveform"],
        layer=d["layer"],
        stats=stats,
        usable=d["usable"],
        reasons=d["reasons"].astype(object),
        config=config,
    )
