"""The ``nwb-celltype`` command line: one click group, one module per command, heavy imports
inside the commands. Our own errors become one line on stderr and exit status 1."""

from __future__ import annotations

import importlib
import logging
import sys

import click

from ..errors import NwbCelltypeError

#: command name -> "module:attribute" (module relative to this package). A command whose module
#: does not exist yet is simply not offered.
COMMANDS: dict[str, str] = {
    "demo": ".demo:demo",
    "simulate": ".simulate:simulate",
    "features": ".features:features",
    "predict": ".predict:predict",
    "train": ".train:train",
    "evaluate": ".evaluate:evaluate",
    "annotate": ".annotate:annotate",
    "show": ".show:show",
    "export": ".export:export",
    "report": ".report:report",
    "c4": ".c4:c4",
    "library": ".library:library",
    "annotate-dandiset": ".annotate_dandiset:annotate_dandiset",
    "assets": ".assets:assets",
}


def _module_exists(spec: str) -> bool:
    mod = spec.split(":")[0]
    return importlib.util.find_spec(mod, __name__) is not None


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name, spec in COMMANDS.items() if _module_exists(spec))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        spec = COMMANDS.get(name)
        if spec is None or not _module_exists(spec):
            return None
        mod, attr = spec.split(":")
        return getattr(importlib.import_module(mod, __name__), attr)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except NwbCelltypeError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nwb-celltype")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Classify spike-sorted units in NWB files into cerebellar cell types (C4 method) and write
    the labels, calibrated probabilities and provenance back into NWB (ndx-celltype extension)."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
