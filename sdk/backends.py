"""Runtime backends: one small protocol over eager torch, ExecuTorch, LiteRT and ONNX Runtime.

Every backend takes and returns the pack's image tensor as numpy::

    x: (1, 3, S, S) float32 in [-1, 1]  ->  (1, 3, S, S) float32 in [-1, 1]

whatever the model file's own layout and dtype (a LiteRT file is NHWC and may have int8
input; the backend converts at the edges).

Backends are created by name (``create_backend("litert")``) from a registry; a new
runtime registers a factory with :func:`register_backend` and imports its native library
only when created, so a missing optional dependency is a BackendError, not an ImportError
at ``import talkinghead.sdk``. ``choose_backend`` picks one automatically ("auto"): the
first of :data:`AUTO_ORDER` whose runtime is installed and that the pack has a model for.

Model bytes are screened before a native runtime sees them: the sha256 (when given), then
the format's header (ExecuTorch "ET.." identifier and sizes, LiteRT "TFL3" identifier,
ORT "ORTM" identifier, or a full protobuf parse of an ONNX file). Runtimes load from those
checked bytes in memory, never by re-reading the path.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import struct
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from talkinghead.errors import BackendError, CheckpointError, InvalidInputError, PackIntegrityError


@runtime_checkable
class Backend(Protocol):
    """What the avatar runtime needs from a model runtime. Backends are context managers:
    leaving the ``with`` block closes them."""

    name: str

    def load(self, path: str | os.PathLike[str], *, sha256: str | None = None) -> None:
        """Load a model file; with ``sha256``, refuse (PackIntegrityError) bytes that do not match."""
        ...

    def load_bytes(self, data: bytes, *, source: str = "<bytes>") -> None:
        """Load a model from bytes the caller has already checked (e.g. ``AvatarPack.read_verified``)."""
        ...

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """The loaded model's (1, C, S, S) input shape; None before a model is loaded, or when
        the model fixes none (an eager module). Never raises, so ``isinstance(x, Backend)``
        is safe on any backend."""
        ...

    def run(self, x: np.ndarray) -> np.ndarray:
        """x: (1, 3, S, S) float32 in [-1, 1] -> (1, 3, S, S) float32."""
        ...

    def close(self) -> None:
        """Release the model and native resources. Idempotent."""
        ...

    def __enter__(self) -> Backend: ...

    def __exit__(self, *exc: object) -> None: ...


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


# Preference of backend="auto": ExecuTorch is the runtime the C ABI ships; LiteRT next (NHWC,
# GPU/NPU delegates on Android); ONNX Runtime last.
AUTO_ORDER = ("executorch", "litert", "onnxruntime")
# The module whose presence means a runtime is installed (checked without importing it).
_RUNTIME_MODULES = {
    "executorch": "executorch.runtime",
    "litert": "ai_edge_litert.interpreter",
    "onnxruntime": "onnxruntime",
    "torch": "torch",
}


def runtime_installed(name: str) -> bool:
    """Whether the native runtime behind backend ``name`` can be imported (nothing is imported)."""
    module = _RUNTIME_MODULES.get(name)
    if module is None:
        return False
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def choose_backend(pack_runtimes: Iterable[str], preference: Iterable[str] = AUTO_ORDER) -> str:
    """The first runtime in ``preference`` that the pack has a model for and that is installed.

    pack_runtimes: the runtimes of the pack's models at the wanted precision. BackendError
    when none fits, naming what the pack has and what is installed.
    """
    have = set(pack_runtimes)
    for name in preference:
        if name in have and runtime_installed(name):
            return name
    installed = [n for n in AUTO_ORDER if runtime_installed(n)]
    raise BackendError(
        f"no usable backend: the pack has models for {sorted(have) or 'nothing'}, "
        f"installed runtimes are {installed or 'none'}"
    )


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
    """Validate a model input: (1, C, S, S) float32 numpy array (``shape`` when the model fixes it)."""
    if not isinstance(x, np.ndarray):
        raise InvalidInputError(f"input must be a numpy array, got {type(x).__name__}")
    if x.dtype != np.float32:
        raise InvalidInputError(f"input must be float32, got {x.dtype}")
    if x.ndim != 4 or x.shape[0] != 1 or not 1 <= x.shape[1] <= 16 or x.shape[2] != x.shape[3]:
        raise InvalidInputError(f"input must be (1, C, S, S), got {x.shape}")
    if shape is not None and tuple(x.shape) != tuple(shape):
        raise InvalidInputError(f"input must be {tuple(shape)} for this model, got {x.shape}")
    return np.ascontiguousarray(x)


def check_num_threads(num_threads: Any) -> int | None:
    """None (the runtime's default) or an int >= 1; InvalidInputError otherwise."""
    if num_threads is None:
        return None
    if isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer)):
        raise InvalidInputError(f"num_threads must be an int or None, got {num_threads!r}")
    if num_threads < 1:
        raise InvalidInputError(f"num_threads must be >= 1, got {num_threads}")
    return int(num_threads)


