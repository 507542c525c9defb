"""Stages around the generator: tracking, rasterising, the warp, retargeting, encoding, GEMM peak.

pytest benchmarks/ --benchmark-only -k "not generator"
"""

from __future__ import annotations

import numpy as np
import pytest

from talkinghead.benchmarks.generators import demo_neutral, demo_rig


@pytest.mark.parametrize("resolution", [128, 256])
def test_rasterise(benchmark, resolution):
    from talkinghead.sdk.rasterize import rasterize_landmarks

    img = benchmark(rasterize_landmarks, demo_neutral(resolution), resolution)
    assert img.shape == (resolution, resolution, 3)


def test_track_video_mode(benchmark):
    from skimage import data

    from talkinghead.sdk.tracker import FaceTracker, FaceTrackerOptions, RunningMode

    photo, ts = data.astronaut(), iter(range(0, 10**9, 40))
    with FaceTracker.create_from_options(FaceTrackerOptions(running_mode=RunningMode.VIDEO)) as tr:
        faces = benchmark(lambda: tr.detect_for_video(photo, next(ts)))
    assert len(faces) == 1


@pytest.mark.parametrize("resolution", [128, 256])
def test_warp(benchmark, resolution):
    from talkinghead.sdk.mesh_motion import builtin_mesh_motion
    from talkinghead.sdk.warp import warp_to

    rig = demo_rig(resolution)
    target = builtin_mesh_motion(rig.mesh, 2, seed=1)[1]
    out = benchmark(warp_to, rig, target)
    assert out.image.shape == (resolution, resolution, 3)


def test_retarget(benchmark):
    from talkinghead.sdk.mesh_motion import retarget_mesh

    mesh = demo_rig(256).mesh.astype(np.float64)
    out = benchmark(retarget_mesh, mesh * 1.5 + 4, mesh * 1.5 + 3, mesh)
    assert out.shape == (478, 3)


def test_encode_h264_25_frames(benchmark, tmp_path):
    from talkinghead.sdk.media import write_mp4

    frames = [np.full((256, 256, 3), i * 10, np.uint8) for i in range(25)]
    path = benchmark.pedantic(write_mp4, (frames, tmp_path / "a.mp4"), rounds=3)
    assert path.stat().st_size > 0


def test_gemm_peak(benchmark):
    from talkinghead.benchmarks.core import gemm_peak_gflops

    gflops = benchmark.pedantic(gemm_peak_gflops, (1024, 3), rounds=1)
    benchmark.extra_info["gflops"] = gflops
    assert gflops > 0
