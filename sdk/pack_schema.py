"""The avatar pack's format: names, schema versions, parity thresholds and the manifest's types.

What a pack is, without reading or writing one (that is :mod:`talkinghead.sdk.pack`): the
manifest's dataclasses and their JSON validation, the tensor specs of its models, and the
thresholds every pack states for its models' parity with eager. The C library reads the
same format; the values it shares are generated into ``bindings/src/constants.h``
(``bindings/tools/gen_constants.py``). docs/avatar-pack.md describes every key.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from talkinghead import __version__ as SDK_VERSION
from talkinghead.errors import PackError
from talkinghead.sdk.tuning import check_tuning

SCHEMA_VERSION = 3
# Schema 3 is the warp-and-refine generator: a universal refiner over the enrolled photo,
# warped per frame by the rig (``rig.safetensors``). Schemas 1 and 2 held one face baked
# into a direct-synthesis generator, which this SDK no longer runs.
SUPPORTED_SCHEMA_VERSIONS = (3,)
GENERATOR_KIND = "warp-refine"
RIG_NAME = "rig.safetensors"
INPUT_CHANNELS = 7
PACK_FORMAT = "talkinghead.avatar-pack"
MANIFEST_NAME = "manifest.json"
PARITY_NAME = "parity.npz"
NUM_LANDMARKS = 68
PRECISIONS = ("fp32", "int8")
LAYOUTS = ("NCHW", "NHWC")
MODEL_DTYPES = ("float32", "int8", "uint8")
# Parity thresholds every pack states in its manifest (``parity``) and ``talkinghead verify``
# checks: fp32 as max abs difference from eager on [-1, 1]; int8 as PSNR against eager
# (peak-to-peak 2).
PARITY_FP32_MAX_ABS = 1e-4
PARITY_INT8_MIN_PSNR_DB = 25.0
# A phone re-running the bundled test cases has other kernels (ARM, other SIMD): looser atol.
BUNDLED_ATOL = {"fp32": 1e-3, "int8": 0.05}
# Model file format by suffix, when a manifest entry does not say.
FORMATS = {".pte": "pte", ".tflite": "tflite", ".onnx": "onnx", ".ort": "ort"}


# ----------------------------------------------------------------------------- validation


def _require(d: Mapping[str, Any], key: str, types: type | tuple[type, ...], where: str) -> Any:
    """d[key], or a PackError naming the key when it is missing or of the wrong type."""
    if not isinstance(d, Mapping):
        raise PackError(f"manifest: {where} must be an object, got {type(d).__name__}")
    if key not in d:
        raise PackError(
            f"manifest: missing key '{where}.{key}'" if where else f"manifest: missing key '{key}'"
        )
    value = d[key]
    # bool is an int subclass; a schema_version of true is not a version.
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        value_ok = False
    else:
        value_ok = isinstance(value, types)
    if not value_ok:
        names = "/".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        name = f"{where}.{key}" if where else key
        raise PackError(f"manifest: key '{name}' must be {names}, got {type(value).__name__}")
    return value


def safe_relpath(name: str) -> str:
    """Check that ``name`` stays inside the pack: relative, POSIX, no '..', no drive; return it normalised.

    Raises PackError otherwise. Names come from manifests and zips that may be hostile.
    """
    if not isinstance(name, str) or not name or "\x00" in name:
        raise PackError(f"unsafe path in pack: {name!r}")
    if "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise PackError(f"unsafe path in pack (absolute or not POSIX): {name!r}")
    parts = PurePosixPath(name).parts
    if any(p in ("..", "") for p in parts) or not parts:
        raise PackError(f"unsafe path in pack (escapes the folder): {name!r}")
    return str(PurePosixPath(*parts))


def _is_sha256(s: object) -> bool:
    return isinstance(s, str) and len(s) == 64 and all(c in "0123456789abcdef" for c in s)


# ----------------------------------------------------------------------------- manifest parts


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: ``shape`` [1, 3, S, S] (NCHW) or [1, S, S, 3] (NHWC), values in ``range``.

    quantization: for int8/uint8 tensors, ``{"scale": s, "zero_point": z}`` with
        real = s * (q - z); None for float tensors.
    """

    name: str
    shape: tuple[int, ...]
    description: str
    dtype: str = "float32"
    layout: str = "NCHW"
    range: tuple[float, float] = (-1.0, 1.0)
    quantization: Mapping[str, float] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "layout": self.layout,
            "range": list(self.range),
            "description": self.description,
        }
        if self.quantization is not None:
            out["quantization"] = dict(self.quantization)
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any], where: str) -> TensorSpec:
        shape = _require(d, "shape", list, where)
        if not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
            raise PackError(
                f"manifest: key '{where}.shape' must be a list of positive ints, got {shape}"
            )
        rng = _require(d, "range", list, where)
        if len(rng) != 2 or not all(isinstance(v, (int, float)) for v in rng) or rng[0] >= rng[1]:
            raise PackError(f"manifest: key '{where}.range' must be [low, high], got {rng}")
        quant = d.get("quantization")
        if quant is not None:
            quant = _require(d, "quantization", dict, where)
            scale = _require(quant, "scale", (int, float), f"{where}.quantization")
            _require(quant, "zero_point", int, f"{where}.quantization")
            if not (math.isfinite(scale) and scale > 0):
                raise PackError(f"manifest: key '{where}.quantization.scale' must be positive")
        return cls(
            name=_require(d, "name", str, where),
            shape=tuple(shape),
            description=_require(d, "description", str, where),
            dtype=_require(d, "dtype", str, where),
            layout=_require(d, "layout", str, where),
            range=(float(rng[0]), float(rng[1])),
            quantization=quant,
        )

    def check_image(
        self, resolution: int, where: str, *, model_file: bool, channels: int = 3
    ) -> None:
        """PackError unless this is a [1, C, S, S] NCHW / [1, S, S, C] NHWC image spec.

        The pack-level specs are float32 NCHW; a model file's own spec may be NHWC and,
        with ``quantization``, int8 or uint8.
        """
        s = resolution
        dtypes = MODEL_DTYPES if model_file else ("float32",)
        layouts = LAYOUTS if model_file else ("NCHW",)
        if self.layout not in layouts or self.dtype not in dtypes:
            raise PackError(
                f"manifest: '{where}' must be {'/'.join(dtypes)} {'/'.join(layouts)}, "
                f"got {self.dtype} {self.layout}"
            )
        c = channels
        expected = (1, c, s, s) if self.layout == "NCHW" else (1, s, s, c)
        if self.shape != expected:
            raise PackError(
                f"manifest: key '{where}.shape' is {list(self.shape)}, expected {list(expected)}"
            )
        if (self.dtype != "float32") != (self.quantization is not None):
            raise PackError(
                f"manifest: '{where}' is {self.dtype}: quantization must be given exactly for integer tensors"
            )


