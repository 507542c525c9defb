"""The spine's figure script runs (briefly) so it cannot rot."""

from __future__ import annotations


def test_spine_figures_on_a_pack(tmp_path, avatar_pack, face_landmarker_task):
    from talkinghead.benchmarks.spine import measure

    rows = dict(measure(tmp_path, repeats=2, pack=avatar_pack))
    assert float(rows["int8 .pte vs fp32 .pte, PSNR"].split()[0]) >= 25.0
    assert float(rows["fp32 .pte vs eager, max abs on [-1, 1]"]) <= 1e-3
    assert rows["render int8, warp and rasterising included (median)"].endswith(" ms")
    assert rows["warp at 256 px (median)"].endswith(" ms")
    assert rows["refiner-s.safetensors"].endswith(" MB")
