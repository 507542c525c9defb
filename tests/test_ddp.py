"""Distributed meta-learning: torchrun, 2 CPU processes (gloo), DDP, sharded episodes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import skimage.data

from talkinghead.errors import InvalidInputError
from talkinghead.models.checkpoint import load_checkpoint
from talkinghead.sdk.landmarks import crop_face
from talkinghead.train.data import EpisodeSampler, VideoSet, write_shard
from talkinghead.train.ddp import shard_indices
from talkinghead.train.pseudo_video import ASTRONAUT_LANDMARKS_68, make_pseudo_video

S = 64  # px
# Two steps suffice: unsynchronised gradients would already part the ranks' weights after
# one. Most of the test's time is three interpreters importing torch, not training.
STEPS = 2


def _videos(n: int = 4, t: int = 4) -> VideoSet:
    crop, lm, _ = crop_face(skimage.data.astronaut(), ASTRONAUT_LANDMARKS_68, S)
    clips = [make_pseudo_video(crop, lm, t, seed=s) for s in range(n)]
    return VideoSet(
        np.stack([f for f, _ in clips]),
        np.stack([m for _, m in clips]).astype(np.float32),
        [f"astronaut/{i:03d}" for i in range(n)],
    )


def test_ranks_draw_from_disjoint_shares_of_the_videos():
    videos = _videos(n=5, t=3)
    seen = []
    for rank in range(2):
        sampler = EpisodeSampler(videos, k=2, seed=0, rank=rank, world_size=2)
        seen.append(set(sampler.sample(64)[2].tolist()))
    assert seen == [{0, 2, 4}, {1, 3}]
    assert shard_indices(5, 1, 2) == [1, 3]
    for bad in [(1, 2, 2), (5, 2, 2), (5, 0, 0)]:
        with pytest.raises(InvalidInputError):
            shard_indices(*bad)


@pytest.mark.slow
def test_torchrun_two_processes_train_in_sync(tmp_path):
    shard = write_shard(tmp_path / "data.safetensors", _videos())
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "talkinghead.cli", "train", str(shard), "--out", str(out), "--teacher", "teacher-xs",
        "--k", "2", "--batch-size", "1", "--steps", str(STEPS),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    teacher = load_checkpoint(out / "teacher.safetensors", "teacher")
    assert teacher.notes["step"] == STEPS and teacher.notes["world_size"] == 2
    # Both ranks hold identical parameters after training (all-gathered at the save).
    assert teacher.notes["rank_param_spread"] == 0.0
    history = json.loads((out / "history.json").read_text())
    assert [h["step"] for h in history] == list(range(1, STEPS + 1))
    assert all(np.isfinite(h["loss_g"]) and np.isfinite(h["loss_d"]) for h in history)
    assert (out / "samples.png").is_file() and (out / "losses.png").is_file()
    # Rank 0 alone reports: one "teacher checkpoint" line, not two.
    assert proc.stdout.count("teacher checkpoint:") == 1
