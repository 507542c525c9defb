"""The native runtime (bindings/): built with CMake against the executorch wheel, called
through ctypes, compared with the Python SDK's ExecuTorch path.

Tolerances: the rasteriser must match models/rasterize.py exactly (every pixel); a
rendered frame may differ from the Python SDK's by at most 1 uint8 level per channel
(both run the same ExecuTorch libraries, so in practice they are identical). A marked
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
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from talkinghead.bindings import native
from talkinghead.errors import BackendError, InvalidInputError, PackError, PackIntegrityError
from talkinghead.models.rasterize import rasterize_landmarks, template_landmarks
from talkinghead.sdk.backends import ExecuTorchBackend
from talkinghead.sdk.motion import builtin_motion
from talkinghead.sdk.pack import load_manifest, open_pack
from talkinghead.sdk.provenance import pack_id, pack_payload, pack_watermark
from talkinghead.sdk.tensors import from_model_output, to_model_input
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
def motion(avatar_pack) -> np.ndarray:
    """(12, 68, 2) float32 px: scripted talking/blinking motion around the pack's neutral face."""
    with open_pack(avatar_pack) as pack:
        neutral = np.asarray(pack.manifest.identity.neutral_landmarks, np.float32)
    return builtin_motion(neutral, 12, seed=3).astype(np.float32)


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


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_native_render_matches_python_executorch(avatar_pack, native_build, motion, precision):
    """Unmarked (th_set_watermark 0): the Python SDK's ExecuTorch frame. Marked (the
    default): that frame marked by Python's embedder, as ``Avatar`` marks it."""
    with open_pack(avatar_pack) as pack:
        entry = pack.model(precision)
        backend = ExecuTorchBackend()
        backend.load_bytes(pack.read_verified(entry.file), source=entry.file)
        size = pack.manifest.resolution
        mark = pack_watermark(pack.manifest)
    with native.NativeAvatar(avatar_pack, precision, native_build.library) as avatar:
        assert avatar.resolution == size
        worst, worst_marked, worst_share = 0, 0, 0.0
        for lm in motion:
            want = from_model_output(
                backend.run(to_model_input(rasterize_landmarks(lm, size))[None])
            )[0]
            marked = avatar.render(lm)
            avatar.set_watermark(False)
            got = avatar.render(lm)
            avatar.set_watermark(True)
            assert got.shape == (size, size, 3) and got.dtype == np.uint8
            worst = max(worst, int(_abs_diff(got, want).max()))
            diff = _abs_diff(marked, mark.embed(want))
            worst_marked = max(worst_marked, int(diff.max()))
            worst_share = max(worst_share, float(np.mean(diff > 0)))
            assert _abs_diff(marked, got).max() > 0  # the mark is really there
        # Different landmarks give different faces (the model is really driven).
        assert not np.array_equal(avatar.render(motion[0]), avatar.render(motion[6]))
    backend.close()
    assert worst <= RENDER_TOLERANCE
    assert worst_marked <= WATERMARK_TOLERANCE and worst_share <= WATERMARK_DIFF_SHARE


def test_native_frames_decode_to_the_pack_payload(avatar_pack, native_build, motion):
    """The Python detector reads the native mark; th_watermark_payload says what it is."""
    manifest = load_manifest(avatar_pack)
    want = pack_payload(manifest)
    with native.NativeAvatar(avatar_pack, "int8", native_build.library) as avatar:
        assert avatar.watermark_payload == (want.pack_id, want.version)
        for lm in motion[::3]:
            result = detect(avatar.render(lm))
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


