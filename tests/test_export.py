"""Export chain: quantize -> export -> lower to XNNPACK -> run the .pte -> compare with eager.

The tiny generator below uses the student's op set (conv, depthwise conv, ReLU,
nearest upsample, concat, add, tanh) on a (1, 3, 64, 64) landmark image. It is exported
once per module, fp32 and int8.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from torch import nn

from talkinghead.errors import BackendError, InvalidInputError
from talkinghead.export.executorch import (
    ExecuTorchOptions,
    export_executorch,
    inspect_pte,
    pte_filename,
    quantize_pt2e_xnnpack,
)
from talkinghead.sdk.backends import (
    Backend,
    ExecuTorchBackend,
    available_backends,
    create_backend,
)

S = 64
FP32_MAX_ABS = 1e-4
# int8 vs fp32 on this model (16 calibration images, 4 held-out inputs), measured:
# PSNR 63.0 dB over the [-1, 1] range, SNR 38.3 dB against the output's own variance.
# The output is low-contrast (std ~0.12), which flatters PSNR; SNR is the stricter check.
INT8_MIN_PSNR_DB = 40.0
INT8_MIN_SNR_DB = 25.0


class TinyGenerator(nn.Module):
    """Landmark image (1, 3, S, S) in [-1, 1] -> face image (1, 3, S, S) in [-1, 1]."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.down = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, groups=width),  # depthwise
            nn.Conv2d(width, 2 * width, 1),  # pointwise
            nn.ReLU(),
        )
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.fuse = nn.Conv2d(2 * width + 3, width, 3, padding=1)
        self.to_rgb = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.up(self.down(x))
        h = torch.relu(self.fuse(torch.cat([h, x], dim=1)))
        # The skip is scaled down so that the output is mostly computed, not copied input.
        return torch.tanh(self.to_rgb(h) + 0.25 * x)


