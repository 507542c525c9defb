"""C2PA Content Credentials: development chains, signed MP4/WebP/PNG read back by the official
c2pa-python, and verify-media's verdicts on the watermark and the manifest together, bad
manifests included (forged, untrusted, truncated, tampered media)."""

from __future__ import annotations

import json
import stat
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from talkinghead import __version__
from talkinghead.cli import main
from talkinghead.errors import ContentCredentialsError, InvalidInputError, OutputExistsError
from talkinghead.sdk.credentials import (
    DIGITAL_SOURCE_TYPE,
    C2paCredentials,
    generate_dev_chain,
    read_credentials,
    sign_media,
)
from talkinghead.sdk.media import synthetic_label, write_mp4, write_png, write_webp
from talkinghead.sdk.provenance import verify_media
from talkinghead.sdk.watermark import Payload, Watermark, sdk_version_code

PACK_ID = 0x3C9E51
LABEL = synthetic_label(
    pack="astronaut", pack_id=f"{PACK_ID:06x}", sdk_version=__version__, watermark="on"
)
PAYLOAD = Payload(PACK_ID, sdk_version_code(__version__))


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> C2paCredentials:
    return C2paCredentials.load(
        generate_dev_chain(tmp_path_factory.mktemp("c2pa") / "dev")["root"].parent
    )


@pytest.fixture(scope="module")
def stranger(tmp_path_factory) -> C2paCredentials:
    """Another development chain: a signer the first chain's readers do not trust."""
    return C2paCredentials.load(
        generate_dev_chain(tmp_path_factory.mktemp("c2pa") / "other")["root"].parent
    )


def frames(n: int = 8, marked: bool = True) -> list[np.ndarray]:
    """Face frames in which the head moves, (128, 128, 3) uint8, marked with PAYLOAD."""
    from skimage import data

    im, mark = data.astronaut(), Watermark(PAYLOAD)
    out = []
    for i in range(n):
        f = np.asarray(
            Image.fromarray(im[4 * i : 4 * i + 300, 100 + 3 * i : 400 + 3 * i]).resize((128, 128))
        )
        out.append(mark.embed(f) if marked else f)
    return out


def flip_byte(path: Path, at: int, out: Path) -> Path:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    out.write_bytes(bytes(data))
    return out


def test_dev_chain_is_marked_development_only_and_keeps_its_key_private(tmp_path):
    from cryptography import x509

    paths = generate_dev_chain(tmp_path / "k")
    assert stat.S_IMODE(paths["signer"].stat().st_mode) == 0o600
    certs = x509.load_pem_x509_certificates(paths["chain"].read_bytes())
    assert len(certs) == 2  # signer, then the root that issued it
    assert certs[0].issuer == certs[1].subject and certs[1].issuer == certs[1].subject
    for c in certs:
        assert "DEVELOPMENT ONLY" in c.subject.rfc4514_string()
    assert "DEVELOPMENT ONLY" in paths["DEVELOPMENT-ONLY"].read_text()
    with pytest.raises(OutputExistsError):
        generate_dev_chain(tmp_path / "k")
    generate_dev_chain(tmp_path / "k", force=True)


@pytest.mark.parametrize("kind", ["mp4", "webp", "png"])
def test_signed_media_reads_back_as_trained_algorithmic_media(tmp_path, chain, kind):
    path = tmp_path / f"a.{kind}"
    fs = frames(6)
    if kind == "mp4":
        write_mp4(fs, path, label=LABEL, credentials=chain)
    elif kind == "webp":
        write_webp(fs, path, label=LABEL, credentials=chain)
    else:
        write_png(fs[0], path, label=LABEL, credentials=chain)
    r = read_credentials(path, chain.trust_anchors)
    assert r.state == "trusted" and r.valid and not r.failures
    assert r.digital_source_type == DIGITAL_SOURCE_TYPE
    assert r.generator == f"talkinghead {__version__}"
    assert r.pack_id == f"{PACK_ID:06x}"
    assert r.soft_binding == (PAYLOAD.pack_id, PAYLOAD.version)  # names the watermark's payload
    assert "DEVELOPMENT ONLY" in (r.signer or "")
    assert read_credentials(path).state == "untrusted"  # no trust list: valid, not trusted
    # The official reader, directly: the manifest carries c2pa.created as trainedAlgorithmicMedia.
    import c2pa

    with c2pa.Reader(str(path)) as reader:
        manifest = reader.get_active_manifest()
        assert reader.get_validation_state() in ("Valid", "Trusted")
    actions = next(a for a in manifest["assertions"] if a["label"].startswith("c2pa.actions"))
    created = actions["data"]["actions"][0]
    assert created["action"] == "c2pa.created"
    assert created["digitalSourceType"].endswith("/trainedAlgorithmicMedia")
    # And verify-media reports both the mark and the manifest.
    report = verify_media(path, trust_anchors=chain.trust_anchors)
    assert report.marked and report.payload == PAYLOAD
    assert report.credentials.state == "trusted"
    assert report.verdict.startswith("synthetic (talkinghead watermark) and a trusted C2PA")
    assert report.to_json()["manifest"]["state"] == "trusted"


