"""Figures of the provenance watermark: robustness, false positives, invisibility, cost.

    python -m talkinghead.benchmarks.provenance [--out out/provenance] [--pack PACK]
        [--frames 64] [--fp-trials 1500]

Marked frames are real avatar frames (the committed demo student, rendered unmarked from a
pack exported once, or ``--pack``) at 128 px and upscaled to 256 px, and crops of real photos
(scikit-image) at 128 and 256 px, marked with the pack's payload. Attacks: JPEG quality 75,
a 0.5x resize (Pillow bilinear, antialiased), H.264 through ``write_mp4`` (crf 18, the SDK's
setting, and crf 23), and, beyond the issue's figures, 0.5x resize then JPEG 75.

False positives: unmarked images, at least 1000 trials: random crops (32 px up to the whole
image) of scikit-image's photos, rescaled to 32-512 px, some JPEG-compressed, and unmarked
avatar frames. A trial is a false positive when ``detect`` says marked.

Prints a Markdown table and writes ``provenance.png`` and ``provenance.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from talkinghead.sdk.watermark import SCORE_MIN, Payload, Watermark, decode_soft, detect, soft_bits

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "cat", "immunohistochemistry", "retina")
GREY_PHOTOS = ("camera", "moon", "coins", "clock", "brick", "grass", "gravel", "page", "cell")


def jpeg(frame: np.ndarray, quality: int = 75) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf))


def half(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    return np.asarray(Image.fromarray(frame).resize((w // 2, h // 2), Image.Resampling.BILINEAR))


def h264(frames: list[np.ndarray], crf: int) -> list[np.ndarray]:
    """Through the SDK's own MP4 writer and reader (PyAV, libx264, yuv420p)."""
    from talkinghead.sdk.media import read_video, write_mp4

    with tempfile.TemporaryDirectory() as tmp:
        path = write_mp4(frames, Path(tmp) / "clip.mp4", crf=crf, label=False)
        return [f for f, _ in read_video(path)]


ATTACKS: dict[str, Callable[[list[np.ndarray]], list[np.ndarray]]] = {
    "none": lambda fs: fs,
    "JPEG q75": lambda fs: [jpeg(f) for f in fs],
    "0.5x resize": lambda fs: [half(f) for f in fs],
    "H.264 crf 18": lambda fs: h264(fs, 18),
    "H.264 crf 23": lambda fs: h264(fs, 23),
    "0.5x + JPEG q75": lambda fs: [jpeg(half(f)) for f in fs],
}
SPEC_ATTACKS = ("JPEG q75", "0.5x resize", "H.264 crf 18")  # the issue's >= 99 % figures
CLIP = 8  # frames per clip for the clip-level figures


def _load_photos(names: tuple[str, ...]) -> list[np.ndarray]:
    from skimage import data

    return [np.ascontiguousarray(getattr(data, n)()[..., :3]) for n in names]


