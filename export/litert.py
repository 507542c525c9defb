"""Export an image generator to a LiteRT ``.tflite`` (litert-torch), fp32 or int8, NHWC at its edges.

The chain::

    wrap NCHW model so it takes and returns NHWC (phones' camera and bitmap buffers are NHWC)
    ->  (int8: torch.export -> PT2E prepare with the LiteRT quantizer -> calibrate -> convert)
    ->  litert_torch.convert(...).export(path)

The fp32 file takes and returns ``(1, S, S, 3) float32`` in [-1, 1]. The int8 file is fully
integer: its input and output tensors are int8 with a scale and zero point, which
:func:`describe_tflite` reads back so the manifest can record them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from talkinghead.errors import InvalidInputError
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


@dataclass(frozen=True)
class LiteRTOptions:
    """How to export to LiteRT.

    quantize: static int8 PT2E quantization (LiteRT's quantizer) before conversion.
    per_channel: per-output-channel int8 weights (per-tensor when False).
    channels_last: NHWC input and output (the model inside stays NCHW; the converter folds
        the transposes into the graph).
    """

    quantize: bool = False
    per_channel: bool = True
    channels_last: bool = True


def tflite_filename(model_name: str, quantized: bool) -> str:
    """``{model}_litert_{q8|fp32}.tflite``."""
    return f"{check_model_name(model_name)}_litert_{'q8' if quantized else 'fp32'}.tflite"


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1).contiguous()


def export_litert(
    model: nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    path: str | os.PathLike[str],
    *,
    quantize: bool = False,
    calibration: Iterable[tuple[torch.Tensor, ...]] | None = None,
    options: LiteRTOptions | None = None,
) -> Path:
    """Convert ``model`` to a ``.tflite`` at ``path``; return the path.

    example_inputs, calibration: NCHW tuples ``(x,)``, x ``(1, 3, S, S) float32``, as for the
    other exporters; they are transposed here when ``channels_last``.
    """
    import litert_torch

    if options is None:
        options = LiteRTOptions(quantize=quantize)
    elif quantize and not options.quantize:
        raise InvalidInputError("quantize=True conflicts with options.quantize=False")
    check_quantize_args(options.quantize, calibration)
    example_inputs = check_inputs(example_inputs)
    batches = calibration_batches(calibration) if calibration is not None else None
    if options.channels_last and any(t.ndim != 4 for t in example_inputs):
        raise InvalidInputError("channels_last export needs 4-D (N, C, H, W) example inputs")
    to_io = _nhwc if options.channels_last else (lambda t: t)
    args = tuple(to_io(t) for t in example_inputs)

    with eval_mode(model):
        wrapped: nn.Module = (
            litert_torch.to_channel_last_io(model, args=[0], outputs=[0])
            if options.channels_last
            else model
        ).eval()
        kwargs: dict[str, Any] = {}
        if batches is not None:
            wrapped, kwargs["quant_config"] = _quantize(
                wrapped, args, batches, to_io, options.per_channel
            )
        with export_step("litert", "converting to .tflite"), _quiet_converter():
            edge = litert_torch.convert(wrapped, args, **kwargs)
            data = edge.model_content()
    path = atomic_write(path, data)
    log.info("litert export: wrote %s (%.1f kB)", path, len(data) / 1e3)
    return path


@contextmanager
def _quiet_converter() -> Iterator[None]:
    """No converter progress lines on the console (our own logging times the step), unless asked for."""
    key = "LITERT_TORCH_SHOW_PROGRESS"
    before = os.environ.get(key)
    if before is None:
        os.environ[key] = "n"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)


def _quantize(
    wrapped: nn.Module,
    args: tuple[torch.Tensor, ...],
    batches: list[tuple[torch.Tensor, ...]],
    to_io: Any,
    per_channel: bool,
) -> tuple[nn.Module, Any]:
    """PT2E static int8 with LiteRT's quantizer; returns the converted module and its QuantConfig."""
    from litert_torch.quantize import pt2e_quantizer
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
        pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=per_channel)
    )
    with export_step("litert", "capturing the graph for quantization"):
        captured = torch.export.export(wrapped, args).module()
    with export_step("litert", "inserting observers"):
        prepared = prepare_pt2e(captured, quantizer)
    with export_step("litert", f"calibrating on {len(batches)} batch(es)"), torch.no_grad():
        for batch in batches:
            prepared(*(to_io(t) for t in batch))
    with export_step("litert", "converting to int8"):
        converted = move_exported_model_to_eval(convert_pt2e(prepared, fold_quantize=False))
    return converted, QuantConfig(pt2e_quantizer=quantizer)


def describe_tflite(data: bytes) -> dict[str, Any]:
    """The first input and output of a .tflite as ``{"shape", "dtype", "quantization"}`` dicts.

    ``quantization`` is ``{"scale": s, "zero_point": z}`` for integer tensors
    (real = scale * (q - zero_point)), else None.
    """
    from ai_edge_litert.interpreter import Interpreter

    with export_step("litert", "reading tensor details"):
        interpreter = Interpreter(model_content=data)
        details = interpreter.get_input_details()[0], interpreter.get_output_details()[0]

    def one(d: dict[str, Any]) -> dict[str, Any]:
        scale, zero = d["quantization"]
        dtype = d["dtype"].__name__
        quant = (
            None if dtype.startswith("float") else {"scale": float(scale), "zero_point": int(zero)}
        )
        return {"shape": [int(v) for v in d["shape"]], "dtype": dtype, "quantization": quant}

    return {"input": one(details[0]), "output": one(details[1])}