def landmark_images(n: int, seed: int) -> list[torch.Tensor]:
    """n images like a rasterised landmark image: -1 background, 68 coloured 2x2 dots and a few strokes."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        img = -torch.ones(1, 3, S, S)
        pts = torch.randint(4, S - 4, (68, 2), generator=g)
        colours = torch.rand(68, 3, generator=g) * 2 - 1
        for (r, c), col in zip(pts.tolist(), colours, strict=True):
            img[0, :, r : r + 2, c : c + 2] = col[:, None, None]
        for _ in range(4):
            r = int(torch.randint(4, S - 4, (1,), generator=g))
            img[0, :, r, 8 : S - 8] = torch.rand(3, 1, generator=g) * 2 - 1
        out.append(img)
    return out


def psnr_db(a: np.ndarray, b: np.ndarray, peak_to_peak: float = 2.0) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak_to_peak**2 / mse)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = TinyGenerator().eval()
    example = (landmark_images(1, seed=1)[0],)
    out = tmp_path_factory.mktemp("pte")
    t0 = time.perf_counter()
    fp32 = export_executorch(model, example, out / pte_filename("tiny", quantized=False))
    t1 = time.perf_counter()
    calibration = [(x,) for x in landmark_images(16, seed=2)]
    q8 = export_executorch(
        model,
        example,
        out / pte_filename("tiny", quantized=True),
        quantize=True,
        calibration=calibration,
    )
    t2 = time.perf_counter()
    print(
        f"\nexport fp32 {t1 - t0:.1f} s ({fp32.stat().st_size / 1e3:.1f} kB); "
        f"int8 {t2 - t1:.1f} s ({q8.stat().st_size / 1e3:.1f} kB)"
    )
    return {"model": model, "fp32": fp32, "q8": q8}


@pytest.fixture(scope="module")
def eval_inputs() -> list[np.ndarray]:
    return [x.numpy() for x in landmark_images(4, seed=3)]


def run_pte(path, inputs: list[np.ndarray]) -> list[np.ndarray]:
    with ExecuTorchBackend() as backend:
        backend.load(path)
        return [backend.run(x) for x in inputs]


def test_pte_filename():
    assert pte_filename("student-s", quantized=False) == "student-s_xnnpack_fp32.pte"
    assert pte_filename("student-s", quantized=True) == "student-s_xnnpack_q8.pte"
    assert pte_filename("student-s", False, delegate="coreml") == "student-s_coreml_fp32.pte"
    with pytest.raises(InvalidInputError):
        pte_filename("a/b", quantized=False)
    with pytest.raises(InvalidInputError, match="delegate"):
        pte_filename("student-s", False, delegate="npu")


@pytest.mark.slow  # ExecuTorch exports (module fixture)
def test_fp32_pte_matches_eager(exported, eval_inputs):
    model = exported["model"]
    outs = run_pte(exported["fp32"], eval_inputs)
    for x, y in zip(eval_inputs, outs, strict=True):
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        assert y.shape == (1, 3, S, S) and y.dtype == np.float32
        err = float(np.abs(y - ref).max())
        assert err <= FP32_MAX_ABS, f"fp32 .pte differs from eager by {err:.2e}"


@pytest.mark.slow  # ExecuTorch exports (module fixture)
def test_int8_pte_psnr_vs_fp32(exported, eval_inputs):
    fp32 = run_pte(exported["fp32"], eval_inputs)
    q8 = run_pte(exported["q8"], eval_inputs)
    psnr = psnr_db(np.concatenate(q8), np.concatenate(fp32))
    ref, err = np.concatenate(fp32), np.concatenate(q8) - np.concatenate(fp32)
    snr = float(10 * np.log10(ref.var() / np.mean(err.astype(np.float64) ** 2)))
    print(f"\nint8 vs fp32: PSNR {psnr:.1f} dB, SNR {snr:.1f} dB")
    assert psnr >= INT8_MIN_PSNR_DB, f"int8 PSNR {psnr:.1f} dB < {INT8_MIN_PSNR_DB} dB"
    assert snr >= INT8_MIN_SNR_DB, f"int8 SNR {snr:.1f} dB < {INT8_MIN_SNR_DB} dB"
    # And it really is a different (quantized) program, not the fp32 one again.
    assert not np.array_equal(np.concatenate(q8), np.concatenate(fp32))


@pytest.mark.slow  # ExecuTorch exports (module fixture)
@pytest.mark.parametrize("kind", ["fp32", "q8"])
def test_pte_is_xnnpack_delegated(exported, kind):
    summary = inspect_pte(exported[kind])
    assert summary.xnnpack_delegated, summary
    assert all(d == "XnnpackBackend" for d in summary.delegates)
    # Everything but the nearest upsample runs inside XNNPACK.
    assert set(summary.operators) <= {"aten::upsample_nearest2d"}, summary.operators


@pytest.mark.slow  # ExecuTorch exports (module fixture)
def test_int8_weights_are_smaller(exported):
    assert exported["q8"].stat().st_size < 0.75 * exported["fp32"].stat().st_size


def test_quantize_rejects_empty_calibration():
    model = TinyGenerator().eval()
    example = (landmark_images(1, seed=0)[0],)
    with pytest.raises(InvalidInputError, match="calibration is empty"):
        quantize_pt2e_xnnpack(model, example, calibration=iter(()))


def test_export_argument_checks(tmp_path):
    model = TinyGenerator().eval()
    example = (landmark_images(1, seed=0)[0],)
    with pytest.raises(InvalidInputError, match="calibration"):
        export_executorch(model, example, tmp_path / "a.pte", quantize=True)
    with pytest.raises(InvalidInputError, match="quantize is False"):
        export_executorch(model, example, tmp_path / "a.pte", calibration=[example])
    with pytest.raises(InvalidInputError, match="conflicts"):
        export_executorch(
            model,
            example,
            tmp_path / "a.pte",
            quantize=True,
            options=ExecuTorchOptions(quantize=False),
        )
    with pytest.raises(InvalidInputError, match="tuple"):
        export_executorch(model, example[0], tmp_path / "a.pte")  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())


@pytest.mark.slow  # ExecuTorch exports (module fixture)
def test_backend_registry_and_torch_backend(exported, eval_inputs):
    assert {"executorch", "torch"} <= set(available_backends())
    with pytest.raises(BackendError, match="unknown backend"):
        create_backend("coreml-someday")
    backend = create_backend("torch", module=exported["model"])
    assert isinstance(backend, Backend) and backend.name == "torch"
    with backend:
        y = backend.run(eval_inputs[0])
    with torch.no_grad():
        ref = exported["model"](torch.from_numpy(eval_inputs[0])).numpy()
    np.testing.assert_array_equal(y, ref)
    assert isinstance(create_backend("executorch"), ExecuTorchBackend)


@pytest.mark.slow  # ExecuTorch exports (module fixture)
def test_backends_meet_the_protocol_before_and_after_a_load(exported, eval_inputs):
    """isinstance(x, Backend) reads every protocol member: input_shape is None until a model
    is loaded (and for an eager module, which fixes none), never an exception."""
    from safetensors.torch import save

    with ExecuTorchBackend() as backend:
        assert isinstance(backend, Backend) and backend.input_shape is None
        backend.load_bytes(exported["fp32"].read_bytes(), source="tiny.pte")
        assert isinstance(backend, Backend) and backend.input_shape == (1, 3, S, S)
    assert backend.input_shape is None  # closed
    eager = create_backend("torch", module=TinyGenerator().eval())
    assert isinstance(eager, Backend) and eager.input_shape is None
    state = {k: v.contiguous() for k, v in exported["model"].state_dict().items()}
    eager.load_bytes(save(state), source="tiny.safetensors")  # the exported model's weights
    with torch.no_grad():
        ref = exported["model"](torch.from_numpy(eval_inputs[0])).numpy()
    np.testing.assert_array_equal(eager.run(eval_inputs[0]), ref)


@pytest.mark.slow  # ExecuTorch exports (module fixture)
def test_executorch_backend_rejects_bad_input(exported):
    with ExecuTorchBackend() as backend:
        backend.load(exported["fp32"])
        assert backend.input_shape == (1, 3, S, S)
        for bad in (
            np.zeros((1, 3, 32, 32), np.float32),
            np.zeros((1, 3, S, S), np.float64),
            torch.zeros(1, 3, S, S),
        ):
            with pytest.raises(InvalidInputError):
                backend.run(bad)
    with pytest.raises(BackendError, match="before load"):
        ExecuTorchBackend().run(np.zeros((1, 3, S, S), np.float32))


@pytest.mark.slow  # ExecuTorch exports (module fixture)
@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_damaged_pte_raises_backend_error(exported, tmp_path, damage):
    data = exported["fp32"].read_bytes()
    bad = {
        "truncated": data[: len(data) // 2],
        "garbage": np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
        "empty": b"",
    }[damage]
    path = tmp_path / "bad.pte"
    path.write_bytes(bad)
    with pytest.raises(BackendError, match="bad.pte"):
        ExecuTorchBackend().load(path)


@pytest.mark.slow  # exports, then a child process
def test_corrupt_body_reaches_native_loader_without_crashing(exported, tmp_path):
    """A valid header over a garbage body passes the screen and reaches the native verifier.

    Run in a subprocess: if the native loader ever aborts, this test fails instead of pytest dying.
    """
    data = exported["fp32"].read_bytes()
    rng = np.random.default_rng(1)
    body = rng.integers(0, 256, len(data) - 32, dtype=np.uint8).tobytes()
    path = tmp_path / "corrupt.pte"
    path.write_bytes(data[:32] + body)
    script = textwrap.dedent(
        f"""
        from talkinghead.errors import BackendError
        from talkinghead.sdk.backends import ExecuTorchBackend
        try:
            ExecuTorchBackend().load({str(path)!r})
        except BackendError as e:
            print("BACKEND_ERROR", e)
        else:
            print("LOADED")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "BACKEND_ERROR" in proc.stdout and "corrupt.pte" in proc.stdout, (
        proc.stdout + proc.stderr[-2000:]
    )
