"""The three trainable methods behind one small interface: DiffCMR, the U-Net and the cGAN.

A *system* owns its networks, knows its loss (its training step), which module is used for
inference (and averaged by EMA), and how it reconstructs a batch of under-sampled images.
Images enter and leave as the preprocessed magnitude slices ``(B, 1, S, S)`` (input normalised
to a maximum of 1); DiffCMR diffuses in [-1, 1] (x = 2 img - 1), as DDPMs do.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from diffcmr_core import diffusion
from diffcmr_core.models import DiffCMRConfig, DiffCMRNet, PatchDiscriminator, UNet, UNetConfig

METHODS = ("diffcmr", "unet", "cgan")
METHOD_LABEL = {"raw": "RAW", "unet": "U-Net", "cgan": "cGAN", "diffcmr": "DiffCMR"}


def to_model_space(img: torch.Tensor) -> torch.Tensor:
    return 2.0 * img - 1.0


def from_model_space(x: torch.Tensor) -> torch.Tensor:
    """Back to a magnitude image; negative values are impossible for a magnitude and cut at 0."""
    return ((x + 1.0) / 2.0).clamp_min(0.0)


class DiffusionSystem(nn.Module):
    """DiffCMR: Alg. 1 training (Eq. 4-5) and Alg. 2 inference."""

    method = "diffcmr"

    def __init__(self, cfg: DiffCMRConfig, train_steps: int = 100, loss_weighting: str = "eps") -> None:
        super().__init__()
        if loss_weighting not in diffusion.LOSS_WEIGHTINGS:
            raise ValueError(f"unknown loss weighting {loss_weighting!r}; "
                             f"expected one of {diffusion.LOSS_WEIGHTINGS}")
        self.cfg, self.train_steps, self.loss_weighting = cfg, train_steps, loss_weighting
        self.model = DiffCMRNet(cfg)
        self.register_buffer("train_timesteps", diffusion.respaced_timesteps(train_steps),
                             persistent=False)

    def optimizers(self, lr: float, weight_decay: float) -> list[torch.optim.Optimizer]:
        return [torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=weight_decay)]

    def randomness(self, gen: torch.Generator, n: int, shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
        """Alg. 1's draws for ``n`` samples: t uniform over the training chain, eps ~ N(0, I)."""
        idx = torch.randint(0, self.train_steps, (n,), generator=gen)
        return {"t_index": idx, "noise": torch.randn((n,) + shape, generator=gen)}

    def train_step(self, inp, tgt, rand, opts, sync) -> dict[str, float]:
        (opt,) = opts
        t = self.train_timesteps[rand["t_index"].to(inp.device)]
        noise = rand["noise"].to(inp.device)
        x_t = diffusion.q_sample(to_model_space(tgt), t, noise)               # Eq. 4
        with _autocast(inp.device):
            eps = self.model(x_t, t, to_model_space(inp))                      # Eq. 3
        loss = diffusion.diffusion_loss(eps, noise, diffusion.loss_weights(t, self.loss_weighting))  # Eq. 5
        _update(opt, loss, self.model, sync)
        return {"loss": loss.item()}

    @torch.no_grad()
    def reconstruct(self, model: DiffCMRNet, inp: torch.Tensor, *, steps: int = 1000,
                    rounds: int = 4, sampler: str = "ddpm", generator=None, progress: bool = False,
                    x0_hook=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(mean, std, rounds)`` images: ensemble mean, std over rounds, and every round
        ``(R, B, 1, S, S)``. G(I^u) is encoded once and reused for every step and round."""
        cond = model.encode_condition(to_model_space(inp))
        samples = diffusion.SAMPLERS[sampler](
            lambda x, t, c: model.denoise(x, t, c), cond, steps=steps, rounds=rounds,
            generator=generator, progress=progress, shape=tuple(inp.shape), x0_hook=x0_hook,
            return_rounds=True)
        images = from_model_space(samples)
        return images.mean(0), images.std(0, correction=0), images


class RegressionSystem(nn.Module):
    """U-Net [12] trained with an L1 loss."""

    method = "unet"

    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = UNet(cfg)

    def optimizers(self, lr: float, weight_decay: float) -> list[torch.optim.Optimizer]:
        return [torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=weight_decay)]

    def randomness(self, gen, n, shape):
        return {}

    def train_step(self, inp, tgt, rand, opts, sync) -> dict[str, float]:
        (opt,) = opts
        with _autocast(inp.device):
            pred = self.model(inp)
        loss = F.l1_loss(pred.float(), tgt)
        _update(opt, loss, self.model, sync)
        return {"loss": loss.item()}

    @torch.no_grad()
    def reconstruct(self, model: UNet, inp: torch.Tensor, **_: Any):
        out = model(inp).clamp_min(0.0)
        return out, torch.zeros_like(out), out[None]


class GANSystem(RegressionSystem):
    """cGAN [3], pix2pix-style: U-Net generator, PatchGAN discriminator on (input, image) pairs,
    adversarial (BCE with logits) plus ``l1_weight`` x L1 loss; Adam(0.5, 0.999) for both."""

    method = "cgan"

    def __init__(self, cfg: UNetConfig, l1_weight: float = 100.0) -> None:
        super().__init__(cfg)
        self.l1_weight = l1_weight
        self.discriminator = PatchDiscriminator(channels=max(cfg.channels, 16))

    def optimizers(self, lr: float, weight_decay: float) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(self.model.parameters(), lr=lr, betas=(0.5, 0.999)),
                torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=(0.5, 0.999))]

    def train_step(self, inp, tgt, rand, opts, sync) -> dict[str, float]:
        opt_g, opt_d = opts
        bce = F.binary_cross_entropy_with_logits
        with _autocast(inp.device):
            fake = self.model(inp)
        # discriminator: real pairs -> 1, generated pairs -> 0
        with _autocast(inp.device):
            d_real = self.discriminator(inp, tgt).float()
            d_fake = self.discriminator(inp, fake.detach()).float()
        loss_d = 0.5 * (bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake)))
        _update(opt_d, loss_d, self.discriminator, sync)
        # generator: fool the discriminator and stay close to the target
        self.discriminator.requires_grad_(False)
        with _autocast(inp.device):
            d_gen = self.discriminator(inp, fake).float()
        loss_adv = bce(d_gen, torch.ones_like(d_gen))
        loss_l1 = F.l1_loss(fake.float(), tgt)
        loss_g = loss_adv + self.l1_weight * loss_l1
        _update(opt_g, loss_g, self.model, sync)
        self.discriminator.requires_grad_(True)
        return {"loss": loss_l1.item(), "loss_adv": loss_adv.item(), "loss_d": loss_d.item()}


def _update(opt: torch.optim.Optimizer, loss: torch.Tensor, module: nn.Module, sync) -> None:
    """One optimiser step on ``loss`` for ``module``'s parameters (gradients averaged over
    processes by ``sync`` under DDP)."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    sync(module)
    opt.step()


def _autocast(device: torch.device):
    """bf16 autocast on CUDA; a no-op elsewhere."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def build_system(method: str, model_config: dict[str, Any], train_steps: int = 100,
                 l1_weight: float = 100.0, loss_weighting: str = "eps") -> nn.Module:
    """A system from its method name and a plain-dict model config (as stored in checkpoints)."""
    if method == "diffcmr":
        cfg = DiffCMRConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in model_config.items()})
        return DiffusionSystem(cfg, train_steps, loss_weighting)
    if method == "unet":
        return RegressionSystem(UNetConfig(**model_config))
    if method == "cgan":
        return GANSystem(UNetConfig(**model_config), l1_weight)
    raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
