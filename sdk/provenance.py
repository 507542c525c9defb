"""Provenance: what a pack's frames and files say about themselves, and the check that reads it.

    payload = pack_payload(pack.manifest)       # Payload(pack_id=0x3f9a12, version=0.1.0)
    report = verify_media("avatar.mp4")         # MediaReport(marked=True, payload=..., label=...)

Every frame an Avatar renders carries an invisible watermark (``talkinghead.sdk.watermark``)
with a 24-bit pack id and the SDK version; every MP4 and WebP the SDK writes carries a label
saying it is AI-generated (``talkinghead.sdk.media``). Turning the mark off is an explicit
option that logs a warning and is written into the label as ``"watermark": "off"``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from talkinghead import __version__
from talkinghead.errors import (
    ContentCredentialsError,
    ImageReadError,
    InvalidInputError,
    TalkingHeadError,
)
from talkinghead.sdk.credentials import CredentialsReport, read_credentials
from talkinghead.sdk.files import check_regular
from talkinghead.sdk.media import MAX_FRAME_PIXELS, read_label, read_video, synthetic_label
from talkinghead.sdk.pack_schema import AvatarManifest
from talkinghead.sdk.watermark import MarkSearch, Payload, Watermark, sdk_version_code

MAX_MEDIA_BYTES = 4 << 30
DEFAULT_MAX_FRAMES = 250  # frames a video check reads: 10 s at 25 fps is plenty to decide


def pack_id(manifest: AvatarManifest) -> int:
    """24-bit id of a pack: sha256 over its name and every file's sha256.

    The creation time is left out, so the id names the pack's content and is deterministic.
    """
    if not isinstance(manifest, AvatarManifest):
        raise InvalidInputError(
            f"manifest must be an AvatarManifest, got {type(manifest).__name__}"
        )
    canon = json.dumps(
        {"name": manifest.name, "files": dict(sorted(manifest.files.items()))},
        sort_keys=True,
        separators=(",", ":"),
    )
    return int.from_bytes(hashlib.sha256(canon.encode()).digest()[:3], "big")


def pack_payload(manifest: AvatarManifest, sdk_version: str = __version__) -> Payload:
    """The payload frames rendered from this pack by this SDK carry."""
    return Payload(pack_id=pack_id(manifest), version=sdk_version_code(sdk_version))


def pack_watermark(manifest: AvatarManifest) -> Watermark:
    return Watermark(pack_payload(manifest))


def pack_label(manifest: AvatarManifest, watermark: bool) -> dict[str, object]:
    """The container label for media made from this pack; records whether frames are marked."""
    return synthetic_label(
        pack=manifest.name,
        pack_id=f"{pack_id(manifest):06x}",
        sdk_version=__version__,
        watermark="on" if watermark else "off",
    )


@dataclass
class MediaReport:
    """What ``verify_media`` found.

    marked: the mark decodes from the file's frames taken together (``MarkSearch``: they
        share one crop, rotation and scale, so they are aligned together).
    frames / frames_marked: frames read, and how many carry a decodable mark on their own.
    score: the combined frames' correlation with the decoded codeword when a payload decodes
        (its CRC holds), else 0. Marked files score about 0.8-0.9; see docs/provenance.md.
    label: the container's provenance label, or None.
    credentials: the C2PA manifest's report (``sdk/credentials.py``), or None when it was not
        checked (c2pa-python not installed).
    verdict: one sentence weighing the watermark and the manifest together.
    """

    path: str
    kind: str
    frames: int
    frames_marked: int
    marked: bool
    payload: Payload | None
    score: float
    label: dict[str, object] | None
    matches_pack: bool | None = None
    notes: list[str] = field(default_factory=list)
    credentials: CredentialsReport | None = None
    verdict: str = ""

    def to_json(self) -> dict[str, Any]:
        p = self.payload
        return {
            "path": self.path,
            "kind": self.kind,
            "marked": self.marked,
            "pack_id": f"{p.pack_id:06x}" if p else None,
            "version": p.version_str if p else None,
            "confidence": round(max(self.score, 0.0), 3),
            "frames": self.frames,
            "frames_marked": self.frames_marked,
            "label": self.label,
            **({"matches_pack": self.matches_pack} if self.matches_pack is not None else {}),
            "manifest": self.credentials.to_json() if self.credentials else None,
            "verdict": self.verdict,
            **({"notes": self.notes} if self.notes else {}),
        }

    @property
    def synthetic(self) -> bool:
        """The watermark, or a manifest whose signature and hashes check, says synthetic."""
        return self.marked or bool(self.credentials and self.credentials.valid)


def provenance_verdict(
    marked: bool, payload: Payload | None, credentials: CredentialsReport | None
) -> str:
    """One sentence on the watermark and the C2PA manifest taken together."""
    state = credentials.state if credentials else "unchecked"
    if marked:
        head = "synthetic (talkinghead watermark)"
        tail = {
            "trusted": "and a trusted C2PA manifest agrees",
            "untrusted": "and a valid C2PA manifest agrees, signed by a signer not in the "
            "trust list",
            "invalid": "but the C2PA manifest fails validation: the file was altered after "
            "signing, or the manifest is forged",
            "unreadable": "but the C2PA manifest is truncated or corrupt",
            "absent": "; no C2PA manifest (stripped, or never signed)",
            "unchecked": "; the C2PA manifest was not checked (c2pa-python not installed)",
            "unsupported": "; C2PA manifests cannot be read in this format",
        }[state]
        sb = credentials.soft_binding if credentials else None
        if sb is not None and payload is not None and sb != (payload.pack_id, payload.version):
            tail += "; the manifest's soft binding names another payload than the mark"
        return f"{head} {tail}".replace(" ;", ";")
    return {
        "trusted": "synthetic per a trusted C2PA manifest; no watermark found (unmarked "
        "frames, or the mark was lost)",
        "untrusted": "a valid C2PA manifest from a signer not in the trust list says "
        "synthetic; no watermark found",
        "invalid": "no watermark, and the C2PA manifest fails validation (altered or forged): "
        "nothing vouches for this file",
        "unreadable": "no watermark, and the C2PA manifest is truncated or corrupt",
        "absent": "no watermark and no C2PA manifest: no sign that talkinghead made this file",
        "unchecked": "no watermark; the C2PA manifest was not checked (c2pa-python not installed)",
        "unsupported": "no watermark; C2PA manifests cannot be read in this format",
    }[state]


def _as_array(im) -> np.ndarray:
    """A Pillow frame -> (H, W) or (H, W, 3) uint8; 16-bit and palette images are converted."""
    if im.mode in ("L", "RGB"):
        return np.asarray(im)
    return np.asarray(im.convert("L" if im.mode in ("1", "I", "I;16", "F", "LA") else "RGB"))


def _image_frames(path: Path, max_frames: int, notes: list[str]) -> tuple[str, Iterator] | None:
    """(kind, frames) for an image file (animated WebP/GIF too); None when not an image.

    Frames are decoded one at a time as the iterator is consumed; an image of more than
    MAX_FRAME_PIXELS (a decompression bomb among them) is refused before it is decoded.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            n = int(getattr(im, "n_frames", 1))
            _check_pixels(im.size, path)
    except UnidentifiedImageError:
        return None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"{path} is too large to decode safely: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageReadError(f"cannot read {path} as an image: {exc}") from exc

    def frames() -> Iterator[np.ndarray]:
        done = 0
        try:
            with Image.open(path) as im:
                for i in range(min(n, max_frames)):
                    im.seek(i)
                    _check_pixels(im.size, path)
                    yield _as_array(im)
                    done += 1
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
            if not done:
                raise ImageReadError(f"cannot read {path} as an image: {exc}") from exc
            notes.append(f"stopped after frame {done}: {exc}")

    return ("animation" if n > 1 else "image"), frames()


