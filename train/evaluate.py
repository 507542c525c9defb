"""Few-shot evaluation of a teacher by self-reenactment (Zakharov et al. 2019, section 4).

For each identity: enrol it from K shots (FF or FT mode), render held-out frames of the
same person from their landmarks, and compare with the real frames:

- PSNR (dB) and SSIM on uint8 RGB;
- CSIM: cosine similarity of dlib's ResNet face descriptors (``face-recognition-models``);
- landmark error: the project's tracker run on the output, mean point distance over the
  outer-eye-corner distance (NME), against the driving landmarks;
- FID per (mode, K): Fréchet distance of InceptionV3 pool3 features
  (:mod:`talkinghead.train.fid`) of all real test frames against all generated ones. It
  needs a local Inception weights file (``EvalConfig.inception_weights``); without one
  the report says ``"fid": null`` with a note. Over a handful of frames FID is biased
  upward and only comparable between runs with the same number of frames (see
  ``docs/training.md``).

Identities come from photos (pseudo-videos: shots from one clip, test frames from another)
or from preprocessed shards (the first frames of each video are shots, the last are tests).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from talkinghead.errors import InvalidInputError, ModelAssetError, NoFaceError
from talkinghead.models.teacher import Teacher
from talkinghead.sdk.rasterize import rasterize_landmarks
from talkinghead.sdk.tensors import from_model_output, to_model_input
from talkinghead.train.data import VideoSet
from talkinghead.train.fid import CONVENTIONS, inception_features, load_inception
from talkinghead.train.finetune import FinetuneConfig, enrol_feed_forward, enrol_fine_tuned
from talkinghead.train.report import save_grid

log = logging.getLogger(__name__)

FID_NOTE = (
    "FID: not computed (no Inception weights file given; pass --inception-weights FILE, "
    "see docs/training.md)"
)
FID_SMALL_N_NOTE = (
    "FID over {n_real} real and {n_fake} generated frames per (mode, K), InceptionV3 pool3, "
    "{convention!r} convention. Biased upward at small N: compare only runs with equal N "
    "and the same weights; published figures use thousands of frames."
)
MODES = ("ff", "ft")


@dataclass
class Clip:
    """One identity: shot frames to enrol from and test frames to reproduce.

    Frames (N, S, S, 3) uint8 RGB; landmarks (N, 68, 2) float32, crop px.
    """

    name: str
    shot_frames: np.ndarray
    shot_lms: np.ndarray
    test_frames: np.ndarray
    test_lms: np.ndarray


@dataclass
class EvalConfig:
    shots: tuple[int, ...] = (1, 8, 32)
    modes: tuple[str, ...] = ("ft",)
    ft_steps: int = 40
    ft_batch: int = 4
    test_frames: int = 8
    seed: int = 0
    csim: bool = True
    landmark_error: bool = True
    inception_weights: str | None = None  # local file; None: FID is not computed
    fid_convention: str = "fid"  # "fid" or "torchvision", see talkinghead.train.fid

    def validate(self) -> None:
        if not self.shots or min(self.shots) < 1:
            raise InvalidInputError(f"shots must be positive integers, got {self.shots}")
        if not self.modes or set(self.modes) - set(MODES):
            raise InvalidInputError(f"modes must be among {MODES}, got {self.modes}")
        if self.test_frames < 1 or self.ft_steps < 0:
            raise InvalidInputError("test_frames must be >= 1 and ft_steps >= 0")
        if self.fid_convention not in CONVENTIONS:
            raise InvalidInputError(
                f"fid_convention must be one of {CONVENTIONS}, got {self.fid_convention!r}"
            )


# --- metrics -------------------------------------------------------------------------


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Mean per-image PSNR (dB) of uint8 images (N, H, W, 3); identical images give inf."""
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    mse = d.reshape(len(a), -1).mean(axis=1)
    with np.errstate(divide="ignore"):
        return float(np.mean(10 * np.log10(255.0**2 / mse)))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of uint8 images (N, H, W, 3) (Gaussian-free 7x7 window, per channel)."""
    from skimage.metrics import structural_similarity

    return float(
        np.mean(
            [
                structural_similarity(x, y, channel_axis=2, data_range=255)
                for x, y in zip(a, b, strict=True)
            ]
        )
    )


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Fréchet distance of two Gaussians: |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))."""
    from scipy import linalg

    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():  # singular product: nudge the diagonals
        eps = np.eye(len(mu1)) * 1e-6
        covmean = linalg.sqrtm((sigma1 + eps) @ (sigma2 + eps))
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean.real))


