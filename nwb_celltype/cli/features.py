"""``nwb-celltype features SOURCE --out FEATURES``: compute the C4 features of every unit of a
source and write them (with unit ids and the feature configuration) to a ``.npz`` file."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

log = logging.getLogger(__name__)


@click.command("features")
@click.argument("source")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Output .npz file.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Feature configuration JSON (default: C4 settings).",
)
@click.option("--batch-size", default=256, show_default=True, help="Units read and featurised at once.")
@click.option(
    "--c4-selection/--no-c4-selection",
    default=False,
    show_default=True,
    help="Apply C4's unit selection (10 s chunks, refractory/amplitude tests).",
)
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def features(
    source: str, out: str, config_path: str | None, batch_size: int, c4_selection: bool, overwrite: bool
) -> None:
    """Compute the features of every unit of SOURCE (path, URL or DANDI id) into OUT."""
    from dataclasses import replace

    from ..errors import OutputError
    from ..features import FeatureConfig, FeatureSet, extract_features, save_features
    from ..io import open_source, read_units

    out_path = Path(out)
    if out_path.suffix != ".npz":
        out_path = out_path.with_name(out_path.name + ".npz")
    if out_path.exists() and not overwrite:
        raise OutputError(f"{out_path} exists; pass --overwrite to replace it.")
    config = FeatureConfig()
    if config_path:
        config = FeatureConfig.from_dict(json.loads(Path(config_path).read_text()))
    if c4_selection:
        config = replace(config, c4_unit_selection=True)
    sets = []
    with open_source(source) as src:
        for batch in read_units(src, batch_size=batch_size, require_waveforms=False):
            sets.append(extract_features(batch, config, progress=True))
    fs = FeatureSet.concatenate(sets) if sets else None
    if fs is None:
        raise OutputError(f"{source} has no units: nothing to write.")
    path = save_features(out_path, fs)
    click.echo(f"wrote features of {len(fs)} units ({int(fs.usable.sum())} usable) to {path}")
