"""Per-identity distillation: a compact student learns to reproduce an enrolled teacher.

Driving landmarks are scripted motion on the identity's neutral landmarks (many seeds),
plus small random jitter, so the student sees the poses a phone will feed it. Teacher
outputs are computed once up front; the student then trains on (landmark image, teacher
frame) pairs with an L1 pixel loss plus an L1 loss on image gradients, which keeps edges.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from talkinghead.errors import InvalidInputError
from talkinghead.models.rasterize import rasterize_landmarks
from talkinghead.models.student import StudentGenerator, create_student
from talkinghead.sdk.landmarks import validate_landmarks68
from talkinghead.sdk.motion import builtin_motion
from talkinghead.sdk.tensors import to_model_input

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
    seed: int = 0


def driving_landmarks(neutral68: np.ndarray, cfg: DistillConfig) -> np.ndarray:
    """(sequences * frames, 68, 2) float32 crop px of scripted motion around ``neutral68``."""
    rng = np.random.default_rng(cfg.seed)
    seqs = [
        builtin_motion(neutral68, cfg.frames_per_sequence, seed=cfg.seed * 1000 + i)
        for i in range(cfg.sequences)
    ]
    lms = np.concatenate(seqs)
    return (lms + rng.normal(0, cfg.jitter_px, lms.shape)).astype(np.float32)


def landmark_images(landmarks: np.ndarray, size: int) -> torch.Tensor:
    """(N, 68, 2) crop px -> (N, 3, size, size) float32 model input."""
    imgs = np.stack([rasterize_landmarks(lm, size) for lm in landmarks])
    return torch.from_numpy(to_model_input(imgs))


@torch.no_grad()
def teacher_targets(teacher: nn.Module, inputs: torch.Tensor, batch: int = 16) -> torch.Tensor:
    teacher.eval()
    return torch.cat([teacher(inputs[i : i + batch]) for i in range(0, len(inputs), batch)])


def _grad_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    dx = lambda t: t[..., :, 1:] - t[..., :, :-1]  # noqa: E731
    dy = lambda t: t[..., 1:, :] - t[..., :-1, :]  # noqa: E731
    return F.l1_loss(dx(a), dx(b)) + F.l1_loss(dy(a), dy(b))


def distill_student(
    teacher: nn.Module,
    neutral68: np.ndarray,
    resolution: int,
    cfg: DistillConfig | None = None,
    progress: bool = True,
) -> tuple[StudentGenerator, dict]:
    """Train a ``cfg.student`` to imitate ``teacher`` (landmark image -> image) for one identity.

    Returns the student (eval mode) and a dict of figures: final losses, held-out L1 and PSNR.
    """
    cfg = cfg or DistillConfig()
    neutral68 = validate_landmarks68(neutral68)
    if cfg.steps < 1 or cfg.batch_size < 1:
        raise InvalidInputError("steps and batch_size must be positive")
    torch.manual_seed(cfg.seed)
    student = create_student(cfg.student, resolution=resolution)
    lms = driving_landmarks(neutral68, cfg)
    inputs = landmark_images(lms, resolution)
    log.info("computing %d teacher targets", len(inputs))
    targets = teacher_targets(teacher, inputs)
    n_val = max(len(inputs) // 10, 1)
    val_x, val_y = inputs[-n_val:], targets[-n_val:]
    train_x, train_y = inputs[:-n_val], targets[:-n_val]
    opt = torch.optim.Adam(student.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps)
    gen = torch.Generator().manual_seed(cfg.seed)
    student.train()
    bar = tqdm(range(cfg.steps), desc=f"distill {cfg.student}", disable=not progress)
    for _ in bar:
        idx = torch.randint(0, len(train_x), (cfg.batch_size,), generator=gen)
        out = student(train_x[idx])
        l1 = F.l1_loss(out, train_y[idx])
        loss = l1 + cfg.w_grad * _grad_l1(out, train_y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(l1=f"{l1.item():.4f}")
    student.eval()
    with torch.no_grad():
        pred = teacher_targets(student, val_x)
    mse = F.mse_loss(pred, val_y).item()
    figures = {
        "val_l1": F.l1_loss(pred, val_y).item(),
        "val_psnr_db": float(10 * np.log10(4.0 / max(mse, 1e-12))),  # range [-1, 1] => peak 2
        "train_pairs": len(train_x),
    }
    return student, figures
