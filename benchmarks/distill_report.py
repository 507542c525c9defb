"""The distillation report: every student variant x precision against the teacher it imitates.

    python -m talkinghead.benchmarks.distill_report --out benchmarks/distill            # full (an hour+)
    python -m talkinghead.benchmarks.distill_report --out out/distill-quick --quick     # minutes

One identity (the built-in astronaut) is FT-enrolled with the teacher; each variant is
distilled for it (or loaded with ``--students``), quantized (PTQ with a calibration set of
tracked motion, QAT when PTQ stays under the int8 target), exported to ExecuTorch (XNNPACK)
and run there on held-out motion (scripted seeds never trained on plus tracked sequences
never trained on). Per variant and precision it gives MACs, parameters, .pte size, PSNR and
SSIM against the teacher, int8 against fp32, and ExecuTorch latency (median, ``threads``
threads) at the teacher's resolution and at 256 px (same weights: the students are fully
convolutional). Writes ``report.json``, ``report.md`` and ``quality_vs_latency.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from talkinghead.errors import InvalidInputError

log = logging.getLogger(__name__)

TARGETS = {
    "max_gmacs_256": 1.0,
    "min_psnr_vs_teacher_db": 30.0,
    "min_int8_vs_fp32_db": 35.0,
    "min_macs_ratio_vs_teacher_256": 25.0,
    "max_int8_latency_256_ms": 16.0,
}


@dataclass
class ReportConfig:
    out: Path = Path("benchmarks/distill")
    teacher: str | None = None  # checkpoint; None: the committed teacher-xs
    teacher_variant: str = "teacher-xs"
    photo: str = "astronaut"
    variants: tuple[str, ...] = ("student-xs", "student-s", "student-m")
    students: dict[str, str] = field(default_factory=dict)  # variant -> trained checkpoint
    steps: int = 1500
    finetune_steps: int = 100
    sequences: int = 24
    frames_per_sequence: int = 50
    tracked_videos: int = 6  # pseudo-videos tracked back: half train + calibrate, half held out
    tracked_frames: int = 32
    eval_frames: int = 32
    calibration_frames: int = 64
    qat_steps: int = 300
    latency_resolutions: tuple[int, ...] = (256,)  # besides the teacher's own
    threads: int = 2
    repeats: int = 30
    seed: int = 0

    @classmethod
    def quick(cls, **kw: Any) -> ReportConfig:
        """Minutes, not hours: one small variant, a few steps, scripted motion only."""
        base = dict(
            variants=("student-xs",), steps=10, finetune_steps=1, sequences=2,
            frames_per_sequence=8, tracked_videos=0, eval_frames=4, calibration_frames=8,
            qat_steps=4, latency_resolutions=(), repeats=3,
        )  # fmt: skip
        return cls(**{**base, **kw})

    def validate(self) -> None:
        from talkinghead.models.registry import list_models

        unknown = [v for v in self.variants if v not in list_models("student")]
        if not self.variants or unknown:
            raise InvalidInputError(f"unknown student variants {unknown or '(none given)'}")
        if (
            min(self.steps, self.eval_frames, self.calibration_frames, self.repeats, self.threads)
            < 1
        ):
            raise InvalidInputError("steps, frames, repeats and threads must be positive")


def _landmark_sets(
    cfg: ReportConfig, crop: np.ndarray, neutral: np.ndarray
) -> dict[str, np.ndarray]:
    """Driving landmarks: tracked (train / held out) and scripted (eval / calibration / QAT)."""
    from talkinghead.distill.motion import (
        pseudo_videos,
        scripted_landmarks,
        track_sequences,
        tracked_landmarks,
    )

    sets: dict[str, np.ndarray] = {}
    tracked_train: list[np.ndarray] = []
    tracked_eval: list[np.ndarray] = []
    if cfg.tracked_videos > 0:
        videos = pseudo_videos(crop, neutral, cfg.tracked_videos, cfg.tracked_frames, cfg.seed + 50)
        seqs = track_sequences(videos, progress=True)
        half = max(len(seqs) // 2, 1)
        tracked_train, tracked_eval = seqs[:half], seqs[half:]
    if tracked_train:
        sets["tracked_train"] = tracked_landmarks(neutral, tracked_train)
    n = cfg.eval_frames
    eval_parts = [scripted_landmarks(neutral, 2, max(n // 4, 1), 0.0, cfg.seed + 202)]
    if tracked_eval:
        eval_parts.append(tracked_landmarks(neutral, tracked_eval))
    ev = np.concatenate(eval_parts)
    sets["eval"] = ev[np.linspace(0, len(ev) - 1, min(n, len(ev))).round().astype(int)]
    calib = [
        scripted_landmarks(neutral, 2, max(cfg.calibration_frames // 4, 1), 0.6, cfg.seed + 101)
    ]
    if tracked_train:
        calib.append(sets["tracked_train"])
    cal = np.concatenate(calib)
    sets["calibration"] = cal[
        np.linspace(0, len(cal) - 1, min(cfg.calibration_frames, len(cal))).round().astype(int)
    ]
    sets["qat"] = np.concatenate(
        [
            scripted_landmarks(
                neutral, 4, max(cfg.calibration_frames // 2, 1), 0.6, cfg.seed + 303
            ),
            *calib[1:],
        ]
    )
    return sets


def _open_executorch(pte: Path, threads: int):
    """An ExecuTorch runtime over ``pte`` with a ``threads``-thread XNNPACK pool.

    The pool is sized before the program loads: resizing it under a loaded program hangs."""
    from talkinghead.sdk.backends import create_backend

    rt = create_backend("executorch", num_threads=threads)
    rt.load(pte)
    return rt


def _pte_rows(
    name: str, student, int8_module, size: int, cfg: ReportConfig, ctx: dict
) -> list[dict[str, Any]]:
    """Export fp32 + int8 at the teacher's size, run both on ExecuTorch, measure quality and time."""
    from talkinghead.benchmarks.core import count_macs, count_params, median_ms
    from talkinghead.export.executorch import export_executorch, pte_filename
    from talkinghead.sdk.parity import psnr_db
    from talkinghead.sdk.tensors import from_model_output
    from talkinghead.train.evaluate import ssim

    rows = []
    outs = {}
    x_eval, teacher_out = ctx["eval_x"], ctx["teacher_out"]
    base = {
        "variant": name,
        "params": count_params(student),
        "macs": count_macs(student, student.get_example_inputs()),
    }
    for precision, module in (("fp32", student), ("int8", int8_module)):
        pte = ctx["out"] / "pte" / pte_filename(f"{name}_{size}px", precision == "int8")
        export_executorch(module, student.get_example_inputs(), pte)
        rt = _open_executorch(pte, cfg.threads)
        try:
            out = np.concatenate([rt.run(x[None].numpy()) for x in x_eval])
            ms = median_ms(lambda rt=rt: rt.run(x_eval[:1].numpy()), cfg.repeats, 3)
        finally:
            rt.close()
        outs[precision] = out
        row = {
            **base, "precision": precision, "resolution": size, "file": pte.name,
            "file_bytes": pte.stat().st_size, "latency_ms": ms,
            "psnr_vs_teacher_db": psnr_db(out, teacher_out),
            "ssim_vs_teacher": ssim(from_model_output(out), from_model_output(teacher_out)),
        }  # fmt: skip
        rows.append(row)
    rows[1]["psnr_vs_fp32_db"] = min(psnr_db(outs["int8"], outs["fp32"]), 100.0)
    return rows


