"""Pseudo-videos: one real photo, warped along scripted landmark motion, with exact landmarks.

VoxCeleb is out of reach here, so training and tests make their own talking-head
clips: the photo's 68 landmarks are moved by ``talkinghead.sdk.motion`` and the photo
follows them through a piecewise-affine mesh warp. The landmarks of every frame are
exact by construction (they are the warp's targets).

The warp triangulates the landmarks together with fixed anchors (the image border
and a ring around the face), so the background outside the ring never moves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
from scipy.spatial import Delaunay

from talkinghead.errors import InvalidInputError
from talkinghead.sdk.motion import motion_landmarks, scripted_motion
from talkinghead.sdk.rasterize import FLIP_PERMUTATION_68, validate_landmarks

# The ring of fixed points sits this many times the face's half-extent from its centre:
# far enough that the chin can drop and the head turn without squeezing the neck.
RING_SCALE = 1.6
RING_POINTS = 16
BORDER_POINTS_PER_EDGE = 5
_SUBPIXEL_SHIFT = 4  # cv2 fixed-point bits for triangle filling (1/16 px)
_MOUTH_COLOR = np.array([40.0, 18.0, 22.0], np.float32)  # RGB, the dark inside of a mouth


# Hand-placed landmarks of ``skimage.data.astronaut()`` (512 x 512), iBUG 300-W order, px.
# Fitted from MEAN_FACE_68 to her eyes, nose, mouth corners and chin, then adjusted by
# eye; good to a few px. Her mouth is slightly open (teeth), so the inner lips part.
# The real source of landmarks is the tracker; this lets training and tests run without it.
ASTRONAUT_LANDMARKS_68: np.ndarray = np.array(
    [
    [174.0, 92.4], [175.0, 106.4], [177.7, 121.7], [182.1, 136.6],
    [187.9, 150.0], [195.2, 161.3], [203.7, 169.8], [213.3, 175.1],
    [224.8, 176.9], [236.3, 175.2], [245.8, 170.0], [254.1, 161.5],
    [261.2, 150.3], [266.8, 137.0], [270.8, 122.1], [273.3, 106.8],
    [274.0, 92.8], [178.3, 89.7], [186.0, 83.1], [196.0, 81.0],
    [206.0, 82.6], [214.9, 86.5], [232.7, 86.6], [241.6, 82.8],
    [251.5, 81.2], [261.6, 83.4], [269.4, 90.0], [224.1, 99.1],
    [224.2, 107.9], [224.3, 116.6], [224.4, 125.4], [214.4, 131.4],
    [218.9, 133.0], [224.5, 134.2], [230.0, 133.1], [234.4, 131.5],
    [190.7, 99.6], [196.8, 95.8], [204.6, 95.8], [211.3, 100.2],
    [204.6, 102.4], [196.9, 102.3], [236.8, 100.3], [243.5, 95.9],
    [251.2, 95.9], [257.4, 99.8], [251.3, 102.5], [243.5, 102.5],
    [205.2, 147.2], [211.8, 141.0], [219.0, 139.4], [224.6, 140.5],
    [230.1, 139.4], [237.4, 141.1], [244.1, 147.4], [237.5, 152.3],
    [230.3, 155.0], [224.7, 155.5], [219.2, 154.9], [211.9, 152.2],
    [208.5, 147.2], [218.0, 142.7], [224.6, 143.2], [231.3, 142.7],
    [240.7, 147.3], [231.3, 147.4], [224.7, 147.9], [218.0, 147.4],
    ],
    np.float32,
)  # fmt: skip
ASTRONAUT_LANDMARKS_68.setflags(write=False)


def _validate_image(image: object) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise InvalidInputError("image must be a uint8 numpy array (H, W, 3)")
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 16:
        raise InvalidInputError(f"image must be (H, W, 3) with H, W >= 16, got {image.shape}")
    return image


def face_anchors(
    landmark_sets: Sequence[np.ndarray] | np.ndarray, image_shape: tuple[int, ...]
) -> np.ndarray:
    """Fixed warp anchors for an image: its border plus a ring around every given face.

    Args:
        landmark_sets: one or more ``(68, 2)`` px arrays (or a ``(T, 68, 2)`` array); the
            ring encloses all of them, so one anchor set serves a whole clip.
        image_shape: ``(H, W, ...)`` of the image.

    Returns:
        ``(K, 2) float64`` px, all inside the image and at least 2 px from every landmark.
    """
    h, w = int(image_shape[0]), int(image_shape[1])
    pts = np.concatenate([np.asarray(p, np.float64).reshape(-1, 2) for p in landmark_sets])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    centre, half = (lo + hi) / 2.0, np.maximum((hi - lo) / 2.0, 1.0)
    a = np.linspace(0.0, 2 * math.pi, RING_POINTS, endpoint=False)
    ring = centre + RING_SCALE * half * np.stack([np.cos(a), np.sin(a)], axis=1)
    ring = ring[(ring[:, 0] > 0) & (ring[:, 0] < w - 1) & (ring[:, 1] > 0) & (ring[:, 1] < h - 1)]
    t = np.linspace(0.0, 1.0, BORDER_POINTS_PER_EDGE)[:-1]
    border = np.concatenate(
        [
            np.stack([t * (w - 1), np.zeros_like(t)], 1),
            np.stack([np.full_like(t, w - 1), t * (h - 1)], 1),
            np.stack([(1 - t) * (w - 1), np.full_like(t, h - 1)], 1),
            np.stack([np.zeros_like(t), (1 - t) * (h - 1)], 1),
        ]
    )
    anchors = np.concatenate([border, ring])
    # Anchors on top of a landmark would pin it (or make a sliver triangle): drop them.
    d2 = ((anchors[:, None, :] - pts[None, :, :]) ** 2).sum(-1).min(axis=1)
    keep = d2 >= 4.0
    keep[: 4 * (BORDER_POINTS_PER_EDGE - 1) : BORDER_POINTS_PER_EDGE - 1] = True  # corners stay
    return anchors[keep]


def warp_triangles(points: np.ndarray) -> np.ndarray:
    """Delaunay triangles over ``points (N, 2)``: ``(M, 3) int`` vertex indices.

    Triangulate the *target* points: a triangulation of the source reused for a target
    can fold, and a fold tears the output image.
    """
    return Delaunay(np.asarray(points, np.float64)).simplices.astype(np.int64)


def backward_map(
    src_pts: np.ndarray, dst_pts: np.ndarray, triangles: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per output pixel, where to sample the input: ``(map_x, map_y)``, each ``(H, W) float32``.

    Each triangle is filled into a label image at its ``dst`` position (1/16 px
    precision), and pixels take that triangle's affine map ``dst -> src``. The maps of
    neighbouring triangles agree on their shared edge, so edge pixels are exact either way.
    """
    src_pts = np.asarray(src_pts, np.float64)
    dst_pts = np.asarray(dst_pts, np.float64)
    tri_dst = dst_pts[triangles]  # (M, 3, 2)
    tri_src = src_pts[triangles]
    homog = np.concatenate([tri_dst, np.ones((len(triangles), 3, 1))], axis=2)  # (M, 3, 3)
    det = np.linalg.det(homog)
    ok = np.abs(det) > 1e-9
    affine = np.zeros((len(triangles), 3, 2))  # [x, y, 1] @ affine = src
    affine[ok] = np.linalg.solve(homog[ok], tri_src[ok])

    labels = np.full((height, width), -1, np.int32)
    scale = float(1 << _SUBPIXEL_SHIFT)
    fixed = np.round(tri_dst * scale).astype(np.int32)
    for k in np.flatnonzero(ok):
        cv2.fillConvexPoly(labels, fixed[k], int(k), lineType=cv2.LINE_8, shift=_SUBPIXEL_SHIFT)

    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    missing = labels < 0
    if missing.any():
        # Only pixels outside every triangle (landmarks far outside the image can leave
        # none, but be safe): take the nearest triangle by its centroid.
        centroids = tri_dst.mean(axis=1)
        cand = np.flatnonzero(ok)
        q = np.stack([xs[missing], ys[missing]], 1)
        nearest = ((q[:, None, :] - centroids[None, cand, :]) ** 2).sum(-1).argmin(1)
        labels[missing] = cand[nearest]
    a = affine[labels]  # (H, W, 3, 2)
    map_x = xs * a[..., 0, 0] + ys * a[..., 1, 0] + a[..., 2, 0]
    map_y = xs * a[..., 0, 1] + ys * a[..., 1, 1] + a[..., 2, 1]
    return map_x.astype(np.float32), map_y.astype(np.float32)


