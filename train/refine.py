"""Training the universal refiner on pairs from :mod:`talkinghead.train.refine_data`.

    python -m talkinghead.train.refine --out runs/refiner --steps 3000

The loss is on the finished frame (``clamp(warped + (1 - m) * correction)``) against the real
photo: L1, more of it where the warp had no real pixels (inside an opened mouth, opened
eyes, disoccluded skin), plus L1 on image gradients (edges stay sharp). Training runs on random
patches around the face, so one step sees many faces; the network is fully
convolutional, so it renders whole frames after.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from talkinghead.errors import InvalidInputError
from talkinghead.models.checkpoint import save_checkpoint
from talkinghead.models.refiner import RefinerGenerator, create_refiner
from talkinghead.train.refine_data import RefinePairs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefineTrainConfig:
    steps: int = 3000
    batch: int = 8
    patch: int = 128
    lr: float = 2e-3
    grad_weight: float = 1.0
    hole_weight: float = 4.0  # extra L1 weight where the warp had no real pixels
    # Distillation: the teacher's frame as a second target, this much of the loss
    # (the rest stays the real photo's); 0 without a teacher.
    teacher_weight: float = 0.5
    seed: int = 0


def pairs_to_tensors(pairs: RefinePairs) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x (N, 7, S, S) uint8-valued float16 storage, target (N, 3, S, S))`` as uint8 tensors."""
    x = np.concatenate([pairs.warped, pairs.landmarks, pairs.validity[..., None]], axis=-1)
    return (
        torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1))),
        torch.from_numpy(np.ascontiguousarray(np.moveaxis(pairs.target, -1, 1))),
    )


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 tensor -> float in [-1, 1]."""
    return x.float() / 127.5 - 1.0


def hwc_to_unit(a: np.ndarray) -> torch.Tensor:
    """``(..., S, S, C) uint8`` array -> ``(..., C, S, S)`` float tensor in [-1, 1]."""
    return to_unit(torch.from_numpy(np.ascontiguousarray(np.moveaxis(a, -1, -3))))


def grad_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """L1 between the horizontal and vertical image gradients of ``a`` and ``b``."""
    dx = lambda t: t[..., :, 1:] - t[..., :, :-1]  # noqa: E731
    dy = lambda t: t[..., 1:, :] - t[..., :-1, :]  # noqa: E731
    return (dx(a) - dx(b)).abs().mean() + (dy(a) - dy(b)).abs().mean()


def _frame_loss(frame, x, target, cfg: RefineTrainConfig) -> tuple[torch.Tensor, dict]:
    valid = (x[:, 6:7] + 1) / 2
    err = (frame - target).abs()
    l1 = err.mean()
    hole = (err * (1 - valid)).mean()
    grad = grad_l1(frame, target)
    loss = l1 + cfg.hole_weight * hole + cfg.grad_weight * grad
    return loss, {"l1": l1.item(), "hole": hole.item(), "grad": grad.item()}


def refine_loss(
    model: RefinerGenerator,
    x: torch.Tensor,
    target: torch.Tensor,
    cfg: RefineTrainConfig,
    teacher_frame: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss on the finished frame against the real photo and, when distilling, the
    teacher's frame for the same input (weighted ``cfg.teacher_weight``)."""
    frame = model(x)
    loss, parts = _frame_loss(frame, x, target, cfg)
    if teacher_frame is not None:
        to_teacher, t_parts = _frame_loss(frame, x, teacher_frame, cfg)
        loss = (1 - cfg.teacher_weight) * loss + cfg.teacher_weight * to_teacher
        parts["teacher_l1"] = t_parts["l1"]
    return loss, parts


def _patches(a: torch.Tensor, idx, oy, ox, patch: int) -> torch.Tensor:
    """Square patches of uint8 ``a (N, C, S, S)`` at rows ``idx``, corners ``(oy, ox)``, in [-1, 1]."""
    return to_unit(
        torch.stack(
            [a[i, :, y : y + patch, x : x + patch] for i, y, x in zip(idx, oy, ox, strict=True)]
        )
    )


