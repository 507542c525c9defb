"""Int8 for students: calibration sets of tracked motion, PTQ, and quantization-aware training.

PTQ is the project's one PT2E flow (:func:`talkinghead.export.executorch.quantize_pt2e_xnnpack`:
XNNPACK quantizer, per-channel symmetric weights, per-tensor static activations). What
this module adds:

- a calibration set built from tracked landmark sequences (what a phone will feed), checked
  to hold faces;
- QAT: ``prepare_qat_pt2e`` with the same quantizer, a short fine-tune against the teacher's
  frames with fake-quant in the loop, then ``convert_pt2e``. The converted module exports to
  an int8 ``.pte`` exactly like a PTQ one;
- PSNR of int8 against fp32 (the figure the report and the pack's parity use).

Why int8 students lost precision (26.9 dB int8 vs fp32 before; docs/distillation.md has the
numbers): without normalisation the activations of a trained student grow layer by layer to
hundreds, with per-channel ranges far apart, while int8 activations share one scale per
tensor; and a tanh output makes the last convolution's range span [-40, 2] for saturated
background pixels. Students now train with BatchNorm (folded away for export) and a clamp
output whose pre-activation is held near [-1, 1].
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from talkinghead.distill.losses import pixel_loss
from talkinghead.errors import InvalidInputError, NoFaceError
from talkinghead.export.common import check_inputs
from talkinghead.export.executorch import quantize_pt2e_xnnpack, xnnpack_quantizer
from talkinghead.models.student import StudentGenerator
from talkinghead.sdk.parity import psnr_db

log = logging.getLogger(__name__)


def check_calibration(inputs: torch.Tensor, resolution: int) -> torch.Tensor:
    """Calibration landmark images (N, 3, S, S) in [-1, 1], checked before any export.

    NoFaceError when no image has a drawn face (all background), since int8 ranges set on
    blank input would clip every real frame; InvalidInputError for a wrong shape or size.
    """
    if not isinstance(inputs, torch.Tensor) or inputs.ndim != 4 or inputs.shape[1] != 3:
        shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        raise InvalidInputError(f"calibration must be (N, 3, S, S) landmark images, got {shape}")
    if len(inputs) == 0:
        raise InvalidInputError("calibration set is empty")
    if inputs.shape[-2:] != (resolution, resolution):
        raise InvalidInputError(
            f"calibration images are {inputs.shape[-1]} px but the student works at {resolution} px"
        )
    drawn = (inputs > -0.99).flatten(1).any(dim=1)
    if not bool(drawn.any()):
        raise NoFaceError(f"none of the {len(inputs)} calibration images shows a face (all blank)")
    if not bool(drawn.all()):
        log.warning(
            "%d of %d calibration images are blank; dropped", int((~drawn).sum()), len(inputs)
        )
    return inputs[drawn]


# The stem sees the sparse landmark drawing; its int8 error spreads through every later
# layer (PTQ of a trained student-xs: 31.3 dB int8 vs fp32 with it, 35.4 dB without it). In
# fp32 it costs 27 MACs per output value of a 3-channel input: about 10% of student-xs.
FLOAT_LAYERS = ("stem",)


def ptq(
    student: StudentGenerator,
    calibration: torch.Tensor,
    per_channel: bool = True,
    keep_float: tuple[str, ...] = FLOAT_LAYERS,
) -> torch.fx.GraphModule:
    """Post-training int8 of a deployable student; calibration (N, 3, S, S) landmark images.

    keep_float: layers left in fp32 (inside the same XNNPACK delegate)."""
    _check_deployable(student)
    calibration = check_calibration(calibration, student.cfg.resolution)
    batches = [(x[None],) for x in calibration]
    q = quantize_pt2e_xnnpack(
        student, student.get_example_inputs(), batches, per_channel=per_channel,
        keep_float=keep_float,
    )  # fmt: skip
    return _exportable(q)


def prepare_qat(student: StudentGenerator, per_channel: bool = True) -> torch.fx.GraphModule:
    """The student's graph with fake-quant (observer + rounding) at every int8 point, trainable."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    _check_deployable(student)
    (x,) = check_inputs(student.get_example_inputs())
    # A dynamic batch (traced at 2: a 1 would specialise): training runs batches, and the
    # exported .pte later re-traces with batch 1.
    example, dynamic = (x.expand(2, -1, -1, -1).clone(),), ({0: torch.export.Dim.DYNAMIC},)
    captured = torch.export.export(
        copy.deepcopy(student).train(), example, dynamic_shapes=dynamic
    ).module()
    return prepare_qat_pt2e(captured, xnnpack_quantizer(per_channel=per_channel, qat=True))


