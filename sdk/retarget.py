"""Retargeting: let another person's face drive an avatar without imposing its face shape.

Two ways, both measured against the driver's own neutral frame:

- :func:`relative_motion` (landmarks): the driver's displacement from its neutral frame is
  rotated and scaled by the similarity transform that aligns the driver's neutral face onto
  the avatar's (fitted on stable points: eye corners and nose), then added to the avatar's
  neutral landmarks. The avatar keeps its own proportions; only the motion moves across.
  ``stabilise=True`` first aligns every driver frame onto the driver's neutral, which
  removes head translation, in-plane rotation and zoom, leaving the expression alone.
- :func:`blendshape_motion` (blendshapes + head pose): jaw opening, blinks, smile and brows
  from the 52 blendshapes and yaw/pitch/roll from the transformation matrix become
  :class:`~talkinghead.sdk.motion.MotionParams`, played on the avatar's neutral landmarks
  by :func:`~talkinghead.sdk.motion.apply_motion`. No driver landmark geometry reaches the
  avatar at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from talkinghead.errors import InvalidInputError
from talkinghead.sdk.landmarks import validate_landmarks68
from talkinghead.sdk.motion import (
    MAX_PITCH_DEG,
    MAX_ROLL_DEG,
    MAX_YAW_DEG,
    MotionParams,
    apply_motion,
)

# Points that move little with expression: eye corners, nose bridge, nose tip and base.
STABLE_POINTS: tuple[int, ...] = (36, 39, 42, 45, 27, 28, 29, 30, 31, 33, 35)

# Blendshape score -> MotionParams gain. MediaPipe's scores rarely reach 1 (a wide-open
# mouth gives jawOpen about 0.5), so the gains stretch a typical range to [0, 1].
BLENDSHAPE_GAINS: dict[str, float] = {"jaw_open": 2.0, "smile": 1.3, "blink": 1.25, "brow": 2.0}


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity (scale, rotation, translation) taking ``src`` onto ``dst``.

    Args:
        src, dst: (N, 2) float, N >= 2, same units.

    Returns:
        ``(s, R (2, 2), t (2,))`` with ``dst ~= s * src @ R.T + t``; R is a proper rotation.
    """
    a = np.asarray(src, np.float64)
    b = np.asarray(dst, np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] != 2 or len(a) < 2:
        raise InvalidInputError(
            f"src and dst must both be (N, 2), N >= 2; got {a.shape}, {b.shape}"
        )
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise InvalidInputError("similarity_transform points contain NaN or infinite values")
    ma, mb = a.mean(axis=0), b.mean(axis=0)
    a0, b0 = a - ma, b - mb
    var = float((a0**2).sum())
    if var < 1e-12:
        raise InvalidInputError("similarity_transform: source points coincide")
    u, sig, vt = np.linalg.svd(b0.T @ a0)
    d = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])  # no reflections
    r = u @ d @ vt
    s = float((sig * np.diag(d)).sum() / var)
    return s, r, mb - s * ma @ r.T


