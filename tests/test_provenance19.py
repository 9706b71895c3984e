"""What an annotated file records about how it was made, enough to make it again: the Python call
names every option that changes what is written (not only the source)."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import numpy as np

import nwb_celltype as nc
from nwb_celltype.simulate import demo_recording_path

DEMO = demo_recording_path()


def classifier_json(path, field: str) -> dict:
    """A JSON field (``parameters``, ``source``, ``software_versions``) of the one classifier of an
    annotated file, read with h5py (not through the package's reader)."""
    import h5py

    with h5py.File(path, "r") as f:
        grp = f["processing/cell_types"]
        (name,) = [k for k in grp if k.endswith("_classifier")]
        raw = grp[name][field][()]
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


def _classifier_parameters(path) -> dict:
    return classifier_json(path, "parameters")


def _labels(path) -> tuple[list, list]:
    import h5py

    with h5py.File(path, "r") as f:
        grp = f["processing/cell_types"]
        (name,) = [k for k in grp if k.startswith("celltype_") and not k.endswith("_classifier")]
        return [v.decode() for v in grp[name]["label"][()]], [v.decode() for v in grp[name]["status"][()]]


def test_the_python_call_records_the_options_and_reruns_the_annotation(tmp_path):
    out = tmp_path / "a.nwb"
    nc.annotate(DEMO, out=out, threshold=5.0, any_region=True, batch_size=17)
    call = _classifier_parameters(out)["call"]
    node = ast.parse(call, mode="eval").body
    assert ast.unparse(node.func) == "nwb_celltype.annotate"
    args = [ast.literal_eval(a) for a in node.args]
    kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
    # the options given that change what is written, at their values; batch_size changes nothing
    assert args == [str(DEMO)]
    assert kwargs == {"out": str(out), "threshold": 5.0, "any_region": True}

    again = tmp_path / "b.nwb"
    nc.annotate(*args, **{**kwargs, "out": again})
    assert _labels(again) == _labels(out)
    # and the recorded call is not the default run's: the default threshold labels more units
    default = tmp_path / "c.nwb"
    nc.annotate(DEMO, out=default)
    assert np.sum(np.array(_labels(default)[1]) == "classified") > np.sum(
        np.array(_labels(out)[1]) == "classified"
    )


def _source_identity(path) -> dict:
    return classifier_json(path, "source")


def _sha256(path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_a_local_inputs_sha256_is_recorded_copy_and_in_place(tmp_path):
    out = tmp_path / "copy.nwb"
    result = nc.annotate(DEMO, out=out)
    assert _source_identity(out)["sha256"] == _sha256(DEMO)
    assert result.source["sha256"] == _sha256(DEMO)
    # in place: the identity of the file as it was before the annotation was appended
    inp = tmp_path / "in_place.nwb"
    shutil.copyfile(DEMO, inp)
    before = _sha256(inp)
    nc.annotate(inp, in_place=True)
    assert _source_identity(inp)["sha256"] == before != _sha256(inp)


def test_a_model_object_and_numpy_numbers_are_recorded_as_python_literals(tmp_path):
    from nwb_celltype.model import load_demo_bundle

    bundle = load_demo_bundle()
    out = tmp_path / "a.nwb"
    nc.annotate(DEMO, out=out, model=bundle, threshold=np.float64(3.0))
    node = ast.parse(_classifier_parameters(out)["call"], mode="eval").body
    kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}  # every value a literal
    assert kwargs["model"] == str(bundle.path) and kwargs["model_sha256"] == bundle.sha256
    assert kwargs["threshold"] == 3.0 and type(kwargs["threshold"]) is float
    again = tmp_path / "b.nwb"
    nc.annotate(*[ast.literal_eval(a) for a in node.args], **{**kwargs, "out": again})
    assert _labels(again) == _labels(out)
