"""The distillation report: a quick run end to end on a tiny teacher, and its target checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from talkinghead.benchmarks.distill_report import ReportConfig, check_targets, run_report
from talkinghead.errors import InvalidInputError
from talkinghead.models.checkpoint import save_checkpoint
from talkinghead.models.student import create_student
from talkinghead.models.teacher import create_teacher


@pytest.fixture(scope="module")
def tiny_teacher_file(tmp_path_factory):
    torch.manual_seed(0)
    teacher = create_teacher("teacher-xs", resolution=64, base_channels=4, max_channels=16)
    return save_checkpoint(tmp_path_factory.mktemp("t") / "t.safetensors", teacher, "teacher")


@pytest.mark.slow
def test_quick_report_measures_every_precision(tmp_path, tiny_teacher_file):
    cfg = ReportConfig.quick(
        out=tmp_path / "r", teacher=str(tiny_teacher_file), steps=3, latency_resolutions=(96,)
    )
    res = run_report(cfg)
    for name in ("report.json", "report.md", "quality_vs_latency.png"):
        assert (tmp_path / "r" / name).stat().st_size > 0
    assert json.loads((tmp_path / "r" / "report.json").read_text())["rows"] == json.loads(
        json.dumps(res["rows"], default=float)
    )
    rows = {r["precision"]: r for r in res["rows"]}
    assert set(rows) == {"fp32", "int8"}
    for r in rows.values():
        assert r["variant"] == "student-xs" and r["resolution"] == 64
        assert r["macs"] > 0 and r["params"] > 0 and r["latency_ms"] > 0
        assert np.isfinite(r["psnr_vs_teacher_db"]) and 0 < r["ssim_vs_teacher"] <= 1
    assert rows["int8"]["file_bytes"] < rows["fp32"]["file_bytes"]  # int8 weights are smaller
    assert 20 < rows["int8"]["psnr_vs_fp32_db"] <= 100
    # The teacher-256 yardstick is the real architecture's cost, not the tiny teacher's.
    assert res["teachers"]["teacher_256"]["macs"] > 50e9
    assert res["targets"]["best_variant"] == "student-xs"
    md = (tmp_path / "r" / "report.md").read_text()
    assert "student-xs" in md and "Targets" in md
    # The same weights at 96 px, with ExecuTorch's trace of the int8 program.
    (at,) = res["variants"]["student-xs"]["at"]
    assert at["resolution"] == 96 and at["macs"] > rows["fp32"]["macs"]
    prof = at["int8_profile"]
    assert prof["operator_sum_ms"] > 0 and prof["execute_ms"] > 0
    assert any("DWConv" in kind for kind in prof["kinds"])
    assert "Where the int8 time goes" in md


def test_targets_say_what_is_missed_and_by_how_much():
    def row(p: str, **kw):
        return {"variant": "student-s", "precision": p, "resolution": 128, "macs": 90e6, **kw}

    res = {
        "rows": [row("fp32", psnr_vs_teacher_db=27.0), row("int8", psnr_vs_teacher_db=26.5, psnr_vs_fp32_db=40.0)],
        "variants": {"student-s": {"at": [{"resolution": 256, "macs": 360e6, "int8_latency_ms": 20.0}]}},
        "teachers": {"teacher_256": {"macs": 81e9}},
    }  # fmt: skip
    t = check_targets(res)
    assert t["best_variant"] == "student-s"
    assert t["gmacs_256"]["met"] and t["int8_vs_fp32_db"]["met"]
    assert t["psnr_vs_teacher_db"]["met"] is False
    assert t["psnr_vs_teacher_db"]["missed_by"] == pytest.approx(3.0)
    assert t["int8_latency_256_ms"]["missed_by"] == pytest.approx(4.0)
    assert t["macs_ratio_vs_teacher_256"]["value"] == pytest.approx(225.0)


def test_bad_report_inputs_fail_before_any_work(tmp_path, tiny_teacher_file):
    with pytest.raises(InvalidInputError, match="student-q"):
        run_report(ReportConfig.quick(out=tmp_path, variants=("student-q",)))
    student = save_checkpoint(
        tmp_path / "s.safetensors", create_student("student-xs", resolution=32), "student"
    )
    cfg = ReportConfig.quick(
        out=tmp_path, teacher=str(tiny_teacher_file), students={"student-xs": str(student)}
    )
    with pytest.raises(InvalidInputError, match="resolutions do not match"):
        run_report(cfg)
