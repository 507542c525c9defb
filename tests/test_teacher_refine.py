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
    assert p.shot_meshes.shape == p.target_meshes.shape == (10, 478, 3)
    assert p.ids.tolist() == [0] * 5 + [1] * 5
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
    # The same shots warped to the target: where both have the photo's pixels, a shot
    # warped to pair 7's mesh lands on pair 7's face (correlation, the colour jitter apart).
    shots, lms, warped, validity = ep.episode(7, 3, np.random.default_rng(0))
    assert warped.shape == (1, 3, 3, S, S) and validity.shape == (1, 3, 1, S, S)
    target = to_unit(torch.from_numpy(p.target[7])).permute(2, 0, 1)
    for i in range(3):
        both = (validity[0, i, 0] > 0.9) & (ep.x[7, 6] > 250)
        assert _corr(warped[0, i], target, both) > max(0.7, _corr(shots[i], target, both) + 0.1)


def _corr(a: torch.Tensor, b: torch.Tensor, where: torch.Tensor) -> float:
    """Mean over channels of the Pearson correlation of ``a`` and ``b (3, S, S)`` at ``where``."""
    return float(np.mean([np.corrcoef(a[c][where], b[c][where])[0, 1] for c in range(3)]))


def test_pairs_without_shots_are_refused(shot_pairs):
    from dataclasses import replace

    from talkinghead.train.meta_refine import Episodes

    with pytest.raises(InvalidInputError, match="with_shots"):
        Episodes.from_pairs(replace(shot_pairs, shots=None))


def test_feed_forward_uses_the_shots(teacher, shot_pairs):
    from talkinghead.train.meta_refine import Episodes, feed_forward

    ep = Episodes.from_pairs(shot_pairs)
    x = to_unit(ep.x[:1])
    a = feed_forward(teacher, x, *ep.episode(0, 1, np.random.default_rng(1)))
    b = feed_forward(teacher, x, *ep.episode(0, 3, np.random.default_rng(2)))
    assert a.shape == (1, 3, S, S) and torch.isfinite(a).all()
    assert (a - b).abs().max() > 0, "other shots, same frame: E does not reach G"
    # Without the warped shots the frame is the shot-less answer, not an error.
    c = feed_forward(teacher, x, *ep.shots_for(0, 1, np.random.default_rng(1)))
    assert c.shape == a.shape and (a - c).abs().max() > 0


def test_shots_are_brought_to_the_targets_light():
    from talkinghead.models.teacher import match_colour

    g = torch.Generator().manual_seed(0)
    x = torch.zeros(1, 7, 32, 32)
    x[:, :3] = torch.rand(1, 3, 32, 32, generator=g) - 0.5
    x[:, 6] = 1.0
    x[:, 6, :, :4] = -1.0  # the target's warp has no pixels there: not used for the match
    x[:, :3, :, :4] = 0.9
    darker = (x[:, None, :3] * 0.6 - 0.2).clone()  # the same face, other light
    validity = torch.ones(1, 1, 1, 32, 32)
    m = match_colour(darker, validity, x)
    torch.testing.assert_close(m[0, 0, :, :, 4:], x[0, :3, :, 4:], atol=1e-3, rtol=0)
    # A shot that shares no pixels with the target keeps its own colours.
    torch.testing.assert_close(match_colour(darker, -validity, x), darker)


