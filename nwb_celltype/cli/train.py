"""``nwb-celltype train``: train a calibrated ensemble on a ground-truth library -> model bundle."""

from __future__ import annotations

import click


def _config_options(f):
    opts = [
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of everything random."),
        click.option(
            "--folds",
            type=click.IntRange(min=2),
            default=5,
            show_default=True,
            help="CV folds per ensemble repeat (at least 2).",
        ),
        click.option(
            "--repeats",
            type=click.IntRange(min=1),
            default=4,
            show_default=True,
            help="Repeats; members = folds x repeats.",
        ),
        click.option(
            "--vae-epochs",
            type=click.IntRange(min=0),
            default=30,
            show_default=True,
            help="VAE pre-training epochs.",
        ),
        click.option(
            "--head-epochs",
            type=click.IntRange(min=1),
            default=20,
            show_default=True,
            help="Epochs per member.",
        ),
        click.option(
            "--use-layer",
            type=click.Choice(["auto", "yes", "no"]),
            default="auto",
            show_default=True,
            help="Layer one-hot as input; auto = iff some labelled unit has a known layer.",
        ),
        click.option(
            "--finetune-encoders/--frozen-encoders",
            default=False,
            show_default=True,
            help="Fine-tune every member's encoders (C4) or share frozen pre-trained ones (fast inference).",
        ),
        click.option(
            "--floor-rule",
            type=click.Choice(["shared-budget", "per-label"]),
            default="shared-budget",
            show_default=True,
            help="acg-isi-wave: how the per-class confidence-ratio floors are fitted on the inner "
            "out-of-fold units: one budget of confidently wrong labels shared by all classes, or "
            "a share of each label's own units (stricter; the 1.2-1.3 rule). docs/validation.md.",
        ),
        click.option(
            "--max-confidently-wrong",
            type=click.FloatRange(0.0, 1.0),
            default=0.02,
            show_default=True,
            help="acg-isi-wave: the floors' budget, the fraction of inner out-of-fold units allowed "
            "to be confidently wrong (1 = no floors).",
        ),
        click.option(
            "--kernel-share",
            type=click.FloatRange(0.0, 1.0),
            default=None,
            help="acg-isi-wave: weight of the kernel members (logistic regression on random Fourier "
            "features) in each unit's probabilities, beside the neural members; 0 = neural members only "
            "(the 1.5 recipe). Default: the shipped model's recipe. docs/validation.md.",
        ),
        click.option(
            "--min-species-class-units",
            type=click.IntRange(0),
            default=5,
            show_default=True,
            help="acg-isi-wave: units of a species the model trains on get no label of a class that species "
            "gave it fewer labelled units of (0 = no such rule). docs/validation.md.",
        ),
        click.option(
            "--threads", type=click.IntRange(min=1), default=1, show_default=True, help="torch threads."
        ),
        click.option("--cache-dir", type=click.Path(), default=None, help="Feature cache folder."),
        click.option("--annotation", default=None, help="Ground-truth table name in every file."),
        click.option(
            "--progress/--no-progress",
            default=None,
            callback=_progress_default,
            help="Show progress bars (default: only where stderr is a terminal, not in a log file).",
        ),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def make_config(folds, repeats, vae_epochs, head_epochs, use_layer, finetune_encoders, threads):
    from ..model.training import TrainConfig

    return TrainConfig(
        folds=folds,
        repeats=repeats,
        vae_epochs=vae_epochs,
        head_epochs=head_epochs,
        use_layer={"auto": "auto", "yes": True, "no": False}[use_layer],
        finetune_encoders=finetune_encoders,
        n_threads=threads,
    )


#: Options that only one family reads (parameter names of :func:`_config_options`).
FAMILY_ONLY_OPTIONS = {
    "c4-3d": ("repeats", "vae_epochs", "head_epochs", "use_layer", "finetune_encoders"),
    "acg-isi-wave": ("floor_rule", "max_confidently_wrong", "kernel_share", "min_species_class_units"),
}


def resolve_family(family: str, library) -> str:
    """``auto``: acg-isi-wave when the library lists feature tables (they hold nothing else), else
    C4's c4-3d. Options of the other family given on the command line are named in a warning (they
    change nothing)."""
    family = _resolve_family(family, library)
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        unused = [
            "--" + name.replace("_", "-")
            for other, names in FAMILY_ONLY_OPTIONS.items()
            if other != family
            for name in names
            if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
        ]
        if unused:
            click.echo(
                f"warning: {', '.join(unused)} {'is' if len(unused) == 1 else 'are'} not read by the "
                f"{family} family this run uses; {'it changes' if len(unused) == 1 else 'they change'} nothing.",
                err=True,
            )
    return family


def _resolve_family(family: str, library) -> str:
    if family != "auto":
        return family
    from ..library.manifest import is_manifest_path, load_manifest

    if len(library) == 1 and is_manifest_path(library[0]):
        if any(e.is_tables for e in load_manifest(library[0]).entries):
            return "acg-isi-wave"
    return "c4-3d"


def _progress_default(ctx, param, value):
    """``--progress`` unset: bars only on a terminal, as annotate, features and report draw them."""
    from ._common import progress_bars

    return progress_bars(quiet=False) if value is None else value


def load_library(library, cache_dir, annotation, progress, family: str = "c4-3d"):
    from ..features.families import get_family
    from ..library import load_training_set

    src = library[0] if len(library) == 1 else list(library)
    config = get_family(family).default_config()
    return load_training_set(
        src, config=config, cache_dir=cache_dir, annotation_name=annotation, progress=progress
    )


def family_option(f):
    """``--family auto|acg-isi-wave|c4-3d`` (train, evaluate)."""
    return click.option(
        "--family",
        type=click.Choice(["auto", "acg-isi-wave", "c4-3d"]),
        default="auto",
        show_default=True,
        help="Feature family: acg-isi-wave (the real-data model: ACG/ISI to 100 ms + waveform; the only "
        "one feature tables allow) or c4-3d (C4's network on 3D ACGs; NWB files only). auto = "
        "acg-isi-wave if the manifest lists feature tables, else c4-3d.",
    )(f)


def make_real_config(
    folds: int,
    seed: int,
    threads: int,
    *,
    floor_rule: str,
    max_confidently_wrong: float,
    kernel_share: float | None = None,
    min_species_class_units: int = 5,
):
    """The acg-isi-wave model's settings from the shared options (the rest: the shipped model's)."""
    from ..model.real_networks import RealModelConfig

    return RealModelConfig(
        folds=folds,
        seed=seed,
        n_threads=threads,
        floor_rule=floor_rule,
        max_confidently_wrong=max_confidently_wrong,
        min_species_class_units=min_species_class_units,
        **({} if kernel_share is None else {"kernel_share": kernel_share}),
    )


@click.command()
@click.argument("library", nargs=-1, required=True)
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(),
    help="Bundle directory to write (new, empty, or holding an earlier bundle only).",
)
@click.option("--name", default="nwb-celltype-model", show_default=True, help="Model name (model card).")
@click.option("--model-version", default="0.1.0", show_default=True, help="Model version (model card).")
@click.option("--description", default="", help="Free text stored in the model card.")
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace an existing bundle in --out (swapped for the new one once complete).",
)
@family_option
@_config_options
def train(
    library,
    out,
    name,
    model_version,
    description,
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
    """Train a model bundle on LIBRARY (a manifest, or NWB files / URLs / DANDI ids with ground-truth
    labels; unlabelled units pre-train the autoencoders). Manifests with feature tables train the
    real-data family (acg-isi-wave); --repeats/--vae-epochs/--head-epochs/--use-layer/--finetune-encoders
    apply to c4-3d only, --floor-rule/--max-confidently-wrong/--kernel-share/--min-species-class-units to
    acg-isi-wave only."""
    from ..model import save_bundle, train_model
    from ..model.bundle import check_bundle_folder
    from ..model.evaluation_report import score_text

    check_bundle_folder(out, overwrite=overwrite)  # before the (long) training
    family = resolve_family(family, library)
    ts = load_library(library, cache_dir, annotation, progress, family)
    if family == "acg-isi-wave":
        from ..model.discharge_bundle import train_discharge_model

        bundle = train_discharge_model(
            ts,
            config=make_real_config(
                folds,
                seed,
                threads,
                floor_rule=floor_rule,
                max_confidently_wrong=max_confidently_wrong,
                kernel_share=kernel_share,
                min_species_class_units=min_species_class_units,
            ),
            name=name,
            version=model_version,
            description=description,
        )
        path = save_bundle(bundle, out, overwrite=overwrite)
        click.echo(
            f"wrote {path} ({bundle.n_members} members, family acg-isi-wave, sha256 {bundle.sha256[:12]}); "
            "evaluate the procedure with `nwb-celltype evaluate` (docs/validation.md)"
        )
        return
    cfg = make_config(folds, repeats, vae_epochs, head_epochs, use_layer, finetune_encoders, threads)
    bundle = train_model(
        ts,
        config=cfg,
        seed=seed,
        progress=progress,
        name=name,
        version=model_version,
        description=description,
    )
    path = save_bundle(bundle, out, overwrite=overwrite)
    m = bundle.card["metrics"]["cross_validated"]
    click.echo(
        f"wrote {path} ({bundle.n_members} members, layer={bundle.uses_layer}, sha256 {bundle.sha256[:12]}); "
        f"cross-validated balanced accuracy {score_text(m['balanced_accuracy'])} at threshold {m['threshold']:g} "
        f"({m['fraction_classified']:.0%} classified)"
    )
