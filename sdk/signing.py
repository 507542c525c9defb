"""Ed25519 signatures over avatar packs (PyNaCl, i.e. libsodium, the library the C side uses).

A pack's ``manifest.json`` lists the sha256 of every file and the parity thresholds, so a
signature over the manifest's exact bytes covers the whole pack. The signature lives
beside it in ``manifest.sig``::

    {"algorithm": "ed25519", "public_key": "<64 hex>", "signature": "<128 hex>"}

The signed message is ``SIGNED_CONTEXT`` followed by the manifest's bytes, so a signature
made for a pack cannot be replayed as a signature of anything else.

Keys (``talkinghead keygen NAME``): ``NAME.key`` holds the 32-byte Ed25519 seed in hex
(mode 0600, never shipped), ``NAME.pub`` the 32-byte public key in hex. ``public_key`` in
the signature file only names the signer: trust comes from the caller's list of keys.
See docs/security.md for the trust model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from talkinghead.errors import InvalidInputError, PackError, SignatureError
from talkinghead.sdk.files import read_regular

SIGNATURE_NAME = "manifest.sig"
SIGNED_CONTEXT = b"talkinghead.avatar-pack.manifest.v1\x00"
ALGORITHM = "ed25519"
MAX_SIGNATURE_BYTES = 4096
MAX_KEY_BYTES = 4096

TrustedKey = bytes | str | os.PathLike[str]


def _nacl():
    try:
        import nacl.exceptions
        import nacl.signing
    except ImportError as e:  # a base dependency; a broken install says so plainly
        raise PackError("pack signatures need PyNaCl: pip install pynacl") from e
    return nacl.signing, nacl.exceptions


def _hex32(text: str, what: str) -> bytes:
    text = text.strip()
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise InvalidInputError(f"{what} must be 32 bytes in hex (64 characters)")
    return raw


def generate_keypair(stem: str | os.PathLike[str], force: bool = False) -> tuple[Path, Path]:
    """Write ``stem.key`` (private, mode 0600) and ``stem.pub``; return both paths.

    An existing file is refused unless ``force``.
    """
    from talkinghead.sdk.files import check_output_file

    signing, _ = _nacl()
    stem = Path(stem)
    key_path = check_output_file(stem.with_name(stem.name + ".key"), force)
    pub_path = check_output_file(stem.with_name(stem.name + ".pub"), force)
    key = signing.SigningKey.generate()
    key_path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(key_path, flags, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(bytes(key).hex() + "\n")
    pub_path.write_text(bytes(key.verify_key).hex() + "\n")
    return key_path, pub_path


def load_signing_key(path: str | os.PathLike[str]) -> bytes:
    """The 32-byte seed in a ``.key`` file (InvalidInputError when it is not one)."""
    text = read_regular(path, MAX_KEY_BYTES, InvalidInputError, follow_links=True)
    return _hex32(text.decode("ascii", "replace"), f"signing key {path}")


def load_public_key(key: TrustedKey) -> bytes:
    """A trusted key as 32 raw bytes: raw bytes, 64 hex characters, or a ``.pub`` file."""
    if isinstance(key, bytes):
        if len(key) != 32:
            raise InvalidInputError(f"a public key is 32 bytes, got {len(key)}")
        return key
    if isinstance(key, str) and len(key.strip()) == 64 and not os.path.exists(key):
        return _hex32(key, "public key")
    if isinstance(key, (str, os.PathLike)):
        text = read_regular(key, MAX_KEY_BYTES, InvalidInputError, follow_links=True)
        return _hex32(text.decode("ascii", "replace"), f"public key {key}")
    raise InvalidInputError(
        f"a trusted key is bytes, hex or a .pub file path, got {type(key).__name__}"
    )


def load_public_keys(keys: Iterable[TrustedKey] | TrustedKey) -> list[bytes]:
    """Every key of ``keys`` as 32 raw bytes; InvalidInputError when there is none."""
    if isinstance(keys, (bytes, str, os.PathLike)):
        keys = [keys]
    try:
        out = [load_public_key(k) for k in keys]
    except TypeError:
        raise InvalidInputError("trusted_keys must be a list of public keys") from None
    if not out:
        raise InvalidInputError("trusted_keys is empty: no pack could be trusted")
    return out


def sign_manifest(manifest_bytes: bytes, seed: bytes) -> bytes:
    """The ``manifest.sig`` file's bytes for ``manifest_bytes`` signed with ``seed``."""
    signing, _ = _nacl()
    key = signing.SigningKey(seed)
    sig = key.sign(SIGNED_CONTEXT + manifest_bytes).signature
    doc = {
        "algorithm": ALGORITHM,
        "public_key": bytes(key.verify_key).hex(),
        "signature": sig.hex(),
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


def sign_pack_folder(folder: str | os.PathLike[str], seed: bytes) -> Path:
    """Write ``folder/manifest.sig`` over ``folder/manifest.json``; return its path."""
    from talkinghead.sdk.files import MAX_MANIFEST_BYTES
    from talkinghead.sdk.pack_schema import MANIFEST_NAME

    folder = Path(folder)
    raw = read_regular(folder / MANIFEST_NAME, MAX_MANIFEST_BYTES, PackError)
    out = folder / SIGNATURE_NAME
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(sign_manifest(raw, seed))
    os.replace(tmp, out)
    return out


def check_signature(
    manifest_bytes: bytes, signature_file: bytes | None, trusted: list[bytes], where: str
) -> bytes:
    """The trusted public key that signed ``manifest_bytes``; SignatureError otherwise.

    signature_file: the bytes of ``manifest.sig``, or None when the pack has none.
    """
    signing, exceptions = _nacl()
    if signature_file is None:
        raise SignatureError(f"pack {where} is not signed (no {SIGNATURE_NAME})")
    try:
        doc = json.loads(signature_file.decode("utf-8"))
        if not isinstance(doc, dict) or doc.get("algorithm") != ALGORITHM:
            raise ValueError(f"algorithm must be {ALGORITHM!r}")
        sig = bytes.fromhex(doc["signature"])
        if len(sig) != 64:
            raise ValueError("signature must be 64 bytes")
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        raise SignatureError(f"pack {where}: {SIGNATURE_NAME} is malformed: {e}") from None
    message = SIGNED_CONTEXT + manifest_bytes
    for pub in trusted:  # the file's public_key is a hint only; every trusted key is tried
        try:
            signing.VerifyKey(pub).verify(message, sig)
            return pub
        except exceptions.BadSignatureError:
            continue
    raise SignatureError(
        f"pack {where} is not signed by a trusted key (tampered, or signed by another key)"
    )


__all__ = [
    "SIGNATURE_NAME",
    "SIGNED_CONTEXT",
    "check_signature",
    "generate_keypair",
    "load_public_key",
    "load_public_keys",
    "load_signing_key",
    "sign_manifest",
    "sign_pack_folder",
]