def _latency_at(
    name: str, student, size: int, neutral: np.ndarray, cfg: ReportConfig, ctx: dict
) -> dict:
    """fp32 and int8 ExecuTorch latency (ms) and MACs of the same weights at ``size`` px."""
    from talkinghead.benchmarks.core import count_macs, median_ms
    from talkinghead.benchmarks.profile import ProfileConfig, profile_program
    from talkinghead.distill.distill import landmark_images
    from talkinghead.distill.quant import ptq
    from talkinghead.export.executorch import export_executorch, pte_filename
    from talkinghead.models.student import StudentGenerator

    big = StudentGenerator(replace(student.cfg, resolution=size))
    big.load_state_dict(student.state_dict())
    big.eval()
    scale = size / student.cfg.resolution
    calib = landmark_images(ctx["sets"]["calibration"] * scale, size)
    res = {"resolution": size, "macs": count_macs(big, big.get_example_inputs())}
    for precision, module in (("fp32", big), ("int8", ptq(big, calib))):
        pte = ctx["out"] / "pte" / pte_filename(f"{name}_{size}px", precision == "int8")
        export_executorch(module, big.get_example_inputs(), pte)
        rt = _open_executorch(pte, cfg.threads)
        try:
            x = calib[:1].numpy()
            res[f"{precision}_latency_ms"] = median_ms(lambda rt=rt, x=x: rt.run(x), cfg.repeats, 3)
            res[f"{precision}_file_bytes"] = pte.stat().st_size
        finally:
            rt.close()
    # Where the int8 frame's time goes, from ExecuTorch's own trace (talkinghead profile).
    prof = profile_program(
        pte.read_bytes(), pte.name, ProfileConfig(threads=cfg.threads, runs=cfg.repeats)
    )
    res["int8_profile"] = {
        k: prof[k] for k in ("execute_ms", "operator_sum_ms", "overhead_ms", "kinds")
    }
    return res


