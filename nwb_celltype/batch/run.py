"""Annotate every NWB asset of a dandiset into a derived dandiset folder: locally with a process
pool or on a Dask cluster, resumably (per-asset state records in the output folder), with bounded
retries and a summary table."""

from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._atomic import cleanup_on_signals
from ..errors import InvalidValueError
from ..io._parse import normalise_version
from ._execute import MAX_BACKOFF_S as MAX_BACKOFF_S
from ._execute import _execute
from ._outputs import kept_records, sweep_outputs
from ._selection import _nwb_assets, _selection, parse_dandiset_target
from ._selection import parse_dandiset_spec as parse_dandiset_spec
from ._summary import SUMMARY_JSON as SUMMARY_JSON
from ._summary import SUMMARY_TSV as SUMMARY_TSV
from ._summary import LiveSummary, count_assets, write_summary
from ._summary import summary_rows as summary_rows
from .state import RunState, asset_version, check_case_collisions, derived_paths, is_done, labelling_settings

logger = logging.getLogger(__name__)

#: per-asset statuses that end an asset for this run.
STATUSES = ("done", "skipped", "failed")


@dataclass
class DandisetRunResult:
    """What :func:`annotate_dandiset` did.

    Attributes
    ----------
    out_dir : str
        The derived-dandiset folder.
    dandiset_id, version : str
        The dandiset and the version whose assets were annotated.
    model : dict
        ``name``, ``version``, ``sha256`` and ``path`` (None for the demo model) of the bundle.
    assets : list of dict
        One record per NWB asset this run selected (``path``, ``asset_id``, ``status``,
        ``n_units``, ``label_counts``, ``time_s``, ``attempts``, ``error``, ``output``,
        ``this_run``, ``removed_outputs``: derived files of earlier runs that its outcome
        superseded, ``earlier_output``: on a ``failed`` record, the earlier ``done`` record's
        derived file that the failure kept (``output``, ``output_size``, ``asset_id``,
        ``model_sha256``, ``run_id``, ``finished``), ...).
    counts : dict
        Over :attr:`assets`: ``listed``, ``done``, ``skipped``, ``failed``, ``reused`` (done by an
        earlier run) and ``annotated`` (done by this run).
    summary_tsv, summary_json : str
        Paths of the summary table.
    executor : str
        ``local`` or ``dask``.
    n_workers : int
        Worker processes (or Dask worker threads) used.
    dashboard_link : str or None
        The Dask dashboard's URL when one runs.
    wall_s : float
        Seconds the run took.
    kept_assets : list of dict
        Records of assets outside this run's selection (another ``--include``, or no longer in
        the dandiset) that earlier runs left in the output folder; the summary keeps their rows,
        with ``selected`` False and a ``note`` saying which run they come from.
    """

    out_dir: str
    dandiset_id: str
    version: str
    model: dict
    assets: list[dict]
    counts: dict[str, int]
    summary_tsv: str
    summary_json: str
    executor: str
    n_workers: int
    dashboard_link: str | None = None
    wall_s: float = 0.0
    kept_assets: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _Run:
    """Who this run is: the dandiset, the version listed, the output folder, the run id, the model."""

    ds_id: str
    version: str
    out_dir: Path
    run_id: str
    model_info: dict
    include: str | list[str] | None = None


def _check_out_folder(state: RunState, ds_id: str, derived: dict[str, str]) -> None:
    """Refuse, from the folder's records (read once), an output folder of another dandiset and
    derived paths differing only in case from each other or from earlier runs' files."""
    records = list(state.iter_records())
    _check_same_dandiset(state, ds_id, records)
    earlier = {r["path"]: r.get("output") for r in records if isinstance(r.get("path"), str)}
    check_case_collisions(derived, state.root, earlier)


