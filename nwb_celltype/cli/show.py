"""``nwb-celltype show``: print the cell-type annotations of an NWB file."""

from __future__ import annotations

import click

from ._common import print_json


@click.command()
@click.argument("path", type=click.Path())
@click.option("--table", default=None, help="Show only this annotation table.")
@click.option(
    "--max-units",
    "--max-rows",
    "max_rows",
    type=click.IntRange(min=0),
    default=None,
    help="At most this many unit rows per table (--max-units, as in report); with --json, the first "
    "this many units of each table (its n_units is the table's total).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the tables as JSON.")
@click.option(
    "--agreement",
    "only_agreement",
    is_flag=True,
    help="Print only each prediction table's agreement with the file's ground-truth or expert labels "
    "(with --json: a list of objects, empty when the file holds no such labels).",
)
def show(path, table, max_rows, as_json, only_agreement):
    """Print the annotation tables of PATH: label counts, then one row per unit (label, status,
    confidence, class probabilities, reason). Where the file also holds ground-truth or expert
    labels, each prediction table's agreement with them follows (unclassified units count as
    misses; in Python: nwb_celltype.agreements_in_file)."""
    from ..agreement import agreements, format_agreement, no_agreement_reason
    from ..errors import InvalidValueError
    from ..inspect_file import format_annotations, load_annotations

    records = load_annotations(path)
    if table is not None and table not in records:  # an error in every mode (--json, --agreement)
        held = f"the file has {sorted(records)}" if records else "the file holds no cell-type annotations"
        raise InvalidValueError(f"no annotation table {table!r}; {held}")
    agreed = [a for a in agreements(records) if table is None or table in (a.prediction, a.reference)]
    if only_agreement:
        if as_json:
            print_json([a.to_dict() for a in agreed])
        else:
            for a in agreed:
                click.echo(f"== {a.prediction}: " + format_agreement(a))
            if not agreed:
                click.echo(no_agreement_reason(records))
        return
    if as_json:
        rows = slice(None, max_rows)  # the first max_rows units of each table, as the text prints
        print_json(
            {
                name: {
                    "classes": list(r.classes),
                    "n_units": len(r.labels),
                    "unit_ids": r.unit_ids[rows].tolist(),
                    "labels": [str(x) for x in r.labels[rows]],
                    "status": [str(x) for x in r.status[rows]],
                    "kinds": [str(x) for x in r.kinds[rows]],
                    "reasons": [str(x) for x in r.reasons[rows]],
                    "confidence": None if r.confidence is None else r.confidence[rows].tolist(),
                    "probabilities": None if r.probabilities is None else r.probabilities[rows].tolist(),
                    "classifier": r.classifier,
                }
                for name, r in records.items()
                if table is None or name == table
            }
        )
    else:
        click.echo(format_annotations(records, table=table, max_rows=max_rows))
        for a in agreed:
            click.echo(f"== {a.prediction}: " + format_agreement(a))
