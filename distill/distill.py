"""Per-identity distillation, and the training loop both modes share.

A per-identity student learns to reproduce one enrolled (fine-tuned) teacher. Driving
landmarks are scripted motion on the identity's neutral landmarks (many seeds, small
jitter) plus, optionally, tracked motion (:mod:`talkinghead.distill.motion`). Teacher
frames and decoder features are computed once up front; the student (in its BatchNorm
training form) then trains on them with the losses of :mod:`talkinghead.distill.losses`,
and is folded into its deployable form at the end.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from talkinghead.distill.losses import (
    FeatureAdapters,
    PatchDiscriminator,
    capture_features,
    feature_modules,
    pixel_loss,
    range_loss,
    straight_through_clamp,
)
from talkinghead.distill.motion import scripted_landmarks
from talkinghead.errors import InvalidInputError
from talkinghead.models.student import StudentGenerator, create_student, fold_student
from talkinghead.sdk.landmarks import validate_landmarks68
from talkinghead.sdk.parity import psnr_db
from talkinghead.sdk.rasterize import rasterize_landmarks
from talkinghead.sdk.tensors import to_model_input
from talkinghead.train.losses import hinge_d, hinge_g

log = logging.getLogger(__name__)


@dataclass
class DistillConfig:
    student: str = "student-s"
    steps: int = 1500
    batch_size: int = 8
    lr: float = 2e-3
    sequences: int = 24  # scripted-motion sequences used as driving data
    frames_per_sequence: int = 50
    jitter_px: float = 0.6  # landmark noise, as from a real tracker
    w_grad: float = 1.0
    w_range: float = 1.0  # pre-output beyond [-1, 1] (int8 range of the last conv)
    w_feat: float = 0.1  # teacher decoder features through 1x1 adapters; 0 turns it off
    feat_min_stride: int = (
        2  # match teacher maps at S/2 and coarser (memory: full-res maps are big)
    )
    w_adv: float = 0.02  # hinge against a patch discriminator; 0 turns it off
    adv_start: float = 0.5  # fraction of the steps before the adversarial term starts
    lr_d: float = 2e-4
    seed: int = 0

    def validate(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise InvalidInputError("steps and batch_size must be positive")
        if self.sequences < 1 or self.frames_per_sequence < 1:
            raise InvalidInputError("sequences and frames_per_sequence must be positive")
        if min(self.w_grad, self.w_range, self.w_feat, self.w_adv) < 0 or self.lr <= 0:
            raise InvalidInputError("loss weights must be >= 0 and lr > 0")
        if not 0 <= self.adv_start <= 1:
            raise InvalidInputError(f"adv_start must be in [0, 1], got {self.adv_start}")


def driving_landmarks(neutral68: np.ndarray, cfg: DistillConfig) -> np.ndarray:
    """(sequences * frames, 68, 2) float32 crop px of scripted motion around ``neutral68``."""
    return scripted_landmarks(
        neutral68, cfg.sequences, cfg.frames_per_sequence, cfg.jitter_px, cfg.seed
    )


def landmark_images(landmarks: np.ndarray, size: int) -> torch.Tensor:
    """(N, 68, 2) crop px -> (N, 3, size, size) float32 model input."""
    imgs = np.stack([rasterize_landmarks(lm, size) for lm in landmarks])
    return torch.from_numpy(to_model_input(imgs))


@torch.no_grad()
def teacher_targets(teacher: nn.Module, inputs: torch.Tensor, batch: int = 16) -> torch.Tensor:
    teacher.eval()
    return torch.cat([teacher(inputs[i : i + batch]) for i in range(0, len(inputs), batch)])


@dataclass
class DistillData:
    """Training pairs: landmark images, teacher frames and the teacher's decoder features.

    inputs, targets: (N, 3, S, S) float32. features: per kept teacher level (N, C, h, w)
    float16 (empty without feature matching). ids: (N,) rows of ``identities`` (V, e_dim),
    universal mode only.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    features: list[torch.Tensor] = field(default_factory=list)
    ids: torch.Tensor | None = None
    identities: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.inputs)

    def take(self, idx: torch.Tensor) -> tuple:
        e = None if self.ids is None else self.identities[self.ids[idx]]
        return self.inputs[idx], e, self.targets[idx], [f[idx] for f in self.features]


