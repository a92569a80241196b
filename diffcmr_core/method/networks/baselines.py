"""Baseline networks: an image-to-image U-Net [12] and a PatchGAN discriminator for the cGAN [3]."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class UNetConfig:
    """fastMRI-style U-Net: ``depth`` pooling levels starting at ``channels``."""

    channels: int = 32
    depth: int = 4
    dropout: float = 0.0


def _conv_block(cin: int, cout: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.InstanceNorm2d(cout),
        nn.LeakyReLU(0.2),
        nn.Dropout2d(dropout),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.InstanceNorm2d(cout),
        nn.LeakyReLU(0.2),
        nn.Dropout2d(dropout),
    )


class UNet(nn.Module):
    """Image-to-image U-Net predicting the fully sampled image from the under-sampled one.

    A global residual (output = input + U-Net(input)) lets it learn the artefact to remove.
    Input and output ``(B, 1, H, W)``; H and W divisible by 2^depth.
    """

    def __init__(self, cfg: UNetConfig = UNetConfig()) -> None:
        super().__init__()
        ch = cfg.channels
        self.down = nn.ModuleList([_conv_block(1, ch, cfg.dropout)])
        for _ in range(cfg.depth - 1):
            self.down.append(_conv_block(ch, 2 * ch, cfg.dropout))
            ch *= 2
        self.bottom = _conv_block(ch, 2 * ch, cfg.dropout)
        self.up_t, self.up = nn.ModuleList(), nn.ModuleList()
        for _ in range(cfg.depth):
            self.up_t.append(nn.ConvTranspose2d(2 * ch, ch, 2, stride=2))
            self.up.append(_conv_block(2 * ch, ch, cfg.dropout))
            ch //= 2
        self.out = nn.Conv2d(2 * ch, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image ``(B, 1, S, S)`` -> reconstruction ``(B, 1, S, S)``."""
        skips, h = [], x
        for block in self.down:
            h = block(h)
            skips.append(h)
            h = nn.functional.avg_pool2d(h, 2)
        h = self.bottom(h)
        for up_t, block in zip(self.up_t, self.up):
            h = block(torch.cat([up_t(h), skips.pop()], 1))
        return x + self.out(h)


class PatchDiscriminator(nn.Module):
    """pix2pix PatchGAN: judges overlapping patches of (condition, image) pairs; returns logits
    ``(B, 1, h, w)``."""

    def __init__(self, channels: int = 64, layers: int = 3) -> None:
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(2, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        ch = channels
        for i in range(1, layers + 1):
            stride = 2 if i < layers else 1
            mods += [
                nn.Conv2d(ch, 2 * ch, 4, stride=stride, padding=1, bias=False),
                nn.InstanceNorm2d(2 * ch),
                nn.LeakyReLU(0.2),
            ]
            ch *= 2
        mods.append(nn.Conv2d(ch, 1, 4, padding=1))
        self.net = nn.Sequential(*mods)

    def forward(self, condition: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Logits per patch ``(B, 1, h, w)`` of (input ``(B, 1, S, S)``, image ``(B, 1, S, S)``)
        pairs."""
        return self.net(torch.cat([condition, image], 1))
