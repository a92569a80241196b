"""The DiffCMR noise predictor eps_theta(x_t, I^u, t) = E(F(x_t) + G(I^u), H(t))  (paper Eq. 3).

* F: a 3x3 convolutional stem for the noisy image x_t.
* G: the condition encoder, Residual-in-Residual Dense Blocks (ESRGAN [16]) on the under-sampled
  image I^u, at full resolution (10 RRDBs in the paper).
* H: the time-step embedding, injected into every residual block of E by scale and shift.
* E: a U-Net with channel multipliers (1, 1, 2, 2, 4, 4) x C, residual blocks and self-attention
  at the low resolutions (the SegDiff conventions [1] that §3.2 follows).

G(I^u) depends on neither x_t nor t, so :meth:`DiffCMRNet.encode_condition` computes it once per
slice and :meth:`DiffCMRNet.denoise` reuses it for every step and round of the sampler.

The network returns E's raw output; what it stands for (``DiffCMRConfig.prediction``: eps, x0
or v) is turned into noise by :func:`diffcmr_core.method.schedule.eps_from_output`, which owns
the schedule (as in diffusers, the network knows nothing of abar).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from diffcmr_core.method.schedule import BASE_STEPS, LOSS_REDUCTIONS, LOSS_WEIGHTINGS, PREDICTIONS

VALUE_RANGES = ("pm1", "unit")


@dataclass(frozen=True)
class DiffCMRConfig:
    """The DiffCMR model: every size of the network, what its output means, and the diffusion it
    is trained on (chain length of Alg. 1, weighting of Eq. 5). ``DiffCMRConfig.paper()`` is §3.2.
    """

    image_size: int = 128
    channels: int = 128  # C
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4, 4)  # depth six
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (16, 8)
    num_heads: int = 4
    dropout: float = 0.0
    rrdb_blocks: int = 10
    rrdb_channels: int = 64
    rrdb_growth: int = 32
    time_embedding: str = "sinusoidal"  # or "table" (the paper's look-up table)
    prediction: str = "eps"  # E's output: "eps" (Eq. 3), "x0" or "v"
    train_steps: int = 100  # Alg. 1's chain in training (respaced)
    loss_weighting: str = "eps"  # Eq. 5 ("eps") or 1/abar-weighted ("v")
    loss_reduction: str = "sum"  # Eq. 5's squared norm per sample ("sum",
    # the public code) or the pixel mean
    value_range: str = "pm1"  # images enter the chain in [-1, 1]
    # ("pm1", DDPM's convention) or [0, 1]
    # ("unit", the public code)

    def __post_init__(self) -> None:
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {self.prediction!r}")
        if self.loss_reduction not in LOSS_REDUCTIONS:
            raise ValueError(
                f"loss_reduction must be one of {LOSS_REDUCTIONS}, got {self.loss_reduction!r}"
            )
        if self.value_range not in VALUE_RANGES:
            raise ValueError(f"value_range must be one of {VALUE_RANGES}, got {self.value_range!r}")
        if self.loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(
                f"loss_weighting must be one of {LOSS_WEIGHTINGS}, got {self.loss_weighting!r}"
            )

    @classmethod
    def paper(cls) -> DiffCMRConfig:
        """The paper's configuration (§3.2): the defaults."""
        return cls()


def _groups(ch: int) -> int:
    return math.gcd(32, ch)


