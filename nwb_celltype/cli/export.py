"""``nwb-celltype export``: the labels of an annotated NWB file for other tools (phy, any TSV reader)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--phy",
    "phy_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="phy folder: write cluster_<FIELD>.tsv there (phy shows it as a FIELD column).",
)
@click.option(
    "--field",
    default="celltype",
    show_default=True,
    help="phy field (column) name, a plain identifier; the file is cluster_<FIELD>.tsv. Give each "
    "model its own (e.g. celltype_demo) so that a second model's export keeps the first's (--phy).",
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
    help="Units column holding phy's cluster ids (--phy). Default: unit_name where its values are "
    "distinct integers (NeuroConv's and SpikeInterface's exports keep the sorter's ids there, and "
    "the SpikeInterface bridge matches on them), else the NWB unit ids, as export_phy's "
    "cluster_ids='auto'; in a phy folder written by SpikeInterface's export_to_phy, the cluster of "
    "each unit's unit_name (else NWB unit id) in its cluster_si_unit_ids.tsv. 'id': the NWB unit ids.",
)
@click.option("--overwrite", is_flag=True, help="Replace files that exist.")
def export(path, phy_dir, field, tsv_path, table, id_column, overwrite):
    """Export the cell types of the annotated NWB file PATH: phy's cluster_<FIELD>.tsv (--phy) and/or
    a TSV of the whole annotation table (--tsv). Both outputs are checked before either is written
    (neither may be PATH itself, through a link or not, even with --overwrite), and a failed --tsv
    write removes (or restores) the --phy file written before it; a signal after the --tsv file is
    in place leaves both."""
    from .._atomic import Interrupted, atomic_write
    from .._output_paths import check_output_path
    from ..bridges import annotations_dataframe
    from ..errors import InvalidValueError, OutputError
    from ..phy import (
        auto_cluster_ids,
        check_phy_field,
        drop_unmatched,
        export_phy,
        phy_file,
        unit_column,
    )

    if phy_dir is None and tsv_path is None:
        raise InvalidValueError("nothing to export: give --phy DIR and/or --tsv FILE")
    if phy_dir is None and field != "celltype":
        raise InvalidValueError("--field names phy's column: give --phy DIR")
    check_phy_field(field)
    df = annotations_dataframe(path, table=table)
    phy_out = None if phy_dir is None else phy_file(phy_dir, field)
    tsv_out = None if tsv_path is None else Path(tsv_path)
    for out, option in ((phy_out, "--phy"), (tsv_out, "--tsv")):  # both checked before either is written
        if out is not None:
            check_output_path(out, overwrite, inputs=(path,), option=option)  # never over PATH
    if phy_out is not None and tsv_out is not None and _same_file(phy_out, tsv_out):
        raise OutputError(f"--phy and --tsv name the same file ({tsv_out}); give two different files")
    about = f"table {df.attrs['table']}{_model_of(df)}"
    old_phy = None
    if phy_out is not None:
        units_table = df.attrs["units_table"]
        if id_column == "id":
            ids, source = None, "the NWB unit ids"
        elif id_column:
            ids, source = unit_column(path, id_column, units_table), f"Units column {id_column}"
        else:  # export_phy's default ("auto"), found once here and named in the output line
            ids, source, unmatched = auto_cluster_ids(df, phy_dir, field, "--id-column id")
        old_phy = phy_out.read_bytes() if phy_out.is_file() else None
        phy_df = df if id_column else drop_unmatched(df, unmatched)
        written = export_phy(phy_df, phy_dir, cluster_ids=ids, field=field, overwrite=overwrite)
        click.echo(
            f"phy labels: {written} (field {field}, {len(phy_df)} clusters, cluster ids from {source}, {about})"
        )
    if tsv_out is not None:
        try:
            with atomic_write(tsv_out, replace=overwrite, tag="tmp.tsv") as tmp:  # complete or not at all
                df.to_csv(tmp, sep="\t")
        except BaseException as exc:
            # a signal once the TSV is in place (Interrupted naming it): both outputs are complete
            done = isinstance(exc, Interrupted) and exc.written is not None
            if phy_out is not None and not done:
                _undo(phy_out, old_phy, exc)
            raise
        click.echo(f"annotation table: {tsv_out} ({len(df)} units, {about})")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _model_of(df) -> str:
    """', model NAME VERSION, threshold T' for the table's classifier, as far as it is recorded."""
    clf = df.attrs.get("classifier") or {}
    params = clf.get("parameters") or {}
    name = params.get("model_name") or clf.get("description") or clf.get("name")
    if not name:
        return ""
    version = clf.get("version")
    text = f", model {name}" + (f" {version}" if version and str(version) not in str(name) else "")
    threshold = clf.get("threshold")
    return text + ("" if threshold is None else f", threshold {threshold:g}")


def _undo(phy_out: Path, old: bytes | None, exc: BaseException) -> None:
    """After a failed --tsv write, take back the --phy file written before it (remove it, or put
    the file it replaced back), so that nothing is written; say so where that fails too."""
    from .._atomic import atomic_write
    from ..errors import OutputError

    try:
        if old is None:
            phy_out.unlink(missing_ok=True)
        else:
            with atomic_write(phy_out, replace=True, tag="tmp.tsv") as tmp:
                tmp.write_bytes(old)
    except Exception as undo:  # the TSV's own error still explains what failed; add what is left
        raise OutputError(
            f"{exc} But {phy_out}, written before it, could not be {'removed' if old is None else 'restored'} "
            f"({undo}): it holds this export's phy labels."
        ) from exc
