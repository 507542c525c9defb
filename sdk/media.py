"""Video and sticker files: read driving videos, write MP4 (H.264) and animated WebP.

Frames are (H, W, 3) uint8 RGB throughout.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from talkinghead.errors import ImageReadError, InvalidInputError


def _check_frames(frames: list[np.ndarray]) -> tuple[int, int]:
    if not frames:
        raise InvalidInputError("no frames to write")
    h, w = frames[0].shape[:2]
    for i, f in enumerate(frames):
        if f.dtype != np.uint8 or f.shape != (h, w, 3):
            raise InvalidInputError(
                f"frame {i} is {f.shape} {f.dtype}; every frame must be ({h}, {w}, 3) uint8"
            )
    return h, w


def write_mp4(
    frames: Iterable[np.ndarray], path: str | os.PathLike[str], fps: float = 25, crf: int = 18
) -> Path:
    """Encode frames as H.264 (yuv420p, playable everywhere) in an MP4 container.

    H.264 in yuv420p needs even sides; odd-sized frames are padded by one edge pixel.
    """
    import av

    frames = list(frames)
    h, w = _check_frames(frames)
    if not fps > 0:
        raise InvalidInputError(f"fps must be positive, got {fps}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ph, pw = h + h % 2, w + w % 2
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = pw, ph, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "medium"}
        for f in frames:
            if (ph, pw) != (h, w):
                f = np.pad(f, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_webp(
    frames: Iterable[np.ndarray],
    path: str | os.PathLike[str],
    fps: float = 25,
    quality: int = 80,
    loop: int = 0,
) -> Path:
    """Write an animated WebP sticker (``loop=0`` repeats forever)."""
    from PIL import Image

    frames = list(frames)
    _check_frames(frames)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(f) for f in frames]
    images[0].save(
        path,
        format="WEBP",
        save_all=True,
        append_images=images[1:],
        duration=int(round(1000 / fps)),
        loop=loop,
        quality=quality,
        method=4,
    )
    return path


def read_video(
    path: str | os.PathLike[str], max_frames: int | None = None
) -> Iterator[tuple[np.ndarray, int]]:
    """Decode a video file: yields (frame (H, W, 3) uint8 RGB, timestamp ms), strictly increasing.

    Raises ImageReadError for a missing file, a file with no video stream, or undecodable data.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"video not found: {path}")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise ImageReadError(f"cannot open {path} as a video: {exc}") from exc
    with container:
        if not container.streams.video:
            raise ImageReadError(f"{path} has no video stream")
        stream = container.streams.video[0]
        last_ms, count = -1, 0
        try:
            for frame in container.decode(stream):
                t = frame.time
                ms = int(round(t * 1000)) if t is not None else last_ms + 1
                ms = max(ms, last_ms + 1)  # some containers repeat or omit timestamps
                last_ms = ms
                yield frame.to_ndarray(format="rgb24"), ms
                count += 1
                if max_frames is not None and count >= max_frames:
                    return
        except (av.error.FFmpegError, ValueError) as exc:
            raise ImageReadError(f"{path} is corrupt after frame {count}: {exc}") from exc
        if count == 0:
            raise ImageReadError(f"{path} holds no decodable video frames")


def count_frames(path: str | os.PathLike[str]) -> int:
    """Number of frames, by decoding every one (container headers can lie)."""
    return sum(1 for _ in read_video(path))


def video_fps(path: str | os.PathLike[str], default: float = 25.0) -> float:
    import av

    try:
        with av.open(str(path)) as c:
            rate = c.streams.video[0].average_rate
            return float(rate) if rate else default
    except (av.error.FFmpegError, OSError, IndexError, ValueError) as exc:
        raise ImageReadError(f"cannot read the frame rate of {path}: {exc}") from exc
