"""Resolve DANDI identifiers to assets and download URLs with the ``dandi`` client, with bounded
timeouts and retries, and list a dandiset's NWB assets."""

from __future__ import annotations

import fnmatch
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from ..errors import InvalidValueError, NwbCelltypeError, RemoteError, SourceNotFoundError
from ._defaults import DEFAULT_RETRIES, DEFAULT_TIMEOUT_S
from ._parse import SourceSpec, is_nwb_path, normalise_version, parse_dandiset_reference
from ._remote import BoundedSession

# The dandi client otherwise asks a telemetry server for newer releases on every client creation
# (an unbounded network call); a library read must not do that. Users may still set it to "".
os.environ.setdefault("DANDI_NO_ET", "1")

log = logging.getLogger(__name__)

__all__ = ["AssetInfo", "AssetListing", "dandiset_listing", "list_dandiset_assets", "resolve_api_url"]

#: Environment variable naming the DANDI API base URL (e.g. ``https://api.dandiarchive.org/api``).
API_URL_ENV = "NWB_CELLTYPE_DANDI_API_URL"
#: Where a DANDI API URL comes from, for messages.
_API_URL_SOURCES = f"--dandi-api-url, dandi_api_url= or ${API_URL_ENV}"


@dataclass(frozen=True)
class AssetInfo:
    """One asset of a dandiset.

    Attributes
    ----------
    path : str
        Path of the asset inside the dandiset.
    asset_id : str
        Asset UUID.
    size : int
        Size in bytes.
    url : str
        API download URL of the asset (redirects to the bytes).
    dandiset_id : str
        Six-digit dandiset id.
    version : str
        Dandiset version the listing was made from.
    """

    path: str
    asset_id: str
    size: int
    url: str
    dandiset_id: str
    version: str

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-serialisable)."""
        return asdict(self)


def resolve_api_url(spec: SourceSpec | None = None, dandi_api_url: str | None = None) -> str:
    """The DANDI API base URL to use.

    Order: ``dandi_api_url``; ``$NWB_CELLTYPE_DANDI_API_URL``; an API URL given in the source
    itself; the instance named in the source (``dandi://dandi-sandbox/...``); dandi's own
    ``$DANDI_INSTANCE``; the main archive.
    """
    from dandi.consts import known_instances

    if dandi_api_url:
        return dandi_api_url.rstrip("/")
    env = os.environ.get(API_URL_ENV)
    if env:
        return env.rstrip("/")
    if spec is not None and spec.api_url:
        return spec.api_url.rstrip("/")
    name = (spec.instance if spec is not None else None) or os.environ.get("DANDI_INSTANCE") or "dandi"
    inst = known_instances.get(name)
    if inst is None:
        raise InvalidValueError(
            f"unknown DANDI instance {name!r}; known: {', '.join(sorted(known_instances))}. Pass "
            f"dandi_api_url= (or set {API_URL_ENV}) for other DANDI-based archives."
        )
    return inst.api.rstrip("/")


def make_client(api_url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, retries: int = DEFAULT_RETRIES):
    """A ``DandiAPIClient`` for ``api_url`` whose requests have timeouts and bounded retries.

    The instance is built from the URL directly, so no unbounded ``/info/`` request is made.
    """
    from dandi.consts import DandiInstance, known_instances
    from dandi.dandiapi import DandiAPIClient

    name = next((k for k, v in known_instances.items() if v.api.rstrip("/") == api_url), None)
    if name is None:
        u = urlsplit(api_url)
        name = u.netloc or api_url
    gui = known_instances[name].gui if name in known_instances else None
    client = DandiAPIClient(dandi_instance=DandiInstance(name, gui, api_url))
    session = BoundedSession(timeout_s=timeout_s, retries=retries, where=f"the DANDI API at {api_url}")
    session.pass_http_errors = True
    session.headers.update(client.session.headers)
    client.session.close()
    client.session = session
    return client


@contextmanager
def translate_dandi_errors(what: str, api_url: str) -> Iterator[None]:
    """Turn the dandi client's and requests' exceptions into ours, with the dandi client's logger
    quieted meanwhile (it logs whole tracebacks of failed requests before raising; our error
    says what failed, in one line)."""
    import requests
    from dandi.exceptions import NotFoundError

    dandi_log = logging.getLogger("dandi")
    old_level = dandi_log.level
    if not log.isEnabledFor(logging.DEBUG):
        dandi_log.setLevel(logging.CRITICAL)
    base = (
        "a DANDI API's base URL, which ends in /api (e.g. https://api.dandiarchive.org/api; set with "
        f"{_API_URL_SOURCES})"
    )
    unexpected = f"Check that {api_url} is {base}."
    # a not-found from a URL that is not an API base says nothing about the dandiset
    not_api = (
        ""
        if api_url.rstrip("/").endswith("/api")
        else f" {api_url} does not end in /api: check that it is {base}."
    )
    try:
        yield
    except NwbCelltypeError:
        raise
    except NotFoundError as exc:
        raise SourceNotFoundError(
            f"{what}: not found on the DANDI API at {api_url} ({exc}). Check the dandiset id, "
            f"version and asset path (list them with `nwb-celltype assets DANDISET`).{not_api}"
        ) from exc
    except requests.HTTPError as exc:
        code = exc.response.status_code if exc.response is not None else None
        if code == 404:
            raise SourceNotFoundError(
                f"{what}: not found on the DANDI API at {api_url} (HTTP 404). Check the dandiset "
                f"id, version and asset path.{not_api}"
            ) from exc
        raise RemoteError(f"{what}: the DANDI API at {api_url} answered HTTP {code}: {exc}") from exc
    except requests.exceptions.InvalidJSONError as exc:  # a web page, not JSON (also a RequestException)
        raise RemoteError(
            f"{what}: the DANDI API at {api_url} answered something that is not JSON (an HTML page?). "
            f"{unexpected}"
        ) from exc
    except requests.RequestException as exc:
        raise RemoteError(f"{what}: request to the DANDI API at {api_url} failed: {exc}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise RemoteError(
            f"{what}: the DANDI API at {api_url} answered something unexpected ({type(exc).__name__}: "
            f"{exc}). {unexpected}"
        ) from exc
    finally:
        dandi_log.setLevel(old_level)


@dataclass
class ResolvedAsset:
    """A DANDI asset resolved to the URL of its bytes."""

    url: str
    size: int
    api_url: str
    dandiset_id: str | None
    version: str | None
    asset_id: str
    asset_path: str
    sha256: str | None
    etag: str | None


def resolve_asset(
    spec: SourceSpec,
    *,
    dandi_api_url: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    retries: int = DEFAULT_RETRIES,
) -> ResolvedAsset:
    """Resolve a DANDI :class:`SourceSpec` to one asset and the URL of its bytes."""
    api_url = resolve_api_url(spec, dandi_api_url)
    client = make_client(api_url, timeout_s=timeout_s, retries=retries)
    what = _describe(spec)
    with client, translate_dandi_errors(what, api_url):
        dandiset = None
        if spec.dandiset_id is not None:
            dandiset = client.get_dandiset(spec.dandiset_id, spec.version, lazy=False)
        if spec.asset_id is not None:
            asset = (
                dandiset.get_asset(spec.asset_id) if dandiset is not None else client.get_asset(spec.asset_id)
            )
        elif spec.asset_path and not spec.asset_path.endswith("/"):
            try:
                asset = dandiset.get_asset_by_path(spec.asset_path)
            except Exception as exc:
                if not _is_not_found(exc):
                    raise
                folder = _nwb_example(dandiset, spec.asset_path + "/")  # a folder named without its "/"
                if folder is None:
                    raise
                raise InvalidValueError(_not_one_file(what, spec, folder)) from None
        else:
            raise InvalidValueError(_not_one_file(what, spec, _nwb_example(dandiset, spec.asset_path or "")))
        meta = asset.get_raw_metadata()
        url = asset.get_content_url(follow_redirects=1, strip_query=True)
        digest = meta.get("digest", {}) if isinstance(meta, dict) else {}
        return ResolvedAsset(
            url=url,
            size=int(asset.size),
            api_url=api_url,
            dandiset_id=dandiset.identifier if dandiset is not None else None,
            version=dandiset.version_id if dandiset is not None else None,
            asset_id=asset.identifier,
            asset_path=asset.path,
            sha256=digest.get("dandi:sha2-256"),
            etag=digest.get("dandi:dandi-etag"),
        )


def _is_not_found(exc: BaseException) -> bool:
    """Whether the dandi client's error is a not-found."""
    from dandi.exceptions import NotFoundError

    response = getattr(exc, "response", None)
    return isinstance(exc, NotFoundError) or getattr(response, "status_code", None) == 404


def _nwb_example(dandiset, prefix: str) -> str | None:
    """The path of an NWB asset of ``dandiset`` under ``prefix``, if any."""
    for a in dandiset.get_assets_with_path_prefix(prefix):
        if is_nwb_path(a.path) and a.path.startswith(prefix):
            return a.path
    return None


def _not_one_file(what: str, spec: SourceSpec, example: str | None) -> str:
    folder = (spec.asset_path or "").strip("/")
    listed = (
        spec.dandiset_id + (f"@{spec.version}" if spec.version else "") + (f"/{folder}/" if folder else "")
    )
    hint = f" e.g. {spec.dandiset_id}/{example}" if example else ""
    return (
        f"{what} names a dandiset or folder, not one file. Give an asset path,{hint} (list them with "
        f"`nwb-celltype assets {listed}`)."
    )


def _describe(spec: SourceSpec) -> str:
    if spec.dandiset_id is None:
        return f"DANDI asset {spec.asset_id}"
    s = f"dandiset {spec.dandiset_id}@{spec.version or 'latest'}"
    if spec.asset_id:
        return f"{s} asset {spec.asset_id}"
    return f"{s} path {spec.asset_path!r}" if spec.asset_path else s


class AssetListing(NamedTuple):
    """The NWB assets of a dandiset (:func:`dandiset_listing`), and which version they were listed at."""

    dandiset_id: str
    version: str
    assets: list[AssetInfo]


def list_dandiset_assets(
    dandiset: str,
    version: str | None = None,
    *,
    dandi_api_url: str | None = None,
    include: str | list[str] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    retries: int = DEFAULT_RETRIES,
) -> list[AssetInfo]:
    """List the NWB assets of a dandiset, with sizes (:func:`dandiset_listing`'s ``assets``; that
    function also says which version was listed)."""
    return dandiset_listing(
        dandiset, version, dandi_api_url=dandi_api_url, include=include, timeout_s=timeout_s, retries=retries
    ).assets


def dandiset_listing(
    dandiset: str,
    version: str | None = None,
    *,
    dandi_api_url: str | None = None,
    include: str | list[str] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    retries: int = DEFAULT_RETRIES,
) -> AssetListing:
    """List the NWB assets of a dandiset, with sizes, and say which version was listed.

    Only NWB files are listed (:func:`is_nwb_path`: ``.nwb`` in any case; not NWB Zarr).

    Parameters
    ----------
    dandiset : str
        Dandiset id (``"000409"``) or any DANDI form of a dandiset
        (:func:`~nwb_celltype.io.parse_dandiset_reference`: a local folder of the same name is not
        consulted); a path in it restricts the listing to that folder (``000409/sub-1/`` or
        ``000409/sub-1``, which do not list ``sub-10/``) or file.
    version : str or None
        ``"draft"`` or a published version; None uses the version in ``dandiset`` if any, else the
        most recent published version, else draft.
    dandi_api_url : str or None
        API base URL (default: see :func:`resolve_api_url`).
    include : str or list of str or None
        Glob pattern(s) matched against asset paths (case-sensitive): NWB files matching any of them
        are listed (default: every NWB file).
    timeout_s, retries : float, int
        Per-request timeout in seconds and retries of transient failures.

    Returns
    -------
    AssetListing
        The dandiset id, the version listed (the resolved one where ``version`` was None) and the
        assets, sorted by path.
    """
    spec = parse_dandiset_reference(dandiset)  # its form alone: a local folder "000409" changes nothing
    patterns = [include] if isinstance(include, str) else list(include or ["*"])
    api_url = resolve_api_url(spec, dandi_api_url)
    client = make_client(api_url, timeout_s=timeout_s, retries=retries)
    ver = normalise_version(version) or spec.version
    with client, translate_dandi_errors(f"dandiset {spec.dandiset_id}@{ver or 'latest'}", api_url):
        ds = client.get_dandiset(spec.dandiset_id, ver, lazy=False)
        prefix = spec.asset_path or ""
        assets = ds.get_assets_with_path_prefix(prefix) if prefix else ds.get_assets()
        # a folder is its path and a "/": sub-1 must not list sub-10/
        where = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        out = [
            AssetInfo(
                path=a.path,
                asset_id=a.identifier,
                size=int(a.size),
                url=a.base_download_url,
                dandiset_id=ds.identifier,
                version=ds.version_id,
            )
            for a in assets
            if (a.path.startswith(where) or a.path == prefix)
            and is_nwb_path(a.path)
            and any(fnmatch.fnmatchcase(a.path, p) for p in patterns)
        ]
    log.info("dandiset %s@%s: %d NWB assets match %s", ds.identifier, ds.version_id, len(out), patterns)
    return AssetListing(ds.identifier, ds.version_id, sorted(out, key=lambda a: a.path))
