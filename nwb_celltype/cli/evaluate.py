"""``nwb-celltype evaluate``: cross-validate the training procedure on a library; JSON + PNG out."""

from __future__ import annotations

import click

from ._common import overwrite_option, refuse_existing
from .train import _config_options, family_option, load_library, make_config, make_real_config, resolve_family


@click.command()
@click.argument("library", nargs=-1, required=True)
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(),
    help="Folder for evaluation.json + figures (new, empty, or holding an earlier evaluation only).",
)
@click.option(
    "--outer-folds",
    "outer_folds",
    type=click.IntRange(min=2),
    default=5,
    show_default=True,
    help="Outer CV folds (at least 2).",
)
@click.option("--leave-one-out", is_flag=True, help="Leave-one-out outer CV (one ensemble per unit: slow).")
@click.option("--test", "test", multiple=True, help="Separate test library (e.g. another species).")
@click.option("--threshold", type=float, default=2.0, show_default=True, help="Confidence-ratio threshold.")
@click.option("--no-baselines", is_flag=True, help="Skip logistic-regression and rule baselines.")
@overwrite_option("an earlier evaluation in --out (swapped for the new one once complete)")
@family_option
@_config_options
def evaluate(
    library,
    out,
    outer_folds,
    leave_one_out,
    test,
    threshold,
    no_baselines,
    overwrite,
    family,
    seed,
    folds,
    repeats,
    vae_epochs,
    head_epochs,
    use_layer,
    finetune_encoders,
    floor_rule,
    max_confidently_wrong,
    kernel_share,
    min_species_class_units,
    threads,
    cache_dir,
    annotation,
    progress,
):
    """Evaluate the classifier on LIBRARY by stratified cross-validation (--outer-folds K) or
    leave-one-out, or train on LIBRARY and test on --test; writes evaluation.json and PNG figures.
    (--folds / --repeats set each trained ensemble's inner folds.) Abstentions (below the threshold
    or the model's floor for the label, out of distribution, members disagreeing) count as misses in the per-class recall; baselines run
    on the same folds.
    Manifests with feature tables evaluate the real-data family (acg-isi-wave): each fold's model
    never sees the held-out units, not even unlabelled; the options --repeats, --vae-epochs,
    --head-epochs, --use-layer and --finetune-encoders apply to c4-3d only, --floor-rule,
    --max-confidently-wrong, --kernel-share and --min-species-class-units to acg-isi-wave only."""
    from .._atomic import check_folder
    from ..model import evaluate_model
    from ..model.evaluation_report import EVALUATION_FILES

    # before the (long) evaluation: the folder is replaced whole, so a user's files in it are refused
    # (first: --overwrite would not help with those)
    check_folder(out, replace=True, owned=EVALUATION_FILES, what="an evaluation")
    refuse_existing(out, overwrite)
    family = resolve_family(family, library)
    if family == "acg-isi-wave":
        cfg = make_real_config(
            folds,
            seed,
            threads,
            floor_rule=floor_rule,
            max_confidently_wrong=max_confidently_wrong,
            kernel_share=kernel_share,
            min_species_class_units=min_species_class_units,
        )
    else:
        cfg = make_config(folds, repeats, vae_epochs, head_epochs, use_layer, finetune_encoders, threads)
    ts = load_library(library, cache_dir, annotation, progress, family)
    test_set = load_library(test, cache_dir, annotation, progress, family) if test else None
    rep = evaluate_model(
        ts,
        folds=outer_folds,
        leave_one_out=leave_one_out,
        test_set=test_set,
        config=cfg,
        seed=seed,
        threshold=threshold,
        baselines=not no_baselines,
        progress=progress,
    )
    paths = rep.write(out)
    click.echo(rep.summary())
    click.echo(f"wrote {len(paths)} files to {out}")
