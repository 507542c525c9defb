"""Benchmarks of the stages around the generator: rasterising, the warp, enrolment, end to end.

End to end, per frame: track a 512 px photo (MediaPipe, VIDEO mode) -> retarget the mesh
onto the avatar (its motion relative to the first frame) -> warp the enrolled photo to it
-> rasterise its 68 landmarks -> refine (one backend) -> encode H.264. The driver is the
astronaut photo itself, so the tracker always finds a face.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from talkinghead.benchmarks.core import median_ms
from talkinghead.benchmarks.generators import (
    TRAINED,
    Case,
    build_generator,
    demo_neutral,
    demo_rig,
    open_backend,
)
from talkinghead.errors import InvalidInputError


def rasterise(resolutions: list[int], repeats: int) -> list[dict[str, Any]]:
    """Median ms to rasterise the demo face's 68 points, per resolution."""
    from talkinghead.sdk.rasterize import rasterize_landmarks

    rows = []
    for res in resolutions:
        lm = demo_neutral(res)
        ms = median_ms(lambda lm=lm, res=res: rasterize_landmarks(lm, res), repeats)
        rows.append({"resolution": res, "latency_ms": ms})
    return rows


def warp(resolutions: list[int], repeats: int) -> list[dict[str, Any]]:
    """Median ms of the warp (numpy, ``sdk.warp.warp_to``) per resolution, on a frame of
    built-in motion (a turned head and an open mouth: the z-test and the validity at work)."""
    from talkinghead.sdk.mesh_motion import apply_mesh_motion
    from talkinghead.sdk.motion import MotionParams
    from talkinghead.sdk.warp import warp_to

    rows = []
    for res in resolutions:
        rig = demo_rig(res)
        target = apply_mesh_motion(rig.mesh, MotionParams(jaw_open=0.6, yaw=15.0, pitch=5.0))
        ms = median_ms(lambda rig=rig, t=target: warp_to(rig, t), repeats)
        rows.append({"resolution": res, "latency_ms": ms, "triangles": int(len(rig.triangles))})
    return rows


def end_to_end(
    frames: int, backend: str, precision: str, model_file: Path | None, progress: bool = True
) -> dict[str, Any]:
    """Per-stage medians (ms) and frames per second of the whole loop on ``frames`` frames.

    model_file: the shipped refiner exported for ``backend`` (None for eager torch).
    """
    from skimage import data

    from talkinghead.sdk.media import write_mp4
    from talkinghead.sdk.mesh_motion import retarget_mesh
    from talkinghead.sdk.rasterize import rasterize_landmarks
    from talkinghead.sdk.tensors import from_model_output
    from talkinghead.sdk.tracker import FaceTracker, FaceTrackerOptions, RunningMode
    from talkinghead.sdk.warp import landmarks68, refiner_input, warp_to

    if frames < 2:
        raise InvalidInputError(f"frames must be >= 2, got {frames}")
    case = Case(*TRAINED)
    model = build_generator(case)
    rt = open_backend(backend, model, model_file)
    photo, rig = data.astronaut(), demo_rig(case.resolution)
    keys = ("track", "retarget", "warp", "rasterise", "render")
    stages: dict[str, list[float]] = {k: [] for k in keys}
    video, ref = [], None
    opts = FaceTrackerOptions(running_mode=RunningMode.VIDEO)
    wall0 = time.perf_counter()
    with FaceTracker.create_from_options(opts) as tracker:
        for i in tqdm(
            range(frames), desc=f"end to end ({backend} {precision})", disable=not progress
        ):
            t = [time.perf_counter()]
            mesh = tracker.detect_for_video(photo, 40 * i)[0].landmarks
            t.append(time.perf_counter())
            ref = mesh if ref is None else ref
            target = retarget_mesh(mesh, ref, rig.mesh)
            t.append(time.perf_counter())
            warped = warp_to(rig, target)
            t.append(time.perf_counter())
            lm_img = rasterize_landmarks(landmarks68(target), case.resolution)
            t.append(time.perf_counter())
            video.append(from_model_output(rt.run(refiner_input(warped, lm_img)))[0])
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
    out.update(backend=backend, precision=precision, frames=frames, resolution=case.resolution)
    out["fps_from_medians"] = 1000 / sum(out[f"{k}_ms"] for k in (*stages, "encode"))
    out["fps_wall"] = frames / wall_s
    return out


def enrolment(finetune_steps: int, progress: bool = True) -> dict[str, Any]:
    """Time enrolling the astronaut photo (track, crop, rig: no training), and the opt-in
    fine-tuning of the shipped refiner on that face (``--finetune``) for ``finetune_steps``."""
    from skimage import data

    from talkinghead.models.checkpoint import load_checkpoint
    from talkinghead.packs import DEFAULT_REFINER, enrol_photo, weights_path
    from talkinghead.sdk.warp import landmarks68, rig_to_bytes
    from talkinghead.train.refine import RefineTrainConfig, train_refiner
    from talkinghead.train.refine_data import make_refine_pairs

    t0 = time.perf_counter()
    face = enrol_photo(data.astronaut())
    enrol_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rig_bytes = len(rig_to_bytes(face.rig))
    rig_s = time.perf_counter() - t0
    figures: dict[str, Any] = {
        "refiner": "refiner-s",
        "enrol_s": enrol_s,
        "rig_write_s": rig_s,
        "rig_bytes": rig_bytes,
        "finetune_steps": finetune_steps,
        "finetune_pairs_s": 0.0,
        "finetune_s": 0.0,
        "finetune_ms_per_step": 0.0,
    }
    if finetune_steps > 0:
        t0 = time.perf_counter()
        faces = {"astronaut": (face.crop, face.mesh, landmarks68(face.mesh))}
        pairs = make_refine_pairs(faces, 16, face.rig.size, seed=3, progress=progress)
        figures["finetune_pairs_s"] = time.perf_counter() - t0
        model = load_checkpoint(weights_path(DEFAULT_REFINER), "refiner")
        t0 = time.perf_counter()
        cfg = RefineTrainConfig(steps=finetune_steps, lr=3e-4)
        train_refiner(pairs, model, cfg, progress=progress)
        figures["finetune_s"] = time.perf_counter() - t0
        figures["finetune_ms_per_step"] = 1000 * figures["finetune_s"] / finetune_steps
    return figures


def demo_pack(cache_dir: Path, progress: bool = True) -> Path:
    """The astronaut photo enrolled into a pack with every runtime and the shipped refiner,
    cached by the refiner's weights, code and the exporters' versions."""
    from talkinghead.packs import DEFAULT_REFINER, _checkpoint_key, weights_path
    from talkinghead.pipeline import export_pack
    from talkinghead.sdk.pack import open_pack

    folder = Path(cache_dir) / f"pack_{_checkpoint_key(weights_path(DEFAULT_REFINER))}"
    if (folder / "manifest.json").is_file():
        try:
            open_pack(folder).close()  # every file's sha256 still matches
            return folder
        except Exception:
            pass  # stale or damaged: export again
    return export_pack("astronaut", folder, progress=progress)


def pack_files(folder: Path) -> dict[tuple[str, str], Path]:
    """A pack's model files by (runtime, precision): the first format of each (.onnx, not .ort)."""
    from talkinghead.sdk.pack import open_pack

    files: dict[tuple[str, str], Path] = {}
    with open_pack(folder) as p:
        for m in p.manifest.models:
            files.setdefault((m.runtime, m.precision), Path(p.path(m.file)))
    return files
