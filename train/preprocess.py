"""VoxCeleb2-style videos -> training shards, with the project's own tracker.

The input tree is ``root/<identity>/<video>/<utterance>.mp4``. One training video (one row
of D's W) is one ``<identity>/<video>`` folder: the paper treats every YouTube video as a
sequence, and its utterances are pieces of it. For each utterance:

1. decode with PyAV (:func:`talkinghead.sdk.media.read_video`);
2. track evenly spaced candidate frames with ``FaceTracker`` in VIDEO mode (timestamps
   from the container), keeping the largest face's 68 landmarks;
3. crop a square around the landmarks and resize it to ``size`` px
   (:func:`talkinghead.sdk.landmarks.crop_face`: scale and shift, no rotation).

From each video's tracked frames, ``frames_per_video`` are kept (K+1 by default, evenly
spaced over the video or drawn at random), as the paper draws K+1 frames per episode.

Bad input never stops the run and is never lost silently: an unreadable or corrupt file,
a video with no face, or one with too few face frames is skipped and listed, with its
reason, in the report (``report.json`` beside the shards).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from talkinghead.errors import ImageReadError, InvalidInputError, NoFaceError
from talkinghead.sdk.landmarks import crop_face
from talkinghead.sdk.media import read_video
from talkinghead.train.data import VideoSet, write_shard

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


@dataclass
class PreprocessConfig:
    size: int = 256  # crop side, px
    frames_per_video: int = 9  # K + 1 with the paper's K = 8
    pick: str = "even"  # "even": evenly spaced over the video; "random": a random subset
    candidates_per_file: int = 32  # frames tracked per utterance (evenly spaced)
    max_decode_frames: int = 2000  # an utterance longer than this is cut (80 s at 25 fps)
    videos_per_shard: int = 64
    seed: int = 0
    tracker_model: str | None = None  # face_landmarker.task; None finds the verified one

    def validate(self) -> None:
        if self.size < 16:
            raise InvalidInputError(f"size must be at least 16 px, got {self.size}")
        if self.frames_per_video < 2:
            raise InvalidInputError(f"frames_per_video must be >= 2, got {self.frames_per_video}")
        if self.pick not in ("even", "random"):
            raise InvalidInputError(f"pick must be 'even' or 'random', got {self.pick!r}")
        if self.candidates_per_file < 1 or self.videos_per_shard < 1:
            raise InvalidInputError("candidates_per_file and videos_per_shard must be >= 1")


@dataclass
class PreprocessReport:
    """What went in, what came out, and every skipped file or video with its reason."""

    root: str
    videos_found: int = 0
    files_found: int = 0
    videos_written: int = 0
    frames_written: int = 0
    shards: list[str] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)  # {"path", "level", "reason"}

    def skip(self, path: Path | str, level: str, reason: str) -> None:
        log.warning("skipped %s %s: %s", level, path, reason)
        self.skipped.append({"path": str(path), "level": level, "reason": reason})

    def to_dict(self) -> dict:
        kinds = Counter(f"{s['level']}: {s['reason'].split(':')[0]}" for s in self.skipped)
        return {**asdict(self), "skipped_counts": dict(sorted(kinds.items()))}


def find_videos(root: str | Path) -> dict[str, list[Path]]:
    """``root/<identity>/<video>/<utterance>.mp4`` -> {"identity/video": [utterance files]}."""
    root = Path(root)
    if not root.is_dir():
        raise InvalidInputError(f"not a folder: {root}")
    videos: dict[str, list[Path]] = {}
    for f in sorted(root.glob("*/*/*")):
        if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES:
            videos.setdefault(f"{f.parent.parent.name}/{f.parent.name}", []).append(f)
    return videos


def track_file(path: Path, cfg: PreprocessConfig) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """Decode, track and crop one file: crops (S, S, 3) uint8, landmarks (68, 2) crop px,
    and the number of candidate frames tracked. ImageReadError if it cannot be decoded."""
    from talkinghead.sdk.tracker import FaceTracker, FaceTrackerOptions, RunningMode, largest_face

    decoded = list(read_video(path, max_frames=cfg.max_decode_frames))
    picks = np.unique(np.linspace(0, len(decoded) - 1, cfg.candidates_per_file).round().astype(int))
    opts = FaceTrackerOptions(model_path=cfg.tracker_model, running_mode=RunningMode.VIDEO)
    crops, lms = [], []
    with FaceTracker.create_from_options(opts) as tracker:
        for i in picks:
            frame, ms = decoded[i]
            faces = tracker.detect_for_video(frame, ms)
            if not faces:
                continue
            try:
                crop, lm, _ = crop_face(frame, largest_face(faces).landmarks68, cfg.size)
            except InvalidInputError:  # a face the tracker placed outside the frame
                continue
            crops.append(crop)
            lms.append(lm)
    return crops, lms, len(picks)


def choose_frames(n: int, t: int, pick: str, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``t`` of ``n`` frames: evenly spaced, or a random sorted subset."""
    if n < t:
        raise InvalidInputError(f"{n} face frames, {t} needed")
    if pick == "even":
        return np.linspace(0, n - 1, t).round().astype(int)
    return np.sort(rng.choice(n, t, replace=False))


