"""Benchmark of appending cell-type annotations (ndx-celltype) to an existing NWB file and reading
them back, against the plain-pynwb way of storing the same columns (a DynamicTable filled with
add_row, read back with to_dataframe), measured in the same run on copies of the same file.

Usage: python benchmarks/bench_extension.py [n_units]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from hdmf.common import DynamicTable
from pynwb import NWBHDF5IO

from nwb_celltype.nwb import add_annotations, add_classifier, read_annotations
from nwb_celltype.testing import mock_NWBFile_with_units
from nwb_celltype.vocabulary import C4_CLASSES


def _data(n: int):
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(5), size=n)
    top = np.sort(p, axis=1)
    conf = top[:, -1] / top[:, -2]
    labels = np.array([C4_CLASSES[i] for i in p.argmax(1)], dtype=object)
    labels[conf < 2] = "unclassified"
    votes = rng.multinomial(50, p)
    return p, conf, labels, votes


def _base(n: int, path: Path) -> Path:
    with NWBHDF5IO(path, "w") as io:
        io.write(mock_NWBFile_with_units(n, seed=1))
    return path


def ours(base: Path, n: int, path: Path) -> float:
    shutil.copy(base, path)
    p, conf, labels, votes = _data(n)
    t0 = time.perf_counter()
    io = NWBHDF5IO(path, "a")
    nwbfile = io.read()
    clf = add_classifier(
        nwbfile, name="c4", version="1", weights_sha256="0" * 64, classes=C4_CLASSES, threshold=2.0
    )
    add_annotations(
        nwbfile,
        name="pred",
        units_region=np.arange(n),
        labels=labels,
        classes=C4_CLASSES,
        probabilities=p,
        confidence=conf,
        votes=votes,
        classifier=clf,
    )
    io.write(nwbfile)
    io.close()
    with NWBHDF5IO(path, "r") as io:
        rec = read_annotations(io.read())["pred"]
    assert len(rec) == n
    return time.perf_counter() - t0


def reference(base: Path, n: int, path: Path) -> float:
    shutil.copy(base, path)
    p, conf, labels, votes = _data(n)
    t0 = time.perf_counter()
    io = NWBHDF5IO(path, "a")
    nwbfile = io.read()
    table = DynamicTable(name="pred", description="cell types")
    table.add_column("units", "unit rows", table=nwbfile.units)
    for col in ("label", "status", "probabilities", "confidence", "votes"):
        table.add_column(col, col)
    status = np.where(labels == "unclassified", "unclassified", "classified")
    for i in range(n):
        table.add_row(
            units=i, label=labels[i], status=status[i], probabilities=p[i], confidence=conf[i], votes=votes[i]
        )
    nwbfile.create_processing_module("cell_types", "cell types").add(table)
    io.write(nwbfile)
    io.close()
    with NWBHDF5IO(path, "r") as io:
        df = io.read().processing["cell_types"]["pred"].to_dataframe()
    assert len(df) == n
    return time.perf_counter() - t0


def main(n: int = 5000) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = _base(n, tmp / "base.nwb")
        ours(base, n, tmp / "warm1.nwb")  # warm up imports and hdmf caches
        reference(base, n, tmp / "warm2.nwb")
        t_ours = min(ours(base, n, tmp / f"o{i}.nwb") for i in range(3))
        t_ref = min(reference(base, n, tmp / f"r{i}.nwb") for i in range(3))
    print(f"units={n}  ndx-celltype append+read_annotations: {t_ours:.3f} s  ", end="")
    print(
        f"plain DynamicTable add_row+append+to_dataframe: {t_ref:.3f} s  ratio ref/ours = {t_ref / t_ours:.1f}x"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