def run_report(cfg: ReportConfig) -> dict[str, Any]:
    """Distil (or load), quantize, export and measure every variant; write the report files."""
    from talkinghead.benchmarks.core import count_macs, count_params, machine_info
    from talkinghead.distill.distill import (
        DistillConfig,
        distill_student,
        landmark_images,
        teacher_targets,
    )
    from talkinghead.distill.quant import int8_for_student
    from talkinghead.distill.universal import check_resolutions, load_teacher
    from talkinghead.models.checkpoint import load_checkpoint, save_checkpoint
    from talkinghead.packs import weights_path
    from talkinghead.pipeline import DEFAULT_TEACHER, enrol_photo
    from talkinghead.sdk.photos import load_photo

    cfg.validate()
    t_start = time.perf_counter()
    out = Path(cfg.out)
    (out / "students").mkdir(parents=True, exist_ok=True)
    teacher = load_teacher(cfg.teacher or weights_path(DEFAULT_TEACHER), cfg.teacher_variant)
    size = teacher.cfg.resolution
    given = {v: load_checkpoint(p, "student", expect_variant=v) for v, p in cfg.students.items()}
    for v, s in given.items():  # before any enrolment or training
        check_resolutions(teacher=size, **{v: s.cfg.resolution})
    name, image = load_photo(cfg.photo)
    enrolled, crop, neutral, enrol_fig = enrol_photo(
        teacher, image, finetune_steps=cfg.finetune_steps, progress=True
    )
    sets = _landmark_sets(cfg, crop, neutral)
    eval_x = landmark_images(sets["eval"], size)
    ctx = {
        "out": out,
        "sets": sets,
        "eval_x": eval_x,
        "teacher_out": teacher_targets(enrolled, eval_x).numpy(),
    }
    calib_x = landmark_images(sets["calibration"], size)
    qat_x = landmark_images(sets["qat"], size)
    rows, extra, variants = [], {}, {}
    for v in tqdm(cfg.variants, desc="variants"):
        t0 = time.perf_counter()
        if v in given:
            student, dfig = given[v].eval(), {"loaded": cfg.students[v]}
        else:
            dcfg = DistillConfig(
                student=v, steps=cfg.steps, sequences=cfg.sequences,
                frames_per_sequence=cfg.frames_per_sequence, seed=cfg.seed,
            )  # fmt: skip
            student, dfig = distill_student(
                enrolled, neutral, size, dcfg, extra_landmarks=sets.get("tracked_train")
            )
            save_checkpoint(
                out / "students" / f"{name}.{v}.safetensors", student, "student",
                identity=name, neutral_landmarks=neutral.tolist(), teacher=teacher.cfg.name,
                finetune_steps=cfg.finetune_steps, distill_steps=cfg.steps, **dfig,
            )  # fmt: skip
        info = {"distill": dfig, "distill_s": round(time.perf_counter() - t0, 1)}
        int8, qfig = int8_for_student(
            student, calib_x, enrolled, qat_x, cfg.qat_steps, TARGETS["min_int8_vs_fp32_db"]
        )
        info.update(qfig)
        info["int8_method"] = qfig["int8"]
        variant_rows = _pte_rows(v, student, int8, size, cfg, ctx)
        variant_rows[1]["int8_method"] = info["int8_method"]
        rows += variant_rows
        info["at"] = [
            _latency_at(v, student, r, neutral, cfg, ctx)
            for r in cfg.latency_resolutions
            if r != size
        ]
        variants[v] = info
    extra["teacher_256"] = teacher_generator_cost("teacher-256")
    x = torch.zeros(1, 3, size, size)
    extra["teacher"] = {
        "variant": teacher.cfg.name,
        "resolution": size,
        "macs": count_macs(enrolled, (x,)),
        "params": count_params(enrolled.G),
    }
    res = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "identity": name, "enrolment": enrol_fig, "rows": rows, "variants": variants,
        "teachers": extra, "eval_frames": int(len(eval_x)),
        "tracked_eval": cfg.tracked_videos > 0, "machine": machine_info(),
        "total_s": round(time.perf_counter() - t_start, 1),
    }  # fmt: skip
    res["targets"] = check_targets(res)
    write_report(res, out)
    return res