def photo_crops(size: int, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """n square crops of colour photos, resized to ``size`` px: (size, size, 3) uint8."""
    photos = _load_photos(PHOTOS)
    out = []
    for i in range(n):
        im = photos[i % len(photos)]
        side = int(rng.integers(min(im.shape[:2]) // 3, min(im.shape[:2]) + 1))
        y = int(rng.integers(0, im.shape[0] - side + 1))
        x = int(rng.integers(0, im.shape[1] - side + 1))
        crop = Image.fromarray(im[y : y + side, x : x + side])
        out.append(np.asarray(crop.resize((size, size), Image.Resampling.LANCZOS)))
    return out


def avatar_frames(pack: Path, n: int) -> tuple[list[np.ndarray], Payload]:
    """n unmarked avatar frames of built-in motion, and the payload the pack's frames carry."""
    from talkinghead.sdk.avatar import Avatar, AvatarOptions
    from talkinghead.sdk.provenance import pack_payload

    with Avatar.create_from_options(AvatarOptions(pack=pack, watermark=False)) as avatar:
        return list(avatar.animate(n)), pack_payload(avatar.pack.manifest)


def upscale(frames: list[np.ndarray], size: int) -> list[np.ndarray]:
    return [
        np.asarray(Image.fromarray(f).resize((size, size), Image.Resampling.BICUBIC))
        for f in frames
    ]


def robustness(frames: list[np.ndarray], payload: Payload) -> dict:
    """Mark ``frames``; per attack the share detected with the right payload, and scores."""
    mark = Watermark(payload)
    marked = [mark.embed(f) for f in frames]
    mse = [np.mean((m.astype(np.float64) - f) ** 2) for m, f in zip(marked, frames, strict=True)]
    psnr = [10 * np.log10(255**2 / max(e, 1e-12)) for e in mse]
    out = {
        "frames": len(frames),
        "psnr_min_db": float(min(psnr)),
        "psnr_mean_db": float(np.mean(psnr)),
    }
    for name, attack in ATTACKS.items():
        softs = [soft_bits(f) for f in attack(marked)]
        results = [decode_soft(x) for x in softs]
        # A clip decides on its frames' soft bits summed, as verify-media does for a video.
        clips = [
            decode_soft(np.sum(softs[i : i + CLIP], 0))
            for i in range(0, len(softs) - CLIP + 1, CLIP)
        ]
        out[name] = {
            "rate": _share_right(results, payload),
            "clip_rate": _share_right(clips, payload) if clips else None,
            "scores": [r.score for r in results],
        }
    return out


def _share_right(results: list, payload: Payload) -> float:
    return float(np.mean([r.marked and r.payload == payload for r in results]))


def false_positives(trials: int, rng: np.random.Generator, extra: list[np.ndarray]) -> dict:
    """``trials`` unmarked images of many sizes; how many ``detect`` calls marked, and scores."""
    photos = _load_photos(PHOTOS) + _load_photos(GREY_PHOTOS)
    scores, marked, crc = [], 0, 0
    for _ in tqdm(range(trials), desc="false positives", leave=False):
        if extra and rng.random() < 0.2:
            im = extra[int(rng.integers(len(extra)))]
        else:
            im = photos[int(rng.integers(len(photos)))]
        h, w = im.shape[:2]
        ch = int(rng.integers(min(32, h), h + 1))
        cw = int(np.clip(ch * rng.uniform(0.75, 1.33), min(32, w), w))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        side = int(rng.integers(32, 513))
        scale = side / max(ch, cw)
        size = (max(32, round(cw * scale)), max(32, round(ch * scale)))
        img = np.asarray(Image.fromarray(im[y : y + ch, x : x + cw]).resize(size))
        if rng.random() < 0.3:
            img = jpeg(img, int(rng.integers(50, 95)))
        r = detect(img)
        marked += r.marked
        crc += r.crc_ok
        scores.append(r.score)
    return {
        "trials": trials,
        "false_positives": int(marked),
        "crc_passes": int(crc),
        "scores": scores,
    }


def _times_ms(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(median, fastest) ms. On a shared 2-core VM the median carries other people's load;
    the fastest call is the cost of the code itself."""
    fn()
    t = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        t.append(1000 * (time.perf_counter() - t0))
    return float(np.median(t)), float(np.min(t))


def costs(frame128: np.ndarray, payload: Payload, repeats: int) -> dict:
    mark = Watermark(payload)
    out = {}
    for size in (128, 256):
        f = upscale([frame128], size)[0] if size != 128 else frame128
        marked = mark.embed(f)
        out[f"embed_{size}_ms"] = _times_ms(lambda f=f: mark.embed(f), repeats)
        out[f"detect_{size}_ms"] = _times_ms(lambda m=marked: detect(m), repeats)
    return out


def run(
    out: Path,
    pack: Path | None = None,
    frames: int = 64,
    fp_trials: int = 1500,
    repeats: int = 200,
    seed: int = 0,
) -> dict:
    """Every figure; ``pack=None`` exports the committed demo student first (about a minute)."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    if pack is None:
        from talkinghead.pipeline import DEFAULT_STUDENT, export_pack, weights_path

        pack = export_pack(weights_path(DEFAULT_STUDENT), out / "pack", ["int8"], progress=False)
    avatar, payload = avatar_frames(Path(pack), frames)
    sets = {
        "avatar 128 px": avatar,
        "avatar 256 px": upscale(avatar, 256),
        "photo 128 px": photo_crops(128, frames, rng),
        "photo 256 px": photo_crops(256, frames, rng),
    }
    res: dict = {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "payload": {"pack_id": f"{payload.pack_id:06x}", "version": payload.version_str},
        "score_min": SCORE_MIN,
        "robustness": {
            name: robustness(fs, payload) for name, fs in tqdm(sets.items(), desc="robustness")
        },
        "false_positives": false_positives(fp_trials, rng, avatar),
        "cost": costs(avatar[0], payload, repeats),
    }
    (out / "provenance.json").write_text(json.dumps(res, indent=1))
    plot(res, out / "provenance.png")
    return res


def plot(res: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.5))
    sets = list(res["robustness"])
    width = 0.8 / len(sets)
    for i, name in enumerate(sets):
        rates = [100 * res["robustness"][name][a]["rate"] for a in ATTACKS]
        ax1.bar(np.arange(len(ATTACKS)) + i * width, rates, width, label=name)
    ax1.axhline(99, color="k", lw=0.8, ls="--")
    ax1.set_xticks(np.arange(len(ATTACKS)) + 0.4 - width / 2, list(ATTACKS), rotation=20)
    ax1.set_ylabel("frames detected with the right payload (%)")
    ax1.set_ylim(0, 105)
    ax1.legend(fontsize=8, loc="lower left")
    ax1.set_title("robustness (dashed: 99 %)")
    h1 = [s for r in res["robustness"].values() for a in SPEC_ATTACKS for s in r[a]["scores"]]
    h0 = res["false_positives"]["scores"]
    bins = np.linspace(min(h0 + h1) - 0.02, 1.0, 60)
    ax2.hist(h0, bins, alpha=0.6, label=f"unmarked images ({len(h0)})", density=True)
    ax2.hist(h1, bins, alpha=0.6, label="marked, after JPEG / resize / H.264", density=True)
    ax2.axvline(res["score_min"], color="k", lw=0.8, ls="--", label="SCORE_MIN")
    ax2.set_xlabel("score (correlation with the decoded codeword)")
    ax2.legend(fontsize=8)
    ax2.set_title("scores: a frame is marked when its CRC holds and score >= SCORE_MIN")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown(res: dict) -> str:
    lines = [
        f"Machine: {res['machine']}. Payload: pack id {res['payload']['pack_id']}, "
        f"version {res['payload']['version']}.",
        "",
        "| frames | n | PSNR min / mean (dB) | " + " | ".join(ATTACKS) + " |",
        "|---|---|---|" + "---|" * len(ATTACKS),
    ]
    for name, r in res["robustness"].items():
        rates = " | ".join(f"{100 * r[a]['rate']:.1f} %" for a in ATTACKS)
        lines.append(
            f"| {name} | {r['frames']} | {r['psnr_min_db']:.2f} / {r['psnr_mean_db']:.2f} | {rates} |"
        )
    lines += [
        "",
        f"Clips of {CLIP} frames (soft bits summed, as `verify-media` decides for a video):",
        "",
        "| frames | clips | " + " | ".join(ATTACKS) + " |",
        "|---|---|" + "---|" * len(ATTACKS),
    ]
    for name, r in res["robustness"].items():
        cells = [r[a]["clip_rate"] for a in ATTACKS]
        rates = " | ".join("-" if c is None else f"{100 * c:.1f} %" for c in cells)
        lines.append(f"| {name} | {r['frames'] // CLIP} | {rates} |")
    fp = res["false_positives"]
    c = res["cost"]
    lines += [
        "",
        "| figure | value |",
        "|---|---|",
        f"| false positives on unmarked images | {fp['false_positives']} / {fp['trials']} "
        f"({100 * fp['false_positives'] / fp['trials']:.2f} %) |",
        f"| unmarked images whose CRC passed by chance | {fp['crc_passes']} / {fp['trials']} |",
        f"| highest score of an unmarked image | {max(fp['scores']):.3f} (SCORE_MIN {res['score_min']}) |",
    ]
    for size in (128, 256):
        for what in ("embed", "detect"):
            med, best = c[f"{what}_{size}_ms"]
            lines.append(
                f"| {what}, {size} px frame, median / fastest | {med:.2f} / {best:.2f} ms |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="out/provenance")
    p.add_argument("--pack", help="an exported pack (default: export the demo student)")
    p.add_argument("--frames", type=int, default=64, help="frames per set (default 64)")
    p.add_argument("--fp-trials", type=int, default=1500, help="unmarked images (default 1500)")
    p.add_argument("--repeats", type=int, default=200, help="timed calls per cost figure")
    args = p.parse_args(argv)
    res = run(Path(args.out), args.pack, args.frames, args.fp_trials, args.repeats)
    print(markdown(res))
    print(f"\nplot: {Path(args.out) / 'provenance.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
