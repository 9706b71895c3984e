"""An interrupt (Ctrl-C) during the first read of an NWB file must not break reading for the rest of
the process: pynwb's first import, the ndx-celltype namespace and our classes fill process-wide
registries, and a half-built one made every later read fail as "the file may be corrupt" (audit 17,
finding 1). Each case runs in a fresh interpreter, where pynwb is not imported yet."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from pynwb import NWBHDF5IO

from nwb_celltype.testing import (
    mock_CellTypeAnnotations,
    mock_CellTypeClassifier,
    mock_CellTypeEvidence,
    mock_NWBFile_with_units,
)

# Raises KeyboardInterrupt from the first call of hdmf's TypeMap.register_container_type that
# matches WHEN (a phase of the first read), then reads the annotated file in the same process.
_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import hdmf.build.manager as manager

    when, first, second = sys.argv[1:4]
    original = manager.TypeMap.register_container_type
    hit = []

    def matches(namespace, data_type, cls):
        if when == "pynwb-import":  # pynwb registering its core classes (pynwb/misc.py)
            return namespace == "core" and data_type == "Units"
        if when == "namespace":  # the ndx-celltype namespace listed, its types not registered yet
            return namespace == "ndx-celltype" and type(cls).__name__ == "TypeSource"
        if when == "classes":  # our Python classes being registered
            return namespace == "ndx-celltype" and isinstance(cls, type)
        if when == "file-namespaces":  # the namespaces cached in the file, into the read's type map
            return namespace == "ndx-celltype" and "pynwb" in sys.modules and len(hit) == 0 and \\
                any(f.f_code.co_name == "nwbfile" for f in _frames())
        raise AssertionError(when)

    def _frames():
        f = sys._getframe()
        while f is not None:
            yield f
            f = f.f_back

    def patched(self, *args, **kwargs):
        names = ("namespace", "data_type", "container_cls")
        values = dict(zip(names, args), **kwargs)
        if not hit and matches(*(values.get(n) for n in names)):
            hit.append(True)
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    manager.TypeMap.register_container_type = patched

    from nwb_celltype.io import open_source  # imports neither pynwb nor hdmf's registries

    assert "pynwb" not in sys.modules
    out = {}
    try:
        with open_source(first) as src:
            src.nwbfile
        out["first"] = "read"
    except KeyboardInterrupt:
        out["first"] = "interrupted"
    manager.TypeMap.register_container_type = original
    try:
        from nwb_celltype.nwb import read_annotations

        with open_source(second) as src:
            nwbfile = src.nwbfile
            out["units"] = len(nwbfile.units)
            tables = read_annotations(nwbfile)
            out["tables"] = sorted(tables)
            out["classes"] = sorted(
                f"{type(o).__module__}.{type(o).__name__}"
                for o in nwbfile.processing["cell_types"].data_interfaces.values()
            )
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def annotated(tmp_path_factory):
    path = tmp_path_factory.mktemp("interrupt") / "annotated.nwb"
    nwbfile = mock_NWBFile_with_units(8)
    clf = mock_CellTypeClassifier(nwbfile=nwbfile, name="c4_base")
    mock_CellTypeAnnotations(nwbfile=nwbfile, name="c4_base_predictions", classifier=clf)
    mock_CellTypeEvidence(nwbfile=nwbfile, name="ground_truth")
    with NWBHDF5IO(path, "w") as io:
        io.write(nwbfile)
    return path


@pytest.mark.parametrize("when", ["pynwb-import", "namespace", "classes", "file-namespaces"])
def test_interrupted_first_read_leaves_later_reads_working(annotated, tmp_path, when):
    from nwb_celltype.simulate import demo_recording_path

    script = tmp_path / "interrupt.py"
    script.write_text(_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), when, str(demo_recording_path()), str(annotated)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["first"] == "interrupted", out  # the interrupt did land in that phase
    assert "error" not in out, out["error"]
    assert out["units"] == 8 and out["tables"] == ["c4_base_predictions", "ground_truth"]
    assert all(c.startswith("nwb_celltype.nwb.") for c in out["classes"]), out["classes"]
