"""Every runtime renders the same frame: ExecuTorch, LiteRT and ONNX Runtime, fp32 and int8.

The session's ``avatar_pack`` holds the committed universal refiner exported to all three
runtimes, with the astronaut photo's rig. The matrix below warps the photo along one mesh
sequence, runs each model of the pack on those refiner inputs and compares it with the eager
refiner: fp32 within FP32_MAX_ABS, int8 above INT8_MIN_PSNR_DB (the same figures the pack
states in its manifest). Then: automatic backend choice, missing runtimes,
damaged model files for each format, schema versions, Core ML / QNN lowering boundaries,
ETRecord and BundledProgram.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from talkinghead.cli import main
from talkinghead.errors import BackendError, InvalidInputError, PackError, PackIntegrityError
from talkinghead.export.registry import RUNTIMES
from talkinghead.models.checkpoint import load_checkpoint
from talkinghead.sdk import backends
from talkinghead.sdk.avatar import Avatar
from talkinghead.sdk.backends import choose_backend, create_backend, run_bundled_program
from talkinghead.sdk.mesh_motion import builtin_mesh_motion
from talkinghead.sdk.pack import load_manifest, open_pack
from talkinghead.sdk.pack_schema import (
    MANIFEST_NAME,
)
from talkinghead.sdk.pack_schema import (
    PARITY_FP32_MAX_ABS as FP32_MAX_ABS,
)
from talkinghead.sdk.pack_schema import (
    PARITY_INT8_MIN_PSNR_DB as INT8_MIN_PSNR_DB,
)
from talkinghead.sdk.parity import check_pack_parity, psnr_db
from talkinghead.sdk.rasterize import rasterize_landmarks
from talkinghead.sdk.warp import landmarks68, refiner_input, warp_to

# (runtime, format) of every model file a full pack holds.
FORMATS = [
    ("executorch", "pte"),
    ("litert", "tflite"),
    ("onnxruntime", "onnx"),
    ("onnxruntime", "ort"),
]
MATRIX = [(r, f, p) for r, f in FORMATS for p in ("fp32", "int8")]


@pytest.fixture(scope="module")
def eager_and_inputs(avatar_pack, refiner_checkpoint):
    """Five frames of built-in motion on the pack's rig: (5, 1, 7, S, S) refiner inputs, the
    eager refiner's (5, 1, 3, S, S) outputs and the (5, 478, 3) target meshes."""
    refiner = load_checkpoint(refiner_checkpoint, "refiner").eval()
    with open_pack(avatar_pack) as pack:
        rig = pack.load_rig()
    meshes = builtin_mesh_motion(rig.mesh, 5, seed=7)
    x = np.stack(
        [
            refiner_input(warp_to(rig, m), rasterize_landmarks(landmarks68(m), rig.size))
            for m in meshes
        ]
    )
    with torch.no_grad():
        eager = np.stack([refiner(torch.from_numpy(xi)).numpy() for xi in x])
    return x, eager, meshes


def run_model(pack_dir: Path, runtime: str, fmt: str, precision: str, x: np.ndarray) -> np.ndarray:
    with open_pack(pack_dir) as pack, create_backend(runtime) as backend:
        entry = pack.model(precision, runtime, fmt)
        backend.load_bytes(pack.read_verified(entry.file), source=entry.file)
        return np.stack([backend.run(xi) for xi in x])


# ----------------------------------------------------------------------------- the matrix


@pytest.mark.parametrize(("runtime", "fmt", "precision"), MATRIX, ids=lambda v: str(v))
def test_every_runtime_renders_the_same_frames(
    avatar_pack, eager_and_inputs, runtime, fmt, precision
):
    x, eager, _ = eager_and_inputs
    out = run_model(avatar_pack, runtime, fmt, precision, x)
    assert out.shape == eager.shape and out.dtype == np.float32
    max_abs, psnr = float(np.abs(out - eager).max()), psnr_db(out, eager)
    print(f"\n{runtime}/{fmt}/{precision}: max abs {max_abs:.2e}, PSNR {psnr:.1f} dB")
    if precision == "fp32":
        assert max_abs <= FP32_MAX_ABS, f"{runtime} fp32 differs from eager by {max_abs:.2e}"
    else:
        assert psnr >= INT8_MIN_PSNR_DB, f"{runtime} int8 PSNR {psnr:.1f} dB"
        assert max_abs > 1e-3  # really a quantized program, not the fp32 one again


