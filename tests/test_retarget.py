"""Retargeting: similarity alignment, relative motion, blendshape + head-pose driving."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from talkinghead.errors import InvalidInputError
from talkinghead.sdk.motion import MotionParams, apply_motion
from talkinghead.sdk.rasterize import template_landmarks
from talkinghead.sdk.retarget import (
    BLENDSHAPE_GAINS,
    blendshape_motion,
    motion_params_from_face,
    relative_motion,
    similarity_transform,
)
from talkinghead.sdk.tracker import FaceResult

AVATAR = template_landmarks((40, 50, 216, 240))  # (68, 2), a 256 px crop


def _rot(deg: float) -> np.ndarray:
    t = np.radians(deg)
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])


def _other_face() -> np.ndarray:
    """A differently shaped driver: wider, shorter, tilted 12 deg, elsewhere in a big frame."""
    c = AVATAR.mean(axis=0)
    shaped = (AVATAR - c) * np.array([1.25, 0.85])
    return (2.0 * shaped @ _rot(12).T + np.array([600.0, 380.0])).astype(np.float32)


def test_similarity_transform_recovers_known_transform() -> None:
    src = np.random.default_rng(0).normal(0, 50, (11, 2))
    dst = 1.7 * src @ _rot(-25).T + np.array([3.0, -8.0])
    s, r, t = similarity_transform(src, dst)
    assert s == pytest.approx(1.7)
    np.testing.assert_allclose(r, _rot(-25), atol=1e-12)
    np.testing.assert_allclose(t, [3.0, -8.0], atol=1e-9)
    # A mirrored target is fitted by a rotation, never a reflection.
    _, r, _ = similarity_transform(src, src * [-1, 1])
    assert np.linalg.det(r) == pytest.approx(1.0)
    with pytest.raises(InvalidInputError, match="coincide"):
        similarity_transform(np.ones((5, 2)), src[:5])
    with pytest.raises(InvalidInputError, match="NaN"):
        similarity_transform(np.full((5, 2), np.nan), src[:5])
    with pytest.raises(InvalidInputError, match=r"\(N, 2\)"):
        similarity_transform(src, src[:4])


def test_relative_motion_keeps_avatar_shape() -> None:
    driver_neutral = _other_face()
    # The driver holds still: the avatar stays exactly its own neutral, not the driver's shape.
    out = relative_motion(np.stack([driver_neutral] * 3), AVATAR)
    np.testing.assert_allclose(out, np.stack([AVATAR] * 3), atol=1e-3)


def test_relative_motion_undoes_rotation_scale_and_position() -> None:
    """The avatar's own motion, seen through a rotated, scaled, moved camera, comes back."""
    own = np.stack(
        [apply_motion(AVATAR, MotionParams(jaw_open=j, smile=j / 2)) for j in (0, 0.5, 1)]
    )
    seen = (0.6 * (own - 128) @ _rot(30).T + np.array([500.0, 90.0])).astype(np.float32)
    np.testing.assert_allclose(relative_motion(seen, AVATAR), own, atol=1e-3)


def test_stabilise_removes_head_motion_but_keeps_expression() -> None:
    neutral = _other_face()
    jaw = apply_motion(neutral, MotionParams(jaw_open=1.0))
    centre = neutral.mean(axis=0)
    # The driver opens the mouth while the head drifts, tilts and comes closer.
    moved = ((jaw - centre) * 1.2 @ _rot(8).T + centre + [40.0, -15.0]).astype(np.float32)
    plain = relative_motion(np.stack([neutral, moved]), AVATAR)
    stable = relative_motion(np.stack([neutral, moved]), AVATAR, stabilise=True)
    expected = relative_motion(np.stack([neutral, jaw]), AVATAR)  # expression alone
    np.testing.assert_allclose(stable[1], expected[1], atol=0.5)
    assert np.abs(plain[1] - expected[1]).max() > 10  # without it the head motion came across
    # The chin dropped on the avatar.
    assert stable[1, 8, 1] - AVATAR[8, 1] > 0.1 * (AVATAR[16, 0] - AVATAR[0, 0])


def test_relative_motion_rejects_bad_input() -> None:
    good = np.stack([_other_face()] * 2)
    nan = good.copy()
    nan[1, 30] = np.nan
    for bad, what in ((nan, "NaN"), (good[:, :60], r"\(T, 68, 2\)"), (good[:0], r"\(T, 68, 2\)")):
        with pytest.raises(InvalidInputError, match=what):
            relative_motion(bad, AVATAR)
    with pytest.raises(InvalidInputError, match="NaN"):
        relative_motion(good, np.full((68, 2), np.nan))


SHAPE_NAMES = (
    "jawOpen", "mouthSmileLeft", "mouthSmileRight", "eyeBlinkLeft", "eyeBlinkRight",
    "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "browDownLeft", "browDownRight",
)  # fmt: skip


