"""``nwb-celltype demo``: the main job on the embedded simulated recording, with no input needed."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import echo_result


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
    """Annotate the simulated recording shipped with the package using the default model (trained
    on real identified neurons), write an annotated copy and print the summary. The recording is
    simulated: the labels show the pipeline, and how the model treats units it has never seen —
    not biology. The summary closes with how the labels agree with the simulated classes the
    recording holds for 50 of its units, then how to read the file back with pynwb."""
    from ..annotate import annotate
    from ..errors import AnnotationExistsError
    from ..simulate import demo_recording_path

    out_path = Path(out)
    if out_path.exists() and not overwrite:  # annotate's advice names options demo does not have
        raise AnnotationExistsError(
            f"{out_path} exists; pass --overwrite to replace it, or choose another --out"
        )
    result = annotate(demo_recording_path(), out=out_path, overwrite=overwrite, call="nwb-celltype demo")
    if not as_json:
        click.echo(
            "Demo: embedded SIMULATED recording + the default model (trained on real identified neurons); "
            "simulated units that resemble no real class are 'unclassified' (out of distribution)."
        )
    echo_result(result, as_json)
    if not as_json:
        click.echo(
            f"Read it back with plain pynwb: NWBHDF5IO({str(out_path)!r}).read().processing['cell_types']"
        )
