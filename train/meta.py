"""Meta-learning of the teacher over K-shot episodes (Zakharov et al. 2019, section 3.2).

Each step draws B episodes of K+1 frames of one video. E embeds the first K frames
and their landmark images, the mean is the identity e_hat, G renders the last frame
from its landmarks, and D judges it. Losses (``talkinghead.train.losses``):

- content: L1, plus VGG19 / VGGFace perceptual terms when their weights files are given;
- adversarial: hinge;
- feature matching on D's intermediate features;
- embedding match: W_i of D against e_hat.

Runs in one process, or on several under ``torchrun`` (DistributedDataParallel; each rank
draws episodes from its own share of the videos; rank 0 alone writes files):

    torchrun --nproc_per_node 2 -m talkinghead.cli train shard.safetensors --out runs/x
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from talkinghead.errors import CheckpointError
from talkinghead.models.checkpoint import load_checkpoint, save_checkpoint
from talkinghead.models.teacher import Teacher, create_teacher
from talkinghead.sdk.tensors import from_model_output
from talkinghead.train import ddp
from talkinghead.train.data import EpisodeSampler, VideoSet
from talkinghead.train.losses import (
    ContentConfig,
    ContentLoss,
    embedding_match,
    feature_matching,
    hinge_d,
    hinge_g,
)
from talkinghead.train.report import save_grid

log = logging.getLogger(__name__)


@dataclass
class MetaTrainConfig:
    teacher: str = "teacher-xs"
    k: int = 8
    batch_size: int = 2  # episodes per step and per rank
    steps: int = 1000
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    w_l1: float = 10.0
    w_adv: float = 1.0
    w_fm: float = 10.0
    w_mch: float = 8.0
    w_vgg19: float = 1.5e-1
    w_vggface: float = 2.5e-2
    vgg19_weights: str | None = None
    vggface_weights: str | None = None
    seed: int = 0
    log_every: int = 50
    init: str | None = None  # warm start from this teacher checkpoint (D's W is new)

    def content(self) -> ContentConfig:
        return ContentConfig(
            self.w_l1, self.w_vgg19, self.w_vggface, self.vgg19_weights, self.vggface_weights
        )


def generator_losses(
    teacher: Teacher,
    frames: torch.Tensor,
    lms: torch.Tensor,
    idx: torch.Tensor,
    cfg: MetaTrainConfig,
    content: ContentLoss | None = None,
) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
    """One episode batch through E and G. frames, lms: (B, K+1, 3, S, S); idx: (B,)."""
    content = content or ContentLoss(cfg.content())
    b, k1 = frames.shape[:2]
    k = k1 - 1
    shots = frames[:, :k].flatten(0, 1)
    shot_lms = lms[:, :k].flatten(0, 1)
    e_hat = teacher.E(shots, shot_lms).view(b, k, -1).mean(dim=1)
    real, target_lm = frames[:, k], lms[:, k]
    fake = teacher.G(target_lm, e_hat)
    scores, feats = teacher.D(
        torch.cat([fake, real]), torch.cat([target_lm, target_lm]), idx.repeat(2)
    )
    cnt, parts = content(fake, real)
    adv = hinge_g(scores[:b])
    fm = feature_matching([f[:b] for f in feats[:-1]], [f[b:] for f in feats[:-1]])
    mch = embedding_match(teacher.D.W(idx), e_hat)
    loss = cnt + cfg.w_adv * adv + cfg.w_fm * fm + cfg.w_mch * mch
    parts.update(adv=adv.item(), fm=fm.item(), mch=mch.item())
    return loss, parts, fake.detach()


def discriminator_loss(
    teacher: Teacher, real: torch.Tensor, fake: torch.Tensor, lm: torch.Tensor, idx: torch.Tensor
) -> torch.Tensor:
    b = real.shape[0]
    scores, _ = teacher.D(torch.cat([real, fake]), torch.cat([lm, lm]), idx.repeat(2))
    return hinge_d(scores[:b], scores[b:])


class MetaStep(nn.Module):
    """Both halves of a step behind one ``forward``, so one DDP wrapper syncs them all.

    ``forward(frames, lms, idx)`` is the generator half; with ``fake`` it is D's half.
    """

    def __init__(self, teacher: Teacher, cfg: MetaTrainConfig, content: ContentLoss):
        super().__init__()
        self.teacher, self.cfg, self.content = teacher, cfg, content

    def forward(self, frames, lms, idx, fake=None):
        if fake is None:
            return generator_losses(self.teacher, frames, lms, idx, self.cfg, self.content)
        return discriminator_loss(self.teacher, frames[:, -1], fake, lms[:, -1], idx)


def meta_train(
    videos: VideoSet,
    out_dir: str | Path,
    cfg: MetaTrainConfig,
    resume: bool = True,
    progress: bool = True,
) -> Path:
    """Meta-train a teacher on ``videos``; writes ``teacher.safetensors`` and logs to ``out_dir``.

    ``out_dir`` also gets ``history.json`` (losses per step, averaged over ranks) and
    ``samples.png`` (rows: landmark image, generated frame, real frame) at every save.

    With ``resume``, an existing checkpoint and optimiser state in ``out_dir`` continue.
    Under torchrun every rank trains; rank 0 writes. Returns the checkpoint path.
    """
    ctx = ddp.init_distributed()
    try:
        return _meta_train(videos, Path(out_dir), cfg, resume, progress, ctx)
    finally:
        ddp.shutdown(ctx)


def _meta_train(videos, out: Path, cfg, resume, progress, ctx: ddp.DistContext) -> Path:
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
    ckpt, opt_path, hist_path = out / "teacher.safetensors", out / "optim.pt", out / "history.json"
    torch.manual_seed(cfg.seed)
    sampler = EpisodeSampler(videos, cfg.k, cfg.seed, ctx.rank, ctx.world_size)
    start, history = 0, []
    if resume and ckpt.exists() and opt_path.exists():
        teacher = load_checkpoint(ckpt, "teacher", expect_variant=cfg.teacher)
        start = int(teacher.notes.get("step", 0))
        history = json.loads(hist_path.read_text()) if hist_path.exists() else []
        if ctx.is_main:
            log.info("resuming %s from step %d", cfg.teacher, start)
    else:
        teacher = create_teacher(cfg.teacher, num_videos=len(videos), resolution=videos.resolution)
        if cfg.init:
            warm_start(teacher, cfg.init)
    if teacher.cfg.num_videos != len(videos):
        raise CheckpointError(
            f"checkpoint has W for {teacher.cfg.num_videos} videos, data has {len(videos)}"
        )
    teacher.to(ctx.device)
    content = ContentLoss(cfg.content()).to(ctx.device)
    step_fn = ddp.wrap(MetaStep(teacher, cfg, content), ctx)
    opt_g = torch.optim.Adam(
        [*teacher.E.parameters(), *teacher.G.parameters(), teacher.D.W.weight],
        lr=cfg.lr_g,
        betas=(0.0, 0.999),
    )
    opt_d = torch.optim.Adam(teacher.D.parameters(), lr=cfg.lr_d, betas=(0.0, 0.999))
    if start:
        state = torch.load(opt_path, weights_only=True, map_location=ctx.device)
        opt_g.load_state_dict(state["g"])
        opt_d.load_state_dict(state["d"])
    teacher.train()
    t0 = time.time()
    bar = tqdm(
        range(start, cfg.steps),
        desc="meta-train",
        disable=not (progress and ctx.is_main),
        initial=start,
        total=cfg.steps,
    )
    for step in bar:
        frames, lms, idx = (t.to(ctx.device) for t in sampler.sample(cfg.batch_size))
        loss_g, parts, fake = step_fn(frames, lms, idx)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        loss_d = step_fn(frames, lms, idx, fake)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        parts.update(loss_g=loss_g.item(), loss_d=loss_d.item())
        parts = {"step": step + 1, **ddp.mean_over_ranks(parts, ctx)}
        history.append(parts)
        bar.set_postfix(l1=f"{parts['l1']:.3f}", d=f"{parts['loss_d']:.2f}")
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            spread = ddp.parameter_spread(teacher, ctx)  # every rank takes part
            if ctx.is_main:
                notes = {"world_size": ctx.world_size, "rank_param_spread": spread}
                _save(teacher, opt_g, opt_d, history, out, step + 1, cfg, time.time() - t0, notes)
                grid = [
                    from_model_output(t.cpu().numpy()) for t in (lms[:, -1], fake, frames[:, -1])
                ]
                save_grid(grid, out / "samples.png")
            ddp.barrier(ctx)
    if start >= cfg.steps and ctx.is_main:
        log.info("checkpoint already at step %d >= %d", start, cfg.steps)
    return ckpt


def warm_start(teacher: Teacher, path: str | Path) -> None:
    """Copy E, G and D (all but the per-video W) from the teacher checkpoint at ``path``.

    W has a row per training video, so it stays fresh when the data changes; the rest
    must match in variant and resolution.

    Raises:
        CheckpointError: unreadable file, or another variant or resolution.
    """
    source = load_checkpoint(path, "teacher", expect_variant=teacher.cfg.name)
    if source.cfg.resolution != teacher.cfg.resolution:
        raise CheckpointError(
            f"{path} is at {source.cfg.resolution} px, the data at {teacher.cfg.resolution} px"
        )
    state = {k: v for k, v in source.state_dict().items() if k != "D.W.weight"}
    missing, unexpected = teacher.load_state_dict(state, strict=False)
    if unexpected or set(missing) != {"D.W.weight"}:
        raise CheckpointError(f"{path} does not fit: missing {missing}, unexpected {unexpected}")
    log.info("warm start from %s (step %s)", path, source.notes.get("step"))


def _save(teacher, opt_g, opt_d, history, out: Path, step, cfg: MetaTrainConfig, secs, notes):
    save_checkpoint(
        out / "teacher.safetensors", teacher, "teacher", step=step, train=asdict(cfg), **notes
    )
    torch.save({"g": opt_g.state_dict(), "d": opt_d.state_dict()}, out / "optim.pt")
    (out / "history.json").write_text(json.dumps(history))
    log.info("step %d saved (%.0f s)", step, secs)
