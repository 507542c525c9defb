"""The end-to-end pipeline: photo -> landmarks -> teacher -> student -> ExecuTorch -> avatar video.

This is the top layer: it may import every stage. The CLI's commands are thin wrappers
over these functions.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from talkinghead.errors import InvalidInputError

log = logging.getLogger(__name__)

WEIGHTS = resources.files("talkinghead") / "weights"
DEFAULT_TEACHER = "teacher-xs.safetensors"
DEFAULT_STUDENT = "astronaut.student.safetensors"
CALIBRATION_FRAMES = 32
PARITY_FRAMES = 4


def weights_path(name: str) -> Path:
    """A weights file shipped with the package (see talkinghead/weights/README.md)."""
    return Path(str(WEIGHTS / name))


def _save_png(image: np.ndarray, path: Path) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


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
) -> tuple[Path, dict]:
    """Enrol ``photo`` with the teacher (FT mode) and distil a student for it.

    Writes the student checkpoint to ``out`` and the enrolled crop beside it as PNG
    (``<out stem>.png``). Returns the checkpoint path and figures (timings, PSNR).
    """
    import torch

    from talkinghead.distill.distill import DistillConfig, distill_student, landmark_images
    from talkinghead.models.checkpoint import load_checkpoint, save_checkpoint
    from talkinghead.sdk.tensors import to_model_input
    from talkinghead.train.finetune import FinetuneConfig, enrol_fine_tuned
    from talkinghead.train.make_data import load_photo, track_and_crop
    from talkinghead.train.pseudo_video import make_pseudo_video

    figures: dict = {}
    t0 = time.perf_counter()
    teacher = load_checkpoint(teacher_path, "teacher")
    size = teacher.cfg.resolution
    name, image = load_photo(photo)
    crop, neutral = track_and_crop(image, size)
    figures["track_s"] = round(time.perf_counter() - t0, 2)

    # K shots: the photo itself plus pseudo-video frames of it (exact landmarks).
    t0 = time.perf_counter()
    frames, lms = make_pseudo_video(crop, neutral, max(shots - 1, 1), seed=7)
    shot_frames = torch.from_numpy(to_model_input(np.concatenate([crop[None], frames])))
    shot_lms = landmark_images(np.concatenate([neutral[None], lms]), size)
    enrolled = enrol_fine_tuned(
        teacher, shot_frames, shot_lms, FinetuneConfig(steps=finetune_steps), progress=progress
    )
    figures["finetune_s"] = round(time.perf_counter() - t0, 2)

    t0 = time.perf_counter()
    model, dfig = distill_student(
        enrolled,
        neutral,
        size,
        DistillConfig(student=student, steps=steps, sequences=sequences),
        progress=progress,
    )
    figures["distill_s"] = round(time.perf_counter() - t0, 2)
    figures.update(dfig)
    out = Path(out)
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


def export_pack(
    student_path: str | os.PathLike[str],
    out_dir: Path,
    precisions: list[str] | tuple[str, ...] = ("fp32", "int8"),
    progress: bool = True,
) -> Path:
    """Student checkpoint -> avatar pack with ExecuTorch XNNPACK models and parity vectors."""
    import tempfile

    import torch

    from talkinghead.distill.distill import landmark_images
    from talkinghead.export.executorch import export_executorch, pte_filename
    from talkinghead.models.checkpoint import load_checkpoint
    from talkinghead.sdk.backends import ExecuTorchBackend
    from talkinghead.sdk.motion import builtin_motion
    from talkinghead.sdk.pack import ModelSource, write_pack

    if not precisions or any(p not in ("fp32", "int8") for p in precisions):
        raise InvalidInputError(
            f"precisions must be a non-empty subset of fp32, int8: {precisions}"
        )
    student = load_checkpoint(student_path, "student").eval()
    notes = student.notes
    if "neutral_landmarks" not in notes:
        raise InvalidInputError(
            f"{student_path} carries no neutral landmarks: not an enrolled student"
        )
    neutral = np.asarray(notes["neutral_landmarks"], np.float32)
    size = student.cfg.resolution
    identity = notes.get("identity", "avatar")
    calib = landmark_images(builtin_motion(neutral, CALIBRATION_FRAMES, seed=101), size)
    parity_in = landmark_images(builtin_motion(neutral, PARITY_FRAMES, seed=202), size)
    with torch.no_grad():
        eager = student(parity_in).numpy()
    example = student.get_example_inputs()
    tmp = Path(tempfile.mkdtemp(prefix="talkinghead-export-"))
    models, parity = [], {"inputs": parity_in.numpy()[:, None], "outputs.eager": eager[:, None]}
    for precision in precisions:
        q = precision == "int8"
        pte = tmp / pte_filename(f"{identity}_{student.cfg.name}", q)
        export_executorch(
            student,
            example,
            pte,
            quantize=q,
            calibration=[(x[None],) for x in calib] if q else None,
        )
        with ExecuTorchBackend() as backend:
            backend.load(pte)
            parity[f"outputs.{pte.name}"] = np.stack(
                [backend.run(x[None]) for x in parity_in.numpy()]
            )
        models.append(ModelSource(pte, precision=precision))
    photo = Path(student_path).with_suffix(".png")
    pack = write_pack(
        out_dir,
        name=identity,
        resolution=size,
        models=models,
        neutral_landmarks=neutral,
        photo=photo if photo.exists() else None,
        parity=parity,
        parity_info={"fp32_max_abs": 1e-3, "int8_min_psnr_db": 25.0},
        provenance={
            "student": student.cfg.to_dict(),
            "training": {k: v for k, v in notes.items() if k != "neutral_landmarks"},
            "synthetic": True,
        },
        overwrite=True,
    )
    return pack


def render_pack(
    pack: str | os.PathLike[str],
    out_dir: Path,
    driver: str | os.PathLike[str] | None = None,
    frames: int = 100,
    precision: str = "int8",
    fps: float = 25,
    progress: bool = True,
) -> dict:
    """Render a pack with ExecuTorch from built-in motion or a driving video; write MP4 + WebP."""
    from talkinghead.sdk.avatar import Avatar, AvatarOptions, track_video
    from talkinghead.sdk.media import write_mp4, write_webp

    result: dict = {}
    t0 = time.perf_counter()
    with Avatar.create_from_options(AvatarOptions(pack=pack, precision=precision)) as avatar:
        result["load_s"] = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()
        if driver is not None:
            driver_lms, fps = track_video(driver, max_frames=frames, progress=progress)
            result["track_s"] = round(time.perf_counter() - t0, 2)
            t0 = time.perf_counter()
            video = avatar.drive(driver_lms, progress=progress)
        else:
            video = avatar.animate(frames, fps=fps, progress=progress)
        secs = time.perf_counter() - t0
        result["render_ms_per_frame"] = round(1000 * secs / len(video), 2)
    out_dir = Path(out_dir)
    result["mp4"] = str(write_mp4(video, out_dir / "avatar.mp4", fps=fps))
    result["webp"] = str(write_webp(video, out_dir / "avatar.webp", fps=fps))
    result["frames"] = int(len(video))
    result["precision"] = precision
    return result


def track_photo_preview(image: str | os.PathLike[str], out: Path) -> str:
    """Track a photo and save it with the 68 mapped points drawn over it."""
    from PIL import Image, ImageDraw

    from talkinghead.sdk.tracker import track_image
    from talkinghead.train.make_data import load_photo

    name, img = load_photo(image)
    face = track_image(img)
    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    for x, y in face.landmarks68:
        draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(0, 255, 0))
    out.parent.mkdir(parents=True, exist_ok=True)
    pil.save(out)
    return f"{name}: 478 landmarks, 68 mapped, {len(face.blendshapes)} blendshapes -> {out}"


@dataclass
class DemoOptions:
    photo: str | None = None
    driver: str | None = None
    out_dir: Path = Path("out/demo")
    frames: int = 100
    precision: str = "int8"
    fast: bool = False


def run_demo(opts: DemoOptions) -> dict:
    """The whole pipeline with a built-in default: enrol (if --photo), export, render.

    With no photo, the committed student for the built-in astronaut photo is exported to
    ExecuTorch and rendered. With a photo, the committed teacher enrols it (FT mode) and a
    student is distilled first (minutes on a CPU; ``fast`` trades quality for time).
    """
    out = Path(opts.out_dir)
    timings: dict = {}
    if opts.frames < 1:
        raise InvalidInputError(f"frames must be positive, got {opts.frames}")
    if opts.photo is not None:
        t0 = time.perf_counter()
        student, figures = distill_for_photo(
            weights_path(DEFAULT_TEACHER),
            opts.photo,
            out / "work" / "student.safetensors",
            steps=300 if opts.fast else 1500,
            finetune_steps=30 if opts.fast else 100,
            sequences=8 if opts.fast else 24,
        )
        timings["enrol_and_distill_s"] = round(time.perf_counter() - t0, 1)
        timings.update({f"enrol.{k}": v for k, v in figures.items()})
    else:
        student = weights_path(DEFAULT_STUDENT)
    t0 = time.perf_counter()
    pack = export_pack(student, out / "pack")
    timings["export_s"] = round(time.perf_counter() - t0, 1)
    result = render_pack(
        pack, out, driver=opts.driver, frames=opts.frames, precision=opts.precision
    )
    result.update(timings)
    result["pack"] = str(pack)
    result["pack_files_bytes"] = {
        p.name: p.stat().st_size for p in sorted(Path(pack).iterdir()) if p.is_file()
    }
    return result
