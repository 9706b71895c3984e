"""How a file's predicted cell types agree with the labels it already holds.

A file annotated by ``nwb-celltype`` may also hold ground truth: optotagged or otherwise identified
units written by ``nwb-celltype library label`` (kind ``ground_truth``), expert labels (kind
``expert``), or the simulated classes of the demo recording. :func:`agreements` compares every
prediction table with every such table over the units both label, counted the way
docs/validation.md counts: a unit the model left ``unclassified`` or ``not_classifiable`` is a miss
of its class (never dropped), the share of units labelled (coverage) and the share labelled wrongly
(confidently wrong, of all compared units) stand beside the accuracy of the labels given, and a
unit whose true type is not one of the model's classes (e.g. a granule cell) is wrong if labelled at
all. ``show``, ``annotate`` and ``demo`` print it; it reads the tables only (h5py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .vocabulary import NOT_CLASSIFIABLE, PARENT_CLASS, UNCLASSIFIED

__all__ = ["Agreement", "agreements", "agreements_in_file", "format_agreement"]

#: annotation kinds whose labels are taken as the truth to compare predictions with
TRUTH_KINDS: tuple[str, ...] = ("ground_truth", "expert")
#: label texts that say a unit has no known type (compared with nothing)
NO_LABEL: frozenset[str] = frozenset(
    {"", UNCLASSIFIED, NOT_CLASSIFIABLE, "unlabeled", "unlabelled", "nan", "none"}
)
_NO_LABEL = NO_LABEL


@dataclass(frozen=True)
class Agreement:
    """One prediction table against one table of known labels, over the units both label.

    ``truth`` and ``predicted`` are aligned per unit (``unit_ids``); ``predicted`` holds the
    prediction table's labels, ``unclassified`` and ``not_classifiable`` included.
    """

    prediction: str
    reference: str
    reference_kind: str
    classes: tuple[str, ...]
    unit_ids: np.ndarray
    truth: np.ndarray
    predicted: np.ndarray

    @property
    def n(self) -> int:
        return len(self.unit_ids)

    @property
    def labelled(self) -> np.ndarray:
        """(n,) bool: the model gave one of its classes."""
        return np.isin(self.predicted, self.classes)

    @property
    def right(self) -> np.ndarray:
        """(n,) bool: labelled with the true class, or with a part of it (MLI_A or MLI_B on an MLI)."""
        parent = np.array([PARENT_CLASS.get(str(p), str(p)) for p in self.predicted], dtype=object)
        return self.labelled & ((self.predicted == self.truth) | (parent == self.truth))

    @property
    def wrong(self) -> np.ndarray:
        return self.labelled & ~self.right

    def per_class(self) -> dict[str, dict[str, int]]:
        """Per true label: units, labelled, right (a label outside the model's classes is never right)."""
        out = {}
        order = {c: i for i, c in enumerate(self.classes)}  # the model's classes first, in its order
        for c in sorted(set(self.truth.tolist()), key=lambda c: (order.get(c, len(order)), c)):
            here = self.truth == c
            out[c] = {
                "n": int(here.sum()),
                "labelled": int((here & self.labelled).sum()),
                "right": int((here & self.right).sum()),
            }
        return out

    def per_label(self) -> dict[str, dict[str, int]]:
        """Per class the model gave (in its order): units given that label, and how many were right
        (the precision of each label on these units)."""
        return {
            c: {
                "labelled": int((self.predicted == c).sum()),
                "right": int(((self.predicted == c) & self.right).sum()),
            }
            for c in self.classes
            if (self.predicted == c).any()
        }

    def balanced_recall(self, per_class: dict | None = None) -> float:
        """Mean recall over the model's classes present in the truth, abstentions counted as misses
        (from ``per_class``, :meth:`per_class`'s result, when already computed)."""
        per_class = self.per_class() if per_class is None else per_class
        scored = {*self.classes, *(PARENT_CLASS.get(c, c) for c in self.classes)}  # MLI for MLI_A/B
        rec = [v["right"] / v["n"] for c, v in per_class.items() if c in scored]
        return float(np.mean(rec)) if rec else float("nan")

    def to_dict(self) -> dict:
        n = max(self.n, 1)
        per_class = self.per_class()
        return {
            "prediction": self.prediction,
            "reference": self.reference,
            "reference_kind": self.reference_kind,
            "n_units": self.n,
            "n_labelled": int(self.labelled.sum()),
            "n_right": int(self.right.sum()),
            "n_wrong": int(self.wrong.sum()),
            "n_unclassified": int((self.predicted == UNCLASSIFIED).sum()),
            "n_not_classifiable": int((self.predicted == NOT_CLASSIFIABLE).sum()),
            "coverage": float(self.labelled.sum() / n),
            "accuracy_of_labelled": float(self.right.sum() / self.labelled.sum())
            if self.labelled.any()
            else float("nan"),
            "confidently_wrong": float(self.wrong.sum() / n),
            "balanced_recall_abstentions_as_misses": self.balanced_recall(per_class),
            "per_class": per_class,
            "per_label": self.per_label(),
            "wrong_units": [
                {"unit_id": int(u), "truth": str(t), "predicted": str(p)}
                for u, t, p in zip(
                    self.unit_ids[self.wrong], self.truth[self.wrong], self.predicted[self.wrong], strict=True
                )
            ],
        }


def _truth_rows(rec) -> np.ndarray:
    kinds = np.asarray(rec.kinds, dtype=str)
    labels = np.asarray(rec.labels, dtype=str)
    return np.isin(kinds, TRUTH_KINDS) & ~np.isin(labels, list(_NO_LABEL))


def no_agreement_reason(records: Mapping) -> str:
    """Why :func:`agreements` finds nothing in ``records``: no ground-truth or expert labels, no
    prediction table to compare them with, or none labelling the same units."""
    truth = sorted(name for name, rec in records.items() if _truth_rows(rec).any())
    if not truth:
        return "no ground-truth or expert labels to compare with in this file"
    if not any(rec.kind == "prediction" and len(rec) for rec in records.values()):
        return (
            f"the file holds ground-truth or expert labels ({', '.join(truth)}) but no predictions to "
            "compare them with: annotate it first (nwb-celltype annotate FILE)"
        )
    return f"no prediction table labels the units of the ground-truth or expert tables ({', '.join(truth)})"


def agreements(records: Mapping) -> list[Agreement]:
    """Every prediction table of ``records`` (:func:`nwb_celltype.nwb.read_annotations`) against
    every table holding ground-truth or expert labels of the same Units table, over the units both
    have a row for (by unit id); pairs sharing no unit, or labelling different Units tables (two
    sortings' ids name different units), are left out."""
    truth_tables = {name: rec for name, rec in records.items() if _truth_rows(rec).any()}
    out = []
    for pname, prec in records.items():
        if prec.kind != "prediction" or not len(prec):
            continue
        pred_of = dict(
            zip(np.asarray(prec.unit_ids).tolist(), np.asarray(prec.labels, dtype=str), strict=True)
        )
        for tname, trec in truth_tables.items():
            if getattr(trec, "units_table", "/units") != getattr(prec, "units_table", "/units"):
                continue
            rows = _truth_rows(trec)
            ids = np.asarray(trec.unit_ids)[rows]
            both = np.array([u in pred_of for u in ids.tolist()], dtype=bool)
            if not both.any():
                continue
            kinds = sorted(set(np.asarray(trec.kinds, dtype=str)[rows].tolist()))
            out.append(
                Agreement(
                    prediction=pname,
                    reference=tname,
                    reference_kind="+".join(kinds),
                    classes=tuple(map(str, prec.classes)),
                    unit_ids=ids[both],
                    truth=np.asarray(trec.labels, dtype=str)[rows][both],
                    predicted=np.array([pred_of[u] for u in ids[both].tolist()], dtype=str),
                )
            )
    return out


def agreements_in_file(path: str | os.PathLike) -> list[Agreement]:
    """:func:`agreements` of the annotation tables of the NWB file at ``path``."""
    from .inspect_file import load_annotations

    return agreements(load_annotations(path))


def format_agreement(a: Agreement) -> str:
    """Plain text: counts, per-class recall with abstentions as misses, and the wrongly labelled units."""
    d = a.to_dict()
    n = d["n_units"]
    acc = d["accuracy_of_labelled"]
    lines = [
        f"agreement with the {a.reference_kind} labels of table {a.reference!r} ({n} units labelled in both):",
        f"   the model labelled {d['n_labelled']} of them ({d['coverage']:.0%}): {d['n_right']} right, "
        f"{d['n_wrong']} wrong"
        + (f" (accuracy of the labels given {acc:.0%})" if np.isfinite(acc) else "")
        + f"; confidently wrong {d['confidently_wrong']:.0%} of the {n}; "
        f"{d['n_unclassified']} unclassified, {d['n_not_classifiable']} not classifiable",
        "   right / units per true class (unclassified counts as a miss): "
        + ", ".join(f"{c} {v['right']}/{v['n']}" for c, v in d["per_class"].items())
        + (
            f"; balanced recall {d['balanced_recall_abstentions_as_misses']:.2f}"
            if np.isfinite(d["balanced_recall_abstentions_as_misses"])
            else ""
        ),
    ]
    if d["per_label"]:
        lines.append(
            "   right / labels given per class: "
            + ", ".join(f"{c} {v['right']}/{v['labelled']}" for c, v in d["per_label"].items())
        )
    if d["wrong_units"]:
        shown = d["wrong_units"][:20]
        lines.append(
            "   labelled wrongly: "
            + ", ".join(f"unit {w['unit_id']} {w['predicted']} (is {w['truth']})" for w in shown)
            + (
                f", ... {len(d['wrong_units']) - len(shown)} more"
                if len(d["wrong_units"]) > len(shown)
                else ""
            )
        )
    return "\n".join(lines)
