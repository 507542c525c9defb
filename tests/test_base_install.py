"""The base install is the runtime alone: ``pip install .`` into a fresh venv, no torch.

An app developer who only renders packs gets the SDK on LiteRT and ONNX Runtime. This test
builds that install from the working tree, proves ``import torch`` fails there, and renders
the committed pack (``tests/data/astronaut-pack``: the astronaut enrolled on the shipped
refiner, int8 on LiteRT and ONNX Runtime) on both runtimes. pip reuses its wheel cache, so
the install takes about a minute.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACK = ROOT / "tests" / "data" / "astronaut-pack"

RENDER = r"""
import json, sys
import numpy as np

try:
    import torch  # noqa: F401
except ImportError as e:
    torch_error = str(e)
else:
    sys.exit("torch is importable in the base install")

from talkinghead.sdk.avatar import Avatar, AvatarOptions
from talkinghead.sdk.media import write_mp4

pack, out = sys.argv[1], sys.argv[2]
frames = {}
for backend in ("litert", "onnxruntime", "auto"):
    opts = AvatarOptions(pack=pack, backend=backend, precision="int8")
    with Avatar.create_from_options(opts) as avatar:
        video = avatar.animate(num_frames=6)
        frames[backend] = (avatar.backend_name, video)
write_mp4(frames["litert"][1], out, fps=25)
a, b = frames["litert"][1].astype(float), frames["onnxruntime"][1].astype(float)
print(json.dumps({
    "torch_error": torch_error,
    "shape": list(frames["litert"][1].shape),
    "dtype": str(frames["litert"][1].dtype),
    "auto": frames["auto"][0],
    "mean_abs_litert_vs_ort": float(np.abs(a - b).mean()),
    "std": float(frames["litert"][1].std()),
    "modules": sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "executorch", "mediapipe", "scipy")),
}))
"""


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


@pytest.mark.slow
def test_base_install_renders_a_committed_pack_without_torch(tmp_path):
    assert (PACK / "manifest.json").is_file()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = _venv_python(venv)
    # Build from a copy of the sources only: the working tree's .venv and outputs stay out.
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns(
        ".venv", ".git", "out", "runs", "*.egg-info", "__pycache__", "build", "tests", "docs",
        ".*_cache", "*.log",
    )  # fmt: skip
    shutil.copytree(ROOT, src, ignore=ignore)
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    proc = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", str(src)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    listed = subprocess.run(
        [str(py), "-m", "pip", "list", "--format=json"], capture_output=True, text=True, check=True
    )
    installed = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert not installed & {"torch", "executorch", "mediapipe", "coremltools", "pandas"}
    assert {"ai-edge-litert", "onnxruntime", "talkinghead"} <= installed

    out = tmp_path / "avatar.mp4"
    # Run outside the working tree, so `talkinghead` is the installed package.
    proc = subprocess.run(
        [str(py), "-c", RENDER, str(PACK), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**env, "PYTHONPATH": ""},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "torch" in result["torch_error"]
    assert result["shape"] == [6, 256, 256, 3] and result["dtype"] == "uint8"
    assert result["std"] > 10  # a face, not a flat frame
    # executorch is not installed, so "auto" takes the next runtime the pack holds.
    assert result["auto"] == "litert"
    # Both int8 runtimes render the same pack alike (each within its parity of eager).
    assert result["mean_abs_litert_vs_ort"] < 3.0
    assert result["modules"] == []
    assert out.is_file() and out.stat().st_size > 1000