def mesh_warp(
    image: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    *,
    anchors: np.ndarray | None = None,
    triangles: np.ndarray | None = None,
) -> np.ndarray:
    """Warp ``image`` so that its content at ``src`` moves to ``dst``.

    Args:
        image: ``(H, W, 3) uint8``.
        src: ``(68, 2)`` px, landmarks of ``image``.
        dst: ``(68, 2)`` px, where they should end up.
        anchors: ``(K, 2)`` px fixed points (``src == dst``); default
            ``face_anchors([src, dst], image.shape)``.
        triangles: ``(M, 3)`` indices into ``concat(landmarks, anchors)``; default a
            Delaunay triangulation of the ``dst`` points.

    Returns:
        ``(H, W, 3) uint8``, bilinear samples, border pixels replicated.
    """
    image = _validate_image(image)
    src = validate_landmarks(src)
    dst = validate_landmarks(dst)
    h, w = image.shape[:2]
    if anchors is None:
        anchors = face_anchors([src, dst], image.shape)
    anchors = np.asarray(anchors, np.float64).reshape(-1, 2)
    src_pts = np.concatenate([src, anchors])
    dst_pts = np.concatenate([dst, anchors])
    if triangles is None:
        triangles = warp_triangles(dst_pts)
    triangles = np.asarray(triangles, np.int64)
    if (
        triangles.ndim != 2
        or triangles.shape[1] != 3
        or triangles.min() < 0
        or triangles.max() >= len(src_pts)
    ):
        raise InvalidInputError(f"triangles must be (M, 3) indices < {len(src_pts)}")
    map_x, map_y = backward_map(src_pts, dst_pts, triangles, h, w)
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _paint_mouth(frame: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Paint the inside of the mouth where it opened wider than in the photo.

    The warp can only stretch what the photo shows between the lips (nothing, or a
    strip of teeth) over the whole opening. Below the upper lip, the photo's own lip gap
    is kept; the rest of the opening, down to the lower lip, is painted dark.
    """
    upper, lower = [61, 62, 63], [67, 66, 65]
    gap_src = src[lower] - src[upper]  # (3, 2) px, the photo's own opening per column
    gap_dst = dst[lower] - dst[upper]
    if np.all(gap_dst[:, 1] <= gap_src[:, 1] + 0.5):
        return frame
    # Keep the photo's opening under the upper lip, never past the lower lip.
    frac = np.clip(gap_src[:, 1] / np.maximum(gap_dst[:, 1], 1e-6), 0.0, 1.0)[:, None]
    top = dst[upper] + frac * gap_dst
    poly = np.concatenate([dst[[60]], top, dst[[64]], dst[[65, 66, 67]]])
    scale = float(1 << _SUBPIXEL_SHIFT)
    mask = np.zeros(frame.shape[:2], np.float32)
    cv2.fillPoly(mask, [np.round(poly * scale).astype(np.int32)], 1.0, cv2.LINE_AA, _SUBPIXEL_SHIFT)
    alpha = (0.9 * mask)[..., None]
    out = frame.astype(np.float32) * (1 - alpha) + _MOUTH_COLOR * alpha
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def make_pseudo_video(
    image: np.ndarray,
    landmarks68: np.ndarray,
    num_frames: int,
    seed: int | None = 0,
    fps: float = 25,
    *,
    mouth_interior: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """A talking clip from one photo.

    Args:
        image: ``(H, W, 3) uint8`` RGB photo of a roughly frontal face, mouth closed.
        landmarks68: ``(68, 2)`` px, its landmarks (the neutral pose).
        num_frames: clip length T.
        seed: motion seed (``scripted_motion``); same seed, same clip.
        fps: frame rate the motion is timed for.
        mouth_interior: paint a dark mouth where the jaw opens wider than in the photo.

    Returns:
        ``frames (T, H, W, 3) uint8`` and ``landmarks (T, 68, 2) float32`` px, exact.
    """
    image = _validate_image(image)
    neutral = validate_landmarks(landmarks68)
    params = scripted_motion(num_frames, fps=fps, seed=seed)
    targets = motion_landmarks(neutral, params)
    anchors = face_anchors([neutral, *targets], image.shape)
    frames = np.empty((len(targets), *image.shape), np.uint8)
    for t, dst in enumerate(targets):
        # Triangulating each target (not the neutral) keeps every output frame
        # continuous: a fold in target space would tear the image.
        frame = mesh_warp(image, neutral, dst, anchors=anchors)
        frames[t] = _paint_mouth(frame, neutral, dst) if mouth_interior else frame
    return frames, targets


def augment_video(
    frames: np.ndarray,
    landmarks: np.ndarray,
    seed: int | None = None,
    *,
    flip: bool | None = None,
    max_scale: float = 0.08,
    max_shift: float = 0.05,
    max_rotation_deg: float = 4.0,
    color_jitter: float = 0.15,
) -> tuple[np.ndarray, np.ndarray]:
    """One random variation of a clip, applied identically to every frame and its landmarks.

    Args:
        frames: ``(T, H, W, 3) uint8``.
        landmarks: ``(T, 68, 2)`` px.
        seed: random seed.
        flip: mirror horizontally (landmark indices permuted to stay iBUG-ordered);
            ``None`` flips with probability 0.5.
        max_scale: zoom by a factor in ``[1 - max_scale, 1 + max_scale]``.
        max_shift: shift by up to this fraction of the image size on each axis.
        max_rotation_deg: rotate by up to this many degrees about the image centre.
        color_jitter: strength of brightness, contrast, saturation and per-channel gain
            changes (0 disables).

    Returns:
        ``(frames (T, H, W, 3) uint8, landmarks (T, 68, 2) float32)``.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
        raise InvalidInputError(
            f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}"
        )
    lms = validate_landmarks(landmarks, batched=True)
    if len(lms) != len(frames):
        raise InvalidInputError(f"{len(frames)} frames but {len(lms)} landmark sets")
    for name, v in (("max_scale", max_scale), ("max_shift", max_shift),
                    ("max_rotation_deg", max_rotation_deg), ("color_jitter", color_jitter)):  # fmt: skip
        if not math.isfinite(v) or v < 0:
            raise InvalidInputError(f"{name} must be finite and >= 0, got {v}")
    rng = np.random.default_rng(seed)
    t_count, h, w = frames.shape[:3]

    if flip is None:
        flip = bool(rng.random() < 0.5)
    scale = 1.0 + rng.uniform(-max_scale, max_scale)
    angle = rng.uniform(-max_rotation_deg, max_rotation_deg)
    shift = rng.uniform(-max_shift, max_shift, 2) * np.array([w, h])
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle, scale)
    matrix[:, 2] += shift

    out = np.empty_like(frames)
    for t in range(t_count):
        out[t] = cv2.warpAffine(frames[t], matrix, (w, h), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REFLECT_101)  # fmt: skip
    lms = lms @ matrix[:, :2].T + matrix[:, 2]
    if flip:
        out = out[:, :, ::-1].copy()
        lms = lms[:, FLIP_PERMUTATION_68].copy()
        lms[..., 0] = (w - 1) - lms[..., 0]

    if color_jitter > 0:
        j = color_jitter
        gain = 1.0 + rng.uniform(-j, j, 3) * 0.5
        contrast = 1.0 + rng.uniform(-j, j)
        brightness = rng.uniform(-j, j) * 60.0
        saturation = 1.0 + rng.uniform(-j, j) * 2.0
        x = out.astype(np.float32)
        gray = x @ np.array([0.299, 0.587, 0.114], np.float32)
        x = gray[..., None] + saturation * (x - gray[..., None])
        mean = float(gray.mean())
        x = (x - mean) * contrast + mean + brightness
        x *= gain.astype(np.float32)
        out = np.clip(np.round(x), 0, 255).astype(np.uint8)
    return out, lms.astype(np.float32)


__all__ = [
    "ASTRONAUT_LANDMARKS_68",
    "augment_video",
    "backward_map",
    "face_anchors",
    "make_pseudo_video",
    "mesh_warp",
    "warp_triangles",
]
