"""The warp: the enrolled photo's own pixels moved to a target pose by its face mesh.

Identity and detail come from the photo: a dense piecewise-affine warp, driven by
MediaPipe's 478-point mesh plus anchors for hair, neck and background, moves the source
crop to each target mesh. A small network (the refiner) then corrects what a warp cannot
draw. The warp is plain geometry computed outside the network, so every exported graph
stays a plain convolution stack; ``bindings/src/warp.cpp`` is its C++ port and matches
this module within 1 level.

Per frame, only the target mesh changes. Everything else is fixed at enrolment in a
:class:`WarpRig`:

- control points: the 478 mesh points, then anchors in three rings: ``HEAD`` (just
  outside the face oval: hair, ears, the top of the neck; moves rigidly with the head),
  ``HALF`` (further out: shoulders, the rest of the hair; moves half as much) and
  ``FIXED`` (the crop's border; never moves);
- triangles: a Delaunay triangulation of the source control points, fixed for the
  avatar's life (a C++ or GPU port needs no triangulator);
- per-triangle flags: triangles inside the mouth and the eyes, where stretching the
  photo cannot show what is behind the lips or the lids.

Rasterisation is deterministic and shared with the C++ port: pixel centres are at
``i + 0.5`` (landmarks are continuous pixels, pixel ``i`` covers ``[i, i+1)``); a pixel
belongs to a triangle when its three barycentric weights are ``>= -1e-9``; where
triangles overlap (a head turned so far that the mesh folds) the nearest wins by the
mesh's z, quantised to 1/64 px, and ties go to the lower triangle index. That z-test is
what gives self-occlusion on out-of-plane rotation.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from talkinghead.errors import InvalidInputError
from talkinghead.sdk.landmarks import MEDIAPIPE_TO_68, NUM_MESH_POINTS

# Anchor kinds (``WarpRig.kinds``).
MESH, HEAD, HALF, FIXED = 0, 1, 2, 3
HEAD_RING_SCALE = 1.22  # times the face oval's radii, about its centre
HALF_RING_SCALE = 1.75
RING_POINTS = 20
BORDER_POINTS_PER_EDGE = 6
BARY_EPS = 1e-9
# Interior triangle flags (``WarpRig.interior``): an eye strip or the mouth strip.
EYE_INTERIOR, MOUTH_INTERIOR = 1, 2
# Where a mouth opens wider than in the photo, the photo has nothing to show between the
# lips (at most a strip of teeth): the stretched seam is blended toward the dark inside of a
# mouth by how far it was stretched, so the opening reads as an opening; the refiner then
# draws what is in it.
MOUTH_RGB = (40.0, 18.0, 22.0)
Z_QUANT = 64.0  # depth key resolution: 1/64 px
_TRI_BITS = 20  # a depth key is (quantised z << 20) | triangle index

# MediaPipe mesh indices.
FACE_OVAL: tuple[int, ...] = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
INNER_LIPS: tuple[int, ...] = (
    78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95,
)  # fmt: skip
RIGHT_EYE: tuple[int, ...] = (
    33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7,
)  # fmt: skip
LEFT_EYE: tuple[int, ...] = (
    362, 398, 384, 385, 386, 387, 388, 466, 263, 249, 390, 373, 374, 380, 381, 382,
)  # fmt: skip
IRISES: tuple[int, ...] = tuple(range(468, 478))
# Points that move with the skull, not with expressions: forehead, nose bridge, temples,
# cheekbones and the eyes' corners. The head's rigid motion is fitted on these.
STABLE_MESH_POINTS: tuple[int, ...] = (
    10, 151, 9, 8, 168, 6, 197, 195, 5, 4, 234, 454, 127, 356, 162, 389, 21, 251, 54, 284,
    103, 332, 67, 297, 109, 338, 33, 263, 133, 362, 116, 345, 123, 352,
)  # fmt: skip


@dataclass(frozen=True)
class WarpRig:
    """What the warp needs of one enrolled face, fixed at enrolment.

    Attributes:
        source: ``(S, S, 3) uint8`` RGB, the enrolled crop.
        points: ``(N, 3) float32`` crop px, source control points: the 478 mesh points
            (x, y, z; z in x's scale, smaller is nearer), then the anchors.
        kinds: ``(N,) uint8``: MESH, HEAD, HALF or FIXED.
        triangles: ``(M, 3) int32`` indices into ``points``.
        interior: ``(M,) uint8``: EYE_INTERIOR (1) or MOUTH_INTERIOR (2) for triangles
            inside an eye or the mouth, 0 elsewhere.
    """

    source: np.ndarray
    points: np.ndarray
    kinds: np.ndarray
    triangles: np.ndarray
    interior: np.ndarray

    @property
    def size(self) -> int:
        return int(self.source.shape[0])

    @functools.cached_property
    def source_f64(self) -> np.ndarray:
        """The source as float64, converted once for every frame's sampling."""
        return self.source.astype(np.float64)

    @property
    def mesh(self) -> np.ndarray:
        """``(478, 3) float32``: the source mesh, crop px."""
        return self.points[:NUM_MESH_POINTS]


def check_mesh(mesh: object, name: str = "mesh") -> np.ndarray:
    """A ``(478, 3)`` finite mesh as float64, or InvalidInputError naming what is wrong."""
    arr = np.asarray(mesh, dtype=np.float64) if isinstance(mesh, np.ndarray | list) else None
    if arr is None or arr.shape != (NUM_MESH_POINTS, 3):
        shape = getattr(mesh, "shape", type(mesh).__name__)
        raise InvalidInputError(f"{name} must be a ({NUM_MESH_POINTS}, 3) array, got {shape}")
    if not np.all(np.isfinite(arr)):
        raise InvalidInputError(f"{name} contains NaN or infinite values")
    return arr


def _oval_frame(mesh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre and (rx, ry) radii of the face oval, px."""
    oval = mesh[list(FACE_OVAL), :2]
    lo, hi = oval.min(axis=0), oval.max(axis=0)
    return (lo + hi) / 2.0, np.maximum((hi - lo) / 2.0, 1.0)


def mesh_triangles() -> np.ndarray:
    """MediaPipe's face-mesh tessellation: ``(852, 3) int32`` mesh indices.

    Read from the tracker's package at enrolment (its connections list each triangle as
    three consecutive edges); packs store the rig's triangles, so the runtime needs no
    MediaPipe. The mouth and the eyes are holes in it.
    """
    from mediapipe.tasks.python.vision.face_landmarker import FaceLandmarksConnections

    edges = FaceLandmarksConnections.FACE_LANDMARKS_TESSELATION
    return np.array(
        [[e.start for e in edges[i : i + 3]] for i in range(0, len(edges), 3)], np.int32
    )


def _strip(upper: tuple[int, ...], lower: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """Triangles between two chains that share their end points (lips, lids)."""
    tris = []
    for i in range(len(upper) - 1):
        u0, u1, l0, l1 = upper[i], upper[i + 1], lower[i], lower[i + 1]
        if u0 == l0:
            tris.append((u0, u1, l1))
        elif u1 == l1:
            tris.append((u0, u1, l0))
        else:
            tris += [(u0, u1, l0), (u1, l1, l0)]
    return tris


# The holes of the tessellation, filled by strips whose topology survives opening and closing.
MOUTH_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
MOUTH_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
RIGHT_EYE_UPPER = (33, 246, 161, 160, 159, 158, 157, 173, 133)
RIGHT_EYE_LOWER = (33, 7, 163, 144, 145, 153, 154, 155, 133)
LEFT_EYE_UPPER = (263, 466, 388, 387, 386, 385, 384, 398, 362)
LEFT_EYE_LOWER = (263, 249, 390, 373, 374, 380, 381, 382, 362)


def _inside_polygon(pts: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd test of ``pts (K, 2)`` against the closed polygon ``poly (P, 2)``."""
    x, y = pts[:, 0:1], pts[:, 1:2]
    x0, y0 = poly[:, 0][None], poly[:, 1][None]
    x1, y1 = np.roll(poly[:, 0], -1)[None], np.roll(poly[:, 1], -1)[None]
    crosses = ((y0 > y) != (y1 > y)) & (
        x < (x1 - x0) * (y - y0) / np.where(y1 == y0, 1e-12, y1 - y0) + x0
    )
    return crosses.sum(axis=1) % 2 == 1


def rig_triangles(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Triangles over mesh + anchors, and their interior flags.

    The face is MediaPipe's tessellation, with strips across the mouth and the eyes (the
    interior triangles). Outside the face oval, a Delaunay triangulation of the oval and
    the anchors, less its triangles inside the oval, joins the face to the background.
    """
    from scipy.spatial import Delaunay  # enrolment only; the per-frame path needs no scipy

    face = mesh_triangles()
    strips = np.array(
        _strip(MOUTH_UPPER, MOUTH_LOWER)
        + _strip(RIGHT_EYE_UPPER, RIGHT_EYE_LOWER)
        + _strip(LEFT_EYE_UPPER, LEFT_EYE_LOWER),
        np.int32,
    )
    outer_idx = np.concatenate([np.array(FACE_OVAL), np.arange(NUM_MESH_POINTS, len(points))])
    outer = outer_idx[Delaunay(points[outer_idx, :2].astype(np.float64)).simplices]
    centroids = points[outer, :2].mean(axis=1)
    keep = ~_inside_polygon(
        centroids.astype(np.float64), points[list(FACE_OVAL), :2].astype(np.float64)
    )
    outer = outer[keep].astype(np.int32)
    triangles = np.concatenate([face, strips, outer])
    interior = np.zeros(len(triangles), np.uint8)
    n_mouth = len(_strip(MOUTH_UPPER, MOUTH_LOWER))
    interior[len(face) : len(face) + n_mouth] = MOUTH_INTERIOR
    interior[len(face) + n_mouth : len(face) + len(strips)] = EYE_INTERIOR
    return triangles, interior


def build_rig(source: np.ndarray, mesh: np.ndarray) -> WarpRig:
    """Enrol a crop: anchors, triangles and interior flags around its mesh.

    Args:
        source: ``(S, S, 3) uint8`` RGB crop.
        mesh: ``(478, 3)`` float, the crop's tracked mesh in crop px.

    Anchors that would fall outside the crop (a face near the photo's edge) are dropped;
    the border anchors then carry that side, so the warp still covers every pixel.
    """
    if not isinstance(source, np.ndarray) or source.dtype != np.uint8 or source.ndim != 3:
        raise InvalidInputError("source must be an (S, S, 3) uint8 array")
    if source.shape[0] != source.shape[1] or source.shape[2] != 3 or source.shape[0] < 32:
        raise InvalidInputError(f"source must be square (S, S, 3) with S >= 32, got {source.shape}")
    mesh = check_mesh(mesh)
    size = source.shape[0]
    centre, radii = _oval_frame(mesh)
    z_far = float(mesh[:, 2].max())
    depth = float(radii.mean())
    a = np.linspace(0.0, 2 * math.pi, RING_POINTS, endpoint=False)
    unit = np.stack([np.cos(a), np.sin(a)], axis=1)
    rings = []
    for kind, scale, dz in ((HEAD, HEAD_RING_SCALE, 0.5), (HALF, HALF_RING_SCALE, 1.0)):
        xy = centre + scale * radii * unit
        inside = np.all((xy > 1.0) & (xy < size - 1.0), axis=1)
        xy = xy[inside]
        rings.append((kind, np.column_stack([xy, np.full(len(xy), z_far + dz * depth)])))
    t = np.linspace(0.0, 1.0, BORDER_POINTS_PER_EDGE + 1)[:-1] * size
    s = float(size)
    border = np.concatenate(
        [
            np.stack([t, np.zeros_like(t)], 1),
            np.stack([np.full_like(t, s), t], 1),
            np.stack([s - t, np.full_like(t, s)], 1),
            np.stack([np.zeros_like(t), s - t], 1),
        ]
    )
    rings.append((FIXED, np.column_stack([border, np.full(len(border), z_far + 2 * depth)])))
    anchors = np.concatenate([r for _, r in rings])
    kinds = np.concatenate(
        [np.zeros(NUM_MESH_POINTS, np.uint8)] + [np.full(len(r), k, np.uint8) for k, r in rings]
    )
    # An anchor on top of a mesh point would make sliver triangles: drop it (never a border one).
    d2 = ((anchors[:, None, :2] - mesh[None, :, :2]) ** 2).sum(-1).min(axis=1)
    keep = (d2 >= 4.0) | (kinds[NUM_MESH_POINTS:] == FIXED)
    points = np.concatenate([mesh, anchors[keep]]).astype(np.float32)
    kinds = np.concatenate([kinds[:NUM_MESH_POINTS], kinds[NUM_MESH_POINTS:][keep]])
    triangles, interior = rig_triangles(points)
    return WarpRig(np.ascontiguousarray(source), points, kinds, triangles, interior)


def rigid_fit(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity ``dst ~= s * R @ src + t`` in 3D (Umeyama).

    Args:
        src, dst: ``(K, 3)`` corresponding points.

    Returns:
        ``(s, R (3, 3), t (3,))``; R is a proper rotation.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - mu_s, dst - mu_d
    cov = b.T @ a / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[2] = -1.0
    r = u @ np.diag(d) @ vt
    var = (a**2).sum() / len(src)
    s = float((sig * d).sum() / var) if var > 0 else 1.0
    return s, r, mu_d - s * r @ mu_s


def target_points(rig: WarpRig, target_mesh: np.ndarray) -> np.ndarray:
    """All control points at a target pose: ``(N, 3) float64`` crop px.

    The mesh points are ``target_mesh``; HEAD anchors follow the head's rigid motion
    (fitted on :data:`STABLE_MESH_POINTS`), HALF anchors move half-way, FIXED stay.
    """
    target_mesh = check_mesh(target_mesh, "target_mesh")
    src = rig.points.astype(np.float64)
    idx = list(STABLE_MESH_POINTS)
    s, r, t = rigid_fit(src[idx], target_mesh[idx])
    # Anchors move as if they stood at the face oval's depth: rotating them about their
    # own (far) depth would swing hair and neck against the head's turn.
    at_face = src.copy()
    at_face[NUM_MESH_POINTS:, 2] = src[list(FACE_OVAL), 2].mean()
    moved = s * at_face @ r.T + t
    out = src.copy()
    out[:NUM_MESH_POINTS] = target_mesh
    head = rig.kinds == HEAD
    half = rig.kinds == HALF
    out[head] = moved[head]
    out[half] = 0.5 * (src[half] + moved[half])
    # Anchors keep their own depth order behind the face, whatever the rotation did to z.
    out[~(rig.kinds == MESH), 2] = src[~(rig.kinds == MESH), 2]
    return out


@dataclass(frozen=True)
class WarpResult:
    """One warped frame.

    Attributes:
        image: ``(S, S, 3) uint8``, the source photo moved to the target pose.
        validity: ``(S, S) uint8``, 255 where the warp had real source pixels, 0 where it
            had none (outside every triangle or the photo), lower inside the mouth and
            eyes as far as those triangles were stretched beyond the photo's own.
    """

    image: np.ndarray
    validity: np.ndarray


def _rasterize(
    dst: np.ndarray, triangles: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pixel: the winning triangle (-1 for none) and its barycentric weights.

    Returns ``(tri (S*S,) int64, w (S*S, 3) float64, area2 (M,) float64)``.
    """
    tri = dst[triangles]  # (M, 3, 3)
    x0, y0 = tri[:, 0, 0], tri[:, 0, 1]
    x1, y1 = tri[:, 1, 0], tri[:, 1, 1]
    x2, y2 = tri[:, 2, 0], tri[:, 2, 1]
    area2 = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    xs, ys = tri[:, :, 0], tri[:, :, 1]
    bx0 = np.clip(np.ceil(xs.min(axis=1) - 0.5), 0, size - 1).astype(np.int64)
    bx1 = np.clip(np.floor(xs.max(axis=1) - 0.5), -1, size - 1).astype(np.int64)
    by0 = np.clip(np.ceil(ys.min(axis=1) - 0.5), 0, size - 1).astype(np.int64)
    by1 = np.clip(np.floor(ys.max(axis=1) - 0.5), -1, size - 1).astype(np.int64)
    bw, bh = bx1 - bx0 + 1, by1 - by0 + 1
    ok = (np.abs(area2) > 1e-12) & (bw > 0) & (bh > 0)
    cand = np.flatnonzero(ok)
    counts = (bw * bh)[cand]
    total = int(counts.sum())
    tid = np.repeat(cand, counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    off = np.arange(total, dtype=np.int64) - starts
    px = bx0[tid] + off % bw[tid]
    py = by0[tid] + off // bw[tid]
    cx, cy = px + 0.5, py + 0.5
    inv = 1.0 / area2[tid]
    w1 = ((cx - x0[tid]) * (y2[tid] - y0[tid]) - (x2[tid] - x0[tid]) * (cy - y0[tid])) * inv
    w2 = ((x1[tid] - x0[tid]) * (cy - y0[tid]) - (cx - x0[tid]) * (y1[tid] - y0[tid])) * inv
    w0 = 1.0 - w1 - w2
    inside = (w0 >= -BARY_EPS) & (w1 >= -BARY_EPS) & (w2 >= -BARY_EPS)
    tid, px, py = tid[inside], px[inside], py[inside]
    w0, w1, w2 = w0[inside], w1[inside], w2[inside]
    z = w0 * tri[tid, 0, 2] + w1 * tri[tid, 1, 2] + w2 * tri[tid, 2, 2]
    zq = np.clip(np.floor(z * Z_QUANT + 0.5), -(2**40), 2**40).astype(np.int64) + 2**40
    key = (zq << _TRI_BITS) | tid
    pix = py * size + px
    best = np.full(size * size, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(best, pix, key)
    covered = best != np.iinfo(np.int64).max
    win = np.full(size * size, -1, np.int64)
    win[covered] = best[covered] & ((1 << _TRI_BITS) - 1)
    # Weights of the winner, recomputed per pixel (cheaper than tracking them through min).
    flat = np.flatnonzero(covered)
    k = win[flat]
    cx = (flat % size) + 0.5
    cy = (flat // size) + 0.5
    inv = 1.0 / area2[k]
    v1 = ((cx - x0[k]) * (y2[k] - y0[k]) - (x2[k] - x0[k]) * (cy - y0[k])) * inv
    v2 = ((x1[k] - x0[k]) * (cy - y0[k]) - (cx - x0[k]) * (y1[k] - y0[k])) * inv
    w = np.zeros((size * size, 3))
    w[flat, 0] = 1.0 - v1 - v2
    w[flat, 1] = v1
    w[flat, 2] = v2
    return win, w, area2


def _bilinear(image: np.ndarray, sx: np.ndarray, sy: np.ndarray) -> np.ndarray:
    """Sample ``image (H, W, 3)`` (uint8 or float64) at continuous px (centres at +0.5),
    edges replicated."""
    h, w = image.shape[:2]
    fx = np.clip(sx - 0.5, 0.0, w - 1.0)
    fy = np.clip(sy - 0.5, 0.0, h - 1.0)
    ix = np.minimum(np.floor(fx).astype(np.int64), w - 2)
    iy = np.minimum(np.floor(fy).astype(np.int64), h - 2)
    ax = (fx - ix)[:, None]
    ay = (fy - iy)[:, None]
    img = image if image.dtype == np.float64 else image.astype(np.float64)
    top = img[iy, ix] * (1.0 - ax) + img[iy, ix + 1] * ax
    bot = img[iy + 1, ix] * (1.0 - ax) + img[iy + 1, ix + 1] * ax
    return top * (1.0 - ay) + bot * ay


def warp_image(
    image: np.ndarray,
    src_points: np.ndarray,
    dst_points: np.ndarray,
    triangles: np.ndarray,
    interior: np.ndarray | None = None,
    *,
    image_f64: np.ndarray | None = None,
) -> WarpResult:
    """Move ``image``'s content at ``src_points`` to ``dst_points``, triangle by triangle.

    Args:
        image: ``(S, S, 3) uint8``.
        src_points: ``(N, 2+)`` px in ``image``.
        dst_points: ``(N, 3)`` px in the output; column 2 is depth (smaller is nearer).
        triangles: ``(M, 3)`` indices.
        interior: ``(M,)`` nonzero for triangles whose stretching lowers validity; inside
            MOUTH_INTERIOR ones, stretched pixels also blend toward ``MOUTH_RGB``.
    """
    size = image.shape[0]
    src = np.asarray(src_points, np.float64)
    dst = np.asarray(dst_points, np.float64)
    triangles = np.asarray(triangles, np.int64)
    win, w, area2 = _rasterize(dst, triangles, size)
    covered = win >= 0
    k = np.where(covered, win, 0)
    tri_src = src[triangles]  # (M, 3, 2+)
    sx = (w[:, :, None] * tri_src[k][:, :, :2]).sum(axis=1)
    out = _bilinear(image if image_f64 is None else image_f64, sx[:, 0], sx[:, 1])
    h = image.shape[0]
    inside = (sx[:, 0] >= 0) & (sx[:, 0] <= h) & (sx[:, 1] >= 0) & (sx[:, 1] <= h)
    valid = np.where(covered & inside, 255.0, 0.0)
    if interior is not None and np.any(interior):
        interior = np.asarray(interior)
        s = src[triangles][:, :, :2]
        src_area2 = (s[:, 1, 0] - s[:, 0, 0]) * (s[:, 2, 1] - s[:, 0, 1]) - (
            s[:, 2, 0] - s[:, 0, 0]
        ) * (s[:, 1, 1] - s[:, 0, 1])
        stretch = np.clip(np.abs(src_area2) / np.maximum(np.abs(area2), 1e-12), 0.0, 1.0)
        tri_valid = np.where(interior > 0, stretch, 1.0)
        valid = valid * tri_valid[k]
        mouth = covered & (interior[k] == MOUTH_INTERIOR)
        if np.any(mouth):
            # Squared: a seam stretched 3x is 90 % mouth, not 66 %.
            st = stretch[k[mouth]][:, None] ** 2
            out[mouth] = out[mouth] * st + np.array(MOUTH_RGB) * (1.0 - st)
    pixels = np.where(covered[:, None], np.floor(out + 0.5), 0.0).astype(np.uint8)
    validity = np.floor(valid + 0.5).astype(np.uint8)
    return WarpResult(pixels.reshape(size, size, 3), validity.reshape(size, size))


def warp_to(rig: WarpRig, target_mesh: np.ndarray) -> WarpResult:
    """The enrolled photo moved to ``target_mesh (478, 3)`` crop px."""
    dst = target_points(rig, target_mesh)
    return warp_image(
        rig.source, rig.points, dst, rig.triangles, rig.interior, image_f64=rig.source_f64
    )


RIG_FORMAT = "talkinghead.warp-rig"
RIG_VERSION = "1"
_RIG_DTYPES = {
    "source": np.uint8,
    "points": np.float32,
    "kinds": np.uint8,
    "triangles": np.int32,
    "interior": np.uint8,
}


def rig_to_bytes(rig: WarpRig) -> bytes:
    """The rig as a safetensors file (``rig.safetensors`` in a pack; the C library reads it)."""
    from safetensors.numpy import save

    arrays = {k: np.ascontiguousarray(getattr(rig, k), dtype=d) for k, d in _RIG_DTYPES.items()}
    return save(arrays, metadata={"format": RIG_FORMAT, "version": RIG_VERSION})


def rig_from_bytes(data: bytes, where: str = "rig.safetensors") -> WarpRig:
    """Parse and validate a rig file; InvalidInputError naming what is wrong."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        arrays = load(data)
    except (SafetensorError, ValueError, OSError) as exc:
        raise InvalidInputError(f"{where}: not a readable safetensors file: {exc}") from exc
    for key, dtype in _RIG_DTYPES.items():
        if key not in arrays or arrays[key].dtype != dtype:
            raise InvalidInputError(f"{where}: needs a {np.dtype(dtype).name} tensor {key!r}")
    src, pts, kinds, tris, interior = (arrays[k] for k in _RIG_DTYPES)
    n = len(pts)
    if src.ndim != 3 or src.shape[0] != src.shape[1] or src.shape[2] != 3 or src.shape[0] < 32:
        raise InvalidInputError(f"{where}: source must be (S, S, 3), got {src.shape}")
    if pts.ndim != 2 or pts.shape[1] != 3 or n < NUM_MESH_POINTS or not np.all(np.isfinite(pts)):
        raise InvalidInputError(f"{where}: points must be finite (N >= {NUM_MESH_POINTS}, 3)")
    if kinds.shape != (n,) or kinds.max(initial=0) > FIXED:
        raise InvalidInputError(f"{where}: kinds must be (N,) values 0..{FIXED}")
    if tris.ndim != 2 or tris.shape[1] != 3 or len(tris) == 0 or tris.min() < 0 or tris.max() >= n:
        raise InvalidInputError(f"{where}: triangles must be (M, 3) indices below {n}")
    if len(tris) >= 1 << _TRI_BITS:
        raise InvalidInputError(f"{where}: more than {1 << _TRI_BITS} triangles")
    if interior.shape != (len(tris),) or interior.max(initial=0) > MOUTH_INTERIOR:
        raise InvalidInputError(f"{where}: interior must be (M,) values 0..{MOUTH_INTERIOR}")
    return WarpRig(src, pts, kinds, tris, interior)


def refiner_input(warped: WarpResult, landmark_image: np.ndarray) -> np.ndarray:
    """The refiner's input ``(1, 7, S, S) float32`` in [-1, 1].

    Channels: warped RGB, the rasterised target landmarks, validity; each uint8 value v
    becomes ``v / 127.5 - 1``.
    """
    stacked = np.concatenate(
        [warped.image, landmark_image, warped.validity[..., None]], axis=-1
    ).astype(np.float32)
    return np.ascontiguousarray(np.moveaxis(stacked / 127.5 - 1.0, -1, 0)[None])


def landmarks68(mesh: np.ndarray) -> np.ndarray:
    """The 68 iBUG points of a ``(478, 3)`` mesh: ``(68, 2) float32``."""
    return np.asarray(mesh)[MEDIAPIPE_TO_68, :2].astype(np.float32)


__all__ = [
    "FIXED",
    "HALF",
    "HEAD",
    "MESH",
    "WarpResult",
    "WarpRig",
    "build_rig",
    "check_mesh",
    "landmarks68",
    "refiner_input",
    "rig_from_bytes",
    "rig_to_bytes",
    "rigid_fit",
    "target_points",
    "warp_image",
    "warp_to",
]
