"""Building blocks of the full-size networks: BigGAN-style residual blocks, AdaIN, self-attention.

Shapes use (B, C, H, W) float32 throughout.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

# spectral_norm parametrizes the layer in place and returns it, still a Conv2d / Linear.


def conv(cin: int, cout: int, k: int = 3, sn: bool = True) -> nn.Conv2d:
    layer = nn.Conv2d(cin, cout, k, padding=k // 2)
    return cast(nn.Conv2d, spectral_norm(layer)) if sn else layer


def linear(cin: int, cout: int, sn: bool = True) -> nn.Linear:
    layer = nn.Linear(cin, cout)
    return cast(nn.Linear, spectral_norm(layer)) if sn else layer


def zero_conv(layer: nn.Conv2d) -> nn.Conv2d:
    """``layer`` with zero weight and bias: an output head that starts by adding nothing."""
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


class AdaIN(nn.Module):
    """Instance norm whose scale and bias come from outside (a slice of the projected e).

    ``params``: (B, 2 * C); the first half is a residual scale (gamma = 1 + p), so that a
    zero projection leaves features unscaled, the second half the bias.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.norm = nn.InstanceNorm2d(channels, affine=False)

    def forward(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        gamma, beta = params.split(self.channels, dim=1)
        return self.norm(x) * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]


class ResBlockDown(nn.Module):
    """Pre-activation residual block that halves the resolution (average pooling)."""

    def __init__(
        self, cin: int, cout: int, norm: bool = False, sn: bool = True, first: bool = False
    ):
        super().__init__()
        self.first = first
        self.n1 = nn.InstanceNorm2d(cin, affine=True) if norm else nn.Identity()
        self.c1 = conv(cin, cout, 3, sn)
        self.n2 = nn.InstanceNorm2d(cout, affine=True) if norm else nn.Identity()
        self.c2 = conv(cout, cout, 3, sn)
        self.skip = conv(cin, cout, 1, sn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(self.n1(x))
        h = self.c2(F.relu(self.n2(self.c1(h))))
        return F.avg_pool2d(h, 2) + F.avg_pool2d(self.skip(x), 2)


class ResBlock(nn.Module):
    """Residual block at constant resolution, optionally with AdaIN (params passed in)."""

    def __init__(self, channels: int, adain: bool = False, sn: bool = True):
        super().__init__()
        self.adain = adain
        if adain:
            self.n1, self.n2 = AdaIN(channels), AdaIN(channels)
        self.c1 = conv(channels, channels, 3, sn)
        self.c2 = conv(channels, channels, 3, sn)

    def adain_layers(self) -> list[AdaIN]:
        return [self.n1, self.n2] if self.adain else []

    def forward(self, x: torch.Tensor, params: list[torch.Tensor] | None = None) -> torch.Tensor:
        if self.adain:
            assert params is not None
            h = self.c1(F.relu(self.n1(x, params[0])))
            h = self.c2(F.relu(self.n2(h, params[1])))
        else:
            h = self.c2(F.relu(self.c1(F.relu(x))))
        return x + h


class ResBlockUp(nn.Module):
    """Residual block that doubles the resolution (nearest upsampling), with AdaIN."""

    def __init__(self, cin: int, cout: int, sn: bool = True):
        super().__init__()
        self.n1, self.n2 = AdaIN(cin), AdaIN(cout)
        self.c1 = conv(cin, cout, 3, sn)
        self.c2 = conv(cout, cout, 3, sn)
        self.skip = conv(cin, cout, 1, sn)

    def adain_layers(self) -> list[AdaIN]:
        return [self.n1, self.n2]

    def forward(self, x: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
        h = F.interpolate(F.relu(self.n1(x, params[0])), scale_factor=2, mode="nearest")
        h = self.c2(F.relu(self.n2(self.c1(h), params[1])))
        return h + self.skip(F.interpolate(x, scale_factor=2, mode="nearest"))


class SelfAttention(nn.Module):
    """SAGAN self-attention; the output gate starts at zero so the block starts as identity."""

    def __init__(self, channels: int, sn: bool = True):
        super().__init__()
        inner = max(channels // 8, 1)
        self.q = conv(channels, inner, 1, sn)
        self.k = conv(channels, inner, 1, sn)
        self.v = conv(channels, channels // 2, 1, sn)
        self.o = conv(channels // 2, channels, 1, sn)
        self.gate = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.q(x).flatten(2).transpose(1, 2)  # (B, HW, C/8)
        k = F.max_pool2d(self.k(x), 2).flatten(2)  # (B, C/8, HW/4)
        v = F.max_pool2d(self.v(x), 2).flatten(2)  # (B, C/2, HW/4)
        attn = torch.softmax(q @ k, dim=-1)  # (B, HW, HW/4)
        out = (v @ attn.transpose(1, 2)).view(b, c // 2, h, w)
        return x + self.gate * self.o(out)
