"""The C4 network (ACG + waveform VAE encoders, classifier head); its batched ensemble is in
:mod:`.ensemble_cnn` (re-exported here).

Design notes
------------
* :class:`CNNCerebellum` reproduces the architecture of npyx 4.3.1's ``CNNCerebellum`` (base variant:
  322,177 parameters) with the *same* module names, so a state dict of a published C4 ensemble member
  loads into it unchanged; :func:`convert_npyx_state_dict` checks names and shapes and returns a plain
  ``{name: tensor}`` dict (the mapping is the identity; the function exists to validate and to give one
  place to change should names ever differ).
* Input layout (as in C4): the log-lag 3D ACG (n, 10, 101) is reshaped to (n, 1, 10, 101) for the conv
  encoder (rows = firing-rate bins, columns = lag 0 + 100 log lags); the waveform is (n, 90); the layer
  one-hot (n, 4) enters the batch norm *and* the last linear layer (C4's ``use_layer`` variants).
* ACG encoder: Conv2d(1, 8, (1, 10)) -> pool 2x2 -> ReLU -> BatchNorm2d -> Conv2d(8, 16, (5, 1))
  -> pool (1, 2) -> ReLU -> BatchNorm2d -> flatten 368 -> Linear 200 + ReLU (dropout 0.2) -> Linear 20.
  The published C4 models use average pooling (``pool="avg"``); pooling has no parameters.
  Waveform encoder: Linear 90-600 -> GELU -> dropout 0.1 -> 600-300 -> GELU -> dropout 0.1 -> 20.
  Both encoders output 2 x 10 numbers: the latent mean (first 10) and the log scale (last 10); the
  classifier uses the means only.
* :class:`EnsembleCNN` (:mod:`.ensemble_cnn`) runs M members as one batched computation.
* Decoders (:class:`ACGDecoder`, :class:`WaveformDecoder`) exist for VAE pre-training only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError, ModelMismatchError

#: Shapes the network is built for (C4 settings).
ACG_SHAPE: tuple[int, int] = (10, 101)
WAVEFORM_SAMPLES: int = 90
LAYER_DIM: int = 4
LATENT_DIM: int = 10
HIDDEN_DIM: int = 100
BN_EPS: float = 1e-5

__all__ = [
    "ACGDecoder",
    "ACGEncoder",
    "CNNCerebellum",
    "WaveformDecoder",
    "WaveformEncoder",
    "build_network",
    "convert_npyx_state_dict",
    "count_parameters",
    "expected_state_shapes",
]


class ACGEncoder(nn.Module):
    """Convolutional VAE encoder of the (1, 10, 101) log-lag 3D ACG (C4's ``ConvolutionalEncoder``).

    ``forward`` takes (n, 1, 10, 101) float32 and returns (mu, log_scale), each (n, 10).
    """

    def __init__(self, d_latent: int = LATENT_DIM, pool: str = "avg") -> None:
        super().__init__()
        if pool not in ("avg", "max"):
            raise ModelError(f"pool must be 'avg' or 'max', got {pool!r}")
        pool_cls = nn.AvgPool2d if pool == "avg" else nn.MaxPool2d
        self.pool = pool
        self.d_latent = d_latent
        self.conv1 = nn.Conv2d(1, 8, kernel_size=(1, 10))
        self.maxpool1 = pool_cls(kernel_size=(2, 2))  # name kept from C4 even when averaging
        self.batchnorm1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, kernel_size=(5, 1))
        self.maxpool2 = pool_cls(kernel_size=(1, 2))
        self.batchnorm2 = nn.BatchNorm2d(16)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(16 * 1 * 23, 200)
        self.fc2 = nn.Linear(200, 2 * d_latent)
        self.dropout = nn.Dropout(0.2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.batchnorm1(F.relu(self.maxpool1(self.conv1(x))))
        x = self.batchnorm2(F.relu(self.maxpool2(self.conv2(x))))
        h = self.fc2(self.dropout(F.relu(self.fc1(self.flatten(x)))))
        return h[:, : self.d_latent], h[:, self.d_latent :]


class WaveformEncoder(nn.Module):
    """MLP VAE encoder of the 90-sample waveform (C4's ``Encoder`` around a ``Sequential``).

    ``forward`` takes (n, 90) float32 and returns (mu, log_scale), each (n, 10).
    """

    def __init__(
        self,
        d_latent: int = LATENT_DIM,
        in_features: int = WAVEFORM_SAMPLES,
        hidden: Sequence[int] = (600, 300),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.d_latent = d_latent
        layers: list[nn.Module] = []
        n_in = in_features
        for n_out in hidden:
            layers += [nn.Linear(n_in, n_out), nn.GELU(), nn.Dropout(dropout)]
            n_in = n_out
        layers.append(nn.Linear(n_in, 2 * d_latent))
        # Attribute name ``encoder`` and Sequential indices (0, 3, 6) match C4's state dicts.
        self.encoder = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x.reshape(x.shape[0], -1))
        return h[:, : self.d_latent], h[:, self.d_latent :]


class ACGDecoder(nn.Module):
    """Decoder of the ACG VAE (pre-training only): latent (n, 10) -> (n, 1, 10, 101)."""

    def __init__(self, d_latent: int = LATENT_DIM, hidden: Sequence[int] = (250, 500)) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_latent, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.fc3 = nn.Linear(hidden[1], ACG_SHAPE[0] * ACG_SHAPE[1])
        self.dropout1 = nn.Dropout(0.2)
        self.dropout2 = nn.Dropout(0.2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.dropout1(F.relu(self.fc1(z)))
        h = self.dropout2(F.relu(self.fc2(h)))
        return self.fc3(h).reshape(-1, 1, *ACG_SHAPE)


class WaveformDecoder(nn.Module):
    """Decoder of the waveform VAE (pre-training only): latent (n, 10) -> (n, 90)."""

    def __init__(
        self,
        d_latent: int = LATENT_DIM,
        out_features: int = WAVEFORM_SAMPLES,
        hidden: Sequence[int] = (300, 600),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        n_in = d_latent
        for n_out in hidden:
            layers += [nn.Linear(n_in, n_out), nn.GELU(), nn.Dropout(dropout)]
            n_in = n_out
        layers.append(nn.Linear(n_in, out_features))
        self.decoder = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


class CNNCerebellum(nn.Module):
    """One C4 classifier: both encoders, batch norm on the latent means (+ layer), two linear layers.

    Parameters
    ----------
    n_classes : int
        Number of output classes (5 for C4's base variant).
    use_layer : bool
        Whether the 4-d layer one-hot enters the batch norm and the last linear layer.
    pool : {"avg", "max"}
        Pooling of the ACG encoder (C4's published models: "avg").
    """

    def __init__(self, n_classes: int = 5, use_layer: bool = False, pool: str = "avg") -> None:
        super().__init__()
        if n_classes < 2:
            raise ModelError(f"a classifier needs at least 2 classes, got n_classes={n_classes}")
        self.n_classes = n_classes
        self.use_layer = use_layer
        self.acg_head = ACGEncoder(pool=pool)
        self.wvf_head = WaveformEncoder()
        extra = LAYER_DIM if use_layer else 0
        self.batch_norm = nn.BatchNorm1d(2 * LATENT_DIM + extra)
        self.fc1 = nn.Linear(2 * LATENT_DIM + extra, HIDDEN_DIM)
        self.fc2 = nn.Linear(HIDDEN_DIM + extra, n_classes)

    def latent(self, acg: torch.Tensor, waveform: torch.Tensor) -> torch.Tensor:
        """Concatenated latent means (n, 20) of ACG (n, 10, 101) and waveform (n, 90)."""
        mu_acg, _ = self.acg_head(acg.reshape(-1, 1, *ACG_SHAPE))
        mu_wvf, _ = self.wvf_head(waveform)
        return torch.cat((mu_acg, mu_wvf), dim=1)

    def features(
        self, acg: torch.Tensor, waveform: torch.Tensor, layer: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Input of the last linear layer ``fc2``: (n, 100), or (n, 104) with layer information."""
        z = self.latent(acg, waveform)
        if self.use_layer:
            if layer is None:
                raise ModelMismatchError(
                    "this network uses layer information but no layer one-hot was given; pass "
                    "layer (n, 4) in vocabulary.LAYERS order (all 'unknown' = [1, 0, 0, 0])."
                )
            z = torch.cat((z, layer), dim=1)
        h = F.relu(self.fc1(self.batch_norm(z)))
        return torch.cat((h, layer), dim=1) if self.use_layer else h

    def forward(
        self, acg: torch.Tensor, waveform: torch.Tensor, layer: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits (n, n_classes) from ACG (n, 10, 101), waveform (n, 90) and optional layer (n, 4)."""
        return self.fc2(self.features(acg, waveform, layer))


def build_network(n_classes: int = 5, use_layer: bool = False, pool: str = "avg") -> CNNCerebellum:
    """A freshly initialised :class:`CNNCerebellum` (torch's default initialisation)."""
    return CNNCerebellum(n_classes=n_classes, use_layer=use_layer, pool=pool)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable + frozen parameters (buffers excluded)."""
    return sum(p.numel() for p in module.parameters())


def expected_state_shapes(n_classes: int = 5, use_layer: bool = False) -> dict[str, tuple[int, ...]]:
    """Names and shapes of every entry of a member's state dict (C4 naming)."""
    net = CNNCerebellum(n_classes=n_classes, use_layer=use_layer)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def convert_npyx_state_dict(
    state: Mapping[str, torch.Tensor], *, n_classes: int | None = None, use_layer: bool | None = None
) -> dict[str, torch.Tensor]:
    """Map a state dict of npyx's ``CNNCerebellum`` onto ours (names are identical) and validate it.

    Parameters
    ----------
    state : mapping of str -> tensor
        As stored in C4's ``models/model_{i}.pt`` (optionally with a ``module.`` prefix).
    n_classes, use_layer : optional
        Expected variant; inferred from ``fc2.weight`` / ``batch_norm.weight`` when omitted.

    Returns
    -------
    dict of str -> tensor
        Keys exactly those of :func:`expected_state_shapes` for the variant.

    Raises
    ------
    ModelMismatchError
        Missing / unexpected keys or wrong shapes, each named.
    """
    sd = {k.removeprefix("module."): v for k, v in state.items()}
    if "fc2.weight" not in sd or "batch_norm.weight" not in sd:
        raise ModelMismatchError(
            "state dict is not a C4 CNNCerebellum: it lacks 'fc2.weight' / 'batch_norm.weight' "
            f"(got {len(sd)} keys, e.g. {sorted(sd)[:5]}); pass a models/model_<i>.pt state dict."
        )
    if n_classes is None:
        n_classes = int(sd["fc2.weight"].shape[0])
    if use_layer is None:
        use_layer = int(sd["batch_norm.weight"].shape[0]) == 2 * LATENT_DIM + LAYER_DIM
    expected = expected_state_shapes(n_classes, use_layer)
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if missing or unexpected:
        raise ModelMismatchError(
            f"state dict does not match C4 CNNCerebellum(n_classes={n_classes}, use_layer={use_layer}): "
            f"missing keys {missing}, unexpected keys {unexpected}."
        )
    bad = [
        f"{k}: expected {expected[k]}, got {tuple(sd[k].shape)}"
        for k in expected
        if tuple(sd[k].shape) != expected[k]
    ]
    if bad:
        raise ModelMismatchError("state dict shapes do not match C4 CNNCerebellum: " + "; ".join(bad))
    return {k: sd[k] for k in expected}


def __getattr__(name: str):
    # the batched ensemble has its own module (it builds on the names above); re-exported lazily
    if name == "EnsembleCNN":
        from .ensemble_cnn import EnsembleCNN

        return EnsembleCNN
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
