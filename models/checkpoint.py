"""Safetensors checkpoints for teachers and students.

Weights go in safetensors; the model's kind, variant config and free-form notes go in
the file's string metadata, so a checkpoint rebuilds its own model. Nothing is pickled.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from talkinghead.errors import CheckpointError
from talkinghead.models.refiner import RefinerConfig, RefinerGenerator
from talkinghead.models.student import StudentConfig, StudentGenerator
from talkinghead.models.teacher import Teacher, TeacherConfig

# The models a checkpoint holds, and per kind: its config's reader and the model's class.
CheckpointModel = Teacher | StudentGenerator | RefinerGenerator
_KINDS: dict[str, tuple[Callable[[dict], Any], Callable[[Any], CheckpointModel]]] = {
    "teacher": (TeacherConfig.from_dict, Teacher),
    "student": (StudentConfig.from_dict, StudentGenerator),
    "refiner": (RefinerConfig.from_dict, RefinerGenerator),
}


def save_checkpoint(
    path: str | Path, model: CheckpointModel, kind: str, half: bool = False, **notes: Any
) -> Path:
    """Write ``model``'s weights plus its config; ``notes`` (JSON-able) go in the metadata.

    ``half`` stores floating-point tensors as float16 (half the bytes, for shipped weights);
    loading always returns float32.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    meta = {
        "kind": kind,
        "config": json.dumps(model.cfg.to_dict()),
        "notes": json.dumps(notes),
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(state, str(tmp), meta)
    tmp.replace(path)
    return path


def read_safetensors(
    path: str | Path, framework: str = "pt", what: str = "checkpoint"
) -> tuple[dict[str, Any], dict[str, str]]:
    """All tensors ("pt" or "np") and the string metadata of a safetensors file.

    A missing, truncated or foreign file raises CheckpointError naming ``what`` and the path.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {path}")
    try:
        with safe_open(str(path), framework) as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{what} {path} is corrupt or not a safetensors file: {exc}") from exc


def read_state_dict(path: str | Path, what: str = "weights") -> dict[str, torch.Tensor]:
    """A state dict from a safetensors file, or from a ``.pth``/``.pt`` tensor dict.

    Torch files are read with ``weights_only=True``: tensors and plain containers, never
    arbitrary pickled objects. A top-level ``{"state_dict": {...}}`` wrapper is unwrapped.
    A missing, truncated, corrupt or foreign file raises CheckpointError naming ``what``.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        return read_safetensors(path, "pt", what)[0]
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise CheckpointError(f"{what} {path} cannot be read: {exc}") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{what} {path} hold a {type(state).__name__}, not a state dict")
    return state


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors (float32) and parsed metadata; CheckpointError for a corrupt or foreign file."""
    tensors, raw = read_safetensors(path)
    tensors = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    try:
        meta = {
            "kind": raw.get("kind"),
            "config": json.loads(raw["config"]) if "config" in raw else None,
            "notes": json.loads(raw.get("notes", "{}")),
        }
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} has unreadable metadata: {exc}") from exc
    return tensors, meta


def load_checkpoint(path: str | Path, kind: str, expect_variant: str | None = None) -> Any:
    """Rebuild and load a ``kind`` model ("teacher" or "student") from ``path``."""
    tensors, meta = read_checkpoint(path)
    if meta["kind"] != kind:
        raise CheckpointError(f"{path} holds a {meta['kind']!r} checkpoint, expected a {kind!r}")
    read_config, model_cls = _KINDS[kind]
    try:
        cfg = read_config(meta["config"])
    except (TypeError, KeyError) as exc:
        raise CheckpointError(f"{path} has an unreadable {kind} config: {exc}") from exc
    if expect_variant is not None and cfg.name != expect_variant:
        raise CheckpointError(
            f"{path} is a {cfg.name!r} {kind}, but {expect_variant!r} was asked for"
        )
    model = model_cls(cfg)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not fit the {cfg.name!r} architecture: {exc}") from exc
    model.notes = meta["notes"]
    return model
