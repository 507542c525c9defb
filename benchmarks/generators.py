"""Generator benchmarks: every refiner variant x resolution x backend x precision, and the teachers.

A case is one refiner variant (the phone's universal student of the warp-and-refine
generator) at one resolution. ``refiner-s`` at 256 px uses the shipped weights; every
other case is randomly initialised (seed 0) and labelled untrained: latency does not
depend on the weights, quality does. Inputs are real refiner inputs: the astronaut photo,
enrolled at the case's resolution, warped along built-in motion, with its rasterised
landmarks and validity.

Exported files are cached under ``cache_dir`` keyed by variant, resolution, backend,
precision and a hash of the weights and library versions, so reruns skip the export.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from talkinghead.benchmarks.core import (
    count_macs,
    count_params,
    median_ms,
    psnr_db,
)
from talkinghead.errors import BackendError, InvalidInputError

# Importing the architectures registers their variants (list_models needs them).
from talkinghead.models.refiner import IN_CHANNELS, create_refiner
from talkinghead.models.teacher import create_teacher

log = logging.getLogger(__name__)

GENERATOR_KIND = "refiner"  # the registry kind every case is built from
TRAINED = ("refiner-s", 256)  # the only refiner with shipped weights
CALIBRATION_FRAMES = 16
QUALITY_FRAMES = 8
# Backends that run an exported file -> the distribution whose version keys the cache.
EXPORTED = {"executorch": "executorch", "litert": "litert-torch", "onnxruntime": "onnx"}


@dataclass(frozen=True)
class Case:
    """One refiner variant at one resolution (px)."""

    variant: str
    resolution: int

    @property
    def trained(self) -> bool:
        return (self.variant, self.resolution) == TRAINED

    @property
    def weights(self) -> str:
        return "trained (shipped)" if self.trained else "random, untrained (latency only)"


@functools.cache
def demo_rig(resolution: int):
    """The astronaut photo enrolled at ``resolution`` px: its warp rig (``sdk.warp.WarpRig``)."""
    from talkinghead.packs import enrol_photo

    return enrol_photo("astronaut", size=resolution).rig


def demo_neutral(resolution: int) -> np.ndarray:
    """(68, 2) float32 crop px: the demo face's neutral landmarks at ``resolution``."""
    from talkinghead.sdk.warp import landmarks68

    return landmarks68(demo_rig(resolution).mesh)


def motion_inputs(resolution: int, frames: int, seed: int) -> torch.Tensor:
    """(frames, 7, S, S) float32 refiner inputs along built-in motion of the demo face."""
    from talkinghead.sdk.mesh_motion import builtin_mesh_motion
    from talkinghead.sdk.rasterize import rasterize_landmarks
    from talkinghead.sdk.warp import landmarks68, refiner_input, warp_to

    rig = demo_rig(resolution)
    meshes = builtin_mesh_motion(rig.mesh, frames, seed=seed)
    x = [
        refiner_input(warp_to(rig, m), rasterize_landmarks(landmarks68(m), resolution))[0]
        for m in meshes
    ]
    return torch.from_numpy(np.stack(x))


def build_generator(case: Case) -> torch.nn.Module:
    """The eager fp32 refiner of ``case`` in eval mode (shipped weights or seed-0 random)."""
    from talkinghead.models.checkpoint import load_checkpoint
    from talkinghead.packs import DEFAULT_REFINER, weights_path

    if case.trained:
        return load_checkpoint(weights_path(DEFAULT_REFINER), GENERATOR_KIND).eval()
    torch.manual_seed(0)
    return create_refiner(case.variant, resolution=case.resolution).eval()


def build_teacher_generator(name: str) -> tuple[torch.nn.Module, int]:
    """A teacher's generator bound to a fixed identity (psi from a random e): (module, px).

    Per frame the teacher runs G only; E and the projection run once at enrolment.
    """
    from talkinghead.train.finetune import Enrolled

    torch.manual_seed(0)
    t = create_teacher(name).eval()
    with torch.no_grad():
        psi = t.G.psi(torch.randn(1, t.cfg.e_dim))
    return Enrolled(t.G, psi).eval(), t.cfg.resolution


def teacher_input(g: torch.nn.Module, res: int) -> torch.Tensor:
    """A frame's input for a bound teacher generator: landmark image or refiner input."""
    return torch.zeros(1, g.G.in_channels, res, res)


def backend_ready(name: str) -> bool:
    """Registered, its runtime importable, and (for file backends) its exporter importable."""
    from talkinghead.sdk.backends import available_backends, create_backend

    if name not in available_backends():
        return False
    try:
        if name in EXPORTED:
            create_backend(name).close()
            _exporter(name)
    except (BackendError, ImportError) as e:
        log.warning("backend %s is registered but not usable here: %s", name, e)
        return False
    return True


def _exporter(backend: str):
    """(export function, file-name function) of the project's exporter for ``backend``."""
    if backend == "executorch":
        from talkinghead.export.executorch import export_executorch, pte_filename

        return export_executorch, pte_filename
    if backend == "litert":
        from talkinghead.export.litert import export_litert, tflite_filename

        return export_litert, tflite_filename
    if backend == "onnxruntime":
        from talkinghead.export.onnx import export_onnx, onnx_filename

        return export_onnx, onnx_filename
    raise InvalidInputError(f"no exporter for backend {backend!r}")


