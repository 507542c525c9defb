"""Training data shards, K-shot episodes, meta-learning, resume, and few-shot enrolment.

The training runs are tiny (teacher-xs at 64 px, pseudo-videos of the astronaut photo)
but real: they check that the losses go down, not only that the code runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F
from safetensors.numpy import save_file

from talkinghead.errors import CheckpointError, InvalidInputError
from talkinghead.models.checkpoint import load_checkpoint
from talkinghead.models.teacher import Teacher, create_teacher
from talkinghead.train.data import (
    SHARD_FORMAT,
    EpisodeSampler,
    VideoSet,
    read_shard,
    read_shards,
    write_shard,
)
from talkinghead.train.finetune import FinetuneConfig, enrol_feed_forward, enrol_fine_tuned
from talkinghead.train.meta import MetaTrainConfig, meta_train
from talkinghead.train.pseudo_video import ASTRONAUT_LANDMARKS_68, make_pseudo_video
from talkinghead.train.report import plot_history

S = 64  # px
META_STEPS = 30
# The astronaut's face on the 512 x 512 photo: x0, y0, side (px).
_X0, _Y0, _SIDE = 144, 46, 160


@pytest.fixture(scope="module")
def face() -> tuple[np.ndarray, np.ndarray]:
    """(S, S, 3) uint8 crop of the astronaut and its (68, 2) landmarks in crop px."""
    img = skimage.data.astronaut()[_Y0 : _Y0 + _SIDE, _X0 : _X0 + _SIDE]
    img = cv2.resize(img, (S, S), interpolation=cv2.INTER_AREA)
    lms = ((ASTRONAUT_LANDMARKS_68 - [_X0, _Y0]) * (S / _SIDE)).astype(np.float32)
    return img, lms


@pytest.fixture(scope="module")
def videos(face) -> VideoSet:
    """2 pseudo-videos x 6 frames at 64 px."""
    clips = [make_pseudo_video(*face, 6, seed=s) for s in range(2)]
    return VideoSet(
        np.stack([f for f, _ in clips]),
        np.stack([lm for _, lm in clips]).astype(np.float32),
        ["astronaut/000", "astronaut/001"],
    )


def _numbered_videos(n: int = 3, t: int = 5, s: int = 16) -> VideoSet:
    """Frame (i, j) is filled with the value 10 * i + j, so a sample tells where it came from."""
    values = (10 * np.arange(n)[:, None] + np.arange(t)[None]).astype(np.uint8)
    frames = np.broadcast_to(values[:, :, None, None, None], (n, t, s, s, 3)).copy()
    rng = np.random.default_rng(0)
    lms = rng.uniform(2, s - 2, (n, t, 68, 2)).astype(np.float32)
    return VideoSet(frames, lms, [f"v{i}" for i in range(n)])


# --- shards --------------------------------------------------------------------------


def test_shard_round_trip(tmp_path):
    videos = _numbered_videos()
    path = write_shard(tmp_path / "a" / "shard.safetensors", videos)
    back = read_shard(path)
    np.testing.assert_array_equal(back.frames, videos.frames)
    np.testing.assert_array_equal(back.landmarks, videos.landmarks)
    assert back.video_ids == videos.video_ids and back.resolution == 16 and len(back) == 3
    both = read_shards([path, write_shard(tmp_path / "b.safetensors", videos)])
    assert len(both) == 6 and both.video_ids[3:] == videos.video_ids


@pytest.fixture
def shard(tmp_path) -> Path:
    return write_shard(tmp_path / "good.safetensors", _numbered_videos())


@pytest.mark.parametrize("cut", [0, 5, 60, -1, -100])
def test_truncated_shard_is_checkpoint_error(tmp_path, shard, cut: int):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(shard.read_bytes()[:cut])
    with pytest.raises(CheckpointError):
        read_shard(bad)


def test_random_bytes_and_missing_shards_are_checkpoint_errors(tmp_path):
    bad = tmp_path / "noise.safetensors"
    bad.write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(CheckpointError):
        read_shard(bad)
    with pytest.raises(CheckpointError, match="not found"):
        read_shard(tmp_path / "absent.safetensors")
    with pytest.raises(InvalidInputError):
        read_shards([])


def test_foreign_or_inconsistent_shards_are_checkpoint_errors(tmp_path):
    v = _numbered_videos()
    tensors = {"frames": v.frames, "landmarks": v.landmarks}
    ids = json.dumps(v.video_ids)
    cases = {
        "wrong-format": (tensors, {"format": "someone.else/1", "video_ids": ids}),
        "no-metadata": (tensors, None),
        "no-landmarks": ({"frames": v.frames}, {"format": SHARD_FORMAT, "video_ids": ids}),
        "too-few-ids": (tensors, {"format": SHARD_FORMAT, "video_ids": '["v0"]'}),
        "bad-ids": (tensors, {"format": SHARD_FORMAT, "video_ids": "[not json"}),
        "float-frames": (
            {"frames": v.frames.astype(np.float32), "landmarks": v.landmarks},
            {"format": SHARD_FORMAT, "video_ids": ids},
        ),
    }
    for name, (t, meta) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        save_file(t, str(path), meta)
        with pytest.raises(CheckpointError):
            read_shard(path)


def test_videoset_rejects_bad_arrays():
    v = _numbered_videos()
    with pytest.raises(InvalidInputError):
        VideoSet(v.frames.astype(np.float32), v.landmarks, v.video_ids)
    with pytest.raises(InvalidInputError):
        VideoSet(v.frames, v.landmarks[:, :, :60], v.video_ids)
    lms = v.landmarks.copy()
    lms[0, 0, 0, 0] = np.nan
    with pytest.raises(InvalidInputError):
        VideoSet(v.frames, lms, v.video_ids)
    with pytest.raises(InvalidInputError):
        v.concat(_numbered_videos(t=4))


# --- episodes ------------------------------------------------------------------------


def test_k_needs_enough_frames():
    v = _numbered_videos(t=5)
    with pytest.raises(InvalidInputError, match="lower K"):
        EpisodeSampler(v, k=5)
    with pytest.raises(InvalidInputError):
        EpisodeSampler(v, k=0)
    EpisodeSampler(v, k=4)  # K + 1 == T is enough


def test_episode_sampler_draws_distinct_frames_of_one_video():
    v = _numbered_videos(n=3, t=5)
    sampler = EpisodeSampler(v, k=3, seed=0)
    frames, lms, idx = sampler.sample(6)
    assert frames.shape == lms.shape == (6, 4, 3, 16, 16)
    assert idx.shape == (6,) and frames.dtype == lms.dtype == torch.float32
    assert frames.min() >= -1 and frames.max() <= 1 and lms.min() >= -1 and lms.max() <= 1
    # Decode each frame's fill value back to (video, frame).
    values = torch.round((frames[:, :, 0, 0, 0] + 1) * 127.5).long()
    assert (values // 10 == idx[:, None]).all(), "an episode mixes videos"
    for row in values % 10:
        assert len(set(row.tolist())) == 4, "an episode repeats a frame"
    # Landmark images are those of the sampled frames.
    t = values % 10
    for b in range(6):
        for j in range(4):
            torch.testing.assert_close(lms[b, j], sampler.lm_images[idx[b], t[b, j]])


# --- meta-learning -------------------------------------------------------------------


@pytest.fixture(scope="module")
def meta_run(tmp_path_factory, videos) -> Path:
    out = tmp_path_factory.mktemp("meta")
    cfg = MetaTrainConfig("teacher-xs", k=2, batch_size=2, steps=META_STEPS, log_every=10)
    assert meta_train(videos, out, cfg, progress=False) == out / "teacher.safetensors"
    return out


@pytest.mark.slow  # meta-trains a teacher (module fixture)
def test_meta_training_lowers_the_loss(meta_run: Path):
    history = json.loads((meta_run / "history.json").read_text())
    assert [h["step"] for h in history] == list(range(1, META_STEPS + 1))
    assert {"l1", "adv", "fm", "mch", "loss_g", "loss_d"} <= set(history[0])
    assert all(np.isfinite(h["loss_g"]) and np.isfinite(h["loss_d"]) for h in history)
    first = np.mean([h["l1"] for h in history[:5]])
    last = np.mean([h["l1"] for h in history[-5:]])
    assert last < 0.6 * first, f"L1 went from {first:.3f} to {last:.3f}"


@pytest.mark.slow  # meta-trains a teacher, then resumes
def test_meta_training_checkpoint_and_resume(meta_run: Path, videos, tmp_path):
    for name in ("teacher.safetensors", "optim.pt", "history.json"):
        assert (meta_run / name).is_file()
    teacher = load_checkpoint(meta_run / "teacher.safetensors", "teacher")
    assert teacher.notes["step"] == META_STEPS and teacher.notes["train"]["k"] == 2
    assert teacher.cfg.resolution == S and teacher.cfg.num_videos == len(videos)
    # Resume in a copy, so the module's run stays as it was.
    run = tmp_path / "run"
    run.mkdir()
    for f in meta_run.iterdir():
        (run / f.name).write_bytes(f.read_bytes())
    cfg = MetaTrainConfig("teacher-xs", k=2, batch_size=2, steps=META_STEPS + 2, log_every=10)
    meta_train(videos, run, cfg, progress=False)
    history = json.loads((run / "history.json").read_text())
    assert [h["step"] for h in history] == list(range(1, META_STEPS + 3))
    resumed = load_checkpoint(run / "teacher.safetensors", "teacher")
    assert resumed.notes["step"] == META_STEPS + 2
    moved = [
        k for k, v in resumed.state_dict().items() if not torch.equal(v, teacher.state_dict()[k])
    ]
    assert moved, "resuming did not train"
    # Already at the target step: nothing changes.
    before = (run / "history.json").read_text()
    meta_train(videos, run, cfg, progress=False)
    assert (run / "history.json").read_text() == before
    # A different variant cannot resume this checkpoint.
    with pytest.raises(CheckpointError):
        meta_train(videos, run, MetaTrainConfig("teacher-s", k=2, steps=40), progress=False)


@pytest.mark.slow  # meta-trains a teacher (module fixture)
def test_plot_history_writes_a_png(meta_run: Path, tmp_path):
    png = plot_history(meta_run / "history.json", tmp_path / "loss.png", smooth=5)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(png) as im:
        assert im.width > 200 and im.height > 100


# --- few-shot enrolment --------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_teacher(meta_run: Path) -> Teacher:
    return load_checkpoint(meta_run / "teacher.safetensors", "teacher")


@pytest.fixture(scope="module")
def untrained_teacher() -> Teacher:
    return create_teacher("teacher-xs", num_videos=2, resolution=S)


@pytest.fixture(scope="module")
def shots(face) -> tuple[torch.Tensor, torch.Tensor]:
    """4 frames of an unseen clip of the same face and their landmark images (4, 3, S, S)."""
    frames, lms = make_pseudo_video(*face, 4, seed=7)
    sampler = EpisodeSampler(VideoSet(frames[None], lms[None], ["shots"]), k=1)
    return sampler.frames[0], sampler.lm_images[0]


@pytest.mark.slow  # meta-trains, then fine-tunes
def test_fine_tuning_beats_feed_forward_on_the_shots(trained_teacher: Teacher, shots):
    frames, lms = shots
    before = {k: v.clone() for k, v in trained_teacher.state_dict().items()}
    ff = enrol_feed_forward(trained_teacher, frames, lms)
    cfg = FinetuneConfig(steps=10, batch_size=2)
    ft = enrol_fine_tuned(trained_teacher, frames, lms, cfg, progress=False)
    with torch.no_grad():
        out_ff, out_ft = ff(lms), ft(lms)
    assert out_ff.shape == out_ft.shape == frames.shape
    l1_ff, l1_ft = F.l1_loss(out_ff, frames).item(), F.l1_loss(out_ft, frames).item()
    assert l1_ft < 0.85 * l1_ff, f"FT L1 {l1_ft:.3f} vs FF {l1_ff:.3f}"
    # Enrolment works on copies: the teacher itself is untouched.
    for k, v in trained_teacher.state_dict().items():
        assert torch.equal(v, before[k]), f"enrolment changed the teacher's {k}"


@pytest.mark.parametrize(
    "frames_shape, lms_shape",
    [
        ((2, 3, S, S), (3, 3, S, S)),  # K differs
        ((0, 3, S, S), (0, 3, S, S)),  # no shots
        ((2, 3, 32, 32), (2, 3, 32, 32)),  # wrong resolution
        ((3, S, S), (3, S, S)),  # no K axis
        ((2, S, S, 3), (2, S, S, 3)),  # channels last
    ],
)
def test_wrong_shot_shapes_are_invalid_input(untrained_teacher, frames_shape, lms_shape):
    teacher = untrained_teacher  # checking shapes needs no training
    frames, lms = torch.zeros(frames_shape), torch.zeros(lms_shape)
    with pytest.raises(InvalidInputError):
        enrol_feed_forward(teacher, frames, lms)
    with pytest.raises(InvalidInputError):
        enrol_fine_tuned(teacher, frames, lms, FinetuneConfig(steps=1), progress=False)


# --- losses --------------------------------------------------------------------------


def test_vgg_stacks_follow_the_common_index_layout():
    from talkinghead.train.losses import VGGFeatures

    for arch, n, convs in [
        ("vgg19", 37, [0, 2, 5, 7, 10, 16, 19, 25, 28, 34]),
        ("vgg16", 31, [0, 28]),
    ]:
        f = VGGFeatures(arch).features
        assert len(f) == n and all(isinstance(f[i], torch.nn.Conv2d) for i in convs)
        assert isinstance(f[4], torch.nn.MaxPool2d)


def test_vgg_weights_load_through_the_real_path(tmp_path):
    from safetensors.torch import save_file as save_torch

    from talkinghead.train.losses import VGGFeatures, load_vgg

    torch.manual_seed(0)
    src = VGGFeatures("vgg19")
    state = {k: v.contiguous() for k, v in src.state_dict().items()}
    # A full classifier's state dict: the classifier is ignored.
    save_torch({**state, "classifier.0.weight": torch.zeros(4, 4)}, str(tmp_path / "v.safetensors"))
    torch.save({k.removeprefix("features."): v for k, v in state.items()}, tmp_path / "v.pt")
    x = torch.rand(1, 3, 32, 32)
    for path in (tmp_path / "v.safetensors", tmp_path / "v.pt"):
        net = load_vgg(path, "vgg19")
        assert not any(p.requires_grad for p in net.parameters())
        for a, b in zip(net(x), src(x), strict=True):
            torch.testing.assert_close(a, b)
    # Caffe-style names (conv<stage>_<n>) map onto the convolutions in order.
    face = VGGFeatures("vgg16")
    convs = [m for m in face.features if isinstance(m, torch.nn.Conv2d)]
    names = [
        f"conv{s}_{n}" for s, reps in enumerate([2, 2, 3, 3, 3], 1) for n in range(1, reps + 1)
    ]
    caffe = {
        f"{nm}.{k}": getattr(c, k).detach()
        for nm, c in zip(names, convs, strict=True)
        for k in ("weight", "bias")
    }
    save_torch(caffe, str(tmp_path / "face.safetensors"))
    torch.testing.assert_close(load_vgg(tmp_path / "face.safetensors", "vgg16")(x)[-1], face(x)[-1])
    with pytest.raises(CheckpointError):
        load_vgg(tmp_path / "face.safetensors", "vgg19")  # 13 convolutions for 16
    with pytest.raises(CheckpointError):
        load_vgg(tmp_path / "absent.pt", "vgg19")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError):
        load_vgg(tmp_path / "junk.pt", "vgg19")


def test_vgg_input_conventions_on_a_known_pixel():
    from talkinghead.train.losses import imagenet_input, vggface_input

    red = torch.tensor([1.0, -1.0, -1.0]).view(1, 3, 1, 1)  # RGB (255, 0, 0)
    # VGGFace: BGR, 0-255, minus the mean colour (R 129.19, G 104.76, B 93.59).
    torch.testing.assert_close(
        vggface_input(red).flatten(), torch.tensor([-93.59396362, -104.76238251, 125.81372070])
    )
    # ImageNet VGG19: RGB, 0-1, (x - mean) / std.
    torch.testing.assert_close(
        imagenet_input(red).flatten(),
        torch.tensor([(1 - 0.485) / 0.229, -0.456 / 0.224, -0.406 / 0.225]),
    )


def test_content_loss_without_weights_is_l1_and_says_so(caplog):
    from talkinghead.train.losses import ContentConfig, ContentLoss

    fake, real = torch.zeros(1, 3, 8, 8), torch.full((1, 3, 8, 8), 0.5)
    with caplog.at_level("INFO", logger="talkinghead.train.losses"):
        loss, parts = ContentLoss(ContentConfig(w_l1=2.0))(fake, real)
    assert "L1 only" in caplog.text and "no VGG19/VGGFace weights" in caplog.text
    assert parts == {"l1": 0.5} and loss.item() == pytest.approx(1.0)


def test_content_loss_with_vgg_weights_adds_perceptual_terms(tmp_path):
    from safetensors.torch import save_file as save_torch

    from talkinghead.train.losses import ContentConfig, ContentLoss, VGGFeatures

    for arch in ("vgg19", "vgg16"):
        state = {k: v.contiguous() for k, v in VGGFeatures(arch).state_dict().items()}
        save_torch(state, str(tmp_path / f"{arch}.safetensors"))
    cfg = ContentConfig(
        vgg19_weights=str(tmp_path / "vgg19.safetensors"),
        vggface_weights=str(tmp_path / "vgg16.safetensors"),
    )
    content = ContentLoss(cfg)
    fake = torch.zeros(1, 3, 32, 32, requires_grad=True)
    loss, parts = content(fake, torch.rand(1, 3, 32, 32) * 2 - 1)
    assert set(parts) == {"l1", "vgg19", "vggface"} and parts["vgg19"] > 0 and parts["vggface"] > 0
    assert loss.item() > cfg.w_l1 * parts["l1"]
    loss.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0


def test_hinge_and_matching_terms():
    from talkinghead.train.losses import embedding_match, feature_matching, hinge_d, hinge_g

    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    assert hinge_d(real, fake).item() == pytest.approx(0.25 + 0.5)
    assert hinge_g(fake).item() == pytest.approx(1.0)
    a, b = [torch.zeros(2, 3)], [torch.ones(2, 3)]
    assert feature_matching(a, b).item() == pytest.approx(1.0)
    assert embedding_match(torch.zeros(2, 4), torch.full((2, 4), 3.0)).item() == pytest.approx(3.0)
    with pytest.raises(InvalidInputError):
        feature_matching(a, [])
