"""Training pairs for the refiner: what a warp cannot produce, with real pixels as the answer.

A pseudo-video made with the same warp would teach the refiner nothing (it would learn
the identity). So the target of every pair is a real, unwarped photo, and the *source*
is made worse than the photo in exactly the ways a warp fails:

1. **Open mouth, teeth.** In photos with parted lips (several of the faces smile with
   teeth), the source's mouth is closed by moving the lower lips onto the upper ones:
   the teeth vanish from the source. Warping it back to the photo's mesh stretches the
   lips' seam over the opening, and the refiner must draw the real mouth interior.
2. **Eyes.** The source's eyes are closed (blinks of random depth); warped back open,
   the iris and the white are missing, and the real eye is the answer.
3. **Out-of-plane rotation.** The source's head is turned in 3D (yaw up to 28 deg,
   pitch 14, roll 10) with the mesh's z, so the far cheek, the side of the nose and the
   hair behind the face are squeezed or hidden (the warp's z-test). Warped back, those
   regions are smeared or missing, as in a real turn, and the photo holds what was there.
4. **Expression and seams.** Random jaw, smile and brow motion in the source leaves the
   seams and stretch of two warps, which the refiner learns to clean.
5. **Lighting.** The photo is colour-, brightness- and contrast-jittered before the pair
   is made (source and target alike), so the refiner's drawn pixels follow the lighting
   of the face around them rather than an average face's. It does not relight the face:
   the warp keeps the photo's own lighting, which is the person's.

Every photo is also used mirrored (tracked again), and each pair's crop box is jittered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from talkinghead.errors import InvalidInputError
from talkinghead.sdk.enrol import crop_with_mesh
from talkinghead.sdk.landmarks import MEDIAPIPE_TO_68
from talkinghead.sdk.mesh_motion import apply_mesh_motion, propagate
from talkinghead.sdk.motion import MotionParams
from talkinghead.sdk.rasterize import rasterize_landmarks
from talkinghead.sdk.warp import WarpRig, build_rig, warp_to


@dataclass
class RefinePairs:
    """``N`` training pairs at ``S`` px, all uint8.

    Attributes:
        warped: ``(N, S, S, 3)`` the degraded source warped to the photo's mesh.
        landmarks: ``(N, S, S, 3)`` the rasterised target landmarks.
        validity: ``(N, S, S)`` the warp's validity.
        target: ``(N, S, S, 3)`` the real photo.
        ids: ``(N,)`` photo index.
        shots: ``(N, S, S, 3)`` or None: the degraded source itself (the photo at another
            pose and expression), what a person's other photos look like. The teacher's E
            embeds the shots of the *other* pairs of the same photo.
        shot_landmarks: ``(N, S, S, 3)`` or None: the shots' rasterised landmarks.
        shot_meshes: ``(N, 478, 3) float32`` or None: the shots' meshes, crop px.
        target_meshes: ``(N, 478, 3) float32`` or None: the target photo's mesh, crop px
            (where the teacher warps its shots to).
    """

    warped: np.ndarray
    landmarks: np.ndarray
    validity: np.ndarray
    target: np.ndarray
    ids: np.ndarray
    shots: np.ndarray | None = None
    shot_landmarks: np.ndarray | None = None
    shot_meshes: np.ndarray | None = None
    target_meshes: np.ndarray | None = None


def close_mouth(mesh: np.ndarray) -> np.ndarray:
    """The mesh with its lower lips moved up onto the upper ones (teeth hidden)."""
    lm = mesh[MEDIAPIPE_TO_68, :2].astype(np.float64).copy()
    gap = float(lm[[65, 66, 67], 1].mean() - lm[[61, 62, 63], 1].mean())
    if gap <= 0.5:
        return mesh
    lm[[65, 66, 67], 1] -= gap
    lm[[55, 56, 57, 58, 59], 1] -= gap
    lm[[5, 6, 7, 8, 9, 10, 11], 1] -= 0.7 * gap
    return propagate(mesh, lm)


def degrade(mesh: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A source pose from which the photo's own pose cannot be warped back losslessly."""
    blink = rng.uniform(0.4, 1.0) if rng.random() < 0.35 else 0.0
    params = MotionParams(
        jaw_open=float(rng.uniform(0, 0.5)) if rng.random() < 0.3 else 0.0,
        smile=float(rng.uniform(0, 0.8)) if rng.random() < 0.3 else 0.0,
        blink_left=blink,
        blink_right=blink if rng.random() < 0.85 else 0.0,
        brow_raise=float(rng.uniform(-0.6, 0.8)) if rng.random() < 0.3 else 0.0,
        yaw=float(rng.uniform(-28, 28)) if rng.random() < 0.7 else 0.0,
        pitch=float(rng.uniform(-14, 14)) if rng.random() < 0.5 else 0.0,
        roll=float(rng.uniform(-10, 10)) if rng.random() < 0.4 else 0.0,
    )
    base = close_mouth(mesh) if rng.random() < 0.5 else mesh
    return apply_mesh_motion(base, params)