def _check_pixels(size: tuple[int, int], path: Path) -> None:
    if size[0] * size[1] > MAX_FRAME_PIXELS:
        raise ImageReadError(
            f"{path} is {size[0]}x{size[1]} px, more than the {MAX_FRAME_PIXELS} px this "
            "check decodes (a decompression bomb?)"
        )


def _video_frames(path: Path, max_frames: int, notes: list[str]) -> Iterator[np.ndarray]:
    """Decoded frames, one at a time: only the current frame is held in memory."""
    done = 0
    try:
        for frame, _ in read_video(path, max_frames=max_frames):
            yield frame
            done += 1
    except ImageReadError as exc:
        if not done:
            raise
        notes.append(f"stopped after frame {done}: {exc}")


def verify_media(
    path: str | os.PathLike[str],
    max_frames: int = DEFAULT_MAX_FRAMES,
    pack: AvatarManifest | None = None,
    trust_anchors: bytes | None = None,
) -> MediaReport:
    """Look for the watermark, the provenance label and the C2PA manifest in an image (PNG,
    JPEG, WebP), an animated WebP, or a video (MP4 and whatever else FFmpeg decodes).

    pack: when given, also report whether the decoded pack id and version are this pack's.
    trust_anchors: PEM roots whose C2PA signers are trusted (``read_credentials``).
    Raises ImageReadError (missing, unreadable or truncated before any frame) and
    InvalidInputError (frames under 32 px per side, a bad max_frames).
    """
    if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1:
        raise InvalidInputError(f"max_frames must be a positive int, got {max_frames!r}")
    path = Path(path)
    check_regular(path, MAX_MEDIA_BYTES, ImageReadError)  # exists; not a FIFO, device or folder
    notes: list[str] = []
    found = _image_frames(path, max_frames, notes)
    kind, frames = found if found is not None else ("video", _video_frames(path, max_frames, notes))
    # Streamed: one decoded frame at a time, whatever the length; the frames' folded
    # residuals are summed and aligned together (they share one crop, rotation and scale).
    search = MarkSearch()
    marked_frames = count = 0
    for frame in frames:
        marked_frames += search.add(frame).marked
        count += 1
        del frame
    result = search.result()
    try:
        label = read_label(path)
    except TalkingHeadError as exc:
        label = None
        notes.append(f"label unreadable: {exc}")
    matches = None
    if pack is not None:
        matches = result.payload == pack_payload(pack)
    try:
        credentials = read_credentials(path, trust_anchors)
    except ContentCredentialsError as exc:
        credentials = None
        notes.append(f"C2PA manifest not checked: {exc}")
    return MediaReport(
        path=str(path),
        kind=kind,
        frames=count,
        frames_marked=int(marked_frames),
        marked=result.marked,
        payload=result.payload if result.marked else None,
        score=result.score if result.crc_ok else 0.0,
        label=label,
        matches_pack=matches,
        notes=notes,
        credentials=credentials,
        verdict=provenance_verdict(result.marked, result.payload, credentials),
    )


__all__ = [
    "MediaReport",
    "pack_id",
    "pack_label",
    "pack_payload",
    "pack_watermark",
    "provenance_verdict",
    "verify_media",
]
