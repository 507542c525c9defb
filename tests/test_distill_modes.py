"""Student forms (training, universal, deployable), folding, and the two distillation modes.

Tiny sizes throughout: 32-64 px, narrow teachers, a handful of steps.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from talkinghead.distill.distill import DistillConfig, DistillData, train_student
from talkinghead.distill.losses import FeatureAdapters, PatchDiscriminator
from talkinghead.distill.universal import distill_universal, enrol_universal
from talkinghead.errors import CheckpointError, InvalidInputError
from talkinghead.models.checkpoint import load_checkpoint, save_checkpoint
from talkinghead.models.registry import list_models
from talkinghead.models.student import create_student, fold_student
from talkinghead.models.teacher import create_teacher
from talkinghead.train.data import VideoSet
from talkinghead.train.pseudo_video import ASTRONAUT_LANDMARKS_68

STUDENTS = list_models("student")
S = 32
TINY = DistillConfig(
    student="student-xs",
    steps=4,
    batch_size=2,
    lr=1e-2,
    sequences=1,
    frames_per_sequence=6,
    adv_start=0.0,
)


def _randomise_norms(student) -> None:
    """Running statistics and affines far from their identity init, so folding has work to do."""
    g = torch.Generator().manual_seed(3)
    for norm in student.norms.values():
        bn = norm.bn
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=g))
        bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
        if bn.affine:
            bn.weight.data.copy_(torch.randn(bn.num_features, generator=g))
            bn.bias.data.copy_(torch.randn(bn.num_features, generator=g))
    if student.universal:
        nn.init.normal_(student.project.weight, std=0.1)


def _x(b: int = 2, s: int = S, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, s, s, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("name", STUDENTS)
def test_folded_student_equals_its_training_form(name: str):
    torch.manual_seed(0)
    student = create_student(name, resolution=S, norm=True)
    _randomise_norms(student)
    student.eval()
    folded = fold_student(student)
    assert {type(m) for m in folded.modules() if not list(m.children())} == {nn.Conv2d}
    assert not folded.cfg.norm and folded.cfg.e_dim == 0
    with torch.no_grad():
        torch.testing.assert_close(folded(_x()), student(_x()), rtol=0, atol=1e-5)


def test_universal_student_folds_per_identity_and_depends_on_it(tmp_path):
    torch.manual_seed(0)
    student = create_student("student-s", resolution=S, norm=True, e_dim=16)
    _randomise_norms(student)
    student.eval()
    e1, e2 = torch.randn(1, 16), torch.randn(1, 16)
    x = _x()
    with torch.no_grad():
        out1, out2 = student(x, e1), student(x, e2)
        folded1 = fold_student(student, e1)
        torch.testing.assert_close(folded1(x), out1, rtol=0, atol=1e-5)
        torch.testing.assert_close(fold_student(student, e2)(x), out2, rtol=0, atol=1e-5)
    assert (out1 - out2).abs().mean() > 0.01, "the identity vector must change the output"
    # The folded student is an ordinary checkpoint: it saves, loads and runs the same.
    path = save_checkpoint(tmp_path / "u.safetensors", folded1, "student", identity="a")
    with torch.no_grad():
        torch.testing.assert_close(load_checkpoint(path, "student")(x), out1, rtol=0, atol=1e-5)
    # So does the universal student itself (BatchNorm statistics and the projection).
    upath = save_checkpoint(tmp_path / "univ.safetensors", student, "student")
    with torch.no_grad():
        torch.testing.assert_close(load_checkpoint(upath, "student").eval()(x, e2), out2)


def test_folding_needs_exactly_the_identity_it_can_use():
    uni = create_student("student-xs", resolution=S, norm=True, e_dim=8).eval()
    with pytest.raises(InvalidInputError):
        fold_student(uni)
    with pytest.raises(InvalidInputError):
        fold_student(uni, torch.zeros(2, 8))
    with pytest.raises(InvalidInputError):
        uni(_x(), torch.zeros(1, 9))
    with pytest.raises(InvalidInputError):
        fold_student(create_student("student-xs", resolution=S), torch.zeros(1, 8))
    with pytest.raises(InvalidInputError):
        create_student("student-xs", e_dim=8)  # universal without norms cannot fold


def test_feature_adapters_pair_maps_by_size():
    student_feats = [torch.zeros(1, 8, 4, 4), torch.zeros(1, 4, 8, 8), torch.zeros(1, 2, 16, 16)]
    teacher_feats = [torch.ones(1, 32, 4, 4), torch.ones(1, 16, 8, 8)]
    adapters = FeatureAdapters.match(student_feats, teacher_feats)
    assert adapters.pairs == [(0, 0), (1, 1)]
    assert [c.in_channels for c in adapters.convs] == [8, 4]
    assert [c.out_channels for c in adapters.convs] == [32, 16]
    assert float(adapters(student_feats, teacher_feats)) > 0
    assert PatchDiscriminator()(_x(2, S), _x(2, S)).shape == (2, 1, S // 8, S // 8)


@pytest.fixture(scope="module")
def tiny_teacher():
    torch.manual_seed(0)
    return create_teacher(
        "teacher-xs", resolution=64, base_channels=4, max_channels=16, e_dim=16
    ).eval()


def _videos(n: int, s: int, seed: int = 0) -> VideoSet:
    """n short videos of distinct random 'faces' with the astronaut's landmarks scaled to s px."""
    rng = np.random.default_rng(seed)
    lms = (ASTRONAUT_LANDMARKS_68 - ASTRONAUT_LANDMARKS_68.min(0)) * (0.7 * s / 160) + 0.15 * s
    frames = rng.integers(0, 256, (n, 3, s, s, 3), dtype=np.uint8)
    landmarks = np.broadcast_to(lms.astype(np.float32), (n, 3, 68, 2)).copy()
    return VideoSet(frames, landmarks, [f"v{i}" for i in range(n)])


