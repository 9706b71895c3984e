"""The batched C4 ensemble: M :class:`~.network.CNNCerebellum` members evaluated as one computation.

:class:`EnsembleCNN` runs M members as one computation on stacked weights (eval mode only), with
activations laid out "features x units" per member: the first conv layer of a group of members
(pooling folded in, bias as a 12th tap) is one matmul on ACG patches built once per unit tile, the
second a batched matmul, every linear layer a batched matmul (see
:meth:`EnsembleCNN._folded_weights`). It returns logits (M, n, k) and the input of the last linear
layer (M, n, 100 [+4 with layer]) for a last-layer Laplace posterior. The encoders are cache-blocked
like a matmul: a loop over tiles of ``TILE_MEMBERS`` members x ``WORK_UNITS / TILE_MEMBERS`` units
(default 2 x 256; each tile one batched computation, its activations stay in cache, its weights are
reused by every unit tile), never one network call per member. Results do not depend on the tiling
beyond float32 rounding; in float64 (``ensemble.to(torch.float64)``) they equal the member-by-member
network to ~1e-13 relative (tests/test_c4_speed.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError, ModelMismatchError
from .network import ACG_SHAPE, BN_EPS, LATENT_DIM, LAYER_DIM, convert_npyx_state_dict, expected_state_shapes

__all__ = ["EnsembleCNN"]


class EnsembleCNN(nn.Module):
    """M :class:`CNNCerebellum` members evaluated as one batched computation (inference only).

    Parameters
    ----------
    states : sequence of state dicts
        One per member, C4 naming (see :func:`convert_npyx_state_dict`); all of one variant.
    pool : {"avg", "max"}
        Pooling of the ACG encoder.

    Notes
    -----
    Weights are stacked into float32 buffers ``<name>`` of shape (M, ...) with ``.`` replaced by
    ``__``. ``forward`` returns ``(logits, features)``: logits (M, n, k) and the input of ``fc2``
    (M, n, 100 or 104), as needed for a last-layer Laplace approximation, in the buffers' dtype
    (inputs are converted to it): ``ensemble.to(torch.float64)`` runs the same computation in double
    precision.
    """

    #: Members x units per tile of the encoder pass: keeps the conv activations (~7 KB per unit and
    #: member) in cache; the classifier head runs on the whole call at once.
    WORK_UNITS: int = 512
    #: Members per group of the encoder pass (their weights stay in cache while all units pass).
    TILE_MEMBERS: int = 2

    def __init__(self, states: Sequence[Mapping[str, torch.Tensor]], pool: str = "avg") -> None:
        super().__init__()
        if len(states) == 0:
            raise ModelError("an ensemble needs at least one member state dict, got none")
        if pool not in ("avg", "max"):
            raise ModelError(f"pool must be 'avg' or 'max', got {pool!r}")
        first = convert_npyx_state_dict(states[0])
        self.n_classes = int(first["fc2.weight"].shape[0])
        self.use_layer = int(first["batch_norm.weight"].shape[0]) == 2 * LATENT_DIM + LAYER_DIM
        self.pool = pool
        convs = [
            convert_npyx_state_dict(s, n_classes=self.n_classes, use_layer=self.use_layer) for s in states
        ]
        self.n_members = len(convs)
        enc_keys = [k for k in first if k.startswith(("acg_head.", "wvf_head."))]
        # Members that share their encoders (heads trained on frozen pre-trained VAEs) store and
        # run the encoders once: the head is ~1% of the compute.
        self.shared_encoders = all(torch.equal(c[k], first[k]) for c in convs[1:] for k in enc_keys)
        self.n_encoders = 1 if self.shared_encoders else self.n_members
        self._folded: tuple[tuple, dict[str, torch.Tensor]] | None = None
        for key in first:
            if key.endswith("num_batches_tracked"):
                continue
            src = convs[:1] if (self.shared_encoders and key in enc_keys) else convs
            stacked = torch.stack([c[key].detach().to(torch.float32) for c in src])
            self.register_buffer(key.replace(".", "__"), stacked)

    def stacked_tensors(self) -> dict[str, torch.Tensor]:
        """The stacked weights ``{C4 name: (M or 1, ...)}`` (encoders have leading size 1 when shared)."""
        return {k.replace("__", "."): v.contiguous() for k, v in self.named_buffers()}

    @classmethod
    def from_stacked(
        cls, tensors: Mapping[str, torch.Tensor], n_members: int, pool: str = "avg"
    ) -> EnsembleCNN:
        """Inverse of :meth:`stacked_tensors` (as stored in a bundle); checks every name and shape.

        The stacked tensors are validated once as a whole (names, per-member shapes, leading sizes
        M, or 1 for shared encoders), not member by member: loading is O(1) Python work per bundle.
        """
        if pool not in ("avg", "max"):
            raise ModelError(f"pool must be 'avg' or 'max', got {pool!r}")
        if n_members < 1:
            raise ModelMismatchError(f"an ensemble needs at least one member, the bundle says {n_members}")
        tensors = {
            k.removeprefix("module."): v for k, v in tensors.items() if not k.endswith("num_batches_tracked")
        }
        for key in ("fc2.weight", "batch_norm.weight"):
            if key not in tensors or tensors[key].dim() < 2:
                raise ModelMismatchError(
                    f"stacked ensemble tensors lack {key!r} of shape (M, ...) (got keys {sorted(tensors)[:5]}...); "
                    "the bundle is not a C4 CNNCerebellum ensemble: re-create it."
                )
        n_classes = int(tensors["fc2.weight"].shape[1])
        use_layer = int(tensors["batch_norm.weight"].shape[1]) == 2 * LATENT_DIM + LAYER_DIM
        expected = {
            k: v
            for k, v in expected_state_shapes(n_classes, use_layer).items()
            if not k.endswith("num_batches_tracked")
        }
        missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
        if missing or unexpected:
            raise ModelMismatchError(
                f"stacked ensemble tensors do not match CNNCerebellum(n_classes={n_classes}, use_layer={use_layer}): "
                f"missing {missing}, unexpected {unexpected}; the bundle is inconsistent: re-create it."
            )
        lead = {k: int(v.shape[0]) if v.dim() > 0 else -1 for k, v in tensors.items()}
        if not set(lead.values()) <= {1, n_members}:
            raise ModelMismatchError(
                f"stacked ensemble tensors have leading sizes {sorted(set(lead.values()))}, expected {n_members} "
                "(or 1 for shared encoders); the bundle is inconsistent: re-create it."
            )
        enc_keys = [k for k in expected if k.startswith(("acg_head.", "wvf_head."))]
        enc_lead = {lead[k] for k in enc_keys}
        head_lead = {lead[k] for k in expected if k not in enc_keys}
        bad = [
            f"{k}: expected (M, {', '.join(map(str, shape))}), got {tuple(tensors[k].shape)}"
            for k, shape in expected.items()
            if tuple(tensors[k].shape[1:]) != shape
        ]
        if bad or len(enc_lead) != 1 or head_lead != {n_members}:
            raise ModelMismatchError(
                "stacked ensemble tensors are inconsistent (encoders need one leading size, M or 1; "
                f"classifier layers M={n_members}): encoder leading sizes {sorted(enc_lead)}, "
                f"classifier {sorted(head_lead)}; " + "; ".join(bad) + " -- re-create the bundle."
            )
        ens = cls.__new__(cls)
        nn.Module.__init__(ens)
        ens.n_classes, ens.use_layer, ens.pool, ens.n_members = n_classes, use_layer, pool, n_members
        ens.n_encoders = enc_lead.pop()
        ens.shared_encoders = ens.n_encoders == 1
        ens._folded = None
        for key in expected:  # state-dict order, as EnsembleCNN(states) registers them
            ens.register_buffer(key.replace(".", "__"), tensors[key].detach().to(torch.float32))
        return ens

    def _w(self, key: str) -> torch.Tensor:
        return getattr(self, key.replace(".", "__"))

    def _bn_affine(self, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode batch norm as ``x * scale + shift``; each (M or 1, c)."""
        w, b = self._w(prefix + ".weight"), self._w(prefix + ".bias")
        rm, rv = self._w(prefix + ".running_mean"), self._w(prefix + ".running_var")
        scale = w / torch.sqrt(rv + BN_EPS)
        return scale, b - rm * scale

    def _bn(self, x: torch.Tensor, prefix: str) -> torch.Tensor:
        # eval-mode batch norm with member-specific statistics; x (M, n, c) or (n, M*c, h, w)
        scale, shift = self._bn_affine(prefix)
        if x.dim() == 3:
            return x * scale[:, None, :] + shift[:, None, :]
        return x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)

    def _pool(self, x: torch.Tensor, kernel: tuple[int, int]) -> torch.Tensor:
        return F.avg_pool2d(x, kernel) if self.pool == "avg" else F.max_pool2d(x, kernel)

    def _acg_convs(self, x: torch.Tensor) -> torch.Tensor:
        # reference path (max pooling): grouped convolutions, (n, M*16, 1, 23) after batchnorm2
        m = self.n_encoders
        b1 = self._w("acg_head.conv1.bias").reshape(-1)
        b2 = self._w("acg_head.conv2.bias").reshape(-1)
        w1 = self._w("acg_head.conv1.weight").reshape(m * 8, 1, 1, 10)
        w2 = self._w("acg_head.conv2.weight").reshape(m * 16, 8, 5, 1)
        x = self._bn(F.relu(self._pool(F.conv2d(x, w1, b1), (2, 2))), "acg_head.batchnorm1")
        x = F.relu(self._pool(F.conv2d(x, w2, b2, groups=m), (1, 2)))
        return self._bn(x, "acg_head.batchnorm2")

    def _folded_weights(self) -> dict[str, torch.Tensor]:
        """Inference weights derived once from the buffers (cached until a buffer changes).

        * avg pooling is linear and precedes the ReLU, so conv1 + pool (2, 2) is one 11-tap filter on
          the sums of row pairs with stride 2, and conv2 + pool (1, 2) one (5, 2) filter, stride 2;
        * each eval-mode batch norm follows a ReLU and precedes a linear map, so it is folded into
          that map where that keeps float32 results close to the unfolded network (batchnorm1 -> conv2;
          batchnorm2 and the head's batch norm are applied as one fused multiply-add each);
        * only the latent-mean rows (first 10) of the encoders' last layers are kept.

        Encoder weights are laid out "features x units" per member: every layer is one (batched)
        matmul with a contiguous right-hand side, so no activation is ever permuted; the head's are
        transposed ("units x features"), so that logits and features come out as (M, n, .).
        """
        key = tuple(
            (b.data_ptr(), 0 if b.is_inference() else b._version, b.shape, b.device, b.dtype)
            for b in self.buffers()
        )
        cached = getattr(self, "_folded", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        m = self.n_encoders
        w = self._w
        out: dict[str, torch.Tensor] = {}
        if self.pool == "avg":
            w1 = w("acg_head.conv1.weight").reshape(m, 8, 10)
            k1 = 0.25 * (F.pad(w1, (0, 1)) + F.pad(w1, (1, 0)))  # (m, 8, 11)
            # the bias is a 12th tap on a row of ones: one matmul, no separate pass over the output
            b1 = w("acg_head.conv1.bias").reshape(m, 8, 1)
            out["conv1.w"] = torch.cat((k1, b1), dim=2).reshape(m * 8, 12).contiguous()
            s1, t1 = self._bn_affine("acg_head.batchnorm1")  # (m, 8)
            w2 = w("acg_head.conv2.weight").reshape(m, 16, 8, 5)
            out["conv2.b"] = (w("acg_head.conv2.bias") + (w2.sum(3) * t1[:, None, :]).sum(2))[
                ..., None
            ].contiguous()
            k2 = (0.5 * w2 * s1[:, None, :, None]).unsqueeze(-1).expand(m, 16, 8, 5, 2)
            out["conv2.w"] = k2.reshape(m, 16, 80).contiguous()  # columns (channel, row, pooled pair)
            s2, t2 = self._bn_affine("acg_head.batchnorm2")  # (m, 16): applied as is (see forward)
            out["bn2.scale"] = s2[:, :, None].expand(m, 16, 23).reshape(m, 368, 1).contiguous()
            out["bn2.shift"] = t2[:, :, None].expand(m, 16, 23).reshape(m, 368, 1).contiguous()
            out["acg.fc1.w"] = w("acg_head.fc1.weight").contiguous()
            out["acg.fc1.b"] = w("acg_head.fc1.bias")[..., None].contiguous()
        else:
            out["acg.fc1.w"] = w("acg_head.fc1.weight").contiguous()
            out["acg.fc1.b"] = w("acg_head.fc1.bias")[..., None].contiguous()
        out["acg.fc2.w"] = w("acg_head.fc2.weight")[:, :LATENT_DIM].contiguous()
        out["acg.fc2.b"] = w("acg_head.fc2.bias")[:, :LATENT_DIM, None].contiguous()
        out["wvf.0.w"] = w("wvf_head.encoder.0.weight").reshape(m * 600, -1).contiguous()
        out["wvf.0.b"] = w("wvf_head.encoder.0.bias").reshape(m * 600, 1).contiguous()
        out["wvf.3.w"] = w("wvf_head.encoder.3.weight").contiguous()
        out["wvf.3.b"] = w("wvf_head.encoder.3.bias")[..., None].contiguous()
        out["wvf.6.w"] = w("wvf_head.encoder.6.weight")[:, :LATENT_DIM].contiguous()
        out["wvf.6.b"] = w("wvf_head.encoder.6.bias")[:, :LATENT_DIM, None].contiguous()
        # the head's batch norm stays a separate (cheap) step: folding it into fc1 would sum larger,
        # cancelling terms (its running variances can be small) and lose float32 digits
        # the head runs "units x features" (a few % of the work): its outputs, the logits and the
        # last layer's input, come out in the (M, n, .) layout the callers need, without copies
        s, t = self._bn_affine("batch_norm")  # (M, 20 [+4])
        out["bn.scale"], out["bn.shift"] = s[:, None, :].contiguous(), t[:, None, :].contiguous()
        out["fc1.wt"] = w("fc1.weight").transpose(1, 2).contiguous()
        out["fc1.b"] = w("fc1.bias")[:, None, :].contiguous()
        out["fc2.wt"] = w("fc2.weight").transpose(1, 2).contiguous()
        out["fc2.b"] = w("fc2.bias")[:, None, :].contiguous()
        self._folded = (key, out)
        return out

    def _latent_t(self, acg: torch.Tensor, waveform: torch.Tensor) -> torch.Tensor:
        """Latent means "features x units": (M or 1, 20, n).

        Members in groups of :attr:`TILE_MEMBERS` (their weights, ~1.3 MB per member, stay in cache
        while every unit passes through them), units in tiles of :attr:`WORK_UNITS` unit-members per
        group, so that the largest activations (conv1: 1,840 numbers per unit and member) stay in
        cache between layers. Every layer writes into a workspace allocated once per call.
        """
        fw = self._folded_weights()
        m, n = self.n_encoders, int(acg.shape[0])
        dtype, dev = fw["acg.fc2.w"].dtype, fw["acg.fc2.w"].device
        acg = acg.reshape(n, *ACG_SHAPE).to(dtype)
        waveform = waveform.reshape(n, -1).to(dtype)
        out = torch.empty((m, 2 * LATENT_DIM, n), dtype=dtype, device=dev)
        if self.pool == "max":
            convs = self._acg_convs(acg.reshape(n, 1, *ACG_SHAPE))  # (n, m*16, 1, 23)
            flat = convs.reshape(n, m, 368).permute(1, 2, 0)  # (m, 368, n), flatten order (c, h, w)
        bm = max(1, min(m, self.TILE_MEMBERS))
        uc = max(1, min(n, self.WORK_UNITS // bm))
        tiles = []  # per unit tile, shared by all members: waveforms (90, nu), ACG patches (12, 230 nu)
        for u in range(0, n, uc):
            v = min(u + uc, n)
            nu = v - u
            patches = None
            if self.pool == "avg":
                pairs = acg[u:v, 0::2] + acg[u:v, 1::2]  # (nu, 5, 101): rows summed by the 2x2 average pool
                # 11 taps x (row, pooled pair, pooled column, unit), and a row of ones for the bias
                patches = torch.ones((12, 230 * nu), dtype=dtype, device=dev)
                patches[:11].view(11, 5, 2, 23, nu).copy_(
                    pairs.unfold(2, 11, 2).reshape(nu, 5, 23, 2, 11).permute(4, 1, 3, 2, 0)
                )
            tiles.append((u, v, waveform[u:v].T.contiguous(), patches))
        work: dict[str, torch.Tensor] = {}

        def buf(name: str, *shape: int) -> torch.Tensor:
            size = math.prod(shape)
            if name not in work:  # the first tile is the largest
                work[name] = torch.empty(size, dtype=dtype, device=dev)
            return work[name][:size].view(shape)

        for s in range(0, m, bm):
            e = min(s + bm, m)
            b = e - s
            g = {k: v[s:e] for k, v in fw.items() if not k.startswith(("conv1.", "wvf.0."))}
            c1 = fw["conv1.w"][8 * s : 8 * e] if self.pool == "avg" else None
            w0, b0 = fw["wvf.0.w"][600 * s : 600 * e], fw["wvf.0.b"][600 * s : 600 * e]
            for u, v, wvf_t, patches in tiles:
                nu = v - u
                if self.pool == "avg":
                    y = torch.mm(c1, patches, out=buf("conv1", 8 * b, 230 * nu)).clamp_(min=0)
                    y = torch.baddbmm(
                        g["conv2.b"], g["conv2.w"], y.view(b, 80, 23 * nu), out=buf("conv2", b, 16, 23 * nu)
                    ).clamp_(min=0)
                    x = torch.addcmul(
                        g["bn2.shift"], y.view(b, 368, nu), g["bn2.scale"], out=buf("bn2", b, 368, nu)
                    )
                else:
                    x = flat[s:e, :, u:v]
                h = torch.baddbmm(g["acg.fc1.b"], g["acg.fc1.w"], x, out=buf("acg1", b, 200, nu))
                h = torch.baddbmm(
                    g["acg.fc2.b"], g["acg.fc2.w"], h.clamp_(min=0), out=buf("acg2", b, LATENT_DIM, nu)
                )
                out[s:e, :LATENT_DIM, u:v] = h
                h = torch.ops.aten.gelu_(torch.addmm(b0, w0, wvf_t, out=buf("wvf0", 600 * b, nu)))
                h = torch.baddbmm(g["wvf.3.b"], g["wvf.3.w"], h.view(b, 600, nu), out=buf("wvf3", b, 300, nu))
                h = torch.baddbmm(
                    g["wvf.6.b"], g["wvf.6.w"], torch.ops.aten.gelu_(h), out=buf("wvf6", b, LATENT_DIM, nu)
                )
                out[s:e, LATENT_DIM:, u:v] = h
        return out

    def latent(self, acg: torch.Tensor, waveform: torch.Tensor) -> torch.Tensor:
        """Latent means, (M, n, 20) (or (1, n, 20) when the members share their encoders)."""
        return self._latent_t(acg, waveform).transpose(1, 2)

    def forward(
        self, acg: torch.Tensor, waveform: torch.Tensor, layer: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (M, n, k) and last-layer features (M, n, 100 [+4]) for ACG (n, 10, 101),
        waveform (n, 90) and, for layer models, layer one-hot (n, 4)."""
        m = self.n_members
        if self.use_layer and layer is None:
            raise ModelMismatchError(
                "this ensemble uses layer information but no layer one-hot was given; pass "
                "layer (n, 4) in vocabulary.LAYERS order."
            )
        fw = self._folded_weights()
        z = self._latent_t(acg, waveform).transpose(1, 2).expand(m, -1, -1)  # (M, n, 20), a view
        if self.use_layer:
            lay = layer.to(z.dtype).unsqueeze(0).expand(m, -1, -1)  # (M, n, 4)
            z = torch.cat((z, lay), dim=2)
        z = torch.addcmul(fw["bn.shift"], z, fw["bn.scale"])  # eval-mode batch norm, (M, n, 20 [+4])
        h = torch.baddbmm(fw["fc1.b"], z, fw["fc1.wt"]).clamp_(min=0)  # (M, n, 100)
        if self.use_layer:
            h = torch.cat((h, lay), dim=2)
        return torch.baddbmm(fw["fc2.b"], h, fw["fc2.wt"]), h

    def member_state(self, i: int) -> dict[str, torch.Tensor]:
        """State dict of member ``i`` (C4 naming), e.g. to rebuild one :class:`CNNCerebellum`."""
        out = {}
        for key in expected_state_shapes(self.n_classes, self.use_layer):
            if key.endswith("num_batches_tracked"):
                out[key] = torch.tensor(0, dtype=torch.long)
            else:
                w = self._w(key)
                out[key] = w[i if w.shape[0] == self.n_members else 0].clone()
        return out


class StackedEnsemble(EnsembleCNN):
    """:class:`EnsembleCNN` built directly from already validated, stacked weights (views, no copy).

    ``EnsembleCNN.__init__`` re-validates every member (milliseconds each: ~10 s for 2,000 members),
    which C4 bundles already did at import; this sets the same attributes without it. A test checks
    that it computes exactly what ``EnsembleCNN`` built from the member state dicts computes.
    """

    def __init__(
        self, stacked: Mapping[str, torch.Tensor], n_classes: int, use_layer: bool, pool: str
    ) -> None:
        nn.Module.__init__(self)
        self.n_classes = n_classes
        self.use_layer = use_layer
        self.pool = pool
        self.n_members = int(stacked["fc2.weight"].shape[0])
        self.shared_encoders = False  # C4 fine-tunes the encoders of every member
        self.n_encoders = self.n_members
        for key, value in stacked.items():
            self.register_buffer(key.replace(".", "__"), value)
