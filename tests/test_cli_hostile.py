"""Every CLI command on every hostile input class: one line on stderr, exit 2, under a timeout.

Each case runs ``talkinghead`` in its own process, so a hang (the timeout), a crash (a
negative exit status) or a traceback would each fail it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from tiny_packs import make_tiny_pack  # noqa: E402

CLI = [sys.executable, "-m", "talkinghead.cli"]
TIMEOUT_S = 120


def run_cli(*args: object, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip


def assert_one_line_error(proc: subprocess.CompletedProcess, command: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-500:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and errors[0].startswith(f"talkinghead {command}: error: "), proc.stderr
    return errors[0]


def _zip(path: Path, names: dict[str, bytes], encrypt: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in names.items():
            info = zipfile.ZipInfo(name)
            zf.writestr(info, data)
            if name == encrypt:
                info.flag_bits |= 0x1
    return path


def _pack_dir(root: Path, manifest: bytes | None) -> Path:
    root.mkdir()
    if manifest is not None:
        (root / "manifest.json").write_bytes(manifest)
    return root


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, Path]:
    """One path per hostile input class."""
    from PIL import Image

    d = tmp_path_factory.mktemp("hostile")
    fifo = d / "fifo.mp4"
    os.mkfifo(fifo)
    fifo_pack = d / "fifo-manifest"
    fifo_pack.mkdir()
    os.mkfifo(fifo_pack / "manifest.json")
    zero = d / "zero.png"
    zero.symlink_to("/dev/zero")
    zero_pack = d / "zero-manifest"
    zero_pack.mkdir()
    (zero_pack / "manifest.json").symlink_to("/dev/zero")
    garbage = d / "garbage.mp4"
    garbage.write_bytes(os.urandom(4096))
    empty = d / "empty.png"
    empty.write_bytes(b"")
    folder = d / "folder"
    folder.mkdir()
    bomb = d / "bomb.png"
    Image.new("1", (30000, 30000)).save(bomb)
    return {
        "missing": d / "missing.mp4",
        "fifo": fifo,
        "dev-zero-link": zero,
        "garbage": garbage,
        "empty": empty,
        "folder": folder,
        "bomb-png": bomb,
        "fifo-manifest": fifo_pack,
        "dev-zero-manifest": zero_pack,
        "deep-json": _pack_dir(d / "deep", b"[" * 2000 + b"]" * 2000),
        "5000-digit-int": _pack_dir(d / "bigint", b'{"schema_version": ' + b"9" * 5000 + b"}"),
        "encrypted-zip": _zip(d / "enc.zip", {"manifest.json": b"{}"}, "manifest.json"),
        "file-and-folder-zip": _zip(d / "xy.zip", {"x": b"1", "x/y": b"2"}),
        "long-name-zip": _zip(d / "long.zip", {"a" * 300: b"1"}),
    }


COMMANDS = {
    "verify": lambda x, out: ["verify", x],
    "render": lambda x, out: ["render", x, "--out", out, "--frames", "2"],
    "verify-media": lambda x, out: ["verify-media", x],
    "track": lambda x, out: ["track", x, "--out", out / "t.png"],
    "demo": lambda x, out: ["demo", "--driver", x, "--out", out],
    "export": lambda x, out: ["export", "--photo", x, "--out", out],
}
CLASSES = [
    "missing", "fifo", "dev-zero-link", "garbage", "empty", "folder", "bomb-png",
    "fifo-manifest", "dev-zero-manifest", "deep-json", "5000-digit-int",
    "encrypted-zip", "file-and-folder-zip", "long-name-zip",
]  # fmt: skip


@pytest.mark.slow  # 14 CLI child processes per command
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_on_every_hostile_input(hostile, command, tmp_path):
    """Runs the command on each class in turn (one process each): exit 2, one error line."""
    failures = []
    for name in CLASSES:
        out = tmp_path / name
        try:
            proc = run_cli(*COMMANDS[command](hostile[name], out))
            assert_one_line_error(proc, command)
        except (AssertionError, subprocess.TimeoutExpired) as e:
            failures.append(f"{name}: {str(e)[:400]}")
    assert not failures, "\n".join(failures)


# ----------------------------------------------------------------------------- outputs


@pytest.fixture(scope="module")
def tiny_pack(tmp_path_factory) -> Path:
    return make_tiny_pack(tmp_path_factory.mktemp("tiny") / "pack", runtimes=("onnxruntime",))


@pytest.mark.slow  # CLI export in child processes
def test_export_never_touches_a_non_empty_out_or_a_file(tmp_path):
    out = tmp_path / "D"
    out.mkdir()
    (out / "refiner.safetensors").write_bytes(b"mine")
    line = assert_one_line_error(run_cli("export", "--photo", "astronaut", "--out", out), "export")
    assert "--force" in line
    assert (out / "refiner.safetensors").read_bytes() == b"mine"
    (tmp_path / "F").write_text("a file")
    assert_one_line_error(
        run_cli("export", "--photo", "astronaut", "--out", tmp_path / "F"), "export"
    )
    (tmp_path / "p.zip").write_text("old zip")
    args = ["export", "--photo", "astronaut", "--out", tmp_path / "E", "--zip", tmp_path / "p.zip"]
    assert_one_line_error(run_cli(*args), "export")
    assert (tmp_path / "p.zip").read_text() == "old zip" and not (tmp_path / "E").exists()
    assert not list(tmp_path.glob(".*tmp*"))


@pytest.mark.slow  # CLI child processes
def test_render_refuses_to_overwrite_and_replaces_with_force(tiny_pack, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "avatar.mp4").write_bytes(b"old video")
    (out / "keep.txt").write_text("mine")
    args = ["render", tiny_pack, "--out", out, "--frames", "3", "--backend", "onnxruntime",
            "--precision", "fp32"]  # fmt: skip
    line = assert_one_line_error(run_cli(*args), "render")
    assert "avatar.mp4" in line and (out / "avatar.mp4").read_bytes() == b"old video"
    proc = run_cli(*args, "--force")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "avatar.mp4").read_bytes()[4:8] == b"ftyp"  # an MP4 now
    assert (out / "avatar.webp").is_file() and (out / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["avatar.mp4", "avatar.webp", "keep.txt"]


@pytest.mark.parametrize("target", ["file", "proc"])
def test_render_out_that_cannot_be_a_folder(tiny_pack, tmp_path, target):
    out = tmp_path / "f" if target == "file" else Path("/proc/talkinghead-out")
    if target == "file":
        out.write_text("x")
    args = ["render", tiny_pack, "--out", out, "--frames", "2", "--backend", "onnxruntime",
            "--precision", "fp32"]  # fmt: skip
    assert_one_line_error(run_cli(*args), "render")


def test_track_refuses_to_overwrite_and_to_write_into_proc(tmp_path):
    out = tmp_path / "t.png"
    out.write_bytes(b"old")
    assert_one_line_error(run_cli("track", "astronaut", "--out", out), "track")
    assert out.read_bytes() == b"old"
    assert_one_line_error(run_cli("track", "astronaut", "--out", "/proc/t.png"), "track")


def test_demo_checks_its_driver_before_any_work(tmp_path):
    """An unreadable driver is refused in well under the export's minutes."""
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    proc = run_cli("demo", "--driver", bad, "--out", tmp_path / "demo", timeout=60)
    assert_one_line_error(proc, "demo")
    assert not (tmp_path / "demo").exists()


@pytest.mark.slow  # CLI child processes
def test_verify_and_render_on_a_program_that_aborts_executorch(tmp_path):
    """The re-hashed .pte that aborts ExecuTorch's binding in-process: exit 2, no signal."""
    from talkinghead.benchmarks.fuzz_packs import _rehash

    pack = make_tiny_pack(tmp_path / "p", runtimes=("executorch",))
    pte = next(p for p in pack.iterdir() if p.suffix == ".pte")
    data = bytearray(pte.read_bytes())
    data[data.find(b"XnnpackBackend") + 1] = 0xFF
    pte.write_bytes(bytes(data))
    _rehash(pack, pte.name)
    line = assert_one_line_error(run_cli("verify", pack), "verify")
    assert "SIGABRT" in line
    args = ["render", pack, "--out", tmp_path / "out", "--frames", "2", "--precision", "fp32"]
    assert "SIGABRT" in assert_one_line_error(run_cli(*args), "render")
    assert not (tmp_path / "out" / "avatar.mp4").exists()
