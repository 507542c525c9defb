"""Tracking figures: latency per mode and size, jitter and lag of smoothing, NME vs dlib.

    python -m talkinghead.benchmarks.tracking [--quick] [--plot out/tracking/jitter.png]

- latency: median ms per frame of MediaPipe FaceLandmarker plus this project's wrapper,
  in IMAGE, VIDEO and LIVE_STREAM mode (call to callback), on the astronaut photo resized
  to 256, 512 and 1080 px.
- jitter: a still video made by repeating one photo with fresh pixel noise and JPEG
  compression each frame; the figure is the mean over the 68 points of the std of each
  point over time, px, with our One Euro smoothing on and off, with one face (MediaPipe
  smooths too) and with ``num_faces=2`` (only ours smooths).
- lag: the same photo sliding sideways at constant speed; the mean distance between the
  smoothed and unsmoothed 68 points once the motion is steady, px.
- NME of the mapped 68 points against dlib's 68-point predictor (needs the ``eval`` extra),
  from :mod:`talkinghead.benchmarks.landmark_accuracy`.

:func:`measure` returns everything as a dict; ``main`` prints Markdown tables.
"""

from __future__ import annotations

import argparse
import io
import platform
import statistics
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

SIZES_PX = (256, 512, 1080)
FPS = 30


def _resized(image: np.ndarray, side: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((side, side), Image.Resampling.BILINEAR))


def _options(mode, **kw):
    from talkinghead.sdk.tracker import FaceTrackerOptions

    return FaceTrackerOptions(running_mode=mode, **kw)


