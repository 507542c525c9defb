"""Latency, parity and file size of every runtime x precision in an avatar pack.

    python -m talkinghead.benchmarks.runtimes [--pack PACK] [--out out/runtimes] [--repeats 30]

Without ``--pack``, the astronaut photo is enrolled with the shipped refiner into a pack for
all three runtimes first. Latency is the model alone (warp and rasterising excluded, on the
pack's parity inputs), single-threaded, median of ``repeats`` runs after a warm-up. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np


def measure_runtimes(
    pack: str | os.PathLike[str], repeats: int = 30, warmup: int = 3, threads: int = 1
) -> dict[str, dict[str, Any]]:
    """``{"<runtime>/<format>/<precision>": {"ms_median", "ms_p90", "kB", "max_abs", "psnr_db", "file"}}``.

    max_abs and psnr_db are against the pack's eager reference outputs (parity inputs).
    Models whose runtime is not installed are left out.
    """
    from talkinghead.sdk.backends import create_backend, runtime_installed
    from talkinghead.sdk.pack import open_pack
    from talkinghead.sdk.parity import EAGER_KEY, psnr_db

    if repeats < 1 or warmup < 0:
        from talkinghead.errors import InvalidInputError

        raise InvalidInputError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    rows: dict[str, dict[str, Any]] = {}
    with open_pack(pack) as p:
        parity = p.load_parity()
        inputs, eager = parity["inputs"], parity[EAGER_KEY]
        for m in p.manifest.models:
            if not runtime_installed(m.runtime):
                continue
            options = {} if m.runtime == "executorch" else {"num_threads": threads}
            with create_backend(m.runtime, **options) as backend:
                backend.load_bytes(p.read_verified(m.file), source=m.file)
                out = np.stack([backend.run(x) for x in inputs])
                for _ in range(warmup):
                    backend.run(inputs[0])
                times = []
                for i in range(repeats):
                    t0 = time.perf_counter()
                    backend.run(inputs[i % len(inputs)])
                    times.append(1e3 * (time.perf_counter() - t0))
            rows[f"{m.runtime}/{m.format}/{m.precision}"] = {
                "file": m.file,
                "ms_median": round(float(np.median(times)), 2),
                "ms_p90": round(float(np.percentile(times, 90)), 2),
                "kB": round(m.bytes / 1e3, 1),
                "max_abs": float(np.abs(out - eager).max()),
                "psnr_db": round(psnr_db(out, eager), 1),
            }
    return rows


def pack_sizes(pack: str | os.PathLike[str]) -> dict[str, int]:
    """Bytes per runtime (its model files, bundled programs included) and for the whole pack."""
    from talkinghead.sdk.pack import load_manifest

    root = Path(pack)
    manifest = load_manifest(root)
    sizes: dict[str, int] = {}
    for m in manifest.models:
        extra = m.info.get("bundled", {}).get("file")
        n = m.bytes + ((root / extra).stat().st_size if extra else 0)
        sizes[m.runtime] = sizes.get(m.runtime, 0) + n
    sizes["whole pack"] = (
        sum((root / rel).stat().st_size for rel in manifest.files)
        + (root / "manifest.json").stat().st_size
    )
    return sizes


def markdown(rows: dict[str, dict[str, Any]], sizes: dict[str, int]) -> str:
    lines = [
        "| runtime / format / precision | median ms | p90 ms | file kB | max abs vs eager | PSNR vs eager |",
        "|---|---|---|---|---|---|",
    ]
    for k, r in rows.items():
        lines.append(
            f"| {k} | {r['ms_median']:.2f} | {r['ms_p90']:.2f} | {r['kB']:.0f} | {r['max_abs']:.1e} | {r['psnr_db']:.1f} dB |"
        )
    lines += ["", "| pack part | size |", "|---|---|"]
    lines += [f"| {k} | {v / 1e3:.0f} kB |" for k, v in sizes.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pack", help="an existing pack (default: enrol the astronaut photo)")
    ap.add_argument("--out", default="out/runtimes")
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args(argv)
    pack = args.pack
    if pack is None:
        from talkinghead.pipeline import export_pack

        t0 = time.perf_counter()
        pack = export_pack("astronaut", Path(args.out) / "pack", progress=True)
        print(f"enrol + pack, all runtimes: {time.perf_counter() - t0:.0f} s\n")
    print(markdown(measure_runtimes(pack, args.repeats), pack_sizes(pack)))


if __name__ == "__main__":
    main()
