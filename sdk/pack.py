"""The avatar pack: a folder (or a .zip of one) holding model files and ``manifest.json``.

Reading, verifying and writing packs; the format itself (names, schema versions, the
manifest's types) is :mod:`talkinghead.sdk.pack_schema`. This is the runtime's lowest layer. It imports neither torch nor ``talkinghead.export``;
numpy is used only for parity vectors. Everything a pack holds is listed in the manifest
with its sha256, and every file is checked before any runtime sees it: a native runtime
handed a corrupt model file can take the whole process down.

Layout (docs/avatar-pack.md describes every key)::

    astronaut/
      manifest.json
      astronaut_student-s_xnnpack_fp32.pte     ExecuTorch, XNNPACK
      astronaut_student-s_xnnpack_q8.pte
      astronaut_student-s_xnnpack_q8.bpte      (optional: BundledProgram with parity vectors)
      astronaut_student-s_litert_fp32.tflite   LiteRT, NHWC
      astronaut_student-s_onnx_q8.onnx         ONNX (+ .ort twin for ORT mobile builds)
      photo.png            (optional: the enrolled crop)
      parity.npz           (optional: inputs and reference outputs for a self-check)

Schema 2 adds, per model, its ``format``, its own ``input``/``output`` tensor specs (layout
NHWC, int8 quantization) and free-form ``info``; schema 1 packs (ExecuTorch only) still read.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
import weakref
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from tokenize import TokenError
from typing import Any

from talkinghead.errors import InvalidInputError, PackError, PackIntegrityError
from talkinghead.sdk.assets import sha256_file
from talkinghead.sdk.files import (
    MAX_MANIFEST_BYTES,
    MAX_PACK_FILE_BYTES,
    MAX_PARITY_BYTES,
    output_folder,
    read_regular,
    sha256_regular,
)
from talkinghead.sdk.pack_schema import (
    GENERATOR_KIND,
    INPUT_CHANNELS,
    MANIFEST_NAME,
    PARITY_NAME,
    PRECISIONS,
    RIG_NAME,
    AvatarManifest,
    Identity,
    LandmarkConvention,
    ModelEntry,
    ModelSource,
    image_spec,
    landmarks_68x2,
    parse_manifest,
    safe_relpath,
)
from talkinghead.sdk.signing import SIGNATURE_NAME, TrustedKey, check_signature, load_public_keys

# Zip extraction limits: a pack is a few small models and a photo, never gigabytes.
MAX_ZIP_BYTES = 1 << 30
MAX_ZIP_MEMBERS = 1000
MAX_ZIP_NAME = 1024
_CHUNK = 1 << 20


def _load_signed_manifest(root: Path, trusted: list[bytes]) -> AvatarManifest:
    """The manifest of ``root``, parsed from the very bytes whose signature was checked."""
    path = root / MANIFEST_NAME
    if not path.exists() and not path.is_symlink():
        raise PackError(f"not an avatar pack: {path} does not exist")
    raw = read_regular(path, MAX_MANIFEST_BYTES, PackError)
    sig_path = root / SIGNATURE_NAME
    sig = None
    if sig_path.exists() or sig_path.is_symlink():
        sig = read_regular(sig_path, MAX_MANIFEST_BYTES, PackError)
    check_signature(raw, sig, trusted, str(root))
    return parse_manifest(raw, str(path))


def load_manifest(folder: str | os.PathLike[str]) -> AvatarManifest:
    """Read and validate ``folder/manifest.json``. Raises PackError with the reason."""
    path = Path(folder) / MANIFEST_NAME
    if not path.exists() and not path.is_symlink():
        raise PackError(f"not an avatar pack: {path} does not exist")
    # A regular file (not a FIFO, device or link) of bounded size, checked before reading.
    raw = read_regular(path, MAX_MANIFEST_BYTES, PackError)
    return parse_manifest(raw, str(path))


# ----------------------------------------------------------------------------- writing


def write_pack(
    folder: str | os.PathLike[str],
    *,
    name: str,
    resolution: int,
    models: Sequence[ModelSource],
    neutral_landmarks: Any,
    rig: bytes,
    photo: str | os.PathLike[str] | None = None,
    identity_params: Mapping[str, Any] | None = None,
    files: Mapping[str, str | os.PathLike[str] | bytes] | None = None,
    parity: Mapping[str, Any] | None = None,
    parity_info: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    generator: Mapping[str, Any] | None = None,
    tuning: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    signing_key: bytes | None = None,
) -> Path:
    """Write a pack to ``folder``; hash every file; return ``folder``.

    models: model files, copied in under their own names.
    neutral_landmarks: (68, 2) float, crop pixels (array or nested lists).
    rig: the warp rig (``sdk.warp.rig_to_bytes``), shipped as ``rig.safetensors``.
    generator: extra facts for the manifest's ``generator`` entry (e.g. the refiner's name).
    tuning: the manifest's ``tuning`` entry (``sdk.tuning.tuning_record``): the fastest
        precision and thread count per runtime, which ``Avatar`` uses by default.
    photo: the enrolled crop as a PNG file; shipped as ``photo.png``.
    files: any extra files, pack-relative name -> source path or bytes.
    parity: arrays for the self-check, saved to ``parity.npz`` (suggested keys: ``inputs``
        (N, 1, 3, S, S) and ``outputs.<model file>``); ``parity_info`` adds free-form fields
        (e.g. tolerances) to the manifest's ``parity`` entry.
    signing_key: a 32-byte Ed25519 seed (``sdk.signing``); signs the manifest into
        ``manifest.sig``.
    The manifest is written last, so a folder without one is an unfinished pack. The pack
    is written beside ``folder`` and renamed into place; an existing non-empty folder is
    refused unless ``overwrite``, which replaces only the pack's own files.
    """
    if not isinstance(resolution, int) or resolution <= 0:
        raise InvalidInputError(f"resolution must be a positive int, got {resolution!r}")
    if not models:
        raise InvalidInputError("a pack needs at least one model")
    if not isinstance(rig, bytes):
        raise InvalidInputError("rig must be the bytes of a warp rig (sdk.warp.rig_to_bytes)")
    landmarks = landmarks_68x2(_tolist(neutral_landmarks), "neutral_landmarks", InvalidInputError)
    # Written beside the target and renamed into place: an existing folder is refused unless
    # ``overwrite``, which replaces only the pack's own files (never the folder's others).
    with output_folder(folder, force=overwrite) as tmp:
        _write_pack_files(
            tmp, name=name, resolution=resolution, models=models, landmarks=landmarks,
            photo=photo, identity_params=identity_params, files=files, parity=parity,
            parity_info=parity_info, provenance=provenance, rig=rig, generator=generator,
            tuning=tuning,
        )  # fmt: skip
        if signing_key is not None:
            from talkinghead.sdk.signing import sign_pack_folder

            sign_pack_folder(tmp, signing_key)
    return Path(folder)


def _write_pack_files(
    root: Path,
    *,
    name: str,
    resolution: int,
    models: Sequence[ModelSource],
    landmarks: tuple[tuple[float, float], ...],
    photo: str | os.PathLike[str] | None,
    identity_params: Mapping[str, Any] | None,
    files: Mapping[str, str | os.PathLike[str] | bytes] | None,
    parity: Mapping[str, Any] | None,
    parity_info: Mapping[str, Any] | None,
    provenance: Mapping[str, Any] | None,
    rig: bytes,
    generator: Mapping[str, Any] | None,
    tuning: Mapping[str, Any] | None = None,
) -> None:
    """write_pack's body, into the empty folder ``root``."""
    written: dict[str, str] = {}

    def put(rel: str, src: str | os.PathLike[str] | bytes) -> str:
        rel = safe_relpath(rel)
        if rel in written or rel == MANIFEST_NAME:
            raise InvalidInputError(f"pack file name used twice or reserved: {rel!r}")
        dst = root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(src, bytes):
            dst.write_bytes(src)
        else:
            if not Path(src).is_file():
                raise InvalidInputError(f"pack input file not found: {src}")
            shutil.copyfile(src, dst)
        written[rel] = sha256_file(dst)
        return rel

    entries = []
    for m in models:
        if m.precision not in PRECISIONS:
            raise InvalidInputError(
                f"model precision must be one of {PRECISIONS}, got {m.precision!r}"
            )
        rel = put(Path(m.path).name, m.path)
        info = dict(m.info)
        if m.bundled is not None:
            brel = put(Path(m.bundled).name, m.bundled)
            info["bundled"] = {**dict(m.bundled_info), "file": brel}
        entries.append(
            ModelEntry(
                file=rel,
                sha256=written[rel],
                bytes=(root / rel).stat().st_size,
                runtime=m.runtime,
                backend=m.backend,
                precision=m.precision,
                format=m.format,
                input=m.input,
                output=m.output,
                info=info,
            )
        )
    photo_rel = put("photo.png", photo) if photo is not None else None
    put(RIG_NAME, rig)
    for rel, src in (files or {}).items():
        put(rel, src)
    parity_entry = None
    if parity is not None:
        import numpy as np

        buf = _npz_bytes({k: np.asarray(v) for k, v in parity.items()})
        put(PARITY_NAME, buf)
        parity_entry = {**dict(parity_info or {}), "file": PARITY_NAME, "arrays": sorted(parity)}

    manifest = AvatarManifest(
        name=name,
        resolution=resolution,
        models=tuple(entries),
        identity=Identity(
            neutral_landmarks=landmarks, photo=photo_rel, params=dict(identity_params or {})
        ),
        files=written,
        landmark_convention=LandmarkConvention(size=resolution),
        input=image_spec(
            "refiner_input",
            resolution,
            "warped photo RGB, rasterised target landmarks, warp validity",
            channels=INPUT_CHANNELS,
        ),
        output=image_spec("frame", resolution, "the finished RGB frame"),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        parity=parity_entry,
        tuning=dict(tuning) if tuning is not None else None,
        provenance=dict(provenance or {}),
        generator={**dict(generator or {}), "kind": GENERATOR_KIND, "rig": RIG_NAME},
    )
    # Round-trip through the validator so that a pack we write is a pack we can read.
    text = json.dumps(manifest.to_json(), indent=2, allow_nan=False)
    AvatarManifest.from_json(json.loads(text))
    (root / MANIFEST_NAME).write_text(text + "\n", encoding="utf-8")