def executorch_threads() -> int | None:
    """The size of ExecuTorch's process-wide XNNPACK thread pool; None without the runtime."""
    try:
        from executorch.extension.pybindings import portable_lib
    except ImportError:
        return None
    return int(portable_lib._threadpool_get_thread_count())


def set_executorch_threads(num_threads: int) -> None:
    """Size ExecuTorch's XNNPACK thread pool (its default is every core).

    The pool is process-wide: every ExecuTorch model in the process shares it. Resizing it
    under a loaded program can hang that program, so a new size is refused (BackendError)
    while any ExecuTorchBackend holds a loaded program; setting the current size is a no-op.
    """
    threads = check_num_threads(num_threads)
    if threads is None:
        raise InvalidInputError("num_threads must be an int >= 1, got None")
    try:
        from executorch.extension.pybindings import portable_lib
    except ImportError as e:
        raise BackendError(f"the ExecuTorch runtime is not installed: {e}") from e
    current = portable_lib._threadpool_get_thread_count()
    if current == threads:
        return
    loaded = _executorch_programs_loaded()
    if loaded:
        raise BackendError(
            f"ExecuTorch's thread pool is process-wide and {loaded} loaded program(s) use it at "
            f"{current} threads; close them before asking for {threads}, or ask for {current}"
        )
    # The wheel's only handle on the pool; private, hence this one guarded place.
    portable_lib._unsafe_reset_threadpool(threads)


# ExecuTorchBackends holding a loaded program: the thread pool must not be resized under them.
_EXECUTORCH_LOADED: weakref.WeakSet = weakref.WeakSet()


def _executorch_programs_loaded() -> int:
    return sum(1 for b in list(_EXECUTORCH_LOADED) if b._method is not None)


def executorch_pool_busy(wanted: int) -> bool:
    """Whether asking for a pool of ``wanted`` threads would be refused now (another size,
    with programs loaded)."""
    current = executorch_threads()
    return current is not None and current != wanted and _executorch_programs_loaded() > 0


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


_B = TypeVar("_B", bound="_BackendBase")


class _BackendBase:
    """Context-manager plumbing shared by the concrete backends."""

    name = "base"

    def close(self) -> None:  # pragma: no cover - overridden
        pass

    def __enter__(self: _B) -> _B:
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

    def __init__(self, method: str = "forward", num_threads: int | None = None) -> None:
        """num_threads: size of ExecuTorch's thread pool, which is process-wide (see
        :func:`set_executorch_threads`); None leaves it as it is (every core by default)."""
        num_threads = check_num_threads(num_threads)
        try:
            from executorch.runtime import Runtime, Verification
        except ImportError as e:
            raise BackendError(f"the ExecuTorch runtime is not installed: {e}") from e
        if num_threads is not None:
            set_executorch_threads(num_threads)
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
            # A delegate this runtime lacks (e.g. Core ML off Apple devices) fails here too.
            registered = ", ".join(self._runtime.backend_registry.registered_backend_names)
            raise BackendError(
                f"ExecuTorch could not load {source}: {e} (backends in this runtime: {registered})"
            ) from e
        self._data, self._program, self._method = data, program, method
        self._input_shape = shape
        self.source = source
        _EXECUTORCH_LOADED.add(self)

    @property
    def input_shape(self) -> tuple[int, ...] | None:
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
        _EXECUTORCH_LOADED.discard(self)


