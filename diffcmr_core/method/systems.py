"""The three trainable methods behind one small interface: DiffCMR, the U-Net and the cGAN.

A *system* owns its networks, knows its loss (its training step), which module is used for
inference (and averaged by EMA), and how it reconstructs a batch of under-sampled images.
Images enter and leave as the preprocessed magnitude slices ``(B, 1, S, S)`` (input normalised
to a maximum of 1); DiffCMR diffuses in [-1, 1] (x = 2 img - 1), as DDPMs do, or, with
``DiffCMRConfig(value_range="unit")``, in [0, 1] as the public code does.

Each method is built from its one configuration (``DiffCMRConfig``, ``UNetConfig``,
``CGANConfig``), which a checkpoint stores and :func:`build_system` reads back. The systems are
registered by method name (:data:`SYSTEMS`, :func:`register_system`): a new trainable network is a
system class with its ``method``, ``config_class`` and training step, registered once.

A system also names the network calls the cost model counts (:meth:`flop_probes`): one
training sample, one reconstruction forward pass and, for DiffCMR, G(I^u) and one step of E.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from diffcmr_core.config import from_dict
from diffcmr_core.method import schedule
from diffcmr_core.method.networks import (
    DiffCMRConfig,
    DiffCMRNet,
    PatchDiscriminator,
    UNet,
    UNetConfig,
)
from diffcmr_core.method.samplers import clip_hook, compose_hooks, ensemble, sample_rounds


@dataclass(frozen=True)
class CGANConfig:
    """The cGAN [3]: its U-Net generator and the weight of the L1 term beside the adversarial
    loss."""

    generator: UNetConfig = field(default_factory=UNetConfig)
    l1_weight: float = 100.0


PRECISIONS = ("bf16", "fp32")


def autocast(device: torch.device, precision: str = "bf16"):
    """bf16 autocast on CUDA when ``precision == "bf16"`` (networks only; losses, chains and
    metrics stay fp32); a no-op for ``"fp32"`` (the public code's precision) and off CUDA. The
    one autocast of the package: training and inference both use it."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if device.type == "cuda" and precision == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_model_space(img: torch.Tensor, value_range: str = "pm1") -> torch.Tensor:
    """A magnitude image (input-normalised, about [0, 1]) as the chain sees it: 2 img - 1 for
    ``"pm1"``, unchanged for ``"unit"``."""
    return 2.0 * img - 1.0 if value_range == "pm1" else img


def from_model_space(x: torch.Tensor, value_range: str = "pm1") -> torch.Tensor:
    """Back to a magnitude image; negative values are impossible for a magnitude and cut at 0."""
    img = (x + 1.0) / 2.0 if value_range == "pm1" else x
    return img.clamp_min(0.0)


class DiffusionSystem(nn.Module):
    """DiffCMR: Alg. 1 training (Eq. 4-5) and Alg. 2 inference."""

    method = "diffcmr"
    config_class = DiffCMRConfig
    sampling = True  # several rounds from noise: their mean, spread and each round
    precision = "bf16"  # autocast on CUDA; the training loop sets its own

    def __init__(self, cfg: DiffCMRConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = DiffCMRNet(cfg)
        self.register_buffer(
            "train_timesteps", schedule.respaced_timesteps(cfg.train_steps), persistent=False
        )

    def to_model(self, img: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> the network's value range."""
        return to_model_space(img, self.cfg.value_range)

    def from_model(self, x: torch.Tensor) -> torch.Tensor:
        """The network's value range -> images in [0, 1]."""
        return from_model_space(x, self.cfg.value_range)

    def eps_fn(self, denoise):
        """The noise predictor the samplers call, ``(x_t, t, cond) -> eps``, from a network call
        ``denoise(x_t, t, cond)`` (``model.denoise`` with cached G(I^u), or the whole ``model``
        with the raw condition), its output read as the config's ``prediction``."""
        prediction = self.cfg.prediction
        return lambda x, t, cond: schedule.eps_from_output(denoise(x, t, cond), x, t, prediction)

    def flop_probes(self, x: torch.Tensor) -> dict[str, Any]:
        """The calls the cost model counts on ``x`` ``(1, 1, S, S)``: one training sample
        (forward and backward), G(I^u) once, one step of E on its cached output."""
        net, t = self.model, torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        cond = net.encode_condition(x)
        return {
            "train": lambda: F.mse_loss(net(x, t, x), x).backward(),
            "condition": lambda: net.encode_condition(x),
            "denoise_step": lambda: net.denoise(x, t, cond),
        }

    def optimizers(self, lr: float, weight_decay: float) -> list[torch.optim.Optimizer]:
        """AdamW over the whole network (the paper, §3.2)."""
        return [torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=weight_decay)]

    def randomness(
        self, gen: torch.Generator, n: int, shape: tuple[int, ...]
    ) -> dict[str, torch.Tensor]:
        """Alg. 1's draws for ``n`` samples: t uniform over the training chain, eps ~ N(0, I)."""
        idx = torch.randint(0, self.cfg.train_steps, (n,), generator=gen)
        return {"t_index": idx, "noise": torch.randn((n,) + shape, generator=gen)}

    def train_step(self, inp, tgt, rand, opts, sync) -> dict[str, float]:
        """One step of Alg. 1: noise the targets (Eq. 4), predict eps (Eq. 3), the loss (Eq. 5),
        update."""
        (opt,) = opts
        t = self.train_timesteps[rand["t_index"].to(inp.device)]
        noise = rand["noise"].to(inp.device)
        x_t = schedule.q_sample(self.to_model(tgt), t, noise)  # Eq. 4
        with autocast(inp.device, self.precision):
            out = self.model(x_t, t, self.to_model(inp))  # Eq. 3
        eps = schedule.eps_from_output(out, x_t, t, self.cfg.prediction)
        loss = schedule.diffusion_loss(
            eps, noise, schedule.loss_weights(t, self.cfg.loss_weighting), self.cfg.loss_reduction
        )  # Eq. 5
        _update(opt, loss, self.model, sync)
        return {"loss": loss.item()}

    @torch.no_grad()
    def reconstruct(
        self,
        model: DiffCMRNet,
        inp: torch.Tensor,
        *,
        steps: int = 1000,
        rounds: int = 4,
        sampler: str = "ddpm",
        generator=None,
        progress: bool = False,
        x0_hook=None,
        variance: str = "beta_tilde",
        clip: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(mean, std, rounds)`` images: ensemble mean, std over rounds, and every round
        ``(R, B, 1, S, S)``. G(I^u) is encoded once and reused for every step and round.

        ``variance``: DDPM's sigma_t^2 (``"beta_tilde"``, Alg. 2; ``"beta"``, the public code).
        ``clip``: clip each step's x0 prediction to [-1, 1] after ``x0_hook`` (the public
        code's ``clip_denoised=True``; with ``value_range="pm1"`` that is the data range)."""
        cond = model.encode_condition(self.to_model(inp))
        hook = compose_hooks(x0_hook, clip_hook() if clip else None)
        samples = sample_rounds(
            self.eps_fn(model.denoise),
            cond,
            shape=tuple(inp.shape),
            steps=steps,
            rounds=rounds,
            sampler=sampler,
            generator=generator,
            x0_hook=hook,
            progress=progress,
            desc=f"{sampler} T={steps} R={rounds}",
            variance=variance,
        )
        images = self.from_model(samples)
        return (*ensemble(images), images)


class RegressionSystem(nn.Module):
    """U-Net [12] trained with an L1 loss."""

    method = "unet"
    config_class = UNetConfig
    sampling = False
    precision = "bf16"

    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = self.build_model(cfg)

    def build_model(self, cfg: Any) -> nn.Module:
        """The network that maps an under-sampled image to its reconstruction (a subclass
        with another network overrides this)."""
        return UNet(cfg)

    def flop_probes(self, x: torch.Tensor) -> dict[str, Any]:
        """The calls the cost model counts on ``x`` ``(1, 1, S, S)``: one training sample
        (forward and backward of the L1 loss) and one forward pass."""
        return {
            "train": lambda: F.l1_loss(self.model(x), x).backward(),
            "forward": lambda: self.model(x),
        }

    def optimizers(self, lr: float, weight_decay: float) -> list[torch.optim.Optimizer]:
        """AdamW over the U-Net."""
        return [torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=weight_decay)]

    def randomness(self, gen, n, shape):
        """Nothing: an L1 regression draws no random numbers per step."""
        return {}

    def train_step(self, inp, tgt, rand, opts, sync) -> dict[str, float]:
        """One L1 step: predict the fully sampled image, update."""
        (opt,) = opts
        with autocast(inp.device, self.precision):
            pred = self.model(inp)
        loss = F.l1_loss(pred.float(), tgt)
        _update(opt, loss, self.model, sync)
        return {"loss": loss.item()}

    @torch.no_grad()
    def reconstruct(self, model: UNet, inp: torch.Tensor, **_: Any):
        """``(image, zeros, image[None])``: one forward pass, clamped at 0, in the shape of
        DiffCMR's ``(mean, std, rounds)``."""
        out = model(inp).clamp_min(0.0)
        return out, torch.zeros_like(out), out[None]


class GANSystem(RegressionSystem):
    """cGAN [3], pix2pix-style: U-Net generator, PatchGAN discriminator on (input, image) pairs,
    adversarial (BCE with logits) plus ``l1_weight`` x L1 loss; Adam(0.5, 0.999) for both."""

    method = "cgan"
    config_class = CGANConfig

    def __init__(self, cfg: CGANConfig) -> None:
        super().__init__(cfg.generator)
        self.cfg, self.l1_weight = cfg, cfg.l1_weight
        self.discriminator = PatchDiscriminator(channels=max(cfg.generator.channels, 16))

    def flop_probes(self, x: torch.Tensor) -> dict[str, Any]:
        """One training sample as :meth:`train_step` (a discriminator update, then a generator
        update) and one generator forward pass."""
        gen, disc = self.model, self.discriminator

        def train() -> None:
            fake = gen(x)
            real_logit, fake_logit = disc(x, x), disc(x, fake.detach())
            (real_logit.mean() + fake_logit.mean()).backward()
            (disc(x, fake).mean() + F.l1_loss(fake, x)).backward()

        return {"train": train, "forward": lambda: gen(x)}

    def optimizers(self, lr: float, weight_decay: float) -> list[torch.optim.Optimizer]:
        """Adam (beta1 = 0.5, as pix2pix) for the generator and for the discriminator."""
        return [
            torch.optim.Adam(self.model.parameters(), lr=lr, betas=(0.5, 0.999)),
            torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=(0.5, 0.999)),
        ]

    def train_step(self, inp, tgt, rand, opts, sync) -> dict[str, float]:
        """One discriminator update on real and generated pairs, then one generator update
        (adversarial + L1)."""
        opt_g, opt_d = opts
        bce = F.binary_cross_entropy_with_logits
        with autocast(inp.device, self.precision):
            fake = self.model(inp)
        # discriminator: real pairs -> 1, generated pairs -> 0
        with autocast(inp.device, self.precision):
            d_real = self.discriminator(inp, tgt).float()
            d_fake = self.discriminator(inp, fake.detach()).float()
        loss_d = 0.5 * (
            bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))
        )
        _update(opt_d, loss_d, self.discriminator, sync)
        # generator: fool the discriminator and stay close to the target
        self.discriminator.requires_grad_(False)
        with autocast(inp.device, self.precision):
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


