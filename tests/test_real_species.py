"""Labels a species' training units cannot support (nwb_celltype.model.real_species): what the
training records, which units prediction withholds labels from, and that `predict` (tables' species,
--species) and `annotate` (the NWB Subject's species) hand the species to the model."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from nwb_celltype.features.discharge import DischargeConfig
from nwb_celltype.model.real_species import (
    SPECIES_REASON,
    canonical_species,
    species_coverage,
    species_support,
    unsupported_for_species,
)
from nwb_celltype.testing.real_data import real_c4_dir

REAL = real_c4_dir()
CLASSES = ("PkC_ss", "PkC_cs", "MLI", "GoC", "MFB")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mouse", "Mus musculus"),
        (" Mus musculus ", "Mus musculus"),
        ("http://purl.obolibrary.org/obo/NCBITaxon_10090", "Mus musculus"),
        ("macaque", "Macaca mulatta"),
        ("Rhesus monkey", "Macaca mulatta"),
        ("NCBITaxon:9544", "Macaca mulatta"),
        ("rat", "Rattus norvegicus"),
        ("NCBITaxon_10116", "Rattus norvegicus"),
        ("Macaca fascicularis", "Macaca fascicularis"),  # another species: kept as named
        # a strain or note after the species (DANDI files often say so): the species decides
        ("Mus musculus (C57BL/6)", "Mus musculus"),
        ("Mus musculus C57BL/6J", "Mus musculus"),
        ("mouse [PV-Cre]", "Mus musculus"),
        ("Rattus norvegicus (Long-Evans)", "Rattus norvegicus"),
        ("Homo sapiens", "Homo sapiens"),
        ("Mus musculus, C57BL/6J", "Mus musculus"),
        ("Mus musculus; Pcp2-Cre", "Mus musculus"),
        ("C57BL/6J mouse", "Mus musculus"),
        ("PV-Cre mice", "Mus musculus"),
        ("Long-Evans rat", "Rattus norvegicus"),
        ("Sprague Dawley rat", "Rattus norvegicus"),
        ("mouse lemur", "mouse lemur"),  # a primate: not a mouse
        ("deer mouse", "deer mouse"),  # Peromyscus
        ("unknown", ""),
        ("", ""),
        (None, ""),
    ],
)
def test_species_names_are_compared_by_their_binomial(name, expected):
    assert canonical_species(name) == expected


def test_support_counts_labelled_units_with_a_discharge_per_species():
    species = np.array(["mouse", "Mus musculus", "mouse", "mouse", "macaque", "", "macaque"], dtype=object)
    labels = np.array(["GoC", "GoC", "PkC_ss", "GoC", "GoC", "MLI", "GrC"])
    has_d = np.array([True, True, True, False, True, True, True])  # the 4th unit only has a waveform
    support = species_support(species, labels, has_d, CLASSES)
    assert support == {
        "Mus musculus": {"PkC_ss": 1, "PkC_cs": 0, "MLI": 0, "GoC": 2, "MFB": 0},
        "Macaca mulatta": {"PkC_ss": 0, "PkC_cs": 0, "MLI": 0, "GoC": 1, "MFB": 0},
    }
    assert species_support(None, labels, has_d, CLASSES) == {}


def _meta(mouse_mfb: int, macaque_mfb: int) -> dict:
    """A model_meta with the shipped model's species support (MFB counts as given), minimum 5."""
    return {
        "classes": list(CLASSES),
        "config": {"min_species_class_units": 5},
        "species_support": {
            "Mus musculus": {"PkC_ss": 27, "PkC_cs": 26, "MLI": 10, "GoC": 2, "MFB": mouse_mfb},
            "Macaca mulatta": {"PkC_ss": 158, "PkC_cs": 109, "MLI": 27, "GoC": 141, "MFB": macaque_mfb},
        },
    }


