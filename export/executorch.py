"""Export an image generator to an ExecuTorch ``.pte``: XNNPACK fp32 and int8, Core ML, Qualcomm QNN.

The chain is the one the ExecuTorch examples use::

    torch.export  ->  (PT2E int8: prepare, calibrate, convert, re-export)
                  ->  to_edge_transform_and_lower(partitioner of the chosen delegate)
                  ->  to_executorch  ->  bytes on disk   (+ optional ETRecord for profiling)

and, for a phone's self-check, :func:`bundle_pte` wraps a finished ``.pte`` with parity
vectors into an ExecuTorch BundledProgram (``.bpte``).

Delegates:
- ``xnnpack``: fp32 and int8, runs on this machine through the ExecuTorch pip runtime.
- ``coreml``: fp32 lowering works ahead of time on Linux (coremltools builds the ML program);
  the program runs only where the Core ML backend is registered (Apple devices). Unverified
  on device here.
- ``qnn``: needs the Qualcomm QNN SDK (``QNN_SDK_ROOT``); without it export raises
  BackendError before touching anything. Unverified here: no SDK on this machine.

Models here take a rasterised landmark image ``(1, 3, S, S) float32`` in [-1, 1]
and return a face image of the same shape and range.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

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

XNNPACK_BACKEND_ID = "XnnpackBackend"
DELEGATES = ("xnnpack", "coreml", "qnn")
# The Qualcomm library that proves an SDK is present (x86-64 Linux host tools).
_QNN_HOST_LIB = Path("lib") / "x86_64-linux-clang" / "libQnnHtp.so"


@dataclass(frozen=True)
class ExecuTorchOptions:
    """How to export to ExecuTorch.

    quantize: int8 post-training quantization (PT2E, XNNPACK quantizer) before lowering
        (xnnpack delegate only).
    per_channel: per-output-channel symmetric int8 weights (per-tensor when False).
        Activations are always per-tensor static int8.
    delegate: "xnnpack", "coreml" or "qnn" (see the module docstring).
    soc: the Qualcomm chip to compile for (qnn only), e.g. "SM8650".
    keep_float: submodules left in fp32 by int8 PTQ (e.g. ``("stem",)`` for students).
    """

    quantize: bool = False
    per_channel: bool = True
    delegate: str = "xnnpack"
    soc: str = "SM8650"
    keep_float: tuple[str, ...] = ()


def pte_filename(model_name: str, quantized: bool, delegate: str = "xnnpack") -> str:
    """``{model}_{delegate}_{q8|fp32}.pte``: the file says what it holds."""
    if delegate not in DELEGATES:
        raise InvalidInputError(f"delegate must be one of {DELEGATES}, got {delegate!r}")
    return f"{check_model_name(model_name)}_{delegate}_{'q8' if quantized else 'fp32'}.pte"


def xnnpack_quantizer(per_channel: bool = True, qat: bool = False):
    """The XNNPACK int8 quantizer: symmetric weights (per channel by default), static
    per-tensor activations; ``qat`` gives fake-quant modules for quantization-aware training."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    config = get_symmetric_quantization_config(is_per_channel=per_channel, is_qat=qat)
    return XNNPACKQuantizer().set_global(config)


def quantize_pt2e_xnnpack(
    model: nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    calibration: Iterable[tuple[torch.Tensor, ...]],
    *,
    per_channel: bool = True,
    keep_float: tuple[str, ...] = (),
) -> torch.fx.GraphModule:
    """Post-training static int8 quantization for XNNPACK (symmetric weights, per channel by default).

    keep_float: submodule names (e.g. ``("stem",)``) left in fp32; XNNPACK runs them in fp32
        inside the same delegate. For layers whose int8 error the rest of the net amplifies.

    model: eager module; example_inputs: e.g. ``(x,)`` with x ``(1, 3, S, S) float32``.
    calibration: tuples shaped like example_inputs, run through the observed model to set
        activation ranges. Use real landmark images; the range they cover is the range the
        int8 model represents well.
    Returns the converted GraphModule (quantize/dequantize nodes around float ops), ready to
    be re-exported and lowered.
    """
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    example_inputs = check_inputs(example_inputs)
    batches = calibration_batches(calibration)
    with eval_mode(model):
        with export_step("executorch", "capturing the graph for quantization"):
            captured = torch.export.export(model, example_inputs).module()
        quantizer = xnnpack_quantizer(per_channel=per_channel)
        if keep_float:
            quantizer.set_filter_function(lambda node: not _in_modules(node, keep_float))
        with export_step("executorch", "inserting observers"):
            prepared = prepare_pt2e(captured, quantizer)
        with export_step("executorch", f"calibrating on {len(batches)} batch(es)"):
            with torch.no_grad():
                for batch in batches:
                    prepared(*batch)
        with export_step("executorch", "converting to int8"):
            return convert_pt2e(prepared)


