"""The examples of README.md and the user docs are true: every ```python block runs, and every
``nwb-celltype`` command line shown in a code block names commands and options that exist.

docs/extension.md and docs/library.md have their own tests (test_extension_docs.py,
test_library_e2e.py) and are not repeated here.
"""

from __future__ import annotations

import re
import shlex
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from nwb_celltype.cli import main

REPO = Path(__file__).resolve().parents[1]

#: Pages whose python examples run here; the loopback servers make some of them network tests.
PAGES: dict[str, tuple[pytest.MarkDecorator, ...]] = {
    "README.md": (),
    "docs/annotate.md": (pytest.mark.network,),
    "docs/classifier.md": (),
    "docs/features.md": (),
    "docs/reading.md": (pytest.mark.network,),
    "docs/simulation.md": (),
    "docs/dandiset.md": (pytest.mark.network,),
    "docs/c4.md": (),
    "docs/validation.md": (),
}

#: Generous bound per page (the examples are meant to take seconds; the CPU is shared).
PAGE_BUDGET_S = 120.0

_FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", flags=re.S | re.M)
_SHELL_LANGS = {"", "bash", "sh", "shell", "console", "text"}


def fenced_blocks(path: Path) -> list[tuple[str, str, int]]:
    """(language, code, first line number) of every fenced code block of a Markdown file."""
    text = path.read_text(encoding="utf-8")
    return [(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 2) for m in _FENCE.finditer(text)]


def python_blocks(path: Path) -> list[tuple[str, int]]:
    return [(code, line) for lang, code, line in fenced_blocks(path) if lang == "python"]


@pytest.mark.parametrize("page", [pytest.param(p, marks=m, id=p) for p, m in PAGES.items()])
def test_page_python_examples_run(page, tmp_path, monkeypatch):
    path = REPO / page
    blocks = python_blocks(path)
    assert blocks, f"{page} has no ```python example; every user page shows its API in use"
    monkeypatch.chdir(tmp_path)
    # keep the examples' caches (features, remote chunks) out of the user's home
    monkeypatch.setenv("NWB_CELLTYPE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict = {"__name__": "__docs_example__"}
    start = time.perf_counter()
    for code, line in blocks:
        # the file name carries the page and line, so a traceback points at the failing block;
        # leading newlines make the block's line numbers those of the page
        exec(compile("\n" * (line - 1) + code, str(path), "exec"), namespace)
    elapsed = time.perf_counter() - start
    assert elapsed < PAGE_BUDGET_S, f"{page}: examples took {elapsed:.0f} s; keep them small"


# -- command lines --------------------------------------------------------------------------------


def _command_tree() -> dict[tuple[str, ...], click.Command]:
    """Command path (e.g. ("library", "label")) -> click command, for every command and subcommand."""
    ctx = click.Context(main)
    tree: dict[tuple[str, ...], click.Command] = {}
    for name in main.list_commands(ctx):
        cmd = main.get_command(ctx, name)
        tree[(name,)] = cmd
        if isinstance(cmd, click.Group):
            for sub in cmd.list_commands(ctx):
                tree[(name, sub)] = cmd.get_command(ctx, sub)
    return tree


def _option_names(cmd: click.Command) -> set[str]:
    names = {"--help", "-h"}
    for p in cmd.params:
        if isinstance(p, click.Option):
            names.update(p.opts)
            names.update(p.secondary_opts)
    return names


def _command_lines(page: str) -> list[tuple[int, list[str]]]:
    """Tokens of every ``nwb-celltype ...`` invocation in the page's shell/text code blocks."""
    out = []
    for lang, code, first in fenced_blocks(REPO / page):
        if lang not in _SHELL_LANGS:
            continue
        lines = code.replace("\\\n", " ").splitlines()
        for i, line in enumerate(lines):
            if "nwb-celltype " not in line:
                continue
            lexer = shlex.shlex(line.strip().removeprefix("$ "), posix=True, punctuation_chars=";&|")
            lexer.whitespace_split = True
            lexer.commenters = "#"
            try:
                tokens = list(lexer)
            except ValueError as exc:  # unbalanced quote: the doc's command line is broken
                raise AssertionError(f"{page} line {first + i}: cannot parse {line!r} ({exc})") from exc
            segment: list[str] = []
            for tok in [*tokens, "&&"]:
                if tok in {"&&", ";", "||"}:
                    if segment and segment[0] == "nwb-celltype":
                        out.append((first + i, segment))
                    segment = []
                else:
                    segment.append(tok)
    return out


def test_every_command_documents_its_options():
    runner = CliRunner()
    tree = _command_tree()
    assert {"annotate", "annotate-dandiset", "simulate", "train", "evaluate", "features"} <= {
        path[0] for path in tree
    }
    for path in tree:
        res = runner.invoke(main, [*path, "--help"])
        assert res.exit_code == 0, f"nwb-celltype {' '.join(path)} --help failed: {res.output}"
        assert "Usage:" in res.output


#: Options of other programs that the pages mention in prose (``dask worker --nthreads 1``).
_FOREIGN_OPTIONS = {"--nthreads"}


def _inline_spans(page: str) -> list[tuple[int, str]]:
    """(line, text) of inline code spans outside fenced blocks that mention a ``--option``."""
    text = (REPO / page).read_text(encoding="utf-8")
    text = _FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)  # keep line numbers
    spans = re.finditer(r"`([^`\n]*--[A-Za-z][^`\n]*)`", text)
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in spans]


@pytest.mark.parametrize("page", list(PAGES))
def test_documented_command_lines_exist(page):
    tree = _command_tree()
    groups = {path[0] for path in tree if len(path) == 2}
    lines = _command_lines(page)
    problems = []
    every_option = set().union(*(_option_names(cmd) for cmd in tree.values()))
    for line, span in _inline_spans(page):
        if span.startswith("nwb-celltype "):
            lines.append((line, span.replace("[", " ").replace("]", " ").split()))
            continue
        for opt in re.findall(r"(?<![\w-])--[A-Za-z][\w-]*", span):
            if opt not in every_option | _FOREIGN_OPTIONS:
                problems.append(f"line {line}: no command has the option {opt} (in `{span}`)")
    for line, tokens in lines:
        args = [t for t in tokens[1:] if t not in {"|", "[", "]"}]
        if not args or args[0].isupper():  # `nwb-celltype COMMAND --help`: a placeholder
            continue
        path = (args[0],)
        if args[0] in groups and len(args) > 1:
            path = (args[0], args[1])
        if path not in tree:
            problems.append(f"line {line}: no command `nwb-celltype {' '.join(path)}`")
            continue
        known = _option_names(tree[path])
        for tok in args:
            opt = tok.strip("[]").split("=")[0]
            if re.fullmatch(r"--?[A-Za-z][\w-]*", opt) and opt not in known:
                problems.append(f"line {line}: `nwb-celltype {' '.join(path)}` has no option {opt}")
    assert not problems, f"{page}: " + "; ".join(problems)


def test_command_line_parser_sees_the_readme_commands():
    # guards the parser above: the README's command list must be found, options included
    lines = _command_lines("README.md")
    commands = {tokens[1] for _, tokens in lines if len(tokens) > 1}
    assert {"demo", "annotate", "simulate", "train", "c4", "library", "annotate-dandiset"} <= commands
    assert any("--in-place" in tokens for _, tokens in lines)
