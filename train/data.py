"""Training shards and K-shot episodes.

A shard is a safetensors file holding aligned face videos:
- ``frames``: (N, T, S, S, 3) uint8 RGB, N videos of T frames at S px;
- ``landmarks``: (N, T, 68, 2) float32, crop pixels.
Its metadata records the format, the resolution and the video ids (JSON). No pickles.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file

from talkinghead.errors import CheckpointError, InvalidInputError
from talkinghead.models.checkpoint import read_safetensors
from talkinghead.sdk.rasterize import rasterize_landmarks
from talkinghead.sdk.tensors import to_model_input
from talkinghead.train.ddp import shard_indices

SHARD_FORMAT = "talkinghead.shard/1"


@dataclass
class VideoSet:
    """Videos of faces with exact landmarks, all at one resolution."""

    frames: np.ndarray  # (N, T, S, S, 3) uint8
    landmarks: np.ndarray  # (N, T, 68, 2) float32
    video_ids: list[str]

    def __post_init__(self) -> None:
        f, lm = self.frames, self.landmarks
        if f.ndim != 5 or f.shape[-1] != 3 or f.dtype != np.uint8 or f.shape[2] != f.shape[3]:
            raise InvalidInputError(
                f"frames must be (N, T, S, S, 3) uint8, got {f.shape} {f.dtype}"
            )
        if lm.shape != (*f.shape[:2], 68, 2):
            raise InvalidInputError(
                f"landmarks must be {(*f.shape[:2], 68, 2)} to match the frames, got {lm.shape}"
            )
        if not np.isfinite(lm).all():
            raise InvalidInputError("landmarks contain NaN or infinite values")
        if len(self.video_ids) != f.shape[0]:
            raise InvalidInputError(f"{len(self.video_ids)} video ids for {f.shape[0]} videos")

    @property
    def resolution(self) -> int:
        return int(self.frames.shape[2])

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def concat(self, other: VideoSet) -> VideoSet:
        if other.frames.shape[1:] != self.frames.shape[1:]:
            raise InvalidInputError(
                f"cannot join shards of shape {self.frames.shape[1:]} and {other.frames.shape[1:]}"
            )
        return VideoSet(
            np.concatenate([self.frames, other.frames]),
            np.concatenate([self.landmarks, other.landmarks]),
            self.video_ids + other.video_ids,
        )


def write_shard(path: str | Path, videos: VideoSet) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": SHARD_FORMAT,
        "resolution": str(videos.resolution),
        "video_ids": json.dumps(videos.video_ids),
    }
    save_file(
        {"frames": videos.frames, "landmarks": videos.landmarks.astype(np.float32)}, str(path), meta
    )
    return path


def read_shard(path: str | Path) -> VideoSet:
    """Load one shard; a missing, truncated or foreign file raises CheckpointError."""
    tensors, meta = read_safetensors(path, "np", "shard")
    if meta.get("format") != SHARD_FORMAT:
        raise CheckpointError(
            f"{path} is not a {SHARD_FORMAT} shard (format={meta.get('format')!r})"
        )
    if "frames" not in tensors or "landmarks" not in tensors:
        raise CheckpointError(f"shard {path} lacks 'frames' or 'landmarks'")
    try:
        ids = json.loads(meta.get("video_ids", "[]"))
        return VideoSet(tensors["frames"], tensors["landmarks"], list(ids))
    except (InvalidInputError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"shard {path} is inconsistent: {exc}") from exc


def read_shards(paths: list[str | Path]) -> VideoSet:
    if not paths:
        raise InvalidInputError("no shards given")
    videos = read_shard(paths[0])
    for p in paths[1:]:
        videos = videos.concat(read_shard(p))
    return videos


class EpisodeSampler:
    """Draws meta-learning episodes: K+1 distinct frames of one video.

    The first K frames feed the embedder; the last is the target the generator must
    reproduce from its landmarks. Landmark images are rasterised once, up front.

    Under distributed training each rank draws from its own disjoint share of the videos
    (every ``world_size``-th, from ``rank``), like a distributed sampler; the video indices
    it returns stay global, so they address the same rows of D's W on every rank.
    """

    def __init__(self, videos: VideoSet, k: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        n, t = videos.frames.shape[:2]
        if k < 1:
            raise InvalidInputError(f"K must be at least 1, got {k}")
        if k + 1 > t:
            raise InvalidInputError(
                f"K={k} needs {k + 1} frames per video but the videos have {t}; lower K"
            )
        self.videos, self.k = videos, k
        self.pool = np.array(shard_indices(n, rank, world_size))
        self.rng = np.random.default_rng(seed if rank == 0 else [seed, rank])
        s = videos.resolution
        lm_images = np.stack(
            [rasterize_landmarks(lm, s) for lm in videos.landmarks.reshape(-1, 68, 2)]
        ).reshape(n, t, s, s, 3)
        self.frames = torch.from_numpy(to_model_input(videos.frames))
        self.lm_images = torch.from_numpy(to_model_input(lm_images))

    def sample(self, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns frames and landmark images (B, K+1, 3, S, S) and video indices (B,)."""
        n, t = self.videos.frames.shape[:2]
        idx = self.pool[self.rng.integers(0, len(self.pool), size=batch)]
        picks = np.stack([self.rng.choice(t, self.k + 1, replace=False) for _ in range(batch)])
        rows = torch.from_numpy(idx)[:, None]
        cols = torch.from_numpy(picks)
        return self.frames[rows, cols], self.lm_images[rows, cols], torch.from_numpy(idx)