def _in_modules(node: torch.fx.Node, names: tuple[str, ...]) -> bool:
    """Whether ``node`` was traced inside one of the submodules ``names`` (or their children)."""
    stack = node.meta.get("nn_module_stack", {}).values()
    return any(path == n or path.startswith(n + ".") for path, _ in stack for n in names)


def qnn_sdk_root() -> Path:
    """The Qualcomm QNN SDK folder from ``$QNN_SDK_ROOT``; BackendError when it is absent.

    Checked before any QNN code runs: the ExecuTorch QNN tooling would otherwise try to
    fetch an SDK on its own.
    """
    root = os.environ.get("QNN_SDK_ROOT")
    if not root:
        raise BackendError(
            "QNN lowering needs the Qualcomm QNN SDK: set QNN_SDK_ROOT to its folder "
            "(not installed on this machine)"
        )
    if not (Path(root) / _QNN_HOST_LIB).is_file():
        raise BackendError(
            f"QNN_SDK_ROOT={root} is not a QNN SDK: {_QNN_HOST_LIB} is missing there"
        )
    return Path(root)


def _partitioners(options: ExecuTorchOptions) -> list:
    """The partitioner list for the chosen delegate; raises before heavy imports when unusable."""
    if options.delegate == "xnnpack":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        return [XnnpackPartitioner()]
    if options.delegate == "coreml":
        import coremltools as ct
        from executorch.backends.apple.coreml.compiler import CoreMLBackend
        from executorch.backends.apple.coreml.partition import CoreMLPartitioner

        specs = CoreMLBackend.generate_compile_specs(
            compute_precision=ct.precision.FLOAT32,
            minimum_deployment_target=ct.target.iOS17,
        )
        return [CoreMLPartitioner(compile_specs=specs)]
    qnn_sdk_root()  # the SDK first: everything below needs its native libraries
    from executorch.backends.qualcomm.partition.qnn_partitioner import QnnPartitioner
    from executorch.backends.qualcomm.serialization.qc_schema import QcomChipset
    from executorch.backends.qualcomm.utils.utils import (
        generate_htp_compiler_spec,
        generate_qnn_executorch_compiler_spec,
    )

    specs = generate_qnn_executorch_compiler_spec(
        soc_model=getattr(QcomChipset, options.soc),
        backend_options=generate_htp_compiler_spec(use_fp16=True),
    )
    return [QnnPartitioner(specs)]


def export_executorch(
    model: nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    path: str | os.PathLike[str],
    *,
    quantize: bool = False,
    calibration: Iterable[tuple[torch.Tensor, ...]] | None = None,
    options: ExecuTorchOptions | None = None,
    etrecord: str | os.PathLike[str] | None = None,
) -> Path:
    """Export ``model`` to a delegated ExecuTorch program at ``path``; return the path.

    example_inputs: ``(x,)``, x ``(1, 3, S, S) float32`` in [-1, 1]; the .pte has these static shapes.
    quantize: int8 PTQ first (needs ``calibration``). ``options`` gives the full set of knobs;
        pass either ``quantize`` or ``options``, not conflicting values of both.
    etrecord: also write an ETRecord there (the graphs and debug handles the ExecuTorch
        Inspector joins with an on-device ETDump to attribute time to operators).
    The file is written atomically (temporary name, then rename), so a crash never leaves a
    half-written .pte under the final name.
    """
    from executorch.exir import to_edge_transform_and_lower

    if options is None:
        options = ExecuTorchOptions(quantize=quantize)
    elif quantize and not options.quantize:
        raise InvalidInputError("quantize=True conflicts with options.quantize=False")
    if options.delegate not in DELEGATES:
        raise InvalidInputError(f"delegate must be one of {DELEGATES}, got {options.delegate!r}")
    if options.quantize and options.delegate != "xnnpack":
        raise InvalidInputError(
            f"int8 export is implemented for the xnnpack delegate only, not {options.delegate}"
        )
    check_quantize_args(options.quantize, calibration)
    example_inputs = check_inputs(example_inputs)
    partitioners = _partitioners(options)

    path = Path(path)
    t0 = time.perf_counter()
    with eval_mode(model):
        if options.quantize:
            assert calibration is not None
            to_export: nn.Module = quantize_pt2e_xnnpack(
                model,
                example_inputs,
                calibration,
                per_channel=options.per_channel,
                keep_float=options.keep_float,
            )
        else:
            to_export = model
        with export_step("executorch", "running torch.export"):
            exported = torch.export.export(to_export, example_inputs)
    with export_step("executorch", f"lowering to {options.delegate}"):
        edge = to_edge_transform_and_lower(exported, partitioner=partitioners)
        n_delegates, leftover = _delegation_of(edge.exported_program().graph_module)
    if n_delegates == 0:
        raise BackendError(
            f"{options.delegate} took no part of the model; the .pte would run on portable kernels only"
        )
    if leftover:
        log.warning(
            "executorch export: %d %s call(s); ops left on portable kernels: %s",
            n_delegates,
            options.delegate,
            ", ".join(sorted(set(leftover))),
        )
    with export_step("executorch", "serialising to .pte"):
        edge_for_record = copy.deepcopy(edge) if etrecord is not None else None
        program = edge.to_executorch()
        buffer = program.buffer
    atomic_write(path, buffer)
    if etrecord is not None:
        from executorch.devtools import generate_etrecord

        with export_step("executorch", "writing the ETRecord"):
            Path(etrecord).parent.mkdir(parents=True, exist_ok=True)
            generate_etrecord(str(etrecord), edge_for_record, program, exported_program=exported)
    log.info(
        "executorch export: wrote %s (%s, %s, %.1f kB) in %.1f s",
        path,
        options.delegate,
        "int8" if options.quantize else "fp32",
        len(buffer) / 1e3,
        time.perf_counter() - t0,
    )
    return path


