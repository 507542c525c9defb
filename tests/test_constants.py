"""One source for the constants Python and the C library share: the generated header.

``bindings/src/constants.h`` is written by ``bindings/gen_constants.py`` from the Python
definitions (landmark tables, One Euro defaults, watermark key, strength and grid, status
names, the pack format's schema versions and parity thresholds). The header must be what
the generator writes now; a changed constant without a regenerated header fails here.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from talkinghead.bindings import gen_constants
from talkinghead.bindings.native import STATUS_NAMES
from talkinghead.sdk import pack_schema, warp, watermark

SRC = Path(gen_constants.__file__).resolve().parent / "src"


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
    stable = re.search(r"kStableMeshPoints\[\] = \{([^}]*)\}", text).group(1)
    assert tuple(int(v) for v in stable.replace(",", " ").split()) == warp.STABLE_MESH_POINTS


def test_check_mode_reports_a_stale_header(tmp_path, capsys):
    stale = tmp_path / "constants.h"
    stale.write_text(gen_constants.render().replace("kSchemaVersion = ", "kSchemaVersion = 9"))
    assert gen_constants.main(["--out", str(stale), "--check"]) == 1
    assert "stale" in capsys.readouterr().out
    assert gen_constants.main(["--out", str(stale)]) == 0
    assert gen_constants.main(["--out", str(stale), "--check"]) == 0


def test_the_warp_and_the_status_names_use_the_header():
    warp_cpp = (SRC / "warp.cpp").read_text()
    assert "kStableMeshPoints" in warp_cpp and "168, 6, 197" not in warp_cpp
    talkinghead_cpp = (SRC / "talkinghead.cpp").read_text()
    assert "kStatusNames[i]" in talkinghead_cpp and 'return "TH_ERR_PACK"' not in talkinghead_cpp
    assert '#include "constants.h"' in (SRC / "pack.h").read_text()
