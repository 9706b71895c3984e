"""A bundle's identity: the canonical JSON of its model card and the sha256 digests of its weights
and card (:mod:`.bundle` writes them into the card on save and checks them on load)."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np

from ..errors import ModelError


def _json_safe(obj):
    """Replace NaN / inf by None and numpy scalars by Python ones (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    return obj


def _canonical(card: dict) -> bytes:
    return json.dumps(_json_safe(card), sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


#: numpy dtype -> the torch dtype name the weights digest was defined with (torch's ``str(dtype)``).
_DIGEST_DTYPES = {
    "float16": "torch.float16",
    "float32": "torch.float32",
    "float64": "torch.float64",
    "int8": "torch.int8",
    "int16": "torch.int16",
    "int32": "torch.int32",
    "int64": "torch.int64",
    "uint8": "torch.uint8",
    "bool": "torch.bool",
}


def _weights_digest(tensors: dict) -> str:
    """sha256 over tensor names, dtypes, shapes and bytes (independent of file layout). Tensors may be
    torch tensors or numpy arrays (the digest is the same for the same values: dtypes are named as
    torch names them)."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        v = tensors[k]
        if isinstance(v, np.ndarray):
            a = np.ascontiguousarray(v)
            try:
                dtype = _DIGEST_DTYPES[a.dtype.name]
            except KeyError:
                raise ModelError(f"weights tensor {k!r} has unsupported dtype {a.dtype}.") from None
        else:  # a torch tensor
            v = v.detach().cpu().contiguous()
            dtype, a = str(v.dtype), v.numpy()
        h.update(f"{k}|{dtype}|{tuple(a.shape)}|".encode())
        h.update(a.astype(np.uint8).tobytes() if a.dtype == np.bool_ else a.tobytes())
    return h.hexdigest()


def _bundle_digest(card: dict) -> str:
    body = {k: v for k, v in card.items() if k != "sha256"}
    return hashlib.sha256(_canonical(body)).hexdigest()


def _verify_digests(path: Path, card: dict, tensors: dict) -> None:
    """Refuse a bundle whose weights or card do not hash to the digests its card records."""
    got_w = _weights_digest(tensors)
    if got_w != card.get("weights_sha256"):
        raise ModelError(
            f"weights of {path} do not match the model card: sha256 {got_w[:16]}... != recorded "
            f"{str(card.get('weights_sha256'))[:16]}...; the bundle is corrupt or was modified. Re-download "
            "or re-train it."
        )
    got_b = _bundle_digest(card)
    if got_b != card.get("sha256"):
        raise ModelError(
            f"model card of {path} does not match its recorded sha256 ({got_b[:16]}... != "
            f"{str(card.get('sha256'))[:16]}...); the card was edited. Re-download or re-train the bundle."
        )