def image_spec(name: str, resolution: int, description: str, channels: int = 3) -> TensorSpec:
    """A [1, C, S, S] float32 NCHW [-1, 1] image: the refiner's input (C = 7) or frame (C = 3)."""
    return TensorSpec(
        name=name, shape=(1, channels, resolution, resolution), description=description
    )


@dataclass(frozen=True)
class LandmarkConvention:
    """How the landmarks driving the model are expressed: 68 iBUG points in crop pixels of a ``size`` crop."""

    size: int
    name: str = "ibug68"
    space: str = "crop_pixels"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "space": self.space, "size": self.size}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> LandmarkConvention:
        w = "landmark_convention"
        return cls(
            size=_require(d, "size", int, w),
            name=_require(d, "name", str, w),
            space=_require(d, "space", str, w),
        )


@dataclass(frozen=True)
class ModelEntry:
    """One model file in the pack. ``precision``: "fp32" or "int8".

    format: "pte", "tflite", "onnx" or "ort" (from the file's suffix when not given).
    input, output: the file's own tensor specs when they differ from the pack's NCHW float32
        ones (NHWC, int8); None means "as the pack's ``input``/``output``".
    info: free-form facts about the file (measured parity, bundled program, mobile checks).
    """

    file: str
    sha256: str
    bytes: int
    runtime: str = "executorch"
    backend: str = "xnnpack"
    precision: str = "fp32"
    format: str = ""
    input: TensorSpec | None = None
    output: TensorSpec | None = None
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.format:
            object.__setattr__(self, "format", FORMATS.get(PurePosixPath(self.file).suffix, ""))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "runtime": self.runtime,
            "backend": self.backend,
            "precision": self.precision,
            "file": self.file,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "format": self.format,
        }
        if self.input is not None:
            out["input"] = self.input.to_json()
        if self.output is not None:
            out["output"] = self.output.to_json()
        if self.info:
            out["info"] = dict(self.info)
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any], where: str) -> ModelEntry:
        entry = cls(
            file=safe_relpath(_require(d, "file", str, where)),
            sha256=_require(d, "sha256", str, where),
            bytes=_require(d, "bytes", int, where),
            runtime=_require(d, "runtime", str, where),
            backend=_require(d, "backend", str, where),
            precision=_require(d, "precision", str, where),
            format=_require(d, "format", str, where) if "format" in d else "",
            input=TensorSpec.from_json(_require(d, "input", dict, where), f"{where}.input")
            if "input" in d
            else None,
            output=TensorSpec.from_json(_require(d, "output", dict, where), f"{where}.output")
            if "output" in d
            else None,
            info=dict(_require(d, "info", dict, where)) if "info" in d else {},
        )
        if entry.precision not in PRECISIONS:
            raise PackError(
                f"manifest: key '{where}.precision' must be one of {PRECISIONS}, got {entry.precision!r}"
            )
        if not _is_sha256(entry.sha256):
            raise PackError(f"manifest: key '{where}.sha256' is not a lowercase hex sha256")
        if entry.bytes < 0:
            raise PackError(f"manifest: key '{where}.bytes' must be >= 0")
        return entry


