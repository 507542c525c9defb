"""Scripted landmark motion: move a neutral 68-point face (talking, blinks, smiles, head pose).

Used by the demo (an avatar that talks without a camera) and by training, which
warps real photos along these motions into pseudo-videos with exact landmarks.

All offsets are fractions of the face width ``W`` (ear to ear, ``|p16 - p0|``) measured
in the neutral face's own frame (x along the eye line, y perpendicular, pointing down
the face), so the motion looks the same at any resolution and for a slightly tilted
neutral face. Numpy only: the phone runtime can play it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from talkinghead.errors import InvalidInputError
from talkinghead.sdk.rasterize import NUM_LANDMARKS, validate_landmarks

# Largest head angles apply_motion accepts (deg). Past these the flat depth profile
# below stops looking like a head.
MAX_YAW_DEG = 45.0
MAX_PITCH_DEG = 30.0
MAX_ROLL_DEG = 45.0


@dataclass(frozen=True)
class MotionParams:
    """One frame of facial motion relative to the neutral face.

    Attributes:
        jaw_open: 0 closed .. 1 wide open (chin drops ~0.16 face widths).
        smile: 0 neutral .. 1 broad smile (mouth corners out and up).
        blink_left: 0 open .. 1 closed, the subject's left eye (points 42-47, image right).
        blink_right: 0 open .. 1 closed, the subject's right eye (points 36-41, image left).
        brow_raise: -1 frown (brows down) .. 0 neutral .. 1 raised.
        yaw: deg, + turns the face toward image right (nose tip moves right), |yaw| <= 45.
        pitch: deg, + tilts the face up (nose tip moves up), |pitch| <= 30.
        roll: deg, + rotates the face counter-clockwise as seen in the image, |roll| <= 45.
    """

    jaw_open: float = 0.0
    smile: float = 0.0
    blink_left: float = 0.0
    blink_right: float = 0.0
    brow_raise: float = 0.0
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0

    def __post_init__(self) -> None:
        limits = {
            "jaw_open": (0.0, 1.0),
            "smile": (0.0, 1.0),
            "blink_left": (0.0, 1.0),
            "blink_right": (0.0, 1.0),
            "brow_raise": (-1.0, 1.0),
            "yaw": (-MAX_YAW_DEG, MAX_YAW_DEG),
            "pitch": (-MAX_PITCH_DEG, MAX_PITCH_DEG),
            "roll": (-MAX_ROLL_DEG, MAX_ROLL_DEG),
        }
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise InvalidInputError(f"MotionParams.{f.name} must be a number, got {v!r}")
            lo, hi = limits[f.name]
            if not math.isfinite(v) or not lo <= v <= hi:
                raise InvalidInputError(f"MotionParams.{f.name}={v} outside [{lo}, {hi}]")
            object.__setattr__(self, f.name, float(v))

    def as_array(self) -> np.ndarray:
        """``(8,) float32`` in field order."""
        return np.array([getattr(self, f.name) for f in fields(self)], np.float32)


# Approximate depth of each landmark toward the camera, in face widths, measured
# from the head's vertical rotation axis (roughly at the ears). Drives the parallax of
# yaw and pitch: the nose tip moves most, the jaw contour least.
_jaw_a = np.linspace(0.0, math.pi, 17)
DEPTH_68: np.ndarray = np.concatenate(
    [
        # Jaw 0-16: the contour is a silhouette (cheek), not the ear itself, so it sits
        # in front of the ear plane; without that the far brow end would overtake it.
        0.25 + 0.2 * np.sin(_jaw_a) ** 0.7,
        [0.30, 0.38, 0.43, 0.46, 0.47, 0.47, 0.46, 0.43, 0.38, 0.30],  # brows 17-26
        [0.47, 0.52, 0.58, 0.64],  # nose bridge 27-30, tip last
        [0.50, 0.54, 0.57, 0.54, 0.50],  # lower nose 31-35
        [0.33, 0.39, 0.40, 0.40, 0.39, 0.38],  # right eye 36-41
        [0.40, 0.40, 0.39, 0.33, 0.38, 0.39],  # left eye 42-47
        [0.44, 0.50, 0.53, 0.54, 0.53, 0.50, 0.44, 0.49, 0.52, 0.53, 0.52, 0.49],  # outer lips
        [0.45, 0.51, 0.52, 0.51, 0.45, 0.50, 0.51, 0.50],  # inner lips 60-67
    ]
).astype(np.float64)
assert DEPTH_68.shape == (NUM_LANDMARKS,)

# Per-point weights of each expression, (dx, dy) in face widths at full strength.
_JAW_DROP = 0.16
_JAW_WEIGHTS = {4: 0.1, 5: 0.3, 6: 0.6, 7: 0.85, 8: 1.0, 9: 0.85, 10: 0.6, 11: 0.3, 12: 0.1}
# Lips: lower lip rides the jaw; the upper lip lifts a little; corners go half way.
_LIP_JAW_WEIGHTS = {
    48: 0.4, 54: 0.4, 60: 0.4, 64: 0.4,
    49: -0.03, 50: -0.05, 51: -0.05, 52: -0.05, 53: -0.03,
    61: -0.02, 62: -0.03, 63: -0.02,
    55: 0.7, 56: 0.8, 57: 0.82, 58: 0.8, 59: 0.7,
    65: 0.72, 66: 0.75, 67: 0.72,
}  # fmt: skip
# Smile: (outward, upward) in face widths; outward is signed per side below.
_SMILE = {
    48: (0.06, 0.045), 54: (0.06, 0.045), 60: (0.05, 0.035), 64: (0.05, 0.035),
    49: (0.03, 0.02), 53: (0.03, 0.02), 59: (0.03, 0.015), 55: (0.03, 0.015),
    61: (0.02, 0.01), 63: (0.02, 0.01), 67: (0.02, 0.008), 65: (0.02, 0.008),
    50: (0.01, 0.005), 52: (0.01, 0.005), 58: (0.01, 0.0), 56: (0.01, 0.0),
    40: (0.0, 0.006), 41: (0.0, 0.006), 46: (0.0, 0.006), 47: (0.0, 0.006),
}  # fmt: skip
# Blink: (upper lid, lower lid) pairs; they meet 80 % of the way down.
_BLINK_RIGHT = ((37, 41), (38, 40))
_BLINK_LEFT = ((43, 47), (44, 46))
_LID_MEET = 0.8
# Brow raise: upward shift per point at full strength (centre of the brow most).
_BROW_RAISE = 0.07
_BROW_WEIGHTS = np.array([0.7, 0.9, 1.0, 0.95, 0.85, 0.85, 0.95, 1.0, 0.9, 0.7])


def face_frame(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Centre, rotation and width of a face.

    Returns ``(centre (2,), axes (2, 2), width)``: the centre is the mean landmark;
    ``axes`` rows are the face's x axis (right eye -> left eye) and y axis (down the
    face), in image coordinates; ``width`` is ``|p16 - p0|`` in px.
    """
    pts = np.asarray(landmarks, np.float64)
    eye_r = pts[36:42].mean(axis=0)
    eye_l = pts[42:48].mean(axis=0)
    u = eye_l - eye_r
    norm = float(np.hypot(*u))
    width = float(np.hypot(*(pts[16] - pts[0])))
    if norm < 1e-6 or width < 1e-6:
        raise InvalidInputError("degenerate face: eyes or jaw ends coincide")
    u = u / norm
    axes = np.array([u, [-u[1], u[0]]])
    return pts.mean(axis=0), axes, width


