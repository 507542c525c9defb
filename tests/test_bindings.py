"""The native runtime (bindings/): built with CMake against the executorch wheel, called
through ctypes, compared with the Python SDK's ExecuTorch path.

Tolerances: the rasteriser must match sdk/rasterize.py exactly (every pixel); the C++
warp may differ from sdk/warp.py by at most 1 uint8 level per channel (in practice it is
identical: the same double arithmetic, inclusion, depth and tie rules); a rendered frame
may differ from the Python SDK's by at most 1 uint8 level per channel (both run the same
ExecuTorch libraries, so in practice they are identical). A marked
frame may differ from Python's ``pack_watermark(manifest).embed`` of the same frame by 1
level on a few chips (numpy sums the template correlations in BLAS, in its own order; in
practice they are identical too).
"""

from __future__ import annotations

import ctypes
import dataclasses
import glob
import hashlib
import json
import os
import shutil
import struct
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from talkinghead.bindings import native
from talkinghead.errors import (
    BackendError,
    InvalidInputError,
    PackError,
    PackIntegrityError,
    ParityError,
    TimestampError,
)
from talkinghead.sdk.avatar import Avatar
from talkinghead.sdk.backends import ExecuTorchBackend
from talkinghead.sdk.driver import DEFAULT_SMOOTHING, MeshDriver, drive_frame, mesh_to_pixels
from talkinghead.sdk.mesh_motion import (
    apply_mesh_motion,
    builtin_mesh_motion,
    retarget_mesh,
    rotate_head,
)
from talkinghead.sdk.motion import MotionParams
from talkinghead.sdk.pack import load_manifest, open_pack
from talkinghead.sdk.provenance import pack_id, pack_payload
from talkinghead.sdk.rasterize import rasterize_landmarks, template_landmarks
from talkinghead.sdk.smoothing import OneEuroParams
from talkinghead.sdk.tracker import FaceTracker, FaceTrackerOptions, RunningMode
from talkinghead.sdk.warp import WarpRig, rig_from_bytes, rig_to_bytes, warp_to
from talkinghead.sdk.watermark import detect

RENDER_TOLERANCE = 1  # uint8 levels
WATERMARK_TOLERANCE = 1  # uint8 levels, on at most WATERMARK_DIFF_SHARE of the pixels
WATERMARK_DIFF_SHARE = 0.005  # a few of the 1024 chips


@pytest.fixture(scope="session")
def native_build() -> native.NativeBuild:
    """cmake configure + build of bindings/ into bindings/build/release (incremental)."""
    return native.build_native()


@pytest.fixture(scope="session")
def lib(native_build):
    return native.load_library(native_build.library)


@pytest.fixture(scope="session")
def avatar_pack(tmp_path_factory) -> Path:
    """A real warp-and-refine pack (schema 3) of the astronaut at the default 256 px:
    ExecuTorch fp32 + int8 with bundled programs and parity vectors. The refiner is a
    seeded, untrained refiner-s: the C ABI must reproduce whatever the refiner computes,
    and these tests must not follow the shipped weights while they are retrained (its
    exports are cached by checkpoint, so the pack takes seconds after the first run)."""
    import torch

    from talkinghead.models.checkpoint import save_checkpoint
    from talkinghead.models.refiner import create_refiner
    from talkinghead.packs import export_avatar_pack

    torch.manual_seed(0)
    refiner = tmp_path_factory.mktemp("refiner") / "refiner-s.safetensors"
    save_checkpoint(refiner, create_refiner("refiner-s"), "refiner")
    out = tmp_path_factory.mktemp("pack") / "astronaut"
    pack, _ = export_avatar_pack(
        "astronaut", out, refiner=refiner, runtimes=("executorch",), force=True, progress=False
    )
    return pack


@pytest.fixture(scope="session")
def rig(avatar_pack) -> WarpRig:
    with open_pack(avatar_pack) as pack:
        return pack.load_rig()


@pytest.fixture(scope="session")
def motion(rig) -> np.ndarray:
    """(12, 478, 3) float32 crop px: the built-in talking/blinking/turning motion on the
    pack's neutral mesh."""
    return builtin_mesh_motion(rig.mesh, 12, seed=3)


def _open_status(
    lib, pack: Path | str | None, precision: bytes | None = b"fp32"
) -> tuple[str, int]:
    handle = ctypes.c_uint64(99)
    path = None if pack is None else str(pack).encode()
    status = lib.th_open(path, precision, ctypes.byref(handle))
    return native.status_name(status), handle.value


def _variant(src: Path, dst: Path, *, model=None, manifest=None, rehash=False) -> Path:
    """Copy a pack, then alter the fp32 model's bytes and/or the manifest.

    ``rehash`` rewrites the manifest's sha256 to match altered bytes: the file then passes
    the hash check and must be stopped by the .pte checks or the runtime's verifier.
    """
    shutil.copytree(src, dst)
    m = json.loads((dst / "manifest.json").read_text())
    entry = next(e for e in m["models"] if e["precision"] == "fp32")
    if model is not None:
        data = model((dst / entry["file"]).read_bytes())
        (dst / entry["file"]).write_bytes(data)
        if rehash:
            digest = hashlib.sha256(data).hexdigest()
            entry["sha256"] = m["files"][entry["file"]] = digest
            entry["bytes"] = len(data)
    if manifest is not None:
        manifest(m)
    (dst / "manifest.json").write_text(json.dumps(m))
    return dst


def _garbage_after_header(data: bytes) -> bytes:
    rng = np.random.default_rng(0)
    return data[:64] + rng.integers(0, 256, len(data) - 64, dtype=np.uint8).tobytes()


# ----------------------------------------------------------------------------- parity


def test_rasteriser_matches_python_exactly(native_build):
    rng = np.random.default_rng(0)
    cases = 0
    for size in (16, 37, 64, 128, 256):
        faces = [template_landmarks((0.1 * size, 0.15 * size, 0.9 * size, 0.95 * size))]
        # Random points, a fifth of them off the image, and sub-pixel jitter on the template.
        faces += [rng.uniform(-0.2, 1.2, (68, 2)) * size for _ in range(8)]
        faces += [faces[0] + rng.normal(0, 0.5, (68, 2)) for _ in range(4)]
        for lm in faces:
            lm = np.asarray(lm, np.float32)
            for thickness in (0.0, 0.75, 1.0, 2.5, 3.3):
                want = rasterize_landmarks(lm, size, None if thickness == 0.0 else thickness)
                got = native.rasterize(lm, size, native_build.library, thickness)
                assert np.array_equal(got, want), (size, thickness)
                cases += 1
    assert cases == 5 * 13 * 5


def _abs_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b)


def _random_target_meshes(rig: WarpRig, count: int, seed: int) -> list[np.ndarray]:
    """Target meshes a driver can give: heads turned up to 75 degrees (the mesh folds over
    itself), tilted, scaled, jittered, and moved so the face reaches or crosses the crop's
    edge; plus a mesh squashed to a line and one far outside the crop."""
    rng = np.random.default_rng(seed)
    size = rig.size
    meshes = []
    for _ in range(count):
        yaw, pitch, roll = rng.uniform(-75, 75), rng.uniform(-40, 40), rng.uniform(-30, 30)
        m = rotate_head(rig.mesh, yaw, pitch, roll)
        c = m[:, :2].mean(axis=0)
        m[:, :2] = (m[:, :2] - c) * rng.uniform(0.7, 1.3) + c + rng.uniform(-0.45, 0.45, 2) * size
        m += rng.normal(0, rng.choice([0.0, 0.3, 2.0]), m.shape)
        meshes.append(m.astype(np.float32))
    line = rig.mesh.copy()
    line[:, 1] = size / 2
    meshes += [line, rig.mesh + np.float32([3 * size, -2 * size, 0])]
    return meshes


def test_native_warp_matches_python_warp(avatar_pack, native_build, rig):
    """th_warp against sdk/warp.py's warp_to: RGB and validity within 1 level on every pixel,
    over random turned, folded, scaled and off-edge target meshes."""
    worst = 0
    with native.NativeAvatar(avatar_pack, "int8", native_build.library) as avatar:
        # Opened mouths (the stretched seam blends toward the mouth colour) and closed eyes.
        talking = [
            apply_mesh_motion(rig.mesh, MotionParams(jaw_open=j, smile=sm, blink_left=b, yaw=y))
            for j, sm, b, y in ((1.0, 0.0, 0.0, 0.0), (0.6, 0.8, 1.0, 20.0), (0.3, 0.0, 0.5, -30.0))
        ]
        for mesh in [rig.mesh, *talking, *_random_target_meshes(rig, 40, seed=5)]:
            want = warp_to(rig, mesh)
            rgb, valid = avatar.warp(mesh)
            worst = max(worst, int(_abs_diff(rgb, want.image).max()))
            worst = max(worst, int(_abs_diff(valid, want.validity).max()))
        # The neutral pose gives back the photo (up to the bilinear grid), fully valid.
        rgb, valid = avatar.warp(rig.mesh)
        assert float(np.mean(valid == 255)) > 0.95
        assert float(np.mean(_abs_diff(rgb, rig.source) <= 2)) > 0.95
        for bad in (np.zeros((68, 2)), rig.mesh[:477], rig.mesh.T):
            with pytest.raises(InvalidInputError, match=r"\(478, 3\)"):
                avatar.warp(bad)
        nan = rig.mesh.copy()
        nan[5, 2] = np.nan
        with pytest.raises(InvalidInputError, match="TH_ERR_INVALID_LANDMARKS"):
            avatar.warp(nan)
    assert worst <= RENDER_TOLERANCE


