"""Face tracking with MediaPipe's FaceLandmarker, in MediaPipe Tasks style.

    options = FaceTrackerOptions(running_mode=RunningMode.VIDEO)
    with FaceTracker.create_from_options(options) as tracker:
        for t_ms, frame in frames:
            faces = tracker.detect_for_video(frame, t_ms)

Results are plain numpy in pixels of the input image, so nothing downstream touches
MediaPipe types. Every failure surfaces as a :mod:`talkinghead.errors` exception.
In VIDEO and LIVE_STREAM mode faces carry stable track ids, are One Euro smoothed and
follow a loss policy (see :mod:`talkinghead.sdk.tracks`); IMAGE mode calls are independent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from talkinghead.errors import BackendError, ImageReadError, InvalidInputError, ModelAssetError

from .assets import face_landmarker_path
from .landmarks import mediapipe_to_68
from .smoothing import OneEuroParams
from .tracking_types import (
    FaceResult,
    RunningMode,
    check_running_mode,
    head_pose_degrees,
    largest_face,
    next_timestamp,
)
from .tracks import FaceTracks, check_loss_policy

MIN_IMAGE_SIDE_PX = 32


ResultCallback = Callable[[list[FaceResult], np.ndarray, int], None]


@dataclass
class FaceTrackerOptions:
    """Options for :meth:`FaceTracker.create_from_options`.

    Attributes:
        model_path: a ``face_landmarker.task``; None finds or fetches the verified official
            one (see :func:`talkinghead.sdk.assets.face_landmarker_path`).
        running_mode: IMAGE (:meth:`FaceTracker.detect`), VIDEO
            (:meth:`FaceTracker.detect_for_video`) or LIVE_STREAM
            (:meth:`FaceTracker.detect_async`, results through ``result_callback``).
        num_faces: most faces returned per frame.
        result_callback: LIVE_STREAM only; called as ``callback(faces, image, timestamp_ms)``
            from MediaPipe's worker thread.
        smoothing: One Euro parameters applied per tracked face in VIDEO and LIVE_STREAM
            mode (landmarks, blendshapes, transform); None turns our smoothing off.
        on_face_lost: "hold", "neutral" or "none": what VIDEO / LIVE_STREAM report for a
            face that was tracked and is now lost (see :mod:`talkinghead.sdk.tracks`).
        neutral_fade_ms: with "neutral", the time to fade from the last result to the
            track's first frame, ms.
    """

    model_path: str | Path | None = None
    running_mode: RunningMode = RunningMode.IMAGE
    num_faces: int = 1
    min_face_detection_confidence: float = 0.5
    min_face_presence_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    output_face_blendshapes: bool = True
    output_facial_transformation_matrixes: bool = True
    result_callback: ResultCallback | None = None
    smoothing: OneEuroParams | None = field(default_factory=OneEuroParams)
    on_face_lost: str = "hold"
    neutral_fade_ms: float = 500.0


class FaceTracker:
    """MediaPipe FaceLandmarker behind numpy-in, numpy-out calls. A context manager."""

    def __init__(
        self, landmarker: Any, options: FaceTrackerOptions, tracks: FaceTracks | None = None
    ) -> None:
        # Use create_from_options; this takes an already-built MediaPipe landmarker.
        self._landmarker = landmarker
        self._options = options
        self._last_timestamp_ms: int | None = None
        self._lock = threading.Lock()
        self._tracks = tracks

    @classmethod
    def create_from_options(cls, options: FaceTrackerOptions | None = None) -> FaceTracker:
        """Build a tracker; resolves and hash-checks the model first.

        Raises:
            InvalidInputError: inconsistent options.
            ModelAssetError: the model file is missing, has the wrong hash, or fails to load.
        """
        options = options or FaceTrackerOptions()
        _check_options(options)
        model_path = face_landmarker_path(options.model_path)

        try:
            from mediapipe.tasks.python import BaseOptions, vision
        except ImportError as exc:
            raise BackendError(
                "face tracking needs mediapipe: pip install 'talkinghead[tracking]'"
            ) from exc

        mp_mode = {
            RunningMode.IMAGE: vision.RunningMode.IMAGE,
            RunningMode.VIDEO: vision.RunningMode.VIDEO,
            RunningMode.LIVE_STREAM: vision.RunningMode.LIVE_STREAM,
        }[options.running_mode]
        callback, tracks = None, None
        if options.running_mode is not RunningMode.IMAGE:
            tracks = FaceTracks(
                options.num_faces, options.smoothing, options.on_face_lost, options.neutral_fade_ms
            )
            if options.running_mode is RunningMode.LIVE_STREAM:
                callback = _wrap_callback(options.result_callback, tracks)
        mp_options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(model_path)),
            running_mode=mp_mode,
            num_faces=options.num_faces,
            min_face_detection_confidence=options.min_face_detection_confidence,
            min_face_presence_confidence=options.min_face_presence_confidence,
            min_tracking_confidence=options.min_tracking_confidence,
            output_face_blendshapes=options.output_face_blendshapes,
            output_facial_transformation_matrixes=options.output_facial_transformation_matrixes,
            result_callback=callback,
        )
        try:
            landmarker = vision.FaceLandmarker.create_from_options(mp_options)
        except Exception as exc:  # native loader errors come as RuntimeError/ValueError
            raise ModelAssetError(f"MediaPipe could not load {model_path}: {exc}") from exc
        return cls(landmarker, options, tracks)

    @property
    def options(self) -> FaceTrackerOptions:
        return self._options

    # -- running modes -------------------------------------------------------------------

    def detect(self, image: np.ndarray) -> list[FaceResult]:
        """Track faces in one image (IMAGE mode).

        Args:
            image: (H, W, 3) uint8 RGB, or anything :func:`as_rgb_uint8` accepts.

        Returns:
            Faces found, possibly none, in MediaPipe's order.
        """
        self._require_mode(RunningMode.IMAGE, "detect")
        rgb = as_rgb_uint8(image)
        result = self._run(lambda lm, mp_image: lm.detect(mp_image), rgb)
        return _convert_result(result, rgb.shape[1], rgb.shape[0])

    def detect_for_video(self, image: np.ndarray, timestamp_ms: int) -> list[FaceResult]:
        """Track faces in one video frame (VIDEO mode); timestamps must strictly increase.

        Returns:
            Faces sorted by track id, smoothed, including the loss policy's stand-ins
            (``tracked=False``) for faces lost in this frame.

        Raises:
            TimestampError: ``timestamp_ms`` is not greater than the previous one.
        """
        self._require_mode(RunningMode.VIDEO, "detect_for_video")
        rgb = as_rgb_uint8(image)
        ts = self._next_timestamp(timestamp_ms)
        result = self._run(lambda lm, mp_image: lm.detect_for_video(mp_image, ts), rgb)
        faces = _convert_result(result, rgb.shape[1], rgb.shape[0])
        assert self._tracks is not None  # create_from_options gives VIDEO mode its tracks
        return self._tracks.update(faces, ts)

    def detect_async(self, image: np.ndarray, timestamp_ms: int) -> None:
        """Queue one live frame (LIVE_STREAM mode); results arrive via ``result_callback``.

        Raises:
            TimestampError: ``timestamp_ms`` is not greater than the previous one.
        """
        self._require_mode(RunningMode.LIVE_STREAM, "detect_async")
        rgb = as_rgb_uint8(image)
        ts = self._next_timestamp(timestamp_ms)
        self._run(lambda lm, mp_image: lm.detect_async(mp_image, ts), rgb)

    def track_image(self, image: np.ndarray) -> FaceResult:
        """The largest face in one image (IMAGE mode).

        Raises:
            NoFaceError: no face was found.
        """
        return largest_face(self.detect(image))

    # -- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        """Release the native graph. Safe to call more than once."""
        landmarker, self._landmarker = self._landmarker, None
        if landmarker is not None:
            try:
                landmarker.close()
            except Exception as exc:
                raise BackendError(f"closing MediaPipe FaceLandmarker failed: {exc}") from exc

    def __enter__(self) -> FaceTracker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------

    def _require_mode(self, mode: RunningMode, method: str) -> None:
        if self._landmarker is None:
            raise BackendError("FaceTracker is closed")
        check_running_mode(self._options.running_mode, mode, f"FaceTracker.{method}()")

    def _next_timestamp(self, timestamp_ms: int) -> int:
        with self._lock:
            self._last_timestamp_ms = next_timestamp(timestamp_ms, self._last_timestamp_ms)
        return self._last_timestamp_ms

    def _run(self, call: Callable[[Any, Any], Any], rgb: np.ndarray) -> Any:
        import mediapipe as mp

        try:
            mp_image = mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)
            return call(self._landmarker, mp_image)
        except Exception as exc:
            raise BackendError(f"MediaPipe FaceLandmarker failed: {exc}") from exc


def track_image(image: np.ndarray, model_path: str | Path | None = None) -> FaceResult:
    """One-shot: the largest face in ``image``. Builds and closes a tracker per call.

    Raises:
        NoFaceError: no face was found.
    """
    options = FaceTrackerOptions(model_path=model_path, num_faces=4)
    with FaceTracker.create_from_options(options) as tracker:
        return tracker.track_image(image)


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Normalise an image to a C-contiguous (H, W, 3) uint8 RGB array.

    Accepts (H, W, 3) uint8 RGB as is; converts grayscale (H, W) or (H, W, 1), RGBA (alpha
    dropped), uint16 (scaled to 8 bits) and float in [0, 1]. Both sides must be at least
    32 px.

    Raises:
        InvalidInputError: naming what is wrong (type, ndim, channels, dtype, size, NaN, range).
    """
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if not isinstance(image, np.ndarray):
        raise InvalidInputError(f"image must be a numpy array, got {type(image).__name__}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3:
        raise InvalidInputError(
            f"image must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got ndim={image.ndim} "
            f"shape {image.shape}"
        )
    if image.size == 0:
        raise InvalidInputError(f"image is empty: shape {image.shape}")
    h, w, c = image.shape
    if c not in (1, 3, 4):
        raise InvalidInputError(
            f"image must have 1, 3 or 4 channels, got {c} (shape {image.shape})"
        )
    if min(h, w) < MIN_IMAGE_SIDE_PX:
        raise InvalidInputError(
            f"image is {w}x{h} px; both sides must be at least {MIN_IMAGE_SIDE_PX} px"
        )

    if image.dtype == np.uint8:
        out = image
    elif image.dtype == np.uint16:
        # 65535 / 257 = 255 exactly; rounding keeps mid-grey mid-grey.
        out = ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif np.issubdtype(image.dtype, np.floating):
        if not np.isfinite(image).all():
            raise InvalidInputError("image contains NaN or infinite values")
        lo, hi = float(image.min()), float(image.max())
        if lo < 0.0 or hi > 1.0:
            raise InvalidInputError(
                f"float images must lie in [0, 1], got values in [{lo:.3g}, {hi:.3g}]"
            )
        out = np.rint(image.astype(np.float32) * 255.0).astype(np.uint8)
    else:
        raise InvalidInputError(
            f"image dtype must be uint8, uint16 or float in [0, 1], got {image.dtype}"
        )

    if c == 1:
        out = np.repeat(out, 3, axis=2)
    elif c == 4:
        out = out[:, :, :3]
    return np.ascontiguousarray(out)


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB, with its EXIF orientation applied.

    Raises:
        ImageReadError: the file is missing, not a file, unreadable or not an image.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"image file not found: {path}")
    if not path.is_file():
        raise ImageReadError(f"not a file: {path}")
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except UnidentifiedImageError as exc:
        raise ImageReadError(f"not a recognised image format: {path}") from exc
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"cannot decode image {path}: {exc}") from exc


