"""What the output folder of a whole-dandiset run may hold: the summary rows kept from earlier runs
for assets outside this run's selection, the earlier derived file a failed asset keeps, and the
sweep that removes any derived file that no row accounts for."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..errors import InvalidValueError
from .state import RunState, derived_asset_path, output_intact, prune_folders, remove_outputs

logger = logging.getLogger(__name__)

_STATUSES = ("done", "skipped", "failed")
#: what a failed record keeps of the earlier record whose derived file it keeps (``earlier_output``).
EARLIER_OUTPUT_KEYS = ("output", "output_size", "asset_id", "model_sha256", "run_id", "finished")


def earlier_output(record: dict | None, output: str, asset_id: str, out_dir: Path) -> dict | None:
    """The earlier derived file that an asset's ``failed`` outcome keeps instead of removing, as
    its failed record's ``earlier_output`` (:data:`EARLIER_OUTPUT_KEYS`); None where it keeps none.

    A failure (possibly transient: the network, after all retries) says nothing against a good
    earlier result, so that file is kept when the asset's current record (read just before the
    failed one replaces it) is ``done`` for the same asset id, or is ``failed`` and itself kept
    one, and the file is at ``output`` (the current derived name; files under former names go as
    before) with the size that record states (:func:`output_intact`).

    Parameters
    ----------
    record : dict or None
        The asset's record on disk now.
    output : str
        The derived path the current naming gives the asset.
    asset_id : str
        The asset id this run annotated: a file derived from other content is stale, not kept.
    out_dir : Path
        The output folder.
    """
    if not isinstance(record, dict) or record.get("asset_id") != asset_id:
        return None
    if record.get("status") == "done":
        kept = {k: record.get(k) for k in EARLIER_OUTPUT_KEYS}
    elif record.get("status") == "failed" and isinstance(record.get("earlier_output"), dict):
        kept = {k: record["earlier_output"].get(k) for k in EARLIER_OUTPUT_KEYS}  # carried forward
    else:
        return None
    if kept["asset_id"] != asset_id or kept["output"] != output or not output_intact(kept, out_dir):
        return None
    return kept


def kept_records(
    state: RunState, selected: set[str], listing: dict[str, Any], ds_id: str, version: str
) -> list[dict]:
    """The records of assets outside this run's selection (another ``--include``, or no longer
    listed), as earlier runs left them, marked ``selected`` False and ``this_run`` False with a
    ``note`` saying which run they come from and whether they are still current.

    Parameters
    ----------
    state : RunState
        The output folder's state.
    selected : set of str
        Paths of the assets this run selected (their rows come from this run's records).
    listing : dict
        Every NWB asset the dandiset lists now, by path (``AssetInfo``).
    ds_id, version : str
        The dandiset and version this run listed.
    """
    kept = []
    for rec in state.iter_records():
        path = rec.get("path")
        if not isinstance(path, str) or path in selected or rec.get("status") not in _STATUSES:
            continue
        note = _kept_note(rec, listing.get(path), state.out_dir, ds_id, version)
        kept.append({**rec, "this_run": False, "selected": False, "note": note})
    return kept


def _kept_note(rec: dict, current: Any, out_dir: Path, ds_id: str, version: str) -> str:
    note = f"outside this run's selection: row of an earlier run ({rec.get('run_id')})"
    if rec.get("dandiset_id") != ds_id:
        note += f" of dandiset {rec.get('dandiset_id')}"
    elif current is None:
        note += f"; the asset is not in {ds_id}@{version}"
    elif current.asset_id != rec.get("asset_id") or str(getattr(current, "version", None) or version) != str(
        rec.get("version")
    ):
        note += f"; the asset has changed since (now {current.asset_id}): rerun with --include to update it"
    if rec.get("status") == "done" and not output_intact(rec, out_dir):
        note += "; its derived file is missing or changed"
    earlier = rec.get("earlier_output")
    if rec.get("status") == "failed" and earlier is not None and not output_intact(earlier, out_dir):
        note += "; the earlier derived file it kept is missing or changed"
    return note


def sweep_outputs(out_dir: Path, rows: list[dict], state: RunState | None = None) -> None:
    """Remove the derived file of every row that is not ``done``, unless a ``done`` row, or a
    ``failed`` row's intact ``earlier_output`` (:func:`earlier_output`), accounts for it, and
    note the removal in that row (``removed_outputs``); then remove the folders this run's
    removals left empty. Call it once no worker runs, before the summary is written.

    The workers already remove an asset's superseded files before its new record is written; this
    catches what they could not: files beside ``failed`` / ``skipped`` records left by versions of
    this tool that kept them, for assets this run did not redo. A failed row whose kept file is
    missing or changed loses its ``earlier_output`` here (what is there is no longer that file), in
    the row and, with ``state``, in the asset's record on disk."""
    claimed = {r.get("output") for r in rows if r.get("status") == "done"}
    for r in rows:
        if r.get("status") != "failed" or r.get("earlier_output") is None:
            continue
        if output_intact(r["earlier_output"], out_dir):
            claimed.add(r["earlier_output"]["output"])
        else:
            logger.warning(
                "%s: the earlier derived file its failed record kept is missing or changed", r["path"]
            )
            del r["earlier_output"]
            _forget_earlier_output(state, r["path"])
    removed_now = [o for r in rows if r.get("this_run") for o in r.get("removed_outputs") or ()]
    for r in rows:
        if r.get("status") == "done":
            continue
        try:
            derived = derived_asset_path(r["path"])
        except InvalidValueError:  # a hand-made record; nothing of ours can be there
            continue
        if derived in claimed:
            continue
        removed = remove_outputs(out_dir, [derived])
        if removed:
            logger.warning(
                "removed %s: a derived file of an earlier run, while %s is recorded %s",
                derived,
                r["path"],
                r["status"],
            )
            r["removed_outputs"] = [*(r.get("removed_outputs") or ()), *removed]
            removed_now += removed
    prune_folders(out_dir, removed_now)


def _forget_earlier_output(state: RunState | None, path: str) -> None:
    """Drop ``earlier_output`` from the asset's record on disk too, so that record and summary agree
    (before the file goes: a kill in between leaves a file no record claims, which the next sweep
    removes)."""
    rec = state.read_record(path) if state is not None else None
    if rec and rec.get("earlier_output") is not None:
        rec = {k: v for k, v in rec.items() if k != "earlier_output"}
        state.write_record(rec)