def _check_same_dandiset(state: RunState, ds_id: str, records: list[dict]) -> None:
    """Refuse an output folder holding another dandiset's derived files: paths such as
    ``sub-1/sub-1_ecephys.nwb`` recur across dandisets, and this run would replace them."""
    prev = state.read_run() or {}
    others = {prev.get("dandiset_id")} | {r.get("dandiset_id") for r in records}
    others = sorted(str(d) for d in others - {None, ds_id})
    if others:
        raise InvalidValueError(
            f"{state.out_dir} holds the derived dandiset of {', '.join(others)}; annotate {ds_id} into "
            "another --out folder (its derived files would replace those at the same paths)"
        )


def _check_options(workers: int | None, scheduler: str | None, client: Any, retries: int, batch_size: int):
    if workers is not None and (scheduler is not None or client is not None):
        raise InvalidValueError(
            "give either workers (--workers N, a local process pool) or a Dask scheduler "
            "(--scheduler ADDRESS), not both"
        )
    if workers is not None and workers < 1:
        raise InvalidValueError(f"workers must be >= 1, got {workers}")
    if retries < 0:
        raise InvalidValueError(f"retries must be >= 0, got {retries}")
    if batch_size < 1:
        raise InvalidValueError(f"batch_size must be >= 1, got {batch_size}")


def _load_model_identity(
    model: str | os.PathLike | None, model_sha256: str | None = None, ignore_waveforms: bool = False
) -> dict:
    """Load the bundle once in the driver for its identity (sha256 decides what is done already);
    with ``model_sha256`` it must match that pin (workers then check the same full digest); with
    ``ignore_waveforms`` its feature family must allow it (checked before any worker starts)."""
    from ..annotate import _model_identity
    from ..features.families import family_of
    from ..model.shipped import check_pinned, resolve_model

    path = None if model is None else str(Path(model).resolve())
    bundle, is_demo = resolve_model(path)
    if model_sha256 is not None:
        check_pinned(bundle, model_sha256)
    if ignore_waveforms:
        family_of(bundle).check_ignore_waveforms()
    return {
        **_model_identity(bundle),
        "path": path,
        "pinned": model_sha256 is not None,
        "demo": bool(is_demo),
    }


