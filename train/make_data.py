"""Pseudo-video training data from real face photos that are available offline.

VoxCeleb cannot be reached from the build machines, so the CPU demo model trains on
pseudo-videos: a real photo, tracked by the project's own tracker, cropped, then
mesh-warped along scripted landmark motion (talking, blinks, smiles, head turns). Every
frame's landmarks are exact by construction.

Built-in photos:
- ``astronaut``: ``skimage.data.astronaut()`` (training);
- ``cameraman``: ``skimage.data.camera()`` (training);
- ``grace_hopper``: matplotlib's sample ``grace_hopper.jpg`` (held out: never trained on);
- ``pypi:<name>``: faces from test photos in PyPI source archives
  (:mod:`talkinghead.train.face_photos`; ``pypi:biden`` is held out).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from talkinghead.errors import InvalidInputError
from talkinghead.sdk.landmarks import crop_face
from talkinghead.train import face_photos
from talkinghead.train.data import VideoSet
from talkinghead.train.pseudo_video import augment_video, make_pseudo_video

TRAIN_PHOTOS = ("astronaut", "cameraman")
HELD_OUT_PHOTOS = ("grace_hopper",)


def _astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def _cameraman() -> np.ndarray:
    from skimage import data

    return np.repeat(data.camera()[..., None], 3, axis=2)


def _grace_hopper() -> np.ndarray:
    import matplotlib.cbook
    from PIL import Image

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        return np.asarray(Image.open(f).convert("RGB"))


_PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _astronaut,
    "cameraman": _cameraman,
    "grace_hopper": _grace_hopper,
}


def builtin_photo(name: str) -> np.ndarray:
    """A real face photo that ships with an installed package: (H, W, 3) uint8 RGB."""
    if name not in _PHOTOS:
        raise InvalidInputError(f"unknown built-in photo {name!r}; choose from {sorted(_PHOTOS)}")
    return _PHOTOS[name]()


def track_and_crop(image: np.ndarray, size: int, tracker=None) -> tuple[np.ndarray, np.ndarray]:
    """Track the largest face and crop it: ((size, size, 3) uint8, (68, 2) float32 crop px)."""
    from talkinghead.sdk.tracker import FaceTracker, FaceTrackerOptions

    own = tracker is None
    if own:
        tracker = FaceTracker.create_from_options(FaceTrackerOptions())
    try:
        face = tracker.track_image(image)
    finally:
        if own:
            tracker.close()
    crop, lm, _ = crop_face(image, face.landmarks68, size)
    return crop, lm


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


def load_photo(photo: str | Path) -> tuple[str, np.ndarray]:
    """A file path or a built-in photo name -> (name, (H, W, 3) uint8 RGB).

    Anything that exists or has a file extension is read as a file (ImageReadError if it
    cannot be); a bare name is looked up among the built-in photos.
    """
    from talkinghead.sdk.tracker import load_image

    p = Path(photo)
    if str(photo).startswith(face_photos.PREFIX):
        return str(photo), face_photos.face_photo(str(photo))
    if p.exists() or p.suffix:
        return p.stem, load_image(p)
    return str(photo), builtin_photo(str(photo))