def test_labels_are_withheld_only_for_units_of_a_species_the_model_was_trained_on():
    meta = _meta(mouse_mfb=14, macaque_mfb=4)
    top = np.array([3, 0, 3, 4, 4, -1])  # GoC, PkC_ss, GoC, MFB, MFB, none
    sp = np.array(["mouse", "mouse", "macaque", "macaque", "Mus musculus", "mouse"], dtype=object)
    withheld, counts = unsupported_for_species(meta, sp, top)
    assert withheld.tolist() == [True, False, False, True, False, False]
    assert counts.tolist() == [2, 27, 141, 4, 14, -1]
    # one name for every unit
    withheld, _ = unsupported_for_species(meta, "mouse", top)
    assert withheld.tolist() == [True, False, True, False, False, False]
    # no species, a species the model was not trained on, the rule off, a model without the rule
    for m, s in [
        (meta, None),
        (meta, "Macaca fascicularis"),
        (meta, ""),
        ({**meta, "config": {"min_species_class_units": 0}}, "mouse"),
        ({k: v for k, v in meta.items() if k != "species_support"}, "mouse"),
    ]:
        withheld, counts = unsupported_for_species(m, s, top)
        assert not withheld.any() and (counts == -1).all()


def test_a_negative_minimum_is_refused():
    pytest.importorskip("torch")
    from nwb_celltype.errors import ModelError
    from nwb_celltype.model.real_networks import RealModelConfig
    from nwb_celltype.model.real_training import train_real_ensemble

    raw = {"acg_counts": np.ones((4, 100)), "isi_counts": np.ones((4, 100)), "waveform": np.zeros((4, 75))}
    with pytest.raises(ModelError, match="min_species_class_units"):
        train_real_ensemble(
            raw, np.array(["A", "B"] * 2), ("A", "B"), config=RealModelConfig(min_species_class_units=-1)
        )


needs_tables = pytest.mark.skipif(
    REAL is None, reason="real tables not on this machine (NWB_CELLTYPE_REAL_C4)"
)


@pytest.fixture(scope="module")
def strict_bundle(tmp_path_factory):
    """A small training on the Hull tables (mouse: 27 PkC_ss, 26 PkC_cs, 10 MLI, 2 GoC, 14 MFB) with
    Hausser waveforms, asking each class for 20 units of the unit's species: for mouse units, MLI,
    GoC and MFB labels are withheld, PkC_ss and PkC_cs labels are not."""
    pytest.importorskip("torch")
    from nwb_celltype.library import load_training_set
    from nwb_celltype.library.tables import import_tables
    from nwb_celltype.model import save_bundle
    from nwb_celltype.model.discharge_bundle import train_discharge_model
    from nwb_celltype.model.real_networks import RealModelConfig

    d = tmp_path_factory.mktemp("species")
    import_tables([REAL / "hull", REAL / "hausser"], d / "lib.toml")
    ts = load_training_set(d / "lib.toml", config=DischargeConfig())
    cfg = RealModelConfig(
        pretrain_epochs=30, epochs=40, folds=3, seeds=1, n_threads=1, min_species_class_units=20
    )
    return save_bundle(train_discharge_model(ts, config=cfg, name="test-species"), d / "model")


@needs_tables
def test_the_card_records_each_species_training_units(strict_bundle):
    from nwb_celltype.model import load_bundle

    b = load_bundle(strict_bundle)
    meta = b.card["model_meta"]
    # the Hull README's counts; the Hausser units (waveforms only) train no class
    assert meta["species_support"] == {
        "Mus musculus": {"PkC_ss": 27, "PkC_cs": 26, "MLI": 10, "GoC": 2, "MFB": 14}
    }
    assert meta["config"]["min_species_class_units"] == 20
    assert "fewer than 20 training units" in b.card["decision"]