def test_manifest_states_runtimes_layouts_and_thresholds(avatar_pack):
    raw = json.loads((avatar_pack / MANIFEST_NAME).read_text())
    assert raw["schema_version"] == 3
    assert raw["generator"]["kind"] == "warp-refine" and raw["generator"]["rig"] in raw["files"]
    assert raw["input"]["shape"] == [1, 7, raw["resolution"], raw["resolution"]]
    assert raw["output"]["shape"] == [1, 3, raw["resolution"], raw["resolution"]]
    kinds = {(m["runtime"], m["format"], m["precision"]) for m in raw["models"]}
    assert kinds == {(r, f, p) for r, f, p in MATRIX}
    assert raw["parity"]["fp32_max_abs"] == FP32_MAX_ABS
    assert raw["parity"]["int8_min_psnr_db"] == INT8_MIN_PSNR_DB
    s = raw["resolution"]
    for m in raw["models"]:
        assert m["file"] in raw["files"] and m["sha256"] == raw["files"][m["file"]]
        if m["runtime"] == "litert":  # NHWC at the file's edges, recorded per model
            assert m["input"]["layout"] == m["output"]["layout"] == "NHWC"
            assert m["input"]["shape"] == [1, s, s, 7]
            assert m["output"]["shape"] == [1, s, s, 3]
            if m["precision"] == "int8" and m["input"]["dtype"] == "int8":
                assert m["input"]["quantization"]["scale"] > 0
        else:  # the pack-level NCHW float32 spec applies
            assert "input" not in m
        if m["format"] == "onnx":
            usability = m["info"]["mobile_usability"]
            assert set(usability) == {"nnapi", "coreml_neuralnetwork", "coreml_mlprogram"}
            assert m["info"]["ort_file"] in raw["files"]
        if m["runtime"] == "executorch":
            assert m["info"]["bundled"]["file"] in raw["files"]
        measured = m["info"]["parity"]
        if m["precision"] == "fp32":
            assert measured["max_abs_vs_eager"] <= FP32_MAX_ABS
        else:
            assert measured["psnr_db_vs_eager"] >= INT8_MIN_PSNR_DB


@pytest.mark.slow  # every model and bundled program at 256 px, each checked in a child process
def test_parity_check_runs_every_model_and_bundled_programs(avatar_pack):
    results = check_pack_parity(avatar_pack)
    assert len(results) == len(MATRIX)
    assert all(r.status == "ok" for r in results), [str(r) for r in results]
    bundled = [r for r in results if r.runtime == "executorch"]
    assert all("1 case(s) pass" in r.message for r in bundled)


def test_fp32_frames_agree_through_the_avatar(avatar_pack, eager_and_inputs):
    _, _, meshes = eager_and_inputs
    frames = {}
    for runtime in RUNTIMES:
        with Avatar.create_from_pack(avatar_pack, backend=runtime, precision="fp32") as avatar:
            frames[runtime] = avatar.render_sequence(meshes[:2])
    ref = frames["executorch"].astype(int)
    for runtime, f in frames.items():
        assert f.shape == ref.shape and f.dtype == np.uint8
        assert np.abs(f.astype(int) - ref).max() <= 1, runtime  # one level of rounding at most


# ----------------------------------------------------------------------------- choosing a backend


def test_auto_backend(avatar_pack, monkeypatch):
    with Avatar.create_from_pack(avatar_pack, backend="auto", precision="int8") as avatar:
        assert avatar.backend_name == "executorch" and avatar.precision == "int8"
    assert choose_backend(["onnxruntime", "litert"]) == "litert"
    real = backends.runtime_installed
    monkeypatch.setattr(backends, "runtime_installed", lambda n: n != "executorch" and real(n))
    assert choose_backend(["executorch", "onnxruntime"]) == "onnxruntime"
    with Avatar.create_from_pack(avatar_pack, backend="auto", precision="fp32") as avatar:
        assert avatar.backend_name == "litert"
    with pytest.raises(BackendError, match="no usable backend.*executorch"):
        choose_backend(["executorch"])


