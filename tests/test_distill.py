"""Distillation of a compact student from an enrolled teacher.

The teacher is the committed demo teacher-xs, enrolled feed-forward on the astronaut at
its own 128 px; its generator is fully convolutional, so it renders the 64 px landmark
images the test distils at.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F
from torch import nn

from talkinghead.distill.distill import (
    DistillConfig,
    distill_student,
    driving_landmarks,
    landmark_images,
    teacher_targets,
)
from talkinghead.errors import InvalidInputError
from talkinghead.models.checkpoint import load_checkpoint
from talkinghead.models.student import StudentGenerator, create_student
from talkinghead.sdk.rasterize import rasterize_landmarks
from talkinghead.sdk.tensors import to_model_input
from talkinghead.train.finetune import enrol_feed_forward
from talkinghead.train.pseudo_video import ASTRONAUT_LANDMARKS_68

S = 64  # px, the distillation resolution
_X0, _Y0, _SIDE = 144, 46, 160  # the astronaut's face on the 512 x 512 photo, px
CFG = DistillConfig(
    student="student-xs", steps=40, batch_size=4, lr=1e-2, sequences=3, frames_per_sequence=10
)


def _crop(size: int) -> tuple[np.ndarray, np.ndarray]:
    img = skimage.data.astronaut()[_Y0 : _Y0 + _SIDE, _X0 : _X0 + _SIDE]
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    lms = ((ASTRONAUT_LANDMARKS_68 - [_X0, _Y0]) * (size / _SIDE)).astype(np.float32)
    return img, lms


@pytest.fixture(scope="module")
def enrolled(teacher_checkpoint) -> nn.Module:
    teacher = load_checkpoint(teacher_checkpoint, "teacher")
    s = teacher.cfg.resolution
    img, lms = _crop(s)
    frame = torch.from_numpy(to_model_input(img[None]))
    lm_image = torch.from_numpy(to_model_input(rasterize_landmarks(lms, s)[None]))
    return enrol_feed_forward(teacher, frame, lm_image)


@pytest.fixture(scope="module")
def neutral() -> np.ndarray:
    return _crop(S)[1]


@pytest.fixture(scope="module")
def distilled(enrolled, neutral) -> tuple[StudentGenerator, dict]:
    return distill_student(enrolled, neutral, S, CFG, progress=False)


def _psnr_db(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * np.log10(4.0 / F.mse_loss(a, b).item()))


@pytest.mark.slow  # distils a student (module fixture)
def test_distillation_lowers_held_out_l1(distilled, enrolled, neutral):
    student, _ = distilled
    assert isinstance(student, StudentGenerator) and not student.training
    assert student.cfg.name == "student-xs" and student.cfg.resolution == S
    # Held out: motion from another seed than any the student trained on.
    held_out = DistillConfig(sequences=2, frames_per_sequence=6, seed=CFG.seed + 17)
    x = landmark_images(driving_landmarks(neutral, held_out), S)
    y = teacher_targets(enrolled, x)
    torch.manual_seed(CFG.seed)  # distill_student builds its student right after this seed
    untrained = create_student(CFG.student, resolution=S).eval()
    with torch.no_grad():
        before, after = untrained(x), student(x)
    l1_before, l1_after = F.l1_loss(before, y).item(), F.l1_loss(after, y).item()
    assert l1_after < 0.9 * l1_before, f"held-out L1 {l1_before:.3f} -> {l1_after:.3f}"
    assert _psnr_db(after, y) > _psnr_db(before, y) + 0.5


@pytest.mark.slow  # distils a student (module fixture)
def test_distillation_figures_match_the_student(distilled, enrolled, neutral):
    student, figures = distilled
    n = CFG.sequences * CFG.frames_per_sequence
    n_val = max(n // 10, 1)
    assert figures["train_pairs"] == n - n_val
    assert np.isfinite(figures["val_psnr_db"]) and np.isfinite(figures["val_l1"])
    # The figures are the student's on the last n_val driving frames.
    x = landmark_images(driving_landmarks(neutral, CFG)[-n_val:], S)
    y = teacher_targets(enrolled, x)
    with torch.no_grad():
        pred = student(x)
    assert figures["val_l1"] == pytest.approx(F.l1_loss(pred, y).item(), rel=1e-4)
    assert figures["val_psnr_db"] == pytest.approx(_psnr_db(pred, y), abs=1e-3)


class _MustNotRun(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the teacher ran before the inputs were checked")


@pytest.mark.parametrize(
    "landmarks",
    [
        np.full((68, 2), np.nan, np.float32),
        np.concatenate([ASTRONAUT_LANDMARKS_68[:-1], [[np.inf, 0]]]).astype(np.float32),
        np.zeros((67, 2), np.float32),
        np.zeros((68, 3), np.float32),
        np.zeros((1, 68, 2), np.float32),
        [["a", "b"]] * 68,
    ],
    ids=["nan", "inf", "67-points", "3-coords", "batched", "strings"],
)
def test_bad_neutral_landmarks_are_invalid_input(landmarks):
    with pytest.raises(InvalidInputError):
        distill_student(_MustNotRun(), landmarks, S, CFG, progress=False)


@pytest.mark.parametrize("field", ["steps", "batch_size"])
def test_non_positive_steps_are_invalid_input(neutral, field: str):
    cfg = DistillConfig(**{**CFG.__dict__, field: 0})
    with pytest.raises(InvalidInputError):
        distill_student(_MustNotRun(), neutral, S, cfg, progress=False)
