"""Audit 18 of the public Python API (notes/audit18_api.md): ``nwb_celltype.annotate`` callable
whatever the import order, argument types refused with InvalidValueError before any work, an
existing folder as ``out``, a unit missing from a waveforms dict, short reprs, the top-level feature
functions on the default model's family, docstrings, an absolute ``output_path``, the demo model's
logging warning, a non-str species, and the hint for a script without a ``__main__`` guard."""

from __future__ import annotations

import ast
import json
import logging
import os
import re
import subprocess
import sys
import types
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pytest

import nwb_celltype as nc
from nwb_celltype.errors import AnnotationExistsError, FeatureError, InvalidValueError, OutputError
from nwb_celltype.simulate import demo_recording_path

ROOT = Path(__file__).resolve().parents[1]
DEMO = demo_recording_path()


@pytest.fixture(scope="module")
def annotated(tmp_path_factory):
    """The demo recording annotated by the default model (a copy), and its result."""
    out = tmp_path_factory.mktemp("api18") / "demo.celltype.nwb"
    return nc.annotate(DEMO, out=out)


def _recorded_call(path) -> str:
    import h5py

    with h5py.File(path, "r") as f:
        grp = f["processing/cell_types"]
        (name,) = [k for k in grp if k.endswith("_classifier")]
        raw = grp[name]["parameters"][()]
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)["call"]


# ---------------------------------------------------------------- (a) nwb_celltype.annotate(...)

_ORDERS = {
    "package first": "import nwb_celltype as nc",
    "submodule import": "import nwb_celltype.annotate\nimport nwb_celltype as nc",
    "from-import of the function": "from nwb_celltype.annotate import annotate\nimport nwb_celltype as nc",
    "from the package": "from nwb_celltype import annotate\nimport nwb_celltype as nc\nassert callable(annotate)",
    "module as alias": "import nwb_celltype.annotate as m\nimport nwb_celltype as nc\nassert m.collect and callable(m)",
}

_PROBE = """
{setup}
import inspect
from nwb_celltype.errors import InvalidValueError
assert callable(nc.annotate), nc.annotate
assert "threshold" in inspect.signature(nc.annotate).parameters
assert callable(nc.annotate.annotate) and nc.annotate.annotate.__name__ == "annotate"
import nwb_celltype.annotate as mod
assert isinstance(mod, type(inspect)) and mod.AnnotationResult
try:
    nc.annotate("no-such-file.nwb", threshold=0.5)
except InvalidValueError as exc:
    print("OK", exc)
"""


@pytest.mark.parametrize("order", list(_ORDERS))
def test_annotate_is_callable_from_the_package_in_any_import_order(order):
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE.format(setup=_ORDERS[order])],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("OK threshold"), proc.stdout


def test_annotate_in_all_and_dir_and_the_recorded_call_works(annotated):
    assert "annotate" in nc.__all__ and "annotate" in dir(nc)
    call = _recorded_call(annotated.output_path)
    node = ast.parse(call, mode="eval").body
    assert isinstance(node, ast.Call) and ast.unparse(node.func) == "nwb_celltype.annotate"
    # the recorded expression's function is the package's, and it is callable
    assert callable(eval(ast.unparse(node.func), {"nwb_celltype": nc}))


def test_annotate_through_the_package_annotates(tmp_path):
    import nwb_celltype.annotate  # noqa: F401  (binds the submodule on the package)

    res = nc.annotate(DEMO, out=tmp_path / "p.nwb")
    assert res.n_units == 80 and Path(res.output_path).is_file()


# ------------------------------------------------------------------- (b) argument types refused


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"threshold": None}, "threshold"),
        ({"threshold": "3"}, "threshold"),
        ({"threshold": [2, 3]}, "threshold"),
        ({"threshold": True}, "threshold"),
        ({"batch_size": "10"}, "batch_size"),
        ({"batch_size": None}, "batch_size"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"waveform_rate_hz": "abc"}, "waveform_rate_hz"),
        ({"waveform_rate_hz": "30000"}, "waveform_rate_hz"),
        ({"species": 1}, "species"),
    ],
)
def test_annotate_refuses_wrong_types_before_opening_anything(tmp_path, kwargs, name):
    # the source does not exist: only a check made before anything is opened gives this error
    with pytest.raises(InvalidValueError, match=rf"^{name} must be") as info:
        nc.annotate(tmp_path / "missing.nwb", **kwargs)
    assert "\n" not in str(info.value)


