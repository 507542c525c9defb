"""Enrolling a face for the warp-and-refine generator: track, crop, mesh. Seconds, no training.

The avatar is its photo: the crop around the face (hair, neck and some background
included) and the face's 478-point mesh in that crop's pixels. Everything the warp needs
per avatar (anchors, triangles) is derived from those two by :func:`build_rig`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from talkinghead.errors import InvalidInputError
from talkinghead.sdk.landmarks import crop_box

log = logging.getLogger(__name__)

CROP_SCALE = 2.0  # crop side / the 68 landmarks' larger bbox side: room for hair and neck
PROFILE_YAW_DEG = 45.0


@dataclass(frozen=True)
class Enrolment:
    """One enrolled face.

    Attributes:
        crop: ``(S, S, 3) uint8`` RGB.
        mesh: ``(478, 3) float32`` crop px (z in x's scale, smaller is nearer).
        box: ``(x0, y0, side)`` of the crop in the photo's px; may extend past the photo
            (those pixels replicate the photo's edge).
        warnings: what a user should know about this photo (a profile, a face at the edge).
    """

    crop: np.ndarray
    mesh: np.ndarray
    box: tuple[int, int, int]
    warnings: tuple[str, ...] = field(default=())


def crop_with_mesh(
    image: np.ndarray,
    mesh: np.ndarray,
    landmarks68: np.ndarray,
    size: int,
    scale: float = CROP_SCALE,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
    """Cut the square crop around a face and map its mesh into it.

    Returns ``(crop (size, size, 3) uint8, mesh (478, 3) float32 crop px, box)``.
    """
    x0, y0, side = crop_box(landmarks68, image.shape, scale)
    h, w = image.shape[:2]
    ys = np.clip(np.arange(y0, y0 + side), 0, h - 1)
    xs = np.clip(np.arange(x0, x0 + side), 0, w - 1)
    region = image.take(ys, axis=0).take(xs, axis=1)
    if side != size:
        region = np.asarray(Image.fromarray(region).resize((size, size), Image.Resampling.BILINEAR))
    m = np.asarray(mesh, np.float64).copy()
    m[:, 0] -= x0
    m[:, 1] -= y0
    m *= size / side
    return np.ascontiguousarray(region, np.uint8), m.astype(np.float32), (x0, y0, side)


def enrol_face(image: np.ndarray, face, size: int = 256, scale: float = CROP_SCALE) -> Enrolment:
    """Enrol one tracked face of ``image``.

    Args:
        image: ``(H, W, 3) uint8`` RGB photo.
        face: its :class:`~talkinghead.sdk.tracker.FaceResult`.
        size: crop side, px.
        scale: crop side relative to the face's landmark bbox.
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3:
        raise InvalidInputError("image must be an (H, W, 3) uint8 array")
    if not isinstance(size, int) or size < 64:
        raise InvalidInputError(f"size must be an int >= 64, got {size!r}")
    crop, mesh, box = crop_with_mesh(image, face.landmarks, face.landmarks68, size, scale)
    warnings = []
    pose = face.head_pose
    if pose is not None and abs(pose[0]) > PROFILE_YAW_DEG:
        warnings.append(
            f"the face is in profile (yaw {pose[0]:.0f} deg): the far side of the face is not "
            "in the photo, so turning the avatar toward it will look stretched"
        )
    x0, y0, side = box
    h, w = image.shape[:2]
    if x0 < 0 or y0 < 0 or x0 + side > w or y0 + side > h:
        warnings.append("the face is near the photo's edge: the crop repeats the edge pixels there")
    for msg in warnings:
        log.warning(msg)
    return Enrolment(crop, mesh, box, tuple(warnings))


__all__ = ["CROP_SCALE", "Enrolment", "crop_with_mesh", "enrol_face"]
