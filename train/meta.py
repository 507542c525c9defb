"""Meta-learning of the teacher over K-shot episodes (Zakharov et al. 2019, section 3.2).

Each step draws B episodes of K+1 frames of one video. E embeds the first K frames
and their landmark images, the mean is the identity e_hat, G renders the last frame
from its landmarks, and D judges it. Losses:

- content: L1 (perceptual VGG terms come in through ``content_loss`` when weights exist);
- adversarial: hinge;
- feature matching on D's intermediate features;
- embedding match: W_i of D against e_hat.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from talkinghead.models.checkpoint import load_checkpoint, save_checkpoint
from talkinghead.models.teacher import Teacher, create_teacher
from talkinghead.sdk.tensors import from_model_output
from talkinghead.train.data import EpisodeSampler, VideoSet
from talkinghead.train.report import save_grid

log = logging.getLogger(__name__)


@dataclass
class MetaTrainConfig:
    teacher: str = "teacher-xs"
    k: int = 4
    batch_size: int = 2
    steps: int = 1000
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    w_l1: float = 10.0
    w_adv: float = 1.0
    w_fm: float = 10.0
    w_mch: float = 8.0
    seed: int = 0
    log_every: int = 50


def generator_losses(
    teacher: Teacher,
    frames: torch.Tensor,
    lms: torch.Tensor,
    idx: torch.Tensor,
    cfg: MetaTrainConfig,
) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
    """One episode batch through E and G. frames, lms: (B, K+1, 3, S, S)."""
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
    l1 = F.l1_loss(fake, real)
    adv = -scores[:b].mean()
    fm = sum(F.l1_loss(f[:b], f[b:].detach()) for f in feats[:-1]) / max(len(feats) - 1, 1)
    mch = F.l1_loss(teacher.D.W(idx), e_hat)
    loss = cfg.w_l1 * l1 + cfg.w_adv * adv + cfg.w_fm * fm + cfg.w_mch * mch
    parts = {
        "l1": l1.item(),
        "adv": adv.item(),
        "fm": float(torch.as_tensor(fm).detach()),
        "mch": mch.item(),
    }
    return loss, parts, fake.detach()


def discriminator_loss(
    teacher: Teacher, real: torch.Tensor, fake: torch.Tensor, lm: torch.Tensor, idx: torch.Tensor
) -> torch.Tensor:
    b = real.shape[0]
    scores, _ = teacher.D(torch.cat([real, fake]), torch.cat([lm, lm]), idx.repeat(2))
    return F.relu(1 - scores[:b]).mean() + F.relu(1 + scores[b:]).mean()


def meta_train(
    videos: VideoSet,
    out_dir: str | Path,
    cfg: MetaTrainConfig,
    resume: bool = True,
    progress: bool = True,
) -> Path:
    """Meta-train a teacher on ``videos``; writes ``teacher.safetensors`` and logs to ``out_dir``.

    ``out_dir`` also gets ``history.json`` (losses per step) and ``samples.png`` (rows:
    landmark image, generated frame, real frame) at every save.

    With ``resume``, an existing checkpoint and optimiser state in ``out_dir`` continue.
    Returns the checkpoint path.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt, opt_path, hist_path = out / "teacher.safetensors", out / "optim.pt", out / "history.json"
    torch.manual_seed(cfg.seed)
    sampler = EpisodeSampler(videos, cfg.k, seed=cfg.seed)
    start, history = 0, []
    if resume and ckpt.exists() and opt_path.exists():
        teacher = load_checkpoint(ckpt, "teacher", expect_variant=cfg.teacher)
        start = int(teacher.notes.get("step", 0))
        history = json.loads(hist_path.read_text()) if hist_path.exists() else []
        log.info("resuming %s from step %d", cfg.teacher, start)
    else:
        teacher = create_teacher(cfg.teacher, num_videos=len(videos), resolution=videos.resolution)
    if teacher.cfg.num_videos != len(videos):
        raise ValueError(
            f"checkpoint has W for {teacher.cfg.num_videos} videos, data has {len(videos)}"
        )
    opt_g = torch.optim.Adam(
        [*teacher.E.parameters(), *teacher.G.parameters(), teacher.D.W.weight],
        lr=cfg.lr_g,
        betas=(0.0, 0.999),
    )
    opt_d = torch.optim.Adam(teacher.D.parameters(), lr=cfg.lr_d, betas=(0.0, 0.999))
    if start:
        state = torch.load(opt_path, weights_only=True)
        opt_g.load_state_dict(state["g"])
        opt_d.load_state_dict(state["d"])
    teacher.train()
    t0 = time.time()
    bar = tqdm(
        range(start, cfg.steps),
        desc="meta-train",
        disable=not progress,
        initial=start,
        total=cfg.steps,
    )
    for step in bar:
        frames, lms, idx = sampler.sample(cfg.batch_size)
        loss_g, parts, fake = generator_losses(teacher, frames, lms, idx, cfg)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        loss_d = discriminator_loss(teacher, frames[:, -1], fake, lms[:, -1], idx)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        parts.update(step=step + 1, loss_g=loss_g.item(), loss_d=loss_d.item())
        history.append(parts)
        bar.set_postfix(l1=f"{parts['l1']:.3f}", d=f"{parts['loss_d']:.2f}")
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            _save(teacher, opt_g, opt_d, history, out, step + 1, cfg, time.time() - t0)
            save_grid(
                [from_model_output(t.numpy()) for t in (lms[:, -1], fake, frames[:, -1])],
                out / "samples.png",
            )
    if start >= cfg.steps:
        log.info("checkpoint already at step %d >= %d", start, cfg.steps)
    return ckpt


def _save(teacher, opt_g, opt_d, history, out: Path, step: int, cfg: MetaTrainConfig, secs: float):
    save_checkpoint(out / "teacher.safetensors", teacher, "teacher", step=step, train=asdict(cfg))
    torch.save({"g": opt_g.state_dict(), "d": opt_d.state_dict()}, out / "optim.pt")
    (out / "history.json").write_text(json.dumps(history))
    log.info("step %d saved (%.0f s)", step, secs)
