"""Motion on the full face mesh: built-in motion and retargeting a driver onto an avatar.

The warp needs a whole ``(478, 3)`` target mesh per frame. Two sources give one:

- **Built-in motion** (``scripted_motion``: talking, blinks, smiles, head turns): the
  expression moves the mesh's 68 iBUG points as :func:`talkinghead.sdk.motion.apply_motion`
  does, the other mesh points follow their neighbours on the same side of the lips and
  lids, and the head turns in 3D about its centre using the mesh's own depth, so a turned
  head shows parallax.
- **A driver's tracked meshes** (:func:`retarget_meshes`): per frame, the driver's head
  motion relative to its first frame (a 3D similarity fitted on points that move with
  the skull) and its expression (what is left once that motion is undone) are carried
  onto the avatar's mesh, scaled to its face size.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from talkinghead.errors import InvalidInputError
from talkinghead.sdk.landmarks import MEDIAPIPE_TO_68, NUM_MESH_POINTS
from talkinghead.sdk.motion import MotionParams, apply_motion, scripted_motion
from talkinghead.sdk.warp import FACE_OVAL, STABLE_MESH_POINTS, check_mesh, rigid_fit

LOWER_LIPS = (
    95, 88, 178, 87, 14, 317, 402, 318, 324, 146, 91, 181, 84, 17, 314, 405, 321, 375,
)  # fmt: skip
OUTER_LOWER_LIP = (146, 91, 181, 84, 17, 314, 405, 321, 375)
RIGHT_LOWER_LID = (7, 163, 144, 145, 153, 154, 155)
LEFT_LOWER_LID = (249, 390, 373, 374, 380, 381, 382)
SIGMA_FACE_WIDTHS = 0.06  # reach of a control point's pull, in face widths


def _regions(mesh: np.ndarray) -> np.ndarray:
    """Per mesh point: 0 upper face, 1 below the mouth, 2 right lower lid, 3 left lower lid.

    Points only follow controls of their own region, so the two lips (or lids) of a
    closed mouth (or eye), which touch, never drag each other.
    """
    region = np.zeros(len(mesh), np.int64)
    below = mesh[:, 1] > mesh[list(OUTER_LOWER_LIP), 1].mean()
    oval_x = mesh[list(FACE_OVAL), 0]
    region[below & (mesh[:, 1] < mesh[152, 1] + 1) & (mesh[:, 0] > oval_x.min())] = 1
    region[list(LOWER_LIPS)] = 1
    region[list(RIGHT_LOWER_LID)] = 2
    region[list(LEFT_LOWER_LID)] = 3
    return region


def propagate(mesh: np.ndarray, moved68: np.ndarray) -> np.ndarray:
    """Move ``mesh (478, 3)`` so that its 68 iBUG points land on ``moved68 (68, 2)``.

    The other points move by a Gaussian-weighted mean of their region's control
    displacements; points that move with the skull and are not iBUG points are controls
    that stay put. z is unchanged. Returns ``(478, 3) float64``.
    """
    mesh = check_mesh(mesh)
    region = _regions(mesh)
    idx = np.asarray(MEDIAPIPE_TO_68)
    fixed = np.array([i for i in STABLE_MESH_POINTS if i not in set(idx.tolist())])
    ctrl = np.concatenate([idx, fixed])
    disp = np.concatenate(
        [np.asarray(moved68, np.float64) - mesh[idx, :2], np.zeros((len(fixed), 2))]
    )
    width = float(np.ptp(mesh[list(FACE_OVAL), 0])) or 1.0
    sigma = SIGMA_FACE_WIDTHS * width
    d2 = ((mesh[:, None, :2] - mesh[None, ctrl, :2]) ** 2).sum(-1)
    w = np.exp(-d2 / (2 * sigma**2))
    # Lid controls: a lower-lid point follows the lower lid (and the eye's corners).
    ctrl_region = region[ctrl]
    same = ctrl_region[None, :] == region[:, None]
    corners = np.isin(ctrl, [33, 133, 362, 263, 25, 155, 382, 255])
    same |= (region[:, None] >= 2) & corners[None, :]
    w = np.where(same, w, 0.0) + 1e-12
    out = mesh.copy()
    out[:, :2] += (w @ disp) / w.sum(axis=1, keepdims=True)
    out[idx, :2] = moved68
    return out


def rotate_head(mesh: np.ndarray, yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Turn ``mesh (N, 3)`` in 3D about the face oval's centre; angles in degrees.

    Conventions as :class:`MotionParams`: + yaw moves the nose toward image right, + pitch
    moves it up, + roll turns the face counter-clockwise in the image.
    """
    pts = np.asarray(mesh, np.float64)
    oval = pts[list(FACE_OVAL)]
    c = np.array([*((oval[:, :2].min(0) + oval[:, :2].max(0)) / 2), oval[:, 2].mean()])
    x, y, z = (pts - c).T
    a = math.radians(yaw)
    x, z = x * math.cos(a) - z * math.sin(a), z * math.cos(a) + x * math.sin(a)
    a = math.radians(pitch)
    y, z = y * math.cos(a) + z * math.sin(a), z * math.cos(a) - y * math.sin(a)
    a = math.radians(roll)
    x, y = x * math.cos(a) + y * math.sin(a), y * math.cos(a) - x * math.sin(a)
    return np.stack([x, y, z], axis=1) + c


