"""Meta-learning of the refine-form teacher, and its few-shot enrolment (FF and FT).

The teacher (``models/teacher.py``, form ``"refine"``) is the seed's E, G and D around the
warp: G corrects the warped photo as the phone's refiner does, and E's identity vector,
averaged over K shots of the same person, reaches G's AdaIN layers.

Episodes come from :mod:`talkinghead.train.refine_data` pairs made ``with_shots``: the
target is a real photo, G's input the degraded source warped back to it, and the K shots
are the degraded sources of *other* pairs of the same photo (the person at other poses,
mouth closed or open, eyes shut or open, other lighting). What a warp cannot draw (the
teeth behind a closed-mouth source, an eye behind a blink) is therefore often visible in
some shot, and more shots show more of it: that is what E learns to carry to G.

Losses per step (Zakharov et al. 2019, section 3.2, on the finished frame):
- content: L1 (plus VGG19 / VGGFace terms given their weights files), with extra weight
  where the warp had no real pixels, and L1 on image gradients;
- adversarial: hinge, D conditioned on G's 7-channel input;
- feature matching on D's features;
- embedding match between D's W_i and the episode's e.

    python -m talkinghead.train.meta_refine --out runs/teacher-refine --steps 800

Few-shot enrolment of a new face (section 3.3): :func:`feed_forward` (psi = P e, no
training) and :func:`fine_tune` (psi and D's w start from e, then G, psi and D train on
pairs made from the K shots themselves).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from talkinghead.errors import InvalidInputError
from talkinghead.models.checkpoint import save_checkpoint
from talkinghead.models.teacher import Teacher, create_teacher
from talkinghead.train.losses import (
    ContentConfig,
    ContentLoss,
    embedding_match,
    feature_matching,
    hinge_d,
    hinge_g,
)
from talkinghead.train.refine import grad_l1, pairs_to_tensors, to_unit
from talkinghead.train.refine_data import RefinePairs, make_pair

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefineMetaConfig:
    teacher: str = "teacher-refine-xs"
    k_max: int = 8  # each step draws K in [1, k_max] shots, so E sees every count
    batch: int = 2  # episodes per step
    steps: int = 800
    # Higher than the paper's 2e-4 (and betas 0.5): a CPU run has hundreds of steps, not
    # hundreds of thousands; at 2e-4 the head and the AdaIN projection barely left zero.
    lr_g: float = 1e-3
    lr_d: float = 4e-4
    beta1: float = 0.5
    w_l1: float = 10.0
    w_hole: float = 40.0  # extra L1 where the warp had no real pixels
    w_grad: float = 10.0
    w_adv: float = 0.1
    w_fm: float = 1.0
    w_mch: float = 1.0  # the paper's 8 pulled every e onto its small W_i: E went constant
    vgg19_weights: str | None = None
    vggface_weights: str | None = None
    seed: int = 0

    def content(self) -> ContentConfig:
        return ContentConfig(self.w_l1, 1.5e-1, 2.5e-2, self.vgg19_weights, self.vggface_weights)


@dataclass
class Episodes:
    """Pairs with shots as float tensors in [-1, 1] (built once; uint8 in memory)."""

    x: torch.Tensor  # (N, 7, S, S) uint8
    target: torch.Tensor  # (N, 3, S, S) uint8
    shots: torch.Tensor  # (N, 3, S, S) uint8
    shot_lms: torch.Tensor  # (N, 3, S, S) uint8
    ids: np.ndarray  # (N,)

    @classmethod
    def from_pairs(cls, pairs: RefinePairs) -> Episodes:
        if pairs.shots is None or pairs.shot_landmarks is None:
            raise InvalidInputError("the teacher needs pairs made with_shots=True")
        x, target = pairs_to_tensors(pairs)

        def chw(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(np.moveaxis(a, -1, 1)))

        return cls(x, target, chw(pairs.shots), chw(pairs.shot_landmarks), pairs.ids)

    def others(self, j: int) -> np.ndarray:
        """Indices of the pairs of the same photo as pair ``j``, ``j`` excluded."""
        same = np.flatnonzero(self.ids == self.ids[j])
        return same[same != j]

    def shots_for(self, j: int, k: int, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        """K shots of pair ``j``'s photo from other pairs: ``(K, 3, S, S)`` x 2 in [-1, 1]."""
        pool = self.others(j)
        if len(pool) < k:
            raise InvalidInputError(f"pair {j} has {len(pool)} other pairs, {k} shots asked")
        pick = rng.choice(pool, size=k, replace=False)
        return to_unit(self.shots[pick]), to_unit(self.shot_lms[pick])


