"""Accuracy of the 478 -> 68 mapping against a real 68-point detector (dlib).

    python -m talkinghead.benchmarks.landmark_accuracy [--refine]

dlib's 68-point shape predictor (iBUG 300-W convention) runs on real face photos that ship
with installed packages (scikit-image's astronaut, matplotlib's Grace Hopper) and on
flipped, rotated and rescaled copies of them. The NME is the mean point-to-point distance
between MediaPipe's mapped 68 points and dlib's, divided by dlib's inter-ocular distance
(outer eye corners 36 and 45). dlib is a reference, not ground truth: both detectors err.

``--refine`` searches, point by point, the mesh vertices near the current choice for the
one closest to dlib, fitting on one identity and reporting on the other (and back), so the
gain shown is on a face the search did not see.

Needs the ``eval`` extra (dlib-bin, face-recognition-models); the runtime never imports it.
"""

from __future__ import annotations

import argparse
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from talkinghead.errors import BackendError, ModelAssetError

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"


def dlib_predictor_path() -> Path:
    """The 68-point model inside the face-recognition-models package, found without importing
    it (its ``__init__`` needs ``pkg_resources``, which recent setuptools dropped)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelAssetError(
            "face-recognition-models is not installed: pip install 'talkinghead[eval]'"
        )
    path = Path(spec.submodule_search_locations[0]) / "models" / PREDICTOR_FILE
    if not path.is_file():
        raise ModelAssetError(f"dlib predictor not found at {path}")
    return path


class DlibLandmarks:
    """dlib's HOG face detector + 68-point shape predictor: image -> (68, 2) px or None."""

    def __init__(self) -> None:
        try:
            import dlib
        except ImportError as exc:
            raise BackendError("dlib is not installed: pip install 'talkinghead[eval]'") from exc
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(dlib_predictor_path()))

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        boxes = self._detector(np.ascontiguousarray(image), 1)
        if not boxes:
            return None
        box = max(boxes, key=lambda b: b.area())
        shape = self._predictor(image, box)
        # dlib gives integer pixel indices; +0.5 puts them at pixel centres like MediaPipe's.
        return np.array([(p.x + 0.5, p.y + 0.5) for p in shape.parts()], np.float64)


def evaluation_photos() -> dict[str, np.ndarray]:
    """Real photos and simple variants: name -> (H, W, 3) uint8. Names start with the identity."""
    from PIL import Image

    from talkinghead.sdk.photos import builtin_photo

    out = {}
    for who in ("astronaut", "grace_hopper"):
        img = builtin_photo(who)
        pil = Image.fromarray(img)
        out[who] = img
        out[f"{who}/flip"] = img[:, ::-1].copy()
        for deg in (-12, 12):
            out[f"{who}/rot{deg:+d}"] = np.asarray(pil.rotate(deg, Image.Resampling.BICUBIC))
        for scale in (0.6, 1.6):
            size = (round(img.shape[1] * scale), round(img.shape[0] * scale))
            out[f"{who}/x{scale}"] = np.asarray(pil.resize(size, Image.Resampling.LANCZOS))
    return out


@dataclass
class Sample:
    name: str
    mesh: np.ndarray  # (478, 3) px, MediaPipe
    ref: np.ndarray  # (68, 2) px, dlib

    @property
    def iod(self) -> float:
        return float(np.linalg.norm(self.ref[36] - self.ref[45]))

    def errors(self, mapping: np.ndarray) -> np.ndarray:
        """(68,) point errors / inter-ocular distance."""
        return np.linalg.norm(self.mesh[mapping, :2] - self.ref, axis=1) / self.iod


def collect_samples(progress: bool = True) -> list[Sample]:
    """Track every evaluation photo with MediaPipe (IMAGE mode) and dlib; keep both-found."""
    from talkinghead.sdk.tracker import FaceTracker, FaceTrackerOptions, largest_face

    dlib_lm = DlibLandmarks()
    samples = []
    with FaceTracker.create_from_options(FaceTrackerOptions()) as tracker:
        photos = evaluation_photos()
        for name, img in tqdm(photos.items(), desc="photos", disable=not progress):
            faces, ref = tracker.detect(img), dlib_lm(img)
            if faces and ref is not None:
                samples.append(Sample(name, largest_face(faces).landmarks.copy(), ref))
    return samples


def nme(samples: list[Sample], mapping: np.ndarray) -> float:
    """Mean NME over samples (fraction of the inter-ocular distance)."""
    return float(np.mean([s.errors(mapping).mean() for s in samples]))


# iBUG 68 mirror partners (subject's right <-> left); midline points are their own partner.
IBUG_MIRROR = np.array(
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30, 35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65]
)  # fmt: skip