@needs_tables
def test_predict_withholds_the_labels_a_species_gave_too_few_units_of(strict_bundle, tmp_path):
    from nwb_celltype.library.tables import read_feature_tables
    from nwb_celltype.model import load_bundle, predict_cell_types

    fs = read_feature_tables(REAL / "hull", config=DischargeConfig())
    assert fs.meta["species"] == "mouse"
    b = load_bundle(strict_bundle)
    b.card["model_meta"]["config"]["min_agreement"] = 0.0  # fewer other abstentions to look through
    mouse = predict_cell_types(b, fs)  # the tables' species
    other = predict_cell_types(b, fs, species="Macaca fascicularis")  # a species it was not trained on
    top = np.asarray(b.classes)[np.nan_to_num(mouse.probabilities, nan=-1).argmax(1)]
    np.testing.assert_array_equal(mouse.probabilities, other.probabilities)
    assert not np.isin(mouse.labels, ["MLI", "GoC", "MFB"]).any()
    assert np.isin(other.labels, ["MLI", "MFB"]).any()
    lost = (other.status == "classified") & (mouse.status != "classified")
    assert lost.any() and set(top[lost]) <= {"MLI", "GoC", "MFB"}
    for r, t in zip(mouse.reasons[lost], top[lost], strict=True):
        n = {"MLI": 10, "GoC": 2, "MFB": 14}[t]
        assert r.startswith(SPECIES_REASON) and f"{t}: the model was trained on {n} such units" in r
    # what the other species keeps, the mouse units keep too
    kept = other.status == "classified"
    same = kept & np.isin(top, ["PkC_ss", "PkC_cs"])
    assert same.any() and (mouse.labels[same] == other.labels[same]).all()

    # the CLI: the tables' species by default, --species to state another
    outs = {}
    for name, extra in (("tables", []), ("other", ["--species", "Macaca fascicularis"])):
        out = tmp_path / f"{name}.tsv"
        args = ["predict", str(REAL / "hull"), "--out", str(out), "--model", str(strict_bundle), *extra]
        res = CliRunner().invoke(__import__("nwb_celltype.cli", fromlist=["main"]).main, args)
        assert res.exit_code == 0, res.output
        with open(out) as f:
            f.readline()
            outs[name] = [r["label"] for r in csv.DictReader(f, delimiter="\t")]
    assert not {"MLI", "GoC", "MFB"} & set(outs["tables"])
    assert {"MLI", "GoC", "MFB"} & set(outs["other"])


