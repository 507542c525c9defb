"""Whole videos through the tracker: one face per frame, and meshes ready to drive an avatar.

:func:`track_frames` runs any iterable of ``(frame, timestamp_ms)`` in VIDEO mode and keeps
one face per frame (:class:`~talkinghead.sdk.tracks.FaceSelector`). :func:`track_video`
adds the policy every driver uses: a lost face is held, and frames before the first face
take the first one, so a driver gives one mesh per frame. :func:`save_track` writes the
per-frame results to ``.npz``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from talkinghead.errors import NoFaceError

from .landmarks import FEATURE_MESH_POINTS
from .smoothing import OneEuroParams, smooth_recorded
from .sources import VideoFileSource
from .tracker import FaceTracker, FaceTrackerOptions
from .tracking_types import RunningMode, TrackedFrame
from .tracks import FaceSelector


def track_frames(
    frames: Iterable[tuple[np.ndarray, int]],
    options: FaceTrackerOptions | None = None,
    select: str = "track",
    progress: bool = False,
    total: int | None = None,
) -> list[TrackedFrame]:
    """Track an iterable of ``(frame, timestamp_ms)`` in VIDEO mode, one face per frame.

    Args:
        frames: e.g. a :mod:`talkinghead.sdk.sources` source.
        options: FaceTrackerOptions; its running mode is forced to VIDEO. Default options.
        select: "track" (follow one track id) or "largest"; see :class:`FaceSelector`.

    Returns:
        One :class:`TrackedFrame` ``(timestamp_ms, FaceResult or None)`` per frame.
    """
    options = dataclasses.replace(options or FaceTrackerOptions(), running_mode=RunningMode.VIDEO)
    chooser = FaceSelector(select)
    out = []
    with FaceTracker.create_from_options(options) as tracker:
        for frame, ts in tqdm(frames, desc="track", disable=not progress, total=total):
            out.append(TrackedFrame(int(ts), chooser(tracker.detect_for_video(frame, ts))))
    return out


@dataclass(frozen=True)
class VideoTrack:
    """A driving video tracked for an avatar.

    Attributes:
        meshes: (T, 478, 3) float32, pixels of the video: the followed face, held where it
            is lost; frames before the first face take the first one.
        timestamps_ms: (T,) int64.
        found: (T,) bool: False for the frames before the first face (their mesh is a copy).
        size: (width, height) of the frames, px.
        fps: the video's frame rate.
    """

    meshes: np.ndarray
    timestamps_ms: np.ndarray
    found: np.ndarray
    size: tuple[int, int]
    fps: float

    @property
    def first_found(self) -> int:
        """Index of the first frame with a face."""
        return int(np.argmax(self.found))

    def normalised(self) -> np.ndarray:
        """(T, 478, 3) float32: x / width, y / height, z / width, as MediaPipe reports them
        (and as the C library's ``th_drive`` takes them)."""
        w, h = self.size
        return (self.meshes / np.array([w, h, w], np.float32)).astype(np.float32)


def track_video(
    path: str | os.PathLike[str],
    max_frames: int | None = None,
    smoothing: OneEuroParams | None = OneEuroParams(),  # noqa: B008 (frozen dataclass)
    progress: bool = False,
    zero_lag: bool = True,
) -> VideoTrack:
    """Track a driving video in VIDEO mode; see :class:`VideoTrack`.

    One face is followed by track id and held where it is lost. ``smoothing`` is the One
    Euro filter (lips and eyelids with their higher cutoffs); None gives raw MediaPipe
    meshes (for a consumer that smooths itself, as the C library's ``th_drive`` does).
    With ``zero_lag`` (the default) a recorded video is smoothed forward and backward
    (:func:`~talkinghead.sdk.smoothing.smooth_recorded`), so mouths and blinks keep their
    timing; otherwise as a live tracker smooths, looking back only.

    Raises:
        NoFaceError: no frame of the video has a face.
    """
    size: list[tuple[int, int]] = []

    def sized(source: Iterable[tuple[np.ndarray, int]]) -> Iterable[tuple[np.ndarray, int]]:
        for frame, ts in source:
            size[:] = [(frame.shape[1], frame.shape[0])]
            yield frame, ts

    offline = smoothing is not None and zero_lag
    options = FaceTrackerOptions(smoothing=None if offline else smoothing, on_face_lost="hold")
    with VideoFileSource(path, max_frames=max_frames) as source:
        fps = source.fps
        results = track_frames(sized(source), options, progress=progress, total=max_frames)
    found = np.array([r.face is not None for r in results], bool)
    if not found.any():
        raise NoFaceError(f"no face found in any frame of {path}")
    first = next(r.face for r in results if r.face is not None)
    last = first.landmarks
    meshes = []
    for r in results:
        last = r.face.landmarks if r.face is not None else last
        meshes.append(last)
    stacked = np.stack(meshes).astype(np.float32)
    timestamps = np.array([r.timestamp_ms for r in results], np.int64)
    if offline:
        lo, hi = stacked[:, :, :2].min(axis=1), stacked[:, :, :2].max(axis=1)
        sizes = np.maximum((hi - lo).max(axis=1).astype(np.float64), 1.0)  # face sizes, px
        stacked = smooth_recorded(
            stacked, timestamps, smoothing, FEATURE_MESH_POINTS, sizes
        ).astype(np.float32)
        # A lost face stays held, as in live tracking: the frames without a fresh detection
        # repeat the last smoothed mesh (before the first face, the first one).
        fresh = [r.face is not None and r.face.tracked for r in results]
        start = fresh.index(True) if any(fresh) else 0
        stacked[:start] = stacked[start]
        for i in range(start + 1, len(stacked)):
            if not fresh[i]:
                stacked[i] = stacked[i - 1]
    return VideoTrack(
        meshes=stacked,
        timestamps_ms=timestamps,
        found=found,
        size=size[0],
        fps=fps,
    )


def save_track(path: str | os.PathLike[str], results: list[TrackedFrame]) -> None:
    """Write :func:`track_frames` results to ``.npz``: timestamps_ms (T,), landmarks68
    (T, 68, 2) px, landmarks (T, 478, 3) px, head_pose (T, 3) deg, blendshapes (T, 52) with
    blendshape_names, track_id (T,) and tracked (T,); NaN / -1 / False where no face."""
    names = sorted(next((f.blendshapes for _, f in results if f and f.blendshapes), {}))
    t = len(results)
    # Any: savez_compressed's keyword arguments are arrays, and its stub also types allow_pickle.
    arrays: dict[str, Any] = {
        "timestamps_ms": np.array([ts for ts, _ in results], np.int64),
        "landmarks68": np.full((t, 68, 2), np.nan, np.float32),
        "landmarks": np.full((t, 478, 3), np.nan, np.float32),
        "head_pose": np.full((t, 3), np.nan, np.float32),
        "blendshapes": np.full((t, len(names)), np.nan, np.float32),
        "blendshape_names": np.array(names),
        "track_id": np.full(t, -1, np.int64),
        "tracked": np.zeros(t, bool),
    }
    for i, (_, f) in enumerate(results):
        if f is None:
            continue
        arrays["landmarks68"][i] = f.landmarks68
        arrays["landmarks"][i, : len(f.landmarks)] = f.landmarks
        if f.head_pose is not None:
            arrays["head_pose"][i] = f.head_pose
        if f.blendshapes:
            arrays["blendshapes"][i] = [f.blendshapes.get(n, np.nan) for n in names]
        arrays["track_id"][i] = -1 if f.track_id is None else f.track_id
        arrays["tracked"][i] = f.tracked
    np.savez_compressed(path, **arrays)


__all__ = ["VideoTrack", "save_track", "track_frames", "track_video"]
