"""Live driving, one frame at a time: a raw MediaPipe mesh in, the avatar's frame out.

    with Avatar.create_from_pack("my_avatar/") as avatar:
        driver = MeshDriver(avatar.neutral_mesh)
        for mesh, t_ms in tracked_frames:      # FaceLandmarker: (478, 3) normalised
            frame = drive_frame(avatar, driver, mesh, (width, height), t_ms)
            # or only the target mesh, (478, 3) crop px: driver.step(mesh, (width, height), t_ms)

Per frame, as the C ABI's ``th_drive`` does (and equal to it within 1 level):

1. pixels: x * width, y * height, z * width in float32, as the tracker converts
   MediaPipe's result; a 468-point mesh (no irises) gets points 468-477 as the mean of
   each eye's contour (``RIGHT_EYE``, ``LEFT_EYE``), so the eyes still carry the irises;
2. One Euro smoothing of every coordinate, z included, speeds in face sizes per second
   (the face size is the larger side of the raw mesh's box), lips and eyelids with their
   higher cutoffs (``FEATURE_MESH_POINTS``), as ``FaceTracker`` smooths;
3. :func:`~talkinghead.sdk.mesh_motion.retarget_mesh` against the driver's first frame
   (after construction or :meth:`MeshDriver.reset`), rounded to float32 as
   ``retarget_meshes`` rounds it;
4. the avatar renders that target mesh.

A frame that fails (a timestamp that did not increase, a degenerate face) leaves the
driver as it was.
"""

from __future__ import annotations

import copy

import numpy as np

from talkinghead.errors import InvalidInputError
from talkinghead.sdk.landmarks import FEATURE_MESH_POINTS, NUM_MESH_POINTS
from talkinghead.sdk.mesh_motion import retarget_mesh
from talkinghead.sdk.smoothing import OneEuroFilter, OneEuroParams
from talkinghead.sdk.tracking_types import next_timestamp
from talkinghead.sdk.warp import LEFT_EYE, RIGHT_EYE, STABLE_MESH_POINTS, check_mesh

NUM_MESH_POINTS_NO_IRIS = 468
DEGENERATE_VARIANCE_PX2 = 1e-12  # stable points' spread below this: no pose to fit
DEFAULT_SMOOTHING = OneEuroParams()  # the tracker's and th_drive's default


