"""How an annotation run writes its output (for :func:`nwb_celltype.annotate.annotate`): where the
labels go (a copy of a local input, the input in place, or a derived file for a remote source), the
input copied and our tables appended to the copy, or a new file holding just the annotated units.
Each of these runs inside :func:`nwb_celltype._atomic.atomic_write`: the input is only read, and
the output appears whole or not at all."""

from __future__ import annotations

import logging
import numbers
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from ._atomic import RESERVE_BASE_BYTES, RESERVE_PER_UNIT_BYTES, check_replaceable, check_space, reserve_space
from ._files import copy_and_hash, held_for_writing_here
from .errors import AnnotationExistsError, InvalidValueError, NotNWBError, OutputError, SourceError

if TYPE_CHECKING:
    from ._annotate_input import UnitsSummary

logger = logging.getLogger("nwb_celltype.annotate")

#: Environment variable used by the kill tests: the run stops (SIGSTOP-like pause) at the named stage.
_PAUSE_ENV = "NWB_CELLTYPE_PAUSE_AT"


def checkpoint(stage: str) -> None:
    """Mark a stage of the run; used by fault-injection tests to kill the process at a known point."""
    logger.debug("stage: %s", stage)
    if os.environ.get(_PAUSE_ENV) == stage:
        print(f"PAUSED AT {stage} (pid {os.getpid()})", file=sys.stderr, flush=True)
        time.sleep(3600)


#: annotate()'s options that change what is written, in its signature's order, with their defaults:
#: the recorded Python call names those given another value.
CALL_OPTIONS = (
    ("model", None),
    ("out", None),
    ("in_place", False),
    ("threshold", 2.0),
    ("precision", "float32"),
    ("model_sha256", None),
    ("ignore_waveforms", False),
    ("species", None),
    ("units_table", None),
    ("waveform_rate_hz", None),
    ("any_region", False),
    ("dandi_api_url", None),
)


def python_call(source, options: dict) -> str:
    """The ``nwb_celltype.annotate(...)`` call the provenance records for a Python caller: the source
    and every option of :data:`CALL_OPTIONS` given a value other than its default, as Python
    literals (paths as text, numpy numbers as Python ones, a model object as the folder it was
    loaded from, pinned by its sha256), so that the call reruns the annotation. A model object
    that was never saved has no folder: it is named ``<name version>``, which is not Python."""
    parts = [repr(str(source))]
    for name, default in CALL_OPTIONS:
        value = options.get(name, default)
        if value is None or value is default or (not isinstance(default, bool) and value == default):
            continue
        card = getattr(value, "card", None)
        if isinstance(card, dict):  # a bundle object: where it came from, and which one it is
            path = getattr(value, "path", None)
            if path is None:
                parts.append(f"{name}=<{card.get('name')} {card.get('version')}>")
                continue
            parts.append(f"{name}={str(path)!r}")
            if options.get("model_sha256") is None:  # the bundle as it was, not the folder's later one
                parts.append(f"model_sha256={card.get('sha256')!r}")
            continue
        if isinstance(value, os.PathLike):
            value = str(value)
        elif isinstance(value, numbers.Number) and not isinstance(value, bool):
            value = int(value) if isinstance(value, numbers.Integral) else float(value)
        parts.append(f"{name}={value!r}")
    return "nwb_celltype.annotate(" + ", ".join(parts) + ")"


def check_nwb_output_path(out: Path, input_path: Path | None) -> None:
    """Refuse ``out`` as the NWB file an annotation (or a labelled copy) is written to: the input
    itself (``input_path``; in-place writing is asked for otherwise), a folder, a missing or
    unwritable folder. Whether an existing file may be replaced is the caller's (``overwrite``);
    outputs that are not NWB files are checked by :func:`nwb_celltype._output_paths.check_output_path`."""
    if input_path is not None and out.resolve() == input_path.resolve():
        raise OutputError(
            f"output path {out} is the input file; use in_place=True (--in-place) to annotate the "
            "input itself, or choose another --out"
        )
    if out.is_dir():  # before "exists, pass --overwrite": overwriting a folder cannot work
        raise OutputError(
            f"output path {out} is a folder; give a file path for --out (out=), e.g. {out / 'name.celltype.nwb'}"
        )
    parent = out.parent
    if not parent.is_dir():
        raise OutputError(f"output folder {parent} does not exist; create it or choose another --out")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output folder {parent} is not writable; choose another --out")


