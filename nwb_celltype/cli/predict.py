"""``nwb-celltype predict FEATURES --out predictions.tsv``: classify units given as feature tables or
a features file, without NWB."""

from __future__ import annotations

import click

from ._common import (
    IGNORE_WAVEFORMS_OPTION,
    THRESHOLD_HELP,
    any_region_option,
    model_option,
    print_json,
    quiet_logging,
    reason_lines,
    species_line,
)


@click.command("predict")
@click.argument("features", type=click.Path(exists=True))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output TSV, one row per unit.")
@model_option
@click.option(
    "--threshold",
    type=float,
    default=2.0,
    show_default=True,
    help=THRESHOLD_HELP,
)
@IGNORE_WAVEFORMS_OPTION
@click.option(
    "--species",
    default=None,
    help="The units' species (mouse, Mus musculus, macaque, Macaca mulatta, ...; default: the tables' "
    "dataset.json species, or the species a features file recorded from its NWB file's Subject, else none). Units of a species the model was trained on get no label of a "
    "class that species gave it fewer than 5 training units of (the default model: no GoC for mouse units); "
    "the summary says when the species is not stated or is one the model was not trained on.",
)
@any_region_option
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def predict(
    features, out, model, threshold, ignore_waveforms, species, any_region, overwrite, quiet, as_json
):
    """Classify the units in FEATURES — a folder of per-unit feature tables (labels.csv, acg.csv,
    isi_dist.csv, waveforms.csv, dataset.json; labels optional), a saved SpikeInterface sorting
    analyzer (its spike trains, and its templates' peak channel as the waveform) or sorting
    (spike trains: discharge alone; a phy or Kilosort folder: read it with SpikeInterface and save the
    sorting), or a .npz written by `nwb-celltype features` — and write one
    row per unit to OUT, a TSV after one '# model: ...' comment line (row and neuron_id, the unit's own
    id: the tables' or the sorting's; unit_id for a features file of NWB units): label, status, confidence, per-class probabilities, for models of the default family the
    out-of-distribution flag, whether the waveform was used and the ACG's pair count at lags 1-100 ms
    (its depth: shallow units meet the floors of shallow units), and the reason a unit has no label.
    Where the tables carry labels, the summary compares them (numbers on units the model was trained
    on are not a validation: see docs/validation.md)."""
    from pathlib import Path

    from ..classify import check_output_path, predict_features, summarise, write_predictions_tsv

    # before the work, not after it; never over what it reads (FEATURES, a file in its folder, the model)
    bundle_dir = None if model is None else Path(model).parent if Path(model).is_file() else model
    check_output_path(out, overwrite, inputs=(features, model, bundle_dir))
    with quiet_logging(quiet):
        result = predict_features(
            features,
            model=model,
            threshold=threshold,
            ignore_waveforms=ignore_waveforms,
            species=species,
            any_region=any_region,
        )
        path = write_predictions_tsv(result, out, overwrite=overwrite)
    summary = {"output": str(path), "model": result.model, **summarise(result)}
    if as_json:
        print_json(summary)
    elif not quiet:
        click.echo(f"predicted {summary['n_units']} units with {result.model['name']} -> {path}")
        line = species_line(summary.get("species"))
        if line:
            click.echo(line)
        if summary.get("outside_cerebellar_cortex"):
            click.echo(
                f"{summary['outside_cerebellar_cortex']} units recorded outside the cerebellar cortex (their "
                "locations): labels withheld (--any-region labels them)"
            )
        for label, n in sorted(summary["label_counts"].items(), key=lambda kv: -kv[1]):
            click.echo(f"  {label:<18} {n}")
        rows = list(zip(result.predictions.status, result.predictions.reasons, strict=True))
        for line in reason_lines(
            [{"reason": str(r)} for s, r in rows if s == "unclassified"],
            [{"reason": str(r)} for s, r in rows if s == "not_classifiable"],
        ):
            click.echo(line)
        if "coverage" in summary:
            acc = summary["accuracy_of_classified"]
            n_out = summary["n_outside_classes"]
            click.echo(
                f"units with a true label: {summary['n_labelled']}, {summary['n_given_label']} labelled by the model; coverage "
                f"{summary['coverage']:.3f}, accuracy of classified {'-' if acc != acc else f'{acc:.3f}'}, "
                f"confidently wrong {summary['confidently_wrong']:.3f} (in-sample if these units trained the model)"
            )
            if n_out:
                n_given = summary["n_outside_classes_given_label"]
                click.echo(
                    f"  {n_out} of them are of a type none of the model's classes is; any label on one is "
                    f"wrong: {n_given} {'was' if n_given == 1 else 'were'} given one"
                )
            click.echo(
                "  right / units per class (unclassified counts as a miss): "
                + ", ".join(f"{c} {v['right']}/{v['n']}" for c, v in summary["per_class"].items())
                + f"; balanced recall {summary['balanced_accuracy_abstentions_as_misses']:.3f}"
            )
