"""Scripted landmark motion: each control moves the right points, sequences are smooth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from talkinghead.errors import InvalidInputError
from talkinghead.sdk.motion import (
    MotionParams,
    apply_motion,
    builtin_motion,
    face_frame,
    motion_landmarks,
    scripted_motion,
)
from talkinghead.sdk.rasterize import template_landmarks


@pytest.fixture
def face() -> np.ndarray:
    return template_landmarks((40, 30, 200, 210))


def _width(face: np.ndarray) -> float:
    return float(np.linalg.norm(face[16] - face[0]))


def test_zero_params_is_identity(face):
    out = apply_motion(face, MotionParams())
    assert out.dtype == np.float32 and out.shape == (68, 2)
    np.testing.assert_array_equal(out, face)


def test_small_params_are_close_to_identity(face):
    out = apply_motion(face, MotionParams(jaw_open=1e-6, yaw=1e-6))
    np.testing.assert_allclose(out, face, atol=1e-3)


def test_jaw_open_lowers_chin_and_parts_lips(face):
    out = apply_motion(face, MotionParams(jaw_open=1.0))
    w = _width(face)
    chin_nose = lambda p: np.linalg.norm(p[8] - p[30])  # noqa: E731
    assert chin_nose(out) > chin_nose(face) + 0.1 * w
    assert out[66, 1] - out[62, 1] > face[66, 1] - face[62, 1] + 0.05 * w
    assert out[57, 1] > face[57, 1]
    np.testing.assert_allclose(out[17:48], face[17:48], atol=1e-3)  # eyes, brows, nose still
    np.testing.assert_allclose(out[[0, 1, 2, 14, 15, 16]], face[[0, 1, 2, 14, 15, 16]], atol=1e-3)


def test_smile_pulls_corners_out_and_up(face):
    out = apply_motion(face, MotionParams(smile=1.0))
    assert out[54, 0] - out[48, 0] > face[54, 0] - face[48, 0]
    assert out[48, 1] < face[48, 1] and out[54, 1] < face[54, 1]
    assert out[60, 1] < face[60, 1] and out[64, 1] < face[64, 1]


@pytest.mark.parametrize(
    "side, pairs, other",
    [
        ("blink_right", [(37, 41), (38, 40)], slice(42, 48)),
        ("blink_left", [(43, 47), (44, 46)], slice(36, 42)),
    ],
)
def test_blink_closes_only_that_eye(face, side, pairs, other):
    gap = lambda p: sum(np.linalg.norm(p[a] - p[b]) for a, b in pairs)  # noqa: E731
    half = apply_motion(face, MotionParams(**{side: 0.5}))
    closed = apply_motion(face, MotionParams(**{side: 1.0}))
    assert gap(closed) < 1e-3 < gap(half) < gap(face)
    np.testing.assert_allclose(closed[other], face[other], atol=1e-3)
    # The upper lid does most of the moving.
    up, low = pairs[0]
    assert abs(closed[up, 1] - face[up, 1]) > abs(closed[low, 1] - face[low, 1])


def test_brow_raise_and_frown(face):
    up = apply_motion(face, MotionParams(brow_raise=1.0))
    down = apply_motion(face, MotionParams(brow_raise=-1.0))
    assert np.all(up[17:27, 1] < face[17:27, 1]) and np.all(down[17:27, 1] > face[17:27, 1])
    np.testing.assert_allclose(up[36:68], face[36:68], atol=1e-3)


def test_yaw_moves_nose_most_and_compresses_far_side(face):
    out = apply_motion(face, MotionParams(yaw=15.0))
    move = np.linalg.norm(out - face, axis=1)
    assert out[30, 0] > face[30, 0]  # + yaw: nose toward image right
    assert move[30] > 1.3 * max(move[0], move[16], move[8])
    assert move[30] == move.max()
    far = lambda p: p[16, 0] - p[13, 0]  # noqa: E731
    near = lambda p: p[3, 0] - p[0, 0]  # noqa: E731
    assert far(out) < far(face) and near(out) > near(face)
    mirrored = apply_motion(face, MotionParams(yaw=-15.0))
    assert mirrored[30, 0] < face[30, 0]


def test_pitch_moves_nose_vertically(face):
    up = apply_motion(face, MotionParams(pitch=10.0))
    assert up[30, 1] < face[30, 1]
    assert abs(up[30, 0] - face[30, 0]) < 1e-3
    assert apply_motion(face, MotionParams(pitch=-10.0))[30, 1] > face[30, 1]


def test_roll_rotates_about_face_centre(face):
    out = apply_motion(face, MotionParams(roll=8.0))
    d = out[45] - out[36]
    assert math.degrees(math.atan2(-d[1], d[0])) == pytest.approx(
        8.0, abs=0.05
    )  # counter-clockwise
    np.testing.assert_allclose(out.mean(0), face.mean(0), atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(out - out.mean(0), axis=1),
                               np.linalg.norm(face - face.mean(0), axis=1), rtol=1e-4)  # fmt: skip


def test_motion_is_resolution_and_pose_independent(face):
    p = MotionParams(
        jaw_open=0.7, smile=0.4, blink_left=0.5, brow_raise=0.3, yaw=10, pitch=-5, roll=3
    )
    base = apply_motion(face, p)
    scaled = apply_motion(face * 2.5 + 7.0, p)
    np.testing.assert_allclose(scaled, base * 2.5 + 7.0, atol=1e-3)
    # A tilted neutral face gets the same motion, tilted.
    c, s = math.cos(0.3), math.sin(0.3)
    rot = np.array([[c, -s], [s, c]], np.float32)
    centre = face.mean(0)
    tilted = (face - centre) @ rot.T + centre
    np.testing.assert_allclose(apply_motion(tilted, p), (base - centre) @ rot.T + centre, atol=1e-2)


def test_face_frame_of_template(face):
    centre, axes, width = face_frame(face)
    np.testing.assert_allclose(axes, np.eye(2), atol=1e-6)
    assert width == pytest.approx(_width(face))


@pytest.mark.parametrize(
    "kwargs",
    [{"jaw_open": 1.5}, {"smile": -0.1}, {"blink_left": float("nan")}, {"brow_raise": 2.0},
     {"yaw": 60.0}, {"pitch": -40.0}, {"roll": 90.0}, {"yaw": "10"}, {"smile": True}],
)  # fmt: skip
def test_params_validated(kwargs):
    with pytest.raises(InvalidInputError):
        MotionParams(**kwargs)


def test_apply_motion_validates(face):
    with pytest.raises(InvalidInputError):
        apply_motion(face[:60], MotionParams())
    with pytest.raises(InvalidInputError):
        apply_motion(face, {"jaw_open": 0.5})
    with pytest.raises(InvalidInputError):
        apply_motion(np.zeros((68, 2)), MotionParams(jaw_open=0.5))


def test_scripted_motion_is_deterministic_and_seeded():
    a, b, c = (
        scripted_motion(100, seed=3),
        scripted_motion(100, seed=3),
        scripted_motion(100, seed=4),
    )
    assert len(a) == 100 and all(isinstance(p, MotionParams) for p in a)
    assert a == b and a != c


def test_scripted_motion_ranges_and_content():
    fps = 25
    params = scripted_motion(20 * fps, fps=fps, seed=0)
    arr = np.stack([p.as_array() for p in params])
    jaw, smile, bl, br, brow, yaw, pitch, roll = arr.T
    for v in (jaw, smile, bl, br):
        assert v.min() >= 0 and v.max() <= 1
    assert np.abs(brow).max() <= 1
    assert np.abs(yaw).max() <= 15 and np.abs(pitch).max() <= 10 and np.abs(roll).max() <= 8
    assert np.abs(yaw).max() > 3  # the head does move
    # Talking: syllables at 3-5 Hz, with pauses (jaw closed at times).
    spectrum = np.abs(np.fft.rfft(jaw - jaw.mean()))
    freqs = np.fft.rfftfreq(len(jaw), 1 / fps)
    assert 2.5 <= freqs[spectrum.argmax()] <= 5.5
    assert jaw.max() > 0.3 and (jaw < 0.02).mean() > 0.05
    # Blinks every few seconds, each brief.
    closed = br > 0.5
    starts = np.flatnonzero(closed[1:] & ~closed[:-1])
    assert 2 <= len(starts) <= 12
    assert closed.mean() < 0.15
    assert smile.max() > 0.25


def test_scripted_sequence_is_smooth(face):
    fps = 25
    lms = motion_landmarks(face, scripted_motion(10 * fps, fps=fps, seed=1))
    step = np.linalg.norm(np.diff(lms, axis=0), axis=2).max()
    assert step < 0.08 * _width(face)  # no landmark jumps more than 8 % of the face per frame
    pose = np.stack([p.as_array()[5:] for p in scripted_motion(10 * fps, fps=fps, seed=1)])
    assert np.abs(np.diff(pose, axis=0)).max() < 1.5  # deg per frame


def test_builtin_motion(face):
    out = builtin_motion(face, num_frames=50)
    assert out.shape == (50, 68, 2) and out.dtype == np.float32
    np.testing.assert_array_equal(out, builtin_motion(face, num_frames=50))
    assert np.ptp(out[:, 8, 1]) > 1.0  # the chin moves


@pytest.mark.parametrize("n, fps", [(0, 25), (-3, 25), (2.5, 25), (10, 0)])
def test_scripted_motion_validates(n, fps):
    with pytest.raises(InvalidInputError):
        scripted_motion(n, fps=fps)
