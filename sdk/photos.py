"""Photos into the runtime: files, the built-in sample faces, and the tracked face crop.

Built-in photos (sample images that ship with installed packages, so tests and the demo
need no download):

- ``astronaut``: ``skimage.data.astronaut()`` (training);
- ``cameraman``: ``skimage.data.camera()`` (training);
- ``grace_hopper``: matplotlib's sample ``grace_hopper.jpg`` (held out: never trained on);
- ``pypi:<name>``: faces from test photos in PyPI source archives
  (:mod:`talkinghead.sdk.face_photos`; ``pypi:biden`` is held out).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from talkinghead.errors import BackendError, InvalidInputError

from . import face_photos
from .landmarks import crop_face
from .tracker import FaceTracker, FaceTrackerOptions, load_image

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

    path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


_PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _astronaut,
    "cameraman": _cameraman,
    "grace_hopper": _grace_hopper,
}


def builtin_photo(name: str) -> np.ndarray:
    """A real face photo that ships with an installed package: (H, W, 3) uint8 RGB.

    Raises:
        InvalidInputError: an unknown name.
        BackendError: the package that ships it (scikit-image, matplotlib) is not installed.
    """
    if name not in _PHOTOS:
        raise InvalidInputError(f"unknown built-in photo {name!r}; choose from {sorted(_PHOTOS)}")
    try:
        return _PHOTOS[name]()
    except ImportError as exc:
        raise BackendError(
            f"the built-in photo {name!r} ships with {exc.name}: pip install 'talkinghead[tracking]'"
        ) from exc


def track_and_crop(
    image: np.ndarray, size: int, tracker: FaceTracker | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Track the largest face and crop it: ((size, size, 3) uint8, (68, 2) float32 crop px)."""
    active = FaceTracker.create_from_options(FaceTrackerOptions()) if tracker is None else tracker
    try:
        face = active.track_image(image)
    finally:
        if tracker is None:
            active.close()
    crop, lm, _ = crop_face(image, face.landmarks68, size)
    return crop, lm


def load_photo(photo: str | Path) -> tuple[str, np.ndarray]:
    """A file path or a built-in photo name -> (name, (H, W, 3) uint8 RGB).

    Anything that exists or has a file extension is read as a file (ImageReadError if it
    cannot be); a bare name is looked up among the built-in photos.
    """
    p = Path(photo)
    if str(photo).startswith(face_photos.PREFIX):
        return str(photo), face_photos.face_photo(str(photo))
    if p.exists() or p.suffix:
        return p.stem, load_image(p)
    return str(photo), builtin_photo(str(photo))


__all__ = [
    "HELD_OUT_PHOTOS",
    "TRAIN_PHOTOS",
    "builtin_photo",
    "load_photo",
    "track_and_crop",
]
