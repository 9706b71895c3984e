"""Export a library as a DANDI-ready dandiset: files laid out and named by dandi's own ``organize``
(``sub-<subject>/sub-<subject>_ses-<session>_ecephys.nwb``, from each file's metadata), a
``dandiset.yaml``, and a manifest of the exported files; checked with dandi's offline validator."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from .._atomic import (
    Interrupted,
    as_output_error,
    atomic_folder,
    check_folder,
    cleanup_on_signals,
    raise_if_interrupted,
)
from .._atomic_files import write_text_file
from .._atomic_folder import begin_cleanup, cleanup_scope
from ..errors import LibraryError, OutputError
from ._hashing import sha256_file
from ._open import open_nwb
from .manifest import LibraryEntry, Manifest, as_manifest

logger = logging.getLogger(__name__)

#: Name of the manifest written into an exported dandiset.
EXPORTED_MANIFEST = "nwb-celltype-library.json"


def _check_metadata(manifest: Manifest) -> list[str]:
    """Files lacking what dandi needs to name them (subject id, species, session)."""
    problems = []
    for e in manifest.entries:
        with open_nwb(e.source(manifest.root)) as f:
            subj = f.subject
            if subj is None or not subj.subject_id:
                problems.append(f"{e.identity()}: no subject / subject_id")
            elif not subj.species:
                problems.append(f"{e.identity()}: subject has no species")
            elif not subj.age and subj.date_of_birth is None:
                problems.append(f"{e.identity()}: subject has neither age nor date_of_birth")
    return problems


def export_dandiset(
    manifest: Manifest | str | os.PathLike,
    out: str | os.PathLike,
    *,
    name: str | None = None,
    description: str | None = None,
    validate: bool = True,
) -> dict[str, Path]:
    """Copy a library's local files into ``out`` as an organized dandiset.

    The dandiset is built and validated in a hidden folder beside ``out``
    (``.NAME.pidN.XXXXXXXX.tmp.dir``, :func:`~nwb_celltype._atomic.atomic_folder`) and renamed into
    place only when complete: any failure or signal (SIGINT, SIGTERM, SIGHUP) leaves no ``out``
    (an empty ``out`` that existed before is left as it was, and parent folders created for it are
    removed again). A second signal during that cleanup waits for it to complete.

    Parameters
    ----------
    manifest : Manifest or path
        Only local files can be exported (DANDI entries are already published).
    out : path
        A new or empty folder.
    name, description : str, optional
        For ``dandiset.yaml`` (default: the library's name and description).
    validate : bool
        Run ``dandi``'s offline validation on the result and raise on errors.

    Returns
    -------
    dict of str -> pathlib.Path
        Each entry's identity -> its path in the dandiset.

    Raises
    ------
    LibraryError
        Remote entries, files without subject metadata, or validation errors (listed); nothing is
        written.
    OutputError
        ``out`` is not empty, or is not a folder.
    nwb_celltype._atomic.Interrupted
        A cleanup signal arrived; nothing is written.
    """
    manifest = as_manifest(manifest)
    tables = [e.identity() for e in manifest.entries if e.is_tables]
    if tables:
        raise LibraryError(
            f"cannot export feature-table entries {tables[:5]} as a dandiset: they are not NWB files. "
            "Share the table folders as they are (they carry their dataset.json), or export a manifest "
            "without them."
        )
    remote = [e.identity() for e in manifest.entries if not e.is_local]
    if remote:
        raise LibraryError(
            f"cannot export remote entries {remote[:5]}: they are already on DANDI (or the web); "
            "export the local part of the library, and cite the remote assets by their manifest entries."
        )
    out = Path(out)
    if out.is_dir() and any(out.iterdir()):
        raise OutputError(f"export folder {out} is not empty; give a new or empty folder.")
    check_folder(out, replace=False, owned=(), what="the exported dandiset")  # a file; not writable
    with cleanup_on_signals():  # SIGTERM and SIGHUP, like SIGINT, end in our one-line error
        try:
            problems = _check_metadata(manifest)
        except Exception as exc:
            interrupted = _interrupted(exc)
            if interrupted is None:
                raise
            raise interrupted from exc
        raise_if_interrupted()
    if problems:
        raise LibraryError(
            "files lack the subject metadata DANDI needs: " + "; ".join(problems) + ". Set "
            'nwbfile.subject = Subject(subject_id=..., species=..., age="P90D" or an ISO 8601 range such as "P60D/P120D") when writing them (import-c4h5: --age).'
        )
    final = Path(os.path.realpath(out))
    empty_mode = stat.S_IMODE(os.stat(final).st_mode) if final.is_dir() else None
    created_parents = [p for p in final.parents if not os.path.lexists(p)]
    built: list[int] = []  # the inode of the manifest written into the new folder
    tmps: list[Path] = []  # the hidden folder it was built in
    # a second signal during the cleanup is recorded, not acted on, until the cleanup is complete
    with cleanup_on_signals(), cleanup_scope():
        try:
            with atomic_folder(final, replace=False, owned=(), what="the exported dandiset") as tmp:
                tmps.append(tmp)
                mapping = _build(manifest, tmp, out, name=name, description=description, validate=validate)
                raise_if_interrupted()  # a signal lost in a finalizer during validation
                built.append(os.stat(tmp / EXPORTED_MANIFEST).st_ino)
        except BaseException:
            begin_cleanup()
            _undo(final, built, tmps, empty_mode, created_parents)
            raise
    logger.info("exported %d files to %s", len(mapping), out)
    return mapping


def _undo(
    final: Path, built: list[int], tmps: list[Path], empty_mode: int | None, created_parents: list[Path]
) -> None:
    """After a failed or interrupted export: remove the new dandiset if it was already renamed into
    place (a signal during :func:`atomic_folder`'s swap is acted on right after it) and the hidden
    folder if :func:`atomic_folder` could not, restore the empty folder that was there before, and
    remove the parent folders created for ``final``."""
    for tmp in tmps:
        if os.path.lexists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        if os.path.lexists(tmp):  # a later export removes it (its run is gone), or remove it by hand
            logger.warning("could not remove the unfinished export %s; remove it by hand", tmp)
    try:
        done = bool(built) and os.stat(final / EXPORTED_MANIFEST).st_ino == built[0]
    except OSError:
        done = False
    if done:
        shutil.rmtree(final, ignore_errors=True)
        if empty_mode is not None:
            with contextlib.suppress(OSError):
                final.mkdir()
                os.chmod(final, empty_mode)
    for parent in created_parents:  # deepest first; only while empty
        with contextlib.suppress(OSError):
            parent.rmdir()


@contextlib.contextmanager
def _dandi_log_names(tmp: Path, out: Path) -> Iterator[None]:
    """dandi's log messages name ``out``, not the hidden folder it is being built in; its INFO lines
    are shown only when ours are (``-v``)."""

    def rename(record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if str(tmp) in text:
            record.msg, record.args = text.replace(str(tmp), str(out)), ()
        return True

    dandi_logger = logging.getLogger("dandi")
    dandi_logger.addFilter(rename)
    level = dandi_logger.level
    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        dandi_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        dandi_logger.setLevel(level)
        dandi_logger.removeFilter(rename)


def _interrupted(exc: BaseException) -> Interrupted | None:
    """The :class:`Interrupted` to raise when a cleanup signal caused ``exc`` (h5py may report an
    exception raised by our handler inside HDF5 as its own error; dandi then as a failure)."""
    err = as_output_error(exc, None)
    return err if isinstance(err, Interrupted) else None


def _build(
    manifest: Manifest,
    tmp: Path,
    out: Path,
    *,
    name: str | None,
    description: str | None,
    validate: bool,
) -> dict[str, Path]:
    """Fill the empty folder ``tmp`` with the dandiset (to be renamed to ``out``), validated."""
    title = name or manifest.name
    desc = description or manifest.description or f"Ground-truth cell-type library {manifest.name!r}."
    import yaml

    write_text_file(
        tmp / "dandiset.yaml",
        yaml.safe_dump({"identifier": "DANDI:000000", "name": title, "description": desc}, sort_keys=False),
    )
    sources = [str(Path(e.source(manifest.root)).resolve()) for e in manifest.entries]
    from dandi.organize import FileOperationMode, organize

    try:
        with _dandi_log_names(tmp, out):
            organize(sources, dandiset_path=str(tmp), files_mode=FileOperationMode.COPY, jobs=1)
    except Exception as exc:  # dandi raises plain exceptions; report them as ours, with the cause
        raise _interrupted(exc) or LibraryError(f"dandi organize failed on the library: {exc}") from exc
    created = sorted(tmp.rglob("*.nwb"))
    # map each source to its organized copy by content hash (organize copies bytes unchanged)
    by_hash = {sha256_file(p): p for p in created}
    mapping: dict[str, Path] = {}
    entries = []
    for e, src in zip(manifest.entries, sources, strict=True):
        sha = e.sha256 or sha256_file(src)
        dest = by_hash.get(sha)
        if dest is None:
            raise LibraryError(
                f"{e.identity()}: no organized copy found for {out}; dandi organize skipped it. "
                "Nothing was written."
            )
        rel = dest.relative_to(tmp).as_posix()
        mapping[e.identity()] = out / rel
        d = e.to_dict()
        d.update(path=rel, sha256=sha)
        entries.append(LibraryEntry(**d))
    raise_if_interrupted()  # before the save: its atomic write forgets the signals seen so far
    Manifest(name=manifest.name, entries=entries, description=desc, root=tmp.resolve()).save(
        tmp / EXPORTED_MANIFEST
    )
    if validate:
        errors = [f"{out / rel}: {text}" for rel, text in _validation_errors(tmp)]
        if errors:
            exc = LibraryError(
                f"the dandiset exported to {out} does not pass dandi validate, so nothing was written: "
                + "; ".join(errors[:10])
                + (f"; and {len(errors) - 10} more" if len(errors) > 10 else "")
            )
            raise _interrupted(exc) or exc
    return mapping


def _validation_errors(folder: Path) -> list[tuple[str, str]]:
    """(path relative to ``folder``, "[id] message") of each error (severity ERROR or worse) that
    ``dandi validate`` reports for the dandiset ``folder``, offline.

    dandi skips every path whose name starts with a period, a dandiset folder given by such a name
    included (it finds nothing and reports no error): a hidden folder (ours while it is being
    built) is validated through its visible entries, which is what dandi does with the folder."""
    from dandi.validate._core import validate
    from dandi.validate._types import Severity

    folder = Path(os.path.abspath(folder))
    targets = [folder]
    if folder.name.startswith(".") and folder.is_dir():
        targets = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
        if not targets:
            return []
    errors = []
    for r in validate(*map(str, targets)):
        if r.severity is not None and r.severity >= Severity.ERROR:
            path = Path(os.path.abspath(r.path)) if r.path is not None else folder
            rel = path.relative_to(folder).as_posix() if path.is_relative_to(folder) else str(path)
            errors.append((rel, f"[{r.id}] {r.message}"))
    return errors


def validate_dandiset(path: str | os.PathLike) -> list[str]:
    """Errors (severity ERROR or worse) that ``dandi validate`` reports for ``path``, offline (a
    folder whose name starts with a period, which dandi itself skips, through its visible entries)."""
    folder = Path(os.path.abspath(path))
    return [f"{folder / rel}: {text}" for rel, text in _validation_errors(folder)]
