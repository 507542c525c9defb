"""Fuzz a pack's files the way an attacker who controls the whole pack would: mutate, re-hash.

    python -m talkinghead.benchmarks.fuzz_packs PACK --cases 200 --seed 0

Each case copies the pack, mutates one file (a model of every kind: .pte, .bpte, .tflite,
.onnx, .ort; and parity.npz, the warp rig and manifest.json), recomputes its sha256 and size in the
manifest (so the hashes pass, as they would for an attacker), then runs the check
``talkinghead verify`` runs on it (every model through ``sdk.model_check``'s child process,
then this process's runtime; bundled programs in the child only).

An outcome is "ok" (the mutation did not matter), "refused" (a typed TalkingHeadError, the
promised clean refusal) or "untyped" (any other exception: a bug). A crash (abort,
segfault) kills this process: the caller sees it in the exit status, which is why the
test runs this module in a child. Prints one JSON line; exits 1 when any case was untyped.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from talkinghead.errors import TalkingHeadError

KINDS = (".pte", ".bpte", ".tflite", ".onnx", ".ort", ".npz", "rig", "manifest")


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One random mutation: byte flips, a non-UTF-8 byte inside a string, a truncation,
    a huge 32-bit value, or a repeated chunk."""
    b = bytearray(data)
    op = rng.choice(("flip", "string", "truncate", "huge", "repeat"))
    if not b or op == "truncate":
        return bytes(b[: rng.randrange(len(b) + 1)])
    if op == "flip":
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif op == "string":  # in a run of printable ASCII: flatbuffer strings, names, keys
        starts = [i for i in range(0, len(b) - 4, 7) if all(32 <= c < 127 for c in b[i : i + 4])]
        b[rng.choice(starts) + rng.randrange(4) if starts else rng.randrange(len(b))] = 0xFF
    elif op == "huge" and len(b) >= 4:
        i = rng.randrange(len(b) - 3)
        b[i : i + 4] = rng.choice((b"\xff\xff\xff\x7f", b"\xff\xff\xff\xff", b"\x00\x00\x00\x80"))
    else:
        i, n = rng.randrange(len(b)), rng.randint(1, 64)
        b[i:i] = b[i : i + n] * rng.randint(1, 4)
    return bytes(b)


def _target(manifest: dict, kind: str) -> str | None:
    if kind == "manifest":
        return "manifest.json"
    if kind == "rig":  # the warp rig (schema 3): parsed when an Avatar opens
        rig = (manifest.get("generator") or {}).get("rig")
        return rig if rig in manifest["files"] else None
    names = sorted(manifest["files"])
    hits = [n for n in names if n.endswith(kind)]
    return hits[0] if hits else None


def _rehash(folder: Path, rel: str) -> None:
    """Make the manifest list ``rel``'s new sha256 and size, as an attacker would."""
    import hashlib

    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    digest = hashlib.sha256((folder / rel).read_bytes()).hexdigest()
    manifest["files"][rel] = digest
    for m in manifest["models"]:
        if m["file"] == rel:
            m["sha256"], m["bytes"] = digest, (folder / rel).stat().st_size
    path.write_text(json.dumps(manifest, indent=2))


def _check(folder: Path, rel: str) -> None:
    """What ``talkinghead verify`` checks, for the models the mutated file belongs to."""
    from talkinghead.sdk.backends import runtime_installed
    from talkinghead.sdk.pack import open_pack
    from talkinghead.sdk.parity import check_model_parity, raise_for_parity

    with open_pack(folder) as pack:
        if rel == (pack.manifest.generator or {}).get("rig"):
            pack.load_rig()
            return
        entries = [
            m
            for m in pack.manifest.models
            if runtime_installed(m.runtime)
            and (
                rel in ("manifest.json", "parity.npz")
                or m.file == rel
                or (m.info.get("bundled") or {}).get("file") == rel
            )
        ]
        chosen = entries[:1] if rel in ("manifest.json", "parity.npz") else entries
        # A failed parity or bundled check is a refusal too (verify exits 2 on it).
        raise_for_parity([check_model_parity(pack, entry) for entry in chosen])


def fuzz(pack: Path, cases: int, seed: int = 0) -> dict:
    """Run ``cases`` cases round-robin over the file kinds; return the figures."""
    rng = random.Random(seed)
    manifest = json.loads((pack / "manifest.json").read_text())
    kinds = [k for k in KINDS if _target(manifest, k) is not None]
    outcomes: Counter = Counter()
    per_kind: dict[str, Counter] = {k: Counter() for k in kinds}
    untyped: list[str] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="talkinghead-fuzz-") as tmp:
        for i in range(cases):
            kind = kinds[i % len(kinds)]
            folder = Path(tmp) / f"case{i}"
            shutil.copytree(pack, folder)
            rel = _target(manifest, kind)
            (folder / rel).write_bytes(mutate((folder / rel).read_bytes(), rng))
            if rel != "manifest.json":
                _rehash(folder, rel)
            try:
                _check(folder, rel)
                outcome = "ok"
            except TalkingHeadError:
                outcome = "refused"
            except Exception as e:  # noqa: BLE001 - counted: any untyped error is a bug
                outcome = "untyped"
                untyped.append(f"case {i} {kind}: {type(e).__name__}: {e}"[:300])
            outcomes[outcome] += 1
            per_kind[kind][outcome] += 1
            shutil.rmtree(folder, ignore_errors=True)
    return {
        "cases": cases,
        "seed": seed,
        "crashes": 0,  # this process is alive to print it; the caller checks the exit status
        "outcomes": dict(outcomes),
        "per_kind": {k: dict(v) for k, v in per_kind.items()},
        "untyped": untyped,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pack", type=Path)
    ap.add_argument("--cases", type=int, default=len(KINDS))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    def interrupt(signum: int, frame: object) -> None:  # SIGTERM: remove the copies too
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    result = fuzz(args.pack, args.cases, args.seed)
    print(json.dumps(result))
    return 1 if result["untyped"] else 0


if __name__ == "__main__":
    sys.exit(main())