def weights_hash(model: torch.nn.Module, backend: str) -> str:
    """12 hex digits over the state dict and the exporter's library version."""
    h = hashlib.sha256(f"{backend}:{version(EXPORTED[backend])}".encode())
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def export_cached(
    model: torch.nn.Module, case: Case, backend: str, precision: str, cache_dir: Path
) -> tuple[Path, float | None]:
    """Export (or reuse) ``model`` for ``backend``; returns (file, export seconds or None if cached)."""
    export, filename = _exporter(backend)
    tag = "trained" if case.trained else "random"
    name = f"{case.variant}_{case.resolution}px_{tag}_{weights_hash(model, backend)}"
    path = Path(cache_dir) / filename(name, precision == "int8")
    if path.is_file() and path.stat().st_size > 0:
        return path, None
    path.parent.mkdir(parents=True, exist_ok=True)
    q = precision == "int8"
    calib = motion_inputs(case.resolution, CALIBRATION_FRAMES, seed=101) if q else None
    t0 = time.perf_counter()
    export(
        model,
        model.get_example_inputs(),
        path,
        quantize=q,
        calibration=[(x[None],) for x in calib] if q else None,
    )
    return path, time.perf_counter() - t0


def open_backend(backend: str, model: torch.nn.Module, path: Path | None) -> Any:
    """A loaded runtime at torch's thread count: eager ``model``, or ``backend`` over ``path``."""
    from talkinghead.sdk.backends import create_backend

    if backend == "torch":
        return create_backend("torch", module=model)
    rt = create_backend(backend, num_threads=torch.get_num_threads())
    rt.load(path)
    return rt


def measure_case(
    case: Case,
    backends: list[str],
    precisions: list[str],
    cache_dir: Path,
    repeats: int,
    budget_s: float,
    reference: torch.nn.Module | None = None,
    files: dict[tuple[str, str], Path] | None = None,
) -> list[dict[str, Any]]:
    """One row per (backend, precision) of ``case``: latency, size, MACs, quality.

    Every runtime runs at torch's thread count, so all share one yardstick with the GEMM peak.

    quality: PSNR of each runtime against the eager fp32 refiner on held-out motion, and,
    with ``reference`` (a teacher the refiner imitates, on the same inputs), against it.
    files: already exported models by (backend, precision), e.g. an avatar pack's; the
    others are exported (and cached) here.
    """
    model = build_generator(case)
    x_lat = motion_inputs(case.resolution, 1, seed=7).numpy()
    x_q = motion_inputs(case.resolution, QUALITY_FRAMES, seed=202)
    with torch.no_grad():
        eager = model(x_q).numpy()
        teacher_out = reference(x_q).numpy() if reference is not None else None
    macs, params = count_macs(model, model.get_example_inputs()), count_params(model)
    rows, runtimes = [], {}
    try:
        for backend in backends:
            for precision in precisions:
                if backend == "torch" and precision != "fp32":
                    continue  # eager PyTorch has no int8 runtime for this graph, only fake-quant
                row: dict[str, Any] = {
                    "variant": case.variant,
                    "resolution": case.resolution,
                    "weights": case.weights,
                    "backend": backend,
                    "precision": precision,
                    "macs": macs,
                    "params": params,
                }
                rows.append(row)
                try:
                    path = (files or {}).get((backend, precision))
                    if path is None and backend in EXPORTED:
                        path, export_s = export_cached(model, case, backend, precision, cache_dir)
                        row["export_s"] = None if export_s is None else round(export_s, 1)
                    if path is not None:
                        row.update(file=path.name, path=str(path), file_bytes=path.stat().st_size)
                    rt = open_backend(backend, model, path)
                    runtimes[(backend, precision)] = rt
                    outs = np.concatenate([rt.run(x[None]) for x in x_q.numpy()])
                except Exception as e:  # one failing runtime must not sink the report
                    log.warning("%s %s %s failed: %s", case, backend, precision, e)
                    row["error"] = f"{type(e).__name__}: {e}"[:300]
                    runtimes.pop((backend, precision), None)
                    continue
                row["psnr_vs_fp32_db"] = psnr_db(outs, eager)
                if teacher_out is not None:
                    row["psnr_vs_teacher_db"] = psnr_db(outs, teacher_out)
        # One runtime at a time: an idle runtime's spinning worker threads would otherwise
        # steal the cores from the one being timed.
        for row in rows:
            rt = runtimes.get((row["backend"], row["precision"]))
            if rt is not None:
                row["latency_ms"] = median_ms(lambda rt=rt: rt.run(x_lat), repeats, 2, budget_s)
    finally:
        for rt in runtimes.values():
            rt.close()
    return rows


def measure_teacher(name: str, repeats: int, budget_s: float) -> dict[str, Any]:
    """Eager fp32 latency, MACs and parameters of one teacher's per-frame generator."""
    g, res = build_teacher_generator(name)
    x = teacher_input(g, res)
    with torch.inference_mode():
        ms = median_ms(lambda: g(x), repeats, 1, budget_s)
    return {
        "variant": name,
        "resolution": res,
        "backend": "torch",
        "precision": "fp32",
        "weights": "random, untrained (latency only)",
        "macs": count_macs(g, (x,)),
        "params": count_params(g),
        "latency_ms": ms,
    }


def scaling_row(variant: str, resolution: int, repeats: int, budget_s: float) -> dict[str, Any]:
    """Eager fp32 latency and MACs of a refiner at ``resolution``: how cost scales with size.

    Random weights at every size (the cost does not depend on them)."""
    torch.manual_seed(0)
    m = create_refiner(variant, resolution=resolution).eval()
    x = torch.zeros(1, IN_CHANNELS, resolution, resolution)
    with torch.inference_mode():
        ms = median_ms(lambda: m(x), repeats, 2, budget_s)
    return {
        "variant": variant,
        "resolution": resolution,
        "macs": count_macs(m, (x,)),
        "latency_ms": ms,
    }