def train_refiner(
    pairs: RefinePairs,
    model: RefinerGenerator | None = None,
    cfg: RefineTrainConfig = RefineTrainConfig(),
    progress: bool = True,
    teacher_frames: np.ndarray | None = None,
) -> tuple[RefinerGenerator, list[dict[str, float]]]:
    """Train (or continue) a refiner on ``pairs``; returns it in eval mode and the loss log.

    ``teacher_frames`` ``(N, S, S, 3) uint8``, the teacher's frame for every pair, makes this
    distillation (see :func:`refine_loss`).
    """
    if len(pairs.target) == 0:
        raise InvalidInputError("no training pairs")
    if teacher_frames is not None and teacher_frames.shape != pairs.target.shape:
        raise InvalidInputError(
            f"teacher frames {teacher_frames.shape} do not match the pairs {pairs.target.shape}"
        )
    size = pairs.target.shape[1]
    if cfg.patch > size or cfg.patch % 16:
        raise InvalidInputError(f"patch {cfg.patch} must be a multiple of 16 and <= {size}")
    model = model or create_refiner("refiner-s", resolution=size)
    x_all, t_all = pairs_to_tensors(pairs)
    tf_all = (
        None
        if teacher_frames is None
        else torch.from_numpy(np.ascontiguousarray(np.moveaxis(teacher_frames, -1, 1)))
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps, pct_start=0.05)
    model.train()
    history = []
    bar = tqdm(range(cfg.steps), desc="refiner", disable=not progress)
    # Patches come from the middle of the crop, where the face is.
    lo, hi = size // 8, size - size // 8 - cfg.patch
    if hi < lo:  # a patch wider than the middle: centre it (it still fits: patch <= size)
        lo = hi = (size - cfg.patch) // 2
    for step in bar:
        idx = torch.randint(0, len(x_all), (cfg.batch,), generator=gen)
        oy = torch.randint(lo, hi + 1, (cfg.batch,), generator=gen)
        ox = torch.randint(lo, hi + 1, (cfg.batch,), generator=gen)

        where = (idx, oy, ox, cfg.patch)
        teacher = None if tf_all is None else _patches(tf_all, *where)
        loss, parts = refine_loss(
            model, _patches(x_all, *where), _patches(t_all, *where), cfg, teacher
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        parts["step"] = step
        history.append(parts)
        if step % 20 == 0:
            bar.set_postfix(l1=f"{parts['l1']:.4f}", grad=f"{parts['grad']:.4f}")
    model.eval()
    return model, history


@torch.no_grad()
def refine_frames(model: RefinerGenerator, x: np.ndarray) -> np.ndarray:
    """``x (N, S, S, 7) uint8`` model inputs -> ``(N, S, S, 3) uint8`` frames."""
    t = to_unit(torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1))))
    y = model(t)
    return np.clip(np.rint((y.permute(0, 2, 3, 1).numpy() + 1) * 127.5), 0, 255).astype(np.uint8)


def training_photos() -> dict[str, np.ndarray]:
    """The real photos the refiner and its teacher train on: the astronaut and the PyPI
    faces' train split (the held-out faces and Grace Hopper stay out)."""
    from talkinghead.sdk.face_photos import face_photos
    from talkinghead.sdk.photos import builtin_photo

    photos = face_photos("train")
    photos["astronaut"] = builtin_photo("astronaut")
    return photos


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Train the universal refiner.")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--pairs-per-photo", type=int, default=60)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variant", default="refiner-s")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from talkinghead.train.refine_data import make_refine_pairs, track_photos

    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tracked = track_photos(training_photos())
    cached = args.out / f"pairs-{args.pairs_per_photo}-{args.size}.npz"
    if cached.is_file():  # a rerun reuses the pairs (make_refine_pairs is deterministic)
        with np.load(cached) as z:
            pairs = RefinePairs(
                *(z[k] for k in ("warped", "landmarks", "validity", "target", "ids"))
            )
    else:
        pairs = make_refine_pairs(tracked, args.pairs_per_photo, args.size)
        np.savez(cached, **vars(pairs))
    data_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = create_refiner(args.variant, resolution=args.size)
    model, history = train_refiner(pairs, model, RefineTrainConfig(steps=args.steps))
    train_s = time.perf_counter() - t0
    ckpt = save_checkpoint(
        args.out / f"{args.variant}.safetensors",
        model,
        "refiner",
        photos=sorted(tracked),
        pairs=len(pairs.target),
        steps=args.steps,
        data_s=round(data_s, 1),
        train_s=round(train_s, 1),
    )
    (args.out / "history.json").write_text(json.dumps(history))
    print(
        f"wrote {ckpt}: {len(pairs.target)} pairs in {data_s:.0f} s, {args.steps} steps in {train_s:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
