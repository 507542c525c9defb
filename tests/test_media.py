"""Media files: MP4 (H.264) and animated WebP round trips, and unreadable inputs as typed errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from talkinghead.errors import ImageReadError, InvalidInputError
from talkinghead.sdk.media import count_frames, read_video, video_fps, write_mp4, write_webp


def moving_frames(n: int, h: int = 48, w: int = 64) -> list[np.ndarray]:
    """n distinct frames: a bright square sliding over a gradient, (h, w, 3) uint8."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack(
        [xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), np.full_like(xx, 90)], -1
    )
    frames = []
    for i in range(n):
        f = base.astype(np.uint8).copy()
        x0 = (4 + 5 * i) % max(w - 12, 1)
        f[8:20, x0 : x0 + 12] = (250, 250, 40)
        frames.append(f)
    return frames


# ----------------------------------------------------------------------------- MP4


def test_mp4_round_trip(tmp_path):
    frames = moving_frames(7)
    path = write_mp4(frames, tmp_path / "sub" / "clip.mp4", fps=25)
    assert path.is_file() and path.stat().st_size > 0
    assert count_frames(path) == 7
    decoded = list(read_video(path))
    assert len(decoded) == 7
    ts = [t for _, t in decoded]
    assert ts[0] == 0 and all(b > a for a, b in zip(ts, ts[1:], strict=False))
    assert ts[-1] == pytest.approx(6 * 40, abs=2)  # 25 fps -> 40 ms apart
    assert video_fps(path) == pytest.approx(25.0)
    for (got, _), want in zip(decoded, frames, strict=True):
        assert got.shape == want.shape and got.dtype == np.uint8
        # H.264 at crf 18 is lossy but close; the moving square must be where it was put.
        assert np.abs(got.astype(int) - want).mean() < 6


def test_mp4_max_frames_and_fps(tmp_path):
    path = write_mp4(moving_frames(6), tmp_path / "clip.mp4", fps=30)
    assert video_fps(path) == pytest.approx(30.0)
    assert len(list(read_video(path, max_frames=2))) == 2


@pytest.mark.parametrize("hw", [(33, 47), (32, 47), (33, 48)])
def test_mp4_odd_sizes_padded_to_even(tmp_path, hw):
    h, w = hw
    frames = moving_frames(3, h, w)
    path = write_mp4(frames, tmp_path / "odd.mp4")
    decoded = [f for f, _ in read_video(path)]
    assert len(decoded) == 3
    assert decoded[0].shape == (h + h % 2, w + w % 2, 3)
    # The original pixels sit top-left, the pad copies the edge.
    assert np.abs(decoded[1][:h, :w].astype(int) - frames[1]).mean() < 6


def test_mp4_single_frame(tmp_path):
    path = write_mp4(moving_frames(1), tmp_path / "one.mp4")
    assert count_frames(path) == 1


# ----------------------------------------------------------------------------- WebP


def test_webp_animated(tmp_path):
    frames = moving_frames(6)
    path = write_webp(frames, tmp_path / "sub" / "sticker.webp", fps=25)
    with Image.open(path) as im:
        assert im.format == "WEBP"
        assert im.is_animated and im.n_frames == 6
        assert im.size == (64, 48)
        assert im.info.get("loop") == 0
        durations = []
        for i in range(im.n_frames):
            im.seek(i)
            rgb = np.asarray(im.convert("RGB"))  # loads the frame, which sets its duration
            assert rgb.shape == (48, 64, 3)
            durations.append(im.info["duration"])
    assert durations == [40] * 6


def test_webp_identical_frames_still_valid(tmp_path):
    """libwebp merges identical consecutive frames; the file must still be a readable image."""
    f = moving_frames(1)[0]
    path = write_webp([f, f, f], tmp_path / "still.webp")
    with Image.open(path) as im:
        assert 1 <= im.n_frames <= 3
        assert np.abs(np.asarray(im.convert("RGB")).astype(int) - f).mean() < 10


# ----------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("write", [write_mp4, write_webp], ids=["mp4", "webp"])
@pytest.mark.parametrize(
    "frames",
    [
        [],
        [np.zeros((16, 16, 3), np.uint8), np.zeros((16, 18, 3), np.uint8)],
        [np.zeros((16, 16, 3), np.float32)],
        [np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16, 3), np.float64)],
        [np.zeros((16, 16), np.uint8)],
        [np.zeros((16, 16, 4), np.uint8)],
    ],
    ids=["empty", "mismatched", "float", "float-later", "gray", "rgba"],
)
def test_bad_frames_rejected(tmp_path, write, frames):
    out = tmp_path / "x.out"
    with pytest.raises(InvalidInputError):
        write(frames, out)
    assert not out.exists()


def test_mp4_bad_fps(tmp_path):
    with pytest.raises(InvalidInputError):
        write_mp4(moving_frames(2), tmp_path / "x.mp4", fps=0)


def test_frames_from_generator(tmp_path):
    path = write_mp4((f for f in moving_frames(3)), tmp_path / "gen.mp4")
    assert count_frames(path) == 3


def test_missing_video(tmp_path):
    missing = tmp_path / "missing.mp4"
    with pytest.raises(ImageReadError, match="missing.mp4"):
        count_frames(missing)
    with pytest.raises(ImageReadError):
        video_fps(missing)
    with pytest.raises(ImageReadError):
        count_frames(tmp_path)  # a folder


def test_text_file_named_mp4(tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n" * 20)
    with pytest.raises(ImageReadError, match="notes.mp4"):
        count_frames(fake)
    with pytest.raises(ImageReadError):
        video_fps(fake)


def test_empty_file_named_mp4(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(ImageReadError):
        count_frames(empty)


def test_image_is_not_a_video_stream(tmp_path):
    """A PNG opens in FFmpeg as a one-frame 'video'; it must decode or fail typed, never crash."""
    png = tmp_path / "grey.png"
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(png)
    try:
        frames = list(read_video(png))
    except ImageReadError:
        return
    assert len(frames) >= 1 and frames[0][0].shape == (32, 32, 3)


@pytest.mark.parametrize("keep", [0.5, 0.1, 0.9])
def test_truncated_mp4(tmp_path, keep):
    # No label: its tags end the file, and a 10 % cut of this tiny clip would only hit them.
    good = write_mp4(moving_frames(10), tmp_path / "good.mp4", label=False)
    data = good.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ImageReadError, match="cut.mp4"):
        count_frames(cut)