def apply_motion(neutral68: np.ndarray, params: MotionParams) -> np.ndarray:
    """Move a neutral face by ``params``.

    Args:
        neutral68: ``(68, 2)`` float, px; a roughly frontal face, mouth closed, eyes open.
        params: the motion.

    Returns:
        ``(68, 2) float32`` px. ``MotionParams()`` returns the input unchanged.
    """
    pts = validate_landmarks(neutral68)
    if not isinstance(params, MotionParams):
        raise InvalidInputError(f"params must be MotionParams, got {type(params).__name__}")
    if params == MotionParams():
        return pts.astype(np.float32)
    centre, axes, width = face_frame(pts)
    local = (pts - centre) @ axes.T / width  # face widths, x right, y down

    d = np.zeros_like(local)
    if params.jaw_open:
        j = params.jaw_open * _JAW_DROP
        for i, w in _JAW_WEIGHTS.items():
            d[i, 1] += j * w
        for i, w in _LIP_JAW_WEIGHTS.items():
            d[i, 1] += j * w
        # The open mouth narrows a little at the corners.
        for i, s in ((48, 1), (60, 1), (54, -1), (64, -1)):
            d[i, 0] += s * 0.1 * j
    if params.smile:
        mid_x = local[[48, 54], 0].mean()
        for i, (out, up) in _SMILE.items():
            side = 1.0 if local[i, 0] > mid_x else -1.0
            d[i, 0] += side * out * params.smile
            d[i, 1] -= up * params.smile
    moved = local + d
    for amount, pairs in ((params.blink_right, _BLINK_RIGHT), (params.blink_left, _BLINK_LEFT)):
        if amount:
            for up, low in pairs:
                meet = moved[up] + _LID_MEET * (moved[low] - moved[up])
                moved[up] += amount * (meet - moved[up])
                moved[low] += amount * (meet - moved[low])
    if params.brow_raise:
        moved[17:27, 1] -= params.brow_raise * _BROW_RAISE * _BROW_WEIGHTS
        if params.brow_raise < 0:  # frowning also draws the inner brows together
            pull = -params.brow_raise * 0.015
            moved[[20, 21], 0] += pull
            moved[[22, 23], 0] -= pull

    moved = _rotate_head(moved, params)
    return (moved * width @ axes + centre).astype(np.float32)