@needs_tables
def test_annotate_reads_the_species_from_the_nwb_subject(strict_bundle, tmp_path):
    import h5py
    from pynwb import NWBHDF5IO

    from nwb_celltype.annotate import annotate
    from nwb_celltype.io import open_source
    from nwb_celltype.nwb import read_annotations
    from nwb_celltype.simulate import simulate_recording

    mouse = tmp_path / "mouse.nwb"
    simulate_recording(mouse, n_units=40, duration_s=300, seed=3)
    rhesus = tmp_path / "rhesus.nwb"
    rhesus.write_bytes(mouse.read_bytes())
    with h5py.File(rhesus, "a") as f:
        del f["general/subject/species"]
        f["general/subject/species"] = "Macaca fascicularis"
    with open_source(mouse) as src, open_source(rhesus) as other:
        assert src.species == "Mus musculus" and other.species == "Macaca fascicularis"

    recs = {}
    for name, path in (("mouse", mouse), ("rhesus", rhesus)):
        annotate(path, model=strict_bundle, out=tmp_path / f"{name}-a.nwb")
        with NWBHDF5IO(str(tmp_path / f"{name}-a.nwb"), "r") as io:
            recs[name] = next(iter(read_annotations(io.read()).values()))
    m, r = recs["mouse"], recs["rhesus"]
    for rec, named in ((m, "Mus musculus"), (r, "Macaca fascicularis")):  # the provenance says which
        params = rec.classifier["parameters"]
        assert (json.loads(params) if isinstance(params, str) else params)["subject_species"] == named
    np.testing.assert_allclose(np.nan_to_num(m.probabilities), np.nan_to_num(r.probabilities))
    assert not np.isin(np.asarray(m.labels, dtype=str), ["MLI", "GoC", "MFB"]).any()
    lost = (np.asarray(r.status) == "classified") & (np.asarray(m.status) != "classified")
    assert lost.any()
    assert all(str(x).startswith(SPECIES_REASON) for x in np.asarray(m.reasons)[lost])

    # `features` keeps the Subject's species in its file, and `predict` uses it
    cli = __import__("nwb_celltype.cli", fromlist=["main"]).main
    labels = {}
    for name, path in (("mouse", mouse), ("rhesus", rhesus)):
        npz, tsv = tmp_path / f"{name}.npz", tmp_path / f"{name}.tsv"
        res = CliRunner().invoke(
            cli, ["features", str(path), "--out", str(npz), "--model", str(strict_bundle), "-q"]
        )
        assert res.exit_code == 0, res.output
        res = CliRunner().invoke(
            cli, ["predict", str(npz), "--out", str(tsv), "--model", str(strict_bundle), "-q"]
        )
        assert res.exit_code == 0, res.output
        with open(tsv) as f:
            f.readline()
            labels[name] = [r["label"] for r in csv.DictReader(f, delimiter="\t")]
    assert labels["mouse"] == [str(x) for x in m.labels] and labels["rhesus"] == [str(x) for x in r.labels]

    # a file whose Subject names the wrong species (or none): --species says which
    res = CliRunner().invoke(
        __import__("nwb_celltype.cli", fromlist=["main"]).main,
        ["annotate", str(rhesus), "--model", str(strict_bundle), "--out", str(tmp_path / "stated.nwb")]
        + ["--species", "mouse", "--quiet"],
    )
    assert res.exit_code == 0, res.output
    with NWBHDF5IO(str(tmp_path / "stated.nwb"), "r") as io:
        stated = next(iter(read_annotations(io.read()).values()))
    np.testing.assert_array_equal(np.asarray(stated.labels), np.asarray(m.labels))
    params = stated.classifier["parameters"]
    params = json.loads(params) if isinstance(params, str) else params
    assert (params["subject_species"], params["species"]) == ("Macaca fascicularis", "mouse")
    shown = CliRunner().invoke(cli, ["show", str(tmp_path / "stated.nwb"), "--max-units", "1"])
    assert shown.exit_code == 0 and "units scored as mouse" in shown.output, shown.output

    # pynapple users state the species themselves: the same rule, on the discharge alone
    import pynapple as nap

    from nwb_celltype import classify_tsgroup

    with NWBHDF5IO(str(mouse), "r") as io:
        units = io.read().units
        trains = {int(i): nap.Ts(t=np.asarray(units["spike_times"][k])) for k, i in enumerate(units.id[:])}
    frames = {
        s: classify_tsgroup(nap.TsGroup(trains), model=strict_bundle, species=s, set_metadata=False)
        for s in ("mouse", "Macaca fascicularis")
    }
    fm, fo = frames["mouse"], frames["Macaca fascicularis"]
    assert fm.attrs["species"] == "mouse"
    assert not fm.cell_type.isin(["MLI", "GoC", "MFB"]).any()
    gone = (fo.status == "classified") & (fm.status != "classified")
    assert gone.any() and fm.reason[gone].str.startswith(SPECIES_REASON).all()


def test_a_file_without_a_subject_names_no_species(tmp_path):
    """`Source.species` is "" for an NWB file with no Subject (annotate then rules on no species)."""
    from datetime import datetime, timezone

    from pynwb import NWBHDF5IO, NWBFile

    from nwb_celltype.io import open_source

    path = tmp_path / "bare.nwb"
    nwb = NWBFile("no subject", "bare", datetime(2026, 1, 1, tzinfo=timezone.utc))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    with open_source(path) as src:
        assert src.species == ""


