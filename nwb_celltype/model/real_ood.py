"""Out-of-distribution scores of the real-trained ensemble (numpy only: prediction imports no torch).

Two spaces per part (discharge, waveform), each a squared Mahalanobis distance to the nearest class
mean under Gaussians with one shared, shrunk covariance, fitted on the labelled units:

- ``latent``: the frozen pre-trained encoder's code of the model's inputs (what the heads read);
- ``input``: the part's inputs *before* the quantile map, standardised by the pre-training pool's
  mean and SD. The quantile map squashes a value anywhere in the pool's tails into a few
  hundredths of rank, so the latent codes of mapped inputs cannot see how far into a tail a unit
  lies; the un-mapped inputs keep that distance.

Each distance is divided by the ``q`` quantile of its inner out-of-fold values on the labelled units
(each unit scored by Gaussians fitted without its fold). A unit's score is the largest of its
available normalised distances divided by ``combined_threshold``: the ``q`` quantile of that same
maximum over the labelled units' out-of-fold values, so that combining several scores does not
raise the share of training-like units flagged above ``1 - q``. Score > 1 = out of distribution.
Every threshold comes from the training units' out-of-fold values only.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["SPACES", "fit_gaussians", "fit_ood", "mahalanobis", "ood_scores"]

#: Spaces the distance is measured in (see the module docstring).
SPACES = ("latent", "input")
#: Shrinkage of the shared covariance towards its mean variance.
SHRINK = 0.1


def fit_gaussians(z: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Class means (C, k) (NaN for absent classes) and the shrunk shared precision matrix (k, k)
    of codes z (n, k) with class indices y (n,)."""
    means = np.full((n_classes, z.shape[1]), np.nan)
    resid = []
    for c in np.unique(y):
        means[c] = z[y == c].mean(0)
        resid.append(z[y == c] - means[c])
    r = np.concatenate(resid)
    cov = r.T @ r / max(len(r) - 1, 1)
    cov = (1 - SHRINK) * cov + SHRINK * np.eye(len(cov)) * np.trace(cov) / len(cov)
    return means, np.linalg.inv(cov)


