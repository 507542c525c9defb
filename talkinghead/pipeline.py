"""The end-to-end pipeline: photo -> landmarks -> teacher -> student -> ExecuTorch -> avatar video.

This is the top layer: it may import every stage. The CLI's commands are thin wrappers
over these functions.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from talkinghead.errors import InvalidInputError
from talkinghead.sdk.files import check_output_file, check_output_folder, output_file

if TYPE_CHECKING:
    from talkinghead.sdk.credentials import C2paCredentials

log = logging.getLogger(__name__)

DEFAULT_TEACHER = "teacher-xs.safetensors"
DEFAULT_STUDENT = "astronaut.student.safetensors"
CALIBRATION_FRAMES = 32
PARITY_FRAMES = 4


def _save_png(image: np.ndarray, path: Path) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


def enrol_photo(
    teacher, image: np.ndarray, shots: int = 8, finetune_steps: int = 100, progress: bool = True
) -> tuple:
    """FT-enrol one photo with a teacher: (enrolled generator, crop, neutral, figures).

    image: (H, W, 3) uint8 RGB. crop: (S, S, 3) uint8 at the teacher's resolution; neutral:
    (68, 2) float32 crop px. The K shots are the photo plus pseudo-video frames of it (exact
    landmarks). figures: track_s (track and crop), shots_s (pseudo-video shots) and
    finetune_s (fine-tuning).
    """
    import torch

    from talkinghead.distill.distill import landmark_images
    from talkinghead.sdk.photos import track_and_crop
    from talkinghead.sdk.tensors import to_model_input
    from talkinghead.train.finetune import FinetuneConfig, enrol_fine_tuned
    from talkinghead.train.pseudo_video import make_pseudo_video

    size = teacher.cfg.resolution
    t0 = time.perf_counter()
    crop, neutral = track_and_crop(image, size)
    figures = {"track_s": round(time.perf_counter() - t0, 2)}
    t0 = time.perf_counter()
    frames, lms = make_pseudo_video(crop, neutral, max(shots - 1, 1), seed=7)
    shot_frames = torch.from_numpy(to_model_input(np.concatenate([crop[None], frames])))
    shot_lms = landmark_images(np.concatenate([neutral[None], lms]), size)
    figures["shots_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    enrolled = enrol_fine_tuned(
        teacher, shot_frames, shot_lms, FinetuneConfig(steps=finetune_steps), progress=progress
    )
    figures["finetune_s"] = round(time.perf_counter() - t0, 2)
    return enrolled, crop, neutral, figures


def distill_for_photo(
    teacher_path: str | os.PathLike[str],
    photo: str | os.PathLike[str],
    out: Path,
    student: str = "student-s",
    steps: int = 1500,
    finetune_steps: int = 100,
    shots: int = 8,
    sequences: int = 24,
    progress: bool = True,
    teacher_variant: str | None = None,
    tracked_videos: int = 0,
    qat_steps: int = 0,
) -> tuple[Path, dict]:
    """Enrol ``photo`` with the teacher (FT mode) and distil a student for it.

    Writes the student checkpoint to ``out`` and the enrolled crop beside it as PNG
    (``<out stem>.png``). Returns the checkpoint path and figures (timings, PSNR).
    teacher_variant: refuse (CheckpointError) a teacher of any other variant.
    tracked_videos: pseudo-videos of the photo tracked back with the MediaPipe tracker; half
    drive training, half calibrate int8. qat_steps: with tracked videos, measure int8 (PTQ)
    and run QAT when it stays under 35 dB; the int8 .pte goes beside ``out``.
    """
    from talkinghead.distill.distill import DistillConfig, distill_student
    from talkinghead.models.checkpoint import load_checkpoint, save_checkpoint
    from talkinghead.sdk.photos import load_photo

    teacher = load_checkpoint(teacher_path, "teacher", expect_variant=teacher_variant)
    size = teacher.cfg.resolution
    name, image = load_photo(photo)
    enrolled, crop, neutral, figures = enrol_photo(
        teacher, image, shots, finetune_steps, progress=progress
    )
    tracked = _tracked_motion(crop, neutral, tracked_videos, progress) if tracked_videos else {}

    t0 = time.perf_counter()
    model, dfig = distill_student(
        enrolled,
        neutral,
        size,
        DistillConfig(student=student, steps=steps, sequences=sequences),
        progress=progress,
        extra_landmarks=tracked.get("train"),
    )
    figures["distill_s"] = round(time.perf_counter() - t0, 2)
    figures.update(dfig)
    out = Path(out)
    if "calibration" in tracked:
        from talkinghead.distill.quant import int8_for_student
        from talkinghead.export.executorch import export_executorch

        int8, qfig = int8_for_student(
            model, tracked["calibration"], enrolled, qat_steps=qat_steps, progress=progress
        )
        figures.update(qfig)
        pte = out.with_name(f"{out.stem}_xnnpack_q8.pte")
        figures["int8_pte"] = str(export_executorch(int8, model.get_example_inputs(), pte))
    save_checkpoint(
        out,
        model,
        "student",
        identity=name,
        neutral_landmarks=neutral.tolist(),
        teacher=teacher.cfg.name,
        finetune_steps=finetune_steps,
        distill_steps=steps,
        **dfig,
    )
    _save_png(crop, out.with_suffix(".png"))
    return out, figures


def _tracked_motion(crop: np.ndarray, neutral: np.ndarray, videos: int, progress: bool) -> dict:
    """Tracked pseudo-videos of the crop: {"train": (M, 68, 2) px, "calibration": images}."""
    from talkinghead.distill.distill import landmark_images
    from talkinghead.distill.motion import pseudo_videos, track_sequences, tracked_landmarks

    seqs = track_sequences(pseudo_videos(crop, neutral, videos, 32, seed=50), progress=progress)
    half = max(len(seqs) // 2, 1)
    calib = tracked_landmarks(neutral, seqs[half:] or seqs)
    return {
        "train": tracked_landmarks(neutral, seqs[:half]),
        "calibration": landmark_images(calib, crop.shape[0]),
    }


def export_pack(
    photo: str | os.PathLike[str] | np.ndarray,
    out_dir: Path,
    precisions: list[str] | tuple[str, ...] = ("fp32", "int8"),
    progress: bool = True,
    runtimes: list[str] | tuple[str, ...] | None = None,
    refiner: str | os.PathLike[str] | None = None,
    face_index: int | None = None,
    finetune_steps: int = 0,
    force: bool = True,
    signing_key: bytes | None = None,
) -> Path:
    """Enrol a photo and write its warp-and-refine avatar pack (``talkinghead.packs``).

    runtimes: any of "executorch" (XNNPACK .pte + BundledProgram), "litert" (NHWC .tflite),
        "onnxruntime" (.onnx and its .ort twin). Every model is run on this face's parity
        inputs and must meet the manifest's thresholds (ParityError otherwise).
    force: accept a non-empty ``out_dir`` and replace the pack's own files there; False
        refuses it up front. signing_key: a 32-byte Ed25519 seed: sign the manifest.
    """
    from talkinghead.export.registry import RUNTIMES
    from talkinghead.packs import export_avatar_pack

    pack, _ = export_avatar_pack(
        photo, out_dir, refiner=refiner, runtimes=tuple(runtimes or RUNTIMES), precisions=tuple(precisions),
        face_index=face_index, finetune_steps=finetune_steps, force=force,
        signing_key=signing_key, progress=progress,
    )  # fmt: skip
    return pack


def render_pack(
    pack: str | os.PathLike[str],
    out_dir: Path,
    driver: str | os.PathLike[str] | None = None,
    frames: int = 100,
    precision: str | None = None,
    fps: float = 25,
    progress: bool = True,
    watermark: bool = True,
    backend: str = "executorch",
    num_threads: int | None = None,
    force: bool = True,
    credentials: C2paCredentials | None = None,
    own_pack: bool = False,
) -> dict:
    """Render a pack from built-in motion or a driving video; write MP4 + WebP.

    ``own_pack``: the pack was written by this process a moment ago (the demo), so its
    models are not first loaded in a child process; hashes are still checked.

    ``precision`` None runs the precision the pack's tuning found fastest for the runtime
    (int8 when it records none).

    ``credentials`` signs both files with a C2PA manifest (``talkinghead.sdk.credentials``).

    ``out_dir/avatar.mp4`` and ``.webp`` are checked before rendering (an existing one is
    refused unless ``force``) and each is written beside its target, then renamed.

    ``backend`` is a runtime name or "auto" (``AvatarOptions.backend``), or "native": the C
    library of ``bindings/`` (built with CMake on first use), driven as a phone app drives
    it, MediaPipe meshes through ``th_drive`` (smoothed whole beforehand, as a recorded
    video allows). Frames are watermarked and both files
    labelled as AI-generated; ``watermark=False`` is the documented opt-out (warned, and
    recorded in the labels)."""
    from talkinghead.sdk.media import write_mp4, write_webp

    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise InvalidInputError(f"num_frames must be a positive int, got {frames!r}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InvalidInputError(f"--out {out_dir} is not a folder")
    outputs = [check_output_file(out_dir / f"avatar.{ext}", force) for ext in ("mp4", "webp")]
    if driver is not None:
        check_readable_input(driver, "driver")
        _check_video(driver)  # before any model loads
    if backend == "native":
        if num_threads is not None:
            raise InvalidInputError(
                "num_threads is not supported with the native backend: the C library runs "
                "on ExecuTorch's default thread pool"
            )
        video, fps, label, result = _render_native(
            pack, driver, frames, precision, fps, progress, watermark
        )
    else:
        video, fps, label, result = _render_python(
            pack, driver, frames, precision, fps, progress, watermark, backend, num_threads,
            own_pack,
        )  # fmt: skip
    for path, write in zip(outputs, (write_mp4, write_webp), strict=True):
        with output_file(path, force) as tmp:
            write(video, tmp, fps=fps, label=label, credentials=credentials)
        result[path.suffix[1:]] = str(path)
    if credentials is not None:
        result["c2pa"] = "signed"
    result["watermark"] = label["watermark"]
    result["frames"] = int(len(video))
    return result


def _render_python(
    pack, driver, frames, precision, fps, progress, watermark, backend, threads, own_pack=False
):
    """render_pack through the Python SDK's Avatar: (frames, fps, label, timings)."""
    from talkinghead.sdk.avatar import Avatar, AvatarOptions
    from talkinghead.sdk.mesh_motion import builtin_mesh_motion, retarget_meshes
    from talkinghead.sdk.video_tracks import track_video

    result: dict = {}
    t0 = time.perf_counter()
    opts = AvatarOptions(
        pack=pack,
        backend=backend,
        precision=precision,
        watermark=watermark,
        num_threads=threads,
        isolate_models=not own_pack,
    )
    with Avatar.create_from_options(opts) as avatar:
        label = avatar.provenance_label
        result["backend"] = avatar.backend_name
        result["precision"] = avatar.precision
        result["num_threads"] = avatar.num_threads
        result["load_s"] = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()
        if driver is not None:
            track = track_video(driver, max_frames=frames, progress=progress)
            fps = track.fps
            result["track_s"] = round(time.perf_counter() - t0, 2)
            targets = retarget_meshes(track.meshes, avatar.neutral_mesh)
        else:
            targets = builtin_mesh_motion(avatar.neutral_mesh, frames, fps=fps)
        t0 = time.perf_counter()
        first = avatar.render_sequence(targets[:1])
        result["first_frame_since_process_start_s"] = round(process_age_s(), 2)
        rest = (
            avatar.render_sequence(targets[1:], progress=progress)
            if len(targets) > 1
            else first[:0]
        )
        video = np.concatenate([first, rest])
        secs = time.perf_counter() - t0
        result["render_ms_per_frame"] = round(1000 * secs / len(video), 2)
    return video, fps, label, result


