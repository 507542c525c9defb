"""An invisible, blind watermark that marks rendered frames as synthetic.

    mark = Watermark(Payload(pack_id=0xA1B2C3, version=sdk_version_code("0.1.0")))
    marked = mark.embed(frame)                 # (H, W, 3) uint8 -> same shape, PSNR >= 40 dB
    result = detect(marked)                    # WatermarkResult(marked=True, payload=..., score=...)

Design (docs/provenance.md has the measured figures):
- Payload: 32 bits (24-bit pack id, 8-bit SDK version) + CRC-16 = 48 bits, convolutionally
  encoded (rate 1/2, constraint length 7, 6 tail bits) into 108 coded bits.
- Each coded bit is spread over 8-12 chips of a 32 x 32 chip grid laid over the whole frame in
  normalised coordinates, so the mark scales with the frame: a 256 px frame has 8 px chips, a
  128 px frame 4 px chips, and after a 0.5x resize they are still 2 px. The grid is one
  16 x 16 chip tile repeated 2 x 2, so any crop of at least half the frame holds every chip.
  Chips are flat squares added to the luma only, with per-bit amplitudes chosen against the
  frame (informed embedding).
- Detection is blind to geometry: for each hypothesis of the frame's size and rotation (crops,
  +-10 degrees, rescaling) it resamples the image into frame coordinates at 64 px per frame
  side, keeps the detail (luma minus its blur) weighted by 1 / local energy, folds it onto one
  tile, and finds the shift by circular correlation (FFT) with the 108 tile templates. Many
  candidate shifts are screened by decoding them; the best are Viterbi-decoded around, and
  list-decoded when no single path passes, and the CRC picks the word. The score is the
  normalised correlation of the soft bits with the re-encoded codeword; a frame counts as
  marked when the CRC holds, the score clears a floor and, for a word the search found, it
  decodes at two alignments or more.

The key (chip assignment and signs) is public by design: anyone can verify a frame. That also
means the mark can be removed or forged by someone who reads this file; it tells honest
software that a frame is synthetic, it does not prove where a frame came from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from talkinghead.errors import InvalidInputError

GRID = 32  # chips per side, in normalised frame coordinates
TILE = 16  # chips per side of the tile that repeats 2 x 2 over the frame
CANON = 64  # the detector's working resolution (px per side)
PAYLOAD_BITS = 32
CRC_BITS = 16
INFO_BITS = PAYLOAD_BITS + CRC_BITS
CONSTRAINT = 7  # convolutional code constraint length
GENERATORS = (0o133, 0o171)  # rate 1/2, free distance 10
CODED_BITS = (INFO_BITS + CONSTRAINT - 1) * len(GENERATORS)
STRENGTH = 2.45  # RMS luma change in grey levels: PSNR 40.3 dB (rounding held to >= 40.05 dB)
_ROUNDING_SLACK = 1.02  # 2.45 * 1.02 grey levels RMS is PSNR 40.05 dB
AMP_BASE, AMP_MAX = 1.0, 2.0  # informed embedding: per-bit amplitude before scaling, and cap
# The CRC is what keeps unmarked images out; the score floors only drop the weakest decodes.
# Unmarked images' best decodes score 0.6-0.74; marked ones after crops or H.264 0.65-0.9.
SCORE_MIN = 0.64  # the untouched frame's own decode
SEARCH_SCORE_MIN = 0.64  # words found by the search (see _marked_word)
MIN_SIDE = 32  # px; below this a frame is too small to carry or yield a mark
_KEY = 0x7A1C_0DE5  # fixes the chip layout; public, see the module docstring


@dataclass(frozen=True)
class Payload:
    """What the mark carries: a 24-bit pack id and an 8-bit version code."""

    pack_id: int
    version: int

    def __post_init__(self) -> None:
        for name, value, bits in (("pack_id", self.pack_id, 24), ("version", self.version, 8)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise InvalidInputError(f"payload {name} must be an int, got {value!r}")
            if not 0 <= value < (1 << bits):
                raise InvalidInputError(f"payload {name} must fit in {bits} bits, got {value}")

    def to_bits(self) -> np.ndarray:
        """(32,) uint8, most significant bit first."""
        word = (int(self.pack_id) << 8) | int(self.version)
        return np.array([(word >> (31 - i)) & 1 for i in range(32)], np.uint8)

    @classmethod
    def from_bits(cls, bits: np.ndarray) -> Payload:
        word = int("".join(str(int(b)) for b in bits[:32]), 2)
        return cls(pack_id=word >> 8, version=word & 0xFF)

    @property
    def version_str(self) -> str:
        return version_from_code(self.version)


def sdk_version_code(version: str) -> int:
    """'MAJOR.MINOR.PATCH' -> 8 bits: 2 for major, 3 for minor, 3 for patch (each modulo)."""
    try:
        parts = [int("".join(c for c in p if c.isdigit()) or 0) for p in version.split(".")[:3]]
    except (AttributeError, ValueError) as exc:
        raise InvalidInputError(f"not a version string: {version!r}") from exc
    major, minor, patch = (parts + [0, 0, 0])[:3]
    return ((major & 0x3) << 6) | ((minor & 0x7) << 3) | (patch & 0x7)


def version_from_code(code: int) -> str:
    """Inverse of :func:`sdk_version_code` (versions agree modulo 4/8/8)."""
    return f"{code >> 6}.{(code >> 3) & 0x7}.{code & 0x7}"


# ----------------------------------------------------------------------------- coding


def crc16(bits: np.ndarray) -> np.ndarray:
    """CRC-16 (polynomial 0x1021, init 0xFFFF, final xor 0xA5A5) of a bit array -> (16,) bits.

    The non-zero init and final xor keep an all-zero decode (a flat image) from passing.
    """
    return _crc16_rows(np.asarray(bits, np.uint8)[None])[0]


def _crc16_rows(bits: np.ndarray) -> np.ndarray:
    """crc16 of each row: (N, n) bits -> (N, 16)."""
    reg = np.full(len(bits), 0xFFFF, np.int64)
    for i in range(bits.shape[1]):
        top = ((reg >> 15) & 1) ^ bits[:, i]
        reg = ((reg << 1) & 0xFFFF) ^ np.where(top == 1, 0x1021, 0)
    reg ^= 0xA5A5
    return ((reg[:, None] >> (15 - np.arange(16))) & 1).astype(np.uint8)


def _parity(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    for shift in (4, 2, 1):
        x ^= x >> shift
    return x & 1


_STATES = 1 << (CONSTRAINT - 1)
# Shift register with the newest bit on top: reg = (bit << 6) | state, next state = reg >> 1.
# Every next state ns has two predecessors, reg = (ns << 1) | x for x in {0, 1}.
_REG = (np.arange(_STATES)[:, None] << 1) | np.arange(2)[None, :]  # (64, 2)
_PREV = _REG & (_STATES - 1)
_BRANCH_SIGN = np.stack(  # (64, 2, n_gen): +1 for a coded 0, -1 for a coded 1
    [1.0 - 2.0 * _parity(_REG & g) for g in GENERATORS], axis=-1
).astype(np.float32)


def conv_encode(info: np.ndarray) -> np.ndarray:
    """(n,) bits -> ((n + 6) * 2,) coded bits, terminated in the zero state."""
    return _conv_encode_rows(np.asarray(info, np.uint8)[None])[0]


def _conv_encode_rows(info: np.ndarray) -> np.ndarray:
    """conv_encode of each row: (N, n) -> (N, (n + 6) * 2)."""
    k = CONSTRAINT - 1
    pad = np.zeros((len(info), k), np.uint8)
    bits = np.concatenate([pad, info.astype(np.uint8), pad], axis=1)
    steps = bits.shape[1] - k
    # Register at step t holds bits[t + k] (newest, tap 6) down to bits[t] (oldest, tap 0).
    out = np.zeros((len(info), steps, len(GENERATORS)), np.uint8)
    for j, g in enumerate(GENERATORS):
        for i in range(k + 1):
            if (g >> i) & 1:
                out[:, :, j] ^= bits[:, i : i + steps]
    return out.reshape(len(info), -1)


def viterbi_decode(soft: np.ndarray) -> np.ndarray:
    """Soft-decision Viterbi. soft: (CODED_BITS,) float, positive means a coded 0 -> (n,) bits."""
    return _viterbi_rows(np.asarray(soft, np.float32)[None])[0]


def _viterbi_rows(soft: np.ndarray) -> np.ndarray:
    """viterbi_decode of each row, all at once: (N, CODED_BITS) -> (N, n) bits."""
    n = len(soft)
    steps = np.asarray(soft, np.float32).reshape(n, -1, len(GENERATORS))
    branch = np.einsum("sxg,ntg->tnsx", _BRANCH_SIGN, steps)  # (T, N, 64, 2) branch metrics
    metric = np.full((n, _STATES), -1e30, np.float32)
    metric[:, 0] = 0.0
    choices = np.empty((len(branch), n, _STATES), bool)
    for t in range(len(branch)):
        cand = metric[:, _PREV] + branch[t]
        choices[t] = cand[..., 1] > cand[..., 0]
        metric = np.where(choices[t], cand[..., 1], cand[..., 0])
    state = np.zeros(n, np.intp)  # terminated: every path ends in state 0
    rows = np.arange(n)
    bits = np.empty((len(branch), n), np.uint8)
    for t in range(len(branch) - 1, -1, -1):
        bits[t] = state >> (CONSTRAINT - 2)
        state = _PREV[state, choices[t, rows, state].astype(np.intp)]
    return np.ascontiguousarray(bits.T[:, : len(branch) - (CONSTRAINT - 1)])


def _list_viterbi_rows(soft: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` best paths of each row, best first (parallel list Viterbi: every state
    keeps its ``size`` best survivors): (N, CODED_BITS) -> (N, size, n) bits. The first path
    is ``_viterbi_rows``'s.

    At a threshold the right word is often the 2nd to 10th likeliest path rather than the
    first; the CRC picks it out of the list (CRC-aided list decoding, about 1 dB here).
    """
    n = len(soft)
    steps = np.asarray(soft, np.float32).reshape(n, -1, len(GENERATORS))
    branch = np.einsum("sxg,ntg->tnsx", _BRANCH_SIGN, steps)  # (T, N, 64, 2)
    metric = np.full((n, _STATES, size), -1e30, np.float32)
    metric[:, 0, 0] = 0.0
    back = np.empty((len(branch), n, _STATES, size), np.intp)  # predecessor x * size + rank
    for t in range(len(branch)):
        # (N, 64, 2 predecessors, size survivors each) -> the size best, best first
        cand = (metric[:, _PREV] + branch[t][..., None]).reshape(n, _STATES, 2 * size)
        back[t] = np.argsort(-cand, axis=-1, kind="stable")[..., :size]
        metric = np.take_along_axis(cand, back[t], axis=-1)
    rows = np.arange(n)[:, None]
    state = np.zeros((n, size), np.intp)  # terminated: every path ends in state 0
    at = np.tile(np.arange(size), (n, 1))
    bits = np.empty((len(branch), n, size), np.uint8)
    for t in range(len(branch) - 1, -1, -1):
        bits[t] = state >> (CONSTRAINT - 2)
        src = back[t][rows, state, at]
        state, at = _PREV[state, src // size], src % size
    out = bits.transpose(1, 2, 0)[:, :, : len(branch) - (CONSTRAINT - 1)]
    return np.ascontiguousarray(out)


# ----------------------------------------------------------------------------- patterns


def _blur(a: np.ndarray) -> np.ndarray:
    """Separable [1, 2, 1] / 4 blur with edge padding."""
    p = np.pad(a, 1, mode="edge")
    a = (p[:-2] + 2 * p[1:-1] + p[2:]) / 4
    return (a[:, :-2] + 2 * a[:, 1:-1] + a[:, 2:]) / 4


def _key_stream(n: int, purpose: bytes) -> np.ndarray:
    """(n,) uint32 from sha256 in counter mode: the layout is fixed by this file alone, not
    by a random generator whose algorithm a numpy release could change."""
    blocks = (n * 4 + 31) // 32
    raw = b"".join(
        hashlib.sha256(_KEY.to_bytes(4, "big") + purpose + i.to_bytes(4, "big")).digest()
        for i in range(blocks)
    )
    return np.frombuffer(raw[: n * 4], dtype=">u4").astype(np.uint32)


@lru_cache(maxsize=1)
def _layout() -> tuple[np.ndarray, np.ndarray]:
    """Which coded bit each chip carries, and the chip's sign: two (GRID, GRID) arrays.

    The layout is one TILE x TILE tile repeated 2 x 2 over the frame. A crop or a shift of
    the frame is then a cyclic shift of the tile, which the detector finds by circular
    correlation; each coded bit owns 2 or 3 chips of a tile, 8 to 12 in a frame.
    """
    order = np.argsort(_key_stream(TILE * TILE, b"tile-owner"), kind="stable")
    owner = (order % CODED_BITS).reshape(TILE, TILE)
    sign = np.where(_key_stream(TILE * TILE, b"tile-sign") & 1, 1.0, -1.0).astype(np.float32)
    reps = (GRID // TILE, GRID // TILE)
    return np.tile(owner, reps), np.tile(sign.reshape(TILE, TILE), reps)


@lru_cache(maxsize=32)
def _chip_index(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row and column chip index of every pixel (a chip covers 1/GRID of each side), and
    each chip's share of the frame's pixels, (GRID, GRID)."""
    rows, cols = np.arange(h) * GRID // h, np.arange(w) * GRID // w
    share = np.outer(np.bincount(rows, minlength=GRID), np.bincount(cols, minlength=GRID))
    return rows[:, None], cols[None, :], (share / (h * w)).astype(np.float32)


def _upsample(chips: np.ndarray, h: int, w: int) -> np.ndarray:
    """(GRID, GRID) -> (h, w), nearest: flat chips keep their energy in JPEG's and H.264's
    coarse coefficients (a 256 px frame's 8 px chips are exactly JPEG blocks)."""
    rows, cols, _ = _chip_index(h, w)
    return chips[rows, cols]


@lru_cache(maxsize=1)
def _templates() -> tuple[np.ndarray, np.ndarray]:
    """The detector's view of each coded bit's chips, (CODED_BITS, CANON * CANON) float32,
    and its square (for the gain of a weighted correlation)."""
    owner, sign = _layout()
    t = np.empty((CODED_BITS, CANON * CANON), np.float32)
    for k in range(CODED_BITS):
        chips = _upsample(np.where(owner == k, sign, 0.0).astype(np.float32), CANON, CANON)
        t[k] = (chips - _blur(chips)).ravel()
    return t, t**2


_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _luma(frame: np.ndarray) -> np.ndarray:
    """(H, W[, C]) uint8 -> (H, W) float32 luma."""
    f = frame[..., :3] @ _LUMA if frame.ndim == 3 else frame.astype(np.float32)
    return f.astype(np.float32, copy=False)


def _luma_canon(frame: np.ndarray) -> np.ndarray:
    """(H, W[, C]) uint8 -> (CANON, CANON) float32 luma: area-averaged down, bicubic up."""
    f = _luma(frame)
    if f.shape == (CANON, CANON):
        return f
    down = min(f.shape) >= CANON
    mode = Image.Resampling.BOX if down else Image.Resampling.BICUBIC
    return np.asarray(Image.fromarray(f, mode="F").resize((CANON, CANON), mode))


def _weighted_residual(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The image's detail (luma minus its blur), divided by its local energy.

    Weighting each pixel by 1 / local variance is the matched filter for host noise that is
    strong in texture and weak in flat skin; it more than doubles the per-bit SNR of a plain
    correlation on face frames. Returns (weighted residual, weights), both (CANON * CANON,).
    """
    r = y - _blur(y)
    iw = 1.0 / (_blur(r * r) + 1.0)
    return (r * iw).ravel(), iw.ravel()


# ----------------------------------------------------------------------------- embed, detect


def _check_frame(frame: np.ndarray, what: str) -> np.ndarray:
    if not isinstance(frame, np.ndarray):
        raise InvalidInputError(f"{what} must be a numpy array, got {type(frame).__name__}")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[..., 0]
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (3, 4)):
        raise InvalidInputError(
            f"{what} must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {frame.shape}"
        )
    if frame.dtype != np.uint8:
        raise InvalidInputError(f"{what} must be uint8, got {frame.dtype}")
    h, w = frame.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise InvalidInputError(
            f"{what} is {w}x{h} px; a mark needs at least {MIN_SIDE} px per side"
        )
    return frame


@lru_cache(maxsize=16)
def _codeword(payload: Payload) -> np.ndarray:
    """(CODED_BITS,) float32 +-1: payload, CRC, convolutional code."""
    info = payload.to_bits()
    return 1.0 - 2.0 * conv_encode(np.concatenate([info, crc16(info)])).astype(np.float32)


class Watermark:
    """Embeds one payload into frames of any size >= MIN_SIDE px.

    Informed embedding: the embedder runs the detector's own analysis on the frame and gives
    each coded bit the amplitude it needs against what the image already says about that bit
    (more where the image works against it, none where it already agrees), then scales the
    whole pattern to ``strength`` grey levels RMS. At equal PSNR this lifts the worst bits'
    correlation by about 10 % over a fixed amplitude, which is what the attacks eat into.
    """

    def __init__(self, payload: Payload, strength: float = STRENGTH) -> None:
        if not isinstance(payload, Payload):
            raise InvalidInputError(f"payload must be a Payload, got {type(payload).__name__}")
        if isinstance(strength, bool) or not isinstance(strength, (int, float)):
            raise InvalidInputError(f"strength must be a number, got {strength!r}")
        if not 0 < strength <= 16:
            raise InvalidInputError(f"strength must be in (0, 16] grey levels, got {strength}")
        self.payload = payload
        self.strength = float(strength)
        self._code = _codeword(payload)

    def _amplitudes(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(CODED_BITS,) relative chip amplitude per coded bit, in [0, AMP_MAX], and
        (GRID, GRID) the weight of each chip: the 4th root of the detector's 1 / local energy.

        Flat areas get more of the mark and busy ones less: H.264's adaptive quantisation
        keeps flat areas' detail and crushes texture, and the detector listens hardest where
        the image is flat. At equal PSNR this took H.264 crf 28 at half size from 16 % to
        100 % of 24 avatar frames at 256 px; a square root went further on H.264 but moved
        so much of the mark to the flat border that crops lost it (docs/provenance.md).
        """
        t, t2 = _templates()
        rw, iw = _weighted_residual(_luma_canon(frame))
        helps = self._code * (t @ rw) / (t2 @ iw)  # grey levels the image already adds per bit
        amp = np.clip(AMP_BASE - helps / self.strength, 0.0, AMP_MAX)
        e = iw.reshape(CANON, CANON)  # CANON = 2 * GRID: each chip is 2 x 2 canonical px
        chip_iw = ((e[0::2, 0::2] + e[0::2, 1::2]) + (e[1::2, 0::2] + e[1::2, 1::2])) / 4
        return amp, np.sqrt(np.sqrt(chip_iw))  # the 4th root: float32 sqrt is exact in C++

    def embed(self, frame: np.ndarray) -> np.ndarray:
        """(H, W), (H, W, 3) or (H, W, 4) uint8 -> a marked copy (luma only; alpha untouched)."""
        frame = _check_frame(frame, "frame")
        h, w = frame.shape[:2]
        owner, sign = _layout()
        amp, weight = self._amplitudes(frame)
        chips = sign * (self._code * amp)[owner] * weight
        share = _chip_index(h, w)[2]
        scale = self.strength / max(float(np.sqrt(np.sum(chips**2 * share))), 1e-6)
        # Rounding per chip equals rounding per pixel (chips are flat) and is 64x cheaper.
        # Rounding can add energy; shrink until the rounded change keeps PSNR >= 40 dB.
        for _ in range(20):
            d = np.round(chips * scale).astype(np.int16)
            if np.sum(d.astype(np.float32) ** 2 * share) <= (self.strength * _ROUNDING_SLACK) ** 2:
                break
            scale *= 0.97
        out = frame.astype(np.int16)
        luma = out if out.ndim == 2 else out[..., :3]  # equal change in R, G, B: no colour cast
        if h % GRID == 0 and w % GRID == 0:  # the usual case: add per chip block, no full copy
            blocks = luma.reshape(GRID, h // GRID, GRID, w // GRID, *luma.shape[2:])
            blocks += d.reshape(GRID, 1, GRID, 1, *([1] * (luma.ndim - 2)))
        else:
            delta = _upsample(d, h, w)
            luma += delta if luma.ndim == 2 else delta[..., None]
        return np.clip(out, 0, 255, out=out).astype(np.uint8)


@dataclass(frozen=True)
class WatermarkResult:
    """marked: a word whose CRC holds passed the decision (see ``_marked_word``). payload:
    set when the CRC holds.

    score: normalised correlation of the soft bits with the decoded codeword, in [-1, 1];
    marked frames score about 0.8-0.9 after JPEG or resizing, 0.65-0.8 after crops of a flat
    background or H.264; unmarked ones 0.6-0.74, so the CRC, not the score, is what keeps
    false positives out.
    """

    marked: bool
    payload: Payload | None
    score: float
    crc_ok: bool


# ----------------------------------------------------------------------------- the search

# The detector does not know how the frame was cropped, rotated or rescaled. It tries each
# hypothesis of the frame's size and rotation, resamples the image into the frame's own
# coordinates at CANON px per frame side, folds the weighted residual onto one tile (the
# pattern repeats every PERIOD px), and finds the translation by circular correlation with
# each coded bit's tile template. The whitened energy of the soft bits ranks hypotheses and
# shifts, decoding screens the shifts, and the untouched frame and some 430 alignments around
# the best are decoded (_align); the CRC, the score floors and, for searched words, a second
# alignment that decodes the same word decide (_best, _marked_word).
PERIOD = CANON * TILE // GRID  # px of the canonical frame per tile: 32
SEARCH_ANGLES = tuple(float(a) for a in range(-10, 11))  # degrees; 1 degree steps
CROP_SCALES = (1 / 0.95, 1 / 0.9, 1 / 0.85, 1 / 0.8)  # frame side over the image's longer side
SUBPIXEL = ((0.0, 0.0), (0.0, 0.5), (0.5, 0.0), (0.5, 0.5))  # PERIOD-grid phases tried


def _circular_blur(a: np.ndarray) -> np.ndarray:
    """The [1, 2, 1] / 4 blur of ``_blur`` on a tile that wraps around (last two axes)."""
    a = (np.roll(a, 1, -2) + 2 * a + np.roll(a, -1, -2)) / 4
    return (np.roll(a, 1, -1) + 2 * a + np.roll(a, -1, -1)) / 4


@lru_cache(maxsize=1)
def _tile_spectra() -> tuple[np.ndarray, np.ndarray]:
    """Conjugate spectra of each coded bit's tile template at each sub-pixel phase,
    (len(SUBPIXEL), CODED_BITS, PERIOD, PERIOD // 2 + 1) complex64, and the templates' norms."""
    owner, sign = _layout()
    up = PERIOD // TILE
    chips = np.where(
        owner[:TILE, :TILE][None] == np.arange(CODED_BITS)[:, None, None],
        sign[:TILE, :TILE][None],
        0.0,
    ).astype(np.float32)
    t = np.repeat(np.repeat(chips, up, axis=1), up, axis=2)
    t = t - _circular_blur(t)
    spec = np.conj(np.fft.rfft2(t))
    ky, kx = np.fft.fftfreq(PERIOD)[:, None], np.fft.rfftfreq(PERIOD)[None, :]
    spectra = np.stack(
        [spec * np.exp(2j * np.pi * (ky * dy + kx * dx)) for dy, dx in SUBPIXEL]
    ).astype(np.complex64)
    return spectra, np.sqrt(np.sum(t.astype(np.float64) ** 2, axis=(1, 2))).astype(np.float32)


def _shrunk(luma: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The luma area-averaged to at most 2 * CANON px along each axis (each axis on its own:
    a long thin frame keeps its short side), and the factors from image px to shrunk px
    along x and y."""
    h, w = luma.shape
    size = (min(w, 2 * CANON), min(h, 2 * CANON))
    if size == (w, h):
        return luma, 1.0, 1.0
    small = Image.fromarray(luma, mode="F").resize(size, Image.Resampling.BOX)
    return np.asarray(small), size[0] / w, size[1] / h


def _sample(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear samples of ``img`` at pixel-index coordinates, and which fell inside it."""
    h, w = img.shape
    inside = (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)
    x, y = np.clip(x, 0, w - 1), np.clip(y, 0, h - 1)
    x0 = np.minimum(np.floor(x).astype(np.intp), w - 2)
    y0 = np.minimum(np.floor(y).astype(np.intp), h - 2)
    fx, fy = (x - x0).astype(np.float32), (y - y0).astype(np.float32)
    top = img[y0, x0] * (1 - fx) + img[y0, x0 + 1] * fx
    bottom = img[y0 + 1, x0] * (1 - fx) + img[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy, inside


def _hypotheses(h: int, w: int) -> list[tuple[float, float, float]]:
    """(frame width, frame height in image px, rotation in degrees) to try, the untouched
    frame first. Frames are square unless the image is the whole frame."""
    side = float(max(h, w))
    out = [(float(w), float(h), 0.0)] + ([(side, side, 0.0)] if h != w else [])
    out += [(side * s, side * s, 0.0) for s in CROP_SCALES]
    for a in SEARCH_ANGLES:
        if a == 0.0:
            continue
        rad = np.deg2rad(a)
        # Rotated within the same canvas, or rotated onto a canvas grown to hold it.
        grown = side / (abs(np.cos(rad)) + abs(np.sin(rad)))
        out += [(side, side, a), (grown, grown, a)]
    return out


def _folded(
    small: np.ndarray,
    g: tuple[float, float],
    shape: tuple[int, int],
    hypothesis: tuple[float, float, float],
) -> np.ndarray | None:
    """The weighted residual of the image seen as a frame of ``hypothesis`` (width, height
    in image px, rotation in degrees), resampled to CANON x CANON about the image's centre
    and folded onto one tile: (PERIOD, PERIOD) float32, or None if nothing is inside."""
    h, w = shape
    side_x, side_y, angle = hypothesis
    half = np.arange(2 * CANON, dtype=np.float64) + 0.5 - CANON  # sample at 2x, then average
    ux, uy = half[None, :] * side_x / (2 * CANON), half[:, None] * side_y / (2 * CANON)
    c, s = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
    x = (w / 2 + c * ux - s * uy) * g[0] - 0.5
    y = (h / 2 + s * ux + c * uy) * g[1] - 0.5
    v, inside = _sample(small, x, y)
    v = v.reshape(CANON, 2, CANON, 2).mean((1, 3))
    inside = np.all(inside.reshape(CANON, 2, CANON, 2), axis=(1, 3))
    if not inside.any():
        return None
    v = np.where(inside, v, v[inside].mean()).astype(np.float32)
    r = v - _blur(v)
    iw = 1.0 / (_blur(r * r) + 1.0)
    keep = inside.copy()  # drop the seam next to the image's edge
    keep[1:] &= inside[:-1]
    keep[:-1] &= inside[1:]
    keep[:, 1:] &= inside[:, :-1]
    keep[:, :-1] &= inside[:, 1:]
    # 1 / local energy is the matched filter for the image's noise; its 4th root again is
    # the mark's own shape (Watermark._amplitudes), so flat areas count for more still.
    rw = r * iw * np.sqrt(np.sqrt(iw)) * keep
    return rw.reshape(CANON // PERIOD, PERIOD, CANON // PERIOD, PERIOD).sum((0, 2))


def _folds(frame: np.ndarray) -> dict[tuple[float, float, float], np.ndarray]:
    """The folded weighted residual of the image under every hypothesis: {(width, height,
    angle): (PERIOD, PERIOD) float32}. Linear in the image, so frames of one video can be summed."""
    luma = _luma(frame)
    small, gx, gy = _shrunk(luma)
    out = {}
    for hyp in _hypotheses(*luma.shape):
        folded = _folded(small, (gx, gy), luma.shape, hyp)
        if folded is not None:
            out[hyp] = folded.astype(np.float32)
    return out


BLURRED_SHAPE = ((1, 1, 1), (1, 5, 1), (1, 1, 1))  # weights of the shifts -1, 0, +1 px (y, x)


@lru_cache(maxsize=1)
def _blurred_response() -> np.ndarray:
    """The spectrum of BLURRED_SHAPE on the PERIOD x PERIOD torus, (PERIOD, PERIOD // 2 + 1)."""
    kernel = np.zeros((PERIOD, PERIOD), np.float64)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            kernel[dy % PERIOD, dx % PERIOD] = BLURRED_SHAPE[dy + 1][dx + 1]
    return np.fft.rfft2(kernel / kernel.sum()).astype(np.complex64)


@lru_cache(maxsize=1)
def _coarse_bank() -> np.ndarray:
    """The tile templates' spectra averaged over the sub-pixel phases: (1, CODED_BITS, ...)."""
    return _tile_spectra()[0].mean(axis=0, keepdims=True)


def _correlations(folded: np.ndarray, phases: slice | None, blurred: bool = False) -> np.ndarray:
    """Each coded bit's circular correlation with the folded residual, per sub-pixel phase
    and shift, over the template's norm: (phases, CODED_BITS, PERIOD, PERIOD). phases=None:
    one coarse map, the templates averaged over the sub-pixel phases (a blurred template,
    which finds a peak wherever between the pixels it lies). blurred: the correlation summed
    over the neighbouring shifts with weights BLURRED_SHAPE, which matches chips that a 0.5x
    resize and H.264 have spread over their neighbours."""
    spectra, norms = _tile_spectra()
    spec = np.fft.rfft2(folded).astype(np.complex64)
    if blurred:
        spec = spec * _blurred_response()
    bank = _coarse_bank() if phases is None else spectra[phases]
    corr = np.fft.irfft2(bank * spec, s=(PERIOD, PERIOD))
    return corr / norms[None, :, None, None]


def _energy(corr: np.ndarray) -> np.ndarray:
    """Soft-bit energy per phase and shift, each bit whitened by its spread over all
    shifts (a bit that the image's texture loads heavily counts no more than a quiet one),
    over its mean: (phases, PERIOD, PERIOD), about 1 where nothing is aligned."""
    spread = np.sqrt(np.mean(corr**2, axis=(0, 2, 3), keepdims=True)) + 1e-12
    energy = np.einsum("pkyx,pkyx->pyx", corr / spread, corr / spread)
    return energy / max(float(energy.mean()), 1e-12)


REFINED = 4  # hypotheses, likeliest first by coarse energy, whose energy peaks are screened
PEAKS_FIRST, PEAKS = 48, 16  # energy peaks screened in the likeliest hypothesis, in the others
DECODED = 6  # screened peaks decoded around: every phase, +-1 px, both template shapes
LISTED, LIST_SIZE = 16, 16  # rows list-decoded when no single path is marked, paths kept
SUPPORT = 2  # distinct alignments at which a searched word must decode


def _peaks(energy: np.ndarray, n: int) -> list[tuple[int, int]]:
    """Up to n separate peaks of (phases, PERIOD, PERIOD) energy, highest first: (y, x)."""
    e = energy.max(axis=0)
    near = np.arange(-1, 2)
    out: list[tuple[int, int]] = []
    for _ in range(n):
        y, x = np.unravel_index(int(np.argmax(e)), e.shape)
        if not np.isfinite(e[y, x]):
            break
        out.append((int(y), int(x)))
        e[np.ix_((y + near) % PERIOD, (x + near) % PERIOD)] = -np.inf  # the next lies elsewhere
    return out


def _unit(soft: np.ndarray) -> np.ndarray:
    soft = np.asarray(soft, np.float32)
    return soft / np.maximum(np.linalg.norm(soft, axis=1, keepdims=True), 1e-12)


def _align(folds: dict[tuple[float, float, float], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Soft bits of the alignments to decode, (N, CODED_BITS) float32, unit norm, and each
    row's alignment (hypothesis, phase, shift) as one int, (N,) int64.

    First the untouched frame (the first hypothesis, no shift: alignment 0). Then the search:
    the REFINED hypotheses whose coarse energy peaks highest, and the untouched frame's (the
    commonest case; after H.264 its energy ranked 16th to 22nd, behind its near neighbours),
    each give their highest energy peaks (PEAKS_FIRST for the likeliest, PEAKS for the
    others). The energy is a weak guide: the mark's own chips give it sidelobes nearly as high
    as the true shift at a threshold, where the true shift ranked anywhere from 1st to 50th.
    So every peak is screened by decoding it at each sub-pixel phase with both template
    shapes, and the DECODED peaks that decode best (a CRC that holds first, then the score)
    are decoded at every phase and shift within 1 px, with the sharp templates and with
    templates blurred over the neighbouring shifts (the chips as a 0.5x resize and H.264
    leave them).
    """
    if not folds:
        return np.zeros((0, CODED_BITS), np.float32), np.zeros(0, np.int64)
    keys = list(folds)
    phases, near = len(SUBPIXEL), np.arange(-1, 2)
    rows = [_correlations(folds[keys[0]], slice(0, 1))[0, :, 0, 0][None]]
    ids = [np.zeros(1, np.int64)]
    energy = [float(_energy(_correlations(folds[k], None)).max()) for k in keys]
    likeliest = [int(h) for h in np.argsort(energy, kind="stable")[::-1][:REFINED]]
    corr: dict[int, np.ndarray] = {}
    blurred: dict[int, np.ndarray] = {}
    screened, screen_rows = [], []
    for rank, h in enumerate(likeliest + ([0] if 0 not in likeliest else [])):
        corr[h] = _correlations(folds[keys[h]], slice(None))
        blurred[h] = _correlations(folds[keys[h]], slice(None), blurred=True)
        for y, x in _peaks(_energy(corr[h]), PEAKS_FIRST if rank == 0 else PEAKS):
            screened.append((h, y, x))
            screen_rows += [corr[h][:, :, y, x], blurred[h][:, :, y, x]]
    _, crc_ok, score = _decode_rows(_unit(np.concatenate(screen_rows)))
    merit = (score + crc_ok).reshape(len(screened), 2 * phases).max(axis=1)
    for i in np.argsort(-merit, kind="stable")[:DECODED]:
        h, y, x = screened[i]
        ys, xs = (y + near) % PERIOD, (x + near) % PERIOD
        at = ((h * phases + np.arange(phases)[:, None, None]) * PERIOD + ys[:, None]) * PERIOD
        for c in (corr[h], blurred[h]):
            rows.append(c[:, :, ys][:, :, :, xs].transpose(0, 2, 3, 1).reshape(-1, CODED_BITS))
            ids.append((at + xs).ravel().astype(np.int64))
    return _unit(np.concatenate(rows)), np.concatenate(ids)


def _decode_rows(soft: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode each row of (N, CODED_BITS) soft bits: (info bits, CRC holds, score)."""
    return _checked(soft, _viterbi_rows(soft))


def _checked(soft: np.ndarray, info: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(info bits, CRC holds, score) of words (N, INFO_BITS) decoded from soft (N, CODED_BITS):
    the score is the normalised correlation of the soft bits with the word's codeword."""
    norm = np.linalg.norm(soft, axis=1)
    crc_ok = np.all(_crc16_rows(info[:, :PAYLOAD_BITS]) == info[:, PAYLOAD_BITS:], axis=1)
    code = 1.0 - 2.0 * _conv_encode_rows(info).astype(np.float32)
    score = np.sum(soft * code, axis=1) / np.maximum(norm * np.sqrt(CODED_BITS), 1e-12)
    crc_ok &= norm > 1e-9
    return info, crc_ok, np.where(norm > 1e-9, score, 0.0)


def _marked_word(
    info: np.ndarray, crc_ok: np.ndarray, score: np.ndarray, row: np.ndarray, ids: np.ndarray
) -> int | None:
    """Of the decoded words (info (M, INFO_BITS), CRC, score, the row each came from), the
    index of the best-scoring one that counts as marked, or None.

    The untouched frame's own decode (row 0) is one trial and needs SCORE_MIN. A searched word
    is one of a few hundred decodes and list entries per image, each a chance CRC pass at
    2^-16: it needs SEARCH_SCORE_MIN and to decode at SUPPORT distinct alignments (phases or
    shifts), as a real mark does at many; on unmarked images that leaves about 8 candidate
    words per image for the CRC, some 1e-4 false positives (docs/provenance.md).
    """
    best, best_score = None, -np.inf
    groups: dict[bytes, list[int]] = {}
    for k in np.flatnonzero(crc_ok):
        groups.setdefault(np.packbits(info[k]).tobytes(), []).append(int(k))
    for members in groups.values():
        j = max(members, key=lambda m: score[m])
        untouched = any(row[m] == 0 for m in members) and score[j] >= SCORE_MIN
        support = len({int(ids[row[m]]) for m in members})
        if (untouched or (score[j] >= SEARCH_SCORE_MIN and support >= SUPPORT)) and score[
            j
        ] > best_score:
            best, best_score = j, score[j]
    return best


def _best(
    folds: dict[tuple[float, float, float], np.ndarray],
) -> tuple[np.ndarray, WatermarkResult]:
    """The soft bits and the decision of the best-scoring marked word (else of the untouched
    frame's decode). Each row is Viterbi-decoded; when no word is marked, the LISTED
    best-scoring rows are list-decoded too (LIST_SIZE paths each) and the CRC picks."""
    soft, ids = _align(folds)
    if not len(soft):
        return np.zeros(CODED_BITS, np.float32), WatermarkResult(False, None, 0.0, False)
    info, crc_ok, score = _decode_rows(soft)
    row = np.arange(len(soft))
    j = _marked_word(info, crc_ok, score, row, ids)
    if j is None:
        top = np.argsort(-score, kind="stable")[:LISTED]
        paths = _list_viterbi_rows(soft[top], LIST_SIZE).reshape(-1, INFO_BITS)
        listed = np.repeat(top, LIST_SIZE)
        l_info, l_crc, l_score = _checked(soft[listed], paths)
        info, crc_ok = np.concatenate([info, l_info]), np.concatenate([crc_ok, l_crc])
        score, row = np.concatenate([score, l_score]), np.concatenate([row, listed])
        j = _marked_word(info, crc_ok, score, row, ids)
    if j is None:
        return soft[0], WatermarkResult(
            False,
            Payload.from_bits(info[0]) if crc_ok[0] else None,
            float(score[0]),
            bool(crc_ok[0]),
        )
    return soft[row[j]], WatermarkResult(True, Payload.from_bits(info[j]), float(score[j]), True)


def soft_bits(frame: np.ndarray) -> np.ndarray:
    """(H, W[, C]) uint8 -> (CODED_BITS,) float32 soft coded bits at the frame's best
    alignment, unit norm (zeros if flat). ``decode_soft`` decodes them."""
    return _best(_folds(_check_frame(frame, "image")))[0]


class MarkSearch:
    """Looks for the mark in the frames of one video together.

    The frames of a video share one geometry (crop, rotation, scale), so their folded
    residuals are summed under each hypothesis and aligned once: a mark too faint to
    decode in any single frame still decodes from a clip. ``add`` also decides each frame
    on its own.
    """

    def __init__(self) -> None:
        self._sum: dict[tuple[float, float, float], np.ndarray] | None = None
        self._shape: tuple[int, int] | None = None
        self.frames = 0

    def add(self, frame: np.ndarray) -> WatermarkResult:
        """Accumulate one frame; returns that frame's own result."""
        frame = _check_frame(frame, "image")
        folds = _folds(frame)
        if self._sum is None or frame.shape[:2] != self._shape:
            # A change of size mid-stream: hypotheses differ, so start over from this frame.
            self._sum, self._shape = {k: v.copy() for k, v in folds.items()}, frame.shape[:2]
        else:
            for k, v in folds.items():
                if k in self._sum:
                    self._sum[k] += v
        self.frames += 1
        return _best(folds)[1]

    def result(self) -> WatermarkResult:
        """The decision on every frame added so far, taken together."""
        if not self._sum:
            return WatermarkResult(False, None, 0.0, False)
        return _best(self._sum)[1]


def decode_soft(soft: np.ndarray) -> WatermarkResult:
    """Decode (CODED_BITS,) soft bits into a result."""
    soft = np.asarray(soft, np.float32)
    if soft.shape != (CODED_BITS,):
        raise InvalidInputError(f"soft bits must be ({CODED_BITS},), got {soft.shape}")
    if not float(np.linalg.norm(soft)) > 1e-9:
        return WatermarkResult(False, None, 0.0, False)
    info, crc_ok, score = _decode_rows(soft[None])
    ok, sc = bool(crc_ok[0]), float(score[0])
    return WatermarkResult(
        ok and sc >= SCORE_MIN, Payload.from_bits(info[0]) if ok else None, sc, ok
    )


def detect(frame: np.ndarray) -> WatermarkResult:
    """Look for the mark in one image: (H, W), (H, W, 3) or (H, W, 4) uint8, any size >= 32 px,
    cropped, rotated or rescaled (see ``_hypotheses``)."""
    return _best(_folds(_check_frame(frame, "image")))[1]


__all__ = [
    "CODED_BITS",
    "MIN_SIDE",
    "SCORE_MIN",
    "MarkSearch",
    "Payload",
    "Watermark",
    "WatermarkResult",
    "conv_encode",
    "crc16",
    "decode_soft",
    "detect",
    "sdk_version_code",
    "soft_bits",
    "version_from_code",
    "viterbi_decode",
]
