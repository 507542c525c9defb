"""talkinghead.export: turn a trained generator into files a phone runtime loads."""

from talkinghead.export.executorch import (
    ExecuTorchOptions,
    PteSummary,
    export_executorch,
    inspect_pte,
    pte_filename,
    quantize_pt2e_xnnpack,
)

__all__ = [
    "ExecuTorchOptions",
    "PteSummary",
    "export_executorch",
    "inspect_pte",
    "pte_filename",
    "quantize_pt2e_xnnpack",
]
