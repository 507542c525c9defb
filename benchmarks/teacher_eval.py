"""Few-shot enrolment of the refine-form teacher on faces no training step saw.

FF (feed-forward: e averaged over K shots, no training) and FT (fine-tuned on the K shots)
at K = 1, 8 and 32, against the universal student (``refiner-s``, which sees no shots)
and the plain warp. Held-out faces (:data:`FACES`): ``grace_hopper`` and ``pypi:biden``
(out of every training step) and two faces with parted lips and teeth (out of the
teacher's and the distilled student's training), each also mirrored (8 faces, FT on the
four unmirrored ones). Per face, 48 pairs are made as in
training (:func:`~talkinghead.train.refine_data.make_refine_pairs`, seed 7): the 12 whose
warps lost the most of the photo (the most pixels of validity < 1/2: an opened mouth,
opened eyes, a turned-away cheek) are the targets, since elsewhere any generator keeps the
warp; a target's K shots come from the face's other pairs, so K = 32 draws from 47 (FT:
from the 36 that are not targets).

Measured per target against the real photo:

- ``psnr``: PSNR of the whole 256 px frame, dB;
- ``hole_l1``: mean absolute error, in levels, where the warp had no pixels of the photo
  (the inside of an opened mouth, opened eyes, disoccluded skin): what only the network
  can draw, and where the shots help.

    python -m talkinghead.benchmarks.teacher_eval [--teacher runs/teacher-refine/teacher-refine-xs.safetensors]

Writes ``docs/teacher-eval.json``, ``docs/img/teacher-k.png`` (the figures against K)
and ``docs/img/teacher-sheet.png`` (frames side by side).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

# grace_hopper and pypi:biden are out of every training step; the two others (parted lips,
# teeth) are out of the teacher's and the distilled student's (train/meta_refine.py).
FACES = ("grace_hopper", "pypi:biden", "pypi:children-alpha.3", "pypi:00017-gray.0")
SHOTS = (1, 8, 32)
PAIRS_PER_FACE = 48
TARGETS_PER_FACE = 12
FT_STEPS = 30
TEACHER_FILE = "teacher-refine-xs.safetensors"  # the shipped teacher, talkinghead/weights


def _levels(x: torch.Tensor) -> np.ndarray:
    """``(B, 3, S, S)`` in [-1, 1] -> ``(B, S, S, 3) uint8``."""
    y = np.rint((x.permute(0, 2, 3, 1).numpy() + 1) * 127.5)
    return np.clip(y, 0, 255).astype(np.uint8)


def frame_scores(frames: np.ndarray, target: np.ndarray, validity: np.ndarray) -> dict:
    """Mean PSNR (dB) and hole L1 (levels) of uint8 frames against their targets."""
    d = frames.astype(np.float64) - target.astype(np.float64)
    mse = (d**2).reshape(len(d), -1).mean(axis=1)
    hole = validity < 128
    l1 = np.abs(d).mean(axis=-1)
    hole_l1 = [float(l1[i][hole[i]].mean()) for i in range(len(d)) if hole[i].any()]
    return {
        "psnr": round(float(np.mean(10 * np.log10(255.0**2 / np.maximum(mse, 1e-9)))), 2),
        "hole_l1": round(float(np.mean(hole_l1)), 2) if hole_l1 else None,
    }


def hole_targets(validity: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The ``TARGETS_PER_FACE`` pairs of ``idx`` with the most pixels the warp lost, most first."""
    holes = (validity[idx] < 128).sum(axis=(1, 2))
    return idx[np.argsort(-holes, kind="stable")[:TARGETS_PER_FACE]]


def heldout_pairs(size: int = 256):
    """Pairs with shots of the held-out faces and their mirrors (ids: faces in order)."""
    from talkinghead.sdk.face_photos import face_photos
    from talkinghead.sdk.photos import load_photo
    from talkinghead.train.refine_data import make_refine_pairs, track_photos

    photos = {}
    for name in FACES:
        if name.startswith("pypi:"):
            photos[name] = face_photos("all", progress=False)[name]
        else:
            photos[name] = load_photo(name)[1]
    tracked = track_photos(photos)
    pairs = make_refine_pairs(
        tracked, PAIRS_PER_FACE, size, seed=7, progress=False, with_shots=True
    )
    return pairs, list(tracked)