def qat(
    student: StudentGenerator,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    steps: int = 200,
    lr: float = 1e-4,
    batch_size: int = 8,
    w_grad: float = 1.0,
    seed: int = 0,
    progress: bool = True,
) -> torch.fx.GraphModule:
    """Quantization-aware fine-tuning: returns the converted int8 module (as PTQ does).

    inputs, targets: (N, 3, S, S) landmark images and the teacher's frames for them. The
    first batches also calibrate the observers; the observers then freeze halfway, so the
    last steps train against fixed int8 ranges.
    """
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    if steps < 1 or batch_size < 1 or lr <= 0:
        raise InvalidInputError("steps, batch_size and lr must be positive")
    inputs = check_calibration(inputs, student.cfg.resolution)
    if targets.shape != inputs.shape:
        raise InvalidInputError(
            f"targets {tuple(targets.shape)} do not match inputs {tuple(inputs.shape)}"
        )
    model = prepare_qat(student)
    with torch.no_grad():  # the observers' first ranges come from the whole set, not one batch
        model(inputs)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for step in tqdm(range(steps), desc="QAT", disable=not progress):
        if step == steps // 2:
            model.apply(torch.ao.quantization.disable_observer)
        idx = torch.randint(0, len(inputs), (batch_size,), generator=gen)
        loss = pixel_loss(model(inputs[idx]), targets[idx], w_grad)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return _exportable(move_exported_model_to_eval(convert_pt2e(model)))


def _exportable(model: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Let ``.eval()`` work on a converted module (export_executorch calls it) without
    changing what it computes."""
    from torchao.quantization.pt2e import allow_exported_model_train_eval

    return allow_exported_model_train_eval(model)


@torch.no_grad()
def int8_psnr_db(int8: torch.nn.Module, fp32: torch.nn.Module, inputs: torch.Tensor) -> float:
    """PSNR of the int8 module's frames against the fp32 student's, inputs (N, 3, S, S)."""
    a = np.concatenate([int8(x[None]).numpy() for x in inputs])
    b = np.concatenate([fp32(x[None]).numpy() for x in inputs])
    return float(min(psnr_db(a, b), 100.0))


def _check_deployable(student: StudentGenerator) -> None:
    if not isinstance(student, StudentGenerator):
        raise InvalidInputError(f"expected a StudentGenerator, got {type(student).__name__}")
    if student.cfg.norm or student.universal:
        raise InvalidInputError(
            "quantize the deployable student: fold_student(model[, e]) first "
            f"({student.cfg.name} still has norms or takes e)"
        )


def calibration_from_sequences(
    neutral68: np.ndarray, sequences: Sequence[np.ndarray], resolution: int, frames: int = 64
) -> torch.Tensor:
    """Landmark images of tracked sequences moved onto ``neutral68``, evenly subsampled to
    at most ``frames``: (N, 3, S, S)."""
    from talkinghead.distill.distill import landmark_images
    from talkinghead.distill.motion import tracked_landmarks

    if not sequences:
        raise NoFaceError("no tracked sequences: the calibration set would hold no faces")
    lms = tracked_landmarks(neutral68, list(sequences))
    pick = np.linspace(0, len(lms) - 1, min(frames, len(lms))).round().astype(int)
    return check_calibration(landmark_images(lms[pick], resolution), resolution)


def int8_for_student(
    student: StudentGenerator,
    calibration: torch.Tensor,
    teacher: torch.nn.Module | None = None,
    qat_inputs: torch.Tensor | None = None,
    qat_steps: int = 0,
    target_db: float = 35.0,
    progress: bool = True,
) -> tuple[torch.fx.GraphModule, dict]:
    """PTQ, then QAT when PTQ stays under ``target_db`` (int8 vs fp32) and ``qat_steps`` > 0.

    calibration: (N, 3, S, S) landmark images (tracked motion); also the set the PSNR is
    measured on. QAT trains on ``qat_inputs`` (default: the calibration images) against the
    teacher's frames. Returns the better int8 module and its figures.
    """
    int8 = ptq(student, calibration)
    figures = {"ptq_psnr_vs_fp32_db": int8_psnr_db(int8, student, calibration), "int8": "ptq"}
    if figures["ptq_psnr_vs_fp32_db"] >= target_db or qat_steps <= 0:
        return int8, figures
    if teacher is None:
        raise InvalidInputError("QAT needs the teacher whose frames the student learns")
    x = calibration if qat_inputs is None else qat_inputs
    with torch.no_grad():
        y = torch.cat([teacher(x[i : i + 16]) for i in range(0, len(x), 16)])
    q = qat(student, x, y, steps=qat_steps, progress=progress)
    figures["qat_psnr_vs_fp32_db"] = int8_psnr_db(q, student, calibration)
    if figures["qat_psnr_vs_fp32_db"] > figures["ptq_psnr_vs_fp32_db"]:
        int8, figures["int8"] = q, "qat"
    return int8, figures
