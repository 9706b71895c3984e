"""Deterministic ``object_id`` s for a simulated NWBFile (same seed and file name -> same bytes).

hdmf gives every container a random UUID4 ``object_id`` when it is made (written as an HDF5
attribute), so two writes of the same simulation would differ in 49 attributes and in their
sha256. :func:`assign_object_ids` replaces them, just before the file is written, with UUID4s
built from a key (the file's ``identifier``, itself derived from preset, seed, unit count, duration
and file name) and the container's place in the file: same key -> same ids, ids unique within the
file, valid version-4 UUIDs.
"""

from __future__ import annotations

import hashlib
import uuid

from ..errors import OutputError

#: The name-mangled attribute behind hdmf's read-only ``AbstractContainer.object_id`` property.
#: hdmf has no public way to set an object_id (``generate_new_id`` draws a random one); this is
#: the only private name the simulator relies on, and tests/test_simulate_bytes19.py fails loudly
#: if hdmf renames it (so does :func:`_set_object_id`, which checks its effect).
_HDMF_OBJECT_ID_ATTR = "_AbstractContainer__object_id"


def derived_object_id(key: str, path: str) -> str:
    """A UUID4 string determined by ``key`` and ``path`` (sha256 bits, version/variant set)."""
    digest = hashlib.sha256(f"nwb_celltype.simulate/object_id/{key}/{path}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def _set_object_id(container, object_id: str) -> None:
    """Set a container's ``object_id`` (hdmf private attribute; see _HDMF_OBJECT_ID_ATTR)."""
    if not hasattr(container, _HDMF_OBJECT_ID_ATTR):
        raise OutputError(
            f"cannot set a deterministic object_id on {type(container).__name__}: the installed hdmf "
            f"has no {_HDMF_OBJECT_ID_ATTR}; update nwb_celltype/simulate/_ids.py for this hdmf"
        )
    setattr(container, _HDMF_OBJECT_ID_ATTR, object_id)
    if container.object_id != object_id:
        raise OutputError(
            f"setting {_HDMF_OBJECT_ID_ATTR} did not change {type(container).__name__}.object_id; "
            "update nwb_celltype/simulate/_ids.py for the installed hdmf"
        )


def _container_paths(root) -> list[tuple[str, object]]:
    """``(path, container)`` for ``root`` and every container below it, depth first in hdmf's
    child order; a path is the chain of ``Type:name`` steps from the root (numbered on a repeat)."""
    out: list[tuple[str, object]] = []
    seen: dict[str, int] = {}
    stack = [("", root)]
    while stack:
        parent_path, node = stack.pop()
        path = f"{parent_path}/{type(node).__name__}:{node.name}"
        k = seen.get(path, 0)
        seen[path] = k + 1
        if k:
            path = f"{path}#{k}"
        out.append((path, node))
        stack.extend((path, child) for child in reversed(list(getattr(node, "children", ()))))
    return out


def assign_object_ids(nwbfile, key: str | None = None) -> dict[str, str]:
    """Give ``nwbfile`` and every container in it an ``object_id`` derived from ``key`` (default:
    the file's ``identifier``) and the container's path; return ``{path: object_id}``."""
    key = nwbfile.identifier if key is None else key
    ids: dict[str, str] = {}
    for path, container in _container_paths(nwbfile):
        oid = derived_object_id(key, path)
        _set_object_id(container, oid)
        ids[path] = oid
    if len(set(ids.values())) != len(ids):  # pragma: no cover - a sha256 collision
        raise OutputError("derived object_ids are not unique within the file")
    nwbfile.all_children()  # rebuild pynwb's object_id -> container index with the new ids
    return ids
