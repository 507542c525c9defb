"""The full-size teacher of Zakharov et al. (ICCV 2019): embedder E, generator G, discriminator D.

- E maps a frame and its landmark image to an identity vector; K of them are averaged to e.
- G renders the target frame; e reaches every AdaIN layer through the projection P.
- D is a projection discriminator with a per-video vector W_i plus a shared w0 and bias b.

Two forms (``TeacherConfig.form``):

- ``"refine"``, the teacher of the warp-and-refine generator (``models/refiner.py``): G
  takes the refiner's input, ``(B, 7, S, S)`` = warped photo, rasterised target landmarks
  and validity, and returns the frame ``clamp(warped + (1 - m) * correction)`` as the
  student does (``models.refiner.compose_frame``), so the student is distilled from it
  output for output. D judges a frame conditioned on that same 7-channel input. E may
  embed its shots at a lower resolution (``embed_resolution``): an identity vector needs
  no 256 px detail.

  With ``shot_warp`` (the refine variants' default), E also looks at its K shots pixel by
  pixel: each shot is warped to the target's mesh (``train/refine_data.warp_shots``), and
  E's fusion net (:class:`ShotFusion`) weighs them per pixel into one fused warp and its
  validity, which G gets as 4 more input channels. G's correction starts from "the
  shots' pixels minus the target's warp", so its mask chooses, per pixel, between the
  photo's own warp and what the shots saw (the teeth of an open-mouthed shot, the eye of
  an unblinking one). The more shots, the more of what the target's warp lost some shot
  shows: that is how quality rises with K, independent of the identity vector.
- ``"synth"``, the paper's direct synthesis: G turns a landmark image ``(B, 3, S, S)`` into
  every pixel of the face (the pre-warp generator; kept for its checkpoints and the
  side-by-side evaluation).

Images and landmark images are (B, 3, S, S) float32 in [-1, 1].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from talkinghead.errors import InvalidInputError
from talkinghead.models.layers import (
    ResBlock,
    ResBlockDown,
    ResBlockUp,
    SelfAttention,
    conv,
    linear,
    zero_conv,
)
from talkinghead.models.refiner import IN_CHANNELS as REFINER_IN_CHANNELS
from talkinghead.models.refiner import WARP_CHANNELS, compose_frame
from talkinghead.models.registry import create_model, register_model

FORMS = ("synth", "refine")
FUSED_CHANNELS = 4  # the fused shots (RGB) and their validity


@dataclass(frozen=True)
class TeacherConfig:
    """Sizes of one teacher variant. Channel widths double per level, capped at ``max_channels``."""

    name: str
    resolution: int = 128
    base_channels: int = 32
    max_channels: int = 256
    e_dim: int = 512
    num_down: int = 3  # generator down/up levels: the bottleneck is resolution / 2**num_down
    num_res: int = 2  # AdaIN residual blocks at the bottleneck
    disc_levels: int = 5  # D and E down levels
    attention_at: tuple[int, ...] = ()  # resolutions that get self-attention (down paths)
    # G's upsampling path; None means the same as ``attention_at`` (checkpoints saved before
    # the split have no such field and load unchanged).
    attention_up: tuple[int, ...] | None = None
    spectral_norm: bool = True
    num_videos: int = 1  # rows of D's W matrix, one per training video
    extra: dict = field(default_factory=dict)
    form: str = "synth"  # "refine": G corrects a warp (see the module docstring)
    embed_resolution: int | None = None  # E's input size; None: the frame's
    shot_warp: bool = False  # refine form: E fuses its shots warped to the target (G: 11 ch)

    def __post_init__(self) -> None:
        if self.form not in FORMS:
            raise InvalidInputError(f"teacher form must be one of {FORMS}, got {self.form!r}")

    @property
    def g_in_channels(self) -> int:
        """G's input: a landmark image (synth) or the refiner's input (refine), plus the
        fused shots and their validity (``shot_warp``)."""
        if self.form != "refine":
            return 3
        return REFINER_IN_CHANNELS + (FUSED_CHANNELS if self.shot_warp else 0)

    def channels(self, level: int) -> int:
        return min(self.base_channels * 2**level, self.max_channels)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["attention_at"] = list(self.attention_at)
        if self.attention_up is not None:
            d["attention_up"] = list(self.attention_up)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TeacherConfig:
        d = dict(d)
        d["attention_at"] = tuple(d.get("attention_at", ()))
        if d.get("attention_up") is not None:
            d["attention_up"] = tuple(d["attention_up"])
        return cls(**d)

    @property
    def attention_up_at(self) -> tuple[int, ...]:
        return self.attention_at if self.attention_up is None else self.attention_up


def down_path(
    cfg: TeacherConfig, cin: int, levels: int, channels, norm: bool = False
) -> tuple[list[nn.Module], int]:
    """Residual downsampling blocks, with self-attention after the levels that ask for it.

    ``channels(level)`` gives each level's width; ``norm`` adds instance norm from level 1.
    Returns the blocks and the last width.
    """
    sn, res = cfg.spectral_norm, cfg.resolution
    blocks: list[nn.Module] = []
    for level in range(levels):
        cout = channels(level)
        blocks.append(ResBlockDown(cin, cout, norm=norm and level > 0, sn=sn, first=level == 0))
        res //= 2
        if res in cfg.attention_at:
            blocks.append(SelfAttention(cout, sn))
        cin = cout
    return blocks, cin


def match_colour(warped: torch.Tensor, validity: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Warped shots ``(B, K, 3, S, S)`` with their validity ``(B, K, 1, S, S)`` brought to
    the light of the target's warp ``x[:, :3]`` (validity ``x[:, 6]``), all in [-1, 1]:
    per shot and channel, ``(shot - mean) * spread_target / spread + mean_target`` over
    the pixels both have. A shot sharing too few pixels with the target is left as it is."""
    both = (validity + 1) / 2 * ((x[:, None, 6:7] + 1) / 2)  # (B, K, 1, S, S)
    n = both.sum(dim=(3, 4), keepdim=True)
    target = x[:, None, WARP_CHANNELS]
    mean_s = (warped * both).sum(dim=(3, 4), keepdim=True) / (n + 1e-6)
    mean_t = (target * both).sum(dim=(3, 4), keepdim=True) / (n + 1e-6)
    var_s = ((warped - mean_s) ** 2 * both).sum(dim=(3, 4), keepdim=True) / (n + 1e-6)
    var_t = ((target - mean_t) ** 2 * both).sum(dim=(3, 4), keepdim=True) / (n + 1e-6)
    gain = ((var_t + 1e-6) / (var_s + 1e-6)).sqrt().clamp(0.5, 2.0)
    matched = ((warped - mean_s) * gain + mean_t).clamp(-1, 1)
    enough = n > 0.01 * warped.shape[-1] * warped.shape[-2]
    return torch.where(enough, matched, warped)


