"""``nwb-celltype report``: per-unit figures and a summary page of a file's annotations."""

from __future__ import annotations

import click


@click.command()
@click.argument("path", type=click.Path())
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for the report."
)
@click.option("--table", default=None, help="Annotation table to draw (default: the first).")
@click.option("--max-units", type=int, default=None, help="Draw at most this many units.")
def report(path, out_dir, table, max_units):
    """Draw, for each unit of PATH's annotations, its waveform, 3D ACG heatmap and class
    probabilities, plus a summary page (OUT/index.html)."""
    from ..inspect_file import write_report

    index = write_report(path, out_dir, table=table, max_units=max_units)
    click.echo(f"report written: {index}")
