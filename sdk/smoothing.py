"""One Euro filter: low jitter when still, low lag when moving, for any array of values.

The filter (Casiez, Roussel and Vogel, CHI 2012) is a first-order low-pass whose cutoff
rises with the signal's speed:

    cutoff = min_cutoff + beta * |speed|

A still face is smoothed hard (cutoff ``min_cutoff``), so tracker noise vanishes; a fast
motion raises the cutoff, so the output keeps up. Each element of the array has its own
cutoff, so a blinking eye does not unsmooth a still jaw.

Parameters, with the units this project uses:

- ``min_cutoff`` (Hz): cutoff at rest. Lower is smoother and laggier when still.
- ``beta`` (1 / speed unit): how fast the cutoff rises with speed. Higher cuts lag in
  motion. Speed is measured in the caller's units per second divided by ``scale`` (the
  tracker passes the face size, so ``beta`` is in face sizes per second and does not
  depend on the image resolution).
- ``d_cutoff`` (Hz): cutoff of the low-pass on the speed estimate itself.

Timestamps are integer milliseconds and must strictly increase, as in VIDEO mode.

Lips and eyelids (``feature_rows``, for meshes ``FEATURE_MESH_POINTS``) move small and
fast: a syllable or a blink is over in a few frames, and the face's own parameters, tuned
to still a head, cut it down. Those rows rest at ``FEATURE_MIN_CUTOFF_SCALE`` times the
cutoff and estimate their speed ``FEATURE_D_CUTOFF_SCALE`` times faster. Measured on
tracked pseudo-videos of two real photos (``docs/tracking.md``): the tracked mouth
opening keeps r = 0.97 with the raw track (0.83 when lips are smoothed like the head),
blinks 0.95 (0.90), for a still face's jitter of 0.044 px instead of 0.039 (0.133 raw).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from talkinghead.errors import InvalidInputError

from .tracking_types import next_timestamp

FEATURE_MIN_CUTOFF_SCALE = 2.0  # lips' and eyelids' rest cutoff, times min_cutoff
FEATURE_D_CUTOFF_SCALE = 8.0  # their speed estimate's cutoff, times d_cutoff


@dataclass(frozen=True)
class OneEuroParams:
    """Parameters of :class:`OneEuroFilter` (see the module docstring for units).

    The defaults were chosen on tracked frames of the astronaut photo (512 px, 30 fps,
    ``num_faces=2`` so MediaPipe does not smooth): they cut the jitter of a still face to a
    third (0.145 -> 0.051 px std), keep 83 % of the amplitude of a 4 Hz lip motion and lag
    0.5 px behind a face sliding at 60 px/s. ``beta=10`` smooths more (0.045 px) but keeps
    57 % of that lip motion; see docs/tracking.md for the table.
    """

    min_cutoff: float = 1.0
    beta: float = 30.0
    d_cutoff: float = 1.0

    def __post_init__(self) -> None:
        for name in ("min_cutoff", "beta", "d_cutoff"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise InvalidInputError(f"OneEuroParams.{name} must be a number, got {v!r}")
            if not math.isfinite(v) or v < 0 or (name != "beta" and v == 0):
                raise InvalidInputError(
                    f"OneEuroParams.{name} must be finite and "
                    f"{'>= 0' if name == 'beta' else '> 0'}, got {v}"
                )


def _alpha(cutoff_hz: np.ndarray | float, dt_s: float) -> np.ndarray | float:
    """Smoothing factor of an exponential low-pass with this cutoff at this sample spacing."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff_hz, np.float64))
    return 1.0 / (1.0 + tau / dt_s)


