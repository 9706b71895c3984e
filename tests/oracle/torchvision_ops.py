"""Run first in the npyx oracle environment (by the ``oracle`` fixture and by ``ready.py``).

npyx 4.3.1 imports ``torchvision.transforms`` in the same ``try`` as torch; if that import fails, every
C4 model class becomes a stub that raises on use. The oracle uses no torchvision code (npyx needs it
only for training augmentations and an image-resize encoder that C4's classifier does not use), but
torchvision must import.

With a CPU torchvision (the PyTorch CPU index, ``+cpu``) this does nothing. Where that index cannot
be reached, the oracle has PyPI's torchvision of the same release, a CUDA build whose compiled ops
(``_C.so``, linked to CUDA torch) cannot load beside CPU torch. torchvision is written to run
without them (``extension._has_ops()`` False; every op then raises "Couldn't load custom C++ ops"),
except that it registers fake kernels for ``nms`` and ``qnms`` unconditionally, which fails with
"operator torchvision::nms does not exist". So, and only when the compiled ops cannot load, this
declares those two operator schemas without any kernel: calling either still raises.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch


def declare_missing_torchvision_ops() -> bool:
    """Declare ``torchvision::nms``/``qnms`` (schemas only) if torchvision's compiled ops cannot
    load; returns whether the compiled ops loaded."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False  # no torchvision: ready.py reports it
    libs = sorted(Path(next(iter(spec.submodule_search_locations))).glob("_C*.so"))
    try:
        torch.ops.load_library(str(libs[0]))
        return True
    except (IndexError, OSError):
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
        _KEEP.append(lib)  # a Library deregisters its definitions when garbage-collected
        return False


_KEEP: list = []
HAS_OPS = declare_missing_torchvision_ops()
