"""The README's main command: `nwb-celltype demo` annotates the embedded recording, prints the
summary, and writes a file that plain pynwb reads without this package and NWB Inspector passes."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from nwb_celltype.cli import main


def test_demo_command_end_to_end(tmp_path, inspect_nwb):
    out = tmp_path / "demo.nwb"
    res = CliRunner().invoke(main, ["demo", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "annotated 80 units" in res.output
    assert "trained on real identified neurons" in res.output
    assert "DEMO model" not in res.output  # the default model is not the simulated demo model
    assert out.exists()

    code = (
        "import sys; sys.modules['nwb_celltype'] = None\n"
        "from pynwb import NWBHDF5IO\n"
        f"with NWBHDF5IO({str(out)!r}, 'r') as io:\n"
        "    f = io.read()\n"
        "    tables = [n for n, o in f.processing['cell_types'].data_interfaces.items()\n"
        "              if o.neurodata_type == 'CellTypeAnnotations']\n"
        "    print(sorted(tables))\n"
        "    t = f.processing['cell_types'][[n for n in tables if n.startswith('celltype_')][0]]\n"
        "    print(len(t), sorted(set(t['label'][:])))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "ground_truth" in lines[0] and "celltype_" in lines[0]
    assert lines[1].startswith("80 ")

    from nwbinspector import Importance

    msgs = [m for m in inspect_nwb(out) if m.importance.value > Importance.BEST_PRACTICE_SUGGESTION.value]
    assert msgs == [], msgs

    # a second run refuses to overwrite silently, as annotate does; --overwrite replaces the output
    before = out.read_bytes()
    res = CliRunner().invoke(main, ["demo", "--out", str(out), "--json"])
    assert res.exit_code == 1 and "--overwrite" in res.output
    assert out.read_bytes() == before
    res = CliRunner().invoke(main, ["demo", "--out", str(out), "--json", "--overwrite"])
    assert res.exit_code == 0, res.output


def test_demo_summary_explains_threshold_statuses_and_reasons(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["demo"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "nwb-celltype-demo.nwb").exists()  # where the README says
    text = res.output
    assert "as probable as the second best" in text  # what the threshold means
    assert "unclassified = " in text and "not_classifiable = " in text
    if "not classifiable 0" not in text:
        assert "not classifiable, by reason:" in text
    # the unclassified units' reasons are counted too (the model's abstentions vs the threshold),
    # and the counts add up to the unclassified total; checked against the written table
    import re

    from pynwb import NWBHDF5IO

    n_uncl = int(re.search(r"unclassified (\d+),", text).group(1))
    block = text.split("unclassified, by reason:\n", 1)[1].split("not classifiable, by reason:")[0]
    counts = {m.group(2): int(m.group(1)) for m in re.finditer(r"^\s+(\d+)  (.+)$", block, re.M)}
    assert sum(counts.values()) == n_uncl > 0
    from nwb_celltype.nwb import read_annotations

    with NWBHDF5IO(str(tmp_path / "nwb-celltype-demo.nwb"), "r") as io:
        nwbfile = io.read()
        units = nwbfile.units.to_dataframe()
        rec = next(r for r in read_annotations(nwbfile).values() if r.kind == "prediction")
    reasons = [str(r) for r, lab in zip(rec.reasons, rec.labels, strict=True) if lab == "unclassified"]
    assert len(reasons) == n_uncl == int((units["cell_type"] == "unclassified").sum())
    n_ood = sum(r.startswith("out of distribution") for r in reasons)
    assert counts.get("out of distribution", 0) == n_ood
    assert counts.get("confidence ratio below the threshold", 0) == sum(
        r.startswith("confidence ratio below the threshold (") for r in reasons
    )
    assert "" not in reasons  # every unclassified unit says why