def embed(teacher: Teacher, shots: torch.Tensor, shot_lms: torch.Tensor) -> torch.Tensor:
    """e averaged over K shots: ``(K, 3, S, S)`` x 2 -> ``(1, e_dim)``."""
    return teacher.E(shots, shot_lms).mean(dim=0, keepdim=True)


def _generator_step(teacher, content, cfg, x, target, e, w, psi=None):
    """G's losses for frames ``x -> target`` under identity vectors ``e`` (or AdaIN
    parameters ``psi``) and D vectors ``w`` (one row per frame)."""
    fake = teacher.G(x, e, psi=psi)
    scores, feats = teacher.D(torch.cat([fake, target]), torch.cat([x, x]), w=w.repeat(2, 1))
    b = len(x)
    cnt, parts = content(fake, target)
    valid = (x[:, 6:7] + 1) / 2
    hole = ((fake - target).abs() * (1 - valid)).mean()
    grad = grad_l1(fake, target)
    adv = hinge_g(scores[:b])
    fm = feature_matching([f[:b] for f in feats[:-1]], [f[b:] for f in feats[:-1]])
    loss = cnt + cfg.w_hole * hole + cfg.w_grad * grad + cfg.w_adv * adv + cfg.w_fm * fm
    parts.update(hole=hole.item(), grad=grad.item(), adv=adv.item(), fm=fm.item())
    return loss, parts, fake.detach()


def _discriminator_loss(teacher, x, target, fake, w):
    b = len(x)
    scores, _ = teacher.D(torch.cat([target, fake]), torch.cat([x, x]), w=w.repeat(2, 1))
    return hinge_d(scores[:b], scores[b:])


def meta_train_refine(
    pairs: RefinePairs, cfg: RefineMetaConfig = RefineMetaConfig(), progress: bool = True
) -> tuple[Teacher, list[dict[str, float]]]:
    """Meta-train a refine-form teacher on pairs made ``with_shots``; returns it (eval mode)."""
    ep = Episodes.from_pairs(pairs)
    ids = np.unique(ep.ids)
    counts = np.array([(ep.ids == i).sum() for i in ids])
    if len(ids) == 0 or counts.min() < 2:
        raise InvalidInputError("every photo needs at least 2 pairs (a target and a shot)")
    id_row = {int(i): r for r, i in enumerate(ids)}  # D's W row of each photo
    size = ep.x.shape[-1]
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    teacher = create_teacher(cfg.teacher, num_videos=len(ids), resolution=size)
    content = ContentLoss(cfg.content())
    opt_g = torch.optim.Adam(
        [*teacher.E.parameters(), *teacher.G.parameters(), teacher.D.W.weight],
        lr=cfg.lr_g,
        betas=(cfg.beta1, 0.999),
    )
    d_params = [p for n, p in teacher.D.named_parameters() if n != "W.weight"]
    opt_d = torch.optim.Adam(d_params, lr=cfg.lr_d, betas=(cfg.beta1, 0.999))
    teacher.train()
    history = []
    for step in tqdm(range(cfg.steps), desc="teacher (refine)", disable=not progress):
        k = int(rng.integers(1, min(cfg.k_max, counts.min() - 1) + 1))
        js = rng.integers(0, len(ep.ids), cfg.batch)
        shots = [ep.shots_for(int(j), k, rng) for j in js]
        e = torch.cat([embed(teacher, s, lm) for s, lm in shots])  # (B, e_dim)
        x, target = to_unit(ep.x[js]), to_unit(ep.target[js])
        rows = torch.tensor([id_row[int(ep.ids[j])] for j in js])
        w = teacher.D.W(rows)
        loss_g, parts, fake = _generator_step(teacher, content, cfg, x, target, e, w)
        mch = embedding_match(w, e)
        loss_g = loss_g + cfg.w_mch * mch
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        loss_d = _discriminator_loss(teacher, x, target, fake, w.detach())
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        parts.update(step=step + 1, k=k, mch=mch.item(), loss_g=loss_g.item(), loss_d=loss_d.item())
        history.append(parts)
    teacher.eval()
    return teacher, history


@torch.no_grad()
def feed_forward(
    teacher: Teacher, x: torch.Tensor, shots: torch.Tensor, shot_lms: torch.Tensor
) -> torch.Tensor:
    """FF enrolment: frames for refiner inputs ``x (B, 7, S, S)`` from K shots, no training."""
    return teacher.G(x, embed(teacher, shots, shot_lms))


