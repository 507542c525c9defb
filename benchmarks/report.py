"""Turn one run's raw figures into ``results.json``, ``report.md`` and PNG plots in ``img/``.

python -m talkinghead.benchmarks.report benchmarks/results.json   # re-render, no measuring
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def teacher_student_ratios(teachers: list[dict], scaling: list[dict]) -> list[dict[str, Any]]:
    """Teacher over student (the phone's refiner), eager fp32 both, at the teacher's resolution,
    measured in one run."""
    out = []
    for t in teachers:
        for s in scaling:
            if s["resolution"] == t["resolution"]:
                out.append(
                    {
                        "teacher": t["variant"],
                        "student": s["variant"],
                        "resolution": t["resolution"],
                        "latency_ratio": t["latency_ms"] / s["latency_ms"],
                        "macs_ratio": t["macs"] / s["macs"],
                    }
                )
    return out


def write(res: dict[str, Any], out: Path) -> Path:
    """Write results.json, the plots and report.md into ``out``; return the report's path."""
    out = Path(out)
    (out / "img").mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    plots = _plots(res, out / "img")
    path = out / "report.md"
    path.write_text(_markdown(res, plots))
    return path


# ----------------------------------------------------------------------------- plots


def _label(r: dict) -> str:
    return f"{r['variant']}\n{r['resolution']} px"


def _plots(res: dict[str, Any], img: Path) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in res["generators"] if "latency_ms" in r]
    made = []

    # Latency per backend: one group per case, one bar per backend/precision.
    cases = list(dict.fromkeys(_label(r) for r in rows))
    series = list(dict.fromkeys(f"{r['backend']} {r['precision']}" for r in rows))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(cases) + 2), 4))
    width = 0.8 / max(len(series), 1)
    for j, s in enumerate(series):
        xs, ys = [], []
        for i, c in enumerate(cases):
            for r in rows:
                if _label(r) == c and f"{r['backend']} {r['precision']}" == s:
                    xs.append(i + j * width)
                    ys.append(r["latency_ms"])
        ax.bar(xs, ys, width, label=s)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(cases))], cases)
    ax.set_yscale("log")
    ax.set_ylabel("latency per frame, ms (median, log)")
    ax.set_title("Generator latency per backend")
    ax.legend(fontsize=7, ncol=2)
    made.append(_save(fig, img / "latency_per_backend.png", "Generator latency per backend"))

    # Quality against latency: only trained weights have a quality worth plotting (a random
    # network's int8 error says little), unless no case is trained (tiny runs).
    trained = [r for r in rows if r["weights"].startswith("trained")]
    shown = trained or rows
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    markers = dict(zip(sorted({r["backend"] for r in shown}), "osD^vP", strict=False))
    for r in shown:
        color = "tab:blue" if r["precision"] == "fp32" else "tab:red"
        m = markers[r["backend"]]
        ax.scatter(r["latency_ms"], r["psnr_vs_fp32_db"], c=color, marker=m, alpha=0.7)
        if "psnr_vs_teacher_db" in r:
            ax.scatter(r["latency_ms"], r["psnr_vs_teacher_db"], facecolors="none",
                       edgecolors=color, marker=m, s=90)  # fmt: skip
    for b, m in markers.items():
        ax.scatter([], [], c="gray", marker=m, label=b)
    ax.scatter([], [], c="tab:blue", label="fp32")
    ax.scatter([], [], c="tab:red", label="int8")
    ax.scatter([], [], facecolors="none", edgecolors="k", s=90, label="vs teacher (trained)")
    ax.set_xscale("log")
    ax.set_xlabel("latency per frame, ms (median, log)")
    ax.set_ylabel("PSNR, dB (filled: vs eager fp32, capped at 100; hollow: vs teacher)")
    what = {(r["variant"], r["resolution"]) for r in shown}
    ax.set_title("Quality against latency: " + ", ".join(f"{v} {p} px" for v, p in sorted(what)))
    ax.legend(fontsize=7)
    made.append(_save(fig, img / "quality_vs_latency.png", "Quality against latency"))

    # Cost against resolution, eager fp32.
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for v in dict.fromkeys(r["variant"] for r in res["scaling"]):
        pts = sorted(
            (r["resolution"], r["macs"], r["latency_ms"])
            for r in res["scaling"]
            if r["variant"] == v
        )
        a1.plot([p[0] for p in pts], [p[1] / 1e6 for p in pts], "o-", label=v)
        a2.plot([p[0] for p in pts], [p[2] for p in pts], "o-", label=v)
    for t, c in zip(res["teachers"], ("k", "tab:gray", "tab:brown", "tab:olive"), strict=False):
        a1.scatter(t["resolution"], t["macs"] / 1e6, marker="*", s=140, c=c, label=t["variant"])
        a2.scatter(t["resolution"], t["latency_ms"], marker="*", s=140, c=c, label=t["variant"])
    ticks = sorted(
        {r["resolution"] for r in res["scaling"]} | {t["resolution"] for t in res["teachers"]}
    )
    for a, y in ((a1, "MMACs per frame"), (a2, "eager fp32 latency, ms (median)")):
        a.set_xscale("log", base=2)
        a.set_xticks(ticks, [str(t) for t in ticks])
        a.minorticks_off()
        a.set_yscale("log")
        a.set_xlabel("resolution, px")
        a.set_ylabel(y)
        a.legend(fontsize=7)
    a1.set_title("MACs scale with pixels (x4 per doubling)")
    a2.set_title("Latency against resolution")
    made.append(_save(fig, img / "scaling.png", "Cost against resolution"))

    # Fraction of the machine's GEMM peak.
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(rows) + 2), 4))
    names = [f"{r['variant']} {r['resolution']} {r['backend']} {r['precision']}" for r in rows]
    ax.bar(range(len(rows)), [100 * r["fraction_of_peak"] for r in rows])
    ax.set_xticks(range(len(rows)), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("% of fp32 GEMM peak")
    ax.set_title(f"Achieved share of the GEMM peak ({res['gemm_peak']['gflops']:.0f} GFLOP/s)")
    made.append(_save(fig, img / "fraction_of_peak.png", "Achieved share of the GEMM peak"))
    return made


def _save(fig, path: Path, title: str) -> tuple[str, str]:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return title, f"img/{path.name}"


# ----------------------------------------------------------------------------- markdown


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if c is None else str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _f(x: Any, fmt: str = ".1f") -> str:
    return "" if x is None else format(x, fmt)


def _markdown(res: dict[str, Any], plots: list[tuple[str, str]]) -> str:
    meta, m = res["meta"], res["meta"]["machine"]
    peak = res["gemm_peak"]
    md = [
        "# talkinghead benchmarks\n",
        f"Generated by `{meta['command']}` on {meta['date']} in {meta['duration_s']:.0f} s "
        f"(mode `{meta['mode']['name']}`). Every figure below comes from that one run on this "
        "machine; latencies are medians over repeated calls after a warm-up. This file is "
        "generated: edit `benchmarks/report.py`, not the report.\n",
        _summary(res),
        "## Machine\n",
        markdown_table(
            ["", ""],
            [
                ["CPU", f"{m['cpu']} ({m['arch']})"],
                ["cores", m["cores"]],
                ["torch threads", f"{m['torch_threads']} (OMP_NUM_THREADS={m['omp_num_threads']})"],
                ["1-min load average at start", _f(m["load_average_1min"], ".2f")],
                ["OS", m["os"]],
                ["versions", ", ".join(f"{k} {v}" for k, v in m["versions"].items())],
                ["backends measured", ", ".join(meta["backends"])],
            ],
        ),
        "The CPU is shared with other work (a VM with other jobs running), so absolute "
        "times carry noise of tens of percent; figures measured in the same run are "
        "comparable with each other. Every runtime (ExecuTorch's XNNPACK pool, LiteRT, ONNX "
        "Runtime) is set to torch's thread count.\n",
        "## The machine's limit\n",
        f"fp32 GEMM peak: **{peak['gflops']:.1f} GFLOP/s** (`torch.mm`, {peak['n']} x "
        f"{peak['n']} matrices, {peak['threads']} thread(s), best of the repeats of three "
        "samples taken at the start, middle and end of the run: "
        f"{', '.join(f'{g:.0f}' for g in peak['samples_gflops'])} GFLOP/s). Each "
        "generator's share of it is 2 x MACs / latency / peak. MACs count convolutions, linear "
        "layers and matmuls (torch's FlopCounterMode / 2); int8 figures are measured against "
        "the same fp32 peak, so they can exceed what fp32 could reach.\n",
    ]
    md += ["## Generators\n", _generators_table(res["generators"])]
    md.append(
        "The generators are the refiners of the warp-and-refine generator: the phone's "
        "universal student, one set of weights for every face. Weights: `refiner-s` at 256 px "
        "is the shipped refiner, its files taken from the astronaut's avatar pack as "
        "`talkinghead export --photo astronaut` makes it; every other refiner is randomly "
        "initialised and labelled *untrained*: its latency, MACs and size are real, its "
        "frames are not. Inputs are real: the astronaut photo warped along built-in motion, "
        "its rasterised landmarks and the warp's validity (7 channels). PSNR vs fp32 is each "
        "runtime against the eager fp32 refiner on 8 held-out frames (the cost of export and "
        "int8). Eager PyTorch runs fp32 only. The warp itself runs outside the model (see "
        "the warp section).\n"
    )
    md += ["## Teacher against the refiner\n", _teacher_tables(res)]
    md += ["## Cost against resolution (eager fp32)\n", markdown_table(
        ["variant", "px", "MMACs", "latency ms"],
        [[r["variant"], r["resolution"], _f(r["macs"] / 1e6), _f(r["latency_ms"], ".2f")]
         for r in res["scaling"]],
    )]  # fmt: skip
    md += _stage_sections(res)
    md += ["## Plots\n"] + [f"![{t}]({p})\n" for t, p in plots]
    md += _external_sections(res.get("external", {}))
    md.append(ON_DEVICE)
    return "\n".join(md)


def _summary(res: dict[str, Any]) -> str:
    """The figures a reader wants first, each pointing at the table it comes from."""
    rows = [r for r in res["generators"] if "latency_ms" in r]
    lines = ["## Summary\n"]
    demo = [r for r in rows if r["weights"].startswith("trained")] or rows
    if demo:
        best = min(demo, key=lambda r: r["latency_ms"])
        lines.append(
            f"- Fastest generator for {best['variant']} at {best['resolution']} px: "
            f"{best['backend']} {best['precision']}, {best['latency_ms']:.1f} ms a frame "
            f"({1000 / best['latency_ms']:.0f} fps), {100 * best['fraction_of_peak']:.0f}% of "
            f"the machine's fp32 GEMM peak ({res['gemm_peak']['gflops']:.0f} GFLOP/s)."
        )
    int8 = [r["psnr_vs_fp32_db"] for r in demo if r["precision"] == "int8"]
    if int8:
        lines.append(
            f"- int8 against the eager fp32 refiner: {min(int8):.1f} to {max(int8):.1f} dB PSNR."
        )
    e = res["end_to_end"]
    lines.append(
        f"- End to end (track, retarget, warp, rasterise, render {e['backend']} "
        f"{e['precision']}, encode): {e['fps_wall']:.1f} fps wall clock."
    )
    speed = res.get("external", {}).get("speed", {}).get("figures")
    if speed:
        per = speed["runtimes"]["per_runtime"]
        ups = ", ".join(
            f"{n} {b['int8_speedup']:.2f}x" for n, b in per.items() if "int8_speedup" in b
        )
        lines.append(f"- int8 against fp32, best thread count each: {ups}.")
        f = speed["runtimes"]["fastest"]
        lines.append(
            f"- ExecuTorch int8 against the fastest configuration ({f['runtime']} "
            f"{f['precision']}, {f['num_threads']} thread(s), {f['ms_median']:.2f} ms): "
            f"{speed['runtimes'].get('executorch_int8_vs_fastest', float('nan')):.2f}x."
        )
        live = speed.get("live", {})
        if "fps_from_medians" in live:
            lines.append(
                f"- Live loop (MediaPipe tracking + `th_drive`): {live['fps_from_medians']:.1f} "
                f"fps from the medians, {live['fps_wall']:.1f} fps wall clock."
            )
        c = speed["cold_start"]
        lines.append(
            f"- Cold start: `talkinghead --help` {c['help']['median_s']:.2f} s, an error on a "
            f"bad photo {c['bad_photo']['median_s']:.2f} s (medians of {c['runs']})."
        )
    for r in res["ratios"]:
        if r["student"] in {d["variant"] for d in demo}:
            lines.append(
                f"- {r['teacher']} against {r['student']} at {r['resolution']} px (eager fp32): "
                f"{r['latency_ratio']:.1f}x the latency, {r['macs_ratio']:.1f}x the MACs."
            )
    return "\n".join(lines) + "\n"


def _generators_table(rows: list[dict]) -> str:
    body = []
    for r in rows:
        if "error" in r:
            body.append([r["variant"], r["resolution"], r["weights"], r["backend"], r["precision"],
                         f"failed: {r['error'][:80]}", "", "", "", "", "", "", ""])  # fmt: skip
            continue
        body.append(
            [
                r["variant"],
                r["resolution"],
                r["weights"],
                r["backend"],
                r["precision"],
                _f(r["latency_ms"], ".2f"),
                _f(1000 / r["latency_ms"], ".0f"),
                _f(r["macs"] / 1e6),
                _f(r["params"] / 1e3),
                _f(r["file_bytes"] / 1e3, ".0f") if "file_bytes" in r else "",
                _f(100 * r["fraction_of_peak"]),
                _f(r["psnr_vs_fp32_db"]),
                _f(r.get("psnr_vs_teacher_db")),
            ]
        )
    header = ["variant", "px", "weights", "backend", "precision", "latency ms", "fps", "MMACs",
              "k params", "file kB", "% of peak", "PSNR vs fp32 dB", "PSNR vs teacher dB"]  # fmt: skip
    return markdown_table(header, body)


def _teacher_tables(res: dict[str, Any]) -> str:
    t = markdown_table(
        ["teacher", "px", "latency ms", "GMACs", "M params", "% of peak"],
        [[r["variant"], r["resolution"], _f(r["latency_ms"]), _f(r["macs"] / 1e9, ".2f"),
          _f(r["params"] / 1e6, ".2f"), _f(100 * r["fraction_of_peak"])] for r in res["teachers"]],
    )  # fmt: skip
    ratios = markdown_table(
        ["teacher", "refiner", "px", "latency ratio", "MACs ratio"],
        [[r["teacher"], r["student"], r["resolution"], _f(r["latency_ratio"]) + "x",
          _f(r["macs_ratio"]) + "x"] for r in res["ratios"]],
    )  # fmt: skip
    return (
        t + "\nTeachers run their per-frame generator (E and the projection run once at "
        "enrolment), randomly initialised, eager fp32. Ratios divide teacher by refiner, both "
        "eager fp32 at the same resolution in this run.\n\n" + ratios
    )


def _stage_sections(res: dict[str, Any]) -> list[str]:
    e, en = res["end_to_end"], res["enrolment"]
    md = ["## End to end\n"]
    md.append(
        f"Tracker + mesh retarget + warp + rasterise + refine ({e['backend']} "
        f"{e['precision']}, shipped refiner) + H.264 encode, {e['frames']} frames of the 512 px "
        "astronaut photo. The "
        "clip is encoded at the end (libx264, preset medium); its per-frame share includes "
        "the encoder's start-up, which short runs magnify:\n"
    )
    md.append(markdown_table(
        ["track ms", "retarget ms", "warp ms", "rasterise ms", "render ms", "encode ms",
         "fps (medians)", "fps (wall)"],
        [[_f(e["track_ms"], ".2f"), _f(e["retarget_ms"], ".3f"), _f(e["warp_ms"], ".2f"),
          _f(e["rasterise_ms"], ".2f"), _f(e["render_ms"], ".2f"), _f(e["encode_ms"], ".2f"),
          _f(e["fps_from_medians"]), _f(e["fps_wall"])]],
    ))  # fmt: skip
    md.append("## Enrolment\n")
    md.append(markdown_table(
        ["refiner", "enrol s (track, crop, rig)", "rig kB", "fine-tune steps",
         "fine-tune pairs s", "fine-tune s", "fine-tune ms/step"],
        [[en["refiner"], _f(en["enrol_s"], ".2f"), _f(en["rig_bytes"] / 1e3, ".0f"),
          en["finetune_steps"], _f(en["finetune_pairs_s"], ".1f"), _f(en["finetune_s"]),
          _f(en["finetune_ms_per_step"], ".0f")]],
    ))  # fmt: skip
    md.append(
        "Enrolling a face is tracking, cropping and building its warp rig: no training, the "
        "universal refiner serves every face. Fine-tuning a copy of the refiner on the face "
        "(`--finetune STEPS`) is the opt-in for the last dB; its pairs are the face's own "
        "degraded warps.\n"
    )
    md.append("## The warp (numpy, `sdk/warp.py`)\n")
    md.append(
        markdown_table(
            ["px", "triangles", "ms"],
            [[r["resolution"], r["triangles"], _f(r["latency_ms"], ".2f")] for r in res["warp"]],
        )
    )
    md.append(
        "The enrolled photo moved to a target mesh (a turned head, an open mouth): "
        "rasterising the rig's triangles with the z-test, bilinear sampling and the validity "
        "mask, per frame, on one core.\n"
    )
    md.append("## Rasterising 68 landmarks\n")
    md.append(
        markdown_table(
            ["px", "ms"], [[r["resolution"], _f(r["latency_ms"], ".2f")] for r in res["rasterise"]]
        )
    )
    if res["memory"]:
        md.append("## Peak memory (each in a fresh process)\n")
        md.append(markdown_table(
            ["model", "backend", "precision", "after imports MB", "peak MB", "added by model + runs MB"],
            [[f"{r['variant']} {r['resolution']} px", r["backend"], r["precision"],
              *([_f(r["after_import_bytes"] / 1e6), _f(r["peak_bytes"] / 1e6),
                 _f((r["peak_bytes"] - r["after_import_bytes"]) / 1e6)]
                if "error" not in r else [f"failed: {r['error'][:80]}", "", ""])]
             for r in res["memory"]],
        ))  # fmt: skip
        md.append(
            "Resident-set high-water mark (VmHWM) of a child process that imports the runtime, "
            "loads the model and runs it 20 times; Python and torch are in every row.\n"
        )
    md.append("## Model files\n")
    md.append(
        markdown_table(
            ["file", "kB"], [[r["file"], _f(r["bytes"] / 1e3, ".0f")] for r in res["sizes"]]
        )
    )
    return md


def _external_sections(ext: dict[str, Any]) -> list[str]:
    md = []
    titles = {
        "speed": "int8, ExecuTorch against the fastest runtime, live loop, cold start",
        "tracking": "Tracking",
        "runtimes": "Runtimes",
        "provenance": "Provenance",
        "native": "Native C ABI",
    }
    sources = {"native": "bindings/native.py"}
    for name, body in ext.items():
        source = sources.get(name, f"benchmarks/{name}.py")
        md.append(f"## {titles.get(name, name)} (`{source}`)\n")
        if "error" in body:
            md.append(f"Not measured: {body['error']}\n")
        else:
            md.append(body["markdown"] + "\n")
    return md


ON_DEVICE = """## On a phone (not run here)

Nothing in this report ran on a phone: this machine has no device attached and no Android
or iOS toolchain, so these commands are unverified here and no phone figure appears above.
To measure the shipped refiner's files on a phone with each runtime's own benchmark tool
over adb, take them from an avatar pack (`talkinghead export --photo astronaut --out pack`,
or the `pack_*` folder in the benchmark cache) and build each tool for Android arm64-v8a
from its runtime's sources:

```bash
# ExecuTorch: executor_runner built with the XNNPACK backend
adb push pack/refiner-s_xnnpack_q8.pte /data/local/tmp/
adb shell /data/local/tmp/executor_runner \\
    --model_path /data/local/tmp/refiner-s_xnnpack_q8.pte --num_executions 100

# LiteRT: benchmark_model, on the XNNPACK CPU delegate and on the GPU delegate
adb push pack/refiner-s_litert_q8.tflite pack/refiner-s_litert_fp32.tflite \\
    /data/local/tmp/
adb shell /data/local/tmp/benchmark_model --graph=/data/local/tmp/refiner-s_litert_q8.tflite \\
    --use_xnnpack=true --num_threads=4 --num_runs=100
adb shell /data/local/tmp/benchmark_model \\
    --graph=/data/local/tmp/refiner-s_litert_fp32.tflite --use_gpu=true --num_runs=100

# ONNX Runtime: onnxruntime_perf_test, 100 runs with generated inputs
adb push pack/refiner-s_onnx_q8.onnx /data/local/tmp/
adb shell /data/local/tmp/onnxruntime_perf_test -e cpu -m times -r 100 -I \\
    /data/local/tmp/refiner-s_onnx_q8.onnx
```
"""


def main(argv: list[str] | None = None) -> None:
    import argparse

    from talkinghead.errors import InvalidInputError

    ap = argparse.ArgumentParser(description="Re-render report.md and plots from a results.json")
    ap.add_argument("results", type=Path)
    args = ap.parse_args(argv)
    try:
        res = json.loads(args.results.read_text())
    except (OSError, ValueError) as e:
        raise InvalidInputError(f"cannot read benchmark results {args.results}: {e}") from e
    print(f"wrote {write(res, args.results.parent)}")


if __name__ == "__main__":
    main()
