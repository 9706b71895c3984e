"""docs/validation.md's "At a glance" table and label counts are the results file's numbers.

The summary at the top of the page is what most readers take away; it is written by hand from
``benchmarks/results/real_validation.json``. These tests fail when a rerun of the benchmark changes
a number the summary quotes, or when the summary is edited away from the results.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "validation.md"
RESULTS = json.loads((REPO / "benchmarks" / "results" / "real_validation.json").read_text())

#: the glance table's rows and the evaluation each one quotes (the shipped recipe: labs pooled)
ROWS = {
    "mouse, Hull lab": "hull CV, other lab pooled into training",
    "macaque, Lisberger lab": "lisberger CV, other lab pooled into training",
}


def glance_section() -> str:
    text = PAGE.read_text(encoding="utf-8")
    start = text.index("## At a glance")
    return text[start : text.index("\n### ", start)]


def glance_row(name: str) -> list[str]:
    rows = [line for line in glance_section().splitlines() if line.startswith(f"| {name}")]
    assert len(rows) == 1, f"the glance table has no single row for {name!r}"
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


def _number(cell: str) -> float:
    return float(re.match(r"[\d.]+", cell).group())


@pytest.mark.parametrize("name", list(ROWS))
def test_glance_row_is_the_results_file(name):
    cells = glance_row(name)
    evaluation = RESULTS["evaluations"][ROWS[name]]
    model, baseline = evaluation["model"], evaluation["logreg_rate_cv2_width"]
    assert int(cells[1]) == model["n"]
    assert _number(cells[2]) == round(model["balanced_accuracy"], 3)
    assert _number(cells[3]) == round(100 * model["coverage_at_2"])
    assert _number(cells[4]) == round(model["balanced_accuracy_at_2_classified"], 3)
    assert _number(cells[5]) == round(model["balanced_recall_at_2_abstain_as_miss"], 3)
    assert _number(cells[6]) == round(100 * model["confidently_wrong"], 1)
    assert _number(cells[7]) == round(model["ece"], 3)
    assert _number(cells[8]) == round(baseline["balanced_accuracy"], 3)


def test_glance_label_counts_are_the_pooled_rows_summed():
    section = " ".join(glance_section().split())
    given = {label: [0, 0] for label in ("PkC_ss", "PkC_cs", "MLI", "GoC", "MFB")}
    for evaluation in ROWS.values():
        for label, counts in RESULTS["evaluations"][evaluation]["model"]["labels_at_2"].items():
            given[label][0] += counts["right"]
            given[label][1] += counts["given"]
    for label, (right, total) in given.items():
        assert re.search(rf"\b{label} {right}/{total}\b", section), (
            f"{label} {right}/{total} not in the summary"
        )


def test_glance_non_c4_figure_is_the_shipped_bytes():
    shipped = RESULTS["default_model_non_c4"]["simulated_other"]
    at_2 = round(100 * shipped["confidently_labelled_by_threshold"]["2"])
    assert f"{at_2} % of {shipped['n']} simulated" in " ".join(glance_section().split())


def test_simulation_glance_is_the_realism_results():
    """docs/simulation.md's target table quotes realism.json and the shipped-recipe run."""
    text = (REPO / "docs" / "simulation.md").read_text(encoding="utf-8")
    start = text.index("### At a glance: issue 15's targets")
    section = text[start : text.index("Details,\nfigures", start)]
    results = REPO / "benchmarks" / "results"
    shipped = json.loads((results / "ablations" / "realism_shipped_recipe" / "realism.json").read_text())
    realism = json.loads((results / "realism.json").read_text())

    def row(prefix: str) -> list[str]:
        (line,) = [x for x in section.splitlines() if x.startswith(f"| {prefix}")]
        return [cell.strip() for cell in line.strip("|").split("|")]

    mouse, macaque = (shipped["presets"][p]["cross_fitted"] for p in ("mouse", "macaque"))
    cells = row("trained on simulated units only")
    assert cells[1].startswith(f"{mouse['model']['sim_to_real_balanced_accuracy']:.3f} ")
    assert f"({mouse['model']['sim_to_real_balanced_accuracy_classes_n5']:.3f} " in cells[1]
    assert cells[2] == f"{macaque['model']['sim_to_real_balanced_accuracy']:.3f}"
    cells = row("the same recipe trained on the real units")
    assert cells[1] == (
        f"{mouse['model_real_cv']['real_cv_balanced_accuracy']:.3f} "
        f"({mouse['model_real_cv']['real_cv_balanced_accuracy_classes_n5']:.3f})"
    )
    assert cells[2] == f"{macaque['model_real_cv']['real_cv_balanced_accuracy']:.3f}"
    reverse = realism["reverse"]["presets"]
    cells = row("the default model on simulated recordings")
    assert [_number(c) for c in cells[1:3]] == [
        round(reverse[p]["balanced_accuracy_no_threshold"], 2) for p in ("mouse", "macaque")
    ]
    cells = row("the same, abstentions counted")
    for cell, preset in zip(cells[1:3], ("mouse", "macaque"), strict=True):
        assert (
            cell
            == f"{reverse[preset]['balanced_accuracy_all']:.2f} ({round(100 * reverse[preset]['fraction_classified'])} %)"
        )
    cells = row("log rate + CV2")
    assert [_number(c) for c in cells[1:3]] == [
        round(realism["presets"][p]["summary_stats_balanced_accuracy"], 3) for p in ("mouse", "macaque")
    ]