@dataclass(frozen=True)
class Identity:
    """Who the avatar is.

    neutral_landmarks: (68, 2) float, crop pixels: the enrolled face at rest, the reference
        for retargeting a driver's motion.
    photo: pack-relative name of the enrolled crop (PNG), if shipped.
    params: free-form extras (e.g. embedding norm, enrolment shots); stored flat beside the
        two keys above.
    """

    neutral_landmarks: tuple[tuple[float, float], ...]
    photo: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = dict(self.params)
        out["neutral_landmarks"] = [list(p) for p in self.neutral_landmarks]
        if self.photo is not None:
            out["photo"] = self.photo
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Identity:
        pts = _require(d, "neutral_landmarks", list, "identity")
        landmarks = landmarks_68x2(pts, "manifest: key 'identity.neutral_landmarks'", PackError)
        photo = d.get("photo")
        if photo is not None:
            photo = safe_relpath(_require(d, "photo", str, "identity"))
        params = {k: v for k, v in d.items() if k not in ("neutral_landmarks", "photo")}
        return cls(neutral_landmarks=landmarks, photo=photo, params=params)


def _generator(d: Mapping[str, Any]) -> dict[str, Any]:
    kind = _require(d, "kind", str, "generator")
    if kind != GENERATOR_KIND:
        raise PackError(f"manifest: generator.kind is {kind!r}, expected {GENERATOR_KIND!r}")
    return {**d, "rig": safe_relpath(_require(d, "rig", str, "generator"))}


def landmarks_68x2(pts: Any, what: str, error: type[Exception]) -> tuple[tuple[float, float], ...]:
    try:
        rows = [tuple(float(v) for v in p) for p in pts]
    except (TypeError, ValueError) as e:
        raise error(f"{what} must be a (68, 2) list of numbers: {e}") from e
    if len(rows) != NUM_LANDMARKS or any(len(r) != 2 for r in rows):
        raise error(f"{what} must be (68, 2), got {len(rows)} rows")
    if not all(math.isfinite(v) for r in rows for v in r):
        raise error(f"{what} holds a non-finite value")
    return tuple((r[0], r[1]) for r in rows)