def fid_from_features(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between feature sets (N, D) and (M, D), N, M >= 2.

    With fewer samples than dimensions (a few frames of 2048-d features) the covariances
    are low-rank and sqrtm of their D x D product is slow and inaccurate. There
    Tr((S_a S_b)^(1/2)) is computed exactly as the sum of singular values of the (N, M)
    product of the centred sets, over sqrt((N - 1)(M - 1)).
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise InvalidInputError(f"need two (N>=2, D) feature sets, got {a.shape} and {b.shape}")
    a, b = a.astype(np.float64), b.astype(np.float64)
    (n, d), m = a.shape, len(b)
    if max(n, m) >= d:
        return frechet_distance(
            a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
        )
    ca, cb = a - a.mean(0), b - b.mean(0)
    tr_covmean = np.linalg.svd(ca @ cb.T, compute_uv=False).sum() / np.sqrt((n - 1) * (m - 1))
    diff = a.mean(0) - b.mean(0)
    traces = (ca**2).sum() / (n - 1) + (cb**2).sum() / (m - 1)
    return float(diff @ diff + traces - 2 * tr_covmean)


def inter_ocular_nme(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean point error of (68, 2) landmarks over the outer eye corners' distance."""
    iod = float(np.linalg.norm(target[36] - target[45]))
    return float(np.linalg.norm(pred - target, axis=1).mean() / max(iod, 1e-6))


class IdentityDescriptor:
    """dlib's 128-d ResNet face descriptor, aligned by its 5-point predictor.

    The face box comes from known landmarks (the driving ones for a generated frame), so
    no detector decides where to look.
    """

    def __init__(self) -> None:
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise ModelAssetError("CSIM needs the face-recognition-models package (eval extra)")
        # Its __init__ needs pkg_resources, so the files are found without importing it.
        base = Path(list(spec.submodule_search_locations)[0]) / "models"
        import dlib

        self._dlib = dlib
        self.shape = dlib.shape_predictor(str(base / "shape_predictor_5_face_landmarks.dat"))
        self.net = dlib.face_recognition_model_v1(
            str(base / "dlib_face_recognition_resnet_model_v1.dat")
        )

    def __call__(self, image: np.ndarray, lms68: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB and its (68, 2) px landmarks -> (128,) float64."""
        (x0, y0), (x1, y1) = lms68.min(0), lms68.max(0)
        rect = self._dlib.rectangle(int(x0), int(y0), int(round(x1)), int(round(y1)))
        img = np.ascontiguousarray(image)
        return np.asarray(self.net.compute_face_descriptor(img, self.shape(img, rect)))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


DLIB_SAME_PERSON = 0.6  # dlib's published distance threshold for its 128-d descriptor


def rank_identity(desc: np.ndarray, own: str, gallery: dict[str, np.ndarray]) -> dict:
    """Which gallery identity a (128,) descriptor is closest to, by Euclidean distance.

    ``gallery`` maps identity names to (128,) descriptors and must hold ``own``. Returns
    ``id_dist`` (distance to ``own``), ``id_rank`` (1 when ``own`` is the nearest),
    ``id_nearest`` (the nearest other identity and its distance) and ``id_match``
    (``id_dist`` under dlib's same-person threshold, 0.6).
    """
    if own not in gallery:
        raise InvalidInputError(f"identity {own!r} is not in the gallery")
    dists = {name: float(np.linalg.norm(desc - d)) for name, d in gallery.items()}
    ranked = sorted(dists, key=dists.get)
    other = next((n for n in ranked if n != own), None)
    return {
        "id_dist": dists[own],
        "id_rank": ranked.index(own) + 1,
        "id_of": len(ranked),
        "id_nearest": None if other is None else [other, dists[other]],
        "id_match": dists[own] < DLIB_SAME_PERSON,
    }


def face_descriptor(ident: IdentityDescriptor, frames: np.ndarray, lms: np.ndarray) -> np.ndarray:
    """Mean (128,) descriptor of (N, S, S, 3) uint8 frames with (N, 68, 2) landmarks."""
    return np.mean([ident(f, lm) for f, lm in zip(frames, lms, strict=True)], axis=0)


# --- identities ------------------------------------------------------------------------


def gallery_crops(photos: list[str], size: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Name -> ((size, size, 3) uint8 crop, (68, 2) landmarks) for each photo.

    Photos are files or built-in names (see :func:`talkinghead.sdk.photos.load_photo`);
    ``pypi:train`` stands for every training face of the PyPI set. A photo with no face
    raises NoFaceError naming it.
    """
    from talkinghead.sdk.face_photos import PREFIX, face_photos
    from talkinghead.sdk.photos import load_photo, track_and_crop
    from talkinghead.sdk.tracker import FaceTracker

    images: dict[str, np.ndarray] = {}
    for p in photos:
        if p == f"{PREFIX}train":
            images.update(face_photos("train"))
        else:
            name, image = load_photo(p)
            images[name] = image
    out = {}
    with FaceTracker.create_from_options() as tracker:
        for name, image in images.items():
            try:
                out[name] = track_and_crop(image, size, tracker)
            except NoFaceError as exc:
                raise NoFaceError(f"gallery photo {name}: {exc}") from exc
    return out


def photo_clip(
    name: str, image: np.ndarray, size: int, shots: int, tests: int, seed: int = 0
) -> Clip:
    """A photo as an identity: shots from one pseudo-video, tests from another (every 4th
    frame of a longer clip, so the test poses vary)."""
    from talkinghead.sdk.photos import track_and_crop
    from talkinghead.train.pseudo_video import make_pseudo_video

    crop, lm = track_and_crop(image, size)
    sf, sl = make_pseudo_video(crop, lm, shots, seed=seed * 2 + 1)
    tf, tl = make_pseudo_video(crop, lm, 4 * tests, seed=seed * 2 + 2)
    return Clip(name, sf, sl, tf[::4], tl[::4])


def shard_clips(videos: VideoSet, tests: int) -> list[Clip]:
    """Each shard video as an identity: its last ``tests`` frames are the test frames."""
    t = videos.frames.shape[1]
    if tests >= t:
        raise InvalidInputError(f"{tests} test frames leave no shots in videos of {t} frames")
    return [
        Clip(vid, f[: t - tests], lm[: t - tests], f[t - tests :], lm[t - tests :])
        for vid, f, lm in zip(videos.video_ids, videos.frames, videos.landmarks, strict=True)
    ]


def _inputs(frames: np.ndarray, lms: np.ndarray, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    images = np.stack([rasterize_landmarks(lm, size) for lm in lms])
    return torch.from_numpy(to_model_input(frames)), torch.from_numpy(to_model_input(images))


def _landmark_errors(images: np.ndarray, lms: np.ndarray, tracker) -> tuple[float, int]:
    errs, failed = [], 0
    for img, lm in zip(images, lms, strict=True):
        try:
            errs.append(inter_ocular_nme(tracker.track_image(img).landmarks68, lm))
        except NoFaceError:
            failed += 1
    return (float(np.mean(errs)) if errs else float("nan")), failed


# --- the evaluation ------------------------------------------------------------------------


def evaluate(
    teacher: Teacher,
    clips: list[Clip],
    cfg: EvalConfig,
    out_dir: str | Path,
    progress: bool = True,
    gallery: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict:
    """Enrol every clip from each K in ``cfg.shots`` in each mode and score the test frames.

    With CSIM on, each output is also ranked among known identities by dlib descriptor
    distance (:func:`rank_identity`): every clip's real test frames, plus ``gallery``
    (name -> (S, S, 3) uint8 face crop and its (68, 2) landmarks), e.g. the training faces.
    Rank 1 means the output looks most like the person it should be.

    Writes ``report.json``, ``metrics.png`` (PSNR / SSIM / CSIM against K) and one
    ``samples_<clip>.png`` per clip (rows: landmarks, real, then one row per mode and K).
    With ``cfg.inception_weights``, ``report["fid"]`` lists one FID per (mode, K) over all
    clips' test frames. Returns the report.

    Raises:
        InvalidInputError: a clip has fewer shots than a K, or FID is asked for with fewer
            than 2 test frames in all.
        CheckpointError: the Inception weights file is missing, corrupt or does not fit.
    """
    cfg.validate()
    size = teacher.cfg.resolution
    for c in clips:
        if c.shot_frames.shape[1] != size or c.test_frames.shape[1] != size:
            raise InvalidInputError(
                f"clip {c.name} is {c.shot_frames.shape[1]} px; teacher is {size}"
            )
        if max(cfg.shots) > len(c.shot_frames):
            raise InvalidInputError(
                f"K={max(cfg.shots)} needs {max(cfg.shots)} shot frames; "
                f"clip {c.name} has {len(c.shot_frames)}"
            )
    inception = None
    if cfg.inception_weights:
        n_test = sum(min(cfg.test_frames, len(c.test_frames)) for c in clips)
        if n_test < 2:
            raise InvalidInputError(f"FID needs at least 2 test frames in all, got {n_test}")
        inception = load_inception(cfg.inception_weights, cfg.fid_convention)
    else:
        log.warning(FID_NOTE)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ident = IdentityDescriptor() if cfg.csim else None
    tracker = None
    if cfg.landmark_error:
        from talkinghead.sdk.tracker import FaceTracker

        tracker = FaceTracker.create_from_options()
    report: dict = {
        "teacher": teacher.cfg.name,
        "resolution": size,
        "fid": None,
        "fid_note": FID_NOTE,
    }
    report["config"] = {k: list(v) if isinstance(v, tuple) else v for k, v in vars(cfg).items()}
    results, reference = [], {}
    known: dict[str, np.ndarray] = {}
    if ident:
        for name, (crop, lm) in (gallery or {}).items():
            known[name] = ident(crop, lm)
        for clip in clips:
            n = min(cfg.test_frames, len(clip.test_frames))
            known[clip.name] = face_descriptor(ident, clip.test_frames[:n], clip.test_lms[:n])
        report["gallery"] = sorted(known)
    real_feats: list[np.ndarray] = []
    fake_feats: dict[tuple[str, int], list[np.ndarray]] = {}
    try:
        for clip in clips:
            n = min(cfg.test_frames, len(clip.test_frames))
            real, test_lms = clip.test_frames[:n], clip.test_lms[:n]
            _, test_in = _inputs(real, test_lms, size)
            real_desc = (
                [ident(f, lm) for f, lm in zip(real, test_lms, strict=True)] if ident else []
            )
            ref = {}
            if tracker:
                ref["lm_nme_real"], ref["lm_failed_real"] = _landmark_errors(
                    real, test_lms, tracker
                )
            reference[clip.name] = ref
            if inception:
                real_feats.append(inception_features(inception, real, progress=progress))
            rows = [from_model_output(test_in.numpy()), real]
            jobs = [(mode, k) for mode in cfg.modes for k in cfg.shots]
            for mode, k in tqdm(jobs, desc=f"evaluate {clip.name}", disable=not progress):
                pick = np.linspace(0, len(clip.shot_frames) - 1, k).round().astype(int)
                shot_f, shot_l = _inputs(clip.shot_frames[pick], clip.shot_lms[pick], size)
                t0 = time.perf_counter()
                if mode == "ff":
                    model = enrol_feed_forward(teacher, shot_f, shot_l)
                else:
                    ft = FinetuneConfig(steps=cfg.ft_steps, batch_size=cfg.ft_batch, seed=cfg.seed)
                    model = enrol_fine_tuned(teacher, shot_f, shot_l, ft, progress=False)
                with torch.no_grad():
                    fake = from_model_output(model(test_in).numpy())
                row = {
                    "clip": clip.name,
                    "mode": mode,
                    "k": k,
                    "enrol_s": round(time.perf_counter() - t0, 2),
                    "psnr_db": psnr(fake, real),
                    "ssim": ssim(fake, real),
                }
                if ident:
                    sims = [
                        cosine(ident(f, lm), d)
                        for f, lm, d in zip(fake, test_lms, real_desc, strict=True)
                    ]
                    row["csim"] = float(np.mean(sims))
                    row.update(
                        rank_identity(face_descriptor(ident, fake, test_lms), clip.name, known)
                    )
                if tracker:
                    row["lm_nme"], row["lm_failed"] = _landmark_errors(fake, test_lms, tracker)
                if inception:
                    feats = inception_features(inception, fake, progress=False)
                    fake_feats.setdefault((mode, k), []).append(feats)
                results.append(row)
                rows.append(fake)
                log.info("%s %s K=%d: %s", clip.name, mode, k, row)
            save_grid(rows, out / f"samples_{clip.name.replace('/', '_')}.png")
    finally:
        if tracker:
            tracker.close()
    if inception:
        report["fid"], report["fid_note"] = _fid_scores(real_feats, fake_feats, cfg.fid_convention)
        log.info(report["fid_note"])
    report["results"], report["reference"] = results, reference
    (out / "report.json").write_text(json.dumps(report, indent=2))
    plot_metrics(results, out / "metrics.png")
    return report


def _fid_scores(
    real_feats: list[np.ndarray],
    fake_feats: dict[tuple[str, int], list[np.ndarray]],
    convention: str,
) -> tuple[list[dict], str]:
    """One FID per (mode, K), pooling every clip's (n, 2048) features; and its note."""
    real = np.concatenate(real_feats)
    scores = []
    for (mode, k), parts in fake_feats.items():
        fake = np.concatenate(parts)
        fid = fid_from_features(real, fake)
        scores.append({"mode": mode, "k": k, "fid": fid, "n_real": len(real), "n_fake": len(fake)})
        log.info("FID %s K=%d: %.2f (%d frames)", mode, k, fid, len(fake))
    note = FID_SMALL_N_NOTE.format(
        n_real=len(real), n_fake=scores[0]["n_fake"], convention=convention
    )
    return scores, note


def plot_metrics(results: list[dict], out_png: str | Path) -> Path:
    """PSNR, SSIM and CSIM against K (log axis), one line per clip and mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in ("psnr_db", "ssim", "csim") if results and k in results[0]]
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(3.6 * max(len(keys), 1), 3))
    axes = np.atleast_1d(axes)
    lines = sorted({(r["clip"], r["mode"]) for r in results})
    for ax, key in zip(axes, keys, strict=False):
        for clip, mode in lines:
            rs = sorted(
                (r for r in results if (r["clip"], r["mode"]) == (clip, mode)), key=lambda r: r["k"]
            )
            ax.plot(
                [r["k"] for r in rs], [r[key] for r in rs], "o-", label=f"{clip} {mode.upper()}"
            )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("shots K")
        ax.set_title(key)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return Path(out_png)
