"""The refiner: the phone's universal student in the warp-and-refine generator.

The enrolled photo is warped to the target pose outside the network (``sdk/warp.py``);
the refiner sees that warp and corrects what a warp cannot draw: the inside of the mouth,
closing eyelids, disoccluded background, seams and shading. Identity and detail come from
the warped pixels, so one set of weights serves every face and enrolling a face needs no
training.

Input: ``(B, 7, S, S) float32`` in [-1, 1], channels ``[warped RGB (3), rasterised target
landmarks (3), validity (1)]`` (validity 1 where the warp had the photo's own pixels, -1
where it had none).
Output: ``(B, 3, S, S) float32`` in [-1, 1], the frame ``m * warped + (1 - m) * refined``
with ``refined = clamp(warped + correction)``: the network's correction and its blend mask
``m`` are composed inside the graph,
with plain element-wise ops, so every runtime returns the finished frame.

Mobile- and int8-friendly ops only: strided and depthwise-separable convolutions, ReLU,
bilinear upsampling by a static factor, add, mul, sigmoid and a clamp. The first
convolution is strided, so no 3x3 convolution runs at full resolution but the output head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from talkinghead.errors import InvalidInputError
from talkinghead.models.layers import zero_conv
from talkinghead.models.registry import ChannelsConfig, create_model, register_model
from talkinghead.models.student import SeparableConv

IN_CHANNELS = 7
# Bumped whenever forward() computes something else for the same weights: exported models
# are cached and shipped prebuilt under (weights, ARCH_VERSION). Packs check parity
# against eager on every enrolment, so a missed bump fails loudly, never silently.
ARCH_VERSION = 2
WARP_CHANNELS = slice(0, 3)
LANDMARK_CHANNELS = slice(3, 6)
VALIDITY_CHANNEL = 6


@dataclass(frozen=True)
class RefinerConfig(ChannelsConfig):
    name: str
    resolution: int = 256
    channels: tuple[int, ...] = (16, 32, 64, 96)  # level i works at S / 2**(i + 1)
    num_res: int = 2

    def __post_init__(self) -> None:
        if self.resolution % 2 ** len(self.channels) or self.resolution < 32:
            raise InvalidInputError(
                f"resolution {self.resolution} must be >= 32 and divisible by "
                f"{2 ** len(self.channels)}"
            )


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class RefinerGenerator(nn.Module):
    """A small U-Net over the warped photo; see the module docstring."""

    kind = "refiner"

    def __init__(self, cfg: RefinerConfig):
        super().__init__()
        self.cfg = cfg
        ch = cfg.channels
        self.stem = nn.Conv2d(IN_CHANNELS, ch[0], 3, 2, 1)
        self.down = nn.ModuleList(
            nn.Sequential(SeparableConv(ch[i], ch[i + 1], 2), SeparableConv(ch[i + 1], ch[i + 1]))
            for i in range(len(ch) - 1)
        )
        self.res = nn.ModuleList(SeparableConv(ch[-1], ch[-1]) for _ in range(cfg.num_res))
        # Skip fusion as upsample(1x1(h)) + 1x1(skip): the 1x1 conv commutes with bilinear
        # upsampling, so the wide input is projected at the coarse level and no concat runs.
        self.fuse_up = nn.ModuleList(
            nn.Conv2d(ch[i + 1], ch[i], 1, bias=False) for i in range(len(ch) - 1)
        )
        self.fuse_skip = nn.ModuleList(nn.Conv2d(ch[i], ch[i], 1) for i in range(len(ch) - 1))
        self.up = nn.ModuleList(SeparableConv(ch[i], ch[i]) for i in range(len(ch) - 1))
        self.full_up = nn.Conv2d(ch[0], ch[0], 1, bias=False)
        self.full_skip = nn.Conv2d(IN_CHANNELS, ch[0], 1)
        # Start by passing the warp through: the correction starts at zero and the mask at
        # one half. (A mask that starts near 1 saturates its sigmoid and starves the
        # correction of gradient; a correction drawn from grey makes the mask flee to 1.)
        self.head = zero_conv(nn.Conv2d(ch[0], 4, 3, 1, 1))

    def parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (B, 7, S, S)`` -> (refined RGB ``(B, 3, S, S)`` in [-1, 1], mask ``(B, 1, S, S)``).

        The refined image is the warp plus the network's correction, clamped to [-1, 1].
        """
        h = F.relu(self.stem(x))
        skips = [h]
        for block in self.down:
            h = block(h)
            skips.append(h)
        skips.pop()
        for block in self.res:
            h = h + block(h)
        for i in reversed(range(len(self.down))):
            h = F.relu(_up(self.fuse_up[i](h)) + self.fuse_skip[i](skips[i]))
            h = self.up[i](h)
        h = F.relu(_up(self.full_up(h)) + self.full_skip(x))
        out = self.head(h)
        refined = F.hardtanh(x[:, WARP_CHANNELS] + out[:, :3])
        return refined, torch.sigmoid(out[:, 3:4])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        refined, mask = self.parts(x)
        warped = x[:, WARP_CHANNELS]
        return refined + mask * (warped - refined)

    def get_example_inputs(self) -> tuple[torch.Tensor, ...]:
        s = self.cfg.resolution
        return (torch.zeros(1, IN_CHANNELS, s, s),)

    def get_eager_model(self) -> nn.Module:
        return self


def _refiner(cfg: RefinerConfig, overrides: dict) -> RefinerGenerator:
    d = cfg.to_dict() | overrides
    return RefinerGenerator(RefinerConfig.from_dict(d))


@register_model("refiner")
def refiner_s(**overrides) -> RefinerGenerator:
    """The default phone refiner: 256 px."""
    return _refiner(RefinerConfig("refiner-s"), overrides)


@register_model("refiner")
def refiner_xs(**overrides) -> RefinerGenerator:
    """A lighter refiner for small phones."""
    return _refiner(RefinerConfig("refiner-xs", channels=(8, 16, 32, 64), num_res=1), overrides)


def create_refiner(name: str, **overrides) -> RefinerGenerator:
    return create_model("refiner", name, **overrides)


__all__ = ["IN_CHANNELS", "RefinerConfig", "RefinerGenerator", "create_refiner"]
