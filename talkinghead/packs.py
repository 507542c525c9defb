"""Avatar packs of the warp-and-refine generator: enrol a photo, attach the universal refiner.

Enrolling a face is tracking, cropping and writing the pack: seconds, no training.

- The refiner is universal, so its exported models depend only on the checkpoint: they are
  exported once per (checkpoint, runtime, precision) and reused for every face. The
  shipped refiner's ExecuTorch models ship prebuilt in ``talkinghead/weights/refiner-s/``;
  everything else is exported on first use into ``$TALKINGHEAD_CACHE/refiner/``.
- Per face: the photo is tracked, cropped around the face (hair and neck included), and
  its rig (crop, mesh, anchors, triangles) is written as ``rig.safetensors``. Parity
  vectors are made from this face's own warps, and every model is run on them before the
  pack is written.
- ``finetune_steps > 0`` (``--finetune``) fine-tunes a copy of the refiner on this one
  face's own degraded pairs first: minutes, for those who want the last dB.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from talkinghead.errors import BackendError, InvalidInputError
from talkinghead.export.registry import PRECISIONS, RUNTIMES, ExportContext, export_model
from talkinghead.sdk.files import check_output_folder
from talkinghead.sdk.pack_schema import BUNDLED_ATOL, PARITY_FP32_MAX_ABS, PARITY_INT8_MIN_PSNR_DB

log = logging.getLogger(__name__)

DEFAULT_REFINER = "refiner-s.safetensors"
PREBUILT_DIR = "refiner-s"
CALIBRATION_FRAMES = 24
PARITY_FRAMES = 2
TUNING_RUNS = 10  # timed runs per (model, thread count) and round; the median is recorded
TUNING_ROUNDS = 2  # round-robin passes over every configuration


def weights_path(name: str) -> Path:
    """A file shipped in ``talkinghead/weights`` (see its README)."""
    from importlib import resources

    return Path(str(resources.files("talkinghead") / "weights" / name))


@dataclass(frozen=True)
class EnrolledFace:
    """A photo ready for a pack: its name, crop, mesh and rig, and what enrolment found."""

    name: str
    crop: np.ndarray
    mesh: np.ndarray
    rig: object  # sdk.warp.WarpRig
    warnings: tuple[str, ...]
    seconds: float


def enrol_photo(
    photo: str | os.PathLike[str] | np.ndarray, size: int = 256, face_index: int | None = None
) -> EnrolledFace:
    """Track the photo's face, crop it and build its warp rig.

    photo: a path, a built-in name (``astronaut``, ``grace_hopper``) or an RGB array.
    face_index: which face of a photo with several (left to right); default the largest.
    """
    from talkinghead.errors import NoFaceError
    from talkinghead.sdk.enrol import enrol_face
    from talkinghead.sdk.faces import detect_faces, implausible_face
    from talkinghead.sdk.photos import load_photo
    from talkinghead.sdk.tracker import FaceTracker, FaceTrackerOptions, largest_face
    from talkinghead.sdk.warp import build_rig

    t0 = time.perf_counter()
    if isinstance(photo, np.ndarray):
        name, image = "photo", photo
    else:
        name, image = load_photo(photo)
    with FaceTracker.create_from_options(FaceTrackerOptions(num_faces=8)) as tracker:
        faces = detect_faces(tracker, image)  # tiles too: the small faces of a group photo
    if not faces:
        raise NoFaceError(f"no face found in {name}")
    if len(faces) > 1:
        listed = ", ".join(
            f"{i}: {f.bbox[2] - f.bbox[0]:.0f} px at x={f.bbox[0]:.0f}" for i, f in enumerate(faces)
        )
        log.info(
            "%s: %d faces, left to right (pick one with --face N): %s", name, len(faces), listed
        )
    if face_index is None:
        face = largest_face(faces)
    else:
        ordered = sorted(faces, key=lambda f: f.bbox[0])
        if not 0 <= face_index < len(ordered):
            raise InvalidInputError(
                f"face {face_index} asked for, but {name} has {len(ordered)} face(s) "
                f"(0..{len(ordered) - 1}, left to right)"
            )
        face = ordered[face_index]
    problems = implausible_face(face.landmarks)
    if problems:
        raise NoFaceError(
            f"what was found in {name} does not look like a human face: {'; '.join(problems)}"
        )
    enrolled = enrol_face(image, face, size)
    rig = build_rig(enrolled.crop, enrolled.mesh)
    return EnrolledFace(
        name, enrolled.crop, enrolled.mesh, rig, enrolled.warnings, time.perf_counter() - t0
    )


def _face_inputs(rig, frames: int, seed: int) -> np.ndarray:
    """Refiner inputs ``(frames, 1, 7, S, S) float32`` along built-in motion of a rig."""
    from talkinghead.sdk.mesh_motion import builtin_mesh_motion
    from talkinghead.sdk.rasterize import rasterize_landmarks
    from talkinghead.sdk.warp import landmarks68, refiner_input, warp_to

    meshes = builtin_mesh_motion(rig.mesh, frames, seed=seed)
    return np.stack(
        [
            refiner_input(warp_to(rig, m), rasterize_landmarks(landmarks68(m), rig.size))
            for m in meshes
        ]
    )


def _cache_root() -> Path:
    from talkinghead.sdk.assets import cache_dir

    return Path(cache_dir()) / "refiner"


def _checkpoint_key(path: Path) -> str:
    from talkinghead.models.refiner import ARCH_VERSION

    # The exported graph depends on the weights and on what forward() computes with them
    # (the same weights under a new forward() are another model): ARCH_VERSION says which.
    h = hashlib.sha256(path.read_bytes())
    h.update(f"refiner-arch-{ARCH_VERSION}".encode())
    return h.hexdigest()[:16]


# Per runtime, the distributions whose versions an exported file depends on (executorch
# has no __version__ attribute: ask the installed distributions).
_EXPORTERS = {
    "executorch": ("executorch",),
    "litert": ("litert-torch", "ai-edge-litert"),
    "onnxruntime": ("onnx", "onnxruntime"),
}


def _exporter_versions(runtime: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in _EXPORTERS[runtime]:
        try:
            out.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            out.append(f"{dist}==none")
    return ",".join(out)


def refiner_models(
    refiner_path: str | os.PathLike[str],
    runtimes: tuple[str, ...] | list[str],
    precisions: tuple[str, ...] | list[str],
    progress: bool = True,
) -> list:
    """The refiner exported to each runtime and precision: ``[ModelSource]``, cached.

    Looks in the shipped prebuilt folder (for the shipped checkpoint), then the cache;
    exports what is missing into the cache. Every file's ModelSource is described in the
    folder's ``sources.json``.
    """
    refiner_path = Path(refiner_path)
    key = _checkpoint_key(refiner_path)
    folders = [weights_path(PREBUILT_DIR), _cache_root() / key]
    wanted = [(r, p) for r in runtimes for p in precisions]
    found: dict[tuple[str, str], list] = {}
    for folder in folders:
        for (r, p), sources in _read_sources(folder, key).items():
            if (r, p) in wanted and (r, p) not in found:
                found[(r, p)] = sources
    missing = [w for w in wanted if w not in found]
    if missing:
        folder = folders[1]
        folder.mkdir(parents=True, exist_ok=True)
        found.update(_export_refiner(refiner_path, folder, key, missing, progress))
    return [s for w in wanted for s in found[w]]


def _read_sources(folder: Path, key: str) -> dict[tuple[str, str], list]:
    from talkinghead.sdk.pack_schema import ModelSource, TensorSpec

    index = folder / "sources.json"
    if not index.is_file():
        return {}
    try:
        data = json.loads(index.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    if data.get("checkpoint_key") != key:
        return {}
    out: dict[tuple[str, str], list] = {}
    for e in data.get("models", []):
        if e.get("exporters") != _exporter_versions(e["runtime"]):
            continue  # made by another version of that runtime's tools: export again
        path = folder / e["file"]
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != e["sha256"]:
            continue  # a stale or damaged file is exported again
        specs = {
            k: None if e.get(k) is None else TensorSpec.from_json(e[k], k)
            for k in ("input", "output")
        }
        bundled = folder / e["bundled"] if e.get("bundled") else None
        out.setdefault((e["runtime"], e["precision"]), []).append(
            ModelSource(
                path,
                e["precision"],
                e["runtime"],
                e["backend"],
                e["format"],
                specs["input"],
                specs["output"],
                e.get("info", {}),
                bundled,
                e.get("bundled_info", {}),
            )  # fmt: skip
        )
    return out


def _export_refiner(refiner_path: Path, folder: Path, key: str, wanted, progress: bool) -> dict:
    """Export ``wanted`` (runtime, precision) pairs into ``folder``; update its sources.json.

    Files are written to a staging folder inside ``folder`` and moved in only when every
    export succeeded; the staging folder is removed on every path (a failed export or a
    failed bundle leaves nothing behind).
    """
    import tempfile

    import torch
    from tqdm.auto import tqdm

    from talkinghead.models.checkpoint import load_checkpoint

    refiner = load_checkpoint(refiner_path, "refiner").eval()
    calib_face = enrol_photo("astronaut", refiner.cfg.resolution)
    calib = _face_inputs(calib_face.rig, CALIBRATION_FRAMES, seed=101)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=folder))
    try:
        ctx = ExportContext(
            model=refiner,
            example=refiner.get_example_inputs(),
            out_dir=staging,
            stem=refiner.cfg.name,
            calibration=[(torch.from_numpy(x),) for x in calib],
        )
        staged: dict[tuple[str, str], list] = {}
        for runtime, precision in tqdm(wanted, desc="export refiner", disable=not progress):
            sources = export_model(runtime, precision, ctx)
            if runtime == "executorch":
                sources = [_with_bundle(s, refiner, calib[0], precision) for s in sources]
            staged[(runtime, precision)] = sources
        for f in staging.iterdir():
            os.replace(f, folder / f.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    out = {w: [_moved(s, folder) for s in sources] for w, sources in staged.items()}
    _write_sources(folder, key, out)
    return out


def _moved(source, folder: Path):
    """``source`` with its files' paths in ``folder`` (where the staging folder moved them)."""
    from dataclasses import replace

    bundled = None if source.bundled is None else folder / Path(source.bundled).name
    return replace(source, path=folder / Path(source.path).name, bundled=bundled)


