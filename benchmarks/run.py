"""The benchmark suite in one command: every figure, measured in one run, into one report.

    python -m talkinghead.benchmarks.run            # full: every refiner variant at 256 px
    python -m talkinghead.benchmarks.run --quick    # a few minutes: the shipped refiner everywhere
    python -m talkinghead.benchmarks.run --tiny --out /tmp/b   # seconds; what the tests run

Writes ``<out>/report.md``, ``<out>/results.json`` (every raw figure) and ``<out>/img/*.png``.
Exported models are cached in ``--cache`` (default ``~/.cache/talkinghead/bench``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import logging
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from talkinghead.errors import InvalidInputError

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path.home() / ".cache" / "talkinghead" / "bench"


@dataclass(frozen=True)
class Mode:
    """What one run measures. Backends None means every backend registered and usable here."""

    name: str
    variants: tuple[str, ...] | None  # None: every registered refiner
    resolutions: tuple[int, ...]
    backends: tuple[str, ...] | None
    precisions: tuple[str, ...]
    repeats: int
    budget_s: float  # per latency figure; slow models stop early (at least 3 timed calls)
    gemm_n: int
    gemm_repeats: int
    teachers: tuple[str, ...] | None  # None: every registered teacher
    scaling_resolutions: tuple[int, ...]
    e2e_frames: int
    finetune_steps: int
    memory: bool
    external: bool


MODES = {
    "full": Mode("full", None, (256,), None, ("fp32", "int8"), 50, 4.0, 2048, 8, None,
                 (64, 128, 192, 256, 384), 60, 100, True, True),
    "quick": Mode("quick", ("refiner-s",), (256,), None, ("fp32", "int8"), 20, 1.5, 1024, 5,
                  ("teacher-xs",), (64, 128, 256), 20, 5, True, True),
    "tiny": Mode("tiny", ("refiner-xs",), (64,), ("torch",), ("fp32",), 5, 0.3, 256, 3,
                 ("teacher-xs",), (64, 128), 3, 1, True, False),
}  # fmt: skip


def _ready_backends(mode: Mode) -> list[str]:
    from talkinghead.benchmarks.generators import backend_ready
    from talkinghead.sdk.backends import available_backends

    wanted = mode.backends or tuple(available_backends())
    return [b for b in wanted if backend_ready(b)]


def _tracking(quick: bool, out: Path, pack: Callable[[], Path]) -> tuple[dict, str]:
    from talkinghead.benchmarks import tracking

    plot = out / "img" / "tracking_jitter.png"
    r = tracking.measure(quick=quick, progress=False, plot=plot)
    return r, tracking.to_markdown(r) + f"\n\n![tracking jitter](img/{plot.name})\n"


def _runtimes(quick: bool, out: Path, pack: Callable[[], Path]) -> tuple[dict, str]:
    from talkinghead.benchmarks import runtimes

    models = runtimes.measure_runtimes(pack(), repeats=10 if quick else 30)
    sizes = runtimes.pack_sizes(pack())
    return {"models": models, "pack_sizes": sizes}, runtimes.markdown(models, sizes)


def _provenance(quick: bool, out: Path, pack: Callable[[], Path]) -> tuple[dict, str]:
    from talkinghead.benchmarks import provenance

    with tempfile.TemporaryDirectory() as tmp:
        r = provenance.run(
            Path(tmp),
            pack(),
            frames=16 if quick else 64,
            fp_trials=300 if quick else 1500,
            repeats=30 if quick else 200,
        )
        shutil.copy(Path(tmp) / "provenance.png", out / "img" / "provenance.png")
    return r, provenance.markdown(r) + "\n\n![provenance](img/provenance.png)\n"


def _native(quick: bool, out: Path, pack: Callable[[], Path]) -> tuple[dict, str]:
    """The C ABI's th_render per frame (talkinghead_bench) beside the Python SDK's ExecuTorch
    path on the same motion; builds the library with CMake first (incremental)."""
    from talkinghead.bindings.build import plot_latency
    from talkinghead.bindings.native import compare_paths

    frames = 50 if quick else 300
    pairs = compare_paths(pack(), frames=frames)
    rows = []
    for native, python in pairs:
        rows.append(
            {
                "precision": native["precision"],
                "frames": frames,
                "resolution": native["resolution"],
                **{f"native_{k}": native[k] for k in ("median_ms", "min_ms", "max_ms")},
                **{f"python_{k}": python[k] for k in ("median_ms", "min_ms", "max_ms")},
                "native_warp_median_ms": native["warp_median_ms"],
                "python_warp_median_ms": python["warp_median_ms"],
                "drive_median_ms": native["drive_median_ms"],
            }
        )
    plot = out / "img" / "native_latency.png"
    plot_latency([native for native, _ in pairs], str(plot))
    lines = [
        "`th_render` (warp, rasterise, refiner, conversions, watermark) timed per frame in "
        "C++ by `talkinghead_bench`, against the same work through the Python SDK's "
        f"ExecuTorch path (`bindings.native.run_python_benchmark`), demo pack, {frames} "
        "frames of head turns and mouth motion after 5 warm-up frames, ExecuTorch's default "
        "thread pool. The warp columns time the warp alone (`th_warp`, `sdk.warp.warp_to`).\n",
        "| precision | px | native median ms | native fastest ms | Python median ms | "
        "Python fastest ms | Python / native (medians) | native warp ms | Python warp ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['precision']} | {r['resolution']} | {r['native_median_ms']:.2f} | "
            f"{r['native_min_ms']:.2f} | {r['python_median_ms']:.2f} | {r['python_min_ms']:.2f} | "
            f"{r['python_median_ms'] / r['native_median_ms']:.1f}x | "
            f"{r['native_warp_median_ms']:.2f} | {r['python_warp_median_ms']:.2f} |"
        )
    drive_ms = statistics.median(r["drive_median_ms"] for r in rows)
    lines.append(
        f"\n`th_drive` (a raw 478-point MediaPipe mesh to a finished frame: One Euro smoothing, "
        f"retargeting, then the warp and `th_render`'s work) takes {drive_ms:.2f} ms a frame "
        "(median over both precisions).\n"
    )
    lines.append(f"![native render latency per frame](img/{plot.name})")
    return {"rows": rows}, "\n".join(lines)


def _speed(quick: bool, out: Path, pack: Callable[[], Path]) -> tuple[dict, str]:
    """int8 against fp32 per runtime at every thread count, the live loop through the C
    ABI, and the CLI's cold start (benchmarks/speed.py)."""
    from talkinghead.benchmarks import speed

    r = speed.run(pack(), runs=30 if quick else 100, frames=60 if quick else 200)
    plot = out / "img" / "speed.png"
    speed.plot(r, plot)
    return r, speed.markdown(r) + f"\n\n![int8 and fp32 per runtime](img/{plot.name})\n"


