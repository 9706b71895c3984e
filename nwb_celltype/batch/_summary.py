"""The summary table of a whole-dandiset run: one row per asset, written as TSV and JSON into the
output folder (each replaced whole, through a temporary file and a rename)."""

from __future__ import annotations

import csv
import io as _io
import logging
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

from .state import RunState, asset_version, write_json_atomic

#: file names of the summary table, in the output folder.
SUMMARY_TSV = "celltype-summary.tsv"
SUMMARY_JSON = "celltype-summary.json"

logger = logging.getLogger(__name__)


def count_assets(records: list[dict]) -> dict[str, int]:
    """``listed``, then the assets per status, ``reused`` (done by an earlier run) and ``annotated``."""
    counts = {"listed": len(records), "done": 0, "skipped": 0, "failed": 0, "reused": 0, "annotated": 0}
    for r in records:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
        if r["status"] == "done":
            counts["annotated" if r.get("this_run") else "reused"] += 1
    return counts


def _label_columns(records: list[dict]) -> list[str]:
    """Cell-type labels seen in any asset, in the C4 class order (then others, sorted).
    ``unclassified`` / ``not_classifiable`` have their own ``n_`` columns."""
    from ..vocabulary import C4_CLASSES, C4_CLASSES_MLI_CLUSTERING

    seen = {k for r in records for k in (r.get("label_counts") or {})} - {"unclassified", "not_classifiable"}
    order = list(dict.fromkeys([*C4_CLASSES, *C4_CLASSES_MLI_CLUSTERING]))
    return [c for c in order if c in seen] + sorted(seen - set(order))


def summary_rows(records: list[dict]) -> tuple[list[str], list[dict]]:
    """The summary table: column names and one row (dict) per asset.

    Columns: ``path``, ``asset_id``, ``version`` (the dandiset version the row's run listed),
    ``status`` (done / skipped / failed; ``pending`` in a table written while a run goes or after
    it stopped early), ``n_units``,
    ``n_classified``, ``n_unclassified``, ``n_not_classifiable``, ``outside_cerebellar_cortex`` (units
    whose label the location rule withheld), one ``label_<class>`` count per
    cell type seen, ``species`` (the asset's species as the model scored its units) and
    ``species_coverage`` (trained / not_trained / unstated / unrecorded: whether the model learnt
    from that species), ``units_table`` (the asset's Units table that was annotated),
    ``waveform_rate`` (Hz and where it came from: ``file``, ``stated``, ``electrical_series:<name>``
    or ``assumed``, e.g. ``30000 (assumed)`` where neither the asset nor its raw recording states it
    and no rate was given), ``time_s`` (seconds on the worker, last try), ``attempts``, ``this_run``
    (annotated by this run rather than found done), ``selected`` (in this run's selection; False:
    a row kept from an earlier run, see ``note``), ``run_id`` (the run that recorded the row),
    ``output`` (relative path; empty where the run wrote none), ``error`` and ``note`` (where a
    kept row comes from and whether it is current; derived files of earlier runs that the row's
    outcome superseded and that were removed; on a ``failed`` row, the earlier derived file that
    the failure kept, from its ``earlier_output``).
    """
    labels = _label_columns(records)
    cols = [
        "path",
        "asset_id",
        "version",
        "status",
        "n_units",
        "n_classified",
        "n_unclassified",
        "n_not_classifiable",
        "outside_cerebellar_cortex",
        *[f"label_{lbl}" for lbl in labels],
        "species",
        "species_coverage",
        "units_table",
        "waveform_rate",
        "time_s",
        "attempts",
        "this_run",
        "selected",
        "run_id",
        "output",
        "error",
        "note",
    ]
    rows = []
    for r in records:
        lc = r.get("label_counts") or {}
        row = {c: r.get(c) for c in cols}
        sp = r.get("species") or {}
        row["species"] = ", ".join(sp.get("stated") or ()) if sp else None
        row["species_coverage"] = sp.get("kind") if sp else None
        row["units_table"] = r.get("source_units_table")
        rate = r.get("source_waveform_rate") or {}
        row["waveform_rate"] = f"{rate['hz']:g} ({rate['source']})" if rate.get("hz") else None
        for lbl in labels:
            row[f"label_{lbl}"] = lc.get(lbl, 0) if r.get("status") == "done" else None
        row["selected"] = r.get("selected", True)
        notes = [r["note"]] if r.get("note") else []
        kept = r.get("earlier_output") if r.get("status") == "failed" else None
        if isinstance(kept, dict):
            which = "this run" if r.get("this_run", True) else "the run that recorded it"
            notes.append(
                f"the earlier output {kept.get('output')} (model {str(kept.get('model_sha256'))[:12]}, run "
                f"{kept.get('run_id')}) is kept: not replaced, since {which} failed"
            )
        if r.get("removed_outputs"):
            notes.append(f"removed {', '.join(r['removed_outputs'])} (derived by an earlier run, superseded)")
        row["note"] = "; ".join(notes) or None
        rows.append(row)
    return cols, rows


