"""Evaluation metrics (PSNR, SSIM, Fréchet distance, CSIM, landmark NME) and the K-shot run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import skimage.data

from talkinghead.errors import InvalidInputError
from talkinghead.models.checkpoint import load_checkpoint
from talkinghead.sdk.landmarks import crop_face
from talkinghead.sdk.photos import builtin_photo
from talkinghead.train.data import VideoSet
from talkinghead.train.evaluate import (
    EvalConfig,
    IdentityDescriptor,
    cosine,
    evaluate,
    fid_from_features,
    frechet_distance,
    inter_ocular_nme,
    photo_clip,
    psnr,
    rank_identity,
    shard_clips,
    ssim,
)
from talkinghead.train.pseudo_video import ASTRONAUT_LANDMARKS_68


def test_psnr_and_ssim_on_known_images():
    a = np.zeros((2, 16, 16, 3), np.uint8)
    b = np.full_like(a, 16)
    assert psnr(a, b) == pytest.approx(10 * np.log10(255**2 / 256))
    assert psnr(a, a) == float("inf")
    img = skimage.data.astronaut()[None, ::8, ::8]
    noisy = np.clip(img + np.random.default_rng(0).normal(0, 25, img.shape), 0, 255).astype(
        np.uint8
    )
    assert ssim(img, img) == pytest.approx(1.0)
    assert 0 < ssim(img, noisy) < 0.9


def test_frechet_distance_matches_the_closed_form():
    mu1, mu2 = np.array([0.0, 1.0]), np.array([2.0, -1.0])
    s1, s2 = np.diag([1.0, 4.0]), np.diag([9.0, 1.0])
    # Diagonal covariances: Tr(S1 + S2 - 2 sqrt(S1 S2)) = sum (sqrt(a) - sqrt(b))^2.
    expected = 8.0 + (1 - 3) ** 2 + (2 - 1) ** 2
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected)
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, (4000, 3))
    b = rng.normal(0, 1, (4000, 3)) * 2 + 1
    assert fid_from_features(a, a) == pytest.approx(0, abs=1e-6)
    assert fid_from_features(a, b) == pytest.approx(3 * 1 + 3 * (2 - 1) ** 2, rel=0.05)
    with pytest.raises(InvalidInputError):
        fid_from_features(a[:1], b)


def test_landmark_nme_is_relative_to_the_eye_distance():
    lm = ASTRONAUT_LANDMARKS_68
    iod = np.linalg.norm(lm[36] - lm[45])
    assert inter_ocular_nme(lm + [3.0, 4.0], lm) == pytest.approx(5 / iod, rel=1e-5)


def test_identity_descriptor_tells_people_apart(clip):
    ident = IdentityDescriptor()
    crop, lm, _ = crop_face(skimage.data.astronaut(), ASTRONAUT_LANDMARKS_68, 128)
    same = cosine(ident(crop, lm), ident(crop[:, ::-1].copy(), lm * [-1, 1] + [128, 0]))
    diff = cosine(ident(crop, lm), ident(clip.shot_frames[0], clip.shot_lms[0]))  # Grace Hopper
    assert same > 0.95 and diff < same - 0.03, (same, diff)


def test_rank_identity_orders_by_descriptor_distance():
    gallery = {"a": np.zeros(128), "b": np.full(128, 0.1), "c": np.full(128, 1.0)}
    near_b = np.full(128, 0.09)
    got = rank_identity(near_b, "b", gallery)
    assert got["id_rank"] == 1 and got["id_of"] == 3 and got["id_match"]
    assert got["id_nearest"][0] == "a"
    assert got["id_dist"] == pytest.approx(0.01 * np.sqrt(128))
    far = rank_identity(near_b, "c", gallery)
    assert far["id_rank"] == 3 and not far["id_match"] and far["id_nearest"][0] == "b"
    with pytest.raises(InvalidInputError, match="gallery"):
        rank_identity(near_b, "d", gallery)


def test_shard_clips_split_shots_from_tests():
    frames = np.zeros((2, 6, 16, 16, 3), np.uint8)
    lms = np.full((2, 6, 68, 2), 8, np.float32)
    clips = shard_clips(VideoSet(frames, lms, ["a", "b"]), tests=2)
    assert [c.name for c in clips] == ["a", "b"]
    assert clips[0].shot_frames.shape[0] == 4 and clips[0].test_frames.shape[0] == 2
    with pytest.raises(InvalidInputError):
        shard_clips(VideoSet(frames, lms, ["a", "b"]), tests=6)


@pytest.fixture(scope="module")
def teacher(teacher_checkpoint):
    return load_checkpoint(teacher_checkpoint, "teacher")


@pytest.fixture(scope="module")
def clip():
    """Grace Hopper, held out of the committed teacher's training: 2 shots, 2 test frames."""
    return photo_clip("grace_hopper", builtin_photo("grace_hopper"), 128, 2, 2)


@pytest.mark.slow
def test_evaluate_writes_scores_and_fine_tuning_helps(teacher, clip, tmp_path, caplog):
    # 4 single-shot steps lift PSNR by about 1.3 dB on this clip (6 two-shot steps: 2 dB).
    cfg = EvalConfig(shots=(2,), modes=("ff", "ft"), ft_steps=4, ft_batch=1, test_frames=2)
    crop, lm, _ = crop_face(skimage.data.astronaut(), ASTRONAUT_LANDMARKS_68, 128)
    gallery = {"astronaut": (crop, lm)}
    with caplog.at_level("WARNING", logger="talkinghead.train.evaluate"):
        report = evaluate(teacher, [clip], cfg, tmp_path, progress=False, gallery=gallery)
    rows = {(r["mode"], r["k"]): r for r in report["results"]}
    assert set(rows) == {("ff", 2), ("ft", 2)}
    assert report["gallery"] == ["astronaut", "grace_hopper"]
    for r in rows.values():
        assert np.isfinite([r["psnr_db"], r["ssim"], r["csim"], r["id_dist"]]).all()
        assert r["id_of"] == 2 and r["id_rank"] in (1, 2)
        assert r["id_nearest"][0] == "astronaut"
        assert 0 <= r["lm_failed"] <= 2
    assert report["fid"] is None and "--inception-weights" in report["fid_note"]
    assert report["fid_note"] in caplog.text  # without weights, the run says so
    # Fine-tuning on the held-out person's shots brings the output closer to that person.
    assert rows[("ft", 2)]["psnr_db"] > rows[("ff", 2)]["psnr_db"] + 0.5
    assert json.loads((tmp_path / "report.json").read_text())["results"] == report["results"]
    for png in ("metrics.png", "samples_grace_hopper.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow  # loads the demo teacher and a clip (module fixtures)
def test_k_beyond_the_shots_and_bad_modes_are_invalid_input(teacher, clip, tmp_path):
    with pytest.raises(InvalidInputError, match="K=3 needs 3 shot frames"):
        evaluate(teacher, [clip], EvalConfig(shots=(1, 3), csim=False), tmp_path, progress=False)
    with pytest.raises(InvalidInputError):
        evaluate(teacher, [clip], EvalConfig(modes=("xx",)), tmp_path, progress=False)
    with pytest.raises(InvalidInputError):
        evaluate(teacher, [clip], EvalConfig(shots=(0,)), tmp_path, progress=False)
