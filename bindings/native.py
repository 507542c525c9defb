"""Build, locate and call the native runtime: ``libtalkinghead`` (the C ABI in
``bindings/include/talkinghead.h``) compiled by CMake against the executorch pip wheel.

Python apps use :mod:`talkinghead.sdk`; this module exists to build the library that
phone apps link, to test it from Python through ctypes, and to benchmark it::

    from talkinghead.bindings.native import NativeAvatar, build_native

    build = build_native()                      # cmake configure + build (incremental)
    with NativeAvatar(pack_dir, "int8", build.library) as avatar:
        frame = avatar.render(mesh)             # (478, 3) crop px -> (S, S, 3) uint8
"""

from __future__ import annotations

import ctypes
import fcntl
import importlib.util
import json
import math
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from talkinghead import __version__
from talkinghead.errors import (
    BackendError,
    InvalidInputError,
    PackError,
    PackIntegrityError,
    ParityError,
    SignatureError,
    TalkingHeadError,
    TimestampError,
)
from talkinghead.sdk.smoothing import OneEuroParams

BINDINGS_DIR = Path(__file__).resolve().parent
DEFAULT_BUILD_ROOT = BINDINGS_DIR / "build"
NUM_LANDMARK_FLOATS = 136

# th_status values (talkinghead.h) -> the SDK's typed exceptions.
STATUS_NAMES = (
    "TH_OK",
    "TH_ERR_INVALID_ARGUMENT",
    "TH_ERR_INVALID_LANDMARKS",
    "TH_ERR_PACK",
    "TH_ERR_INTEGRITY",
    "TH_ERR_UNSUPPORTED",
    "TH_ERR_MODEL",
    "TH_ERR_RUNTIME",
    "TH_ERR_CLOSED",
    "TH_ERR_NO_MEMORY",
    "TH_ERR_INTERNAL",
    "TH_ERR_SELF_CHECK",
    "TH_ERR_TIMESTAMP",
    "TH_ERR_SIGNATURE",
)
_STATUS_ERRORS: dict[str, type[TalkingHeadError]] = {
    "TH_ERR_INVALID_ARGUMENT": InvalidInputError,
    "TH_ERR_INVALID_LANDMARKS": InvalidInputError,
    "TH_ERR_PACK": PackError,
    "TH_ERR_INTEGRITY": PackIntegrityError,
    "TH_ERR_UNSUPPORTED": PackError,
    "TH_ERR_SELF_CHECK": ParityError,
    "TH_ERR_TIMESTAMP": TimestampError,
    "TH_ERR_SIGNATURE": SignatureError,
}


@dataclass(frozen=True)
class NativeBuild:
    """Where one CMake build put its outputs."""

    dir: Path
    library: Path
    selftest: Path
    bench: Path


def executorch_cmake_dir() -> Path:
    """The folder holding ``executorch-config.cmake`` in the installed executorch wheel."""
    spec = importlib.util.find_spec("executorch")
    if spec is None or not spec.submodule_search_locations:
        raise BackendError("the executorch wheel is not installed: pip install executorch")
    path = Path(list(spec.submodule_search_locations)[0]) / "lib" / "cmake" / "executorch"
    if not (path / "executorch-config.cmake").is_file():
        raise BackendError(f"the executorch wheel ships no CMake package at {path}")
    return path


def cmake_commands(
    build_dir: str | os.PathLike[str], *, asan: bool = False, jobs: int = 2
) -> list[list[str]]:
    """The configure and build commands :func:`build_native` runs (shown in docs and errors)."""
    build_dir = Path(build_dir)
    cmake = shutil.which("cmake")
    if cmake is None:
        raise BackendError(
            "cmake not found on PATH: install CMake >= 3.19 and a C++17 compiler "
            "(e.g. apt-get install cmake g++) to build the native bindings"
        )
    configure = [
        cmake,
        "-S",
        str(BINDINGS_DIR),
        "-B",
        str(build_dir),
        "-DCMAKE_BUILD_TYPE=Release",
        f"-Dexecutorch_DIR={executorch_cmake_dir()}",
        f"-DTALKINGHEAD_ASAN={'ON' if asan else 'OFF'}",
        f"-DTALKINGHEAD_VERSION={__version__}",
    ]
    if shutil.which("ninja") and not (build_dir / "Makefile").exists():
        configure += ["-G", "Ninja"]
    build = [cmake, "--build", str(build_dir), "-j", str(jobs)]
    # Under ASan only the library and the C self-test are needed (the slow part is compiling).
    return [configure, build + (["--target", "talkinghead_selftest"] if asan else [])]