@torch.no_grad()
def render_teacher(
    teacher: nn.Module, inputs: torch.Tensor, min_stride: int | None, batch: int = 16, **kw
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Teacher frames (N, 3, S, S) and its decoder maps at stride >= ``min_stride`` (fp16).

    ``min_stride`` None skips the features. ``kw`` go to the teacher (e.g. ``psi``).
    """
    teacher.eval()
    size = inputs.shape[-1]
    modules = feature_modules(teacher) if min_stride is not None else []
    outs, feats = [], []
    with capture_features(modules) as store:
        for i in range(0, len(inputs), batch):
            store.clear()
            outs.append(teacher(inputs[i : i + batch], **kw))
            feats.append([f.half() for f in store if size // f.shape[-1] >= min_stride])
    return torch.cat(outs), [torch.cat(level) for level in zip(*feats, strict=True)]


def train_student(
    student: StudentGenerator,
    train: DistillData,
    val: DistillData,
    cfg: DistillConfig,
    progress: bool = True,
) -> tuple[StudentGenerator, dict]:
    """The loop both modes share: ``student`` (training form) learns ``train``.

    Returns the trained student (eval mode, still in training form) and figures on ``val``:
    L1 and PSNR against the teacher, and the number of training pairs.
    """
    x0, e0, _, f0 = train.take(torch.arange(min(2, len(train))))
    with torch.no_grad():
        _, s_feats = student.decode(x0, e0)
    adapters = FeatureAdapters.match(s_feats, f0) if cfg.w_feat > 0 and f0 else None
    params = [*student.parameters(), *(adapters.parameters() if adapters else [])]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps)
    disc = PatchDiscriminator() if cfg.w_adv > 0 else None
    opt_d = torch.optim.Adam(disc.parameters(), cfg.lr_d, betas=(0.0, 0.99)) if disc else None
    adv_from = int(cfg.adv_start * cfg.steps)
    gen = torch.Generator().manual_seed(cfg.seed)
    student.train()
    bar = tqdm(range(cfg.steps), desc=f"distill {student.cfg.name}", disable=not progress)
    for step in bar:
        idx = torch.randint(0, len(train), (cfg.batch_size,), generator=gen)
        x, e, y, t_feats = train.take(idx)
        z, feats = student.decode(x, e)
        out = straight_through_clamp(z) if student.cfg.output == "clamp" else torch.tanh(z)
        loss = pixel_loss(out, y, cfg.w_grad) + cfg.w_range * range_loss(z)
        if adapters is not None:
            loss = loss + cfg.w_feat * adapters(feats, t_feats)
        use_adv = disc is not None and step >= adv_from
        if use_adv:
            loss = loss + cfg.w_adv * hinge_g(disc(out, x).flatten(1).mean(1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if use_adv:
            d_real, d_fake = disc(y, x).flatten(1).mean(1), disc(out.detach(), x).flatten(1).mean(1)
            opt_d.zero_grad(set_to_none=True)
            hinge_d(d_real, d_fake).backward()
            opt_d.step()
        bar.set_postfix(loss=f"{loss.item():.4f}")
    student.eval()
    with torch.no_grad():
        pred = torch.cat(
            [
                student(*val.take(torch.arange(i, min(i + 16, len(val))))[:2])
                for i in range(0, len(val), 16)
            ]
        )
    figures = {
        "val_l1": F.l1_loss(pred, val.targets).item(),
        "val_psnr_db": min(psnr_db(pred.numpy(), val.targets.numpy()), 100.0),
        "train_pairs": len(train),
    }
    return student, figures


def distill_student(
    teacher: nn.Module,
    neutral68: np.ndarray,
    resolution: int,
    cfg: DistillConfig | None = None,
    progress: bool = True,
    extra_landmarks: np.ndarray | None = None,
) -> tuple[StudentGenerator, dict]:
    """Train a ``cfg.student`` to imitate ``teacher`` (landmark image -> image) for one identity.

    teacher: an enrolled generator, (B, 3, S, S) -> (B, 3, S, S). extra_landmarks:
    (M, 68, 2) crop px, e.g. tracked motion, added to the scripted driving set (training only;
    validation stays on the last scripted frames).
    Returns the deployable (folded) student in eval mode and a dict of figures: held-out L1
    and PSNR against the teacher, and the number of training pairs.
    """
    cfg = cfg or DistillConfig()
    neutral68 = validate_landmarks68(neutral68)
    cfg.validate()
    if extra_landmarks is not None:
        extra_landmarks = np.asarray(extra_landmarks, np.float32)
        if extra_landmarks.ndim != 3 or extra_landmarks.shape[1:] != (68, 2):
            raise InvalidInputError(
                f"extra_landmarks must be (M, 68, 2), got {extra_landmarks.shape}"
            )
    torch.manual_seed(cfg.seed)
    student = create_student(cfg.student, resolution=resolution, norm=True)
    lms = driving_landmarks(neutral68, cfg)
    n_val = max(len(lms) // 10, 1)
    train_lms = (
        lms[:-n_val] if extra_landmarks is None else np.concatenate([lms[:-n_val], extra_landmarks])
    )
    min_stride = cfg.feat_min_stride if cfg.w_feat > 0 else None
    log.info("computing %d teacher targets", len(train_lms) + n_val)
    train_x = landmark_images(train_lms, resolution)
    train_y, feats = render_teacher(teacher, train_x, min_stride)
    val_x = landmark_images(lms[-n_val:], resolution)
    val = DistillData(val_x, teacher_targets(teacher, val_x))
    student, figures = train_student(
        student, DistillData(train_x, train_y, feats), val, cfg, progress
    )
    return fold_student(student), figures