# Benchmarks other parts of the project own, each run through its own module's API.
EXTERNAL = {
    "speed": _speed,
    "tracking": _tracking,
    "runtimes": _runtimes,
    "provenance": _provenance,
    "native": _native,
}


def _external(name: str, quick: bool, out: Path, pack: Callable[[], Path]) -> dict[str, Any]:
    """Run another stage's benchmark; a failure is recorded in the report, not raised."""
    try:
        figures, markdown = EXTERNAL[name](quick, out, pack)
    except Exception as e:  # another stage's benchmark failing must not sink this report
        log.warning("benchmarks.%s failed: %s", name, e)
        return {"error": f"{type(e).__name__}: {e}"[:500]}
    return {"figures": json.loads(json.dumps(figures, default=str)), "markdown": markdown}


def _memory(rows: list[dict]) -> list[dict[str, Any]]:
    """Peak RSS of each runtime on the shipped refiner (else the first case), each in a fresh process."""
    from talkinghead.benchmarks.core import peak_rss_in_subprocess
    from talkinghead.benchmarks.generators import TRAINED

    cases = [(r["variant"], r["resolution"]) for r in rows]
    headline = TRAINED if TRAINED in cases else cases[0]
    out = []
    for r in rows:
        if (r["variant"], r["resolution"]) != headline or "error" in r:
            continue
        args = ["--backend", r["backend"], "--variant", r["variant"]]
        args += ["--resolution", str(r["resolution"])]
        args += ["--file", r["path"]] if "path" in r else []
        try:
            fig = peak_rss_in_subprocess("talkinghead.benchmarks.memory", args)
        except Exception as e:
            fig = {"error": str(e)[:300]}
        out.append(
            {
                "variant": r["variant"],
                "resolution": r["resolution"],
                "backend": r["backend"],
                "precision": r["precision"],
                **fig,
            }
        )
    return out


def _demo_file(rows: list[dict], backend: str, precision: str, cache: Path) -> Path | None:
    """The shipped refiner's model file for ``backend`` (None for eager torch)."""
    from talkinghead.benchmarks.generators import TRAINED, Case, build_generator, export_cached

    want = (*TRAINED, backend, precision)
    for r in rows:
        if (r["variant"], r["resolution"], r["backend"], r["precision"]) == want:
            return Path(r["path"]) if "path" in r else None
    if backend == "torch":
        return None
    case = Case(*TRAINED)
    return export_cached(build_generator(case), case, backend, precision, cache)[0]


