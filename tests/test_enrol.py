"""Enrolment crops (sdk/enrol.py): the crop and its mesh agree, and users are warned of
photos that make poor avatars (a profile, a face at the photo's edge)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from talkinghead.errors import InvalidInputError
from talkinghead.sdk.enrol import PROFILE_YAW_DEG, crop_with_mesh, enrol_face
from talkinghead.sdk.landmarks import MEDIAPIPE_TO_68


@dataclass
class _Face:
    """The parts of a tracked face that enrolment reads."""

    landmarks: np.ndarray
    head_pose: tuple[float, float, float] | None

    @property
    def landmarks68(self) -> np.ndarray:
        return self.landmarks[MEDIAPIPE_TO_68, :2].astype(np.float32)


def _face(cx: float, cy: float, r: float, yaw: float | None = 0.0) -> _Face:
    rng = np.random.default_rng(0)
    xy = rng.uniform(-r, r, (478, 2)) + [cx, cy]
    z = rng.uniform(-r / 4, r / 4, (478, 1))
    return _Face(
        np.concatenate([xy, z], 1).astype(np.float32), None if yaw is None else (yaw, 0.0, 0.0)
    )


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (400, 600, 3), dtype=np.uint8)


def test_crop_maps_the_mesh_with_the_pixels(photo):
    face = _face(300, 200, 60)
    crop, mesh, (x0, y0, side) = crop_with_mesh(photo, face.landmarks, face.landmarks68, 128)
    assert crop.shape == (128, 128, 3) and mesh.shape == (478, 3)
    # A mesh point's crop position maps back onto its photo position.
    back = mesh[:, :2] * side / 128 + [x0, y0]
    np.testing.assert_allclose(back, face.landmarks[:, :2], atol=1e-3)
    # z scales with x (MediaPipe's convention), so depth stays in crop pixels.
    np.testing.assert_allclose(mesh[:, 2], face.landmarks[:, 2] * 128 / side, rtol=1e-5)


def test_a_frontal_face_in_the_middle_gives_no_warning(photo):
    enrolled = enrol_face(photo, _face(300, 200, 50), 128)
    assert enrolled.warnings == ()


def test_a_profile_is_warned_about(photo):
    enrolled = enrol_face(photo, _face(300, 200, 50, yaw=PROFILE_YAW_DEG + 15), 128)
    assert any("profile" in w for w in enrolled.warnings)


def test_a_face_at_the_edge_is_warned_about_and_still_cropped(photo):
    enrolled = enrol_face(photo, _face(30, 200, 50), 128)
    assert any("edge" in w for w in enrolled.warnings)
    assert enrolled.crop.shape == (128, 128, 3)


@pytest.mark.parametrize("size", [0, 32, 128.0, "256"])
def test_bad_sizes_are_refused(photo, size):
    with pytest.raises(InvalidInputError, match="size"):
        enrol_face(photo, _face(300, 200, 50), size)


def test_a_non_image_is_refused():
    with pytest.raises(InvalidInputError, match="uint8"):
        enrol_face(np.zeros((10, 10), np.float32), _face(5, 5, 2), 128)
