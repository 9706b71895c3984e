"""Train the shipped real-data model from the C4 feature tables and save it as a bundle.

Data: ``../shared/real-c4/{hull,lisberger,hausser}`` (HIPPIE release tables of the C4 database;
cite Beau et al. 2025 and the HIPPIE release). Heads: every labelled Hull + Lisberger unit of the five
C4 classes (both labs pooled, loss balanced across labs within a class); pre-training: those plus
the Lisberger unlabelled units and every Hausser waveform (labels unused). Reports the training
time (measure on the 2-core machine with ``nice``).

Run:  nice -n 5 python benchmarks/make_real_bundle.py [--data DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from nwb_celltype.library.tables import read_feature_tables
from nwb_celltype.model.real_ensemble import train_real_ensemble
from nwb_celltype.model.real_networks import RealModelConfig

CLASSES = ("PkC_ss", "PkC_cs", "MLI", "GoC", "MFB")
LABS = ("hull", "lisberger", "hausser")


def _raw(fs) -> dict[str, np.ndarray]:
    return {
        "acg_counts": fs.acg_counts,
        "isi_counts": fs.isi_counts,
        "waveform": np.where(np.asarray(fs.has_waveform)[:, None], fs.waveform, np.nan),
        "has_discharge": np.asarray(fs.has_discharge, bool),
        "has_waveform": np.asarray(fs.has_waveform, bool),
    }


def train_shipped_model(data_dir: str | Path, config: RealModelConfig | None = None):
    """Train the shipped ensemble from the table folders under ``data_dir``.

    Returns ``(tensors, meta, summary)``: what :func:`train_real_ensemble` returns plus a dict of
    the training data (labs, species, class counts) for the model card.
    """
    sets = {lab: read_feature_tables(Path(data_dir) / lab) for lab in LABS}
    raws, labels, groups, summary = [], [], [], {}
    for lab, fs in sets.items():
        lab_labels = np.asarray(fs.labels, dtype=object).astype(str)
        raws.append(_raw(fs))
        labels.append(lab_labels)
        groups.append(np.full(len(lab_labels), lab))
        heads = np.isin(lab_labels, CLASSES) & np.asarray(fs.has_discharge, bool)
        summary[lab] = {
            "species": (fs.meta or {}).get("species"),
            "n_units": int(len(lab_labels)),
            "heads_class_counts": {c: int(np.sum(heads & (lab_labels == c))) for c in CLASSES},
        }
    raw = {k: np.concatenate([r[k] for r in raws]) for k in raws[0]}
    tensors, meta = train_real_ensemble(
        raw, np.concatenate(labels), CLASSES, None, config or RealModelConfig(), np.concatenate(groups)
    )
    return tensors, meta, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "real-c4"))
    ap.add_argument("--out", default=None, help="write weights.safetensors + meta.json here")
    args = ap.parse_args()
    t0 = time.perf_counter()
    tensors, meta, summary = train_shipped_model(args.data)
    seconds = time.perf_counter() - t0
    n_params = sum(int(v.numel()) for v in tensors.values())
    print(
        json.dumps(
            {
                "seconds_with_reading": round(seconds, 1),
                "training_seconds": meta["training_seconds"],
                "n_parameters": n_params,
                "float32_bytes": 4 * n_params,
                "data": summary,
            },
            indent=1,
        )
    )
    if args.out:
        from safetensors.torch import save_file

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / "weights.safetensors"))
        (out / "meta.json").write_text(json.dumps({**meta, "training_data": summary}, indent=1))


if __name__ == "__main__":
    main()
