"""Runtime backends: one small protocol over ExecuTorch, eager torch, and (later) LiteRT and ONNX Runtime.

Every backend takes and returns the pack's image tensor as numpy::

    x: (1, 3, S, S) float32 in [-1, 1]  ->  (1, 3, S, S) float32 in [-1, 1]

Backends are created by name (``create_backend("executorch")``) from a registry; a new
runtime registers a factory with :func:`register_backend` and imports its native library
only when created, so a missing optional dependency is a BackendError, not an ImportError
at ``import talkinghead.sdk``.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from talkinghead.errors import BackendError, CheckpointError, InvalidInputError, PackIntegrityError


@runtime_checkable
class Backend(Protocol):
    """What the avatar runtime needs from a model runtime."""

    name: str

    def load(self, path: str | os.PathLike[str], *, sha256: str | None = None) -> None:
        """Load a model file; with ``sha256``, refuse (PackIntegrityError) bytes that do not match."""
        ...

    def run(self, x: np.ndarray) -> np.ndarray:
        """x: (1, 3, S, S) float32 in [-1, 1] -> (1, 3, S, S) float32."""
        ...

    def close(self) -> None:
        """Release the model and native resources. Idempotent."""
        ...


_REGISTRY: dict[str, Callable[..., Backend]] = {}


def register_backend(name: str) -> Callable[[Callable[..., Backend]], Callable[..., Backend]]:
    """Class or factory decorator: make ``create_backend(name, **options)`` build it."""

    def deco(factory: Callable[..., Backend]) -> Callable[..., Backend]:
        if name in _REGISTRY:
            raise ValueError(f"backend {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return deco


def available_backends() -> list[str]:
    """Registered backend names (their native libraries may still be missing; creation says so)."""
    return sorted(_REGISTRY)


def create_backend(name: str, **options: Any) -> Backend:
    """Build the backend registered as ``name``; BackendError if unknown or its runtime is missing."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise BackendError(
            f"unknown backend {name!r}; available: {', '.join(available_backends())}"
        ) from None
    return factory(**options)


# ----------------------------------------------------------------------------- shared helpers