def test_an_nwb_library_records_each_files_species(tmp_path):
    """Training sets read from NWB files carry the Subject's species per file (what the model's
    species_support counts), computed and from the feature cache alike."""
    from nwb_celltype.library import load_training_set
    from nwb_celltype.simulate import simulate_recording

    mouse, macaque = tmp_path / "m.nwb", tmp_path / "q.nwb"
    simulate_recording(mouse, n_units=6, duration_s=60, seed=1)
    simulate_recording(macaque, n_units=6, duration_s=60, seed=2, preset="macaque")
    for _ in range(2):  # the second time from the cache
        ts = load_training_set([mouse, macaque], config=DischargeConfig(), cache_dir=tmp_path / "cache")
        assert [r.get("species") for r in ts.references] == ["Mus musculus", "Macaca mulatta"]


def test_species_coverage_says_whether_the_model_learnt_from_the_units_species():
    meta = _meta(mouse_mfb=4, macaque_mfb=64)
    both = ("Macaca mulatta", "Mus musculus")
    for named in ("mouse", ["mouse", "macaque", "Mus musculus"]):
        c = species_coverage(meta, named)
        assert (c.kind, c.note) == ("trained", "") and c.trained == both
    c = species_coverage(meta, "Rattus norvegicus")
    assert (c.kind, c.stated) == ("not_trained", ("Rattus norvegicus",))
    assert "not trained on units of Rattus norvegicus" in c.note and "cross-species" in c.note
    # one unit of another species makes the set a transfer, whatever the others are
    assert species_coverage(meta, ["mouse", "rat", ""]).kind == "not_trained"
    for named in (None, "", "unknown", ["mouse", ""]):
        c = species_coverage(meta, named)
        assert c.kind == "unstated", named
        # the note names what the rule would have withheld: classes below 5 units, per species
        assert "Mus musculus: GoC, MFB" in c.note and "Macaca mulatta:" not in c.note
    assert species_coverage(meta, ["mouse", ""]).note.startswith("some units' species is not stated")
    # models that record no training species (before 1.7, C4 family) say nothing
    for m in ({}, {"species_support": {}}):
        for named in ("rat", None):
            assert (species_coverage(m, named).kind, species_coverage(m, named).note) == ("unrecorded", "")
    assert species_coverage({**meta, "config": {"min_species_class_units": 0}}, None).note.endswith(
        "units of only from units whose species is stated"
    )