@pytest.mark.slow  # distils a universal student
def test_universal_distillation_runs_unseen_identities(tiny_teacher):
    videos = _videos(3, 64)
    student, figures = distill_universal(
        tiny_teacher, videos, TINY, shots=2, held_out=1, progress=False
    )
    assert student.universal and not student.training and figures["identities"] == 2
    assert np.isfinite([figures["val_psnr_db"], figures["held_out_psnr_db"]]).all()
    # A new avatar: embed its shots, fold; the result is what the universal student renders.
    shots = torch.from_numpy(videos.frames[2, :2]).permute(0, 3, 1, 2).float() / 127.5 - 1
    from talkinghead.distill.distill import landmark_images

    lm_imgs = landmark_images(videos.landmarks[2, :2], 64)
    deployable = enrol_universal(student, tiny_teacher, shots, lm_imgs)
    e = tiny_teacher.embed(shots, lm_imgs)
    with torch.no_grad():
        torch.testing.assert_close(deployable(lm_imgs), student(lm_imgs, e), rtol=0, atol=1e-4)


def test_universal_distillation_rejects_mismatched_resolutions(tiny_teacher):
    with pytest.raises(InvalidInputError, match="resolutions do not match"):
        distill_universal(tiny_teacher, _videos(2, 32), TINY, progress=False)


def test_teacher_of_another_variant_is_refused_before_training(tmp_path, tiny_teacher):
    from talkinghead.distill.universal import load_teacher

    path = save_checkpoint(tmp_path / "t.safetensors", tiny_teacher, "teacher")
    with pytest.raises(CheckpointError, match="teacher-256"):
        load_teacher(path, "teacher-256")
    assert load_teacher(path, "teacher-xs").cfg.name == "teacher-xs"


@pytest.mark.slow  # trains a student
def test_training_moves_a_per_identity_student_towards_its_targets():
    torch.manual_seed(0)
    student = create_student("student-xs", resolution=S, norm=True)
    x = _x(6, S, 1)
    y = torch.tanh(x.mean(1, keepdim=True).expand(-1, 3, -1, -1) * 3)
    data = DistillData(x, y)
    cfg = DistillConfig(student="student-xs", steps=30, batch_size=4, lr=1e-2, w_adv=0.0)
    with torch.no_grad():
        before = (create_student("student-xs", resolution=S)(x) - y).abs().mean()
    trained, figures = train_student(student, data, data, cfg, progress=False)
    assert figures["val_l1"] < 0.8 * float(before)
