"""The ``nwb-celltype`` command line: one click group, one module per command, heavy imports
inside the commands. Our own errors become one line on stderr and exit status 1."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import signal
import sys
from pathlib import Path

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
        from .._atomic import Interrupted, as_output_error, is_disk_full
        from .._notices import demo_warning_said_elsewhere

        try:
            with demo_warning_said_elsewhere():  # the commands' summaries say it ([DEMO model ...])
                return super().invoke(ctx)
        except NwbCelltypeError as exc:
            _fail(str(exc))
        except Interrupted as exc:
            _fail(str(exc), exc.code)
        except KeyboardInterrupt:  # SIGINT outside a write: the same status as inside one
            _fail("interrupted by SIGINT; no partial output was left", 128 + signal.SIGINT)
        except BrokenPipeError:  # the reader went away (`... | head`): stop quietly, as other tools do
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(128 + signal.SIGPIPE)
        except (OSError, RuntimeError) as exc:
            if is_disk_full(exc):
                name = getattr(exc, "filename", None)
                _fail(str(as_output_error(exc, Path(name) if name else None)))
            if isinstance(exc, OSError) and exc.strerror:  # permissions, read-only file systems, ...
                name = f": {exc.filename}" if exc.filename else ""
                _fail(f"{exc.strerror}{name}. Nothing was written; the input is unchanged.")
            raise

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """Click's usage errors (unknown option, bad value, missing argument) and aborts become
        our one line and exit status 1, like our own errors."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _NO_ARGS_HELP as exc:  # a bare group: its help, which is no error
            click.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
            sys.exit(0)
        except click.ClickException as exc:
            hint = ""
            ctx = getattr(exc, "ctx", None)
            if isinstance(exc, click.UsageError) and ctx is not None:
                hint = f" (see '{ctx.command_path} --help')"
            _fail(exc.format_message() + hint)
        except click.Abort:
            _fail("aborted (interrupted); nothing was changed")
        sys.exit(rv if isinstance(rv, int) else 0)


#: click >= 8.2 raises this for a group called without a command (it shows the help).
_NO_ARGS_HELP: type[Exception] | tuple = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _fail(message: str, status: int = 1) -> None:
    """Print ``message`` as one ``Error:`` line on stderr and exit with ``status``."""
    click.echo("Error: " + " ".join(str(message).split()), err=True)
    sys.exit(status)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nwb-celltype")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.option(
    "--no-jit-cache",
    is_flag=True,
    help="Do not use the on-disk JAX compilation cache (~/.cache/nwb-celltype/jax, or "
    "$XDG_CACHE_HOME; env NWB_CELLTYPE_JAX_CACHE=0 does the same, =DIR moves it).",
)
def main(verbose: int, no_jit_cache: bool) -> None:
    """Classify spike-sorted units in NWB files into cerebellar cell types (C4 method) and write
    the labels, calibrated probabilities and provenance back into NWB (ndx-celltype extension)."""
    if no_jit_cache:
        os.environ["NWB_CELLTYPE_JAX_CACHE"] = "0"  # read when the first kernel is compiled
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
