"""Parity: every model in a pack renders the same frames as the eager model it came from.

A pack's ``parity.npz`` holds N landmark images (``inputs``, (N, 1, 3, S, S) float32) and the
eager PyTorch outputs for them (``outputs.eager``), plus what each model file produced at
export time (``outputs.<file>``). :func:`check_pack_parity` runs each model through its own
runtime here and compares against ``outputs.eager``, with the manifest's thresholds
(``parity.fp32_max_abs``, ``parity.int8_min_psnr_db``). ExecuTorch models that carry a
BundledProgram also run its test cases, as a phone would.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from talkinghead.errors import BackendError, InvalidInputError, PackError, ParityError
from talkinghead.sdk.backends import create_backend, runtime_installed
from talkinghead.sdk.model_check import check_model_isolated, load_pack_model
from talkinghead.sdk.pack import AvatarPack, open_pack
from talkinghead.sdk.pack_schema import PARITY_FP32_MAX_ABS, PARITY_INT8_MIN_PSNR_DB, ModelEntry

EAGER_KEY = "outputs.eager"


def psnr_db(a: np.ndarray, b: np.ndarray, peak_to_peak: float = 2.0) -> float:
    """PSNR in dB of ``a`` against ``b`` for values spanning ``peak_to_peak`` ([-1, 1] -> 2)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise InvalidInputError(f"psnr_db: shapes differ, {a.shape} and {b.shape}")
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(peak_to_peak**2 / mse)


@dataclass(frozen=True)
class ParityResult:
    """One model file's parity on this machine.

    status: "ok", "failed" or "skipped" (its runtime is not installed, or cannot run it here).
    max_abs, psnr: against the eager outputs; threshold: the manifest's figure for its precision.
    """

    file: str
    runtime: str
    precision: str
    status: str
    max_abs: float = math.nan
    psnr: float = math.nan
    threshold: str = ""
    message: str = ""

    def __str__(self) -> str:
        figures = (
            f"max abs {self.max_abs:.1e}, PSNR {self.psnr:.1f} dB"
            if self.status != "skipped"
            else ""
        )
        return f"  parity {self.status:7s} {self.runtime}/{self.precision} {self.file}: {figures} {self.threshold} {self.message}".rstrip()


def _run_all(pack: AvatarPack, entry: ModelEntry, inputs: np.ndarray) -> np.ndarray:
    backend = create_backend(entry.runtime)
    try:
        # Run once in a child process first, with its shapes checked (sdk.model_check).
        load_pack_model(pack, entry, backend)
        return np.stack([backend.run(x) for x in inputs])
    finally:
        backend.close()


def _threshold(info: Any, key: str, default: float, where: str) -> float:
    """A finite number from the manifest; PackError for a string, null, bool or NaN."""
    value = info.get(key, default) if isinstance(info, dict) else default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PackError(f"manifest: {where}.{key} must be a number, got {value!r}")
    try:
        value = float(value)
    except OverflowError:
        raise PackError(f"manifest: {where}.{key} is out of range") from None
    if not math.isfinite(value):
        raise PackError(f"manifest: {where}.{key} must be finite, got {value!r}")
    return value


def check_model_parity(pack: AvatarPack, entry: ModelEntry) -> ParityResult:
    """Run one model over the pack's parity inputs; compare with eager by its precision's threshold."""
    info = pack.manifest.parity or {}
    common: dict[str, Any] = {
        "file": entry.file,
        "runtime": entry.runtime,
        "precision": entry.precision,
    }
    if not runtime_installed(entry.runtime):
        return ParityResult(**common, status="skipped", message="runtime not installed")
    arrays = pack.load_parity()
    if "inputs" not in arrays or EAGER_KEY not in arrays:
        raise ParityError(
            f"pack {pack.manifest.name!r}: parity.npz lacks 'inputs' or '{EAGER_KEY}'"
        )
    inputs, ref = arrays["inputs"], arrays[EAGER_KEY]
    if inputs.dtype != np.float32 or inputs.ndim < 2 or ref.shape[:1] != inputs.shape[:1]:
        raise ParityError(
            f"pack {pack.manifest.name!r}: parity arrays have the wrong shape or type"
        )
    try:
        out = _run_all(pack, entry, inputs)
    except BackendError as e:
        if entry.backend in ("coreml", "qnn"):  # delegates this machine's runtime lacks
            return ParityResult(**common, status="skipped", message=f"cannot run here: {e}")
        raise
    if out.shape != ref.shape:
        raise ParityError(
            f"{entry.file}: outputs {list(out.shape)} do not match the reference {list(ref.shape)}"
        )
    max_abs = float(np.abs(out - ref).max())
    psnr = psnr_db(out, ref)
    if entry.precision == "fp32":
        limit = _threshold(info, "fp32_max_abs", PARITY_FP32_MAX_ABS, "parity")
        ok, threshold = max_abs <= limit, f"(max abs <= {limit:g})"
    else:
        limit = _threshold(info, "int8_min_psnr_db", PARITY_INT8_MIN_PSNR_DB, "parity")
        ok, threshold = psnr >= limit, f"(PSNR >= {limit:g} dB)"
    message = ""
    bundled = entry.info.get("bundled")
    if ok and bundled is not None and runtime_installed("executorch"):
        where = f"{entry.file}.info.bundled"
        atol = _threshold(bundled, "atol", 1e-4, where)
        rtol = _threshold(bundled, "rtol", 0.0, where)
        try:
            # In a child process: a hostile bundled program can crash its loader.
            n = check_model_isolated(
                "executorch", pack.read_verified(bundled["file"]), bundled["file"],
                kind="bundled", atol=atol, rtol=rtol,
            ).bundled_cases  # fmt: skip
            message = f"bundled program {bundled['file']}: {n} case(s) pass"
        except BackendError as e:
            ok, message = False, f"bundled program {bundled['file']}: {e}"
    return ParityResult(
        **common,
        status="ok" if ok else "failed",
        max_abs=max_abs,
        psnr=psnr,
        threshold=threshold,
        message=message,
    )


def check_pack_parity(
    pack: str | os.PathLike[str] | AvatarPack, runtimes: list[str] | None = None
) -> list[ParityResult]:
    """Parity of every model (of ``runtimes``, default all) in a pack; the pack is hash-checked first."""
    if isinstance(pack, AvatarPack):
        return [
            check_model_parity(pack, m)
            for m in pack.manifest.models
            if runtimes is None or m.runtime in runtimes
        ]
    with open_pack(pack) as opened:
        return check_pack_parity(opened, runtimes)


def raise_for_parity(results: list[ParityResult]) -> None:
    """ParityError naming every model that failed its threshold."""
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise ParityError(
            "parity failed for "
            + "; ".join(
                f"{r.file} (max abs {r.max_abs:.1e}, PSNR {r.psnr:.1f} dB, needs {r.threshold})"
                for r in failed
            )
        )
