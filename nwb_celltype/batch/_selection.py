"""Which assets a whole-dandiset run annotates: the dandiset reference (every common form; a
folder or file of the dandiset as the selection), the ``--include`` globs, and the listing they
select from (NWB files only, with the version it was listed at)."""

from __future__ import annotations

import fnmatch
import glob

from ..errors import InvalidValueError


def parse_dandiset_spec(spec: str) -> tuple[str, str | None]:
    """Split ``DANDISET[@VERSION]`` into (id, version).

    Accepts ``000409``, ``000409@0.230101.1234``, ``DANDI:000409/draft``, ``000409@draft`` and the
    other forms of a dandiset that :func:`nwb_celltype.io.parse_dandiset_reference` reads (archive web URLs,
    ``dandi://dandi/000409@draft``); a folder or file inside the dandiset is
    :func:`parse_dandiset_target`'s third part.

    Returns
    -------
    (str, str or None)
        The six-digit dandiset id and the version (None: the most recent published version, or the
        draft when none is published).
    """
    return parse_dandiset_target(spec)[:2]


def parse_dandiset_target(spec: str) -> tuple[str, str | None, str | None]:
    """(id, version, path inside the dandiset or None) of ``spec``: ``DANDISET[@VERSION]``, or a
    folder or file of one (``000409@draft/sub-2/``, an archive URL with ``files?location=``), read
    by :func:`nwb_celltype.io.parse_dandiset_reference` (the parser of every DANDI form; a local
    path of the same name, such as the output folder, is not consulted)."""
    from ..io import parse_dandiset_reference

    src = parse_dandiset_reference(spec)  # its form alone: a local folder "000409" changes nothing
    return str(src.dandiset_id), src.version, src.asset_path or None


def _selection(spec_path: str | None, include) -> tuple[str, ...] | None:
    """The globs selecting the assets to annotate: ``include`` (one glob or several, any matching),
    or the folder / file that ``spec`` named inside the dandiset; None: every NWB asset."""
    if isinstance(include, str):
        include = [include]
    include = [g for g in (include or ()) if g]
    if spec_path and include:
        raise InvalidValueError(
            f"the dandiset reference names {spec_path!r} inside it and --include is given too; select "
            "the assets one way: a folder in the reference, or --include globs"
        )
    if spec_path:
        path = spec_path.strip("/")
        folder = spec_path.endswith("/") or not path.lower().endswith(".nwb")
        return (f"{glob.escape(path)}/*",) if folder else (glob.escape(path),)
    return tuple(include) or None


def _nwb_assets(ds_id: str, version: str | None, dandi_api_url: str | None, include: tuple[str, ...] | None):
    """The dandiset's NWB assets (``.nwb`` in any case) matching any of the ``include`` globs, sorted
    by path; every NWB asset it lists, by path (to tell whether rows kept from earlier runs are
    current); and the version they were listed at. An error when none matches."""
    from ..io import dandiset_listing

    # one listing of every NWB asset (NWB files only, ".nwb" in any case), selected here
    listed_at = dandiset_listing(ds_id, version, dandi_api_url=dandi_api_url)
    listed, resolved_version = listed_at.assets, listed_at.version
    globs = include or ("*",)
    assets = sorted(
        (a for a in listed if any(fnmatch.fnmatchcase(a.path, g) for g in globs)), key=lambda a: a.path
    )
    if not assets:
        raise InvalidValueError(
            f"dandiset {ds_id}@{resolved_version} has no NWB assets"
            + (f" matching {' or '.join(repr(g) for g in include)}" if include else "")
            + "; check the dandiset id, version and glob"
        )
    return assets, {a.path: a for a in listed}, resolved_version