def norm(ch: int) -> nn.GroupNorm:
    """GroupNorm with gcd(32, ``ch``) groups."""
    return nn.GroupNorm(_groups(ch), ch)


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Transformer-style embedding of (integer or float) time-steps ``t`` ``(B,)`` -> ``(B,
    dim)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class TimeEmbedding(nn.Module):
    """H(t): ``"sinusoidal"`` (default; public code) or ``"table"`` (paper: a learned look-up
    table over the 1000 base time-steps), each followed by a two-layer MLP.

    Sinusoidal is the default because the network is trained on a respaced 100-step chain but
    sampled with all 1000 base steps: a look-up table leaves the rows of never-trained steps at
    their random initialisation, a sinusoidal code interpolates between trained steps.
    """

    def __init__(self, channels: int, kind: str = "sinusoidal") -> None:
        super().__init__()
        if kind not in ("sinusoidal", "table"):
            raise ValueError(f"time_embedding must be 'sinusoidal' or 'table', got {kind!r}")
        self.kind, self.channels = kind, channels
        self.table = nn.Embedding(BASE_STEPS, channels) if kind == "table" else None
        self.mlp = nn.Sequential(
            nn.Linear(channels, 4 * channels), nn.SiLU(), nn.Linear(4 * channels, 4 * channels)
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """Time-steps ``t`` ``(B,)`` -> embeddings ``(B, 4 C)``."""
        code = (
            self.table(t.long())
            if self.table is not None
            else sinusoidal_embedding(t, self.channels)
        )
        return self.mlp(code)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice; the time embedding scales and shifts the second norm."""

    def __init__(self, cin: int, cout: int, emb: int, dropout: float) -> None:
        super().__init__()
        self.in_layers = nn.Sequential(norm(cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1))
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb, 2 * cout))
        self.out_norm = norm(cout)
        self.out_layers = nn.Sequential(
            nn.SiLU(), nn.Dropout(dropout), nn.Conv2d(cout, cout, 3, padding=1)
        )
        nn.init.zeros_(self.out_layers[-1].weight)
        nn.init.zeros_(self.out_layers[-1].bias)
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """Features ``(B, cin, H, W)`` and time embedding ``(B, emb)`` -> ``(B, cout, H, W)``."""
        h = self.in_layers(x)
        scale, shift = self.emb(emb).to(h.dtype)[..., None, None].chunk(2, dim=1)
        h = self.out_layers(self.out_norm(h) * (1 + scale) + shift)
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the pixels of a feature map."""

    def __init__(self, ch: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = norm(ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Self-attention over the pixels: ``(B, C, H, W)`` -> ``(B, C, H, W)``."""
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        out = F.scaled_dot_product_attention(
            q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2)
        )
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convolutions with a scaled residual (ESRGAN)."""

    def __init__(self, nf: int, gc: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(nf + i * gc, gc if i < 4 else nf, 3, padding=1) for i in range(5)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Five densely connected convs, scaled residual: ``(B, C, H, W)`` -> ``(B, C, H, W)``."""
        feats = [x]
        for i, conv in enumerate(self.convs):
            out = conv(torch.cat(feats, 1))
            if i < 4:
                feats.append(F.leaky_relu(out, 0.2))
        return x + 0.2 * out


class RRDB(nn.Module):
    """Residual in Residual Dense Block: three dense blocks inside a scaled residual."""

    def __init__(self, nf: int, gc: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*(ResidualDenseBlock(nf, gc) for _ in range(3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Three dense blocks, scaled residual: ``(B, C, H, W)`` -> ``(B, C, H, W)``."""
        return x + 0.2 * self.body(x)


class ConditionEncoder(nn.Module):
    """G(I^u): ESRGAN's RRDBNet without its up-sampling, as the public code builds it: a 3x3 conv
    to ``rrdb_channels``; ``rrdb_blocks`` RRDBs and a trunk 3x3 conv, added back to the first
    features (a global skip); an "HR" 3x3 conv with LeakyReLU(0.2); a 3x3 conv to the U-Net's C
    channels. With the paper's sizes: 7,342,592 parameters."""

    def __init__(self, cfg: DiffCMRConfig) -> None:
        super().__init__()
        nf = cfg.rrdb_channels
        self.head = nn.Conv2d(1, nf, 3, padding=1)
        self.body = nn.Sequential(*(RRDB(nf, cfg.rrdb_growth) for _ in range(cfg.rrdb_blocks)))
        self.trunk = nn.Conv2d(nf, nf, 3, padding=1)
        self.hr = nn.Conv2d(nf, nf, 3, padding=1)
        self.tail = nn.Conv2d(nf, cfg.channels, 3, padding=1)

    def forward(self, undersampled: torch.Tensor) -> torch.Tensor:
        """G(I^u): under-sampled image ``(B, 1, S, S)`` -> features ``(B, C, S, S)``."""
        features = self.head(undersampled)
        features = features + self.trunk(self.body(features))
        return self.tail(F.leaky_relu(self.hr(features), 0.2))


class DenoisingUNet(nn.Module):
    """E(features, H(t)): U-Net with time-conditioned residual blocks and low-resolution
    self-attention; returns one channel ``(B, 1, H, W)`` (eps, x0 or v: see the config)."""

    def __init__(self, cfg: DiffCMRConfig) -> None:
        super().__init__()
        c, emb = cfg.channels, 4 * cfg.channels
        self.down = nn.ModuleList()
        skips, ch, res = [c], c, cfg.image_size
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                self.down.append(self._level(ch, mult * c, emb, res, cfg))
                ch = mult * c
                skips.append(ch)
            if level < len(cfg.channel_mult) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(ch, ch, 3, stride=2, padding=1)]))
                skips.append(ch)
                res //= 2
        self.middle = nn.ModuleList(
            [
                ResBlock(ch, ch, emb, cfg.dropout),
                AttentionBlock(ch, cfg.num_heads),
                ResBlock(ch, ch, emb, cfg.dropout),
            ]
        )
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                block = self._level(ch + skips.pop(), mult * c, emb, res, cfg)
                ch = mult * c
                if level > 0 and i == cfg.num_res_blocks:
                    block.append(_Upsample(ch))
                    res *= 2
                self.up.append(block)
        self.out = nn.Sequential(norm(ch), nn.SiLU(), nn.Conv2d(ch, 1, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    @staticmethod
    def _level(cin: int, cout: int, emb: int, res: int, cfg: DiffCMRConfig) -> nn.ModuleList:
        layers = nn.ModuleList([ResBlock(cin, cout, emb, cfg.dropout)])
        if res in cfg.attention_resolutions:
            layers.append(AttentionBlock(cout, cfg.num_heads))
        return layers

    @staticmethod
    def _run(layers: nn.ModuleList, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in layers:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        return h

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """E: features ``(B, C, S, S)`` and time embedding ``(B, 4 C)`` -> output ``(B, 1, S,
        S)``."""
        hs = [h]
        for layers in self.down:
            h = self._run(layers, h, emb)
            hs.append(h)
        h = self._run(self.middle, h, emb)
        for layers in self.up:
            h = self._run(layers, torch.cat([h, hs.pop()], 1), emb)
        return self.out(h)


def upsample_nearest2x(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour 2x upsampling of ``(B, C, H, W)``. On a CPU without autograd (sampling,
    scoring) a copy through a broadcast view: the values of ``F.interpolate(mode="nearest")``
    bit for bit, several times faster at the sampling batch
    (``benchmarks/bench_cpu_sampling.py``); with autograd, or on a GPU, ``F.interpolate`` itself,
    so that training's gradients and a GPU's memory format are what they always were."""
    if x.device.type != "cpu" or (torch.is_grad_enabled() and x.requires_grad):
        return F.interpolate(x, scale_factor=2.0, mode="nearest")
    b, c, h, w = x.shape
    return x[:, :, :, None, :, None].expand(b, c, h, 2, w, 2).reshape(b, c, 2 * h, 2 * w)


class _Upsample(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(upsample_nearest2x(x))


class DiffCMRNet(nn.Module):
    """E(F(x_t) + G(I^u), H(t))  (Eq. 3): eps_theta when ``cfg.prediction == "eps"``."""

    def __init__(self, cfg: DiffCMRConfig) -> None:
        super().__init__()
        if cfg.image_size % 2 ** (len(cfg.channel_mult) - 1):
            raise ValueError(
                f"image_size {cfg.image_size} must be divisible by 2^{len(cfg.channel_mult) - 1}"
            )
        self.cfg = cfg
        self.stem = nn.Conv2d(1, cfg.channels, 3, padding=1)  # F
        self.condition = ConditionEncoder(cfg)  # G
        self.time = TimeEmbedding(cfg.channels, cfg.time_embedding)  # H
        self.unet = DenoisingUNet(cfg)  # E

    def encode_condition(self, undersampled: torch.Tensor) -> torch.Tensor:
        """G(I^u) ``(B, C, H, W)``: compute once per slice, reuse for every step and round."""
        return self.condition(undersampled)

    def denoise(
        self, x_t: torch.Tensor, t: torch.Tensor, cond_features: torch.Tensor
    ) -> torch.Tensor:
        """E's output ``(B, 1, H, W)`` from x_t ``(B, 1, H, W)``, base time-steps ``t`` ``(B,)``
        in [0, 1000) and cached condition features G(I^u)."""
        return self.unet(self.stem(x_t) + cond_features, self.time(t))

    def forward(
        self, x_t: torch.Tensor, t: torch.Tensor, undersampled: torch.Tensor
    ) -> torch.Tensor:
        """Eq. 3: x_t ``(B, 1, S, S)``, time-steps ``(B,)``, I^u ``(B, 1, S, S)`` -> ``(B, 1, S,
        S)``."""
        return self.denoise(x_t, t, self.encode_condition(undersampled))


def count_parameters(module: nn.Module) -> int:
    """Number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())


def parameter_counts(net: DiffCMRNet) -> dict[str, int]:
    """Parameters of F, G, H, E and in total."""
    return {
        "F (stem)": count_parameters(net.stem),
        "G (RRDB encoder)": count_parameters(net.condition),
        "H (time embedding)": count_parameters(net.time),
        "E (U-Net)": count_parameters(net.unet),
        "total": count_parameters(net),
    }
