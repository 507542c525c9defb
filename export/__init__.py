"""talkinghead.export: turn a trained generator into files a phone runtime loads.

ExecuTorch (``executorch``: XNNPACK fp32/int8, Core ML, QNN; BundledProgram; ETRecord),
LiteRT (``litert``: NHWC .tflite, fp32/int8) and ONNX (``onnx``: fp32, int8 QDQ, .ort).
Each exporter module imports its toolchain only when used, and this package imports the
ExecuTorch exporter (and with it torch) only when one of its names below is asked for:
``talkinghead.export.registry`` stays light enough for the CLI to validate its inputs
before any toolchain loads.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "ExecuTorchOptions",
    "PteSummary",
    "bundle_pte",
    "export_executorch",
    "inspect_pte",
    "pte_filename",
    "qnn_sdk_root",
    "quantize_pt2e_xnnpack",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("talkinghead.export.executorch"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
