"""``nwb-celltype annotate``: classify every unit of a source and write the labels into NWB."""

from __future__ import annotations

import sys

import click

from ._common import (
    annotation_options,
    any_region_option,
    echo_result,
    in_place_options,
    model_option,
    model_sha256_option,
    progress_bars,
    quiet_logging,
    units_table_option,
    waveform_rate_option,
)


@click.command()
@click.argument("source")
@model_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Output NWB file (default for local files: <input>.celltype.nwb beside the input; "
    "required for remote sources, where a derived file is written).",
)
@in_place_options("the local input file")
@click.option(
    "--overwrite",
    is_flag=True,
    help="With --in-place: replace annotations already written by the same model. As a copy: replace an "
    "existing output file, with every table it held (to add a second model's table to an annotated copy, "
    "annotate that copy with --in-place).",
)
@click.option(
    "--precision",
    type=click.Choice(["float32", "float64"]),
    default="float32",
    show_default=True,
    help="Precision a C4 (c4-3d) model's ensemble runs in; float64 is a slower reference (recorded in "
    "the provenance). The default model (acg-isi-wave) has no such choice: float64 is refused.",
)
@model_sha256_option
@click.option(
    "--species",
    default=None,
    help="The units' species (mouse, Mus musculus, macaque, ...) where the file's Subject names none or "
    "the wrong one (default: the file's general/subject/species). Units of a species the model was trained "
    "on get no label of a class that species gave it fewer than 5 training units of (the default model: "
    "no GoC for mouse units). The summary says when the species is not stated or is one the model was not "
    "trained on.",
)
@any_region_option
@units_table_option("annotate")
@waveform_rate_option()
@annotation_options
def annotate(
    source,
    model,
    out,
    in_place,
    allow_read_only,
    allow_hard_links,
    model_sha256,
    species,
    any_region,
    units_table,
    waveform_rate_hz,
    threshold,
    overwrite,
    precision,
    dandi_api_url,
    cache_dir,
    batch_size,
    ignore_waveforms,
    quiet,
    as_json,
):
    """Classify every unit of SOURCE (a path, an http(s) URL or a DANDI id) and write the cell types,
    probabilities and provenance into NWB (an annotated copy, the input itself with --in-place, or a
    derived file for remote sources). A SOURCE such as 000409/sub-1/x.nwb that is both a DANDI
    reference and an existing local path (a `dandi download` folder) is the local file; write
    DANDI:000409/sub-1/x.nwb for the asset. Where the output also holds ground-truth or expert labels,
    the summary compares the new labels with them (unclassified units count as misses)."""
    from ..annotate import annotate as run

    with quiet_logging(quiet):
        result = run(
            source,
            model=model,
            out=out,
            in_place=in_place,
            threshold=threshold,
            overwrite=overwrite,
            dandi_api_url=dandi_api_url,
            cache_dir=cache_dir,
            batch_size=batch_size,
            progress=progress_bars(quiet or as_json),
            call=" ".join(["nwb-celltype", *sys.argv[1:]]),
            precision=precision,
            model_sha256=model_sha256,
            allow_read_only=allow_read_only,
            allow_hard_links=allow_hard_links,
            ignore_waveforms=ignore_waveforms,
            species=species,
            units_table=units_table,
            waveform_rate_hz=waveform_rate_hz,
            any_region=any_region,
        )
    if as_json or not quiet:
        echo_result(result, as_json)
