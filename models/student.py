"""Compact student generators for phones: landmark image in, face out.

Mobile- and int8-friendly ops only: conv, depthwise-separable conv, ReLU, nearest
upsampling by a static factor (bilinear: XNNPACK delegates it, nearest it does not), add and concat; no normalisation at inference and no
grid_sample. A per-identity student bakes the identity into its weights, so a frame
costs one forward pass of a fixed graph.

Input: (1, 3, S, S) float32 in [-1, 1], a rasterised landmark image.
Output: (1, 3, S, S) float32 in [-1, 1], RGB.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from talkinghead.models.registry import create_model, register_model


@dataclass(frozen=True)
class StudentConfig:
    name: str
    resolution: int = 128
    channels: tuple[int, ...] = (16, 32, 64, 96)  # per level; level i works at S / 2**i
    num_res: int = 2  # residual blocks at the bottleneck

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> StudentConfig:
        d = dict(d)
        d["channels"] = tuple(d["channels"])
        return cls(**d)


class SeparableConv(nn.Module):
    """Depthwise 3x3 (optionally strided) then pointwise 1x1, each followed by ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, 3, stride, 1, groups=cin)
        self.pw = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.pw(F.relu(self.dw(x))))


class StudentGenerator(nn.Module):
    """A small U-Net of separable convolutions."""

    def __init__(self, cfg: StudentConfig):
        super().__init__()
        self.cfg = cfg
        ch = cfg.channels
        self.stem = nn.Conv2d(3, ch[0], 3, 1, 1)
        self.down = nn.ModuleList(
            nn.Sequential(SeparableConv(ch[i], ch[i + 1], 2), SeparableConv(ch[i + 1], ch[i + 1]))
            for i in range(len(ch) - 1)
        )
        self.res = nn.ModuleList(SeparableConv(ch[-1], ch[-1]) for _ in range(cfg.num_res))
        self.fuse = nn.ModuleList(
            nn.Conv2d(ch[i + 1] + ch[i], ch[i], 1) for i in range(len(ch) - 1)
        )
        self.up = nn.ModuleList(SeparableConv(ch[i], ch[i]) for i in range(len(ch) - 1))
        self.head = nn.Conv2d(ch[0], 3, 3, 1, 1)

    def forward(self, landmarks: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.stem(landmarks))
        skips = [h]
        for block in self.down:
            h = block(h)
            skips.append(h)
        skips.pop()
        for block in self.res:
            h = h + block(h)
        for i in reversed(range(len(self.down))):
            h = F.interpolate(h, scale_factor=2.0, mode="bilinear", align_corners=False)
            h = F.relu(self.fuse[i](torch.cat([h, skips[i]], dim=1)))
            h = self.up[i](h)
        return torch.tanh(self.head(h))

    def get_example_inputs(self) -> tuple[torch.Tensor]:
        s = self.cfg.resolution
        return (torch.zeros(1, 3, s, s),)


def _student(cfg: StudentConfig, overrides: dict) -> StudentGenerator:
    return StudentGenerator(replace(cfg, **overrides))


@register_model("student")
def student_xs(**overrides) -> StudentGenerator:
    return _student(StudentConfig("student-xs", 128, (12, 24, 48, 64), 1), overrides)


@register_model("student")
def student_s(**overrides) -> StudentGenerator:
    return _student(StudentConfig("student-s", 128, (16, 32, 64, 96), 2), overrides)


@register_model("student")
def student_m(**overrides) -> StudentGenerator:
    return _student(StudentConfig("student-m", 128, (24, 48, 96, 128, 160), 3), overrides)


def create_student(name: str, **overrides) -> StudentGenerator:
    return create_model("student", name, **overrides)
