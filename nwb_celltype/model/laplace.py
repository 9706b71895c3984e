"""Last-layer Kronecker-factored Laplace posterior of an ensemble, batched over members.

This reproduces the mathematics of laplace-torch 0.1a2's ``KronLLLaplace`` as C4 uses it
(``Laplace(model, "classification", subset_of_weights="last_layer", hessian_structure="kron")``):

* Posterior precision of the last linear layer (weight ``W`` of shape (k, p), bias ``b`` of shape (k,))
  is block diagonal: ``A ⊗ B + δ_w`` for the weight (``A`` k×k, ``B`` p×p, given by their
  eigendecompositions) and ``C + δ_b`` for the bias (``C`` k×k), where ``δ = deltas + τ`` and ``τ`` is
  the scalar prior precision. laplace-torch 0.1a2 drops the ``damping`` flag as soon as the Hessian is
  scaled or the prior is added (``KronDecomposed.__mul__`` / ``__add__`` rebuild it undamped), so the
  flag stored by C4 has no effect on predictions or on the marginal likelihood; we do the same.
* The prior precision ``τ`` is fitted by maximising the Laplace log marginal likelihood with Adam
  (lr 0.1, 100 steps, from log τ = 0), C4's ``optimize_prior_precision(method="marglik")`` after
  loading its Hessians. C4's reloaded posteriors carry no training loss (``fit`` is never called),
  so the objective is ``½ (log det P − n_params log τ + τ ‖θ‖²)``. Adam is element-wise, so fitting
  all members at once on the summed objective gives each member exactly its own trajectory.
* The predictive is the linearised (GLM) probit approximation:
  ``p = softmax(μ / sqrt(1 + π/8 σ²))`` with ``σ²`` the diagonal of ``J P⁻¹ Jᵀ`` and ``J`` the
  Jacobian of the logits with respect to the last layer's parameters (``J_c = e_c ⊗ φ`` for the weight,
  ``e_c`` for the bias; ``φ`` the last layer's input).

Everything here takes stacked tensors (leading member axis M), no Python loop over members.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from ..errors import ModelError, ModelMismatchError

__all__ = [
    "KronPosterior",
    "fit_prior_precision",
    "log_marginal_likelihood",
    "posterior_from_hessians",
    "predictive_variance",
    "probit_probabilities",
]

#: Settings of C4's ``optimize_prior_precision(method="marglik")`` (laplace-torch 0.1a2 defaults).
MARGLIK_STEPS: int = 100
MARGLIK_LR: float = 0.1
MARGLIK_INIT_PRIOR_PRECISION: float = 1.0


@dataclass
class KronPosterior:
    """Kronecker-factored last-layer posteriors of M members (float32 tensors; :meth:`to` converts).

    Attributes
    ----------
    out_eigvals : (M, k)
        Eigenvalues of the output-side factor ``A`` of the weight block.
    out_eigvecs : (M, k, k)
        Eigenvectors (columns) of ``A``.
    in_eigvals : (M, p)
        Eigenvalues of the input-side factor ``B`` of the weight block (p = last layer's inputs).
    in_eigvecs : (M, p, p)
        Eigenvectors (columns) of ``B``.
    bias_eigvals : (M, k)
        Eigenvalues of the bias block ``C``.
    bias_eigvecs : (M, k, k)
        Eigenvectors (columns) of ``C``.
    deltas : (M, 2)
        Additive terms stored with the Hessian (weight block, bias block); zero in C4's files.
    damping : (M,) bool
        The stored ``damping`` flags (recorded for provenance; without effect, see module docs).
    prior_precision : (M,) or None
        Fitted scalar prior precision ``τ`` per member, None until :func:`fit_prior_precision` ran.
    """

    out_eigvals: torch.Tensor
    out_eigvecs: torch.Tensor
    in_eigvals: torch.Tensor
    in_eigvecs: torch.Tensor
    bias_eigvals: torch.Tensor
    bias_eigvecs: torch.Tensor
    deltas: torch.Tensor
    damping: torch.Tensor
    prior_precision: torch.Tensor | None = None

    @property
    def n_members(self) -> int:
        return int(self.out_eigvals.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.out_eigvals.shape[1])

    @property
    def n_inputs(self) -> int:
        return int(self.in_eigvals.shape[1])

    #: names of the tensors, as stored in a bundle (prefix ``laplace.``)
    TENSOR_NAMES = (
        "out_eigvals",
        "out_eigvecs",
        "in_eigvals",
        "in_eigvecs",
        "bias_eigvals",
        "bias_eigvecs",
        "deltas",
        "damping",
        "prior_precision",
    )

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """The posterior as a flat ``{name: tensor}`` dict (contiguous, for safetensors)."""
        if self.prior_precision is None:
            raise ModelError("the prior precision has not been fitted; call fit_prior_precision first")
        return {name: getattr(self, name).contiguous() for name in self.TENSOR_NAMES}

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor]) -> KronPosterior:
        """Inverse of :meth:`to_tensors`; checks that every tensor is present and shapes agree."""
        missing = [n for n in cls.TENSOR_NAMES if n not in tensors]
        if missing:
            raise ModelError(
                f"Laplace posterior tensors {missing} are missing from the bundle; re-import the model."
            )
        post = cls(**{n: tensors[n] for n in cls.TENSOR_NAMES})
        post._check_shapes()
        return post

    def to(self, dtype: torch.dtype | None = None, device: str | torch.device | None = None) -> KronPosterior:
        """A copy in floating-point ``dtype`` and / or on ``device`` (``damping`` stays bool).

        Tensors already in that dtype and on that device are shared, not copied.
        """
        return KronPosterior(
            **{
                n: (
                    None
                    if getattr(self, n) is None
                    else getattr(self, n).to(device=device, dtype=None if n == "damping" else dtype)
                )
                for n in self.TENSOR_NAMES
            }
        )

    def subset(self, index: slice) -> KronPosterior:
        """The posteriors of members ``index`` (views, no copy)."""
        return KronPosterior(
            **{n: (None if getattr(self, n) is None else getattr(self, n)[index]) for n in self.TENSOR_NAMES}
        )

    def _check_shapes(self) -> None:
        m, k, p = self.n_members, self.n_classes, self.n_inputs
        want = {
            "out_eigvals": (m, k),
            "out_eigvecs": (m, k, k),
            "in_eigvals": (m, p),
            "in_eigvecs": (m, p, p),
            "bias_eigvals": (m, k),
            "bias_eigvecs": (m, k, k),
            "deltas": (m, 2),
            "damping": (m,),
        }
        if self.prior_precision is not None:
            want["prior_precision"] = (m,)
        bad = [
            f"{n}: expected {s}, got {tuple(getattr(self, n).shape)}"
            for n, s in want.items()
            if tuple(getattr(self, n).shape) != s
        ]
        if bad:
            raise ModelMismatchError("inconsistent Laplace posterior shapes: " + "; ".join(bad))


def _as_tensor(x, what: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ModelError(f"{what} must be a tensor, got {type(x).__name__}")
    return x.detach().to(torch.float32)


def posterior_from_hessians(hessians: Sequence[Mapping], *, n_classes: int, n_inputs: int) -> KronPosterior:
    """Stack C4's per-member Kronecker Hessians (the entries of its ``hessians.pt``).

    Parameters
    ----------
    hessians : sequence of dict
        One dict per member with keys ``eigenvalues`` ([[λ_A (k,), λ_B (p,)], [λ_C (k,)]]),
        ``eigenvectors`` (same nesting, (k, k), (p, p), (k, k)), ``deltas`` ((2,) tensor) and
        ``damping`` (bool), as written by npyx's ``get_kronecker_hessian_attributes``.
    n_classes, n_inputs : int
        k and p of the members' last layer, to check the factors against.

    Returns
    -------
    KronPosterior
        Without a prior precision (fit it with :func:`fit_prior_precision`).

    Raises
    ------
    ModelMismatchError
        A member's structure or shapes are not those of a last-layer Kronecker posterior of a
        Linear(p, k) layer with bias.
    """
    if isinstance(hessians, torch.Tensor):
        raise ModelMismatchError(
            "hessians.pt holds a single tensor (a diagonal or full Hessian); C4 models use Kronecker-"
            "factored Hessians (a list of dicts with eigenvalues/eigenvectors/deltas/damping)."
        )
    fields: dict[str, list[torch.Tensor]] = {
        n: []
        for n in ("out_eigvals", "out_eigvecs", "in_eigvals", "in_eigvecs", "bias_eigvals", "bias_eigvecs")
    }
    deltas, damping = [], []
    for i, h in enumerate(hessians):
        where = f"hessians[{i}]"
        if not isinstance(h, Mapping) or not {"eigenvalues", "eigenvectors"} <= set(h):
            raise ModelMismatchError(
                f"{where} is not a Kronecker Hessian dict with 'eigenvalues' and 'eigenvectors' "
                f"(got {type(h).__name__} with keys {sorted(h) if isinstance(h, Mapping) else '-'})."
            )
        ev, evec = h["eigenvalues"], h["eigenvectors"]
        ok = (
            isinstance(ev, Sequence)
            and isinstance(evec, Sequence)
            and len(ev) == 2
            and len(evec) == 2
            and len(ev[0]) == 2
            and len(evec[0]) == 2
            and len(ev[1]) == 1
            and len(evec[1]) == 1
        )
        if not ok:
            raise ModelMismatchError(
                f"{where}: expected two parameter groups (weight: two Kronecker factors, bias: one "
                "block) as laplace-torch stores for a Linear last layer with bias; got another nesting."
            )
        t = {
            "out_eigvals": _as_tensor(ev[0][0], f"{where} eigenvalues"),
            "in_eigvals": _as_tensor(ev[0][1], f"{where} eigenvalues"),
            "bias_eigvals": _as_tensor(ev[1][0], f"{where} eigenvalues"),
            "out_eigvecs": _as_tensor(evec[0][0], f"{where} eigenvectors"),
            "in_eigvecs": _as_tensor(evec[0][1], f"{where} eigenvectors"),
            "bias_eigvecs": _as_tensor(evec[1][0], f"{where} eigenvectors"),
        }
        want = {
            "out_eigvals": (n_classes,),
            "in_eigvals": (n_inputs,),
            "bias_eigvals": (n_classes,),
            "out_eigvecs": (n_classes, n_classes),
            "in_eigvecs": (n_inputs, n_inputs),
            "bias_eigvecs": (n_classes, n_classes),
        }
        bad = [f"{n} {tuple(t[n].shape)} != {s}" for n, s in want.items() if tuple(t[n].shape) != s]
        if bad:
            raise ModelMismatchError(
                f"{where} does not match a last layer Linear({n_inputs}, {n_classes}): " + "; ".join(bad)
            )
        for n, v in t.items():
            fields[n].append(v)
        d = h.get("deltas")
        d = torch.zeros(2) if d is None else _as_tensor(d, f"{where} deltas").reshape(-1)
        if d.numel() == 1:
            d = d.expand(2)
        if d.numel() != 2:
            raise ModelMismatchError(f"{where} deltas must have 1 or 2 entries, got {d.numel()}")
        deltas.append(d)
        damping.append(bool(h.get("damping", False)))
    if not deltas:
        raise ModelMismatchError("hessians.pt holds no member Hessians")
    post = KronPosterior(
        **{n: torch.stack(v) for n, v in fields.items()},
        deltas=torch.stack(deltas),
        damping=torch.tensor(damping, dtype=torch.bool),
    )
    post._check_shapes()
    return post


def log_marginal_likelihood(
    post: KronPosterior, prior_precision: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """Laplace log marginal likelihood per member (without a data term, as in C4's reloaded posteriors).

    Parameters
    ----------
    post : KronPosterior
    prior_precision : (M,) float32
        Scalar prior precision per member.
    weight : (M, k, p) float32
        MAP weights of the last layer.
    bias : (M, k) float32
        MAP biases of the last layer.

    Returns
    -------
    (M,) float32
        ``-½ (log det P - n_params log τ + τ ‖θ‖²)``.
    """
    m = post.n_members
    tau = prior_precision.reshape(m)
    d = post.deltas + tau[:, None]  # laplace-torch: H.deltas + prior_precision
    outer = post.out_eigvals[:, :, None] * post.in_eigvals[:, None, :]
    logdet_post = torch.log(outer + d[:, 0, None, None]).sum(dim=(1, 2)) + torch.log(
        post.bias_eigvals + d[:, 1, None]
    ).sum(dim=1)
    theta = torch.cat((weight.reshape(m, -1), bias.reshape(m, -1)), dim=1)
    # scalar prior: log det P0 = n_params log τ and scatter = τ ‖θ‖² (laplace-torch sums a diagonal)
    logdet_prior = theta.shape[1] * torch.log(tau)
    scatter = tau * theta.square().sum(dim=1)
    return -0.5 * (logdet_post - logdet_prior + scatter)


def fit_prior_precision(
    post: KronPosterior,
    weight: torch.Tensor,
    bias: torch.Tensor,
    *,
    n_steps: int = MARGLIK_STEPS,
    lr: float = MARGLIK_LR,
    init: float = MARGLIK_INIT_PRIOR_PRECISION,
) -> torch.Tensor:
    """Fit each member's scalar prior precision by maximising the marginal likelihood (C4 at load time).

    Parameters
    ----------
    post : KronPosterior
        Its ``prior_precision`` is set to the result.
    weight : (M, k, p) float32
    bias : (M, k) float32
    n_steps, lr, init
        Adam steps, learning rate and initial prior precision (laplace-torch 0.1a2 defaults).

    Returns
    -------
    (M,) float32
        Fitted prior precision ``τ`` per member.
    """
    weight = weight.detach().to(torch.float32)
    bias = bias.detach().to(torch.float32)
    if weight.shape != (post.n_members, post.n_classes, post.n_inputs):
        raise ModelMismatchError(
            f"last-layer weights {tuple(weight.shape)} do not match the Hessians "
            f"({post.n_members} members, {post.n_classes} classes, {post.n_inputs} inputs)."
        )
    # Adam written out (torch.optim.Adam's single-tensor update, default betas/eps): identical
    # arithmetic, without the optimizer machinery's multi-second first import.
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    log_tau = torch.full((post.n_members,), float(init)).log()
    exp_avg = torch.zeros_like(log_tau)
    exp_avg_sq = torch.zeros_like(log_tau)
    for step in range(1, n_steps + 1):
        with torch.enable_grad():
            x = log_tau.clone().requires_grad_(True)
            neg = -log_marginal_likelihood(post, x.exp(), weight, bias)
            (grad,) = torch.autograd.grad(neg.sum(), x)
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step_size = lr / (1 - beta1**step)
        denom = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2**step)).add_(eps)
        log_tau.addcdiv_(exp_avg, denom, value=-step_size)
    tau = log_tau.detach().exp()
    if not torch.isfinite(tau).all():
        bad = torch.nonzero(~torch.isfinite(tau)).flatten().tolist()[:10]
        raise ModelError(
            f"prior precision fit diverged for members {bad}: their Hessian factors are not positive "
            "semi-definite or the weights are not finite; check the hessians.pt file."
        )
    post.prior_precision = tau
    return tau


def predictive_variance(post: KronPosterior, features: torch.Tensor) -> torch.Tensor:
    """Diagonal of the GLM predictive covariance of the logits, ``diag(J P⁻¹ Jᵀ)``.

    Parameters
    ----------
    post : KronPosterior
        With a fitted prior precision.
    features : (M, n, p) float32 or float64
        Input of each member's last layer for n units; the posterior is used in this dtype
        (converted if it is stored in another, see :meth:`KronPosterior.to`).

    Returns
    -------
    (M, n, k), dtype of ``features``
        Variance of each logit.
    """
    if post.prior_precision is None:
        raise ModelError("the prior precision has not been fitted; call fit_prior_precision first")
    if features.shape[0] != post.n_members or features.shape[2] != post.n_inputs:
        raise ModelMismatchError(
            f"last-layer features {tuple(features.shape)} do not match the posterior "
            f"({post.n_members} members, {post.n_inputs} inputs)."
        )
    if post.out_eigvals.dtype != features.dtype:
        post = post.to(features.dtype)
    d = post.deltas + post.prior_precision[:, None]
    # weight block: (Q_A ⊗ Q_B) diag(1 / (λ_A λ_Bᵀ + δ)) (Q_A ⊗ Q_B)ᵀ with J_c = e_c ⊗ φ
    inv = 1.0 / (post.out_eigvals[:, :, None] * post.in_eigvals[:, None, :] + d[:, 0, None, None])
    psi2 = torch.bmm(features, post.in_eigvecs).square_()  # (M, n, p)
    s = torch.bmm(psi2, inv.transpose(1, 2))  # (M, n, k) indexed by eigen-direction of A
    var_w = torch.bmm(s, post.out_eigvecs.square().transpose(1, 2))  # (M, n, k) indexed by class
    var_b = torch.bmm(
        post.bias_eigvecs.square(), (1.0 / (post.bias_eigvals + d[:, 1, None])).unsqueeze(2)
    ).squeeze(2)  # (M, k)
    return var_w + var_b[:, None, :]


def probit_probabilities(logits: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """Probit-approximated predictive ``softmax(μ / sqrt(1 + π/8 σ²))``; shapes (..., k) in and out."""
    kappa = 1.0 / torch.sqrt(1.0 + math.pi / 8 * variance)
    return torch.softmax(kappa * logits, dim=-1)
