"""Motion on the full face mesh (``sdk/mesh_motion.py``): built-in motion and retargeting.

On the astronaut photo's tracked 478-point mesh (256 px crop).
"""

from __future__ import annotations

import numpy as np
import pytest

from talkinghead.errors import InvalidInputError
from talkinghead.sdk.mesh_motion import (
    apply_mesh_motion,
    builtin_mesh_motion,
    propagate,
    retarget_mesh,
    retarget_meshes,
    rotate_head,
)
from talkinghead.sdk.motion import MotionParams
from talkinghead.sdk.warp import landmarks68, rigid_fit

NOSE_TIP, UPPER_INNER_LIP, LOWER_INNER_LIP = 1, 13, 14


@pytest.fixture(scope="module")
def mesh(face_landmarker_task) -> np.ndarray:
    from talkinghead.packs import enrol_photo

    return enrol_photo("astronaut").mesh.astype(np.float64)


def similarity(meshes: np.ndarray, scale: float, yaw: float, roll: float, shift) -> np.ndarray:
    """The same similarity on every frame: scaled, turned in 3D about a fixed point, moved."""
    a, b = np.deg2rad(yaw), np.deg2rad(roll)
    ry = np.array([[np.cos(a), 0, -np.sin(a)], [0, 1, 0], [np.sin(a), 0, np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    c = meshes[0].mean(axis=0)
    return (meshes - c) @ (rz @ ry).T * scale + np.asarray(shift, np.float64)


def lip_gap(mesh: np.ndarray) -> float:
    return float(mesh[LOWER_INNER_LIP, 1] - mesh[UPPER_INNER_LIP, 1])


# ----------------------------------------------------------------------------- built-in motion


def test_neutral_params_leave_the_mesh_unchanged(mesh):
    np.testing.assert_allclose(apply_mesh_motion(mesh, MotionParams()), mesh, atol=1e-6)
    np.testing.assert_allclose(propagate(mesh, mesh[:, :2][_ibug()]), mesh, atol=1e-9)
    np.testing.assert_allclose(rotate_head(mesh, 0.0, 0.0, 0.0), mesh, atol=1e-9)


def _ibug() -> np.ndarray:
    from talkinghead.sdk.landmarks import MEDIAPIPE_TO_68

    return np.asarray(MEDIAPIPE_TO_68)


def test_jaw_opening_opens_the_inner_lips(mesh):
    closed = lip_gap(mesh)
    gaps = [lip_gap(apply_mesh_motion(mesh, MotionParams(jaw_open=j))) for j in (0.3, 0.6, 1.0)]
    assert gaps == sorted(gaps) and gaps[0] > closed + 1.0
    face_h = float(np.ptp(mesh[:, 1]))
    assert gaps[-1] - closed > 0.05 * face_h  # wide open is a real opening, not a px
    opened = apply_mesh_motion(mesh, MotionParams(jaw_open=1.0))
    # The skull stays: forehead and nose bridge do not move.
    np.testing.assert_allclose(opened[[10, 151, 168]], mesh[[10, 151, 168]], atol=1e-6)
    assert opened[152, 1] > mesh[152, 1] + 2  # the chin drops


@pytest.mark.parametrize("yaw", [15.0, 30.0])
def test_positive_yaw_moves_the_nose_to_image_right(mesh, yaw):
    for turned in (rotate_head(mesh, yaw, 0, 0), apply_mesh_motion(mesh, MotionParams(yaw=yaw))):
        assert turned[NOSE_TIP, 0] > mesh[NOSE_TIP, 0] + 2
        assert abs(turned[NOSE_TIP, 1] - mesh[NOSE_TIP, 1]) < 2
    assert rotate_head(mesh, -yaw, 0, 0)[NOSE_TIP, 0] < mesh[NOSE_TIP, 0] - 2
    # A 3D rotation: the mesh keeps its shape (distances between points).
    t = rotate_head(mesh, yaw, 10.0, 5.0)
    d0 = np.linalg.norm(mesh[:50, None] - mesh[None, :50], axis=-1)
    d1 = np.linalg.norm(t[:50, None] - t[None, :50], axis=-1)
    np.testing.assert_allclose(d1, d0, atol=1e-6)


def test_pitch_and_roll_conventions(mesh):
    assert rotate_head(mesh, 0, 15.0, 0)[NOSE_TIP, 1] < mesh[NOSE_TIP, 1] - 2  # + pitch: up
    rolled = rotate_head(mesh, 0, 0, 15.0)
    # + roll turns the face counter-clockwise in the image (y down): the right eye's outer
    # corner (image left) goes down, the left eye's (image right) goes up.
    assert rolled[33, 1] > mesh[33, 1] and rolled[263, 1] < mesh[263, 1]


def test_builtin_mesh_motion(mesh):
    frames = builtin_mesh_motion(mesh, 8, seed=2)
    assert frames.shape == (8, 478, 3) and frames.dtype == np.float32
    assert np.isfinite(frames).all()
    np.testing.assert_array_equal(frames, builtin_mesh_motion(mesh, 8, seed=2))
    assert not np.array_equal(frames, builtin_mesh_motion(mesh, 8, seed=3))
    assert np.abs(frames - mesh).max() > 1.0  # it moves
    for bad in (0, -1, 2.5, "3"):
        with pytest.raises(InvalidInputError):
            builtin_mesh_motion(mesh, bad)
    with pytest.raises(InvalidInputError):
        builtin_mesh_motion(mesh[:, :2], 2)


# ----------------------------------------------------------------------------- retargeting


@pytest.mark.parametrize(
    ("scale", "yaw", "roll", "shift"),
    [(1.0, 0.0, 0.0, (0, 0, 0)), (2.5, 0.0, 8.0, (400, 300, 0)), (0.6, 20.0, -12.0, (-50, 80, 10))],
    ids=["same", "scaled-rolled-moved", "small-turned"],
)
def test_retargeting_a_similarity_copy_recovers_the_motion(mesh, scale, yaw, roll, shift):
    params = [MotionParams(), MotionParams(jaw_open=0.7, yaw=12.0), MotionParams(smile=0.8, pitch=-8.0, roll=6.0),
              MotionParams(blink_left=1.0, blink_right=1.0, brow_raise=0.6)]  # fmt: skip
    own = np.stack([apply_mesh_motion(mesh, p) for p in params])
    driver = similarity(own, scale, yaw, roll, shift)
    out = retarget_meshes(driver, mesh)
    assert out.shape == own.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, own, atol=2e-3)


def test_retargeting_carries_motion_across_face_shapes(mesh):
    """Another face (wider, shorter) opening its jaw and turning opens and turns the avatar."""
    other = mesh * np.array([1.3, 0.8, 1.0])
    frames = np.stack(
        [
            other,
            apply_mesh_motion(other, MotionParams(jaw_open=1.0)),
            rotate_head(other, 25.0, 0, 0),
        ]
    )
    out = retarget_meshes(similarity(frames, 1.7, 0.0, 0.0, (30, 10, 0)), mesh)
    np.testing.assert_allclose(out[0], mesh, atol=1e-3)  # frame 0 is the reference pose
    assert lip_gap(out[1]) > lip_gap(mesh) + 2.0
    assert out[2][NOSE_TIP, 0] > mesh[NOSE_TIP, 0] + 2.0
    # The avatar keeps its own face shape: its width is its own, not the driver's.
    width = lambda m: float(np.ptp(m[[234, 454], 0]))  # noqa: E731
    assert width(out[1]) == pytest.approx(width(mesh), rel=0.02)


def test_retarget_mesh_matches_retarget_meshes(mesh):
    frames = similarity(
        builtin_mesh_motion(mesh, 3, seed=6).astype(np.float64), 1.4, 5.0, 3.0, (7, 9, 0)
    )
    out = retarget_meshes(frames, mesh)
    np.testing.assert_allclose(retarget_mesh(frames[2], frames[0], mesh), out[2], atol=1e-4)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((0, 478, 3)),
        np.zeros((2, 478, 2)),
        np.zeros((478, 3)),
        np.full((2, 478, 3), np.nan),
    ],
    ids=["empty", "2d-points", "one-frame-unbatched", "nan"],
)
def test_bad_drivers_are_invalid_input(mesh, bad):
    with pytest.raises(InvalidInputError):
        retarget_meshes(bad, mesh)


def test_bad_meshes_are_invalid_input(mesh):
    with pytest.raises(InvalidInputError):
        retarget_mesh(mesh, mesh, mesh[:68])
    with pytest.raises(InvalidInputError):
        apply_mesh_motion(np.full((478, 3), np.inf), MotionParams())
    with pytest.raises(InvalidInputError):
        propagate(mesh[:-1], landmarks68(mesh))


def test_rigid_fit_recovers_a_similarity():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(40, 3))
    dst = similarity(src[None], 1.7, 30.0, -20.0, (3, -2, 5))[0]
    s, r, t = rigid_fit(src, dst)
    assert s == pytest.approx(1.7)
    assert np.linalg.det(r) == pytest.approx(1.0)
    np.testing.assert_allclose(s * src @ r.T + t, dst, atol=1e-9)