def annotate_dandiset(
    dandiset: str,
    out: str | os.PathLike,
    *,
    version: str | None = None,
    model: str | os.PathLike | None = None,
    include: str | list[str] | tuple[str, ...] | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    client: Any = None,
    retries: int = 2,
    retry_backoff_s: float = 2.0,
    dashboard: bool = False,
    dashboard_address: str = "127.0.0.1:8787",
    dandi_api_url: str | None = None,
    cache_dir: str | os.PathLike | bool | None = None,
    threshold: float = 2.0,
    batch_size: int = 256,
    progress: bool = False,
    model_sha256: str | None = None,
    ignore_waveforms: bool = False,
    units_table: str | None = None,
    waveform_rate_hz: float | None = None,
    any_region: bool = False,
) -> DandisetRunResult:
    """Annotate every NWB asset of a dandiset into a derived dandiset under ``out``.

    Each asset ``A.nwb`` becomes ``out/<derived_asset_path(A)>``, a derived NWB file holding the
    asset's Units, the cell-type table and the provenance (source dandiset, version, asset id).
    Per-asset state records in ``out/.nwb-celltype/assets/`` make the run resumable: an asset whose
    output exists for the same asset id, dandiset version, model sha256, threshold and
    ``ignore_waveforms`` is not done again.

    Parameters
    ----------
    dandiset : str
        ``DANDISET[@VERSION]`` (``000409``, ``000409@draft``, ``DANDI:000409/0.230101.1234``).
    out : path
        Output folder (created if needed).
    version : str, optional
        Version to annotate (overrides the one in ``dandiset``); default: the most recent
        published version, or the draft.
    model : path, optional
        Model bundle; ``None`` uses the package's default model (trained on real identified
        cerebellar neurons). With a Dask cluster the path must be readable by every worker.
    model_sha256 : str, optional
        Pin the bundle: the run is refused unless its digest starts with this hex string (see
        :func:`nwb_celltype.model.shipped.check_pinned`); every asset's provenance records the pin.
    include : str or sequence of str, optional
        Glob(s) on asset paths (``fnmatch``; e.g. ``sub-M1/*``) selecting the assets to annotate
        (any matching). ``dandiset`` may name a folder or file instead (``000409@draft/sub-M1/``).
        The summary keeps the rows of assets that earlier runs into ``out`` annotated outside
        this selection (``selected`` False).
    workers : int, optional
        Size of the local process pool (default 1 ... the number of CPU cores, at most the number
        of assets). Exclusive with ``scheduler``/``client``.
    scheduler : str, optional
        Address of a Dask scheduler (``tcp://host:8786``): run there with
        :class:`distributed.Client`.
    client : distributed.Client, optional
        An existing Dask client to run on (Python API only).
    retries : int
        Further tries of an asset that fails with a transient-looking error; then it is recorded
        failed and the run goes on.
    retry_backoff_s : float
        Wait before the first retry, in seconds; doubles with each try (at most 60 s).
    dashboard : bool
        Serve the Dask dashboard. Without a scheduler a local Dask cluster replaces the process
        pool so that there is one; its URL is in the result and the log.
    dashboard_address : str
        Where the local cluster's dashboard listens (``host:port``).
    dandi_api_url : str, optional
        DANDI API to ask (default: the public archive).
    cache_dir : path or False, optional
        Disk cache for streamed bytes (default: the user cache; False: none, ``--no-cache``).
    threshold : float
        Confidence ratio below which a unit is "unclassified" (see :func:`~nwb_celltype.annotate`).
    ignore_waveforms : bool
        Classify every unit from its discharge alone (see :func:`~nwb_celltype.annotate`).
    units_table : str, optional
        Path of the Units table to annotate in every asset (``processing/ecephys/curated``), for
        assets holding several sortings; default: ``/units``, else an asset's only Units table.
    waveform_rate_hz : float, optional
        Sampling rate of every asset's ``waveform_mean`` where the assets do not state it.
    any_region : bool
        Label units recorded outside the cerebellar cortex too (see :func:`~nwb_celltype.annotate`).
    batch_size : int
        Units read and featurised at a time; bounds a worker's memory for reading and features.
    progress : bool
        Show a bar over assets (tqdm) on stderr.

    Returns
    -------
    DandisetRunResult
    """
    t_start = time.perf_counter()
    _check_options(workers, scheduler, client, retries, batch_size)
    settings = labelling_settings(threshold, ignore_waveforms, units_table, waveform_rate_hz, any_region)
    ds_id, spec_version, spec_path = parse_dandiset_target(dandiset)
    version = normalise_version(version)  # "latest": the most recent published version, else draft
    selection = _selection(spec_path, include)
    include = None if selection is None else (selection[0] if len(selection) == 1 else list(selection))
    out_dir = Path(out).resolve()
    assets, listing, resolved_version = _nwb_assets(ds_id, version or spec_version, dandi_api_url, selection)
    derived = derived_paths(a.path for a in assets)  # two assets into one file: refused before any work

    model_info = _load_model_identity(model, model_sha256, ignore_waveforms)
    state = RunState(out_dir)
    state.prepare()
    run_id = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"
    run = _Run(ds_id, resolved_version, out_dir, run_id, model_info, include)
    how = {
        "workers": workers,
        "scheduler": scheduler,
        "client": client,
        "dashboard_address": dashboard_address if dashboard else None,
        "dask": bool(scheduler or client or dashboard),
        "retries": retries,
        "retry_backoff_s": retry_backoff_s,
        "progress": progress,
        "labelling": _labelling(model_info, settings, batch_size, dandi_api_url, cache_dir),
    }
    try:
        with cleanup_on_signals():  # SIGTERM / SIGHUP end the run as Ctrl-C does (Interrupted)
            _check_out_folder(state, ds_id, derived)
            state.write_run(_run_info(run, include, settings, batch_size))
            return _annotate_assets(run, state, assets, listing, derived, settings, how, t_start)
    finally:
        state.release()


