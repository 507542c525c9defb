"""Measuring tools shared by every benchmark: medians, PSNR, MACs, the machine and its GEMM peak.

Timings are medians of repeated calls after a warm-up; figures carry units in their names
(``_ms``, ``_gflops``, ``_bytes``).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from talkinghead.errors import InvalidInputError
from talkinghead.sdk.tuning import cpu_name


def median_ms(
    fn: Callable[[], Any], repeats: int, warmup: int = 3, budget_s: float | None = None
) -> float:
    """Median wall time of ``fn()`` in ms over ``repeats`` calls, after ``warmup`` untimed calls.

    With ``budget_s``, stop early once that much time went into timed calls (at least 3 of
    them), so a slow model (a 256 px teacher) does not hold the whole run.
    """
    if repeats < 1 or warmup < 0:
        raise InvalidInputError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    for _ in range(warmup):
        fn()
    times: list[float] = []
    for _ in range(repeats):
        times.append(_time_once(fn))
        if budget_s is not None and len(times) >= 3 and sum(times) > budget_s:
            break
    return 1000 * float(np.median(times))


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of ``a`` against ``b``, images in [-1, 1]; capped at 100 dB (identical
    outputs give a finite number that JSON can hold)."""
    from talkinghead.sdk.parity import psnr_db as parity_psnr_db

    return float(min(parity_psnr_db(a, b), 100.0))


def count_macs(model: Any, inputs: tuple) -> int:
    """Multiply-accumulates of one forward pass: convolutions, linear layers and matmuls.

    Uses torch's FlopCounterMode (which counts 2 FLOPs per MAC and honours conv groups);
    element-wise ops, norms and resizes are not counted.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    # Counted with autograd on: the counter's module tracker hooks into autograd and fails on
    # tensors made under no_grad from parameters (the teacher's AdaIN slices).
    counter = FlopCounterMode(display=False)
    with counter, torch.enable_grad():
        model(*inputs)
    return int(counter.get_total_flops()) // 2


def count_params(model: Any) -> int:
    """Number of parameters (every tensor in ``model.parameters()``)."""
    return int(sum(p.numel() for p in model.parameters()))


def machine_info() -> dict[str, Any]:
    """Who measured: CPU, cores, torch threads, OS, library versions."""
    import torch

    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for mod in ("executorch", "onnxruntime", "ai_edge_litert", "mediapipe", "numpy"):
        try:
            from importlib.metadata import version

            versions[mod] = version(mod.replace("_", "-"))
        except Exception:  # not installed: the report says so by leaving it out
            pass
    return {
        "cpu": cpu_name(),
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "os": platform.platform(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "versions": versions,
    }


def gemm_peak_gflops(n: int = 1024, repeats: int = 10, threads: int | None = None) -> float:
    """Best-of-``repeats`` fp32 GEMM throughput of ``torch.mm`` on n x n matrices, GFLOP/s.

    This is the machine's practical matrix-multiply limit at ``threads`` (default: torch's
    current thread count), the yardstick for every generator's achieved fraction.
    """
    import torch

    if n < 16 or repeats < 1:
        raise InvalidInputError(f"need n >= 16 and repeats >= 1, got {n}, {repeats}")
    old = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
        out = torch.empty(n, n)
        torch.mm(a, b, out=out)  # warm-up: page in, pick kernels
        best = min(_time_once(lambda: torch.mm(a, b, out=out)) for _ in range(repeats))
    finally:
        torch.set_num_threads(old)
    return 2 * n**3 / best / 1e9


def _time_once(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def fraction_of_peak(macs: int, latency_ms: float, peak_gflops: float) -> float:
    """Achieved share of the GEMM peak: 2 * MACs / latency / peak."""
    if latency_ms <= 0 or peak_gflops <= 0:
        raise InvalidInputError(f"latency and peak must be positive: {latency_ms}, {peak_gflops}")
    return 2 * macs / (latency_ms / 1e3) / (peak_gflops * 1e9)


def peak_rss_in_subprocess(module: str, args: list[str], timeout_s: float = 300) -> dict:
    """Run ``python -m module args`` and return the JSON it prints on its last stdout line.

    Native runtimes allocate outside Python's heap, so peak memory is the child's own
    high-water mark (``VmHWM`` in /proc/self/status), read by the child itself.
    """
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{module} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def vm_hwm_bytes() -> int:
    """This process's peak resident set size in bytes (/proc VmHWM, else getrusage maxrss)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
