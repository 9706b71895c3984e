"""On-disk state of a whole-dandiset run: one small JSON record per asset, each written atomically
(temp file + rename) so that a run killed at any instant leaves only complete records behind."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from .._files import give_mode
from ..errors import InvalidValueError, OutputError

logger = logging.getLogger(__name__)

#: folder inside the output directory that holds the run state (hidden: `dandi upload` skips it).
STATE_DIRNAME = ".nwb-celltype"
#: BIDS-style entity inserted into derived file names (DANDI's layout allows ``_desc-<label>``).
DERIVED_DESC = "celltype"

_MODALITY_RE = re.compile(r"^(?P<head>.+)_(?P<suffix>[A-Za-z0-9]+(?:\+[A-Za-z0-9]+)*)$")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` via a temporary file in the same folder and a rename.

    Parameters
    ----------
    path : Path
        Destination file; its folder is created if needed.
    data : Any
        JSON-serialisable object.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True, default=_json_default)
            fh.flush()
            os.fsync(fh.fileno())
        give_mode(tmp)  # mkstemp made it 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays and paths end up in results; JSON has no type for them.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_json(path: Path) -> Any | None:
    """Read a JSON file; ``None`` if it is absent or unreadable (a torn write never happens with
    :func:`write_json_atomic`, but a user may have edited it)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable state file %s: %s", path, exc)
        return None


def derived_asset_path(asset_path: str) -> str:
    """Path of the derived (annotated) file for a dandiset asset, relative to the output folder.

    The asset's folders are mirrored and its name carries one ``desc`` entity, as DANDI's (BIDS)
    layout allows: a name without one gets ``_desc-celltype`` before its modality suffix
    (``sub-M1/sub-M1_ses-S1_ecephys.nwb`` -> ``sub-M1/sub-M1_ses-S1_desc-celltype_ecephys.nwb``),
    or appended where it has no BIDS-like suffix (``rec.nwb`` -> ``rec_desc-celltype.nwb``); a name
    that has a ``desc-<label>`` keeps it there with ``Celltype`` appended to the label
    (``..._desc-raw_ecephys.nwb`` -> ``..._desc-rawCelltype_ecephys.nwb``; of several, the last).
    The ``.nwb`` extension keeps its case. The mapping is one-to-one: a ``desc`` label ending in
    ``Celltype`` comes from a name that had a ``desc``, the label ``celltype`` from one that had
    none, so two asset paths never share a derived path (:func:`derived_paths` checks it anyway).

    Parameters
    ----------
    asset_path : str
        POSIX path of the asset inside the dandiset, ending in ``.nwb``.

    Returns
    -------
    str
        POSIX path relative to the output folder.
    """
    p = PurePosixPath(asset_path)
    if p.is_absolute() or ".." in p.parts or not p.name or p.parts[0] == STATE_DIRNAME:
        raise InvalidValueError(
            f"asset path {asset_path!r} cannot be mirrored under the output folder: expected a "
            f"relative POSIX path without '..' and outside {STATE_DIRNAME}/ (as DANDI asset paths are)"
        )
    ext = p.name[-4:] if p.name.lower().endswith(".nwb") else ""
    stem = p.name[: len(p.name) - len(ext)]
    parts = stem.split("_")
    descs = [i for i, part in enumerate(parts) if part.startswith("desc-")]
    if descs:  # one desc entity per name: extend the asset's own label
        parts[descs[-1]] += DERIVED_DESC.capitalize()
        return str(p.with_name("_".join(parts) + ext))
    m = _MODALITY_RE.match(stem)
    entities = m.group("head").split("_") if m else []
    if m and entities and all("-" in e for e in entities):  # BIDS-like: key-value entities + suffix
        name = f"{m.group('head')}_desc-{DERIVED_DESC}_{m.group('suffix')}"
    else:
        name = f"{stem}_desc-{DERIVED_DESC}"
    return str(p.with_name(name + (ext or ".nwb")))


def derived_paths(asset_paths: Iterable[str]) -> dict[str, str]:
    """The derived path of each asset (:func:`derived_asset_path`), checked to be distinct.

    Raises
    ------
    InvalidValueError
        Two assets would be written to the same derived file, or an asset path cannot be mirrored;
        raised before any work, naming the assets.
    """
    out: dict[str, str] = {}
    owner: dict[str, str] = {}
    for path in asset_paths:
        derived = derived_asset_path(path)
        if derived in owner:
            raise InvalidValueError(
                f"assets {owner[derived]!r} and {path!r} would both be annotated into {derived!r}; "
                "annotate them into separate --out folders (select each with --include)"
            )
        owner[derived] = path
        out[path] = derived
    return out


