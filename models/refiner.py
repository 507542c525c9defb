"""The refiner: the phone's universal student in the warp-and-refine generator.

The enrolled photo is warped to the target pose outside the network (``sdk/warp.py``);
the refiner sees that warp and corrects what a warp cannot draw: the inside of the mouth,
closing eyelids, disoccluded background, seams and shading. Identity and detail come from
the warped pixels, so one set of weights serves every face and enrolling a face needs no
training.

Input: ``(B, 7, S, S) float32`` in [-1, 1], channels ``[warped RGB (3), rasterised target
landmarks (3), validity (1)]`` (validity 1 where the warp had the photo's own pixels, -1
where it had none).
Output: ``(B, 3, S, S) float32`` in [-1, 1], the frame ``clamp(warped + (1 - m) * c)``:
the network's correction ``c`` and its blend mask ``m`` (1 keeps the warp) are composed
inside the graph with plain element-wise ops, so every runtime returns the finished frame.

Shaped for int8 on CPUs and phone NPUs (docs/performance.md has the profiles behind it):

- dense 3x3 convolutions, no depthwise ones: XNNPACK's int8 depthwise kernels ran slower
  than its fp32 ones here, while int8 dense convolutions ran 2x faster than fp32;
- every strided convolution is 3x3 with padding 1 on even sizes, and every width a
  multiple of 8;
- nothing runs at full resolution but the composition: the head is a 3x3 convolution at
  half resolution whose 16 channels a pixel shuffle lays out as the 4 full-resolution
  channels (correction RGB, mask logit). A 3x3 head at full resolution took a fifth of
  the frame, and a transposed-convolution head half of it;
- decoder upsampling is a 1x1 convolution at the coarse level, then bilinear x2 (the two
  commute), so the wide tensor is never upsampled.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from talkinghead.errors import InvalidInputError
from talkinghead.models.layers import zero_conv
from talkinghead.models.registry import ChannelsConfig, create_model, register_model

IN_CHANNELS = 7
# Bumped whenever forward() computes something else for the same weights: exported models
# are cached and shipped prebuilt under (weights, ARCH_VERSION). Packs check parity
# against eager on every enrolment, so a missed bump fails loudly, never silently.
ARCH_VERSION = 3
WARP_CHANNELS = slice(0, 3)
LANDMARK_CHANNELS = slice(3, 6)
VALIDITY_CHANNEL = 6
HEAD_SHUFFLE = 2  # the head works at S / 2 and a pixel shuffle brings it to S


@dataclass(frozen=True)
class RefinerConfig(ChannelsConfig):
    name: str
    resolution: int = 256
    channels: tuple[int, ...] = (16, 32, 64, 64)  # level i works at S / 2**(i + 1)
    num_res: int = 2

    def __post_init__(self) -> None:
        if self.resolution % 2 ** len(self.channels) or self.resolution < 32:
            raise InvalidInputError(
                f"resolution {self.resolution} must be >= 32 and divisible by "
                f"{2 ** len(self.channels)}"
            )


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1)


def compose_frame(
    warped: torch.Tensor, correction: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """The finished frame ``clamp(warped + (1 - mask) * correction)``: where the mask is 1
    the warp's own pixels pass, where it is 0 the warp plus the whole correction."""
    return F.hardtanh(warped + (1 - mask) * correction)


class RefinerGenerator(nn.Module):
    """A small U-Net of dense convolutions over the warped photo; see the module docstring."""

    kind = "refiner"

    def __init__(self, cfg: RefinerConfig):
        super().__init__()
        self.cfg = cfg
        ch = cfg.channels
        self.stem = _conv(IN_CHANNELS, ch[0], 2)
        self.down = nn.ModuleList(
            nn.Sequential(_conv(ch[i], ch[i + 1], 2), nn.ReLU(), _conv(ch[i + 1], ch[i + 1]))
            for i in range(len(ch) - 1)
        )
        self.res = nn.ModuleList(_conv(ch[-1], ch[-1]) for _ in range(cfg.num_res))
        # Skip fusion as upsample(1x1(h)) + skip: the 1x1 conv commutes with bilinear
        # upsampling, so the wide input is projected at the coarse level and no concat runs.
        self.fuse_up = nn.ModuleList(nn.Conv2d(ch[i + 1], ch[i], 1) for i in range(len(ch) - 1))
        self.up = nn.ModuleList(_conv(ch[i], ch[i]) for i in range(len(ch) - 1))
        # Start by passing the warp through: the correction starts at zero and the mask at
        # one half (a mask near 1 would saturate its sigmoid and starve the correction).
        self.head = zero_conv(_conv(ch[0], 4 * HEAD_SHUFFLE**2))

    def _head(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (B, 7, S, S)`` -> (correction ``(B, 3, S, S)``, mask logit ``(B, 1, S, S)``)."""
        h = F.relu(self.stem(x))
        skips = [h]
        for block in self.down:
            h = F.relu(block(h))
            skips.append(h)
        skips.pop()
        for conv in self.res:
            h = h + F.relu(conv(h))
        for i in reversed(range(len(self.down))):
            h = F.relu(_up(self.fuse_up[i](h)) + skips[i])
            h = F.relu(self.up[i](h))
        out = F.pixel_shuffle(self.head(h), HEAD_SHUFFLE)
        return out[:, :3], out[:, 3:4]

    def parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (B, 7, S, S)`` -> (correction ``(B, 3, S, S)``, mask ``(B, 1, S, S)`` in [0, 1],
        1 where the warp is kept)."""
        correction, logit = self._head(x)
        return correction, 1 - torch.sigmoid(logit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        correction, logit = self._head(x)
        # compose_frame with 1 - mask read straight off the sigmoid: the same frame, two
        # fewer full-resolution ops in the exported graph.
        return F.hardtanh(x[:, WARP_CHANNELS] + torch.sigmoid(logit) * correction)

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
    return _refiner(RefinerConfig("refiner-xs", channels=(8, 16, 32, 32), num_res=1), overrides)


def create_refiner(name: str, **overrides) -> RefinerGenerator:
    return create_model("refiner", name, **overrides)


__all__ = ["IN_CHANNELS", "compose_frame", "RefinerConfig", "RefinerGenerator", "create_refiner"]
