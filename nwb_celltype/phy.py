"""phy's view of the labels: ``cluster_<field>.tsv`` (cluster id and label, tab-separated), the
cluster-metadata file phy shows as a column and any sorter GUI reading TSV loads; which cluster ids
it uses (the sorter's, kept in the Units column ``unit_name``, or another column's, or the NWB unit
ids); and the field names phy keeps for itself.

``nwb-celltype export --phy`` is the command-line face of :func:`export_phy`. The annotations are
read as :func:`nwb_celltype.bridges.annotations_dataframe` reads them.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ._atomic_files import write_text_file
from .bridges import _read_column, annotations_dataframe
from .errors import InvalidValueError

logger = logging.getLogger(__name__)

__all__ = [
    "RESERVED_PHY_FIELDS",
    "SPIKEINTERFACE_IDS_FILE",
    "auto_cluster_ids",
    "check_phy_field",
    "default_cluster_ids",
    "describe_cluster_ids",
    "export_phy",
    "phy_file",
    "spikeinterface_cluster_ids",
    "unit_column",
]


def unit_column(path: str | os.PathLike, column: str, units_table: str = "/units") -> dict[int, object]:
    """Unit id -> value of one 1-D column of a Units table of an NWB file (e.g. the sorter's cluster
    id); ``units_table``: the table's path (an annotation's ``units_table``)."""
    read = _read_column(path, units_table, column)
    if read is None:
        import h5py

        with h5py.File(path, "r") as f:
            units = f.get(units_table)
            have = [] if units is None else sorted(k for k in units if isinstance(units[k], h5py.Dataset))
        raise InvalidValueError(
            f"the Units table {units_table} of {path} has no column {column!r}; it has {have}"
        )
    ids, values = read
    if values.shape != ids.shape:
        raise InvalidValueError(f"Units column {column!r} is not one value per unit (shape {values.shape})")
    return {
        int(i): v.decode("utf-8") if isinstance(v, bytes) else np.asarray(v).item()
        for i, v in zip(ids, values, strict=True)
    }


def _check_cluster_ids(ids: np.ndarray) -> None:
    """phy's cluster ids are one distinct integer per cluster: refuse a column that is not that."""
    bad, ints = [], []
    for v in ids:
        try:
            f = float(v)
        except (TypeError, ValueError):
            f = None
        if isinstance(v, bool) or f is None or not f.is_integer():
            bad.append(v)
        else:
            ints.append(int(f))
    if bad:
        raise InvalidValueError(
            f"cluster ids must be integers (phy's cluster_id); the id column holds {bad[:5]}. Name a "
            "column of the sorter's cluster ids (e.g. cluster_id)."
        )
    values, counts = np.unique(np.array(ints), return_counts=True)
    if (counts > 1).any():
        raise InvalidValueError(
            f"cluster ids repeat ({values[counts > 1][:5].tolist()}): one per cluster is needed. Name a "
            "column of the sorter's cluster ids (e.g. cluster_id)."
        )


#: phy field names that are not free for labels: the file phy keeps its curation in (good / mua /
#: noise), the summary phy rewrites when it saves, and the id column itself.
RESERVED_PHY_FIELDS: dict[str, str] = {
    "group": "cluster_group.tsv holds phy's curation (good, mua, noise)",
    "info": "cluster_info.tsv is phy's own summary, rewritten when phy saves",
    "id": "it is the id column",
    "cluster_id": "it is the id column",
}


