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
from collections.abc import Iterator
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

    The asset's folders are mirrored and a ``_desc-celltype`` entity is inserted before the
    modality suffix, as DANDI's layout allows: ``sub-M1/sub-M1_ses-S1_ecephys.nwb`` becomes
    ``sub-M1/sub-M1_ses-S1_desc-celltype_ecephys.nwb``. A name without a suffix gets the entity
    appended (``rec.nwb`` -> ``rec_desc-celltype.nwb``).

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
    if p.is_absolute() or ".." in p.parts or not p.name:
        raise InvalidValueError(
            f"asset path {asset_path!r} cannot be mirrored under the output folder: expected a "
            "relative POSIX path without '..' (as DANDI asset paths are)"
        )
    stem = p.name[:-4] if p.name.lower().endswith(".nwb") else p.name
    m = _MODALITY_RE.match(stem)
    entities = m.group("head").split("_") if m else []
    if m and entities and all("-" in e for e in entities):  # BIDS-like: key-value entities + suffix
        name = f"{m.group('head')}_desc-{DERIVED_DESC}_{m.group('suffix')}.nwb"
    else:
        name = f"{stem}_desc-{DERIVED_DESC}.nwb"
    return str(p.with_name(name))


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
) -> dict:
    """The settings besides the model that decide an asset's labels, normalised as records keep
    them (a Units table path without its leading "/"; a checked rate)."""
    from ..io._units_layout import checked_waveform_rate

    return {
        "threshold": float(threshold),
        "ignore_waveforms": bool(ignore_waveforms),
        "units_table": None if units_table is None else str(units_table).strip().strip("/"),
        "waveform_rate_hz": checked_waveform_rate(waveform_rate_hz),
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
) -> bool:
    """Whether an asset's record says its output is complete for this asset id, dandiset version,
    model and labelling settings (:func:`labelling_settings`; a record that predates the threshold
    or ignore-waveforms does not say which were used, so its asset is done again; one that predates
    the Units table and waveform rate was made with the defaults, the only choice then), and that
    output is still on disk with the recorded size."""
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
    ):
        return False
    out = Path(out_dir) / record.get("output", "")
    try:
        return out.is_file() and out.stat().st_size == record.get("output_size")
    except OSError:
        return False
