"""Exporters by runtime, as the SDK's backends are: one registered function per runtime.

    ctx = ExportContext(model=refiner, example=refiner.get_example_inputs(), out_dir=folder,
                        stem="refiner-s", calibration=calib)
    sources = export_model("onnxruntime", "int8", ctx)   # [ModelSource] for the pack

Each exporter writes its files into ``ctx.out_dir`` and describes them as
:class:`~talkinghead.sdk.pack_schema.ModelSource` entries; it imports its toolchain only
when called. A new runtime is one ``@register_exporter`` function; tests that run over
:data:`RUNTIMES` cover it without new test code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from talkinghead.errors import InvalidInputError
from talkinghead.sdk.pack_schema import PRECISIONS, ModelSource, TensorSpec


@dataclass
class ExportContext:
    """What every exporter needs to write one model of a generator.

    Attributes:
        model: the eager torch module (the refiner), in eval mode; ``model.cfg`` its config.
        example: example inputs of one forward call (``model.get_example_inputs()``).
        out_dir: the folder the files are written to.
        stem: the file names' stem (``{stem}_xnnpack_q8.pte``); the model's variant name.
        calibration: int8 calibration batches, each a tuple of forward inputs.
        etrecord_dir: ExecuTorch only: also write an ETRecord per .pte here.
        onnx_fp32: set by the ONNX exporter after its fp32 export, so that int8 quantizes
            that file instead of exporting from torch a second time.
    """

    model: Any
    example: tuple[Any, ...]
    out_dir: Path
    stem: str
    calibration: list[tuple[Any, ...]] | None = None
    etrecord_dir: Path | None = None
    onnx_fp32: Path | None = None

    def calibration_for(self, precision: str) -> list[tuple[Any, ...]] | None:
        """The calibration batches for int8; None for fp32."""
        if precision == "int8" and not self.calibration:
            raise InvalidInputError("an int8 export needs calibration batches")
        return self.calibration if precision == "int8" else None


Exporter = Callable[[ExportContext, str], list[ModelSource]]
_EXPORTERS: dict[str, Exporter] = {}


def register_exporter(runtime: str) -> Callable[[Exporter], Exporter]:
    """Register ``fn(ctx, precision) -> [ModelSource]`` as the exporter of ``runtime``."""

    def add(fn: Exporter) -> Exporter:
        if runtime in _EXPORTERS:
            raise ValueError(f"an exporter for {runtime!r} is already registered")
        _EXPORTERS[runtime] = fn
        return fn

    return add


def list_exporters() -> tuple[str, ...]:
    """The runtimes an avatar pack can hold models for, in registration order."""
    return tuple(_EXPORTERS)


def export_model(runtime: str, precision: str, ctx: ExportContext) -> list[ModelSource]:
    """Export ``ctx.model`` for one runtime and precision into ``ctx.out_dir``.

    Raises:
        InvalidInputError: an unknown runtime or precision.
    """
    if runtime not in _EXPORTERS:
        raise InvalidInputError(f"runtime must be one of {', '.join(_EXPORTERS)}, got {runtime!r}")
    if precision not in PRECISIONS:
        raise InvalidInputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return _EXPORTERS[runtime](ctx, precision)


@register_exporter("executorch")
def _executorch(ctx: ExportContext, precision: str) -> list[ModelSource]:
    from talkinghead.export.executorch import ExecuTorchOptions, export_executorch, pte_filename

    q = precision == "int8"
    pte = ctx.out_dir / pte_filename(ctx.stem, q)
    record = ctx.etrecord_dir / (pte.stem + ".etrecord") if ctx.etrecord_dir else None
    # Students trained with norms and a clamp output keep their stem in fp32 under int8
    # (docs/distillation.md: +4 dB on student-xs); tanh-output students gain nothing.
    keep = ("stem",) if q and getattr(ctx.model.cfg, "output", "tanh") == "clamp" else ()
    options = ExecuTorchOptions(quantize=q, keep_float=keep)
    export_executorch(
        ctx.model,
        ctx.example,
        pte,
        options=options,
        calibration=ctx.calibration_for(precision),
        etrecord=record,
    )
    return [ModelSource(pte, precision=precision)]


@register_exporter("litert")
def _litert(ctx: ExportContext, precision: str) -> list[ModelSource]:
    from talkinghead.export.litert import describe_tflite, export_litert, tflite_filename

    q = precision == "int8"
    path = export_litert(
        ctx.model,
        ctx.example,
        ctx.out_dir / tflite_filename(ctx.stem, q),
        quantize=q,
        calibration=ctx.calibration_for(precision),
    )
    io = describe_tflite(path.read_bytes())
    specs = {
        k: TensorSpec(
            name=n,
            shape=tuple(io[k]["shape"]),
            description=f"{d}, NHWC",
            dtype=io[k]["dtype"],
            layout="NHWC",
            quantization=io[k]["quantization"],
        )
        for k, n, d in (
            ("input", "refiner_input", "warped photo, rasterised landmarks, validity"),
            ("output", "frame", "the finished RGB frame"),
        )
    }
    return [
        ModelSource(path, precision, "litert", "cpu", "tflite", specs["input"], specs["output"])
    ]


@register_exporter("onnxruntime")
def _onnxruntime(ctx: ExportContext, precision: str) -> list[ModelSource]:
    from talkinghead.export.onnx import (
        check_mobile_usability,
        convert_to_ort,
        export_onnx,
        onnx_filename,
        quantize_onnx_static,
    )

    q = precision == "int8"
    calib = ctx.calibration_for(precision)
    target = ctx.out_dir / onnx_filename(ctx.stem, q)
    if q and ctx.onnx_fp32 is not None:  # quantize the fp32 file: no second torch export
        path = quantize_onnx_static(ctx.onnx_fp32, target, calib)
    else:
        path = export_onnx(ctx.model, ctx.example, target, quantize=q, calibration=calib)
    if not q:
        ctx.onnx_fp32 = path
    ort = convert_to_ort(path, ctx.out_dir)
    mobile = {"mobile_usability": check_mobile_usability(path), "ort_file": ort.name}
    return [
        ModelSource(path, precision, "onnxruntime", "cpu", "onnx", info=mobile),
        ModelSource(
            ort, precision, "onnxruntime", "cpu", "ort", info={"converted_from": path.name}
        ),
    ]


RUNTIMES = list_exporters()

__all__ = [
    "PRECISIONS",
    "RUNTIMES",
    "ExportContext",
    "Exporter",
    "export_model",
    "list_exporters",
    "register_exporter",
]