def test_users_are_told_when_the_units_species_is_unstated_or_not_trained(tmp_path, caplog):
    """The default model (trained on mouse and macaque units) on the demo recording (a mouse file):
    annotate, show, predict and classify_tsgroup say when the species is none the model learnt from,
    or not stated, and record which in the provenance and results."""
    import logging

    import h5py
    from pynwb import NWBHDF5IO

    from nwb_celltype import classify_tsgroup
    from nwb_celltype.annotate import annotate
    from nwb_celltype.nwb import read_annotations
    from nwb_celltype.simulate import demo_recording_path

    cli = __import__("nwb_celltype.cli", fromlist=["main"]).main
    demo = tmp_path / "demo.nwb"
    demo.write_bytes(demo_recording_path().read_bytes())
    bare = tmp_path / "bare.nwb"
    bare.write_bytes(demo.read_bytes())
    with h5py.File(bare, "a") as f:
        del f["general/subject/species"]

    def provenance(path):
        with NWBHDF5IO(str(path), "r") as io:
            params = next(iter(read_annotations(io.read()).values())).classifier["parameters"]
        return json.loads(params) if isinstance(params, str) else params

    runs = {}
    for name, path, extra in (
        ("mouse", demo, {}),
        ("rat", demo, {"species": "rat"}),
        ("bare", bare, {}),
    ):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="nwb_celltype"):
            r = annotate(path, out=tmp_path / f"{name}-a.nwb", **extra)
        warned = [m.getMessage() for m in caplog.records if "species" in m.getMessage()]
        runs[name] = (r, warned, provenance(r.output_path))
    r, warned, params = runs["mouse"]
    assert r.species["kind"] == "trained" and r.species["stated"] == ["Mus musculus"] and not warned
    assert params["species_coverage"] == "trained"
    r, warned, params = runs["rat"]
    assert r.species["kind"] == "not_trained" and r.species["stated"] == ["Rattus norvegicus"]
    assert params["species_coverage"] == "not_trained" and len(warned) == 1
    assert "not trained on units of Rattus norvegicus" in warned[0]
    r, warned, params = runs["bare"]
    assert (r.species["kind"], params["species_coverage"], params["subject_species"]) == (
        "unstated",
        "unstated",
        "",
    )
    assert len(warned) == 1 and "Mus musculus: GoC" in warned[0]
    # the rule is off without a species: the GoC labels a mouse file's units do not get come back
    goc = {k: runs[k][0].label_counts.get("GoC", 0) for k in runs}
    assert goc["mouse"] == 0 and goc["bare"] >= 1, goc

    # the CLI summary and `show` say it too; a mouse file's summary has no species line
    out = {}
    for name, args in (
        ("mouse", [str(demo)]),
        ("rat", [str(demo), "--species", "rat"]),
        ("bare", [str(bare)]),
    ):
        res = CliRunner().invoke(cli, ["annotate", *args, "--out", str(tmp_path / f"{name}-cli.nwb")])
        assert res.exit_code == 0, res.output
        out[name] = res.output
    assert "species:" not in out["mouse"]
    assert "species: Rattus norvegicus, which the model was not trained on" in out["rat"]
    assert "species: not stated for every unit" in out["bare"]
    shown = CliRunner().invoke(cli, ["show", str(tmp_path / "rat-cli.nwb"), "--max-units", "1"])
    assert shown.exit_code == 0 and "a species the model was not trained on" in shown.output, shown.output
    shown = CliRunner().invoke(cli, ["show", str(tmp_path / "mouse-cli.nwb"), "--max-units", "1"])
    assert shown.exit_code == 0 and "not trained" not in shown.output and "not stated" not in shown.output

    # predict on a features file: its species by default, --species to state another; --json has it
    npz = tmp_path / "demo.npz"
    res = CliRunner().invoke(cli, ["features", str(demo), "--out", str(npz), "-q"])
    assert res.exit_code == 0, res.output
    for extra, kind in (([], "trained"), (["--species", "Rattus norvegicus"], "not_trained")):
        tsv = tmp_path / f"p{kind}.tsv"
        res = CliRunner().invoke(cli, ["predict", str(npz), "--out", str(tsv), "--json", *extra])
        assert res.exit_code == 0, res.output
        assert json.loads(res.output[res.output.index("{") :])["species"]["kind"] == kind

    # pynapple users who state no species are told the rule did not apply
    import pynapple as nap

    with NWBHDF5IO(str(demo), "r") as io:
        units = io.read().units
        trains = {int(i): nap.Ts(t=np.asarray(units["spike_times"][k])) for k, i in enumerate(units.id[:])}
    for species, kind in ((None, "unstated"), ("mouse", "trained"), ("Macaca fascicularis", "not_trained")):
        df = classify_tsgroup(nap.TsGroup(trains), species=species, set_metadata=False)
        assert df.attrs["species_coverage"]["kind"] == kind


def test_training_warns_of_the_labels_a_species_will_never_get(caplog):
    """A library with 2 mouse Golgi cells: the trained model withholds GoC from mouse units, and the
    training says so (it was silent; users found out at annotate time)."""
    import logging

    from nwb_celltype.model.real_species import warn_withheld_classes

    meta = {
        "classes": ["PkC_ss", "GoC"],
        "config": {"min_species_class_units": 5},
        "species_support": {"mouse": {"PkC_ss": 27, "GoC": 2}, "macaque": {"PkC_ss": 158, "GoC": 141}},
    }
    with caplog.at_level(logging.WARNING, logger="nwb_celltype"):
        assert warn_withheld_classes(meta) == ["mouse: GoC"]
    assert "fewer than 5 training units" in caplog.text and "mouse: GoC" in caplog.text
    caplog.clear()
    assert warn_withheld_classes({**meta, "config": {"min_species_class_units": 0}}) == []
    assert not caplog.text