def _rotate_head(local: np.ndarray, params: MotionParams) -> np.ndarray:
    """Yaw and pitch by weak perspective over ``DEPTH_68``, then roll in the image plane."""
    x, y = local[:, 0].copy(), local[:, 1].copy()
    z = DEPTH_68.copy()
    if params.yaw:
        a = math.radians(params.yaw)
        x, z = x * math.cos(a) + z * math.sin(a), z * math.cos(a) - x * math.sin(a)
    if params.pitch:
        a = math.radians(params.pitch)
        # Pivot at the ear line's height so the head nods about the neck, not the nose.
        yp = y - local[[0, 16], 1].mean()
        y = yp * math.cos(a) - z * math.sin(a) + local[[0, 16], 1].mean()
    if params.roll:
        a = math.radians(params.roll)
        x, y = x * math.cos(a) + y * math.sin(a), y * math.cos(a) - x * math.sin(a)
    return np.stack([x, y], axis=1)


def _smooth_noise(n: int, sigma_frames: float, rng: np.random.Generator) -> np.ndarray:
    """Band-limited noise in [-1, 1]: white noise blurred by a Gaussian of ``sigma_frames``."""
    half = max(1, int(3 * sigma_frames))
    k = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma_frames) ** 2)
    noise = rng.standard_normal(n + 2 * half)
    out = np.convolve(noise, k / k.sum(), mode="valid")[:n]
    peak = np.abs(out).max()
    return out / peak if peak > 0 else out


