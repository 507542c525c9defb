"""Few-shot enrolment of a new identity (Zakharov et al. 2019, section 3.3).

- Feed-forward (FF): e = mean of E over the K shots; G renders with psi = P e. No training.
- Fine-tuned (FT): start from psi' = P e and D's vector w' = e, then fine-tune G, psi' and D
  on the K shots with the meta-learning losses minus the embedding match.

The paper evaluates K = 1, 8 and 32 shots; any K >= 1 works.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from talkinghead.errors import InvalidInputError
from talkinghead.models.teacher import Generator, Teacher
from talkinghead.train.losses import ContentConfig, ContentLoss, feature_matching, hinge_d, hinge_g


@dataclass
class FinetuneConfig:
    steps: int = 100
    batch_size: int = 4
    lr_g: float = 1e-4
    lr_psi: float = 1e-3
    lr_d: float = 2e-4
    w_l1: float = 10.0
    w_adv: float = 1.0
    w_fm: float = 10.0
    seed: int = 0
    vgg19_weights: str | None = None  # perceptual content terms, as in meta-learning
    vggface_weights: str | None = None


class Enrolled(nn.Module):
    """A generator bound to one identity: landmark image (B, 3, S, S) -> image (B, 3, S, S)."""

    def __init__(self, G: Generator, psi: torch.Tensor):
        super().__init__()
        self.G = G
        self.psi = nn.Parameter(psi.detach().clone())

    def forward(self, landmarks: torch.Tensor) -> torch.Tensor:
        return self.G(landmarks, psi=self.psi)


def _check_shots(frames: torch.Tensor, lms: torch.Tensor, teacher: Teacher) -> None:
    s = teacher.cfg.resolution
    for name, t in (("frames", frames), ("landmark images", lms)):
        if t.ndim != 4 or t.shape[1:] != (3, s, s):
            raise InvalidInputError(f"{name} must be (K, 3, {s}, {s}), got {tuple(t.shape)}")
    if frames.shape[0] != lms.shape[0] or frames.shape[0] < 1:
        raise InvalidInputError(
            f"need K >= 1 matching shots, got {frames.shape[0]} and {lms.shape[0]}"
        )


def enrol_feed_forward(teacher: Teacher, frames: torch.Tensor, lms: torch.Tensor) -> Enrolled:
    """FF mode: (K, 3, S, S) shots and landmark images -> a generator for that identity."""
    _check_shots(frames, lms, teacher)
    teacher.eval()
    with torch.no_grad():
        psi = teacher.G.psi(teacher.embed(frames, lms))
    return Enrolled(copy.deepcopy(teacher.G), psi)


def enrol_fine_tuned(
    teacher: Teacher,
    frames: torch.Tensor,
    lms: torch.Tensor,
    cfg: FinetuneConfig | None = None,
    progress: bool = True,
) -> Enrolled:
    """FT mode: fine-tune a copy of G and D on the K shots; returns the enrolled generator."""
    cfg = cfg or FinetuneConfig()
    _check_shots(frames, lms, teacher)
    torch.manual_seed(cfg.seed)
    teacher.eval()
    with torch.no_grad():
        e = teacher.embed(frames, lms)
    enrolled = Enrolled(copy.deepcopy(teacher.G), teacher.G.psi(e))
    D = copy.deepcopy(teacher.D)
    w = nn.Parameter(e.detach().clone())
    opt_g = torch.optim.Adam(
        [
            {"params": enrolled.G.parameters(), "lr": cfg.lr_g},
            {"params": [enrolled.psi], "lr": cfg.lr_psi},
        ],
        betas=(0.0, 0.999),
    )
    opt_d = torch.optim.Adam([*D.parameters(), w], lr=cfg.lr_d, betas=(0.0, 0.999))
    enrolled.train()
    D.train()
    gen = torch.Generator().manual_seed(cfg.seed)
    content = ContentLoss(
        ContentConfig(
            w_l1=cfg.w_l1, vgg19_weights=cfg.vgg19_weights, vggface_weights=cfg.vggface_weights
        )
    )
    k = frames.shape[0]
    for _ in tqdm(range(cfg.steps), desc="fine-tune", disable=not progress):
        pick = torch.randint(0, k, (min(cfg.batch_size, k),), generator=gen)
        real, lm = frames[pick], lms[pick]
        b = real.shape[0]
        fake = enrolled(lm)
        scores, feats = D(torch.cat([fake, real]), torch.cat([lm, lm]), w=w)
        fm = feature_matching([f[:b] for f in feats[:-1]], [f[b:] for f in feats[:-1]])
        loss = content(fake, real)[0] + cfg.w_adv * hinge_g(scores[:b]) + cfg.w_fm * fm
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        scores, _ = D(torch.cat([real, fake.detach()]), torch.cat([lm, lm]), w=w)
        loss_d = hinge_d(scores[:b], scores[b:])
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
    return enrolled.eval()
