"""The benchmark suite runs (tiny mode) end to end, and its measuring tools count correctly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from talkinghead.benchmarks import core
from talkinghead.errors import InvalidInputError


def test_mac_count_matches_a_hand_count():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 8 out x 3 in x 9 taps x 16 x 16 px
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),  # depthwise: 8 x 1 x 9 x 16 x 16
        nn.Conv2d(8, 4, 1, stride=2),  # pointwise, strided: 4 x 8 x 1 x 8 x 8
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, 10),  # 256 x 10
    )
    hand = 8 * 3 * 9 * 256 + 8 * 9 * 256 + 4 * 8 * 64 + 256 * 10
    assert core.count_macs(model, (torch.zeros(1, 3, 16, 16),)) == hand
    assert core.count_params(model) == (8 * 27 + 8) + (8 * 9 + 8) + (4 * 8 + 4) + (2560 + 10)


def test_fraction_of_peak_and_psnr():
    # 1 GMAC in 100 ms is 20 GFLOP/s: a fifth of a 100 GFLOP/s peak.
    assert core.fraction_of_peak(10**9, 100.0, 100.0) == pytest.approx(0.2)
    with pytest.raises(InvalidInputError, match="positive"):
        core.fraction_of_peak(10**9, 0.0, 100.0)
    a = np.zeros((2, 3), np.float32)
    assert core.psnr_db(a, a) == 100.0
    # MSE 0.04 on a peak of 2: 10 log10(4 / 0.04) = 20 dB.
    assert core.psnr_db(a + 0.2, a) == pytest.approx(20.0, abs=1e-4)
    with pytest.raises(InvalidInputError, match="shapes differ"):
        core.psnr_db(a, a[0])


def test_timing_tools_validate_and_measure():
    with pytest.raises(InvalidInputError, match="repeats"):
        core.median_ms(lambda: None, 0)
    calls = []
    assert core.median_ms(lambda: calls.append(1), 4, warmup=2) >= 0
    assert len(calls) == 6
    assert core.gemm_peak_gflops(128, 2) > 0
    with pytest.raises(InvalidInputError):
        core.gemm_peak_gflops(8)


def test_unusable_backends_are_refused(tmp_path):
    from dataclasses import replace

    from talkinghead.benchmarks.run import MODES, run

    mode = replace(MODES["tiny"], backends=("no-such-runtime",))
    with pytest.raises(InvalidInputError, match="none of the backends"):
        run(mode, tmp_path, tmp_path / "cache", "test", progress=False)


def test_other_stages_benchmarks_are_called_and_their_failures_recorded(monkeypatch, tmp_path):
    from talkinghead.benchmarks import run

    assert set(run.EXTERNAL) == {"speed", "tracking", "runtimes", "provenance", "native"}

    def broken(quick, out, pack):
        raise RuntimeError("no pack today")

    monkeypatch.setitem(run.EXTERNAL, "provenance", broken)
    rec = run._external("provenance", True, tmp_path, lambda: tmp_path)
    assert rec == {"error": "RuntimeError: no pack today"}


@pytest.mark.slow  # builds the C library, then 50 frames x 2 precisions x 2 paths
def test_native_section_times_the_c_abi_beside_python(avatar_pack, tmp_path):
    """The report's native section: th_render and the Python path on the demo pack."""
    from talkinghead.benchmarks import report, run

    (tmp_path / "img").mkdir()
    rec = run._external("native", True, tmp_path, lambda: avatar_pack)
    assert "error" not in rec, rec
    rows = rec["figures"]["rows"]
    assert [r["precision"] for r in rows] == ["fp32", "int8"]
    for r in rows:
        assert r["frames"] == 50 and r["resolution"] == 256
        assert 0 < r["native_min_ms"] <= r["native_median_ms"] <= r["native_max_ms"]
        assert 0 < r["python_min_ms"] <= r["python_median_ms"] <= r["python_max_ms"]
        # The warp is part of every frame; th_drive is a whole frame from a raw mesh.
        assert 0 < r["native_warp_median_ms"] < r["native_median_ms"]
        assert 0 < r["python_warp_median_ms"] < r["python_median_ms"]
        assert r["drive_median_ms"] > r["native_warp_median_ms"]
    assert (tmp_path / "img" / "native_latency.png").stat().st_size > 1000
    section = "\n".join(report._external_sections({"native": rec}))
    assert section.startswith("## Native C ABI (`bindings/native.py`)")
    assert "| int8 | 256 |" in section


