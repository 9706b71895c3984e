"""Networks of the real-trained model (torch): small MLP autoencoders for the discharge and the
waveform inputs, pre-trained on every real unit (labelled or not), and a *batched* stack of
ensemble members (encoders + classifier head), all members trained at once: their weights carry a
leading member axis and one ``einsum`` runs every member, so a 20-member ensemble trains in about
the time of one. Full-batch training: the real libraries hold hundreds to a few thousand units."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["Autoencoder", "MemberStack", "RealModelConfig", "pretrain_autoencoder", "train_members"]


@dataclass(frozen=True)
class RealModelConfig:
    """Hyper-parameters of the real-trained ensemble (defaults: the shipped model).

    Chosen by nested CV on the training labs (docs/validation.md); never on test folds.
    """

    hidden_discharge: int = 64
    hidden_waveform: int = 32
    latent_discharge: int = 12
    latent_waveform: int = 6
    head_hidden: int = 32
    dropout: float = 0.2
    input_noise: float = 0.1
    pretrain_epochs: int = 200
    pretrain_lr: float = 3e-3
    epochs: int = 150
    lr: float = 3e-3
    weight_decay: float = 1e-2
    folds: int = 5
    seeds: int = 2
    ood_quantile: float = 0.99
    seed: int = 0
    n_threads: int = 2

    def to_dict(self) -> dict:
        return asdict(self)


class Autoencoder(nn.Module):
    """MLP autoencoder ``n_in -> hidden -> latent -> hidden -> n_in`` with GELU."""

    def __init__(self, n_in: int, hidden: int, latent: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.enc1 = nn.Linear(n_in, hidden)
        self.enc2 = nn.Linear(hidden, latent)
        self.dec1 = nn.Linear(latent, hidden)
        self.dec2 = nn.Linear(hidden, n_in)
        self.drop = nn.Dropout(dropout)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.enc2(self.drop(F.gelu(self.enc1(x))))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec2(F.gelu(self.dec1(z)))


def pretrain_autoencoder(x: np.ndarray, hidden: int, latent: int, cfg: RealModelConfig, seed: int) -> Autoencoder:
    """Denoising autoencoder fitted to standardised inputs x (n, d); returns it in eval mode."""
    torch.manual_seed(seed)
    xt = torch.from_numpy(np.asarray(x, dtype=np.float32))
    ae = Autoencoder(xt.shape[1], hidden, latent, cfg.dropout)
    opt = torch.optim.AdamW(ae.parameters(), lr=cfg.pretrain_lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    ae.train()
    for _ in range(cfg.pretrain_epochs):
        noisy = xt + cfg.input_noise * torch.randn(xt.shape, generator=gen)
        loss = F.mse_loss(ae.decode(ae.encode(noisy)), xt)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return ae.eval()


def _stack(w: torch.Tensor, m: int) -> nn.Parameter:
    return nn.Parameter(w.detach().clone().unsqueeze(0).repeat(m, *([1] * w.dim())))


class MemberStack(nn.Module):
    """``m`` ensemble members of one kind with stacked weights (leading axis = member).

    Each member: discharge encoder (in -> hidden -> latent), optionally waveform encoder, then
    LayerNorm -> Linear(head_hidden) -> GELU -> Linear(n_classes). Weights are named
    ``<block>.weight`` with shape (m, in, out) so they store as plain tensors.
    """

    def __init__(
        self, cfg: RealModelConfig, m: int, n_discharge: int, n_waveform: int | None, n_classes: int
    ) -> None:
        super().__init__()
        self.m = m
        self.with_waveform = n_waveform is not None
        self.dropout = cfg.dropout
        dims = {"d1": (n_discharge, cfg.hidden_discharge), "d2": (cfg.hidden_discharge, cfg.latent_discharge)}
        n_lat = cfg.latent_discharge
        if self.with_waveform:
            dims["w1"] = (n_waveform, cfg.hidden_waveform)
            dims["w2"] = (cfg.hidden_waveform, cfg.latent_waveform)
            n_lat += cfg.latent_waveform
        dims["h1"] = (n_lat, cfg.head_hidden)
        dims["h2"] = (cfg.head_hidden, n_classes)
        self.names = tuple(dims)
        for name, (i, o) in dims.items():
            lin = nn.Linear(i, o)
            setattr(self, f"{name}_weight", _stack(lin.weight.T, m))
            setattr(self, f"{name}_bias", _stack(lin.bias, m))
        self.norm_weight = nn.Parameter(torch.ones(m, n_lat))
        self.norm_bias = nn.Parameter(torch.zeros(m, n_lat))

    def load_encoder(self, prefix: str, ae: Autoencoder) -> None:
        """Initialise every member's encoder ``prefix`` ("d" or "w") from a pre-trained autoencoder."""
        with torch.no_grad():
            for k, lin in (("1", ae.enc1), ("2", ae.enc2)):
                getattr(self, f"{prefix}{k}_weight").copy_(lin.weight.T.unsqueeze(0).expand(self.m, -1, -1))
                getattr(self, f"{prefix}{k}_bias").copy_(lin.bias.unsqueeze(0).expand(self.m, -1))

    def _lin(self, name: str, x: torch.Tensor) -> torch.Tensor:
        w, b = getattr(self, f"{name}_weight"), getattr(self, f"{name}_bias")
        if x.dim() == 2:
            return torch.einsum("ni,mio->mno", x, w) + b[:, None, :]
        return torch.einsum("mni,mio->mno", x, w) + b[:, None, :]

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.dropout, self.training)

    def forward(self, xd: torch.Tensor, xw: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (m, n, C) of inputs xd (n, d) or (m, n, d), xw likewise (full members only)."""
        z = self._lin("d2", self._drop(F.gelu(self._lin("d1", xd))))
        if self.with_waveform:
            zw = self._lin("w2", self._drop(F.gelu(self._lin("w1", xw))))
            z = torch.cat((z, zw), dim=-1)
        z = F.layer_norm(z, z.shape[-1:]) * self.norm_weight[:, None, :] + self.norm_bias[:, None, :]
        return self._lin("h2", self._drop(F.gelu(self._lin("h1", z))))


def train_members(
    stack: MemberStack,
    cfg: RealModelConfig,
    xd: np.ndarray,
    xw: np.ndarray | None,
    y: np.ndarray,
    weight: np.ndarray,
    seed: int,
) -> MemberStack:
    """Fine-tune every member of ``stack`` at once on the labelled rows.

    xd (n, d), xw (n, 76) standardised inputs (None for discharge-only members); y (n,) class
    index; weight (m, n) per-member, per-unit loss weight (0 where the unit is not in the member's
    training folds; otherwise balances classes and labs). Returns the stack in eval mode.
    """
    gen = torch.Generator().manual_seed(seed)
    td = torch.from_numpy(np.asarray(xd, dtype=np.float32))
    tw = None if xw is None else torch.from_numpy(np.asarray(xw, dtype=np.float32))
    ty = torch.from_numpy(np.asarray(y, dtype=np.int64))
    tw8 = torch.from_numpy(np.asarray(weight, dtype=np.float32))
    tw8 = tw8 / tw8.sum(1, keepdim=True)
    opt = torch.optim.AdamW(stack.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    m, n = tw8.shape
    stack.train()
    for _ in range(cfg.epochs):
        nd = td + cfg.input_noise * torch.randn((m, *td.shape), generator=gen)
        nw = None if tw is None else tw + cfg.input_noise * torch.randn((m, *tw.shape), generator=gen)
        logits = stack(nd, nw)
        ce = F.cross_entropy(logits.reshape(m * n, -1), ty.repeat(m), reduction="none").reshape(m, n)
        loss = (ce * tw8).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return stack.eval()