def test_open_reports_resolution_landmarks_and_version(avatar_pack, native_build, lib):
    with open_pack(avatar_pack) as pack:
        m = pack.manifest
    with native.NativeAvatar(avatar_pack, "int8", native_build.library) as avatar:
        assert avatar.resolution == m.resolution
        np.testing.assert_array_equal(
            avatar.neutral_landmarks, np.asarray(m.identity.neutral_landmarks, np.float32)
        )
    from talkinghead import __version__

    assert lib.th_version().decode() == __version__
    assert lib.th_abi_version() == 1


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
        lm = np.full((68, 2), 40.0, np.float32)
        out = np.zeros(n + 1, np.uint8)
        lm_p, out_p = native._f32(lm), native._u8(out)

        def render(lm_ptr, count, out_ptr, nbytes) -> str:
            return native.status_name(lib.th_render(handle, lm_ptr, count, out_ptr, nbytes))

        assert render(None, 136, out_p, n) == "TH_ERR_INVALID_ARGUMENT"
        assert render(lm_p, 135, out_p, n) == "TH_ERR_INVALID_ARGUMENT"
        assert render(lm_p, 136, None, n) == "TH_ERR_INVALID_ARGUMENT"
        assert render(lm_p, 136, out_p, n - 1) == "TH_ERR_INVALID_ARGUMENT"
        assert render(lm_p, 136, out_p, n + 1) == "TH_ERR_INVALID_ARGUMENT"
        assert str(n) in lib.th_last_error().decode()  # names the size it wanted
        assert not out.any()  # nothing written on failure
        assert render(lm_p, 136, out_p, n) == "TH_OK"
        assert lib.th_resolution(handle, None) == 1
        assert lib.th_neutral_landmarks(handle, None, 136) == 1
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


def test_nan_landmarks_and_render_after_close(avatar_pack, native_build):
    avatar = native.NativeAvatar(avatar_pack, "fp32", native_build.library)
    lm = avatar.neutral_landmarks
    for bad in (np.nan, np.inf, -np.inf):
        broken = lm.copy()
        broken[30, 1] = bad
        with pytest.raises(InvalidInputError, match="TH_ERR_INVALID_LANDMARKS"):
            avatar.render(broken)
    with pytest.raises(InvalidInputError, match=r"\(68, 2\)"):
        avatar.render(lm[:67])
    # Far outside the image is allowed: the lines are clipped.
    assert avatar.render(np.full((68, 2), 1e30, np.float32)).shape[2] == 3
    handle = avatar.handle
    avatar.close()
    avatar.close()  # idempotent
    lib = native.load_library(native_build.library)
    out = np.zeros((avatar.resolution, avatar.resolution, 3), np.uint8)
    status = lib.th_render(handle, native._f32(lm), 136, native._u8(out), out.nbytes)
    assert native.status_name(status) == "TH_ERR_CLOSED"
    assert native.status_name(lib.th_close(handle)) == "TH_ERR_CLOSED"
    assert native.status_name(lib.th_close(0)) == "TH_ERR_CLOSED"


def test_tampered_and_malformed_packs(avatar_pack, native_build, lib, tmp_path):
    src = Path(avatar_pack)

    def flip_byte(data: bytes) -> bytes:
        return data[:1000] + bytes([data[1000] ^ 0xFF]) + data[1001:]

    def escape(m):
        entry = next(e for e in m["models"] if e["precision"] == "fp32")
        m["files"]["../outside.pte"] = m["files"].pop(entry["file"])
        entry["file"] = "../outside.pte"

    cases = {
        "hash_mismatch": (dict(model=flip_byte), "TH_ERR_INTEGRITY"),
        "schema_3": (dict(manifest=lambda m: m.update(schema_version=3)), "TH_ERR_UNSUPPORTED"),
        "schema_0": (dict(manifest=lambda m: m.update(schema_version=0)), "TH_ERR_PACK"),
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
        "shape_mismatch": (
            dict(manifest=lambda m: m.update(resolution=64, landmark_convention={"size": 64})),
            "TH_ERR_MODEL",
        ),
    }
    for name, (kwargs, want) in cases.items():
        pack = _variant(src, tmp_path / name, **kwargs)
        assert _open_status(lib, pack) == (want, 0), (name, lib.th_last_error())
    with pytest.raises(PackIntegrityError, match="sha256"):
        native.NativeAvatar(tmp_path / "hash_mismatch", "fp32", native_build.library)
    with pytest.raises(PackError, match="schema_version 3 is newer"):
        native.NativeAvatar(tmp_path / "schema_3", "fp32", native_build.library)

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
    no_manifest = _variant(src, tmp_path / "no_manifest")
    (no_manifest / "manifest.json").unlink()
    assert _open_status(lib, no_manifest)[0] == "TH_ERR_PACK"
    for text in ("{", "[1, 2]", '{"schema_version": 1e999}', "\ufeff{}", "{" * 100 + "}" * 100):
        bad_json = tmp_path / f"json_{len(list(tmp_path.glob('json_*')))}"
        bad_json.mkdir()
        (bad_json / "manifest.json").write_text(text)
        assert _open_status(lib, bad_json)[0] == "TH_ERR_PACK", text