def run_bundled_program(data: bytes, *, atol: float, rtol: float = 0.0) -> int:
    """Run every test case of an ExecuTorch BundledProgram (``.bpte``) and compare its outputs.

    Returns how many cases passed; BackendError names the first one that is off. Native apps
    do the same with the same file through the C ABI's ``th_self_check`` (bindings/).
    """
    if len(data) < 8 or data[4:6] != b"BP":
        raise BackendError(f"not an ExecuTorch bundled program (identifier {data[4:8]!r})")
    try:
        from executorch.devtools.bundled_program.serialize import (
            deserialize_from_flatbuffer_to_bundled_program,
        )
        from executorch.extension.pybindings.portable_lib import (
            _load_bundled_program_from_buffer,
            _load_for_executorch_from_bundled_program,
        )
    except ImportError as e:
        raise BackendError(f"the ExecuTorch runtime is not installed: {e}") from e
    try:
        parsed = deserialize_from_flatbuffer_to_bundled_program(data)
        suites = parsed.method_test_suites
        n = len(next(t for t in suites if t.method_name == "forward").test_cases)
        # The same screen as a plain .pte before the native loader sees the embedded program.
        check_pte_header(bytes(parsed.program), "the program inside the bundle")
        bundle = _load_bundled_program_from_buffer(data)
        _load_for_executorch_from_bundled_program(bundle)
    except BackendError:
        raise
    except Exception as e:
        raise BackendError(f"not a loadable ExecuTorch bundled program: {e}") from e
    for i in range(n):
        try:
            bundle.verify_result_with_bundled_expected_output("forward", i, rtol, atol)
        except Exception as e:
            raise BackendError(
                f"bundled test case {i} is off (atol {atol}, rtol {rtol}): {e}"
            ) from e
    return n


# ----------------------------------------------------------------------------- shared: NHWC and int8 edges


def _to_layout(x: np.ndarray, layout: str) -> np.ndarray:
    """(1, C, S, S) -> the model's layout."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if layout == "NHWC" else x


def _from_layout(y: np.ndarray, layout: str) -> np.ndarray:
    """The model's layout -> (1, C, S, S)."""
    return np.ascontiguousarray(y.transpose(0, 3, 1, 2)) if layout == "NHWC" else y


def _layout_of(shape: tuple[int, ...], source: str) -> str:
    """NCHW for (1, C, S, S), NHWC for (1, S, S, C) (C <= 16 < S); BackendError otherwise."""
    if len(shape) == 4 and shape[0] == 1:
        if shape[1] <= 16 and shape[2] == shape[3] and shape[2] > 16:
            return "NCHW"
        if shape[3] <= 16 and shape[1] == shape[2] and shape[1] > 16:
            return "NHWC"
    raise BackendError(
        f"{source}: input shape {list(shape)} is not a (1, C, S, S) or (1, S, S, C) image"
    )