def teacher_generator_cost(name: str) -> dict[str, int]:
    """MACs and parameters of a teacher's per-frame generator at its own resolution.

    Built on the meta device: shapes only, no memory and no arithmetic (teacher-256 is 49M
    parameters and 81 GMAC).
    """
    from talkinghead.benchmarks.core import count_macs, count_params
    from talkinghead.models.teacher import create_teacher

    with torch.device("meta"):
        t = create_teacher(name)
        g, s = t.G, t.cfg.resolution
        x, psi = torch.zeros(1, 3, s, s), torch.zeros(1, g.psi_dim)
        return {"resolution": s, "macs": count_macs(g, (x, None, psi)), "params": count_params(g)}


def check_targets(res: dict[str, Any]) -> dict[str, Any]:
    """Each target for the best variant: value, bound, met, and by how much it is missed."""
    best, best_psnr = None, -1.0
    for r in res["rows"]:
        at = {a["resolution"]: a for a in res["variants"][r["variant"]]["at"]}
        macs256 = at[256]["macs"] if 256 in at else r["macs"] * (256 / r["resolution"]) ** 2
        if (
            r["precision"] == "fp32"
            and macs256 <= TARGETS["max_gmacs_256"] * 1e9
            and r["psnr_vs_teacher_db"] > best_psnr
        ):
            best, best_psnr = r["variant"], r["psnr_vs_teacher_db"]
    if best is None:
        return {"best_variant": None}
    fp32, int8 = (
        next(r for r in res["rows"] if r["variant"] == best and r["precision"] == p)
        for p in ("fp32", "int8")
    )
    at = {a["resolution"]: a for a in res["variants"][best]["at"]}.get(256)
    macs256 = at["macs"] if at else fp32["macs"] * (256 / fp32["resolution"]) ** 2
    checks = {
        "gmacs_256": (macs256 / 1e9, TARGETS["max_gmacs_256"], "<="),
        "psnr_vs_teacher_db": (fp32["psnr_vs_teacher_db"], TARGETS["min_psnr_vs_teacher_db"], ">="),
        "int8_vs_fp32_db": (int8["psnr_vs_fp32_db"], TARGETS["min_int8_vs_fp32_db"], ">="),
        "macs_ratio_vs_teacher_256": (res["teachers"]["teacher_256"]["macs"] / macs256, TARGETS["min_macs_ratio_vs_teacher_256"], ">="),
        "int8_latency_256_ms": (at["int8_latency_ms"] if at else None, TARGETS["max_int8_latency_256_ms"], "<="),
    }  # fmt: skip
    out: dict[str, Any] = {"best_variant": best}
    for k, (value, bound, op) in checks.items():
        met = None if value is None else (value <= bound if op == "<=" else value >= bound)
        out[k] = {"value": value, "target": f"{op} {bound}", "met": met,
                  "missed_by": None if met in (None, True) else abs(value - bound)}  # fmt: skip
    return out