def _render_native(pack, driver, frames, precision, fps, progress, watermark):
    """render_pack through the C library (bindings/), as a phone app runs it: the pack's
    every file hash-checked by th_verify_files, the driver's MediaPipe meshes (smoothed
    without lag, as a recorded video allows) through th_drive (retargeting onto the
    avatar's mesh, warp and refine), or the built-in mesh motion through th_render."""
    from tqdm.auto import tqdm

    from talkinghead.bindings.native import NativeAvatar
    from talkinghead.sdk.mesh_motion import builtin_mesh_motion
    from talkinghead.sdk.pack import open_pack
    from talkinghead.sdk.provenance import pack_label
    from talkinghead.sdk.tuning import tuned_config
    from talkinghead.sdk.video_tracks import track_video

    result: dict = {"backend": "native"}
    t0 = time.perf_counter()
    with open_pack(pack, verify=False) as opened:  # a .zip is extracted; C checks the hashes
        if precision is None:
            tuned = tuned_config(opened.manifest.tuning, "executorch")
            precision = tuned.precision if tuned else "int8"
        result["precision"] = precision
        with NativeAvatar(opened.root, precision) as avatar:
            result["verified_files"] = avatar.verify_files()
            avatar.set_watermark(watermark)
            if not watermark:
                log.warning(
                    "watermark off: native frames of avatar %r will not be marked as "
                    "synthetic; the files' labels record 'watermark': 'off'",
                    opened.manifest.name,
                )
            label = pack_label(opened.manifest, watermark=watermark)
            result["load_s"] = round(time.perf_counter() - t0, 3)
            t0 = time.perf_counter()
            if driver is not None:
                # A recorded driver is smoothed whole, forward and backward (no lag), as the
                # Python path smooths it; th_drive then only retargets, warps and refines.
                # (A live app leaves th_drive's own causal smoothing on.)
                track = track_video(driver, max_frames=frames, progress=progress)
                avatar.set_smoothing(None)
                fps = track.fps
                result["track_s"] = round(time.perf_counter() - t0, 2)
                t0 = time.perf_counter()
                first, meshes = track.first_found, track.normalised()
                driven = [
                    avatar.drive(meshes[i], track.size, int(track.timestamps_ms[i]))[0]
                    for i in tqdm(range(first, len(meshes)), desc="render", disable=not progress)
                ]
                video = np.stack([driven[0]] * first + driven)
            else:
                targets = builtin_mesh_motion(avatar.neutral_mesh, frames, fps=fps)
                video = np.stack(
                    [avatar.render(m) for m in tqdm(targets, desc="render", disable=not progress)]
                )
    result["render_ms_per_frame"] = round(1000 * (time.perf_counter() - t0) / len(video), 2)
    return video, fps, label, result