class OutputPlan(NamedTuple):
    """Where the annotations go and how (see :func:`output_plan`)."""

    final: Path
    mode: str
    input_path: Path | None


def output_plan(
    source,
    info: dict,
    out,
    in_place: bool,
    overwrite: bool,
    allow_read_only: bool,
    allow_hard_links: bool,
    table_name: str | None = None,
) -> OutputPlan:
    """Where the annotations go: ``(final path, mode, local input path or None)``, mode one of
    ``in_place``, ``copy`` (local source) and ``derived`` (remote source); refuses a remote source
    in place or without ``out``, an output that exists (without ``overwrite``) or would clobber the
    input, and an input that cannot be replaced in place."""
    local = info.get("kind") == "local"
    input_path = Path(info["path"]) if local else None
    if in_place and not local:
        raise InvalidValueError(
            f"in-place annotation needs a local file, but {source} is remote ({info.get('kind')}); "
            "DANDI assets are immutable: give --out to write a derived file"
        )
    if in_place:
        final, mode = input_path, "in_place"
    elif out is not None:
        # absolute, as the default output is: AnnotationResult.output_path has one convention
        final, mode = Path(out).absolute(), ("copy" if local else "derived")
    elif local:
        final, mode = input_path.with_name(input_path.name.removesuffix(".nwb") + ".celltype.nwb"), "copy"
    else:
        raise InvalidValueError(
            f"{source} is remote: give out (--out PATH) for the derived NWB file to write"
        )
    if mode != "in_place":
        check_nwb_output_path(final, input_path)
        if final.exists() and not overwrite:
            raise AnnotationExistsError(_exists_message(final, table_name))
    else:
        check_replaceable(final, allow_read_only=allow_read_only, allow_hard_links=allow_hard_links)
    return OutputPlan(final, mode, input_path)


def _exists_message(final: Path, table_name: str | None) -> str:
    """Why an existing output is refused, and what to do: ``--overwrite``, or (where the file does
    not yet hold this model's annotations) annotating it in place to add them."""
    try:
        held = table_name is not None and table_name in existing_names(final)
    except Exception:  # not an HDF5 file, unreadable: the plain advice
        held = False
    if held:
        return (
            f"{final} exists and already holds this model's annotations ({table_name}); pass --overwrite "
            "(overwrite=True) to replace the file, or choose another --out"
        )
    return (
        f"{final} exists; pass --overwrite (overwrite=True) to replace it, with every table it holds, "
        "choose another --out, or annotate that file in place (--in-place) to add this model's table to it"
    )


def existing_names(h5path) -> set[str]:
    """Names in the file's ``processing/cell_types`` module (``h5path``: a path or an open h5py File)."""
    import h5py

    from .nwb import MODULE_NAME

    if isinstance(h5path, h5py.File):
        grp = h5path.get(f"processing/{MODULE_NAME}")
        return set(grp.keys()) if grp is not None else set()
    with h5py.File(h5path, "r") as f:
        return existing_names(f)


def _already_annotated(src_path, table_name: str) -> AnnotationExistsError:
    return AnnotationExistsError(
        f"{src_path} already holds annotations by this model ({table_name}); pass --overwrite "
        "(overwrite=True) to replace them, or use another model"
    )


def _describe_construct_error(h5, exc) -> str:
    """What pynwb could not build, in one phrase: the object's path, hdmf's reason and, for a table,
    the columns whose length differs from its ids' or that its type requires but it lacks."""
    builder = exc.args[0] if exc.args else None
    reason = exc.args[1] if len(exc.args) > 1 else str(exc)
    path = str(getattr(builder, "path", "") or "").removeprefix("root").strip("/")
    detail = ""
    try:
        detail = _table_problems(h5, path, getattr(builder, "attributes", {}) or {})
    except Exception:  # the description is a help, never a second failure
        detail = ""
    text = " ".join(str(reason).split())[:300]
    return f"/{path}: {text}" + (f" ({detail})" if detail else "")