def asset_version(asset: Any, resolved: str) -> str:
    """The dandiset version an asset was listed at (``resolved``: the run's, where it says none)."""
    return str(getattr(asset, "version", None) or resolved)


def check_case_collisions(
    derived: dict[str, str], out_dir: Path, earlier: dict[str, str] | None = None
) -> None:
    """Refuse assets whose derived paths differ only in case when ``out_dir`` (the output folder or
    its state folder) is on a file system
    that ignores case (macOS and Windows defaults, FAT / exFAT drives): there the two would be
    annotated into one file, each run overwriting the other. Case-sensitive file systems keep them
    apart and nothing is refused. ``earlier``: asset -> derived file of the records earlier runs
    left in the folder (a run of ``sub-a/*`` after one of ``sub-A/*``). Checked after the output
    folder exists, before any work.

    Raises
    ------
    InvalidValueError
        Naming the two assets.
    """
    first: dict[str, str] = {}
    kept = ((a, d) for a, d in (earlier or {}).items() if a not in derived and isinstance(d, str))
    for asset, d in [*derived.items(), *kept]:  # earlier: derived files other runs left in the folder
        other = first.setdefault(d.casefold(), asset)
        if other != asset and ignores_case(out_dir):
            raise InvalidValueError(
                f"assets {other!r} and {asset!r} differ only in case, and the file system of {out_dir} "
                "ignores case: both would be annotated into one file; annotate them into --out folders on "
                "a case-sensitive file system, or into separate --out folders (select each with --include)"
            )


def ignores_case(folder: Path) -> bool:
    """Whether ``folder``'s file system treats names differing only in case as one name (probed
    with a scratch file, removed again)."""
    probe = Path(folder) / f".case-probe-{os.getpid()}-{os.urandom(4).hex()}-Aa"
    try:
        probe.touch(exist_ok=False)
        return probe.with_name(probe.name[:-2] + "aA").exists()
    except OSError:
        return False
    finally:
        probe.unlink(missing_ok=True)


def remove_outputs(out_dir: Path, outputs: Iterable[str]) -> list[str]:
    """Remove derived files (paths relative to ``out_dir``) superseded by a new outcome of their
    asset; returns the paths removed (:func:`prune_folders` clears the folders
    left empty).

    Called *before* the asset's new record is written: a kill in between leaves the old record
    pointing at a missing file, which :func:`is_done` treats as not done, never a derived file
    beside a record that does not account for it. Paths that are not derived NWB files inside
    ``out_dir`` (a hand-edited record) are left alone.

    Raises
    ------
    OutputError
        A file exists but cannot be removed.
    """
    removed = []
    for rel in dict.fromkeys(o for o in outputs if o):
        p = PurePosixPath(rel)
        if p.suffix.lower() != ".nwb" or p.is_absolute() or ".." in p.parts or p.parts[0] == STATE_DIRNAME:
            logger.warning("not removing %r: not a derived NWB file inside %s", rel, out_dir)
            continue
        path = Path(out_dir).joinpath(*p.parts)
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise OutputError(
                f"cannot remove {path}, a derived file of an earlier run that this run's outcome "
                f"supersedes: {exc}; remove it by hand and run again"
            ) from exc
        removed.append(rel)
    return removed


def prune_folders(out_dir: Path, outputs: Iterable[str]) -> None:
    """Remove the folders of ``outputs`` (relative paths) left empty, up to ``out_dir``. Only the
    driver calls this, once no worker runs: a worker might be about to rename a file into one."""
    out_dir = Path(out_dir)
    for rel in outputs:
        folder = out_dir.joinpath(*PurePosixPath(rel).parts).parent
        while folder != out_dir and out_dir in folder.parents:
            try:
                folder.rmdir()
            except OSError:  # not empty (or gone): stop
                break
            folder = folder.parent


def asset_key(asset_path: str) -> str:
    """Stable file-name-safe key of an asset (from its path inside the dandiset)."""
    return hashlib.sha256(asset_path.encode("utf-8")).hexdigest()[:24]


