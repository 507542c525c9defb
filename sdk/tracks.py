"""Faces across frames: stable track ids, One Euro smoothing per face, and what to report
when a face is lost.

MediaPipe smooths landmarks itself only when ``num_faces == 1``. To behave the same for
any number of faces, :class:`FaceTracks` runs this project's own One Euro filter on every
tracked face in VIDEO and LIVE_STREAM mode (IMAGE mode has no time axis, so nothing is
smoothed there). With ``num_faces == 1`` MediaPipe's smoothing and ours both apply.

Track ids come from greedy matching of landmark bounding boxes by IoU from one frame to the
next; ids start at 0 and are never reused. Lost faces follow the loss policy:

- ``"hold"``: report the last result until the face is found again.
- ``"neutral"``: fade linearly from the last result to the track's neutral (its first
  frame) over ``neutral_fade_ms``, then hold the neutral.
- ``"none"``: report nothing for the lost face.

Results made up by a policy carry ``tracked=False``. At most ``num_faces`` tracks are kept:
a new face takes the slot of the longest-lost track.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from talkinghead.errors import InvalidInputError

from .landmarks import FEATURE_MESH_POINTS, mediapipe_to_68
from .smoothing import OneEuroFilter, OneEuroParams
from .tracking_types import FaceResult, largest_face

LOSS_POLICIES = ("hold", "neutral", "none")
MIN_IOU = 0.3  # below this overlap two boxes in consecutive frames are different faces


def check_loss_policy(policy: str, neutral_fade_ms: float) -> None:
    """InvalidInputError unless ``policy`` is one of :data:`LOSS_POLICIES` and the fade > 0."""
    if policy not in LOSS_POLICIES:
        raise InvalidInputError(f"on_face_lost must be one of {LOSS_POLICIES}, got {policy!r}")
    ok = isinstance(neutral_fade_ms, (int, float)) and not isinstance(neutral_fade_ms, bool)
    if not ok or not math.isfinite(neutral_fade_ms) or neutral_fade_ms <= 0:
        raise InvalidInputError(
            f"neutral_fade_ms must be a positive number, got {neutral_fade_ms!r}"
        )


def bbox_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def orthonormalise_transform(m: np.ndarray) -> np.ndarray:
    """A (4, 4) transform whose 3x3 block is a pure rotation times the input's mean scale.

    Averaging or filtering rotation matrices elementwise leaves them slightly sheared;
    the polar decomposition (SVD) gives back the nearest rotation.
    """
    out = np.array(m, np.float64)
    u, s, vt = np.linalg.svd(out[:3, :3])
    r = u @ vt
    if np.linalg.det(r) < 0:  # never flip handedness
        u[:, -1] *= -1
        r = u @ vt
    out[:3, :3] = r * s.mean()
    out[3] = (0, 0, 0, 1)
    return out.astype(np.float32)


def _blend(
    a: FaceResult, b: FaceResult, w: float
) -> tuple[np.ndarray, dict[str, float], np.ndarray | None]:
    """Linear blend of two faces' arrays and blendshapes (weight ``w`` on ``b``)."""
    lm = (1 - w) * a.landmarks + w * b.landmarks
    shapes = {k: (1 - w) * v + w * b.blendshapes.get(k, v) for k, v in a.blendshapes.items()}
    transform = None
    if a.transform is not None and b.transform is not None:
        transform = orthonormalise_transform((1 - w) * a.transform + w * b.transform)
    return lm.astype(np.float32), shapes, transform


class _Track:
    def __init__(self, track_id: int, face: FaceResult, params: OneEuroParams | None) -> None:
        self.id = track_id
        self.last = face  # last reported result (smoothed)
        self.neutral: FaceResult | None = None  # first smoothed result
        self.lost_since_ms: int | None = None
        # One Euro filters of the landmarks, the blendshapes and the transform (None: raw).
        self.filters = (
            (
                OneEuroFilter(params, FEATURE_MESH_POINTS),
                OneEuroFilter(params),
                OneEuroFilter(params),
            )
            if params is not None
            else None
        )

    def observe(self, face: FaceResult, t_ms: int) -> FaceResult:
        lm, shapes, tf = face.landmarks, face.blendshapes, face.transform
        if self.filters is not None:
            f_lm, f_bs, f_tf = self.filters
            x0, y0, x1, y1 = face.bbox
            size = max(x1 - x0, y1 - y0, 1.0)  # speeds in face sizes per second
            lm = f_lm(lm, t_ms, scale=size).astype(np.float32)
            if shapes:
                keys = sorted(shapes)
                vals = f_bs(np.array([shapes[k] for k in keys]), t_ms)
                shapes = {k: float(np.clip(v, 0.0, 1.0)) for k, v in zip(keys, vals, strict=True)}
            if tf is not None:
                tf = orthonormalise_transform(f_tf(tf, t_ms))
        out = FaceResult(
            landmarks=lm,
            landmarks68=mediapipe_to_68(lm),
            blendshapes=shapes,
            transform=tf,
            track_id=self.id,
            tracked=True,
        )
        self.last, self.lost_since_ms = out, None
        if self.neutral is None:
            self.neutral = out
        return out

    def stand_in(self, policy: str, t_ms: int, fade_ms: float) -> FaceResult | None:
        """The result reported for this lost track, or None (policy "none")."""
        if policy == "none":
            return None
        if policy == "hold" or self.neutral is None or self.lost_since_ms is None:
            return dataclasses.replace(self.last, tracked=False)
        w = min(1.0, (t_ms - self.lost_since_ms) / fade_ms)
        lm, shapes, tf = _blend(self.last, self.neutral, w)
        return dataclasses.replace(
            self.last,
            landmarks=lm,
            landmarks68=mediapipe_to_68(lm),
            blendshapes=shapes,
            transform=tf,
            tracked=False,
        )