def test_one_changed_byte_of_the_video_fails_the_hash_check(tmp_path, chain):
    path = write_mp4(frames(6), tmp_path / "a.mp4", label=LABEL, credentials=chain)
    data = path.read_bytes()
    at = data.rfind(b"mdat") + 64  # inside the coded video
    tampered = flip_byte(path, at, tmp_path / "t.mp4")
    r = read_credentials(tampered, chain.trust_anchors)
    assert r.state == "invalid" and "assertion.bmffHash.mismatch" in r.failures
    report = verify_media(tampered, trust_anchors=chain.trust_anchors)
    assert "fails validation" in report.verdict


def test_forged_manifest_is_invalid(tmp_path, chain):
    path = write_png(frames(1)[0], tmp_path / "a.png", label=LABEL, credentials=chain)
    data = path.read_bytes()
    at = data.find(f"{PACK_ID:06x}".encode())  # the pack id inside the signed manifest
    assert at > 0
    forged = tmp_path / "f.png"
    forged.write_bytes(data[:at] + b"ffffff" + data[at + 6 :])
    r = read_credentials(forged, chain.trust_anchors)
    assert r.state in ("invalid", "unreadable") and not r.valid
    report = verify_media(forged, trust_anchors=chain.trust_anchors)
    assert report.marked  # the frame itself is intact
    assert "C2PA manifest" in report.verdict and (
        "forged" in report.verdict or "corrupt" in report.verdict
    )


def test_untrusted_signer_is_reported_as_such(tmp_path, chain, stranger):
    path = write_webp(frames(4), tmp_path / "a.webp", label=LABEL, credentials=stranger)
    r = read_credentials(path, chain.trust_anchors)
    assert r.state == "untrusted" and "signingCredential.untrusted" in r.failures
    report = verify_media(path, trust_anchors=chain.trust_anchors)
    assert "not in the trust list" in report.verdict


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    out, i = [], 8
    while i < len(data):
        (n,) = struct.unpack(">I", data[i : i + 4])
        out.append((data[i + 4 : i + 8], data[i + 8 : i + 8 + n]))
        i += 12 + n
    return out


def _png(chunks: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(
        struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d)) for t, d in chunks
    )
    return b"\x89PNG\r\n\x1a\n" + body


