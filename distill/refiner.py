"""The phone's universal refiner, distilled from the refine-form teacher.

The teacher (``train/meta_refine.py``) renders every training pair feed-forward from K
shots of the same photo: it has seen the person's other poses, so it can draw a mouth
interior or an eye the warp lost with that person's colours. The student sees no shots
(one universal network, enrolment without training): it learns from the teacher's frame
and from the real photo together (``RefineTrainConfig.teacher_weight``), over every
identity and motion of the training pairs, and is quantized to int8 at export.

    python -m talkinghead.distill.refiner --teacher runs/teacher-refine/teacher-refine-xs.safetensors \\
        --out runs/refiner-distilled --steps 5000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from talkinghead.errors import InvalidInputError
from talkinghead.models.checkpoint import load_checkpoint, save_checkpoint
from talkinghead.models.refiner import RefinerGenerator, create_refiner
from talkinghead.models.teacher import Teacher
from talkinghead.train.meta_refine import Episodes, feed_forward
from talkinghead.train.refine import RefineTrainConfig, to_unit, train_refiner
from talkinghead.train.refine_data import RefinePairs


@torch.no_grad()
def teacher_frames(
    teacher: Teacher, pairs: RefinePairs, k: int = 8, seed: int = 0, progress: bool = True
) -> np.ndarray:
    """The teacher's FF frame for every pair, from K shots of the same photo: ``(N, S, S, 3) uint8``."""
    if teacher.cfg.form != "refine":
        raise InvalidInputError(f"{teacher.cfg.name} is not a refine-form teacher")
    ep = Episodes.from_pairs(pairs)
    rng = np.random.default_rng(seed)
    warp = teacher.E.fuse is not None  # shots warped to each pair's target as well
    out = np.empty_like(pairs.target)
    for j in tqdm(range(len(out)), desc="teacher frames", disable=not progress):
        kk = min(k, len(ep.others(j)))
        shots = ep.episode(j, kk, rng) if warp else ep.shots_for(j, kk, rng)
        y = feed_forward(teacher, to_unit(ep.x[j : j + 1]), *shots)
        out[j] = np.clip(np.rint((y[0].permute(1, 2, 0).numpy() + 1) * 127.5), 0, 255)
    return out


def distill_refiner(
    teacher: Teacher,
    pairs: RefinePairs,
    student: RefinerGenerator | None = None,
    cfg: RefineTrainConfig | None = None,
    k: int = 8,
    frames: np.ndarray | None = None,
    progress: bool = True,
) -> tuple[RefinerGenerator, list[dict[str, float]]]:
    """Distil a student refiner from ``teacher`` over ``pairs`` (made ``with_shots``)."""
    cfg = cfg or RefineTrainConfig()
    if frames is None:
        frames = teacher_frames(teacher, pairs, k, cfg.seed, progress)
    size = pairs.target.shape[1]
    student = student or create_refiner("refiner-s", resolution=size)
    return train_refiner(pairs, student, cfg, progress, teacher_frames=frames)


def main(argv: list[str] | None = None) -> int:
    from talkinghead.train.meta_refine import training_pairs

    ap = argparse.ArgumentParser(description="Distil the universal refiner from the teacher.")
    ap.add_argument("--teacher", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--pairs", type=Path, default=None, help="folder of the cached pairs")
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--variant", default="refiner-s")
    ap.add_argument("--teacher-weight", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    teacher = load_checkpoint(args.teacher, "teacher").eval()
    pairs = training_pairs(args.pairs or args.teacher.parent, 60, teacher.cfg.resolution)
    t0 = time.perf_counter()
    cached = args.out / f"teacher-frames-k{args.k}.npy"
    if cached.is_file():
        frames = np.load(cached)
    else:
        frames = teacher_frames(teacher, pairs, args.k)
        np.save(cached, frames)
    frames_s = time.perf_counter() - t0
    cfg = RefineTrainConfig(steps=args.steps, teacher_weight=args.teacher_weight)
    t0 = time.perf_counter()
    student, history = distill_refiner(
        teacher,
        pairs,
        create_refiner(args.variant, resolution=teacher.cfg.resolution),
        cfg,
        frames=frames,
    )
    train_s = time.perf_counter() - t0
    ckpt = save_checkpoint(
        args.out / f"{args.variant}.safetensors",
        student,
        "refiner",
        mode="distilled",
        teacher=teacher.cfg.name,
        teacher_step=teacher.notes.get("train", {}).get("steps"),
        k=args.k,
        teacher_weight=args.teacher_weight,
        pairs=len(pairs.target),
        steps=args.steps,
        teacher_frames_s=round(frames_s, 1),
        train_s=round(train_s, 1),
    )
    (args.out / "history.json").write_text(json.dumps(history))
    print(f"wrote {ckpt}: {len(pairs.target)} pairs, {args.steps} steps in {train_s:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
