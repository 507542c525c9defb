"""End to end: the README's demo command, and the photo -> enrol -> pack -> render path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from talkinghead.sdk.media import count_frames
from talkinghead.sdk.pack import load_manifest, verify_pack


def _run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    return subprocess.run(
        [sys.executable, "-m", "talkinghead.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.slow  # a subprocess: imports, enrolment, pack, 12 frames, MP4 + WebP
def test_demo_default_writes_playable_video_and_sticker(tmp_path, face_landmarker_task):
    """`talkinghead demo` with no photo: the astronaut enrolled with the shipped refiner ->
    ExecuTorch pack -> MP4 + WebP, with no per-face training."""
    frames = 12
    proc = _run_cli("demo", "--frames", str(frames), "--out", str(tmp_path / "demo"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    mp4, webp = Path(result["mp4"]), Path(result["webp"])
    assert count_frames(mp4) == frames  # decoded, not read from the header
    with Image.open(webp) as im:
        # libwebp merges identical consecutive frames into one longer frame, so check the
        # total play time (25 fps -> 40 ms a frame) rather than the stored frame count.
        assert im.is_animated
        first = np.asarray(im.convert("RGB"))
        total_ms = 0
        for i in range(im.n_frames):
            im.seek(i)
            im.load()
            total_ms += im.info["duration"]
        assert total_ms == frames * 40
    assert first.shape == (256, 256, 3)
    assert first.std() > 10, "the rendered face should not be a flat image"
    assert verify_pack(result["pack"]).ok
    manifest = load_manifest(result["pack"])
    assert {(m.runtime, m.precision) for m in manifest.models} == {
        ("executorch", "fp32"),
        ("executorch", "int8"),
    }
    assert manifest.identity.photo == "photo.png"  # the enrolled crop travels with the pack
    assert manifest.schema_version == 3 and manifest.provenance["finetune_steps"] == 0
    assert "finetune_s" not in {k.split(".")[-1] for k in result}  # no per-face training


def test_demo_rejects_missing_photo(tmp_path):
    proc = _run_cli("demo", "--photo", str(tmp_path / "nobody.jpg"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "nobody.jpg" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow  # the demo pipeline in a child process
def test_new_photo_enrols_packs_and_renders(tmp_path):
    """A held-out photo (never trained on) is enrolled in seconds and renders: no training."""
    from talkinghead.packs import export_avatar_pack
    from talkinghead.pipeline import render_pack

    pack, figures = export_avatar_pack(
        "grace_hopper", tmp_path / "pack", precisions=("fp32",), progress=False
    )
    assert "finetune_s" not in figures and figures["enrol_s"] < 30
    assert load_manifest(pack).name == "grace_hopper"
    result = render_pack(pack, tmp_path / "out", frames=4, precision="fp32", progress=False)
    assert count_frames(result["mp4"]) == 4


@pytest.mark.slow
def test_finetune_is_an_opt_in(tmp_path):
    """--finetune STEPS fine-tunes a copy of the refiner on the face first, then exports it."""
    from talkinghead.packs import export_avatar_pack

    pack, figures = export_avatar_pack(
        "grace_hopper", tmp_path / "pack", precisions=("fp32",), finetune_steps=2,
        progress=False,
    )  # fmt: skip
    assert figures["finetune_s"] > 0
    manifest = load_manifest(pack)
    assert manifest.provenance["finetune_steps"] == 2
    assert manifest.provenance["training"]["finetuned_on"] == "grace_hopper"
    assert verify_pack(pack).ok


@pytest.mark.slow
def test_new_photo_distils_a_student(tmp_path, teacher_checkpoint, face_landmarker_task):
    """The old per-face route stays available (`talkinghead distill`): FT enrolment of the
    teacher on a held-out photo, then a student distilled for that one face."""
    from talkinghead.pipeline import distill_for_photo

    student, figures = distill_for_photo(
        teacher_checkpoint,
        "grace_hopper",
        tmp_path / "hopper.safetensors",
        steps=20,
        finetune_steps=2,
        sequences=2,
        progress=False,
    )
    assert student.exists() and student.with_suffix(".png").exists()
    assert np.isfinite(figures["val_psnr_db"])


def test_driver_video_of_another_face_drives_the_avatar(
    tmp_path, avatar_pack, face_landmarker_task
):
    """A real MP4 of a held-out face (mesh-warped photo) is tracked and drives the avatar."""
    from talkinghead.pipeline import render_pack
    from talkinghead.sdk.media import read_video, write_mp4
    from talkinghead.sdk.photos import builtin_photo, track_and_crop
    from talkinghead.train.pseudo_video import make_pseudo_video

    crop, lm = track_and_crop(builtin_photo("grace_hopper"), 256)
    frames, _ = make_pseudo_video(crop, lm, 10, seed=5)
    driver = write_mp4(frames, tmp_path / "driver.mp4")
    result = render_pack(
        avatar_pack, tmp_path / "out", driver=driver, precision="fp32", progress=False
    )
    assert result["frames"] == 10
    rendered = np.stack([f for f, _ in read_video(result["mp4"])])
    assert rendered.shape[0] == 10
    # The driver talks, so the avatar's frames must change over time.
    assert np.abs(rendered[1:].astype(int) - rendered[:1].astype(int)).max() > 20


def test_a_driver_without_a_face_is_refused_before_enrolment(tmp_path):
    """A driving video that is not of a face fails with NoFaceError before any pack is
    written (the check runs before enrolment, not after it)."""
    from talkinghead.errors import NoFaceError
    from talkinghead.pipeline import DemoOptions, run_demo
    from talkinghead.sdk.media import write_mp4

    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (12, 96, 96, 3), dtype=np.uint8)
    clip = write_mp4(noise, tmp_path / "noise.mp4", label=False)
    out = tmp_path / "out"
    with pytest.raises(NoFaceError, match="no face found in the first"):
        run_demo(DemoOptions(driver=str(clip), out_dir=out, frames=4))
    assert not (out / "pack").exists()
