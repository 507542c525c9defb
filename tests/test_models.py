"""Teacher, student and refiner networks, the registry, and safetensors checkpoints.

Tests are parametrized over every registered variant, so a new one is tested without
new test code. Teachers run at 64 px with narrow channels to stay fast on a CPU.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from talkinghead.errors import CheckpointError, InvalidInputError
from talkinghead.models.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from talkinghead.models.layers import AdaIN
from talkinghead.models.refiner import RefinerGenerator, create_refiner
from talkinghead.models.registry import create_model, list_models
from talkinghead.models.student import StudentGenerator, create_student
from talkinghead.models.teacher import Teacher, create_teacher

TEACHERS = list_models("teacher")
STUDENTS = list_models("student")
REFINERS = list_models("refiner")
# Every phone generator, (kind, name): the distilled students and the warp refiners.
GENERATORS = [("student", n) for n in STUDENTS] + [("refiner", n) for n in REFINERS]
S = 64  # px, the test resolution
# Narrow teachers: the architecture (levels, attention, AdaIN layout) stays the variant's.
SMALL = {"base_channels": 8, "max_channels": 32}
# Ops a phone delegate runs well; anything else in a student graph is a regression.
STUDENT_OPS = {
    "aten.conv2d.default",
    "aten.relu.default",
    "aten.add.Tensor",
    "aten.cat.default",
    "aten.tanh.default",
    "aten.hardtanh.default",  # the clamp output: int8-exact on [-1, 1]
    "aten.upsample_bilinear2d.vec",
    "aten.upsample_nearest2d.vec",
}
# The refiner lays its half-resolution head out at full resolution with a pixel shuffle
# (a reshape and a transpose on every runtime) and composes its frame in the graph:
# clamp(warped + (1 - m) * correction).
REFINER_OPS = STUDENT_OPS | {
    "aten.pixel_shuffle.default",
    "aten.sigmoid.default",
    "aten.mul.Tensor",
    "aten.slice.Tensor",
}


def _small_teacher(name: str, **overrides) -> Teacher:
    """``name`` at the smallest resolution its levels allow (>= 64 px), narrow channels."""
    cfg = create_teacher(name, base_channels=2, max_channels=2).cfg
    res = max(S, 2 ** max(cfg.num_down, cfg.disc_levels))
    torch.manual_seed(0)
    return create_teacher(name, **{"resolution": res, "num_videos": 3, **SMALL, **overrides})


def _images(b: int, s: int, seed: int = 0, channels: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, channels, s, s, generator=g) * 2 - 1


def _g_input(teacher: Teacher, b: int, seed: int) -> torch.Tensor:
    """G's input: a landmark image (synth) or the refiner's 7 channels (refine)."""
    return _images(b, teacher.cfg.resolution, seed, teacher.cfg.g_in_channels)


@pytest.fixture(scope="module", params=TEACHERS)
def teacher(request) -> Teacher:
    return _small_teacher(request.param).eval()


def test_registry_lists_the_known_variants():
    assert {
        "teacher-xs",
        "teacher-s",
        "teacher-256",
        "teacher-refine-xs",
        "teacher-refine-256",
    } <= set(TEACHERS)
    assert {"student-xs", "student-s", "student-m"} <= set(STUDENTS)
    assert {"refiner-s", "refiner-xs"} <= set(REFINERS)


@pytest.mark.parametrize(
    "build",
    [
        lambda: create_teacher("teacher-xxl"),
        lambda: create_student("student-q"),
        lambda: create_refiner("refiner-q"),
        lambda: create_model("refiner", "student-s"),
        lambda: create_model("no-such-kind", "teacher-xs"),
    ],
)
def test_unknown_variant_is_invalid_input(build):
    with pytest.raises(InvalidInputError, match="unknown"):
        build()


def test_overrides_reach_the_config():
    t = create_teacher("teacher-xs", resolution=S, num_videos=7, **SMALL)
    assert t.cfg.resolution == S and t.cfg.num_videos == 7 and t.cfg.base_channels == 8
    assert t.D.W.weight.shape == (7, t.cfg.e_dim)
    assert create_student("student-s", resolution=96).cfg.resolution == 96
    assert create_refiner("refiner-xs", resolution=96).cfg.resolution == 96


# --- teacher -------------------------------------------------------------------------


@torch.no_grad()
def test_teacher_forward_shapes(teacher: Teacher):
    cfg, b, s = teacher.cfg, 2, teacher.cfg.resolution
    frames, lms = _images(b, s, 1), _images(b, s, 2)
    e = teacher.E(frames, lms)
    assert e.shape == (b, cfg.e_dim) and torch.isfinite(e).all()
    x = _g_input(teacher, b, 2)
    out = teacher.G(x, e)
    assert out.shape == (b, 3, s, s)
    assert out.min() >= -1 and out.max() <= 1
    score, feats = teacher.D(out, x, torch.tensor([0, 2]))
    assert score.shape == (b,) and torch.isfinite(score).all()
    assert len(feats) >= 2 and all(f.ndim == 4 and f.shape[0] == b for f in feats)
    # w replaces W[i] (few-shot fine-tuning): the same row gives the same score.
    score_w, _ = teacher.D(out, x, w=teacher.D.W.weight[[0, 2]])
    torch.testing.assert_close(score_w, score)


@torch.no_grad()
def test_teacher_embed_averages_the_shots(teacher: Teacher):
    s = teacher.cfg.resolution
    frames, lms = _images(3, s, 3), _images(3, s, 4)
    e = teacher.embed(frames, lms)
    assert e.shape == (1, teacher.cfg.e_dim)
    torch.testing.assert_close(e, teacher.E(frames, lms).mean(0, keepdim=True))


def test_psi_dim_is_twice_the_adain_channels(teacher: Teacher):
    # Walk the modules, not G.adain, so that a layer missing from that list is caught.
    adain = [m for m in teacher.G.modules() if isinstance(m, AdaIN)]
    assert adain, "G has no AdaIN layers"
    assert teacher.G.psi_dim == 2 * sum(a.channels for a in adain)
    assert teacher.G.project.in_features == teacher.cfg.e_dim
    assert teacher.G.project.out_features == teacher.G.psi_dim


def test_identity_reaches_every_adain_layer(teacher: Teacher):
    G = teacher.G
    lms = _g_input(teacher, 1, 5)
    if teacher.cfg.form == "refine":  # its head starts at zero (pass the warp through)
        G = copy.deepcopy(G)
        nn.init.normal_(G.out.weight, std=0.1)
    e1 = torch.randn(1, teacher.cfg.e_dim, generator=torch.Generator().manual_seed(6)) * 10
    e2 = -e1
    with torch.no_grad():
        out1, out2 = G(lms, e1), G(lms, e2)
        assert (out1 - out2).abs().max() > 1e-4, "changing e does not change G's output"
        torch.testing.assert_close(G(lms, psi=G.psi(e1)), out1)
    # Every scale and every bias of every AdaIN layer moves the output.
    psi = G.psi(e1).detach().requires_grad_(True)
    G(lms, psi=psi).square().sum().backward()
    grads = psi.grad[0].split([a.channels for a in G.adain for _ in (0, 1)])
    dead = [i for i, g in enumerate(grads) if g.abs().max() == 0]
    assert not dead, f"psi slices {dead} do not reach the output"


def test_generator_needs_e_or_psi(teacher: Teacher):
    with pytest.raises(ValueError):
        teacher.G(_g_input(teacher, 1, 0))


def test_refine_teacher_starts_as_the_warp_and_embeds_at_its_own_size():
    t = _small_teacher("teacher-refine-xs").eval()
    # The refiner's 7 channels and the fused shots with their validity.
    assert t.cfg.form == "refine" and t.cfg.shot_warp and t.G.in_channels == 11
    x = _images(2, t.cfg.resolution, 8, channels=7)
    with torch.no_grad():
        out = t.G(t.g_input(x), torch.randn(2, t.cfg.e_dim))  # no shots
        # A fresh head passes the warp through, as a fresh student does.
        torch.testing.assert_close(out, x[:, :3])
        student = create_refiner("refiner-s", resolution=t.cfg.resolution).eval()
        torch.testing.assert_close(student(x), out)
    # E sees its shots at embed_resolution whatever the frame size.
    assert t.E.size == 128
    frames = _images(2, t.cfg.resolution, 9)
    big = torch.nn.functional.interpolate(frames, scale_factor=2.0, mode="nearest")
    with torch.no_grad():
        torch.testing.assert_close(t.E(big, big), t.E(frames, frames), atol=1e-5, rtol=1e-4)
    with pytest.raises(InvalidInputError, match="form"):
        create_teacher("teacher-refine-xs", form="paint")


# --- student -------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "name"), GENERATORS)
def test_generator_output_shape_and_range(kind: str, name: str):
    torch.manual_seed(0)
    model = create_model(kind, name, resolution=S).eval()
    (example,) = model.get_example_inputs()
    channels = {"student": 3, "refiner": 7}[kind]  # landmark image; warp + landmarks + validity
    assert example.shape == (1, channels, S, S)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        out = model(torch.rand(2, channels, S, S, generator=g) * 2 - 1)
    assert out.shape == (2, 3, S, S)
    assert out.min() >= -1 and out.max() <= 1 and out.std() > 0


@pytest.mark.parametrize(("kind", "name"), GENERATORS)
def test_generator_uses_mobile_ops_only(kind: str, name: str):
    model = create_model(kind, name, resolution=S).eval()
    # No normalisation layers (they do not fold into int8 convs) and nothing exotic.
    leaves = {type(m) for m in model.modules() if not list(m.children())}
    assert leaves <= {nn.Conv2d, nn.ReLU}, f"unexpected layers {leaves - {nn.Conv2d, nn.ReLU}}"
    program = torch.export.export(model, model.get_example_inputs())
    ops = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    for banned in ("grid_sampler", "instance_norm", "batch_norm", "layer_norm", "group_norm"):
        assert not any(banned in op for op in ops), f"{banned} in the {name} graph: {ops}"
    allowed = {"student": STUDENT_OPS, "refiner": REFINER_OPS}[kind]
    assert ops <= allowed, f"non-mobile ops in {name}: {ops - allowed}"


def test_student_sizes_grow_xs_s_m():
    order = ["xs", "s", "m", "l", "xl"]
    named = sorted(
        (order.index(n.rsplit("-", 1)[1]), n) for n in STUDENTS if n.rsplit("-", 1)[1] in order
    )
    counts = [sum(p.numel() for p in create_student(n).parameters()) for _, n in named]
    assert len(counts) >= 3
    assert counts == sorted(counts) and len(set(counts)) == len(counts), dict(
        zip([n for _, n in named], counts, strict=True)
    )


# --- checkpoints ---------------------------------------------------------------------


@pytest.mark.parametrize("name", TEACHERS)
def test_teacher_checkpoint_round_trip(tmp_path, name: str):
    teacher = _small_teacher(name).eval()
    path = save_checkpoint(tmp_path / "t.safetensors", teacher, "teacher", step=12, note="x")
    loaded = load_checkpoint(path, "teacher", expect_variant=name).eval()
    assert isinstance(loaded, Teacher) and loaded.cfg == teacher.cfg
    assert loaded.notes == {"step": 12, "note": "x"}
    s = teacher.cfg.resolution
    frames, lms = _images(2, s, 8), _images(2, s, 9)
    x = _g_input(teacher, 2, 9)
    with torch.no_grad():
        e = teacher.E(frames, lms)
        torch.testing.assert_close(loaded.E(frames, lms), e, rtol=0, atol=0)
        torch.testing.assert_close(loaded.G(x, e), teacher.G(x, e), rtol=0, atol=0)
        idx = torch.tensor([1, 2])
        torch.testing.assert_close(loaded.D(frames, x, idx)[0], teacher.D(frames, x, idx)[0])


@pytest.mark.parametrize(("kind", "name"), GENERATORS)
def test_generator_checkpoint_round_trip(tmp_path, kind: str, name: str):
    torch.manual_seed(1)
    model = create_model(kind, name, resolution=S).eval()
    path = save_checkpoint(tmp_path / "s.safetensors", model, kind, identity="astronaut")
    loaded = load_checkpoint(path, kind, expect_variant=name).eval()
    cls = {"student": StudentGenerator, "refiner": RefinerGenerator}[kind]
    assert isinstance(loaded, cls) and loaded.cfg == model.cfg
    assert loaded.notes == {"identity": "astronaut"}
    (example,) = model.get_example_inputs()
    x = torch.rand(2, *example.shape[1:], generator=torch.Generator().manual_seed(10)) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    other = "student" if kind == "refiner" else "refiner"
    with pytest.raises(CheckpointError, match=kind):
        load_checkpoint(path, other)


def _concat_fusion(student: StudentGenerator, x: torch.Tensor) -> torch.Tensor:
    """The student as first written: each skip fusion a 1x1 conv over concat(upsample(h), skip)."""
    import torch.nn.functional as F

    h = F.relu(student.stem(x))
    skips = [h]
    for blocks in student.down:
        for block in blocks:
            h = block(h)
        skips.append(h)
    skips.pop()
    for block in student.res:
        h = h + block(h)
    for i in reversed(range(len(student.down))):
        h = F.interpolate(h, scale_factor=2.0, mode="bilinear", align_corners=False)
        w = torch.cat([student.fuse_up[i].weight, student.fuse_skip[i].weight], dim=1)
        h = F.relu(F.conv2d(torch.cat([h, skips[i]], dim=1), w, student.fuse_skip[i].bias))
        h = student.up[i](h)
    return F.hardtanh(student.head(h))


def test_split_fusion_computes_the_concat_fusion():
    torch.manual_seed(4)
    student = create_student("student-s", resolution=S).eval()
    x = _images(2, S, 11)
    with torch.no_grad():
        torch.testing.assert_close(student(x), _concat_fusion(student, x), rtol=0, atol=1e-5)


def test_checkpoint_with_the_concat_fusion_layout_loads(tmp_path):
    """Students saved before the split hold ``fuse.{i}`` (one conv over concat(h, skip))."""
    torch.manual_seed(5)
    student = create_student("student-xs", resolution=S).eval()
    path = save_checkpoint(tmp_path / "new.safetensors", student, "student")
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    for i in range(len(student.fuse_up)):
        up, skip = tensors.pop(f"fuse_up.{i}.weight"), tensors.pop(f"fuse_skip.{i}.weight")
        tensors[f"fuse.{i}.weight"] = torch.cat([up, skip], dim=1)
        tensors[f"fuse.{i}.bias"] = tensors.pop(f"fuse_skip.{i}.bias")
    legacy = tmp_path / "legacy.safetensors"
    save_file(tensors, str(legacy), metadata=meta)
    loaded = load_checkpoint(legacy, "student", expect_variant="student-xs").eval()
    x = _images(2, S, 12)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), student(x), rtol=0, atol=0)


@pytest.fixture(scope="module")
def student_file(tmp_path_factory):
    student = create_student("student-xs", resolution=S)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "s.safetensors", student, "student")


@pytest.mark.parametrize("cut", [0, 7, 100, -50])
def test_truncated_checkpoint_is_checkpoint_error(tmp_path, student_file, cut: int):
    data = student_file.read_bytes()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(data[:cut])
    with pytest.raises(CheckpointError):
        load_checkpoint(bad, "student")


def test_garbage_and_missing_checkpoints_are_checkpoint_errors(tmp_path):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8).numpy().tobytes())
    with pytest.raises(CheckpointError):
        load_checkpoint(garbage, "student")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "absent.safetensors", "teacher")
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path)  # a folder is not a checkpoint


def test_student_file_loaded_as_teacher_is_checkpoint_error(student_file, tmp_path):
    with pytest.raises(CheckpointError, match="student"):
        load_checkpoint(student_file, "teacher")
    teacher_file = save_checkpoint(
        tmp_path / "t.safetensors", _small_teacher("teacher-xs"), "teacher"
    )
    with pytest.raises(CheckpointError, match="teacher"):
        load_checkpoint(teacher_file, "student")


def test_variant_mismatch_is_checkpoint_error(student_file):
    with pytest.raises(CheckpointError, match="student-s"):
        load_checkpoint(student_file, "student", expect_variant="student-s")
    assert load_checkpoint(student_file, "student", expect_variant="student-xs").cfg.resolution == S


def test_weights_that_do_not_fit_the_config_are_checkpoint_error(tmp_path):
    student = create_student("student-xs", resolution=S)
    state = {k: v.contiguous() for k, v in student.state_dict().items()}
    wider = replace(student.cfg, channels=(16, 24, 48, 64))
    for name, meta in {
        "wider": {"kind": "student", "config": json.dumps(wider.to_dict())},
        "no-config": {"kind": "student"},
        "bad-json": {"kind": "student", "config": "{not json"},
        "foreign-fields": {"kind": "student", "config": json.dumps({"depth": 3})},
    }.items():
        path = tmp_path / f"{name}.safetensors"
        save_file(state, str(path), meta)
        with pytest.raises(CheckpointError):
            load_checkpoint(path, "student")


def test_committed_checkpoints_load(teacher_checkpoint, student_checkpoint, refiner_checkpoint):
    teacher = load_checkpoint(teacher_checkpoint, "teacher", expect_variant="teacher-xs")
    assert isinstance(teacher, Teacher) and "step" in teacher.notes
    student = load_checkpoint(student_checkpoint, "student")
    assert student.cfg.name in STUDENTS
    refiner = load_checkpoint(refiner_checkpoint, "refiner", expect_variant="refiner-s")
    assert isinstance(refiner, RefinerGenerator) and refiner.cfg.resolution == 256


def test_half_checkpoint_loads_as_float32(tmp_path):
    torch.manual_seed(2)
    student = create_student("student-xs", resolution=S).eval()
    full = save_checkpoint(tmp_path / "full.safetensors", student, "student")
    half = save_checkpoint(tmp_path / "half.safetensors", student, "student", half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = load_checkpoint(half, "student").eval()
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = _images(1, S, 11)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), student(x), rtol=0, atol=1e-2)


def test_teacher_256_puts_attention_where_the_paper_does():
    """32 px in every downsampling path, 64 px in G's upsampling path."""
    from talkinghead.models.layers import SelfAttention

    t = create_teacher("teacher-256", base_channels=2, max_channels=4, num_res=1).eval()
    seen: dict[str, list[int]] = {}
    for net in ("E", "D", "G"):
        for name, m in getattr(t, net).named_modules():
            if isinstance(m, SelfAttention):
                where = "G.up" if net == "G" and name.startswith("up") else net
                m.register_forward_hook(
                    lambda _m, inp, _o, w=where: seen.setdefault(w, []).append(inp[0].shape[-1])
                )
    x = _images(1, 256)
    with torch.no_grad():
        t.D(t.G(x, t.E(x, x)), x, torch.tensor([0]))
    assert seen == {"E": [32], "G": [32], "G.up": [64], "D": [32]}


def test_configs_saved_before_attention_up_still_load():
    cfg = create_teacher("teacher-s", **SMALL, resolution=S).cfg
    old = {k: v for k, v in cfg.to_dict().items() if k != "attention_up"}
    back = type(cfg).from_dict(old)
    assert back == cfg and back.attention_up_at == cfg.attention_at == (32,)
    t256 = create_teacher("teacher-256", **SMALL).cfg
    assert type(t256).from_dict(json.loads(json.dumps(t256.to_dict()))) == t256