def test_annotate_accepts_numpy_scalars_for_the_numbers(tmp_path):
    from nwb_celltype.annotate import _check_arguments

    assert _check_arguments("float32", np.float32(3), False, None, np.int64(5), np.int64(30000)) == 30000.0


@pytest.mark.parametrize("threshold", [None, "2", [2, 3], np.array([2.0, 3.0]), True])
def test_check_threshold_is_one_line_invalid_value(threshold):
    from nwb_celltype.model.decision import check_threshold

    with pytest.raises(InvalidValueError, match=r"^threshold must be a finite confidence ratio") as info:
        check_threshold(threshold)
    assert "\n" not in str(info.value)


def test_check_threshold_keeps_numbers():
    from nwb_celltype.model.decision import check_threshold

    assert check_threshold(np.float32(3)) == 3.0 and check_threshold(2) == 2.0
    with pytest.raises(InvalidValueError, match="got 0.5"):
        check_threshold(0.5)


@pytest.fixture(scope="module")
def tsgroup():
    nap = pytest.importorskip("pynapple")
    rng = np.random.default_rng(0)
    return nap.TsGroup({k: nap.Ts(np.cumsum(rng.gamma(1.0, 1 / 20.0, 5000))) for k in range(3)})


@pytest.mark.parametrize("threshold", [None, "2"])
def test_classify_tsgroup_refuses_a_bad_threshold(tsgroup, threshold):
    with pytest.raises(InvalidValueError, match=r"^threshold must be"):
        nc.classify_tsgroup(tsgroup, threshold=threshold, set_metadata=False)


# ------------------------------------------------------------------------ (c) out= a folder


@pytest.mark.parametrize("overwrite", [False, True])
def test_out_an_existing_folder_says_it_is_a_folder(tmp_path, overwrite):
    folder = tmp_path / "outdir"
    folder.mkdir()
    with pytest.raises(OutputError, match="is a folder; give a file path") as info:
        nc.annotate(DEMO, out=folder, overwrite=overwrite)
    assert not isinstance(info.value, AnnotationExistsError) and "overwrite" not in str(info.value)


# -------------------------------------------------------- (d) a unit missing from a waveforms dict


def test_unit_missing_from_the_waveforms_dict_has_no_waveform_given(tsgroup):
    w = -np.exp(-(((np.arange(90) - 30) / 4.0) ** 2)) * 100
    df = nc.classify_tsgroup(tsgroup, waveforms={0: w}, waveform_rate_hz=30000, set_metadata=False)
    for uid in (1, 2):
        reason = df.loc[uid, "reason"]
        assert not df.loc[uid, "used_waveform"]
        assert "no waveform given" in reason and "NaN" not in reason, reason
    assert "no waveform given" not in df.loc[0, "reason"]


def test_all_nan_waveforms_still_say_nan(tsgroup):
    df = nc.classify_tsgroup(
        tsgroup, waveforms=np.full((3, 90), np.nan), waveform_rate_hz=30000, set_metadata=False
    )
    assert all("NaN" in r and "no waveform given" not in r for r in df["reason"])


# ------------------------------------------------------------------------------- (e) short reprs


def _check_repr(obj, *needles):
    text = repr(obj)
    assert len(text) < 1000, text
    assert "array([" not in text and "tensor(" not in text, text
    for n in needles:
        assert n in text, text
    return text


def test_annotation_result_repr_is_short_and_equality_kept(annotated):
    from dataclasses import replace

    many = replace(annotated, unclassified=[{"unit_id": i, "reason": "x" * 80} for i in range(500)])
    _check_repr(many, "AnnotationResult(", "n_units=80", "label_counts=", annotated.output_path)
    assert many == replace(annotated, unclassified=list(many.unclassified)) and many != annotated
    assert json.dumps(annotated.to_dict())