def check_image(x: Any, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Validate a model input: (1, 3, S, S) float32 numpy array (``shape`` when the model fixes S)."""
    if not isinstance(x, np.ndarray):
        raise InvalidInputError(f"input must be a numpy array, got {type(x).__name__}")
    if x.dtype != np.float32:
        raise InvalidInputError(f"input must be float32, got {x.dtype}")
    if x.ndim != 4 or x.shape[0] != 1 or x.shape[1] != 3 or x.shape[2] != x.shape[3]:
        raise InvalidInputError(f"input must be (1, 3, S, S), got {x.shape}")
    if shape is not None and tuple(x.shape) != tuple(shape):
        raise InvalidInputError(f"input must be {tuple(shape)} for this model, got {x.shape}")
    return np.ascontiguousarray(x)


def read_checked(path: str | os.PathLike[str], sha256: str | None) -> bytes:
    """Read a model file once; check the very bytes that will be loaded against ``sha256``."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise BackendError(f"cannot read model file {path}: {e}") from e
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise PackIntegrityError(
            f"model file {path} does not match its sha256 (corrupt or modified)"
        )
    return data


class _BackendBase:
    """Context-manager plumbing shared by the concrete backends."""

    name = "base"

    def close(self) -> None:  # pragma: no cover - overridden
        pass

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------------------- ExecuTorch

# A .pte starts with a 4-byte root offset and the 4-byte file identifier "ETxx", then
# optionally the extended header "eh00": u32 length, u64 program size, u64 segment base
# offset, u64 segment data size (little endian).
_PTE_IDENTIFIER_AT = slice(4, 8)
_EXT_HEADER_AT = 8
_EXT_MAGIC = b"eh00"
_PTE_MIN_BYTES = 64  # the runtime reads this many head bytes before anything else


def check_pte_header(data: bytes, source: str = "<bytes>") -> None:
    """Reject bytes that are not an ExecuTorch program, or that are shorter than their header says.

    The native loader trusts little, but on some garbage it aborts the process instead of
    returning an error (a log line with undecodable bytes kills pybind11), so screen here.
    """
    if len(data) < _PTE_MIN_BYTES:
        raise BackendError(f"{source} is not an ExecuTorch program: {len(data)} bytes is too short")
    ident = data[_PTE_IDENTIFIER_AT]
    if not (ident[:2] == b"ET" and ident[2:].isdigit()):
        raise BackendError(
            f"{source} is not an ExecuTorch program (file identifier {ident!r}, expected b'ET..')"
        )
    if data[_EXT_HEADER_AT : _EXT_HEADER_AT + 4] == _EXT_MAGIC:
        length = struct.unpack_from("<I", data, _EXT_HEADER_AT + 4)[0]
        program_size, segment_base = struct.unpack_from("<QQ", data, _EXT_HEADER_AT + 8)
        segment_size = struct.unpack_from("<Q", data, _EXT_HEADER_AT + 24)[0] if length >= 32 else 0
        expected = max(program_size, segment_base + segment_size)
        if expected > len(data):
            raise BackendError(
                f"{source} is truncated: header says {expected} bytes, file has {len(data)}"
            )


@register_backend("executorch")
class ExecuTorchBackend(_BackendBase):
    """Runs a ``.pte`` with the ExecuTorch runtime from the pip wheel (XNNPACK kernels included)."""

    name = "executorch"

    def __init__(self, method: str = "forward") -> None:
        try:
            from executorch.runtime import Runtime, Verification
        except ImportError as e:
            raise BackendError(f"the ExecuTorch runtime is not installed: {e}") from e
        self._runtime = Runtime.get()
        self._verification = Verification.InternalConsistency
        self._method_name = method
        self._method: Any = None
        self._program: Any = None
        self._data: bytes | None = None
        self._input_shape: tuple[int, ...] | None = None
        self.source: str | None = None

    def load(self, path: str | os.PathLike[str], *, sha256: str | None = None) -> None:
        self.load_bytes(read_checked(path, sha256), source=str(path))

    def load_bytes(self, data: bytes, *, source: str = "<bytes>") -> None:
        """Load a program from bytes the caller has already checked (e.g. ``AvatarPack.read_verified``)."""
        check_pte_header(data, source)
        self.close()
        try:
            program = self._runtime.load_program(data, verification=self._verification)
            method = program.load_method(self._method_name)
            meta = method.metadata
            if meta.num_inputs() != 1 or meta.num_outputs() != 1:
                raise BackendError(
                    f"{source}: expected 1 input and 1 output, got {meta.num_inputs()} and {meta.num_outputs()}"
                )
            shape = tuple(meta.input_tensor_meta(0).sizes())
        except BackendError:
            raise
        except Exception as e:
            raise BackendError(f"ExecuTorch could not load {source}: {e}") from e
        self._data, self._program, self._method = data, program, method
        self._input_shape = shape
        self.source = source

    @property
    def input_shape(self) -> tuple[int, ...]:
        if self._input_shape is None:
            raise BackendError("no model loaded")
        return self._input_shape

    def run(self, x: np.ndarray) -> np.ndarray:
        import torch

        if self._method is None:
            raise BackendError("ExecuTorchBackend.run called before load")
        x = check_image(x, self._input_shape)
        try:
            out = self._method.execute([torch.from_numpy(x)])[0]
        except Exception as e:
            raise BackendError(f"ExecuTorch failed running {self.source}: {e}") from e
        return out.detach().numpy().copy()

    def close(self) -> None:
        self._method = self._program = self._data = None
        self._input_shape = None


# ----------------------------------------------------------------------------- eager torch


@register_backend("torch")
class TorchBackend(_BackendBase):
    """Runs an eager ``nn.Module`` given by the caller; the reference every other backend is compared to.

    ``load(path)`` loads a safetensors state dict into that module (strict: every key, every
    shape), so a pack or checkpoint's weights can be run eagerly.
    """

    name = "torch"

    def __init__(self, module: Any = None, *, device: str = "cpu") -> None:
        try:
            import torch
        except ImportError as e:
            raise BackendError(f"torch is not installed: {e}") from e
        if module is not None and not isinstance(module, torch.nn.Module):
            raise InvalidInputError(
                f"module must be a torch.nn.Module, got {type(module).__name__}"
            )
        self._torch = torch
        self._device = torch.device(device)
        self._module = module.to(self._device).eval() if module is not None else None

    def load(self, path: str | os.PathLike[str], *, sha256: str | None = None) -> None:
        if self._module is None:
            raise BackendError(
                "TorchBackend needs the module to load weights into: TorchBackend(module)"
            )
        from safetensors.torch import load as load_safetensors

        data = read_checked(path, sha256)
        try:
            state = load_safetensors(data)
        except Exception as e:
            raise CheckpointError(f"{path} is not a readable safetensors file: {e}") from e
        try:
            self._module.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise CheckpointError(f"{path} does not fit {type(self._module).__name__}: {e}") from e

    def run(self, x: np.ndarray) -> np.ndarray:
        if self._module is None:
            raise BackendError("TorchBackend has no module: TorchBackend(module)")
        x = check_image(x)
        torch = self._torch
        try:
            with torch.inference_mode():
                out = self._module(torch.from_numpy(x).to(self._device))
        except Exception as e:
            raise BackendError(f"torch failed running {type(self._module).__name__}: {e}") from e
        return out.detach().to("cpu", torch.float32).numpy().copy()

    def close(self) -> None:
        self._module = None


__all__ = [
    "Backend",
    "ExecuTorchBackend",
    "TorchBackend",
    "available_backends",
    "check_image",
    "check_pte_header",
    "create_backend",
    "read_checked",
    "register_backend",
]
