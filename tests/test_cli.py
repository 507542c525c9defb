"""The command line: commands run in-process through ``main(argv)``; typed errors exit 2 with one line.

The end-to-end ``demo`` (no arguments) lives elsewhere; here ``demo`` is only driven into its
error paths, which fail before any training or export starts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from talkinghead.cli import main
from talkinghead.sdk.media import count_frames, read_video, write_mp4
from talkinghead.sdk.pack import load_manifest, zip_pack
from talkinghead.sdk.provenance import verify_media


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_clean_error(code: int, err: str, *needles: str) -> None:
    """Exit 2, one 'talkinghead <cmd>: error: ...' line naming what was wrong, no traceback."""
    assert code == 2
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("talkinghead ")]
    assert len(lines) == 1, err
    assert "error:" in lines[0]
    assert "Traceback" not in err
    for needle in needles:
        assert needle.lower() in lines[0].lower(), lines[0]


@pytest.fixture()
def grey_png(tmp_path) -> Path:
    path = tmp_path / "grey.png"
    Image.fromarray(np.full((256, 256, 3), 128, np.uint8)).save(path)
    return path


def test_help_subprocess():
    r = subprocess.run(
        [sys.executable, "-m", "talkinghead.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert r.returncode == 0, r.stderr
    for cmd in ("demo", "verify", "render", "track", "export"):
        assert cmd in r.stdout


def test_entry_point_installed():
    exe = Path(sys.executable).with_name("talkinghead")
    assert exe.exists(), "pip install -e . must put the talkinghead entry point beside python"
    r = subprocess.run([str(exe), "verify", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "pack" in r.stdout


def test_no_command_is_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    assert "usage" in capsys.readouterr().err


def test_verify_ok(capsys, avatar_pack):
    code, out, err = run_cli(capsys, "verify", avatar_pack)
    assert code == 0, err
    assert "OK" in out
    for rel in load_manifest(avatar_pack).files:
        assert rel not in err


def test_verify_tampered(capsys, avatar_pack, tmp_path):
    bad = Path(shutil.copytree(avatar_pack, tmp_path / "pack"))
    pte = bad / load_manifest(bad).model("fp32").file
    data = bytearray(pte.read_bytes())
    data[100] ^= 0x01
    pte.write_bytes(bytes(data))
    code, _, err = run_cli(capsys, "verify", bad)
    assert_clean_error(code, err, pte.name)


def test_verify_missing_file_and_not_a_pack(capsys, avatar_pack, tmp_path):
    bad = Path(shutil.copytree(avatar_pack, tmp_path / "pack"))
    (bad / "parity.npz").unlink()
    code, _, err = run_cli(capsys, "verify", bad)
    assert_clean_error(code, err, "parity.npz")
    code, _, err = run_cli(capsys, "verify", tmp_path / "nowhere")
    assert_clean_error(code, err, "nowhere")


@pytest.fixture(scope="module")
def onnx_fp32_export(tmp_path_factory) -> tuple[Path, Path]:
    """``talkinghead export`` of one runtime and precision (quick) with ``--zip``:
    (pack folder, zip)."""
    root = tmp_path_factory.mktemp("onnx-only")
    folder, zipped = root / "pack", root / "ship" / "astronaut.zip"
    argv = ["export", "--photo", "astronaut", "--out", str(folder)]
    argv += ["--runtimes", "onnxruntime", "--precision", "fp32", "--zip", str(zipped)]
    assert main(argv) == 0
    return folder, zipped


@pytest.mark.slow  # exports a pack to ONNX (module fixture)
def test_export_zip_then_verify_the_zip(capsys, onnx_fp32_export):
    """The zip is what an app bundles: it verifies like the folder."""
    folder, zipped = onnx_fp32_export
    assert zipped.is_file()
    code, out, err = run_cli(capsys, "verify", zipped)
    assert code == 0, err
    assert "parity ok" in out and "onnxruntime/fp32" in out
    # The zip holds exactly the manifest and the files it lists, nothing else of the folder.
    with zipfile.ZipFile(zipped) as zf:
        names = set(zf.namelist())
    assert names == {"manifest.json", *load_manifest(folder).files}


def test_render_builtin_motion(capsys, avatar_pack, tmp_path):
    out_dir = tmp_path / "render"
    code, out, err = run_cli(capsys, "render", avatar_pack, "--frames", "5", "--out", out_dir)
    assert code == 0, err
    result = json.loads(out)
    assert result["frames"] == 5 and result["precision"] == "int8"
    mp4, webp = Path(result["mp4"]), Path(result["webp"])
    assert mp4.parent == out_dir and webp.parent == out_dir
    assert count_frames(mp4) == 5
    with Image.open(webp) as im:
        assert im.format == "WEBP"
        size = load_manifest(avatar_pack).resolution
        assert im.size == (size, size)
        # libwebp merges consecutive frames it finds identical, so with placeholder weights
        # (nearly constant output) fewer than 5 frames may be stored.
        assert 1 <= getattr(im, "n_frames", 1) <= 5


@pytest.mark.parametrize("backend", ["litert", "onnxruntime", "auto"])
def test_render_through_each_runtime(capsys, avatar_pack, tmp_path, backend):
    """The same pack renders through any runtime it holds; the JSON names the one used."""
    # ExecuTorch's thread pool is process-wide, so only the per-avatar runtimes get --threads.
    threads = () if backend == "auto" else ("--threads", "1")
    code, out, err = run_cli(
        capsys, "render", avatar_pack, "--frames", "3", "--out", tmp_path, "--backend", backend,
        *threads,
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["backend"] == ("executorch" if backend == "auto" else backend)
    assert count_frames(result["mp4"]) == 3


@pytest.fixture(scope="module")
def face_video(tmp_path_factory, astronaut) -> Path:
    """A real driving video: 8 frames of the astronaut photo turning and sliding, 256 px, H.264."""
    photo = Image.fromarray(astronaut)
    frames = []
    for i in range(8):
        moved = photo.rotate(
            6 * np.sin(i / 2), resample=Image.BILINEAR, translate=(12 * np.sin(i / 3), 0)
        )
        frames.append(np.asarray(moved.resize((256, 256), Image.BILINEAR)))
    return write_mp4(frames, tmp_path_factory.mktemp("driver") / "face.mp4", fps=25)


def test_render_native_matches_executorch_on_a_driving_video(
    capsys, avatar_pack, face_video, tmp_path
):
    """--backend native: the C library driven through th_drive (the recorded driver
    smoothed without lag beforehand, th_drive retargets); the video equals the Python
    SDK's ExecuTorch render."""
    results = {}
    for backend in ("native", "executorch"):
        code, out, err = run_cli(
            capsys, "render", avatar_pack, "--backend", backend, "--driver", face_video,
            "--out", tmp_path / backend,
        )  # fmt: skip
        assert code == 0, err
        results[backend] = json.loads(out)
    native = results["native"]
    assert native["backend"] == "native" and native["frames"] == 8
    assert native["verified_files"] == len(load_manifest(avatar_pack).files)
    frames = {b: np.stack([f for f, _ in read_video(r["mp4"])]) for b, r in results.items()}
    size = load_manifest(avatar_pack).resolution
    assert frames["native"].shape == (8, size, size, 3)
    assert np.abs(frames["native"].astype(np.int16) - frames["executorch"]).max() <= 1
    assert np.abs(frames["native"][0].astype(np.int16) - frames["native"][5]).mean() > 1
    assert verify_media(native["mp4"]).marked


