"""The ``talkinghead`` command line: thin entry points over the pipeline.

Every command validates its arguments and turns the SDK's typed errors into one clear
line on stderr and exit status 2, never a traceback from inside a library.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from pathlib import Path

from talkinghead.errors import TalkingHeadError

log = logging.getLogger("talkinghead")


def _cmd_demo(args: argparse.Namespace) -> None:
    from talkinghead.pipeline import DemoOptions, run_demo

    result = run_demo(
        DemoOptions(
            photo=args.photo,
            driver=args.driver,
            out_dir=Path(args.out),
            frames=args.frames,
            precision=args.precision,
            fast=args.fast,
        )
    )
    print(json.dumps(result, indent=2))


def _cmd_make_data(args: argparse.Namespace) -> None:
    from talkinghead.train.data import write_shard
    from talkinghead.train.make_data import build_pseudo_videos, load_photo

    photos = dict(load_photo(p) for p in args.photos)
    videos = build_pseudo_videos(
        photos, args.size, args.videos_per_photo, args.frames_per_video, seed=args.seed
    )
    path = write_shard(args.out, videos)
    print(f"wrote {path}: {len(videos)} videos x {videos.frames.shape[1]} frames at {args.size} px")


def _cmd_train(args: argparse.Namespace) -> None:
    from talkinghead.train.data import read_shards
    from talkinghead.train.meta import MetaTrainConfig, meta_train
    from talkinghead.train.report import plot_history

    cfg = MetaTrainConfig(
        teacher=args.teacher, k=args.k, batch_size=args.batch_size, steps=args.steps, seed=args.seed
    )
    ckpt = meta_train(read_shards(args.data), args.out, cfg, resume=not args.restart)
    plot_history(Path(args.out) / "history.json", Path(args.out) / "losses.png")
    print(f"teacher checkpoint: {ckpt}")
    if args.ship:
        from talkinghead.models.checkpoint import load_checkpoint, save_checkpoint

        teacher = load_checkpoint(ckpt, "teacher")
        save_checkpoint(args.ship, teacher, "teacher", half=True, **teacher.notes)
        print(f"float16 copy for shipping: {args.ship}")


def _cmd_distill(args: argparse.Namespace) -> None:
    from talkinghead.pipeline import distill_for_photo

    path, figures = distill_for_photo(
        teacher_path=args.teacher,
        photo=args.photo,
        out=Path(args.out),
        student=args.student,
        steps=args.steps,
        finetune_steps=args.finetune_steps,
    )
    print(json.dumps({"student": str(path), **figures}, indent=2))


def _cmd_export(args: argparse.Namespace) -> None:
    from talkinghead.pipeline import export_pack

    pack = export_pack(args.student, Path(args.out), precisions=args.precision)
    print(f"avatar pack: {pack}")


def _cmd_verify(args: argparse.Namespace) -> None:
    from talkinghead.sdk.pack import verify_pack

    report = verify_pack(args.pack)
    print(report)
    report.raise_for_errors()  # a failed check must exit non-zero


def _cmd_render(args: argparse.Namespace) -> None:
    from talkinghead.pipeline import render_pack

    result = render_pack(
        args.pack, Path(args.out), driver=args.driver, frames=args.frames, precision=args.precision
    )
    print(json.dumps(result, indent=2))


def _cmd_track(args: argparse.Namespace) -> None:
    from talkinghead.pipeline import track_photo_preview

    print(track_photo_preview(args.image, Path(args.out)))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="talkinghead", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="photo + motion -> avatar MP4 and animated WebP")
    d.add_argument("--photo", help="your face photo (default: the built-in astronaut avatar)")
    d.add_argument(
        "--driver", help="a video of a face to drive the avatar (default: built-in motion)"
    )
    d.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    d.add_argument(
        "--frames", type=int, default=100, help="frames of built-in motion (default 100)"
    )
    d.add_argument("--precision", choices=["fp32", "int8"], default="int8")
    d.add_argument(
        "--fast", action="store_true", help="fewer enrolment steps for --photo (lower quality)"
    )
    d.set_defaults(fn=_cmd_demo)

    m = sub.add_parser("make-data", help="pseudo-video training shard from face photos")
    m.add_argument(
        "photos", nargs="+", help="image files or built-in names (astronaut, grace_hopper)"
    )
    m.add_argument("--out", required=True)
    m.add_argument("--size", type=int, default=128)
    m.add_argument("--videos-per-photo", type=int, default=16)
    m.add_argument("--frames-per-video", type=int, default=32)
    m.add_argument("--seed", type=int, default=0)
    m.set_defaults(fn=_cmd_make_data)

    t = sub.add_parser("train", help="meta-train the teacher on shards")
    t.add_argument("data", nargs="+", help="shard files")
    t.add_argument("--out", required=True, help="run folder (resumes if it holds a checkpoint)")
    t.add_argument("--teacher", default="teacher-xs")
    t.add_argument("--k", type=int, default=4)
    t.add_argument("--batch-size", type=int, default=2)
    t.add_argument("--steps", type=int, default=1000)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    t.add_argument("--ship", help="also write a float16 copy of the final checkpoint here")
    t.set_defaults(fn=_cmd_train)

    s = sub.add_parser("distill", help="enrol a photo with the teacher and distil a student")
    s.add_argument("--teacher", required=True)
    s.add_argument("--photo", required=True, help="image file or built-in name")
    s.add_argument("--out", required=True, help="student checkpoint (.safetensors)")
    s.add_argument("--student", default="student-s")
    s.add_argument("--steps", type=int, default=1500)
    s.add_argument("--finetune-steps", type=int, default=100)
    s.set_defaults(fn=_cmd_distill)

    e = sub.add_parser("export", help="student checkpoint -> avatar pack (ExecuTorch fp32 + int8)")
    e.add_argument("--student", required=True)
    e.add_argument("--out", required=True, help="pack folder")
    e.add_argument("--precision", nargs="+", default=["fp32", "int8"], choices=["fp32", "int8"])
    e.set_defaults(fn=_cmd_export)

    v = sub.add_parser("verify", help="check an avatar pack's manifest and hashes")
    v.add_argument("pack")
    v.set_defaults(fn=_cmd_verify)

    r = sub.add_parser("render", help="render an avatar pack to MP4 + WebP")
    r.add_argument("pack")
    r.add_argument("--out", default="out/render")
    r.add_argument("--driver", help="driving video (default: built-in motion)")
    r.add_argument("--frames", type=int, default=100)
    r.add_argument("--precision", choices=["fp32", "int8"], default="int8")
    r.set_defaults(fn=_cmd_render)

    k = sub.add_parser("track", help="track a photo and save the 68 points drawn over it")
    k.add_argument("image")
    k.add_argument("--out", default="out/track.png")
    k.set_defaults(fn=_cmd_track)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s"
    )
    os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's native logging
    # Upstream deprecation chatter from the export toolchain says nothing to a user.
    warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    for noisy in ("torchao", "torch.utils._pytree"):  # optional-kernel notices (no GPU, no triton)
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        args.fn(args)
    except TalkingHeadError as exc:
        print(f"talkinghead {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
