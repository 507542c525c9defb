"""The refiner's exported models are reused only when they fit the installed tools and code."""

from __future__ import annotations

import json

from talkinghead.packs import _EXPORTERS, _checkpoint_key, _exporter_versions, _read_sources


def _entry(tmp_path, runtime: str, exporters: str) -> dict:
    import hashlib

    model = tmp_path / f"m-{runtime}.bin"
    model.write_bytes(b"model bytes")
    return {
        "file": model.name,
        "sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
        "runtime": runtime,
        "exporters": exporters,
        "backend": "cpu",
        "precision": "fp32",
        "format": "onnx",
        "input": None,
        "output": None,
        "info": {},
        "bundled": None,
        "bundled_info": {},
    }


def test_sources_of_other_tool_versions_or_weights_are_ignored(tmp_path):
    key = "0123456789abcdef"
    current = _entry(tmp_path, "onnxruntime", _exporter_versions("onnxruntime"))
    stale = _entry(tmp_path, "executorch", "executorch==0.0.1")
    (tmp_path / "sources.json").write_text(
        json.dumps({"checkpoint_key": key, "models": [current, stale]})
    )
    found = _read_sources(tmp_path, key)
    assert list(found) == [("onnxruntime", "fp32")]
    assert _read_sources(tmp_path, "another-weights") == {}


def test_a_damaged_prebuilt_file_is_not_used(tmp_path):
    key = "0123456789abcdef"
    entry = _entry(tmp_path, "onnxruntime", _exporter_versions("onnxruntime"))
    (tmp_path / entry["file"]).write_bytes(b"tampered")
    (tmp_path / "sources.json").write_text(json.dumps({"checkpoint_key": key, "models": [entry]}))
    assert _read_sources(tmp_path, key) == {}


def test_checkpoint_key_follows_the_weights(tmp_path, refiner_checkpoint):
    other = tmp_path / "other.safetensors"
    other.write_bytes(refiner_checkpoint.read_bytes() + b" ")
    assert _checkpoint_key(refiner_checkpoint) != _checkpoint_key(other)
    assert set(_EXPORTERS) == {"executorch", "litert", "onnxruntime"}


def test_shipped_prebuilt_models_match_the_shipped_refiner(refiner_checkpoint):
    """The package's prebuilt folder serves the shipped refiner for every runtime and
    precision with the installed tools: enrolment never exports on a fresh install."""
    from talkinghead.packs import PREBUILT_DIR, weights_path

    found = _read_sources(weights_path(PREBUILT_DIR), _checkpoint_key(refiner_checkpoint))
    assert set(found) == {
        (r, p) for r in ("executorch", "litert", "onnxruntime") for p in ("fp32", "int8")
    }