def _tolist(x: Any) -> Any:
    return x.tolist() if hasattr(x, "tolist") else x


def _npz_bytes(arrays: Mapping[str, Any]) -> bytes:
    import io

    import numpy as np

    for k, v in arrays.items():
        if v.dtype == object:
            raise InvalidInputError(
                f"parity array {k!r} has dtype object; only numeric arrays are allowed"
            )
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def zip_pack(folder: str | os.PathLike[str], zip_path: str | os.PathLike[str]) -> Path:
    """Zip a pack folder (manifest and every listed file, at the archive root) to ``zip_path``."""
    root = Path(folder)
    manifest = load_manifest(root)
    zip_path = Path(zip_path)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.write(root / MANIFEST_NAME, MANIFEST_NAME)
        if (root / SIGNATURE_NAME).is_file():
            zf.write(root / SIGNATURE_NAME, SIGNATURE_NAME)
        for rel in sorted(manifest.files):
            zf.write(root / rel, rel)
    return zip_path


# ----------------------------------------------------------------------------- verifying


@dataclass
class VerifyReport:
    """What ``verify_pack`` found. ``ok`` when nothing is missing, mismatched or unsafe."""

    folder: Path
    checked: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    unsafe: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.mismatched or self.unsafe)

    def __str__(self) -> str:
        status = "OK" if self.ok else "FAILED"
        lines = [f"pack {self.folder}: {status}, {len(self.checked)} file(s) verified"]
        for label, names in (
            ("sha256 mismatch", self.mismatched),
            ("missing", self.missing),
            ("unsafe", self.unsafe),
            ("not listed (ignored)", self.extra),
        ):
            lines += [f"  {label}: {n}" for n in names]
        return "\n".join(lines)

    def raise_for_errors(self) -> None:
        """PackIntegrityError on a hash mismatch, PackError on a missing or unsafe file."""
        if self.mismatched:
            raise PackIntegrityError(
                f"pack {self.folder}: sha256 mismatch for {', '.join(self.mismatched)} "
                "(file corrupt, truncated or modified)"
            )
        if self.unsafe:
            raise PackError(
                f"pack {self.folder}: unsafe entries (escape the folder or are links): {', '.join(self.unsafe)}"
            )
        if self.missing:
            raise PackError(
                f"pack {self.folder}: missing files listed in manifest: {', '.join(self.missing)}"
            )


