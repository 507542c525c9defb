"""Shared fixtures: real photos and the verified face landmarker model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def face_landmarker_task() -> Path:
    """Path to the hash-checked face_landmarker.task (cache, URL, or PyPI fallback)."""
    from talkinghead.sdk.assets import face_landmarker_path

    return face_landmarker_path()


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """(512, 512, 3) uint8 RGB: one frontal face (Eileen Collins)."""
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def student_checkpoint() -> Path:
    """The committed demo student (distilled for the astronaut photo)."""
    from talkinghead.packs import weights_path
    from talkinghead.pipeline import DEFAULT_STUDENT

    return weights_path(DEFAULT_STUDENT)


@pytest.fixture(scope="session")
def teacher_checkpoint() -> Path:
    """The committed demo teacher (teacher-xs, meta-trained on pseudo-videos)."""
    from talkinghead.packs import weights_path
    from talkinghead.pipeline import DEFAULT_TEACHER

    return weights_path(DEFAULT_TEACHER)


@pytest.fixture(scope="session")
def refiner_checkpoint() -> Path:
    """The committed universal refiner (refiner-s, 256 px; talkinghead/weights/README.md)."""
    from talkinghead.packs import DEFAULT_REFINER, weights_path

    return weights_path(DEFAULT_REFINER)


@pytest.fixture(scope="session")
def avatar_pack(tmp_path_factory) -> Path:
    """A real warp-and-refine avatar pack, enrolled from the astronaut photo once per test
    session: ExecuTorch (XNNPACK), LiteRT and ONNX Runtime (.onnx + .ort), each fp32 + int8,
    with its rig, parity vectors and bundled programs."""
    from talkinghead.pipeline import export_pack

    return export_pack("astronaut", tmp_path_factory.mktemp("pack") / "astronaut", progress=False)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fast",
        action="store_true",
        help="skip tests marked slow and those that need the three-runtime avatar_pack fixture",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--fast"):
        return
    skip = pytest.mark.skip(reason="--fast: slow, or needs the three-runtime avatar_pack")
    for item in items:
        if "slow" in item.keywords or "avatar_pack" in getattr(item, "fixturenames", ()):
            item.add_marker(skip)