def check_phy_field(field: str) -> str:
    """Refuse a phy field name that is not a plain identifier (letters, digits and '_', not starting
    with a digit: phy reads it from the file name ``cluster_<field>.tsv``) or that is one of phy's
    own (:data:`RESERVED_PHY_FIELDS`). Returns ``field``."""
    if not isinstance(field, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", field):
        raise InvalidValueError(
            f"phy field {field!r} is not a plain identifier (letters, digits and '_', not starting with a "
            "digit): phy reads it from the file name cluster_<field>.tsv"
        )
    if field.lower() in RESERVED_PHY_FIELDS:
        raise InvalidValueError(
            f"phy field {field!r} is phy's own ({RESERVED_PHY_FIELDS[field.lower()]}); choose another, "
            "e.g. celltype_<model>"
        )
    return field


def default_cluster_ids(df) -> dict[int, int] | None:
    """The cluster ids phy should get by default for the annotations ``df``
    (:func:`~nwb_celltype.bridges.annotations_dataframe`): where the annotated Units table has a ``unit_name`` column whose
    values are all distinct non-negative integers written as text (NeuroConv's and SpikeInterface's
    exports keep the sorter's cluster id there, and :func:`~nwb_celltype.bridges.set_spikeinterface_properties` matches on
    it), unit id -> that integer; otherwise None (the NWB unit ids)."""
    if "unit_name" not in df or not len(df):
        return None
    names = [str(v) for v in df["unit_name"]]
    if not all(re.fullmatch(r"[0-9]+", n) for n in names):
        return None
    values = [int(n) for n in names]
    if len(set(values)) < len(values) or df.index.has_duplicates:
        return None
    return {int(i): v for i, v in zip(df.index, values, strict=True)}


#: The file SpikeInterface's ``export_to_phy`` writes beside phy's own: phy's cluster id (0..n-1, in
#: the order of the sorting's non-empty units) and the SpikeInterface unit id it stands for.
SPIKEINTERFACE_IDS_FILE = "cluster_si_unit_ids.tsv"


def spikeinterface_cluster_ids(folder: str | os.PathLike) -> dict[int | str, int] | None:
    """SpikeInterface unit id (:func:`id_key`: an integer where it is one, else its text) -> phy
    cluster id, from the ``cluster_si_unit_ids.tsv`` that SpikeInterface's ``export_to_phy`` writes
    in ``folder``; None where the folder has none."""
    import csv

    path = Path(folder) / SPIKEINTERFACE_IDS_FILE
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if not rows or not {"cluster_id", "si_unit_id"} <= set(rows[0]):
        raise InvalidValueError(
            f"{path} is not SpikeInterface's map of phy cluster ids (columns cluster_id and si_unit_id); "
            "remove it or export the phy folder again with spikeinterface's export_to_phy"
        )
    ids = [str(r["cluster_id"]).strip() for r in rows]
    bad = [c for c in ids if not re.fullmatch(r"[0-9]+", c)]
    if bad or len(set(ids)) < len(ids):
        what = f"holds {bad[:5]}" if bad else "repeats ids"
        raise InvalidValueError(
            f"{path}: its cluster_id column {what}, where phy's cluster ids are distinct integers; export "
            "the phy folder again with spikeinterface's export_to_phy"
        )
    return {id_key(r["si_unit_id"]): int(c) for r, c in zip(rows, ids, strict=True)}


def id_key(value):
    """A unit id as a lookup key: an integer for any integral number however it is held (3, 3.0,
    numpy's, the text "3"), else its text; so that a mapping's keys, a DataFrame's ids and a TSV's
    text meet."""
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    text = str(value).strip()
    return int(text) if re.fullmatch(r"-?[0-9]+", text) else text


def auto_cluster_ids(df, out: str | os.PathLike, field: str = "celltype", nwb_ids: str = "cluster_ids=None"):
    """The cluster ids of ``cluster_ids="auto"`` for the annotations ``df`` written to ``out``:
    ``(ids, source, unmatched)``. Where the phy folder was written by SpikeInterface's
    ``export_to_phy`` (:data:`SPIKEINTERFACE_IDS_FILE`: phy's clusters are 0..n-1 there, the
    SpikeInterface unit ids are beside them), each unit's SpikeInterface id (its ``unit_name``, else
    its unit id) is looked up there, and ``unmatched`` lists the unit ids it has no cluster of
    (``export_to_phy`` leaves out units without spikes); otherwise :func:`default_cluster_ids`, and
    ``source`` is :func:`describe_cluster_ids` (``nwb_ids``: how the caller asks for the NWB ids)."""
    si_ids = spikeinterface_cluster_ids(phy_file(out, field).parent)
    if si_ids is None:
        ids = default_cluster_ids(df)
        return ids, describe_cluster_ids(ids, nwb_ids), []
    # unit_name where the table has it (NeuroConv keeps the sorter's ids there), else the NWB unit
    # ids; not one after the other: small NWB ids would meet another sorting's ids by chance
    what = "unit_name" if "unit_name" in df else "unit id"
    keys = [id_key(v) for v in (df["unit_name"] if what == "unit_name" else df.index)]
    ids = {u: si_ids[k] for u, k in zip(df.index, keys, strict=True) if k in si_ids}
    if not ids:
        raise InvalidValueError(
            f"the phy folder's {SPIKEINTERFACE_IDS_FILE} (SpikeInterface's export_to_phy) names SpikeInterface "
            f"units {list(si_ids)[:5]}, and none is a unit of the annotations (their {what}s: {keys[:5]}): "
            "this phy folder holds another sorting's clusters; give the phy folder of the annotated sorting, "
            "or the ids with --id-column"
        )
    unmatched = [u for u in df.index if u not in ids]
    return ids, f"SpikeInterface's {SPIKEINTERFACE_IDS_FILE} (each unit's {what} as si_unit_id)", unmatched


def describe_cluster_ids(auto: dict[int, int] | None, nwb_ids: str = "cluster_ids=None") -> str:
    """Where the default cluster ids (:func:`default_cluster_ids`) come from: whether unit_name's
    integers differ from the NWB unit ids, and how to ask for those (``nwb_ids``, the caller's way)."""
    if auto is None:
        return "the NWB unit ids"
    differ = [(u, c) for u, c in auto.items() if u != c]
    if not differ:
        return "Units column unit_name (the sorter's ids, the same as the NWB unit ids)"
    u, c = differ[0]
    return (
        f"Units column unit_name (the sorter's ids, not the NWB unit ids: e.g. unit id {u} is cluster {c}; "
        f"{nwb_ids} for the NWB unit ids)"
    )


def drop_unmatched(df, unmatched: list):
    """``df`` without the units that have no cluster in a SpikeInterface phy folder
    (:func:`auto_cluster_ids`), with a warning naming them."""
    if not unmatched:
        return df
    logger.warning(
        "%d annotated units have no cluster in the phy folder's %s (SpikeInterface's export_to_phy leaves "
        "out units without spikes): unit ids %s%s, not written",
        len(unmatched),
        SPIKEINTERFACE_IDS_FILE,
        [u.item() if hasattr(u, "item") else u for u in unmatched[:5]],
        " ..." if len(unmatched) > 5 else "",
    )
    return df.drop(index=unmatched)


def phy_file(out: str | os.PathLike, field: str = "celltype") -> Path:
    """The file :func:`export_phy` writes for ``out``: ``out`` itself where it ends in ``.tsv``, else
    ``out/cluster_<field>.tsv``."""
    out = Path(out)
    return out if out.suffix == ".tsv" else out / f"cluster_{field}.tsv"


def export_phy(
    annotations,
    out: str | os.PathLike,
    *,
    table: str | None = None,
    cluster_ids: Mapping | str | None = "auto",
    field: str = "celltype",
    overwrite: bool = False,
) -> Path:
    """Write the labels as a phy cluster-metadata file (``cluster_<field>.tsv``: ``cluster_id``
    and the label, tab-separated), which phy shows as a column and which any sorter GUI reading
    TSV loads.

    Parameters
    ----------
    annotations
        As for :func:`~nwb_celltype.bridges.annotations_dataframe`.
    out : path
        The phy folder (the file goes to ``out/cluster_<field>.tsv``) or a ``.tsv`` file path.
    cluster_ids : "auto", None or mapping unit id -> cluster id
        "auto" (the default, as ``nwb-celltype export --phy``): in a phy folder written by
        SpikeInterface's ``export_to_phy``, the cluster its ``cluster_si_unit_ids.tsv`` gives each
        unit's ``unit_name`` (else NWB unit id), leaving out units it has none for
        (:func:`auto_cluster_ids`); elsewhere the integers of the Units column
        ``unit_name`` where they are distinct (:func:`default_cluster_ids`: the sorter's ids, which
        :func:`~nwb_celltype.bridges.set_spikeinterface_properties` matches on), else the NWB unit ids; logged at INFO
        (:func:`describe_cluster_ids`). Annotations given as :func:`~nwb_celltype.nwb.read_annotations`
        records, or a DataFrame without ``unit_name``, have no such column: the NWB unit ids. None:
        the NWB unit ids. A mapping: another column's ids (:func:`unit_column`), keyed by unit id (an
        integer, or its text). Unit ids written as they are must be integers (a DataFrame's text
        ids, e.g. ``classify_sorting``'s, are refused).
    field : str
        Column name phy shows: a plain identifier (:func:`check_phy_field`); another field (e.g. one
        per model) keeps another model's file.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path of the file written.
    """
    check_phy_field(field)
    df = annotations_dataframe(annotations, table=table)
    path = phy_file(out, field)
    from ._output_paths import check_output_path

    # never over the annotated file it reads, even with overwrite
    inputs = (annotations,) if isinstance(annotations, (str, os.PathLike)) else ()
    check_output_path(path, overwrite, inputs=inputs, option="out")
    if isinstance(cluster_ids, str):
        if cluster_ids != "auto":
            raise InvalidValueError(
                f"cluster_ids must be 'auto', None or a mapping, got {cluster_ids!r}; for the ids of another "
                "Units column pass cluster_ids=unit_column(path, NAME)"
            )
        cluster_ids, source, unmatched = auto_cluster_ids(df, out, field)
        logger.info("phy cluster ids from %s", source)
        df = drop_unmatched(df, unmatched)
    ids = df.index.to_numpy()
    values, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():  # rows sharing a unit id would give one cluster contradictory labels
        raise InvalidValueError(
            f"the annotated Units table's ids repeat ({values[counts > 1][:5].tolist()}): phy needs one "
            "row per cluster, and rows sharing a unit id cannot be told apart there (nor mapped to "
            "cluster ids by --id-column). Give the file's units distinct ids (the sorter's cluster ids) "
            "and annotate again, or export the whole table with --tsv (its units_row tells the rows apart)."
        )
    if cluster_ids is not None:  # keyed by unit id, as a number or as text (id_key)
        lookup = {id_key(k): v for k, v in cluster_ids.items()}
        missing = [i.item() if hasattr(i, "item") else i for i in ids if id_key(i) not in lookup]
        if missing:
            raise InvalidValueError(f"no cluster id for unit ids {missing[:10]}")
        ids = np.array([lookup[id_key(i)] for i in ids], dtype=object)
    _check_cluster_ids(ids)  # the unit ids themselves too (a DataFrame's may be text)
    lines = [f"cluster_id\t{field}"]
    lines += [f"{cid}\t{label}" for cid, label in zip(ids, df["cell_type"], strict=True)]
    return write_text_file(path, "\n".join(lines) + "\n", replace=overwrite)
