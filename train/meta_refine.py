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
from collections import OrderedDict
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
from talkinghead.train.refine import grad_l1, hwc_to_unit, pairs_to_tensors, to_unit
from talkinghead.train.refine_data import RefinePairs, make_pair, shot_rigs, warp_shots

log = logging.getLogger(__name__)

# Faces with parted lips and teeth kept out of the teacher's training (and so out of the
# student distilled from it), so that few-shot enrolment is measured where the shots have
# something to show (``benchmarks/teacher_eval.py``); grace_hopper and pypi:biden stay
# out of every step anyway.
TEACHER_HELD_OUT = ("pypi:children-alpha.3", "pypi:00017-gray.0")


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
class ShotBank:
    """Shots warped to their targets ahead of training (a warp costs ~30 ms on the CPU).

    Row ``r`` belongs to pair ``targets[r]``: ``M`` other pairs of the same photo
    (``sources[r]``), their shots warped to that pair's target mesh.
    """

    targets: np.ndarray  # (T,) pair indices
    sources: np.ndarray  # (T, M) pair indices
    warped: np.ndarray  # (T, M, S, S, 3) uint8
    validity: np.ndarray  # (T, M, S, S) uint8


def pick_others(ids: np.ndarray, j: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` pairs of the same photo as pair ``j`` (``ids`` per pair), ``j`` excluded."""
    same = np.flatnonzero(ids == ids[j])
    pool = same[same != j]
    if len(pool) < k:
        raise InvalidInputError(f"pair {j} has {len(pool)} other pairs, {k} shots asked")
    return rng.choice(pool, size=k, replace=False)


def make_shot_bank(
    pairs: RefinePairs, targets: np.ndarray, m: int, seed: int = 0, progress: bool = True
) -> ShotBank:
    """For each pair in ``targets``, ``m`` shots of other pairs of its photo warped to it."""
    if pairs.shots is None or pairs.shot_meshes is None or pairs.target_meshes is None:
        raise InvalidInputError("the shot bank needs pairs made with_shots=True")
    rng = np.random.default_rng(seed)
    targets = np.asarray(targets, np.int64)
    s = pairs.target.shape[1]
    bank = ShotBank(
        targets,
        np.empty((len(targets), m), np.int64),
        np.empty((len(targets), m, s, s, 3), np.uint8),
        np.empty((len(targets), m, s, s), np.uint8),
    )
    rigs = _RigCache(pairs)
    for r, j in enumerate(tqdm(targets, desc="shot bank", disable=not progress)):
        bank.sources[r] = pick_others(pairs.ids, int(j), m, rng)
        bank.warped[r], bank.validity[r] = warp_shots(
            rigs.get(bank.sources[r]), pairs.target_meshes[j]
        )
    return bank


class _RigCache:
    """Warp rigs of pairs' shots, the most recent ``size`` kept (pairs come photo by photo)."""

    def __init__(self, pairs: RefinePairs, size: int = 160):
        self.pairs, self.size, self.rigs = pairs, size, OrderedDict()

    def get(self, idx: np.ndarray) -> list:
        missing = [int(i) for i in idx if int(i) not in self.rigs]
        if missing:
            assert self.pairs.shots is not None and self.pairs.shot_meshes is not None
            made = shot_rigs(self.pairs.shots[missing], self.pairs.shot_meshes[missing])
            self.rigs.update(zip(missing, made, strict=True))
        for i in idx:
            self.rigs.move_to_end(int(i))
        while len(self.rigs) > self.size:
            self.rigs.popitem(last=False)
        return [self.rigs[int(i)] for i in idx]


@dataclass
class Episodes:
    """Pairs with shots as float tensors in [-1, 1] (built once; uint8 in memory)."""

    x: torch.Tensor  # (N, 7, S, S) uint8
    target: torch.Tensor  # (N, 3, S, S) uint8
    shots: torch.Tensor  # (N, 3, S, S) uint8
    shot_lms: torch.Tensor  # (N, 3, S, S) uint8
    ids: np.ndarray  # (N,)
    pairs: RefinePairs | None = None  # for warping shots to targets (shot_warp teachers)
    bank: ShotBank | None = None
    _rigs: _RigCache | None = None

    @classmethod
    def from_pairs(cls, pairs: RefinePairs, bank: ShotBank | None = None) -> Episodes:
        if pairs.shots is None or pairs.shot_landmarks is None:
            raise InvalidInputError("the teacher needs pairs made with_shots=True")
        x, target = pairs_to_tensors(pairs)

        def chw(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(np.moveaxis(a, -1, 1)))

        return cls(x, target, chw(pairs.shots), chw(pairs.shot_landmarks), pairs.ids, pairs, bank)

    def others(self, j: int) -> np.ndarray:
        """Indices of the pairs of the same photo as pair ``j``, ``j`` excluded."""
        same = np.flatnonzero(self.ids == self.ids[j])
        return same[same != j]

    def shots_for(self, j: int, k: int, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        """K shots of pair ``j``'s photo from other pairs: ``(K, 3, S, S)`` x 2 in [-1, 1]."""
        pick = pick_others(self.ids, j, k, rng)
        return to_unit(self.shots[pick]), to_unit(self.shot_lms[pick])

    def episode(self, j: int, k: int, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        """K shots of pair ``j``'s photo and the same shots warped to its target:
        ``(K, 3, S, S)`` shots and landmarks, ``(1, K, 3, S, S)`` warped shots and
        ``(1, K, 1, S, S)`` their validity, all in [-1, 1]. From the shot bank where it
        has pair ``j`` (and ``k`` <= its M), warped now otherwise."""
        bank = self.bank
        rows = np.flatnonzero(bank.targets == j) if bank is not None else ()
        if bank is not None and len(rows) and k <= bank.sources.shape[1]:
            cols = rng.choice(bank.sources.shape[1], size=k, replace=False)
            pick = bank.sources[rows[0], cols]
            warped, validity = bank.warped[rows[0], cols], bank.validity[rows[0], cols]
        else:
            pick = pick_others(self.ids, j, k, rng)
            if self.pairs is None or self.pairs.target_meshes is None:
                raise InvalidInputError("warping shots needs pairs with target meshes")
            self._rigs = self._rigs or _RigCache(self.pairs)
            warped, validity = warp_shots(self._rigs.get(pick), self.pairs.target_meshes[j])
        return (
            to_unit(self.shots[pick]),
            to_unit(self.shot_lms[pick]),
            hwc_to_unit(warped)[None],
            hwc_to_unit(validity[..., None])[None],
        )


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
    pairs: RefinePairs,
    cfg: RefineMetaConfig = RefineMetaConfig(),
    progress: bool = True,
    bank: ShotBank | None = None,
) -> tuple[Teacher, list[dict[str, float]]]:
    """Meta-train a refine-form teacher on pairs made ``with_shots``; returns it (eval mode).

    A ``shot_warp`` teacher trains on the targets of ``bank`` (their shots warped ahead of
    time), or on every pair with its shots warped as it is drawn when there is no bank.
    """
    ep = Episodes.from_pairs(pairs, bank)
    ids = np.unique(ep.ids)
    counts = np.array([(ep.ids == i).sum() for i in ids])
    if len(ids) == 0 or counts.min() < 2:
        raise InvalidInputError("every photo needs at least 2 pairs (a target and a shot)")
    id_row = {int(i): r for r, i in enumerate(ids)}  # D's W row of each photo
    size = ep.x.shape[-1]
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    teacher = create_teacher(cfg.teacher, num_videos=len(ids), resolution=size)
    warp = teacher.E.fuse is not None
    k_cap = min(cfg.k_max, counts.min() - 1)
    if warp and bank is not None:
        k_cap = min(k_cap, bank.sources.shape[1])
    draw = bank.targets if warp and bank is not None else np.arange(len(ep.ids))
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
        k = int(rng.integers(1, k_cap + 1))
        js = rng.choice(draw, cfg.batch)
        eps = [ep.episode(int(j), k, rng) if warp else ep.shots_for(int(j), k, rng) for j in js]
        e = torch.cat([embed(teacher, s[0], s[1]) for s in eps])  # (B, e_dim)
        x, target = to_unit(ep.x[js]), to_unit(ep.target[js])
        if warp:
            x = teacher.g_input(x, torch.cat([s[2] for s in eps]), torch.cat([s[3] for s in eps]))
        rows = torch.tensor([id_row[int(ep.ids[j])] for j in js])
        w = teacher.D.W(rows)
        loss_g, parts, fake = _generator_step(teacher, content, cfg, x, target, e, w)
        mch = embedding_match(w, e)
        loss_g = loss_g + cfg.w_mch * mch
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        loss_d = _discriminator_loss(teacher, x.detach(), target, fake, w.detach())
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        parts.update(step=step + 1, k=k, mch=mch.item(), loss_g=loss_g.item(), loss_d=loss_d.item())
        history.append(parts)
    teacher.eval()
    return teacher, history


@torch.no_grad()
def feed_forward(
    teacher: Teacher,
    x: torch.Tensor,
    shots: torch.Tensor,
    shot_lms: torch.Tensor,
    warped: torch.Tensor | None = None,
    validity: torch.Tensor | None = None,
) -> torch.Tensor:
    """FF enrolment: frames for refiner inputs ``x (B, 7, S, S)`` from K shots, no training.

    A ``shot_warp`` teacher also takes the shots warped to each target, ``warped (B, K, 3,
    S, S)`` and ``validity (B, K, 1, S, S)`` (:meth:`Episodes.episode`)."""
    return teacher.G(teacher.g_input(x, warped, validity), embed(teacher, shots, shot_lms))


def ft_pairs(
    teacher: Teacher, shots: np.ndarray, shot_meshes: np.ndarray, pairs_per_shot: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The pairs FT trains on, made from K shots of a face: G's inputs and their targets.

    Each shot is degraded and warped back to itself (:func:`make_pair`); a ``shot_warp``
    teacher also gets, for a pair made from shot ``i``, the other shots warped to it.
    """
    from talkinghead.sdk.landmarks import mediapipe_to_68

    size = shots.shape[1]
    rng = np.random.default_rng(seed)
    warp = teacher.E.fuse is not None
    rigs = shot_rigs(shots, shot_meshes) if warp and len(shots) > 1 else []
    xs, targets = [], []
    for i, (s, m) in enumerate(zip(shots, shot_meshes, strict=True)):
        for _ in range(pairs_per_shot):
            made = make_pair(s, m.astype(np.float64), mediapipe_to_68(m), size, rng, warp)
            pair = RefinePairs(*(a[None] for a in made[:4]), ids=None)
            x, target = (to_unit(t) for t in pairs_to_tensors(pair))
            if warp:
                others = [r for n, r in enumerate(rigs) if n != i]
                w, v = warp_shots(others, made[-1])
                with torch.no_grad():
                    x = teacher.g_input(x, hwc_to_unit(w)[None], hwc_to_unit(v[..., None])[None])
            xs.append(x)
            targets.append(target)
    return torch.cat(xs), torch.cat(targets)


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
    degraded and warped back to itself; a ``shot_warp`` teacher's pairs also carry the
    other shots warped to them, :func:`ft_pairs`). The copy's G carries the tuned psi as
    its projection's bias (weight zeroed), so ``copy.G(copy.g_input(x, ...), e)`` renders
    the face for any e.
    """
    if len(shots) != len(shot_meshes) or len(shots) == 0:
        raise InvalidInputError("fine_tune needs K >= 1 shots and as many meshes")
    from talkinghead.sdk.landmarks import mediapipe_to_68
    from talkinghead.sdk.rasterize import rasterize_landmarks

    size = shots.shape[1]
    x_all, t_all = ft_pairs(teacher, shots, shot_meshes, pairs_per_shot, seed)
    shot_t = hwc_to_unit(shots)
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
    ap.add_argument(
        "--bank-per-photo",
        type=int,
        default=30,
        help="targets per photo whose k-max shots are warped ahead of training",
    )
    ap.add_argument(
        "--ship", type=Path, default=None, help="also write a float16 copy here (shipped weights)"
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pairs = training_pairs(args.out, args.pairs_per_photo, args.size)
    data_s = time.perf_counter() - t0
    cfg = RefineMetaConfig(teacher=args.variant, steps=args.steps, k_max=args.k_max)
    bank = None
    if create_teacher(args.variant).E.fuse is not None:
        t0 = time.perf_counter()
        targets = np.concatenate(
            [np.flatnonzero(pairs.ids == i)[: args.bank_per_photo] for i in np.unique(pairs.ids)]
        )
        bank = make_shot_bank(pairs, targets, args.k_max, cfg.seed)
        data_s += time.perf_counter() - t0
    t0 = time.perf_counter()
    teacher, history = meta_train_refine(pairs, cfg, bank=bank)
    train_s = time.perf_counter() - t0
    notes = dict(
        pairs=len(pairs.target),
        photos=int(len(np.unique(pairs.ids))),
        bank_targets=0 if bank is None else len(bank.targets),
        held_out=list(TEACHER_HELD_OUT),
        train=asdict(cfg),
        data_s=round(data_s, 1),
        train_s=round(train_s, 1),
    )
    ckpt = save_checkpoint(args.out / f"{args.variant}.safetensors", teacher, "teacher", **notes)
    if args.ship is not None:
        save_checkpoint(args.ship, teacher, "teacher", half=True, **notes)
    (args.out / "history.json").write_text(json.dumps(history))
    print(f"wrote {ckpt}: {len(pairs.target)} pairs, {args.steps} steps in {train_s:.0f} s")
    return 0


def training_pairs(folder: Path, pairs_per_photo: int, size: int) -> RefinePairs:
    """The refiner's training photos, less :data:`TEACHER_HELD_OUT`, as pairs with shots,
    cached in ``folder``."""
    cached = folder / f"pairs-shots-{pairs_per_photo}-{size}.npz"
    if cached.is_file():  # make_refine_pairs is deterministic
        with np.load(cached) as z:
            return RefinePairs(**{k: z[k] for k in z.files})
    from talkinghead.train.refine import training_photos
    from talkinghead.train.refine_data import make_refine_pairs, track_photos

    photos = {k: v for k, v in training_photos().items() if k not in TEACHER_HELD_OUT}
    pairs = make_refine_pairs(track_photos(photos), pairs_per_photo, size, with_shots=True)
    np.savez(cached, **vars(pairs))
    return pairs


if __name__ == "__main__":
    raise SystemExit(main())
