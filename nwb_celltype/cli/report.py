"""``nwb-celltype report``: per-unit figures and a summary page of a file's annotations."""

from __future__ import annotations

import click


@click.command()
@click.argument("path", type=click.Path())
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for the report (new, empty, or holding an earlier report only).",
)
@click.option(
    "--table",
    default=None,
    help="Annotation table to draw (default: the one in the plain cell_type column, else the "
    "first prediction).",
)
@click.option(
    "--max-units",
    type=click.IntRange(min=0),
    default=None,
    help="Draw at most this many units (the page lists all).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Processes drawing figures (default: 2, or 1 on a one-core machine, from 200 drawn units on, else 1).",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace a report already in OUT (swapped for the new one once complete).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar; print nothing but errors.")
def report(path, out_dir, table, max_units, workers, overwrite, quiet):
    """Draw, for each unit of PATH's annotations, its waveform (µV over ms), 3D ACG (lags in ms,
    colour bar in Hz) and class probabilities, or why it could not be classified, plus a summary
    page listing every unit (OUT/index.html)."""
    from pathlib import Path

    from .._atomic import check_folder
    from ..errors import OutputError
    from ..report import REPORT_FILES, write_report
    from ._common import progress_bars

    # a user's files in OUT first: --overwrite would not help with those
    check_folder(out_dir, replace=True, owned=REPORT_FILES, what="a report")
    if (Path(out_dir) / "index.html").exists() and not overwrite:
        raise OutputError(
            f"{out_dir} holds a report; pass --overwrite to replace it, or choose another --out"
        )

    index = write_report(
        path, out_dir, table=table, max_units=max_units, workers=workers, progress=progress_bars(quiet)
    )
    if not quiet:
        click.echo(f"report written: {index}")
