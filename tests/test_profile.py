"""``talkinghead profile``: per-operator ExecuTorch time from a real ETDump trace."""

from __future__ import annotations

import json
import shutil

import pytest

from talkinghead.benchmarks.profile import ProfileConfig, profile_program, read_program, summarize
from talkinghead.cli import main
from talkinghead.errors import BackendError, InvalidInputError, PackIntegrityError


@pytest.fixture(scope="module")
def int8_profile(avatar_pack):
    data, name = read_program(avatar_pack, "int8")
    return profile_program(data, name, ProfileConfig(threads=1, runs=5, warmup=1))


def test_profile_attributes_the_frame_to_xnnpack_operators(int8_profile):
    res = int8_profile
    names = [o["name"] for o in res["operators"]]
    # The refiner's int8 graph: quantized dense convolutions only (no depthwise ones: they
    # were slower in int8 than in fp32, docs/performance.md), bilinear upsampling, the
    # pixel shuffle's transpose, and the frame composed in the graph
    # (clamp(warped + (1 - m) * correction)).
    assert any("QC8) IGEMM" in n for n in names), names
    assert not any("DWConv" in n for n in names), names
    assert any("Resize Bilinear" in n for n in names), names
    assert any(n.startswith("Transpose") for n in names), names
    assert any(n.startswith("Multiply") for n in names), names
    assert any(n.startswith("Sigmoid") or n.startswith("Invalid Unary") for n in names), names
    assert all(o["ms"] >= 0 for o in res["operators"])
    assert res["operator_sum_ms"] > 0
    assert res["operator_sum_ms"] == pytest.approx(sum(res["kinds"].values()))
    assert sum(o["share"] for o in res["operators"]) == pytest.approx(1.0)
    # One thread: no hand-offs, so the operators are most of the execute time.
    assert res["execute_ms"] >= 0.5 * res["operator_sum_ms"]
    assert res["program"].endswith("_q8.pte")


def test_summarize_groups_kinds_and_measures_the_gap():
    res = summarize(
        [
            ("Convolution (NHWC, QC8) DWConv #1", True, 1.0),
            ("Convolution (NHWC, QC8) DWConv #2", True, 2.0),
            ("Add (ND) #1", True, 0.5),
            ("DELEGATE_CALL", False, 4.0),
            ("Method::execute", False, 4.5),
        ]
    )
    assert res["kinds"] == {"Convolution (NHWC, QC8) DWConv": 3.0, "Add (ND)": 0.5}
    assert res["operator_sum_ms"] == 3.5 and res["overhead_ms"] == 1.0
    with pytest.raises(BackendError, match="no operator events"):
        summarize([("Method::execute", False, 1.0)])


def test_cli_writes_report_json_and_plot(avatar_pack, tmp_path, capsys):
    out = tmp_path / "prof"
    code = main(
        ["profile", str(avatar_pack), "--precision", "fp32", "--threads", "1", "--runs", "3",
         "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    res = json.loads((out / "profile.json").read_text())
    assert res["program"].endswith("_fp32.pte") and res["config"]["threads"] == 1
    assert (out / "profile.png").stat().st_size > 1000
    assert "| operator kind | ms | share |" in (out / "profile.md").read_text()
    assert "ms per execute" in capsys.readouterr().out


def test_bad_inputs_are_typed_errors(avatar_pack, tmp_path):
    with pytest.raises(InvalidInputError):
        read_program(tmp_path / "missing.pte")
    not_pte = tmp_path / "model.pte"
    not_pte.write_bytes(b"\x00" * 200)
    with pytest.raises(BackendError, match="not an ExecuTorch program"):
        read_program(not_pte)
    pack = tmp_path / "pack"
    shutil.copytree(avatar_pack, pack)
    (pte,) = pack.glob("*_xnnpack_q8.pte")
    data = bytearray(pte.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pte.write_bytes(bytes(data))
    with pytest.raises(PackIntegrityError):  # the hash is checked before any runtime
        read_program(pack, "int8")
    with pytest.raises(InvalidInputError):
        ProfileConfig(threads=0).validate()
    # From the command line: exit code 2 and a message, no traceback.
    assert main(["profile", str(tmp_path / "missing.pte")]) == 2
