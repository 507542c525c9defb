"""The avatar runtime on a real warp-and-refine pack: shapes, parity with the eager refiner,
running modes, errors, built-in and driven motion.

The committed refiner may be a placeholder while it trains, so nothing here depends on
image quality: only on behaviour, shapes, determinism and agreement between eager PyTorch
and the ExecuTorch models.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from talkinghead.errors import (
    BackendError,
    InvalidInputError,
    PackError,
    PackIntegrityError,
    TimestampError,
)
from talkinghead.models.checkpoint import load_checkpoint
from talkinghead.sdk.avatar import Avatar, AvatarOptions
from talkinghead.sdk.mesh_motion import apply_mesh_motion, builtin_mesh_motion
from talkinghead.sdk.motion import MotionParams, builtin_motion
from talkinghead.sdk.pack import load_manifest, open_pack, write_pack
from talkinghead.sdk.pack_schema import RIG_NAME, ModelSource
from talkinghead.sdk.rasterize import rasterize_landmarks
from talkinghead.sdk.retarget import relative_motion
from talkinghead.sdk.tensors import from_model_output
from talkinghead.sdk.tracker import RunningMode
from talkinghead.sdk.warp import landmarks68, refiner_input, warp_to

# ExecuTorch fp32 vs eager PyTorch, on the model's [-1, 1] output.
FP32_MAX_ABS = 1e-3
# int8 vs fp32 PSNR on [0, 255] frames (and on the parity vectors, peak-to-peak 2 in [-1, 1]);
# 25 dB is the floor export_avatar_pack writes into the manifest (parity.int8_min_psnr_db).
INT8_MIN_PSNR_DB = 25.0


def psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


@pytest.fixture(scope="module")
def fp32(avatar_pack):
    with Avatar.create_from_pack(avatar_pack, precision="fp32") as avatar:
        yield avatar


@pytest.fixture(scope="module")
def int8(avatar_pack):
    with Avatar.create_from_pack(avatar_pack, precision="int8") as avatar:
        yield avatar


@pytest.fixture(scope="module")
def motion(fp32) -> np.ndarray:
    """(6, 478, 3) built-in motion on the avatar's own mesh, crop px."""
    return builtin_mesh_motion(fp32.neutral_mesh, 6, seed=3)


def model_input(avatar: Avatar, mesh: np.ndarray) -> np.ndarray:
    """The refiner's (1, 7, S, S) input for ``mesh``, as the Avatar builds it."""
    s = avatar.resolution
    return refiner_input(warp_to(avatar._rig, mesh), rasterize_landmarks(landmarks68(mesh), s))


def model_file(pack: Path, precision: str) -> str:
    return load_manifest(pack).model(precision).file


# ----------------------------------------------------------------------------- IMAGE mode


def test_render_shape_dtype_and_determinism(int8):
    s = int8.resolution
    assert s == 256 and int8.neutral_mesh.shape == (478, 3)
    a = int8.render(int8.neutral_mesh)
    b = int8.render(int8.neutral_mesh.copy())
    assert a.shape == (s, s, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)


def test_fp32_pack_matches_eager_refiner(fp32, motion, refiner_checkpoint, avatar_pack):
    refiner = load_checkpoint(refiner_checkpoint, "refiner").eval()
    assert refiner.cfg.resolution == fp32.resolution
    # The watermark changes pixels on purpose (tests/test_provenance.py); parity is without it.
    with Avatar.create_from_pack(avatar_pack, precision="fp32", watermark=False) as plain:
        for mesh in motion[:3]:
            x = model_input(fp32, mesh)
            assert x.shape == (1, 7, fp32.resolution, fp32.resolution) and x.dtype == np.float32
            with torch.no_grad():
                eager = refiner(torch.from_numpy(x)).numpy()
            pte = fp32._backend.run(x)
            assert pte.shape == eager.shape == (1, 3, fp32.resolution, fp32.resolution)
            assert np.abs(pte - eager).max() <= FP32_MAX_ABS
            # Through the public API, after rounding to uint8: at most one level apart.
            frame = plain.render(mesh)
            assert np.abs(frame.astype(int) - from_model_output(eager)[0]).max() <= 1


