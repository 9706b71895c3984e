"""Session 20's docs audit (/work/notes/audit20_docs.md): where a page or a --help said what the
code did not do, the code or the text changed; each test fails on a2480a2."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from nwb_celltype.cli import main
from nwb_celltype.errors import NwbCelltypeError


class _Stop(Exception):
    pass


@pytest.mark.parametrize("command", ["train", "evaluate"])
@pytest.mark.parametrize(
    ("flag", "tty", "want"),
    [(None, False, False), (None, True, True), ("--progress", False, True), ("--no-progress", True, False)],
)
def test_train_and_evaluate_draw_bars_only_on_a_terminal_unless_told(
    command, flag, tty, want, tmp_path, monkeypatch
):
    """train and evaluate drew tqdm bars into any stderr (a job system's log got every redraw);
    unset, --progress now follows the terminal as annotate, features and report do."""
    import nwb_celltype.cli._common as cli_common
    import nwb_celltype.cli.evaluate as cli_evaluate
    import nwb_celltype.cli.train as cli_train

    seen = []

    def load_library(library, cache_dir, annotation, progress, family="c4-3d"):
        seen.append(progress)
        raise _Stop

    monkeypatch.setattr(cli_train, "load_library", load_library)
    monkeypatch.setattr(cli_evaluate, "load_library", load_library)
    # the CLI's one terminal check (CliRunner swaps sys.stderr for its own stream)
    monkeypatch.setattr(cli_common, "progress_bars", lambda quiet: tty and not quiet)
    args = [command, str(tmp_path / "lib.toml"), "--out", str(tmp_path / "out"), "--family", "c4-3d"]
    res = CliRunner().invoke(main, args + ([flag] if flag else []))
    assert isinstance(res.exception, _Stop), res.output
    assert seen == [want]


def test_merge_manifests_takes_paths_as_its_neighbours_do(tmp_path, monkeypatch):
    """docs/library.md shows merge_manifests([a, b], name=...) beside functions that take manifest
    paths; given paths it failed with AttributeError ('str' object has no attribute 'entries')."""
    from test_library_tables17 import _tables

    from nwb_celltype.library import (
        create_manifest,
        import_tables,
        load_manifest,
        merge_manifests,
        mock_library_file,
    )

    monkeypatch.chdir(tmp_path)
    _tables(tmp_path / "hull", ["MLI", "GoC"])
    import_tables([tmp_path / "hull"], tmp_path / "hull.toml")
    nwb = create_manifest([mock_library_file(tmp_path / "r.nwb", n_units=2)], name="nwb", root=tmp_path)
    nwb.save(tmp_path / "nwb.toml")
    by_path = merge_manifests([tmp_path / "nwb.toml", "hull.toml"], name="all")
    by_object = merge_manifests(
        [load_manifest(tmp_path / "nwb.toml"), load_manifest("hull.toml")], name="all"
    )
    assert [e.to_dict() for e in by_path.entries] == [e.to_dict() for e in by_object.entries]
    assert [e.library for e in by_path.entries] == ["nwb", "hull"]
    with pytest.raises(NwbCelltypeError, match=r"a list of manifests or manifest paths"):
        merge_manifests("hull.toml", name="all")  # one path, not a list of them


def test_show_agreement_says_what_a_file_with_ground_truth_lacks(tmp_path):
    """A file holding ground-truth labels but no prediction table: `show --agreement` said it held
    no ground-truth labels; it says there is nothing to compare them with, and what to do."""
    from nwb_celltype.library import label_file, mock_library_file

    src = mock_library_file(tmp_path / "rec.nwb", n_units=4)
    table = tmp_path / "l.csv"
    table.write_text("unit_id,label\n0,PkC_ss\n1,MLI\n")
    out = label_file(src, table, evidence_type="optotagging", labelled_by="me", out=tmp_path / "gt.nwb")
    res = CliRunner().invoke(main, ["show", str(out), "--agreement"])
    assert res.exit_code == 0, res.output
    assert "holds ground-truth or expert labels (ground_truth) but no predictions" in res.output, res.output
    assert "nwb-celltype annotate" in res.output
    res = CliRunner().invoke(main, ["show", str(src), "--agreement"])
    assert "no ground-truth or expert labels to compare with" in res.output, res.output


def test_show_agreement_says_when_predictions_and_ground_truth_share_no_unit(tmp_path):
    """Review 20 (F7): the third reason, predictions of other units than the labelled ones."""
    from pynwb import NWBHDF5IO

    from nwb_celltype.library import label_file, mock_library_file
    from nwb_celltype.nwb import add_annotations

    src = mock_library_file(tmp_path / "rec.nwb", n_units=4)
    table = tmp_path / "l.csv"
    table.write_text("unit_id,label\n0,PkC_ss\n1,MLI\n")
    out = label_file(src, table, evidence_type="optotagging", labelled_by="me", out=tmp_path / "gt.nwb")
    with NWBHDF5IO(str(out), "a") as io:
        f = io.read()
        add_annotations(f, name="pred", units_region=[2, 3], labels=["MLI", "GoC"], classes=["MLI", "GoC"])
        io.write(f)
    res = CliRunner().invoke(main, ["show", str(out), "--agreement"])
    assert res.exit_code == 0, res.output
    assert "no prediction table labels the units of the ground-truth or expert tables" in res.output, (
        res.output
    )
