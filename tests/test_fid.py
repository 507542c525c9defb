"""InceptionV3 pool3 features for FID: loading a weights file, the two conventions, and the
``evaluate`` path. The network is randomly initialised (no Inception weights are reachable),
so the scores here test the plumbing, not the numbers of the literature."""

from __future__ import annotations

import json

import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from scipy.ndimage import gaussian_filter

from talkinghead.cli import main
from talkinghead.errors import CheckpointError, InvalidInputError
from talkinghead.models.checkpoint import load_checkpoint
from talkinghead.sdk.landmarks import crop_face
from talkinghead.train.data import VideoSet, read_shards, write_shard
from talkinghead.train.evaluate import EvalConfig, evaluate, fid_from_features, shard_clips
from talkinghead.train.fid import POOL3_DIM, InceptionV3, inception_features, load_inception
from talkinghead.train.pseudo_video import ASTRONAUT_LANDMARKS_68, make_pseudo_video


def _random_inception(convention: str) -> InceptionV3:
    """Random weights that keep activations near unit scale through the ~50 layers (the
    default init shrinks them to ~1e-8), and non-trivial batch-norm statistics, so that a
    mixed-up key would change the features."""
    torch.manual_seed(0)
    net = InceptionV3(convention).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.8, 1.2)
                m.bias.uniform_(-0.1, 0.1)
    return net


def _state(net: InceptionV3) -> dict[str, torch.Tensor]:
    return {k: v.contiguous() for k, v in net.state_dict().items()}


@pytest.fixture(scope="module")
def net() -> InceptionV3:
    return _random_inception("fid")