class OneEuroFilter:
    """One Euro filter over an array of any fixed shape, elementwise.

        f = OneEuroFilter(OneEuroParams(min_cutoff=1.0, beta=30.0))
        smooth = f(points, timestamp_ms)       # points: (N, 2) float, any units

    The first call returns its input unchanged. :meth:`reset` forgets the past.
    ``feature_rows`` (indices into the first axis, e.g. ``FEATURE_MESH_POINTS`` of a mesh)
    get the higher cutoffs of lips and eyelids (see the module docstring).
    """

    def __init__(
        self, params: OneEuroParams | None = None, feature_rows: tuple[int, ...] = ()
    ) -> None:
        params = OneEuroParams() if params is None else params
        if not isinstance(params, OneEuroParams):
            raise InvalidInputError(f"params must be OneEuroParams, got {type(params).__name__}")
        self.params = params
        self.feature_rows = tuple(int(i) for i in feature_rows)
        self.reset()

    def _cutoffs(self, shape: tuple[int, ...]) -> tuple[np.ndarray | float, np.ndarray | float]:
        """Rest and speed cutoffs (Hz), per element where some rows are features."""
        p = self.params
        if not self.feature_rows:
            return p.min_cutoff, p.d_cutoff
        if not shape or max(self.feature_rows) >= shape[0]:
            raise InvalidInputError(
                f"feature rows up to {max(self.feature_rows)} need an array of more rows, "
                f"got shape {shape}"
            )
        rows = (shape[0],) + (1,) * (len(shape) - 1)
        min_cutoff = np.full(rows, p.min_cutoff)
        d_cutoff = np.full(rows, p.d_cutoff)
        min_cutoff[list(self.feature_rows)] *= FEATURE_MIN_CUTOFF_SCALE
        d_cutoff[list(self.feature_rows)] *= FEATURE_D_CUTOFF_SCALE
        return min_cutoff, d_cutoff

    def reset(self) -> None:
        """Forget the past: the next call starts a new signal."""
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t_ms: int | None = None

    @property
    def last_timestamp_ms(self) -> int | None:
        return self._t_ms

    def __call__(self, x: np.ndarray, timestamp_ms: int, scale: float = 1.0) -> np.ndarray:
        """Filter one sample.

        Args:
            x: array of any shape (fixed across calls), finite.
            timestamp_ms: strictly greater than the previous call's.
            scale: speeds are divided by this before ``beta`` applies (e.g. face size, px).

        Returns:
            float64 array of the shape of ``x``.

        Raises:
            InvalidInputError: NaN/inf values, a changed shape, or a bad ``scale``.
            TimestampError: ``timestamp_ms`` did not increase.
        """
        arr = np.asarray(x, dtype=np.float64)
        if not np.isfinite(arr).all():
            raise InvalidInputError("OneEuroFilter input contains NaN or infinite values")
        if not (isinstance(scale, (int, float, np.number)) and math.isfinite(scale) and scale > 0):
            raise InvalidInputError(f"scale must be a positive finite number, got {scale!r}")
        if self._x is not None and arr.shape != self._x.shape:
            raise InvalidInputError(
                f"OneEuroFilter input shape changed from {self._x.shape} to {arr.shape}"
            )
        t = next_timestamp(timestamp_ms, self._t_ms)
        min_cutoff, d_cutoff = self._cutoffs(arr.shape)
        if self._x is None or self._t_ms is None:  # the first sample (both are set together)
            self._x, self._dx, self._t_ms = arr.copy(), np.zeros_like(arr), t
            return arr.copy()
        dt = (t - self._t_ms) / 1000.0
        dx = (arr - self._x) / dt
        self._dx = self._dx + _alpha(d_cutoff, dt) * (dx - self._dx)
        cutoff = min_cutoff + self.params.beta * np.abs(self._dx) / float(scale)
        self._x = self._x + _alpha(cutoff, dt) * (arr - self._x)
        self._t_ms = t
        return self._x.copy()


def smooth_recorded(
    values: np.ndarray,
    timestamps_ms: np.ndarray,
    params: OneEuroParams | None = None,
    feature_rows: tuple[int, ...] = (),
    scales: np.ndarray | None = None,
) -> np.ndarray:
    """Zero-lag One Euro smoothing of a recorded signal: the mean of a forward pass and a
    backward pass (time reversed), so the two passes' lags cancel.

    A live driver can only look back, and its filter lags; a recorded video is known
    whole. Measured on tracked pseudo-videos of two real photos: the mouth opening keeps
    r = 0.995 with the raw track (0.97 causal), and a still face jitters 0.039 px (0.045
    causal).

    Args:
        values: ``(T, ...)`` finite, one sample per frame.
        timestamps_ms: ``(T,)`` strictly increasing.
        params, feature_rows: as :class:`OneEuroFilter` (rows index ``values``' second axis).
        scales: ``(T,)`` the ``scale`` of each sample (e.g. face size, px), or None for 1.

    Returns:
        float64 array of the shape of ``values``.
    """
    arr = np.asarray(values, np.float64)
    ts = np.asarray(timestamps_ms)
    if arr.ndim < 1 or ts.shape != arr.shape[:1]:
        raise InvalidInputError(
            f"values {arr.shape} and timestamps {ts.shape} must have one sample per frame"
        )
    if len(arr) and np.any(np.diff(ts) <= 0):
        raise InvalidInputError("timestamps_ms must strictly increase")
    sc = np.ones(len(arr)) if scales is None else np.asarray(scales, np.float64)
    if sc.shape != ts.shape:
        raise InvalidInputError(f"scales {sc.shape} must be one per frame {ts.shape}")
    reverse_ts = ts[-1] - ts[::-1] if len(ts) else ts  # increasing, same spacings reversed

    def one_pass(x: np.ndarray, t: np.ndarray, s: np.ndarray) -> np.ndarray:
        f = OneEuroFilter(params, feature_rows)
        return np.stack([f(v, int(ti), scale=float(si)) for v, ti, si in zip(x, t, s, strict=True)])

    if not len(arr):
        return arr.copy()
    forward = one_pass(arr, ts, sc)
    backward = one_pass(arr[::-1], reverse_ts, sc[::-1])[::-1]
    return (forward + backward) / 2


__all__ = [
    "FEATURE_D_CUTOFF_SCALE",
    "FEATURE_MIN_CUTOFF_SCALE",
    "OneEuroFilter",
    "OneEuroParams",
    "smooth_recorded",
]