def _inside(root: Path, rel: str) -> Path | None:
    """root/rel if it is a regular file, not a link, whose real path stays inside root; else None."""
    p = root / rel
    try:
        real = p.resolve(strict=True)
    except (FileNotFoundError, RuntimeError):
        return None
    if p.is_symlink() or root.resolve() not in real.parents:
        return None
    return p


def verify_pack(
    folder: str | os.PathLike[str], manifest: AvatarManifest | None = None
) -> VerifyReport:
    """Check every file the manifest lists: present, inside the folder, not a link, sha256 matching.

    Files in the folder that the manifest does not list are reported in ``extra`` (they are
    never loaded, so they are not an error).
    """
    root = Path(folder)
    manifest = manifest if manifest is not None else load_manifest(root)
    report = VerifyReport(folder=root)
    for rel, expected in sorted(manifest.files.items()):
        p = root / rel
        if not p.exists() and not p.is_symlink():
            report.missing.append(rel)
            continue
        if _inside(root, rel) is None or not p.is_file():
            report.unsafe.append(rel)
            continue
        try:
            digest = sha256_regular(p, MAX_PACK_FILE_BYTES, PackError)
        except PackError:  # a FIFO, a device, too large, or swapped for a link meanwhile
            report.unsafe.append(rel)
            continue
        if digest != expected:
            report.mismatched.append(rel)
        else:
            report.checked.append(rel)
    listed = set(manifest.files) | {MANIFEST_NAME, SIGNATURE_NAME}
    for dirpath, dirnames, filenames in os.walk(root):  # does not follow directory links
        for fn in filenames + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
            rel = (Path(dirpath) / fn).relative_to(root).as_posix()
            if rel not in listed:
                report.extra.append(rel)
    report.extra.sort()
    return report


