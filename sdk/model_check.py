"""Checking an untrusted model in a child process before this process's runtime parses it.

ExecuTorch's Python binding aborts the process (SIGABRT) on some malformed programs, and
its bundled-program loader can segfault; no ``try`` survives either. A pack comes from the
network, and its hashes only prove that its files are the ones its manifest lists: an
attacker who writes the manifest recomputes them. So every model is first loaded and run
once, on zeros of its own input shape, in a child Python process (``python -m
talkinghead.sdk.model_check``), which gets the exact bytes that were hash-checked on its
stdin. Only when the child exits cleanly does this process load the same bytes.

The child also reports the model's real input and output shapes, which the caller compares
with what the manifest declares (:func:`check_model_shapes`): a model of another size is
refused at open rather than rendering frames of the wrong size or asking for gigabytes.

A verdict is cached per process by (runtime, sha256): a model is checked once, however
many avatars open it. Cost: one child start per new model (about 2 s on 2 CPU cores,
mostly importing the runtime).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from talkinghead.errors import BackendError, PackError

# A model whose declared input exceeds this many elements is refused before it is run.
MAX_INPUT_ELEMENTS = 64 << 20
CHECK_TIMEOUT_S = 120.0
_VERDICTS: dict[tuple[str, str, str], ModelShapes] = {}


@dataclass(frozen=True)
class ModelShapes:
    """What the child measured: ``input`` and ``output`` in the backend's NCHW protocol."""

    input: tuple[int, ...]
    output: tuple[int, ...]
    bundled_cases: int = 0


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def check_model_isolated(
    runtime: str,
    data: bytes,
    source: str,
    *,
    kind: str = "model",
    atol: float = 0.0,
    rtol: float = 0.0,
    timeout_s: float = CHECK_TIMEOUT_S,
) -> ModelShapes:
    """Load and run ``data`` on ``runtime`` in a child process; return its shapes.

    kind: "model" (load, run once on zeros of its input shape) or "bundled" (an ExecuTorch
        BundledProgram: load it and run its test cases with ``atol``/``rtol``).
    Raises BackendError when the child reports an error, dies from a signal (abort,
    segfault) or runs past ``timeout_s``.
    """
    digest = hashlib.sha256(data).hexdigest()
    key = (runtime, kind, f"{digest}:{atol!r}:{rtol!r}")
    if key in _VERDICTS:
        return _VERDICTS[key]
    args = [
        sys.executable,
        "-m",
        "talkinghead.sdk.model_check",
        runtime,
        kind,
        repr(atol),
        repr(rtol),
        source,
    ]
    env = dict(os.environ, GLOG_minloglevel="3", TF_CPP_MIN_LOG_LEVEL="3")
    try:
        proc = subprocess.run(
            args, input=data, capture_output=True, timeout=timeout_s, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        raise BackendError(f"{source}: the model check ran past {timeout_s:g} s; refused") from None
    except OSError as e:
        raise BackendError(f"{source}: cannot start the model check: {e}") from None
    if proc.returncode < 0:
        raise BackendError(
            f"{source} crashed the {runtime} runtime in the isolated model check "
            f"({_signal_name(proc.returncode)}); refused, this process never loaded it"
        )
    try:
        report = json.loads(proc.stdout.decode("utf-8").strip().splitlines()[-1])
    except (ValueError, IndexError, UnicodeDecodeError):
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise BackendError(
            f"{source}: the model check failed (exit {proc.returncode}): {tail[0]}"
        ) from None
    if "error" in report:
        raise BackendError(str(report["error"]))
    shapes = ModelShapes(
        input=tuple(report["input"]),
        output=tuple(report["output"]),
        bundled_cases=int(report.get("bundled_cases", 0)),
    )
    _VERDICTS[key] = shapes
    return shapes


def check_model_shapes(
    shapes: ModelShapes,
    expected_input: Sequence[int],
    expected_output: Sequence[int],
    source: str,
) -> None:
    """PackError unless the model's measured shapes are the manifest's declared ones."""
    for what, got, want in (
        ("input", shapes.input, tuple(expected_input)),
        ("output", shapes.output, tuple(expected_output)),
    ):
        if tuple(got) != tuple(want):
            raise PackError(
                f"{source}: the model's {what} shape is {list(got)}, but the manifest "
                f"declares {list(want)}; refused"
            )


# ----------------------------------------------------------------------------- the child


def _child(runtime: str, kind: str, atol: float, rtol: float, source: str) -> dict:
    import numpy as np

    from talkinghead.sdk.backends import create_backend, run_bundled_program

    data = sys.stdin.buffer.read()
    if kind == "bundled":
        n = run_bundled_program(data, atol=atol, rtol=rtol)
        return {"input": [], "output": [], "bundled_cases": n}
    with create_backend(runtime, num_threads=1) as backend:
        backend.load_bytes(data, source=source)
        if backend.input_shape is None:
            raise BackendError(f"{source}: the model has no fixed input shape")
        shape = tuple(int(v) for v in backend.input_shape)
        if math.prod(shape) > MAX_INPUT_ELEMENTS:
            raise BackendError(f"{source}: input {list(shape)} is larger than any avatar's")
        y = backend.run(np.zeros(shape, np.float32))
    return {"input": list(shape), "output": [int(v) for v in np.shape(y)]}


def _main(argv: list[str]) -> int:
    runtime, kind, atol, rtol, source = argv[0], argv[1], float(argv[2]), float(argv[3]), argv[4]
    try:
        report = _child(runtime, kind, atol, rtol, source)
    except BackendError as e:
        report = {"error": str(e)}
    except Exception as e:  # any failure the runtime reports is an error, not a crash
        report = {"error": f"{source}: {type(e).__name__}: {e}"}
    sys.stdout.write("\n" + json.dumps(report) + "\n")
    sys.stdout.flush()
    return 0


__all__ = ["ModelShapes", "check_model_isolated", "check_model_shapes", "load_pack_model"]


def load_pack_model(pack, entry, backend, *, isolate: bool = True) -> None:
    """Load a pack's model into ``backend``: hash-checked bytes, checked in a child first.

    pack: an ``AvatarPack``; entry: its ``ModelEntry``. With ``isolate`` the model is run
    in a child process (:func:`check_model_isolated`) and its real shapes are compared
    with the manifest's ``input``/``output`` before this process parses it.
    """
    data = pack.read_verified(entry.file)
    if isolate:
        m = pack.manifest
        shapes = check_model_isolated(entry.runtime, data, entry.file)
        check_model_shapes(shapes, m.input.shape, m.output.shape, entry.file)
    backend.load_bytes(data, source=entry.file)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
