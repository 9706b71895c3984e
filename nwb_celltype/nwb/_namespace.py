"""Locating and loading the ``ndx-celltype`` namespace (installed copy first, source tree second)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from ..errors import NwbCelltypeError

logger = logging.getLogger(__name__)

NAMESPACE = "ndx-celltype"
NAMESPACE_FILE = f"{NAMESPACE}.namespace.yaml"
_PACKAGE_DIR = Path(__file__).resolve().parents[1]
_LOCK = threading.Lock()


def spec_dir() -> Path:
    """Folder holding the namespace YAML: ``nwb_celltype/spec`` in an installed wheel, else the
    source tree's ``spec/`` (editable installs and checkouts).

    Returns
    -------
    pathlib.Path
        A folder containing ``ndx-celltype.namespace.yaml`` and ``ndx-celltype.extensions.yaml``.
    """
    for candidate in (_PACKAGE_DIR / "spec", _PACKAGE_DIR.parent / "spec"):
        if (candidate / NAMESPACE_FILE).is_file():
            return candidate
    raise NwbCelltypeError(
        f"the {NAMESPACE} spec ({NAMESPACE_FILE}) was found neither in {_PACKAGE_DIR / 'spec'} (installed "
        f"wheel) nor in {_PACKAGE_DIR.parent / 'spec'} (source tree); reinstall nwb-celltype, or run "
        "`python spec/create_extension_spec.py` in a checkout."
    )


def namespace_path() -> Path:
    """Path of ``ndx-celltype.namespace.yaml`` that :func:`load_namespace` loads."""
    return spec_dir() / NAMESPACE_FILE


def load_namespace() -> Path:
    """Load the ``ndx-celltype`` namespace into pynwb's type map (idempotent).

    Returns
    -------
    pathlib.Path
        The namespace file that is (or already was) loaded.
    """
    import pynwb  # here, not at module level: this module is imported by pynwb's post-import hook

    path = namespace_path()
    with _LOCK:
        if NAMESPACE not in pynwb.available_namespaces():
            _load_staged(pynwb, str(path))
            logger.debug("loaded %s from %s", NAMESPACE, path)
    return path


def _load_staged(pynwb, path: str) -> None:
    """Load the namespace at ``path`` into a copy of pynwb's process-wide type map, then put the
    copy in its place. Loading registers the namespace before its types, so an exception part-way
    (Ctrl-C) into pynwb's own map would leave it listed but half registered, and every later read in
    the process would fail; the swap is one assignment. Where pynwb keeps its map elsewhere (another
    release), the namespace is loaded into it directly."""
    module = vars(pynwb)
    try:
        current = pynwb.get_type_map(copy=False)
    except TypeError:  # a release without copy=
        current = None
    if current is None or module.get("__TYPE_MAP") is not current:
        pynwb.load_namespaces(path)
        return
    staged = pynwb.get_type_map()  # a copy
    staged.load_namespaces(path)
    module["__TYPE_MAP"] = staged