def test_num_threads_per_runtime(avatar_pack):
    """Each runtime takes a thread count; frames do not depend on it (beyond rounding)."""
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(InvalidInputError, match="num_threads"):
            Avatar.create_from_pack(avatar_pack, num_threads=bad)
    for backend in ("litert", "onnxruntime"):
        opts = {"backend": backend, "precision": "fp32"}
        with (
            Avatar.create_from_pack(avatar_pack, num_threads=1, **opts) as one,
            Avatar.create_from_pack(avatar_pack, **opts) as default,
        ):
            mesh = one.neutral_mesh
            diff = np.abs(one.render(mesh).astype(np.int16) - default.render(mesh)).max()
            assert diff <= 1, (backend, diff)
    # ExecuTorch's pool is process-wide: its current size is fine, another one is refused
    # while a program is loaded (resizing under a loaded program can hang it).
    from executorch.extension.pybindings import portable_lib

    current = portable_lib._threadpool_get_thread_count()
    with Avatar.create_from_pack(avatar_pack, num_threads=current) as avatar:
        assert avatar.render(avatar.neutral_mesh).shape == (256, 256, 3)
        with pytest.raises(BackendError, match="process-wide"):
            Avatar.create_from_pack(avatar_pack, num_threads=current + 1)
        with pytest.raises(BackendError, match="process-wide"):
            backends.set_executorch_threads(current + 1)
    assert portable_lib._threadpool_get_thread_count() == current


@pytest.mark.parametrize(
    ("name", "module"), [("litert", "ai_edge_litert"), ("onnxruntime", "onnxruntime")]
)
def test_missing_runtime_is_a_backend_error(monkeypatch, name, module):
    for cached in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.setitem(sys.modules, cached, None)  # importing it now raises ImportError
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(BackendError, match="not installed"):
        create_backend(name)


# ----------------------------------------------------------------------------- damaged files


