"""One source for the constants Python and the C library share: the generated header.

``bindings/src/constants.h`` is written by ``bindings/gen_constants.py`` from the Python
definitions (landmark tables, One Euro defaults and the lips' and eyelids' cutoff scales,
the warp's constants, the watermark's key, strength, grid and code, status names, the pack
format's schema versions and parity thresholds). The header must be what the generator
writes now; a changed constant without a regenerated header fails here, and so does a C++
source that defines one of the header's constants, or copies one of its tables, itself.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import numpy as np

from talkinghead.bindings import gen_constants
from talkinghead.bindings.native import STATUS_NAMES
from talkinghead.sdk import landmarks, pack_schema, smoothing, warp, watermark

SRC = Path(gen_constants.__file__).resolve().parent / "src"
TOOLS = SRC.parent / "tools"


def _table(text: str, name: str) -> tuple[float, ...]:
    body = re.search(rf"\b{name}\[\] = \{{([^}}]*)\}}", text).group(1)
    return tuple(float(v.rstrip("fu")) for v in body.replace(",", " ").split())


def _scalar(text: str, name: str) -> float:
    value = re.search(rf"\b{name} = ([^;]+);", text).group(1).rstrip("fu")
    return int(value, 16) if value.startswith("0x") else float(value)


def _header_names(text: str) -> list[str]:
    return re.findall(r"^constexpr [\w: *]+? (k\w+)(?:\[\])? =", text, re.M)


def _sources() -> list[Path]:
    files = sorted(SRC.glob("*.h")) + sorted(SRC.glob("*.cpp")) + sorted(TOOLS.glob("*.c*"))
    return [f for f in files if f != gen_constants.HEADER]


def test_the_generated_header_matches_python():
    committed = gen_constants.HEADER.read_text()
    fresh = gen_constants.render()
    diff = "".join(
        difflib.unified_diff(
            committed.splitlines(True), fresh.splitlines(True), "constants.h", "from Python", n=0
        )
    )
    assert committed == fresh, (
        "bindings/src/constants.h differs from the Python definitions; regenerate it with "
        "`python -m talkinghead.bindings.gen_constants`:\n" + diff
    )


def test_the_header_holds_the_python_values():
    text = gen_constants.HEADER.read_text()
    assert f"0x{watermark._KEY:08X}u" in text
    assert f"kWatermarkStrength = {watermark.STRENGTH!r};" in text
    assert f"kSchemaVersion = {pack_schema.SCHEMA_VERSION};" in text
    assert f"kParityInt8MinPsnrDb = {pack_schema.PARITY_INT8_MIN_PSNR_DB!r};" in text
    assert all(f'"{name}",' in text for name in STATUS_NAMES)
    assert _table(text, "kStableMeshPoints") == warp.STABLE_MESH_POINTS
    assert _table(text, "kMeshTo68") == tuple(landmarks.MEDIAPIPE_TO_68)
    assert _table(text, "kFeatureMeshPoints") == landmarks.FEATURE_MESH_POINTS
    assert _table(text, "kRightEyePoints") == warp.RIGHT_EYE
    assert _table(text, "kLeftEyePoints") == warp.LEFT_EYE
    assert _table(text, "kMouthRgb") == warp.MOUTH_RGB
    assert _table(text, "kWatermarkGenerators") == watermark.GENERATORS
    # float32 literals: each parses to the float32 numpy weighs luma with.
    luma = np.array(_table(text, "kWatermarkLuma"), np.float32)
    assert luma.tobytes() == watermark._LUMA.tobytes()
    euro = smoothing.OneEuroParams()
    expected = {
        "kOneEuroMinCutoffHz": euro.min_cutoff,
        "kOneEuroBeta": euro.beta,
        "kOneEuroDCutoffHz": euro.d_cutoff,
        "kFeatureMinCutoffScale": smoothing.FEATURE_MIN_CUTOFF_SCALE,
        "kFeatureDCutoffScale": smoothing.FEATURE_D_CUTOFF_SCALE,
        "kMeshPoints": landmarks.NUM_MESH_POINTS,
        "kMeshPointsNoIris": landmarks.NUM_MESH_POINTS_NO_IRIS,
        "kBaryEps": warp.BARY_EPS,
        "kZQuant": warp.Z_QUANT,
        "kRigTriangleBits": warp._TRI_BITS,
        "kWatermarkKey": watermark._KEY,
        "kWatermarkRoundingSlack": watermark._ROUNDING_SLACK,
        "kWatermarkAmpBase": watermark.AMP_BASE,
        "kWatermarkAmpMax": watermark.AMP_MAX,
        "kWatermarkGrid": watermark.GRID,
        "kWatermarkTile": watermark.TILE,
        "kWatermarkCanon": watermark.CANON,
        "kWatermarkMinSide": watermark.MIN_SIDE,
        "kWatermarkCodedBits": watermark.CODED_BITS,
    }
    assert {name: _scalar(text, name) for name in expected} == expected


def test_no_source_defines_or_copies_a_header_constant():
    """The C++ sources use constants.h: none defines one of its names again, and none holds
    a copy of one of its tables (the first eight values, in order)."""
    text = gen_constants.HEADER.read_text()
    names = _header_names(text)
    assert {"kMeshTo68", "kFeatureMeshPoints", "kWatermarkKey", "kOneEuroBeta"} <= set(names)
    tables = {
        name: [int(v) for v in _table(text, name)[:8]]
        for name in names
        if re.search(rf"constexpr (int|uint32_t) {name}\[\]", text) and len(_table(text, name)) >= 8
    }
    for source in _sources():
        code = source.read_text()
        redefined = [
            n for n in names if re.search(rf"(constexpr|const)[\w: *]+? {n}\b(\[\w*\])? =", code)
        ]
        assert not redefined, f"{source.name} defines {redefined} itself; use constants.h"
        for name, head in tables.items():
            copy = r"\W+".join(str(v) for v in head)
            assert not re.search(rf"\b{copy}\b", code), f"{source.name} copies {name}"


def test_check_mode_reports_a_stale_header(tmp_path, capsys):
    stale = tmp_path / "constants.h"
    stale.write_text(gen_constants.render().replace("kSchemaVersion = ", "kSchemaVersion = 9"))
    assert gen_constants.main(["--out", str(stale), "--check"]) == 1
    assert "stale" in capsys.readouterr().out
    assert gen_constants.main(["--out", str(stale)]) == 0
    assert gen_constants.main(["--out", str(stale), "--check"]) == 0


def test_the_driver_and_the_watermark_use_the_header():
    drive_h = (SRC / "drive.h").read_text()
    assert "min_cutoff = kOneEuroMinCutoffHz" in drive_h and '#include "constants.h"' in drive_h
    drive_cpp = (SRC / "drive.cpp").read_text()
    assert "kFeatureMeshPoints" in drive_cpp and "kFeatureDCutoffScale" in drive_cpp
    assert "kRightEyePoints" in drive_cpp
    watermark_cpp = (SRC / "watermark.cpp").read_text()
    assert "kWatermarkKey" in watermark_cpp and "0x7A1C0DE5" not in watermark_cpp
    assert '#include "constants.h"' in (SRC / "watermark.h").read_text()


def test_the_warp_and_the_status_names_use_the_header():
    warp_cpp = (SRC / "warp.cpp").read_text()
    assert "kStableMeshPoints" in warp_cpp and "168, 6, 197" not in warp_cpp
    talkinghead_cpp = (SRC / "talkinghead.cpp").read_text()
    assert "kStatusNames[i]" in talkinghead_cpp and 'return "TH_ERR_PACK"' not in talkinghead_cpp
    assert '#include "constants.h"' in (SRC / "pack.h").read_text()
