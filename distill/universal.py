"""Universal distillation: one student for every identity, conditioned on the teacher's e.

The teacher is the meta-learned (not fine-tuned) model. Each training video of a shard is
one identity: its e is the teacher embedder's mean over K of its frames, and the teacher
renders (feed-forward, psi = P e) that video's landmarks plus scripted and, optionally,
tracked motion moved onto the video's first frame. The universal student (BatchNorm whose
scale and bias come from a projection of e) learns all identities at once.

A new avatar needs no training: :func:`enrol_universal` embeds its photos with the teacher
and folds e into the student's weights, which gives an ordinary deployable student (the
same checkpoint format, export and pack as a per-identity one).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from talkinghead.distill.distill import (
    DistillConfig,
    DistillData,
    landmark_images,
    render_teacher,
    train_student,
)
from talkinghead.distill.motion import scripted_landmarks, tracked_landmarks
from talkinghead.errors import InvalidInputError
from talkinghead.models.student import StudentGenerator, create_student, fold_student
from talkinghead.models.teacher import Teacher
from talkinghead.sdk.tensors import to_model_input
from talkinghead.train.data import VideoSet

log = logging.getLogger(__name__)


def check_resolutions(**sizes: int) -> int:
    """All named resolutions (px) must agree; InvalidInputError naming each otherwise."""
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{k} {v} px" for k, v in sizes.items())
        raise InvalidInputError(f"resolutions do not match: {listed}")
    return next(iter(sizes.values()))


def load_teacher(path: str | os.PathLike[str], variant: str | None = "teacher-xs") -> Teacher:
    """A teacher checkpoint, refused (CheckpointError) when it is not ``variant``."""
    from talkinghead.models.checkpoint import load_checkpoint

    return load_checkpoint(path, "teacher", expect_variant=variant).eval()


class FeedForwardTeacher(nn.Module):
    """The teacher's G with psi = P e per sample: (B, 3, S, S), (B, e_dim) -> (B, 3, S, S)."""

    def __init__(self, teacher: Teacher):
        super().__init__()
        self.G = teacher.G

    def forward(self, landmarks: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        return self.G(landmarks, psi=psi)


@torch.no_grad()
def embed_videos(teacher: Teacher, videos: VideoSet, shots: int) -> torch.Tensor:
    """e of every video from its first ``shots`` frames: (N, e_dim)."""
    teacher.eval()
    s = videos.resolution
    out = []
    for frames, lms in zip(videos.frames, videos.landmarks, strict=True):
        k = min(shots, len(frames))
        x = torch.from_numpy(to_model_input(frames[:k]))
        out.append(teacher.embed(x, landmark_images(lms[:k], s)))
    return torch.cat(out)


def distill_universal(
    teacher: Teacher,
    videos: VideoSet,
    cfg: DistillConfig | None = None,
    shots: int = 8,
    tracked: dict[int, list[np.ndarray]] | None = None,
    held_out: int = 0,
    progress: bool = True,
) -> tuple[StudentGenerator, dict]:
    """Train a universal ``cfg.student`` over the videos' identities.

    videos: shard frames (N, T, S, S, 3) with landmarks (N, T, 68, 2); S must be the
        teacher's resolution (the student works at it too).
    cfg.sequences x cfg.frames_per_sequence: scripted frames per identity, on top of the
        video's own landmarks. tracked: per video index, tracked sequences to move onto it.
    held_out: the last ``held_out`` videos are never trained on; figures report PSNR on
        their frames too (``held_out_psnr_db``): how well an unseen avatar runs.
    Returns the universal student (training form, eval mode; fold it per avatar) and figures.
    """
    cfg = cfg or DistillConfig()
    cfg.validate()
    if not isinstance(teacher, Teacher):
        raise InvalidInputError(
            f"the universal mode needs a full Teacher, got {type(teacher).__name__}"
        )
    size = check_resolutions(teacher=teacher.cfg.resolution, data=videos.resolution)
    if not 0 <= held_out < len(videos):
        raise InvalidInputError(f"held_out must leave >= 1 of {len(videos)} videos to train on")
    torch.manual_seed(cfg.seed)
    student = create_student(cfg.student, resolution=size, norm=True, e_dim=teacher.cfg.e_dim)
    identities = embed_videos(teacher, videos, shots)
    psi = teacher.G.psi(identities).detach()
    ff = FeedForwardTeacher(teacher)
    min_stride = cfg.feat_min_stride if cfg.w_feat > 0 else None
    parts: dict[str, list] = {"train": [], "val": [], "held": []}
    n_train = len(videos) - held_out
    for v in range(len(videos)):
        neutral = videos.landmarks[v, 0]
        own = videos.landmarks[v]
        scripted = scripted_landmarks(
            neutral, cfg.sequences, cfg.frames_per_sequence, cfg.jitter_px, cfg.seed * 131 + v
        )
        n_val = max(len(scripted) // 10, 1)
        extra = [tracked_landmarks(neutral, tracked[v])] if tracked and v in tracked else []
        if v >= n_train:
            parts["held"].append((v, np.concatenate([own, scripted])))
            continue
        parts["train"].append((v, np.concatenate([own, scripted[:-n_val], *extra])))
        parts["val"].append((v, scripted[-n_val:]))
    data = {}
    for name, items in parts.items():
        if not items:
            continue
        xs, ys, fs, ids = [], [], [], []
        for v, lms in tqdm(items, desc=f"teacher frames ({name})", disable=not progress):
            x = landmark_images(lms, size)
            y, f = render_teacher(
                ff, x, min_stride if name == "train" else None, psi=psi[v : v + 1]
            )
            xs.append(x), ys.append(y), fs.append(f), ids.append(torch.full((len(x),), v))
        feats = [torch.cat(level) for level in zip(*fs, strict=True)] if name == "train" else []
        data[name] = DistillData(torch.cat(xs), torch.cat(ys), feats, torch.cat(ids), identities)
    student, figures = train_student(student, data["train"], data["val"], cfg, progress)
    figures["identities"] = n_train
    if "held" in data:
        figures["held_out_psnr_db"] = _psnr_of(student, data["held"])
        figures["held_out_identities"] = held_out
    student.notes = {"mode": "universal", "teacher": teacher.cfg.name, **figures}
    return student, figures


@torch.no_grad()
def _psnr_of(student: StudentGenerator, data: DistillData) -> float:
    from talkinghead.sdk.parity import psnr_db

    preds = [
        student(*data.take(torch.arange(i, min(i + 16, len(data))))[:2])
        for i in range(0, len(data), 16)
    ]
    return float(psnr_db(torch.cat(preds).numpy(), data.targets.numpy()))


@torch.no_grad()
def enrol_universal(
    student: StudentGenerator, teacher: Teacher, frames: torch.Tensor, landmark_imgs: torch.Tensor
) -> StudentGenerator:
    """A new avatar, no training: K shots (K, 3, S, S) and their landmark images -> deployable student."""
    if not student.universal:
        raise InvalidInputError(f"{student.cfg.name} is not a universal student")
    check_resolutions(
        student=student.cfg.resolution, teacher=teacher.cfg.resolution, shots=frames.shape[-1]
    )
    if student.cfg.e_dim != teacher.cfg.e_dim:
        raise InvalidInputError(
            f"the student takes {student.cfg.e_dim}-d identities, the teacher makes {teacher.cfg.e_dim}-d"
        )
    teacher.eval()
    return fold_student(student.eval(), teacher.embed(frames, landmark_imgs))


def pick_videos(videos: VideoSet, per_identity: int) -> VideoSet:
    """The first ``per_identity`` videos of each identity (the id before "/" in video ids)."""
    if per_identity < 1:
        raise InvalidInputError(f"videos per identity must be >= 1, got {per_identity}")
    seen: dict[str, int] = {}
    keep = []
    for i, vid in enumerate(videos.video_ids):
        who = vid.split("/", 1)[0]
        if seen.get(who, 0) < per_identity:
            seen[who] = seen.get(who, 0) + 1
            keep.append(i)
    return VideoSet(
        videos.frames[keep], videos.landmarks[keep], [videos.video_ids[i] for i in keep]
    )


@torch.no_grad()
def enrol_photo_universal(
    student: StudentGenerator, teacher: Teacher, image: np.ndarray, shots: int = 8
) -> tuple[StudentGenerator, np.ndarray]:
    """A photo (H, W, 3) uint8 -> (deployable student, neutral (68, 2) crop px); no training.

    The K shots are the tracked crop plus pseudo-video frames of it, as FT enrolment uses.
    """
    from talkinghead.sdk.photos import track_and_crop
    from talkinghead.train.pseudo_video import make_pseudo_video

    size = teacher.cfg.resolution
    crop, neutral = track_and_crop(image, size)
    frames, lms = make_pseudo_video(crop, neutral, max(shots - 1, 1), seed=7)
    x = torch.from_numpy(to_model_input(np.concatenate([crop[None], frames])))
    lm_imgs = landmark_images(np.concatenate([neutral[None], lms]), size)
    return enrol_universal(student, teacher, x, lm_imgs), neutral


def distill_universal_files(
    teacher_path: str | os.PathLike[str],
    shards: list[str],
    out: str | os.PathLike[str],
    cfg: DistillConfig,
    teacher_variant: str | None = None,
    videos_per_identity: int = 1,
    held_out: int = 1,
    tracked_videos: int = 0,
    photo: str | None = None,
    progress: bool = True,
) -> tuple[Path, dict]:
    """Universal mode from files: teacher checkpoint + shards -> universal student at ``out``.

    Every check (teacher variant, resolutions, a face in the tracked videos) runs before
    training. With ``photo``, that avatar is enrolled at once (no training) and its
    deployable student written beside ``out`` as ``<out stem>.<photo name>.safetensors``.
    """
    from talkinghead.distill.motion import track_sequences
    from talkinghead.models.checkpoint import save_checkpoint
    from talkinghead.sdk.photos import load_photo
    from talkinghead.train.data import read_shards

    cfg.validate()
    teacher = load_teacher(teacher_path, teacher_variant)
    videos = pick_videos(read_shards(shards), videos_per_identity)
    check_resolutions(teacher=teacher.cfg.resolution, data=videos.resolution)
    named = load_photo(photo) if photo else None
    tracked = None
    if tracked_videos > 0:
        seqs = track_sequences(videos.frames[:tracked_videos], progress=progress)
        tracked = {v: seqs for v in range(len(videos))}  # real motion, moved onto every identity
    student, figures = distill_universal(
        teacher, videos, cfg, tracked=tracked, held_out=held_out, progress=progress
    )
    out = Path(out)
    save_checkpoint(out, student, "student", **student.notes, video_ids=videos.video_ids)
    if named is not None:
        name, image = named
        avatar, neutral = enrol_photo_universal(student, teacher, image)
        path = out.with_name(f"{out.stem}.{name}.safetensors")
        save_checkpoint(
            path, avatar, "student", identity=name, neutral_landmarks=neutral.tolist(),
            teacher=teacher.cfg.name, mode="universal", universal_student=out.name,
        )  # fmt: skip
        figures["avatar"] = str(path)
    return out, figures
