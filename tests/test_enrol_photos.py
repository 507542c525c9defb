"""Photos people actually take (issue 18): group photos with small faces, non-faces, odd photos."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter, ImageOps

from talkinghead.errors import InvalidInputError, NoFaceError, TalkingHeadError
from talkinghead.sdk.faces import detect_faces, implausible_face
from talkinghead.sdk.tracker import FaceTracker, FaceTrackerOptions


@pytest.fixture(scope="module")
def tracker(face_landmarker_task):
    with FaceTracker.create_from_options(FaceTrackerOptions(num_faces=8)) as t:
        yield t


@pytest.fixture(scope="module")
def group_photo(astronaut) -> np.ndarray:
    """1280 x 720: six heads of 190-230 px (faces of about 70-85 px of landmarks) in a row."""
    head = astronaut[0:300, 100:360]
    canvas = np.full((720, 1280, 3), 120, np.uint8)
    for i in range(6):
        s = 190 + 8 * i
        f = np.asarray(Image.fromarray(head).resize((s, int(s * head.shape[0] / head.shape[1]))))
        x, y = 10 + i * 210, 180 + (i % 2) * 100
        canvas[y : y + f.shape[0], x : x + f.shape[1]] = f[: 720 - y, : 1280 - x]
    return canvas


def test_group_photo_small_faces_are_found_in_tiles(tracker, group_photo):
    assert tracker.detect(group_photo) == []  # the short-range detector alone sees none
    faces = detect_faces(tracker, group_photo)
    assert len(faces) == 6
    xs = [f.bbox[0] for f in faces]
    assert xs == sorted(xs)  # left to right, as --face N counts them
    widths = [f.bbox[2] - f.bbox[0] for f in faces]
    assert all(50 < w < 130 for w in widths), widths


def test_group_photo_enrols_the_largest_face_or_the_one_asked_for(group_photo):
    from talkinghead.packs import enrol_photo

    largest = enrol_photo(group_photo, size=64)
    first = enrol_photo(group_photo, size=64, face_index=0)
    assert largest.crop.shape == first.crop.shape == (64, 64, 3)
    # The largest head is the last one (x = 1060); face 0 is the first (x = 10).
    assert not np.array_equal(largest.crop, first.crop)
    with pytest.raises(InvalidInputError, match="6 face"):
        enrol_photo(group_photo, size=64, face_index=6)


def test_human_meshes_are_plausible_and_distorted_ones_are_not(tracker, astronaut):
    mesh = tracker.detect(astronaut)[0].landmarks
    assert implausible_face(mesh) == []
    eyes_y = mesh[[33, 133, 362, 263], 1].mean()

    snout = mesh.copy()  # everything below the eyes stretched 3x: a long muzzle
    below = snout[:, 1] > eyes_y
    snout[below, 1] = eyes_y + 3 * (snout[below, 1] - eyes_y)
    assert any("height" in p or "mouth" in p for p in implausible_face(snout))

    flipped = mesh.copy()  # mouth above the nose
    flipped[[13, 61, 291], 1] = eyes_y - 5
    assert implausible_face(flipped)

    wide = mesh.copy()  # a mouth four eye-spacings wide
    mid = wide[[61, 291], 0].mean()
    wide[61, 0], wide[291, 0] = mid - 200, mid + 200
    assert any("mouth width" in p for p in implausible_face(wide))

    with pytest.raises(InvalidInputError):
        implausible_face(np.full((478, 3), np.nan))


def _odd_photos(astronaut: np.ndarray) -> dict[str, np.ndarray]:
    face = astronaut[30:250, 140:330]
    pil = Image.fromarray(astronaut)
    masked = astronaut.copy()
    masked[150:230, 170:300] = (200, 210, 220)  # a surgical mask over nose and mouth
    return {
        "112px-crop": np.asarray(Image.fromarray(face).resize((112, 112))),
        "black-and-white": np.asarray(ImageOps.grayscale(pil).convert("RGB")),
        "painting": np.asarray(
            ImageOps.posterize(pil.filter(ImageFilter.ModeFilter(7)), 3).filter(
                ImageFilter.EDGE_ENHANCE_MORE
            )
        ),
        "mask": masked,
        "tiny-32px": np.asarray(Image.fromarray(face).resize((32, 32))),
    }


@pytest.mark.parametrize("kind", ["112px-crop", "black-and-white", "painting", "mask", "tiny-32px"])
def test_odd_photos_give_an_avatar_or_a_typed_refusal(astronaut, kind):
    from talkinghead.packs import enrol_photo

    photo = _odd_photos(astronaut)[kind]
    try:
        face = enrol_photo(photo, size=64)
    except NoFaceError as e:
        assert "face" in str(e)
        return
    except TalkingHeadError:
        return
    assert face.crop.shape == (64, 64, 3) and face.crop.dtype == np.uint8
    assert np.isfinite(face.mesh).all() and implausible_face(face.mesh) == []