def run(mode: Mode, out: Path, cache: Path, command: str, progress: bool = True) -> dict[str, Any]:
    """Measure everything ``mode`` asks for; write results.json, report.md and img/; return results."""
    import torch

    from talkinghead.benchmarks import core, generators, report, stages
    from talkinghead.models.registry import list_models
    from talkinghead.packs import DEFAULT_REFINER, weights_path
    from talkinghead.pipeline import DEFAULT_TEACHER

    t_start = time.perf_counter()
    out, cache = Path(out), Path(cache)
    (out / "img").mkdir(parents=True, exist_ok=True)
    backends = _ready_backends(mode)
    if not backends:
        raise InvalidInputError(f"none of the backends {mode.backends} can run here")
    variants = mode.variants or tuple(list_models(generators.GENERATOR_KIND))
    teachers = mode.teachers or tuple(list_models("teacher"))
    res: dict[str, Any] = {
        "meta": {
            "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": command,
            "mode": asdict(mode),
            "machine": core.machine_info(),
            "backends": backends,
        }
    }
    steps = tqdm(total=8, desc=f"benchmarks ({mode.name})", disable=not progress)

    def step(label: str) -> None:
        steps.set_postfix_str(label)
        steps.update(1)

    # The peak is sampled at the start, middle and end and the best kept: on a shared CPU
    # one sample can land in someone else's burst.
    def peak_sample() -> float:
        return core.gemm_peak_gflops(mode.gemm_n, mode.gemm_repeats)

    samples = [peak_sample()]
    step("GEMM peak")
    res["enrolment"] = stages.enrolment(mode.finetune_steps, progress=False)
    step("enrolment")
    # The shipped refiner's files come from the astronaut's avatar pack (the product's own
    # export), which the other stages' benchmarks use too; every other case is exported and
    # cached here.
    pack = functools.cache(lambda: stages.demo_pack(cache, progress=progress))
    exported = any(b in generators.EXPORTED for b in backends)
    rows = []
    cases = [generators.Case(v, r) for v in variants for r in mode.resolutions]
    for case in tqdm(cases, desc="generators", disable=not progress, leave=False):
        files = stages.pack_files(pack()) if case.trained and exported else None
        rows += generators.measure_case(
            case, backends, list(mode.precisions), cache, mode.repeats, mode.budget_s, None, files
        )
    res["generators"] = rows
    samples.append(peak_sample())
    step("generators")
    res["teachers"] = [generators.measure_teacher(t, mode.repeats, mode.budget_s) for t in teachers]
    res["scaling"] = [
        generators.scaling_row(v, s, mode.repeats, mode.budget_s)
        for v in variants
        for s in mode.scaling_resolutions
    ]
    res["ratios"] = report.teacher_student_ratios(res["teachers"], res["scaling"])
    step("teachers, scaling")
    res["rasterise"] = stages.rasterise(sorted({256, *mode.resolutions}), mode.repeats)
    res["warp"] = stages.warp(sorted({256, *mode.resolutions}), mode.repeats)
    e2e_backend = "executorch" if "executorch" in backends else backends[0]
    e2e_precision = "int8" if e2e_backend != "torch" and "int8" in mode.precisions else "fp32"
    res["end_to_end"] = stages.end_to_end(
        mode.e2e_frames,
        e2e_backend,
        e2e_precision,
        _demo_file(rows, e2e_backend, e2e_precision, cache),
        progress=False,
    )
    step("rasterise, warp, end to end")
    res["memory"] = _memory(rows) if mode.memory else []
    step("memory")
    res["sizes"] = [
        {"file": name, "bytes": weights_path(name).stat().st_size}
        for name in (DEFAULT_TEACHER, DEFAULT_REFINER)
    ] + [{"file": r["file"], "bytes": r["file_bytes"]} for r in rows if "file" in r]
    if mode.external:
        res["external"] = {n: _external(n, mode.name != "full", out, pack) for n in EXTERNAL}
    else:
        res["external"] = {}
    step("other stages")
    samples.append(peak_sample())
    res["gemm_peak"] = {
        "n": mode.gemm_n,
        "threads": torch.get_num_threads(),
        "gflops": max(samples),
        "samples_gflops": samples,
    }
    for r in rows + res["teachers"]:
        if "latency_ms" in r:
            r["fraction_of_peak"] = core.fraction_of_peak(r["macs"], r["latency_ms"], max(samples))
    res["meta"]["duration_s"] = round(time.perf_counter() - t_start, 1)
    report.write(res, out)
    step("report")
    steps.close()
    return res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = ap.add_mutually_exclusive_group()
    size.add_argument(
        "--quick", action="store_true", help="a few minutes: the shipped refiner only"
    )
    size.add_argument("--tiny", action="store_true", help="seconds: eager torch, one small case")
    ap.add_argument("--out", type=Path, default=Path("benchmarks"), help="report folder")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="exported-model cache")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    mode = MODES["quick" if args.quick else "tiny" if args.tiny else "full"]
    command = "python -m talkinghead.benchmarks.run " + shlex.join(argv or sys.argv[1:])
    res = run(mode, args.out, args.cache, command.strip())
    print(f"wrote {args.out / 'report.md'} in {res['meta']['duration_s']:.0f} s")


if __name__ == "__main__":
    main()
