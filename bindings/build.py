"""Build the native runtime: ``python -m talkinghead.bindings.build [--asan] [--bench PACK]``.

Prints the CMake commands it runs and where the library landed; with ``--bench`` also the
median render and warp latency (ms per frame) of the pack's fp32 and int8 models, beside
the same work through the Python SDK's ExecuTorch path, and with ``--plot`` a PNG of the per-frame
native latencies (matplotlib).
"""

from __future__ import annotations

import argparse
import sys

from talkinghead.bindings.native import (
    DEFAULT_BUILD_ROOT,
    build_native,
    cmake_commands,
    compare_paths,
)
from talkinghead.errors import TalkingHeadError


def plot_latency(results: list[dict], path: str) -> None:
    """Per-frame native render latency, one line per precision, medians dashed."""
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for r in results:
        line = ax.plot(r["ms"], lw=0.8, label=f"{r['precision']} (median {r['median_ms']:.1f} ms)")
        ax.axhline(r["median_ms"], ls="--", lw=0.8, color=line[0].get_color())
    ax.set(xlabel="frame", ylabel="th_render ms", title="native render latency per frame")
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m talkinghead.bindings.build", description=__doc__
    )
    parser.add_argument("--build-dir", help="CMake build folder (default bindings/build/release)")
    parser.add_argument("--asan", action="store_true", help="build with AddressSanitizer")
    parser.add_argument("--bench", metavar="PACK", help="then benchmark this pack folder")
    parser.add_argument("--frames", type=int, default=100, help="benchmark frames (default 100)")
    parser.add_argument(
        "--plot", metavar="PNG", help="with --bench: write per-frame latencies here"
    )
    args = parser.parse_args(argv)
    try:
        out = args.build_dir or DEFAULT_BUILD_ROOT / ("asan" if args.asan else "release")
        for cmd in cmake_commands(out, asan=args.asan):
            print("$", " ".join(cmd))
        build = build_native(args.build_dir, asan=args.asan)
        print(f"library:  {build.library}\nselftest: {build.selftest}\nbench:    {build.bench}")
        if args.bench:
            pairs = compare_paths(args.bench, frames=args.frames, build=build)
            for r, py in pairs:
                print(
                    f"{r['precision']}: th_render median {r['median_ms']:.2f} ms/frame, fastest "
                    f"{r['min_ms']:.2f} ms, over {r['frames']} frames ({r['resolution']} px); "
                    f"Python SDK path median {py['median_ms']:.2f} ms, fastest {py['min_ms']:.2f} ms; "
                    f"th_warp median {r['warp_median_ms']:.2f} ms (Python {py['warp_median_ms']:.1f} ms); "
                    f"th_drive median {r['drive_median_ms']:.2f} ms"
                )
            if args.plot:
                plot_latency([r for r, _ in pairs], args.plot)
                print(f"plot:     {args.plot}")
    except TalkingHeadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
