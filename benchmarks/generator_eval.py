"""Is it this person, sharp, and moving like the driver? The generator on faces it never saw.

    python -m talkinghead.benchmarks.generator_eval            # writes docs/img + docs JSON

Cross-reenactment: each held-out source photo (never in any training step) is driven by
a video of another person. The driving videos are MP4 files made from real photos of
other people (scripted talking, blinks, smiles and head turns through the project's
pseudo-video warp, with a painted mouth interior), tracked back by MediaPipe like any
video: no real talking-head video is reachable offline.

Three generators on the same sources and drivers:
- ``old``: the direct-synthesis teacher (``teacher-xs``, 128 px), feed-forward enrolment
  from the one photo, driven by the 68 landmarks (the previous default route);
- ``warp``: the mesh warp alone (no refiner);
- ``new``: warp and refine, the int8 refiner through ExecuTorch, 256 px (the demo's path).

Measures, per frame and over each clip:
- likeness: dlib's 128-d descriptor distance to the source photo (same person < 0.6),
  and the rank of the source among every identity of the gallery;
- sharpness: variance of the Laplacian over the face (inner landmark box) relative to the
  source photo's, at the same face size;
- motion: Pearson correlation between driver and output of the mouth opening and the head
  yaw, both measured by the MediaPipe tracker on the two videos.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SOURCES = ("grace_hopper", "pypi:biden")
DRIVERS = ("astronaut", "pypi:obama")
GALLERY = ("astronaut", "grace_hopper", "pypi:train", "pypi:biden")
FRAMES = 100


def _driver_clip(name: str, folder: Path, frames: int, seed: int) -> Path:
    """A talking MP4 of another person's real photo, 256 px."""
    from talkinghead.sdk.media import write_mp4
    from talkinghead.sdk.photos import load_photo, track_and_crop
    from talkinghead.train.pseudo_video import make_pseudo_video

    _, image = load_photo(name)
    crop, lm = track_and_crop(image, 256)
    video, _ = make_pseudo_video(crop, lm, frames, seed=seed)
    path = folder / f"driver-{name.replace(':', '_')}.mp4"
    return write_mp4(video, path, label=False)


