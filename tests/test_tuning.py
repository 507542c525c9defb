"""Runtime tuning: measured on the build machine, recorded in the manifest, used by Avatar."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from talkinghead.errors import InvalidInputError, PackError
from talkinghead.sdk.tuning import (
    best_configs,
    candidate_threads,
    check_tuning,
    measure_configs,
    tuned_config,
    tuning_record,
)

PACK = Path(__file__).parent / "data" / "astronaut-pack"


def test_candidate_threads_always_try_one_and_every_core():
    assert candidate_threads(1) == [1]
    assert candidate_threads(2) == [1, 2]
    assert candidate_threads(6) == [1, 2, 4, 6]
    assert candidate_threads(8) == [1, 2, 4, 8]


def test_best_config_is_the_fastest_row_per_runtime():
    rows = [
        {"runtime": "executorch", "precision": "fp32", "num_threads": 2, "ms_median": 4.0},
        {"runtime": "executorch", "precision": "int8", "num_threads": 1, "ms_median": 2.5},
        {"runtime": "executorch", "precision": "int8", "num_threads": 2, "ms_median": 2.1},
        {"runtime": "onnxruntime", "precision": "fp32", "num_threads": 1, "ms_median": 3.0},
    ]
    best = best_configs(rows)
    assert best == {
        "executorch": {"precision": "int8", "num_threads": 2, "ms_median": 2.1},
        "onnxruntime": {"precision": "fp32", "num_threads": 1, "ms_median": 3.0},
    }
    record = tuning_record(rows, runs=5)
    assert record["best"] == best and record["machine"]["cores"] >= 1 and record["runs"] == 5
    have = {("executorch", "fp32"), ("executorch", "int8"), ("onnxruntime", "fp32")}
    assert check_tuning(record, have)["best"] == best
    assert tuned_config(record, "executorch").num_threads == 2
    assert tuned_config(record, "litert") is None and tuned_config(None, "executorch") is None


@pytest.mark.parametrize(
    "best, match",
    [
        ({"executorch": {"precision": "int8", "num_threads": 0, "ms_median": 1.0}}, "num_threads"),
        (
            {"executorch": {"precision": "int8", "num_threads": True, "ms_median": 1.0}},
            "num_threads",
        ),
        ({"executorch": {"precision": "int8", "num_threads": 2, "ms_median": -1}}, "ms_median"),
        ({"executorch": {"precision": "int4", "num_threads": 2, "ms_median": 1.0}}, "no model"),
        ({"litert": {"precision": "int8", "num_threads": 2, "ms_median": 1.0}}, "no model"),
        ({"executorch": [1, 2]}, "must be an object"),
    ],
)
def test_a_bad_tuning_entry_is_a_pack_error(best, match):
    with pytest.raises(PackError, match=match):
        check_tuning({"best": best}, {("executorch", "int8")})


def test_measure_configs_validates_its_arguments():
    x = np.zeros((1, 1, 7, 8, 8), np.float32)
    with pytest.raises(InvalidInputError, match="runs"):
        measure_configs([], x, lambda r, n: None, runs=0)
    with pytest.raises(InvalidInputError, match="thread"):
        measure_configs([], x, lambda r, n: None, threads=[0])
    with pytest.raises(InvalidInputError, match="inputs"):
        measure_configs([], x[0], lambda r, n: None)


def _pack_inputs(pack: Path) -> np.ndarray:
    with np.load(pack / "parity.npz") as z:
        return z["inputs"]


def test_measure_configs_times_real_models_at_each_thread_count():
    from talkinghead.sdk.backends import create_backend
    from talkinghead.sdk.pack import load_manifest

    manifest = load_manifest(PACK)
    models = [(m.runtime, m.precision, (PACK / m.file).read_bytes()) for m in manifest.models]
    rows = measure_configs(
        models,
        _pack_inputs(PACK),
        lambda r, n: create_backend(r, num_threads=n),
        threads=[1, 2],
        runs=3,
        warmup=1,
    )
    assert {(r["runtime"], r["precision"], r["num_threads"]) for r in rows} == {
        (m.runtime, m.precision, n) for m in manifest.models for n in (1, 2)
    }
    assert all(r["ms_median"] > 0 for r in rows)


def _with_tuning(tmp_path: Path, best: dict) -> Path:
    """A copy of the committed pack whose manifest records ``best`` (hashes unchanged:
    the manifest lists every file but itself)."""
    pack = tmp_path / "pack"
    shutil.copytree(PACK, pack)
    manifest = json.loads((pack / "manifest.json").read_text())
    manifest["tuning"] = {"best": best, "results": [], "runs": 1}
    (pack / "manifest.json").write_text(json.dumps(manifest))
    (pack / "manifest.sig").unlink(missing_ok=True)
    return pack


def test_avatar_runs_the_tuned_thread_count_by_default(tmp_path):
    from talkinghead.sdk.avatar import Avatar

    best = {"onnxruntime": {"precision": "int8", "num_threads": 1, "ms_median": 1.0}}
    pack = _with_tuning(tmp_path, best)
    with Avatar.create_from_pack(pack, backend="onnxruntime") as avatar:
        assert (avatar.precision, avatar.num_threads) == ("int8", 1)
        assert avatar._backend._num_threads == 1
    # What the caller asks for wins.
    with Avatar.create_from_pack(pack, backend="onnxruntime", num_threads=2) as avatar:
        assert (avatar.precision, avatar.num_threads) == ("int8", 2)
    with pytest.raises(PackError, match="no onnxruntime/fp32 model"):
        Avatar.create_from_pack(pack, backend="onnxruntime", precision="fp32")


def test_avatar_runs_the_tuned_precision_by_default(avatar_pack):
    """A real export tunes every runtime; Avatar picks each one's recorded best."""
    from talkinghead.sdk.avatar import Avatar
    from talkinghead.sdk.pack import load_manifest

    tuning = load_manifest(avatar_pack).tuning
    assert tuning is not None
    rows = {(r["runtime"], r["precision"], r["num_threads"]) for r in tuning["results"]}
    for runtime in ("executorch", "litert", "onnxruntime"):
        for precision in ("fp32", "int8"):
            assert (runtime, precision, 1) in rows  # every model was timed
        best = tuning["best"][runtime]
        fastest = min(r["ms_median"] for r in tuning["results"] if r["runtime"] == runtime)
        assert best["ms_median"] == fastest
        with Avatar.create_from_pack(avatar_pack, backend=runtime, verify=False) as avatar:
            assert avatar.precision == best["precision"]
            assert avatar.num_threads == best["num_threads"]


def test_a_pack_without_tuning_runs_int8_on_the_runtime_default(tmp_path):
    from talkinghead.sdk.avatar import Avatar

    pack = tmp_path / "pack"
    shutil.copytree(PACK, pack)
    manifest = json.loads((pack / "manifest.json").read_text())
    manifest.pop("tuning", None)
    (pack / "manifest.json").write_text(json.dumps(manifest))
    (pack / "manifest.sig").unlink(missing_ok=True)
    with Avatar.create_from_pack(pack, backend="onnxruntime") as avatar:
        assert (avatar.precision, avatar.num_threads) == ("int8", None)


def test_a_tuning_entry_naming_a_missing_model_is_refused(tmp_path):
    from talkinghead.sdk.pack import open_pack

    best = {"onnxruntime": {"precision": "fp16", "num_threads": 1, "ms_median": 1.0}}
    with pytest.raises(PackError, match="tuning.best.onnxruntime"):
        open_pack(_with_tuning(tmp_path, best))
