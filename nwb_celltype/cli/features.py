"""``nwb-celltype features SOURCE --out FEATURES``: compute the features of every unit of a source in
one feature family and write them (with unit ids and the feature configuration) to a ``.npz`` file."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from ._common import progress_bars, units_table_option, waveform_rate_line, waveform_rate_option

log = logging.getLogger(__name__)


def _model_family(model: str) -> tuple[str, dict]:
    """Family and feature configuration a bundle declares, read from its card (no torch import).
    A path that is not a bundle, or a card that is not one, gets the error ``predict --model`` gives."""
    from ..errors import ModelError
    from ..model.bundle import CARD_FILE, _bundle_dir, _read_card

    card = _read_card(_bundle_dir(model) / CARD_FILE)
    try:
        return str(card.get("feature_family", "c4-3d")), dict(card["feature_config"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelError(f"cannot read the feature family of model {model}: {exc}") from exc


@click.command("features")
@click.argument("source")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Output .npz file.")
@click.option(
    "--family",
    default=None,
    help="Feature family: acg-isi-wave (what the default model reads; the default) or c4-3d (C4's 3D "
    "ACG + waveform, for C4 models).",
)
@click.option(
    "--model",
    type=click.Path(exists=True),
    default=None,
    help="Compute the family and configuration this model bundle declares (overrides --family).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Feature configuration JSON of the family (default: the family's defaults).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Units read and featurised at once.",
)
@click.option(
    "--c4-selection/--no-c4-selection",
    default=False,
    show_default=True,
    help="c4-3d only: apply C4's unit selection (10 s chunks, refractory/amplitude tests).",
)
@units_table_option("read")
@waveform_rate_option()
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar; print nothing but errors.")
def features(
    source,
    out,
    family,
    model,
    config_path,
    batch_size,
    c4_selection,
    units_table,
    waveform_rate_hz,
    overwrite,
    quiet,
) -> None:
    """Compute the features of every unit of SOURCE (path, URL or DANDI id) into OUT. The waveforms'
    sampling rate (--waveform-rate where the file does not state it) is recorded in OUT where the
    family keeps source metadata (acg-isi-wave)."""
    from dataclasses import replace

    from ..errors import InvalidValueError, OutputError
    from ..features.families import DEFAULT_MODEL_FAMILY, get_family
    from ..io import open_source, read_units

    out_path = Path(out)
    if out_path.suffix != ".npz":
        out_path = out_path.with_name(out_path.name + ".npz")
    if out_path.exists() and not overwrite:
        raise OutputError(f"{out_path} exists; pass --overwrite to replace it.")
    config_dict = None
    if model:
        family, config_dict = _model_family(model)
    fam = get_family(family or DEFAULT_MODEL_FAMILY)
    if config_path:
        try:
            config_dict = json.loads(Path(config_path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidValueError(f"--config {config_path}: not a readable JSON file ({exc}).") from exc
        if not isinstance(config_dict, dict):
            raise InvalidValueError(f"--config {config_path}: expected a JSON object of settings.")
    config = fam.config_from_dict(config_dict) if config_dict is not None else fam.default_config()
    if c4_selection:
        if fam.name != "c4-3d":
            raise InvalidValueError("--c4-selection applies to the c4-3d family only (add --family c4-3d).")
        config = replace(config, c4_unit_selection=True)
    sets, rate, locations = [], {}, []
    with open_source(source) as src:
        # every unit gets a row: units without waveforms are classified from discharge alone
        for batch in read_units(
            src,
            batch_size=batch_size,
            require_waveforms=False,
            units_table=units_table,
            waveform_rate_hz=waveform_rate_hz,
        ):
            sets.append(fam.extract_features(batch, config, progress=progress_bars(quiet)))
            locations += [str(x) for x in (batch.extra or {}).get("locations", [""] * len(batch))]
            if batch.waveform_rate_hz is not None and not rate:
                rate = {"hz": batch.waveform_rate_hz, "source": batch.extra.get("waveform_rate_source", "")}
        species = src.species
    if not sets:
        raise OutputError(f"{source} has no units: nothing to write.")
    fs = fam.concatenate(sets)
    fam.note_species(fs, species)  # the file's Subject, for `predict`
    if rate and isinstance(getattr(fs, "meta", None), dict):
        fs.meta["waveform_rate"] = rate  # what the waveforms were read at, and who said so
    if any(locations) and isinstance(getattr(fs, "meta", None), dict):
        fs.meta["locations"] = locations  # each unit's electrode location, for `predict`'s location rule
    elif any(locations) and not quiet:
        click.echo(
            f"note: {fam.name} features files keep no unit locations, so `predict` cannot withhold the "
            "labels of units recorded outside the cerebellar cortex; annotate the NWB file for that"
        )
    path = fam.save_features(out_path, fs)
    if not quiet:
        click.echo(f"wrote {fam.name} features of {len(fs)} units ({int(fs.usable.sum())} usable) to {path}")
        if line := waveform_rate_line(rate):
            click.echo(line)
