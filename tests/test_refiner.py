"""The refiner (``models/refiner.py``): the universal phone student over the warped photo.

Behaviour only (the committed weights may be a placeholder while they train): its forms
in the registry, its output range and composition, that a fresh one passes the warp
through, and that a few training steps on tiny pairs lower the loss. Shapes, mobile ops
and checkpoints are in the registry-wide tests of tests/test_models.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from talkinghead.errors import InvalidInputError
from talkinghead.models.checkpoint import load_checkpoint
from talkinghead.models.refiner import (
    IN_CHANNELS,
    RefinerConfig,
    RefinerGenerator,
    compose_frame,
    create_refiner,
)
from talkinghead.models.registry import create_model, list_models

S = 64  # px


def _inputs(b: int, s: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, IN_CHANNELS, s, s, generator=g) * 2 - 1


def _randomise_head(model: RefinerGenerator, seed: int) -> RefinerGenerator:
    """Weights a trained refiner could have: the output head no longer zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.head.weight.copy_(torch.randn(model.head.weight.shape, generator=g) * 0.5)
        model.head.bias.copy_(torch.randn(model.head.bias.shape, generator=g))
    return model


def test_registry_forms():
    assert {"refiner-s", "refiner-xs"} <= set(list_models("refiner"))
    a = create_refiner("refiner-xs", resolution=S)
    b = create_model("refiner", "refiner-xs", resolution=S)
    assert isinstance(a, RefinerGenerator) and a.kind == "refiner"
    assert a.cfg == b.cfg and a.cfg.name == "refiner-xs" and a.cfg.resolution == S
    assert create_refiner("refiner-s").cfg.resolution == 256  # the default phone size
    assert create_refiner("refiner-s", num_res=3).cfg.num_res == 3
    (x,) = a.get_example_inputs()
    assert x.shape == (1, IN_CHANNELS, S, S) and a.get_eager_model() is a
    n = {
        name: sum(p.numel() for p in create_refiner(name).parameters())
        for name in ("refiner-xs", "refiner-s")
    }
    assert n["refiner-xs"] < n["refiner-s"]
    assert RefinerConfig.from_dict(a.cfg.to_dict()) == a.cfg


@pytest.mark.parametrize("resolution", [40, 16, 100])
def test_resolution_must_fit_the_levels(resolution):
    with pytest.raises(InvalidInputError, match="resolution"):
        create_refiner("refiner-s", resolution=resolution)


def test_unknown_refiner_is_invalid_input():
    with pytest.raises(InvalidInputError, match="unknown"):
        create_refiner("refiner-q")


@pytest.mark.parametrize("name", list_models("refiner"))
def test_output_in_range_and_composed_from_its_parts(name):
    torch.manual_seed(0)
    model = _randomise_head(create_refiner(name, resolution=S), seed=1).eval()
    x = _inputs(3, S, 2)
    with torch.no_grad():
        out = model(x[1:])
        correction, mask = model.parts(x[1:])
    assert out.shape == (2, 3, S, S)
    assert out.min() >= -1 and out.max() <= 1 and out.std() > 0.05
    assert correction.shape == (2, 3, S, S) and correction.abs().max() > 0
    assert mask.shape == (2, 1, S, S) and mask.min() >= 0 and mask.max() <= 1
    torch.testing.assert_close(out, compose_frame(x[1:, :3], correction, mask))
    # The blend: a mask of 1 keeps the warp's pixels, 0 adds the whole correction.
    ones, zeros = torch.ones_like(mask), torch.zeros_like(mask)
    torch.testing.assert_close(compose_frame(x[1:, :3], correction, ones), x[1:, :3])
    torch.testing.assert_close(
        compose_frame(x[1:, :3], correction, zeros), (x[1:, :3] + correction).clamp(-1, 1)
    )


@pytest.mark.parametrize("name", list_models("refiner"))
def test_a_fresh_refiner_passes_the_warp_through(name):
    torch.manual_seed(3)
    model = create_refiner(name, resolution=S).eval()
    x = _inputs(2, S, 4)
    with torch.no_grad():
        out = model(x)
        correction, _ = model.parts(x)
    # Its correction starts at zero, so whatever the blend, the frame is the warp.
    torch.testing.assert_close(correction, torch.zeros_like(correction))
    torch.testing.assert_close(out, x[:, :3])