def _track_measures(frames: np.ndarray) -> dict[str, np.ndarray]:
    """Per frame, by the tracker: mouth opening (inner lip gap / eye-corner distance), yaw."""
    from talkinghead.sdk.tracker import FaceTracker, FaceTrackerOptions, RunningMode

    mouth, yaw = [], []
    opts = FaceTrackerOptions(running_mode=RunningMode.VIDEO, smoothing=None)
    with FaceTracker.create_from_options(opts) as tracker:
        for t, f in enumerate(frames):
            faces = tracker.detect_for_video(np.ascontiguousarray(f), t * 40)
            if not faces:
                mouth.append(np.nan)
                yaw.append(np.nan)
                continue
            m = faces[0].landmarks
            eyes = np.linalg.norm(m[33, :2] - m[263, :2])
            mouth.append(float(np.linalg.norm(m[13, :2] - m[14, :2]) / max(eyes, 1e-6)))
            pose = faces[0].head_pose
            yaw.append(np.nan if pose is None else pose[0])
    return {"mouth": np.array(mouth), "yaw": np.array(yaw)}


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def face_sharpness(image: np.ndarray, lms68: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image over the eyes, brows and nose.

    The box runs from the brows to the nose tip between the eyes' outer corners: the
    photo's own detail (skin, lashes, brows), and not the mouth, whose opening a driver
    changes (a dark opening has strong edges of its own and would count as detail).
    """
    from scipy.ndimage import laplace

    grey = image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    x0, x1 = lms68[36, 0], lms68[45, 0]
    y0, y1 = lms68[17:27, 1].min(), lms68[33, 1]
    x0, y0 = max(int(min(x0, x1)), 0), max(int(y0), 0)
    x1, y1 = min(int(max(lms68[36, 0], lms68[45, 0])), image.shape[1]), min(int(y1), image.shape[0])
    if x1 - x0 < 4 or y1 - y0 < 4:
        return float("nan")
    return float(laplace(grey)[y0:y1, x0:x1].var())


def _old_generator(source: str, driver68: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The direct-synthesis teacher, FF from one photo: (frames 128 px, crop, their landmarks)."""
    import torch

    from talkinghead.distill.distill import landmark_images
    from talkinghead.models.checkpoint import load_checkpoint
    from talkinghead.packs import weights_path
    from talkinghead.sdk.photos import load_photo, track_and_crop
    from talkinghead.sdk.retarget import relative_motion
    from talkinghead.sdk.tensors import from_model_output, to_model_input
    from talkinghead.train.finetune import enrol_feed_forward

    teacher = load_checkpoint(weights_path("teacher-xs.safetensors"), "teacher").eval()
    size = teacher.cfg.resolution
    _, image = load_photo(source)
    crop, neutral = track_and_crop(image, size)
    shots = torch.from_numpy(to_model_input(crop[None]))
    enrolled = enrol_feed_forward(teacher, shots, landmark_images(neutral[None], size))
    lms = relative_motion(driver68, neutral)
    with torch.no_grad():
        out = torch.cat(
            [enrolled(landmark_images(lms[i : i + 16], size)) for i in range(0, len(lms), 16)]
        )
    return from_model_output(out.numpy()), crop, lms


def evaluate_pair(source: str, driver_path: Path, ident, gallery: dict, work: Path) -> dict:
    from talkinghead.packs import export_avatar_pack
    from talkinghead.sdk.avatar import Avatar, AvatarOptions
    from talkinghead.sdk.media import read_video
    from talkinghead.sdk.mesh_motion import retarget_meshes
    from talkinghead.sdk.video_tracks import track_video
    from talkinghead.sdk.warp import landmarks68, warp_to
    from talkinghead.train.evaluate import rank_identity

    driver_frames = np.stack([f for f, _ in read_video(driver_path)])
    driver_meshes = track_video(driver_path).meshes
    pack, _ = export_avatar_pack(
        source, work / f"pack-{source.replace(':', '_')}", force=True, progress=False
    )
    # The watermark is off here: its pattern is high-frequency energy that the photo does not
    # have, and would count as sharpness. (It is on by default everywhere else.)
    opts = AvatarOptions(pack=pack, precision="int8", watermark=False)
    with Avatar.create_from_options(opts) as avatar:
        targets = retarget_meshes(driver_meshes, avatar.neutral_mesh)
        t0 = time.perf_counter()
        new = avatar.render_sequence(targets)
        render_ms = 1000 * (time.perf_counter() - t0) / len(new)
        rig = avatar._rig
        warp_only = np.stack([warp_to(rig, m).image for m in targets])
        crop = rig.source
        neutral68 = landmarks68(avatar.neutral_mesh)
    lms = np.stack([landmarks68(m) for m in targets])
    old, old_crop, old_lms = _old_generator(
        source, np.stack([landmarks68(m) for m in driver_meshes])
    )
    src_desc = ident(crop, neutral68)
    driver_measures = _track_measures(driver_frames)
    out = {
        "source": source,
        "driver": driver_path.name,
        "frames": len(new),
        "render_ms_per_frame": round(render_ms, 1),
    }
    src_sharp = face_sharpness(crop, neutral68)
    old_src_sharp = face_sharpness(old_crop, old_lms[0])
    for key, frames, frame_lms, ref_sharp in (
        ("new", new, lms, src_sharp),
        ("warp", warp_only, lms, src_sharp),
        ("old", old, old_lms, old_src_sharp),
    ):
        descs = np.stack([ident(f, lm) for f, lm in zip(frames, frame_lms, strict=True)])
        dists = np.linalg.norm(descs - src_desc, axis=1)
        ranked = rank_identity(descs.mean(0), source, {**gallery, source: src_desc})
        measures = _track_measures(frames)
        sharp = np.nanmedian(
            [face_sharpness(f, lm) for f, lm in zip(frames, frame_lms, strict=True)]
        )
        out[key] = {
            "id_dist_mean": round(float(dists.mean()), 3),
            "id_under_0.6": round(float((dists < 0.6).mean()), 3),
            "id_rank": ranked["id_rank"],
            "id_of": ranked["id_of"],
            "id_nearest_other": [ranked["id_nearest"][0], round(ranked["id_nearest"][1], 3)],
            "sharpness_ratio": round(float(sharp / max(ref_sharp, 1e-9)), 3),
            "mouth_r": round(_pearson(driver_measures["mouth"], measures["mouth"]), 3),
            "yaw_r": round(_pearson(driver_measures["yaw"], measures["yaw"]), 3),
        }
    out["_frames"] = {
        "driver": driver_frames,
        "old": old,
        "warp": warp_only,
        "new": new,
        "source": crop,
    }
    # The sheet shows the driver's widest mouth, both extremes of yaw and two frames between.
    mouth = np.nan_to_num(driver_measures["mouth"], nan=-1.0)
    yaw = np.nan_to_num(driver_measures["yaw"], nan=0.0)
    picks = {int(np.argmax(mouth)), int(np.argmin(yaw)), int(np.argmax(yaw))}
    for i in np.linspace(0, len(new) - 1, 7).astype(int)[1:-1]:
        if len(picks) < 5:
            picks.add(int(i))
    out["_picks"] = sorted(picks)
    return out


def contact_sheet(results: list[dict], path: Path, picks: int = 5) -> Path:
    """Rows per pair: source | driver frames | old | warp only | new (every frame 160 px)."""
    from PIL import Image, ImageDraw

    tile = 160

    def fit(img: np.ndarray) -> Image.Image:
        return Image.fromarray(img).resize((tile, tile), Image.Resampling.LANCZOS)

    rows = []
    for r in results:
        f = r["_frames"]
        idx = r.get("_picks") or np.linspace(5, len(f["new"]) - 1, picks).astype(int)
        for key in ("driver", "old", "warp", "new"):
            cells = [
                fit(f["source"]) if key == "driver" else Image.new("RGB", (tile, tile), "white")
            ]
            cells += [fit(f[key][i]) for i in idx]
            row = Image.new("RGB", (tile * (picks + 1) + 90, tile), "white")
            for j, c in enumerate(cells):
                row.paste(c, (90 + j * tile, 0))
            label = {
                "driver": f"{r['source']}\nsource |\ndriver",
                "old": "old\n(direct)",
                "warp": "warp\nonly",
                "new": "new\n(warp+\nrefine)",
            }[key]
            ImageDraw.Draw(row).multiline_text((4, 40), label, fill="black")
            rows.append(row)
    sheet = Image.new("RGB", (rows[0].width, tile * len(rows)), "white")
    for i, row in enumerate(rows):
        sheet.paste(row, (0, i * tile))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=FRAMES)
    ap.add_argument("--out", type=Path, default=Path("docs"))
    args = ap.parse_args(argv)
    from talkinghead.train.evaluate import IdentityDescriptor, gallery_crops

    ident = IdentityDescriptor()
    crops = gallery_crops(list(GALLERY), 256)
    gallery = {name: ident(c, lm) for name, (c, lm) in crops.items()}
    results = []
    with tempfile.TemporaryDirectory(prefix="talkinghead-eval-") as tmp:
        work = Path(tmp)
        for i, (source, driver) in enumerate(zip(SOURCES, DRIVERS, strict=True)):
            clip = _driver_clip(driver, work, args.frames, seed=11 + i)
            results.append(evaluate_pair(source, clip, ident, gallery, work))
            # the same source driven by the other person too
            other = DRIVERS[(i + 1) % len(DRIVERS)]
            clip = _driver_clip(other, work, args.frames, seed=21 + i)
            results.append(evaluate_pair(source, clip, ident, gallery, work))
    sheet = contact_sheet(results, args.out / "img" / "generator-sheet.png")
    clean = [{k: v for k, v in r.items() if not k.startswith("_")} for r in results]
    summary = {}
    for key in ("old", "warp", "new"):
        rows = [r[key] for r in clean]
        summary[key] = {
            m: round(float(np.nanmean([row[m] for row in rows])), 3)
            for m in ("id_dist_mean", "id_under_0.6", "sharpness_ratio", "mouth_r", "yaw_r")
        }
        summary[key]["own_source_nearest"] = (
            f"{sum(row['id_rank'] == 1 for row in rows)}/{len(rows)}"
        )
    (args.out / "generator-eval.json").write_text(
        json.dumps({"pairs": clean, "summary": summary}, indent=1)
    )
    print(json.dumps(summary, indent=1))
    print(f"contact sheet: {sheet}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
