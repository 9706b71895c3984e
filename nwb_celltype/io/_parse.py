"""Classify a source string (local path, http(s) URL, or one of the DANDI identifier forms) without
touching the network."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import InvalidValueError

log = logging.getLogger(__name__)

__all__ = ["SourceSpec", "is_nwb_path", "parse_dandiset_reference", "parse_source"]

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_DANDISET = r"\d{6}"
_VERSION = r"draft|latest|\d+\.\d{6}\.\d{4}"
#: the DANDI forms without a scheme (a dandiset id, with a version or path; an asset id), which a
#: local path may also spell; ``DANDI:``, ``dandi://`` and URLs name no local path.
_BARE = re.compile(rf"{_DANDISET}(@|/|$)|{_UUID}$")
_GUI_HOSTS = {
    "dandiarchive.org": "dandi",
    "gui.dandiarchive.org": "dandi",
    "www.dandiarchive.org": "dandi",
    "sandbox.dandiarchive.org": "dandi-sandbox",
    "gui-staging.dandiarchive.org": "dandi-sandbox",
}


def is_nwb_path(path: str) -> bool:
    """Whether an asset path names an NWB file: it ends in ``.nwb``, in any case (``x.NWB`` too;
    an NWB Zarr folder, ``x.nwb.zarr``, does not). The rule ``assets`` and ``annotate-dandiset``
    share."""
    return path.lower().endswith(".nwb")


@dataclass(frozen=True)
class SourceSpec:
    """What a source string denotes.

    Attributes
    ----------
    kind : str
        ``"local"``, ``"url"`` or ``"dandi"``.
    path : str or None
        Local file path (kind ``"local"``).
    url : str or None
        http(s) URL (kind ``"url"``; for ``"dandi"`` the URL the user gave, if any).
    dandiset_id : str or None
        Six-digit dandiset id.
    version : str or None
        ``"draft"``, a published version such as ``"0.260309.1324"``, or None (most recent
        published version, else draft).
    asset_path : str or None
        Path of the asset inside the dandiset (a folder when it ends with ``/``).
    asset_id : str or None
        Asset UUID.
    instance : str or None
        DANDI instance name (``"dandi"``, ``"dandi-sandbox"``, ...) named by the string, if any.
    api_url : str or None
        API base URL named by the string (API download URLs), if any.
    """

    kind: str
    path: str | None = None
    url: str | None = None
    dandiset_id: str | None = None
    version: str | None = None
    asset_path: str | None = None
    asset_id: str | None = None
    instance: str | None = None
    api_url: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "version", normalise_version(self.version))


def normalise_version(version: str | None) -> str | None:
    """A dandiset version as the DANDI API names it: ``latest`` (any case; what the archive's
    pages and this package's messages write for "the most recent published version, else the
    draft") is None, as is an empty string; ``DRAFT`` is ``draft``."""
    if version is None or not str(version).strip() or str(version).strip().lower() == "latest":
        return None
    v = str(version).strip()
    return "draft" if v.lower() == "draft" else v


def _split_version(s: str) -> tuple[str, str | None, str | None]:
    """``000409@draft/a/b.nwb`` or ``000409/draft/a/b.nwb`` -> (id, version, path)."""
    m = re.fullmatch(rf"({_DANDISET})(?:@([^/]+))?(?:/(.*))?", s)
    if m is None:
        raise InvalidValueError(f"not a dandiset reference: {s!r}")
    did, version, rest = m.group(1), m.group(2), m.group(3) or None
    if version is None and rest:
        head, _, tail = rest.partition("/")
        if re.fullmatch(_VERSION, head, re.IGNORECASE):
            version, rest = head, tail or None
    return did, version, rest


def parse_source(source: str | os.PathLike) -> SourceSpec:
    """Classify ``source`` without network access.

    Accepted forms (``000409`` is any six-digit dandiset id, versions are ``draft`` or published
    ``0.YYMMDD.HHMM``):

    - a local path (a path-like object is always one), or a ``file://`` URL;
    - ``DANDI:000409``, ``DANDI:000409/0.260309.1324``, ``DANDI:000409/draft/sub-1/x.nwb``;
    - ``dandi://dandi/000409@draft/sub-1/x.nwb`` (instance name, then id, optional ``@version``);
    - ``https://dandiarchive.org/dandiset/000409[/version][/files?location=sub-1/x.nwb]``;
    - API URLs ``https://<api>/api/assets/<uuid>/download/`` and
      ``https://<api>/api/dandisets/000409/versions/<v>/assets/<uuid>/...``;
    - ``000409/sub-1/x.nwb`` or ``000409@0.260309.1324/sub-1/x.nwb`` (dandiset id + asset path),
      ``000409`` alone (a dandiset);
    - an asset id (UUID);
    - any other http(s) URL (read with range requests).

    A DANDI form without a scheme (a dandiset id with a version or path, an asset id) that is also
    an existing local path (``000409/sub-1/x.nwb`` where ``dandi download`` put dandiset 000409 in
    the current folder) is that local path, as the shell would read it; an INFO log line says how
    to name the DANDI source instead (``DANDI:000409/sub-1/x.nwb``). Arguments that always name a
    dandiset use :func:`parse_dandiset_reference`, which never looks at the disk.

    Parameters
    ----------
    source : str or path-like
        The source.

    Returns
    -------
    SourceSpec

    Raises
    ------
    InvalidValueError
        For an empty string or a malformed DANDI reference.
    """
    if isinstance(source, os.PathLike):
        return SourceSpec(kind="local", path=os.fspath(source))
    if not isinstance(source, str):
        raise InvalidValueError(
            f"source must be a path, URL or DANDI identifier string, got {type(source).__name__}."
        )
    s = source.strip()
    if not s:
        raise InvalidValueError("source is empty; give a file path, an http(s) URL or a DANDI id.")
    local = Path(s).expanduser()
    if local.exists():  # what the shell names; say how to name a DANDI source it also spells
        if _BARE.match(s):
            log.info(_local_reading(s, _parse_form(s)))
        return SourceSpec(kind="local", path=str(local))
    return _parse_form(s)


def parse_dandiset_reference(reference: str) -> SourceSpec:
    """The dandiset (and the folder or file in it) that ``reference`` names, read from the form
    alone: for arguments that are always a dandiset (``annotate-dandiset``, ``assets``), a local
    folder of the same name (an output folder ``000409``) changes nothing.

    Accepts the forms of :func:`parse_source` that name a dandiset: ``000409``, ``000409@draft``,
    ``000409/draft``, ``000409@draft/sub-1/``, ``DANDI:000409/0.230101.1234``,
    ``dandi://dandi/000409@draft``, ``https://dandiarchive.org/dandiset/000409/draft`` (with
    ``files?location=``), an API URL with ``dandisets/000409``.

    Parameters
    ----------
    reference : str
        The dandiset reference.

    Returns
    -------
    SourceSpec
        Of kind ``"dandi"``, with ``dandiset_id`` set; ``version`` and ``asset_path`` where the
        reference names them.

    Raises
    ------
    InvalidValueError
        When ``reference`` names no dandiset (a local path such as ``./000409``, another URL, a
        bare asset id, a malformed reference).
    """
    s = str(reference).strip()
    try:
        spec = _parse_form(s) if s else None
    except InvalidValueError:
        spec = None
    if spec is not None and spec.kind == "dandi" and spec.dandiset_id:
        return spec
    why = ""
    if spec is not None and spec.kind == "local":
        why = (
            f"; {s!r} reads as a local path, and a dandiset of the DANDI archive is expected here "
            "(annotate local NWB files one by one with `nwb-celltype annotate FILE`)"
        )
    raise InvalidValueError(
        f"cannot read the dandiset {s!r}: expected DANDISET[@VERSION][/PATH] such as 000409, "
        "000409@draft, 000409@draft/sub-1/, DANDI:000409/0.230101.1234 or "
        f"https://dandiarchive.org/dandiset/000409/draft{why}"
    )


def _parse_form(s: str) -> SourceSpec:
    """What the non-empty, stripped string ``s`` names by its form alone (no file system, no
    network): anything that is not a URL or a DANDI form is a local path."""
    low = s.lower()
    if low.startswith("file://"):
        return SourceSpec(kind="local", path=unquote(urlsplit(s).path))
    if low.startswith("dandi:") and not low.startswith("dandi://"):
        rest = s[len("dandi:") :].lstrip("/")
        did, version, path = _split_version(rest)
        return SourceSpec(kind="dandi", dandiset_id=did, version=version, asset_path=path, instance="dandi")
    if low.startswith("dandi://"):
        rest = s[len("dandi://") :]
        instance, _, rest = rest.partition("/")
        if re.fullmatch(_UUID, rest.strip("/")):
            return SourceSpec(kind="dandi", asset_id=rest.strip("/").lower(), instance=instance.lower())
        did, version, path = _split_version(rest)
        return SourceSpec(
            kind="dandi", dandiset_id=did, version=version, asset_path=path, instance=instance.lower()
        )
    if low.startswith(("http://", "https://")):
        return _parse_http(s)
    if re.fullmatch(_UUID, s):
        return SourceSpec(kind="dandi", asset_id=s.lower())
    if _BARE.match(s):  # a dandiset id (the UUID was read above)
        did, version, path = _split_version(s)
        return SourceSpec(kind="dandi", dandiset_id=did, version=version, asset_path=path)
    return SourceSpec(kind="local", path=str(Path(s).expanduser()))


def _local_reading(s: str, spec: SourceSpec) -> str:
    """The note for ``s``, which names ``spec`` (a dandiset, a path in one, or an asset id) by its
    form and is also an existing local path: read as the local path, and how to name the other."""
    local = Path(s).expanduser()
    kind = "folder" if local.is_dir() else "file"
    instance = os.environ.get("DANDI_INSTANCE")  # what a bare id reads from, else the main archive
    if spec.dandiset_id is None:
        remote, ref = f"the DANDI asset {spec.asset_id}", str(spec.asset_id)
    else:
        version = f"@{spec.version}" if spec.version else ""
        ref = f"{spec.dandiset_id}{version}" + (f"/{spec.asset_path}" if spec.asset_path else "")
        path = spec.asset_path or ""
        kind_of = "folder" if path.endswith("/") else "asset" if is_nwb_path(path) else "asset or folder"
        what = f"the {kind_of} {path!r} of dandiset " if path else "dandiset "
        remote = f"{what}{spec.dandiset_id}{version}"
    # DANDI: names a dandiset of the main archive; an asset id has only the dandi:// form
    explicit = f"DANDI:{ref}" if spec.dandiset_id and not instance else f"dandi://{instance or 'dandi'}/{ref}"
    return f"{s!r} is read as the local {kind} {local}; for {remote}, write {explicit}"


def _parse_http(s: str) -> SourceSpec:
    u = urlsplit(s)
    host = (u.hostname or "").lower()
    frag = u.fragment.lstrip("/")  # old GUI URLs: https://dandiarchive.org/#/dandiset/000409
    path = frag if frag.startswith("dandiset/") else u.path.lstrip("/")
    if host in _GUI_HOSTS:
        m = re.fullmatch(rf"dandiset/({_DANDISET})(?:/([^/]+))?(?:/files)?/?", path.split("?")[0])
        if m is None:
            raise InvalidValueError(
                f"{s!r} is a DANDI archive URL but not of a dandiset; expected "
                "https://dandiarchive.org/dandiset/000409[/version][/files?location=...]."
            )
        query = parse_qs(u.query if not frag else urlsplit(frag).query)
        location = query.get("location", [None])[0]
        return SourceSpec(
            kind="dandi",
            url=s,
            dandiset_id=m.group(1),
            version=m.group(2),
            # a trailing "/" marks a folder (the archive's link to one): kept, so it is refused as one
            asset_path=unquote(location).lstrip("/") or None if location else None,
            instance=_GUI_HOSTS[host],
        )
    api = re.fullmatch(
        rf"(?P<base>.*?/api)/(?:dandisets/(?P<did>{_DANDISET})/versions/(?P<v>[^/]+)/)?"
        rf"assets/(?P<aid>{_UUID})(?:/.*)?",
        u.path,
    )
    if api is not None:
        base = f"{u.scheme}://{u.netloc}{api.group('base')}"
        return SourceSpec(
            kind="dandi",
            url=s,
            dandiset_id=api.group("did"),
            version=api.group("v"),
            asset_id=api.group("aid").lower(),
            api_url=base,
        )
    return SourceSpec(kind="url", url=s)