def latency_ms(image: np.ndarray, frames: int) -> dict[str, float]:
    """Median ms per frame in each running mode for one image (after 3 warm-up frames)."""
    from talkinghead.sdk.tracker import FaceTracker, RunningMode

    out = {}
    with FaceTracker.create_from_options(_options(RunningMode.IMAGE)) as t:
        times = []
        for i in range(frames + 3):
            t0 = time.perf_counter()
            t.detect(image)
            if i >= 3:
                times.append(time.perf_counter() - t0)
        out["IMAGE"] = 1000 * statistics.median(times)
    with FaceTracker.create_from_options(_options(RunningMode.VIDEO)) as t:
        times = []
        for i in range(frames + 3):
            t0 = time.perf_counter()
            t.detect_for_video(image, i * 1000 // FPS)
            if i >= 3:
                times.append(time.perf_counter() - t0)
        out["VIDEO"] = 1000 * statistics.median(times)

    sent: dict[int, float] = {}
    got: list[float] = []
    done = threading.Event()

    def on_result(faces, img, ts) -> None:
        got.append(time.perf_counter() - sent[ts])
        done.set()

    with FaceTracker.create_from_options(
        _options(RunningMode.LIVE_STREAM, result_callback=on_result)
    ) as t:
        for i in range(frames + 3):
            done.clear()
            ts = i * 1000 // FPS
            sent[ts] = time.perf_counter()
            t.detect_async(image, ts)
            done.wait(5.0)  # one frame in flight: call-to-callback latency, no queueing
    out["LIVE_STREAM"] = 1000 * statistics.median(got[3:])
    return out


def noisy_still(image: np.ndarray, frames: int, seed: int = 0) -> list[np.ndarray]:
    """``frames`` copies of ``image`` with Gaussian noise (sigma 3) and JPEG q=80 each."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(frames):
        noisy = np.clip(image + rng.normal(0, 3.0, image.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(noisy).save(buf, format="JPEG", quality=80)
        out.append(np.asarray(Image.open(buf).convert("RGB")))
    return out


def track68(frames: list[np.ndarray], smoothing: bool, num_faces: int = 1) -> np.ndarray:
    """VIDEO-mode 68 points of the first track in each frame: (T, 68, 2) px."""
    from talkinghead.sdk.smoothing import OneEuroParams
    from talkinghead.sdk.tracker import FaceTracker, RunningMode

    opts = _options(
        RunningMode.VIDEO,
        num_faces=num_faces,
        smoothing=OneEuroParams() if smoothing else None,
    )
    out = []
    with FaceTracker.create_from_options(opts) as t:
        for i, f in enumerate(frames):
            out.append(t.detect_for_video(f, i * 1000 // FPS)[0].landmarks68)
    return np.stack(out)


def jitter_px(points: np.ndarray, skip: int = 5) -> float:
    """Mean over points of the std over time, px; the first ``skip`` frames settle the filter."""
    return float(points[skip:].std(axis=0).mean())


def sliding(image: np.ndarray, frames: int, px_per_frame: float) -> list[np.ndarray]:
    """The image shifted right by ``px_per_frame`` more each frame (edge pixels repeated)."""
    out = []
    for i in range(frames):
        shift = int(round(i * px_per_frame))
        out.append(np.pad(image, ((0, 0), (shift, 0), (0, 0)), mode="edge")[:, : image.shape[1]])
    return out


def measure(quick: bool = False, progress: bool = True, plot: Path | None = None) -> dict:
    """All tracking figures. ``quick``: fewer frames, no dlib variants (about 20 s here)."""
    from skimage import data

    photo = data.astronaut()
    n_lat = 10 if quick else 40
    n_jit = 30 if quick else 90
    result: dict = {"machine": f"{platform.machine()}, {platform.processor() or 'cpu'}"}

    lat = {}
    for side in tqdm(SIZES_PX, desc="latency", disable=not progress):
        lat[side] = latency_ms(_resized(photo, side), n_lat)
    result["latency_ms"] = lat

    still = noisy_still(photo, n_jit)
    jit = {}
    for faces in tqdm((1, 2), desc="jitter", disable=not progress):
        raw = track68(still, smoothing=False, num_faces=faces)
        smooth = track68(still, smoothing=True, num_faces=faces)
        jit[f"num_faces={faces}"] = {"off": jitter_px(raw), "on": jitter_px(smooth)}
    result["jitter_px"] = jit

    slide = sliding(photo, n_jit // 2, px_per_frame=2.0)
    raw, smooth = track68(slide, False, 2), track68(slide, True, 2)
    steady = slice(len(slide) // 3, None)
    result["lag_px_at_60px_per_s"] = float(
        np.linalg.norm(smooth[steady] - raw[steady], axis=2).mean()
    )

    try:
        from talkinghead.benchmarks.landmark_accuracy import measure as nme_measure

        acc = nme_measure(quick=True, progress=False)
        result["nme_vs_dlib"] = {"mean": acc["nme"], **acc["nme_per_region"]}
    except ImportError as exc:  # eval extra missing: the other figures still stand
        result["nme_vs_dlib"] = {"error": str(exc)}

    if plot is not None:
        _plot_jitter(still, plot)
        result["plot"] = str(plot)
    return result


def _plot_jitter(still: list[np.ndarray], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    raw, smooth = track68(still, False, 2), track68(still, True, 2)
    t_ms = np.arange(len(still)) * 1000 / FPS
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for pts, label in ((raw, "smoothing off"), (smooth, "One Euro (defaults)")):
        ax.plot(t_ms, pts[:, 8, 1] - raw[:, 8, 1].mean(), label=label)
    ax.set_xlabel("time, ms")
    ax.set_ylabel("chin y - mean, px")
    ax.set_title("Still photo with per-frame noise + JPEG, num_faces=2 (512 px)")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def to_markdown(r: dict) -> str:
    lines = [f"machine: {r['machine']}", "", "| input | IMAGE ms | VIDEO ms | LIVE_STREAM ms |"]
    lines.append("|---|---|---|---|")
    for side, v in r["latency_ms"].items():
        lines.append(
            f"| {side} px | {v['IMAGE']:.1f} | {v['VIDEO']:.1f} | {v['LIVE_STREAM']:.1f} |"
        )
    lines += [
        "",
        "| jitter, still video (px, std) | smoothing off | smoothing on |",
        "|---|---|---|",
    ]
    for k, v in r["jitter_px"].items():
        lines.append(f"| {k} | {v['off']:.3f} | {v['on']:.3f} |")
    lines += ["", f"lag of smoothing at 60 px/s (px): {r['lag_px_at_60px_per_s']:.2f}"]
    nme = r["nme_vs_dlib"]
    if "mean" in nme:
        lines += ["", "| NME vs dlib (% of inter-ocular) | value |", "|---|---|"]
        lines += [f"| {k} | {100 * v:.2f} |" for k, v in nme.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--plot", type=Path, help="write the jitter plot (PNG) here")
    args = ap.parse_args(argv)
    print(to_markdown(measure(quick=args.quick, plot=args.plot)))


if __name__ == "__main__":
    main()