# ----------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class AvatarManifest:
    """The parsed, validated ``manifest.json``. ``files`` maps every pack file but the manifest to its sha256."""

    name: str
    resolution: int
    models: tuple[ModelEntry, ...]
    identity: Identity
    files: Mapping[str, str]
    landmark_convention: LandmarkConvention
    input: TensorSpec
    output: TensorSpec
    created: str
    sdk_version: str = SDK_VERSION
    parity: Mapping[str, Any] | None = None
    # The fastest precision and thread count per runtime on the machine that built the
    # pack (sdk/tuning.py); None when the pack was written without tuning.
    tuning: Mapping[str, Any] | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)
    generator: Mapping[str, Any] = field(
        default_factory=lambda: {"kind": GENERATOR_KIND, "rig": RIG_NAME}
    )
    schema_version: int = SCHEMA_VERSION
    format: str = PACK_FORMAT

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema_version": self.schema_version,
            "format": self.format,
            "sdk_version": self.sdk_version,
            "name": self.name,
            "created": self.created,
            "resolution": self.resolution,
            "landmark_convention": self.landmark_convention.to_json(),
            "input": self.input.to_json(),
            "output": self.output.to_json(),
            "models": [m.to_json() for m in self.models],
            "identity": self.identity.to_json(),
            "files": dict(sorted(self.files.items())),
            "provenance": dict(self.provenance),
            "generator": dict(self.generator),
        }
        if self.parity is not None:
            out["parity"] = dict(self.parity)
        if self.tuning is not None:
            out["tuning"] = dict(self.tuning)
        return out

    @classmethod
    def from_json(cls, d: Any) -> AvatarManifest:
        """Validate a decoded manifest; raise PackError naming the first bad key."""
        if not isinstance(d, Mapping):
            raise PackError(f"manifest: top level must be an object, got {type(d).__name__}")
        version = _require(d, "schema_version", int, "")
        if version > SCHEMA_VERSION:
            raise PackError(
                f"pack schema_version {version} is newer than this SDK supports "
                f"({SCHEMA_VERSION}); upgrade talkinghead (installed {SDK_VERSION}) to open it"
            )
        if version in (1, 2):
            raise PackError(
                f"pack schema_version {version} holds the old direct-synthesis generator, which "
                f"this SDK ({SDK_VERSION}) no longer runs; enrol the face again "
                "(talkinghead demo --photo, or talkinghead export) to make a schema "
                f"{SCHEMA_VERSION} warp-and-refine pack"
            )
        if version not in SUPPORTED_SCHEMA_VERSIONS:
            raise PackError(
                f"unknown pack schema_version {version}; this SDK supports schema_version "
                f"{', '.join(map(str, SUPPORTED_SCHEMA_VERSIONS))}"
            )
        fmt = _require(d, "format", str, "")
        if fmt != PACK_FORMAT:
            raise PackError(f"manifest: format is {fmt!r}, expected {PACK_FORMAT!r}")

        resolution = _require(d, "resolution", int, "")
        if resolution <= 0:
            raise PackError(f"manifest: key 'resolution' must be positive, got {resolution}")
        files_raw = _require(d, "files", dict, "")
        files: dict[str, str] = {}
        for name, digest in files_raw.items():
            rel = safe_relpath(name)
            if rel == MANIFEST_NAME:
                raise PackError("manifest: 'files' must not list manifest.json itself")
            if not _is_sha256(digest):
                raise PackError(f"manifest: key 'files.{name}' is not a lowercase hex sha256")
            files[rel] = digest

        models_raw = _require(d, "models", list, "")
        if not models_raw:
            raise PackError("manifest: key 'models' must list at least one model")
        models = tuple(ModelEntry.from_json(m, f"models[{i}]") for i, m in enumerate(models_raw))
        identity = Identity.from_json(_require(d, "identity", dict, ""))
        parity = d.get("parity")
        if parity is not None:
            parity = dict(_require(d, "parity", dict, ""))
            parity["file"] = safe_relpath(_require(parity, "file", str, "parity"))

        m = cls(
            name=_require(d, "name", str, ""),
            resolution=resolution,
            models=models,
            identity=identity,
            files=files,
            landmark_convention=LandmarkConvention.from_json(
                _require(d, "landmark_convention", dict, "")
            ),
            input=TensorSpec.from_json(_require(d, "input", dict, ""), "input"),
            output=TensorSpec.from_json(_require(d, "output", dict, ""), "output"),
            created=_require(d, "created", str, ""),
            sdk_version=_require(d, "sdk_version", str, ""),
            parity=parity,
            tuning=(
                check_tuning(d["tuning"], ((m.runtime, m.precision) for m in models))
                if d.get("tuning") is not None
                else None
            ),
            provenance=dict(_require(d, "provenance", dict, "")),
            generator=_generator(_require(d, "generator", dict, "")),
            schema_version=version,
            format=fmt,
        )
        m._check_consistency()
        return m

    def _check_consistency(self) -> None:
        try:
            datetime.fromisoformat(self.created.replace("Z", "+00:00"))
        except ValueError as e:
            raise PackError(f"manifest: key 'created' is not an ISO time: {self.created!r}") from e
        s = self.resolution
        self.input.check_image(s, "input", model_file=False, channels=INPUT_CHANNELS)
        self.output.check_image(s, "output", model_file=False)
        if self.landmark_convention.size != s:
            raise PackError(
                f"manifest: key 'landmark_convention.size' is {self.landmark_convention.size}, expected {s}"
            )
        for i, m in enumerate(self.models):
            listed = self.files.get(m.file)
            if listed is None:
                raise PackError(f"manifest: models[{i}].file {m.file!r} is not listed in 'files'")
            if listed != m.sha256:
                raise PackError(f"manifest: models[{i}].sha256 disagrees with files[{m.file!r}]")
            if m.format not in FORMATS.values():
                raise PackError(
                    f"manifest: key 'models[{i}].format' must be one of {sorted(FORMATS.values())}, got {m.format!r}"
                )
            for spec, key, c in ((m.input, "input", INPUT_CHANNELS), (m.output, "output", 3)):
                if spec is not None:
                    spec.check_image(s, f"models[{i}].{key}", model_file=True, channels=c)
            bundled = m.info.get("bundled")
            if bundled is not None:
                rel = safe_relpath(_require(bundled, "file", str, f"models[{i}].info.bundled"))
                if rel not in self.files:
                    raise PackError(
                        f"manifest: models[{i}].info.bundled.file {rel!r} is not listed in 'files'"
                    )
        if self.generator["rig"] not in self.files:
            raise PackError(
                f"manifest: generator.rig {self.generator['rig']!r} is not listed in 'files'"
            )
        if self.identity.photo is not None and self.identity.photo not in self.files:
            raise PackError(
                f"manifest: identity.photo {self.identity.photo!r} is not listed in 'files'"
            )
        if self.parity is not None and self.parity["file"] not in self.files:
            raise PackError(
                f"manifest: parity.file {self.parity['file']!r} is not listed in 'files'"
            )

    def model(
        self, precision: str = "fp32", runtime: str = "executorch", format: str | None = None
    ) -> ModelEntry:
        """The first model entry for ``runtime`` at ``precision`` (and ``format``); PackError when none."""
        for m in self.models:
            if m.precision == precision and m.runtime == runtime and format in (None, m.format):
                return m
        have = ", ".join(f"{m.runtime}/{m.precision}/{m.format}" for m in self.models)
        want = f"{runtime}/{precision}" + (f"/{format}" if format else "")
        raise PackError(f"pack {self.name!r} has no {want} model (has: {have})")

    def runtimes(self, precision: str | None = None) -> list[str]:
        """The runtimes the pack has models for (at ``precision``), in manifest order, once each."""
        out: list[str] = []
        for m in self.models:
            if (precision is None or m.precision == precision) and m.runtime not in out:
                out.append(m.runtime)
        return out