def test_truncated_manifest_is_a_verdict_not_a_crash(tmp_path, chain):
    path = write_png(frames(1)[0], tmp_path / "a.png", label=LABEL, credentials=chain)
    chunks = _png_chunks(path.read_bytes())
    kinds = [t for t, _ in chunks]
    assert b"caBX" in kinds  # C2PA's PNG chunk
    # Cut the manifest store to a third, with a correct chunk CRC: the PNG itself stays valid.
    cut = [(t, d[: len(d) // 3] if t == b"caBX" else d) for t, d in chunks]
    truncated = tmp_path / "t.png"
    truncated.write_bytes(_png(cut))
    r = read_credentials(truncated, chain.trust_anchors)
    assert r.state in ("unreadable", "invalid") and not r.valid
    report = verify_media(truncated, trust_anchors=chain.trust_anchors)
    assert report.marked and report.credentials.state == r.state
    assert "truncated or corrupt" in report.verdict or "fails validation" in report.verdict


def test_manifest_without_mark_and_mark_without_manifest(tmp_path, chain):
    unmarked = write_mp4(
        frames(6, marked=False), tmp_path / "u.mp4", label=LABEL, credentials=chain
    )
    r = verify_media(unmarked, trust_anchors=chain.trust_anchors)
    assert not r.marked and r.credentials.state == "trusted" and r.synthetic
    assert r.verdict.startswith("synthetic per a trusted C2PA manifest; no watermark found")
    bare = write_mp4(frames(6), tmp_path / "m.mp4", label=LABEL)
    r = verify_media(bare, trust_anchors=chain.trust_anchors)
    assert r.marked and r.credentials.state == "absent" and r.synthetic
    assert "no C2PA manifest" in r.verdict
    neither = write_mp4(frames(6, marked=False), tmp_path / "n.mp4", label=False)
    r = verify_media(neither)
    assert not r.synthetic and r.verdict.startswith("no watermark and no C2PA manifest")


def test_bad_signing_input_is_typed(tmp_path, chain):
    path = write_png(frames(1)[0], tmp_path / "a.png", label=LABEL)
    with pytest.raises(InvalidInputError, match="needs a label"):
        write_png(frames(1)[0], tmp_path / "b.png", label=False, credentials=chain)
    with pytest.raises(InvalidInputError):
        sign_media(tmp_path / "a.gif", chain, LABEL)
    with pytest.raises(InvalidInputError, match="alg"):
        C2paCredentials(chain.cert_chain, chain.private_key, alg="md5")
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(InvalidInputError, match="PEM"):
        C2paCredentials.load(cert_chain=tmp_path / "junk.pem", private_key=tmp_path / "junk.pem")
    wrong_key = C2paCredentials(
        chain.cert_chain, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    )
    with pytest.raises(ContentCredentialsError):
        sign_media(path, wrong_key, LABEL)
    assert read_credentials(path).state == "absent"  # a failed signing leaves the file alone


def test_cli_keygen_c2pa_and_verify_media_with_a_trust_anchor(tmp_path, capsys):
    keys = tmp_path / "c2pa"
    assert main(["keygen", str(keys), "--c2pa"]) in (0, None)
    out = capsys.readouterr().out
    assert "DEVELOPMENT ONLY" in out and (keys / "chain.pem").is_file()
    creds = C2paCredentials.load(keys)
    path = write_mp4(frames(6, marked=False), tmp_path / "a.mp4", label=LABEL, credentials=creds)
    code = main(["verify-media", str(path), "--c2pa-trust", str(keys / "root.pem")])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["manifest"]["state"] == "trusted" and not report["marked"]
    assert report["manifest"]["digital_source_type"] == DIGITAL_SOURCE_TYPE
    code = main(["verify-media", str(path)])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["manifest"]["state"] == "untrusted"
    plain = write_mp4(frames(6, marked=False), tmp_path / "p.mp4", label=False)
    assert main(["verify-media", str(plain)]) == 1
    capsys.readouterr()


def test_soft_binding_that_names_another_mark_and_unsupported_formats(tmp_path, chain):
    other = dict(LABEL, pack_id="123456")  # a manifest about another pack's frames
    path = write_webp(frames(4), tmp_path / "a.webp", label=other, credentials=chain)
    r = verify_media(path, trust_anchors=chain.trust_anchors)
    assert r.marked and r.credentials.state == "trusted"
    assert r.credentials.soft_binding == (0x123456, PAYLOAD.version)
    assert "another payload than the mark" in r.verdict
    bmp = tmp_path / "a.bmp"
    Image.fromarray(frames(1)[0]).save(bmp)
    r = verify_media(bmp)
    assert r.marked and r.credentials.state == "unsupported"
    assert r.verdict.endswith("C2PA manifests cannot be read in this format")


def test_cli_render_signs_both_files(avatar_pack, tmp_path, capsys):
    keys = tmp_path / "c2pa"
    generate_dev_chain(keys)
    out = tmp_path / "render"
    args = ["render", str(avatar_pack), "--out", str(out), "--frames", "3", "--c2pa", str(keys)]
    assert main(args) in (0, None)
    result = json.loads(capsys.readouterr().out)
    assert result["c2pa"] == "signed"
    anchors = (keys / "root.pem").read_bytes()
    for ext in ("mp4", "webp"):
        r = read_credentials(out / f"avatar.{ext}", anchors)
        assert r.state == "trusted" and r.digital_source_type == DIGITAL_SOURCE_TYPE
        assert r.soft_binding is not None  # frames are marked: the manifest names the mark
    # --c2pa-key without a chain: refused before rendering, one line on stderr, exit 2.
    bad = [
        "render",
        str(avatar_pack),
        "--out",
        str(tmp_path / "x"),
        "--c2pa-key",
        str(keys / "signer.key"),
    ]
    assert main(bad) == 2
    assert "certificate chain" in capsys.readouterr().err
    assert not (tmp_path / "x" / "avatar.mp4").exists()