def test_native_warp_of_a_face_enrolled_at_the_crop_edge(avatar_pack, native_build, rig, tmp_path):
    """A rig enrolled with the face against the crop's edge (its anchors off the crop are
    dropped, so N and the triangles differ): th_warp still equals warp_to."""
    from talkinghead.sdk.warp import build_rig

    shift = np.float32([0.3 * rig.size, -0.2 * rig.size, 0])
    edge = build_rig(np.roll(rig.source, (-51, 77), axis=(0, 1)), rig.mesh + shift)
    assert len(edge.points) < len(rig.points)  # some anchors fell outside and were dropped
    pack = _write_rig(_variant(Path(avatar_pack), tmp_path / "edge"), edge)
    worst = 0
    with native.NativeAvatar(pack, "int8", native_build.library) as avatar:
        np.testing.assert_array_equal(avatar.neutral_mesh, edge.mesh)
        for mesh in [edge.mesh, *_random_target_meshes(edge, 12, seed=8)]:
            want = warp_to(edge, mesh)
            rgb, valid = avatar.warp(mesh)
            worst = max(worst, int(_abs_diff(rgb, want.image).max()))
            worst = max(worst, int(_abs_diff(valid, want.validity).max()))
    assert worst <= RENDER_TOLERANCE


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_native_render_matches_python_executorch(avatar_pack, native_build, motion, rig, precision):
    """Marked (the default) and unmarked (th_set_watermark 0): the Python SDK's Avatar
    (ExecuTorch) frame of the same target mesh, with and without its watermark."""
    meshes = [*motion, *_random_target_meshes(rig, 4, seed=6)]
    opts = dict(backend="executorch", precision=precision)
    with Avatar.create_from_pack(avatar_pack, **opts) as py:
        want_marked = py.render_sequence(np.stack(meshes))
    with Avatar.create_from_pack(avatar_pack, watermark=False, **opts) as py:
        want = py.render_sequence(np.stack(meshes))
    with native.NativeAvatar(avatar_pack, precision, native_build.library) as avatar:
        assert avatar.resolution == rig.size == 256
        worst, worst_marked, worst_share = 0, 0, 0.0
        for k, mesh in enumerate(meshes):
            marked = avatar.render(mesh)
            avatar.set_watermark(False)
            got = avatar.render(mesh)
            avatar.set_watermark(True)
            assert got.shape == (256, 256, 3) and got.dtype == np.uint8
            worst = max(worst, int(_abs_diff(got, want[k]).max()))
            diff = _abs_diff(marked, want_marked[k])
            worst_marked = max(worst_marked, int(diff.max()))
            worst_share = max(worst_share, float(np.mean(diff > 0)))
            assert _abs_diff(marked, got).max() > 0  # the mark is really there
        # Different meshes give different faces (the warp and the model are really driven).
        assert not np.array_equal(avatar.render(motion[0]), avatar.render(motion[6]))
    assert worst <= RENDER_TOLERANCE
    assert worst_marked <= WATERMARK_TOLERANCE and worst_share <= WATERMARK_DIFF_SHARE


def test_native_frames_decode_to_the_pack_payload(avatar_pack, native_build, motion):
    """The Python detector reads the native mark; th_watermark_payload says what it is."""
    manifest = load_manifest(avatar_pack)
    want = pack_payload(manifest)
    with native.NativeAvatar(avatar_pack, "int8", native_build.library) as avatar:
        assert avatar.watermark_payload == (want.pack_id, want.version)
        for mesh in motion[::3]:
            result = detect(avatar.render(mesh))
            assert result.marked and result.payload == want, result
        avatar.set_watermark(False)
        assert not detect(avatar.render(motion[0])).marked
        assert avatar.watermark_payload == (want.pack_id, want.version)  # on or off


def test_non_ascii_pack_name_gets_the_python_pack_id(avatar_pack, native_build, tmp_path):
    """The pack id hashes Python's json.dumps of name and files (non-ASCII as \\uXXXX,
    astral characters as surrogate pairs): the native id must equal it, whether the
    manifest stores such characters escaped (as the SDK writes it) or as raw UTF-8."""
    name = 'Zoë 宇航员 \U0001f9d1\u200d\U0001f680 "q" \\ \t\x7f'
    base = load_manifest(avatar_pack)
    seen = set()
    for ensure_ascii in (True, False):
        dst = shutil.copytree(avatar_pack, tmp_path / f"ascii_{ensure_ascii}")
        extra = "notes/lisez-moi é.txt"  # a listed file whose name is not ASCII either
        (dst / "notes").mkdir()
        (dst / extra).write_bytes(b"hello")
        files = {extra: hashlib.sha256(b"hello").hexdigest(), **base.files}
        manifest = dataclasses.replace(base, name=name, files=files)
        text = json.dumps(manifest.to_json(), indent=2, ensure_ascii=ensure_ascii)
        (dst / "manifest.json").write_text(text + "\n", encoding="utf-8")
        want = pack_id(load_manifest(dst))
        with native.NativeAvatar(dst, "int8", native_build.library) as avatar:
            assert avatar.watermark_payload[0] == want, ensure_ascii
        seen.add(want)
    assert len(seen) == 1 and want != pack_id(base)


def test_open_reports_resolution_mesh_and_version(avatar_pack, native_build, lib, rig):
    with open_pack(avatar_pack) as pack:
        m = pack.manifest
    with native.NativeAvatar(avatar_pack, "int8", native_build.library) as avatar:
        assert avatar.resolution == m.resolution == 256
        np.testing.assert_array_equal(avatar.neutral_mesh, rig.mesh)
        with Avatar.create_from_pack(avatar_pack) as py:
            np.testing.assert_array_equal(avatar.neutral_mesh, py.neutral_mesh)
    from talkinghead import __version__

    assert lib.th_version().decode() == __version__
    assert lib.th_abi_version() == 2


# ----------------------------------------------------------------------------- driving

FRAME_MS = 33


