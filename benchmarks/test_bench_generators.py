"""Generator latency per backend x precision x resolution x variant, and the teachers.

    pytest benchmarks/ --benchmark-only -k generator

Parametrized over every registered refiner and teacher and every backend usable here, so
a new variant or backend is benchmarked without new code. The first run exports (and
caches) each model; ``python -m talkinghead.benchmarks.run`` gives the same figures as a
report with plots.
"""

from __future__ import annotations

import pytest
import torch

from talkinghead.benchmarks.generators import (
    GENERATOR_KIND,
    Case,
    backend_ready,
    build_generator,
    build_teacher_generator,
    export_cached,
    open_backend,
    teacher_input,
)
from talkinghead.models.refiner import IN_CHANNELS
from talkinghead.models.registry import list_models
from talkinghead.sdk.backends import available_backends

BACKENDS = [b for b in available_backends() if backend_ready(b)]
RUNS = [(b, p) for b in BACKENDS for p in ("fp32", "int8") if not (b == "torch" and p == "int8")]


@pytest.mark.parametrize("resolution", [256])
@pytest.mark.parametrize("variant", list_models(GENERATOR_KIND))
@pytest.mark.parametrize("backend,precision", RUNS)
def test_generator(benchmark, bench_cache, variant, resolution, backend, precision):
    case = Case(variant, resolution)
    model = build_generator(case)
    path = None
    if backend != "torch":
        path = export_cached(model, case, backend, precision, bench_cache)[0]
    rt = open_backend(backend, model, path)
    x = torch.zeros(1, IN_CHANNELS, resolution, resolution).numpy()
    benchmark.extra_info.update(weights=case.weights, file=getattr(path, "name", None))
    try:
        out = benchmark(rt.run, x)
    finally:
        rt.close()
    assert out.shape == (1, 3, resolution, resolution)


@pytest.mark.parametrize("name", list_models("teacher"))
def test_teacher_generator(benchmark, name):
    g, res = build_teacher_generator(name)
    x = teacher_input(g, res)
    with torch.inference_mode():
        out = benchmark.pedantic(g, (x,), rounds=5, warmup_rounds=1)
    assert out.shape == (1, 3, res, res)
