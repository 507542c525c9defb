"""Compact student generators for phones: landmark image in, face out.

Mobile- and int8-friendly ops only: conv, depthwise-separable conv, ReLU, bilinear
upsampling by a static factor (XNNPACK delegates bilinear, not nearest), add and a
clamp to [-1, 1] at the output; no normalisation at inference and no grid_sample.

One architecture, three forms:
- deployable (``norm=False, e_dim=0``): what a phone runs and what checkpoints hold. The
  identity is baked into the weights, so a frame costs one pass of a fixed graph.
- trainable (``norm=True``): a BatchNorm after every inner convolution keeps activation
  ranges even across channels (int8 per-tensor activations need that); in eval mode each
  norm is a per-channel affine that :func:`fold_student` folds into its convolution.
- universal (``norm=True, e_dim > 0``): the norms take no learnt affine; a projection of the
  teacher's identity vector e gives every norm its scale and bias (adaptive BatchNorm).
  For one avatar those are constants, so they fold too: ``fold_student(model, e)`` is a
  deployable student of that identity, computed once per avatar.

Input: (B, 3, S, S) float32 in [-1, 1], a rasterised landmark image.
Output: (B, 3, S, S) float32 in [-1, 1], RGB.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from talkinghead.errors import InvalidInputError
from talkinghead.models.registry import ChannelsConfig, create_model, register_model

OUTPUTS = ("tanh", "clamp")


@dataclass(frozen=True)
class StudentConfig(ChannelsConfig):
    name: str
    resolution: int = 128
    channels: tuple[int, ...] = (16, 32, 64, 96)  # per level; level i works at S / 2**i
    num_res: int = 2  # residual blocks at the bottleneck
    # "clamp" keeps the last convolution's int8 range at about [-1, 1]; "tanh" (checkpoints
    # saved before the choice existed) needs a wide pre-activation range for saturated
    # pixels, which costs int8 precision exactly where tanh is steepest.
    output: str = "tanh"
    norm: bool = False  # training form: BatchNorm after every inner conv (folded for export)
    e_dim: int = 0  # > 0: universal student, conditioned on an identity vector of this size

    def __post_init__(self) -> None:
        if self.output not in OUTPUTS:
            raise InvalidInputError(f"output must be one of {OUTPUTS}, got {self.output!r}")
        if self.e_dim and not self.norm:
            raise InvalidInputError("a universal student (e_dim > 0) needs norm=True")


class IdentityNorm(nn.Module):
    """BatchNorm whose affine is learnt (per-identity) or given per call (universal).

    ``modulated``: the scale and bias come from outside as ``mod`` (B, 2 * C): residual
    scale ``1 + mod[:, :C]`` and bias ``mod[:, C:]``, as the teacher's AdaIN does.
    """

    def __init__(self, channels: int, modulated: bool):
        super().__init__()
        self.channels, self.modulated = channels, modulated
        self.bn = nn.BatchNorm2d(channels, affine=not modulated)
        self.slot = ""  # its module name in the generator, where identity parameters find it

    def forward(self, x: torch.Tensor, mod: torch.Tensor | None = None) -> torch.Tensor:
        x = self.bn(x)
        if not self.modulated:
            return x
        if mod is None:
            raise InvalidInputError(f"the modulated norm {self.slot!r} needs its (B, 2 * C) mod")
        gamma, beta = mod.split(self.channels, dim=1)
        return x * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]

    def affine(self, mod: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode (scale, shift), each (C,): the norm as ``x * scale + shift``."""
        bn = self.bn
        if bn.running_mean is None or bn.running_var is None:  # BatchNorm2d keeps them
            raise InvalidInputError(f"the norm {self.slot!r} has no running statistics")
        scale = torch.rsqrt(bn.running_var + bn.eps)
        shift = -bn.running_mean * scale
        if self.modulated:
            if mod is None:
                raise InvalidInputError(f"the modulated norm {self.slot!r} needs its mod")
            gamma, beta = mod.reshape(-1).split(self.channels)
            return scale * (1 + gamma), shift * (1 + gamma) + beta
        return scale * bn.weight, shift * bn.weight + bn.bias


def _norm(
    layer: IdentityNorm | None, x: torch.Tensor, mods: dict[str, torch.Tensor] | None
) -> torch.Tensor:
    if layer is None or not layer.modulated:
        return x if layer is None else layer(x)
    if mods is None:
        raise InvalidInputError("a universal student's norms need identity parameters")
    return layer(x, mods[layer.slot])


