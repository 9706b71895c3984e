"""How an annotation run writes its output (for :func:`nwb_celltype.annotate.annotate`): where the
labels go (a copy of a local input, the input in place, or a derived file for a remote source), the
input copied and our tables appended to the copy, or a new file holding just the annotated units.
Each of these runs inside :func:`nwb_celltype._atomic.atomic_write`: the input is only read, and
the output appears whole or not at all."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from ._atomic import RESERVE_BASE_BYTES, RESERVE_PER_UNIT_BYTES, check_replaceable, check_space, reserve_space
from .errors import AnnotationExistsError, InvalidValueError, NotNWBError, OutputError

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


def check_output_path(out: Path, input_path: Path | None) -> None:
    if input_path is not None and out.resolve() == input_path.resolve():
        raise OutputError(
            f"output path {out} is the input file; use in_place=True (--in-place) to annotate the "
            "input itself, or choose another --out"
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
    source, info: dict, out, in_place: bool, overwrite: bool, allow_read_only: bool, allow_hard_links: bool
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
        final, mode = Path(out), ("copy" if local else "derived")
    elif local:
        final, mode = input_path.with_name(input_path.name.removesuffix(".nwb") + ".celltype.nwb"), "copy"
    else:
        raise InvalidValueError(
            f"{source} is remote: give out (--out PATH) for the derived NWB file to write"
        )
    if mode != "in_place":
        check_output_path(final, input_path)
        if final.exists() and not overwrite:
            raise AnnotationExistsError(
                f"{final} exists; pass --overwrite (overwrite=True) to replace it, with every table it "
                f"holds, or annotate it in place (--in-place) to add this model's table to it"
            )
    else:
        check_replaceable(final, allow_read_only=allow_read_only, allow_hard_links=allow_hard_links)
    return OutputPlan(final, mode, input_path)


def existing_names(h5path: Path) -> set[str]:
    import h5py

    from .nwb import MODULE_NAME

    with h5py.File(h5path, "r") as f:
        grp = f.get(f"processing/{MODULE_NAME}")
        return set(grp.keys()) if grp is not None else set()


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
    src_path: Path, tmp: Path, write_fn, table_name: str, overwrite: bool, n_units: int
) -> None:
    """Copy the input to ``tmp`` and append our tables to the copy (the input is only read)."""
    from pynwb import NWBHDF5IO

    shutil.copyfile(src_path, tmp)
    reserve_space(tmp, RESERVE_BASE_BYTES + RESERVE_PER_UNIT_BYTES * n_units)
    checkpoint("copied")
    names = existing_names(tmp)
    ours = [table_name, f"{table_name}_classifier"]
    clash = [n for n in ours if n in names]
    if clash and not overwrite:
        raise AnnotationExistsError(
            f"{src_path} already holds annotations by this model ({table_name}); pass --overwrite "
            "(overwrite=True) to replace them, or use another model"
        )
    if overwrite:
        remove_existing(tmp, clash, table_name)
    with NWBHDF5IO(str(tmp), mode="a") as io:
        try:
            nwbfile = io.read()
        except (KeyError, ValueError, TypeError) as exc:  # what pynwb/h5py raise for broken objects
            raise NotNWBError(
                f"{src_path} is an HDF5 file that pynwb cannot read back ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:300]}), so nothing can be appended to it; find the broken object with `nwbinspector` or "
                "`python -m pynwb.validate`."
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
    )
    write_fn(nwbfile)
    waves = 0 if units.waveforms is None else units.waveforms.nbytes
    check_space(tmp, 8 * total + waves + RESERVE_BASE_BYTES + RESERVE_PER_UNIT_BYTES * len(units.unit_ids))
    checkpoint("before-write")
    with NWBHDF5IO(str(tmp), mode="w") as io:
        io.write(nwbfile)
    checkpoint("written")