def _with_bundle(source, refiner, x: np.ndarray, precision: str):
    """Attach an ExecuTorch BundledProgram (one self-check case) to a .pte source."""
    from dataclasses import replace

    import torch

    from talkinghead.export.executorch import bundle_pte
    from talkinghead.sdk.backends import create_backend

    path = Path(source.path)
    with create_backend("executorch") as backend:
        backend.load(path)
        y = backend.run(np.ascontiguousarray(x))
    bpte = bundle_pte(
        path, [torch.tensor(x.copy())], [torch.tensor(y.copy())], path.with_suffix(".bpte")
    )
    info = {"test_cases": 1, "atol": BUNDLED_ATOL[precision], "rtol": 0.0}
    return replace(source, bundled=bpte, bundled_info=info)


def _write_sources(folder: Path, key: str, new: dict) -> None:
    index = folder / "sources.json"
    try:
        data = json.loads(index.read_text()) if index.is_file() else {}
    except (OSError, json.JSONDecodeError):
        data = {}
    if data.get("checkpoint_key") != key:
        data = {"checkpoint_key": key, "models": []}
    done = {(e["runtime"], e["precision"]) for e in data["models"]}
    for (r, p), sources in new.items():
        if (r, p) in done:
            data["models"] = [e for e in data["models"] if (e["runtime"], e["precision"]) != (r, p)]
        for s in sources:
            path = Path(s.path)
            data["models"].append(
                {
                    "file": path.name,
                    "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                    "runtime": s.runtime,
                    "exporters": _exporter_versions(s.runtime),
                    "backend": s.backend,
                    "precision": s.precision,
                    "format": s.format,
                    "input": None if s.input is None else s.input.to_json(),
                    "output": None if s.output is None else s.output.to_json(),
                    "info": dict(s.info),
                    "bundled": None if s.bundled is None else Path(s.bundled).name,
                    "bundled_info": dict(s.bundled_info or {}),
                }
            )
    index.write_text(json.dumps(data, indent=1) + "\n")


