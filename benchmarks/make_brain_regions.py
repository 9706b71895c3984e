"""Rebuild ``nwb_celltype/data/brain_regions.json``: which Allen Mouse Brain Atlas (CCF) acronyms
name the cerebellar cortex and which name grey matter outside it (docs/annotate.md, "Units recorded
outside the cerebellar cortex").

Source: the Allen Institute's structure ontology (Allen Mouse Brain Common Coordinate Framework,
Wang et al., Cell 2020; https://atlas.brain-map.org), as the CSV ``allen_structure_tree.csv`` shipped
in the ``iblatlas`` wheel (International Brain Laboratory, MIT licence)::

    pip download iblatlas==1.3.0 --no-deps -d /tmp/iblatlas
    unzip -o /tmp/iblatlas/iblatlas-1.3.0-py3-none-any.whl iblatlas/allen_structure_tree.csv -d /tmp/iblatlas
    python benchmarks/make_brain_regions.py /tmp/iblatlas/iblatlas/allen_structure_tree.csv

Rule: ``cerebellar_cortex`` = the cerebellar cortex (CBX, id 528) and every structure under it
(lobules and their layers: CENT3mo, SIMpu, CUL4 5gr ...); ``outside`` = every other structure under
"Basic cell groups and regions" (grey, id 8) except the cerebellum (CB, id 512) itself, which holds
both cortex and nuclei; the cerebellar nuclei (CBN: FN, IP, DN, VeCB) are ``outside`` (no C4 class
lives there). Fibre tracts (arbor vitae included), ventricles and the root are in neither list: a
unit placed there is not withheld (histology alignments near the cerebellar white matter are rough).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "nwb_celltype" / "data" / "brain_regions.json"
GREY, CB, CBX = 8, 512, 528


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tree", type=Path, help="allen_structure_tree.csv (see the module's docstring)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    cortex, outside = set(), set()
    with args.tree.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            path = [int(x) for x in row["structure_id_path"].strip("/").split("/") if x]
            acr, sid = row["acronym"].strip(), int(row["id"])
            if not acr or not path:
                continue
            if CBX in path:
                cortex.add(acr)
            elif GREY in path and sid not in (GREY, CB):
                outside.add(acr)
    out = {
        "source": "Allen Mouse Brain Atlas structure ontology (CCF; Wang et al. 2020), via iblatlas 1.3.0 "
        "allen_structure_tree.csv; built by benchmarks/make_brain_regions.py",
        "cerebellar_cortex": sorted(cortex),
        "outside": sorted(outside),
    }
    args.out.write_text(json.dumps(out, indent=0) + "\n", encoding="utf-8")
    print(f"{args.out}: {len(cortex)} cerebellar-cortex and {len(outside)} other acronyms")


if __name__ == "__main__":
    main()