class SeparableConv(nn.Module):
    """Depthwise 3x3 (optionally strided) then pointwise 1x1, each followed by ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1, norm: bool = False, mod: bool = False):
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, 3, stride, 1, groups=cin)
        self.pw = nn.Conv2d(cin, cout, 1)
        self.dw_norm = IdentityNorm(cin, mod) if norm else None
        self.pw_norm = IdentityNorm(cout, mod) if norm else None

    def forward(self, x: torch.Tensor, mods: dict | None = None) -> torch.Tensor:
        h = F.relu(_norm(self.dw_norm, self.dw(x), mods))
        return F.relu(_norm(self.pw_norm, self.pw(h), mods))


class StudentGenerator(nn.Module):
    """A small U-Net of separable convolutions (see the module docstring for its forms)."""

    notes: dict[str, Any]  # set by checkpoints and distillation: where the weights came from

    def __init__(self, cfg: StudentConfig):
        super().__init__()
        self.cfg = cfg
        ch, n, m = cfg.channels, cfg.norm, cfg.e_dim > 0
        self.stem = nn.Conv2d(3, ch[0], 3, 1, 1)
        self.stem_norm = IdentityNorm(ch[0], m) if n else None
        self.down = nn.ModuleList(
            nn.ModuleList(
                [
                    SeparableConv(ch[i], ch[i + 1], 2, n, m),
                    SeparableConv(ch[i + 1], ch[i + 1], 1, n, m),
                ]
            )
            for i in range(len(ch) - 1)
        )
        self.res = nn.ModuleList(SeparableConv(ch[-1], ch[-1], 1, n, m) for _ in range(cfg.num_res))
        # The skip fusion, a 1x1 conv over concat(upsample(h), skip), is computed as
        # upsample(fuse_up(h)) + fuse_skip(skip): the same function (bilinear upsampling is a
        # convex combination per pixel, so it commutes with a 1x1 conv), but the wide input is
        # projected at the coarse level, and the fine level upsamples ch[i] channels instead
        # of ch[i + 1] and needs no concat.
        self.fuse_up = nn.ModuleList(
            nn.Conv2d(ch[i + 1], ch[i], 1, bias=False) for i in range(len(ch) - 1)
        )
        self.fuse_skip = nn.ModuleList(nn.Conv2d(ch[i], ch[i], 1) for i in range(len(ch) - 1))
        self.fuse_norm = (
            nn.ModuleList(IdentityNorm(ch[i], m) for i in range(len(ch) - 1)) if n else None
        )
        self.up = nn.ModuleList(SeparableConv(ch[i], ch[i], 1, n, m) for i in range(len(ch) - 1))
        self.head = nn.Conv2d(ch[0], 3, 3, 1, 1)
        # Every norm knows its slot (its module name), so identity parameters reach it by name.
        self.norms: dict[str, IdentityNorm] = {}
        for name, module in self.named_modules():
            if isinstance(module, IdentityNorm):
                module.slot = name
                self.norms[name] = module
        self._register_load_state_dict_pre_hook(_split_legacy_fuse, with_module=True)
        if m:
            # P: identity vector -> every norm's (scale, bias); near zero at the start, so a
            # fresh universal student behaves like a plain BatchNorm one.
            self.project = nn.Linear(cfg.e_dim, sum(2 * v.channels for v in self.norms.values()))
            nn.init.normal_(self.project.weight, std=1e-3)
            nn.init.zeros_(self.project.bias)

    @property
    def universal(self) -> bool:
        return self.cfg.e_dim > 0

    def identity_params(self, e: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-norm (scale, bias) for identity vectors e (B, e_dim): {slot: (B, 2 * C)}.

        e is L2-normalised first: the teacher's e has no fixed scale across identities.
        """
        if not self.universal:
            raise InvalidInputError(f"{self.cfg.name} is not a universal student: it takes no e")
        if e.ndim != 2 or e.shape[1] != self.cfg.e_dim:
            raise InvalidInputError(f"e must be (B, {self.cfg.e_dim}), got {tuple(e.shape)}")
        psi = self.project(F.normalize(e, dim=1) * self.cfg.e_dim**0.5)
        chunks = psi.split([2 * v.channels for v in self.norms.values()], dim=1)
        return dict(zip(self.norms, chunks, strict=True))

    def decode(
        self, landmarks: torch.Tensor, e: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(pre-output image (B, 3, S, S), decoder features coarse to fine [(B, C_i, S/2**i, S/2**i)]).

        Training reads both: the pre-output range (kept near [-1, 1] for int8) and the
        features (matched to the teacher's through 1x1 adapters).
        """
        mods = None
        if self.universal:
            if e is None:
                raise InvalidInputError(f"{self.cfg.name} is universal: it needs e (B, e_dim)")
            mods = self.identity_params(e)
            if e.shape[0] != landmarks.shape[0]:
                mods = {k: v.expand(landmarks.shape[0], -1) for k, v in mods.items()}
        h = F.relu(_norm(self.stem_norm, self.stem(landmarks), mods))
        skips = [h]
        for blocks in self.down:
            for block in cast(nn.ModuleList, blocks):
                h = block(h, mods)
            skips.append(h)
        skips.pop()
        for block in self.res:
            h = h + block(h, mods)
        feats = []
        for i in reversed(range(len(self.down))):
            up = F.interpolate(
                self.fuse_up[i](h), scale_factor=2.0, mode="bilinear", align_corners=False
            )
            fused = up + self.fuse_skip[i](skips[i])
            norm = None if self.fuse_norm is None else cast(IdentityNorm, self.fuse_norm[i])
            h = F.relu(_norm(norm, fused, mods))
            h = self.up[i](h, mods)
            feats.append(h)
        return self.head(h), feats

    def finish(self, z: torch.Tensor) -> torch.Tensor:
        """Pre-output -> image in [-1, 1] (tanh or clamp, per the config)."""
        return torch.tanh(z) if self.cfg.output == "tanh" else F.hardtanh(z)

    def forward(self, landmarks: torch.Tensor, e: torch.Tensor | None = None) -> torch.Tensor:
        return self.finish(self.decode(landmarks, e)[0])

    def get_example_inputs(self) -> tuple[torch.Tensor, ...]:
        s = self.cfg.resolution
        if self.universal:
            return (torch.zeros(1, 3, s, s), torch.zeros(1, self.cfg.e_dim))
        return (torch.zeros(1, 3, s, s),)

    def get_eager_model(self) -> nn.Module:
        return self


def _split_legacy_fuse(module: StudentGenerator, state: dict, prefix: str, *_args) -> None:
    """Checkpoints saved before the split hold one ``fuse.{i}`` conv over concat(h, skip):
    its first ch[i + 1] input channels become ``fuse_up.{i}``, the rest ``fuse_skip.{i}``."""
    for i, up in enumerate(module.fuse_up):
        key = f"{prefix}fuse.{i}."
        if key + "weight" not in state:
            continue
        w = state.pop(key + "weight")
        n = up.in_channels
        state[f"{prefix}fuse_up.{i}.weight"] = w[:, :n].contiguous()
        state[f"{prefix}fuse_skip.{i}.weight"] = w[:, n:].contiguous()
        state[f"{prefix}fuse_skip.{i}.bias"] = state.pop(key + "bias")


@torch.no_grad()
def fold_student(student: StudentGenerator, e: torch.Tensor | None = None) -> StudentGenerator:
    """The deployable student (no norms, no e) computing what ``student`` computes in eval mode.

    student: trainable or universal form; e (1, e_dim) is required for a universal one and
    becomes constants in the weights. Each norm's affine ``x * a + t`` after a conv
    ``W x + b`` folds into ``(a W) x + (a b + t)``. A deployable student comes back as a copy.
    """
    if student.universal and (e is None or e.ndim != 2 or e.shape[0] != 1):
        raise InvalidInputError(
            "folding a universal student needs one identity vector e (1, e_dim)"
        )
    if not student.universal and e is not None:
        raise InvalidInputError(f"{student.cfg.name} is not universal: it takes no e")
    mods = student.identity_params(e) if e is not None else {}  # e is given iff universal
    plain = StudentGenerator(replace(student.cfg, norm=False, e_dim=0))
    state = {k: v.clone() for k, v in student.state_dict().items() if k in plain.state_dict()}
    for slot, norm in student.norms.items():
        conv = slot.replace("_norm", "")  # "up.0.pw_norm" -> "up.0.pw"
        scale, shift = norm.affine(mods.get(slot))
        if slot.startswith("fuse_norm."):  # after the sum of two convs: scale both
            conv = conv.replace("fuse", "fuse_skip")  # "fuse_norm.1" -> "fuse_skip.1" (bias)
            up = conv.replace("fuse_skip", "fuse_up")
            state[f"{up}.weight"] = state[f"{up}.weight"] * scale[:, None, None, None]
        state[f"{conv}.weight"] = state[f"{conv}.weight"] * scale[:, None, None, None]
        state[f"{conv}.bias"] = state[f"{conv}.bias"] * scale + shift
    plain.load_state_dict(state, strict=True)
    plain.notes = dict(getattr(student, "notes", {}))
    return plain.eval()


def _student(cfg: StudentConfig, overrides: dict) -> StudentGenerator:
    return StudentGenerator(replace(cfg, **overrides))


@register_model("student")
def student_xs(**overrides) -> StudentGenerator:
    return _student(StudentConfig("student-xs", 128, (12, 24, 48, 64), 1, "clamp"), overrides)


@register_model("student")
def student_s(**overrides) -> StudentGenerator:
    return _student(StudentConfig("student-s", 128, (16, 32, 64, 96), 2, "clamp"), overrides)


@register_model("student")
def student_m(**overrides) -> StudentGenerator:
    return _student(StudentConfig("student-m", 128, (24, 48, 96, 128, 160), 3, "clamp"), overrides)


def create_student(name: str, **overrides) -> StudentGenerator:
    """A registered student; ``norm=True`` gives its training form, ``e_dim=512`` (with
    ``norm=True``) its universal form."""
    return create_model("student", name, **overrides)