def process_age_s() -> float:
    """Seconds since this process started (Linux: /proc; elsewhere since import)."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        start = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - start
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _IMPORTED


_IMPORTED = time.perf_counter()


def check_readable_input(path: str | os.PathLike[str], what: str) -> None:
    """ImageReadError unless ``path`` is a regular file (not a FIFO, device or folder)."""
    from talkinghead.errors import ImageReadError
    from talkinghead.sdk.files import check_regular

    check_regular(path, 1 << 40, ImageReadError)


def _check_video(path: str | os.PathLike[str]) -> None:
    """ImageReadError unless ``path`` decodes to at least one video frame."""
    from talkinghead.sdk.media import read_video

    frames = read_video(path, max_frames=1)
    next(frames)
    frames.close()


def _check_driver_has_a_face(
    path: str | os.PathLike[str], frames: int = 60, every: int = 6
) -> None:
    """NoFaceError unless a face is found in one of the driver's first ``frames`` frames
    (every ``every``-th is looked at): a video that is not of a face is refused before
    enrolment, not after it."""
    from talkinghead.errors import NoFaceError
    from talkinghead.sdk.media import read_video
    from talkinghead.sdk.tracker import FaceTracker, FaceTrackerOptions

    with FaceTracker.create_from_options(FaceTrackerOptions()) as tracker:
        video = read_video(path, max_frames=frames)
        try:
            for i, (frame, _) in enumerate(video):
                if i % every == 0 and tracker.detect(frame):
                    return
        finally:
            video.close()
    raise NoFaceError(f"no face found in the first {frames} frames of the driver {path}")


def track_photo_preview(image: str | os.PathLike[str], out: Path, force: bool = True) -> str:
    """Track a photo and save it with the 68 mapped points drawn over it."""
    from PIL import Image, ImageDraw

    from talkinghead.sdk.photos import load_photo
    from talkinghead.sdk.tracker import track_image

    check_output_file(out, force)
    name, img = load_photo(image)
    face = track_image(img)
    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    for x, y in face.landmarks68:
        draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(0, 255, 0))
    with output_file(out, force) as tmp:
        pil.save(tmp, format="PNG")
    return f"{name}: 478 landmarks, 68 mapped, {len(face.blendshapes)} blendshapes -> {out}"


@dataclass
class DemoOptions:
    photo: str | None = None
    driver: str | None = None
    out_dir: Path = Path("out/demo")
    frames: int = 100
    precision: str | None = None  # None: the pack's tuned precision
    finetune_steps: int = 0
    face_index: int | None = None
    force: bool = False


def run_demo(opts: DemoOptions) -> dict:
    """The whole pipeline with a built-in default: enrol a photo, pack it, render.

    With no photo, the built-in astronaut photo is enrolled. Enrolment is tracking,
    cropping and writing the pack (seconds): the shipped universal refiner serves every
    face, its ExecuTorch models prebuilt. ``finetune_steps`` opts into fine-tuning the
    refiner on this face first (minutes).
    """
    from talkinghead.packs import export_avatar_pack

    out = Path(opts.out_dir)
    timings: dict = {}
    if opts.frames < 1:
        raise InvalidInputError(f"frames must be positive, got {opts.frames}")
    # Every input and output is checked before any work.
    for name, value in (("photo", opts.photo), ("driver", opts.driver)):
        if value is not None and (Path(value).suffix or os.sep in str(value)):
            check_readable_input(value, name)  # (bare names are built-in photos)
    check_output_folder(out / "pack", opts.force)
    for ext in ("mp4", "webp"):
        check_output_file(out / f"avatar.{ext}", opts.force)
    if opts.driver is not None:
        _check_video(opts.driver)
        _check_driver_has_a_face(opts.driver)
    t0 = time.perf_counter()
    pack, figures = export_avatar_pack(
        opts.photo or "astronaut", out / "pack", runtimes=("executorch",),
        face_index=opts.face_index, finetune_steps=opts.finetune_steps, force=opts.force,
    )  # fmt: skip
    timings["enrol_and_pack_s"] = round(time.perf_counter() - t0, 1)
    timings.update({f"enrol.{k}": v for k, v in figures.items()})
    result = render_pack(
        pack, out, driver=opts.driver, frames=opts.frames, precision=opts.precision,
        force=opts.force, own_pack=True,
    )  # fmt: skip
    result.update(timings)
    result["pack"] = str(pack)
    result["pack_files_bytes"] = {
        p.name: p.stat().st_size for p in sorted(Path(pack).iterdir()) if p.is_file()
    }
    return result