PROFILE_COLUMNS = [
    "variant",
    "px",
    "execute",
    "operators",
    "between operators",
    "largest operator kinds (ms)",
]


def write_report(res: dict[str, Any], out: Path) -> None:
    """report.json, report.md and quality_vs_latency.png in ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from talkinghead.benchmarks.report import markdown_table

    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(res, indent=1, default=float))
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in res["rows"]:
        at = {a["resolution"]: a for a in res["variants"][r["variant"]]["at"]}.get(256)
        lat = at[f"{r['precision']}_latency_ms"] if at else r["latency_ms"]
        ax.scatter(lat, r["psnr_vs_teacher_db"], marker="o" if r["precision"] == "fp32" else "s")
        ax.annotate(f"{r['variant']} {r['precision']}", (lat, r["psnr_vs_teacher_db"]), fontsize=8)
    where = (
        "256 px"
        if any(v["at"] for v in res["variants"].values())
        else f"{res['rows'][0]['resolution']} px"
    )
    ax.axhline(TARGETS["min_psnr_vs_teacher_db"], ls="--", c="grey", lw=0.8)
    ax.axvline(TARGETS["max_int8_latency_256_ms"], ls="--", c="grey", lw=0.8)
    ax.set_xlabel(f"ExecuTorch latency at {where}, ms ({res['config']['threads']} threads)")
    ax.set_ylabel("PSNR vs teacher, dB (teacher's resolution)")
    ax.set_title(f"Students of {res['teachers']['teacher']['variant']} ({res['identity']})")
    fig.tight_layout()
    fig.savefig(out / "quality_vs_latency.png", dpi=110)
    plt.close(fig)
    rows = [
        [r["variant"], r["precision"], f"{r['macs'] / 1e6:.0f}", f"{r['params'] / 1e3:.1f}",
         f"{r['file_bytes'] / 1e3:.0f}", f"{r['psnr_vs_teacher_db']:.2f}", f"{r['ssim_vs_teacher']:.3f}",
         "" if "psnr_vs_fp32_db" not in r else f"{r['psnr_vs_fp32_db']:.2f} ({r['int8_method']})",
         f"{r['latency_ms']:.2f}"]
        for r in res["rows"]
    ]  # fmt: skip
    at_rows = [
        [v, a["resolution"], f"{a['macs'] / 1e6:.0f}", f"{a['fp32_latency_ms']:.2f}", f"{a['int8_latency_ms']:.2f}"]
        for v, info in res["variants"].items() for a in info["at"]
    ]  # fmt: skip
    t = res["targets"]
    target_rows = [
        [k, "" if d["value"] is None else f"{d['value']:.3g}", d["target"],
         {True: "met", False: "missed", None: "not measured"}[d["met"]],
         "" if d["missed_by"] is None else f"{d['missed_by']:.3g}"]
        for k, d in t.items() if k != "best_variant"
    ]  # fmt: skip
    size = res["rows"][0]["resolution"]
    md = [
        f"# Distillation report ({res['identity']}, teacher {res['teachers']['teacher']['variant']})\n",
        f"Quality at the teacher's {size} px on {res['eval_frames']} held-out frames "
        f"({'scripted + tracked' if res['tracked_eval'] else 'scripted'} motion), on ExecuTorch "
        f"(XNNPACK). Latency: median of {res['config']['repeats']} runs, {res['config']['threads']} threads, "
        f"on {res['machine']['cpu']} (load {res['machine']['load_average_1min']}).\n",
        markdown_table(
            [
                "variant",
                "precision",
                f"MMAC @{size}",
                "kparams",
                ".pte kB",
                "PSNR vs teacher dB",
                "SSIM",
                "int8 vs fp32 dB",
                f"ms @{size}",
            ],
            rows,
        ),  # fmt: skip
    ]
    if at_rows:
        md += ["\n## Same weights at other resolutions (MACs, latency)\n",
               markdown_table(["variant", "px", "MMAC", "fp32 ms", "int8 ms"], at_rows)]  # fmt: skip
    prof_rows = [
        [v, a["resolution"], f"{p['execute_ms']:.2f}", f"{p['operator_sum_ms']:.2f}",
         f"{p['overhead_ms']:.2f}",
         ", ".join(f"{k} {ms:.2f}" for k, ms in list(p["kinds"].items())[:3])]
        for v, info in res["variants"].items() for a in info["at"]
        if (p := a.get("int8_profile"))
    ]  # fmt: skip
    if prof_rows:
        md += [
            "\n## Where the int8 time goes (ExecuTorch trace, `talkinghead profile`)\n",
            "Median ms per execute with tracing on; 'between operators' is execute minus the "
            "sum of XNNPACK's operators: the thread pool's hand-offs.\n",
            markdown_table(PROFILE_COLUMNS, prof_rows),
        ]
    tt = res["teachers"]
    md += [
        f"\nTeacher {tt['teacher']['variant']}: {tt['teacher']['macs'] / 1e9:.2f} GMAC per {size} px frame; "
        f"teacher-256: {tt['teacher_256']['macs'] / 1e9:.1f} GMAC per 256 px frame.\n",
        f"\n## Targets (best variant: {t.get('best_variant')})\n",
        markdown_table(["target", "value", "bound", "status", "missed by"], target_rows),
        "\n![quality vs latency](quality_vs_latency.png)\n",
    ]
    (out / "report.md").write_text("\n".join(md))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m talkinghead.benchmarks.distill_report", description=__doc__.split("\n")[0]
    )
    p.add_argument("--out", default="benchmarks/distill")
    p.add_argument("--teacher", help="teacher checkpoint (default: the committed teacher-xs)")
    p.add_argument("--teacher-variant", default="teacher-xs")
    p.add_argument("--photo", default="astronaut")
    p.add_argument("--variants", default="student-xs,student-s,student-m")
    p.add_argument(
        "--students", nargs="*", default=[], help="VARIANT=checkpoint: skip distilling it"
    )
    p.add_argument("--steps", type=int)
    p.add_argument("--qat-steps", type=int)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--quick", action="store_true", help="one small variant, few steps (a smoke run)"
    )
    args = p.parse_args(argv)
    kw: dict[str, Any] = {
        "out": Path(args.out), "teacher": args.teacher, "teacher_variant": args.teacher_variant,
        "photo": args.photo, "variants": tuple(v for v in args.variants.split(",") if v),
        "threads": args.threads,
        "students": dict(s.split("=", 1) for s in args.students if "=" in s),
    }  # fmt: skip
    if args.quick and args.variants == p.get_default("variants"):
        kw.pop("variants")
    for k in ("steps", "qat_steps"):
        if getattr(args, k) is not None:
            kw[k] = getattr(args, k)
    cfg = ReportConfig.quick(**kw) if args.quick else ReportConfig(**kw)
    res = run_report(cfg)
    print(json.dumps(res["targets"], indent=1, default=float))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    raise SystemExit(main())