def _bumps(
    n: int, fps: float, rng: np.random.Generator, gap_s: tuple[float, float],
    rise_s: float, hold_s: tuple[float, float], fall_s: float, amp: tuple[float, float],
    start_s: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:  # fmt: skip
    """Isolated smooth pulses (raised-cosine rise, hold, raised-cosine fall) at random gaps."""
    out = np.zeros(n)
    t = np.arange(n) / fps
    start = rng.uniform(*start_s) if start_s[1] > 0 else rng.uniform(*gap_s)
    while start < n / fps:
        hold = rng.uniform(*hold_s)
        a = rng.uniform(*amp)
        rise = np.clip((t - start) / rise_s, 0.0, 1.0)
        fall = np.clip((t - start - rise_s - hold) / fall_s, 0.0, 1.0)
        pulse = a * (0.5 - 0.5 * np.cos(np.pi * rise)) * (0.5 + 0.5 * np.cos(np.pi * fall))
        out = np.maximum(out, pulse)
        start += rise_s + hold + fall_s + rng.uniform(*gap_s)
    return out


def _speech(n: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """Jaw openness while talking: syllables at 3-5 Hz inside phrases, with pauses."""
    # Phrases of 1-3.5 s separated by 0.3-1 s pauses, with soft 0.15 s edges.
    envelope = _bumps(n, fps, rng, gap_s=(0.3, 1.0), rise_s=0.15, hold_s=(1.0, 3.5),
                      fall_s=0.15, amp=(1.0, 1.0), start_s=(0.0, 0.4))  # fmt: skip
    rate_hz = 4.0 + 0.9 * _smooth_noise(n, 0.4 * fps, rng)  # 3.1 .. 4.9 Hz
    phase = 2 * np.pi * np.cumsum(rate_hz) / fps + rng.uniform(0, 2 * np.pi)
    # Each syllable gets its own depth: amplitude changes slowly (per ~syllable).
    depth = 0.45 + 0.25 * _smooth_noise(n, 0.12 * fps, rng)  # 0.2 .. 0.7
    syllable = 0.5 - 0.5 * np.cos(phase)
    return np.clip(envelope * depth * syllable, 0.0, 1.0)


def scripted_motion(
    num_frames: int, fps: float = 25, seed: int | None = None
) -> list[MotionParams]:
    """A natural-looking talking sequence, smooth at ``fps``.

    Talking (jaw at a 3-5 Hz syllable rate in phrases with pauses), blinks every
    2-6 s (~0.3 s each), an occasional smile, brow accents, and small head motion
    (|yaw| <= 15 deg, |pitch| <= 10 deg, |roll| <= 8 deg). Same seed, same sequence.
    """
    if (
        isinstance(num_frames, bool)
        or not isinstance(num_frames, (int, np.integer))
        or num_frames < 1
    ):
        raise InvalidInputError(f"num_frames must be a positive int, got {num_frames!r}")
    fps = float(fps)
    if not math.isfinite(fps) or fps < 1.0:
        raise InvalidInputError(f"fps must be >= 1, got {fps}")
    n = int(num_frames)
    rng = np.random.default_rng(seed)

    jaw = _speech(n, fps, rng)
    blink = _bumps(n, fps, rng, gap_s=(2.0, 6.0), rise_s=0.1, hold_s=(0.0, 0.05),
                   fall_s=0.17, amp=(0.9, 1.0), start_s=(0.3, 2.5))  # fmt: skip
    # Both eyes blink together; one closes a touch less, as real blinks do.
    blink_left = np.clip(blink * rng.uniform(0.95, 1.0), 0.0, 1.0)
    smile = _bumps(n, fps, rng, gap_s=(3.0, 8.0), rise_s=0.4, hold_s=(0.5, 2.5),
                   fall_s=0.5, amp=(0.3, 0.9), start_s=(0.5, 4.0))  # fmt: skip
    brow = 0.15 * _smooth_noise(n, 0.5 * fps, rng) + _bumps(
        n, fps, rng, gap_s=(2.0, 6.0), rise_s=0.2, hold_s=(0.2, 0.8), fall_s=0.3,
        amp=(0.3, 0.7), start_s=(0.5, 3.0),
    )  # fmt: skip
    # Head: slow wandering plus a faster small nod while talking.
    yaw = 15.0 * rng.uniform(0.5, 1.0) * _smooth_noise(n, 0.8 * fps, rng)
    pitch = 7.0 * rng.uniform(0.5, 1.0) * _smooth_noise(n, 0.7 * fps, rng) + 2.0 * _smooth_noise(
        n, 0.15 * fps, rng
    )
    roll = 8.0 * rng.uniform(0.4, 1.0) * _smooth_noise(n, 1.0 * fps, rng)

    return [
        MotionParams(
            jaw_open=float(jaw[i]),
            smile=float(np.clip(smile[i], 0, 1)),
            blink_left=float(blink_left[i]),
            blink_right=float(np.clip(blink[i], 0, 1)),
            brow_raise=float(np.clip(brow[i], -1, 1)),
            yaw=float(np.clip(yaw[i], -15, 15)),
            pitch=float(np.clip(pitch[i], -10, 10)),
            roll=float(np.clip(roll[i], -8, 8)),
        )
        for i in range(n)
    ]


def motion_landmarks(neutral68: np.ndarray, params: list[MotionParams]) -> np.ndarray:
    """Apply each frame of ``params`` to ``neutral68``: ``(T, 68, 2) float32`` px."""
    if len(params) == 0:
        raise InvalidInputError("params is empty")
    return np.stack([apply_motion(neutral68, p) for p in params]).astype(np.float32)


def builtin_motion(
    neutral68: np.ndarray, num_frames: int = 125, fps: float = 25, seed: int = 0
) -> np.ndarray:
    """The demo's default motion: ``scripted_motion`` applied to ``neutral68``.

    Returns ``(num_frames, 68, 2) float32`` px (5 s at 25 fps by default).
    """
    return motion_landmarks(neutral68, scripted_motion(num_frames, fps=fps, seed=seed))


__all__ = [
    "DEPTH_68",
    "MotionParams",
    "apply_motion",
    "builtin_motion",
    "face_frame",
    "motion_landmarks",
    "scripted_motion",
]