# -- MediaPipe -> numpy ----------------------------------------------------------------------


def _convert_result(result: Any, width: int, height: int) -> list[FaceResult]:
    faces = []
    blendshapes = getattr(result, "face_blendshapes", None) or []
    matrices = getattr(result, "facial_transformation_matrixes", None) or []
    for i, points in enumerate(result.face_landmarks or []):
        norm = np.array([(p.x, p.y, p.z) for p in points], dtype=np.float32)
        # MediaPipe normalises x by width, y by height, and z "roughly like x": scale by width.
        landmarks = norm * np.array([width, height, width], dtype=np.float32)
        shapes = (
            {c.category_name: float(c.score) for c in blendshapes[i]}
            if i < len(blendshapes)
            else {}
        )
        transform = (
            np.asarray(matrices[i], dtype=np.float32).reshape(4, 4) if i < len(matrices) else None
        )
        faces.append(
            FaceResult(
                landmarks=landmarks,
                landmarks68=mediapipe_to_68(landmarks),
                blendshapes=shapes,
                transform=transform,
            )
        )
    return faces


def _check_options(options: FaceTrackerOptions) -> None:
    if not isinstance(options.running_mode, RunningMode):
        raise InvalidInputError(f"running_mode must be a RunningMode, got {options.running_mode!r}")
    if (
        isinstance(options.num_faces, bool)
        or not isinstance(options.num_faces, int)
        or options.num_faces < 1
    ):
        raise InvalidInputError(f"num_faces must be a positive int, got {options.num_faces!r}")
    for name in (
        "min_face_detection_confidence",
        "min_face_presence_confidence",
        "min_tracking_confidence",
    ):
        value = getattr(options, name)
        if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise InvalidInputError(f"{name} must be in [0, 1], got {value!r}")
    if options.smoothing is not None and not isinstance(options.smoothing, OneEuroParams):
        raise InvalidInputError(
            f"smoothing must be OneEuroParams or None, got {type(options.smoothing).__name__}"
        )
    check_loss_policy(options.on_face_lost, options.neutral_fade_ms)
    live = options.running_mode is RunningMode.LIVE_STREAM
    if live and options.result_callback is None:
        raise InvalidInputError("LIVE_STREAM mode needs a result_callback")
    if not live and options.result_callback is not None:
        raise InvalidInputError("result_callback is only used in LIVE_STREAM mode")


def _wrap_callback(
    user_callback: ResultCallback | None, tracks: FaceTracks
) -> Callable[[Any, Any, int], None]:
    assert user_callback is not None
    lock = threading.Lock()  # MediaPipe calls back from its own thread

    def on_result(result: Any, mp_image: Any, timestamp_ms: int) -> None:
        rgb = np.asarray(mp_image.numpy_view())
        faces = _convert_result(result, mp_image.width, mp_image.height)
        with lock:
            faces = tracks.update(faces, int(timestamp_ms))
        user_callback(faces, rgb, int(timestamp_ms))

    return on_result


__all__ = [
    "FaceResult",
    "FaceTracker",
    "FaceTrackerOptions",
    "RunningMode",
    "as_rgb_uint8",
    "check_running_mode",
    "head_pose_degrees",
    "largest_face",
    "load_image",
    "next_timestamp",
    "track_image",
]
