"""Export an image generator to ONNX: fp32, static int8 (QDQ) for ONNX Runtime, and ORT format.

The chain::

    torch.onnx.export (dynamo, static shapes)  ->  model.onnx  (fp32)
    quant_pre_process -> quantize_static (QDQ, int8 weights per channel, uint8 activations,
                          calibrated on real refiner inputs)  ->  model_q8.onnx
    convert_onnx_models_to_ort  ->  .ort  (the format ONNX Runtime's reduced mobile builds load)
    check_mobile_usability  ->  how much of the graph NNAPI / Core ML execution providers take

Input and output: ``(1, 3, S, S) float32`` in [-1, 1], NCHW, named ``landmark_image`` and
``face_image``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from talkinghead.errors import BackendError, InvalidInputError
from talkinghead.export.common import (
    atomic_write,
    calibration_batches,
    check_inputs,
    check_model_name,
    check_quantize_args,
    eval_mode,
    export_step,
)

log = logging.getLogger(__name__)

ONNX_OPSET = 18
INPUT_NAME = "landmark_image"
OUTPUT_NAME = "face_image"


@dataclass(frozen=True)
class OnnxOptions:
    """How to export to ONNX.

    quantize: static int8 QDQ (ONNX Runtime quantizer) after the fp32 export.
    per_channel: per-output-channel int8 weights (per-tensor when False).
    opset: ONNX opset of the graph.
    """

    quantize: bool = False
    per_channel: bool = True
    opset: int = ONNX_OPSET


def onnx_filename(model_name: str, quantized: bool) -> str:
    """``{model}_onnx_{q8|fp32}.onnx``; its ORT-format twin has the same stem and ``.ort``."""
    return f"{check_model_name(model_name)}_onnx_{'q8' if quantized else 'fp32'}.onnx"


def _export_fp32(model: nn.Module, example_inputs: tuple[torch.Tensor, ...], opset: int) -> bytes:
    with eval_mode(model), export_step("onnx", "running torch.onnx.export"):
        # Quiet: the exporter prints its progress and a report on stdout.
        with contextlib.redirect_stdout(io.StringIO()):
            program = torch.onnx.export(
                model,
                example_inputs,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        proto = program.model_proto
    return proto.SerializeToString()


def quantize_onnx_static(
    fp32_path: str | os.PathLike[str],
    path: str | os.PathLike[str],
    calibration: Iterable[tuple[torch.Tensor, ...]],
    *,
    per_channel: bool = True,
    activations: str = "U8S8",
) -> Path:
    """Static int8 QDQ quantization of an fp32 ONNX file; activation ranges from ``calibration``.

    activations: "U8S8" (uint8 activations, int8 weights: ONNX Runtime's fast x86 pair) or
    "S8S8" (int8 both, kept to measure the difference).

    calibration: tuples ``(x,)``, x ``(1, 3, S, S) float32``, real landmark images.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, batches: list[tuple[torch.Tensor, ...]]) -> None:
            self._it = iter([{INPUT_NAME: b[0].detach().numpy()} for b in batches])

        def get_next(self) -> dict[str, Any] | None:
            return next(self._it, None)

    if activations not in ("U8S8", "S8S8"):
        raise InvalidInputError(f"activations must be U8S8 or S8S8, got {activations!r}")
    batches = calibration_batches(calibration)
    reader = Reader(batches)
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="talkinghead-onnx-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        out = Path(tmp) / "q8.onnx"
        with export_step("onnx", "preprocessing for quantization"):
            quant_pre_process(str(fp32_path), str(pre))
        with export_step("onnx", f"quantizing to int8 QDQ ({len(batches)} calibration images)"):
            # Activations uint8, weights int8 (U8S8): ONNX Runtime's x86 int8 kernels
            # (VNNI's vpdpbusd multiplies unsigned by signed bytes) take that pair. With int8
            # activations (S8S8) its CPU provider left 9 of the refiner's 16 convolutions in
            # fp32 between DequantizeLinear / QuantizeLinear pairs, and int8 ran 1.8x slower
            # than fp32; with U8S8 all 16 fuse into QLinearConv (docs/performance.md).
            quantize_static(
                str(pre),
                str(out),
                reader,
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8 if activations == "U8S8" else QuantType.QInt8,
                weight_type=QuantType.QInt8,
                per_channel=per_channel,
            )
        return atomic_write(path, out.read_bytes())


