"""Figures of the end-to-end spine on this machine: latency medians, parity, sizes.

    python -m talkinghead.benchmarks.spine [--out out/spine]

Enrols the astronaut photo into a warp-and-refine avatar pack (ExecuTorch, the shipped
refiner), then measures tracking, rasterising, the warp and rendering per frame (medians),
the fp32/int8 parity against eager, and file sizes.
Prints a Markdown table. The full suite is ``python -m talkinghead.benchmarks.run``; this is the spine's summary.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

from talkinghead.benchmarks.core import median_ms, psnr_db


def measure(out: Path, repeats: int = 30, pack: Path | None = None) -> list[tuple[str, str]]:
    """(figure, value) rows. With ``pack``, that pack is measured instead of a fresh export."""
    from skimage import data

    from talkinghead.packs import DEFAULT_REFINER, weights_path
    from talkinghead.pipeline import export_pack
    from talkinghead.sdk.avatar import Avatar, AvatarOptions
    from talkinghead.sdk.mesh_motion import builtin_mesh_motion
    from talkinghead.sdk.pack import open_pack
    from talkinghead.sdk.rasterize import rasterize_landmarks
    from talkinghead.sdk.tracker import FaceTracker, FaceTrackerOptions, RunningMode
    from talkinghead.sdk.warp import warp_to

    rows: list[tuple[str, str]] = [
        ("machine", f"{platform.machine()}, {platform.processor() or 'cpu'}")
    ]
    photo = data.astronaut()
    ts = iter(range(0, 10**9, 40))
    with FaceTracker.create_from_options(FaceTrackerOptions(running_mode=RunningMode.VIDEO)) as tr:
        ms = median_ms(lambda: tr.detect_for_video(photo, next(ts)), repeats)
        face = tr.detect_for_video(photo, next(ts))[0]
    rows.append(("tracking, VIDEO mode, 512 px frame (median)", f"{ms:.1f} ms"))
    lm = face.landmarks68 * 0.5
    rows.append(
        (
            "rasterising 68 points at 256 px (median)",
            f"{median_ms(lambda: rasterize_landmarks(lm, 256), repeats):.1f} ms",
        )
    )

    if pack is None:
        t0 = time.perf_counter()
        pack = export_pack("astronaut", out / "pack", runtimes=("executorch",), progress=False)
        rows.append(
            (
                "enrol + pack, ExecuTorch fp32 + int8 (refiner models cached)",
                f"{time.perf_counter() - t0:.0f} s",
            )
        )
    with open_pack(pack) as p:
        rig = p.load_rig()
    target = builtin_mesh_motion(rig.mesh, 2, seed=1)[1]
    rows.append(
        (
            f"warp at {rig.size} px (median)",
            f"{median_ms(lambda: warp_to(rig, target), repeats):.1f} ms",
        )
    )
    for precision in ("fp32", "int8"):
        with Avatar.create_from_options(AvatarOptions(pack=pack, precision=precision)) as avatar:
            ms = median_ms(lambda a=avatar: a.render(target), repeats)
        rows.append((f"render {precision}, warp and rasterising included (median)", f"{ms:.1f} ms"))

    with open_pack(pack) as p:
        parity = p.load_parity()
        # The spine is ExecuTorch; the runtimes benchmark covers the other files of the pack.
        files = {m.precision: m for m in p.manifest.models if m.runtime == "executorch"}
        eager = parity["outputs.eager"]
        fp32 = parity[f"outputs.{files['fp32'].file}"]
        int8 = parity[f"outputs.{files['int8'].file}"]
        rows.append(("fp32 .pte vs eager, max abs on [-1, 1]", f"{np.abs(fp32 - eager).max():.1e}"))
        rows.append(("int8 .pte vs fp32 .pte, PSNR", f"{psnr_db(int8, fp32):.1f} dB"))
        for m in files.values():
            rows.append((f"{m.file}", f"{m.bytes / 1e3:.0f} kB"))
        total = sum(f.stat().st_size for f in Path(p.root).iterdir() if f.is_file())
        rows.append(("whole pack", f"{total / 1e6:.2f} MB"))
    rows.append((DEFAULT_REFINER, f"{weights_path(DEFAULT_REFINER).stat().st_size / 1e6:.2f} MB"))
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out/spine")
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args(argv)
    rows = measure(Path(args.out), args.repeats)
    print("| figure | value |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")


if __name__ == "__main__":
    main()