def fine_tune(
    teacher: Teacher,
    shots: np.ndarray,
    shot_meshes: np.ndarray,
    steps: int = 30,
    pairs_per_shot: int = 2,
    lr: float = 5e-5,
    seed: int = 0,
    cfg: RefineMetaConfig = RefineMetaConfig(),
) -> Teacher:
    """FT enrolment: a copy of ``teacher`` fine-tuned on K shots of one face.

    Args:
        shots: ``(K, S, S, 3) uint8`` photos of the face, aligned crops.
        shot_meshes: ``(K, 478, 3)`` their meshes, crop px.

    psi starts from P e (e over the K shots) and D's w from e; then G, psi and D train on
    pairs made from the shots by :func:`~talkinghead.train.refine_data.make_pair` (each shot
    degraded and warped back to itself). The copy's G carries the tuned psi as its
    projection's bias (weight zeroed), so ``copy.G(x, e)`` renders the face for any e.
    """
    if len(shots) != len(shot_meshes) or len(shots) == 0:
        raise InvalidInputError("fine_tune needs K >= 1 shots and as many meshes")
    from talkinghead.sdk.landmarks import mediapipe_to_68

    size = shots.shape[1]
    rng = np.random.default_rng(seed)
    made = [
        make_pair(s, m.astype(np.float64), mediapipe_to_68(m), size, rng)
        for s, m in zip(shots, shot_meshes, strict=True)
        for _ in range(pairs_per_shot)
    ]
    ft_pairs = RefinePairs(*(np.stack(a) for a in zip(*made, strict=True)), ids=None)
    x_all, t_all = (to_unit(t) for t in pairs_to_tensors(ft_pairs))
    shot_t = to_unit(torch.from_numpy(np.ascontiguousarray(np.moveaxis(shots, -1, 1))))
    from talkinghead.sdk.rasterize import rasterize_landmarks

    lm_t = to_unit(
        torch.from_numpy(
            np.stack(
                [
                    np.moveaxis(rasterize_landmarks(mediapipe_to_68(m), size), -1, 0)
                    for m in shot_meshes
                ]
            )
        )
    )
    tuned = copy.deepcopy(teacher)
    with torch.no_grad():
        e = embed(tuned, shot_t, lm_t)
        psi = torch.nn.Parameter(tuned.G.psi(e).clone())
    w = torch.nn.Parameter(e.clone())
    content = ContentLoss(cfg.content())
    opt_g = torch.optim.Adam([*tuned.G.parameters(), psi], lr=lr, betas=(0.0, 0.999))
    d_params = [p for n, p in tuned.D.named_parameters() if n != "W.weight"]
    opt_d = torch.optim.Adam([*d_params, w], lr=lr, betas=(0.0, 0.999))
    tuned.train()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(x_all), (min(4, len(x_all)),), generator=gen)
        x, target = x_all[idx], t_all[idx]
        rows = w.expand(len(x), -1)
        loss, _, fake = _generator_step(tuned, content, cfg, x, target, None, rows, psi=psi)
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        loss_d = _discriminator_loss(tuned, x, target, fake, rows)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
    tuned.eval()
    with torch.no_grad():  # bake psi in: P e -> psi for every e
        tuned.G.project.weight.zero_()
        tuned.G.project.bias.copy_(psi[0])
    return tuned


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Meta-train the refine-form teacher.")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--pairs-per-photo", type=int, default=60)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variant", default="teacher-refine-xs")
    ap.add_argument("--k-max", type=int, default=8)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pairs = training_pairs(args.out, args.pairs_per_photo, args.size)
    data_s = time.perf_counter() - t0
    cfg = RefineMetaConfig(teacher=args.variant, steps=args.steps, k_max=args.k_max)
    t0 = time.perf_counter()
    teacher, history = meta_train_refine(pairs, cfg)
    train_s = time.perf_counter() - t0
    ckpt = save_checkpoint(
        args.out / f"{args.variant}.safetensors",
        teacher,
        "teacher",
        pairs=len(pairs.target),
        photos=int(len(np.unique(pairs.ids))),
        train=asdict(cfg),
        data_s=round(data_s, 1),
        train_s=round(train_s, 1),
    )
    (args.out / "history.json").write_text(json.dumps(history))
    print(f"wrote {ckpt}: {len(pairs.target)} pairs, {args.steps} steps in {train_s:.0f} s")
    return 0


def training_pairs(folder: Path, pairs_per_photo: int, size: int) -> RefinePairs:
    """The refiner's training photos as pairs with shots, cached in ``folder``."""
    cached = folder / f"pairs-shots-{pairs_per_photo}-{size}.npz"
    if cached.is_file():  # make_refine_pairs is deterministic
        with np.load(cached) as z:
            return RefinePairs(**{k: z[k] for k in z.files})
    from talkinghead.train.refine import training_photos
    from talkinghead.train.refine_data import make_refine_pairs, track_photos

    pairs = make_refine_pairs(
        track_photos(training_photos()), pairs_per_photo, size, with_shots=True
    )
    np.savez(cached, **vars(pairs))
    return pairs


if __name__ == "__main__":
    raise SystemExit(main())
