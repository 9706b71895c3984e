"""The published C4 models (Beau et al., Cell 2025): prediction with C4's decision rule. The safe
import of the released ensembles is :mod:`.c4_release` (its names are re-exported here).

Prediction (:func:`predict_c4`) runs all members as one batched computation (blocks of members and
units bound the memory) and applies C4's rule (npyx ``predict_cell_types``): per member the
last-layer Laplace probit predictive; mean over members; label = argmax; confidence = ratio of the top
two mean probabilities; below the threshold (2) -> unclassified; votes = members whose own argmax is
each class.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ModelError, ModelMismatchError
from .bundle import ModelBundle
from .c4_release import (  # noqa: F401  (re-exported)
    C4_CITATION,
    C4_HESSIANS_URLS,
    C4_MODELS_URLS,
    C4_VARIANTS,
    DECISION_RULE,
    import_c4_ensemble,
    is_c4_card,
    safe_torch_load,
)
from .decision import check_threshold, decide
from .ensemble_cnn import StackedEnsemble
from .laplace import predictive_variance, probit_probabilities

__all__ = [
    "C4_CITATION",
    "C4_HESSIANS_URLS",
    "C4_MODELS_URLS",
    "C4_VARIANTS",
    "C4Prediction",
    "c4_member_outputs",
    "c4_member_probabilities",
    "import_c4_ensemble",
    "is_c4_card",
    "predict_c4",
    "resolve_dtype",
    "safe_torch_load",
]

logger = logging.getLogger(__name__)

#: Members and units per block of the batched forward (bounds peak memory to a few hundred MB).
MEMBER_BLOCK = 64
UNIT_BLOCK = 256
#: Floating-point precisions prediction can run in (float32: the default, as C4; float64: for checks).
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``torch.float32`` / ``torch.float64`` from a dtype or its name; anything else is refused."""
    if isinstance(dtype, str):
        key = dtype.removeprefix("torch.")
        if key not in DTYPES:
            raise ModelError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        return DTYPES[key]
    if dtype not in DTYPES.values():
        raise ModelError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    return dtype


def _block(bundle: ModelBundle, s: int, e: int, dtype: torch.dtype):
    """Members ``s:e`` of a bundle as (batched network, posterior): views of the bundle's tensors, or
    copies in ``dtype`` if it differs (so float64 holds one block's copy at a time, not the ensemble's)."""
    ens = bundle.ensemble
    net = StackedEnsemble(
        {k: v[s:e].to(dtype) for k, v in ens.stacked_tensors().items()},
        ens.n_classes,
        ens.use_layer,
        ens.pool,
    )
    return net.eval(), bundle.laplace.subset(slice(s, e)).to(dtype)


