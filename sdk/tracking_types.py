"""What tracking returns, and the timestamp rules of VIDEO and LIVE_STREAM mode.

A leaf module: the tracker (:mod:`talkinghead.sdk.tracker`), the per-face track logic
(:mod:`talkinghead.sdk.tracks`), the One Euro filter (:mod:`talkinghead.sdk.smoothing`) and
the avatar runtime all import it, and it imports none of them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from talkinghead.errors import InvalidInputError, NoFaceError, TimestampError


class RunningMode(enum.Enum):
    """How frames arrive: single images, a video with timestamps, or a live stream."""

    IMAGE = "image"
    VIDEO = "video"
    LIVE_STREAM = "live_stream"


@dataclass(frozen=True)
class FaceResult:
    """One tracked face.

    Attributes:
        landmarks: (478, 3) float32. x, y in pixels of the input image; z in the same
            scale as x (MediaPipe's normalised z times the image width), smaller is nearer.
        landmarks68: (68, 2) float32, pixels, iBUG 300-W order.
        blendshapes: ARKit-style name -> score in [0, 1] (52 entries; empty when disabled).
        transform: (4, 4) float32 facial transformation matrix (canonical face to camera,
            centimetres), or None when disabled.
        track_id: stable id of this face across frames (VIDEO, LIVE_STREAM); None in IMAGE.
        tracked: False when the face was not found in this frame and the result is the
            loss policy's stand-in (held or fading to neutral).
    """

    landmarks: np.ndarray
    landmarks68: np.ndarray
    blendshapes: dict[str, float] = field(default_factory=dict)
    transform: np.ndarray | None = None
    track_id: int | None = None
    tracked: bool = True

    @property
    def head_pose(self) -> tuple[float, float, float] | None:
        """(yaw, pitch, roll) in degrees from :attr:`transform`; see :func:`head_pose_degrees`."""
        return None if self.transform is None else head_pose_degrees(self.transform)

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the 478 landmarks, pixels."""
        lo = self.landmarks[:, :2].min(axis=0)
        hi = self.landmarks[:, :2].max(axis=0)
        return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])

    @property
    def area(self) -> float:
        """Area of :attr:`bbox`, square pixels."""
        x0, y0, x1, y1 = self.bbox
        return (x1 - x0) * (y1 - y0)


def check_running_mode(actual: RunningMode, wanted: RunningMode, call: str) -> None:
    """InvalidInputError when ``call`` needs running mode ``wanted`` but the object runs in ``actual``."""
    if actual is not wanted:
        raise InvalidInputError(
            f"{call} needs running_mode={wanted.name}; this one runs in {actual.name}"
        )


def next_timestamp(timestamp_ms: int, last_ms: int | None) -> int:
    """Validate a VIDEO / LIVE_STREAM timestamp: an int strictly greater than ``last_ms``."""
    if isinstance(timestamp_ms, bool) or not isinstance(timestamp_ms, (int, np.integer)):
        raise InvalidInputError(f"timestamp_ms must be an int, got {timestamp_ms!r}")
    ts = int(timestamp_ms)
    if last_ms is not None and ts <= last_ms:
        raise TimestampError(f"timestamp_ms must strictly increase: got {ts} after {last_ms}")
    return ts


def largest_face(faces: list[FaceResult]) -> FaceResult:
    """The face whose landmark bbox has the largest area.

    Raises:
        NoFaceError: ``faces`` is empty.
    """
    if not faces:
        raise NoFaceError("no face found in the image")
    return max(faces, key=lambda face: face.area)


def head_pose_degrees(transform: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from a (4, 4) facial transformation matrix.

    Same conventions as :class:`talkinghead.sdk.motion.MotionParams`: yaw + turns the face
    toward image right, pitch + tilts it up, roll + turns it counter-clockwise in the image.
    The rotation is read as R = Ry(yaw) Rx(-pitch) Rz(roll) in MediaPipe's camera frame
    (x right, y up, z toward the viewer), after removing any scale.

    Raises:
        InvalidInputError: not a finite (4, 4) matrix with an invertible 3x3 block.
    """
    m = np.asarray(transform, np.float64)
    if m.shape != (4, 4) or not np.isfinite(m).all():
        raise InvalidInputError(f"transform must be a finite (4, 4) matrix, got shape {m.shape}")
    u, s, vt = np.linalg.svd(m[:3, :3])
    if s.min() < 1e-9 * max(s.max(), 1e-30):
        raise InvalidInputError("transform's 3x3 block is singular")
    r = u @ vt  # nearest rotation: removes MediaPipe's scale and any shear
    pitch_down = np.degrees(np.arcsin(np.clip(-r[1, 2], -1.0, 1.0)))
    yaw = np.degrees(np.arctan2(r[0, 2], r[2, 2]))
    roll = np.degrees(np.arctan2(r[1, 0], r[1, 1]))
    return float(yaw), float(-pitch_down), float(roll)


class TrackedFrame(NamedTuple):
    """One frame of a tracked video: its timestamp and the face followed, if any."""

    timestamp_ms: int
    face: FaceResult | None


__all__ = [
    "FaceResult",
    "RunningMode",
    "TrackedFrame",
    "check_running_mode",
    "head_pose_degrees",
    "largest_face",
    "next_timestamp",
]