def export_onnx(
    model: nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    path: str | os.PathLike[str],
    *,
    quantize: bool = False,
    calibration: Iterable[tuple[torch.Tensor, ...]] | None = None,
    options: OnnxOptions | None = None,
) -> Path:
    """Export ``model`` to an ONNX file at ``path`` (fp32, or int8 QDQ with ``calibration``).

    example_inputs: ``(x,)``, x ``(1, 3, S, S) float32``; the graph has these static shapes.
    """
    if options is None:
        options = OnnxOptions(quantize=quantize)
    elif quantize and not options.quantize:
        raise InvalidInputError("quantize=True conflicts with options.quantize=False")
    check_quantize_args(options.quantize, calibration)
    example_inputs = check_inputs(example_inputs)
    batches = calibration_batches(calibration) if calibration is not None else None
    data = _export_fp32(model, example_inputs, options.opset)
    if batches is None:
        return atomic_write(path, data)
    with tempfile.TemporaryDirectory(prefix="talkinghead-onnx-") as tmp:
        fp32 = atomic_write(Path(tmp) / "fp32.onnx", data)
        return quantize_onnx_static(fp32, path, batches, per_channel=options.per_channel)


def convert_to_ort(onnx_path: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> Path:
    """Convert an ONNX file to ORT format (fixed optimisations, portable to ARM); return the .ort path."""
    from onnxruntime.tools.convert_onnx_models_to_ort import (
        OptimizationStyle,
        convert_onnx_models_to_ort,
    )

    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise InvalidInputError(f"ONNX file not found: {onnx_path}")
    with tempfile.TemporaryDirectory(prefix="talkinghead-ort-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        (src / onnx_path.name).write_bytes(onnx_path.read_bytes())  # the tool converts a folder
        with export_step("onnx", "converting to ORT format"):
            with contextlib.redirect_stdout(io.StringIO()) as chatter:
                convert_onnx_models_to_ort(
                    src,
                    output_dir=Path(tmp) / "out",
                    optimization_styles=[OptimizationStyle.Fixed],
                    target_platform="arm",
                )
            log.debug("%s", chatter.getvalue())
        made = sorted((Path(tmp) / "out").glob("*.ort"))
        if len(made) != 1:
            raise BackendError(f"ORT conversion of {onnx_path.name} produced {len(made)} files")
        return atomic_write(Path(out_dir) / (onnx_path.stem + ".ort"), made[0].read_bytes())


def check_mobile_usability(onnx_path: str | os.PathLike[str]) -> dict[str, Any]:
    """ONNX Runtime's mobile-usability check, as data: per execution provider, how well it fits.

    Returns ``{"nnapi": ..., "coreml_neuralnetwork": ..., "coreml_mlprogram": ...}``, each
    ``{"suitability": "YES"|"MAYBE"|"NO", "supported_nodes": n, "nodes": N, "partitions": p}``.
    """
    from onnxruntime.tools.mobile_helpers import usability_checker as uc
    from onnxruntime.tools.onnx_model_utils import optimize_model

    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise InvalidInputError(f"ONNX file not found: {onnx_path}")
    quiet = logging.getLogger("talkinghead.export.onnx.usability")
    quiet.setLevel(logging.WARNING)
    checks = {
        "nnapi": uc.check_nnapi_partitions,
        "coreml_neuralnetwork": lambda m, fixed: uc.check_coreml_partitions(
            m, fixed, "coreml_supported_neuralnetwork_ops.md"
        ),
        "coreml_mlprogram": lambda m, fixed: uc.check_coreml_partitions(
            m, fixed, "coreml_supported_mlprogram_ops.md"
        ),
    }
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="talkinghead-usability-") as tmp:
        with export_step("onnx", "checking mobile usability"):
            # The same basic-level optimisation the ORT conversion applies, as the tool does.
            optimized = Path(tmp) / onnx_path.name
            optimize_model(onnx_path, optimized, use_external_initializers=True)
            model = uc.ModelProtoWithShapeInfo(optimized).model_with_shape_info
            for name, check in checks.items():
                info = check(model, True)
                out[name] = {
                    "suitability": info.suitability().name,
                    "supported_nodes": int(info.num_supported_nodes),
                    "nodes": int(info.num_nodes),
                    "partitions": int(info.num_partitions),
                    "unsupported_ops": sorted(str(op) for op in info.unsupported_ops),
                }
    return out