def _annotate_assets(
    run: _Run, state: RunState, assets: list, listing: dict, derived: dict, settings: dict, how: dict, t_start
) -> DandisetRunResult:
    """The run proper, once the output folder is locked: the assets not done yet go to the workers
    (``how``: the executor's options and the labelling every task shares); the summary is kept on
    disk as they finish, and written as ``stopped`` if the run ends early (the pool aborted)."""
    runner = None
    live = None
    try:
        records, todo, superseded = _resume(run, assets, state, settings, derived)
        kept = kept_records(state, {a.path for a in assets}, listing, run.ds_id, run.version)
        live = LiveSummary(run, state, assets, records, kept)
        executor = "dask" if how["dask"] else "local"
        if todo:
            live.write()
            runner = _make_runner(
                executor,
                run.model_info,
                how["workers"],
                len(todo),
                how["scheduler"],
                how["client"],
                how["dashboard_address"],
            )
            if runner.dashboard_link:
                logger.warning("Dask dashboard: %s", runner.dashboard_link)
            tasks = [_asset_task(a, run, how["labelling"], derived[a.path], superseded[a.path]) for a in todo]
            retries, backoff = how["retries"], how["retry_backoff_s"]
            for rec in _execute(runner, tasks, state, retries, backoff, how["progress"], len(assets)):
                records[rec["path"]] = {**rec, "this_run": True, "selected": True}
                _log_removed(rec)
                live.write(throttle=True)
        return _run_result(run, [records[a.path] for a in assets], kept, executor, runner, t_start, state)
    except BaseException as exc:
        if runner is not None:
            runner, busy = None, runner
            busy.close(abort=True)
        if live is not None:
            live.write_stopped(exc)
        raise
    finally:
        if runner is not None:
            runner.close()


def _run_info(run: _Run, include, settings: dict, batch_size) -> dict:
    """The run's own record (``run.json`` in the state folder): what is annotated, how, and by whom."""
    return {
        "run_id": run.run_id,
        "dandiset_id": run.ds_id,
        "version": run.version,
        "model": run.model_info,
        "include": include,
        **settings,
        "batch_size": batch_size,
        "started": time.time(),
        "pid": os.getpid(),
    }


def _resume(run: _Run, assets: list, state: RunState, settings: dict, derived: dict[str, str]):
    """The records of assets finished earlier, the assets left to do and the derived files of
    their earlier records (:func:`_split_done`), logged."""
    records, todo, superseded = _split_done(
        assets, state, run.version, run.model_info["sha256"], settings, derived
    )
    logger.info(
        "dandiset %s@%s: %d NWB assets, %d already done, %d to annotate",
        run.ds_id,
        run.version,
        len(assets),
        len(assets) - len(todo),
        len(todo),
    )
    return records, todo, superseded


def _log_removed(rec: dict) -> None:
    if rec.get("removed_outputs"):
        logger.warning(
            "%s: removed %s, a derived file of an earlier run that this run's outcome (%s) supersedes",
            rec["path"],
            ", ".join(rec["removed_outputs"]),
            rec["status"],
        )


def _labelling(model_info: dict, settings: dict, batch_size, dandi_api_url, cache_dir) -> dict:
    """The model and settings every asset task shares (see :func:`_asset_task`)."""
    return {
        "model_path": model_info["path"],
        "model_sha256": model_info["sha256"],
        "model_pinned": model_info["pinned"],
        **settings,
        "batch_size": int(batch_size),
        "dandi_api_url": dandi_api_url,
        "cache_dir": cache_dir if cache_dir in (None, False) else str(cache_dir),  # False: no cache
    }


def _run_result(
    run: _Run, ordered: list[dict], kept: list[dict], executor: str, runner, t_start: float, state=None
) -> DandisetRunResult:
    """Count the selected assets' final records (in listing order), remove any derived file that
    no ``done`` row accounts for, write the summary table (with the ``kept`` rows of assets
    outside this run's selection), and report."""
    counts = count_assets(ordered)
    rows = sorted([*ordered, *kept], key=lambda r: r["path"])
    sweep_outputs(run.out_dir, rows, state)  # before the summary that reports these rows
    tsv, js = write_summary(
        run.out_dir, run.ds_id, run.version, run.model_info, rows, counts, run.run_id, run.include
    )
    logger.info("done: %s%s", counts, f"; {len(kept)} rows kept from earlier runs" if kept else "")
    return DandisetRunResult(
        out_dir=str(run.out_dir),
        dandiset_id=run.ds_id,
        version=run.version,
        model=run.model_info,
        assets=ordered,
        counts=counts,
        summary_tsv=str(tsv),
        summary_json=str(js),
        executor=executor,
        n_workers=0 if runner is None else runner.n_workers,
        dashboard_link=None if runner is None else runner.dashboard_link,
        wall_s=round(time.perf_counter() - t_start, 3),
        kept_assets=kept,
    )


