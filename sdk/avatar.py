"""The avatar runtime, in the shape of a MediaPipe Task.

    options = AvatarOptions(pack="my_avatar/", backend="executorch", precision="int8")
    with Avatar.create_from_options(options) as avatar:
        frame = avatar.render(landmarks68)          # IMAGE mode
        frames = avatar.animate(num_frames=100)     # built-in motion on the enrolled face

Per frame only the landmarks change: they are rasterised (68 points -> coloured polylines)
and the pack's generator renders the face. Everything identity-dependent was folded into
the model when the pack was made, so nothing is recomputed per frame.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from talkinghead.errors import BackendError, InvalidInputError
from talkinghead.models.rasterize import rasterize_landmarks
from talkinghead.sdk.backends import check_num_threads, choose_backend, create_backend
from talkinghead.sdk.landmarks import validate_landmarks68
from talkinghead.sdk.motion import builtin_motion
from talkinghead.sdk.pack import AvatarPack, open_pack
from talkinghead.sdk.provenance import pack_label, pack_watermark
from talkinghead.sdk.retarget import relative_motion
from talkinghead.sdk.tensors import from_model_output, to_model_input
from talkinghead.sdk.tracker import RunningMode, check_running_mode, next_timestamp

FrameCallback = Callable[[np.ndarray, int], None]
log = logging.getLogger(__name__)


@dataclass
class AvatarOptions:
    """How to open and run an avatar pack.

    pack: a pack folder or a .zip of one.
    backend: "executorch", "litert", "onnxruntime", or "auto" (the first of those, in that
        order, that is installed and that the pack has a model for at ``precision``).
    precision: "fp32" or "int8"; the pack must hold a model of that precision.
    running_mode: IMAGE (``render``), VIDEO (``render_for_video``, increasing timestamps)
        or LIVE_STREAM (``render_async``, results go to ``result_callback``).
    verify: check every file's sha256 before any runtime reads it.
    watermark: mark every frame as synthetic with an invisible watermark (pack id + SDK
        version; docs/provenance.md). False logs a warning and is recorded in the label of
        files written from ``provenance_label``.
    num_threads: CPU threads for the runtime (None: its default, every core for ExecuTorch
        and LiteRT's XNNPACK). ExecuTorch's pool is process-wide: a size other than the
        current one is refused while another ExecuTorch avatar is open.
    """

    pack: str | os.PathLike[str]
    backend: str = "executorch"
    precision: str = "int8"
    running_mode: RunningMode = RunningMode.IMAGE
    result_callback: FrameCallback | None = None
    verify: bool = True
    watermark: bool = True
    num_threads: int | None = None


class Avatar:
    """A loaded avatar: landmarks in, frames out. Use as a context manager."""

    def __init__(self, options: AvatarOptions, pack: AvatarPack, backend) -> None:
        self._options = options
        self._pack = pack
        self._backend = backend
        self._last_ts: int | None = None
        m = pack.manifest
        self.resolution: int = m.resolution
        self.neutral_landmarks: np.ndarray = np.asarray(m.identity.neutral_landmarks, np.float32)
        self.name: str = m.name
        self.backend_name: str = backend.name  # the runtime chosen (resolves "auto")
        self.precision: str = options.precision
        self._watermark = pack_watermark(m) if options.watermark else None
        if self._watermark is None:
            log.warning(
                "watermark=False: frames of avatar %r will not be marked as synthetic; "
                "files written with its provenance_label record 'watermark': 'off'",
                m.name,
            )

    @classmethod
    def create_from_options(cls, options: AvatarOptions) -> Avatar:
        if not isinstance(options, AvatarOptions):
            raise InvalidInputError(f"options must be AvatarOptions, got {type(options).__name__}")
        if not isinstance(options.running_mode, RunningMode):
            raise InvalidInputError(
                f"running_mode must be a RunningMode, got {options.running_mode!r}"
            )
        if not isinstance(options.watermark, bool):
            raise InvalidInputError(f"watermark must be a bool, got {options.watermark!r}")
        if options.running_mode is RunningMode.LIVE_STREAM and options.result_callback is None:
            raise InvalidInputError("LIVE_STREAM mode needs a result_callback")
        check_num_threads(options.num_threads)
        pack = open_pack(options.pack, verify=options.verify)
        try:
            name = options.backend
            if name == "auto":
                name = choose_backend(pack.manifest.runtimes(options.precision))
            entry = pack.model(options.precision, name)
            backend = create_backend(name, num_threads=options.num_threads)
            if hasattr(backend, "load_bytes"):
                backend.load_bytes(pack.read_verified(entry.file), source=entry.file)
            else:
                backend.load(pack.path(entry.file), sha256=entry.sha256)
        except BaseException:
            pack.close()
            raise
        return cls(options, pack, backend)

    @classmethod
    def create_from_pack(cls, pack: str | os.PathLike[str], **kwargs) -> Avatar:
        return cls.create_from_options(AvatarOptions(pack=pack, **kwargs))

    # ------------------------------------------------------------------ rendering

    def _require_mode(self, mode: RunningMode) -> None:
        if self._backend is None:
            raise BackendError("the avatar is closed")
        check_running_mode(self._options.running_mode, mode, "this Avatar call")

    def _check_timestamp(self, timestamp_ms: int) -> None:
        self._last_ts = next_timestamp(timestamp_ms, self._last_ts)

    def _render(self, landmarks68: np.ndarray) -> np.ndarray:
        lm = validate_landmarks68(landmarks68)
        x = to_model_input(rasterize_landmarks(lm, self.resolution))[None]
        frame = from_model_output(self._backend.run(x))[0]
        return frame if self._watermark is None else self._watermark.embed(frame)

    def render(self, landmarks68: np.ndarray) -> np.ndarray:
        """IMAGE mode. landmarks68: (68, 2) float32, crop pixels -> (S, S, 3) uint8 RGB."""
        self._require_mode(RunningMode.IMAGE)
        return self._render(landmarks68)

    def render_for_video(self, landmarks68: np.ndarray, timestamp_ms: int) -> np.ndarray:
        """VIDEO mode: like ``render``, with strictly increasing timestamps."""
        self._require_mode(RunningMode.VIDEO)
        self._check_timestamp(timestamp_ms)
        return self._render(landmarks68)

    def render_async(self, landmarks68: np.ndarray, timestamp_ms: int) -> None:
        """LIVE_STREAM mode: the frame goes to ``result_callback(frame, timestamp_ms)``."""
        self._require_mode(RunningMode.LIVE_STREAM)
        self._check_timestamp(timestamp_ms)
        self._options.result_callback(self._render(landmarks68), int(timestamp_ms))

    def render_sequence(self, landmarks: np.ndarray, progress: bool = False) -> np.ndarray:
        """(T, 68, 2) crop pixels -> (T, S, S, 3) uint8. Works in any running mode."""
        if self._backend is None:
            raise BackendError("the avatar is closed")
        lms = np.asarray(landmarks, dtype=np.float32)
        if lms.ndim != 3 or lms.shape[1:] != (68, 2) or len(lms) == 0:
            raise InvalidInputError(f"landmarks must be (T, 68, 2) with T >= 1, got {lms.shape}")
        return np.stack([self._render(lm) for lm in tqdm(lms, desc="render", disable=not progress)])

    def animate(
        self, num_frames: int = 100, fps: float = 25, seed: int = 0, progress: bool = False
    ) -> np.ndarray:
        """Built-in motion (talking, blinks, smiles, head turns) on the enrolled face."""
        if not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
            raise InvalidInputError(f"num_frames must be a positive int, got {num_frames!r}")
        lms = builtin_motion(self.neutral_landmarks, int(num_frames), fps=fps, seed=seed)
        return self.render_sequence(lms, progress=progress)

    def drive(self, driver_landmarks: np.ndarray, progress: bool = False) -> np.ndarray:
        """Retarget a driver's (T, 68, 2) landmarks (relative motion) and render them."""
        return self.render_sequence(
            relative_motion(driver_landmarks, self.neutral_landmarks), progress=progress
        )

    # ------------------------------------------------------------------ lifetime

    @property
    def pack(self) -> AvatarPack:
        return self._pack

    @property
    def provenance_label(self) -> dict[str, object]:
        """The label for files of this avatar's frames: ``write_mp4(..., label=...)``."""
        return pack_label(self._pack.manifest, watermark=self._watermark is not None)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None
        if self._pack is not None:
            self._pack.close()

    def __enter__(self) -> Avatar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def track_video(
    path: str | os.PathLike[str], max_frames: int | None = None, progress: bool = False
) -> tuple[np.ndarray, float]:
    """Track a driving video in VIDEO mode: ((T, 68, 2) px landmarks, fps).

    One face is followed by track id, One Euro smoothed, and held where it is lost
    (frames before the first face take the first one); a video with no face at all raises
    NoFaceError.
    """
    from talkinghead.errors import NoFaceError
    from talkinghead.sdk.sources import VideoFileSource
    from talkinghead.sdk.tracker import FaceTrackerOptions
    from talkinghead.sdk.tracks import track_frames

    with VideoFileSource(path, max_frames=max_frames) as source:
        fps = source.fps
        results = track_frames(
            source, FaceTrackerOptions(on_face_lost="hold"), progress=progress, total=max_frames
        )
    out = [None if face is None else face.landmarks68 for _, face in results]
    found = [x for x in out if x is not None]
    if not found:
        raise NoFaceError(f"no face found in any frame of {path}")
    last = found[0]
    filled = []
    for x in out:
        last = x if x is not None else last
        filled.append(last)
    return np.stack(filled).astype(np.float32), fps