def test_fusion_takes_each_pixel_from_the_shots_that_saw_it():
    from talkinghead.models.teacher import ShotFusion, create_teacher

    fuse = ShotFusion()
    x = torch.zeros(2, 7, 16, 16)
    x[:, 6] = -1.0  # the target's warp lost every pixel: the shots fill it
    warped = torch.stack([torch.full((2, 3, 16, 16), 0.8), torch.full((2, 3, 16, 16), -0.8)], 1)
    validity = torch.full((2, 2, 1, 16, 16), -1.0)
    validity[:, 0, :, :, :8] = 1.0  # shot 0 saw the left half,
    validity[:, 1, :, :, 8:] = 1.0  # shot 1 the right half
    g = fuse(x, warped, validity)
    assert g.shape == (2, 11, 16, 16)
    torch.testing.assert_close(g[:, :7], x)
    assert (g[:, 7:10, :, :8] > 0.75).all() and (g[:, 7:10, :, 8:] < -0.75).all()
    assert (g[:, 10] > 0.95).all()  # some shot saw every pixel
    empty = fuse(x, warped[:, :0], validity[:, :0])  # K = 0: the target's own warp
    torch.testing.assert_close(empty[:, 7:10], x[:, :3])
    assert (empty[:, 10] == -1).all()
    t = create_teacher("teacher-refine-xs", resolution=64)
    with pytest.raises(InvalidInputError, match="do not match"):
        t.g_input(
            torch.zeros(2, 7, 64, 64), torch.zeros(1, 3, 3, 64, 64), torch.zeros(1, 3, 1, 64, 64)
        )
    # A fresh G keeps half of the target's warp and takes half of the shots' pixels.
    x = torch.zeros(1, 7, 64, 64)
    x[:, 6] = -1.0
    g = t.g_input(x, torch.full((1, 1, 3, 64, 64), 0.5), torch.ones(1, 1, 1, 64, 64))
    frame = t.G(g, torch.zeros(1, t.cfg.e_dim))
    torch.testing.assert_close(frame, torch.full_like(frame, 0.25), atol=1e-4, rtol=0)


def test_fine_tune_fits_the_shots_and_keeps_the_original(teacher, shot_pairs):
    from talkinghead.train.meta_refine import fine_tune, ft_pairs

    shots, meshes = shot_pairs.shots[:3], shot_pairs.shot_meshes[:3]
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    tuned = fine_tune(teacher, shots, meshes, steps=25, lr=1e-3, seed=0)
    for k, v in teacher.state_dict().items():
        torch.testing.assert_close(v, before[k])  # FT works on a copy
    # Pairs made from the shots as FT makes them (same seed): the tuned copy fits them
    # better than the teacher's feed-forward answer.
    x, target = ft_pairs(teacher, shots, meshes, pairs_per_shot=2, seed=0)
    assert x.shape == (6, 11, S, S) and target.shape == (6, 3, S, S)
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


def test_shipped_teacher_draws_what_a_shot_saw_into_a_hole(astronaut, face_landmarker_task):
    """The shipped teacher (talkinghead/weights): a mouth the target's warp lost is drawn
    from a shot that saw it, and with no shots it is not."""
    from talkinghead.models.checkpoint import load_checkpoint
    from talkinghead.packs import weights_path
    from talkinghead.sdk.photos import track_and_crop
    from talkinghead.sdk.rasterize import rasterize_landmarks
    from talkinghead.train.meta_refine import TEACHER_HELD_OUT
    from talkinghead.train.refine import hwc_to_unit

    t = load_checkpoint(weights_path("teacher-refine-xs.safetensors"), "teacher").eval()
    assert t.cfg.shot_warp and t.cfg.resolution == 256
    assert t.notes["held_out"] == list(TEACHER_HELD_OUT)
    crop, lm = track_and_crop(astronaut, 256)
    real = hwc_to_unit(crop)[None]
    lm_img = hwc_to_unit(rasterize_landmarks(lm.astype(np.float32), 256))[None]
    (x0, y0), (x1, y1) = lm[48:60].min(0).astype(int), lm[48:60].max(0).astype(int)
    x = torch.cat([real.clone(), lm_img, torch.ones(1, 1, 256, 256)], dim=1)
    x[:, :3, y0:y1, x0:x1] = -0.8  # the warp lost the mouth: dark, and no validity
    x[:, 6, y0:y1, x0:x1] = -1.0
    with torch.no_grad():
        e = torch.zeros(1, t.cfg.e_dim)
        with_shot = t.G(t.g_input(x, real[:, None], torch.ones(1, 1, 1, 256, 256)), e)
        no_shot = t.G(t.g_input(x), e)

    def err(f: torch.Tensor) -> float:  # levels, inside the lost mouth
        return float((f - real)[:, :, y0:y1, x0:x1].abs().mean()) * 127.5

    assert err(with_shot) < 30 and err(no_shot) > 90
    assert float((with_shot - real).abs().mean()) * 127.5 < 2  # the rest stays the photo
