"""Hostile packs and media (issue 18): no crash, no hang, bounded memory, no lost files, signatures.

Packs here are small real packs (tests/tiny_packs.py): a trivial refiner exported to every
runtime and format in seconds, so each case runs the same checks a real pack gets.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from talkinghead.errors import (
    BackendError,
    ImageReadError,
    InvalidInputError,
    OutputExistsError,
    PackError,
    SignatureError,
)
from talkinghead.sdk.files import output_file, output_folder, read_regular
from talkinghead.sdk.pack import open_pack, verify_pack

sys.path.insert(0, str(Path(__file__).parent))
from tiny_packs import make_tiny_pack  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def within(seconds: float, fn, *args):
    """fn(*args) on a daemon thread; fail when it has not returned after ``seconds`` (a hang)."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"{getattr(fn, '__name__', fn)} hung for {seconds} s"
    if "error" in box:
        raise box["error"]
    return box.get("value")


def copy_pack(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def rehash(folder: Path, rel: str) -> None:
    """Recompute ``rel``'s sha256 and size in the manifest, as an attacker would."""
    from talkinghead.benchmarks.fuzz_packs import _rehash

    _rehash(folder, rel)


def edit_manifest(folder: Path, fn) -> None:
    path = folder / "manifest.json"
    m = json.loads(path.read_text())
    fn(m)
    path.write_text(json.dumps(m, indent=2))


@pytest.fixture(scope="module")
def tiny_pack(tmp_path_factory) -> Path:
    return make_tiny_pack(tmp_path_factory.mktemp("tiny") / "pack")


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> tuple[Path, Path]:
    from talkinghead.sdk.signing import generate_keypair

    return generate_keypair(tmp_path_factory.mktemp("keys") / "release")


# ----------------------------------------------------------------------------- regular files


def test_fifo_manifest_is_refused_without_hanging(tmp_path):
    os.mkfifo(tmp_path / "manifest.json")
    with pytest.raises(PackError, match="not a regular file"):
        within(10, open_pack, tmp_path)


def test_manifest_linked_to_dev_zero_is_refused(tmp_path):
    (tmp_path / "manifest.json").symlink_to("/dev/zero")
    with pytest.raises(PackError, match="symbolic link"):
        within(10, open_pack, tmp_path)


def test_read_regular_caps_size_and_refuses_devices(tmp_path):
    big = tmp_path / "big"
    big.write_bytes(b"x" * 2000)
    with pytest.raises(PackError, match="too large"):
        read_regular(big, 1000, PackError)
    with pytest.raises(PackError, match="not a regular file"):
        read_regular("/dev/zero", 1000, PackError, follow_links=True)
    assert read_regular(big, 2000, PackError) == b"x" * 2000


def test_fifo_model_file_is_unsafe_not_a_hang(tiny_pack, tmp_path):
    pack = copy_pack(tiny_pack, tmp_path / "p")
    onnx = next(p for p in pack.iterdir() if p.suffix == ".onnx")
    onnx.unlink()
    os.mkfifo(onnx)
    report = within(10, verify_pack, pack)
    assert onnx.name in report.unsafe and not report.ok
    with pytest.raises(PackError):
        within(10, open_pack, pack)


@pytest.mark.parametrize(
    "text, match",
    [
        ("[" * 2000 + "]" * 2000, "nested too deeply"),
        ('{"schema_version": ' + "9" * 5000 + "}", "out of range"),
        ('{"name": "\xff"}', "not UTF-8"),
    ],
    ids=["2000-deep", "5000-digit-int", "non-utf8"],
)
def test_hostile_manifest_json_is_a_pack_error(tmp_path, text, match):
    (tmp_path / "manifest.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(PackError, match=match):
        open_pack(tmp_path)


def test_parity_arrays_are_capped_before_decoding(tiny_pack, tmp_path):
    """A small .npz whose header claims a 1.6 GB array: refused from the header alone."""
    pack = copy_pack(tiny_pack, tmp_path / "p")
    header = {"descr": "<f4", "fortran_order": False, "shape": (400_000_000,)}
    npy = bytearray(b"\x93NUMPY\x01\x00")
    text = repr(header).encode() + b" "
    text += b" " * ((-len(npy) - 2 - len(text) - 1) % 64) + b"\n"
    npy += len(text).to_bytes(2, "little") + text + b"\x00" * 1024
    with zipfile.ZipFile(pack / "parity.npz", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("inputs.npy", bytes(npy))
    rehash(pack, "parity.npz")
    with open_pack(pack) as opened, pytest.raises(PackError, match="decode to more than"):
        opened.load_parity()


@pytest.mark.parametrize("key", ["fp32_max_abs", "int8_min_psnr_db"])
@pytest.mark.parametrize("value", ["0.1", None, True])
def test_threshold_of_wrong_type_is_a_pack_error(tiny_pack, tmp_path, key, value):
    from talkinghead.sdk.parity import _threshold

    with pytest.raises(PackError, match=key):
        _threshold({key: value}, key, 1.0, "parity")


def _zip(path: Path, members: dict[str, bytes], encrypted: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            zf.writestr(info, data)
            if name == encrypted:
                info.flag_bits |= 0x1  # central directory says: encrypted
    return path


@pytest.mark.parametrize(
    "members, encrypted, match",
    [
        ({"manifest.json": b"{}"}, "manifest.json", "encrypted"),
        ({"x": b"1", "x/y": b"2"}, None, "both a file and a folder"),
        ({"a" * 300: b"1", "manifest.json": b"{}"}, None, "name too long"),
    ],
    ids=["encrypted", "x-and-x/y", "300-char-name"],
)
def test_hostile_zips_are_pack_errors(tmp_path, members, encrypted, match):
    z = _zip(tmp_path / "p.zip", members, encrypted)
    with pytest.raises(PackError, match=match):
        open_pack(z)
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob("talkinghead-pack-*/x"))


# ----------------------------------------------------------------------------- outputs


def test_output_folder_refuses_a_non_empty_target_and_force_keeps_other_files(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "mine.txt").write_text("user's file")
    (target / "pack.bin").write_text("old")
    with pytest.raises(OutputExistsError):
        with output_folder(target):
            pass
    with output_folder(target, force=True) as tmp:
        (tmp / "pack.bin").write_text("new")
    assert (target / "mine.txt").read_text() == "user's file"
    assert (target / "pack.bin").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary left


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_failed_or_interrupted_output_leaves_target_and_no_temporary(tmp_path, exc):
    target = tmp_path / "out"
    target.mkdir()
    (target / "pack.bin").write_text("old")
    with pytest.raises(exc):
        with output_folder(target, force=True) as tmp:
            (tmp / "pack.bin").write_text("half")
            raise exc()
    with pytest.raises(exc):
        with output_file(tmp_path / "a.mp4", force=True) as tmp:
            tmp.write_text("half")
            raise exc()
    assert (target / "pack.bin").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_output_checks_refuse_files_folders_and_proc(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(InvalidInputError, match="not a folder"):
        with output_folder(tmp_path / "f", force=True):
            pass
    with pytest.raises(OutputExistsError):
        with output_file(tmp_path / "f"):
            pass
    with pytest.raises(InvalidInputError, match="is a folder"):
        with output_file(tmp_path, force=True):
            pass
    with pytest.raises((InvalidInputError, OSError)):
        with output_file("/proc/talkinghead-test.mp4", force=True):
            pass


def test_write_pack_over_a_folder_keeps_the_users_files(tmp_path):
    """Export into the folder that holds its own input: refused, and with force the input
    and every unrelated file survive."""
    out = tmp_path / "D"
    out.mkdir()
    (out / "refiner.safetensors").write_bytes(b"input weights")
    (out / "notes.txt").write_text("unrelated")
    with pytest.raises(OutputExistsError):
        make_tiny_pack(out, runtimes=("onnxruntime",), force=False)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "refiner.safetensors"]
    pack = make_tiny_pack(out, runtimes=("onnxruntime",), force=True)
    assert (pack / "refiner.safetensors").read_bytes() == b"input weights"
    assert (pack / "notes.txt").read_text() == "unrelated"
    assert verify_pack(pack).ok
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".D.")]  # no temporary


# ----------------------------------------------------------------------------- signatures


def test_signed_pack_round_trip_and_tamper(tiny_pack, keys, tmp_path):
    from talkinghead.sdk.signing import generate_keypair, load_signing_key, sign_pack_folder

    key, pub = keys
    pack = copy_pack(tiny_pack, tmp_path / "signed")
    sign_pack_folder(pack, load_signing_key(key))
    with open_pack(pack, trusted_keys=[pub]) as opened:
        assert opened.manifest.name == "tiny"
    # The zip carries the signature too.
    from talkinghead.sdk.pack import zip_pack

    with open_pack(zip_pack(pack, tmp_path / "signed.zip"), trusted_keys=[pub]):
        pass
    _, other = generate_keypair(tmp_path / "other")
    with pytest.raises(SignatureError, match="not signed by a trusted key"):
        open_pack(pack, trusted_keys=[other])
    # Tamper: lower a parity threshold (hashes untouched): the signature no longer matches.
    edit_manifest(pack, lambda m: m["parity"].update(fp32_max_abs=1e9))
    with pytest.raises(SignatureError):
        open_pack(pack, trusted_keys=[pub])
    with pytest.raises(SignatureError, match="not signed"):
        open_pack(tiny_pack, trusted_keys=[pub])


def test_cli_keygen_sign_verify_refuse(tiny_pack, tmp_path):
    from talkinghead.cli import main

    assert main(["keygen", str(tmp_path / "k")]) == 0
    assert oct((tmp_path / "k.key").stat().st_mode & 0o777) == "0o600"
    assert main(["keygen", str(tmp_path / "k")]) == 2  # never overwrites a key unasked
    from talkinghead.sdk.signing import load_signing_key, sign_pack_folder

    pack = copy_pack(tiny_pack, tmp_path / "p")
    args = ["verify", str(pack), "--no-parity", "--key", str(tmp_path / "k.pub")]
    assert main(args) == 2  # unsigned
    sign_pack_folder(pack, load_signing_key(tmp_path / "k.key"))
    assert main(args) == 0
    edit_manifest(pack, lambda m: m.update(name="evil"))
    assert main(args) == 2


def test_native_th_open_signed(tiny_pack, keys, tmp_path):
    from talkinghead.bindings import native
    from talkinghead.sdk.signing import load_signing_key, sign_pack_folder

    key, pub = keys
    pack = copy_pack(tiny_pack, tmp_path / "p")
    lib = native.build_native().library
    assert _native_open(native, pack, lib, [pub]) == "TH_ERR_SIGNATURE"  # unsigned
    sign_pack_folder(pack, load_signing_key(key))
    assert _native_open(native, pack, lib, [pub]) != "TH_ERR_SIGNATURE"
    edit_manifest(pack, lambda m: m.update(name="evil"))
    assert _native_open(native, pack, lib, [pub]) == "TH_ERR_SIGNATURE"
    assert _native_open(native, pack, lib, None) != "TH_ERR_SIGNATURE"  # th_open: no signature


def _native_open(native, pack: Path, lib: Path, keys) -> str:
    """The status of opening ``pack`` natively: "TH_OK", or the refusal's status name.

    (Until the C library reads schema 3 packs, a pack that passes the signature check is
    refused next for its schema: TH_ERR_UNSUPPORTED, not TH_ERR_SIGNATURE.)
    """
    try:
        native.NativeAvatar(pack, "fp32", lib, trusted_keys=keys).close()
    except (PackError, BackendError, InvalidInputError) as e:
        return next(n for n in native.STATUS_NAMES if f": {n}: " in str(e))
    return "TH_OK"


# ----------------------------------------------------------------------------- untrusted models


@pytest.mark.slow  # child processes
def test_program_that_aborts_executorch_is_refused_and_the_process_lives(tiny_pack, tmp_path):
    """A non-UTF-8 byte in a .pte string aborts ExecuTorch's binding (SIGABRT) in-process;
    re-hashed, it passes the hashes, so only the child-process check stands between."""
    from talkinghead.sdk.avatar import Avatar, AvatarOptions

    pack = copy_pack(tiny_pack, tmp_path / "p")
    pte = next(p for p in pack.iterdir() if p.suffix == ".pte")
    data = bytearray(pte.read_bytes())
    at = data.find(b"XnnpackBackend")
    assert at > 0
    data[at + 1] = 0xFF
    pte.write_bytes(bytes(data))
    rehash(pack, pte.name)
    opts = AvatarOptions(pack=pack, backend="executorch", precision="fp32")
    with pytest.raises(BackendError, match="SIGABRT"):
        Avatar.create_from_options(opts)


def test_model_of_the_wrong_size_is_refused_at_open(tmp_path):
    from talkinghead.sdk.avatar import Avatar, AvatarOptions

    pack = make_tiny_pack(tmp_path / "p", runtimes=("onnxruntime",), out_size=32)
    opts = AvatarOptions(pack=pack, backend="onnxruntime", precision="fp32")
    with pytest.raises(PackError, match=r"output shape is \[1, 3, 32, 32\]"):
        Avatar.create_from_options(opts)


@pytest.mark.slow  # a child process per fuzzed model file
def test_fuzzer_over_every_model_file_kind_has_no_crash(tiny_pack):
    """Quick form in CI; TALKINGHEAD_FUZZ_CASES=500 runs the long form."""
    cases = int(os.environ.get("TALKINGHEAD_FUZZ_CASES", "16"))  # two per file kind
    proc = subprocess.run(
        [sys.executable, "-m", "talkinghead.benchmarks.fuzz_packs", str(tiny_pack),
         "--cases", str(cases), "--seed", os.environ.get("TALKINGHEAD_FUZZ_SEED", "0")],
        capture_output=True, text=True, timeout=60 + 20 * cases,
    )  # fmt: skip
    assert proc.returncode >= 0, f"the fuzzer's process died from signal {-proc.returncode}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["untyped"] == [] and proc.returncode == 0
    assert sum(result["outcomes"].values()) == cases
    kinds = {".pte", ".bpte", ".tflite", ".onnx", ".ort", ".npz", "rig", "manifest"}
    assert set(result["per_kind"]) == kinds


# ----------------------------------------------------------------------------- Avatar


@pytest.mark.parametrize(
    "backend",
    [pytest.param("executorch", marks=pytest.mark.slow), "litert", "onnxruntime"],
)
def test_avatar_shared_by_four_threads_renders_each_callers_frame(tiny_pack, backend):
    from talkinghead.sdk.avatar import Avatar, AvatarOptions
    from talkinghead.sdk.mesh_motion import builtin_mesh_motion

    opts = AvatarOptions(pack=tiny_pack, backend=backend, precision="fp32")
    with Avatar.create_from_options(opts) as avatar:
        meshes = builtin_mesh_motion(avatar.neutral_mesh, 8, seed=5)
        want = [avatar.render(m) for m in meshes]
        got: dict[tuple[int, int], np.ndarray] = {}
        errors: list[BaseException] = []

        def worker(t: int) -> None:
            try:
                for r in range(6):
                    i = (t * 3 + r) % len(meshes)
                    got[(t, r)] = (i, avatar.render(meshes[i]))
            except BaseException as e:  # noqa: BLE001 - collected and asserted below
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert not errors
    assert len(got) == 24
    for i, frame in got.values():
        np.testing.assert_array_equal(frame, want[i])


def test_avatar_options_are_validated(tiny_pack):
    from talkinghead.sdk.avatar import Avatar, AvatarOptions

    with pytest.raises(InvalidInputError, match="pack must be"):
        Avatar.create_from_options(AvatarOptions(pack=None))
    with pytest.raises(InvalidInputError, match="result_callback must be callable"):
        Avatar.create_from_options(AvatarOptions(pack=tiny_pack, result_callback=42))
    with pytest.raises(InvalidInputError, match="trusted key"):
        Avatar.create_from_options(AvatarOptions(pack=tiny_pack, trusted_keys=[42]))


def test_unclosed_avatar_on_a_zip_removes_its_folder(tiny_pack, tmp_path):
    from talkinghead.sdk.avatar import Avatar, AvatarOptions
    from talkinghead.sdk.pack import zip_pack

    z = zip_pack(tiny_pack, tmp_path / "p.zip")
    avatar = Avatar.create_from_options(
        AvatarOptions(pack=z, backend="onnxruntime", precision="fp32")
    )
    root = avatar.pack._tempdir
    assert root is not None and root.is_dir()
    del avatar
    gc.collect()
    assert not root.exists()


# ----------------------------------------------------------------------------- media


def test_decompression_bomb_png_is_a_clean_error(tmp_path):
    """A 30000 x 30000 PNG of a few kB: refused from its header, never decoded."""
    from PIL import Image

    from talkinghead.sdk.provenance import verify_media

    path = tmp_path / "bomb.png"
    Image.new("1", (30000, 30000)).save(path)
    assert path.stat().st_size < 1 << 20
    with pytest.raises(ImageReadError, match="too large|decompression"):
        verify_media(path)


def test_fifo_media_is_refused_without_hanging(tmp_path):
    from talkinghead.sdk.provenance import verify_media

    os.mkfifo(tmp_path / "clip.mp4")
    with pytest.raises(ImageReadError):
        within(10, verify_media, tmp_path / "clip.mp4")


@pytest.mark.slow  # encodes and verifies 4K clips
def test_verify_media_memory_is_bounded_on_a_4k_clip(tmp_path):
    """Streamed: the peak does not grow with the clip's length (docs/security.md has the
    10 s figures: 4K and 1080p both under 400 MB)."""
    from talkinghead.benchmarks.media_memory import make_clip, measure

    clip = make_clip(tmp_path / "4k.mp4", 3840, 2160, seconds=1.2)
    result = measure(clip, max_frames=250)
    assert result["frames"] == 30
    assert result["peak_bytes"] < 400 * 2**20, result


def test_signed_round_trip_through_the_jni_glue(tiny_pack, keys, tmp_path):
    """Sign, open, tamper, refuse from a JVM, through the glue Avatar.openSigned calls."""
    from test_bindings import _build_jni_glue, _jdk, _run

    from talkinghead.bindings import native
    from talkinghead.sdk.signing import load_signing_key, sign_pack_folder

    if _jdk() is None:
        pytest.skip("no JDK (jni.h, javac, java) on this machine")
    _, javac, java = _jdk()
    build = native.build_native()
    _build_jni_glue(build, tmp_path)
    sources = sorted((native.BINDINGS_DIR / "android/jvm-check/com/talkinghead").glob("*.java"))
    _run([javac, "-d", tmp_path / "classes", *sources])
    key, pub = keys
    pack = copy_pack(tiny_pack, tmp_path / "p")

    def status() -> int:
        proc = _run([java, f"-Djava.library.path={tmp_path}", "-cp", tmp_path / "classes",
                     "com.talkinghead.SignedCheck", pack, pub.read_text().strip()])  # fmt: skip
        return int(proc.stdout.split("status ")[1])

    assert status() == 13  # unsigned: TH_ERR_SIGNATURE
    sign_pack_folder(pack, load_signing_key(key))
    assert status() != 13  # signed: past the signature (opened, or refused for another reason)
    edit_manifest(pack, lambda m: m.update(name="evil"))
    assert status() == 13


def test_native_open_and_verify_files_refuse_fifos_without_hanging(tiny_pack, tmp_path):
    """C: a FIFO manifest or a FIFO model/parity file is TH_ERR_PACK, never a blocked open."""
    from talkinghead.bindings import native

    lib = native.build_native().library
    fifo_pack = tmp_path / "fifo-manifest"
    fifo_pack.mkdir()
    os.mkfifo(fifo_pack / "manifest.json")
    assert within(10, _native_open, native, fifo_pack, lib, None) == "TH_ERR_PACK"
    pack = copy_pack(tiny_pack, tmp_path / "p")
    with native.NativeAvatar(pack, "fp32", lib) as avatar:  # opened: now the parity file
        (pack / "parity.npz").unlink()
        os.mkfifo(pack / "parity.npz")
        with pytest.raises(PackError, match="TH_ERR_PACK"):
            within(10, avatar.verify_files)
    pte = next(p for p in pack.iterdir() if p.suffix == ".pte")
    pte.unlink()
    os.mkfifo(pte)
    assert within(10, _native_open, native, pack, lib, None) == "TH_ERR_PACK"


def test_outputs_get_ordinary_permissions(tmp_path):
    """The temporaries are private (0600/0700); what is renamed into place is not."""
    mask = os.umask(0o022)
    try:
        with output_file(tmp_path / "a.mp4") as tmp:
            tmp.write_bytes(b"x")
        with output_folder(tmp_path / "pack") as tmp:
            (tmp / "m.json").write_text("{}")
    finally:
        os.umask(mask)
    assert (tmp_path / "a.mp4").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "pack").stat().st_mode & 0o777 == 0o755


@pytest.mark.parametrize(
    "header, match",
    [
        (b"{'descr': '<f4', 'fortran_order': False, 'shape': (", "malformed header"),
        (b"{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 300000000)}", "negative"),
    ],
    ids=["unterminated", "negative-dimension"],
)
def test_malformed_parity_headers_are_pack_errors(header, match):
    """Found by the fuzzer: numpy's header parser raises tokenize errors; a negative
    dimension would lower the size total that caps the other arrays."""
    import io

    from talkinghead.sdk.pack import _check_npz_size

    text = header + b" " * ((-10 - len(header) - 1) % 64) + b"\n"
    npy = b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("inputs.npy", npy)
    with pytest.raises(PackError, match=match):
        _check_npz_size(buf.getvalue(), 256 << 20)