def evaluate(teacher, student, pairs, names: list[str], ft: bool = True, progress: bool = True):
    from talkinghead.train.meta_refine import Episodes, feed_forward, fine_tune
    from talkinghead.train.refine import hwc_to_unit, to_unit
    from talkinghead.train.refine_data import shot_rigs, warp_shots

    warp = teacher.E.fuse is not None  # the shots are also warped to each target

    ep = Episodes.from_pairs(pairs)
    results: dict = {"faces": names, "shots": list(SHOTS), "ff": {}, "ft": {}}
    sheet: dict = {}
    targets = {
        i: hole_targets(pairs.validity, np.flatnonzero(ep.ids == i)) for i in range(len(names))
    }
    all_t = np.concatenate(list(targets.values()))
    real = pairs.target[all_t]
    valid = pairs.validity[all_t]
    with torch.no_grad():
        x = to_unit(ep.x[all_t])
        results["warp"] = frame_scores(pairs.warped[all_t], real, valid)
        stud = np.concatenate([_levels(student(x[i : i + 8])) for i in range(0, len(x), 8)])
    results["student"] = frame_scores(stud, real, valid)
    sheet["warp"], sheet["student"], sheet["real"] = pairs.warped[all_t], stud, real
    # track_photos lists a face, then its mirror: the unmirrored faces are the even ids.
    unmirrored = list(range(0, len(names), 2))
    n = TARGETS_PER_FACE
    bar = tqdm(
        total=len(SHOTS) * (1 + (len(unmirrored) if ft else 0)),
        desc="teacher eval",
        disable=not progress,
    )
    for k in SHOTS:
        rng = np.random.default_rng(k)
        frames = []
        for j in all_t:
            shots = ep.episode(int(j), k, rng) if warp else ep.shots_for(int(j), k, rng)
            frames.append(_levels(feed_forward(teacher, to_unit(ep.x[j : j + 1]), *shots)))
        frames = np.concatenate(frames)
        results["ff"][str(k)] = frame_scores(frames, real, valid)
        sheet[f"ff{k}"] = frames
        bar.update()
        if not ft:
            continue
        ft_frames, ft_real, ft_valid, ft_s = [], [], [], 0.0
        for face in unmirrored:
            ts = targets[face]
            pool = np.setdiff1d(np.flatnonzero(ep.ids == face), ts)
            pick = np.random.default_rng(100 + k).choice(pool, size=k, replace=False)
            t0 = time.perf_counter()
            tuned = fine_tune(
                teacher,
                pairs.shots[pick],
                pairs.shot_meshes[pick],
                steps=FT_STEPS,
                pairs_per_shot=max(1, 16 // k),
                seed=k,
            )
            ft_s += time.perf_counter() - t0
            with torch.no_grad():
                x = to_unit(ep.x[ts])
                if warp:  # the tuned G also sees the K shots warped to each target
                    rigs = shot_rigs(pairs.shots[pick], pairs.shot_meshes[pick])
                    w, v = zip(*(warp_shots(rigs, pairs.target_meshes[t]) for t in ts), strict=True)
                    x = tuned.g_input(
                        x, hwc_to_unit(np.stack(w)), hwc_to_unit(np.stack(v)[..., None])
                    )
                out = tuned.G(x, torch.zeros(1, tuned.cfg.e_dim))
            ft_frames.append(_levels(out))
            ft_real.append(pairs.target[ts])
            ft_valid.append(pairs.validity[ts])
            bar.update()
        scores = frame_scores(
            np.concatenate(ft_frames), np.concatenate(ft_real), np.concatenate(ft_valid)
        )
        scores["fine_tune_s"] = round(ft_s / len(unmirrored), 1)
        results["ft"][str(k)] = scores
    bar.close()
    # The unmirrored faces' FF scores, for a like-for-like comparison with FT, and each
    # face's own (face and mirror together).
    both = np.concatenate([np.arange(f * n, (f + 1) * n) for f in unmirrored])
    results["per_face"] = {}
    for f in unmirrored:
        rows = np.arange(f * n, (f + 2) * n)
        results["per_face"][names[f]] = {
            "warp": frame_scores(sheet["warp"][rows], real[rows], valid[rows]),
            "student": frame_scores(stud[rows], real[rows], valid[rows]),
            **{
                f"ff{k}": frame_scores(sheet[f"ff{k}"][rows], real[rows], valid[rows])
                for k in SHOTS
            },
        }
    results["ff_unmirrored"] = {
        str(k): frame_scores(sheet[f"ff{k}"][both], real[both], valid[both]) for k in SHOTS
    }
    results["student_unmirrored"] = frame_scores(stud[both], real[both], valid[both])
    return results, sheet


def plot(results: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, key, label in (
        (axes[0], "psnr", "PSNR, dB (higher is better)"),
        (axes[1], "hole_l1", "error where the warp had no pixels, levels"),
    ):
        ks = results["shots"]
        ax.plot(
            ks,
            [results["ff"][str(k)][key] for k in ks],
            "o-",
            label=f"teacher FF ({len(results['faces'])} faces)",
        )
        if results["ft"]:
            ax.plot(
                ks,
                [results["ft"][str(k)][key] for k in ks],
                "s-",
                label=f"teacher FT ({len(results['faces']) // 2} faces)",
            )
        ax.axhline(
            results["student"][key],
            color="k",
            ls="--",
            label="shipped student, no shots (trained on 2 of the faces)",
        )
        ax.axhline(results["warp"][key], color="grey", ls=":", label="warp only")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("shots K")
        ax.set_title(label, fontsize=9)
    axes[0].legend(fontsize=7)
    fig.suptitle("Refine-form teacher on held-out faces", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def contact_sheet(sheet: dict, path: Path, rows: list[int]) -> Path:
    from PIL import Image, ImageDraw

    cols = ["warp", "student", *(f"ff{k}" for k in SHOTS), "real"]
    labels = ["warp", "student", *(f"teacher FF K={k}" for k in SHOTS), "real photo"]
    s = sheet["real"].shape[1]
    img = Image.new("RGB", (s * len(cols), s * len(rows) + 18), "white")
    draw = ImageDraw.Draw(img)
    for c, label in enumerate(labels):
        draw.text((c * s + 4, 3), label, fill="black")
    for r, i in enumerate(rows):
        for c, key in enumerate(cols):
            img.paste(Image.fromarray(sheet[key][i]), (c * s, 18 + r * s))
    img.save(path)
    return path


def main(argv: list[str] | None = None) -> int:
    from talkinghead.models.checkpoint import load_checkpoint
    from talkinghead.packs import DEFAULT_REFINER, weights_path

    ap = argparse.ArgumentParser(description="FF/FT at K = 1/8/32 of the refine-form teacher.")
    ap.add_argument(
        "--teacher",
        type=Path,
        default=None,
        help="a refine-form teacher checkpoint (default: the shipped teacher-refine-xs)",
    )
    ap.add_argument("--student", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path("docs"))
    ap.add_argument("--no-ft", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    teacher_file = args.teacher or weights_path(TEACHER_FILE)
    teacher = load_checkpoint(teacher_file, "teacher").eval()
    student = load_checkpoint(args.student or weights_path(DEFAULT_REFINER), "refiner").eval()
    pairs, names = heldout_pairs(teacher.cfg.resolution)
    results, sheet = evaluate(teacher, student, pairs, names, ft=not args.no_ft)
    results["teacher"] = {
        "variant": teacher.cfg.name,
        **{k: v for k, v in teacher.notes.items() if k in ("pairs", "photos", "train_s")},
    }
    (args.out / "img").mkdir(parents=True, exist_ok=True)
    (args.out / "teacher-eval.json").write_text(json.dumps(results, indent=1))
    plot(results, args.out / "img" / "teacher-k.png")
    # Rows: the target with the largest hole of each unmirrored face (targets come most first).
    rows = [f * TARGETS_PER_FACE for f in range(0, len(names), 2)]
    contact_sheet(sheet, args.out / "img" / "teacher-sheet.png", rows)
    print(json.dumps({k: results[k] for k in ("warp", "student", "ff", "ft")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
