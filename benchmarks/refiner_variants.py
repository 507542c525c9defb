"""Before and after: the refiner's graph shapes that decided its speed on each runtime.

    python -m talkinghead.benchmarks.refiner_variants [--out out/variants] [--runs 40]

Each variant is the refiner's architecture at one step of the work in docs/performance.md,
randomly initialised (latency does not depend on the weights), exported by the project's
own exporters to ExecuTorch (XNNPACK), LiteRT and ONNX Runtime in fp32 and int8, and timed
at 1 and 2 threads on the same random input (medians). ExecuTorch's per-operator profile
(``benchmarks.profile``) of each variant's fp32 and int8 programs is summarised by operator
kind, which is what showed why each change was needed.

- ``v2``: the refiner before this work: depthwise-separable U-Net, a 3x3 head at full
  resolution fed by a full-resolution skip, the frame composed as
  ``m * warped + (1 - m) * clamp(warped + c)`` from channel slices of the head's output.
- ``v2-ps``: the same body; the head at half resolution laid out by a pixel shuffle, the
  composition ``clamp(warped + (1 - m) * c)``.
- ``v3``: the shipped refiner (``models/refiner.py``): dense 3x3 convolutions, no
  depthwise ones, and the ``v2-ps`` head.
- ONNX Runtime int8 is measured with int8 activations (S8S8, before) and uint8
  activations (U8S8, the exporter's setting now).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from talkinghead.models.refiner import create_refiner

S = 256


class _Sep(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, 3, stride, 1, groups=cin)
        self.pw = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.pw(F.relu(self.dw(x))))


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class RefinerV2(nn.Module):
    """The refiner's architecture before this work (ARCH_VERSION 2); ``shuffle_head`` gives
    the ``v2-ps`` step."""

    def __init__(self, shuffle_head: bool = False, ch: tuple[int, ...] = (16, 32, 64, 96)):
        super().__init__()
        self.shuffle_head = shuffle_head
        self.stem = nn.Conv2d(7, ch[0], 3, 2, 1)
        self.down = nn.ModuleList(
            nn.Sequential(_Sep(ch[i], ch[i + 1], 2), _Sep(ch[i + 1], ch[i + 1]))
            for i in range(len(ch) - 1)
        )
        self.res = nn.ModuleList(_Sep(ch[-1], ch[-1]) for _ in range(2))
        self.fuse_up = nn.ModuleList(
            nn.Conv2d(ch[i + 1], ch[i], 1, bias=False) for i in range(len(ch) - 1)
        )
        self.fuse_skip = nn.ModuleList(nn.Conv2d(ch[i], ch[i], 1) for i in range(len(ch) - 1))
        self.up = nn.ModuleList(_Sep(ch[i], ch[i]) for i in range(len(ch) - 1))
        if shuffle_head:
            self.head = nn.Conv2d(ch[0], 16, 3, 1, 1)
        else:
            self.full_up = nn.Conv2d(ch[0], ch[0], 1, bias=False)
            self.full_skip = nn.Conv2d(7, ch[0], 1)
            self.head = nn.Conv2d(ch[0], 4, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.stem(x))
        skips = [h]
        for block in self.down:
            h = block(h)
            skips.append(h)
        skips.pop()
        for block in self.res:
            h = h + block(h)
        for i in reversed(range(len(self.down))):
            h = F.relu(_up(self.fuse_up[i](h)) + self.fuse_skip[i](skips[i]))
            h = self.up[i](h)
        warped = x[:, 0:3]
        if self.shuffle_head:
            out = F.pixel_shuffle(self.head(h), 2)
            return F.hardtanh(warped + torch.sigmoid(out[:, 3:4]) * out[:, :3])
        h = F.relu(_up(self.full_up(h)) + self.full_skip(x))
        out = self.head(h)
        refined = F.hardtanh(warped + out[:, :3])
        mask = torch.sigmoid(out[:, 3:4])
        return refined + mask * (warped - refined)


def variants() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    models: dict[str, nn.Module] = {
        "v2": RefinerV2(),
        "v2-ps": RefinerV2(shuffle_head=True),
        "v3": create_refiner("refiner-s"),
    }
    for m in models.values():
        for p in m.parameters():
            nn.init.normal_(p, 0, 0.1)  # no zero head: every op does real work
        m.eval()
    return models


def export_variant(name: str, model: nn.Module, folder: Path) -> list[tuple[str, str, Path]]:
    """(runtime, label, file) for fp32 and int8 on every runtime; ONNX int8 twice (S8S8, U8S8)."""
    from talkinghead.export.executorch import export_executorch
    from talkinghead.export.litert import export_litert
    from talkinghead.export.onnx import export_onnx, quantize_onnx_static

    folder.mkdir(parents=True, exist_ok=True)
    example = (torch.zeros(1, 7, S, S),)
    g = torch.Generator().manual_seed(1)
    calibration = [(torch.rand(1, 7, S, S, generator=g) * 2 - 1,) for _ in range(4)]
    files = []
    for q in (False, True):
        tag = "int8" if q else "fp32"
        cal = calibration if q else None
        pte = export_executorch(
            model, example, folder / f"{name}_{tag}.pte", quantize=q, calibration=cal
        )
        files.append(("executorch", tag, pte))
        tfl = export_litert(
            model, example, folder / f"{name}_{tag}.tflite", quantize=q, calibration=cal
        )
        files.append(("litert", tag, tfl))
    onnx = export_onnx(model, example, folder / f"{name}_fp32.onnx")
    files.append(("onnxruntime", "fp32", onnx))
    for act in ("S8S8", "U8S8"):
        path = folder / f"{name}_int8_{act}.onnx"
        quantize_onnx_static(onnx, path, calibration, activations=act)
        files.append(("onnxruntime", f"int8 {act}", path))
    return files


def time_file(runtime: str, path: Path, threads: int, runs: int) -> float:
    from talkinghead.sdk.backends import create_backend

    x = np.random.default_rng(0).uniform(-1, 1, (1, 7, S, S)).astype(np.float32)
    with create_backend(runtime, num_threads=threads) as b:
        b.load(path)
        for _ in range(5):
            b.run(x)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            b.run(x)
            times.append(time.perf_counter() - t0)
    return round(1e3 * statistics.median(times), 2)


def et_profile(path: Path, threads: int = 2) -> dict[str, float]:
    """ExecuTorch milliseconds per operator kind (top six) and the gap between operators."""
    from talkinghead.benchmarks.profile import ProfileConfig, profile_program

    r = profile_program(path.read_bytes(), path.name, ProfileConfig(threads=threads, runs=20))
    kinds = sorted(r["kinds"].items(), key=lambda kv: -kv[1])[:6]
    return {**{k: round(v, 3) for k, v in kinds}, "between operators": round(r["overhead_ms"], 3)}


def run(out: Path, runs: int = 40) -> dict[str, Any]:
    logging.disable(logging.WARNING)
    results: dict[str, Any] = {}
    for name, model in tqdm(variants().items(), desc="variants"):
        files = export_variant(name, model, out / name)
        rows = []
        for runtime, label, path in files:
            for threads in (1, 2):
                rows.append(
                    {
                        "runtime": runtime,
                        "precision": label,
                        "threads": threads,
                        "ms": time_file(runtime, path, threads, runs),
                    }
                )
        profiles = {
            label: et_profile(path) for runtime, label, path in files if runtime == "executorch"
        }
        results[name] = {"rows": rows, "executorch_profile": profiles}
    return results


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "| variant | runtime | precision | 1 thread ms | 2 threads ms |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        by: dict[tuple[str, str], dict[int, float]] = {}
        for row in r["rows"]:
            by.setdefault((row["runtime"], row["precision"]), {})[row["threads"]] = row["ms"]
        for (runtime, prec), t in by.items():
            lines.append(f"| {name} | {runtime} | {prec} | {t.get(1, 0):.2f} | {t.get(2, 0):.2f} |")
    lines += ["", "ExecuTorch profile, 2 threads, ms per operator kind (top six):", ""]
    for name, r in results.items():
        for prec, kinds in r["executorch_profile"].items():
            parts = ", ".join(f"{k} {v:.2f}" for k, v in kinds.items())
            lines.append(f"- {name} {prec}: {parts}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("out/variants"))
    ap.add_argument("--runs", type=int, default=40)
    args = ap.parse_args(argv)
    results = run(args.out, args.runs)
    (args.out / "variants.json").write_text(json.dumps(results, indent=1))
    print(markdown(results))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main()
