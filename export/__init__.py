"""talkinghead.export: turn a trained generator into files a phone runtime loads.

ExecuTorch (``executorch``: XNNPACK fp32/int8, Core ML, QNN; BundledProgram; ETRecord),
LiteRT (``litert``: NHWC .tflite, fp32/int8) and ONNX (``onnx``: fp32, int8 QDQ, .ort).
Each exporter module imports its toolchain only when used.
"""

from talkinghead.export.executorch import (
    ExecuTorchOptions,
    PteSummary,
    bundle_pte,
    export_executorch,
    inspect_pte,
    pte_filename,
    qnn_sdk_root,
    quantize_pt2e_xnnpack,
)

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