def _align(points: np.ndarray, onto: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    idx = list(STABLE_POINTS)
    return similarity_transform(points[idx], onto[idx])


def relative_motion(
    driver: np.ndarray,
    avatar_neutral: np.ndarray,
    driver_neutral: np.ndarray | None = None,
    stabilise: bool = False,
) -> np.ndarray:
    """Transfer driver motion onto the avatar.

    Args:
        driver: (T, 68, 2) float32, the driver's landmarks, pixels of the driving video.
        avatar_neutral: (68, 2) float32, the avatar's neutral landmarks, crop pixels.
        driver_neutral: (68, 2), the driver's neutral frame; default the first frame.
        stabilise: remove the driver's head translation, in-plane rotation and zoom
            relative to its neutral frame, so only the expression is transferred.

    Returns:
        (T, 68, 2) float32, crop pixels of the avatar. The driver's neutral frame maps
        exactly to ``avatar_neutral``.
    """
    drv = np.asarray(driver, dtype=np.float32)
    if drv.ndim != 3 or drv.shape[1:] != (68, 2) or len(drv) == 0:
        raise InvalidInputError(f"driver landmarks must be (T, 68, 2), got {drv.shape}")
    if not np.isfinite(drv).all():
        raise InvalidInputError("driver landmarks contain NaN or infinite values")
    avatar = validate_landmarks68(avatar_neutral).astype(np.float64)
    ref = validate_landmarks68(drv[0] if driver_neutral is None else driver_neutral)
    ref = ref.astype(np.float64)
    frames = drv.astype(np.float64)
    if stabilise:
        aligned = []
        for f in frames:
            s, r, t = _align(f, ref)
            aligned.append(s * f @ r.T + t)
        frames = np.stack(aligned)
    s, r, _ = _align(ref, avatar)
    out = avatar[None] + s * (frames - ref[None]) @ r.T
    return out.astype(np.float32)


def _score(shapes: Mapping[str, float], *names: str) -> float:
    missing = [n for n in names if n not in shapes]
    if missing:
        raise InvalidInputError(f"blendshapes lack {missing}; enable output_face_blendshapes")
    vals = [float(shapes[n]) for n in names]
    if not all(np.isfinite(v) for v in vals):
        raise InvalidInputError(f"blendshapes {names} contain NaN or infinite values")
    return float(np.mean(vals))


def motion_params_from_face(face, neutral=None) -> MotionParams:
    """MotionParams of one tracked face, relative to ``neutral`` (another FaceResult).

    Jaw, smile, blinks and brows come from the blendshapes, scaled by
    :data:`BLENDSHAPE_GAINS`, with the neutral face's own scores subtracted (a driver who
    smiles at rest does not make the avatar smile). Yaw, pitch and roll come from the
    transformation matrices, relative to the neutral's pose. Everything is clipped to the
    ranges :class:`MotionParams` accepts. The subject's left eye (``eyeBlinkLeft``) drives
    ``blink_left``.
    """
    bs = face.blendshapes
    nb = neutral.blendshapes if neutral is not None else {}
    if not bs:
        raise InvalidInputError("the face has no blendshapes; enable output_face_blendshapes")

    def rel(*names: str) -> float:
        return _score(bs, *names) - (_score(nb, *names) if nb else 0.0)

    g = BLENDSHAPE_GAINS
    brow = rel("browInnerUp") + rel("browOuterUpLeft", "browOuterUpRight")
    brow -= rel("browDownLeft", "browDownRight")

    pose = np.zeros(3)
    if face.head_pose is not None:
        pose = np.array(face.head_pose)
        if neutral is not None and neutral.head_pose is not None:
            pose = pose - np.array(neutral.head_pose)
    limits = (MAX_YAW_DEG, MAX_PITCH_DEG, MAX_ROLL_DEG)
    yaw, pitch, roll = (float(np.clip(v, -m, m)) for v, m in zip(pose, limits, strict=True))
    return MotionParams(
        jaw_open=float(np.clip(g["jaw_open"] * rel("jawOpen"), 0, 1)),
        smile=float(np.clip(g["smile"] * rel("mouthSmileLeft", "mouthSmileRight"), 0, 1)),
        blink_left=float(np.clip(g["blink"] * rel("eyeBlinkLeft"), 0, 1)),
        blink_right=float(np.clip(g["blink"] * rel("eyeBlinkRight"), 0, 1)),
        brow_raise=float(np.clip(g["brow"] * brow / 2.0, -1, 1)),
        yaw=yaw,
        pitch=pitch,
        roll=roll,
    )


def blendshape_motion(faces: Sequence, avatar_neutral: np.ndarray, neutral=None) -> np.ndarray:
    """Drive the avatar by blendshapes and head pose alone.

    Args:
        faces: T FaceResults of the driver (blendshapes and transform enabled).
        avatar_neutral: (68, 2) float32, the avatar's neutral landmarks, crop pixels.
        neutral: the driver's neutral FaceResult; default the first face.

    Returns:
        (T, 68, 2) float32, crop pixels of the avatar.
    """
    faces = list(faces)
    if not faces:
        raise InvalidInputError("faces is empty")
    avatar = validate_landmarks68(avatar_neutral)
    ref = faces[0] if neutral is None else neutral
    return np.stack([apply_motion(avatar, motion_params_from_face(f, ref)) for f in faces])


__all__ = [
    "BLENDSHAPE_GAINS",
    "STABLE_POINTS",
    "blendshape_motion",
    "motion_params_from_face",
    "relative_motion",
    "similarity_transform",
]