def _jitter_colour(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    gain = rng.uniform(0.75, 1.25) * rng.uniform(0.9, 1.1, size=3)
    contrast = rng.uniform(0.8, 1.2)
    x = image.astype(np.float32)
    mean = x.mean()
    x = (x - mean) * contrast + mean
    return np.clip(x * gain, 0, 255).astype(np.uint8)


def make_pair(
    photo: np.ndarray,
    mesh: np.ndarray,
    landmarks68: np.ndarray,
    size: int,
    rng: np.random.Generator,
    with_shot: bool = False,
) -> tuple[np.ndarray, ...]:
    """One pair from a tracked photo: ``(warped, landmarks, validity, target)`` uint8.

    With ``with_shot``, also the degraded source as a shot: ``(..., shot image, its
    landmark image, its mesh (478, 3) float32, the target's mesh (478, 3) float32)``.
    """
    scale = rng.uniform(1.8, 2.3)
    shift = rng.uniform(-0.06, 0.06, size=2) * np.ptp(landmarks68, axis=0).max()
    # The box follows the shifted landmarks; the mesh is mapped into it as it is.
    target, tmesh, _ = crop_with_mesh(photo, mesh, landmarks68 + shift, size, scale)
    tmesh = tmesh.astype(np.float64)
    target = _jitter_colour(target, rng)
    src_mesh = degrade(tmesh, rng)
    source = warp_to(build_rig(target, tmesh), src_mesh).image
    back = warp_to(build_rig(source, src_mesh), tmesh)
    lm_img = rasterize_landmarks(tmesh[MEDIAPIPE_TO_68, :2].astype(np.float32), size)
    if not with_shot:
        return back.image, lm_img, back.validity, target
    shot_lm = rasterize_landmarks(src_mesh[MEDIAPIPE_TO_68, :2].astype(np.float32), size)
    shot = (source, shot_lm, src_mesh.astype(np.float32), tmesh.astype(np.float32))
    return back.image, lm_img, back.validity, target, *shot


def make_refine_pairs(
    photos: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    pairs_per_photo: int,
    size: int = 256,
    seed: int = 0,
    progress: bool = True,
    with_shots: bool = False,
) -> RefinePairs:
    """Pairs from tracked photos ``{name: (image, mesh (478, 3) px, landmarks68 px)}``.

    ``with_shots`` also keeps each pair's degraded source as a shot (the teacher's data).
    """
    if not photos or pairs_per_photo < 1:
        raise InvalidInputError("need at least one photo and one pair per photo")
    n = len(photos) * pairs_per_photo
    out = RefinePairs(
        np.empty((n, size, size, 3), np.uint8),
        np.empty((n, size, size, 3), np.uint8),
        np.empty((n, size, size), np.uint8),
        np.empty((n, size, size, 3), np.uint8),
        np.empty(n, np.int64),
    )
    if with_shots:
        out.shots = np.empty((n, size, size, 3), np.uint8)
        out.shot_landmarks = np.empty((n, size, size, 3), np.uint8)
        out.shot_meshes = np.empty((n, len(next(iter(photos.values()))[1]), 3), np.float32)
        out.target_meshes = np.empty_like(out.shot_meshes)
    rng = np.random.default_rng(seed)
    jobs = [(i, name) for i, name in enumerate(photos) for _ in range(pairs_per_photo)]
    for k, (i, name) in enumerate(tqdm(jobs, desc="refiner pairs", disable=not progress)):
        image, mesh, lm68 = photos[name]
        w, lm, v, t, *shot = make_pair(image, mesh, lm68, size, rng, with_shots)
        out.warped[k], out.landmarks[k], out.validity[k], out.target[k] = w, lm, v, t
        if with_shots:
            out.shots[k], out.shot_landmarks[k], out.shot_meshes[k], out.target_meshes[k] = shot
        out.ids[k] = i
    return out


def shot_rigs(shots: np.ndarray, shot_meshes: np.ndarray) -> list[WarpRig]:
    """Warp rigs of K shots ``(K, S, S, 3) uint8`` and their meshes ``(K, 478, 3)`` crop px."""
    if shots.ndim != 4 or len(shots) != len(shot_meshes):
        raise InvalidInputError(
            f"need (K, S, S, 3) shots and as many meshes, got {shots.shape} and "
            f"{np.shape(shot_meshes)}"
        )
    return [
        build_rig(s, np.asarray(m, np.float64)) for s, m in zip(shots, shot_meshes, strict=True)
    ]


def warp_shots(rigs: list[WarpRig], target_mesh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """K shots of a face (their :func:`shot_rigs`) warped to a target's mesh ``(478, 3)``
    crop px, as the teacher's E sees them: ``(K, S, S, 3) uint8`` warped shots and
    ``(K, S, S) uint8`` their validity (K may be 0)."""
    s = rigs[0].source.shape[0] if rigs else 0
    warped = np.empty((len(rigs), s, s, 3), np.uint8)
    validity = np.empty((len(rigs), s, s), np.uint8)
    tmesh = np.asarray(target_mesh, np.float64)
    for i, rig in enumerate(rigs):
        out = warp_to(rig, tmesh)
        warped[i], validity[i] = out.image, out.validity
    return warped, validity


def track_photos(images: dict[str, np.ndarray], mirror: bool = True) -> dict:
    """Track each photo (and its mirror image): ``{name: (image, mesh, landmarks68)}``."""
    from talkinghead.sdk.tracker import FaceTracker, FaceTrackerOptions

    out = {}
    with FaceTracker.create_from_options(FaceTrackerOptions()) as tracker:
        for name, image in images.items():
            for flip in (False, True) if mirror else (False,):
                img = np.ascontiguousarray(image[:, ::-1]) if flip else image
                face = tracker.track_image(img)
                out[name + (":mirror" if flip else "")] = (img, face.landmarks, face.landmarks68)
    return out


__all__ = [
    "RefinePairs",
    "close_mouth",
    "degrade",
    "make_pair",
    "make_refine_pairs",
    "shot_rigs",
    "track_photos",
    "warp_shots",
]
