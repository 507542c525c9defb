"""C2PA Content Credentials on the media the SDK writes, made and read with the official
``c2pa-python`` bindings (the ``c2pa`` extra).

    creds = C2paCredentials.load("keys/c2pa")          # chain.pem + signer.key (+ root.pem)
    write_mp4(frames, "avatar.mp4", label=label, credentials=creds)  # signs the file
    report = read_credentials("avatar.mp4", trust_anchors=creds.trust_anchors)
    report.state                                       # "trusted"

Each manifest records the generator (talkinghead and its version), the action
``c2pa.created`` with the IPTC digital source type ``trainedAlgorithmicMedia``, the pack id,
and a ``c2pa.soft-binding`` assertion naming the watermark and its payload, so a copy stripped
of its metadata can be linked back to the manifest through the mark.

Signing uses a certificate chain and key that the user supplies. ``generate_dev_chain``
(``talkinghead keygen --c2pa``) makes a self-signed chain that is for development only: no
validator trusts it unless told to, which is the point of a trust list.

Verdicts of ``read_credentials`` (``CredentialsReport.state``):
- ``absent``: no manifest in the file.
- ``trusted``: the signature and every hash check, and the signer chains to a trust anchor.
- ``untrusted``: the signature and hashes check, but the signer is not in the trust list
  (any manifest when no trust anchors are given).
- ``invalid``: a hash or signature fails: the media was changed after signing, or the
  manifest was forged or altered.
- ``unreadable``: a manifest is there but cannot be parsed (truncated or corrupt).
- ``unsupported``: c2pa cannot read manifests in this file's format.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from talkinghead import __version__
from talkinghead.errors import ContentCredentialsError, InvalidInputError, OutputExistsError
from talkinghead.sdk.files import read_regular

DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
PACK_ASSERTION = "org.talkinghead.pack"
SOFT_BINDING_ALG = "org.talkinghead.watermark.1"  # names sdk/watermark.py's mark and payload
CHAIN_NAME, KEY_NAME, ROOT_NAME = "chain.pem", "signer.key", "root.pem"
DEV_NOTICE = "DEVELOPMENT ONLY - NOT TRUSTED - talkinghead keygen --c2pa"
MAX_PEM_BYTES = 64 * 1024
MIME_TYPES = {".mp4": "video/mp4", ".webp": "image/webp", ".png": "image/png"}
ALGORITHMS = ("es256", "es384", "es512", "ps256", "ps384", "ps512", "ed25519")


def _c2pa():
    try:
        import c2pa
    except ImportError as e:
        raise ContentCredentialsError(
            "C2PA Content Credentials need c2pa-python: pip install 'talkinghead[c2pa]'"
        ) from e
    return c2pa


def _read_pem(path: str | os.PathLike[str], what: str) -> bytes:
    data = read_regular(Path(path), MAX_PEM_BYTES, InvalidInputError)
    if b"-----BEGIN " not in data:
        raise InvalidInputError(f"{what} {path} is not a PEM file")
    return data


@dataclass(frozen=True)
class C2paCredentials:
    """What signs a manifest: the signer's certificate chain (PEM, signer first, then its
    issuers), its private key (PEM), the algorithm, and the roots a reader should trust
    (``trust_anchors``, PEM; used by ``read_credentials``, not by signing)."""

    cert_chain: bytes
    private_key: bytes = field(repr=False)
    alg: str = "es256"
    trust_anchors: bytes | None = None

    def __post_init__(self) -> None:
        if self.alg not in ALGORITHMS:
            raise InvalidInputError(f"alg must be one of {ALGORITHMS}, got {self.alg!r}")

    @classmethod
    def load(
        cls,
        folder: str | os.PathLike[str] | None = None,
        *,
        cert_chain: str | os.PathLike[str] | None = None,
        private_key: str | os.PathLike[str] | None = None,
        trust_anchors: str | os.PathLike[str] | None = None,
        alg: str = "es256",
    ) -> C2paCredentials:
        """From a folder of ``chain.pem``, ``signer.key`` and, if present, ``root.pem`` (what
        ``generate_dev_chain`` writes), or from explicit files."""
        if folder is not None:
            folder = Path(folder)
            if not folder.is_dir():
                raise InvalidInputError(f"C2PA credentials folder not found: {folder}")
            cert_chain = cert_chain or folder / CHAIN_NAME
            private_key = private_key or folder / KEY_NAME
            if trust_anchors is None and (folder / ROOT_NAME).is_file():
                trust_anchors = folder / ROOT_NAME
        if cert_chain is None or private_key is None:
            raise InvalidInputError("C2PA signing needs a certificate chain and a private key")
        return cls(
            cert_chain=_read_pem(cert_chain, "certificate chain"),
            private_key=_read_pem(private_key, "private key"),
            alg=alg,
            trust_anchors=_read_pem(trust_anchors, "trust anchors") if trust_anchors else None,
        )


def generate_dev_chain(folder: str | os.PathLike[str], force: bool = False) -> dict[str, Path]:
    """Write a self-signed development chain into ``folder``: ``root.pem`` (a CA, the trust
    anchor for your own tests), ``chain.pem`` (an ES256 signer certificate issued by it,
    then the CA), ``signer.key`` (mode 0600) and ``DEVELOPMENT-ONLY.txt``.

    Every certificate's names say "DEVELOPMENT ONLY". Validators do not trust it; media
    signed with it read as ``untrusted`` unless the reader is handed ``root.pem``. Existing
    files are refused unless ``force``.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder = Path(folder)
    names = (ROOT_NAME, CHAIN_NAME, KEY_NAME, "DEVELOPMENT-ONLY.txt")
    existing = [folder / n for n in names if (folder / n).exists()]
    if existing and not force:
        raise OutputExistsError(f"{existing[0]} exists; pass force=True (--force) to replace it")
    folder.mkdir(parents=True, exist_ok=True)

    def name(cn: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "talkinghead"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, DEV_NOTICE),
            ]
        )

    def usage(**on: bool) -> x509.KeyUsage:
        keys = (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        )
        return x509.KeyUsage(**{k: on.get(k, False) for k in keys})

    now = datetime.datetime.now(datetime.timezone.utc)
    root_key, signer_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    root_name = name("talkinghead development root CA (DEVELOPMENT ONLY)")
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), False)
        .sign(root_key, hashes.SHA256())
    )
    # C2PA validators refuse a self-signed end-entity certificate, so the signer is issued
    # by the root, with the key usages a claim signer needs.
    signer = (
        x509.CertificateBuilder()
        .subject_name(name("talkinghead development signer (DEVELOPMENT ONLY)"))
        .issuer_name(root_name)
        .public_key(signer_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(signer_key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), False
        )
        .sign(root_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    paths = {n.split(".")[0]: folder / n for n in names}
    paths["root"].write_bytes(root.public_bytes(pem))
    paths["chain"].write_bytes(signer.public_bytes(pem) + root.public_bytes(pem))
    key = signer_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(paths["signer"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    os.chmod(paths["signer"], 0o600)
    paths["DEVELOPMENT-ONLY"].write_text(
        "This C2PA certificate chain was made by `talkinghead keygen --c2pa`.\n"
        "It is self-signed and for DEVELOPMENT ONLY: no platform or validator trusts it.\n"
        "Media signed with it verifies as 'untrusted' unless the reader is given root.pem\n"
        "as a trust anchor (talkinghead verify-media FILE --c2pa-trust root.pem).\n"
        "Ship media signed with a certificate from a CA on the C2PA trust list instead.\n"
    )
    return paths


def manifest_definition(
    label: dict[str, Any], watermark_payload: bytes | None = None
) -> dict[str, Any]:
    """The manifest the SDK signs: generator, ``c2pa.created`` as trainedAlgorithmicMedia,
    the pack, and (when frames are marked) the soft binding to the watermark.

    label: the container label (``synthetic_label`` / ``Avatar.provenance_label``).
    watermark_payload: the 4 payload bytes the frames carry (24-bit pack id, 8-bit version).
    """
    assertions: list[dict[str, Any]] = [
        {
            "label": "c2pa.actions.v2",
            "data": {
                "actions": [
                    {
                        "action": "c2pa.created",
                        "digitalSourceType": DIGITAL_SOURCE_TYPE,
                        "softwareAgent": {"name": "talkinghead", "version": __version__},
                    }
                ]
            },
        },
        {
            "label": PACK_ASSERTION,
            "data": {
                k: label[k] for k in ("pack", "pack_id", "sdk_version", "watermark") if k in label
            },
        },
    ]
    if watermark_payload is not None:
        assertions.append(
            {
                "label": "c2pa.soft-binding",
                "data": {
                    "alg": SOFT_BINDING_ALG,
                    "blocks": [
                        {"scope": {}, "value": base64.b64encode(watermark_payload).decode()}
                    ],
                },
            }
        )
    return {
        "claim_generator_info": [{"name": "talkinghead", "version": __version__}],
        "assertions": assertions,
    }


def _payload_bytes(label: dict[str, Any]) -> bytes | None:
    """The watermark payload the label's frames carry, or None when they are unmarked."""
    from talkinghead.sdk.watermark import sdk_version_code

    if label.get("watermark") != "on" or "pack_id" not in label:
        return None
    try:
        pid = int(str(label["pack_id"]), 16)
    except ValueError:
        return None
    version = sdk_version_code(str(label.get("sdk_version", __version__)))
    return ((pid & 0xFFFFFF) << 8 | version).to_bytes(4, "big")


def sign_media(
    path: str | os.PathLike[str], credentials: C2paCredentials, label: dict[str, Any]
) -> Path:
    """Embed a signed C2PA manifest in an MP4, WebP or PNG file, in place (signed beside it,
    then renamed over it). Raises ContentCredentialsError when c2pa refuses."""
    if not isinstance(credentials, C2paCredentials):
        raise InvalidInputError(f"credentials must be C2paCredentials, got {credentials!r}")
    path = Path(path)
    mime = MIME_TYPES.get(path.suffix.lower())
    if mime is None:
        raise InvalidInputError(f"C2PA signing supports {sorted(MIME_TYPES)}, not {path.name}")
    c2pa = _c2pa()
    definition = manifest_definition(label, _payload_bytes(label))
    definition["format"] = mime
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        info = c2pa.C2paSignerInfo(
            credentials.alg, credentials.cert_chain, credentials.private_key, None
        )
        with (
            c2pa.Signer.from_info(info) as signer,
            c2pa.Builder.from_json(json.dumps(definition)) as builder,
        ):
            with open(path, "rb") as src, open(tmp, "w+b") as dst:
                builder.sign(signer, mime, src, dst)
        os.replace(tmp, path)
    except c2pa.C2paError as e:
        raise ContentCredentialsError(f"C2PA signing of {path} failed: {e}") from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


@dataclass
class CredentialsReport:
    """What ``read_credentials`` found; ``state`` is the verdict (see the module docstring).

    digital_source_type / generator / pack_id / soft_binding: from the active manifest, when
    one could be read (even an invalid one: they are then claims nobody vouches for).
    soft_binding: the watermark payload the manifest names, as (pack_id, version_code).
    failures: the validator's failure codes (e.g. ``assertion.bmffHash.mismatch``).
    """

    state: str
    signer: str | None = None
    generator: str | None = None
    digital_source_type: str | None = None
    pack_id: str | None = None
    soft_binding: tuple[int, int] | None = None
    failures: list[str] = field(default_factory=list)
    detail: str | None = None

    @property
    def valid(self) -> bool:
        """Signature and hashes check (trusted or not)."""
        return self.state in ("trusted", "untrusted")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state}
        for k in ("signer", "generator", "digital_source_type", "pack_id", "detail"):
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
        if self.soft_binding is not None:
            out["soft_binding"] = {
                "pack_id": f"{self.soft_binding[0]:06x}",
                "version_code": self.soft_binding[1],
            }
        if self.failures:
            out["failures"] = self.failures
        return out


def _settings(c2pa, trust_anchors: bytes | None):
    # Untrusted files must not make the reader go online (a remote manifest URL, OCSP).
    verify: dict[str, Any] = {
        "verify_trust": trust_anchors is not None,
        "remote_manifest_fetch": False,
        "ocsp_fetch": False,
    }
    config: dict[str, Any] = {"verify": verify}
    if trust_anchors is not None:
        config["trust"] = {"trust_anchors": trust_anchors.decode("ascii", "replace")}
    return c2pa.Settings.from_dict(config)


def _soft_binding(manifest: dict[str, Any]) -> tuple[int, int] | None:
    for a in manifest.get("assertions", []):
        if not str(a.get("label", "")).startswith("c2pa.soft-binding"):
            continue
        data = a.get("data") or {}
        if data.get("alg") != SOFT_BINDING_ALG:
            continue
        try:
            raw = base64.b64decode(data["blocks"][0]["value"], validate=True)
        except (KeyError, IndexError, TypeError, ValueError):
            return None
        if len(raw) == 4:
            word = int.from_bytes(raw, "big")
            return word >> 8, word & 0xFF
    return None


def _summary(manifest: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    gens = manifest.get("claim_generator_info") or []
    if gens and isinstance(gens[0], dict):
        out["generator"] = f"{gens[0].get('name', '')} {gens[0].get('version', '')}".strip()
    for a in manifest.get("assertions", []):
        label, data = str(a.get("label", "")), a.get("data") or {}
        if label.startswith("c2pa.actions"):
            for act in data.get("actions", []):
                if act.get("action") == "c2pa.created" and act.get("digitalSourceType"):
                    out["digital_source_type"] = act["digitalSourceType"]
        elif label == PACK_ASSERTION and isinstance(data, dict) and "pack_id" in data:
            out["pack_id"] = str(data["pack_id"])
    sig = manifest.get("signature_info") or {}
    if sig.get("common_name") or sig.get("issuer"):
        out["signer"] = str(sig.get("common_name") or sig.get("issuer"))
    out["soft_binding"] = _soft_binding(manifest)
    return out


def read_credentials(
    path: str | os.PathLike[str], trust_anchors: bytes | None = None
) -> CredentialsReport:
    """Read and validate the C2PA manifest of a file. Never raises on a bad manifest: a
    forged, altered, truncated or untrusted one is a verdict, not an error.

    trust_anchors: PEM roots whose signers are ``trusted``; None trusts nobody (a valid
    manifest is then ``untrusted``).
    """
    c2pa = _c2pa()
    try:
        context = c2pa.Context(settings=_settings(c2pa, trust_anchors))
        with c2pa.Reader(str(path), context=context) as reader:
            state = (reader.get_validation_state() or "").lower()
            results = reader.get_validation_results() or {}
            manifest = reader.get_active_manifest() or {}
    except c2pa.C2paError.ManifestNotFound:
        return CredentialsReport("absent")
    except c2pa.C2paError.NotSupported as e:
        return CredentialsReport("unsupported", detail=str(e)[:300])
    except c2pa.C2paError as e:
        return CredentialsReport("unreadable", detail=str(e)[:300])
    active = results.get("activeManifest") or {}
    failures = [str(f.get("code")) for f in active.get("failure", []) if f.get("code")]
    if state == "trusted":
        verdict = "trusted"
    elif state == "valid" or (state != "invalid" and not failures):
        verdict = "untrusted"
    elif failures and all(f.startswith("signingCredential.untrusted") for f in failures):
        verdict = "untrusted"
    else:
        verdict = "invalid"
    return CredentialsReport(verdict, failures=failures, **_summary(manifest))


__all__ = [
    "DIGITAL_SOURCE_TYPE",
    "C2paCredentials",
    "CredentialsReport",
    "generate_dev_chain",
    "manifest_definition",
    "read_credentials",
    "sign_media",
]