def test_int8_close_to_fp32_but_quantized(fp32, int8, motion):
    for mesh in motion[:3]:
        a, b = fp32.render(mesh), int8.render(mesh)
        assert psnr(a, b, 255.0) >= INT8_MIN_PSNR_DB
    x = model_input(fp32, motion[0])
    # The int8 model is really a different (quantized) program, not the fp32 one again.
    assert np.abs(int8._backend.run(x) - fp32._backend.run(x)).max() > 0


def test_pack_parity_vectors(avatar_pack, fp32, int8):
    """The pack's stored parity vectors hold, and reproduce on this machine."""
    with open_pack(avatar_pack) as pack:
        parity = pack.load_parity()
    eager = parity["outputs.eager"]
    out32 = parity[f"outputs.{model_file(avatar_pack, 'fp32')}"]
    out8 = parity[f"outputs.{model_file(avatar_pack, 'int8')}"]
    n, s = len(parity["inputs"]), fp32.resolution
    assert n >= 1 and parity["inputs"].shape == (n, 1, 7, s, s)
    assert eager.shape == out32.shape == out8.shape == (n, 1, 3, s, s)
    assert np.abs(out32 - eager).max() <= FP32_MAX_ABS
    assert psnr(out8, eager, 2.0) >= INT8_MIN_PSNR_DB
    for i in range(n):
        x = parity["inputs"][i]
        np.testing.assert_allclose(fp32._backend.run(x), out32[i], atol=1e-5)
        np.testing.assert_allclose(int8._backend.run(x), out8[i], atol=1e-5)


def test_different_meshes_give_different_frames(int8, motion):
    neutral = int8.render(int8.neutral_mesh)
    open_mouth = apply_mesh_motion(int8.neutral_mesh, MotionParams(jaw_open=0.8))
    assert not np.array_equal(neutral, int8.render(open_mouth))
    frames = int8.render_sequence(motion)
    assert any(not np.array_equal(frames[0], f) for f in frames[1:])


@pytest.mark.parametrize(
    "bad",
    [
        np.full((478, 3), np.nan, np.float32),
        np.zeros((477, 3), np.float32),
        np.zeros((478, 2), np.float32),
        np.zeros((68, 2), np.float32),  # the old generator's landmarks: not a mesh
        np.zeros((1, 478, 3), np.float32),
        "not a mesh",
    ],
    ids=["nan", "477pts", "478x2", "68x2", "batched", "str"],
)
def test_bad_meshes_rejected(int8, bad):
    with pytest.raises(InvalidInputError):
        int8.render(bad)


def test_one_nan_point_rejected(int8):
    mesh = int8.neutral_mesh.copy()
    mesh[30, 0] = np.inf
    with pytest.raises(InvalidInputError):
        int8.render(mesh)
    with pytest.raises(InvalidInputError):
        int8.render_sequence(mesh[None])
    for bad in (np.zeros((0, 478, 3)), mesh[:, :2][None], "x"):
        with pytest.raises(InvalidInputError):
            int8.render_sequence(bad)


def test_wrong_mode_calls_rejected(int8):
    mesh = int8.neutral_mesh
    with pytest.raises(InvalidInputError, match="VIDEO"):
        int8.render_for_video(mesh, 0)
    with pytest.raises(InvalidInputError, match="LIVE_STREAM"):
        int8.render_async(mesh, 0)


# ----------------------------------------------------------------------------- VIDEO, LIVE_STREAM


def test_video_mode_timestamps(avatar_pack):
    opts = AvatarOptions(pack=avatar_pack, running_mode=RunningMode.VIDEO)
    with Avatar.create_from_options(opts) as avatar:
        mesh = avatar.neutral_mesh
        f0 = avatar.render_for_video(mesh, 0)
        f1 = avatar.render_for_video(mesh, 40)
        np.testing.assert_array_equal(f0, f1)
        with pytest.raises(TimestampError):
            avatar.render_for_video(mesh, 40)  # equal
        with pytest.raises(TimestampError):
            avatar.render_for_video(mesh, 10)  # backwards
        with pytest.raises(InvalidInputError):
            avatar.render_for_video(mesh, 50.5)
        with pytest.raises(InvalidInputError):  # a rejected frame keeps its timestamp unused
            avatar.render_for_video(mesh[:, :2], 60)
        assert avatar.render_for_video(mesh, 60).shape == f0.shape  # still usable
        with pytest.raises(InvalidInputError, match="IMAGE"):
            avatar.render(mesh)
        # render_sequence works in every mode
        assert avatar.render_sequence(mesh[None]).shape == (1, *f0.shape)