def _table_problems(h5, path: str, attributes) -> str:
    """The columns of the table at ``path`` that do not fit it (see :func:`_describe_construct_error`)."""
    import h5py

    grp = h5.get(path) if path else None
    if not isinstance(grp, h5py.Group) or "id" not in grp:
        return ""
    n = len(grp["id"])
    out = []
    for raw in grp.attrs.get("colnames", []):
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        node = grp.get(f"{name}_index", grp.get(name))
        if node is None:
            out.append(f"column {name!r} is listed but missing")
        elif isinstance(node, h5py.Dataset) and node.shape and node.shape[0] != n:
            out.append(f"column {name!r} has {node.shape[0]} values for {n} rows")
    dtype, ns = attributes.get("neurodata_type"), attributes.get("namespace")
    if dtype and ns:
        from pynwb import get_type_map

        cls = get_type_map().get_dt_container_cls(str(dtype), str(ns))
        for col in getattr(cls, "__columns__", ()):
            if isinstance(col, dict) and col.get("required") and col["name"] not in grp:
                out.append(f"required column {col['name']!r} is missing")
    return "; ".join(out[:5])


def check_before_reading(src, plan: OutputPlan, table_name: str, overwrite: bool) -> None:
    """Refuse, before anything is read or copied, what would fail or lose data later: a local input
    (or a copy's existing target) that this process holds open for writing, and annotations by this
    model already in the input (without ``overwrite``)."""
    name = plan.input_path if plan.input_path is not None else src.info.describe()
    if plan.input_path is not None and held_for_writing_here(plan.input_path):
        raise SourceError(
            f"{plan.input_path} is open for writing in this Python process (an h5py.File or NWBHDF5IO "
            "with mode 'a', 'r+' or 'w'); close it there (File.close(), io.close()) and retry: a copy "
            "would miss what it has not flushed"
            + (
                ", and replacing the file in place would discard what is written through it later"
                if plan.mode == "in_place"
                else ""
            )
        )
    if plan.mode == "copy" and held_for_writing_here(plan.final):
        raise OutputError(
            f"{plan.final} is open for writing in this Python process; close it there and retry: "
            "replacing it (--overwrite) would discard what is written through that handle"
        )
    if plan.mode != "derived" and not overwrite:
        with src.guard("listing the file's annotations"):
            names = existing_names(src.h5)
        if table_name in names or f"{table_name}_classifier" in names:
            raise _already_annotated(name, table_name)


def _cannot_read_back(name, h5, exc, what: str) -> NotNWBError:
    """The one-line refusal of a file pynwb cannot build (hdmf's ``ConstructError`` ``exc``; ``h5``:
    the file open with h5py, for the columns at fault, or None)."""
    return NotNWBError(
        f"{name} is an HDF5 file that pynwb cannot read back: {_describe_construct_error(h5, exc)}; "
        f"{what} (nothing was written). Fix that object (e.g. with h5py) and retry; `nwbinspector` "
        "or `python -m pynwb.validate` list what else is wrong."
    )


def _input_cannot_read_back(src_path: Path, exc) -> NotNWBError:
    """:func:`_cannot_read_back` for the append to a local input's copy; the columns at fault are
    read from the input (the copy is open for writing)."""
    import h5py

    try:
        h5 = h5py.File(src_path, "r")
    except OSError:  # the description is a help, never a second failure
        return _cannot_read_back(src_path, None, exc, "nothing can be appended to it")
    with h5:
        return _cannot_read_back(src_path, h5, exc, "nothing can be appended to it")


def check_pynwb_reads(src, plan: OutputPlan) -> None:
    """For a derived file (written from the source's pynwb ``NWBFile``): refuse a source pynwb cannot
    build before its units are read; called once the Units table to annotate was found and checked
    (:func:`._annotate_input.collect`), whose errors name its problems more precisely. The build is
    kept: :func:`write_derived` reuses it. A copy or an in-place run does not build the input here:
    its append builds the copy (:func:`append_to_copy`), which refuses such a file with the same
    one-line error before anything is renamed into place; building the input too would double
    pynwb's work on every local run (docs/performance.md)."""
    if plan.mode != "derived":
        return
    from hdmf.build.errors import ConstructError

    name = src.info.describe()
    try:
        src.nwbfile  # noqa: B018  (read once; the derived file reuses it)
    except ConstructError as exc:  # hdmf's, which no guard turns into ours: a 15 KB traceback
        raise _cannot_read_back(name, src.h5, exc, "no derived file can be written from it") from exc
    except NotNWBError as exc:
        # another broken object (a Units index pointing past its data, a dangling reference):
        # reading the units names a broken Units table more precisely (InvalidUnitsError, with the
        # row), and the derived file's build reports the rest as before, still before anything is
        # written
        if exc.__cause__ is None:
            raise
        logger.debug("pynwb cannot read %s; left to the units reader and the writer: %s", name, exc)


