"""Same seed and file name -> byte-identical simulated NWB file (audit 19, F2): the object_ids
that hdmf would draw at random are derived from the file's identifier instead."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import uuid

import h5py
import pytest

from nwb_celltype.errors import OutputError
from nwb_celltype.simulate._ids import (
    _HDMF_OBJECT_ID_ATTR,
    _set_object_id,
    assign_object_ids,
    derived_object_id,
)

# few units, short: each subprocess takes a few seconds, most of it imports
_WRITE = textwrap.dedent(
    """
    import sys
    from nwb_celltype.simulate import simulate_recording
    counts = {"PkC_ss": 2, "PkC_cs": 2, "MLI": 1, "GoC": 1, "MFB": 1, "other": 1}
    for arg in sys.argv[1:]:
        path, seed = arg.rsplit("=", 1)
        simulate_recording(path, preset="mouse", duration_s=20.0, seed=int(seed), class_counts=counts)
    """
)


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _object_ids(path) -> list[str]:
    ids = []
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda _name, obj: ids.append(obj.attrs["object_id"]) if "object_id" in obj.attrs else None
        )
        ids.append(f.attrs["object_id"])
    return [x.decode() if isinstance(x, bytes) else str(x) for x in ids]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Files written in two separate processes (different PYTHONHASHSEED): a/rec.nwb and
    b/rec.nwb with seed 3, c/rec.nwb with seed 4."""
    root = tmp_path_factory.mktemp("simbytes")
    for d in "abc":
        (root / d).mkdir()
    jobs = [[f"{root / 'a' / 'rec.nwb'}=3", f"{root / 'c' / 'rec.nwb'}=4"], [f"{root / 'b' / 'rec.nwb'}=3"]]
    procs = []
    for hashseed, args in zip(("1", "2"), jobs, strict=True):
        env = {**os.environ, "PYTHONHASHSEED": hashseed}
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", _WRITE, *args],
                env=env,
                cwd=root,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    return root


def test_same_seed_same_name_gives_same_bytes(written):
    a, b = written / "a" / "rec.nwb", written / "b" / "rec.nwb"
    assert _sha256(a) == _sha256(b)


def test_different_seed_gives_different_file(written):
    a, c = written / "a" / "rec.nwb", written / "c" / "rec.nwb"
    assert _sha256(a) != _sha256(c)
    assert not set(_object_ids(a)) & set(_object_ids(c))


def test_object_ids_are_unique_uuid4_and_read_back(written):
    from pynwb import NWBHDF5IO

    path = written / "a" / "rec.nwb"
    ids = _object_ids(path)
    assert len(ids) > 40  # every container carries one (49 in the demo recording)
    assert len(set(ids)) == len(ids)
    for x in ids:
        assert uuid.UUID(x).version == 4 and str(uuid.UUID(x)) == x
    with NWBHDF5IO(str(path), "r") as io:
        nwbfile = io.read()
        assert set(nwbfile.objects) == set(ids)
        assert nwbfile.units.object_id in ids


def test_hdmf_private_object_id_route_still_works():
    """The one private hdmf name the simulator relies on; fails loudly if hdmf changes it."""
    from hdmf.container import AbstractContainer, Container

    c = Container(name="x")
    assert isinstance(c, AbstractContainer)
    assert hasattr(c, _HDMF_OBJECT_ID_ATTR), "hdmf renamed AbstractContainer.__object_id"
    oid = derived_object_id("key", "/x")
    _set_object_id(c, oid)
    assert c.object_id == oid
    with pytest.raises(OutputError, match="object_id"):
        _set_object_id(object(), oid)


def test_assign_object_ids_deterministic_and_keyed():
    from hdmf.container import Container

    def tree():
        root = Container(name="root")
        for name in ("a", "b"):
            child = Container(name=name)
            child.parent = root
        return root

    t1, t2 = tree(), tree()
    assert {c.object_id for c in t1.all_children()} != {c.object_id for c in t2.all_children()}
    ids1 = assign_object_ids(t1, key="k")
    ids2 = assign_object_ids(t2, key="k")
    assert ids1 == ids2 and len(set(ids1.values())) == 3
    assert [c.object_id for c in t1.all_children()] == [c.object_id for c in t2.all_children()]
    assert assign_object_ids(tree(), key="other") != ids1
    assert derived_object_id("k", "/a") != derived_object_id("k", "/b")


def test_files_that_differ_only_outside_the_identifier_share_no_object_ids(tmp_path):
    """Same seed, unit count, duration and name, other classes: another file, other object_ids."""
    from nwb_celltype.simulate import simulate_recording

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    simulate_recording(
        a / "rec.nwb", preset="mouse", duration_s=20.0, seed=3, class_counts={"PkC_ss": 2, "MLI": 2}
    )
    simulate_recording(
        b / "rec.nwb", preset="mouse", duration_s=20.0, seed=3, class_counts={"GoC": 2, "MFB": 2}
    )
    assert not set(_object_ids(a / "rec.nwb")) & set(_object_ids(b / "rec.nwb"))
