"""Runtime tuning: which precision and thread count runs each runtime fastest on a machine.

``export`` measures every model of a pack at every candidate thread count on the build
machine (:func:`measure_configs`) and records the result in the manifest's ``tuning``
entry (:func:`tuning_record`)::

    "tuning": {
      "machine": {"cpu": "...", "cores": 2},
      "measured": "2026-12-05T12:00:00Z",
      "runs": 20,
      "results": [{"runtime": "executorch", "precision": "int8", "num_threads": 2,
                   "ms_median": 2.3}, ...],
      "best": {"executorch": {"precision": "int8", "num_threads": 2, "ms_median": 2.3}, ...}
    }

``Avatar`` then runs the recorded best configuration of its runtime unless told otherwise
(:func:`tuned_config`). The figures belong to the machine that measured them: a phone
app that ships the pack should tune on the phone (the C ABI takes its thread count from
``th_options``).
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from talkinghead.errors import BackendError, InvalidInputError, PackError


@dataclass(frozen=True)
class TunedConfig:
    """The fastest measured configuration of one runtime."""

    precision: str
    num_threads: int
    ms_median: float


def candidate_threads(cores: int | None = None) -> list[int]:
    """Thread counts worth measuring: 1, 2, 4, ... up to the machine's cores, and the cores.

    One thread can win on a small graph (no hand-offs between operators), so 1 is always in.
    """
    cores = cores or os.cpu_count() or 1
    out = {1, cores}
    n = 2
    while n < cores:
        out.add(n)
        n *= 2
    return sorted(out)


def cpu_name() -> str:
    """The CPU's model name (Linux), else the platform's processor string."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure_configs(
    models: Sequence[tuple[str, str, bytes]],
    inputs: np.ndarray,
    open_backend: Callable[[str, int], Any],
    *,
    threads: Iterable[int] | None = None,
    runs: int = 20,
    warmup: int = 3,
    rounds: int = 2,
) -> list[dict[str, Any]]:
    """Median latency of every (runtime, precision) model at every thread count.

    models: ``(runtime, precision, model bytes)``; inputs ``(N, 1, C, S, S) float32``, run in
    turn; open_backend(runtime, num_threads) returns an unloaded backend. Every
    configuration is measured ``rounds`` times, round-robin, ``runs`` timed calls each, and
    the median of all its calls kept: a burst of other work on a shared CPU then lands on
    every configuration alike instead of on whichever ran during it. A thread count the
    runtime refuses (ExecuTorch's process-wide pool while another program holds it) is left
    out of the results, not fatal.
    """
    if runs < 1 or warmup < 0 or rounds < 1:
        raise InvalidInputError(
            f"runs and rounds must be >= 1 and warmup >= 0, got {runs}, {rounds}, {warmup}"
        )
    if inputs.ndim != 5 or len(inputs) == 0:
        raise InvalidInputError(f"inputs must be (N, 1, C, S, S), got {inputs.shape}")
    counts = sorted(set(threads if threads is not None else candidate_threads()))
    if not counts or any(not isinstance(t, int) or t < 1 for t in counts):
        raise InvalidInputError(f"thread counts must be ints >= 1, got {counts}")
    times: dict[tuple[int, int], list[float]] = {}
    for _ in range(rounds):
        for i, (runtime, precision, data) in enumerate(models):
            for n in counts:
                try:
                    backend = open_backend(runtime, n)
                except BackendError:
                    continue
                with backend:
                    backend.load_bytes(data, source=f"{runtime}/{precision}")
                    for k in range(warmup):
                        backend.run(inputs[k % len(inputs)])
                    got = times.setdefault((i, n), [])
                    for k in range(runs):
                        t0 = time.perf_counter()
                        backend.run(inputs[k % len(inputs)])
                        got.append(time.perf_counter() - t0)
    return [
        {
            "runtime": models[i][0],
            "precision": models[i][1],
            "num_threads": n,
            "ms_median": round(1e3 * float(np.median(t)), 3),
        }
        for (i, n), t in sorted(times.items())
    ]


def best_configs(results: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The fastest row per runtime: ``{runtime: {"precision", "num_threads", "ms_median"}}``."""
    best: dict[str, dict[str, Any]] = {}
    for r in results:
        cur = best.get(r["runtime"])
        if cur is None or r["ms_median"] < cur["ms_median"]:
            best[r["runtime"]] = {k: r[k] for k in ("precision", "num_threads", "ms_median")}
    return best


def tuning_record(results: list[dict[str, Any]], runs: int, rounds: int = 1) -> dict[str, Any]:
    """The manifest's ``tuning`` entry for ``results`` measured on this machine now."""
    return {
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count() or 1},
        "measured": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "runs": runs,
        "rounds": rounds,
        "results": results,
        "best": best_configs(results),
    }


def check_tuning(tuning: Any, have: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Validate a manifest's ``tuning`` entry; PackError naming the first bad key.

    have: the (runtime, precision) pairs the pack has models for; a best configuration must
    name one of them.
    """
    if not isinstance(tuning, Mapping):
        raise PackError(f"manifest: key 'tuning' must be an object, got {type(tuning).__name__}")
    best = tuning.get("best")
    if not isinstance(best, Mapping):
        raise PackError("manifest: key 'tuning.best' must be an object")
    models = set(have)
    for runtime, cfg in best.items():
        where = f"tuning.best.{runtime}"
        if not isinstance(cfg, Mapping):
            raise PackError(f"manifest: key '{where}' must be an object")
        precision, threads, ms = cfg.get("precision"), cfg.get("num_threads"), cfg.get("ms_median")
        if not isinstance(precision, str):
            raise PackError(f"manifest: key '{where}.precision' must be a string")
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise PackError(f"manifest: key '{where}.num_threads' must be an int >= 1")
        if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not ms > 0:
            raise PackError(f"manifest: key '{where}.ms_median' must be a positive number")
        if (runtime, precision) not in models:
            raise PackError(f"manifest: '{where}' names {runtime}/{precision}, which has no model")
    return dict(tuning)


def tuned_config(tuning: Mapping[str, Any] | None, runtime: str) -> TunedConfig | None:
    """The recorded fastest configuration of ``runtime``; None when the pack has none."""
    if not tuning:
        return None
    cfg = tuning.get("best", {}).get(runtime)
    if cfg is None:
        return None
    return TunedConfig(cfg["precision"], int(cfg["num_threads"]), float(cfg["ms_median"]))


__all__ = [
    "TunedConfig",
    "best_configs",
    "candidate_threads",
    "check_tuning",
    "cpu_name",
    "measure_configs",
    "tuned_config",
    "tuning_record",
]
