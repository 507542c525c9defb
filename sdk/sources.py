"""Frame sources for tracking: video files (PyAV) and webcams (OpenCV).

Every source is an iterator of ``(frame, timestamp_ms)`` with ``frame`` (H, W, 3) uint8 RGB
and strictly increasing integer timestamps, ready for
:meth:`~talkinghead.sdk.tracker.FaceTracker.detect_for_video`. Sources are context managers.

    with open_source("talk.mp4") as frames:          # or open_source(0) for camera 0
        for frame, t_ms in frames:
            faces = tracker.detect_for_video(frame, t_ms)

The webcam path needs OpenCV (it comes with the ``tracking`` extra, through MediaPipe). It
has not been run against a real camera on the project's build machines, which have none;
there, opening a camera raises :class:`~talkinghead.errors.CameraError`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator, Iterator
from pathlib import Path

import numpy as np

from talkinghead.errors import BackendError, CameraError, InvalidInputError

from .media import read_video, video_fps


class VideoFileSource:
    """Frames of a video file, decoded with PyAV; timestamps from the container.

    Raises:
        ImageReadError: (on iteration) missing file, no video stream, undecodable data.
    """

    def __init__(self, path: str | os.PathLike[str], max_frames: int | None = None) -> None:
        if max_frames is not None and (
            isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1
        ):
            raise InvalidInputError(
                f"max_frames must be a positive int or None, got {max_frames!r}"
            )
        self.path = Path(path)
        self.max_frames = max_frames
        self._frames: Generator[tuple[np.ndarray, int], None, None] | None = None

    @property
    def fps(self) -> float:
        """Average frame rate from the container (25 when it states none)."""
        return video_fps(self.path)

    def __iter__(self) -> Iterator[tuple[np.ndarray, int]]:
        self._frames = read_video(self.path, max_frames=self.max_frames)
        return self._frames

    def close(self) -> None:
        frames, self._frames = self._frames, None
        if frames is not None:
            frames.close()  # closes the container held open by the generator

    def __enter__(self) -> VideoFileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class WebcamSource:
    """Live frames from a camera through OpenCV; timestamps from a monotonic clock, ms.

    Args:
        index: OpenCV camera index (0 is the default camera).
        max_frames: stop after this many frames; None runs until :meth:`close`.
        width, height: requested capture size, px (the camera may choose another).

    Raises:
        CameraError: no camera at ``index``, or it stopped delivering frames.
        BackendError: OpenCV is not installed.
    """

    def __init__(
        self,
        index: int = 0,
        max_frames: int | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> None:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
            raise InvalidInputError(f"camera index must be a non-negative int, got {index!r}")
        if max_frames is not None and (
            isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1
        ):
            raise InvalidInputError(
                f"max_frames must be a positive int or None, got {max_frames!r}"
            )
        try:
            import cv2
        except ImportError as exc:
            raise BackendError(
                "webcam capture needs OpenCV: pip install 'talkinghead[tracking]'"
            ) from exc
        self._cv2 = cv2
        self.index = int(index)
        self.max_frames = max_frames
        cap = cv2.VideoCapture(self.index)
        if not cap.isOpened():
            cap.release()
            raise CameraError(f"no camera could be opened at index {self.index}")
        if width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, int(width))
        if height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, int(height))
        self._cap: cv2.VideoCapture | None = cap

    def __iter__(self) -> Iterator[tuple[np.ndarray, int]]:
        count, last_ms = 0, None
        t0 = time.monotonic()
        while self._cap is not None and (self.max_frames is None or count < self.max_frames):
            ok, bgr = self._cap.read()
            if not ok or bgr is None:
                raise CameraError(f"camera {self.index} stopped delivering frames after {count}")
            ms = int((time.monotonic() - t0) * 1000)
            # Two reads inside one millisecond would repeat a timestamp; VIDEO mode refuses that.
            ms = ms if last_ms is None or ms > last_ms else last_ms + 1
            last_ms = ms
            count += 1
            yield self._cv2.cvtColor(bgr, self._cv2.COLOR_BGR2RGB), ms

    def close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()

    def __enter__(self) -> WebcamSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_source(
    spec: str | int | os.PathLike[str], max_frames: int | None = None
) -> VideoFileSource | WebcamSource:
    """A camera for an int or ``"camera:N"``, otherwise a video file path."""
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        return WebcamSource(int(spec), max_frames=max_frames)
    if isinstance(spec, str) and spec.startswith("camera:"):
        index = spec.split(":", 1)[1]
        if not index.isdigit():
            raise InvalidInputError(f"camera source must look like 'camera:0', got {spec!r}")
        return WebcamSource(int(index), max_frames=max_frames)
    if not isinstance(spec, (str, os.PathLike)):
        raise InvalidInputError(
            f"source must be a path, a camera index or 'camera:N', got {spec!r}"
        )
    return VideoFileSource(spec, max_frames=max_frames)


__all__ = ["VideoFileSource", "WebcamSource", "open_source"]