def test_live_stream_mode_calls_back(avatar_pack, int8):
    got: list[tuple[np.ndarray, int]] = []
    opts = AvatarOptions(
        pack=avatar_pack,
        running_mode=RunningMode.LIVE_STREAM,
        result_callback=lambda frame, ts: got.append((frame, ts)),
    )
    mesh = int8.neutral_mesh
    with Avatar.create_from_options(opts) as avatar:
        assert avatar.render_async(mesh, 5) is None
        avatar.render_async(mesh, 45)
        with pytest.raises(TimestampError):
            avatar.render_async(mesh, 45)
    assert [ts for _, ts in got] == [5, 45]
    np.testing.assert_array_equal(got[0][0], int8.render(mesh))


def test_live_stream_needs_callback(avatar_pack):
    with pytest.raises(InvalidInputError, match="result_callback"):
        Avatar.create_from_options(
            AvatarOptions(pack=avatar_pack, running_mode=RunningMode.LIVE_STREAM)
        )


def test_bad_options_rejected(avatar_pack):
    with pytest.raises(InvalidInputError):
        Avatar.create_from_options({"pack": str(avatar_pack)})
    with pytest.raises(InvalidInputError):
        Avatar.create_from_options(AvatarOptions(pack=avatar_pack, running_mode="IMAGE"))


# ----------------------------------------------------------------------------- lifetime, packs


def test_render_after_close(avatar_pack):
    avatar = Avatar.create_from_pack(avatar_pack, precision="int8")
    mesh = avatar.neutral_mesh
    avatar.render(mesh)
    avatar.close()
    avatar.close()  # idempotent
    with pytest.raises(BackendError):
        avatar.render(mesh)
    with pytest.raises(BackendError):
        avatar.animate(2)


@pytest.mark.parametrize("verify", [True, False])
def test_tampered_model_rejected_at_create(avatar_pack, tmp_path, verify):
    bad = Path(shutil.copytree(avatar_pack, tmp_path / "pack"))
    pte = bad / model_file(bad, "int8")
    data = bytearray(pte.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pte.write_bytes(bytes(data))
    # Even without the up-front verify, the bytes handed to the runtime are hash-checked.
    with pytest.raises(PackIntegrityError, match=pte.name):
        Avatar.create_from_pack(bad, precision="int8", verify=verify)
    # The process survives and the untouched models still load and run.
    with Avatar.create_from_pack(bad, precision="fp32", verify=False) as avatar:
        assert avatar.render(avatar.neutral_mesh).dtype == np.uint8


def test_tampered_rig_rejected_at_create(avatar_pack, tmp_path):
    bad = Path(shutil.copytree(avatar_pack, tmp_path / "pack"))
    rig = bad / RIG_NAME
    data = bytearray(rig.read_bytes())
    data[-10] ^= 0xFF
    rig.write_bytes(bytes(data))
    for verify in (True, False):
        with pytest.raises(PackIntegrityError, match=RIG_NAME):
            Avatar.create_from_pack(bad, precision="fp32", verify=verify)


def test_missing_precision(avatar_pack, tmp_path):
    manifest = load_manifest(avatar_pack)
    only_fp32 = write_pack(
        tmp_path / "fp32_only",
        name=manifest.name,
        resolution=manifest.resolution,
        models=[ModelSource(avatar_pack / manifest.model("fp32").file, precision="fp32")],
        neutral_landmarks=manifest.identity.neutral_landmarks,
        rig=(avatar_pack / RIG_NAME).read_bytes(),
    )
    with pytest.raises(PackError, match="int8"):
        Avatar.create_from_pack(only_fp32, precision="int8")
    with pytest.raises(PackError):
        Avatar.create_from_pack(avatar_pack, precision="fp16")
    with Avatar.create_from_pack(only_fp32, precision="fp32") as avatar:
        assert avatar.render(avatar.neutral_mesh).shape[-1] == 3


def test_not_a_pack(tmp_path):
    with pytest.raises(PackError):
        Avatar.create_from_pack(tmp_path / "nothing-here")
    (tmp_path / "manifest.json").write_text(json.dumps({"schema_version": 999}))
    with pytest.raises(PackError):
        Avatar.create_from_pack(tmp_path)


# ----------------------------------------------------------------------------- motion


def test_animate(int8):
    frames = int8.animate(4, seed=1)
    s = int8.resolution
    assert frames.shape == (4, s, s, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames, int8.animate(4, seed=1))
    for bad in (0, -3, 2.5):
        with pytest.raises(InvalidInputError):
            int8.animate(bad)


def other_face(neutral: np.ndarray) -> np.ndarray:
    """Another face shape: narrower, longer, moved and turned slightly, in other pixel units."""
    c = neutral.mean(axis=0)
    t = np.deg2rad(8.0)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]], np.float32)
    shaped = (neutral - c) * np.array([0.8, 1.15], np.float32)
    return (2.5 * shaped @ rot.T + np.array([400.0, 300.0], np.float32)).astype(np.float32)