# ----------------------------------------------------------------------------- zips


def extract_zip(
    zip_path: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    max_bytes: int = MAX_ZIP_BYTES,
    max_members: int = MAX_ZIP_MEMBERS,
) -> Path:
    """Extract a zipped pack safely into ``dest``; return the folder holding manifest.json.

    Rejects (PackError) members that are absolute or climb out with '..', symlinks and other
    non-regular entries, duplicate names, more than ``max_members`` entries, and archives
    whose uncompressed size exceeds ``max_bytes`` (counted while writing, so a lying header
    does not help).
    """
    dest = Path(dest)
    try:
        zf = zipfile.ZipFile(zip_path)
    except (OSError, zipfile.BadZipFile, ValueError, NotImplementedError) as e:
        raise PackError(f"cannot open zipped pack {zip_path}: {e}") from e
    with zf:
        infos = zf.infolist()
        if len(infos) > max_members:
            raise PackError(
                f"zipped pack {zip_path} has {len(infos)} entries (limit {max_members})"
            )
        if sum(i.file_size for i in infos) > max_bytes:
            raise PackError(f"zipped pack {zip_path} expands beyond {max_bytes} bytes")
        seen: set[str] = set()
        plan: list[tuple[zipfile.ZipInfo, str]] = []
        for info in infos:
            # Unix mode bits; zips written without a file type leave them 0, which is fine.
            ftype = stat.S_IFMT(info.external_attr >> 16)
            if ftype and ftype not in (stat.S_IFREG, stat.S_IFDIR):
                raise PackError(
                    f"zipped pack {zip_path}: member {info.filename!r} is a link or special file"
                )
            if info.is_dir():
                safe_relpath(info.filename.rstrip("/"))
                continue
            rel = safe_relpath(info.filename)
            if rel in seen:
                raise PackError(f"zipped pack {zip_path}: member {rel!r} appears twice")
            if info.flag_bits & 0x1:
                raise PackError(f"zipped pack {zip_path}: member {rel!r} is encrypted")
            if len(rel) > MAX_ZIP_NAME or any(len(p.encode()) > 255 for p in rel.split("/")):
                raise PackError(f"zipped pack {zip_path}: member name too long: {rel[:60]!r}...")
            seen.add(rel)
            plan.append((info, rel))
        dirs = {"/".join(r.split("/")[:i]) for r in seen for i in range(1, r.count("/") + 1)}
        if clash := sorted(seen & dirs):  # 'x' and 'x/y': one name cannot be both
            raise PackError(f"zipped pack {zip_path}: {clash[0]!r} is both a file and a folder")
        total = 0
        for info, rel in plan:  # everything checked before anything is written
            out = dest / rel
            try:
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(out, "wb") as dst:
                    while chunk := src.read(_CHUNK):
                        total += len(chunk)
                        if total > max_bytes:
                            raise PackError(
                                f"zipped pack {zip_path} expands beyond {max_bytes} bytes"
                            )
                        dst.write(chunk)
            # CRC errors, truncated archives, unknown compression methods
            except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as e:
                raise PackError(f"zipped pack {zip_path}: cannot extract {rel!r}: {e}") from e
    if (dest / MANIFEST_NAME).is_file():
        return dest
    # Accept one wrapping folder (``zip -r astronaut.zip astronaut/``).
    subdirs = [p for p in dest.iterdir() if p.is_dir()]
    if len(subdirs) == 1 and (subdirs[0] / MANIFEST_NAME).is_file():
        return subdirs[0]
    raise PackError(f"zipped pack {zip_path} has no {MANIFEST_NAME} at its root")


