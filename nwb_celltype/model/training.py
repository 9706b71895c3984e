"""Training of the semi-supervised classifier: VAE pre-training on all units (labels unused), an
ensemble of classifier heads over repeated stratified cross-validation folds, and temperature
scaling fitted on the out-of-fold logits.

Design notes
------------
* Pre-training: one VAE for the ACG (:class:`~.network.ACGEncoder` + :class:`~.network.ACGDecoder`)
  and one for the waveform, loss = summed squared error + β_t · KL(q(z|x) ‖ N(0, I)), β_t annealed
  from 0 to β over the first half of the epochs (sigmoid ramp). Every usable unit takes part; labels
  are not looked at.
* Heads: C4's :class:`~.network.CNNCerebellum` initialised with the pre-trained encoders, trained with
  AdamW (lr 1e-3), cosine annealing with warm restarts (one cycle per run), batch 64, classes balanced
  by random oversampling. With ``finetune_encoders=False`` (default) the encoders are frozen and shared
  by all members, so the ensemble evaluates them once (fast inference, ~1% of the compute per member);
  ``True`` fine-tunes every member's whole network, as C4 does.
* Ensemble: ``repeats`` x ``folds`` stratified splits; every fold model is a member (C4 keeps them
  all). Each labelled unit is held out once per repeat; those out-of-fold logits fit a single
  temperature T (minimum NLL, LBFGS on log T) and give the cross-validated metrics of the model card.
* Determinism: a seed fixes splits, oversampling, initialisation and dropout; torch runs with
  deterministic algorithms and a fixed number of threads during training.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LibraryError, ModelError
from ..features.config import FeatureSet
from .network import ACG_SHAPE, ACGDecoder, ACGEncoder, CNNCerebellum, WaveformDecoder, WaveformEncoder
from .training_inputs import (  # also importable from here, their former home
    TrainingSetLike,
    check_feature_shapes,
    labelled_rows,
    tensors_from_features,
    usable_rows,
)

logger = logging.getLogger(__name__)

__all__ = ["TrainConfig", "TrainingSetLike", "train_model", "usable_rows"]


@dataclass(frozen=True)
class TrainConfig:
    """Every training setting; stored in the model card.

    Attributes
    ----------
    vae_epochs : int
        Pre-training epochs of each VAE.
    vae_batch_size, vae_lr : int, float
        Adam settings of pre-training.
    beta_acg, beta_waveform : float
        Final weight of the KL term (per unit) of each VAE.
    head_epochs : int
        Epochs per ensemble member (C4: 20).
    batch_size, lr, weight_decay : int, float, float
        AdamW settings of the classifier (C4: 64, 1e-3, 1e-2).
    min_batches_per_epoch : int
        Small libraries: an epoch repeats the oversampled training set until it fills this many batches.
    folds, repeats : int
        Stratified folds per repeat and number of repeats; members = folds x repeats.
    finetune_encoders : bool
        Fine-tune the encoders of every member (C4) instead of sharing frozen pre-trained ones.
    use_layer : {"auto", True, False}
        Layer one-hot as input; "auto" uses it iff some labelled unit has a known layer.
    pool : {"avg", "max"}
        ACG encoder pooling (C4: "avg").
    calibration : {"temperature", "none"}
    n_threads : int
        torch threads during training.
    """

    vae_epochs: int = 30
    vae_batch_size: int = 128
    vae_lr: float = 1e-3
    beta_acg: float = 0.05
    beta_waveform: float = 0.05
    head_epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-2
    min_batches_per_epoch: int = 5
    folds: int = 5
    repeats: int = 4
    finetune_encoders: bool = False
    use_layer: Any = "auto"
    pool: str = "avg"
    calibration: str = "temperature"
    n_threads: int = 1

    def __post_init__(self) -> None:
        checks = [
            (self.vae_epochs >= 0, "vae_epochs must be >= 0"),
            (self.head_epochs >= 1, "head_epochs must be >= 1"),
            (self.folds >= 2, "folds must be >= 2"),
            (self.repeats >= 1, "repeats must be >= 1"),
            (self.batch_size >= 2, "batch_size must be >= 2 (batch norm)"),
            (self.use_layer in ("auto", True, False), "use_layer must be 'auto', True or False"),
            (self.pool in ("avg", "max"), "pool must be 'avg' or 'max'"),
            (self.calibration in ("temperature", "none"), "calibration must be 'temperature' or 'none'"),
            (self.n_threads >= 1, "n_threads must be >= 1"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ModelError(f"invalid TrainConfig: {msg}; got {self}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    """What training produces, before it is wrapped into a bundle."""

    states: list[dict[str, torch.Tensor]]
    classes: tuple[str, ...]
    use_layer: bool
    temperature: float
    oof_logits: np.ndarray  # (repeats, n_labelled, k) out-of-fold logits (T = 1)
    labelled_index: np.ndarray  # rows of the training set that were labelled and usable
    y: np.ndarray  # (n_labelled,) class index
    history: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def _torch_settings(seed: int, n_threads: int):
    """Deterministic, thread-limited torch for the duration of training; restores the caller's state."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    rng_state = torch.get_rng_state()
    torch.set_num_threads(n_threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)
        torch.set_rng_state(rng_state)


