"""Options and output helpers shared by several commands."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
from collections import Counter

import click


def json_safe(obj):
    """``obj`` with NaN and infinities replaced by None (JSON has no NaN: ``json.dumps`` would write
    the invalid token ``NaN``) and numpy scalars / arrays turned into Python values."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return json_safe(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def reason_lines(unclassified: list[dict], skipped: list[dict]) -> list[str]:
    """The "unclassified, by reason" and "not classifiable, by reason" blocks of a summary, from
    ``{"reason"}`` dicts (:func:`reason_counts`); an unclassified unit without a reason of the
    model's was below the threshold. Empty blocks are left out."""
    below = "confidence ratio below the threshold"
    lines = []
    for title, held in (
        ("unclassified", [{"reason": d.get("reason") or below} for d in unclassified]),
        ("not classifiable", skipped),
    ):
        counts = reason_counts(held)
        if counts:
            lines.append(f"{title}, by reason:")
            lines.extend(f"  {n:>4}  {reason}" for reason, n in counts.items())
    return lines


def result_agreement(result) -> list:
    """The agreement of the table an annotate run wrote with the ground-truth or expert labels its
    output file holds (:mod:`nwb_celltype.agreement`; empty when it holds none)."""
    from ..agreement import agreements_in_file
    from ..errors import NwbCelltypeError

    try:
        return [a for a in agreements_in_file(result.output_path) if a.prediction == result.table_name]
    except (NwbCelltypeError, OSError) as exc:  # the annotations are written: say so, do not fail the run
        logging.getLogger(__name__).warning("could not compare with the file's labels: %s", exc)
        return []


def echo_result(result, as_json: bool) -> None:
    """Print an annotate run: its JSON (with ``agreement``) or its summary, then the agreement with
    the labels the file already held."""
    from ..agreement import format_agreement

    agreed = result_agreement(result)
    if as_json:
        print_json({**result.to_dict(), "agreement": [a.to_dict() for a in agreed]})
        return
    click.echo(format_summary(result))
    for a in agreed:
        click.echo(format_agreement(a))


def print_json(obj) -> None:
    """Print ``obj`` as strict JSON on stdout (NaN -> null; numpy values and paths converted)."""
    click.echo(json.dumps(json_safe(obj), indent=2, sort_keys=True, default=str, allow_nan=False))