def write_summary(
    out_dir: Path, ds_id, version, model_info, records, counts, run_id, include=None, state="complete"
) -> tuple[Path, Path]:
    """Write the summary table as :data:`SUMMARY_TSV` and :data:`SUMMARY_JSON` in ``out_dir``:
    one row per record, those of this run's selection (``counts``) and those kept from earlier
    runs (``selected`` False); ``include``: this run's ``--include``; ``state``: ``complete``,
    ``running`` (a table written during the run) or ``stopped`` (the run ended early: its
    unfinished assets have ``pending`` rows)."""
    cols, rows = summary_rows(records)
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, delimiter="\t", lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for row in rows:
        w.writerow({k: "" if v is None else v for k, v in row.items()})
    tsv = out_dir / SUMMARY_TSV
    tmp = tsv.with_name(f".{tsv.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
        os.replace(tmp, tsv)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    js = out_dir / SUMMARY_JSON
    write_json_atomic(
        js,
        {
            "dandiset_id": ds_id,
            "version": version,
            "model": model_info,
            "run_id": run_id,
            "state": state,
            "include": include,
            "counts": counts,
            "kept": sum(1 for r in records if r.get("selected") is False),
            "assets": records,
        },
    )
    return tsv, js


class LiveSummary:
    """The summary table while a run goes and after one stopped early: the rows of the assets
    finished so far (this run's records, those found done, the ``kept`` rows of earlier runs) and a
    ``pending`` row for each selected asset not finished yet; the JSON's ``state`` says
    ``running`` or ``stopped``. Written when the run starts work, after a finished asset (at most
    every ``every_s`` seconds) and when it stops early; the run's end writes the final table
    (``run._run_result``)."""

    def __init__(
        self, run: Any, state: RunState, assets: list, records: dict, kept: list[dict], every_s: float = 5.0
    ):
        self.run, self.state, self.assets, self.records, self.kept = run, state, assets, records, kept
        self.every_s = every_s
        self._last = -float("inf")

    def _pending(self, asset: Any, note: str) -> dict:
        return {
            "path": asset.path,
            "asset_id": asset.asset_id,
            "version": asset_version(asset, self.run.version),
            "dandiset_id": self.run.ds_id,
            "status": "pending",
            "this_run": True,
            "selected": True,
            "run_id": self.run.run_id,
            "output": None,
            "note": note,
        }

    def write(self, throttle: bool = False, state: str = "running", note: str | None = None) -> None:
        if throttle and time.monotonic() - self._last < self.every_s:
            return
        note = note or f"not finished yet: run {self.run.run_id} is annotating the dandiset"
        ordered = [self.records.get(a.path) or self._pending(a, note) for a in self.assets]
        rows = sorted([*ordered, *self.kept], key=lambda r: r["path"])
        r = self.run
        write_summary(
            r.out_dir,
            r.ds_id,
            r.version,
            r.model_info,
            rows,
            count_assets(ordered),
            r.run_id,
            r.include,
            state,
        )
        self._last = time.monotonic()

    def write_stopped(self, exc: BaseException) -> None:
        """The table of a run that stopped early (Ctrl-C, a lost scheduler, a full disk): its
        ``pending`` rows say the next run into the folder annotates them. Never raises over ``exc``."""
        from .._atomic import Interrupted

        if isinstance(exc, KeyboardInterrupt):
            why = "was interrupted"
        elif isinstance(exc, Interrupted):
            why = f"was interrupted ({signal.Signals(exc.signum).name})"
        else:
            why = f"stopped ({type(exc).__name__})"
        note = f"not annotated: run {self.run.run_id} {why} before it; the next run into this folder does it"
        try:
            for a in self.assets:  # a worker may have finished an asset the driver had not heard of
                rec = None if a.path in self.records else self.state.read_record(a.path)
                if isinstance(rec, dict) and rec.get("run_id") == self.run.run_id:
                    self.records[a.path] = {**rec, "this_run": True, "selected": True}
            self.write(state="stopped", note=note)
        except Exception as err:  # the run's own error is the one to report
            logger.error("could not write the summary of the stopped run: %s", err)
