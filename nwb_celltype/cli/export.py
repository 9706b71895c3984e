"""``nwb-celltype export``: the labels of an annotated NWB file for other tools (phy, any TSV reader)."""

from __future__ import annotations

import click


@click.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--phy",
    "phy_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="phy folder: write cluster_celltype.tsv there (phy shows it as a 'celltype' column).",
)
@click.option(
    "--tsv",
    "tsv_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the whole annotation table (one row per unit id: label, status, reason, "
    "probability, confidence, per-class probabilities and votes) as TSV here.",
)
@click.option(
    "--table", default=None, help="Annotation table (default: the one in the plain cell_type column)."
)
@click.option(
    "--id-column",
    default=None,
    help="Units column holding the sorter's cluster ids, when they are not the NWB unit ids (--phy).",
)
@click.option("--overwrite", is_flag=True, help="Replace files that exist.")
def export(path, phy_dir, tsv_path, table, id_column, overwrite):
    """Export the cell types of the annotated NWB file PATH: phy's cluster_celltype.tsv (--phy) and/or
    a TSV of the whole annotation table (--tsv)."""
    from pathlib import Path

    from ..bridges import annotations_dataframe, export_phy, unit_column
    from ..errors import InvalidValueError, OutputError

    if phy_dir is None and tsv_path is None:
        raise InvalidValueError("nothing to export: give --phy DIR and/or --tsv FILE")
    df = annotations_dataframe(path, table=table)
    if tsv_path is not None and Path(tsv_path).exists() and not overwrite:  # both outputs checked first
        raise OutputError(f"{tsv_path} exists; pass --overwrite to replace it")
    if phy_dir is not None:
        ids = unit_column(path, id_column, df.attrs["units_table"]) if id_column else None
        written = export_phy(df, phy_dir, cluster_ids=ids, overwrite=overwrite)
        click.echo(f"phy labels: {written} ({len(df)} clusters, table {df.attrs['table']})")
    if tsv_path is not None:
        out = Path(tsv_path)
        from .._atomic import atomic_write

        with atomic_write(out, replace=overwrite) as tmp:  # complete or not at all
            df.to_csv(tmp, sep="\t")
        click.echo(f"annotation table: {out} ({len(df)} units, table {df.attrs['table']})")
