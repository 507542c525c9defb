"""Video and sticker files: read driving videos, write MP4 (H.264) and animated WebP.

Frames are (H, W, 3) uint8 RGB throughout. Written files carry a provenance label saying they
are AI-generated (IPTC digital source type ``trainedAlgorithmicMedia``): in MP4 as the
``comment`` (JSON) and ``description`` tags, in WebP as an XMP packet. ``read_label`` reads it
back from MP4, WebP, PNG and JPEG. See docs/provenance.md.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Generator, Iterable, Mapping
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from talkinghead import __version__
from talkinghead.errors import ImageReadError, InvalidInputError

if TYPE_CHECKING:
    from talkinghead.sdk.credentials import C2paCredentials

DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
_XMP_NS = "urn:talkinghead:provenance:1"
# Largest frame read from a user's image or video: 8K UHD (7680 x 4320, 33 MP). Bounds the
# memory of one decoded frame (about 100 MB as RGB) whatever the file claims.
MAX_FRAME_PIXELS = 7680 * 4320
Label = Mapping[str, object]


def synthetic_label(**fields: object) -> dict[str, object]:
    """The provenance label every written file carries; ``fields`` add to it (pack, watermark)."""
    return {
        "ai_generated": True,
        "digital_source_type": DIGITAL_SOURCE_TYPE,
        "generator": f"talkinghead {__version__}",
        **fields,
    }


def _resolve_label(label: Label | bool) -> dict[str, object] | None:
    if label is True:
        return synthetic_label()
    if label is False:
        return None
    if not isinstance(label, Mapping):
        raise InvalidInputError(f"label must be a mapping or a bool, got {type(label).__name__}")
    return synthetic_label(**label)


def _sentence(label: Label) -> str:
    return (
        f"AI-generated (synthetic) media made by {label.get('generator', 'talkinghead')}; "
        "IPTC digital source type: trainedAlgorithmicMedia"
    )


def label_to_xmp(label: Label) -> bytes:
    """An XMP packet with the IPTC digital source type, a description and the JSON label."""
    attr = html.escape(json.dumps(dict(label), sort_keys=True), quote=True)
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '<rdf:Description rdf:about=""\n'
        ' xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"\n'
        ' xmlns:dc="http://purl.org/dc/elements/1.1/"\n'
        ' xmlns:xmp="http://ns.adobe.com/xap/1.0/"\n'
        f' xmlns:talkinghead="{_XMP_NS}"\n'
        f' Iptc4xmpExt:DigitalSourceType="{DIGITAL_SOURCE_TYPE}"\n'
        f' xmp:CreatorTool="{html.escape(str(label.get("generator", "")), quote=True)}"\n'
        f' talkinghead:Label="{attr}">\n'
        f'<dc:description><rdf:Alt><rdf:li xml:lang="x-default">{html.escape(_sentence(label))}'
        "</rdf:li></rdf:Alt></dc:description>\n"
        "</rdf:Description>\n</rdf:RDF>\n</x:xmpmeta>\n"
        '<?xpacket end="w"?>'
    ).encode()


def label_from_xmp(xmp: bytes | str) -> dict[str, object] | None:
    """The label in an XMP packet, or None. A packet from other software that only states the
    IPTC digital source type yields ``{"digital_source_type": ...}``.

    Matched with two regular expressions, not an XML parser: the packet is untrusted input.
    """
    text = xmp.decode("utf-8", "replace") if isinstance(xmp, bytes) else str(xmp)
    m = re.search(r'talkinghead:Label="([^"]*)"', text)
    if m:
        try:
            label = json.loads(html.unescape(m.group(1)))
            if isinstance(label, dict):
                return label
        except json.JSONDecodeError:
            pass
    m = re.search(r'DigitalSourceType(?:="|>)\s*([^"<\s]+)', text)
    return {"digital_source_type": m.group(1)} if m else None


def _check_frames(frames: list[np.ndarray]) -> tuple[int, int]:
    if not frames:
        raise InvalidInputError("no frames to write")
    h, w = frames[0].shape[:2]
    for i, f in enumerate(frames):
        if f.dtype != np.uint8 or f.shape != (h, w, 3):
            raise InvalidInputError(
                f"frame {i} is {f.shape} {f.dtype}; every frame must be ({h}, {w}, 3) uint8"
            )
    return h, w


def write_mp4(
    frames: Iterable[np.ndarray],
    path: str | os.PathLike[str],
    fps: float = 25,
    crf: int = 18,
    label: Label | bool = True,
    credentials: C2paCredentials | None = None,
) -> Path:
    """Encode frames as H.264 (yuv420p, playable everywhere) in an MP4 container.

    H.264 in yuv420p needs even sides; odd-sized frames are padded by one edge pixel.
    label: True writes the synthetic-media label, a mapping adds fields to it, False writes
    none (for footage that is not generated, e.g. a recorded driving video).
    credentials: also embed a signed C2PA manifest (``sdk/credentials.py``) made from the
    label; needs a label.
    """
    import av

    frames = list(frames)
    h, w = _check_frames(frames)
    meta = _resolve_label(label)
    if not fps > 0:
        raise InvalidInputError(f"fps must be positive, got {fps}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ph, pw = h + h % 2, w + w % 2
    with av.open(str(path), mode="w") as container:
        if meta is not None:
            container.metadata["comment"] = json.dumps(meta, sort_keys=True)
            container.metadata["description"] = _sentence(meta)
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = pw, ph, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "medium"}
        for f in frames:
            if (ph, pw) != (h, w):
                f = np.pad(f, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return _sign(path, meta, credentials)


def write_webp(
    frames: Iterable[np.ndarray],
    path: str | os.PathLike[str],
    fps: float = 25,
    quality: int = 80,
    loop: int = 0,
    label: Label | bool = True,
    credentials: C2paCredentials | None = None,
) -> Path:
    """Write an animated WebP sticker (``loop=0`` repeats forever) with an XMP label (see
    ``write_mp4`` for ``label`` and ``credentials``)."""
    from PIL import Image

    frames = list(frames)
    _check_frames(frames)
    meta = _resolve_label(label)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(f) for f in frames]
    images[0].save(
        path,
        format="WEBP",
        save_all=True,
        append_images=images[1:],
        duration=int(round(1000 / fps)),
        loop=loop,
        quality=quality,
        method=4,
        **({"xmp": label_to_xmp(meta)} if meta is not None else {}),
    )
    return _sign(path, meta, credentials)


def write_png(
    frame: np.ndarray,
    path: str | os.PathLike[str],
    label: Label | bool = True,
    credentials: C2paCredentials | None = None,
) -> Path:
    """Write one frame as PNG (a still sticker) with the label as XMP (see ``write_mp4``)."""
    from PIL import Image, PngImagePlugin

    _check_frames([frame])
    meta = _resolve_label(label)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    if meta is not None:
        info.add_itxt("XML:com.adobe.xmp", label_to_xmp(meta).decode("utf-8"))
    Image.fromarray(frame).save(path, format="PNG", pnginfo=info)
    return _sign(path, meta, credentials)


def _sign(path: Path, meta: dict[str, object] | None, credentials: C2paCredentials | None) -> Path:
    """Embed a signed C2PA manifest when credentials are given."""
    if credentials is None:
        return path
    if meta is None:
        raise InvalidInputError("a C2PA manifest states what the media is: it needs a label")
    from talkinghead.sdk.credentials import sign_media

    return sign_media(path, credentials, meta)


def read_label(path: str | os.PathLike[str]) -> dict[str, object] | None:
    """The provenance label of a media file (MP4 tags, or XMP in WebP/PNG/JPEG), or None.

    Raises ImageReadError when the file is missing or neither an image nor a video.
    """
    import av
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"media file not found: {path}")
    try:
        with Image.open(path) as im:
            xmp = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")
            return label_from_xmp(xmp) if xmp else None
    except UnidentifiedImageError:
        pass  # not an image: try it as a video
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"cannot read {path}: {exc}") from exc
    try:
        with av.open(str(path)) as c:
            meta = dict(c.metadata)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise ImageReadError(f"{path} is neither a readable image nor a video: {exc}") from exc
    try:
        label = json.loads(meta.get("comment", ""))
        if isinstance(label, dict) and label.get("ai_generated"):
            return label
    except json.JSONDecodeError:
        pass
    return (
        {"description": meta["description"]}
        if "AI-generated" in meta.get("description", "")
        else None
    )


def read_video(
    path: str | os.PathLike[str], max_frames: int | None = None
) -> Generator[tuple[np.ndarray, int], None, None]:
    """Decode a video file: yields (frame (H, W, 3) uint8 RGB, timestamp ms), strictly increasing.

    Raises ImageReadError for a missing file, a file with no video stream, or undecodable data.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"video not found: {path}")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise ImageReadError(f"cannot open {path} as a video: {exc}") from exc
    with container:
        if not container.streams.video:
            raise ImageReadError(f"{path} has no video stream")
        stream = container.streams.video[0]
        w, h = stream.codec_context.width or 0, stream.codec_context.height or 0
        if w * h > MAX_FRAME_PIXELS:  # checked before a frame is decoded
            raise ImageReadError(
                f"{path} is {w}x{h} px, more than the {MAX_FRAME_PIXELS} px per frame read here"
            )
        last_ms, count = -1, 0
        try:
            for frame in container.decode(stream):
                if frame.width * frame.height > MAX_FRAME_PIXELS:  # a stream may change size
                    raise ImageReadError(
                        f"{path}: frame {count} is larger than {MAX_FRAME_PIXELS} px"
                    )
                t = frame.time
                ms = int(round(t * 1000)) if t is not None else last_ms + 1
                ms = max(ms, last_ms + 1)  # some containers repeat or omit timestamps
                last_ms = ms
                yield frame.to_ndarray(format="rgb24"), ms
                count += 1
                if max_frames is not None and count >= max_frames:
                    return
        except (av.error.FFmpegError, ValueError) as exc:
            raise ImageReadError(f"{path} is corrupt after frame {count}: {exc}") from exc
        if count == 0:
            raise ImageReadError(f"{path} holds no decodable video frames")


def count_frames(path: str | os.PathLike[str]) -> int:
    """Number of frames, by decoding every one (container headers can lie)."""
    return sum(1 for _ in read_video(path))


def video_fps(path: str | os.PathLike[str], default: float = 25.0) -> float:
    import av

    try:
        with av.open(str(path)) as c:
            rate = c.streams.video[0].average_rate
            return float(rate) if rate else default
    except (av.error.FFmpegError, OSError, IndexError, ValueError) as exc:
        raise ImageReadError(f"cannot read the frame rate of {path}: {exc}") from exc
