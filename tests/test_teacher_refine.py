"""The refine-form teacher: episodes with shots, meta-training, FF and FT enrolment, and
the student's distillation from it (tiny sizes; the real run is in docs/generator.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from talkinghead.errors import InvalidInputError
from talkinghead.train.refine import to_unit

S = 64  # px
pytestmark = pytest.mark.slow  # trains a teacher and students (skipped by make test-fast)


@pytest.fixture(scope="module")
def shot_pairs(astronaut, face_landmarker_task):
    from talkinghead.train.refine_data import make_refine_pairs, track_photos

    tracked = track_photos({"astronaut": astronaut}, mirror=True)
    return make_refine_pairs(tracked, 5, size=S, seed=2, progress=False, with_shots=True)


@pytest.fixture(scope="module")
def teacher(shot_pairs):
    from talkinghead.train.meta_refine import RefineMetaConfig, meta_train_refine

    torch.manual_seed(0)
    t, history = meta_train_refine(shot_pairs, RefineMetaConfig(steps=6, k_max=3), progress=False)
    assert len(history) == 6 and all(np.isfinite(h["loss_g"]) for h in history)
    assert {h["k"] for h in history} <= {1, 2, 3}
    return t


def test_pairs_carry_shots_of_the_same_photo(shot_pairs):
    from talkinghead.train.meta_refine import Episodes

    p = shot_pairs
    assert p.shots.shape == p.shot_landmarks.shape == (10, S, S, 3)
    assert p.shot_meshes.shape == (10, 478, 3) and p.ids.tolist() == [0] * 5 + [1] * 5
    # A shot is the degraded source at its own pose: not the target, nor another shot.
    assert np.abs(p.shots[0].astype(int) - p.target[0]).mean() > 1.0
    assert np.abs(p.shots[0].astype(int) - p.shots[1]).mean() > 1.0
    ep = Episodes.from_pairs(p)
    others = ep.others(2)
    assert 2 not in others and set(others) == {0, 1, 3, 4}
    shots, lms = ep.shots_for(7, 4, np.random.default_rng(0))
    assert shots.shape == lms.shape == (4, 3, S, S) and shots.min() >= -1 and shots.max() <= 1
    with pytest.raises(InvalidInputError, match="other pairs"):
        ep.shots_for(0, 5, np.random.default_rng(0))


def test_pairs_without_shots_are_refused(shot_pairs):
    from dataclasses import replace

    from talkinghead.train.meta_refine import Episodes

    with pytest.raises(InvalidInputError, match="with_shots"):
        Episodes.from_pairs(replace(shot_pairs, shots=None))


def test_feed_forward_uses_the_shots(teacher, shot_pairs):
    from talkinghead.train.meta_refine import Episodes, feed_forward

    ep = Episodes.from_pairs(shot_pairs)
    x = to_unit(ep.x[:2])
    a = feed_forward(teacher, x, *ep.shots_for(0, 1, np.random.default_rng(1)))
    b = feed_forward(teacher, x, to_unit(ep.shots[5:8]), to_unit(ep.shot_lms[5:8]))
    assert a.shape == (2, 3, S, S) and torch.isfinite(a).all()
    assert (a - b).abs().max() > 0, "other shots, same frame: E does not reach G"


def test_fine_tune_fits_the_shots_and_keeps_the_original(teacher, shot_pairs):
    from talkinghead.sdk.landmarks import mediapipe_to_68
    from talkinghead.train.meta_refine import fine_tune
    from talkinghead.train.refine import pairs_to_tensors
    from talkinghead.train.refine_data import RefinePairs, make_pair

    shots, meshes = shot_pairs.shots[:3], shot_pairs.shot_meshes[:3]
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    tuned = fine_tune(teacher, shots, meshes, steps=25, lr=1e-3, seed=0)
    for k, v in teacher.state_dict().items():
        torch.testing.assert_close(v, before[k])  # FT works on a copy
    # Pairs made from the shots as FT makes them (same seed): the tuned copy fits them
    # better than the teacher's feed-forward answer.
    rng = np.random.default_rng(0)
    made = [
        make_pair(s, m.astype(np.float64), mediapipe_to_68(m), S, rng)
        for s, m in zip(shots, meshes, strict=True)
        for _ in range(2)
    ]
    x, target = (
        to_unit(t)
        for t in pairs_to_tensors(RefinePairs(*map(np.stack, zip(*made, strict=True)), None))
    )
    from talkinghead.train.meta_refine import embed

    shot_t = to_unit(torch.from_numpy(np.ascontiguousarray(np.moveaxis(shots, -1, 1))))
    lm_t = to_unit(
        torch.from_numpy(np.ascontiguousarray(np.moveaxis(shot_pairs.shot_landmarks[:3], -1, 1)))
    )
    with torch.no_grad():
        ff = teacher.G(x, embed(teacher, shot_t, lm_t))
        ft = tuned.G(x, torch.zeros(1, teacher.cfg.e_dim))  # psi is baked in
    assert (ft - target).abs().mean() < (ff - target).abs().mean()
    with pytest.raises(InvalidInputError):
        fine_tune(teacher, shots, meshes[:2])


def test_distillation_pulls_the_student_to_the_teachers_frames(teacher, shot_pairs):
    from talkinghead.distill.refiner import distill_refiner, teacher_frames
    from talkinghead.models.teacher import create_teacher
    from talkinghead.train.refine import RefineTrainConfig, refine_frames

    frames = teacher_frames(teacher, shot_pairs, k=2, progress=False)
    assert frames.shape == shot_pairs.target.shape and frames.dtype == np.uint8
    with pytest.raises(InvalidInputError, match="refine-form"):
        teacher_frames(create_teacher("teacher-xs", resolution=S), shot_pairs)
    # A teacher whose frames are all bright: the more weight on it, the brighter the student.
    bright = np.full_like(frames, 220)
    x = np.concatenate(
        [shot_pairs.warped, shot_pairs.landmarks, shot_pairs.validity[..., None]], axis=-1
    )
    means = []
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        cfg = RefineTrainConfig(steps=30, batch=4, patch=48, lr=5e-3, teacher_weight=weight)
        student, _ = distill_refiner(teacher, shot_pairs, cfg=cfg, frames=bright, progress=False)
        means.append(refine_frames(student, x).mean())
    assert means[1] > means[0] + 10