@pytest.fixture(scope="session")
def tracked_meshes(face_landmarker_task, astronaut) -> tuple[np.ndarray, tuple[int, int]]:
    """(16, 478, 3) float32 MediaPipe meshes, normalised as its NormalizedLandmarks, of the
    astronaut photo turning, sliding and zooming, tracked in VIDEO mode with no smoothing
    (the raw tracker output a phone app gets); and the image's (width, height)."""
    from PIL import Image

    photo = Image.fromarray(astronaut)
    w, h = photo.size
    meshes = []
    options = FaceTrackerOptions(running_mode=RunningMode.VIDEO, smoothing=None)
    with FaceTracker.create_from_options(options) as tracker:
        for i in range(16):
            moved = photo.rotate(
                6 * np.sin(i / 3), resample=Image.BILINEAR, translate=(10 * np.sin(i / 4), 0)
            )
            zoom = 1 + 0.06 * np.sin(i / 5)
            side = round(w / zoom)
            box = ((w - side) // 2, (h - side) // 2, (w + side) // 2, (h + side) // 2)
            frame = np.asarray(moved.crop(box).resize((w, h), Image.BILINEAR))
            (face,) = tracker.detect_for_video(frame, i * FRAME_MS)
            meshes.append(face.landmarks / np.array([w, h, w], np.float32))
    return np.stack(meshes).astype(np.float32), (w, h)


def _python_drive(meshes, size, neutral_mesh, smoothing=DEFAULT_SMOOTHING) -> np.ndarray:
    """The Python SDK's streaming driver on the same raw meshes: (T, 478, 3) float32 targets."""
    driver = MeshDriver(neutral_mesh, smoothing)
    return np.stack([driver.step(m, size, i * FRAME_MS) for i, m in enumerate(meshes)])


@pytest.mark.parametrize("smoothing", [OneEuroParams(), OneEuroParams(0.5, 5.0, 2.0), None])
def test_native_drive_matches_the_python_sdk(avatar_pack, native_build, tracked_meshes, smoothing):
    """th_drive's target meshes are MeshDriver's, from the same raw MediaPipe meshes, also
    as 468 (x, y) points (irises from the eye contours, z = 0)."""
    meshes, size = tracked_meshes
    with native.NativeAvatar(avatar_pack, "int8", native_build.library) as avatar:
        neutral = avatar.neutral_mesh
        want = _python_drive(meshes, size, neutral, smoothing)
        avatar.set_smoothing(smoothing)
        got = np.stack([avatar.drive(m, size, i * FRAME_MS)[1] for i, m in enumerate(meshes)])
        assert float(np.abs(got[0] - neutral).max()) < 1e-3  # the first frame is the reference
        assert float(np.abs(want - want[:1]).max()) > 5.0  # the avatar really moves
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
        if smoothing is None:
            # Before its float32 rounding, the C++ retargeting (Horn's similarity fits) is
            # within 1e-9 px of numpy's (SVD): each float32 lies between the roundings of
            # numpy's float64 value -1e-9 and +1e-9.
            ref = mesh_to_pixels(meshes[0], size)
            for k in (1, 5, 9, 15):
                exact = retarget_mesh(mesh_to_pixels(meshes[k], size), ref, neutral)
                lo, hi = (exact - 1e-9).astype(np.float32), (exact + 1e-9).astype(np.float32)
                assert np.all((got[k] >= lo) & (got[k] <= hi)), k
        avatar.drive_reset()
        flat = [m[:468, :2] for m in meshes]
        irisless = np.stack([avatar.drive(m, size, i * FRAME_MS)[1] for i, m in enumerate(flat)])
        np.testing.assert_allclose(
            irisless, _python_drive(flat, size, neutral, smoothing), atol=1e-4
        )
        assert float(np.abs(irisless - want).max()) > 0.1  # z and the irises matter


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_driven_frames_match_the_python_avatar(
    avatar_pack, native_build, tracked_meshes, precision
):
    """From raw MediaPipe meshes to pixels: th_drive against MeshDriver + the Python Avatar
    (ExecuTorch), marked and unmarked."""
    meshes, size = tracked_meshes
    for watermark in (True, False):
        with native.NativeAvatar(avatar_pack, precision, native_build.library) as avatar:
            avatar.set_watermark(watermark)
            got = [avatar.drive(m, size, i * FRAME_MS)[0] for i, m in enumerate(meshes)]
        opts = dict(backend="executorch", precision=precision, watermark=watermark)
        with Avatar.create_from_pack(avatar_pack, **opts) as py:
            driver = MeshDriver(py.neutral_mesh)
            want = [drive_frame(py, driver, m, size, i * FRAME_MS) for i, m in enumerate(meshes)]
        worst = max(int(_abs_diff(g, w).max()) for g, w in zip(got, want, strict=True))
        assert worst <= RENDER_TOLERANCE, (watermark, worst)
        assert not np.array_equal(got[0], got[8])
        assert detect(got[3]).marked == watermark


def test_drive_rejects_bad_input(avatar_pack, native_build, lib, tracked_meshes):
    meshes, size = tracked_meshes
    with native.NativeAvatar(avatar_pack, "fp32", native_build.library) as avatar:
        avatar.drive(meshes[0], size, 100)
        with pytest.raises(TimestampError, match="strictly increase: got 100 after 100"):
            avatar.drive(meshes[1], size, 100)
        with pytest.raises(TimestampError, match="got 50 after 100"):
            avatar.drive(meshes[1], size, 50)
        moved_frame, moved = avatar.drive(meshes[8], size, 133)
        bad = [
            (meshes[0][:477], size, "478 or 468 MediaPipe points"),
            (meshes[0][:, :1], size, "478 or 468 MediaPipe points"),
            (np.zeros((68, 2), np.float32), size, "478 or 468 MediaPipe points"),
            (meshes[0].T, size, "478 or 468 MediaPipe points"),  # (3, 478): points as columns
            ([["x"] * 3] * 478, size, "must be numeric"),
            (meshes[0], (0, 512), "image size must be in"),
            (meshes[0], (512, 70000), "image size must be in"),
            (meshes[0], (512.0, 512), "image_size must be"),
            (meshes[0], 512, "image_size must be"),
        ]
        for mesh, image_size, match in bad:
            with pytest.raises(InvalidInputError, match=match):
                avatar.drive(mesh, image_size, 200)
        for point, coord in ((17, 0), (300, 2)):  # z is used now: a NaN z is refused too
            nan = meshes[0].copy()
            nan[point, coord] = np.nan
            with pytest.raises(InvalidInputError, match=f"mesh point {point} has a NaN"):
                avatar.drive(nan, size, 200)
        with pytest.raises(InvalidInputError, match="timestamp_ms must be an int"):
            avatar.drive(meshes[0], size, 200.0)
        for params in ((-1.0, 30.0, 1.0), (0.0, 30.0, 1.0), (1.0, 30.0, float("inf"))):
            status = lib.th_set_smoothing(avatar.handle, *params)
            assert native.status_name(status) == "TH_ERR_INVALID_ARGUMENT", params
        with pytest.raises(InvalidInputError, match="OneEuroParams or None"):
            avatar.set_smoothing((1.0, 30.0, 1.0))
        # Raw ctypes: NULL pointers and wrong sizes, before the state is touched.
        s = avatar.resolution
        out = np.zeros(s * s * 3, np.uint8)
        target = np.zeros(1434, np.float32)
        mesh = np.ascontiguousarray(meshes[9])
        m_p, o_p, t_p = native._f32(mesh), native._u8(out), native._f32(target)
        calls = {
            "NULL mesh": (None, mesh.size, o_p, out.size, t_p, 1434),
            "NULL out": (m_p, mesh.size, None, out.size, t_p, 1434),
            "short out": (m_p, mesh.size, o_p, out.size - 1, t_p, 1434),
            "short target": (m_p, mesh.size, o_p, out.size, t_p, 1433),
        }
        for what, args in calls.items():
            status = lib.th_drive(avatar.handle, args[0], args[1], 512, 512, 500, *args[2:])
            assert native.status_name(status) == "TH_ERR_INVALID_ARGUMENT", what
        assert not out.any() and not target.any()  # nothing written on failure
        handle = avatar.handle
        # The refused calls left the driver as it was: frame 8, 33 ms after frame 0.
        pair = _python_drive(meshes[[0, 8]], size, avatar.neutral_mesh)
        np.testing.assert_allclose(moved, pair[1], atol=1e-4)
        # A degenerate reference frame (every point in one place) is refused, and the driver
        # stays reset: the next good frame becomes the reference.
        avatar.set_smoothing(OneEuroParams())
        with pytest.raises(InvalidInputError, match="degenerate"):
            avatar.drive(np.full((478, 3), 0.5, np.float32), size, 0)
        _, first = avatar.drive(meshes[8], size, 0)
        assert float(np.abs(first - avatar.neutral_mesh).max()) < 1e-3
        # Unsmoothed (smoothing would pull one bad frame toward the last good one), a
        # degenerate frame later is refused too, and the driver carries on from frame 8.
        avatar.set_smoothing(None)
        _, first = avatar.drive(meshes[8], size, 0)
        with pytest.raises(InvalidInputError, match="degenerate"):
            avatar.drive(np.full((468, 2), 0.5, np.float32), size, 10)
        _, again = avatar.drive(meshes[8], size, 33)
        np.testing.assert_array_equal(again, first)
    status = lib.th_drive(handle, m_p, mesh.size, 512, 512, 900, o_p, out.size, None, 0)
    assert native.status_name(status) == "TH_ERR_CLOSED"
    for fn, args in (("th_drive_reset", ()), ("th_set_smoothing", (1.0, 30.0, 1.0))):
        assert native.status_name(getattr(lib, fn)(handle, *args)) == "TH_ERR_CLOSED", fn


def test_python_driver_checks_its_input(rig):
    """MeshDriver refuses what th_drive refuses, with the same words, and a refused frame
    leaves it as it was."""
    driver = MeshDriver(rig.mesh)
    raw = (rig.mesh + np.float32([50, 40, 0])) / np.float32([400, 300, 400])
    first = driver.step(raw, (400, 300), 10)
    assert float(np.abs(first - rig.mesh).max()) < 1e-3
    with pytest.raises(TimestampError, match="got 10 after 10"):
        driver.step(raw, (400, 300), 10)
    for bad, match in (
        (raw[:477], "478 or 468"),
        (raw[:, :1], "478 or 468"),
        (np.full((478, 3), np.nan), "NaN"),
        ([["x"] * 3] * 478, "must be numeric"),
    ):
        with pytest.raises(InvalidInputError, match=match):
            driver.step(bad, (400, 300), 20)
    with pytest.raises(InvalidInputError, match="image size"):
        driver.step(raw, (0, 300), 20)
    with pytest.raises(InvalidInputError, match="degenerate"):
        MeshDriver(rig.mesh).step(np.full((478, 3), 0.5, np.float32), (400, 300), 20)
    unsmoothed = MeshDriver(rig.mesh, smoothing=None)
    unsmoothed.step(raw, (400, 300), 0)
    with pytest.raises(InvalidInputError, match="degenerate"):
        unsmoothed.step(np.full((468, 2), 0.5, np.float32), (400, 300), 20)
    np.testing.assert_array_equal(
        unsmoothed.step(raw, (400, 300), 20), unsmoothed.step(raw, (400, 300), 30)
    )
    moved = raw + np.float32([0.01, 0, 0])
    np.testing.assert_array_equal(
        driver.step(moved, (400, 300), 43), _python_drive_pair(rig, raw, moved)
    )
    px = mesh_to_pixels(raw[:468, :2], (400, 300))
    assert px.shape == (478, 3) and not px[:, 2].any()
    np.testing.assert_allclose(
        px[468],
        px[[33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7]].mean(0),
        atol=1e-4,
    )


def _python_drive_pair(rig, a, b):
    driver = MeshDriver(rig.mesh)
    driver.step(a, (400, 300), 10)
    return driver.step(b, (400, 300), 43)


# ----------------------------------------------------------------------------- bad input


def test_null_pointers_and_wrong_sizes_return_codes(avatar_pack, lib):
    assert _open_status(lib, None) == ("TH_ERR_INVALID_ARGUMENT", 0)
    assert _open_status(lib, avatar_pack, None) == ("TH_ERR_INVALID_ARGUMENT", 0)
    assert _open_status(lib, avatar_pack, b"fp16") == ("TH_ERR_INVALID_ARGUMENT", 0)
    assert "fp16" in lib.th_last_error().decode()
    assert native.status_name(lib.th_open(str(avatar_pack).encode(), b"fp32", None)) == (
        "TH_ERR_INVALID_ARGUMENT"
    )
    name, handle = _open_status(lib, avatar_pack)
    assert name == "TH_OK" and handle != 0
    assert lib.th_last_error() == b""
    try:
        size = ctypes.c_int32()
        assert lib.th_resolution(handle, ctypes.byref(size)) == 0
        n = size.value * size.value * 3
        mesh = np.zeros((478, 3), np.float32)
        assert lib.th_neutral_mesh(handle, native._f32(mesh), 1434) == 0
        out = np.zeros(n + 1, np.uint8)
        valid = np.zeros(n // 3 + 1, np.uint8)
        m_p, out_p, v_p = native._f32(mesh), native._u8(out), native._u8(valid)

        def render(mesh_ptr, count, out_ptr, nbytes) -> str:
            return native.status_name(lib.th_render(handle, mesh_ptr, count, out_ptr, nbytes))

        def warp(mesh_ptr, count, out_ptr, nbytes, valid_ptr, valid_bytes) -> str:
            status = lib.th_warp(handle, mesh_ptr, count, out_ptr, nbytes, valid_ptr, valid_bytes)
            return native.status_name(status)

        assert render(None, 1434, out_p, n) == "TH_ERR_INVALID_ARGUMENT"
        assert render(m_p, 1433, out_p, n) == "TH_ERR_INVALID_ARGUMENT"
        assert render(m_p, 136, out_p, n) == "TH_ERR_INVALID_ARGUMENT"  # 68 landmarks: ABI 1
        assert "1434" in lib.th_last_error().decode()
        assert render(m_p, 1434, None, n) == "TH_ERR_INVALID_ARGUMENT"
        assert render(m_p, 1434, out_p, n - 1) == "TH_ERR_INVALID_ARGUMENT"
        assert render(m_p, 1434, out_p, n + 1) == "TH_ERR_INVALID_ARGUMENT"
        assert str(n) in lib.th_last_error().decode()  # names the size it wanted
        assert warp(None, 1434, out_p, n, v_p, n // 3) == "TH_ERR_INVALID_ARGUMENT"
        assert warp(m_p, 1434, out_p, n, None, n // 3) == "TH_ERR_INVALID_ARGUMENT"
        assert warp(m_p, 1434, out_p, n, v_p, n // 3 + 1) == "TH_ERR_INVALID_ARGUMENT"
        assert warp(m_p, 1434, out_p, n - 3, v_p, n // 3) == "TH_ERR_INVALID_ARGUMENT"
        assert not out.any() and not valid.any()  # nothing written on failure
        assert render(m_p, 1434, out_p, n) == "TH_OK"
        assert warp(m_p, 1434, out_p, n, v_p, n // 3) == "TH_OK"
        assert lib.th_resolution(handle, None) == 1
        assert lib.th_neutral_mesh(handle, None, 1434) == 1
        assert lib.th_neutral_mesh(handle, m_p, 136) == 1
    finally:
        assert lib.th_close(handle) == 0


def test_watermark_calls_reject_bad_input(avatar_pack, native_build, lib):
    pid, ver = ctypes.c_uint32(7), ctypes.c_uint32(7)
    name, handle = _open_status(lib, avatar_pack)
    assert name == "TH_OK"
    try:
        for enabled in (2, -1, 255):
            assert native.status_name(lib.th_set_watermark(handle, enabled)) == (
                "TH_ERR_INVALID_ARGUMENT"
            )
            assert str(enabled) in lib.th_last_error().decode()
        for args in ((None, ctypes.byref(ver)), (ctypes.byref(pid), None), (None, None)):
            status = lib.th_watermark_payload(handle, *args)
            assert native.status_name(status) == "TH_ERR_INVALID_ARGUMENT"
            assert b"NULL" in lib.th_last_error()
        assert (pid.value, ver.value) == (7, 7)  # nothing written on failure
        assert lib.th_set_watermark(handle, 0) == 0 and lib.th_set_watermark(handle, 1) == 0
    finally:
        assert lib.th_close(handle) == 0
    for h in (handle, 0):
        assert native.status_name(lib.th_set_watermark(h, 1)) == "TH_ERR_CLOSED"
        status = lib.th_watermark_payload(h, ctypes.byref(pid), ctypes.byref(ver))
        assert native.status_name(status) == "TH_ERR_CLOSED"
    avatar = native.NativeAvatar(avatar_pack, "int8", native_build.library)
    for bad in (1, "yes", None):
        with pytest.raises(InvalidInputError, match="bool"):
            avatar.set_watermark(bad)
    avatar.close()
    with pytest.raises(BackendError, match="TH_ERR_CLOSED"):
        avatar.set_watermark(False)
    with pytest.raises(BackendError, match="TH_ERR_CLOSED"):
        _ = avatar.watermark_payload


def test_nan_meshes_and_render_after_close(avatar_pack, native_build):
    avatar = native.NativeAvatar(avatar_pack, "fp32", native_build.library)
    mesh = avatar.neutral_mesh
    for bad in (np.nan, np.inf, -np.inf):
        for coord in (0, 2):  # z feeds the warp's depth test: checked like x and y
            broken = mesh.copy()
            broken[30, coord] = bad
            with pytest.raises(InvalidInputError, match="TH_ERR_INVALID_LANDMARKS"):
                avatar.render(broken)
    for wrong in (mesh[:477], mesh[:, :2], np.zeros((68, 2))):
        with pytest.raises(InvalidInputError, match=r"\(478, 3\)"):
            avatar.render(wrong)
    # Far outside the image is allowed: the warp covers what it can, the anchors the rest.
    for far in (1e30, -1e30, 3e38):
        assert avatar.render(np.full((478, 3), far, np.float32)).shape[2] == 3
    handle = avatar.handle
    avatar.close()
    avatar.close()  # idempotent
    lib = native.load_library(native_build.library)
    out = np.zeros((avatar.resolution, avatar.resolution, 3), np.uint8)
    status = lib.th_render(handle, native._f32(mesh), 1434, native._u8(out), out.nbytes)
    assert native.status_name(status) == "TH_ERR_CLOSED"
    with pytest.raises(BackendError, match="TH_ERR_CLOSED"):
        avatar.warp(mesh)
    assert native.status_name(lib.th_close(handle)) == "TH_ERR_CLOSED"
    assert native.status_name(lib.th_close(0)) == "TH_ERR_CLOSED"


def test_verify_files_checks_every_listed_file(avatar_pack, native_build, lib, tmp_path):
    """th_open hashes only the model it loads; th_verify_files hashes every listed file,
    so a file of another runtime that was altered, removed or swapped for a link is found."""
    manifest = load_manifest(avatar_pack)
    with native.NativeAvatar(avatar_pack, "int8", native_build.library) as avatar:
        assert avatar.verify_files() == len(manifest.files) >= 6
        status = lib.th_verify_files(avatar.handle, None)
        assert native.status_name(status) == "TH_ERR_INVALID_ARGUMENT"
        handle = avatar.handle
    count = ctypes.c_int32(-1)
    assert native.status_name(lib.th_verify_files(handle, ctypes.byref(count))) == "TH_ERR_CLOSED"
    assert count.value == -1  # not written on failure
    other = "parity.npz"  # listed, never read by th_open
    assert other in manifest.files
    dst = shutil.copytree(avatar_pack, tmp_path / "pack")
    data = bytearray((dst / other).read_bytes())
    data[len(data) // 2] ^= 0x01
    (dst / other).write_bytes(bytes(data))
    with native.NativeAvatar(dst, "int8", native_build.library) as avatar:
        avatar.render(avatar.neutral_mesh)  # the .pte and the rig are intact: it renders
        with pytest.raises(PackIntegrityError, match=f"'{other}' does not match its sha256"):
            avatar.verify_files()
        (dst / other).unlink()
        with pytest.raises(PackError, match=other):
            avatar.verify_files()
        # The right bytes through a link are refused too, inside the pack or not, as
        # sdk/pack.py's verify_pack refuses them.
        (dst / "copy.npz").write_bytes((avatar_pack / other).read_bytes())
        for target in (avatar_pack / other, Path("copy.npz")):
            (dst / other).symlink_to(target)
            with pytest.raises(PackError, match=f"'{other}' is a symbolic link"):
                avatar.verify_files()
            (dst / other).unlink()
        (dst / other).write_bytes((avatar_pack / other).read_bytes())
        assert avatar.verify_files() == len(manifest.files)


def test_tampered_and_malformed_packs(avatar_pack, native_build, lib, tmp_path):
    src = Path(avatar_pack)

    def flip_byte(data: bytes) -> bytes:
        return data[:1000] + bytes([data[1000] ^ 0xFF]) + data[1001:]

    def escape(m):
        entry = next(e for e in m["models"] if e["precision"] == "fp32")
        m["files"]["../outside.pte"] = m["files"].pop(entry["file"])
        entry["file"] = "../outside.pte"

    def rig_path(update):
        def apply(m):
            m["generator"]["rig"] = update(m)

        return apply

    def unlist_rig(m):
        m["files"].pop(m["generator"]["rig"])

    cases = {
        "hash_mismatch": (dict(model=flip_byte), "TH_ERR_INTEGRITY"),
        "schema_4": (dict(manifest=lambda m: m.update(schema_version=4)), "TH_ERR_UNSUPPORTED"),
        "schema_2": (dict(manifest=lambda m: m.update(schema_version=2)), "TH_ERR_UNSUPPORTED"),
        "schema_1": (dict(manifest=lambda m: m.update(schema_version=1)), "TH_ERR_UNSUPPORTED"),
        "schema_0": (dict(manifest=lambda m: m.update(schema_version=0)), "TH_ERR_PACK"),
        "no_generator": (dict(manifest=lambda m: m.pop("generator")), "TH_ERR_PACK"),
        "rig_escape": (dict(manifest=rig_path(lambda m: "../rig.safetensors")), "TH_ERR_PACK"),
        "rig_not_string": (dict(manifest=rig_path(lambda m: 7)), "TH_ERR_PACK"),
        "rig_unlisted": (dict(manifest=unlist_rig), "TH_ERR_PACK"),
        "wrong_format": (dict(manifest=lambda m: m.update(format="zip")), "TH_ERR_PACK"),
        "no_fp32": (
            dict(
                manifest=lambda m: m.update(
                    models=[e for e in m["models"] if e["precision"] != "fp32"]
                )
            ),
            "TH_ERR_UNSUPPORTED",
        ),
        "path_escape": (dict(manifest=escape), "TH_ERR_PACK"),
        "bad_resolution": (dict(manifest=lambda m: m.update(resolution=64)), "TH_ERR_PACK"),
        "rig_size_mismatch": (  # the rig's photo is 256 px, not the manifest's 64
            dict(manifest=lambda m: m.update(resolution=64, landmark_convention={"size": 64})),
            "TH_ERR_PACK",
        ),
    }
    for name, (kwargs, want) in cases.items():
        pack = _variant(src, tmp_path / name, **kwargs)
        assert _open_status(lib, pack) == (want, 0), (name, lib.th_last_error())
    with pytest.raises(PackIntegrityError, match="sha256"):
        native.NativeAvatar(tmp_path / "hash_mismatch", "fp32", native_build.library)
    with pytest.raises(PackError, match="schema_version 4 is newer"):
        native.NativeAvatar(tmp_path / "schema_4", "fp32", native_build.library)
    with pytest.raises(PackError, match="old direct-synthesis generator"):
        native.NativeAvatar(tmp_path / "schema_2", "fp32", native_build.library)
    # A consistent 64 px pack (rig and manifest) whose model is 256 px: the model's shapes.
    small = _variant(src, tmp_path / "shape_mismatch")
    rig = rig_from_bytes((src / "rig.safetensors").read_bytes())
    _write_rig(
        small, dataclasses.replace(rig, source=rig.source[::4, ::4].copy(), points=rig.points / 4)
    )
    m = json.loads((small / "manifest.json").read_text())
    m.update(resolution=64, landmark_convention={**m["landmark_convention"], "size": 64})
    (small / "manifest.json").write_text(json.dumps(m))
    assert _open_status(lib, small) == ("TH_ERR_MODEL", 0), lib.th_last_error()
    assert b"[1, 7, 64, 64]" in lib.th_last_error()

    missing = _variant(src, tmp_path / "missing_model")
    for pte in missing.glob("*.pte"):
        pte.unlink()
    assert _open_status(lib, missing)[0] == "TH_ERR_PACK"
    link = _variant(src, tmp_path / "symlink")
    fp32 = next(link.glob("*fp32.pte"))
    shutil.copy(fp32, tmp_path / "elsewhere.pte")
    fp32.unlink()
    fp32.symlink_to(tmp_path / "elsewhere.pte")
    assert _open_status(lib, link)[0] == "TH_ERR_PACK"
    fp32.unlink()
    shutil.copy(tmp_path / "elsewhere.pte", link / "inside.pte")
    fp32.symlink_to("inside.pte")  # a link that stays inside the pack is refused as well
    assert _open_status(lib, link)[0] == "TH_ERR_PACK"
    assert b"symbolic link" in lib.th_last_error()
    no_manifest = _variant(src, tmp_path / "no_manifest")
    (no_manifest / "manifest.json").unlink()
    assert _open_status(lib, no_manifest)[0] == "TH_ERR_PACK"
    for text in ("{", "[1, 2]", '{"schema_version": 1e999}', "\ufeff{}", "{" * 100 + "}" * 100):
        bad_json = tmp_path / f"json_{len(list(tmp_path.glob('json_*')))}"
        bad_json.mkdir()
        (bad_json / "manifest.json").write_text(text)
        assert _open_status(lib, bad_json)[0] == "TH_ERR_PACK", text


def _write_rig(pack: Path, rig_or_bytes, *, rehash: bool = True) -> Path:
    """Write a rig (or raw bytes) as the pack's rig.safetensors, its sha256 rewritten to match."""
    data = rig_or_bytes if isinstance(rig_or_bytes, bytes) else rig_to_bytes(rig_or_bytes)
    (pack / "rig.safetensors").write_bytes(data)
    if rehash:
        m = json.loads((pack / "manifest.json").read_text())
        m["files"]["rig.safetensors"] = hashlib.sha256(data).hexdigest()
        (pack / "manifest.json").write_text(json.dumps(m))
    return pack


def _safetensors(arrays: dict, header_edit=None, data_edit=None) -> bytes:
    """A safetensors file written by hand, so its header can be made hostile."""
    header, blobs, at = {"__metadata__": {"format": "talkinghead.warp-rig", "version": "1"}}, [], 0
    dtypes = {
        np.dtype(t): n
        for t, n in ((np.uint8, "U8"), (np.float32, "F32"), (np.int32, "I32"), (np.float64, "F64"))
    }
    for key, arr in arrays.items():
        raw = np.ascontiguousarray(arr).tobytes()
        header[key] = {
            "dtype": dtypes[arr.dtype],
            "shape": list(arr.shape),
            "data_offsets": [at, at + len(raw)],
        }
        blobs.append(raw)
        at += len(raw)
    if header_edit is not None:
        header_edit(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    data = b"".join(blobs)
    if data_edit is not None:
        data = data_edit(data)
    return struct.pack("<Q", len(text)) + text + data


def test_malformed_rigs_are_refused(avatar_pack, native_build, lib, rig, tmp_path):
    """rig.safetensors is hashed before it is parsed (TH_ERR_INTEGRITY), then every tensor's
    dtype, shape, byte range and values are checked (TH_ERR_PACK naming what is wrong); the
    Python reader agrees on each."""
    src = Path(avatar_pack)
    arrays = {k: getattr(rig, k) for k in ("source", "points", "kinds", "triangles", "interior")}
    good = rig_to_bytes(rig)

    def with_(**kw):
        return _safetensors({**arrays, **kw})

    def offsets(key, begin, end):
        return lambda h: h[key].update(data_offsets=[begin, end])

    end = sum(np.asarray(a).nbytes for a in arrays.values())

    def extra(dtype, shape):  # an unused tensor after the others, with no bytes
        return lambda h: h.update(
            extra={"dtype": dtype, "shape": shape, "data_offsets": [end, end]}
        )

    nan_points = rig.points.copy()
    nan_points[3, 1] = np.nan
    bad_tris = rig.triangles.copy()
    bad_tris[7, 2] = len(rig.points)
    neg_tris = rig.triangles.copy()
    neg_tris[0, 0] = -1
    cases = {
        "empty": b"",
        "short": good[:7],
        "huge_header_length": struct.pack("<Q", 2**62) + good[8:],
        "header_past_end": struct.pack("<Q", len(good)) + good[8:],
        "not_json": struct.pack("<Q", 8) + b"{{{{{{{{" + good[16:],
        "truncated_data": good[:-1],
        "trailing_bytes": good + b"\0" * 8,
        "no_points": _safetensors({k: v for k, v in arrays.items() if k != "points"}),
        "points_float64": with_(points=rig.points.astype(np.float64)),
        "points_2d": with_(points=np.ascontiguousarray(rig.points[:, :2])),
        "too_few_points": with_(points=rig.points[:400].copy(), kinds=rig.kinds[:400].copy()),
        "nan_point": with_(points=nan_points),
        "kinds_wrong_length": with_(kinds=rig.kinds[:-1].copy()),
        "kind_4": with_(
            kinds=np.where(np.arange(len(rig.kinds)) == 500, 4, rig.kinds).astype(np.uint8)
        ),
        "triangle_out_of_range": with_(triangles=bad_tris),
        "triangle_negative": with_(triangles=neg_tris),
        "no_triangles": with_(triangles=np.zeros((0, 3), np.int32), interior=np.zeros(0, np.uint8)),
        "interior_wrong_length": with_(interior=rig.interior[:-1].copy()),
        "source_not_square": with_(source=rig.source[:, :-1].copy()),
        "overlapping_tensors": _safetensors(
            arrays, header_edit=offsets("kinds", 0, len(rig.kinds))
        ),
        "offsets_past_end": _safetensors(arrays, header_edit=offsets("interior", 2**40, 2**40 + 4)),
        "offsets_reversed": _safetensors(
            arrays,
            header_edit=lambda h: h["kinds"].update(data_offsets=h["kinds"]["data_offsets"][::-1]),
        ),
        "extra_tensor_2^96_elements": _safetensors(arrays, header_edit=extra("F32", [2**32] * 3)),
        "extra_tensor_unknown_dtype": _safetensors(arrays, header_edit=extra("X9", [0])),
        "wrong_format": _safetensors(
            arrays, header_edit=lambda h: h["__metadata__"].update(format="something-else")
        ),
        "not_a_rig": (
            src / next(n for n in load_manifest(src).files if n.endswith(".pte"))
        ).read_bytes(),
    }
    # The hand-written writer is faithful: the good arrays through it open and render.
    ok = _write_rig(_variant(src, tmp_path / "rig_handmade"), _safetensors(arrays))
    with native.NativeAvatar(ok, "fp32", native_build.library) as avatar:
        avatar.render(rig.mesh)
    for name, data in cases.items():
        pack = _write_rig(_variant(src, tmp_path / f"rig_{name}"), data)
        status, handle = _open_status(lib, pack)
        message = lib.th_last_error().decode()
        assert (status, handle) == ("TH_ERR_PACK", 0), (name, status, message)
        assert "rig.safetensors" in message, (name, message)
        if name not in (
            "wrong_format",
            "overlapping_tensors",
            "trailing_bytes",
            "offsets_reversed",
            "extra_tensor_2^96_elements",
            "extra_tensor_unknown_dtype",
        ):
            with pytest.raises(InvalidInputError):  # the Python reader refuses it as well
                rig_from_bytes(data)
    tampered = bytearray(good)
    tampered[len(good) // 2] ^= 1
    pack = _write_rig(_variant(src, tmp_path / "rig_tampered"), bytes(tampered), rehash=False)
    assert _open_status(lib, pack) == ("TH_ERR_INTEGRITY", 0)
    missing = _variant(src, tmp_path / "rig_missing")
    (missing / "rig.safetensors").unlink()
    assert _open_status(lib, missing) == ("TH_ERR_PACK", 0)
    link = _variant(src, tmp_path / "rig_link")
    (link / "rig.safetensors").unlink()
    (link / "rig.safetensors").symlink_to(src / "rig.safetensors")
    assert _open_status(lib, link) == ("TH_ERR_PACK", 0)
    assert b"symbolic link" in lib.th_last_error()


def test_other_entries_and_unknown_keys(avatar_pack, native_build, motion, tmp_path):
    """Other runtimes' entries, bundled programs and other delegates are skipped, unknown
    keys ignored; an ExecuTorch entry that is not float32 NCHW is refused."""

    def newer(m):
        m.update(future={"anything": [1, 2.5, None, True, "\u00e9"]})
        fp32 = next(
            e for e in m["models"] if e["runtime"] == "executorch" and e["precision"] == "fp32"
        )
        fp32.update(format="pte", info={"bundled": {"file": "x.bpte"}})
        nhwc = {"layout": "NHWC", "dtype": "int8", "shape": [1, 128, 128, 3]}
        m["models"][:0] = [
            {"runtime": "litert", "precision": "fp32", "file": "x.tflite", "input": nhwc},
            {**fp32, "format": "bpte", "file": "x.bpte"},
            {**fp32, "backend": "coreml"},
        ]

    def nhwc_program(m):
        newer(m)
        for e in m["models"]:
            if e["runtime"] == "executorch" and e["precision"] == "fp32":
                e["input"] = {"layout": "NHWC", "dtype": "float32"}

    v2 = _variant(Path(avatar_pack), tmp_path / "v2", manifest=newer)
    with (
        native.NativeAvatar(avatar_pack, "fp32", native_build.library) as a,
        native.NativeAvatar(v2, "fp32", native_build.library) as b,
    ):
        np.testing.assert_array_equal(a.render(motion[2]), b.render(motion[2]))
    bad = _variant(Path(avatar_pack), tmp_path / "nhwc", manifest=nhwc_program)
    with pytest.raises(PackError, match="TH_ERR_UNSUPPORTED.*float32 NCHW"):
        native.NativeAvatar(bad, "fp32", native_build.library)


# ----------------------------------------------------------------------------- self-check


def _et_entry(manifest: dict, precision: str) -> dict:
    return next(
        e
        for e in manifest["models"]
        if e["runtime"] == "executorch" and e["precision"] == precision
    )


def _set_bundle(pack: Path, data: bytes, precision: str = "fp32", *, rehash: bool = True) -> Path:
    """Write ``data`` as the pack's .bpte of ``precision``; ``rehash`` rewrites its sha256 in
    the manifest to match, so the bytes pass the hash check and meet the parser."""
    m = json.loads((pack / "manifest.json").read_text())
    name = _et_entry(m, precision)["info"]["bundled"]["file"]
    (pack / name).write_bytes(data)
    if rehash:
        m["files"][name] = hashlib.sha256(data).hexdigest()
        (pack / "manifest.json").write_text(json.dumps(m))
    return pack


def _bundle_bytes(pack: Path, precision: str = "fp32") -> bytes:
    m = json.loads((pack / "manifest.json").read_text())
    return (pack / _et_entry(m, precision)["info"]["bundled"]["file"]).read_bytes()


def _bundle_cases(data: bytes) -> list[tuple[np.ndarray, np.ndarray]]:
    """(input, expected output) float32 arrays of each 'forward' test case of a .bpte, read by
    ExecuTorch's own deserializer."""
    from executorch.devtools.bundled_program.serialize import (
        deserialize_from_flatbuffer_to_bundled_program,
    )

    parsed = deserialize_from_flatbuffer_to_bundled_program(data)
    suite = next(s for s in parsed.method_test_suites if s.method_name == "forward")

    def array(value) -> np.ndarray:
        t = value.val
        assert t.scalar_type == 6  # FLOAT
        return np.frombuffer(bytes(t.data), np.float32).reshape(t.sizes).copy()

    return [(array(c.inputs[0]), array(c.expected_outputs[0])) for c in suite.test_cases]


def _python_max_abs(pack: Path, precision: str, data: bytes) -> float:
    """What the Python SDK's ExecuTorch path gets: the pack's .pte run on each case's input,
    max |got - expected| over all cases."""
    with open_pack(pack) as opened:
        entry = opened.model(precision)
        backend = ExecuTorchBackend()
        backend.load_bytes(opened.read_verified(entry.file), source=entry.file)
    try:
        return max(float(np.abs(backend.run(x) - y).max()) for x, y in _bundle_cases(data))
    finally:
        backend.close()


def _self_check_status(lib, pack: Path, precision: bytes = b"fp32") -> tuple[str, int, float, str]:
    """(status name, cases, max abs error, message) of th_self_check on a fresh handle."""
    name, handle = _open_status(lib, pack, precision)
    assert name == "TH_OK", lib.th_last_error()
    cases, max_abs = ctypes.c_int32(-1), ctypes.c_double(-1.0)
    try:
        status = lib.th_self_check(handle, ctypes.byref(cases), ctypes.byref(max_abs))
        message = lib.th_last_error().decode()
        return native.status_name(status), cases.value, max_abs.value, message
    finally:
        assert lib.th_close(handle) == 0


def _u32(data: bytes, at: int) -> int:
    return struct.unpack_from("<I", data, at)[0]


def _patch_u32(data: bytes, at: int, value: int) -> bytes:
    return data[:at] + struct.pack("<I", value) + data[at + 4 :]


def _malformed_bundles(data: bytes, program: bytes) -> dict[str, bytes]:
    """Broken variants of a good .bpte, each of which the reader must refuse (TH_ERR_MODEL).
    ``program``: the .pte the bundle embeds (located to aim at the structure around it)."""
    n = len(data)
    root = _u32(data, 0)
    vtable = root - struct.unpack_from("<i", data, root)[0]
    suites_at = root + struct.unpack_from("<H", data, vtable + 6)[0]  # field 1
    [(x, y)] = _bundle_cases(data)
    expected_at = data.find(y.tobytes())
    assert expected_at > 0 and data.find(program) > 0
    rng = np.random.default_rng(1)
    cases = {f"truncated_{k}": data[:k] for k in (0, 7, 8, 40, 64, n // 3, n // 2, n - 16, n - 1)}
    cases["truncated_in_expected"] = data[: expected_at + 100]
    cases["random_after_header"] = data[:8] + rng.integers(0, 256, n - 8, np.uint8).tobytes()
    cases["vector_length_past_end"] = _patch_u32(data, expected_at - 4, 0xFFFFFFF0)
    cases["vector_one_byte_too_long"] = _patch_u32(data, expected_at - 4, n - expected_at + 1)
    cases["huge_root_offset"] = _patch_u32(data, 0, 0xFFFFFF00)
    cases["huge_suites_offset"] = _patch_u32(data, suites_at, 0x7FFFFFF0)
    cases["misaligned_root"] = _patch_u32(data, 0, root + 2)
    cases["not_a_bundle"] = program
    return cases


def _bundle_pack(src: Path, dst: Path, data: bytes, *, rehash: bool = True) -> Path:
    """A small pack for the C driver: the manifest, the fp32 .pte and the rig (hard-linked
    when the file system allows) and ``data`` as its .bpte; th_open reads no other file."""
    dst.mkdir()
    shutil.copy(src / "manifest.json", dst / "manifest.json")
    pte = _et_entry(json.loads((src / "manifest.json").read_text()), "fp32")["file"]
    for name in (pte, "rig.safetensors"):
        try:
            (dst / name).hardlink_to(src / name)
        except OSError:
            shutil.copy(src / name, dst / name)
    return _set_bundle(dst, data, rehash=rehash)


def _self_check_driver_args(src: Path, tmp_path: Path) -> list[str]:
    """[PACK, 'self_check=STATUS'] pairs for talkinghead_selftest: every malformed bundle of
    _malformed_bundles, a tampered one and one whose expected output is off."""
    good = _bundle_bytes(src)
    program = src / _et_entry(json.loads((src / "manifest.json").read_text()), "fp32")["file"]
    args = []
    for name, data in _malformed_bundles(good, program.read_bytes()).items():
        args += [_bundle_pack(src, tmp_path / f"bpte_{name}", data), "self_check=TH_ERR_MODEL"]
    tampered = good[:-20] + bytes([good[-20] ^ 1]) + good[-19:]
    args += [_bundle_pack(src, tmp_path / "bpte_tampered", tampered, rehash=False)]
    args += ["self_check=TH_ERR_INTEGRITY"]
    [(_, y)] = _bundle_cases(good)
    at = good.find(y.tobytes())
    args += [
        _bundle_pack(src, tmp_path / "bpte_off", good[:at] + b"\x00\x00\x80\x7f" + good[at + 4 :])
    ]
    args += ["self_check=TH_ERR_SELF_CHECK"]  # a +inf expected value
    return [str(a) for a in args]


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_self_check_passes_on_the_pack(avatar_pack, native_build, precision):
    """th_self_check runs the pack's .pte on the .bpte's test cases: as many cases as the
    manifest says, and the max abs error the Python SDK's ExecuTorch path gets."""
    pack = Path(avatar_pack)
    bundled = _et_entry(json.loads((pack / "manifest.json").read_text()), precision)["info"][
        "bundled"
    ]
    with native.NativeAvatar(pack, precision, native_build.library) as avatar:
        cases, max_abs = avatar.self_check()
        before = avatar.render(avatar.neutral_mesh)
        assert avatar.self_check() == (cases, max_abs)  # repeatable
        np.testing.assert_array_equal(avatar.render(avatar.neutral_mesh), before)
    assert cases == bundled["test_cases"] >= 1
    assert abs(max_abs - _python_max_abs(pack, precision, _bundle_bytes(pack, precision))) <= 1e-6
    assert max_abs <= bundled["atol"]


def test_self_check_reports_outputs_off_the_expected(avatar_pack, native_build, lib, tmp_path):
    """A bundle whose expected output is shifted: TH_ERR_SELF_CHECK with the max abs error
    (the same as Python's), as ParityError through the wrapper. fp32: rebuilt with the
    exporter's bundle_pte; int8: expected floats patched in place."""
    import torch

    from talkinghead.export.executorch import bundle_pte

    src = Path(avatar_pack)
    fp32 = shutil.copytree(src, tmp_path / "fp32")
    [(x, y)] = _bundle_cases(_bundle_bytes(src, "fp32"))
    shifted = y.copy()
    shifted[0, 1, 40:60, 30:90] += 0.25
    pte = fp32 / _et_entry(json.loads((src / "manifest.json").read_text()), "fp32")["file"]
    rebuilt = bundle_pte(
        pte, [torch.tensor(x.copy())], [torch.tensor(shifted)], tmp_path / "b.bpte"
    )
    _set_bundle(fp32, rebuilt.read_bytes(), "fp32")

    int8 = shutil.copytree(src, tmp_path / "int8")
    data = _bundle_bytes(src, "int8")
    [(_, y8)] = _bundle_cases(data)
    s = y8.shape[-1]
    at = data.find(y8.tobytes()) + 4 * (2 * s * s + 64 * s + 64)  # channel 2, (64, 64)
    [v] = struct.unpack_from("<f", data, at)
    _set_bundle(int8, data[:at] + struct.pack("<f", v - 0.5) + data[at + 4 :], "int8")

    for pack, precision, shift in ((fp32, "fp32", 0.25), (int8, "int8", 0.5)):
        name, cases, max_abs, message = _self_check_status(lib, pack, precision.encode())
        assert (name, cases) == ("TH_ERR_SELF_CHECK", 1), message
        want = _python_max_abs(pack, precision, _bundle_bytes(pack, precision))
        assert abs(max_abs - want) <= 1e-6 and abs(max_abs - shift) < 0.03, (max_abs, want)
        assert "max abs error" in message and "test case 0" in message
        with native.NativeAvatar(pack, precision, native_build.library) as avatar:
            with pytest.raises(ParityError, match="TH_ERR_SELF_CHECK.*max abs error"):
                avatar.self_check()
    assert "channel 2, row 64, col 64" in message
    # The tolerance is the manifest's: loose enough, the same bundle passes.
    for tolerance in ({"atol": 1.0}, {"atol": 0.0, "rtol": 1e6}):
        m = json.loads((int8 / "manifest.json").read_text())
        _et_entry(m, "int8")["info"]["bundled"].update(tolerance)
        (int8 / "manifest.json").write_text(json.dumps(m))
        name, cases, max_abs, _ = _self_check_status(lib, int8, b"int8")
        assert (name, cases) == ("TH_OK", 1) and abs(max_abs - 0.5) < 0.03, tolerance


def test_self_check_refuses_a_tampered_bundle(avatar_pack, native_build, lib, tmp_path):
    """The .bpte is hashed before it is parsed: altered bytes without a rewritten sha256 are
    an integrity error, and nothing is written to the caller's outputs."""
    pack = shutil.copytree(avatar_pack, tmp_path / "tampered")
    data = bytearray(_bundle_bytes(pack))
    data[-20] ^= 0x01
    _set_bundle(pack, bytes(data), rehash=False)
    assert _self_check_status(lib, pack)[:3] == ("TH_ERR_INTEGRITY", -1, -1.0)
    with native.NativeAvatar(pack, "fp32", native_build.library) as avatar:
        with pytest.raises(PackIntegrityError, match="sha256"):
            avatar.self_check()
        avatar.render(avatar.neutral_mesh)  # the model itself is intact
    name, handle = _open_status(lib, pack, b"int8")  # the other precision's bundle is intact
    cases, max_abs = ctypes.c_int32(), ctypes.c_double()
    assert lib.th_self_check(handle, ctypes.byref(cases), ctypes.byref(max_abs)) == 0
    assert lib.th_close(handle) == 0


def test_self_check_refuses_malformed_bundles(avatar_pack, lib, tmp_path):
    """Malformed .bpte bytes whose manifest sha256 was rewritten to match: a typed error
    naming what was wrong, never a crash. Bit flips hit every byte of the flatbuffer's
    structure (all but the three large byte vectors) and a few inside them: each must give
    a typed status (flips in padding or in float data may pass or fail the comparison)."""
    pack = shutil.copytree(avatar_pack, tmp_path / "pack")
    good = _bundle_bytes(pack)
    program = pack / _et_entry(json.loads((pack / "manifest.json").read_text()), "fp32")["file"]
    program = program.read_bytes()
    for name, data in _malformed_bundles(good, program).items():
        status, cases, _, message = _self_check_status(lib, _set_bundle(pack, data))
        assert status == "TH_ERR_MODEL" and cases == -1 and message, (name, status, message)
        if "past_end" in name or "huge" in name:
            assert "past the end" in message, (name, message)
    _set_bundle(pack, good[:4] + b"BP09" + good[8:])
    status, _, _, message = _self_check_status(lib, pack)
    assert status == "TH_ERR_UNSUPPORTED" and "BP09" in message

    [(x, y)] = _bundle_cases(good)
    blobs = [(good.find(b), len(b)) for b in (program, x.tobytes(), y.tobytes())]
    structure = [i for i in range(len(good)) if not any(a <= i < a + n for a, n in blobs)]
    inside = [a + n // 2 for a, n in blobs] + [a + 3 for a, _ in blobs]
    assert 64 < len(structure) < 2000
    rng = np.random.default_rng(2)
    seen: Counter[str] = Counter()
    for at in structure + inside:
        data = bytearray(good)
        data[at] ^= int(rng.integers(1, 256))
        status, cases, max_abs, message = _self_check_status(lib, _set_bundle(pack, bytes(data)))
        assert status in ("TH_OK", "TH_ERR_MODEL", "TH_ERR_UNSUPPORTED", "TH_ERR_SELF_CHECK"), (
            at,
            status,
            message,
        )
        assert (status == "TH_OK") == (message == ""), (at, status)
        if status in ("TH_OK", "TH_ERR_SELF_CHECK"):
            assert cases == 1 and not max_abs < 0, (at, status, cases, max_abs)
        seen[status] += 1
    assert seen["TH_ERR_MODEL"] > len(structure) // 2, seen


def test_self_check_needs_a_bundled_program(avatar_pack, native_build, lib, tmp_path):
    """No `info.bundled`: TH_ERR_UNSUPPORTED (and th_open still works); a malformed one or a
    missing .bpte: TH_ERR_PACK."""

    def edit(update):
        def apply(m):
            update(_et_entry(m, "fp32")["info"])

        return apply

    def set_bundled(**kw):
        return edit(lambda info: info["bundled"].update(kw))

    cases = {
        "no_bundled": (edit(lambda info: info.pop("bundled")), "TH_ERR_UNSUPPORTED"),
        "no_info": (lambda m: _et_entry(m, "fp32").pop("info"), "TH_ERR_UNSUPPORTED"),
        "not_object": (edit(lambda info: info.update(bundled="x.bpte")), "TH_ERR_PACK"),
        "unlisted": (set_bundled(file="other.bpte"), "TH_ERR_PACK"),
        "escape": (set_bundled(file="../x.bpte"), "TH_ERR_PACK"),
        "negative_atol": (set_bundled(atol=-1.0), "TH_ERR_PACK"),
        "string_rtol": (set_bundled(rtol="0"), "TH_ERR_PACK"),
    }
    for name, (manifest, want) in cases.items():
        pack = _variant(Path(avatar_pack), tmp_path / name, manifest=manifest)
        status, cases_run, _, message = _self_check_status(lib, pack)
        assert (status, cases_run) == (want, -1) and message, (name, status, message)
    assert "info.bundled" in _self_check_status(lib, tmp_path / "no_bundled")[3]
    with native.NativeAvatar(tmp_path / "no_bundled", "fp32", native_build.library) as avatar:
        with pytest.raises(PackError, match="TH_ERR_UNSUPPORTED"):
            avatar.self_check()
    missing = _variant(Path(avatar_pack), tmp_path / "missing")
    for bpte in missing.glob("*.bpte"):
        bpte.unlink()
    assert _self_check_status(lib, missing)[0] == "TH_ERR_PACK"


def test_self_check_null_pointers_and_closed_handle(avatar_pack, native_build, lib):
    cases, max_abs = ctypes.c_int32(7), ctypes.c_double(7.0)
    name, handle = _open_status(lib, avatar_pack)
    assert name == "TH_OK"
    try:
        for args in ((None, ctypes.byref(max_abs)), (ctypes.byref(cases), None), (None, None)):
            status = lib.th_self_check(handle, *args)
            assert native.status_name(status) == "TH_ERR_INVALID_ARGUMENT"
            assert b"NULL" in lib.th_last_error()
        assert (cases.value, max_abs.value) == (7, 7.0)
    finally:
        assert lib.th_close(handle) == 0
    for h in (handle, 0):
        status = lib.th_self_check(h, ctypes.byref(cases), ctypes.byref(max_abs))
        assert native.status_name(status) == "TH_ERR_CLOSED"
        assert native.status_name(lib.th_self_check(h, None, None)) == "TH_ERR_INVALID_ARGUMENT"
    assert (cases.value, max_abs.value) == (7, 7.0)
    assert lib.th_status_name(11) == b"TH_ERR_SELF_CHECK"
    assert native.status_name(11) == "TH_ERR_SELF_CHECK"
    avatar = native.NativeAvatar(avatar_pack, "fp32", native_build.library)
    avatar.close()
    with pytest.raises(BackendError, match="TH_ERR_CLOSED"):
        avatar.self_check()


def test_selftest_driver_rejects_corrupt_programs(avatar_pack, native_build, tmp_path):
    """Programs whose manifest hash was rewritten to match: the .pte header check or
    ExecuTorch's verifier must refuse them. Run in a subprocess: a crash fails the test
    instead of killing pytest."""
    src = Path(avatar_pack)
    args = [
        _variant(src, tmp_path / "truncated", model=lambda d: d[: len(d) // 2], rehash=True),
        "TH_ERR_MODEL",
        _variant(src, tmp_path / "text", model=lambda d: b"not a program " * 10, rehash=True),
        "TH_ERR_MODEL",
        _variant(src, tmp_path / "garbage", model=_garbage_after_header, rehash=True),
        "TH_ERR_MODEL",
        _variant(src, tmp_path / "tampered", model=lambda d: d[:-1] + b"x"),
        "TH_ERR_INTEGRITY",
        *_self_check_driver_args(src, tmp_path),
    ]
    proc = subprocess.run(
        [str(native_build.selftest), str(src), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "OK:" in proc.stdout


@pytest.mark.slow
def test_selftest_under_address_sanitizer(avatar_pack, tmp_path):
    """The C driver (good pack, every bad argument, two threads on one handle, corrupt
    programs, self-checks of malformed bundles) built with -DTALKINGHEAD_ASAN=ON: no memory
    error and no leak reported."""
    build = native.build_native(asan=True)
    src = Path(avatar_pack)
    args = [
        _variant(src, tmp_path / "garbage", model=_garbage_after_header, rehash=True),
        "TH_ERR_MODEL",
        _variant(src, tmp_path / "tampered", model=lambda d: d[:-1] + b"x"),
        "TH_ERR_INTEGRITY",
        *_self_check_driver_args(src, tmp_path),
    ]
    proc = subprocess.run(
        [str(build.selftest), str(src), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:exitcode=66"},
    )
    out = proc.stdout + proc.stderr
    assert "AddressSanitizer" not in out and "LeakSanitizer" not in out, out[-4000:]
    assert proc.returncode == 0 and "OK:" in proc.stdout, out[-4000:]
    print("ASan:", proc.stdout.strip().splitlines()[-1])  # the check count, for the docs


# ----------------------------------------------------------------------------- tooling


def test_benchmark_reports_per_frame_latency(avatar_pack, native_build):
    result = native.run_benchmark(avatar_pack, "int8", frames=5, warmup=1, build=native_build)
    assert result["precision"] == "int8" and result["frames"] == 5 and len(result["ms"]) == 5
    assert all(ms > 0 for ms in result["ms"])
    assert min(result["ms"]) <= result["median_ms"] <= max(result["ms"])
    assert 0 < result["warp_min_ms"] <= result["warp_median_ms"] <= result["warp_max_ms"]
    assert result["warp_median_ms"] < result["median_ms"]  # the warp is part of th_render
    assert result["drive_median_ms"] > 0  # th_drive renders the frame too
    with pytest.raises(InvalidInputError):
        native.run_benchmark(avatar_pack, "fp16", build=native_build)


def test_build_command_benchmarks_native_beside_python(capsys, avatar_pack, native_build, tmp_path):
    """``python -m talkinghead.bindings.build --bench`` times both paths on the same motion."""
    from talkinghead.bindings.build import main as build_main

    png = tmp_path / "latency.png"
    argv = ["--build-dir", str(native_build.dir), "--bench", str(avatar_pack), "--frames", "3"]
    assert build_main([*argv, "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    for precision in ("fp32", "int8"):
        line = next(
            ln for ln in out.splitlines() if ln.startswith(f"{precision}: th_render median")
        )
        assert "over 3 frames (256 px)" in line and "Python SDK path median" in line
        assert "th_warp median" in line and "th_drive median" in line
    assert png.stat().st_size > 1000
    # The Python path renders the very frames the native benchmark renders.
    with native.NativeAvatar(avatar_pack, "fp32", native_build.library) as avatar:
        neutral = avatar.neutral_mesh
        turned = [avatar.render(native.bench_motion(neutral, i)) for i in (0, 5)]
    assert np.abs(turned[0].astype(np.int16) - turned[1]).max() > 0  # the motion moves the face
    result = native.run_python_benchmark(avatar_pack, "int8", frames=4, warmup=0)
    assert result["frames"] == 4 and len(result["ms"]) == 4 and result["resolution"] == 256
    assert 0 < result["warp_median_ms"] < result["median_ms"]
    with pytest.raises(InvalidInputError):
        native.run_python_benchmark(avatar_pack, "int8", frames=0)


def test_build_without_cmake_says_so(monkeypatch, tmp_path):
    monkeypatch.setattr(native.shutil, "which", lambda name: None)
    with pytest.raises(BackendError, match="cmake not found"):
        native.build_native(tmp_path / "b")


def _jdk() -> tuple[Path, str, str] | None:
    """(jni.h folder, javac, java) of an installed JDK, or None."""
    headers = sorted(glob.glob("/usr/lib/jvm/*/include/jni.h"))
    javac, java = shutil.which("javac"), shutil.which("java")
    return (Path(headers[0]).parent, javac, java) if headers and javac and java else None


def _kotlin_stdlib() -> tuple[str, list[Path]] | None:
    """(kotlinc, [kotlin-stdlib.jar, kotlin-stdlib-jdk7.jar]) when Kotlin is installed."""
    kotlinc = shutil.which("kotlinc")
    if kotlinc is None:
        return None
    home = Path(os.path.realpath(kotlinc)).parent.parent
    for lib in (home / "lib", Path("/usr/share/java")):
        jars = [lib / "kotlin-stdlib.jar", lib / "kotlin-stdlib-jdk7.jar"]
        if all(j.is_file() for j in jars):
            return kotlinc, jars
    return None


def _run(cmd: list) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    return proc


def _build_jni_glue(native_build: native.NativeBuild, out_dir: Path) -> None:
    """Compile the Android JNI glue against the desktop JDK into out_dir/libtalkinghead_jni.so."""
    inc = _jdk()[0]
    cc = shutil.which("cc") or shutil.which("gcc")
    _run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
          f"-I{inc}", f"-I{inc / 'linux'}", f"-I{native.BINDINGS_DIR / 'include'}",
          native.BINDINGS_DIR / "android/src/main/cpp/talkinghead_jni.c",
          f"-L{native_build.dir}", "-ltalkinghead", f"-Wl,-rpath,{native_build.dir}",
          "-o", out_dir / "libtalkinghead_jni.so"])  # fmt: skip


def _check_jvm_run(stdout: str, ok: str, avatar_pack: Path, native_build, frame: Path) -> None:
    """What the Java and Kotlin harnesses print and write equals the ctypes path."""
    assert ok in stdout
    want = pack_payload(load_manifest(avatar_pack))
    assert f"pack_id={want.pack_id:06x} version={want.version}" in stdout
    assert "self_check cases=1" in stdout
    with native.NativeAvatar(avatar_pack, "int8", native_build.library) as avatar:
        want = avatar.render(avatar.neutral_mesh)
    got = np.frombuffer(frame.read_bytes(), np.uint8).reshape(want.shape)
    np.testing.assert_array_equal(got, want)


@pytest.mark.skipif(_jdk() is None, reason="no JDK (jni.h, javac, java) on this machine")
def test_jni_glue_runs_on_a_desktop_jvm(avatar_pack, native_build, tmp_path):
    """The Android JNI glue, compiled here and driven from a JVM through a Java twin of the
    Kotlin NativeBridge: the frame equals the ctypes one, errors arrive as exceptions."""
    _, javac, java = _jdk()
    _build_jni_glue(native_build, tmp_path)
    sources = sorted((native.BINDINGS_DIR / "android/jvm-check/com/talkinghead").glob("*.java"))
    _run([javac, "-d", tmp_path / "classes", *sources])
    proc = _run([java, f"-Djava.library.path={tmp_path}", "-cp", tmp_path / "classes",
                 "com.talkinghead.JniCheck", avatar_pack, "int8", tmp_path / "frame.rgb"])  # fmt: skip
    _check_jvm_run(proc.stdout, "JNI OK", avatar_pack, native_build, tmp_path / "frame.rgb")


@pytest.mark.skipif(
    _jdk() is None or _kotlin_stdlib() is None,
    reason="no JDK or no Kotlin compiler (kotlinc and its stdlib jars) on this machine",
)
def test_kotlin_wrapper_runs_on_a_desktop_jvm(avatar_pack, native_build, tmp_path):
    """The Kotlin wrapper itself (Avatar.kt, as an Android app compiles it), built with
    kotlinc and run over the JNI glue: open, render, opt-out, payload, self-check, errors."""
    _, _, java = _jdk()
    kotlinc, jars = _kotlin_stdlib()
    _build_jni_glue(native_build, tmp_path)
    android = native.BINDINGS_DIR / "android"
    _run([kotlinc, "-cp", jars[1], android / "src/main/kotlin/com/talkinghead/Avatar.kt",
          android / "kotlin-check/AvatarCheck.kt", "-d", tmp_path / "check.jar"])  # fmt: skip
    classpath = os.pathsep.join(map(str, [tmp_path / "check.jar", *jars]))
    proc = _run([java, f"-Djava.library.path={tmp_path}", "-cp", classpath,
                 "com.talkinghead.check.AvatarCheckKt", avatar_pack, "int8", tmp_path / "frame.rgb"])  # fmt: skip
    _check_jvm_run(proc.stdout, "KOTLIN OK", avatar_pack, native_build, tmp_path / "frame.rgb")