def _split_done(
    assets: list,
    state: RunState,
    resolved_version: str,
    model_sha256: str,
    settings: dict,
    derived: dict[str, str],
) -> tuple[dict[str, dict], list, dict[str, list[str]]]:
    """The assets a previous run already finished (their records, by path), those to do, and
    the derived files the records of those to do name (superseded by whatever this run records
    for them): done for this model, labelling settings and derived name (:func:`is_done`), or
    skipped for having no units (which does not depend on the model)."""
    records: dict[str, dict] = {}
    todo = []
    superseded: dict[str, list[str]] = {}
    for a in assets:
        rec = state.read_record(a.path)
        version_of = asset_version(a, resolved_version)
        if is_done(
            rec,
            state.out_dir,
            asset_id=a.asset_id,
            version=version_of,
            model_sha256=model_sha256,
            **settings,
            output=derived[a.path],
        ) or (
            rec
            and rec.get("status") == "skipped"
            and rec.get("asset_id") == a.asset_id
            and rec.get("version") == version_of
            and rec.get("units_table") == settings["units_table"]  # no units in *that* table
        ):
            records[a.path] = {**rec, "this_run": False, "selected": True}
        else:
            todo.append(a)
            superseded[a.path] = _named_outputs(rec)
    return records, todo, superseded


def _named_outputs(rec: dict | None) -> list[str]:
    """The derived files an asset's record accounts for: a ``done`` record's output, a ``failed``
    one's kept earlier output."""
    if not isinstance(rec, dict):
        return []
    kept = rec.get("earlier_output")
    named = [rec.get("output"), kept.get("output") if isinstance(kept, dict) else None]
    return [o for o in named if isinstance(o, str)]


def _asset_task(asset: Any, run: _Run, labelling: dict, output: str, superseded: list[str]) -> dict:
    """The unit of work of one asset (:func:`~nwb_celltype.batch.worker.run_asset_task`);
    ``labelling``: the model and settings every task shares; ``output``: its derived path;
    ``superseded``: derived files its earlier record names, to go when its new record is written."""
    return {
        "path": asset.path,
        "asset_id": asset.asset_id,
        "version": asset_version(asset, run.version),
        "dandiset_id": run.ds_id,
        "source": _asset_source(run.ds_id, run.version, asset),
        "output": output,
        "stale_outputs": list(superseded),
        "out_dir": str(run.out_dir),
        "tmp_name": f"{uuid.uuid4().hex}.nwb",
        **labelling,
        "attempt": 0,
        "run_id": run.run_id,
    }


def _asset_source(ds_id: str, version: str, asset: Any) -> str:
    """What :func:`~nwb_celltype.io.open_source` opens for one asset (keeps the DANDI identity
    in the derived file's provenance)."""
    return f"DANDI:{ds_id}/{version}/{asset.path}"


def _make_runner(executor: str, model_info: dict, workers, n_todo: int, scheduler, client, dashboard_address):
    """The process pool (``local``) or Dask runner; ``dashboard_address`` None serves no dashboard."""
    from .executors import DaskRunner, PoolRunner

    if workers is None:
        workers = max(1, min(os.cpu_count() or 1, n_todo)) if executor == "local" else None
    if executor == "local":
        return PoolRunner(workers, model_info["path"], model_info["sha256"])
    return DaskRunner(
        model_info["path"],
        model_info["sha256"],
        address=scheduler,
        client=client,
        n_workers=workers or min(os.cpu_count() or 1, n_todo),
        dashboard_address=dashboard_address,
    )
