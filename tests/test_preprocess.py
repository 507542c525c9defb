"""VoxCeleb2-layout videos -> shards: decode, track, crop, pick frames; bad input is reported.

The videos are made here: pseudo-videos of the astronaut photo written as H.264 MP4, a
video with no face, a corrupt file, a truncated file and a video too short to use.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from talkinghead.cli import main
from talkinghead.errors import InvalidInputError, NoFaceError
from talkinghead.sdk.landmarks import crop_face
from talkinghead.sdk.media import write_mp4
from talkinghead.train.data import read_shard
from talkinghead.train.preprocess import PreprocessConfig, choose_frames, find_videos, preprocess
from talkinghead.train.pseudo_video import ASTRONAUT_LANDMARKS_68, make_pseudo_video

S = 64  # px, shard crops
T = 5  # frames kept per video


@pytest.fixture(scope="module")
def astronaut_clip() -> tuple[np.ndarray, np.ndarray]:
    """10 frames (160 px) of the astronaut talking, and their exact landmarks."""
    crop, lm, _ = crop_face(skimage.data.astronaut(), ASTRONAUT_LANDMARKS_68, 160)
    return make_pseudo_video(crop, lm, 10, seed=3)


@pytest.fixture(scope="module")
def vox_tree(tmp_path_factory, astronaut_clip) -> Path:
    root = tmp_path_factory.mktemp("vox")
    frames, _ = astronaut_clip
    write_mp4(frames, root / "id001" / "vidA" / "00001.mp4")
    (root / "id001" / "vidA" / "00002.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(300))
    write_mp4(frames[::-1, :, ::-1], root / "id001" / "vidB" / "00001.mp4")  # mirrored
    ramp = np.linspace(40, 200, 160, dtype=np.uint8)
    blank = np.broadcast_to(ramp[None, :, None, None], (160, 160, 3, 6)).transpose(3, 0, 1, 2)
    write_mp4(np.ascontiguousarray(blank), root / "id002" / "vidC" / "00001.mp4")
    write_mp4(frames[:3], root / "id003" / "vidD" / "00001.mp4")
    good = (root / "id001" / "vidA" / "00001.mp4").read_bytes()
    (root / "id004" / "vidE").mkdir(parents=True)
    (root / "id004" / "vidE" / "00001.mp4").write_bytes(good[: len(good) // 3])
    (root / "id004" / "notes.txt").write_text("not a video")
    return root


@pytest.fixture(scope="module")
def result(vox_tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    cfg = PreprocessConfig(size=S, frames_per_video=T, candidates_per_file=8, videos_per_shard=1)
    return preprocess(vox_tree, out, cfg, progress=False), out


def test_find_videos_groups_utterances_by_video(vox_tree):
    videos = find_videos(vox_tree)
    assert list(videos) == ["id001/vidA", "id001/vidB", "id002/vidC", "id003/vidD", "id004/vidE"]
    assert [f.name for f in videos["id001/vidA"]] == ["00001.mp4", "00002.mp4"]


def test_good_videos_become_shards_of_tracked_aligned_crops(result, astronaut_clip):
    report, out = result
    assert report.videos_written == 2 and report.frames_written == 2 * T
    assert len(report.shards) == 2  # one video per shard here
    videos = [read_shard(p) for p in report.shards]
    assert [v.video_ids[0] for v in videos] == ["id001/vidA", "id001/vidB"]
    v = videos[0]
    assert v.frames.shape == (1, T, S, S, 3) and v.landmarks.shape == (1, T, 68, 2)
    # The crop is centred on the landmarks' box, which spans 1/1.8 of the side.
    lm = v.landmarks[0]
    centre = (lm.min(axis=1) + lm.max(axis=1)) / 2
    np.testing.assert_allclose(centre, S / 2, atol=1.5)
    np.testing.assert_allclose((lm.max(axis=1) - lm.min(axis=1)).max(axis=1), S / 1.8, rtol=0.1)
    # Frame 0 is kept (evenly spaced picks start there). Its tracked landmarks match the
    # exact ones up to the crop's scale and shift, and that crop is the shard's image.
    frames, exact = astronaut_clip
    a = np.concatenate([exact[0].reshape(-1, 1), np.tile(np.eye(2), (68, 1))], axis=1)
    (scale, ox, oy), *_ = np.linalg.lstsq(a, lm[0].reshape(-1), rcond=None)
    fitted = exact[0] * scale + [ox, oy]
    err = np.linalg.norm(fitted - lm[0], axis=1).mean()
    assert err < 0.05 * S, f"tracked landmarks are {err:.1f} px off the exact ones"
    # Warp at 4x and shrink (antialiased like the crop), then correlate the blurred images:
    # the tracked box differs from the exact one by a pixel or so; a 4 px shift gives < 0.8.
    warp = np.array([[scale, 0, ox], [0, scale, oy]], np.float32) * 4
    big = cv2.warpAffine(frames[0], warp, (4 * S, 4 * S), borderMode=cv2.BORDER_REPLICATE)
    expected = cv2.resize(big, (S, S), interpolation=cv2.INTER_AREA)
    blur = [
        cv2.GaussianBlur(x.astype(np.float32), (0, 0), 2).ravel()
        for x in (v.frames[0, 0], expected)
    ]
    a, b = (x - x.mean() for x in blur)
    corr = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert corr > 0.9, f"the shard's crop correlates {corr:.2f} with the tracked box"


def test_bad_input_is_skipped_and_counted(result, vox_tree):
    report, out = result
    assert report.videos_found == 5 and report.files_found == 6

    def where(path: str) -> str:
        return Path(path).relative_to(vox_tree).as_posix() if path.startswith("/") else path

    reasons = {(where(s["path"]), s["level"], s["reason"].split(":")[0]) for s in report.skipped}
    assert reasons == {
        ("id001/vidA/00002.mp4", "file", "unreadable"),
        ("id004/vidE/00001.mp4", "file", "unreadable"),
        ("id002/vidC", "video", "no face"),
        ("id003/vidD", "video", "too few face frames"),
    }
    saved = json.loads((out / "report.json").read_text())
    assert saved == json.loads(json.dumps(report.to_dict()))
    assert saved["skipped_counts"] == {
        "file: unreadable": 2,
        "video: no face": 1,
        "video: too few face frames": 1,
    }


def test_nothing_usable_is_an_error_with_a_report(vox_tree, tmp_path):
    root = tmp_path / "faceless"
    root.mkdir()
    for sub in ("id002", "id004"):
        (root / sub).symlink_to(vox_tree / sub, target_is_directory=True)
    with pytest.raises(NoFaceError, match="report.json"):
        preprocess(root, tmp_path / "out", PreprocessConfig(size=S, frames_per_video=T), False)
    assert json.loads((tmp_path / "out" / "report.json").read_text())["videos_written"] == 0


@pytest.mark.parametrize(
    "cfg",
    [
        PreprocessConfig(size=8),
        PreprocessConfig(frames_per_video=1),
        PreprocessConfig(pick="middle"),
        PreprocessConfig(videos_per_shard=0),
    ],
)
def test_bad_config_is_invalid_input(tmp_path, cfg):
    with pytest.raises(InvalidInputError):
        preprocess(tmp_path, tmp_path / "out", cfg, progress=False)


def test_choose_frames():
    rng = np.random.default_rng(0)
    assert choose_frames(9, 3, "even", rng).tolist() == [0, 4, 8]
    r = choose_frames(20, 5, "random", rng)
    assert len(set(r.tolist())) == 5 and (np.diff(r) > 0).all() and r.max() < 20
    with pytest.raises(InvalidInputError, match="3 face frames, 5 needed"):
        choose_frames(3, 5, "even", rng)


def test_cli_preprocess_reports_errors(tmp_path, capsys):
    assert main(["preprocess", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no video files" in capsys.readouterr().err