def test_schema_2_entries_and_unknown_keys(avatar_pack, native_build, motion, tmp_path):
    """Schema 2: other runtimes' entries, bundled programs and other delegates are skipped,
    unknown keys ignored; an ExecuTorch entry that is not float32 NCHW is refused."""

    def newer(m):
        m.update(schema_version=2, future={"anything": [1, 2.5, None, True, "\u00e9"]})
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
    programs) built with -DTALKINGHEAD_ASAN=ON: no memory error and no leak reported."""
    build = native.build_native(asan=True)
    src = Path(avatar_pack)
    args = [
        _variant(src, tmp_path / "garbage", model=_garbage_after_header, rehash=True),
        "TH_ERR_MODEL",
        _variant(src, tmp_path / "tampered", model=lambda d: d[:-1] + b"x"),
        "TH_ERR_INTEGRITY",
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


# ----------------------------------------------------------------------------- tooling


def test_benchmark_reports_per_frame_latency(avatar_pack, native_build):
    result = native.run_benchmark(avatar_pack, "int8", frames=5, warmup=1, build=native_build)
    assert result["precision"] == "int8" and result["frames"] == 5 and len(result["ms"]) == 5
    assert all(ms > 0 for ms in result["ms"])
    assert min(result["ms"]) <= result["median_ms"] <= max(result["ms"])
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
        line = next(ln for ln in out.splitlines() if ln.startswith(f"{precision}: median"))
        assert "over 3 frames (128 px)" in line and "Python SDK path median" in line
    assert png.stat().st_size > 1000
    # The Python path renders the very frames the native benchmark renders.
    with open_pack(avatar_pack) as pack:
        neutral = np.asarray(pack.manifest.identity.neutral_landmarks, np.float32)
    with native.NativeAvatar(avatar_pack, "fp32", native_build.library) as avatar:
        mouth = [avatar.render(native.bench_motion(neutral, i)) for i in (0, 5)]
    assert np.abs(mouth[0].astype(np.int16) - mouth[1]).max() > 0  # the motion moves the face
    result = native.run_python_benchmark(avatar_pack, "int8", frames=4, warmup=0)
    assert result["frames"] == 4 and len(result["ms"]) == 4 and result["resolution"] == 128
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


@pytest.mark.skipif(_jdk() is None, reason="no JDK (jni.h, javac, java) on this machine")
def test_jni_glue_runs_on_a_desktop_jvm(avatar_pack, native_build, tmp_path):
    """The Android JNI glue, compiled here and driven from a JVM through a Java twin of the
    Kotlin NativeBridge: the frame equals the ctypes one, errors arrive as exceptions."""
    inc, javac, java = _jdk()
    android = native.BINDINGS_DIR / "android"
    cc = shutil.which("cc") or shutil.which("gcc")
    steps = [
        [cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
         f"-I{inc}", f"-I{inc / 'linux'}", f"-I{native.BINDINGS_DIR / 'include'}",
         str(android / "src/main/cpp/talkinghead_jni.c"), f"-L{native_build.dir}",
         "-ltalkinghead", f"-Wl,-rpath,{native_build.dir}",
         "-o", str(tmp_path / "libtalkinghead_jni.so")],
        [javac, "-d", str(tmp_path / "classes"),
         *map(str, sorted((android / "jvm-check/com/talkinghead").glob("*.java")))],
        [java, f"-Djava.library.path={tmp_path}", "-cp", str(tmp_path / "classes"),
         "com.talkinghead.JniCheck", str(avatar_pack), "int8", str(tmp_path / "frame.rgb")],
    ]  # fmt: skip
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "JNI OK" in proc.stdout
    want = pack_payload(load_manifest(avatar_pack))
    assert f"pack_id={want.pack_id:06x} version={want.version}" in proc.stdout
    with native.NativeAvatar(avatar_pack, "int8", native_build.library) as avatar:
        want = avatar.render(avatar.neutral_landmarks)
    got = np.frombuffer((tmp_path / "frame.rgb").read_bytes(), np.uint8).reshape(want.shape)
    np.testing.assert_array_equal(got, want)