def remove_existing(h5path: Path, names: list[str], table_name: str) -> None:
    """Delete our tables ``names`` and the Units columns copied from ``table_name``, in whichever of
    the file's Units tables they are (--overwrite; the table may have annotated another one)."""
    import h5py

    from .io import units_table_paths
    from .nwb import MODULE_NAME, remove_units_columns

    with h5py.File(h5path, "a") as f:
        grp = f.get(f"processing/{MODULE_NAME}")
        for n in names:
            if grp is not None and n in grp:
                del grp[n]
        for units_path in units_table_paths(f):
            remove_units_columns(f, table_name, units_path=units_path)


def append_to_copy(
    src_path: Path, tmp: Path, write_fn, table_name: str, overwrite: bool, n_units: int, source_info: dict
) -> None:
    """Copy the input to ``tmp`` and append our tables to the copy (the input is only read). The
    sha256 of the bytes copied goes into ``source_info`` (the provenance's source identity) before
    ``write_fn`` writes it."""
    from hdmf.build.errors import ConstructError
    from pynwb import NWBHDF5IO

    source_info["sha256"] = copy_and_hash(src_path, tmp)
    reserve_space(tmp, RESERVE_BASE_BYTES + RESERVE_PER_UNIT_BYTES * n_units)
    checkpoint("copied")
    names = existing_names(tmp)
    ours = [table_name, f"{table_name}_classifier"]
    clash = [n for n in ours if n in names]
    if clash and not overwrite:  # checked on the input before reading (check_before_reading) too
        raise _already_annotated(src_path, table_name)
    if overwrite:
        remove_existing(tmp, clash, table_name)
    with NWBHDF5IO(str(tmp), mode="a") as io:
        try:
            nwbfile = io.read()
        except ConstructError as exc:  # hdmf's own text is a dump of the whole object (kilobytes)
            raise _input_cannot_read_back(src_path, exc) from exc
        except (KeyError, ValueError, TypeError) as exc:  # pynwb/h5py on other broken objects
            raise NotNWBError(
                f"{src_path} is an HDF5 file that pynwb cannot read back ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:300]}), so nothing can be appended to it; find the broken "
                "object with `nwbinspector` or `python -m pynwb.validate`."
            ) from exc
        write_fn(nwbfile)
        checkpoint("before-write")
        io.write(nwbfile)
    checkpoint("written")


def write_derived(tmp: Path, src, units: UnitsSummary, spike_file: Path, write_fn) -> None:
    """A new NWB file holding the Units rows the annotations refer to, the source's probe and
    identity (see :func:`nwb_celltype.nwb.derived_nwbfile`). Spike times come memory-mapped from
    ``spike_file`` (written while reading), so memory stays bounded by the batch size."""
    from hdmf.backends.hdf5 import H5DataIO
    from pynwb import NWBHDF5IO

    from .nwb import derived_nwbfile

    total = int(units.spike_counts.sum())
    data = (
        H5DataIO(np.memmap(spike_file, dtype="<f8", mode="r", shape=(total,)), chunks=(min(total, 1 << 16),))
        if total
        else np.zeros(0, dtype=np.float64)
    )
    nwbfile = derived_nwbfile(
        src,
        unit_ids=units.unit_ids,
        unit_rows=units.unit_indices,
        spike_counts=units.spike_counts,
        spike_data=data,
        layers=units.layers,
        waveforms=units.waveforms,
        waveform_rate_hz=units.waveform_rate_hz,
        units_path=units.table_path,
        peak_electrodes=units.peak_electrodes,  # the reader's: the waveforms are not read again
    )
    write_fn(nwbfile)
    waves = 0 if units.waveforms is None else units.waveforms.nbytes
    check_space(tmp, 8 * total + waves + RESERVE_BASE_BYTES + RESERVE_PER_UNIT_BYTES * len(units.unit_ids))
    checkpoint("before-write")
    with NWBHDF5IO(str(tmp), mode="w") as io:
        io.write(nwbfile)
    checkpoint("written")
