"""Stages around the generator: tracking, rasterising, retargeting, encoding, GEMM peak.

pytest benchmarks/ --benchmark-only -k "not generator"
"""

from __future__ import annotations

import numpy as np
import pytest

from talkinghead.benchmarks.generators import demo_neutral


@pytest.mark.parametrize("resolution", [128, 256])
def test_rasterise(benchmark, resolution):
    from talkinghead.models.rasterize import rasterize_landmarks

    img = benchmark(rasterize_landmarks, demo_neutral(resolution), resolution)
    assert img.shape == (resolution, resolution, 3)


def test_track_video_mode(benchmark):
    from skimage import data

    from talkinghead.sdk.tracker import FaceTracker, FaceTrackerOptions, RunningMode

    photo, ts = data.astronaut(), iter(range(0, 10**9, 40))
    with FaceTracker.create_from_options(FaceTrackerOptions(running_mode=RunningMode.VIDEO)) as tr:
        faces = benchmark(lambda: tr.detect_for_video(photo, next(ts)))
    assert len(faces) == 1


def test_retarget(benchmark):
    from talkinghead.sdk.retarget import relative_motion

    neutral = demo_neutral(128)
    driver = np.stack([neutral * 1.5 + 3, neutral * 1.5 + 4])
    out = benchmark(relative_motion, driver[1:], neutral, driver[0])
    assert out.shape == (1, 68, 2)


def test_encode_h264_25_frames(benchmark, tmp_path):
    from talkinghead.sdk.media import write_mp4

    frames = [np.full((128, 128, 3), i * 10, np.uint8) for i in range(25)]
    path = benchmark.pedantic(write_mp4, (frames, tmp_path / "a.mp4"), rounds=3)
    assert path.stat().st_size > 0


def test_gemm_peak(benchmark):
    from talkinghead.benchmarks.core import gemm_peak_gflops

    gflops = benchmark.pedantic(gemm_peak_gflops, (1024, 3), rounds=1)
    benchmark.extra_info["gflops"] = gflops
    assert gflops > 0