def _kl_normal(mu: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    # KL(N(mu, s^2) || N(0, 1)) summed over latent dimensions; s = exp(log_scale) as in C4
    log_scale = log_scale.clamp(-10, 10)
    return (0.5 * (torch.exp(2 * log_scale) + mu.square() - 1) - log_scale).sum(1)


def _beta_schedule(epoch: int, epochs: int, beta: float) -> float:
    # sigmoid ramp from ~0 to beta over the first half of training (KL annealing)
    half = max(epochs / 2, 1)
    return beta / (1 + math.exp(-10 * (epoch / half - 0.5))) if epoch < half else beta


def _pretrain_vae(
    encoder: nn.Module,
    decoder: nn.Module,
    x: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    beta: float,
    rng: np.random.Generator,
    progress: bool,
    desc: str,
) -> list[float]:
    params = list(encoder.parameters()) + list(decoder.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    losses: list[float] = []
    n = x.shape[0]
    encoder.train()
    decoder.train()
    for epoch in _progress(range(epochs), progress, desc):
        b = _beta_schedule(epoch, epochs, beta)
        perm = torch.from_numpy(rng.permutation(n))
        total = 0.0
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            if len(idx) < 2:
                continue
            xb = x[idx]
            mu, log_scale = encoder(xb)
            z = mu + torch.exp(log_scale.clamp(-10, 10)) * torch.randn_like(mu)
            rec = decoder(z).reshape(xb.shape)
            loss = (
                F.mse_loss(rec, xb, reduction="none").reshape(len(idx), -1).sum(1)
                + b * _kl_normal(mu, log_scale)
            ).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / n)
    encoder.eval()
    decoder.eval()
    return losses


def _progress(it, progress: bool, desc: str):
    if not progress:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, leave=False)


def pretrain_encoders(
    features: FeatureSet,
    rows: np.ndarray,
    config: TrainConfig,
    *,
    seed: int = 0,
    progress: bool = False,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, list[float]]]:
    """Pre-train both VAEs on ``rows`` (labels unused).

    Returns
    -------
    acg_state, wvf_state : dict
        State dicts of :class:`ACGEncoder` and :class:`WaveformEncoder`.
    history : dict
        Loss per epoch of each VAE.
    """
    acg, wvf, _ = tensors_from_features(features, rows)
    rng = np.random.default_rng(seed)
    with _torch_settings(seed, config.n_threads):
        acg_enc, acg_dec = ACGEncoder(pool=config.pool), ACGDecoder()
        wvf_enc, wvf_dec = WaveformEncoder(), WaveformDecoder()
        common = dict(
            epochs=config.vae_epochs,
            batch_size=config.vae_batch_size,
            lr=config.vae_lr,
            rng=rng,
            progress=progress,
        )
        h_acg = _pretrain_vae(
            acg_enc, acg_dec, acg.reshape(-1, 1, *ACG_SHAPE), beta=config.beta_acg, desc="ACG VAE", **common
        )
        h_wvf = _pretrain_vae(wvf_enc, wvf_dec, wvf, beta=config.beta_waveform, desc="waveform VAE", **common)
    return (
        {k: v.detach().clone() for k, v in acg_enc.state_dict().items()},
        {k: v.detach().clone() for k, v in wvf_enc.state_dict().items()},
        {"acg_vae_loss": h_acg, "waveform_vae_loss": h_wvf},
    )


