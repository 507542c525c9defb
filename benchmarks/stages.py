"""Benchmarks of the stages around the generator: rasterising, enrolment, end-to-end frames.

End to end, per frame: track a 512 px photo (MediaPipe, VIDEO mode) -> retarget the
68 landmarks onto the avatar (relative motion) -> rasterise -> render (one backend) ->
encode H.264. The driver is the astronaut photo itself, so the tracker always finds a face.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from talkinghead.benchmarks.core import median_ms
from talkinghead.benchmarks.generators import (
    TRAINED,
    Case,
    build_student,
    demo_neutral,
    open_backend,
)
from talkinghead.errors import InvalidInputError


def rasterise(resolutions: list[int], repeats: int) -> list[dict[str, Any]]:
    """Median ms to rasterise the demo face's 68 points, per resolution."""
    from talkinghead.models.rasterize import rasterize_landmarks

    rows = []
    for res in resolutions:
        lm = demo_neutral(res)
        ms = median_ms(lambda lm=lm, res=res: rasterize_landmarks(lm, res), repeats)
        rows.append({"resolution": res, "latency_ms": ms})
    return rows


def end_to_end(
    frames: int, backend: str, precision: str, model_file: Path | None, progress: bool = True
) -> dict[str, Any]:
    """Per-stage medians (ms) and frames per second of the whole loop on ``frames`` frames.

    model_file: the demo student exported for ``backend`` (None for eager torch).
    """
    from skimage import data

    from talkinghead.models.rasterize import rasterize_landmarks
    from talkinghead.sdk.media import write_mp4
    from talkinghead.sdk.retarget import relative_motion
    from talkinghead.sdk.tensors import from_model_output, to_model_input
    from talkinghead.sdk.tracker import FaceTracker, FaceTrackerOptions, RunningMode

    if frames < 2:
        raise InvalidInputError(f"frames must be >= 2, got {frames}")
    case = Case(*TRAINED)
    model = build_student(case)
    rt = open_backend(backend, model, model_file)
    photo, neutral = data.astronaut(), demo_neutral(case.resolution)
    stages: dict[str, list[float]] = {k: [] for k in ("track", "retarget", "rasterise", "render")}
    video, ref = [], None
    opts = FaceTrackerOptions(running_mode=RunningMode.VIDEO)
    wall0 = time.perf_counter()
    with FaceTracker.create_from_options(opts) as tracker:
        for i in tqdm(
            range(frames), desc=f"end to end ({backend} {precision})", disable=not progress
        ):
            t = [time.perf_counter()]
            lm = tracker.detect_for_video(photo, 40 * i)[0].landmarks68
            t.append(time.perf_counter())
            ref = lm if ref is None else ref
            avatar_lm = relative_motion(lm[None], neutral, driver_neutral=ref)[0]
            t.append(time.perf_counter())
            x = to_model_input(rasterize_landmarks(avatar_lm, case.resolution))[None]
            t.append(time.perf_counter())
            video.append(from_model_output(rt.run(x))[0])
            t.append(time.perf_counter())
            for k, a, b in zip(stages, t, t[1:], strict=False):
                stages[k].append(1000 * (b - a))
    rt.close()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        write_mp4(video, Path(tmp) / "e2e.mp4")
    encode_ms = 1000 * (time.perf_counter() - t0) / frames
    wall_s = time.perf_counter() - wall0
    out: dict[str, Any] = {f"{k}_ms": float(np.median(v)) for k, v in stages.items()}
    out["encode_ms"] = encode_ms  # whole clip encoded at the end, per frame
    out.update(backend=backend, precision=precision, frames=frames)
    out["fps_from_medians"] = 1000 / sum(out[f"{k}_ms"] for k in (*stages, "encode"))
    out["fps_wall"] = frames / wall_s
    return out


def enrolment(finetune_steps: int, progress: bool = True) -> tuple[dict[str, Any], torch.nn.Module]:
    """Time feed-forward and fine-tuned enrolment of the astronaut with the committed teacher.

    Returns the figures and the FT-enrolled generator (the teacher the demo student imitates,
    re-enrolled here from the shipped float16 weights).
    """
    from skimage import data

    from talkinghead.distill.distill import landmark_images
    from talkinghead.models.checkpoint import load_checkpoint
    from talkinghead.pipeline import DEFAULT_TEACHER, enrol_photo, weights_path
    from talkinghead.sdk.tensors import to_model_input
    from talkinghead.train.finetune import enrol_feed_forward

    t0 = time.perf_counter()
    teacher = load_checkpoint(weights_path(DEFAULT_TEACHER), "teacher")
    load_s = time.perf_counter() - t0
    enrolled, crop, neutral, fig = enrol_photo(
        teacher, data.astronaut(), 8, finetune_steps, progress=progress
    )
    # FF enrolment on the same crop: 8 identical shots time the embedder over K = 8.
    shots = landmark_images(np.repeat(neutral[None], 8, axis=0), teacher.cfg.resolution)
    frames = torch.from_numpy(to_model_input(np.repeat(crop[None], 8, axis=0)))
    t0 = time.perf_counter()
    enrol_feed_forward(teacher, frames, shots)
    ff_s = time.perf_counter() - t0
    figures = {
        "teacher": teacher.cfg.name,
        "teacher_load_s": load_s,
        "track_and_crop_s": fig["track_s"],
        "pseudo_video_shots_s": fig["shots_s"],
        "feed_forward_8_shots_s": ff_s,
        "finetune_steps": finetune_steps,
        "finetune_s": fig["finetune_s"],
        "finetune_ms_per_step": 1000 * fig["finetune_s"] / max(finetune_steps, 1),
    }
    return figures, enrolled


def demo_pack(cache_dir: Path, progress: bool = True) -> Path:
    """The demo student exported to a pack with every runtime, cached by weights and versions."""
    import hashlib
    from importlib.metadata import version

    from talkinghead.pipeline import DEFAULT_STUDENT, export_pack, weights_path
    from talkinghead.sdk.pack import open_pack

    student = weights_path(DEFAULT_STUDENT)
    h = hashlib.sha256(student.read_bytes())
    for dist in ("executorch", "litert-torch", "onnx", "onnxruntime"):
        h.update(version(dist).encode())
    folder = Path(cache_dir) / f"pack_{h.hexdigest()[:12]}"
    if (folder / "manifest.json").is_file():
        try:
            open_pack(folder).close()  # every file's sha256 still matches
            return folder
        except Exception:
            pass  # stale or damaged: export again
    return export_pack(student, folder, progress=progress)


def pack_files(folder: Path) -> dict[tuple[str, str], Path]:
    """A pack's model files by (runtime, precision): the first format of each (.onnx, not .ort)."""
    from talkinghead.sdk.pack import open_pack

    files: dict[tuple[str, str], Path] = {}
    with open_pack(folder) as p:
        for m in p.manifest.models:
            files.setdefault((m.runtime, m.precision), Path(p.path(m.file)))
    return files
