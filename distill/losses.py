"""Distillation losses: pixels, the teacher's decoder features, and a small patch discriminator.

- pixel: L1 plus L1 on image gradients (keeps edges);
- range: keeps the student's pre-output within [-1, 1], so the last convolution's int8
  range stays narrow (a clamp output is exact there; see models/student.py);
- features: each teacher decoder feature map that has a student map of the same size is
  matched through a 1x1 adapter (student width -> teacher width), L1 relative to the teacher
  map's mean magnitude so that every level weighs alike;
- adversarial: hinge, a PatchGAN-style discriminator on (image, landmark image) that takes
  teacher frames as real and student frames as fake.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from talkinghead.models.layers import ResBlockUp


def pixel_loss(out: torch.Tensor, target: torch.Tensor, w_grad: float) -> torch.Tensor:
    """L1 + ``w_grad`` * L1 of horizontal and vertical differences; (B, 3, S, S) each."""
    dx = lambda t: t[..., :, 1:] - t[..., :, :-1]  # noqa: E731
    dy = lambda t: t[..., 1:, :] - t[..., :-1, :]  # noqa: E731
    grad = F.l1_loss(dx(out), dx(target)) + F.l1_loss(dy(out), dy(target))
    return F.l1_loss(out, target) + w_grad * grad


def range_loss(z: torch.Tensor) -> torch.Tensor:
    """Mean excess of the pre-output beyond [-1, 1]: (B, 3, S, S) -> scalar."""
    return F.relu(z.abs() - 1).mean()


def straight_through_clamp(z: torch.Tensor) -> torch.Tensor:
    """Clamp to [-1, 1] forward, identity backward: a pixel pushed past the range still
    gets the pixel loss's gradient (plain hardtanh would give it none)."""
    return z + (z.clamp(-1, 1) - z).detach()


def feature_modules(teacher: nn.Module) -> list[nn.Module]:
    """The teacher generator's upsampling blocks, coarse to fine (empty for other modules)."""
    return [m for m in teacher.modules() if isinstance(m, ResBlockUp)]


@contextmanager
def capture_features(modules: list[nn.Module]):
    """Within the block, the list it yields fills with each module's output, in call order."""
    store: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: store.append(out)) for m in modules]
    try:
        yield store
    finally:
        for h in hooks:
            h.remove()


class FeatureAdapters(nn.Module):
    """1x1 convs from student decoder widths to the teacher's, paired by spatial size.

    pairs: (student index, teacher index, student channels, teacher channels) per level.
    """

    def __init__(self, pairs: list[tuple[int, int, int, int]]):
        super().__init__()
        self.pairs = [(s, t) for s, t, _, _ in pairs]
        self.convs = nn.ModuleList(nn.Conv2d(cs, ct, 1) for _, _, cs, ct in pairs)

    @classmethod
    def match(cls, student_feats: list[torch.Tensor], teacher_feats: list[torch.Tensor]):
        """Pair every teacher map with the student map of the same (H, W)."""
        pairs = []
        for ti, t in enumerate(teacher_feats):
            for si, s in enumerate(student_feats):
                if s.shape[-2:] == t.shape[-2:]:
                    pairs.append((si, ti, s.shape[1], t.shape[1]))
        return cls(pairs)

    def forward(self, student_feats: list[torch.Tensor], teacher_feats: list[torch.Tensor]):
        if not self.pairs:
            return student_feats[0].new_zeros(())
        losses = []
        for (si, ti), conv in zip(self.pairs, self.convs, strict=True):
            t = teacher_feats[ti].float()
            losses.append(F.l1_loss(conv(student_feats[si]), t) / (t.abs().mean() + 1e-6))
        return torch.stack(losses).mean()


class PatchDiscriminator(nn.Module):
    """Real/fake score per patch of (image, landmark image): (B, 6, S, S) -> (B, 1, S/8, S/8)."""

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        self.net = nn.Sequential(
            spectral_norm(nn.Conv2d(6, w, 4, 2, 1)),
            nn.LeakyReLU(0.2),
            spectral_norm(nn.Conv2d(w, 2 * w, 4, 2, 1)),
            nn.LeakyReLU(0.2),
            spectral_norm(nn.Conv2d(2 * w, 4 * w, 4, 2, 1)),
            nn.LeakyReLU(0.2),
            spectral_norm(nn.Conv2d(4 * w, 1, 3, 1, 1)),
        )

    def forward(self, image: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([image, landmarks], dim=1))