def _check_npz_size(data: bytes, max_bytes: int) -> None:
    """PackError when the arrays of an .npz would decode to more than ``max_bytes`` in all.

    A few compressed MB can hold a GB of zeros; each member's .npy header says its shape
    and dtype, and is read without decoding the array.
    """
    import io

    import numpy as np

    total = 0
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        if len(zf.infolist()) > MAX_ZIP_MEMBERS:
            raise PackError(f"parity file has {len(zf.infolist())} arrays")
        for info in zf.infolist():
            try:
                with zf.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                    else:
                        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            # numpy parses the header's text with tokenize and literal_eval: any of their errors
            except (SyntaxError, TokenError, TypeError, MemoryError, RecursionError) as e:
                raise PackError(
                    f"parity array {info.filename!r} has a malformed header: {e}"
                ) from None
            if dtype.hasobject:
                raise PackError(f"parity array {info.filename!r} has dtype object")
            if any(n < 0 for n in shape):  # would subtract from the total below
                raise PackError(f"parity array {info.filename!r} has a negative dimension")
            total += int(np.prod(shape, dtype=object)) * dtype.itemsize
            if total > max_bytes:
                raise PackError(f"parity arrays would decode to more than {max_bytes >> 20} MB")


# ----------------------------------------------------------------------------- the pack