def mesh_mirror(mesh: np.ndarray, mapping: np.ndarray) -> np.ndarray:
    """(468,) index of each mesh vertex's mirror image, in 3D.

    The symmetry plane is fitted to the current mapping's mirror pairs (symmetric by
    construction); each vertex reflected across it is matched to its nearest vertex.
    """
    pts = mesh[:468].astype(np.float64)
    a, b = pts[mapping], pts[mapping[IBUG_MIRROR]]
    normal = (b - a)[IBUG_MIRROR > np.arange(68)].mean(axis=0)  # right -> left, each pair once
    normal /= np.linalg.norm(normal)
    centre = ((a + b) / 2).mean(axis=0)
    reflected = pts - 2 * ((pts - centre) @ normal)[:, None] * normal
    return np.linalg.norm(reflected[:, None] - pts[None], axis=2).argmin(axis=1)


def refine_mapping(samples: list[Sample], mapping: np.ndarray, k: int = 12) -> np.ndarray:
    """Per mirror pair of iBUG points, the pair of mirror mesh vertices, among the ``k``
    nearest (on the mean face) to the current choice, with the lowest mean error to dlib on
    ``samples``. The result stays mirror-symmetric; iris points (468+) are excluded."""
    # A common frame: each mesh scaled by its inter-ocular distance, centred on its mean.
    normed = [(s.mesh[:468, :2] - s.mesh[:468, :2].mean(0)) / s.iod for s in samples]
    mean_face = np.mean(normed, axis=0)
    frontal = min(samples, key=lambda s: abs(s.mesh[1, 0] - s.mesh[[33, 263], 0].mean()))
    mirror = mesh_mirror(frontal.mesh, mapping)
    refs = np.stack([s.ref for s in samples])
    meshes = np.stack([s.mesh[:468, :2] for s in samples])
    iods = np.array([s.iod for s in samples])

    def err(i: int, verts: np.ndarray) -> np.ndarray:
        return (np.linalg.norm(meshes[:, verts] - refs[:, i : i + 1], axis=2) / iods[:, None]).mean(
            0
        )

    out = mapping.copy()
    for i, v in enumerate(mapping):
        j = int(IBUG_MIRROR[i])
        if j < i:
            continue  # chosen with its partner
        cand = np.argsort(np.linalg.norm(mean_face - mean_face[v], axis=1))[:k]
        if i == j:
            cand = np.concatenate([[v], cand[mirror[cand] == cand]])  # midline vertices only
            out[i] = cand[int(np.argmin(err(i, cand)))]
        else:
            best = int(np.argmin(err(i, cand) + err(j, mirror[cand])))
            out[i], out[j] = cand[best], mirror[cand[best]]
    return out


def measure(quick: bool = False, progress: bool = True) -> dict:
    """NME of the shipped mapping vs dlib, per photo and per region; with cross-identity refinement.

    ``quick`` uses the original photos only (no variants) and skips refinement.
    """
    from talkinghead.sdk.landmarks import MEDIAPIPE_TO_68

    samples = collect_samples(progress)
    if quick:
        samples = [s for s in samples if "/" not in s.name]
    regions = {"jaw": range(0, 17), "brows": range(17, 27), "nose": range(27, 36),
               "eyes": range(36, 48), "mouth": range(48, 68)}  # fmt: skip
    per_point = np.mean([s.errors(MEDIAPIPE_TO_68) for s in samples], axis=0)
    result: dict = {
        "photos": [s.name for s in samples],
        "nme": nme(samples, MEDIAPIPE_TO_68),
        "nme_per_photo": {s.name: float(s.errors(MEDIAPIPE_TO_68).mean()) for s in samples},
        "nme_per_region": {r: float(per_point[list(ix)].mean()) for r, ix in regions.items()},
        "per_point": per_point.tolist(),
    }
    if not quick:
        ids = sorted({s.name.split("/")[0] for s in samples})
        cross = {}
        for held in ids:
            fit = [s for s in samples if not s.name.startswith(held)]
            test = [s for s in samples if s.name.startswith(held)]
            refined = refine_mapping(fit, MEDIAPIPE_TO_68)
            cross[held] = {"before": nme(test, MEDIAPIPE_TO_68), "after": nme(test, refined)}
        result["held_out_refinement"] = cross
        result["refined_on_all"] = refine_mapping(samples, MEDIAPIPE_TO_68).tolist()
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="original photos only, no refinement")
    args = ap.parse_args(argv)
    r = measure(quick=args.quick)
    print("| photo | NME vs dlib (% IOD) |\n|---|---|")
    for name, v in r["nme_per_photo"].items():
        print(f"| {name} | {100 * v:.2f} |")
    print(f"| **mean** | **{100 * r['nme']:.2f}** |\n\n| region | NME (% IOD) |\n|---|---|")
    for name, v in r["nme_per_region"].items():
        print(f"| {name} | {100 * v:.2f} |")
    if "held_out_refinement" in r:
        print("\n| held-out identity | NME before | NME after refinement |\n|---|---|---|")
        for name, v in r["held_out_refinement"].items():
            print(f"| {name} | {100 * v['before']:.2f} | {100 * v['after']:.2f} |")
        print("\nrefined on all photos:", r["refined_on_all"])


if __name__ == "__main__":
    main()