def stratified_folds(y: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold index (n,) for each unit, classes spread evenly over folds (shuffled within class)."""
    fold = np.empty(len(y), dtype=np.int64)
    offset = 0
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        fold[idx] = (np.arange(len(idx)) + offset) % folds
        offset += len(idx)  # rotate so that small classes do not all start in fold 0
    return fold


def _oversample(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices into y with every class drawn up to the size of the largest (random oversampling)."""
    classes, counts = np.unique(y, return_counts=True)
    top = counts.max()
    out = []
    for c, cnt in zip(classes, counts, strict=True):
        idx = np.flatnonzero(y == c)
        out.append(idx)
        if cnt < top:
            out.append(rng.choice(idx, size=top - cnt, replace=True))
    return rng.permutation(np.concatenate(out))


def _train_member(
    net: CNNCerebellum,
    inputs: tuple[torch.Tensor, ...],
    y: torch.Tensor,
    config: TrainConfig,
    rng: np.random.Generator,
) -> list[float]:
    """Train one member in place on ``inputs`` = (acg, wvf, layer) or (latent, layer) when frozen."""
    if config.finetune_encoders:
        params = list(net.parameters())
    else:
        params = [p for n, p in net.named_parameters() if not n.startswith(("acg_head.", "wvf_head."))]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=config.head_epochs, T_mult=1)
    y_np = y.numpy()
    losses = []
    for _ in range(config.head_epochs):
        net.train()
        if not config.finetune_encoders:
            net.acg_head.eval()
            net.wvf_head.eval()
        order = _oversample(y_np, rng)
        # small libraries: draw more balanced batches so that an epoch has enough optimiser steps
        while len(order) < config.min_batches_per_epoch * config.batch_size:
            order = np.concatenate([order, _oversample(y_np, rng)])
        # drop a trailing batch of one: batch norm cannot train on it
        if len(order) % config.batch_size == 1:
            order = order[:-1]
        total = 0.0
        for i in range(0, len(order), config.batch_size):
            idx = torch.from_numpy(order[i : i + config.batch_size])
            logits = _forward(net, inputs, idx, config.finetune_encoders)
            loss = F.cross_entropy(logits, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        sched.step()
        losses.append(total / len(order))
    net.eval()
    return losses


def _forward(net: CNNCerebellum, inputs, idx, finetune: bool) -> torch.Tensor:
    if finetune:
        acg, wvf, lay = inputs
        return net(acg[idx], wvf[idx], lay[idx] if net.use_layer else None)
    z, lay = inputs
    zb = z[idx]
    if net.use_layer:
        zb = torch.cat((zb, lay[idx]), dim=1)
    h = F.relu(net.fc1(net.batch_norm(zb)))
    if net.use_layer:
        h = torch.cat((h, lay[idx]), dim=1)
    return net.fc2(h)


def _fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature T > 0 minimising the NLL of softmax(logits / T); logits (n, k), y (n,)."""
    lg = torch.from_numpy(logits.astype(np.float64))
    yt = torch.from_numpy(y.astype(np.int64))
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(lg / torch.exp(log_t), yt)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(torch.exp(log_t.detach()).clamp(0.05, 20.0))
    return t if math.isfinite(t) else 1.0


def _resolve_use_layer(setting, features: FeatureSet, rows: np.ndarray) -> bool:
    if setting in (True, False):
        return bool(setting)
    lay = np.asarray(features.layer[rows])
    known = lay[:, 1:].sum(1) > 0  # any of GCL / PCL / ML
    return bool(known.any())


def train_ensemble(
    training_set: TrainingSetLike,
    config: TrainConfig = TrainConfig(),
    *,
    seed: int = 0,
    progress: bool = False,
    encoders: tuple[dict, dict] | None = None,
    classes: tuple[str, ...] | None = None,
) -> TrainResult:
    """Pre-train (unless ``encoders`` are given) and train the cross-validated ensemble.

    Parameters
    ----------
    training_set : TrainingSetLike
        Features of every unit + labels ("" = unlabelled).
    config : TrainConfig
    seed : int
    progress : bool
        Show tqdm progress bars.
    encoders : (acg_state, wvf_state), optional
        Pre-trained encoder state dicts to reuse (e.g. across outer evaluation folds).
    classes : tuple of str, optional
        Class order; default: C4 order of the classes present.
    """
    feats = training_set.features
    check_feature_shapes(feats)
    rows, y, classes = labelled_rows(training_set, classes)
    _check_class_counts(y, classes, config)
    t0 = time.perf_counter()
    history: dict[str, Any] = {}
    if encoders is None:
        encoders = _pretrain_on_all_units(feats, config, seed, progress, history)
    history["pretrain_seconds"] = time.perf_counter() - t0
    use_layer = _resolve_use_layer(config.use_layer, feats, rows)
    inputs = tensors_from_features(feats, rows)
    t1 = time.perf_counter()
    states, oof, member_losses = _train_members(
        inputs, y, len(classes), use_layer, encoders, config, seed=seed, progress=progress
    )
    history["head_seconds"] = time.perf_counter() - t1
    history["member_loss_final"] = [float(ls[-1]) for ls in member_losses]
    temperature = _calibrate(oof, y, config)
    logger.info(
        "trained %d members (%s encoders, layer=%s) in %.1f s; temperature %.3f",
        len(states),
        "fine-tuned" if config.finetune_encoders else "shared frozen",
        use_layer,
        time.perf_counter() - t0,
        temperature,
    )
    return TrainResult(
        states=states,
        classes=classes,
        use_layer=use_layer,
        temperature=temperature,
        oof_logits=oof,
        labelled_index=rows,
        y=y,
        history=history,
    )


def _check_class_counts(y: np.ndarray, classes: tuple[str, ...], config: TrainConfig) -> None:
    """Refuse fewer than 2 classes, or a class with fewer labelled units than folds."""
    counts = np.bincount(y, minlength=len(classes))
    if len(classes) < 2:
        raise LibraryError(
            f"training needs labelled units of at least 2 classes; got {dict(zip(classes, counts, strict=True))}. "
            "Label more units (nwb-celltype library label ...)."
        )
    if counts.min() < config.folds:
        raise LibraryError(
            f"class {classes[int(counts.argmin())]!r} has {int(counts.min())} usable labelled units, fewer "
            f"than folds={config.folds}; label more units or lower --folds. Counts: "
            f"{dict(zip(classes, counts.tolist(), strict=True))}"
        )


def _pretrain_on_all_units(
    features: FeatureSet, config: TrainConfig, seed: int, progress: bool, history: dict
):
    """Pre-train both encoders on every usable unit (labels unused); record the losses in ``history``."""
    all_rows = np.flatnonzero(usable_rows(features))
    acg_state, wvf_state, h = pretrain_encoders(features, all_rows, config, seed=seed, progress=progress)
    history.update(h)
    history["n_pretrain_units"] = len(all_rows)
    return acg_state, wvf_state


def _member_network(
    k: int, use_layer: bool, config: TrainConfig, encoders: tuple[dict, dict]
) -> CNNCerebellum:
    """A fresh classifier network with the pre-trained encoder weights loaded."""
    net = CNNCerebellum(n_classes=k, use_layer=use_layer, pool=config.pool)
    net.acg_head.load_state_dict(encoders[0])
    net.wvf_head.load_state_dict(encoders[1])
    return net


def _train_members(inputs, y, k, use_layer, encoders, config: TrainConfig, *, seed: int, progress: bool):
    """One member per (repeat, fold) of the stratified splits: their states, out-of-fold logits
    (repeats, n, k) and loss curves."""
    acg, wvf, lay = inputs
    yt = torch.from_numpy(y)
    rng = np.random.default_rng(seed + 1)
    oof = np.full((config.repeats, len(y), k), np.nan, dtype=np.float32)
    states: list[dict[str, torch.Tensor]] = []
    member_losses = []
    with _torch_settings(seed, config.n_threads):
        base = _member_network(k, use_layer, config, encoders).eval()
        if not config.finetune_encoders:
            with torch.no_grad():
                z_all = base.latent(acg, wvf)
        jobs = [(r, f) for r in range(config.repeats) for f in range(config.folds)]
        fold_of = [stratified_folds(y, config.folds, rng) for _ in range(config.repeats)]
        for j, (r, f) in enumerate(_progress(jobs, progress, "ensemble members")):
            torch.manual_seed(seed * 100_003 + j)
            train_idx = np.flatnonzero(fold_of[r] != f)
            test_idx = np.flatnonzero(fold_of[r] == f)
            net = _member_network(k, use_layer, config, encoders)
            tr = torch.from_numpy(train_idx)
            member_inputs = (acg[tr], wvf[tr], lay[tr]) if config.finetune_encoders else (z_all[tr], lay[tr])
            member_losses.append(_train_member(net, member_inputs, yt[tr], config, rng))
            with torch.no_grad():
                te = torch.from_numpy(test_idx)
                oof[r, test_idx] = net(acg[te], wvf[te], lay[te] if use_layer else None).numpy()
            states.append({kk: v.detach().clone() for kk, v in net.state_dict().items()})
    return states, oof, member_losses


def _calibrate(oof: np.ndarray, y: np.ndarray, config: TrainConfig) -> float:
    """The ensemble's temperature: fitted on the out-of-fold logits of every repeat, or 1."""
    if config.calibration == "temperature":
        return _fit_temperature(oof.reshape(-1, oof.shape[-1]), np.tile(y, config.repeats))
    return 1.0


def train_model(
    training_set: TrainingSetLike,
    *,
    config: TrainConfig | None = None,
    seed: int = 0,
    progress: bool = False,
    name: str = "nwb-celltype-model",
    version: str = "0.1.0",
    description: str = "",
    classes: tuple[str, ...] | None = None,
    threshold: float = 2.0,
    card_extra: dict | None = None,
):
    """Train a calibrated ensemble on a training set and wrap it into a :class:`~.bundle.ModelBundle`.

    Parameters
    ----------
    training_set : TrainingSetLike
        ``features`` (FeatureSet of all units), ``labels`` ((n,) object, "" = unlabelled) and
        optionally ``references`` (list of dicts: where each source came from, with content hashes).
    config : TrainConfig, optional
        Training settings (default: :class:`TrainConfig()`).
    seed : int
        Seed of everything random; equal seeds and data give identical bundles.
    progress : bool
        tqdm progress bars.
    name, version, description : str
        Stored in the model card.
    classes : tuple of str, optional
        Class order (default: C4 order of the classes present).
    threshold : float
        Confidence-ratio threshold used for the card's cross-validated metrics.
    card_extra : dict, optional
        More model-card fields (e.g. intended use), merged before the card is hashed.

    Returns
    -------
    ModelBundle
    """
    from .bundle import bundle_from_training
    from .metrics import classification_metrics

    config = config or TrainConfig()
    t0 = time.perf_counter()
    result = train_ensemble(training_set, config, seed=seed, progress=progress, classes=classes)
    # out-of-fold probabilities averaged over repeats: a cross-validated estimate of performance
    p = torch.softmax(torch.from_numpy(result.oof_logits) / result.temperature, dim=-1).mean(0).numpy()
    metrics = classification_metrics(result.y, p, result.classes, threshold=threshold)
    metrics["protocol"] = (
        f"{config.repeats} x {config.folds}-fold stratified CV out-of-fold predictions of the members "
        "(encoders pre-trained on all units, labels unused); temperature fitted on the same logits"
    )
    return bundle_from_training(
        result,
        training_set,
        config=config,
        seed=seed,
        name=name,
        version=version,
        description=description,
        metrics=metrics,
        train_seconds=time.perf_counter() - t0,
        card_extra=card_extra,
    )
