"""Avatar packs: write, read back, verify, zip; and every way a pack can be broken gives a typed error."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from talkinghead.errors import BackendError, PackError, PackIntegrityError
from talkinghead.sdk.pack import (
    extract_zip,
    load_manifest,
    open_pack,
    verify_pack,
    write_pack,
    zip_pack,
)
from talkinghead.sdk.pack_schema import MANIFEST_NAME, SCHEMA_VERSION, AvatarManifest, ModelSource

S = 64
PNG_BYTES = b"\x89PNG\r\n\x1a\n" + bytes(range(256))  # contents do not matter to the pack layer


def neutral_landmarks() -> np.ndarray:
    """(68, 2) float, crop pixels: a ring, enough to be a plausible 68-point shape."""
    t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    return np.stack([S / 2 + 20 * np.cos(t), S / 2 + 24 * np.sin(t)], axis=1)


@pytest.fixture(scope="module")
def real_pte(tmp_path_factory) -> Path:
    """A real XNNPACK .pte of a tiny (1, 7, 64, 64) -> (1, 3, 64, 64) refiner."""
    import torch
    from torch import nn

    from talkinghead.export.executorch import export_executorch, pte_filename

    class TinyGenerator(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(7, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1)
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tanh(self.body(x) + x[:, :3])

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("pte") / pte_filename("tiny", quantized=False)
    return export_executorch(TinyGenerator().eval(), (torch.zeros(1, 7, S, S),), out)


@pytest.fixture
def model_files(tmp_path) -> list[ModelSource]:
    src = tmp_path / "src"
    src.mkdir()
    (src / "tiny_xnnpack_fp32.pte").write_bytes(b"fp32 model bytes " * 50)
    (src / "tiny_xnnpack_q8.pte").write_bytes(b"int8 model bytes " * 20)
    return [
        ModelSource(src / "tiny_xnnpack_fp32.pte", precision="fp32"),
        ModelSource(src / "tiny_xnnpack_q8.pte", precision="int8"),
    ]


@pytest.fixture(scope="module")
def rig_bytes() -> bytes:
    """A real warp rig of the astronaut at S px (the pack layer only stores and hashes it)."""
    from talkinghead.sdk.warp import rig_to_bytes

    sys.path.insert(0, str(Path(__file__).parent))
    from tiny_packs import enrolled_astronaut

    return rig_to_bytes(enrolled_astronaut().rig)


_RIG: list[bytes] = []


@pytest.fixture(autouse=True)
def _rig_for_make_pack(rig_bytes):
    _RIG[:] = [rig_bytes]


def make_pack(folder: Path, models: list[ModelSource], **overrides) -> Path:
    rng = np.random.default_rng(0)
    kwargs = dict(
        name="astronaut",
        resolution=S,
        models=models,
        neutral_landmarks=neutral_landmarks(),
        rig=_RIG[0],
        photo=None,
        identity_params={"shots": 1, "embedding_norm": 12.5},
        files={"notes/README.txt": b"enrolled from one photo\n"},
        parity={
            "inputs": rng.uniform(-1, 1, (2, 1, 7, S, S)).astype(np.float32),
            "outputs.tiny_xnnpack_fp32.pte": rng.uniform(-1, 1, (2, 1, 3, S, S)).astype(np.float32),
        },
        parity_info={"atol": 1e-4},
        provenance={"teacher": "teacher-xs", "student": "student-s", "notes": "test pack"},
    )
    kwargs.update(overrides)
    return write_pack(folder, **kwargs)


def edit_manifest(folder: Path, edit) -> None:
    path = folder / MANIFEST_NAME
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


# ----------------------------------------------------------------------------- round trip


def test_round_trip(tmp_path, model_files):
    photo = tmp_path / "crop.png"
    photo.write_bytes(PNG_BYTES)
    folder = make_pack(tmp_path / "pack", model_files, photo=photo)
    raw = json.loads((folder / MANIFEST_NAME).read_text())
    assert raw["schema_version"] == SCHEMA_VERSION == 3
    assert raw["generator"] == {"kind": "warp-refine", "rig": "rig.safetensors"}
    assert raw["format"] == "talkinghead.avatar-pack"
    assert raw["landmark_convention"] == {"name": "ibug68", "space": "crop_pixels", "size": S}
    assert raw["input"]["shape"] == [1, 7, S, S] and raw["input"]["range"] == [-1.0, 1.0]
    assert raw["output"]["shape"] == [1, 3, S, S]
    assert raw["input"]["name"] == "refiner_input"
    assert raw["identity"]["photo"] == "photo.png" and raw["identity"]["shots"] == 1
    # Every file but the manifest is listed with its hash: models, photo, parity, extras.
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert set(raw["files"]) == on_disk - {MANIFEST_NAME}
    assert {m["precision"] for m in raw["models"]} == {"fp32", "int8"}

    with open_pack(folder) as pack:
        m = pack.manifest
        assert m.name == "astronaut" and m.resolution == S
        assert AvatarManifest.from_json(m.to_json()) == m
        np.testing.assert_allclose(np.array(m.identity.neutral_landmarks), neutral_landmarks())
        assert m.identity.params == {"shots": 1, "embedding_norm": 12.5}
        assert m.provenance["student"] == "student-s"
        assert pack.model("int8").file == "tiny_xnnpack_q8.pte"
        assert pack.read_verified("photo.png") == PNG_BYTES
        parity = pack.load_parity()
        assert set(parity) == {"inputs", "outputs.tiny_xnnpack_fp32.pte"}
        assert parity["inputs"].shape == (2, 1, 7, S, S) and parity["inputs"].dtype == np.float32
        rig = pack.load_rig()
        assert rig.size == S and rig.mesh.shape == (478, 3)
        assert m.parity["atol"] == 1e-4
        with pytest.raises(PackError, match="no executorch/fp16"):
            pack.model("fp16")

    report = verify_pack(folder)
    assert report.ok and not report.extra and len(report.checked) == 6


def test_write_refuses_non_empty_folder(tmp_path, model_files):
    folder = make_pack(tmp_path / "pack", model_files)
    with pytest.raises(Exception, match="not empty"):
        make_pack(folder, model_files)
    make_pack(folder, model_files, overwrite=True)
    assert verify_pack(folder).ok


def test_pack_layer_does_not_import_torch():
    code = "import sys, talkinghead.sdk.pack; sys.exit('torch' in sys.modules or 'talkinghead.export' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


# ----------------------------------------------------------------------------- integrity


def test_hash_mismatch_names_the_file(tmp_path, model_files):
    folder = make_pack(tmp_path / "pack", model_files)
    with open(folder / "tiny_xnnpack_q8.pte", "r+b") as f:
        f.seek(5)
        f.write(b"X")
    report = verify_pack(folder)
    assert report.mismatched == ["tiny_xnnpack_q8.pte"] and not report.ok
    with pytest.raises(PackIntegrityError, match="tiny_xnnpack_q8.pte"):
        open_pack(folder)
    # Opening without verification still refuses to hand out the corrupt bytes.
    pack = open_pack(folder, verify=False)
    with pytest.raises(PackIntegrityError, match="tiny_xnnpack_q8.pte"):
        pack.read_verified("tiny_xnnpack_q8.pte")


def test_missing_file(tmp_path, model_files):
    folder = make_pack(tmp_path / "pack", model_files)
    (folder / "parity.npz").unlink()
    assert verify_pack(folder).missing == ["parity.npz"]
    with pytest.raises(PackError, match="missing.*parity.npz") as e:
        open_pack(folder)
    assert not isinstance(e.value, PackIntegrityError)


def test_extra_files_are_reported_not_fatal(tmp_path, model_files):
    folder = make_pack(tmp_path / "pack", model_files)
    (folder / "stray.bin").write_bytes(b"?")
    report = verify_pack(folder)
    assert report.ok and report.extra == ["stray.bin"]


@pytest.mark.skipif(os.name == "nt", reason="symlinks")
def test_listed_symlink_is_unsafe(tmp_path, model_files):
    folder = make_pack(tmp_path / "pack", model_files)
    outside = tmp_path / "outside.txt"
    outside.write_bytes(
        b"enrolled from one photo\n"
    )  # same bytes, same hash: only the link is wrong
    (folder / "notes/README.txt").unlink()
    (folder / "notes/README.txt").symlink_to(outside)
    assert verify_pack(folder).unsafe == ["notes/README.txt"]
    with pytest.raises(PackError, match="unsafe"):
        open_pack(folder)


# ----------------------------------------------------------------------------- manifest validation


def test_unknown_schema_version(tmp_path, model_files):
    folder = make_pack(tmp_path / "pack", model_files)
    edit_manifest(folder, lambda d: d.update(schema_version=0))
    with pytest.raises(PackError, match="unknown pack schema_version 0.*supports schema_version 3"):
        load_manifest(folder)


def test_newer_schema_version(tmp_path, model_files):
    folder = make_pack(tmp_path / "pack", model_files)
    edit_manifest(folder, lambda d: d.update(schema_version=SCHEMA_VERSION + 1))
    with pytest.raises(PackError, match="newer.*upgrade talkinghead"):
        open_pack(folder)


def test_malformed_json(tmp_path, model_files):
    folder = make_pack(tmp_path / "pack", model_files)
    (folder / MANIFEST_NAME).write_text('{"schema_version": 1, "name": ')
    with pytest.raises(PackError, match="not valid JSON.*line 1"):
        open_pack(folder)


def test_not_a_pack(tmp_path):
    with pytest.raises(PackError, match="not an avatar pack"):
        open_pack(tmp_path)
    with pytest.raises(PackError, match="not an avatar pack"):
        open_pack(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("models"), "missing key 'models'"),
        (lambda d: d.pop("schema_version"), "missing key 'schema_version'"),
        (
            lambda d: d["identity"].pop("neutral_landmarks"),
            "missing key 'identity.neutral_landmarks'",
        ),
        (lambda d: d["input"].pop("shape"), "missing key 'input.shape'"),
        (lambda d: d["models"][1].pop("sha256"), "missing key 'models\\[1\\].sha256'"),
        (lambda d: d.update(resolution="64"), "key 'resolution' must be int, got str"),
        (lambda d: d.update(schema_version=True), "key 'schema_version' must be int, got bool"),
        (lambda d: d["models"][0].update(precision="fp16"), "models\\[0\\].precision"),
        (
            lambda d: d["identity"].update(neutral_landmarks=[[0, 0]] * 67),
            "identity.neutral_landmarks",
        ),
        (lambda d: d["output"].update(shape=[1, 3, 32, 32]), "output.shape"),
        (lambda d: d.update(format="something-else"), "format"),
        (lambda d: d["models"][0].update(file="unlisted.pte"), "not listed in 'files'"),
    ],
)
def test_bad_manifest_names_the_key(tmp_path, model_files, edit, message):
    folder = make_pack(tmp_path / "pack", model_files)
    edit_manifest(folder, edit)
    with pytest.raises(PackError, match=message):
        load_manifest(folder)


@pytest.mark.parametrize(
    "name", ["../escape.txt", "/etc/passwd", "a/../../b", "C:\\x", "sub\\..\\x", ""]
)
def test_manifest_paths_cannot_escape(tmp_path, model_files, name):
    folder = make_pack(tmp_path / "pack", model_files)
    edit_manifest(folder, lambda d: d["files"].update({name: "0" * 64}))
    with pytest.raises(PackError, match="unsafe path"):
        open_pack(folder)


# ----------------------------------------------------------------------------- zips


def test_zip_round_trip_and_cleanup(tmp_path, model_files):
    folder = make_pack(tmp_path / "pack", model_files)
    zipped = zip_pack(folder, tmp_path / "astronaut.zip")
    with open_pack(zipped) as pack:
        root = pack.root
        assert pack.manifest == load_manifest(folder)
        assert verify_pack(root).ok
    assert not root.exists()


def test_zip_with_wrapping_folder(tmp_path, model_files):
    folder = make_pack(tmp_path / "astronaut", model_files)
    zipped = Path(shutil.make_archive(str(tmp_path / "wrapped"), "zip", tmp_path, "astronaut"))
    with open_pack(zipped) as pack:
        assert pack.manifest.name == "astronaut" and pack.root.name == "astronaut"
        assert folder.exists()


def _zip(path: Path, members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for info, data in members:
            zf.writestr(info, data)
    return path


@pytest.mark.parametrize(
    "member", ["../evil.txt", "/tmp/talkinghead-evil.txt", "ok/../../evil.txt"]
)
def test_zip_slip_is_rejected(tmp_path, model_files, member):
    folder = make_pack(tmp_path / "pack", model_files)
    zipped = zip_pack(folder, tmp_path / "p.zip")
    with zipfile.ZipFile(zipped, "a") as zf:
        zf.writestr(member, b"pwned")
    dest = tmp_path / "deep" / "dest"
    dest.mkdir(parents=True)
    with pytest.raises(PackError, match="unsafe path"):
        extract_zip(zipped, dest)
    with pytest.raises(PackError, match="unsafe path"):
        open_pack(zipped)
    assert (
        not (tmp_path / "deep" / "evil.txt").exists()
        and not Path("/tmp/talkinghead-evil.txt").exists()
    )
    assert not any(dest.iterdir())  # nothing extracted before the check


def test_zip_symlink_member_is_rejected(tmp_path):
    link = zipfile.ZipInfo("manifest.json")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    zipped = _zip(tmp_path / "link.zip", [(link, b"/etc/passwd")])
    with pytest.raises(PackError, match="link"):
        open_pack(zipped)


def test_zip_size_limit(tmp_path, model_files):
    folder = make_pack(tmp_path / "pack", model_files)
    zipped = zip_pack(folder, tmp_path / "p.zip")
    with pytest.raises(PackError, match="expands beyond 1000 bytes"):
        extract_zip(zipped, tmp_path / "dest", max_bytes=1000)
    bomb = _zip(tmp_path / "many.zip", [(f"f{i}", b"") for i in range(20)])
    with pytest.raises(PackError, match="20 entries"):
        extract_zip(bomb, tmp_path / "dest2", max_members=10)


def test_corrupt_zip(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(PackError):
        open_pack(bad)


# ----------------------------------------------------------------------------- real model in a pack


@pytest.mark.slow  # exports to ExecuTorch (module fixture)
def test_pack_runs_on_executorch_and_parity_holds(tmp_path, real_pte):
    from talkinghead.sdk.backends import ExecuTorchBackend

    x = np.random.default_rng(0).uniform(-1, 1, (1, 7, S, S)).astype(np.float32)
    with ExecuTorchBackend() as backend:
        backend.load(real_pte)
        y = backend.run(x)
    folder = make_pack(
        tmp_path / "pack",
        [ModelSource(real_pte)],
        parity={"inputs": x[None], f"outputs.{real_pte.name}": y[None]},
    )
    with open_pack(folder) as pack, ExecuTorchBackend() as backend:
        entry = pack.model("fp32")
        backend.load_bytes(pack.read_verified(entry.file), source=entry.file)
        parity = pack.load_parity()
        out = backend.run(parity["inputs"][0])
        np.testing.assert_allclose(out, parity[f"outputs.{entry.file}"][0], atol=1e-6)


@pytest.mark.slow  # exports to ExecuTorch (module fixture)
def test_truncated_pte_via_verify_and_backend(tmp_path, real_pte):
    from talkinghead.sdk.backends import ExecuTorchBackend

    folder = make_pack(tmp_path / "pack", [ModelSource(real_pte)], parity=None, files=None)
    pte = folder / real_pte.name
    data = pte.read_bytes()
    pte.write_bytes(data[: len(data) * 2 // 3])

    with pytest.raises(PackIntegrityError, match=real_pte.name):
        open_pack(folder)
    pack = open_pack(folder, verify=False)
    entry = pack.model("fp32")
    # Through the pack's hash: refused before the runtime sees a byte.
    with pytest.raises(PackIntegrityError, match=real_pte.name):
        ExecuTorchBackend().load(pack.root / entry.file, sha256=entry.sha256)
    # Straight to the backend, no hash: the header screen catches the truncation.
    with pytest.raises(BackendError, match="truncated"):
        ExecuTorchBackend().load(pack.root / entry.file)
