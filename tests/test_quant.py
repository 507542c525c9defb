"""Int8 for students: calibration checks, PTQ, QAT (torchao PT2E), and the int8 fix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from talkinghead.distill.distill import landmark_images
from talkinghead.distill.quant import (
    calibration_from_sequences,
    check_calibration,
    prepare_qat,
    ptq,
    qat,
)
from talkinghead.errors import InvalidInputError, NoFaceError
from talkinghead.models.student import create_student
from talkinghead.sdk.motion import builtin_motion
from talkinghead.train.pseudo_video import ASTRONAUT_LANDMARKS_68

S = 32


def _neutral(s: int = S) -> np.ndarray:
    lm = ASTRONAUT_LANDMARKS_68 - ASTRONAUT_LANDMARKS_68.min(0)
    return (lm * (0.7 * s / lm.max()) + 0.15 * s).astype(np.float32)


@pytest.fixture(scope="module")
def calib() -> torch.Tensor:
    return landmark_images(builtin_motion(_neutral(), 8, seed=1), S)


@pytest.fixture(scope="module")
def student():
    torch.manual_seed(0)
    return create_student("student-xs", resolution=S).eval()


def test_blank_calibration_set_is_no_face_error(student):
    blank = -torch.ones(4, 3, S, S)
    with pytest.raises(NoFaceError, match="calibration"):
        check_calibration(blank, S)
    with pytest.raises(NoFaceError):
        ptq(student, blank)
    with pytest.raises(NoFaceError):
        calibration_from_sequences(_neutral(), [], S)


def test_calibration_at_another_resolution_is_invalid_input(student, calib):
    with pytest.raises(InvalidInputError, match="px"):
        ptq(student, landmark_images(builtin_motion(_neutral(64), 2, seed=1), 64))
    with pytest.raises(InvalidInputError):
        check_calibration(torch.zeros(3, S, S), S)


def test_quantizing_a_training_form_student_is_refused(calib):
    with pytest.raises(InvalidInputError, match="fold"):
        ptq(create_student("student-xs", resolution=S, norm=True).eval(), calib)


@pytest.mark.slow  # quantization-aware training
def test_qat_graph_has_fake_quant_and_learns(student, calib):
    from torchao.quantization.pt2e.fake_quantize import FakeQuantizeBase

    prepared = prepare_qat(student)
    fq = [m for m in prepared.modules() if isinstance(m, FakeQuantizeBase)]
    assert len(fq) >= 10, "every conv's weight and activation needs fake-quant"
    with torch.no_grad():
        y = torch.tanh(3 * calib.mean(1, keepdim=True)).expand(-1, 3, -1, -1).contiguous()
        before = float((student(calib) - y).abs().mean())
    q = qat(student, calib, y, steps=5, lr=1e-2, batch_size=4, progress=False)
    with torch.no_grad():
        after = float(torch.cat([q(x[None]) for x in calib]).sub(y).abs().mean())
    assert after < before, f"QAT did not move towards the targets: {before:.3f} -> {after:.3f}"


def test_tracker_on_frames_without_a_face_is_no_face_error(face_landmarker_task):
    from talkinghead.distill.motion import track_sequences

    grey = np.full((1, 2, 64, 64, 3), 128, np.uint8)
    with pytest.raises(NoFaceError):
        track_sequences(grey, tracker_model=str(face_landmarker_task))


def test_tracked_sequences_of_a_real_face(face_landmarker_task):
    from skimage import data

    from talkinghead.distill.motion import pseudo_videos, track_sequences, tracked_landmarks
    from talkinghead.sdk.photos import track_and_crop

    crop, neutral = track_and_crop(data.astronaut(), 128)
    videos = pseudo_videos(crop, neutral, 1, 3, seed=0)
    (seq,) = track_sequences(videos, tracker_model=str(face_landmarker_task))
    assert seq.shape == (3, 68, 2)
    # The tracker's landmarks sit where the pseudo-video put the face (within a few px).
    assert np.abs(seq[0] - neutral).mean() < 4.0
    moved = tracked_landmarks(neutral, [seq])
    np.testing.assert_allclose(moved[0], neutral, atol=1e-3)  # first frame maps onto neutral


@pytest.mark.slow  # quantizes and exports
def test_ptq_keeps_the_stem_in_float_and_the_rest_in_int8(student, calib):
    """The stem reads the raw landmark image in fp32; every later conv reads int8 (dequantized)."""

    def conv_inputs(gm) -> list[str]:
        convs = [n for n in gm.graph.nodes if n.op == "call_function" and "conv2d" in str(n.target)]
        return [
            str(c.args[0].target) if c.args[0].op == "call_function" else c.args[0].op
            for c in convs
        ]

    mixed, full = conv_inputs(ptq(student, calib)), conv_inputs(ptq(student, calib, keep_float=()))
    assert mixed[0] == "placeholder" and "dequantize" in full[0]
    assert all("dequantize" in i for i in mixed[1:]) and len(mixed) == len(full)
