"""One Euro filter: exact first steps, noise reduction, lag, vectorisation, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from talkinghead.errors import InvalidInputError, TimestampError
from talkinghead.sdk.smoothing import OneEuroFilter, OneEuroParams


def _run(params: OneEuroParams, xs: np.ndarray, dt_ms: int = 33, scale: float = 1.0):
    f = OneEuroFilter(params)
    return np.stack([f(x, i * dt_ms, scale=scale) for i, x in enumerate(xs)])


def _alpha(cutoff_hz: float, dt_s: float) -> float:
    tau = 1 / (2 * math.pi * cutoff_hz)
    return 1 / (1 + tau / dt_s)


def test_first_two_steps_by_hand() -> None:
    p = OneEuroParams(min_cutoff=1.5, beta=0.2, d_cutoff=2.0)
    f = OneEuroFilter(p)
    np.testing.assert_array_equal(f(np.array([10.0]), 0), [10.0])  # first sample passes
    dt = 0.04
    speed = _alpha(2.0, dt) * (14.0 - 10.0) / dt  # low-passed from a zero start
    expected = 10.0 + _alpha(1.5 + 0.2 * speed, dt) * 4.0
    np.testing.assert_allclose(f(np.array([14.0]), 40), [expected], rtol=1e-12)


def test_constant_signal_stays_constant() -> None:
    xs = np.full((20, 5, 2), 3.25)
    np.testing.assert_allclose(_run(OneEuroParams(), xs), xs)


def test_noise_is_reduced_and_ramp_is_followed() -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(0.0, 0.15, (120, 68, 2))
    # 0.15 px noise (what the tracker shows on a still face) on a 100 px face.
    out = _run(OneEuroParams(), noise, scale=100.0)
    assert out[20:].std() < 0.5 * noise[20:].std()

    # A ramp at 30 units/s: higher beta means less lag, and both track it (no drift).
    ramp = np.arange(120, dtype=np.float64)[:, None] * 1.0  # 1 unit per 33 ms frame
    slow = _run(OneEuroParams(beta=0.0), ramp)
    fast = _run(OneEuroParams(beta=1.0), ramp)
    lag_slow = float((ramp - slow)[60:].mean())
    lag_fast = float((ramp - fast)[60:].mean())
    assert 0 < lag_fast < 0.5 * lag_slow
    assert lag_slow < 10.0  # steady lag, not growing


def test_scale_makes_beta_unit_free() -> None:
    # The same motion in units 10x larger, with scale 10x larger, filters identically.
    ramp = np.cumsum(np.random.default_rng(1).normal(1.0, 0.5, (50, 3)), axis=0)
    a = _run(OneEuroParams(beta=2.0), ramp, scale=1.0)
    b = _run(OneEuroParams(beta=2.0), ramp * 10.0, scale=10.0)
    np.testing.assert_allclose(b, a * 10.0, rtol=1e-9)


def test_each_element_has_its_own_cutoff() -> None:
    rng = np.random.default_rng(2)
    xs = np.cumsum(rng.normal(0, 3, (40, 4)), axis=0)
    together = _run(OneEuroParams(beta=0.5), xs)
    for j in range(4):
        alone = _run(OneEuroParams(beta=0.5), xs[:, j : j + 1])
        np.testing.assert_allclose(together[:, j : j + 1], alone, rtol=1e-12)


def test_feature_rows_follow_a_syllable_and_match_scaled_params() -> None:
    from talkinghead.sdk.smoothing import FEATURE_D_CUTOFF_SCALE, FEATURE_MIN_CUTOFF_SCALE

    # A 4 Hz lip motion of 3 % of a 100 px face, with the tracker's 0.15 px noise.
    t = np.arange(90) / 30.0
    rng = np.random.default_rng(3)
    lip = 3.0 * np.sin(2 * np.pi * 4.0 * t)[:, None, None] + rng.normal(0, 0.15, (90, 1, 2))
    xs = np.concatenate([lip, lip], axis=1)  # row 0 a feature, row 1 not
    f = OneEuroFilter(OneEuroParams(), feature_rows=(0,))
    out = np.stack([f(x, i * 33, scale=100.0) for i, x in enumerate(xs)])
    clean = 3.0 * np.sin(2 * np.pi * 4.0 * t)
    r_feature = np.corrcoef(out[20:, 0, 0], clean[20:])[0, 1]
    r_face = np.corrcoef(out[20:, 1, 0], clean[20:])[0, 1]
    assert r_feature > 0.95 > r_face
    # A feature row is the plain filter with the scaled cutoffs, element for element.
    p = OneEuroParams()
    scaled = OneEuroParams(
        p.min_cutoff * FEATURE_MIN_CUTOFF_SCALE, p.beta, p.d_cutoff * FEATURE_D_CUTOFF_SCALE
    )
    np.testing.assert_allclose(out[:, 0], _run(scaled, xs[:, 0], scale=100.0), rtol=1e-12)
    np.testing.assert_allclose(out[:, 1], _run(p, xs[:, 1], scale=100.0), rtol=1e-12)
    with pytest.raises(InvalidInputError, match="feature rows"):
        OneEuroFilter(p, feature_rows=(5,))(np.zeros((3, 2)), 0)


def test_reset_forgets() -> None:
    f = OneEuroFilter()
    f(np.zeros(3), 0)
    f(np.zeros(3), 33)
    f.reset()
    np.testing.assert_array_equal(f(np.full(3, 7.0), 10), np.full(3, 7.0))  # earlier t is fine


def test_bad_input_raises() -> None:
    f = OneEuroFilter()
    f(np.zeros((68, 2)), 100)
    with pytest.raises(TimestampError, match="100"):
        f(np.zeros((68, 2)), 50)  # backwards
    with pytest.raises(TimestampError):
        f(np.zeros((68, 2)), 100)  # repeated
    nan = np.zeros((68, 2))
    nan[3, 1] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        f(nan, 200)
    with pytest.raises(InvalidInputError, match="shape"):
        f(np.zeros((67, 2)), 200)
    with pytest.raises(InvalidInputError, match="scale"):
        f(np.zeros((68, 2)), 200, scale=0.0)
    with pytest.raises(InvalidInputError, match="int"):
        f(np.zeros((68, 2)), 200.5)
    # The failures above left the filter usable.
    assert f(np.zeros((68, 2)), 200).shape == (68, 2)
    with pytest.raises(InvalidInputError, match="OneEuroParams"):
        OneEuroFilter({"beta": 1.0})


@pytest.mark.parametrize(
    "kwargs",
    [{"min_cutoff": 0.0}, {"min_cutoff": -1.0}, {"beta": -0.1}, {"d_cutoff": float("nan")},
     {"beta": True}, {"min_cutoff": "1"}],
)  # fmt: skip
def test_bad_params_raise(kwargs) -> None:
    with pytest.raises(InvalidInputError, match=next(iter(kwargs))):
        OneEuroParams(**kwargs)


def test_recorded_smoothing_has_no_lag() -> None:
    from talkinghead.sdk.smoothing import smooth_recorded

    # A 3 Hz lip motion of 3 % of a 100 px face, with noise: the causal filter lags it
    # (its phase trails), the recorded one does not.
    t_ms = np.arange(120) * 33
    w = 2 * np.pi * 3.0 * t_ms / 1000.0
    clean = 3.0 * np.sin(w)
    noisy = (clean + np.random.default_rng(4).normal(0, 0.15, clean.shape))[:, None]
    causal = _run(OneEuroParams(), noisy, scale=100.0)[:, 0]
    scales = np.full(len(t_ms), 100.0)
    recorded = smooth_recorded(noisy, t_ms, scales=scales)[:, 0]

    def phase_lag_rad(x: np.ndarray) -> float:
        core = slice(15, -15)
        return float(
            -np.arctan2(np.dot(x[core], np.cos(w[core])), np.dot(x[core], np.sin(w[core])))
        )

    assert phase_lag_rad(causal) > 0.2 and abs(phase_lag_rad(recorded)) < 0.05
    assert np.abs(recorded - clean)[15:-15].mean() < np.abs(causal - clean)[15:-15].mean()
    # It is the mean of the forward pass and the time-reversed backward pass.
    backward = _run(OneEuroParams(), noisy[::-1], scale=100.0)[::-1, 0]
    np.testing.assert_allclose(recorded, (causal + backward) / 2, rtol=1e-12)
    with pytest.raises(InvalidInputError, match="increase"):
        smooth_recorded(noisy, t_ms[::-1])
    with pytest.raises(InvalidInputError, match="one sample per frame"):
        smooth_recorded(noisy, t_ms[:5])