def test_bundle_reprs_are_short(demo_bundle):
    from nwb_celltype.model.shipped import load_default_bundle

    _check_repr(load_default_bundle(), "DischargeBundle(", "nwb-celltype-real", "n_members=", "PkC_ss")
    _check_repr(demo_bundle, "ModelBundle(", "n_members=", "feature_family='c4-3d'")


def test_predictions_and_feature_set_reprs_are_short():
    from nwb_celltype.features import FeatureSet
    from nwb_celltype.model import Predictions

    n, k = 5000, 5
    preds = Predictions(
        classes=("A", "B", "C", "D", "E"),
        probabilities=np.full((n, k), 0.2),
        labels=np.array(["A"] * (n - 1) + ["unclassified"], dtype=object),
        confidence=np.ones(n),
        votes=np.zeros((n, k), dtype=np.int64),
        status=np.array(["classified"] * (n - 1) + ["unclassified"], dtype=object),
        reasons=np.array([""] * n, dtype=object),
        unit_ids=np.arange(n),
        threshold=2.0,
    )
    _check_repr(preds, "Predictions(", "n_units=5000", "'classified': 4999", "shape=(5000, 5)")
    fs = FeatureSet(
        unit_ids=np.arange(n),
        acg=np.zeros((n, 10, 101), np.float32),
        waveform=np.zeros((n, 90), np.float32),
        layer=np.zeros((n, 4), np.float32),
        stats={"mean_rate": np.zeros(n)},
        usable=np.ones(n, bool),
        reasons=np.array([""] * n, dtype=object),
    )
    _check_repr(fs, "FeatureSet(", "n_units=5000", "n_usable=5000", "shape=(5000, 10, 101)")


def test_compact_repr_clips():
    from nwb_celltype._repr import compact_repr, summarize

    class Thing:
        pass

    text = compact_repr(Thing(), **{f"f{i}": "x" * 500 for i in range(50)})
    assert len(text) <= 1000 and text.startswith("Thing(") and text.endswith(")")
    assert summarize(list(range(100))) == "<100 items>"
    assert summarize(np.zeros((3, 4))) == "array(shape=(3, 4), dtype=float64)"


# ------------------------------------------------ (f) top-level feature functions, default family


def test_top_level_feature_functions_dispatch_to_the_default_models_family(tmp_path):
    from nwb_celltype.model.shipped import load_default_bundle

    batch = next(nc.read_units(DEMO, batch_size=8))
    config = load_default_bundle().feature_config
    fs = nc.extract_features(batch, config)
    assert fs.family == "acg-isi-wave" and len(fs) == 8
    path = nc.save_features(tmp_path / "d.npz", fs)
    from nwb_celltype.features import load_features_any

    back = load_features_any(path)
    assert type(back) is type(fs) and np.array_equal(back.unit_ids, fs.unit_ids)
    assert np.array_equal(back.usable, fs.usable)
    with pytest.raises(FeatureError, match="load_features_any"):  # C4 files only, and it says so
        nc.load_features(path)


def test_feature_functions_refuse_objects_of_no_family(tmp_path):
    batch = next(nc.read_units(DEMO, batch_size=4))
    with pytest.raises(FeatureError, match="config must be a feature configuration"):
        nc.extract_features(batch, {"min_spikes": 10})
    with pytest.raises(FeatureError, match="fs must be a feature set"):
        nc.save_features(tmp_path / "x.npz", {"acg": 1})


# -------------------------------------------------------------------------------- (g) the rest


def test_docstrings_document_the_parameters_and_attributes():
    from nwb_celltype.annotate import AnnotationResult, annotate

    for p in ("dandi_api_url", "cache_dir", "batch_size", "progress", "call"):
        assert f"    {p} :" in annotate.__doc__, p
    documented = {
        name.strip()
        for names in re.findall(r"^    (\w[\w, ]*) :", AnnotationResult.__doc__, re.M)
        for name in names.split(",")
    }
    for a in ("mode", "n_classified", "n_unclassified", "n_not_classifiable", "threshold", "source", "model"):
        assert a in documented, a
    assert "demo_model" in documented
    doc = (ROOT / "docs" / "classifier.md").read_text()
    row = next(line for line in doc.splitlines() if line.startswith("| `reasons` |"))
    assert "out of distribution" in row and "| `used_waveform` |" in doc


