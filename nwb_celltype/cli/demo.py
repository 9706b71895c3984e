"""``nwb-celltype demo``: the main job on the embedded simulated recording, with no input needed."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import format_summary, print_json


@click.command()
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default="nwb-celltype-demo.nwb",
    show_default=True,
    help="Where to write the annotated copy of the embedded recording.",
)
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists (as annotate --overwrite).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def demo(out, overwrite, as_json):
    """Annotate the simulated recording shipped with the package using the bundled demo model
    (both simulated: this shows the pipeline, not biology), write an annotated copy and print the
    summary."""
    from ..annotate import annotate
    from ..simulate import demo_recording_path

    out_path = Path(out)
    result = annotate(demo_recording_path(), out=out_path, overwrite=overwrite, call="nwb-celltype demo")
    if as_json:
        print_json(result.to_dict())
    else:
        click.echo("Demo: embedded simulated recording + bundled demo model (trained on simulated data).")
        click.echo(format_summary(result))
        click.echo(
            f"Read it back with plain pynwb: NWBHDF5IO({str(out_path)!r}).read().processing['cell_types']"
        )
