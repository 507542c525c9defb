"""The avatar runtime, in the shape of a MediaPipe Task.

    options = AvatarOptions(pack="my_avatar/", backend="executorch", precision="int8")
    with Avatar.create_from_options(options) as avatar:
        frame = avatar.render(mesh)                 # IMAGE mode: a (478, 3) target mesh
        frames = avatar.animate(num_frames=100)     # built-in motion on the enrolled face
        frames = avatar.drive(driver_meshes)        # a driver's tracked meshes, retargeted

Warp and refine: per frame, the enrolled photo is warped to the target mesh
(``sdk/warp.py``, plain geometry outside the model), the target's 68 landmarks are
rasterised, and the pack's universal refiner turns warp + landmarks + validity into the
finished frame. Everything identity-dependent is the pack's rig (photo, mesh, anchors,
triangles), read once at open; no model is trained or folded per face.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from talkinghead.errors import BackendError, InvalidInputError
from talkinghead.sdk.backends import check_num_threads, choose_backend, create_backend
from talkinghead.sdk.landmarks import NUM_MESH_POINTS
from talkinghead.sdk.mesh_motion import builtin_mesh_motion, retarget_mesh, retarget_meshes
from talkinghead.sdk.model_check import load_pack_model
from talkinghead.sdk.pack import AvatarPack, open_pack
from talkinghead.sdk.provenance import pack_label, pack_watermark
from talkinghead.sdk.rasterize import rasterize_landmarks
from talkinghead.sdk.tensors import from_model_output
from talkinghead.sdk.tracking_types import RunningMode, check_running_mode, next_timestamp
from talkinghead.sdk.tuning import tuned_config
from talkinghead.sdk.warp import check_mesh, landmarks68, refiner_input, warp_to

FrameCallback = Callable[[np.ndarray, int], None]
log = logging.getLogger(__name__)


@dataclass
class AvatarOptions:
    """How to open and run an avatar pack.

    pack: a pack folder or a .zip of one.
    backend: "executorch", "litert", "onnxruntime", or "auto" (the first of those, in that
        order, that is installed and that the pack has a model for at ``precision``).
    precision: "fp32" or "int8" (the pack must hold a model of that precision), or None:
        the precision that ran fastest for this runtime on the machine that built the pack
        (the manifest's ``tuning``, see ``sdk.tuning``), int8 when the pack records none.
    running_mode: IMAGE (``render``), VIDEO (``render_for_video``, increasing timestamps)
        or LIVE_STREAM (``render_async``, results go to ``result_callback``).
    verify: check every file's sha256 before any runtime reads it.
    watermark: mark every frame as synthetic with an invisible watermark (pack id + SDK
        version; docs/provenance.md). False logs a warning and is recorded in the label of
        files written from ``provenance_label``.
    num_threads: CPU threads for the runtime. None: the tuned thread count when the pack
        records one for this runtime (and, for ExecuTorch, when its process-wide pool is not
        held at another size by an open avatar), else the runtime's default (every core
        for ExecuTorch and LiteRT's XNNPACK). ExecuTorch's pool is process-wide: an explicit
        size other than the current one is refused while another ExecuTorch avatar is open.
    trusted_keys: Ed25519 public keys (bytes, hex, or ``.pub`` files; ``sdk.signing``).
        When given, a pack not signed by one of them is refused (SignatureError).

    isolate_models: with ``verify``, load each model in a child process first (below); turn
        it off only for a pack this process has just written itself.

    With ``verify``, each model is also loaded and run once in a child process before this
    process parses it, and its real input and output shapes must be the manifest's
    (``sdk.model_check``): a hostile program that aborts or crashes its runtime takes only
    the child down.

    Threads: one Avatar may be shared by threads. Its calls are serialised by a lock (the
    runtimes' interpreters are not safe under concurrent calls); for parallel rendering,
    open one Avatar per thread.
    """

    pack: str | os.PathLike[str]
    backend: str = "executorch"
    precision: str | None = None
    running_mode: RunningMode = RunningMode.IMAGE
    result_callback: FrameCallback | None = None
    verify: bool = True
    isolate_models: bool = True
    watermark: bool = True
    num_threads: int | None = None
    trusted_keys: Sequence[bytes | str | os.PathLike[str]] | None = None


DEFAULT_PRECISION = "int8"  # when neither the options nor the pack's tuning name one


def _usable_threads(runtime: str, tuned: int) -> int | None:
    """``tuned``, unless ExecuTorch's process-wide pool is held at another size by an open
    program: then None (keep the pool as it is) rather than refuse to open."""
    if runtime != "executorch":
        return tuned
    from talkinghead.sdk.backends import executorch_pool_busy

    if executorch_pool_busy(tuned):
        log.info(
            "ExecuTorch's thread pool is held by an open program; not resizing it to %d", tuned
        )
        return None
    return tuned


class Avatar:
    """A loaded avatar: landmarks in, frames out. Use as a context manager."""

    def __init__(
        self,
        options: AvatarOptions,
        pack: AvatarPack,
        backend,
        precision: str = "int8",
        num_threads: int | None = None,
    ) -> None:
        self._options = options
        self._pack = pack
        self._backend = backend
        self._last_ts: int | None = None
        self._lock = threading.RLock()  # one call at a time into the runtime (see AvatarOptions)
        m = pack.manifest
        self.resolution: int = m.resolution
        self.neutral_landmarks: np.ndarray = np.asarray(m.identity.neutral_landmarks, np.float32)
        self._rig = pack.load_rig()
        self.neutral_mesh: np.ndarray = self._rig.mesh.copy()  # (478, 3) crop px
        self.name: str = m.name
        self.backend_name: str = backend.name  # the runtime chosen (resolves "auto")
        self.precision: str = precision
        self.num_threads: int | None = num_threads  # None: the runtime's default
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
        if not isinstance(options.verify, bool):
            raise InvalidInputError(f"verify must be a bool, got {options.verify!r}")
        if not isinstance(options.pack, (str, os.PathLike)):
            raise InvalidInputError(
                f"pack must be a folder or .zip path, got {type(options.pack).__name__}"
            )
        if not isinstance(options.backend, str) or not (
            options.precision is None or isinstance(options.precision, str)
        ):
            raise InvalidInputError("backend must be a string and precision a string or None")
        if options.result_callback is not None and not callable(options.result_callback):
            raise InvalidInputError(
                f"result_callback must be callable, got {type(options.result_callback).__name__}"
            )
        if options.running_mode is RunningMode.LIVE_STREAM and options.result_callback is None:
            raise InvalidInputError("LIVE_STREAM mode needs a result_callback")
        check_num_threads(options.num_threads)
        pack = open_pack(options.pack, verify=options.verify, trusted_keys=options.trusted_keys)
        try:
            name = options.backend
            if name == "auto":
                name = choose_backend(pack.manifest.runtimes(options.precision))
            tuned = tuned_config(pack.manifest.tuning, name)
            precision = options.precision or (tuned.precision if tuned else DEFAULT_PRECISION)
            threads = options.num_threads
            if threads is None and tuned is not None and tuned.precision == precision:
                threads = _usable_threads(name, tuned.num_threads)
            entry = pack.model(precision, name)
            backend = create_backend(name, num_threads=threads)
            if hasattr(backend, "load_bytes"):
                load_pack_model(
                    pack, entry, backend, isolate=options.verify and options.isolate_models
                )
            else:
                backend.load(pack.path(entry.file), sha256=entry.sha256)
        except BaseException:
            pack.close()
            raise
        return cls(options, pack, backend, precision, threads)

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

    def _render(self, mesh: np.ndarray) -> np.ndarray:
        """Warp the photo to ``mesh``, refine, watermark: ``(S, S, 3) uint8``."""
        warped = warp_to(self._rig, mesh)
        lm_img = rasterize_landmarks(landmarks68(mesh), self.resolution)
        frame = from_model_output(self._backend.run(refiner_input(warped, lm_img)))[0]
        return frame if self._watermark is None else self._watermark.embed(frame)

    def render(self, mesh: np.ndarray) -> np.ndarray:
        """IMAGE mode. mesh: (478, 3) float, the target face in crop px -> (S, S, 3) uint8 RGB."""
        with self._lock:
            self._require_mode(RunningMode.IMAGE)
            return self._render(check_mesh(mesh))

    def render_for_video(self, mesh: np.ndarray, timestamp_ms: int) -> np.ndarray:
        """VIDEO mode: like ``render``, with strictly increasing timestamps."""
        with self._lock:
            self._require_mode(RunningMode.VIDEO)
            m = check_mesh(mesh)  # a rejected frame keeps its timestamp unused
            self._check_timestamp(timestamp_ms)
            return self._render(m)

    def render_async(self, mesh: np.ndarray, timestamp_ms: int) -> None:
        """LIVE_STREAM mode: the frame goes to ``result_callback(frame, timestamp_ms)``."""
        with self._lock:
            self._require_mode(RunningMode.LIVE_STREAM)
            m = check_mesh(mesh)  # a rejected frame keeps its timestamp unused
            self._check_timestamp(timestamp_ms)
            frame = self._render(m)
        callback = self._options.result_callback
        assert callback is not None  # AvatarOptions requires one in LIVE_STREAM mode
        callback(frame, int(timestamp_ms))

    def render_sequence(self, meshes: np.ndarray, progress: bool = False) -> np.ndarray:
        """(T, 478, 3) target meshes, crop px -> (T, S, S, 3) uint8. Works in any running mode."""
        if self._backend is None:
            raise BackendError("the avatar is closed")
        arr = (
            np.asarray(meshes, dtype=np.float64) if isinstance(meshes, np.ndarray | list) else None
        )
        if arr is None or arr.ndim != 3 or arr.shape[1:] != (NUM_MESH_POINTS, 3) or len(arr) == 0:
            shape = getattr(meshes, "shape", type(meshes).__name__)
            raise InvalidInputError(
                f"meshes must be (T, {NUM_MESH_POINTS}, 3) with T >= 1, got {shape}"
            )
        checked = [check_mesh(m, f"meshes[{t}]") for t, m in enumerate(arr)]
        with self._lock:
            if self._backend is None:  # closed by another thread meanwhile
                raise BackendError("the avatar is closed")
            return np.stack(
                [self._render(m) for m in tqdm(checked, desc="render", disable=not progress)]
            )

    def animate(
        self, num_frames: int = 100, fps: float = 25, seed: int = 0, progress: bool = False
    ) -> np.ndarray:
        """Built-in motion (talking, blinks, smiles, head turns) on the enrolled face."""
        if not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
            raise InvalidInputError(f"num_frames must be a positive int, got {num_frames!r}")
        meshes = builtin_mesh_motion(self.neutral_mesh, int(num_frames), fps=fps, seed=seed)
        return self.render_sequence(meshes, progress=progress)

    def drive(self, driver_meshes: np.ndarray, progress: bool = False) -> np.ndarray:
        """Retarget a driver's tracked (T, 478, 3) meshes (its own px, motion relative to its
        first frame) onto the avatar and render them."""
        return self.render_sequence(
            retarget_meshes(driver_meshes, self.neutral_mesh), progress=progress
        )

    def target_mesh(self, driver_mesh: np.ndarray, reference_mesh: np.ndarray) -> np.ndarray:
        """One driver frame's target mesh for this avatar (see ``retarget_mesh``)."""
        return retarget_mesh(driver_mesh, reference_mesh, self.neutral_mesh)

    # ------------------------------------------------------------------ lifetime

    @property
    def pack(self) -> AvatarPack:
        return self._pack

    @property
    def provenance_label(self) -> dict[str, object]:
        """The label for files of this avatar's frames: ``write_mp4(..., label=...)``."""
        return pack_label(self._pack.manifest, watermark=self._watermark is not None)

    def close(self) -> None:
        with self._lock:  # never under a render on another thread
            if self._backend is not None:
                self._backend.close()
                self._backend = None
            if self._pack is not None:
                self._pack.close()

    def __enter__(self) -> Avatar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
