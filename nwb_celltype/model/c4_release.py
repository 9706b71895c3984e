"""The published C4 models (Beau et al., Cell 2025): what was released (variants, where, how to
cite) and its safe import.

Import reads a ``trained_models.tar.gz`` (``models/model_{i}.pt`` state dicts of npyx's
``CNNCerebellum``) and its ``hessians.pt`` (per member: eigendecomposed Kronecker factors of the last
layer's Hessian) without extracting anything to disk and without executing pickled code
(``torch.load(weights_only=True)``; anything else is refused with :class:`UnsafeFileError`). Members are
validated against :mod:`.network`, stacked, and the prior precision that C4 re-optimises every time it
loads the ensemble is fitted once (:mod:`.laplace`) and stored. Prediction is :mod:`.c4`.
"""

from __future__ import annotations

import hashlib
import io
import logging
import pickle
import re
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from ..errors import ModelError, ModelMismatchError, UnsafeFileError
from ..features.config import FeatureConfig
from ..vocabulary import C4_CLASSES, C4_CLASSES_MLI_CLUSTERING, NOT_CLASSIFIABLE, UNCLASSIFIED
from .bundle import ModelBundle, bundle_from_states
from .ensemble_cnn import StackedEnsemble
from .laplace import KronPosterior, fit_prior_precision, posterior_from_hessians
from .network import LATENT_DIM, LAYER_DIM, convert_npyx_state_dict

__all__ = [
    "C4_CITATION",
    "C4_HESSIANS_URLS",
    "C4_MODELS_URLS",
    "C4_VARIANTS",
    "DECISION_RULE",
    "import_c4_ensemble",
    "is_c4_card",
    "safe_torch_load",
]

logger = logging.getLogger(__name__)

#: Variant name -> (uses the layer one-hot, class names in output order).
C4_VARIANTS: dict[str, tuple[bool, tuple[str, ...]]] = {
    "base": (False, C4_CLASSES),
    "mli_clustering": (False, C4_CLASSES_MLI_CLUSTERING),
    "layer_information": (True, C4_CLASSES),
    "layer_information_mli_clustering": (True, C4_CLASSES_MLI_CLUSTERING),
}

#: Where the C4 authors publish the ensembles (figshare links used by npyx 4.3.1's ``predict_cell_types``).
C4_MODELS_URLS: dict[str, str] = {
    "base": "https://figshare.com/ndownloader/files/42117042?private_link=2530fd0da03e18296d51",
    "mli_clustering": "https://figshare.com/ndownloader/files/42129447?private_link=d508ebc51d544ed8cd4c",
    "layer_information": "https://figshare.com/ndownloader/files/42853297?private_link=6531855c261b7bad032d",
    "layer_information_mli_clustering": (
        "https://figshare.com/ndownloader/files/42853708?private_link=3a81e48aff77d844a402"
    ),
}
C4_HESSIANS_URLS: dict[str, str] = {
    "base": "https://figshare.com/ndownloader/files/42117033?private_link=2530fd0da03e18296d51",
    "mli_clustering": "https://figshare.com/ndownloader/files/42129435?private_link=d508ebc51d544ed8cd4c",
    "layer_information": "https://figshare.com/ndownloader/files/42853141?private_link=6531855c261b7bad032d",
    "layer_information_mli_clustering": (
        "https://figshare.com/ndownloader/files/42853567?private_link=3a81e48aff77d844a402"
    ),
}

C4_CITATION = (
    "Beau M., Herzfeld D.J., Naveros F., et al. A deep learning strategy to identify cell types across "
    "species from high-density extracellular recordings. Cell (2025). "
    "Reference implementation: npyx (https://github.com/m-beau/NeuroPyxels), npyx/c4."
)

#: Marker in a model card that says "predict with C4's decision rule".
DECISION_RULE = "c4_laplace_probit_mean"
_MODEL_FILE = re.compile(r"^model_(\d+)\.pt$")
_SAFE_LEAVES = (torch.Tensor, bool, int, float, str, type(None))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_plain(obj, where: str, depth: int = 0) -> None:
    """Accept only tensors, numbers, strings, bools and None inside dicts / lists / tuples."""
    if depth > 20:
        raise UnsafeFileError(f"{where}: nesting deeper than 20 levels; not a C4 file")
    if isinstance(obj, _SAFE_LEAVES):
        return
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise UnsafeFileError(f"{where}: dict key of type {type(k).__name__}; not a C4 file")
            _check_plain(v, f"{where}[{k!r}]", depth + 1)
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]", depth + 1)
        return
    raise UnsafeFileError(
        f"{where}: holds a {type(obj).__module__}.{type(obj).__name__}; C4 files hold only tensors, "
        "lists, dicts and bools. Refusing it."
    )


