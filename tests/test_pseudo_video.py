"""Mesh warp and pseudo-videos: content follows the landmarks, the background stays put."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

from talkinghead.errors import InvalidInputError
from talkinghead.sdk.motion import MotionParams, apply_motion, motion_landmarks, scripted_motion
from talkinghead.sdk.rasterize import FLIP_PERMUTATION_68, template_landmarks
from talkinghead.train.pseudo_video import (
    ASTRONAUT_LANDMARKS_68,
    augment_video,
    face_anchors,
    make_pseudo_video,
    mesh_warp,
)

# A 128 px crop around the astronaut's face, with her landmarks in crop pixels.
_X0, _Y0, _SIDE, _S = 144, 46, 160, 128


@pytest.fixture(scope="module")
def astronaut() -> tuple[np.ndarray, np.ndarray]:
    img = skimage.data.astronaut()[_Y0 : _Y0 + _SIDE, _X0 : _X0 + _SIDE]
    img = cv2.resize(img, (_S, _S), interpolation=cv2.INTER_AREA)
    lms = ((ASTRONAUT_LANDMARKS_68 - [_X0, _Y0]) * (_S / _SIDE)).astype(np.float32)
    return img, lms


def _dot_image(points: dict[int, tuple[int, int, int]], lms: np.ndarray, size: int) -> np.ndarray:
    img = np.full((size, size, 3), 90, np.uint8)
    for i, colour in points.items():
        cv2.circle(img, tuple(int(round(v)) for v in lms[i]), 2, colour, -1)
    return img


def _centroid(img: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    diff = np.abs(img.astype(np.int32) - np.array(colour)).sum(axis=2)
    w = np.clip(1.0 - diff / 120.0, 0, None)
    ys, xs = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    return np.array([(xs * w).sum(), (ys * w).sum()]) / w.sum()


def test_astronaut_landmarks_are_on_her_face():
    lms = ASTRONAUT_LANDMARKS_68
    assert lms.shape == (68, 2) and lms.dtype == np.float32
    assert 165 < lms[:, 0].min() and lms[:, 0].max() < 285
    assert 60 < lms[:, 1].min() and lms[:, 1].max() < 200
    # Eyes are darker than the cheeks below them.
    gray = skimage.data.astronaut().mean(axis=2)
    eye = np.mean([gray[int(p[1]), int(p[0])] for p in lms[36:48].reshape(-1, 6, 2).mean(1)])
    cheek = np.mean([gray[int(p[1]) + 15, int(p[0])] for p in lms[36:48].reshape(-1, 6, 2).mean(1)])
    assert eye < cheek - 30


def test_identity_warp_is_exact(astronaut):
    img, lms = astronaut
    np.testing.assert_array_equal(mesh_warp(img, lms, lms), img)


def test_translation_moves_a_feature(astronaut):
    _, lms = astronaut
    img = _dot_image({30: (255, 255, 255)}, lms, _S)
    shift = np.array([4.0, -3.0], np.float32)
    out = mesh_warp(img, lms, lms + shift)
    np.testing.assert_allclose(_centroid(out, (255, 255, 255)), lms[30] + shift, atol=0.5)


def test_motion_moves_features_with_their_landmarks(astronaut):
    _, lms = astronaut
    colours = {30: (255, 0, 0), 8: (0, 255, 0), 37: (0, 0, 255), 54: (255, 255, 0)}
    img = _dot_image(colours, lms, _S)
    dst = apply_motion(lms, MotionParams(jaw_open=0.6, smile=0.5, yaw=10, pitch=-5, roll=4))
    out = mesh_warp(img, lms, dst)
    for i, colour in colours.items():
        np.testing.assert_allclose(_centroid(out, colour), dst[i], atol=0.75, err_msg=f"point {i}")


def test_background_outside_the_ring_is_fixed():
    img = skimage.data.astronaut()
    lms = ASTRONAUT_LANDMARKS_68
    dst = apply_motion(lms, MotionParams(jaw_open=1.0, yaw=15, pitch=10, roll=8))
    out = mesh_warp(img, lms, dst)
    assert np.abs(out.astype(int) - img).max(axis=2)[150:200, 200:250].mean() > 5  # face moved
    # The ring sits 1.6 face half-extents out: about x 140-310, y 35-215 for her face.
    border = np.ones(img.shape[:2], bool)
    border[30:230, 130:320] = False
    np.testing.assert_array_equal(out[border], img[border])


def test_face_anchors_surround_the_face(astronaut):
    img, lms = astronaut
    anchors = face_anchors([lms], img.shape)
    assert np.all((anchors >= 0) & (anchors <= _S - 1))
    for corner in ([0, 0], [_S - 1, 0], [0, _S - 1], [_S - 1, _S - 1]):
        assert np.any(np.all(anchors == corner, axis=1))
    d = np.linalg.norm(anchors[:, None] - lms[None], axis=2)
    assert d.min() >= 2.0


def test_pseudo_video(astronaut):
    img, lms = astronaut
    frames, out_lms = make_pseudo_video(img, lms, 30, seed=2)
    assert frames.shape == (30, _S, _S, 3) and frames.dtype == np.uint8
    assert out_lms.shape == (30, 68, 2) and out_lms.dtype == np.float32
    np.testing.assert_array_equal(out_lms, motion_landmarks(lms, scripted_motion(30, seed=2)))
    diffs = [np.abs(frames[t].astype(int) - frames[0]).mean() for t in range(1, 30)]
    assert max(diffs) > 1.0  # it moves
    np.testing.assert_array_equal(frames[:, 0, 0], np.repeat(img[None, 0, 0], 30, axis=0))
    again, _ = make_pseudo_video(img, lms, 30, seed=2)
    np.testing.assert_array_equal(frames, again)


def test_pseudo_video_paints_an_open_mouth_dark():
    img = np.full((128, 128, 3), 200, np.uint8)
    lms = template_landmarks((24, 20, 104, 110))
    dst = apply_motion(lms, MotionParams(jaw_open=1.0))
    from talkinghead.train.pseudo_video import _paint_mouth

    painted = _paint_mouth(mesh_warp(img, lms, dst), lms, dst)
    centre = np.round(dst[[62, 66]].mean(axis=0)).astype(int)
    assert painted[centre[1], centre[0]].max() < 80
    assert painted[5, 5].min() == 200


def test_augment_flip_keeps_landmarks_on_their_features(astronaut):
    _, lms = astronaut
    colours = {36: (255, 0, 0), 45: (0, 255, 0), 48: (0, 0, 255)}
    frames = np.stack([_dot_image(colours, lms, _S)] * 2)
    lm_seq = np.stack([lms, lms])
    out, out_lms = augment_video(frames, lm_seq, seed=0, flip=True, color_jitter=0.0)
    assert out.shape == frames.shape and out_lms.shape == lm_seq.shape
    for i, colour in colours.items():
        # The photo's point i is the mirror image's point FLIP_PERMUTATION_68[i].
        j = FLIP_PERMUTATION_68[i]
        np.testing.assert_allclose(_centroid(out[1], colour), out_lms[1, j], atol=1.0)
    assert out_lms[0, 36, 0] < out_lms[0, 45, 0]  # right eye still on the image left


def test_augment_varies_with_seed_and_keeps_range(astronaut):
    img, lms = astronaut
    frames = np.stack([img] * 3)
    lm_seq = np.stack([lms] * 3)
    a, la = augment_video(frames, lm_seq, seed=1)
    b, lb = augment_video(frames, lm_seq, seed=2)
    assert a.dtype == np.uint8 and not np.array_equal(a, b)
    np.testing.assert_array_equal(a[0], a[1])  # the same change for every frame
    np.testing.assert_array_equal(la[0], la[2])
    c, lc = augment_video(frames, lm_seq, seed=1)
    np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(la, lc)


@pytest.mark.parametrize(
    "image, src_ok",
    [(np.zeros((64, 64), np.uint8), True), (np.zeros((64, 64, 3), np.float32), True),
     (np.zeros((8, 8, 3), np.uint8), True), (np.zeros((64, 64, 3), np.uint8), False)],
)  # fmt: skip
def test_warp_validates(image, src_ok):
    lms = template_landmarks((10, 10, 50, 50))
    with pytest.raises(InvalidInputError):
        mesh_warp(image, lms if src_ok else lms[:60], lms)


def test_augment_validates(astronaut):
    img, lms = astronaut
    with pytest.raises(InvalidInputError):
        augment_video(img[None], np.stack([lms, lms]))
    with pytest.raises(InvalidInputError):
        augment_video(img[None], lms[None], max_scale=-1)
