"""What a library holds: labelled units per class, by evidence, lab, species and source library,
as a text table and a figure."""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .._atomic_files import write_figure
from ._annotations import default_units_table, read_ground_truth, units_of
from ._open import open_nwb
from .manifest import Manifest, as_manifest

logger = logging.getLogger(__name__)

#: Grouping keys of :meth:`LibraryStats.counts`. ``species`` is the canonical name training groups
#: units by (:func:`~nwb_celltype.model.real_species.canonical_species`: "mouse" in a table's
#: dataset.json and "Mus musculus" in an NWB Subject are one species); ``species_as_written`` keeps
#: each file's own spelling.
STAT_KEYS: tuple[str, ...] = (
    "label",
    "evidence_type",
    "lab",
    "species",
    "species_as_written",
    "library",
    "subject",
    "file",
)


@dataclass
class LibraryStats:
    """One record per labelled unit (``label``, ``evidence_type``, ``lab``, ``species`` (canonical),
    ``species_as_written``, ``library``, ``subject``, ``file``, ``unit_id``), and the number of units
    in all files."""

    library: str
    records: list[dict] = field(default_factory=list)
    n_units: int = 0
    n_files: int = 0

    def counts(self, by: str) -> dict[str, int]:
        """Labelled units per value of ``by`` (one of :data:`STAT_KEYS`), largest first."""
        c = Counter(r[by] or "unknown" for r in self.records)
        return dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))

    def crosstab(self, by: str) -> dict[str, dict[str, int]]:
        """Labelled units per class (rows) and value of ``by`` (columns)."""
        out: dict[str, Counter] = {}
        for r in self.records:
            out.setdefault(r["label"], Counter())[r[by] or "unknown"] += 1
        return {k: dict(v) for k, v in sorted(out.items())}

    def to_table(self) -> str:
        """Plain-text tables: classes x evidence, then counts by lab, species and library."""
        lines = [
            f"library {self.library!r}: {self.n_files} files, {self.n_units} units, "
            f"{len(self.records)} labelled",
            "",
        ]
        ev = sorted({r["evidence_type"] or "unknown" for r in self.records})
        ct = self.crosstab("evidence_type")
        w = max([5, *(len(k) for k in ct)])
        cw = [max(len(e), 5) for e in ev]
        lines.append(
            f"{'class':<{w}}  " + "  ".join(f"{e:>{c}}" for e, c in zip(ev, cw, strict=True)) + "  total"
        )
        for cls, row in ct.items():
            cells = "  ".join(f"{row.get(e, 0):>{c}}" for e, c in zip(ev, cw, strict=True))
            lines.append(f"{cls:<{w}}  {cells}  {sum(row.values()):>5}")
        for key in ("lab", "species", "library"):
            lines += ["", f"by {key}:"]
            lines += [f"  {k}: {v}" for k, v in self.counts(key).items()]
        return "\n".join(lines)

    def plot(self, path: str | os.PathLike) -> Path:
        """Save a PNG (or another format matplotlib writes, from the suffix): labelled units per class
        stacked by evidence type, and per lab / species. The folder must exist
        (:func:`check_figure_path`)."""
        path = check_figure_path(path)
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 3, figsize=(13, 4), width_ratios=[2, 1, 1])
        ct = self.crosstab("evidence_type")
        classes = list(ct)
        ev = sorted({e for row in ct.values() for e in row})
        bottom = [0] * len(classes)
        for e in ev:
            vals = [ct[c].get(e, 0) for c in classes]
            axes[0].bar(classes, vals, bottom=bottom, label=e)
            bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
        axes[0].set_ylabel("labelled units")
        axes[0].set_title(f"{self.library}: classes by evidence")
        if ev:
            axes[0].legend(fontsize=8)
        for ax, key in zip(axes[1:], ("lab", "species"), strict=True):
            c = self.counts(key)
            ax.barh(list(c), list(c.values()))
            ax.set_title(f"by {key}")
            ax.set_xlabel("labelled units")
        fig.tight_layout()
        write_figure(fig, path, dpi=100)
        plt.close(fig)
        return path


def check_figure_path(path: str | os.PathLike) -> Path:
    """Refuse, before any work, a figure path that cannot be written as other outputs are refused:
    a format matplotlib does not write (from the suffix), a folder that does not exist (it is not
    made) or is not writable, or an existing folder or other non-file at the path. Returns the path."""
    from .._atomic_files import figure_format
    from ..errors import OutputError

    path = Path(path)
    figure_format(path)
    parent = path.parent
    if not parent.is_dir():
        raise OutputError(f"cannot write {path}: folder {parent.resolve()} does not exist; create it first.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: folder {parent.resolve()} is not writable.")
    if path.exists() and not path.is_file():
        raise OutputError(f"cannot write {path}: it exists and is not a regular file; name a file to write.")
    return path


def library_stats(manifest: Manifest | str | os.PathLike) -> LibraryStats:
    """Collect :class:`LibraryStats` by reading each file's Units ids and ground-truth tables
    (no spikes are read). A label's ``unit_id`` is the id in the Units table it refers to (``/units``
    or a sorting in a processing module); ``n_units`` counts the units of the labelled tables (of the
    table ``annotate`` reads in a file without labels)."""
    manifest = as_manifest(manifest)
    st = LibraryStats(library=manifest.name, n_files=len(manifest.entries))
    for entry in manifest.entries:
        if entry.is_tables:
            from .tables import inspect_tables, table_label_records

            src = entry.source(manifest.root)
            st.n_units += inspect_tables(src).n_units
            st.records += table_label_records(src, library=entry.library, where=entry.identity())
            continue
        with open_nwb(entry.source(manifest.root)) as nwbfile:
            n_units, records = _nwb_records(nwbfile, entry)
        st.n_units += n_units
        st.records += records
    from ..model.real_species import canonical_species  # numpy only

    for r in st.records:  # grouped as training groups them (its per-species class counts)
        r["species_as_written"] = r["species"]
        r["species"] = canonical_species(r["species"])
    return st


def _nwb_records(nwbfile, entry) -> tuple[int, list[dict]]:
    """The number of units of an open NWB file (those of the Units tables its ground truth labels,
    else of the table ``annotate`` reads) and one record per labelled unit, with its id in the Units
    table its label refers to."""
    tables = read_ground_truth(nwbfile, name=entry.annotation)
    paths = list(dict.fromkeys(gt.units_table for gt in tables))
    if not paths and (default := default_units_table(nwbfile)) is not None:
        paths = [default]
    ids = {p: units_of(nwbfile, p).id.data[:] for p in paths}
    subject = nwbfile.subject
    species = str(getattr(subject, "species", "") or "") if subject is not None else ""
    subject_id = str(getattr(subject, "subject_id", "") or "") if subject is not None else ""
    lab = str(nwbfile.lab or "")
    records = []
    for gt in tables:
        table_ids = ids[gt.units_table]
        for row, label, etype in zip(gt.unit_indices, gt.labels, gt.evidence["evidence_type"], strict=True):
            records.append(
                {
                    "label": str(label),
                    "evidence_type": str(etype),
                    "lab": lab,
                    "species": species,
                    "library": entry.library,
                    "subject": subject_id,
                    "file": entry.identity(),
                    "unit_id": int(table_ids[row]) if 0 <= row < len(table_ids) else -1,
                }
            )
    return sum(len(v) for v in ids.values()), records
