"""What an evaluation gives back and writes: :class:`EvaluationReport` (metrics of the model and its
baselines on held-out units, the protocol, what was evaluated, which unit each row is), its JSON, NPZ
and PNG files (:data:`EVALUATION_FILES`), and :class:`HeldOut`, the held-out predictions either
evaluation scheme (:mod:`.evaluate`, :mod:`.evaluate_discharge`) makes before they are scored."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._atomic import atomic_folder
from .._atomic_files import write_figure, write_npz, write_text_file
from ._bundle_digest import _json_safe
from .metrics import metrics_with_baselines


@dataclass
class EvaluationReport:
    """Result of :func:`evaluate_model`.

    Attributes
    ----------
    classes : tuple of str
    y : (n,) int64
        True class index of each evaluated unit.
    probabilities : (n, k) float64
        Held-out ensemble probabilities.
    metrics : dict
        :func:`~.metrics.classification_metrics` of the ensemble at ``threshold``.
    baselines : dict of name -> metrics
        Same folds, same units.
    protocol : dict
        How the numbers were made (folds, seeds, config, timings).
    data : dict
        What was evaluated: ``training`` (and ``test``) references of the data (source, sha256,
        library, counts per file, as the model card records them) and ``software_versions``.
    units : dict of str -> (n,) array
        Which unit each row of ``y`` is: ``source`` (its file or tables) and ``unit_id``, where the
        data say (:func:`describe_data`).
    untrained : dict of str -> int
        Test units of classes the training set lacks (class -> count; a transfer only). They are
        scored, as misses: the model gives their class probability 0, so its recall is 0 and they
        count in every metric (the last ``classes`` are theirs).
    outside : dict of str -> dict
        Test units labelled with a class outside every model's (GrC, UBC, ...; a transfer of the
        real-data family only): per class ``units``, ``confidently_labelled`` (given a C4 label),
        ``fraction`` and ``labels_given``. Not in ``metrics``: no label is right for them; the
        fewer labelled, the better the model knows what it does not know.
    """

    classes: tuple[str, ...]
    y: np.ndarray
    probabilities: np.ndarray
    metrics: dict
    baselines: dict = field(default_factory=dict)
    protocol: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    units: dict = field(default_factory=dict)
    untrained: dict = field(default_factory=dict)
    outside: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return _json_safe(
            {
                "classes": list(self.classes),
                "metrics": self.metrics,
                "baselines": self.baselines,
                "protocol": self.protocol,
                "data": self.data,
                "classes_not_in_training": self.untrained,
                "outside_classes": self.outside,
            }
        )

    def summary(self) -> str:
        """A few lines for humans."""
        m = self.metrics
        lines = [
            f"units evaluated: {m['n_units']} ({self.protocol.get('scheme')})",
            f"balanced accuracy @ threshold {m['threshold']:g}: {score_text(m['balanced_accuracy'])} "
            f"(fraction classified {m['fraction_classified']:.3f}); without threshold "
            f"{m['balanced_accuracy_all']:.3f}; ECE {m['calibration']['ece']:.3f}",
            f"abstentions counted as misses: balanced recall {m['balanced_recall_abstain_as_miss']:.3f}; "
            f"confidently wrong {m['confidently_wrong']:.3f} of all units",
            "per class (recall, abstentions as misses; units): "
            + ", ".join(
                f"{c} {r:.2f} (n={m['class_counts'][self.classes.index(c)]})"
                for c, r in m["recall_abstain_as_miss"].items()
            ),
        ]
        if self.untrained:
            lines.append(
                f"{sum(self.untrained.values())} test units of classes the training set lacks ("
                + ", ".join(f"{c} {n}" for c, n in self.untrained.items())
                + "): scored as misses (the model cannot give their label)"
            )
        for c, o in self.outside.items():
            given = ", ".join(f"{k} {v}" for k, v in o["labels_given"].items())
            lines.append(
                f"{c} (a class no model here has): {o['confidently_labelled']} of {o['units']} test units "
                f"confidently labelled ({o['fraction']:.0%})" + (f": {given}" if given else "")
            )
        for name, b in self.baselines.items():
            lines.append(
                f"baseline {name}: balanced accuracy {b['balanced_accuracy_all']:.3f} without threshold; "
                f"{b['balanced_accuracy']:.3f} on the {b['fraction_classified']:.0%} classified at "
                f"{b['threshold']:g}"
            )
        return "\n".join(lines)

    def write(self, out_dir: str | Path, *, figures: bool = True) -> list[Path]:
        """Write ``evaluation.json`` and PNG figures (confusion matrix, per-class P/R/F1,
        accuracy vs fraction classified, reliability diagram) into ``out_dir``; returns the paths.

        The folder is written whole or not at all (:func:`nwb_celltype._atomic.atomic_folder`): an
        earlier evaluation there is replaced only once every file is written, and a folder holding
        other files (:data:`EVALUATION_FILES` are ours) is refused with
        :class:`~nwb_celltype.errors.OutputError`."""
        out = Path(out_dir)
        with atomic_folder(out, replace=True, owned=EVALUATION_FILES, what="an evaluation") as tmp:
            write_text_file(tmp / "evaluation.json", json.dumps(self.to_dict(), indent=1, allow_nan=False))
            units = {k: np.asarray(v) for k, v in self.units.items()}
            true = np.asarray(self.classes, dtype=str)[np.asarray(self.y, dtype=np.int64)]
            write_npz(
                tmp / "predictions.npz",
                {"y": self.y, "probabilities": self.probabilities, "true_label": true, **units},
                compressed=False,
            )
            paths = [tmp / "evaluation.json", tmp / "predictions.npz"]
            if figures:
                paths += _figures(self, tmp)
        return [out / p.name for p in paths]


#: What an evaluation folder holds (:func:`nwb_celltype._atomic.atomic_folder` patterns).
EVALUATION_FILES = (
    "evaluation.json",
    "predictions.npz",
    "confusion_matrix.png",
    "per_class.png",
    "threshold_curve.png",
    "reliability.png",
)


@dataclass
class HeldOut:
    """Held-out predictions of the scored units, as either evaluation scheme makes them.

    Attributes
    ----------
    scheme : str
        How the units were held out (:func:`outer_folds`, :func:`transfer_scheme`).
    y : (n,) int64
        True class index of each scored unit.
    p : (n, k) float64
        The model's probabilities, each from a model that never saw the unit's label.
    base_p : dict of name -> (n, k) float64
        The baselines' probabilities, from the same training parts.
    abstain : (n,) bool, optional
        Units the model abstained on besides the threshold (its own rules, e.g. out of distribution;
        unusable features): never classified, at any threshold of the accuracy-coverage curve, and
        counted as misses; the threshold itself is applied by the metrics. None where the family does
        not say.
    rows : (n,) int, optional
        Rows of the evaluated set (the test set of a transfer) the scored units are, where known.
    untrained : tuple of str
        Classes of scored test units that the model was not trained on, in the order their indices in
        ``y`` follow the model's classes; ``p`` and ``base_p`` give them probability 0.
    """

    scheme: str
    y: np.ndarray
    p: np.ndarray
    base_p: dict[str, np.ndarray]
    abstain: np.ndarray | None = None
    rows: np.ndarray | None = None
    untrained: tuple[str, ...] = ()
    outside: dict = field(default_factory=dict)

    def report(
        self, classes: tuple[str, ...], threshold: float, describe: Callable[[], dict]
    ) -> EvaluationReport:
        """Metrics of the model and the baselines on these units; ``describe()`` (called last) gives the
        protocol. ``classes`` are the model's; :attr:`untrained` classes follow them, with probability 0."""
        classes = tuple(classes) + tuple(self.untrained)
        p = _pad_classes(self.p, len(classes))
        base_p = {name: _pad_classes(bp, len(classes)) for name, bp in self.base_p.items()}
        metrics, base_metrics = metrics_with_baselines(
            self.y, p, base_p, classes, threshold=threshold, abstain=self.abstain
        )
        n_model = len(classes) - len(self.untrained)
        untrained = {c: int(np.sum(self.y == n_model + i)) for i, c in enumerate(self.untrained)}
        return EvaluationReport(
            classes=classes,
            y=self.y,
            probabilities=p,
            metrics=metrics,
            baselines=base_metrics,
            protocol=describe(),
            untrained=untrained,
            outside=self.outside,
        )


