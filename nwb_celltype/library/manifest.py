"""Library manifests: a small TOML / JSON / YAML file listing the NWB files of a ground-truth
library (local paths and DANDI assets, with versions and content hashes) and which annotation table
holds each file's labels. ``train`` / ``evaluate`` and the ``library`` commands take one."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .._atomic_files import write_text_file
from ..errors import LibraryError, SourceNotFoundError
from ._hashing import sha256_file

logger = logging.getLogger(__name__)

MANIFEST_SUFFIXES = (".toml", ".json", ".yaml", ".yml")
FORMAT_VERSION = 1


@dataclass
class LibraryEntry:
    """One NWB file of a library.

    Attributes
    ----------
    path : str or None
        Local file, relative to the manifest's folder or absolute.
    dandiset, version, asset_path : str or None
        A DANDI asset (``version`` is a published version or ``"draft"``).
    url : str or None
        Any other https URL of an NWB file.
    sha256 : str or None
        Content hash of the file; checked before features are computed and keys the feature cache.
    annotation : str or None
        Name of the ground-truth table to use (None: every ground-truth table in the file).
    library : str
        Name of the library the entry came from (kept through merges: label provenance).
    tables : str or None
        A folder of per-unit feature tables (HIPPIE/C4 CSV layout, :mod:`.tables`) instead of an NWB
        file, relative to the manifest's folder or absolute; ``sha256`` is then the folder's content
        hash (:func:`~.tables.table_sha256`).
    """

    path: str | None = None
    dandiset: str | None = None
    version: str | None = None
    asset_path: str | None = None
    url: str | None = None
    sha256: str | None = None
    annotation: str | None = None
    library: str = ""
    tables: str | None = None

    def __post_init__(self) -> None:
        kinds = [
            self.path is not None,
            self.dandiset is not None,
            self.url is not None,
            self.tables is not None,
        ]
        if sum(kinds) != 1:
            raise LibraryError(
                f"library entry {self.to_dict()} must give exactly one of path, dandiset (+ asset_path), "
                "url or tables."
            )
        if self.dandiset is not None and not self.asset_path:
            raise LibraryError(
                f"DANDI entry for dandiset {self.dandiset} needs asset_path (the file's path in the "
                "dandiset, e.g. 'sub-1/sub-1_ses-1_ecephys.nwb')."
            )

    @property
    def is_local(self) -> bool:
        return self.path is not None

    @property
    def is_tables(self) -> bool:
        return self.tables is not None

    @property
    def local_path(self) -> str | None:
        """The entry's local path (an NWB file or a tables folder), as written in the manifest."""
        return self.path if self.path is not None else self.tables

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}

    def source(self, root: Path | None = None) -> str:
        """The string to open this entry with (:func:`nwb_celltype.io.open_source`)."""
        if self.local_path is not None:
            p = Path(self.local_path)
            return str(p if p.is_absolute() or root is None else (root / p))
        if self.dandiset is not None:
            ver = f"@{self.version}" if self.version else ""
            return f"dandi://DANDI/{self.dandiset}{ver}/{self.asset_path}"
        return str(self.url)

    def identity(self) -> str:
        """Short, stable description for messages and references."""
        if self.local_path is not None:
            return self.local_path
        if self.dandiset is not None:
            return f"DANDI:{self.dandiset}/{self.version or 'draft'}/{self.asset_path}"
        return str(self.url)


