"""Retargeting: let another person's face drive an avatar without imposing its face shape.

Relative motion transfer: the driver's motion, measured against the driver's own neutral
frame and rescaled from the driver's face width to the avatar's, is added to the avatar's
neutral landmarks. The avatar keeps its own proportions; only the motion moves across.
"""

from __future__ import annotations

import numpy as np

from talkinghead.errors import InvalidInputError
from talkinghead.sdk.landmarks import validate_landmarks68
from talkinghead.sdk.motion import face_frame


def relative_motion(
    driver: np.ndarray, avatar_neutral: np.ndarray, driver_neutral: np.ndarray | None = None
) -> np.ndarray:
    """Transfer driver motion onto the avatar.

    Args:
        driver: (T, 68, 2) float32, the driver's landmarks, pixels of the driving video.
        avatar_neutral: (68, 2) float32, the avatar's neutral landmarks, crop pixels.
        driver_neutral: (68, 2), the driver's neutral frame; default the first frame.

    Returns:
        (T, 68, 2) float32, crop pixels of the avatar.
    """
    drv = np.asarray(driver, dtype=np.float32)
    if drv.ndim != 3 or drv.shape[1:] != (68, 2) or len(drv) == 0:
        raise InvalidInputError(f"driver landmarks must be (T, 68, 2), got {drv.shape}")
    if not np.isfinite(drv).all():
        raise InvalidInputError("driver landmarks contain NaN or infinite values")
    avatar = validate_landmarks68(avatar_neutral)
    ref = validate_landmarks68(drv[0] if driver_neutral is None else driver_neutral)
    _, _, w_driver = face_frame(ref)
    _, _, w_avatar = face_frame(avatar)
    out = avatar[None] + (drv - ref[None]) * (w_avatar / w_driver)
    return out.astype(np.float32)