def apply_mesh_motion(mesh: np.ndarray, params: MotionParams) -> np.ndarray:
    """One frame of ``params`` on a neutral ``mesh (478, 3)``: ``(478, 3) float64`` px."""
    mesh = check_mesh(mesh)
    expression = replace(params, yaw=0.0, pitch=0.0, roll=0.0)
    lm68 = mesh[MEDIAPIPE_TO_68, :2]
    moved = propagate(mesh, apply_motion(lm68, expression))
    return rotate_head(moved, params.yaw, params.pitch, params.roll)


def builtin_mesh_motion(
    mesh: np.ndarray, num_frames: int = 125, fps: float = 25, seed: int = 0
) -> np.ndarray:
    """The demo's default motion on a mesh: ``(num_frames, 478, 3) float32`` px."""
    if not isinstance(num_frames, int | np.integer) or num_frames < 1:
        raise InvalidInputError(f"num_frames must be a positive int, got {num_frames!r}")
    params = scripted_motion(int(num_frames), fps=fps, seed=seed)
    return np.stack([apply_mesh_motion(mesh, p) for p in params]).astype(np.float32)


def _alignment(
    ref: np.ndarray, avatar: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Driver frame -> avatar frame, fixed for a driver's reference pose: (scale, rotation,
    driver centre, avatar centre) of the faces' stable points."""
    idx = list(STABLE_MESH_POINTS)
    s_a, r_a, _ = rigid_fit(ref[idx], avatar[idx])
    return s_a, r_a, ref[idx].mean(axis=0), avatar[idx].mean(axis=0)


def _retarget(frame: np.ndarray, ref: np.ndarray, avatar: np.ndarray, align) -> np.ndarray:
    s_a, r_a, c_ref, c_av = align
    idx = list(STABLE_MESH_POINTS)
    s, r, _ = rigid_fit(ref[idx], frame[idx])
    c_t = frame[idx].mean(axis=0)
    canon = (frame - c_t) @ r / s + c_ref  # the driver's expression in its reference pose
    expr = (canon - ref) * s_a @ r_a.T
    r_av = r_a @ r @ r_a.T
    return s * (avatar + expr - c_av) @ r_av.T + c_av + s_a * (c_t - c_ref) @ r_a.T


def retarget_mesh(frame: np.ndarray, reference: np.ndarray, avatar_mesh: np.ndarray) -> np.ndarray:
    """One driver frame onto the avatar: ``(478, 3) float64`` avatar crop px.

    Args:
        frame: ``(478, 3)`` the driver's mesh now, its own px.
        reference: ``(478, 3)`` the driver's mesh in its reference pose (its first frame).
        avatar_mesh: ``(478, 3)`` the avatar's neutral mesh, crop px.

    The driver's head motion from ``reference`` to ``frame`` (a 3D similarity on
    :data:`STABLE_MESH_POINTS`) turns and moves the avatar's head about its centre; what is
    left once that motion is undone is the expression, added to the avatar's mesh after
    scaling and turning it from the driver's face into the avatar's.
    """
    frame = check_mesh(frame, "frame")
    ref = check_mesh(reference, "reference")
    avatar = check_mesh(avatar_mesh, "avatar_mesh")
    return _retarget(frame, ref, avatar, _alignment(ref, avatar))


def retarget_meshes(driver: np.ndarray, avatar_mesh: np.ndarray) -> np.ndarray:
    """Carry a driver's motion, relative to its first frame, onto the avatar's mesh.

    Args:
        driver: ``(T, 478, 3)`` the driver's tracked meshes, its own px.
        avatar_mesh: ``(478, 3)`` the avatar's neutral mesh, crop px.

    Returns:
        ``(T, 478, 3) float32`` target meshes in the avatar's crop px. Frame 0 is the
        avatar's own mesh: the driver's first frame is its reference pose.
    """
    arr = np.asarray(driver, np.float64)
    if arr.ndim != 3 or arr.shape[1:] != (NUM_MESH_POINTS, 3) or len(arr) == 0:
        raise InvalidInputError(
            f"driver must be (T, {NUM_MESH_POINTS}, 3) with T >= 1, got {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise InvalidInputError("driver contains NaN or infinite values")
    avatar = check_mesh(avatar_mesh, "avatar_mesh")
    align = _alignment(arr[0], avatar)  # once per driver, not per frame
    return np.stack([_retarget(f, arr[0], avatar, align) for f in arr]).astype(np.float32)


__all__ = [
    "apply_mesh_motion",
    "builtin_mesh_motion",
    "propagate",
    "retarget_mesh",
    "retarget_meshes",
    "rotate_head",
]