def _quantize(x: np.ndarray, dtype: np.dtype, scale: float, zero_point: int) -> np.ndarray:
    info = np.iinfo(dtype)
    q = np.round(x / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


# ----------------------------------------------------------------------------- LiteRT

_TFLITE_IDENTIFIER = b"TFL3"


def check_tflite_header(data: bytes, source: str = "<bytes>") -> None:
    """Reject bytes that are not a LiteRT flatbuffer ("TFL3" file identifier at bytes 4:8)."""
    if len(data) < 16 or data[4:8] != _TFLITE_IDENTIFIER:
        raise BackendError(
            f"{source} is not a LiteRT model (file identifier {data[4:8]!r}, expected {_TFLITE_IDENTIFIER!r})"
        )
    root = struct.unpack_from("<I", data, 0)[0]
    if root >= len(data):
        raise BackendError(
            f"{source} is truncated: root table at {root}, file has {len(data)} bytes"
        )


@register_backend("litert")
class LiteRTBackend(_BackendBase):
    """Runs a ``.tflite`` with the LiteRT interpreter (``ai-edge-litert``), from bytes in memory.

    NHWC files and int8 input/output tensors are handled at the edges, so ``run`` keeps the
    protocol's (1, 3, S, S) float32 in and out.
    """

    name = "litert"

    def __init__(self, num_threads: int | None = None) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as e:
            raise BackendError(f"the LiteRT runtime (ai-edge-litert) is not installed: {e}") from e
        self._interpreter_cls = Interpreter
        self._num_threads = check_num_threads(num_threads)
        self._interpreter: Any = None
        self._data: bytes | None = None
        self.source: str | None = None
        self.layout = "NCHW"

    def load(self, path: str | os.PathLike[str], *, sha256: str | None = None) -> None:
        self.load_bytes(read_checked(path, sha256), source=str(path))

    def load_bytes(self, data: bytes, *, source: str = "<bytes>") -> None:
        """Load a model from bytes the caller has already checked (e.g. ``AvatarPack.read_verified``)."""
        check_tflite_header(data, source)
        self.close()
        try:
            interpreter = self._interpreter_cls(model_content=data, num_threads=self._num_threads)
            interpreter.allocate_tensors()
            inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
        except Exception as e:
            raise BackendError(f"LiteRT could not load {source}: {e}") from e
        if len(inputs) != 1 or len(outputs) != 1:
            raise BackendError(
                f"{source}: expected 1 input and 1 output, got {len(inputs)} and {len(outputs)}"
            )
        self.layout = _layout_of(tuple(int(v) for v in inputs[0]["shape"]), source)
        if _layout_of(tuple(int(v) for v in outputs[0]["shape"]), source) != self.layout:
            raise BackendError(f"{source}: input and output layouts differ")
        self._in, self._out = inputs[0], outputs[0]
        self._data, self._interpreter, self.source = data, interpreter, source

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """The protocol's (1, 3, S, S) shape of the loaded model."""
        if self._interpreter is None:
            return None
        shape = tuple(int(v) for v in self._in["shape"])
        return shape if self.layout == "NCHW" else (shape[0], shape[3], shape[1], shape[2])

    def run(self, x: np.ndarray) -> np.ndarray:
        if self._interpreter is None:
            raise BackendError("LiteRTBackend.run called before load")
        x = _to_layout(check_image(x, self.input_shape), self.layout)
        dtype = self._in["dtype"]
        if np.issubdtype(dtype, np.integer):
            scale, zero = self._in["quantization"]
            x = _quantize(x, dtype, scale, zero)
        try:
            self._interpreter.set_tensor(self._in["index"], x)
            self._interpreter.invoke()
            y = self._interpreter.get_tensor(self._out["index"])
        except Exception as e:
            raise BackendError(f"LiteRT failed running {self.source}: {e}") from e
        if np.issubdtype(y.dtype, np.integer):
            scale, zero = self._out["quantization"]
            y = (y.astype(np.float32) - zero) * np.float32(scale)
        return _from_layout(y.astype(np.float32, copy=False), self.layout).copy()

    def close(self) -> None:
        self._interpreter = self._data = None


# ----------------------------------------------------------------------------- ONNX Runtime

_ORT_IDENTIFIER = b"ORTM"


def check_onnx_bytes(data: bytes, source: str = "<bytes>") -> str:
    """Screen an ONNX or ORT-format model; return its format, "onnx" or "ort".

    ORT files are flatbuffers with the "ORTM" identifier at bytes 4:8. Anything else must
    parse as an ONNX protobuf with one graph input and one output (with the ``onnx``
    package, when installed: a runtime-only install relies on ONNX Runtime's own parser).
    """
    if len(data) >= 8 and data[4:8] == _ORT_IDENTIFIER:
        root = struct.unpack_from("<I", data, 0)[0]
        if root >= len(data):
            raise BackendError(
                f"{source} is truncated: root table at {root}, file has {len(data)} bytes"
            )
        return "ort"
    if not data:
        raise BackendError(f"{source} is empty, not an ONNX model")
    try:
        import onnx
        from google.protobuf.message import DecodeError
    except ImportError:
        return "onnx"
    try:
        model = onnx.ModelProto.FromString(data)
    except (DecodeError, ValueError, RuntimeError) as e:
        raise BackendError(f"{source} is not an ONNX model (protobuf does not parse: {e})") from e
    if not model.HasField("graph") or model.ir_version <= 0:
        raise BackendError(f"{source} is not an ONNX model (no graph or IR version)")
    graph = model.graph
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise BackendError(
            f"{source}: expected 1 input and 1 output, got {len(graph.input)} and {len(graph.output)}"
        )
    try:
        onnx.checker.check_model(model)
    except Exception as e:  # onnx.checker.ValidationError and friends
        raise BackendError(f"{source} is not a valid ONNX model: {e}") from e
    return "onnx"


@register_backend("onnxruntime")
class OnnxRuntimeBackend(_BackendBase):
    """Runs an ``.onnx`` or ``.ort`` file with ONNX Runtime's CPU execution provider, from bytes."""

    name = "onnxruntime"

    def __init__(self, num_threads: int | None = None) -> None:
        try:
            import onnxruntime
        except ImportError as e:
            raise BackendError(f"ONNX Runtime is not installed: {e}") from e
        self._ort = onnxruntime
        self._num_threads = check_num_threads(num_threads)
        self._session: Any = None
        self.source: str | None = None
        self.format: str | None = None

    def load(self, path: str | os.PathLike[str], *, sha256: str | None = None) -> None:
        self.load_bytes(read_checked(path, sha256), source=str(path))

    def load_bytes(self, data: bytes, *, source: str = "<bytes>") -> None:
        """Load a model from bytes the caller has already checked (e.g. ``AvatarPack.read_verified``)."""
        fmt = check_onnx_bytes(data, source)
        self.close()
        options = self._ort.SessionOptions()
        if self._num_threads is not None:
            options.intra_op_num_threads = self._num_threads
            options.inter_op_num_threads = 1
        if fmt == "ort":
            options.add_session_config_entry("session.load_model_format", "ORT")
        options.log_severity_level = 3  # errors only; the exception carries the message
        try:
            session = self._ort.InferenceSession(
                data, sess_options=options, providers=["CPUExecutionProvider"]
            )
            inputs, outputs = session.get_inputs(), session.get_outputs()
        except Exception as e:
            raise BackendError(f"ONNX Runtime could not load {source}: {e}") from e
        if len(inputs) != 1 or len(outputs) != 1:
            raise BackendError(
                f"{source}: expected 1 input and 1 output, got {len(inputs)} and {len(outputs)}"
            )
        shape = inputs[0].shape
        if not all(isinstance(v, int) for v in shape) or _layout_of(tuple(shape), source) != "NCHW":
            raise BackendError(f"{source}: input must be a static (1, 3, S, S) image, got {shape}")
        self._input_name, self._input_shape = inputs[0].name, tuple(shape)
        self._session, self.source, self.format = session, source, fmt

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        return self._input_shape if self._session is not None else None

    def run(self, x: np.ndarray) -> np.ndarray:
        if self._session is None:
            raise BackendError("OnnxRuntimeBackend.run called before load")
        x = check_image(x, self._input_shape)
        try:
            y = self._session.run(None, {self._input_name: x})[0]
        except Exception as e:
            raise BackendError(f"ONNX Runtime failed running {self.source}: {e}") from e
        return np.asarray(y, dtype=np.float32).copy()

    def close(self) -> None:
        self._session = None


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
        self.load_bytes(read_checked(path, sha256), source=str(path))

    def load_bytes(self, data: bytes, *, source: str = "<bytes>") -> None:
        """Load a safetensors state dict into the module (strict: every key, every shape)."""
        if self._module is None:
            raise BackendError(
                "TorchBackend needs the module to load weights into: TorchBackend(module)"
            )
        from safetensors.torch import load as load_safetensors

        try:
            state = load_safetensors(data)
        except Exception as e:
            raise CheckpointError(f"{source} is not a readable safetensors file: {e}") from e
        try:
            self._module.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise CheckpointError(
                f"{source} does not fit {type(self._module).__name__}: {e}"
            ) from e

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """None: an eager module fixes no input shape."""
        return None

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
    "AUTO_ORDER",
    "Backend",
    "ExecuTorchBackend",
    "LiteRTBackend",
    "OnnxRuntimeBackend",
    "TorchBackend",
    "available_backends",
    "check_image",
    "check_num_threads",
    "executorch_pool_busy",
    "executorch_threads",
    "check_onnx_bytes",
    "check_pte_header",
    "check_tflite_header",
    "choose_backend",
    "create_backend",
    "read_checked",
    "register_backend",
    "run_bundled_program",
    "runtime_installed",
    "set_executorch_threads",
]