@pytest.mark.slow
def test_tiny_run_writes_report_json_and_plots(tmp_path, face_landmarker_task):
    from PIL import Image

    from talkinghead.benchmarks.report import main as report_main
    from talkinghead.benchmarks.run import main

    out = tmp_path / "bench"
    main(["--tiny", "--out", str(out), "--cache", str(tmp_path / "cache")])
    res = json.loads((out / "results.json").read_text())

    meta = res["meta"]
    assert meta["machine"]["cores"] >= 1 and meta["machine"]["cpu"]
    assert meta["command"].startswith("python -m talkinghead.benchmarks.run --tiny")
    assert res["gemm_peak"]["gflops"] > 0
    rows = res["generators"]
    assert rows and all("error" not in r for r in rows)
    for r in rows + res["teachers"]:
        assert r["latency_ms"] > 0 and r["macs"] > 0 and r["params"] > 0
        assert 0 < r["fraction_of_peak"] < 1.5
    assert rows[0]["psnr_vs_fp32_db"] == 100.0  # eager torch against itself
    # The generators are the refiners; doubling the side quadruples a fully convolutional
    # refiner's MACs.
    assert {r["variant"] for r in rows} == {"refiner-xs"}
    scaling = {(r["variant"], r["resolution"]): r["macs"] for r in res["scaling"]}
    assert scaling[("refiner-xs", 128)] == 4 * scaling[("refiner-xs", 64)]
    assert all(r["macs_ratio"] > 1 for r in res["ratios"])
    e2e = res["end_to_end"]
    assert e2e["fps_wall"] > 0 and e2e["track_ms"] > 0 and e2e["render_ms"] > 0
    assert e2e["warp_ms"] > 0 and e2e["resolution"] == 256
    assert res["enrolment"]["enrol_s"] > 0 and res["enrolment"]["rig_bytes"] > 0
    assert res["enrolment"]["finetune_s"] > 0  # the opt-in fine-tuning, one step
    assert [w["resolution"] for w in res["warp"]] == [64, 256]
    assert all(w["latency_ms"] > 0 and w["triangles"] > 800 for w in res["warp"])
    assert res["memory"] and all(
        m["peak_bytes"] >= m["after_import_bytes"] > 0 for m in res["memory"]
    )

    report = (out / "report.md").read_text()
    assert meta["command"] in report and meta["machine"]["cpu"] in report
    assert "not run here" in report and "## The warp" in report
    for png in ("latency_per_backend", "quality_vs_latency", "scaling", "fraction_of_peak"):
        assert f"img/{png}.png" in report
        with Image.open(out / "img" / f"{png}.png") as im:
            assert im.size[0] > 100 and im.size[1] > 100

    # The report re-renders from the JSON alone, with the same figures.
    (out / "report.md").unlink()
    report_main([str(out / "results.json")])
    assert (out / "report.md").read_text() == report


def test_speed_times_every_runtime_and_thread_count_and_the_cold_start():
    """benchmarks/speed.py on the committed pack (int8 on LiteRT and ONNX Runtime): every
    (runtime, precision, threads) row, the fastest, and fresh-process CLI timings."""
    from pathlib import Path

    from talkinghead.benchmarks import speed

    pack = Path(__file__).parent / "data" / "astronaut-pack"
    t = speed.runtime_table(pack, runs=2, rounds=1)
    assert {(r["runtime"], r["num_threads"]) for r in t["rows"]} >= {
        ("litert", 1),
        ("onnxruntime", 1),
    }
    assert t["fastest"]["ms_median"] == min(r["ms_median"] for r in t["rows"])
    assert set(t["per_runtime"]) == {"litert", "onnxruntime"}
    assert "executorch_int8_vs_fastest" not in t  # the pack has no ExecuTorch model
    c = speed.cold_start(runs=1)
    assert c["help"]["exit_status"] == 0 and c["help"]["median_s"] > 0
    assert c["bad_photo"]["exit_status"] == 2
    assert "not a recognised image" in c["bad_photo"]["stderr"]
    md = speed.markdown({"runtimes": t, "cold_start": c})
    assert "| onnxruntime | int8 | 1 |" in md and "talkinghead --help" in md


@pytest.mark.slow  # builds the C library
def test_speed_live_loop_tracks_and_drives_the_native_avatar(avatar_pack, tmp_path):
    from talkinghead.benchmarks import speed

    live = speed.live_loop(avatar_pack, frames=5)
    assert live["frames"] == 5 and live["track_ms"] > 0 and live["drive_ms"] > 0
    assert live["fps_from_medians"] == pytest.approx(
        1000 / (live["track_ms"] + live["drive_ms"]), rel=0.02
    )
    r = {"runtimes": speed.runtime_table(avatar_pack, runs=2, rounds=1), "live": live,
         "cold_start": speed.cold_start(runs=1)}  # fmt: skip
    ratio = r["runtimes"]["executorch_int8_vs_fastest"]
    assert ratio >= 1.0  # against the fastest of all, itself included
    speed.plot(r, tmp_path / "speed.png")
    assert (tmp_path / "speed.png").stat().st_size > 1000


def test_teacher_eval_targets_are_the_pairs_whose_warp_lost_most():
    from talkinghead.benchmarks.teacher_eval import TARGETS_PER_FACE, frame_scores, hole_targets

    validity = np.full((40, 8, 8), 255, np.uint8)
    lost = np.arange(40) % 17  # pair i lost i % 17 pixels
    for i, n in enumerate(lost):
        validity[i].reshape(-1)[:n] = 0
    idx = np.arange(10, 40)
    picked = hole_targets(validity, idx)
    assert len(picked) == TARGETS_PER_FACE and set(picked) <= set(idx)
    assert lost[picked].tolist() == sorted(lost[idx].tolist(), reverse=True)[:TARGETS_PER_FACE]
    target = np.full((2, 8, 8, 3), 100, np.uint8)
    frames = target.copy()
    frames[:, 0, 0] = 110  # off by 10 levels at one pixel, which the warp lost
    v = np.full((2, 8, 8), 255, np.uint8)
    v[:, 0, 0] = 0
    s = frame_scores(frames, target, v)
    assert s["hole_l1"] == 10.0
    assert s["psnr"] == pytest.approx(10 * np.log10(255**2 / (100 / 64)), abs=0.01)
    assert frame_scores(frames, target, np.full_like(v, 255))["hole_l1"] is None
