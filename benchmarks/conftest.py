"""Fixtures of the pytest-benchmark suite (``pytest benchmarks/ --benchmark-only``).

The suite lives outside the default ``tests`` path: it measures, it does not check.
Exported models come from the same cache as ``python -m talkinghead.benchmarks.run``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def bench_cache() -> Path:
    from talkinghead.benchmarks.run import DEFAULT_CACHE

    return Path(os.environ.get("TALKINGHEAD_BENCH_CACHE", DEFAULT_CACHE))
