"""Pseudo-video training data from real face photos that are available offline.

VoxCeleb cannot be reached from the build machines, so the CPU demo model trains on
pseudo-videos: a real photo (:mod:`talkinghead.sdk.photos`), tracked by the project's own
tracker, cropped, then mesh-warped along scripted landmark motion (talking, blinks, smiles,
head turns). Every frame's landmarks are exact by construction.
"""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from talkinghead.errors import InvalidInputError
from talkinghead.sdk.photos import track_and_crop
from talkinghead.train.data import VideoSet
from talkinghead.train.pseudo_video import augment_video, make_pseudo_video


def build_pseudo_videos(
    photos: dict[str, np.ndarray],
    size: int = 128,
    videos_per_photo: int = 8,
    frames_per_video: int = 32,
    seed: int = 0,
    progress: bool = True,
) -> VideoSet:
    """Track, crop and animate each photo into ``videos_per_photo`` distinct pseudo-videos.

    Video 0 of each photo is the unaugmented crop; the others vary colour, framing and
    mirroring, consistently over frames and landmarks.
    """
    if not photos:
        raise InvalidInputError("no photos given")
    from talkinghead.sdk.tracker import FaceTracker, FaceTrackerOptions

    frames, lms, ids = [], [], []
    with FaceTracker.create_from_options(FaceTrackerOptions()) as tracker:
        crops = {name: track_and_crop(img, size, tracker) for name, img in photos.items()}
    jobs = [(name, v) for name in crops for v in range(videos_per_photo)]
    for i, (name, v) in enumerate(tqdm(jobs, desc="pseudo-videos", disable=not progress)):
        crop, lm = crops[name]
        rng_seed = seed * 100_003 + i
        f, l68 = make_pseudo_video(crop, lm, frames_per_video, seed=rng_seed)
        if v > 0:
            f, l68 = augment_video(f, l68, seed=rng_seed)
        frames.append(f)
        lms.append(l68)
        ids.append(f"{name}/{v:03d}")
    return VideoSet(np.stack(frames), np.stack(lms).astype(np.float32), ids)