SYSTEMS: dict[str, type[nn.Module]] = {}


def register_system(cls: type[nn.Module]) -> type[nn.Module]:
    """Make ``cls`` the system of its ``method`` (the name a checkpoint stores): it needs
    ``method``, ``config_class``, ``sampling`` and the methods of the systems above. Registering
    another class under a taken name is an error; returns ``cls`` (usable as a decorator)."""
    for attr in ("method", "config_class", "sampling", "train_step", "reconstruct"):
        if not hasattr(cls, attr):
            raise TypeError(f"{cls.__name__} is not a system: it has no {attr!r}")
    if SYSTEMS.get(cls.method, cls) is not cls:
        raise ValueError(f"a system for {cls.method!r} is already registered")
    SYSTEMS[cls.method] = cls
    return cls


def unregister_system(method: str) -> None:
    """Remove a system (tests register temporary ones)."""
    SYSTEMS.pop(method, None)


for _system in (DiffusionSystem, RegressionSystem, GANSystem):
    register_system(_system)


def build_system(method: str, model_config: Any) -> nn.Module:
    """A system from its method name and its configuration (the dataclass, or the plain dict a
    checkpoint stores)."""
    if method not in SYSTEMS:
        raise ValueError(f"unknown method {method!r}; expected one of {tuple(SYSTEMS)}")
    system = SYSTEMS[method]
    cfg = model_config
    if isinstance(cfg, dict):
        cfg = from_dict(system.config_class, cfg)
    if not isinstance(cfg, system.config_class):
        raise TypeError(
            f"{method} needs a {system.config_class.__name__}, got {type(cfg).__name__}"
        )
    return system(cfg)


def config_dict(cfg: Any) -> dict[str, Any]:
    """A method configuration as the plain dict a checkpoint stores."""
    return dataclasses.asdict(cfg)