def parse_manifest(raw: bytes, where: str = MANIFEST_NAME) -> AvatarManifest:
    """Decode and validate manifest bytes; PackError names what is wrong."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise PackError(f"{where} is not UTF-8: {e.reason} at byte {e.start}") from None
    except json.JSONDecodeError as e:
        raise PackError(
            f"{where} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}"
        ) from None
    except RecursionError:
        raise PackError(f"{where} is nested too deeply") from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        raise PackError(f"{where} holds a value out of range: {e}") from None
    try:
        return AvatarManifest.from_json(data)
    except RecursionError:
        raise PackError(f"{where} is nested too deeply") from None


@dataclass(frozen=True)
class ModelSource:
    """A model file to put in a pack: where it is now and what it is (see :class:`ModelEntry`).

    bundled: an ExecuTorch BundledProgram of this model to ship beside it; recorded in the
        entry's ``info["bundled"]`` with ``bundled_info`` (its tolerances).
    """

    path: str | os.PathLike[str]
    precision: str = "fp32"
    runtime: str = "executorch"
    backend: str = "xnnpack"
    format: str = ""
    input: TensorSpec | None = None
    output: TensorSpec | None = None
    info: Mapping[str, Any] = field(default_factory=dict)
    bundled: str | os.PathLike[str] | None = None
    bundled_info: Mapping[str, Any] = field(default_factory=dict)


__all__ = [
    "BUNDLED_ATOL",
    "GENERATOR_KIND",
    "INPUT_CHANNELS",
    "MANIFEST_NAME",
    "PACK_FORMAT",
    "PARITY_FP32_MAX_ABS",
    "PARITY_INT8_MIN_PSNR_DB",
    "PARITY_NAME",
    "PRECISIONS",
    "RIG_NAME",
    "SCHEMA_VERSION",
    "SUPPORTED_SCHEMA_VERSIONS",
    "AvatarManifest",
    "Identity",
    "LandmarkConvention",
    "ModelEntry",
    "ModelSource",
    "TensorSpec",
    "image_spec",
    "landmarks_68x2",
    "parse_manifest",
    "safe_relpath",
]
