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
    assert _number(cells[5]) == round(100 * model["confidently_wrong"], 1)
    assert _number(cells[6]) == round(model["ece"], 3)
    assert _number(cells[7]) == round(baseline["balanced_accuracy"], 3)


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