def _pad_classes(p: np.ndarray, k: int) -> np.ndarray:
    """Probabilities (n, <= k) with zero columns appended for classes the model does not know."""
    p = np.asarray(p, dtype=np.float64)
    return np.pad(p, ((0, 0), (0, k - p.shape[1]))) if p.shape[1] < k else p


def describe_data(
    report: EvaluationReport, training_set, test_set, rows: np.ndarray | None
) -> EvaluationReport:
    """Record in ``report`` what was evaluated: the data references of the training (and test) set,
    the software versions, and which unit (source, unit id) each scored row is (``rows``: indices
    into the evaluated set, the test set of a transfer)."""
    from ..annotate import _software_versions

    def refs(ts) -> list:
        return [dict(r) for r in (getattr(ts, "references", None) or [])]

    report.data = {"training": refs(training_set), "software_versions": _software_versions()}
    if test_set is not None:
        report.data["test"] = refs(test_set)
    evaluated = test_set if test_set is not None else training_set
    fi = getattr(evaluated, "file_index", None)
    if rows is not None and fi is not None and len(rows) == len(report.y):
        sources = [str(r.get("source", "")) for r in refs(evaluated)]
        fi = np.asarray(fi, dtype=np.int64)[rows]
        report.units = {
            "source": np.array([sources[i] if 0 <= i < len(sources) else "" for i in fi], dtype=str),
            "unit_id": np.asarray(evaluated.features.unit_ids, dtype=np.int64)[rows],
        }
        neuron_ids = np.asarray(getattr(evaluated, "neuron_ids", ()), dtype=object)
        if len(neuron_ids) == len(evaluated.features.unit_ids):  # the tables' own ids ("" for NWB units)
            report.units["neuron_id"] = neuron_ids[rows].astype(str)
    return report