def mesh_to_pixels(mesh: object, image_size: tuple[int, int]) -> np.ndarray:
    """A FaceLandmarker mesh ``(478 | 468, 3 | 2)`` normalised -> ``(478, 3) float32`` px.

    x is scaled by the width, y by the height, z by the width (0 when absent); a 468-point
    mesh gets its irises from the eye contours.
    """
    try:
        arr = np.asarray(mesh, np.float32) if isinstance(mesh, np.ndarray | list) else None
    except (TypeError, ValueError) as e:
        raise InvalidInputError(f"mesh must be numeric: {e}") from e
    if (
        arr is None
        or arr.ndim != 2
        or arr.shape[0] not in (NUM_MESH_POINTS, NUM_MESH_POINTS_NO_IRIS)
    ):
        shape = getattr(mesh, "shape", type(mesh).__name__)
        raise InvalidInputError(f"mesh must be (478 or 468, 3 or 2) normalised points, got {shape}")
    if arr.shape[1] not in (2, 3):
        raise InvalidInputError(
            f"mesh must be (478 or 468, 3 or 2) normalised points, got {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise InvalidInputError("mesh contains NaN or infinite values")
    w, h = image_size
    if any(isinstance(v, bool) or not isinstance(v, int | np.integer) for v in (w, h)):
        raise InvalidInputError(f"image_size must be (width, height) ints, got {image_size!r}")
    if not (1 <= w <= 65536 and 1 <= h <= 65536):
        raise InvalidInputError(f"image size must be in [1, 65536] px, got {w} x {h}")
    px = np.zeros((NUM_MESH_POINTS, 3), np.float32)
    scale = np.array([w, h, w], np.float32)[: arr.shape[1]]
    px[: len(arr), : arr.shape[1]] = arr * scale
    if len(arr) == NUM_MESH_POINTS_NO_IRIS:
        for first, contour in ((468, RIGHT_EYE), (473, LEFT_EYE)):
            acc = np.zeros(3)
            for i in contour:  # in order, as the C library sums
                acc = acc + px[i].astype(np.float64)
            px[first : first + 5] = (acc / len(contour)).astype(np.float32)
    return px


def _stable_variance(mesh: np.ndarray) -> float:
    pts = np.asarray(mesh, np.float64)[list(STABLE_MESH_POINTS)]
    return float(((pts - pts.mean(axis=0)) ** 2).sum() / len(pts))


class MeshDriver:
    """One driver (one face) for one avatar: raw meshes in, target meshes out.

    Args:
        avatar_mesh: ``(478, 3)`` the avatar's neutral mesh, crop px (``Avatar.neutral_mesh``).
        smoothing: One Euro parameters, or None for none (the C ABI's
            ``th_set_smoothing(0, 0, 0)``).
    """

    def __init__(
        self, avatar_mesh: np.ndarray, smoothing: OneEuroParams | None = DEFAULT_SMOOTHING
    ) -> None:
        if smoothing is not None and not isinstance(smoothing, OneEuroParams):
            raise InvalidInputError(
                f"smoothing must be OneEuroParams or None, got {type(smoothing).__name__}"
            )
        self.avatar_mesh = check_mesh(avatar_mesh, "avatar_mesh")
        self.smoothing = smoothing
        self.reset()

    def reset(self) -> None:
        """Forget the driver: the next frame is the new reference; timestamps start over."""
        self._filter = (
            OneEuroFilter(self.smoothing, FEATURE_MESH_POINTS)
            if self.smoothing is not None
            else None
        )
        self._reference: np.ndarray | None = None
        self._last_ms: int | None = None

    def step(self, mesh: object, image_size: tuple[int, int], timestamp_ms: int) -> np.ndarray:
        """One tracked frame -> the target mesh ``(478, 3) float32``, avatar crop px.

        Args:
            mesh: the FaceLandmarker's points ``(478 | 468, 3 | 2)``, x and y normalised
                by the image width and height, z by the width.
            image_size: ``(width, height)`` of the tracked image, px.
            timestamp_ms: strictly greater than the previous frame's (TimestampError).
        """
        px = mesh_to_pixels(mesh, image_size)
        ts = next_timestamp(timestamp_ms, self._last_ms)
        saved = copy.deepcopy(self._filter)
        if self._filter is not None:
            lo, hi = px[:, :2].min(axis=0), px[:, :2].max(axis=0)
            size = max(float(hi[0]) - float(lo[0]), float(hi[1]) - float(lo[1]), 1.0)
            frame = self._filter(px, ts, scale=size).astype(np.float32)
        else:
            frame = px
        reference = self._reference if self._reference is not None else frame
        try:
            if _stable_variance(reference) <= DEGENERATE_VARIANCE_PX2:
                raise InvalidInputError(
                    "the driver's reference face is degenerate (its stable mesh points coincide)"
                )
            if _stable_variance(frame) <= DEGENERATE_VARIANCE_PX2:
                raise InvalidInputError(
                    "the driver's face is degenerate (its stable mesh points coincide)"
                )
            with np.errstate(all="ignore"):
                target = retarget_mesh(frame, reference, self.avatar_mesh)
            if not np.all(np.isfinite(target)):
                raise InvalidInputError(
                    "the retargeted mesh is not finite (the driver's mesh is degenerate or too large)"
                )
        except InvalidInputError:
            self._filter = saved
            raise
        self._reference = reference
        self._last_ms = ts
        return target.astype(np.float32)


def drive_frame(
    avatar, driver: MeshDriver, mesh: object, image_size: tuple[int, int], timestamp_ms: int
) -> np.ndarray:
    """One tracked frame rendered by ``avatar`` (any running mode): ``(S, S, 3) uint8``."""
    target = driver.step(mesh, image_size, timestamp_ms)
    return avatar.render_sequence(target[None])[0]


__all__ = ["MeshDriver", "drive_frame", "mesh_to_pixels"]
