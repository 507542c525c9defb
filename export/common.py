"""Helpers every exporter shares: step logging with typed errors, eval mode, input checks, atomic writes.

Exporters take a model whose input is a rasterised landmark image ``(1, 3, S, S) float32``
in [-1, 1] and whose output is a face image of the same shape and range.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from talkinghead.errors import BackendError, InvalidInputError

log = logging.getLogger("talkinghead.export")


@contextmanager
def export_step(runtime: str, name: str) -> Iterator[None]:
    """Log a step's duration; wrap whatever it raises in a BackendError naming runtime and step."""
    log.info("%s export: %s ...", runtime, name)
    t0 = time.perf_counter()
    try:
        yield
    except (InvalidInputError, BackendError):
        raise
    except Exception as e:  # converters raise many unrelated types
        raise BackendError(f"{runtime} export failed while {name}: {type(e).__name__}: {e}") from e
    log.info("%s export: %s done in %.0f ms", runtime, name, (time.perf_counter() - t0) * 1e3)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Trace in eval mode (BatchNorm running stats, no dropout), then restore the caller's mode."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def check_inputs(example_inputs: object, what: str = "example_inputs") -> tuple[torch.Tensor, ...]:
    """A non-empty tuple of tensors, or InvalidInputError naming what is wrong."""
    if not isinstance(example_inputs, tuple) or not example_inputs:
        raise InvalidInputError(
            f"{what} must be a non-empty tuple of tensors, got {type(example_inputs).__name__}"
        )
    for i, t in enumerate(example_inputs):
        if not isinstance(t, torch.Tensor):
            raise InvalidInputError(f"{what}[{i}] must be a torch.Tensor, got {type(t).__name__}")
    return example_inputs


def check_quantize_args(quantize: bool, calibration: Iterable | None) -> None:
    """int8 needs calibration; fp32 must not get any (a silent no-op would hide a caller's mistake)."""
    if quantize and calibration is None:
        raise InvalidInputError("quantize=True needs a calibration set")
    if not quantize and calibration is not None:
        raise InvalidInputError("calibration was given but quantize is False")


def calibration_batches(
    calibration: Iterable[tuple[torch.Tensor, ...]],
) -> list[tuple[torch.Tensor, ...]]:
    """Materialise and check calibration batches; InvalidInputError when there are none."""
    batches = [check_inputs(b, f"calibration[{i}]") for i, b in enumerate(calibration)]
    if not batches:
        raise InvalidInputError(
            "calibration is empty: int8 PTQ needs at least one batch of representative inputs"
        )
    return batches


def check_model_name(model_name: str) -> str:
    if not isinstance(model_name, str) or not model_name or "/" in model_name or "\\" in model_name:
        raise InvalidInputError(f"model_name must be a plain, non-empty name, got {model_name!r}")
    return model_name


def atomic_write(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write via a temporary name and rename, so a crash never leaves a half-written model file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path
