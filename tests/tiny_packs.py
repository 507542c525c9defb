"""Small real avatar packs for the hostile-input tests: a 1x1-conv refiner, exported in seconds.

The pack is real in every way the runtime checks (manifest, rig, models of every runtime and
format, bundled program, parity vectors); only the refiner is trivial. Its input channels
come from the pack format (``sdk.pack.INPUT_CHANNELS``) and its size from the enrolled rig,
so the packs follow the format as it changes. ``out_size`` makes a model whose output size
differs from the manifest's, as an attacker's re-hashed pack would.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

RESOLUTION = 64


@functools.lru_cache(maxsize=1)
def enrolled_astronaut():
    from talkinghead.packs import enrol_photo

    return enrol_photo("astronaut", size=RESOLUTION)


def tiny_refiner(out_size: int | None = None):
    import torch
    from torch import nn

    from talkinghead.sdk.pack_schema import INPUT_CHANNELS

    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(INPUT_CHANNELS, 3, 1), nn.Tanh()]
    if out_size is not None:
        layers.append(nn.Upsample(size=(out_size, out_size), mode="nearest"))
    return nn.Sequential(*layers).eval()


def make_tiny_pack(
    folder: Path,
    *,
    runtimes: tuple[str, ...] = ("executorch", "onnxruntime", "litert"),
    out_size: int | None = None,
    signing_key: bytes | None = None,
    force: bool = True,
) -> Path:
    """Write a fp32 pack of the tiny refiner for ``runtimes`` into ``folder``; return it."""
    import torch

    from talkinghead.export.executorch import bundle_pte, export_executorch
    from talkinghead.packs import _face_inputs
    from talkinghead.sdk.pack import write_pack
    from talkinghead.sdk.pack_schema import ModelSource, TensorSpec
    from talkinghead.sdk.warp import landmarks68, rig_to_bytes

    face = enrolled_astronaut()
    model = tiny_refiner(out_size)
    inputs = _face_inputs(face.rig, 2, seed=1)  # (N, 1, C, S, S)
    example = (torch.from_numpy(inputs[0].copy()),)
    with torch.no_grad():
        eager = np.stack([model(torch.from_numpy(x)).numpy() for x in inputs])
    work = folder.parent / f"{folder.name}-work"  # beside it: never inside the target
    work.mkdir(parents=True, exist_ok=True)
    models = []
    if "executorch" in runtimes:
        pte = export_executorch(model, example, work / "tiny_xnnpack_fp32.pte")
        bpte = bundle_pte(
            pte, [example[0]], [torch.from_numpy(eager[0].copy())], pte.with_suffix(".bpte")
        )
        models.append(ModelSource(pte, bundled=bpte, bundled_info={"test_cases": 1, "atol": 1e-4}))
    if "onnxruntime" in runtimes:
        from talkinghead.export.onnx import convert_to_ort, export_onnx

        onnx = export_onnx(model, example, work / "tiny_onnx_fp32.onnx")
        models.append(ModelSource(onnx, "fp32", "onnxruntime", "cpu", "onnx"))
        ort = convert_to_ort(onnx, work)
        models.append(ModelSource(ort, "fp32", "onnxruntime", "cpu", "ort"))
    if "litert" in runtimes:
        from talkinghead.export.litert import describe_tflite, export_litert

        path = export_litert(model, example, work / "tiny_litert_fp32.tflite")
        io = describe_tflite(path.read_bytes())
        specs = {
            k: TensorSpec(
                name=k,
                shape=tuple(io[k]["shape"]),
                description=k,
                dtype=io[k]["dtype"],
                layout="NHWC",
                quantization=io[k]["quantization"],
            )  # fmt: skip
            for k in ("input", "output")
        }
        models.append(
            ModelSource(path, "fp32", "litert", "cpu", "tflite", specs["input"], specs["output"])
        )
    return write_pack(
        folder,
        name="tiny",
        resolution=face.rig.size,
        models=models,
        neutral_landmarks=landmarks68(face.mesh),
        rig=rig_to_bytes(face.rig),
        parity={"inputs": inputs, "outputs.eager": eager},
        parity_info={"reference": "outputs.eager", "fp32_max_abs": 1e-4, "int8_min_psnr_db": 25},
        overwrite=force,
        signing_key=signing_key,
    )