def bundle_pte(
    pte: str | os.PathLike[str],
    inputs: Sequence[torch.Tensor],
    expected: Sequence[torch.Tensor],
    path: str | os.PathLike[str],
) -> Path:
    """Wrap a finished ``.pte`` and parity vectors into an ExecuTorch BundledProgram (``.bpte``).

    inputs, expected: N tensors ``(1, 3, S, S) float32`` each: the test cases a device runs
    through the program's ``forward`` and compares (with its own rtol/atol) to ``expected``.
    """
    from executorch.devtools import BundledProgram
    from executorch.devtools.bundled_program.config import MethodTestCase, MethodTestSuite
    from executorch.devtools.bundled_program.serialize import (
        serialize_from_bundled_program_to_flatbuffer,
    )

    if len(inputs) == 0 or len(inputs) != len(expected):
        raise InvalidInputError(
            f"bundle_pte needs as many expected outputs as inputs (>= 1), got {len(inputs)} and {len(expected)}"
        )
    cases = [
        MethodTestCase(inputs=(check_inputs((x,))[0],), expected_outputs=(check_inputs((y,))[0],))
        for x, y in zip(inputs, expected, strict=True)
    ]
    with export_step("executorch", f"bundling {len(cases)} test case(s)"):
        bundled = BundledProgram(None, [MethodTestSuite("forward", cases)], pte_file_path=str(pte))
        data = serialize_from_bundled_program_to_flatbuffer(bundled)
    return atomic_write(path, data)


def _delegation_of(gm: torch.fx.GraphModule) -> tuple[int, list[str]]:
    """(number of delegate calls, names of compute ops left outside any delegate)."""
    n_delegates = 0
    leftover: list[str] = []
    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        if node.target is torch.ops.higher_order.executorch_call_delegate:
            n_delegates += 1
        elif "getitem" not in str(node.target):
            leftover.append(getattr(node.target, "__name__", str(node.target)))
    return n_delegates, leftover


@dataclass(frozen=True)
class PteSummary:
    """What a .pte file holds: the backends its delegates target and its non-delegated operators."""

    delegates: tuple[str, ...]
    operators: tuple[str, ...]

    @property
    def xnnpack_delegated(self) -> bool:
        return XNNPACK_BACKEND_ID in self.delegates


def inspect_pte(path: str | os.PathLike[str]) -> PteSummary:
    """Read the serialized program back and list its delegates and portable operators (forward)."""
    # A private module, but the only reader of the .pte flatbuffer the wheel ships.
    from executorch.exir._serialize._program import deserialize_pte_binary

    try:
        program = deserialize_pte_binary(Path(path).read_bytes()).program
    except Exception as e:
        raise BackendError(f"cannot read ExecuTorch program {path}: {e}") from e
    plan = next(
        (p for p in program.execution_plan if p.name == "forward"), program.execution_plan[0]
    )
    return PteSummary(
        delegates=tuple(d.id for d in plan.delegates),
        operators=tuple(op.name for op in plan.operators),
    )
