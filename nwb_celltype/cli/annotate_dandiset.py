"""``nwb-celltype annotate-dandiset``: annotate every NWB asset of a dandiset into a derived
dandiset folder, locally or on a Dask cluster, resumably."""

from __future__ import annotations

import signal
from pathlib import Path

import click

from ._common import (
    annotation_options,
    any_region_option,
    model_option,
    model_sha256_option,
    print_json,
    progress_bars,
    quiet_logging,
    units_table_option,
    waveform_rate_option,
)


@click.command("annotate-dandiset", short_help="Annotate every NWB asset of a dandiset (resumable).")
@click.argument("dandiset")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Output folder: the derived dandiset (created if needed; a rerun resumes there).",
)
@model_option
@model_sha256_option
@click.option(
    "--include",
    multiple=True,
    metavar="GLOB",
    help="Only assets whose path matches this glob, e.g. 'sub-M1/*' (repeatable: any matching; "
    "DANDISET may name a folder instead, e.g. 000409@draft/sub-M1/). The summary keeps the rows of "
    "assets that earlier runs into --out annotated.",
)
@click.option(
    "--version",
    "version",
    default=None,
    metavar="VERSION",
    help="Dandiset version to annotate (draft or 0.YYMMDD.HHMM; overrides one in DANDISET); default: "
    "the most recent published version, else the draft.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Local worker processes (default: CPU cores, at most the number of assets).",
)
@click.option(
    "--scheduler",
    default=None,
    metavar="ADDRESS",
    help="Run on this Dask scheduler (tcp://host:8786) instead of local processes.",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Further tries of an asset that fails with a transient error.",
)
@click.option(
    "--retry-backoff",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    help="Seconds before the first retry; doubles each try.",
)
@click.option(
    "--dashboard",
    is_flag=True,
    help="Serve the Dask dashboard (without --scheduler, runs a local Dask cluster).",
)
@click.option(
    "--dashboard-address",
    default="127.0.0.1:8787",
    show_default=True,
    help="host:port of the local cluster's dashboard.",
)
@any_region_option
@units_table_option("annotate", "; the same path in every asset")
@waveform_rate_option("; the same rate for every asset")
@annotation_options
def annotate_dandiset(
    dandiset,
    out,
    model,
    model_sha256,
    include,
    version,
    workers,
    scheduler,
    retries,
    retry_backoff,
    dashboard,
    dashboard_address,
    any_region,
    units_table,
    waveform_rate_hz,
    threshold,
    batch_size,
    dandi_api_url,
    cache_dir,
    ignore_waveforms,
    quiet,
    as_json,
):
    """Annotate every NWB asset of DANDISET[@VERSION] (e.g. 000409, 000409@draft,
    DANDI:000409/draft, https://dandiarchive.org/dandiset/000409/draft; a folder of it:
    000409@draft/sub-M1/) into a derived dandiset under --out, and write celltype-summary.tsv/.json
    there. DANDISET always names a dandiset of the archive, even where a local folder of that name
    exists (an --out called 000409); local paths (./000409) are refused. A rerun with the same --out
    does only what is not done yet; an --out holding another dandiset's derived files is refused."""
    from .._atomic import Interrupted
    from ..batch import annotate_dandiset as run
    from ..batch.run import SUMMARY_TSV
    from . import _fail

    try:
        with quiet_logging(quiet):
            result = run(
                dandiset,
                out,
                model=model,
                include=list(include) or None,
                version=version,
                workers=workers,
                scheduler=scheduler,
                retries=retries,
                retry_backoff_s=retry_backoff,
                dashboard=dashboard,
                dashboard_address=dashboard_address,
                threshold=threshold,
                batch_size=batch_size,
                dandi_api_url=dandi_api_url,
                cache_dir=cache_dir,
                progress=progress_bars(quiet or as_json),
                model_sha256=model_sha256,
                ignore_waveforms=ignore_waveforms,
                units_table=units_table,
                waveform_rate_hz=waveform_rate_hz,
                any_region=any_region,
            )
    except (KeyboardInterrupt, Interrupted) as exc:  # the assets finished so far stay done: say so
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        table = Path(out) / SUMMARY_TSV
        where = f" ({table} lists them; the others are pending)" if table.is_file() else ""
        _fail(
            f"interrupted by {signal.Signals(signum).name}; the assets finished so far are "
            f"kept{where}: rerun the same command to resume",
            128 + signum,
        )
    if as_json:
        print_json(result.to_dict())
    elif not quiet:
        click.echo(format_run(result))
    if result.counts["failed"]:
        raise SystemExit(2)


def format_run(result) -> str:
    """Human-readable summary of a :class:`~nwb_celltype.batch.DandisetRunResult`."""
    c = result.counts
    lines = [
        f"dandiset {result.dandiset_id}@{result.version}: {c['listed']} NWB assets -> {result.out_dir}",
        f"model: {result.model['name']} {result.model['version']} (sha256 {result.model['sha256'][:12]})"
        + ("  [DEMO model trained on simulated data]" if result.model.get("demo") else ""),
        f"done {c['done']} (this run {c['annotated']}, earlier {c['reused']}), "
        f"skipped (no units) {c['skipped']}, failed {c['failed']}; "
        f"{result.executor} x{result.n_workers}, {result.wall_s:.1f} s",
    ]
    if result.dashboard_link:
        lines.append(f"dashboard: {result.dashboard_link}")
    for a in result.assets:
        if a["status"] != "done":
            lines.append(f"  {a['status']}: {a['path']}: {a.get('error')}")
        if a["status"] == "failed" and a.get("earlier_output"):
            lines.append(f"  kept (not replaced, since this run failed): {a['earlier_output']['output']}")
        if a.get("removed_outputs") and a.get("this_run"):
            lines.append(f"  removed (superseded): {', '.join(a['removed_outputs'])}")
    if result.kept_assets:
        lines.append(
            f"the summary also keeps {len(result.kept_assets)} rows of earlier runs for assets outside this run's "
            "selection (selected=False)"
        )
    lines.append(f"summary: {result.summary_tsv}")
    return "\n".join(lines)