class RunState:
    """The state folder ``<out>/.nwb-celltype``: per-asset records, a lock against two runs
    writing the same output folder at once, and a scratch folder for files being written.

    Parameters
    ----------
    out_dir : Path
        The run's output folder (the derived dandiset).
    """

    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        self.root = self.out_dir / STATE_DIRNAME
        self.assets_dir = self.root / "assets"
        self.tmp_dir = self.root / "tmp"
        self._lock_fh: Any = None

    def prepare(self) -> None:
        """Create the folders, take the lock, and clear leftovers of a killed run."""
        try:
            self.assets_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(
                f"cannot create the state folder {self.root}: {exc}; choose a writable --out folder"
            ) from exc
        self._lock_fh = open(self.root / "lock", "a+")
        try:
            fcntl.flock(self._lock_fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._lock_fh.close()
            self._lock_fh = None
            raise OutputError(
                f"another annotate-dandiset run is writing {self.out_dir} (lock {self.root / 'lock'} is "
                "held); wait for it to finish or choose another --out folder"
            ) from exc
        # Files being written when a previous run was killed; nothing refers to them.
        if self.tmp_dir.exists():
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def release(self) -> None:
        """Release the lock (the kernel also releases it if the process dies)."""
        if self._lock_fh is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fh.fileno(), fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    def record_path(self, asset_path: str) -> Path:
        return self.assets_dir / f"{asset_key(asset_path)}.json"

    def read_record(self, asset_path: str) -> dict | None:
        rec = read_json(self.record_path(asset_path))
        return rec if isinstance(rec, dict) else None

    def write_record(self, record: dict) -> None:
        write_json_atomic(self.record_path(record["path"]), record)

    def iter_records(self) -> Iterator[dict]:
        for p in sorted(self.assets_dir.glob("*.json")):
            rec = read_json(p)
            if isinstance(rec, dict):
                yield rec

    def write_run(self, info: dict) -> None:
        write_json_atomic(self.root / "run.json", info)

    def read_run(self) -> dict | None:
        return read_json(self.root / "run.json")


def labelling_settings(
    threshold: float = 2.0,
    ignore_waveforms: bool = False,
    units_table: str | None = None,
    waveform_rate_hz: float | None = None,
    any_region: bool = False,
) -> dict:
    """The settings besides the model that decide an asset's labels, normalised as records keep
    them (a Units table path without its leading "/"; a checked rate)."""
    from ..io._units_layout import checked_waveform_rate

    return {
        "threshold": float(threshold),
        "ignore_waveforms": bool(ignore_waveforms),
        "units_table": None if units_table is None else str(units_table).strip().strip("/"),
        "waveform_rate_hz": checked_waveform_rate(waveform_rate_hz),
        "any_region": bool(any_region),
    }


def is_done(
    record: dict | None,
    out_dir: Path,
    *,
    asset_id: str,
    version: str,
    model_sha256: str,
    threshold: float = 2.0,
    ignore_waveforms: bool = False,
    units_table: str | None = None,
    waveform_rate_hz: float | None = None,
    any_region: bool = False,
    output: str | None = None,
) -> bool:
    """Whether an asset's record says its output is complete for this asset id, dandiset version,
    model and labelling settings (:func:`labelling_settings`; a record that predates the threshold
    or ignore-waveforms does not say which were used, so its asset is done again; one that predates
    the Units table and waveform rate was made with the defaults, the only choice then; one that
    predates the location rule (``any_region``) labelled units wherever they were, so it is done
    again), and that
    output is still on disk with the recorded size. With ``output`` (the derived path the current
    naming gives), a record whose output has another name (an earlier naming) is not done."""
    if not record or record.get("status") != "done":
        return False
    if (
        record.get("asset_id") != asset_id
        or record.get("version") != version
        or record.get("model_sha256") != model_sha256
        or record.get("threshold") is None
        or float(record["threshold"]) != float(threshold)
        or record.get("ignore_waveforms") is None
        or bool(record["ignore_waveforms"]) != bool(ignore_waveforms)
        or record.get("units_table") != units_table
        or record.get("waveform_rate_hz") != waveform_rate_hz
        or record.get("any_region") is None
        or bool(record["any_region"]) != bool(any_region)
        or (output is not None and record.get("output") != output)
    ):
        return False
    return output_intact(record, out_dir)


def output_intact(record: dict, out_dir: Path) -> bool:
    """Whether a record's derived file (``output``) is on disk with the size it states."""
    try:
        out = Path(out_dir) / record["output"]
        return out.is_file() and out.stat().st_size == record.get("output_size")
    except (KeyError, TypeError, OSError):
        return False