def safe_torch_load(source, what: str):
    """``torch.load`` that never executes pickled code.

    Parameters
    ----------
    source : path or binary file object
    what : str
        Name of the file for messages.

    Raises
    ------
    UnsafeFileError
        The file needs arbitrary Python objects (classes, functions) to be unpickled.
    ModelError
        The file is not a torch file at all (truncated download, HTML error page, ...).
    """
    if hasattr(source, "read"):
        head = source.read(4)
        source.seek(0)
    else:
        with open(source, "rb") as f:
            head = f.read(4)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # zip (torch >= 1.6) or legacy pickle
        raise ModelError(
            f"{what} is not a torch file (starts with {head!r}); the download may be truncated or an HTML "
            "error page: fetch it again."
        )
    try:
        obj = torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if "GLOBAL" in ln or "Unsupported" in ln]
        detail = (lines[0] if lines else str(exc).splitlines()[0])[:200]
        raise UnsafeFileError(
            f"{what} contains pickled Python objects other than tensors and plain containers, so "
            f"loading it would execute arbitrary code; refused ({detail}). "
            "Use the files published by the C4 authors (see docs/c4.md) and check their sha256."
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ModelError(
            f"{what} is not a readable torch file ({type(exc).__name__}: {str(exc)[:200]}); the download "
            "may be truncated or an HTML error page: fetch it again."
        ) from exc
    _check_plain(obj, what)
    return obj


def _open_tar(archive: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise ModelError(
            f"{archive} is not a readable tar archive ({exc}); expected C4's trained_models.tar.gz."
        ) from exc


def _members(tar: tarfile.TarFile, archive: Path):
    """The members of ``tar``; a truncated or corrupt archive becomes our ModelError (tarfile
    raises EOFError, which click would report only as "Aborted!")."""
    import zlib

    it = iter(tar)
    while True:
        try:
            member = next(it)
        except StopIteration:
            return
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            raise ModelError(
                f"{archive} is truncated or corrupt ({type(exc).__name__}: {exc}); download C4's "
                "trained_models.tar.gz again."
            ) from exc
        yield member


def _scan_archive(archive: Path) -> list[tuple[int, str]]:
    """``(i, member name)`` of every ``models/model_{i}.pt``, sorted by ``i`` (as npyx's load_ensemble)."""
    found: dict[int, str] = {}
    with _open_tar(archive) as tar:
        for member in _members(tar, archive):
            if member.isdir():
                continue
            m = _MODEL_FILE.match(member.name.rsplit("/", 1)[-1])
            if m is None:
                logger.warning("ignoring %s in %s: not a models/model_<i>.pt file", member.name, archive)
                continue
            if not member.isfile():
                raise UnsafeFileError(
                    f"{archive}: {member.name} is a link or special file, not a regular file; refused."
                )
            idx = int(m.group(1))
            if idx in found:
                raise ModelMismatchError(f"{archive}: model_{idx}.pt appears twice")
            found[idx] = member.name
    if not found:
        raise ModelMismatchError(
            f"{archive} holds no models/model_<i>.pt files; is it C4's trained_models.tar.gz?"
        )
    return sorted(found.items())


def _iter_member_states(archive: Path, ranks: Mapping[str, int]):
    """Yield ``(rank, state dict)`` in archive order, read in memory (nothing extracted to disk)."""
    with _open_tar(archive) as tar:
        for member in _members(tar, archive):
            rank = ranks.get(member.name)
            if rank is None or not member.isfile():
                continue
            try:
                data = tar.extractfile(member).read()
            except (tarfile.TarError, EOFError, OSError) as exc:
                raise ModelError(f"{archive}:{member.name} is truncated or corrupt ({exc}).") from exc
            state = safe_torch_load(io.BytesIO(data), f"{archive}:{member.name}")
            if not isinstance(state, Mapping):
                raise ModelMismatchError(
                    f"{archive}:{member.name} holds a {type(state).__name__}, expected a state dict"
                )
            yield rank, {k.removeprefix("module."): v for k, v in state.items()}


def import_c4_ensemble(
    archive: str | Path,
    hessians: str | Path,
    *,
    variant: str,
    classes: Sequence[str] | None = None,
) -> ModelBundle:
    """Read a published C4 ensemble and its Hessians into a model bundle (save it with ``save_bundle``).

    Parameters
    ----------
    archive : path
        C4's ``trained_models.tar.gz``.
    hessians : path
        The matching ``hessians.pt``.
    variant : {"base", "mli_clustering", "layer_information", "layer_information_mli_clustering"}
    classes : sequence of str, optional
        Output class names in output order, overriding the variant's (needed only if the released
        files have a different number of outputs than the variant's class list): one per output,
        unique, non-empty, without surrounding spaces, and none of the reserved labels
        ``"unclassified"`` / ``"not_classifiable"``. Checked before the archive is read.

    Returns
    -------
    ModelBundle
        All members (stacked), their last-layer posteriors with the fitted prior precision, and a card
        with the class order, the feature configuration (C4's, unit selection on), the C4 citation, the
        variant, the source files' names, URLs and sha256, and the calibration settings.

    Raises
    ------
    UnsafeFileError, ModelError, ModelMismatchError
        ModelError also for unusable ``classes``; ModelMismatchError where their number is not the
        members' number of outputs.
    """
    if variant not in C4_VARIANTS:
        raise ModelError(f"unknown C4 variant {variant!r}; choose one of {sorted(C4_VARIANTS)}")
    use_layer, default_classes = C4_VARIANTS[variant]
    names = _check_class_names(classes) if classes is not None else default_classes
    archive, hessians = Path(archive), Path(hessians)
    for p in (archive, hessians):
        if not p.is_file():
            raise ModelError(f"{p} does not exist or is not a file; download it first (docs/c4.md)")
    listing = _scan_archive(archive)
    indices = [i for i, _ in listing]
    n_members = len(listing)
    hess = _load_hessians(hessians, archive, n_members)
    members, n_classes = _stack_members(archive, listing, variant=variant, use_layer=use_layer)
    _check_finite(members, indices)
    if len(names) != n_classes:
        raise ModelMismatchError(
            f"the members have {n_classes} outputs but variant {variant!r} names {len(names)} classes "
            f"{list(names)}; pass the class names in output order (--classes) if the release differs."
        )
    weight, bias = members["fc2.weight"], members["fc2.bias"]
    post = posterior_from_hessians(hess, n_classes=n_classes, n_inputs=int(weight.shape[2]))
    tau = fit_prior_precision(post, weight, bias)
    archive_sha, hess_sha = _sha256(archive), _sha256(hessians)
    sources = {
        "trained_models": {"file": archive.name, "sha256": archive_sha, "url": C4_MODELS_URLS[variant]},
        "hessians": {"file": hessians.name, "sha256": hess_sha, "url": C4_HESSIANS_URLS[variant]},
    }
    bundle = bundle_from_states(
        StackedEnsemble(members, n_classes, use_layer, "avg"),
        classes=names,
        feature_config=FeatureConfig(c4_unit_selection=True),
        name=f"c4-{variant}",
        version=f"published-{archive_sha[:12]}",
        description=(
            f"C4 cerebellar cell-type classifier, variant {variant!r}: the {n_members}-member ensemble "
            "published by the C4 authors (Beau et al., Cell 2025), trained on optotagged / identified "
            "mouse cerebellar neurons, imported by nwb-celltype with its last-layer Laplace calibration."
        ),
        laplace=post,
        pool="avg",
        card_extra=_c4_card_extra(variant, indices, sources, post, tau),
    )
    logger.info(
        "imported %d C4 members (%s), prior precision %.3g..%.3g", n_members, variant, tau.min(), tau.max()
    )
    return bundle


def _check_class_names(classes: Sequence[str]) -> tuple[str, ...]:
    """``classes`` as a tuple, refused with a one-line :class:`ModelError` where a name cannot label a
    model output: not a string, empty, with surrounding spaces, a label the package reserves
    (:data:`~nwb_celltype.vocabulary.UNCLASSIFIED`, :data:`~nwb_celltype.vocabulary.NOT_CLASSIFIABLE`),
    or given twice (two outputs would share one ``p_<class>`` column and one label)."""
    if isinstance(classes, str):
        raise ModelError(
            f"classes must be a list of names, got the string {classes!r}; split it (--classes A,B,C)."
        )
    names = tuple(classes)
    bad = [c for c in names if not isinstance(c, str) or not c.strip() or c != c.strip()]
    reserved = [c for c in names if c in (UNCLASSIFIED, NOT_CLASSIFIABLE)]
    twice = sorted({c for c in names if isinstance(c, str) and names.count(c) > 1})
    if not names:
        problem = "no class names"
    elif bad:
        problem = f"empty, non-string or space-padded names {bad}"
    elif reserved:
        problem = f"{reserved} {'is a reserved label' if len(reserved) == 1 else 'are reserved labels'}"
    elif twice:
        problem = f"{twice} given more than once"
    else:
        return names
    raise ModelError(
        f"class names {list(names)}: {problem}; give one unique, non-empty name per model output, in "
        f"output order, other than {UNCLASSIFIED!r} and {NOT_CLASSIFIABLE!r} (e.g. --classes "
        f"{','.join(C4_CLASSES)})."
    )


def _load_hessians(hessians: Path, archive: Path, n_members: int) -> Sequence:
    """The per-member Kronecker Hessians of ``hessians``, one per member of ``archive``."""
    hess = safe_torch_load(hessians, str(hessians))
    if isinstance(hess, torch.Tensor) or not isinstance(hess, Sequence):
        raise ModelMismatchError(
            f"{hessians} holds a {type(hess).__name__}; expected a list of per-member Kronecker Hessian dicts"
        )
    if len(hess) != n_members:
        raise ModelMismatchError(
            f"{archive} has {n_members} members but {hessians} has {len(hess)} Hessians; they must come "
            "from the same release (same variant)."
        )
    return hess


def _stack_members(
    archive: Path, listing: list[tuple[int, str]], *, variant: str, use_layer: bool
) -> tuple[dict[str, torch.Tensor], int]:
    """The members of ``archive`` in our layout, stacked in ``listing`` order, and their number of outputs."""
    # one pass to list, one to read: members go straight into preallocated stacked tensors, so the
    # peak memory is one copy of the ensemble (2,000 members: ~2.6 GB)
    n_members = len(listing)
    members: dict[str, torch.Tensor] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    n_classes = 0
    for rank, sd in _iter_member_states(archive, {name: r for r, (_, name) in enumerate(listing)}):
        if not members:
            first = convert_npyx_state_dict(sd)
            n_classes = int(first["fc2.weight"].shape[0])
            _check_layer_use(first, variant=variant, use_layer=use_layer)
            shapes = {k: tuple(v.shape) for k, v in first.items()}
            members = {
                k: torch.empty((n_members, *v), dtype=torch.float32)
                for k, v in shapes.items()
                if not k.endswith("num_batches_tracked")
            }
        if set(sd) != set(shapes) or any(tuple(sd[k].shape) != sh for k, sh in shapes.items()):
            sd = convert_npyx_state_dict(sd, n_classes=n_classes, use_layer=use_layer)  # raises, naming keys
        for k, dst in members.items():
            dst[rank] = sd[k]
    return members, n_classes


def _check_layer_use(first: Mapping[str, torch.Tensor], *, variant: str, use_layer: bool) -> None:
    """Refuse members whose inputs (with or without the layer one-hot) are not the variant's."""
    has_layer = int(first["batch_norm.weight"].shape[0]) == 2 * LATENT_DIM + LAYER_DIM
    if has_layer != use_layer:
        raise ModelMismatchError(
            f"variant {variant!r} {'uses' if use_layer else 'does not use'} layer information but "
            f"the members {'do' if has_layer else 'do not'}; pass the --variant the files were "
            "published as."
        )


def _check_finite(members: dict[str, torch.Tensor], indices: list[int]) -> None:
    """Refuse stacked members with NaN or infinite weights, naming (up to 5 of) their file indices."""
    for k, v in members.items():
        finite = torch.isfinite(v.reshape(len(indices), -1)).all(dim=1)
        if not finite.all():
            bad = [indices[r] for r in torch.nonzero(~finite).flatten().tolist()[:5]]
            raise ModelError(f"model_{bad}.pt: non-finite values in {k}; the files are corrupt")


def _c4_card_extra(
    variant: str, indices: list[int], sources: dict, post: KronPosterior, tau: torch.Tensor
) -> dict:
    """The card fields of an imported C4 ensemble: decision rule, citation, release and calibration."""
    return {
        "decision_rule": DECISION_RULE,
        "decision": (
            "C4: per member the last-layer Laplace probit predictive; mean over members; label = argmax; "
            "confidence = p(top1) / p(top2), below the threshold (2) -> unclassified; votes = members "
            "whose argmax is each class"
        ),
        "threshold": 2.0,
        "citation": C4_CITATION,
        "c4": {
            "variant": variant,
            "n_members": len(indices),
            "member_indices": indices,
            "sources": sources,
            "reference_implementation": "npyx 4.3.1 (npyx.c4.predict_cell_types, run_deep_classifier)",
        },
        "calibration": {
            "method": "laplace",
            "library_reproduced": "laplace-torch 0.1a2 (KronLLLaplace)",
            "subset_of_weights": "last_layer",
            "hessian_structure": "kron",
            "pred_type": "glm",
            "link_approx": "probit",
            "prior_precision_fit": "log marginal likelihood, Adam lr 0.1, 100 steps from 1 (fitted at import)",
            "prior_precision_range": [float(tau.min()), float(tau.max())],
            "damping_flags": sorted({bool(x) for x in post.damping.tolist()}),
            "temperature": 1.0,
        },
    }


def is_c4_card(card: Mapping) -> bool:
    """Whether a model card asks for C4's decision rule (bundles made by :func:`import_c4_ensemble`)."""
    return card.get("decision_rule") == DECISION_RULE