def mahalanobis(z: np.ndarray, means: np.ndarray, prec: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distance of z (n, k) to the nearest class mean (rows of means (C, k) that
    are NaN are skipped); (n,)."""
    d = z[:, None, :] - means[None]
    m2 = np.einsum("nck,kl,ncl->nc", d, prec, d)
    return np.nanmin(m2, axis=1)


def _oof(z: np.ndarray, y: np.ndarray, fold: np.ndarray, n_classes: int) -> np.ndarray:
    """Out-of-fold distances (n,): each unit against Gaussians fitted without its fold."""
    out = np.empty(len(y))
    for f in np.unique(fold):
        tr, te = fold != f, fold == f
        out[te] = mahalanobis(z[te], *fit_gaussians(z[tr], y[tr], n_classes))
    return out


def _standardise_input(x: np.ndarray, tensors: Mapping, part: str) -> np.ndarray:
    mean = np.asarray(tensors[f"ood.{part}.input_mean"], dtype=np.float64)
    std = np.asarray(tensors[f"ood.{part}.input_std"], dtype=np.float64)
    return (np.asarray(x, dtype=np.float64) - mean) / std


def fit_ood(
    codes: Mapping[str, Mapping[str, np.ndarray]],
    pools: Mapping[str, np.ndarray],
    avail: Mapping[str, np.ndarray],
    y: np.ndarray,
    fold: np.ndarray,
    n_classes: int,
    q: float,
    spaces: tuple[str, ...] = SPACES,
) -> tuple[dict[str, np.ndarray], dict]:
    """Fit the out-of-distribution scores on the labelled units.

    Parameters
    ----------
    codes : mapping part -> space -> (n, k)
        Per labelled unit: ``codes[part]["latent"]`` the encoder's latent codes, and
        ``codes[part]["input"]`` the un-mapped inputs (rows where the part is missing are ignored).
    pools : mapping part -> (m, d)
        The un-mapped inputs of the pre-training pool (for the input space's mean and SD).
    avail : mapping part -> (n,) bool
        Which labelled units have the part.
    y, fold : (n,) int
        Class index and inner fold of each labelled unit.
    q : float
        Quantile of the out-of-fold values that becomes each threshold (e.g. 0.95).
    spaces : tuple of str
        Which of :data:`SPACES` to use.

    Returns
    -------
    tensors : dict of str -> ndarray (float32)
        ``ood.<part>.class_means`` / ``precision`` (latent space), ``ood.<part>.input_mean`` /
        ``input_std`` / ``input_class_means`` / ``input_precision`` (input space).
    meta : dict
        ``{part: {"mahalanobis_threshold": t, "input_mahalanobis_threshold": t}, "combined_threshold": t,
        "quantile": q, "spaces": [...]}``.
    """
    tensors: dict[str, np.ndarray] = {}
    meta: dict = {"quantile": float(q), "spaces": list(spaces)}
    norm_oof = np.full((len(y), 0), np.nan)
    for part, ok in avail.items():
        meta[part] = {}
        if not ok.any():  # no labelled unit has this part: it is not scored
            continue
        for space in spaces:
            z = np.asarray(codes[part][space], dtype=np.float64)
            prefix = f"ood.{part}." + ("input_" if space == "input" else "")
            if space == "input":
                mean, std = pools[part].mean(0), pools[part].std(0) + 1e-3
                tensors[f"ood.{part}.input_mean"] = mean.astype(np.float32)
                tensors[f"ood.{part}.input_std"] = std.astype(np.float32)
                z = _standardise_input(z, tensors, part)
            oof = np.full(len(y), np.nan)
            oof[ok] = _oof(z[ok], y[ok], fold[ok], n_classes)
            thr = float(np.quantile(oof[ok], q))
            means, prec = fit_gaussians(z[ok], y[ok], n_classes)
            tensors[prefix + "class_means"] = np.nan_to_num(means, nan=1e6).astype(np.float32)
            tensors[prefix + "precision"] = prec.astype(np.float32)
            key = "input_mahalanobis_threshold" if space == "input" else "mahalanobis_threshold"
            meta[part][key] = thr
            norm_oof = np.column_stack([norm_oof, oof / thr])
    with np.errstate(invalid="ignore"):
        combined = np.nanmax(norm_oof, axis=1)
    meta["combined_threshold"] = float(np.quantile(combined[np.isfinite(combined)], q))
    return tensors, meta


def ood_scores(
    tensors: Mapping,
    meta: Mapping,
    codes: Mapping[str, Mapping[str, np.ndarray]],
    avail: Mapping[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Out-of-distribution scores of units (see the module docstring); > 1 means out of distribution.

    ``codes[part][space]`` (n, k) as in :func:`fit_ood` (``input``: the un-mapped inputs);
    ``avail[part]`` (n,) bool. Returns ``{part: (n,)}`` (the part's largest normalised distance over
    its spaces, divided by the combined threshold; NaN where the part is missing) and
    ``"combined"`` (n,), the largest over parts. A part no labelled unit had is not scored (NaN). A model without input-space tensors (before 1.2)
    uses its latent space only, with combined threshold 1.
    """
    ood = meta["ood"]
    combined_thr = float(ood.get("combined_threshold", 1.0))
    out: dict[str, np.ndarray] = {}
    for part, ok in avail.items():
        n = len(ok)
        sc = np.full(n, np.nan)
        if ok.any() and ood.get(part):
            best = np.full(int(ok.sum()), -np.inf)
            for space in ood.get("spaces", ["latent"]):
                prefix = f"ood.{part}." + ("input_" if space == "input" else "")
                z = np.asarray(codes[part][space], dtype=np.float64)[ok]
                if space == "input":
                    z = _standardise_input(z, tensors, part)
                means = np.asarray(tensors[prefix + "class_means"], dtype=np.float64)
                prec = np.asarray(tensors[prefix + "precision"], dtype=np.float64)
                key = "input_mahalanobis_threshold" if space == "input" else "mahalanobis_threshold"
                best = np.maximum(best, mahalanobis(z, means, prec) / ood[part][key])
            sc[ok] = best / combined_thr
        out[part] = sc
    out["combined"] = np.fmax(out["discharge"], out["waveform"])
    return out
