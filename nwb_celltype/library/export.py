"""Export a library as a DANDI-ready dandiset: files laid out and named by dandi's own ``organize``
(``sub-<subject>/sub-<subject>_ses-<session>_ecephys.nwb``, from each file's metadata), a
``dandiset.yaml``, and a manifest of the exported files; checked with dandi's offline validator."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from .._atomic import write_text_file
from ..errors import LibraryError, OutputError
from ._hashing import sha256_file
from ._open import open_nwb
from .manifest import LibraryEntry, Manifest, load_manifest

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
        Remote entries, files without subject metadata, or validation errors (listed).
    OutputError
        ``out`` is not empty.
    """
    if not isinstance(manifest, Manifest):
        manifest = load_manifest(manifest)
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
    if out.exists() and any(out.iterdir()):
        raise OutputError(f"export folder {out} is not empty; give a new or empty folder.")
    problems = _check_metadata(manifest)
    if problems:
        raise LibraryError(
            "files lack the subject metadata DANDI needs: " + "; ".join(problems) + ". Set "
            'nwbfile.subject = Subject(subject_id=..., species=..., age="P90D" or an ISO 8601 range such as "P60D/P120D") when writing them (import-c4h5: --age).'
        )
    out.mkdir(parents=True, exist_ok=True)
    title = name or manifest.name
    desc = description or manifest.description or f"Ground-truth cell-type library {manifest.name!r}."
    import yaml

    write_text_file(
        out / "dandiset.yaml",
        yaml.safe_dump({"identifier": "DANDI:000000", "name": title, "description": desc}, sort_keys=False),
    )
    sources = [str(Path(e.source(manifest.root)).resolve()) for e in manifest.entries]
    from dandi.organize import FileOperationMode, organize

    before = set(out.rglob("*.nwb"))
    try:
        organize(sources, dandiset_path=str(out), files_mode=FileOperationMode.COPY, jobs=1)
    except Exception as exc:  # dandi raises plain exceptions; report them as ours, with the cause
        shutil.rmtree(out, ignore_errors=True)
        raise LibraryError(f"dandi organize failed on the library: {exc}") from exc
    created = sorted(set(out.rglob("*.nwb")) - before)
    # map each source to its organized copy by content hash (organize copies bytes unchanged)
    by_hash = {sha256_file(p): p for p in created}
    mapping: dict[str, Path] = {}
    entries = []
    for e, src in zip(manifest.entries, sources, strict=True):
        sha = e.sha256 or sha256_file(src)
        dest = by_hash.get(sha)
        if dest is None:
            raise LibraryError(
                f"{e.identity()}: no organized copy found in {out}; dandi organize skipped it."
            )
        mapping[e.identity()] = dest
        d = e.to_dict()
        d.update(path=dest.relative_to(out).as_posix(), sha256=sha)
        entries.append(LibraryEntry(**d))
    Manifest(name=manifest.name, entries=entries, description=desc, root=out.resolve()).save(
        out / EXPORTED_MANIFEST
    )
    if validate:
        errors = validate_dandiset(out)
        if errors:
            raise LibraryError(
                f"the exported dandiset {out} does not pass dandi validate: " + "; ".join(errors[:10])
            )
    logger.info("exported %d files to %s", len(mapping), out)
    return mapping


def validate_dandiset(path: str | os.PathLike) -> list[str]:
    """Errors (severity ERROR or worse) that ``dandi validate`` reports for ``path``, offline."""
    from dandi.validate._core import validate
    from dandi.validate._types import Severity

    errors = []
    for r in validate(str(path)):
        if r.severity is not None and r.severity >= Severity.ERROR:
            errors.append(f"{r.path}: [{r.id}] {r.message}")
    return errors