def _damage(data: bytes, how: str) -> bytes:
    if how == "truncated":
        return data[: len(data) // 3]
    if how == "garbage":
        return np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    if how == "header_only":
        return data[:64]
    return b""


@pytest.mark.parametrize("how", ["truncated", "garbage", "header_only", "empty"])
@pytest.mark.parametrize(("runtime", "fmt"), FORMATS)
def test_damaged_model_is_a_typed_error(avatar_pack, tmp_path, runtime, fmt, how):
    entry = load_manifest(avatar_pack).model("fp32", runtime, fmt)
    bad = tmp_path / entry.file
    bad.write_bytes(_damage((avatar_pack / entry.file).read_bytes(), how))
    # With the manifest's hash: refused before any runtime sees a byte.
    with pytest.raises(PackIntegrityError, match=entry.file):
        create_backend(runtime).load(bad, sha256=entry.sha256)
    # Without it: the format screen or the runtime's own loader, as a BackendError.
    with pytest.raises(BackendError, match=entry.file):
        create_backend(runtime).load(bad)


def test_bit_flips_never_crash_the_process(avatar_pack, tmp_path):
    """Flip bytes all over each LiteRT/ONNX/ORT file and load it straight into its runtime (no hash).

    In a subprocess: a native abort fails this test instead of killing pytest. Each load
    must end in a BackendError or a model that loads and runs (a flipped weight is a valid
    model); never a crash or an untyped exception. ExecuTorch is left out on purpose: the
    pip runtime aborts the process on some bit-flipped programs (a log line with undecodable
    bytes), which is why every pack file is hash-checked before a runtime sees it (covered
    for .pte files by the tests above and below).
    """
    manifest = load_manifest(avatar_pack)
    cases = []
    rng = np.random.default_rng(3)
    for runtime, fmt in FORMATS[1:]:
        entry = manifest.model("int8", runtime, fmt)
        data = (avatar_pack / entry.file).read_bytes()
        for k, offset in enumerate(sorted(rng.integers(8, len(data), 6).tolist()) + [0, 4]):
            flipped = bytearray(data)
            flipped[offset] ^= 0xFF
            path = tmp_path / f"{k}_{entry.file}"
            path.write_bytes(bytes(flipped))
            cases.append((runtime, str(path)))
    script = textwrap.dedent(
        f"""
        import json, numpy as np
        from talkinghead.errors import BackendError
        from talkinghead.sdk.backends import create_backend
        x = np.zeros((1, 7, {manifest.resolution}, {manifest.resolution}), np.float32)
        for runtime, path in {cases!r}:
            try:
                with create_backend(runtime) as b:
                    b.load(path)
                    b.run(x)
                print(json.dumps([path, "ran"]), flush=True)
            except BackendError as e:
                print(json.dumps([path, "BackendError"]), flush=True)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    outcomes = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("[")]
    assert len(outcomes) == len(cases)
    # A flipped flatbuffer file identifier (offset 4) is always caught by the header screen
    # (an .onnx protobuf has no identifier there: its byte 4 may be a harmless string byte).
    flipped_ids = [o for p, o in outcomes if Path(p).name.startswith("7_") and p[-4:] != "onnx"]
    assert flipped_ids == ["BackendError", "BackendError"]


@pytest.mark.parametrize(("runtime", "fmt"), FORMATS)
def test_pack_with_tampered_or_missing_model(avatar_pack, tmp_path, runtime, fmt):
    pack = Path(shutil.copytree(avatar_pack, tmp_path / "pack"))
    entry = load_manifest(pack).model("int8", runtime, fmt)
    data = bytearray((pack / entry.file).read_bytes())
    data[len(data) // 2] ^= 0x01
    (pack / entry.file).write_bytes(bytes(data))
    with pytest.raises(PackIntegrityError, match=entry.file):
        open_pack(pack)
    with open_pack(pack, verify=False) as unverified:  # the bytes are still refused
        with pytest.raises(PackIntegrityError, match=entry.file):
            unverified.read_verified(entry.file)
    if fmt != "ort":  # the Avatar takes a runtime's first format (.onnx before .ort)
        with pytest.raises(PackIntegrityError, match=entry.file):
            Avatar.create_from_pack(pack, backend=runtime, precision="int8", verify=False)
    (pack / entry.file).unlink()
    with pytest.raises(PackError, match=f"missing.*{entry.file}"):
        open_pack(pack)


def test_manifest_hash_mismatch_for_each_runtime(avatar_pack, tmp_path):
    pack = Path(shutil.copytree(avatar_pack, tmp_path / "pack"))
    raw = json.loads((pack / MANIFEST_NAME).read_text())
    victim = next(m["file"] for m in raw["models"] if m["runtime"] == "litert")
    raw["files"][victim] = "0" * 64
    (pack / MANIFEST_NAME).write_text(json.dumps(raw))
    with pytest.raises(PackError, match="disagrees"):  # models[].sha256 vs files[]
        open_pack(pack)


# ----------------------------------------------------------------------------- schema versions


@pytest.mark.parametrize(
    ("version", "message"), [(4, "newer.*upgrade"), (0, "unknown pack schema_version 0")]
)
def test_other_schema_versions_rejected(avatar_pack, tmp_path, version, message):
    pack = Path(shutil.copytree(avatar_pack, tmp_path / "pack"))
    raw = json.loads((pack / MANIFEST_NAME).read_text())
    raw["schema_version"] = version
    (pack / MANIFEST_NAME).write_text(json.dumps(raw))
    with pytest.raises(PackError, match=message):
        open_pack(pack)


def test_bad_model_spec_names_the_key(avatar_pack, tmp_path):
    pack = Path(shutil.copytree(avatar_pack, tmp_path / "pack"))
    raw = json.loads((pack / MANIFEST_NAME).read_text())
    i = next(i for i, m in enumerate(raw["models"]) if m["runtime"] == "litert")
    raw["models"][i]["input"]["layout"] = "CHWN"
    (pack / MANIFEST_NAME).write_text(json.dumps(raw))
    with pytest.raises(PackError, match=rf"models\[{i}\].input"):
        open_pack(pack)


# ----------------------------------------------------------------------------- CLI verify


def test_cli_verify_runs_parity_on_every_runtime(capsys, avatar_pack, tmp_path):
    assert main(["verify", str(avatar_pack)]) == 0
    out = capsys.readouterr().out
    assert out.count("parity ok") == len(MATRIX)
    # A reference that no model reproduces (hash updated, so only parity can catch it).
    pack = Path(shutil.copytree(avatar_pack, tmp_path / "pack"))
    with open_pack(pack) as p:
        arrays = p.load_parity()
    arrays["outputs.eager"] = -arrays["outputs.eager"]
    np.savez_compressed(pack / "parity.npz", **arrays)
    raw = json.loads((pack / MANIFEST_NAME).read_text())
    from talkinghead.sdk.pack import sha256_file

    raw["files"]["parity.npz"] = sha256_file(pack / "parity.npz")
    (pack / MANIFEST_NAME).write_text(json.dumps(raw))
    assert main(["verify", str(pack), "--runtimes", "onnxruntime"]) == 2
    err = capsys.readouterr().err
    assert "parity failed" in err and ".onnx" in err and ".tflite" not in err
    assert main(["verify", str(pack), "--runtimes", "tensorflow"]) == 2
    assert "--runtimes" in capsys.readouterr().err


# ----------------------------------------------------------------------------- ExecuTorch extras


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(x) + x)


def test_bundled_program_self_check(avatar_pack, tmp_path):
    from talkinghead.export.executorch import bundle_pte

    with open_pack(avatar_pack) as pack:
        entry = pack.model("int8")
        data = pack.read_verified(entry.info["bundled"]["file"])
        assert run_bundled_program(data, atol=entry.info["bundled"]["atol"]) == 1
        # The same program with a wrong expected output fails its self-check.
        x = torch.tensor(pack.load_parity()["inputs"][0].copy())
        s = pack.manifest.resolution
        wrong = bundle_pte(
            pack.path(entry.file), [x], [torch.zeros(1, 3, s, s)], tmp_path / "w.bpte"
        )
    with pytest.raises(BackendError, match="bundled test case 0"):
        run_bundled_program(wrong.read_bytes(), atol=0.02)
    with pytest.raises(BackendError, match="not an ExecuTorch bundled program"):
        run_bundled_program(b"\x00" * 64, atol=0.02)


@pytest.mark.slow  # exports and lowers to Core ML
def test_etrecord_and_coreml_lowering(tmp_path):
    """ETRecord parses back; Core ML lowering runs ahead of time on Linux; the runtime here lacks it."""
    from executorch.devtools import parse_etrecord

    from talkinghead.export.executorch import ExecuTorchOptions, export_executorch, inspect_pte

    model, x = Tiny().eval(), (torch.rand(1, 3, 32, 32) * 2 - 1,)
    pte = export_executorch(model, x, tmp_path / "t.pte", etrecord=tmp_path / "t.etrecord")
    record = parse_etrecord(str(tmp_path / "t.etrecord"))
    assert record.edge_dialect_program is not None and record._debug_handle_map
    coreml = export_executorch(
        model, x, tmp_path / "t_coreml_fp32.pte", options=ExecuTorchOptions(delegate="coreml")
    )
    assert inspect_pte(coreml).delegates == ("CoreMLBackend",)
    assert inspect_pte(pte).delegates == ("XnnpackBackend",)
    with pytest.raises(BackendError, match="backends in this runtime"):
        create_backend("executorch").load(coreml)
    with pytest.raises(InvalidInputError, match="xnnpack delegate only"):
        export_executorch(
            model,
            x,
            tmp_path / "q.pte",
            calibration=[x],
            options=ExecuTorchOptions(quantize=True, delegate="coreml"),
        )


def test_qnn_without_sdk_is_a_clear_error(tmp_path, monkeypatch):
    from talkinghead.export.executorch import ExecuTorchOptions, export_executorch

    model, x = Tiny().eval(), (torch.zeros(1, 3, 32, 32),)
    options = ExecuTorchOptions(delegate="qnn")
    monkeypatch.delenv("QNN_SDK_ROOT", raising=False)
    with pytest.raises(BackendError, match="QNN SDK.*QNN_SDK_ROOT"):
        export_executorch(model, x, tmp_path / "q.pte", options=options)
    monkeypatch.setenv("QNN_SDK_ROOT", str(tmp_path))
    with pytest.raises(BackendError, match="is not a QNN SDK"):
        export_executorch(model, x, tmp_path / "q.pte", options=options)
    assert not (tmp_path / "q.pte").exists()


# ----------------------------------------------------------------------------- exporter arguments


@pytest.mark.parametrize("exporter", ["litert", "onnx"])
def test_exporter_argument_checks(tmp_path, exporter):
    from talkinghead.export.litert import export_litert
    from talkinghead.export.onnx import export_onnx

    export = {"litert": export_litert, "onnx": export_onnx}[exporter]
    model, x = Tiny().eval(), (torch.zeros(1, 3, 32, 32),)
    with pytest.raises(InvalidInputError, match="calibration"):
        export(model, x, tmp_path / "a", quantize=True)
    with pytest.raises(InvalidInputError, match="quantize is False"):
        export(model, x, tmp_path / "a", calibration=[x])
    with pytest.raises(InvalidInputError, match="calibration is empty"):
        export(model, x, tmp_path / "a", quantize=True, calibration=[])
    with pytest.raises(InvalidInputError, match="tuple"):
        export(model, x[0], tmp_path / "a")
    assert not list(tmp_path.iterdir())