def export_avatar_pack(
    photo: str | os.PathLike[str] | np.ndarray,
    out_dir: str | os.PathLike[str],
    *,
    refiner: str | os.PathLike[str] | None = None,
    runtimes: tuple[str, ...] | list[str] = ("executorch",),
    precisions: tuple[str, ...] | list[str] = PRECISIONS,
    face_index: int | None = None,
    finetune_steps: int = 0,
    force: bool = False,
    signing_key: bytes | None = None,
    progress: bool = True,
    tune: bool = True,
) -> tuple[Path, dict]:
    """Enrol ``photo`` and write its avatar pack to ``out_dir``: (pack folder, figures).

    Every model is run on this face's parity inputs and must meet the thresholds
    (ParityError otherwise) before the pack is written beside ``out_dir`` and renamed in.
    ``tune``: measure every model at every candidate thread count on this machine and record
    the fastest precision and thread count per runtime in the manifest (``sdk.tuning``),
    which ``Avatar`` then uses by default.
    """
    from talkinghead.errors import ParityError
    from talkinghead.sdk.backends import create_backend
    from talkinghead.sdk.pack import write_pack
    from talkinghead.sdk.parity import psnr_db
    from talkinghead.sdk.warp import landmarks68, rig_to_bytes

    if not precisions or any(p not in PRECISIONS for p in precisions):
        raise InvalidInputError(
            f"precisions must be a non-empty subset of fp32, int8: {precisions}"
        )
    if not runtimes or any(r not in RUNTIMES for r in runtimes):
        raise InvalidInputError(
            f"runtimes must be a non-empty subset of {', '.join(RUNTIMES)}: {runtimes}"
        )
    if not isinstance(finetune_steps, int) or finetune_steps < 0:
        raise InvalidInputError(f"finetune_steps must be an int >= 0, got {finetune_steps!r}")
    out_dir = Path(out_dir)
    check_output_folder(out_dir, force)  # before any work, not after
    refiner_path = Path(refiner) if refiner is not None else weights_path(DEFAULT_REFINER)
    figures: dict = {}
    face = enrol_photo(photo, face_index=face_index)  # a bad photo fails here, before torch
    figures["enrol_s"] = round(face.seconds, 2)
    import torch

    from talkinghead.models.checkpoint import load_checkpoint

    figures["warnings"] = list(face.warnings)
    tmp_ckpt = None
    if finetune_steps:
        t0 = time.perf_counter()
        tmp_ckpt = _finetune_refiner(refiner_path, face, finetune_steps, out_dir, progress)
        refiner_path = tmp_ckpt
        figures["finetune_s"] = round(time.perf_counter() - t0, 1)
    try:
        t0 = time.perf_counter()
        model = load_checkpoint(refiner_path, "refiner").eval()
        if model.cfg.resolution != face.rig.size:
            raise InvalidInputError(
                f"the refiner is {model.cfg.resolution} px but faces are enrolled at {face.rig.size} px"
            )
        sources = refiner_models(refiner_path, runtimes, precisions, progress)
        figures["models_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        inputs = _face_inputs(face.rig, PARITY_FRAMES, seed=202)
        with torch.no_grad():
            eager = np.stack([model(torch.from_numpy(x)).numpy() for x in inputs])
        parity = {"inputs": inputs, "outputs.eager": eager}
        models = []
        from dataclasses import replace

        for source in sources:
            path = Path(source.path)
            with create_backend(source.runtime) as backend:
                backend.load(path)
                out = np.stack([backend.run(x) for x in inputs])
            measured = {
                "max_abs_vs_eager": float(np.abs(out - eager).max()),
                "psnr_db_vs_eager": round(
                    min(psnr_db(out, eager), 100.0), 2
                ),  # identical: inf, not JSON
            }
            fails = (
                measured["max_abs_vs_eager"] > PARITY_FP32_MAX_ABS
                if source.precision == "fp32"
                else measured["psnr_db_vs_eager"] < PARITY_INT8_MIN_PSNR_DB
            )
            if fails:
                raise ParityError(f"{path.name} misses its parity threshold: {measured}")
            if source.runtime == "executorch":
                parity[f"outputs.{path.name}"] = out
            models.append(replace(source, info={**source.info, "parity": measured}))
        figures["parity_s"] = round(time.perf_counter() - t0, 2)
        tuning = None
        if tune:
            t0 = time.perf_counter()
            # The model Avatar loads for each (runtime, precision): the manifest's first.
            first: dict[tuple[str, str], Any] = {}
            for m in models:
                first.setdefault((m.runtime, m.precision), m)
            tuning = tune_models(
                [(r, p, Path(m.path).read_bytes()) for (r, p), m in first.items()], inputs
            )
            figures["tuning_s"] = round(time.perf_counter() - t0, 2)
            figures["tuning"] = tuning["best"]
        photo_png = None
        from io import BytesIO

        from PIL import Image

        buf = BytesIO()
        Image.fromarray(face.crop).save(buf, format="PNG")
        photo_png = buf.getvalue()
        pack = write_pack(
            out_dir,
            name=face.name,
            resolution=face.rig.size,
            models=models,
            neutral_landmarks=landmarks68(face.mesh),
            rig=rig_to_bytes(face.rig),
            photo=photo_png,  # identity.photo names it: the enrolled crop travels with the pack
            parity=parity,
            parity_info={
                "reference": "outputs.eager",
                "frames": PARITY_FRAMES,
                "fp32_max_abs": PARITY_FP32_MAX_ABS,
                "int8_min_psnr_db": PARITY_INT8_MIN_PSNR_DB,
            },
            provenance={
                "refiner": model.cfg.to_dict(),
                "training": getattr(model, "notes", {}),
                "finetune_steps": finetune_steps,
                "synthetic": True,
                "enrol_warnings": list(face.warnings),
            },
            generator={"refiner": model.cfg.name, "crop_scale": 2.0},
            tuning=tuning,
            overwrite=force,
            signing_key=signing_key,
        )
    finally:
        if tmp_ckpt is not None:
            shutil.rmtree(tmp_ckpt.parent, ignore_errors=True)
    return pack, figures


def tune_models(
    models: list[tuple[str, str, bytes]],
    inputs: np.ndarray,
    runs: int = TUNING_RUNS,
    rounds: int = TUNING_ROUNDS,
) -> dict:
    """The manifest's ``tuning`` entry: every model timed at every candidate thread count.

    ExecuTorch's thread pool is process-wide; it is put back to its size before tuning.
    """
    from talkinghead.sdk.backends import create_backend, executorch_threads, set_executorch_threads
    from talkinghead.sdk.tuning import measure_configs, tuning_record

    def open_backend(runtime: str, n: int):
        return create_backend(runtime, num_threads=n)

    before = executorch_threads() if any(m[0] == "executorch" for m in models) else None
    try:
        results = measure_configs(models, inputs, open_backend, runs=runs, rounds=rounds)
    finally:
        if before is not None:
            with contextlib.suppress(BackendError):
                set_executorch_threads(before)
    if not results:
        raise BackendError("tuning measured nothing: no runtime accepted any thread count")
    return tuning_record(results, runs, rounds)


def _finetune_refiner(
    refiner_path: Path, face: EnrolledFace, steps: int, out_dir: Path, progress: bool
) -> Path:
    """A copy of the refiner fine-tuned on this face's own degraded pairs (opt-in)."""
    import tempfile

    from talkinghead.models.checkpoint import load_checkpoint, save_checkpoint
    from talkinghead.sdk.warp import landmarks68
    from talkinghead.train.refine import RefineTrainConfig, train_refiner
    from talkinghead.train.refine_data import make_refine_pairs

    model = load_checkpoint(refiner_path, "refiner")
    image, mesh = face.crop, face.mesh
    lm68 = landmarks68(mesh)
    pairs = make_refine_pairs(
        {face.name: (image, mesh, lm68)}, 48, face.rig.size, seed=3, progress=progress
    )
    model, _ = train_refiner(
        pairs, model, RefineTrainConfig(steps=steps, lr=3e-4), progress=progress
    )
    folder = Path(tempfile.mkdtemp(prefix="talkinghead-finetune-"))
    notes = dict(getattr(model, "notes", {}) or {})
    notes["finetuned_on"] = face.name
    return save_checkpoint(folder / "refiner-finetuned.safetensors", model, "refiner", **notes)


def prebuild(refiner: str | os.PathLike[str] | None = None, progress: bool = True) -> Path:
    """Export the shipped refiner for every runtime and precision into the package's
    prebuilt folder (``talkinghead/weights/refiner-s``), replacing what is there."""
    refiner_path = Path(refiner) if refiner is not None else weights_path(DEFAULT_REFINER)
    folder = weights_path(PREBUILT_DIR)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    key = _checkpoint_key(refiner_path)
    _export_refiner(
        refiner_path, folder, key, [(r, p) for r in RUNTIMES for p in PRECISIONS], progress
    )
    return folder


__all__ = ["EnrolledFace", "enrol_photo", "export_avatar_pack", "prebuild", "refiner_models"]


if __name__ == "__main__":  # python -m talkinghead.packs: refresh the prebuilt models
    print(prebuild())