class ShotFusion(nn.Module):
    """E's pixel path: K shots warped to the target -> one fused warp and its validity.

    Each warped shot is first brought to the target's light: an affine colour match per
    channel (mean and spread) over the pixels that both the shot and the target's own warp
    have (:func:`match_colour`); shots of a person are taken under other light, and
    uncorrected they lose to the target's warp everywhere. Then, per shot, a small conv
    net at half resolution scores every pixel from the matched shot, its validity and the
    target's own input (warp, landmarks, validity); the scores, plus the log of the shot's
    validity (so a shot with no pixels somewhere starts out ignored there), are soft-maxed
    over the K shots.
    """

    def __init__(self, width: int = 16):
        super().__init__()
        cin = FUSED_CHANNELS + REFINER_IN_CHANNELS
        self.net = nn.Sequential(
            nn.Conv2d(cin, width, 3, 1, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, width, 3, 1, 1),
            nn.LeakyReLU(0.2),
            zero_conv(nn.Conv2d(width, 1, 3, 1, 1)),
        )

    def forward(
        self, x: torch.Tensor, warped: torch.Tensor, validity: torch.Tensor
    ) -> torch.Tensor:
        """``x (B, 7, S, S)``, ``warped (B, K, 3, S, S)``, ``validity (B, K, 1, S, S)``, all
        in [-1, 1] -> G's input ``(B, 11, S, S)``. K = 0 fuses nothing (validity -1)."""
        b, k, _, s, _ = warped.shape
        if k == 0:
            empty = torch.cat([x[:, WARP_CHANNELS], torch.full_like(x[:, :1], -1.0)], dim=1)
            return torch.cat([x, empty], dim=1)
        warped = match_colour(warped, validity, x)
        shots = torch.cat([warped, validity], dim=2)  # (B, K, 4, S, S)
        h = torch.cat([shots, x[:, None].expand(-1, k, -1, -1, -1)], dim=2)
        h = F.avg_pool2d(h.flatten(0, 1), 2)
        score = F.interpolate(self.net(h), size=(s, s), mode="bilinear", align_corners=False)
        v = (validity + 1) / 2
        score = score.view(b, k, 1, s, s) + torch.log(v + 1e-2)
        weight = torch.softmax(score, dim=1)
        fused = (weight * shots).sum(dim=1)  # RGB and validity, still in [-1, 1]
        return torch.cat([x, fused], dim=1)