def _face(pose: tuple[float, float, float] = (0, 0, 0), **scores: float) -> FaceResult:
    """A FaceResult with the given blendshape scores and head pose (yaw, pitch, roll) deg."""
    yaw, pitch, roll = np.radians(pose)
    ry = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    rx = np.array(
        [[1, 0, 0], [0, np.cos(-pitch), -np.sin(-pitch)], [0, np.sin(-pitch), np.cos(-pitch)]]
    )
    rz = np.array([[np.cos(roll), -np.sin(roll), 0], [np.sin(roll), np.cos(roll), 0], [0, 0, 1]])
    m = np.eye(4, dtype=np.float32)
    m[:3, :3] = ry @ rx @ rz
    shapes = {n: 0.0 for n in SHAPE_NAMES} | scores
    mesh = np.zeros((478, 3), np.float32)
    return FaceResult(mesh, np.zeros((68, 2), np.float32), shapes, m)


def test_motion_params_relative_to_neutral() -> None:
    neutral = _face((5, -3, 2), mouthSmileLeft=0.4, mouthSmileRight=0.4, eyeBlinkLeft=0.1)
    frame = _face((25, 7, -8), jawOpen=0.25, mouthSmileLeft=0.6, mouthSmileRight=0.6,
                  eyeBlinkLeft=0.9, browInnerUp=0.3)  # fmt: skip
    p = motion_params_from_face(frame, neutral)
    assert p.jaw_open == pytest.approx(BLENDSHAPE_GAINS["jaw_open"] * 0.25)
    assert p.smile == pytest.approx(BLENDSHAPE_GAINS["smile"] * 0.2)  # the resting smile is removed
    assert p.blink_left == pytest.approx(min(1.0, BLENDSHAPE_GAINS["blink"] * 0.8))
    assert p.blink_right == 0.0
    assert p.brow_raise > 0
    assert (p.yaw, p.pitch, p.roll) == pytest.approx((20, 10, -10), abs=1e-3)
    # Out of range values are clipped to what MotionParams accepts, not rejected.
    wild = motion_params_from_face(_face((80, 0, 0), jawOpen=1.0))
    assert wild.jaw_open == 1.0 and wild.yaw == 45.0


def test_motion_params_reject_missing_or_nan_blendshapes() -> None:
    with pytest.raises(InvalidInputError, match="blendshapes"):
        motion_params_from_face(FaceResult(np.zeros((478, 3)), np.zeros((68, 2))))
    with pytest.raises(InvalidInputError, match="NaN"):
        motion_params_from_face(_face(jawOpen=float("nan")))
    partial = _face()
    del partial.blendshapes["jawOpen"]
    with pytest.raises(InvalidInputError, match="jawOpen"):
        motion_params_from_face(partial)


def test_blendshape_motion_plays_on_avatar_neutral() -> None:
    faces = [_face(), _face(jawOpen=0.5), _face((10, 0, 0))]
    out = blendshape_motion(faces, AVATAR)
    assert out.shape == (3, 68, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], AVATAR, atol=1e-4)  # the neutral frame is the avatar
    assert out[1, 8, 1] > AVATAR[8, 1] + 5  # jaw dropped
    np.testing.assert_allclose(out[1, :17:16], AVATAR[:17:16], atol=1e-3)  # ears did not move
    assert out[2, 30, 0] > AVATAR[30, 0]  # yaw +: nose tip moves to image right
    with pytest.raises(InvalidInputError, match="empty"):
        blendshape_motion([], AVATAR)


def test_real_jaw_and_smile_drive_the_avatar(face_landmarker_task: Path) -> None:
    """A real face (mesh-warped Grace Hopper) opening the mouth and smiling, tracked by MediaPipe."""
    from talkinghead.sdk.photos import builtin_photo
    from talkinghead.sdk.tracker import FaceTracker, FaceTrackerOptions
    from talkinghead.train.pseudo_video import mesh_warp

    photo = builtin_photo("grace_hopper")
    with FaceTracker.create_from_options(FaceTrackerOptions(model_path=face_landmarker_task)) as t:
        neutral = t.track_image(photo)
        frames = [
            mesh_warp(photo, neutral.landmarks68, apply_motion(neutral.landmarks68, p))
            for p in (MotionParams(jaw_open=1.0), MotionParams(smile=1.0))
        ]
        jaw, smile = (t.track_image(f) for f in frames)
    p_jaw = motion_params_from_face(jaw, neutral)
    p_smile = motion_params_from_face(smile, neutral)
    assert p_jaw.jaw_open > 0.4 and p_jaw.smile < p_smile.smile
    assert p_smile.smile > 0.6 and p_smile.jaw_open < 0.1
    # Both ways of retargeting open the avatar's jaw.
    by_landmarks = relative_motion(np.stack([neutral.landmarks68, jaw.landmarks68]), AVATAR)
    by_shapes = blendshape_motion([neutral, jaw], AVATAR)
    for out in (by_landmarks, by_shapes):
        assert out[1, 8, 1] - AVATAR[8, 1] > 0.05 * (AVATAR[16, 0] - AVATAR[0, 0])
