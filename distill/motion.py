"""Driving landmarks for distillation and int8 calibration: scripted motion and tracked motion.

- scripted: :func:`talkinghead.sdk.motion.builtin_motion` on the identity's neutral face,
  with many seeds and a little jitter;
- tracked: real face video frames (pseudo-videos of the enrolled photo, or the frames of a
  training shard) run through the project's MediaPipe tracker in VIDEO mode, the way a
  phone will see its camera, then moved onto the identity's neutral face (relative motion).
  These carry the tracker's own noise, smoothing and 478 -> 68 mapping.

Landmarks are (T, 68, 2) float32 crop px.
"""

from __future__ import annotations

import cv2
import numpy as np
from tqdm.auto import tqdm

from talkinghead.errors import InvalidInputError, NoFaceError
from talkinghead.sdk.landmarks import validate_landmarks68
from talkinghead.sdk.motion import builtin_motion
from talkinghead.sdk.retarget import relative_motion

# MediaPipe's detector misses faces that fill a small frame; twice the crop size finds them.
TRACK_UPSCALE = 2


def scripted_landmarks(
    neutral68: np.ndarray, sequences: int, frames: int, jitter_px: float, seed: int
) -> np.ndarray:
    """(sequences * frames, 68, 2) float32: built-in motion with seeds ``seed*1000 + i``."""
    rng = np.random.default_rng(seed)
    seqs = [builtin_motion(neutral68, frames, seed=seed * 1000 + i) for i in range(sequences)]
    lms = np.concatenate(seqs)
    return (lms + rng.normal(0, jitter_px, lms.shape)).astype(np.float32)


def track_sequences(
    videos: np.ndarray, tracker_model: str | None = None, progress: bool = False
) -> list[np.ndarray]:
    """Track face videos frame by frame: (N, T, S, S, 3) uint8 -> N arrays (T_i, 68, 2) px.

    Frames where no face is found are dropped (the tracker's "hold" policy fills short gaps);
    a video with no face at all is left out. NoFaceError when no video has a face, since a
    driving or calibration set without faces would teach or calibrate nothing.
    """
    from talkinghead.sdk.tracker import FaceTracker, FaceTrackerOptions, RunningMode

    videos = np.asarray(videos)
    if videos.ndim != 5 or videos.shape[-1] != 3 or videos.dtype != np.uint8:
        raise InvalidInputError(
            f"videos must be (N, T, S, S, 3) uint8, got {videos.shape} {videos.dtype}"
        )
    out = []
    bar = tqdm(total=videos.shape[0] * videos.shape[1], desc="tracking", disable=not progress)
    for video in videos:
        opts = FaceTrackerOptions(model_path=tracker_model, running_mode=RunningMode.VIDEO)
        found = []
        with FaceTracker.create_from_options(opts) as tracker:
            for t, frame in enumerate(video):
                big = cv2.resize(frame, None, fx=TRACK_UPSCALE, fy=TRACK_UPSCALE)
                faces = tracker.detect_for_video(big, 40 * t)  # 25 fps timestamps
                if faces:
                    found.append(faces[0].landmarks68 / TRACK_UPSCALE)
                bar.update(1)
        if found:
            out.append(np.stack(found).astype(np.float32))
    bar.close()
    if not out:
        raise NoFaceError(f"the tracker found no face in any of {videos.shape[0]} video(s)")
    return out


def tracked_landmarks(neutral68: np.ndarray, sequences: list[np.ndarray]) -> np.ndarray:
    """Tracked sequences moved onto ``neutral68`` (each from its own first frame): (sum T_i, 68, 2)."""
    neutral68 = validate_landmarks68(neutral68)
    return np.concatenate([relative_motion(s, neutral68) for s in sequences]).astype(np.float32)


def pseudo_videos(
    crop: np.ndarray, neutral68: np.ndarray, count: int, frames: int, seed: int
) -> np.ndarray:
    """Distinct-looking pseudo-videos of one face crop to track: (count, frames, S, S, 3) uint8."""
    from talkinghead.train.pseudo_video import augment_video, make_pseudo_video

    out = []
    for i in range(count):
        f, lm = make_pseudo_video(crop, neutral68, frames, seed=seed * 7919 + i)
        if i > 0:  # colour, framing and mirroring: the tracker sees varied input
            f, lm = augment_video(f, lm, seed=seed * 7919 + i)
        out.append(f)
    return np.stack(out)