def c4_member_outputs(
    bundle: ModelBundle,
    acg: torch.Tensor,
    waveform: torch.Tensor,
    layer: torch.Tensor | None,
    *,
    member_block: int = MEMBER_BLOCK,
    unit_block: int = UNIT_BLOCK,
    workers: int | None = None,
    dtype: str | torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and Laplace probit probabilities of every member, each (M, n, k) in ``dtype``.

    Members and units are processed in blocks (each block one batched computation) so that peak
    memory stays bounded for ensembles of thousands of members. On CPU the member blocks are shared
    out to ``workers`` threads (default: ``torch.get_num_threads()``; blocks are made smaller when
    there are fewer than workers), each running torch with one intra-op thread: on a busy machine
    this avoids the stalls of multi-threaded operations whose other threads are descheduled (up to
    30x slower on the 2-core development machine). The blocks, hence the results, depend on
    ``member_block``, ``unit_block`` and ``workers`` only, never on the threads' timing.

    ``dtype`` (float32 by default, as C4 runs) sets the precision of the whole computation: with
    ``torch.float64`` the stored float32 weights, the posterior and the inputs are converted (exactly)
    and every operation runs in double precision, 2-3.5x slower; a check of the float32 results.
    """
    if bundle.laplace is None:
        raise ModelError(
            f"bundle {bundle.name} has no Laplace posterior; C4 bundles must be made by c4 import"
        )
    dtype = resolve_dtype(dtype)
    m, n, k = bundle.ensemble.n_members, int(acg.shape[0]), bundle.ensemble.n_classes
    logits_all = torch.empty((m, n, k), dtype=dtype)
    probs_all = torch.empty((m, n, k), dtype=dtype)

    def run(block: tuple[int, int]) -> None:
        if on_cpu:
            torch.set_num_threads(1)  # in this thread too: OpenMP's thread count is per thread
        s, e = block
        net, post = _block(bundle, s, e, dtype)
        with torch.inference_mode():
            for u in range(0, n, unit_block):
                v = min(u + unit_block, n)
                lay = None if (layer is None or not net.use_layer) else layer[u:v].to(dtype)
                logits, feats = net(acg[u:v].to(dtype), waveform[u:v].to(dtype), lay)
                logits_all[s:e, u:v] = logits
                probs_all[s:e, u:v] = probit_probabilities(logits, predictive_variance(post, feats))

    on_cpu = acg.device.type == "cpu"
    workers = max(1, int(torch.get_num_threads() if workers is None else workers)) if on_cpu else 1
    member_block = max(1, min(int(member_block), -(-m // workers)))  # a block for every worker
    blocks = [(s, min(s + member_block, m)) for s in range(0, m, member_block)]
    workers = min(workers, len(blocks))
    if not on_cpu:
        for block in blocks:
            run(block)
        return logits_all, probs_all
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # process-wide; restored below
    try:
        if workers == 1:
            for block in blocks:
                run(block)
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for fut in [pool.submit(run, block) for block in blocks]:
                    fut.result()
    finally:
        torch.set_num_threads(threads)
    return logits_all, probs_all


def c4_member_probabilities(
    bundle: ModelBundle,
    acg: torch.Tensor,
    waveform: torch.Tensor,
    layer: torch.Tensor | None,
    *,
    dtype: str | torch.dtype = torch.float32,
) -> torch.Tensor:
    """Hook used by ``predict_cell_types`` for C4 bundles: (M, n, k) probit probabilities, member-blocked."""
    return c4_member_outputs(bundle, acg, waveform, layer, dtype=dtype)[1]


@dataclass
class C4Prediction:
    """C4's outputs for n units.

    Attributes
    ----------
    probabilities : (n, k) float64
        Mean over members of the Laplace probit predictive.
    predicted : (n,) int64
        Argmax of ``probabilities``.
    labels : (n,) object
        Class name, or ``"unclassified"`` where ``confidence < threshold``.
    confidence : (n,) float64
        Ratio of the top two mean probabilities (C4's confidence ratio).
    votes : (n, k) int64
        Number of members whose own argmax is each class.
    member_logits, member_probabilities : (M, n, k) float32 (float64 with ``dtype="float64"``) or None
        Per-member outputs, only when asked for (tests, diagnostics).
    """

    probabilities: np.ndarray
    predicted: np.ndarray
    labels: np.ndarray
    confidence: np.ndarray
    votes: np.ndarray
    member_logits: np.ndarray | None = None
    member_probabilities: np.ndarray | None = None


def predict_c4(
    bundle: ModelBundle,
    acg: np.ndarray,
    waveform: np.ndarray,
    layer: np.ndarray | None = None,
    *,
    threshold: float = 2.0,
    keep_members: bool = False,
    dtype: str | torch.dtype = torch.float32,
) -> C4Prediction:
    """Classify units given as arrays with C4's decision rule (``predict_cell_types`` does the same on a
    FeatureSet, with not-classifiable units and reasons).

    Parameters
    ----------
    bundle : ModelBundle
        A C4 bundle (:func:`import_c4_ensemble` / ``load_bundle`` of its output).
    acg : (n, 10, 101) float
        Log-lag 3D ACG as C4 builds it (x10 scaling included).
    waveform : (n, 90) float
        Preprocessed peak-channel waveform.
    layer : (n, 4) float or None
        Layer one-hot (required by layer variants; ignored otherwise).
    threshold : float
        Confidence ratio below which a unit is ``"unclassified"`` (C4: 2).
    keep_members : bool
        Also return per-member logits and probabilities (M x n x k).
    dtype : {torch.float32, torch.float64} or its name
        Precision of the computation (inputs included). float32 (default) is how C4 runs;
        float64 computes the same network on the same stored weights in double precision.

    Returns
    -------
    C4Prediction

    Raises
    ------
    InvalidValueError
        ``threshold`` is not a finite ratio >= 1.
    """
    check_threshold(threshold)
    dtype = resolve_dtype(dtype)
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    acg_t = torch.as_tensor(np.asarray(acg, dtype=np_dtype))
    wvf_t = torch.as_tensor(np.asarray(waveform, dtype=np_dtype))
    n = int(acg_t.shape[0])
    if acg_t.shape[1:] != (10, 101) or wvf_t.shape != (n, 90):
        raise ModelMismatchError(
            f"C4 models need acg (n, 10, 101) and waveform (n, 90); got {tuple(acg_t.shape)} and "
            f"{tuple(wvf_t.shape)}. Compute features with the C4 feature configuration."
        )
    lay_t = None
    if bundle.ensemble.use_layer:
        if layer is None:
            raise ModelMismatchError(
                "this C4 variant uses layer information: pass layer one-hots (n, 4) in vocabulary.LAYERS order"
            )
        lay_t = torch.as_tensor(np.asarray(layer, dtype=np_dtype))
        if lay_t.shape != (n, 4):
            raise ModelMismatchError(f"layer must be (n, 4) = ({n}, 4), got {tuple(lay_t.shape)}")
    classes = bundle.classes
    logits, probs = c4_member_outputs(bundle, acg_t, wvf_t, lay_t, dtype=dtype)
    p = probs.numpy()
    mean = p.mean(axis=0, dtype=np.float64)
    decision = decide(mean, threshold, p)
    return C4Prediction(
        mean,
        decision.predicted,
        decision.labels(classes),
        decision.confidence,
        decision.votes,
        logits.numpy() if keep_members else None,
        p if keep_members else None,
    )