def test_committed_refiner_loads(refiner_checkpoint):
    model = load_checkpoint(refiner_checkpoint, "refiner", expect_variant="refiner-s").eval()
    assert isinstance(model, RefinerGenerator) and model.cfg.resolution == 256
    with torch.no_grad():
        out = model(_inputs(1, 256, 5))
    assert out.shape == (1, 3, 256, 256) and torch.isfinite(out).all()


@pytest.fixture(scope="module")
def tiny_pairs(astronaut, face_landmarker_task):
    from talkinghead.train.refine_data import make_refine_pairs, track_photos

    tracked = track_photos({"astronaut": astronaut}, mirror=False)
    return make_refine_pairs(tracked, 6, size=S, seed=1, progress=False)


def test_training_pairs(tiny_pairs):
    p = tiny_pairs
    assert p.warped.shape == p.landmarks.shape == p.target.shape == (6, S, S, 3)
    assert p.validity.shape == (6, S, S) and p.ids.tolist() == [0] * 6
    assert all(a.dtype == np.uint8 for a in (p.warped, p.landmarks, p.validity, p.target))
    # The warped source is degraded: it is not the target already.
    assert np.abs(p.warped.astype(int) - p.target.astype(int)).mean() > 2
    assert (p.validity < 255).any()


@pytest.fixture
def one_thread():
    """A tiny model trains fastest on one thread (on a shared CPU, many times faster)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def hole_pairs(n: int = 4, seed: int = 0):
    """Tiny pairs with what a warp cannot draw: a square the warp had no pixels for (black,
    validity 0) in each warped frame; the target is the whole picture."""
    from talkinghead.train.refine_data import RefinePairs

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:S, 0:S]
    target = np.stack([np.stack([60 + 2 * x, 80 + y, np.full_like(x, 150)], -1)] * n)
    target = target.astype(np.uint8)
    warped, validity = target.copy(), np.full((n, S, S), 255, np.uint8)
    for i in range(n):
        oy, ox = rng.integers(16, 32, 2)
        warped[i, oy : oy + 16, ox : ox + 16] = 0
        validity[i, oy : oy + 16, ox : ox + 16] = 0
    return RefinePairs(warped, np.zeros_like(target), validity, target, np.zeros(n, np.int64))


@pytest.mark.parametrize("patch", [32, S], ids=["patches", "whole-frames"])
def test_a_few_training_steps_lower_the_loss(one_thread, patch):
    from talkinghead.train.refine import (
        RefineTrainConfig,
        pairs_to_tensors,
        refine_loss,
        to_unit,
        train_refiner,
    )

    pairs = hole_pairs()
    cfg = RefineTrainConfig(steps=30, batch=4, patch=patch, lr=1e-2, seed=0)
    torch.manual_seed(0)
    model = create_refiner("refiner-xs", resolution=S)
    x, t = pairs_to_tensors(pairs)
    x, t = to_unit(x), to_unit(t)
    with torch.no_grad():
        before, parts_before = refine_loss(model.eval(), x, t, cfg)
    model, history = train_refiner(pairs, model, cfg, progress=False)
    assert len(history) == cfg.steps and not model.training
    with torch.no_grad():
        after, parts_after = refine_loss(model, x, t, cfg)
    assert float(after) < 0.7 * float(before), (float(before), float(after))
    assert parts_after["hole"] < 0.5 * parts_before["hole"]  # it learnt to fill the holes


def test_training_refuses_bad_settings(tiny_pairs):
    from talkinghead.train.refine import RefineTrainConfig, train_refiner

    for cfg in (RefineTrainConfig(steps=1, patch=40), RefineTrainConfig(steps=1, patch=2 * S)):
        with pytest.raises(InvalidInputError, match="patch"):
            train_refiner(
                tiny_pairs, create_refiner("refiner-xs", resolution=S), cfg, progress=False
            )