def test_render_native_from_a_zip_and_its_bad_input(capsys, avatar_pack, tmp_path):
    packed = zip_pack(avatar_pack, tmp_path / "pack.zip")
    code, out, err = run_cli(
        capsys, "render", packed, "--backend", "native", "--frames", "3", "--no-watermark",
        "--out", tmp_path / "z",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["frames"] == 3 and result["watermark"] == "off"
    assert count_frames(result["mp4"]) == 3 and not verify_media(result["mp4"]).marked
    argv = ("render", avatar_pack, "--backend", "native", "--out", tmp_path / "o")
    code, _, err = run_cli(capsys, *argv, "--threads", "1")
    assert_clean_error(code, err, "num_threads", "native")
    # A file th_open never reads, altered: th_verify_files stops the render.
    bad = shutil.copytree(avatar_pack, tmp_path / "bad")
    other = next(n for n in sorted(load_manifest(bad).files) if n.endswith(".onnx"))
    data = (bad / other).read_bytes()
    (bad / other).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    code, _, err = run_cli(capsys, "render", bad, "--backend", "native", "--out", tmp_path / "b")
    assert_clean_error(code, err, other, "sha256")


@pytest.mark.slow  # exports a pack to ONNX (module fixture)
def test_render_backend_the_pack_lacks(capsys, onnx_fp32_export, tmp_path):
    folder = onnx_fp32_export[0]
    argv = ("render", folder, "--frames", "2", "--out", tmp_path / "r", "--precision", "fp32")
    code, _, err = run_cli(capsys, *argv, "--backend", "litert")
    assert_clean_error(code, err, "litert")
    code, out, err = run_cli(capsys, *argv, "--backend", "auto")  # auto finds the ONNX model
    assert code == 0, err
    assert json.loads(out)["backend"] == "onnxruntime"


def test_render_missing_precision_flag_value(capsys, avatar_pack, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["render", str(avatar_pack), "--precision", "fp16", "--out", str(tmp_path)])
    assert exc.value.code == 2
    capsys.readouterr()


def test_render_bad_frames(capsys, avatar_pack, tmp_path):
    code, _, err = run_cli(capsys, "render", avatar_pack, "--frames", "0", "--out", tmp_path)
    assert_clean_error(code, err, "num_frames")
    code, _, err = run_cli(capsys, "render", avatar_pack, "--threads", "0", "--out", tmp_path)
    assert_clean_error(code, err, "num_threads")


def test_render_driver_without_face(capsys, avatar_pack, tmp_path):
    grey = [np.full((96, 96, 3), 100 + i, np.uint8) for i in range(4)]
    driver = write_mp4(grey, tmp_path / "noface.mp4")
    code, _, err = run_cli(
        capsys, "render", avatar_pack, "--driver", driver, "--out", tmp_path / "o"
    )
    assert_clean_error(code, err, "no face", "noface.mp4")
    assert not (tmp_path / "o" / "avatar.mp4").exists()


def test_render_driver_missing_or_unreadable(capsys, avatar_pack, tmp_path):
    code, _, err = run_cli(
        capsys, "render", avatar_pack, "--driver", tmp_path / "gone.mp4", "--out", tmp_path
    )
    assert_clean_error(code, err, "gone.mp4")
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video")
    code, _, err = run_cli(capsys, "render", avatar_pack, "--driver", fake, "--out", tmp_path)
    assert_clean_error(code, err, "fake.mp4")


def test_render_not_a_pack(capsys, tmp_path):
    code, _, err = run_cli(capsys, "render", tmp_path / "nopack", "--out", tmp_path / "o")
    assert_clean_error(code, err, "nopack")


def test_track_no_face(capsys, grey_png, tmp_path):
    code, _, err = run_cli(capsys, "track", grey_png, "--out", tmp_path / "t.png")
    assert_clean_error(code, err, "no face")
    assert not (tmp_path / "t.png").exists()


def test_track_photo(capsys, astronaut, tmp_path):
    photo = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(photo)
    out_png = tmp_path / "track" / "preview.png"
    code, out, err = run_cli(capsys, "track", photo, "--out", out_png)
    assert code == 0, err
    assert "68" in out and out_png.is_file()
    with Image.open(out_png) as im:
        assert im.size == (astronaut.shape[1], astronaut.shape[0])


def test_demo_missing_photo(capsys, tmp_path):
    code, _, err = run_cli(
        capsys, "demo", "--photo", tmp_path / "missing.jpg", "--out", tmp_path / "o"
    )
    assert_clean_error(code, err, "missing.jpg")


def test_demo_photo_not_an_image(capsys, tmp_path):
    fake = tmp_path / "face.png"
    fake.write_text("definitely not a PNG\n")
    code, _, err = run_cli(capsys, "demo", "--photo", fake, "--out", tmp_path / "o")
    assert_clean_error(code, err, "face.png")


def test_demo_bad_frames(capsys, tmp_path):
    code, _, err = run_cli(capsys, "demo", "--frames", "0", "--out", tmp_path / "o")
    assert_clean_error(code, err, "frames")


LOADS_NOTHING = r"""
import sys
from talkinghead.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:  # argparse's --help
    code = e.code
heavy = sorted(m for m in ("torch", "executorch", "mediapipe", "onnxruntime", "ai_edge_litert")
               if m in sys.modules)
print("LOADED", ",".join(heavy), "EXIT", code)
"""


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["demo", "--photo", "{bad}", "--out", "{tmp}/a"], "not a recognised image"),
        (["export", "--photo", "{bad}", "--out", "{tmp}/b"], "not a recognised image"),
        (["render", "{pack}", "--driver", "{bad}", "--out", "{tmp}/c"], "bad.jpg"),
        (["demo", "--driver", "{bad}", "--out", "{tmp}/d"], "bad.jpg"),
        (["--help"], ""),
    ],
)
def test_bad_inputs_fail_before_any_model_or_toolchain_loads(tmp_path, argv, needle):
    """The CLI imports what a command needs, and checks every input first: an error on a
    bad photo or driver comes before torch, ExecuTorch, MediaPipe or any runtime loads
    (which is what makes it print in about a second; benchmarks/speed.py times it)."""
    import subprocess
    import sys
    from pathlib import Path

    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image\n")
    pack = Path(__file__).parent / "data" / "astronaut-pack"
    args = [a.format(bad=bad, tmp=tmp_path, pack=pack) for a in argv]
    proc = subprocess.run(
        [sys.executable, "-c", LOADS_NOTHING, *args], capture_output=True, text=True, timeout=120
    )
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("LOADED  EXIT"), (last, proc.stderr[-2000:])
    assert last.endswith("EXIT 0" if argv == ["--help"] else "EXIT 2")
    assert needle in proc.stderr