def test_output_path_is_absolute_for_a_relative_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = nc.annotate(DEMO, out="rel.nwb")
    assert os.path.isabs(res.output_path) and Path(res.output_path) == tmp_path / "rel.nwb"


def test_demo_model_logs_a_warning(tmp_path, demo_bundle, caplog):
    from nwb_celltype.model import shipped

    shipped._DEMO_WARNED.clear()
    with caplog.at_level(logging.WARNING, logger="nwb_celltype"):
        res = nc.annotate(DEMO, out=tmp_path / "d.nwb", model=demo_bundle)
    assert res.demo_model
    hits = [r for r in caplog.records if "DEMO model" in r.getMessage()]
    assert len(hits) == 1 and hits[0].levelno == logging.WARNING
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nwb_celltype"):
        shipped.resolve_model(demo_bundle)  # once per process and bundle
    assert not [r for r in caplog.records if "DEMO model" in r.getMessage()]


def test_default_model_logs_no_demo_warning(caplog):
    from nwb_celltype.model import shipped

    with caplog.at_level(logging.WARNING, logger="nwb_celltype"):
        _, is_demo = shipped.resolve_model(None)
    assert not is_demo and not [r for r in caplog.records if "DEMO" in r.getMessage()]


def _fake_main(monkeypatch, tmp_path, text: str):
    script = tmp_path / "run.py"
    script.write_text(text)
    main = types.ModuleType("__main__")
    main.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", main)
    return script


def test_a_broken_pool_names_the_missing_main_guard(tmp_path, monkeypatch):
    from nwb_celltype.batch._execute import _one_line, _with_guard_hint, main_guard_hint

    script = _fake_main(monkeypatch, tmp_path, "import nwb_celltype as nc\nnc.annotate_dandiset('000000')\n")
    hint = main_guard_hint()
    assert str(script) in hint and 'if __name__ == "__main__":' in hint
    exc = _with_guard_hint(BrokenProcessPool("A process in the process pool was terminated abruptly"))
    assert isinstance(exc, BrokenProcessPool)
    assert "terminated abruptly" in _one_line(exc) and "__main__" in _one_line(exc)


def test_no_guard_hint_for_a_guarded_script(tmp_path, monkeypatch):
    from nwb_celltype.batch._execute import _with_guard_hint, main_guard_hint

    _fake_main(monkeypatch, tmp_path, 'if __name__ == "__main__":\n    pass\n')
    assert main_guard_hint() == ""
    exc = BrokenProcessPool("x")
    assert _with_guard_hint(exc) is exc


def test_classify_sorting_checks_the_threshold_before_reading_the_sorting():
    """Before, the spike trains were read and their features computed, then the threshold refused."""

    class Unreadable:  # any attempt to read it would fail otherwise
        def __getattr__(self, name):
            raise AssertionError(f"the sorting was read ({name}) before the threshold was checked")

    with pytest.raises(InvalidValueError, match=r"^threshold must be"):
        nc.classify_sorting(Unreadable(), threshold="2", set_properties=False)


def test_feature_predictions_and_training_set_reprs_are_short(tmp_path):
    """Before, both printed every array they hold (180 kB for 984 units)."""
    from nwb_celltype.classify import predict_features
    from nwb_celltype.library.tables import import_tables
    from nwb_celltype.library.training import load_training_set
    from nwb_celltype.testing.real_data import real_c4_dir

    hull = real_c4_dir() / "hull"
    _check_repr(predict_features(hull), "FeaturePredictions(", "n_units=79", "nwb-celltype-real-c4", "PkC_ss")
    import_tables([hull], tmp_path / "hull.toml")
    from nwb_celltype.features import DischargeConfig

    ts = load_training_set(tmp_path / "hull.toml", config=DischargeConfig())
    _check_repr(ts, "TrainingSet(", "n_units=79", "files=1", "hull.toml", "'GoC': 2")
