"""Peak memory of ``verify-media`` on a generated clip, measured in a fresh process.

    python -m talkinghead.benchmarks.media_memory --width 3840 --height 2160 --seconds 10
    python -m talkinghead.benchmarks.media_memory --width 1920 --height 1080 --seconds 10

The clip (H.264, 25 fps, a moving gradient: small on disk, full-size when decoded) is made
with PyAV. A child process runs ``verify_media`` on it and reports its own high-water mark
(VmHWM, which counts FFmpeg's and numpy's allocations too); one JSON line is printed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_CHILD = """
import json, sys
from talkinghead.benchmarks.core import vm_hwm_bytes
from talkinghead.sdk.provenance import verify_media
before = vm_hwm_bytes()
report = verify_media(sys.argv[1], max_frames=int(sys.argv[2]))
print(json.dumps({"frames": report.frames, "after_import_bytes": before,
                  "peak_bytes": vm_hwm_bytes()}))
"""


def make_clip(path: Path, width: int, height: int, seconds: float, fps: int = 25) -> Path:
    """An H.264 MP4 of ``seconds`` at ``fps``: a gradient that moves one step per frame."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "35"}
        ramp = (np.arange(width, dtype=np.uint16)[None, :] + np.arange(height)[:, None]) % 256
        for i in range(int(seconds * fps)):
            gray = ((ramp + 4 * i) % 256).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(np.dstack([gray, gray, gray]), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def measure(path: Path, max_frames: int) -> dict:
    """verify_media's peak memory on ``path`` in a fresh process: a dict of bytes and frames."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), str(max_frames)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=3840)
    ap.add_argument("--height", type=int, default=2160)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--max-frames", type=int, default=250, help="as verify-media's default")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip(Path(tmp) / "clip.mp4", args.width, args.height, args.seconds)
        result = measure(clip, args.max_frames)
        result.update(
            clip=f"{args.width}x{args.height}, {args.seconds:g} s, 25 fps",
            clip_bytes=clip.stat().st_size,
            peak_mb=round(result["peak_bytes"] / 2**20, 1),
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