def preprocess(
    root: str | Path,
    out_dir: str | Path,
    cfg: PreprocessConfig | None = None,
    progress: bool = True,
) -> PreprocessReport:
    """Turn a VoxCeleb2-layout tree into shards ``out_dir/shard-00000.safetensors``, ...

    Writes ``out_dir/report.json`` and returns the report. Raises InvalidInputError for a
    bad configuration or a root with no video files, NoFaceError when no video at all
    yields enough face frames (the report is written first).
    """
    cfg = cfg or PreprocessConfig()
    cfg.validate()
    videos = find_videos(root)
    if not videos:
        raise InvalidInputError(f"no video files under {root} (expected <id>/<video>/<utt>.mp4)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = PreprocessReport(str(root), len(videos), sum(len(v) for v in videos.values()))
    rng = np.random.default_rng(cfg.seed)
    batch: list[tuple[str, np.ndarray, np.ndarray]] = []

    def flush() -> None:
        if batch:
            shard = out / f"shard-{len(report.shards):05d}.safetensors"
            frames = np.stack([f for _, f, _ in batch])
            lms = np.stack([lm for _, _, lm in batch]).astype(np.float32)
            write_shard(shard, VideoSet(frames, lms, [vid for vid, _, _ in batch]))
            report.shards.append(str(shard))
            batch.clear()

    for vid, files in tqdm(videos.items(), desc="preprocess", disable=not progress):
        crops, lms, tracked = [], [], 0
        for f in files:
            try:
                c, lm, n = track_file(f, cfg)
            except ImageReadError as exc:
                report.skip(f, "file", f"unreadable: {exc}")
                continue
            crops += c
            lms += lm
            tracked += n
        if tracked == 0:
            continue  # every file was unreadable, each already listed
        if not crops:
            report.skip(vid, "video", f"no face: none in {tracked} tracked frames")
            continue
        if len(crops) < cfg.frames_per_video:
            report.skip(vid, "video", f"too few face frames: {len(crops)} < {cfg.frames_per_video}")
            continue
        keep = choose_frames(len(crops), cfg.frames_per_video, cfg.pick, rng)
        batch.append((vid, np.stack([crops[i] for i in keep]), np.stack([lms[i] for i in keep])))
        report.videos_written += 1
        report.frames_written += len(keep)
        if len(batch) == cfg.videos_per_shard:
            flush()
    flush()
    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2))
    if not report.videos_written:
        raise NoFaceError(
            f"no video under {root} gave {cfg.frames_per_video} face frames; "
            f"see {out / 'report.json'}"
        )
    return report
