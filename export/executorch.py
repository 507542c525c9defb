"""Export an image generator to an ExecuTorch ``.pte`` lowered to XNNPACK, fp32 or int8.

The chain is the one the ExecuTorch examples use::

    torch.export  ->  (PT2E int8: prepare, calibrate, convert, re-export)
                  ->  to_edge_transform_and_lower(XnnpackPartitioner)
                  ->  to_executorch  ->  bytes on disk

Models here take a rasterised landmark image ``(1, 3, S, S) float32`` in [-1, 1]
and return a face image of the same shape and range.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from talkinghead.errors import BackendError, InvalidInputError

log = logging.getLogger(__name__)

XNNPACK_BACKEND_ID = "XnnpackBackend"


@dataclass(frozen=True)
class ExecuTorchOptions:
    """How to export to ExecuTorch.

    quantize: int8 post-training quantization (PT2E, XNNPACK quantizer) before lowering.
    per_channel: per-output-channel symmetric int8 weights (per-tensor when False).
        Activations are always per-tensor static int8.
    """

    quantize: bool = False
    per_channel: bool = True


def pte_filename(model_name: str, quantized: bool) -> str:
    """``{model}_xnnpack_{q8|fp32}.pte``: the file says what it holds."""
    if not model_name or "/" in model_name or "\\" in model_name:
        raise InvalidInputError(f"model_name must be a plain, non-empty name, got {model_name!r}")
    return f"{model_name}_xnnpack_{'q8' if quantized else 'fp32'}.pte"


@contextmanager
def _step(name: str) -> Iterator[None]:
    """Log a step's duration; wrap whatever it raises in a BackendError naming the step."""
    log.info("executorch export: %s ...", name)
    t0 = time.perf_counter()
    try:
        yield
    except (InvalidInputError, BackendError):
        raise
    except Exception as e:  # torch.export / lowering raise many unrelated types
        raise BackendError(f"ExecuTorch export failed while {name}: {type(e).__name__}: {e}") from e
    log.info("executorch export: %s done in %.0f ms", name, (time.perf_counter() - t0) * 1e3)


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Trace in eval mode (BatchNorm running stats, no dropout), then restore the caller's mode."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _check_inputs(example_inputs: object, what: str = "example_inputs") -> tuple[torch.Tensor, ...]:
    if not isinstance(example_inputs, tuple) or not example_inputs:
        raise InvalidInputError(
            f"{what} must be a non-empty tuple of tensors, got {type(example_inputs).__name__}"
        )
    for i, t in enumerate(example_inputs):
        if not isinstance(t, torch.Tensor):
            raise InvalidInputError(f"{what}[{i}] must be a torch.Tensor, got {type(t).__name__}")
    return example_inputs


def quantize_pt2e_xnnpack(
    model: nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    calibration: Iterable[tuple[torch.Tensor, ...]],
    *,
    per_channel: bool = True,
) -> torch.fx.GraphModule:
    """Post-training static int8 quantization for XNNPACK (symmetric weights, per channel by default).

    model: eager module; example_inputs: e.g. ``(x,)`` with x ``(1, 3, S, S) float32``.
    calibration: tuples shaped like example_inputs, run through the observed model to set
        activation ranges. Use real landmark images; the range they cover is the range the
        int8 model represents well.
    Returns the converted GraphModule (quantize/dequantize nodes around float ops), ready to
    be re-exported and lowered.
    """
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    example_inputs = _check_inputs(example_inputs)
    with _eval_mode(model):
        with _step("capturing the graph for quantization"):
            captured = torch.export.export(model, example_inputs).module()
        quantizer = XNNPACKQuantizer().set_global(
            get_symmetric_quantization_config(is_per_channel=per_channel)
        )
        with _step("inserting observers"):
            prepared = prepare_pt2e(captured, quantizer)
        n = 0
        with _step("calibrating"), torch.no_grad():
            for batch in calibration:
                prepared(*_check_inputs(batch, f"calibration[{n}]"))
                n += 1
        if n == 0:
            raise InvalidInputError(
                "calibration is empty: int8 PTQ needs at least one batch of representative inputs"
            )
        log.info("executorch export: calibrated on %d batch(es)", n)
        with _step("converting to int8"):
            return convert_pt2e(prepared)


def export_executorch(
    model: nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    path: str | os.PathLike[str],
    *,
    quantize: bool = False,
    calibration: Iterable[tuple[torch.Tensor, ...]] | None = None,
    options: ExecuTorchOptions | None = None,
) -> Path:
    """Export ``model`` to an XNNPACK-delegated ExecuTorch program at ``path``; return the path.

    example_inputs: ``(x,)``, x ``(1, 3, S, S) float32`` in [-1, 1]; the .pte has these static shapes.
    quantize: int8 PTQ first (needs ``calibration``). ``options`` gives the full set of knobs;
        pass either ``quantize`` or ``options``, not conflicting values of both.
    The file is written atomically (temporary name, then rename), so a crash never leaves a
    half-written .pte under the final name.
    """
    if options is None:
        options = ExecuTorchOptions(quantize=quantize)
    elif quantize and not options.quantize:
        raise InvalidInputError("quantize=True conflicts with options.quantize=False")
    if options.quantize and calibration is None:
        raise InvalidInputError("quantize=True needs a calibration set")
    if not options.quantize and calibration is not None:
        raise InvalidInputError("calibration was given but quantize is False")
    example_inputs = _check_inputs(example_inputs)

    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    path = Path(path)
    t0 = time.perf_counter()
    with _eval_mode(model):
        if options.quantize:
            assert calibration is not None
            to_export: nn.Module = quantize_pt2e_xnnpack(
                model, example_inputs, calibration, per_channel=options.per_channel
            )
        else:
            to_export = model
        with _step("running torch.export"):
            exported = torch.export.export(to_export, example_inputs)
    with _step("lowering to XNNPACK"):
        edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
        n_delegates, leftover = _delegation_of(edge.exported_program().graph_module)
    if n_delegates == 0:
        raise BackendError(
            "XNNPACK took no part of the model; the .pte would run on portable kernels only"
        )
    if leftover:
        log.warning(
            "executorch export: %d XNNPACK call(s); ops left on portable kernels: %s",
            n_delegates,
            ", ".join(sorted(set(leftover))),
        )
    with _step("serialising to .pte"):
        buffer = edge.to_executorch().buffer
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buffer)
    os.replace(tmp, path)
    log.info(
        "executorch export: wrote %s (%s, %.1f kB) in %.1f s",
        path,
        "int8" if options.quantize else "fp32",
        len(buffer) / 1e3,
        time.perf_counter() - t0,
    )
    return path


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