class AvatarPack:
    """An opened pack. A context manager: closing removes the folder a zipped pack was extracted to.

    Read model bytes with :meth:`read_verified`; it hashes exactly the bytes it returns, so
    what a runtime loads is what was checked.
    """

    def __init__(
        self, root: Path, manifest: AvatarManifest, *, tempdir: Path | None = None
    ) -> None:
        self.root = root
        self.manifest = manifest
        self._tempdir = tempdir
        # An unclosed pack still removes its extraction folder when collected or at exit.
        self._cleanup = (
            weakref.finalize(self, shutil.rmtree, str(tempdir), True) if tempdir else None
        )

    def path(self, rel: str) -> Path:
        """The filesystem path of a listed pack file."""
        rel = safe_relpath(rel)
        if rel not in self.manifest.files:
            raise PackError(f"{rel!r} is not listed in pack {self.manifest.name!r}")
        p = _inside(self.root, rel)
        if p is None:
            raise PackError(f"pack file {rel!r} is missing, a link, or outside the pack")
        return p

    def read_verified(self, rel: str) -> bytes:
        """The bytes of a listed file, after checking them against the manifest's sha256."""
        data = read_regular(self.path(rel), MAX_PACK_FILE_BYTES, PackError)
        if hashlib.sha256(data).hexdigest() != self.manifest.files[safe_relpath(rel)]:
            raise PackIntegrityError(
                f"pack file {rel!r} does not match its sha256 (corrupt or modified)"
            )
        return data

    def model(
        self, precision: str = "fp32", runtime: str = "executorch", format: str | None = None
    ) -> ModelEntry:
        return self.manifest.model(precision, runtime, format)

    def load_rig(self):
        """The avatar's warp rig (``sdk.warp.WarpRig``), hash-checked; PackError when unreadable."""
        from talkinghead.sdk.warp import rig_from_bytes

        rel = self.manifest.generator["rig"]
        try:
            rig = rig_from_bytes(self.read_verified(rel), rel)
        except InvalidInputError as e:
            raise PackError(f"pack {self.manifest.name!r}: {e}") from e
        if rig.size != self.manifest.resolution:
            raise PackError(
                f"pack {self.manifest.name!r}: rig is {rig.size} px, the manifest says "
                f"{self.manifest.resolution}"
            )
        return rig

    def load_parity(self) -> dict[str, Any]:
        """The parity arrays (numpy), hash-checked and loaded without pickle."""
        import io

        import numpy as np

        if self.manifest.parity is None:
            raise PackError(f"pack {self.manifest.name!r} has no parity vectors")
        data = self.read_verified(self.manifest.parity["file"])
        try:
            _check_npz_size(data, MAX_PARITY_BYTES)
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
        # zlib.error: a deflate stream corrupted inside a zip whose CRCs were recomputed
        except (
            ValueError,
            OSError,
            zipfile.BadZipFile,
            EOFError,
            NotImplementedError,
            zlib.error,
        ) as e:
            raise PackError(f"parity file of pack {self.manifest.name!r} is unreadable: {e}") from e

    def close(self) -> None:
        if self._cleanup is not None:
            self._cleanup()  # removes the extraction folder, once
            self._tempdir = None

    def __enter__(self) -> AvatarPack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        m = self.manifest
        return f"AvatarPack({m.name!r}, {m.resolution}px, models={[x.file for x in m.models]}, root={str(self.root)!r})"


def open_pack(
    path: str | os.PathLike[str],
    *,
    verify: bool = True,
    trusted_keys: Sequence[TrustedKey] | None = None,
) -> AvatarPack:
    """Open a pack folder or a ``.zip`` of one; with ``verify`` check every file's sha256 first.

    trusted_keys: Ed25519 public keys (``sdk.signing``). When given, the manifest's bytes
        must carry a signature by one of them (``manifest.sig``) before they are parsed,
        and every file is then hash-checked against that signed manifest.
    Raises PackError (bad manifest, missing or unsafe file, bad zip), PackIntegrityError
    (hash mismatch) or SignatureError (unsigned, or not signed by a trusted key).
    """
    trusted = load_public_keys(trusted_keys) if trusted_keys is not None else None
    path = Path(path)
    tempdir = None
    if path.is_file() and zipfile.is_zipfile(path):
        tempdir = Path(tempfile.mkdtemp(prefix="talkinghead-pack-"))
        try:
            root = extract_zip(path, tempdir)
        except BaseException:
            shutil.rmtree(tempdir, ignore_errors=True)
            raise
    elif path.is_dir():
        root = path
    else:
        raise PackError(f"not an avatar pack (folder or .zip): {path}")
    try:
        if trusted is None:
            manifest = load_manifest(root)
        else:
            manifest = _load_signed_manifest(root, trusted)
        if verify or trusted is not None:
            verify_pack(root, manifest).raise_for_errors()
    except BaseException:
        if tempdir is not None:
            shutil.rmtree(tempdir, ignore_errors=True)
        raise
    return AvatarPack(root, manifest, tempdir=tempdir)


__all__ = [
    "AvatarPack",
    "VerifyReport",
    "extract_zip",
    "load_manifest",
    "open_pack",
    "verify_pack",
    "write_pack",
    "zip_pack",
]