class FaceTracks:
    """Assigns track ids, smooths, and applies the loss policy, one frame at a time.

    Used by :class:`~talkinghead.sdk.tracker.FaceTracker` in VIDEO and LIVE_STREAM mode;
    not thread-safe on its own (the tracker holds a lock around :meth:`update`).
    """

    def __init__(
        self,
        max_faces: int,
        smoothing: OneEuroParams | None = None,
        on_face_lost: str = "hold",
        neutral_fade_ms: float = 500.0,
    ) -> None:
        check_loss_policy(on_face_lost, neutral_fade_ms)
        self.max_faces = max_faces
        self.smoothing = smoothing
        self.policy = on_face_lost
        self.fade_ms = float(neutral_fade_ms)
        self._tracks: list[_Track] = []
        self._next_id = 0

    def update(self, faces: list[FaceResult], t_ms: int) -> list[FaceResult]:
        """Raw detections of one frame -> results with track ids, sorted by track id."""
        pairs = sorted(
            (
                (bbox_iou(tr.last.bbox, f.bbox), ti, fi)
                for ti, tr in enumerate(self._tracks)
                for fi, f in enumerate(faces)
            ),
            reverse=True,
        )
        matched_t: dict[int, int] = {}
        matched_f: set[int] = set()
        for iou, ti, fi in pairs:
            if iou < MIN_IOU:
                break
            if ti not in matched_t and fi not in matched_f:
                matched_t[ti] = fi
                matched_f.add(fi)
        out: dict[int, FaceResult] = {}
        for ti, tr in enumerate(self._tracks):
            if ti in matched_t:
                out[tr.id] = tr.observe(faces[matched_t[ti]], t_ms)
            elif tr.lost_since_ms is None:
                tr.lost_since_ms = t_ms
        for fi, face in enumerate(faces):
            if fi in matched_f:
                continue
            if len(self._tracks) >= self.max_faces:
                lost = [
                    (tr.lost_since_ms, tr) for tr in self._tracks if tr.lost_since_ms is not None
                ]
                if not lost:
                    continue  # more detections than num_faces allows; cannot happen with MP
                self._tracks.remove(min(lost, key=lambda item: item[0])[1])
            track = _Track(self._next_id, face, self.smoothing)
            self._next_id += 1
            self._tracks.append(track)
            out[track.id] = track.observe(face, t_ms)
        for tr in self._tracks:
            if tr.lost_since_ms is not None:
                stand_in = tr.stand_in(self.policy, t_ms, self.fade_ms)
                if stand_in is not None:
                    out[tr.id] = stand_in
        return [out[k] for k in sorted(out)]


class FaceSelector:
    """Picks one face per frame, consistently.

    ``by="largest"``: the largest face of each frame (may switch between people).
    ``by="track"``: the largest face of the first frame with a face, then that same track id
    for as long as it exists (held or faded results included); if it is dropped, the
    largest face again.
    """

    def __init__(self, by: str = "track") -> None:
        if by not in ("largest", "track"):
            raise InvalidInputError(f"by must be 'largest' or 'track', got {by!r}")
        self.by = by
        self.track_id: int | None = None

    def __call__(self, faces: list[FaceResult]) -> FaceResult | None:
        """The chosen face, or None when ``faces`` is empty."""
        if not faces:
            return None
        if self.by == "track" and self.track_id is not None:
            for f in faces:
                if f.track_id == self.track_id:
                    return f
        face = largest_face(faces)
        self.track_id = face.track_id
        return face


__all__ = [
    "LOSS_POLICIES",
    "FaceSelector",
    "FaceTracks",
    "bbox_iou",
    "check_loss_policy",
    "orthonormalise_transform",
]