@pytest.fixture(scope="module")
def weights(net, tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / "inception_fid.safetensors"
    save_file(_state(net), str(path))
    return path


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    """Three small different face crops, (3, 64, 64, 3) uint8."""
    crop, lm, _ = crop_face(skimage.data.astronaut(), ASTRONAUT_LANDMARKS_68, 64)
    return make_pseudo_video(crop, lm, 3, seed=0)[0]


@pytest.fixture(scope="module")
def loaded(weights) -> InceptionV3:
    return load_inception(weights)


@pytest.fixture(scope="module")
def loaded_feats(loaded, faces) -> np.ndarray:
    return inception_features(loaded, faces, batch_size=2, progress=False)


@pytest.mark.slow  # Inception features of faces (module fixture)
def test_loaded_features_match_the_in_memory_network(net, faces, loaded_feats):
    assert loaded_feats.shape == (3, POOL3_DIM)
    assert np.isfinite(loaded_feats).all() and loaded_feats.std(0).mean() > 1e-3
    # Batched in twos (2 + 1) above, all at once here: batching must not change a feature.
    direct = inception_features(net, faces, batch_size=3, progress=False)
    np.testing.assert_allclose(loaded_feats, direct, rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # Inception features of faces
def test_fid_is_zero_on_itself_and_grows_with_perturbation(loaded, faces, loaded_feats):
    rng = np.random.default_rng(0)

    def fid_to(images: np.ndarray) -> float:
        return fid_from_features(loaded_feats, inception_features(loaded, images, progress=False))

    def noisy(sigma: float) -> np.ndarray:
        return np.clip(faces + rng.normal(0, sigma, faces.shape), 0, 255).astype(np.uint8)

    blurred = np.stack([gaussian_filter(f, sigma=(2, 2, 0)) for f in faces])
    light, heavy, blur = fid_to(noisy(8)), fid_to(noisy(60)), fid_to(blurred)
    assert abs(fid_from_features(loaded_feats, loaded_feats)) < 1e-6 * light
    assert 0 < light < heavy, (light, heavy)
    assert blur > light, (blur, light)


def test_fid_small_sample_path_matches_the_covariance_formula():
    from talkinghead.train.evaluate import frechet_distance

    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, (5, 24)), rng.normal(0.5, 2, (7, 24))
    cov = frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert fid_from_features(a, b) == pytest.approx(cov, rel=1e-6)


@pytest.mark.slow  # Inception weights written and read
def test_bad_weights_files_raise_checkpoint_error(net, weights, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_inception(tmp_path / "absent.safetensors")
    data = weights.read_bytes()
    cases = {
        "truncated.safetensors": data[: len(data) // 2],
        "corrupt.safetensors": b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}....",
        "corrupt.pth": b"PK\x03\x04 this is no zip archive",
    }
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(CheckpointError, match=name):
            load_inception(tmp_path / name)
    state = _state(net)
    renamed = {k.replace("Mixed_6b.", "Mixed_6x."): v for k, v in state.items()}
    save_file(renamed, str(tmp_path / "keys.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing \['Mixed_6b.*unexpected \['Mixed_6x"):
        load_inception(tmp_path / "keys.safetensors")
    reshaped = {**state, "Mixed_7c.branch1x1.conv.weight": torch.zeros(320, 2048, 3, 3)}
    save_file(reshaped, str(tmp_path / "shape.safetensors"))
    with pytest.raises(CheckpointError, match=r"Mixed_7c\.branch1x1\.conv\.weight is \(320, 2048"):
        load_inception(tmp_path / "shape.safetensors")
    torch.save({**state, "fc.bias": torch.full((1008,), float("nan"))}, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="fc.bias holds NaN"):
        load_inception(tmp_path / "nan.pt")
    # A pickle holding anything but tensors is refused by weights_only loading.
    torch.save({"fc.weight": np.zeros(3)}, tmp_path / "pickled.pth")
    with pytest.raises(CheckpointError, match="pickled.pth cannot be read: Weights only"):
        load_inception(tmp_path / "pickled.pth")


@pytest.mark.slow  # Inception features of faces
def test_a_legacy_torch_file_loads_like_safetensors(net, faces, loaded_feats, tmp_path):
    path = tmp_path / "inception.pth"
    torch.save({"state_dict": net.state_dict()}, path)
    feats = inception_features(load_inception(path), faces[:1], progress=False)
    np.testing.assert_allclose(feats, loaded_feats[:1], rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # builds two Inception networks
def test_conventions_differ_in_pools_logits_and_input_scaling(net, tmp_path):
    tv = InceptionV3("torchvision")
    x = torch.rand(1, 8, 9, 9)
    ones = torch.ones(1, 1, 5, 5)
    # "fid": padding-excluded average pools in A/C/first-E blocks, a max pool in Mixed_7c.
    for block in ("Mixed_5b", "Mixed_6b", "Mixed_7b"):
        assert torch.equal(getattr(net, block).pool_input(ones), ones)
        assert getattr(tv, block).pool_input(ones)[0, 0, 0, 0] == pytest.approx(4 / 9)
    assert torch.equal(net.Mixed_7c.pool_input(x), F.max_pool2d(x, 3, 1, 1))
    assert torch.allclose(tv.Mixed_7c.pool_input(x), F.avg_pool2d(x, 3, 1, 1))
    assert (net.fc.out_features, tv.fc.out_features) == (1008, 1000)
    white = torch.full((1, 4, 4, 3), 255, dtype=torch.uint8)
    assert torch.allclose(net.preprocess(white), torch.ones(1, 3, 299, 299))
    assert tv.preprocess(white)[0, :, 0, 0].tolist() == pytest.approx(
        [(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225], rel=1e-5
    )
    # A torchvision-layout file (1000 logits) under the fid convention does not fit.
    tv_state = {**_state(net), "fc.weight": tv.fc.weight.detach(), "fc.bias": tv.fc.bias.detach()}
    save_file(tv_state, str(tmp_path / "tv.safetensors"))
    with pytest.raises(CheckpointError, match="1008 logits"):
        load_inception(tmp_path / "tv.safetensors", convention="fid")
    assert (
        load_inception(tmp_path / "tv.safetensors", convention="torchvision").fc.out_features
        == 1000
    )
    with pytest.raises(InvalidInputError):
        load_inception(tmp_path / "tv.safetensors", convention="tf")


def test_features_reject_bad_images(net):
    for bad in (np.zeros((2, 8, 8, 3), np.float32), np.zeros((8, 8, 3), np.uint8)):
        with pytest.raises(InvalidInputError):
            inception_features(net, bad)


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    """One held-out pseudo-video at the committed teacher's 128 px: 2 shots, 2 test frames."""
    crop, lm, _ = crop_face(skimage.data.astronaut(), ASTRONAUT_LANDMARKS_68, 128)
    frames, lms = make_pseudo_video(crop, lm, 4, seed=3)
    path = tmp_path_factory.mktemp("held_out") / "held_out.safetensors"
    return write_shard(path, VideoSet(frames[None], lms[None], ["a"]))


@pytest.mark.slow
def test_evaluate_reports_fid_per_mode_and_k(weights, held_out, teacher_checkpoint, tmp_path):
    cfg = EvalConfig(
        shots=(1, 2), modes=("ff",), test_frames=2, csim=False, landmark_error=False,
        inception_weights=str(weights),
    )  # fmt: skip
    teacher = load_checkpoint(teacher_checkpoint, "teacher")
    clips = shard_clips(read_shards([held_out]), 2)
    report = evaluate(teacher, clips, cfg, tmp_path, progress=False)
    assert [(r["mode"], r["k"]) for r in report["fid"]] == [("ff", 1), ("ff", 2)]
    for r in report["fid"]:
        assert np.isfinite(r["fid"]) and r["fid"] > 0 and r["n_real"] == r["n_fake"] == 2
    assert "equal N" in report["fid_note"]
    assert json.loads((tmp_path / "report.json").read_text())["fid"] == report["fid"]


@pytest.mark.slow  # evaluates a teacher through the CLI
def test_cli_passes_the_weights_file_and_convention(weights, held_out, capsys, tmp_path):
    args = ["evaluate", "--data", str(held_out), "--shots", "1", "--test-frames", "2"]
    args += ["--out", str(tmp_path)]
    assert main([*args, "--inception-weights", str(tmp_path / "missing.pth")]) == 2
    assert "missing.pth" in capsys.readouterr().err
    # The fid-convention file read as the torchvision network: its 1008 logits do not fit.
    code = main([*args, "--inception-weights", str(weights), "--fid-convention", "torchvision"])
    assert code == 2 and "1000 logits" in capsys.readouterr().err