def _figures(rep: EvaluationReport, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    m, classes = rep.metrics, list(rep.classes)
    paths = []
    cm = np.asarray(m["confusion_matrix"], dtype=float)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", color="k" if norm[i, j] < 0.6 else "w")
    ax.set_xticks(range(len(classes)), classes, rotation=45)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion (threshold {m['threshold']:g}, {m['fraction_classified']:.0%} classified)")
    fig.tight_layout()
    paths.append(out / "confusion_matrix.png")
    write_figure(fig, paths[-1], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    w = 0.27
    for i, key in enumerate(("precision", "recall", "f1")):
        vals = [m["per_class"][c][key] if m["per_class"][c][key] is not None else np.nan for c in classes]
        ax.bar(np.arange(len(classes)) + (i - 1) * w, vals, w, label=key)
    ax.set_xticks(range(len(classes)), classes)
    ax.set_ylim(0, 1.05)
    ax.set_title(f"per class (balanced accuracy {m['balanced_accuracy']:.3f})")
    ax.legend(loc="lower right")
    fig.tight_layout()
    paths.append(out / "per_class.png")
    write_figure(fig, paths[-1], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4.5, 4))
    curve = [c for c in m["threshold_curve"] if c["accuracy"] is not None]
    ax.plot([c["fraction_classified"] for c in curve], [c["accuracy"] for c in curve], "o-", label="accuracy")
    ax.plot(
        [c["fraction_classified"] for c in curve],
        [c["balanced_accuracy"] for c in curve],
        "s--",
        label="balanced accuracy",
    )
    for c in curve:
        ax.annotate(f"{c['threshold']:g}", (c["fraction_classified"], c["accuracy"]), fontsize=7)
    ax.set_xlabel("fraction classified")
    ax.set_ylabel("accuracy of classified units")
    ax.set_title("accuracy vs fraction classified (threshold)")
    ax.legend()
    fig.tight_layout()
    paths.append(out / "threshold_curve.png")
    write_figure(fig, paths[-1], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4.5, 4))
    b = m["calibration"]["bins"]
    xs = [c for c, a in zip(b["centre"], b["accuracy"], strict=True) if a is not None]
    ys = [a for a in b["accuracy"] if a is not None]
    cs = [c for c in b["confidence"] if c is not None]
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.plot(cs, ys, "o-")
    ax.bar(xs, ys, width=0.1, alpha=0.2)
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability (ECE {m['calibration']['ece']:.3f})")
    fig.tight_layout()
    paths.append(out / "reliability.png")
    write_figure(fig, paths[-1], dpi=100)
    plt.close(fig)
    return paths


def score_text(x) -> str:
    """A score to 3 decimals, or "n/a (no unit classified)" where it is undefined (NaN)."""
    return "n/a (no unit classified)" if x is None or x != x else f"{x:.3f}"