_OWN_NUMBER = re.compile(r"(?<![=\w.])\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def reason_counts(skipped: list[dict]) -> dict[str, int]:
    """Count of each reason, most frequent first; a unit's own numbers become N (settings such as
    ``min_spikes=100`` stay), so '34 spikes < min_spikes=100' and '51 spikes < ...' count together."""
    counts = Counter(
        _OWN_NUMBER.sub("N", str(d.get("reason", "")).split(" (")[0]) or "unknown" for d in skipped
    )
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def species_line(coverage: dict | None) -> str:
    """One summary line on the units' species against the model's training species (from
    :meth:`SpeciesCoverage.to_dict`); "" where there is nothing to say (trained or unrecorded)."""
    if not coverage or coverage.get("kind") not in ("not_trained", "unstated"):
        return ""
    learnt = " and ".join(coverage.get("trained") or ())
    if coverage["kind"] == "not_trained":
        others = [s for s in coverage.get("stated") or () if s not in (coverage.get("trained") or ())]
        return (
            f"species: {', '.join(others)}, which the model was not trained on (it learnt from {learnt}): "
            "cross-species labels, with more confident errors (docs/validation.md)"
        )
    return (
        f"species: not stated for {'every' if not coverage.get('stated') else 'some'} unit "
        f"(the model learnt from {learnt}); give --species so that it withholds the labels that "
        "species gave it too few training units of"
    )


#: the Units columns a first model writes (AnnotationResult.units_columns names those written)
_PLAIN_COLUMNS = ("cell_type", "cell_type_probability", "cell_type_confidence")


def format_summary(result) -> str:
    """Human-readable summary of an :class:`~nwb_celltype.annotate.AnnotationResult`."""
    lines = [
        f"annotated {result.n_units} units -> {result.output_path} ({result.mode})",
        f"model: {result.model['name']} {result.model['version']} "
        f"(bundle sha256 {result.model['sha256'][:12]})"
        + (
            "  [DEMO model trained on simulated data: not for scientific conclusions]"
            if result.demo_model
            else ""
        ),
        f"table: processing/cell_types/{result.table_name} (+ Units columns "
        + ", ".join(getattr(result, "units_columns", None) or _PLAIN_COLUMNS)
        + ")"
        + (
            f"; the units of the source's {result.units_table}"
            if getattr(result, "units_table", "/units") != "/units"
            else ""
        ),
        f"threshold {result.threshold:g}: a unit gets a class only if that class is at least "
        f"{result.threshold:g}x as probable as the second best (best/second-best probability ratio)",
        "unclassified = features computed, but no label: below the threshold, or the model "
        "abstained (reason in the table); not_classifiable = no usable features",
        f"classified {result.n_classified}, unclassified {result.n_unclassified}, "
        f"not classifiable {result.n_not_classifiable}",
        *([line] if (line := species_line(getattr(result, "species", None))) else []),
        *([line] if (line := waveform_rate_line(getattr(result, "waveform_rate", None))) else []),
        *(
            ["waveforms ignored (--ignore-waveforms): every unit was scored from its discharge alone"]
            if getattr(result, "ignore_waveforms", False)
            else []
        ),
        *(
            [
                f"{n} units recorded outside the cerebellar cortex (their electrodes' location): labels "
                "withheld (--any-region labels them)"
            ]
            if (n := getattr(result, "outside_cerebellar_cortex", 0))
            else []
        ),
        "labels:",
    ]
    width = max((len(k) for k in result.label_counts), default=5)
    for label, n in sorted(result.label_counts.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {label:<{width}}  {n}")
    lines.extend(reason_lines(result.unclassified, result.skipped))
    t = result.timings
    lines.append(
        "time (s): " + ", ".join(f"{k} {v:.2f}" for k, v in t.items()) + f"; total {sum(t.values()):.2f}"
    )
    return "\n".join(lines)


def any_region_option(f):
    """``--any-region``: label units recorded outside the cerebellar cortex too."""
    return click.option(
        "--any-region",
        is_flag=True,
        help="Label units whose electrode location names a brain region outside the cerebellar cortex (an "
        "Allen CCF acronym such as CA1 or VISp5, or a cerebellar nucleus); by default their labels are "
        "withheld (unclassified, reason 'recorded outside the cerebellar cortex'). Locations naming no region "
        "withhold nothing.",
    )(f)


def model_option(f):
    """``--model BUNDLE`` (default: the package's default model)."""
    return click.option(
        "--model",
        "model",
        type=click.Path(exists=True),
        default=None,
        help="Model bundle (default: the bundled model trained on real identified cerebellar neurons; "
        "see docs/validation.md).",
    )(f)


def in_place_options(what: str):
    """``--in-place`` (on a copy that atomically replaces ``what``) with ``--allow-read-only`` and
    ``--allow-hard-links``, shared by every command that can rewrite a user's file."""

    def decorate(f):
        for d in reversed(
            [
                click.option(
                    "--in-place",
                    is_flag=True,
                    help=f"Write into {what} itself (on a copy that atomically replaces it; mode kept).",
                ),
                click.option(
                    "--allow-read-only",
                    is_flag=True,
                    help=f"With --in-place: replace {what} even if it is read-only.",
                ),
                click.option(
                    "--allow-hard-links",
                    is_flag=True,
                    help=f"With --in-place: replace {what} even if it has other hard links (they keep "
                    "the old content).",
                ),
            ]
        ):
            f = d(f)
        return f

    return decorate


def model_sha256_option(f):
    """``--model-sha256 HEX``: pin the bundle (refuse any other digest)."""
    return click.option(
        "--model-sha256",
        "model_sha256",
        envvar="NWB_CELLTYPE_MODEL_SHA256",
        default=None,
        metavar="HEX",
        help="Refuse the model unless its bundle sha256 (shown by `nwb-celltype show`) starts with HEX "
        "(>= 12 hex digits; env NWB_CELLTYPE_MODEL_SHA256). Recorded in the provenance.",
    )(f)


#: Help of every ``--threshold`` option.
THRESHOLD_HELP = (
    "Confidence ratio (best/second-best probability) below which a unit is 'unclassified' (a model's "
    "per-class floors apply as well). Higher values label fewer units, and fewer units unlike the "
    "training classes: with the default model, 5 instead of 2 labels 22 instead of 28 % of 400 simulated "
    "non-cerebellar-cortex units, and 10 labels 16 % (docs/validation.md)."
)


IGNORE_WAVEFORMS_OPTION = click.option(
    "--ignore-waveforms",
    is_flag=True,
    help="Classify every unit from its discharge (ACG, ISI) alone, as if there were no mean waveforms: "
    "for waveforms unlike the training labs' (another probe or processing, templates). The default "
    "model's recipe on real held-out units (pooled CVs): lower balanced accuracy (macaque 0.80 instead "
    "of 0.87, mouse 0.69 instead of 0.74), but where the mouse waveforms came from another lab, ignoring "
    "them left 1.3 % of units confidently wrong instead of 2.5 % (model 1.7; docs/validation.md, "
    "'Units without a waveform').",
)


def units_table_option(what: str = "annotate", extra: str = ""):
    """``--units-table PATH``: which Units table of a file to ``what`` (read, annotate)."""
    return click.option(
        "--units-table",
        default=None,
        metavar="PATH",
        help=f"Path of the Units table to {what}, for files holding several sortings, e.g. "
        f"processing/ecephys/kilosort (default: /units, else the file's only Units table){extra}.",
    )


def waveform_rate_option(extra: str = ""):
    """``--waveform-rate HZ``: the waveforms' sampling rate where a file does not state it."""
    return click.option(
        "--waveform-rate",
        "waveform_rate_hz",
        type=click.FloatRange(min=0, min_open=True),
        default=None,
        metavar="HZ",
        help="Sampling rate of the file's waveform_mean in Hz, where the file does not state it (neuroconv "
        "exports do not) or states it wrongly (default: the file's, else the rate of the raw "
        f"ElectricalSeries holding the units' electrodes, else 30000; warned){extra}.",
    )


_NO_CACHE = "nwb_celltype.no_cache"


def _note_no_cache(ctx: click.Context, _param, value: bool) -> None:
    if value:
        ctx.meta[_NO_CACHE] = True


def _cache_dir_or_none(ctx: click.Context, param, value):
    """``--cache-dir``'s value, or False (no disk cache) with ``--no-cache``."""
    if not ctx.meta.get(_NO_CACHE):
        return value
    if ctx.get_parameter_source(param.name) is click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError("--no-cache and --cache-dir exclude each other; give one of them.", ctx)
    return False  # also over $NWB_CELLTYPE_CACHE_DIR


def annotation_options(f):
    """Options shared by every command that annotates sources: threshold, batch size, ignoring waveforms, where remote
    sources come from, and the output format (quiet / JSON)."""
    decorators = [
        click.option(
            "--threshold",
            type=float,
            default=2.0,
            show_default=True,
            help=THRESHOLD_HELP,
        ),
        click.option(
            "--batch-size",
            type=click.IntRange(min=1),
            default=256,
            show_default=True,
            help="Units read and featurised at a time (bounds memory).",
        ),
        click.option(
            "--dandi-api-url",
            envvar="NWB_CELLTYPE_DANDI_API_URL",
            default=None,
            help="DANDI API base URL (env NWB_CELLTYPE_DANDI_API_URL).",
        ),
        click.option(
            "--cache-dir",
            envvar="NWB_CELLTYPE_CACHE_DIR",
            default=None,
            callback=_cache_dir_or_none,
            help="On-disk cache for remote bytes (env NWB_CELLTYPE_CACHE_DIR; default "
            "~/.cache/nwb-celltype/remote). A plain URL's cached bytes are used while the server reports "
            "the same size, ETag and Last-Modified (one small request checks); DANDI assets never change.",
        ),
        click.option(
            "--no-cache",
            is_flag=True,
            is_eager=True,
            expose_value=False,
            callback=_note_no_cache,
            help="Read remote bytes without the on-disk cache (excludes --cache-dir).",
        ),
        IGNORE_WAVEFORMS_OPTION,
        click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors."),
        click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (for scripts)."),
    ]
    for d in reversed(decorators):
        f = d(f)
    return f


def progress_bars(quiet: bool) -> bool:
    """Whether a command draws progress bars: not with ``--quiet``, and only where stderr is a
    terminal (in a log file or a pipe every redraw of a bar would become a line of its own)."""
    import sys

    return not quiet and sys.stderr.isatty()


@contextlib.contextmanager
def quiet_logging(quiet: bool):
    """With ``quiet``, silence the package's log output below ERROR for the duration of a command
    (restored afterwards, so commands invoked in-process do not leak the setting)."""
    log = logging.getLogger("nwb_celltype")
    old = log.level
    if quiet:
        log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(old)


def overwrite_option(what: str):
    """``--overwrite`` with one wording across commands (``what`` = what it replaces)."""
    return click.option("--overwrite", is_flag=True, help=f"Replace {what} if it exists.")


def refuse_existing(path, overwrite: bool) -> None:
    """Our one-line error when ``path`` (a file, or a non-empty folder) exists and ``overwrite`` is not
    set: commands never replace an earlier result silently."""
    from pathlib import Path

    from ..errors import AnnotationExistsError

    p = Path(path)
    exists = p.is_file() or (p.is_dir() and any(p.iterdir()))
    if exists and not overwrite:
        raise AnnotationExistsError(f"{p} exists; pass --overwrite to replace it, or choose another path.")


def waveform_rate_line(rate: dict | None) -> str | None:
    """The closing line about the waveforms' sampling rate where the file's Units table did not
    state it (``rate``: ``{"hz", "source"}`` as annotate and features record it), else None."""
    rate = rate or {}
    source = str(rate.get("source") or "")
    if source == "assumed":
        return (
            f"waveforms: the file states no sampling rate; assumed {rate['hz']:g} Hz "
            "(state it with --waveform-rate if it differs)"
        )
    if source.startswith("electrical_series:"):
        return (
            f"waveforms: read at {rate['hz']:g} Hz, the rate of the recording's ElectricalSeries "
            f"'{source.split(':', 1)[1]}' (the Units table states none; --waveform-rate if they were cut "
            "at another rate)"
        )
    return None
