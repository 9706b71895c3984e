"""Compare two model bundles of the `acg-isi-wave` family unit by unit on the real C4 tables: how
many labels and statuses differ, and by how much the probabilities do. What a rebuild of the
default model is checked with (docs/classifier.md, "Rebuilding the default model"): a rebuild on
another CPU gives other last bits of the weights; this says whether any label moved.

Run:  python benchmarks/compare_bundles.py A B [--data DIR] [--json OUT]
      (A, B: bundle folders; DIR: the real-c4 folder, found by nwb_celltype.testing.real_data.real_c4_dir
      when not given; each lab's folder is classified with its dataset.json species, as `predict` does)
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

LABS = ("hull", "lisberger", "hausser")


def compare(a, b, data: Path) -> dict:
    """Per lab: units, labels and statuses that differ, the largest |difference| of a probability."""
    from nwb_celltype.classify import predict_features

    out = {}
    for lab in LABS:
        folder = data / lab
        if not folder.is_dir():
            continue
        rows_a = predict_features(folder, model=a).rows()
        rows_b = predict_features(folder, model=b).rows()
        probs = [k for k in rows_a[0] if k.startswith("p_")] if rows_a else []
        diffs = [
            abs(float(ra[k]) - float(rb[k]))
            for ra, rb in zip(rows_a, rows_b, strict=True)
            for k in probs
            if not (math.isnan(float(ra[k])) or math.isnan(float(rb[k])))
        ]
        out[lab] = {
            "units": len(rows_a),
            "labels_differ": sum(ra["label"] != rb["label"] for ra, rb in zip(rows_a, rows_b, strict=True)),
            "status_differ": sum(ra["status"] != rb["status"] for ra, rb in zip(rows_a, rows_b, strict=True)),
            "max_abs_probability_difference": max(diffs, default=0.0),
        }
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", type=Path, help="a bundle folder")
    ap.add_argument("b", type=Path, help="another bundle folder")
    ap.add_argument("--data", type=Path, default=None, help="the real-c4 folder (hull, lisberger, hausser)")
    ap.add_argument("--json", type=Path, default=None, help="also write the result as JSON here")
    args = ap.parse_args(argv)
    if args.data is None:
        from nwb_celltype.testing.real_data import real_c4_dir

        args.data = real_c4_dir()
        if args.data is None:
            ap.error(
                "no real-c4 folder found: give --data DIR (the folder holding hull/, lisberger/, hausser/)"
            )
    result = {
        "a": str(args.a),
        "b": str(args.b),
        "weights_sha256": [
            json.loads((p / "model_card.json").read_text())["weights_sha256"] for p in (args.a, args.b)
        ],
        "labs": compare(args.a, args.b, Path(args.data)),
    }
    print(json.dumps(result, indent=1))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