def other_video(meshes: np.ndarray) -> np.ndarray:
    """``(T, 478, 3)`` meshes seen in another video's pixels: one similarity for every frame
    (scaled, turned in the image, moved)."""
    t = np.deg2rad(8.0)
    rot = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    c = meshes[0].mean(axis=0)
    return ((meshes - c) @ rot.T * 2.5 + np.array([400.0, 300.0, 0.0])).astype(np.float32)


def test_relative_motion_keeps_avatar_neutral(int8):
    avatar_neutral = int8.neutral_landmarks
    driver = builtin_motion(other_face(avatar_neutral), 6, seed=5)
    out = relative_motion(driver, avatar_neutral)
    assert out.shape == driver.shape and out.dtype == np.float32
    np.testing.assert_allclose(out[0], avatar_neutral, atol=1e-4)
    assert np.abs(out[1:] - avatar_neutral).max() > 0.1  # the motion itself came across
    # A driver neutral other than frame 0 is honoured.
    np.testing.assert_allclose(
        relative_motion(driver, avatar_neutral, driver_neutral=driver[3])[3],
        avatar_neutral,
        atol=1e-4,
    )


def test_relative_motion_undoes_driver_scale(int8):
    """A driver that is the avatar's own motion, scaled and moved, retargets to that motion."""
    neutral = int8.neutral_landmarks
    own = np.concatenate([neutral[None], builtin_motion(neutral, 5, seed=2)])  # neutral first
    driver = 3.0 * own + np.float32(100.0)
    np.testing.assert_allclose(relative_motion(driver, neutral), own, atol=1e-3)


def test_relative_motion_rejects_bad_driver(int8):
    neutral = int8.neutral_landmarks
    for bad in (np.zeros((0, 68, 2)), np.zeros((3, 68)), np.full((2, 68, 2), np.nan)):
        with pytest.raises(InvalidInputError):
            relative_motion(bad, neutral)


def test_drive_rejects_bad_driver(int8):
    for bad in (
        np.zeros((2, 67, 2), np.float32),  # the old generator's landmarks
        np.zeros((0, 478, 3), np.float32),
        np.full((2, 478, 3), np.nan, np.float32),
    ):
        with pytest.raises(InvalidInputError):
            int8.drive(bad)


def test_drive(int8):
    own = builtin_mesh_motion(int8.neutral_mesh, 3, seed=4)
    own[0] = int8.neutral_mesh  # the driver's reference pose is its first frame
    driver = other_video(own)
    frames = int8.drive(driver)
    s = int8.resolution
    assert frames.shape == (3, s, s, 3) and frames.dtype == np.uint8
    # Frame 0 is the driver's reference pose, so the avatar shows its own neutral face
    # (the retargeted mesh equals the neutral one to float rounding: a pixel or two may differ).
    neutral = int8.render(int8.neutral_mesh)
    assert np.mean(frames[0] != neutral) < 0.01
    # The other frames carry the driver's motion, which is the avatar's own motion.
    for t in (1, 2):
        np.testing.assert_allclose(int8.target_mesh(driver[t], driver[0]), own[t], atol=1e-2)
        assert not np.array_equal(frames[t], neutral)