class Embedder(nn.Module):
    """E: (frame, landmark image) -> identity vector e, (B, e_dim): residual downsampling, sum pooling, projection."""

    def __init__(self, cfg: TeacherConfig):
        super().__init__()
        self.size = cfg.embed_resolution
        blocks, cin = down_path(cfg, 6, cfg.disc_levels, cfg.channels)
        self.blocks = nn.Sequential(*blocks)
        self.to_e = linear(cin, cfg.e_dim, cfg.spectral_norm)
        self.fuse = ShotFusion() if cfg.form == "refine" and cfg.shot_warp else None

    def forward(self, frames: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        x = torch.cat([frames, landmarks], dim=1)
        if self.size is not None and x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="area")
        h = self.blocks(x)
        return self.to_e(F.relu(h).sum(dim=(2, 3)))


class Generator(nn.Module):
    """G: landmark image (B, 3, S, S) (synth) or refiner input (B, 7, S, S) (refine), and e
    (B, e_dim) or AdaIN params psi -> image (B, 3, S, S)."""

    def __init__(self, cfg: TeacherConfig):
        super().__init__()
        sn = cfg.spectral_norm
        self.refine = cfg.form == "refine"
        self.shot_warp = self.refine and cfg.shot_warp
        self.in_channels = cin = cfg.g_in_channels
        blocks, cin = down_path(cfg, cin, cfg.num_down, lambda level: cfg.channels(level + 1), True)
        self.down = nn.ModuleList(blocks)
        res = cfg.resolution // 2**cfg.num_down
        self.res = nn.ModuleList(ResBlock(cin, adain=True, sn=sn) for _ in range(cfg.num_res))
        self.up = nn.ModuleList()
        for level in reversed(range(cfg.num_down)):
            cout = cfg.channels(level)
            self.up.append(ResBlockUp(cin, cout, sn=sn))
            res *= 2
            if res in cfg.attention_up_at:
                self.up.append(SelfAttention(cout, sn))
            cin = cout
        if self.refine:
            # The warp's own pixels reach the full-resolution head directly (seams, edges),
            # and the head starts as "pass the warp through" (zero correction, mask 1/2).
            self.in_skip = conv(cfg.g_in_channels, cin, 1, sn)
            self.out = zero_conv(nn.Conv2d(cin, 4, 3, 1, 1))
        else:
            self.out = conv(cin, 3, 3, sn)
        self.adain = [
            a for m in [*self.res, *self.up] if hasattr(m, "adain_layers") for a in m.adain_layers()
        ]
        self.psi_dim = sum(2 * a.channels for a in self.adain)
        # P: the projection from e to every AdaIN scale and bias (the paper's matrix P).
        self.project = linear(cfg.e_dim, self.psi_dim, sn=False)
        nn.init.normal_(self.project.weight, std=1e-3)
        nn.init.zeros_(self.project.bias)

    def psi(self, e: torch.Tensor) -> torch.Tensor:
        """AdaIN parameters for identity vectors e: (B, e_dim) -> (B, psi_dim)."""
        return self.project(e)

    def forward(
        self,
        landmarks: torch.Tensor,
        e: torch.Tensor | None = None,
        psi: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if psi is None:
            if e is None:
                raise ValueError("Generator needs e or psi")
            psi = self.psi(e)
        if psi.shape[0] != landmarks.shape[0]:
            psi = psi.expand(landmarks.shape[0], -1)
        chunks = list(psi.split([2 * a.channels for a in self.adain], dim=1))
        h = landmarks
        for m in self.down:
            h = m(h)
        for m in [*self.res, *self.up]:
            if isinstance(m, SelfAttention):
                h = m(h)
            else:
                h = m(h, [chunks.pop(0), chunks.pop(0)])
        if not self.refine:
            return torch.tanh(self.out(F.relu(h)))
        # Leaky: with a plain ReLU every unit feeding the zero-started head died within
        # ten steps on the CPU runs (the head's gradient fell to 1e-8), and G never left
        # "pass the warp through".
        out = self.out(F.leaky_relu(h + self.in_skip(landmarks), 0.2))
        warped, correction = landmarks[:, WARP_CHANNELS], out[:, :3]
        if self.shot_warp:  # the correction starts as "take the shots' pixels"
            fused = landmarks[:, REFINER_IN_CHANNELS : REFINER_IN_CHANNELS + 3]
            correction = correction + (fused - warped)
        # The student's composition (models/refiner.py): mask 1 - sigmoid(logit) keeps the warp.
        return compose_frame(warped, correction, 1 - torch.sigmoid(out[:, 3:4]))


class Discriminator(nn.Module):
    """D: projection discriminator. Returns the realism score (B,) and intermediate features."""

    def __init__(self, cfg: TeacherConfig):
        super().__init__()
        sn = cfg.spectral_norm
        blocks, cin = down_path(cfg, 3 + cfg.g_in_channels, cfg.disc_levels, cfg.channels)
        self.blocks = nn.ModuleList(blocks)
        self.blocks.append(ResBlock(cin, sn=sn))
        self.to_v = linear(cin, cfg.e_dim, sn)  # v lives in the same space as e and W_i
        self.W = nn.Embedding(cfg.num_videos, cfg.e_dim)
        nn.init.normal_(self.W.weight, std=0.02)
        self.w0 = nn.Parameter(torch.zeros(cfg.e_dim))
        self.b = nn.Parameter(torch.zeros(()))

    def features(self, images: torch.Tensor, landmarks: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        h = torch.cat([images, landmarks], dim=1)
        for m in self.blocks:
            h = m(h)
            feats.append(h)
        return feats

    def forward(
        self,
        images: torch.Tensor,
        landmarks: torch.Tensor,
        video_idx: torch.Tensor | None = None,
        w: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``w`` replaces W[video_idx] (few-shot fine-tuning initialises it from e)."""
        feats = self.features(images, landmarks)
        v = self.to_v(F.relu(feats[-1]).sum(dim=(2, 3)))
        if w is None:
            w = self.W(video_idx)
        score = (v * (w + self.w0)).sum(dim=1) + self.b
        return score, feats


class Teacher(nn.Module):
    """The three networks of one variant, saved and loaded together."""

    def __init__(self, cfg: TeacherConfig):
        super().__init__()
        self.cfg = cfg
        self.E = Embedder(cfg)
        self.G = Generator(cfg)
        self.D = Discriminator(cfg)

    @torch.no_grad()
    def embed(self, frames: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """Average identity over K shots: (K, 3, S, S) x 2 -> e (1, e_dim)."""
        return self.E(frames, landmarks).mean(dim=0, keepdim=True)

    def g_input(
        self,
        x: torch.Tensor,
        warped: torch.Tensor | None = None,
        validity: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """G's input from the refiner's input ``x (B, 7, S, S)`` and, with ``shot_warp``,
        the K shots warped to each target, ``(B, K, 3, S, S)`` and ``(B, K, 1, S, S)`` in
        [-1, 1] (None: no shots). Without ``shot_warp``: ``x`` itself."""
        if self.E.fuse is None:
            return x
        if warped is None or validity is None:
            s = x.shape[-1]
            warped, validity = x.new_zeros(len(x), 0, 3, s, s), x.new_zeros(len(x), 0, 1, s, s)
        if warped.shape[:2] != validity.shape[:2] or warped.shape[0] != x.shape[0]:
            raise InvalidInputError(
                f"warped shots {tuple(warped.shape)} and validity {tuple(validity.shape)} "
                f"do not match the batch {tuple(x.shape)}"
            )
        return self.E.fuse(x, warped, validity)


def _teacher(cfg: TeacherConfig, overrides: dict) -> Teacher:
    return Teacher(replace(cfg, **overrides))


@register_model("teacher")
def teacher_xs(**overrides) -> Teacher:
    """CPU-sized teacher at 128 px: the demo model (trainable in minutes on 2 cores)."""
    return _teacher(TeacherConfig("teacher-xs", 128, 16, 128, 512, 3, 2, 5, ()), overrides)


@register_model("teacher")
def teacher_s(**overrides) -> Teacher:
    """Small teacher at 128 px with self-attention at 32 px."""
    return _teacher(TeacherConfig("teacher-s", 128, 48, 384, 512, 4, 3, 5, (32,)), overrides)


@register_model("teacher")
def teacher_256(**overrides) -> Teacher:
    """The paper's size at 256 px (GPU training): 512-d e, channels 64 -> 512.

    Self-attention at 32 px in every downsampling path (E, D, G's encoder) and at 64 px in
    G's upsampling path, where the paper puts it.
    """
    cfg = TeacherConfig("teacher-256", 256, 64, 512, 512, 4, 5, 6, (32,), attention_up=(64,))
    return _teacher(cfg, overrides)


@register_model("teacher")
def teacher_refine_xs(**overrides) -> Teacher:
    """The refine-form teacher sized for CPU training at 256 px (channels 16 -> 128, E at 128 px)."""
    cfg = TeacherConfig(
        "teacher-refine-xs",
        256,
        16,
        128,
        512,
        3,
        2,
        5,
        (),
        form="refine",
        embed_resolution=128,
        shot_warp=True,
    )
    return _teacher(cfg, overrides)


@register_model("teacher")
def teacher_refine_256(**overrides) -> Teacher:
    """The refine-form teacher at the paper's size (GPU training): channels 64 -> 512."""
    cfg = TeacherConfig(
        "teacher-refine-256",
        256,
        64,
        512,
        512,
        4,
        5,
        6,
        (32,),
        attention_up=(64,),
        form="refine",
        shot_warp=True,
    )
    return _teacher(cfg, overrides)


def create_teacher(name: str, **overrides) -> Teacher:
    return create_model("teacher", name, **overrides)