@dataclass
class Manifest:
    """A library: a name, a description and its entries. ``root`` is the folder relative paths are
    resolved against (the manifest file's folder)."""

    name: str
    entries: list[LibraryEntry] = field(default_factory=list)
    description: str = ""
    root: Path = field(default_factory=Path.cwd)

    def __len__(self) -> int:
        return len(self.entries)

    def to_dict(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "description": self.description,
            "files": [e.to_dict() for e in self.entries],
        }

    def sources(self) -> list[str]:
        return [e.source(self.root) for e in self.entries]

    def save(self, path: str | os.PathLike) -> Path:
        """Write the manifest (format from the suffix); relative paths stay relative to ``root``,
        rewritten if the manifest moves to another folder."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in MANIFEST_SUFFIXES:
            raise LibraryError(f"manifest {path} must end in one of {MANIFEST_SUFFIXES}.")
        new_root = path.parent.resolve()
        entries = []
        for e in self.entries:
            d = e.to_dict()
            key = "path" if e.path is not None else "tables"
            if e.local_path is not None and not Path(e.local_path).is_absolute():
                absolute = (self.root / e.local_path).resolve()
                d[key] = os.path.relpath(absolute, new_root)
            entries.append(d)
        data = {**self.to_dict(), "files": entries}
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".json":
            text = json.dumps(data, indent=2) + "\n"
        elif suffix in (".yaml", ".yml"):
            import yaml

            text = yaml.safe_dump(data, sort_keys=False)
        else:
            text = _to_toml(data)
        return write_text_file(path, text, replace=True)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    # JSON's escapes of quotes, backslashes and control characters are valid TOML basic-string
    # escapes; characters beyond them are written as they are (TOML files are UTF-8): with
    # ensure_ascii, one outside the BMP (an emoji) would become a surrogate pair, which TOML refuses
    text = str(v)
    if any("\ud800" <= c <= "\udfff" for c in text):  # a file name's undecodable bytes
        raise LibraryError(
            f"{text.encode('utf-8', 'backslashreplace').decode()!r} is not valid UTF-8 text, which a "
            "TOML manifest cannot hold; rename the file, or save the manifest as .json."
        )
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _to_toml(data: dict) -> str:
    lines = []
    for k, v in data.items():
        if k != "files":
            lines.append(f"{k} = {_toml_value(v)}")
    for entry in data["files"]:
        lines += ["", "[[files]]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in entry.items()]
    return "\n".join(lines) + "\n"


def is_manifest_path(value) -> bool:
    """True if ``value`` names an existing manifest file (by suffix)."""
    try:
        p = Path(value)
    except TypeError:
        return False
    return p.suffix.lower() in MANIFEST_SUFFIXES and p.is_file()


def load_manifest(path: str | os.PathLike) -> Manifest:
    """Read a manifest (TOML via ``tomllib``, JSON or YAML by suffix) and check its fields."""
    path = Path(path)
    if not path.is_file():
        raise SourceNotFoundError(f"manifest {path} does not exist; create one with `library create`.")
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8-sig")  # as written (a BOM of an editor dropped)
    except UnicodeDecodeError as exc:
        raise LibraryError(
            f"manifest {path} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8."
        ) from None
    try:
        if suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib
            data = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            raise LibraryError(f"manifest {path}: unknown format {suffix!r}; use .toml, .json or .yaml.")
    except LibraryError:
        raise
    except Exception as exc:  # parse errors of three parsers, reported alike
        raise LibraryError(f"manifest {path} does not parse as {suffix[1:].upper()}: {exc}") from exc
    if not isinstance(data, dict) or "files" not in data:
        raise LibraryError(f"manifest {path} must be a table with a 'files' list (and a 'name').")
    version = data.get("format_version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise LibraryError(
            f"manifest {path} has format_version {version}; this nwb-celltype reads {FORMAT_VERSION}. "
            "Upgrade nwb-celltype."
        )
    known = {f.name for f in fields(LibraryEntry)}
    entries = []
    for i, item in enumerate(data["files"]):
        if not isinstance(item, dict):
            raise LibraryError(f"manifest {path}: files[{i}] must be a table, got {item!r}.")
        unknown = sorted(set(item) - known)
        if unknown:
            raise LibraryError(
                f"manifest {path}: files[{i}] has unknown keys {unknown}; known keys: {sorted(known)}."
            )
        try:
            entries.append(LibraryEntry(**{k: (None if v == "" else v) for k, v in item.items()}))
        except LibraryError as exc:
            raise LibraryError(f"manifest {path}: files[{i}]: {exc}") from None
    name = str(data.get("name") or path.stem)
    for e in entries:
        if not e.library:
            e.library = name
    return Manifest(
        name=name, entries=entries, description=str(data.get("description", "")), root=path.parent.resolve()
    )


def create_manifest(
    files: Sequence[str | os.PathLike],
    *,
    name: str,
    description: str = "",
    annotation: str | None = None,
    root: str | os.PathLike | None = None,
) -> Manifest:
    """A manifest of local NWB files, with their sha256 computed now.

    ``files`` may also hold DANDI sources: an asset (``dandi://DANDI/000409@0.230101.1234/sub-x/...``)
    or a whole dandiset / folder (``DANDI:000409/0.230101.1234``: every NWB asset), listed with their
    version and path; add their sha256 (from the asset's metadata) by hand,
    or ``library validate`` warns that it is missing.
    """
    root_p = Path(root).resolve() if root is not None else Path.cwd()
    entries = []
    for f in files:
        s = str(f)
        if s.startswith("dandi://") or s.upper().startswith("DANDI:"):
            entries.extend(_dandi_entries(s, annotation, name))
            continue
        if s.startswith(("http://", "https://")):
            entries.append(LibraryEntry(url=s, annotation=annotation, library=name))
            continue
        p = Path(s)
        if p.is_dir():
            raise SourceNotFoundError(
                f"{p} is a folder; list its NWB files (e.g. {p / '*.nwb'}), or import a folder of feature "
                "tables with `nwb-celltype library import-tables`."
            )
        if not p.is_file():
            raise SourceNotFoundError(f"library file {p} does not exist.")
        rel = os.path.relpath(p.resolve(), root_p)
        entries.append(LibraryEntry(path=rel, sha256=sha256_file(p), annotation=annotation, library=name))
    return Manifest(name=name, entries=entries, description=description, root=root_p)


def _dandi_entries(url: str, annotation: str | None, library: str) -> list[LibraryEntry]:
    """One entry for a DANDI asset URL; every NWB asset for a dandiset (or folder) URL, listed
    through the reading layer (the only one that talks to the archive)."""
    from ..io import list_dandiset_assets, parse_source

    try:
        spec = parse_source(url)
    except Exception as exc:
        raise LibraryError(f"cannot parse DANDI source {url!r}: {exc}") from exc
    asset_path = getattr(spec, "asset_path", None)
    if asset_path and str(asset_path).endswith(".nwb"):
        return [
            LibraryEntry(
                dandiset=str(spec.dandiset_id),
                version=str(spec.version) if getattr(spec, "version", None) else None,
                asset_path=str(asset_path),
                annotation=annotation,
                library=library,
            )
        ]
    assets = list_dandiset_assets(url)
    if not assets:
        raise LibraryError(
            f"DANDI source {url!r} lists no NWB assets; check the dandiset, version and folder."
        )
    return [
        LibraryEntry(
            dandiset=a.dandiset_id,
            version=a.version,
            asset_path=a.path,
            annotation=annotation,
            library=library,
        )
        for a in assets
    ]


def as_manifest(manifest: Manifest | str | os.PathLike) -> Manifest:
    """``manifest`` itself, or the manifest read from that path (:func:`load_manifest`)."""
    return manifest if isinstance(manifest, Manifest) else load_manifest(manifest)


def merge_manifests(
    manifests: Sequence[Manifest | str | os.PathLike], *, name: str, description: str = ""
) -> Manifest:
    """One library from several (manifests, or paths of manifest files). Every entry keeps the name
    of the library it came from (the labels' provenance stays in the files: annotation table,
    evidence, labeller, time). The same file (equal sha256, or equal DANDI asset) listed twice with
    the same annotation table is kept once with both origins recorded (``"libA+libB"``); listed with
    different tables, it is an error because its units would be labelled twice."""
    if isinstance(manifests, (str, os.PathLike, Manifest)):
        raise LibraryError("merge_manifests takes a list of manifests or manifest paths, e.g. [a, b].")
    if not manifests:
        raise LibraryError("nothing to merge: give at least one manifest.")
    manifests = [as_manifest(m) for m in manifests]
    out: list[LibraryEntry] = []
    seen: dict[str, int] = {}
    root = Path.cwd().resolve()
    for m in manifests:
        for e in m.entries:
            d = e.to_dict()
            if e.local_path is not None and not Path(e.local_path).is_absolute():
                key = "path" if e.path is not None else "tables"
                d[key] = os.path.relpath((m.root / e.local_path).resolve(), root)
            d.setdefault("library", m.name)
            new = LibraryEntry(**d)
            key = new.sha256 or new.identity()
            if key in seen:
                old = out[seen[key]]
                if old.annotation != new.annotation:
                    raise LibraryError(
                        f"{new.identity()} (library {new.library!r}) and {old.identity()} (library "
                        f"{old.library!r}) are the same file with different annotation tables "
                        f"({old.annotation!r} vs {new.annotation!r}): its units would be labelled twice. "
                        "Keep one entry."
                    )
                if new.library not in old.library.split("+"):
                    old.library = f"{old.library}+{new.library}"
                logger.info("%s is in several libraries; kept once", new.identity())
                continue
            seen[key] = len(out)
            out.append(new)
    return Manifest(name=name, entries=out, description=description, root=root)


def identify_manifest(path: str | os.PathLike) -> dict:
    """The identity of a library manifest that a model card records, without its location:
    ``file_name``, ``sha256`` (hex, of the file's bytes) and ``size_bytes``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LibraryError(f"cannot read the manifest {path}: {exc.strerror or exc}.") from exc
    return {"file_name": path.name, "sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data)}