def build_native(
    build_dir: str | os.PathLike[str] | None = None, *, asan: bool = False, jobs: int = 2
) -> NativeBuild:
    """Configure and build the library, self-test and benchmark (incremental; a file lock
    keeps concurrent callers from building into the same folder at once).

    ``build_dir`` defaults to ``bindings/build/release`` (``.../asan`` with ``asan``, which
    builds the library and self-test only, with ``-fsanitize=address``).
    Raises BackendError naming the failing command, with the tail of its output.
    """
    out = (
        Path(build_dir)
        if build_dir is not None
        else DEFAULT_BUILD_ROOT / ("asan" if asan else "release")
    )
    out.mkdir(parents=True, exist_ok=True)
    commands = cmake_commands(out, asan=asan, jobs=jobs)
    with open(out / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for cmd in commands:
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                tail = (proc.stdout + proc.stderr)[-4000:]
                raise BackendError(f"native build failed: {' '.join(cmd)}\n{tail}")
    build = NativeBuild(
        dir=out,
        library=out / "libtalkinghead.so",
        selftest=out / "talkinghead_selftest",
        bench=out / "talkinghead_bench",
    )
    for p in (build.library, build.selftest) + (() if asan else (build.bench,)):
        if not p.is_file():
            raise BackendError(f"native build finished but {p} is missing")
    return build


# ----------------------------------------------------------------------------- ctypes

_LIBRARIES: dict[Path, ctypes.CDLL] = {}


def load_library(path: str | os.PathLike[str]) -> ctypes.CDLL:
    """Load ``libtalkinghead`` once per path, with the C signatures declared."""
    path = Path(path).resolve()
    if path in _LIBRARIES:
        return _LIBRARIES[path]
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as e:
        raise BackendError(f"cannot load the native library {path}: {e}") from e
    c = ctypes
    f32p, u8p = c.POINTER(c.c_float), c.POINTER(c.c_uint8)
    sigs = {
        "th_version": (c.c_char_p, []),
        "th_abi_version": (c.c_int32, []),
        "th_status_name": (c.c_char_p, [c.c_int]),
        "th_last_error": (c.c_char_p, []),
        "th_open": (c.c_int, [c.c_char_p, c.c_char_p, c.POINTER(c.c_uint64)]),
        "th_open_signed": (
            c.c_int,
            [c.c_char_p, c.c_char_p, u8p, c.c_size_t, c.POINTER(c.c_uint64)],
        ),
        "th_resolution": (c.c_int, [c.c_uint64, c.POINTER(c.c_int32)]),
        "th_neutral_mesh": (c.c_int, [c.c_uint64, f32p, c.c_size_t]),
        "th_render": (c.c_int, [c.c_uint64, f32p, c.c_size_t, u8p, c.c_size_t]),
        "th_warp": (
            c.c_int,
            [c.c_uint64, f32p, c.c_size_t, u8p, c.c_size_t, u8p, c.c_size_t],
        ),
        "th_set_watermark": (c.c_int, [c.c_uint64, c.c_int32]),
        "th_watermark_payload": (
            c.c_int,
            [c.c_uint64, c.POINTER(c.c_uint32), c.POINTER(c.c_uint32)],
        ),
        "th_self_check": (
            c.c_int,
            [c.c_uint64, c.POINTER(c.c_int32), c.POINTER(c.c_double)],
        ),
        "th_verify_files": (c.c_int, [c.c_uint64, c.POINTER(c.c_int32)]),
        "th_rasterize": (c.c_int, [f32p, c.c_size_t, c.c_int32, c.c_double, u8p, c.c_size_t]),
        "th_drive": (
            c.c_int,
            [
                c.c_uint64,
                f32p,
                c.c_size_t,
                c.c_int32,
                c.c_int32,
                c.c_int64,
                u8p,
                c.c_size_t,
                f32p,
                c.c_size_t,
            ],
        ),
        "th_drive_reset": (c.c_int, [c.c_uint64]),
        "th_set_smoothing": (c.c_int, [c.c_uint64, c.c_double, c.c_double, c.c_double]),
        "th_close": (c.c_int, [c.c_uint64]),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    _LIBRARIES[path] = lib
    return lib


def status_name(status: int) -> str:
    return STATUS_NAMES[status] if 0 <= status < len(STATUS_NAMES) else f"TH_STATUS_{status}"


def check_status(lib: ctypes.CDLL, status: int, what: str) -> None:
    """Raise the typed exception for a failed th_ call, with the library's message."""
    if status == 0:
        return
    name = status_name(status)
    message = (lib.th_last_error() or b"").decode("utf-8", "replace")
    raise _STATUS_ERRORS.get(name, BackendError)(f"{what}: {name}: {message}")


def _float_buffer(value: object, shape: tuple[int, ...], what: str) -> np.ndarray:
    """``value`` as a contiguous float32 array of ``shape``; finiteness is left to the
    native side (it answers TH_ERR_INVALID_LANDMARKS)."""
    try:
        arr = np.ascontiguousarray(value, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise InvalidInputError(f"{what} must be numeric: {e}") from e
    if arr.shape != shape:
        raise InvalidInputError(f"{what} must have shape {shape}, got {arr.shape}")
    return arr


def _f32(a: np.ndarray) -> ctypes._Pointer:
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


def _u8(a: np.ndarray) -> ctypes._Pointer:
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))


def rasterize(
    landmarks: np.ndarray, size: int, library: str | os.PathLike[str], thickness: float = 0.0
) -> np.ndarray:
    """The native rasteriser: (68, 2) px -> (size, size, 3) uint8; ``thickness`` 0 = default."""
    lib = load_library(library)
    lm = _float_buffer(landmarks, (68, 2), "landmarks")
    out = np.zeros((size, size, 3), np.uint8)
    status = lib.th_rasterize(_f32(lm), lm.size, int(size), float(thickness), _u8(out), out.nbytes)
    check_status(lib, status, "th_rasterize")
    return out


class NativeAvatar:
    """A pack opened by the native runtime through ctypes. A context manager.

    ``render``: a target mesh (478, 3) float crop px -> (S, S, 3) uint8 RGB, the frame of
    the Python SDK's ``Avatar.render`` (warp, landmarks, refiner, watermark) within 1 level;
    marked unless ``set_watermark(False)`` turned marking off. ``warp``: the warp alone.
    ``drive``: one raw MediaPipe mesh -> the frame, as a phone runs it (th_drive; the
    Python SDK's ``sdk.driver.MeshDriver``). ``verify_files`` and ``self_check``: the pack's
    hashes and bundled test cases, checked natively.
    """

    def __init__(
        self,
        pack: str | os.PathLike[str],
        precision: str = "fp32",
        library: str | os.PathLike[str] | None = None,
        trusted_keys: list | None = None,
    ) -> None:
        """trusted_keys: public keys (``sdk.signing``): open with th_open_signed."""
        if not isinstance(precision, str):
            raise InvalidInputError(f"precision must be a str, got {type(precision).__name__}")
        self._lib = load_library(library if library is not None else build_native().library)
        handle = ctypes.c_uint64(0)
        if trusted_keys is None:
            status = self._lib.th_open(os.fsencode(pack), precision.encode(), ctypes.byref(handle))
            check_status(self._lib, status, f"th_open({pack}, {precision})")
        else:
            from talkinghead.sdk.signing import load_public_keys

            keys = np.frombuffer(b"".join(load_public_keys(trusted_keys)), np.uint8).copy()
            status = self._lib.th_open_signed(
                os.fsencode(pack), precision.encode(), _u8(keys), len(keys) // 32,
                ctypes.byref(handle),
            )  # fmt: skip
            check_status(self._lib, status, f"th_open_signed({pack}, {precision})")
        self._handle = handle.value
        size = ctypes.c_int32(0)
        check_status(
            self._lib, self._lib.th_resolution(self._handle, ctypes.byref(size)), "th_resolution"
        )
        self.resolution: int = size.value

    @property
    def handle(self) -> int:
        return self._handle

    @property
    def neutral_mesh(self) -> np.ndarray:
        """(478, 3) float32 crop px: the enrolled face at rest, from the pack's rig."""
        out = np.zeros((478, 3), np.float32)
        status = self._lib.th_neutral_mesh(self._handle, _f32(out), out.size)
        check_status(self._lib, status, "th_neutral_mesh")
        return out

    @property
    def watermark_payload(self) -> tuple[int, int]:
        """(pack_id, version_code) that marked frames carry: 24 and 8 bits."""
        pack_id, version = ctypes.c_uint32(0), ctypes.c_uint32(0)
        status = self._lib.th_watermark_payload(
            self._handle, ctypes.byref(pack_id), ctypes.byref(version)
        )
        check_status(self._lib, status, "th_watermark_payload")
        return pack_id.value, version.value

    def set_watermark(self, enabled: bool) -> None:
        """Mark frames (True, the default) or not (False: the opt-out, as
        ``AvatarOptions(watermark=False)``)."""
        if not isinstance(enabled, bool):
            raise InvalidInputError(f"enabled must be a bool, got {enabled!r}")
        status = self._lib.th_set_watermark(self._handle, int(enabled))
        check_status(self._lib, status, "th_set_watermark")

    def render(self, mesh: np.ndarray) -> np.ndarray:
        """mesh: (478, 3) float, the target face in crop px -> (S, S, 3) uint8 RGB."""
        arr = _float_buffer(mesh, (478, 3), "mesh")
        s = self.resolution
        out = np.empty((s, s, 3), np.uint8)
        status = self._lib.th_render(self._handle, _f32(arr), arr.size, _u8(out), out.nbytes)
        check_status(self._lib, status, "th_render")
        return out

    def warp(self, mesh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Only the warp (th_warp): (478, 3) crop px -> ((S, S, 3) uint8 RGB, (S, S) uint8
        validity), ``sdk.warp.warp_to`` within 1 level."""
        arr = _float_buffer(mesh, (478, 3), "mesh")
        s = self.resolution
        rgb = np.empty((s, s, 3), np.uint8)
        valid = np.empty((s, s), np.uint8)
        status = self._lib.th_warp(
            self._handle, _f32(arr), arr.size, _u8(rgb), rgb.nbytes, _u8(valid), valid.nbytes
        )
        check_status(self._lib, status, "th_warp")
        return rgb, valid

    def drive(
        self, mesh: np.ndarray, image_size: tuple[int, int], timestamp_ms: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """One tracked frame of the driver -> (frame (S, S, 3) uint8, target mesh (478, 3)
        float32 crop px).

        Args:
            mesh: (478 or 468, 3 or 2) MediaPipe NormalizedLandmark x, y (, z): x and y
                normalised by the image width and height, z by the width.
            image_size: (width, height) of the tracked image, px.
            timestamp_ms: strictly greater than the previous call's (until drive_reset).

        Smoothed (One Euro, z included), retargeted onto the avatar's neutral mesh relative
        to the driver's first frame and rendered: the Python SDK's ``MeshDriver`` +
        ``Avatar.render``. Raises TimestampError for a timestamp that did not increase,
        InvalidInputError for anything else wrong.
        """
        try:
            arr = np.ascontiguousarray(mesh, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise InvalidInputError(f"mesh must be numeric: {e}") from e
        if arr.ndim != 2 or arr.shape[0] not in (478, 468) or arr.shape[1] not in (3, 2):
            raise InvalidInputError(
                f"mesh must have shape (478 or 468 MediaPipe points, 3 or 2), got {arr.shape}"
            )
        if (
            not isinstance(image_size, (tuple, list))
            or len(image_size) != 2
            or not all(isinstance(v, (int, np.integer)) for v in image_size)
        ):
            raise InvalidInputError(f"image_size must be (width, height) ints, got {image_size!r}")
        if isinstance(timestamp_ms, bool) or not isinstance(timestamp_ms, (int, np.integer)):
            raise InvalidInputError(f"timestamp_ms must be an int, got {timestamp_ms!r}")
        w, h = (int(v) for v in image_size)
        if not (-(2**31) <= w < 2**31 and -(2**31) <= h < 2**31):
            raise InvalidInputError(f"image_size out of range: {image_size!r}")
        if not -(2**63) <= int(timestamp_ms) < 2**63:
            raise InvalidInputError(f"timestamp_ms out of range: {timestamp_ms}")
        s = self.resolution
        frame = np.empty((s, s, 3), np.uint8)
        target = np.zeros((478, 3), np.float32)
        status = self._lib.th_drive(
            self._handle, _f32(arr), arr.size, w, h, int(timestamp_ms),
            _u8(frame), frame.nbytes, _f32(target), target.size,
        )  # fmt: skip
        check_status(self._lib, status, "th_drive")
        return frame, target

    def drive_reset(self) -> None:
        """Forget the driver: the next frame is the new reference; timestamps start over."""
        check_status(self._lib, self._lib.th_drive_reset(self._handle), "th_drive_reset")

    def set_smoothing(self, params: OneEuroParams | None) -> None:
        """The One Euro parameters of :meth:`drive`, or None for no smoothing. Resets."""
        if params is not None and not isinstance(params, OneEuroParams):
            raise InvalidInputError(f"params must be OneEuroParams or None, got {params!r}")
        p = (0.0, 0.0, 0.0) if params is None else (params.min_cutoff, params.beta, params.d_cutoff)
        status = self._lib.th_set_smoothing(self._handle, *(float(v) for v in p))
        check_status(self._lib, status, "th_set_smoothing")

    def verify_files(self) -> int:
        """Check every file the manifest lists against its sha256 (th_open checks only the
        model it loads). Returns how many were checked; PackIntegrityError names the first
        that does not match, PackError one that is missing."""
        count = ctypes.c_int32(0)
        status = self._lib.th_verify_files(self._handle, ctypes.byref(count))
        check_status(self._lib, status, "th_verify_files")
        return count.value

    def self_check(self) -> tuple[int, float]:
        """Run the loaded model on the test cases of the pack's bundled program (``.bpte``,
        the model entry's ``info.bundled``) and compare with their expected outputs within
        its ``atol``/``rtol``. Returns (test cases run, max abs error).

        Raises ParityError when an output is off, PackIntegrityError when the ``.bpte`` does
        not match its sha256, PackError when the pack has no bundled program.
        """
        cases, max_abs = ctypes.c_int32(0), ctypes.c_double(0.0)
        status = self._lib.th_self_check(self._handle, ctypes.byref(cases), ctypes.byref(max_abs))
        check_status(self._lib, status, "th_self_check")
        return cases.value, max_abs.value

    def close(self) -> None:
        """Release the native avatar. Idempotent."""
        if self._handle:
            self._lib.th_close(self._handle)
            self._handle = 0

    def __enter__(self) -> NativeAvatar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------------------- benchmark


def run_benchmark(
    pack: str | os.PathLike[str],
    precision: str = "fp32",
    frames: int = 100,
    warmup: int = 5,
    build: NativeBuild | None = None,
) -> dict:
    """Run ``talkinghead_bench``: per-frame native latency. Returns its JSON: th_render's
    ``median_ms``, ``min_ms``, ``max_ms``, ``ms`` (per frame; warp + landmarks + refiner +
    conversions + watermark), ``warp_median_ms``/``warp_min_ms``/``warp_max_ms`` (th_warp)
    and ``drive_median_ms`` (th_drive: a 478-point mesh to a finished frame).
    """
    if precision not in ("fp32", "int8"):
        raise InvalidInputError(f"precision must be 'fp32' or 'int8', got {precision!r}")
    if not isinstance(frames, int) or frames < 1 or not isinstance(warmup, int) or warmup < 0:
        raise InvalidInputError(f"frames must be >= 1 and warmup >= 0, got {frames}, {warmup}")
    build = build if build is not None else build_native()
    proc = subprocess.run(
        [str(build.bench), os.fspath(pack), precision, str(frames), str(warmup)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise BackendError(f"talkinghead_bench failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout)


def bench_motion(neutral_mesh: np.ndarray, index: int) -> np.ndarray:
    """The target mesh of frame ``index`` of ``talkinghead_bench``'s motion: the neutral mesh
    turned about its centroid by up to 25 degrees of yaw, the lower lip lowered by up to
    6 px, so every frame warps and rasterises anew. ``(478, 3) float32``."""
    m = np.asarray(neutral_mesh, np.float64)
    c = m.mean(axis=0)
    a = math.radians(25.0) * math.sin(0.2 * index)
    x, z = m[:, 0] - c[0], m[:, 2] - c[2]
    out = np.stack(
        [
            x * math.cos(a) - z * math.sin(a) + c[0],
            m[:, 1],
            z * math.cos(a) + x * math.sin(a) + c[2],
        ],
        axis=1,
    ).astype(np.float32)
    out[[321, 314, 17, 84, 91, 316, 15, 86], 1] += np.float32(3.0 * (1.0 + math.sin(0.3 * index)))
    return out


def run_python_benchmark(
    pack: str | os.PathLike[str], precision: str = "fp32", frames: int = 100, warmup: int = 5
) -> dict:
    """The same work as ``talkinghead_bench`` through the Python SDK: ``Avatar.render`` of
    the ExecuTorch backend (warp, landmarks, refiner, watermark) and ``sdk.warp.warp_to``
    alone, same motion, same pack. Returns ``run_benchmark``'s keys but ``drive_median_ms``.
    """
    import time

    from talkinghead.sdk.avatar import Avatar
    from talkinghead.sdk.warp import warp_to

    if precision not in ("fp32", "int8"):
        raise InvalidInputError(f"precision must be 'fp32' or 'int8', got {precision!r}")
    if not isinstance(frames, int) or frames < 1 or not isinstance(warmup, int) or warmup < 0:
        raise InvalidInputError(f"frames must be >= 1 and warmup >= 0, got {frames}, {warmup}")
    ms: list[float] = []
    warp_ms: list[float] = []
    with Avatar.create_from_pack(pack, backend="executorch", precision=precision) as avatar:
        neutral = avatar.neutral_mesh
        rig = avatar.pack.load_rig()
        for i in range(warmup + frames):
            mesh = bench_motion(neutral, i)
            t0 = time.perf_counter()
            warp_to(rig, mesh)
            t1 = time.perf_counter()
            avatar.render(mesh)
            t2 = time.perf_counter()
            if i >= warmup:
                warp_ms.append((t1 - t0) * 1e3)
                ms.append((t2 - t1) * 1e3)
        size = avatar.resolution
    return {
        "precision": precision,
        "resolution": size,
        "frames": frames,
        "median_ms": float(np.median(ms)),
        "min_ms": min(ms),
        "max_ms": max(ms),
        "warp_median_ms": float(np.median(warp_ms)),
        "warp_min_ms": min(warp_ms),
        "warp_max_ms": max(warp_ms),
        "ms": ms,
    }


def compare_paths(
    pack: str | os.PathLike[str], frames: int = 100, build: NativeBuild | None = None
) -> list[tuple[dict, dict]]:
    """(``run_benchmark``, ``run_python_benchmark``) results for fp32 and int8, in that order."""
    build = build if build is not None else build_native()
    return [
        (
            run_benchmark(pack, p, frames=frames, build=build),
            run_python_benchmark(pack, p, frames=frames),
        )
        for p in ("fp32", "int8")
    ]


__all__ = [
    "NativeAvatar",
    "NativeBuild",
    "build_native",
    "check_status",
    "cmake_commands",
    "compare_paths",
    "executorch_cmake_dir",
    "bench_motion",
    "load_library",
    "rasterize",
    "run_benchmark",
    "run_python_benchmark",
    "status_name",
]
