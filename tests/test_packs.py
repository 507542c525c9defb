"""Packs of the warp-and-refine generator (``talkinghead/packs.py``): enrol a photo, export,
and the bad input a user brings: no face, several faces, a face at the photo's edge, an
occluded face, driving videos without a face or that lose it.

Exports reuse the universal refiner's cached models (exported once per checkpoint), so a
pack here is enrolment plus parity: seconds.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from talkinghead.cli import main
from talkinghead.errors import InvalidInputError, NoFaceError, PackError, TalkingHeadError
from talkinghead.packs import EnrolledFace, enrol_photo, export_avatar_pack, refiner_models
from talkinghead.sdk.avatar import Avatar
from talkinghead.sdk.media import write_mp4
from talkinghead.sdk.pack import load_manifest, open_pack, verify_pack
from talkinghead.sdk.pack_schema import MANIFEST_NAME, RIG_NAME
from talkinghead.sdk.video_tracks import track_video
from talkinghead.sdk.warp import rig_from_bytes, warp_to

pytestmark = pytest.mark.usefixtures("face_landmarker_task")


@pytest.fixture(scope="module")
def landmarks(astronaut) -> np.ndarray:
    """(68, 2) px: the astronaut photo's tracked landmarks."""
    from talkinghead.sdk.tracker import track_image

    return track_image(astronaut).landmarks68


def export_fp32(photo, out: Path, **kw) -> tuple[Path, dict]:
    """The smallest real pack: ExecuTorch fp32 only."""
    return export_avatar_pack(
        photo, out, runtimes=("executorch",), precisions=("fp32",), progress=False, **kw
    )


# ----------------------------------------------------------------------------- enrol, export


def test_enrol_photo(astronaut):
    face = enrol_photo(astronaut)
    assert isinstance(face, EnrolledFace) and face.name == "photo"
    assert face.crop.shape == (256, 256, 3) and face.crop.dtype == np.uint8
    assert face.mesh.shape == (478, 3) and np.isfinite(face.mesh).all()
    assert face.rig.size == 256 and face.warnings == ()
    np.testing.assert_array_equal(face.rig.source, face.crop)
    # The face sits inside the crop with room around it for hair and neck.
    assert (face.mesh[:, :2] > 20).all() and (face.mesh[:, :2] < 236).all()
    named = enrol_photo("astronaut", size=128)
    assert named.name == "astronaut" and named.crop.shape == (128, 128, 3)
    np.testing.assert_allclose(named.mesh[:, :2], face.mesh[:, :2] / 2, atol=3.0)


@pytest.mark.slow  # enrols and exports to ExecuTorch
def test_enrol_and_export_to_executorch(tmp_path, refiner_checkpoint):
    pack, figures = export_fp32("astronaut", tmp_path / "pack")
    assert figures["warnings"] == [] and figures["enrol_s"] > 0
    assert {"models_s", "parity_s"} <= set(figures)
    assert verify_pack(pack).ok
    raw = json.loads((pack / MANIFEST_NAME).read_text())
    assert raw["schema_version"] == 3
    assert raw["generator"]["kind"] == "warp-refine" and raw["generator"]["rig"] == RIG_NAME
    assert raw["generator"]["refiner"] == "refiner-s"
    assert RIG_NAME in raw["files"] and (pack / RIG_NAME).is_file()
    assert raw["input"]["shape"] == [1, 7, 256, 256] and raw["output"]["shape"] == [1, 3, 256, 256]
    assert [(m["runtime"], m["precision"]) for m in raw["models"]] == [("executorch", "fp32")]
    assert raw["provenance"]["finetune_steps"] == 0
    rig = rig_from_bytes((pack / RIG_NAME).read_bytes())
    with Avatar.create_from_pack(pack, precision="fp32") as avatar:
        np.testing.assert_array_equal(avatar.neutral_mesh, rig.mesh)
        frames = avatar.animate(2)
    assert frames.shape == (2, 256, 256, 3)
    # The refiner's exported models are cached: the next face costs no export.
    t0 = time.perf_counter()
    (source,) = refiner_models(refiner_checkpoint, ("executorch",), ("fp32",), progress=False)
    assert time.perf_counter() - t0 < 5.0
    assert Path(source.path).read_bytes() == (pack / raw["models"][0]["file"]).read_bytes()


def test_export_refuses_bad_arguments(tmp_path):
    for kw in (
        {"runtimes": ("tensorflow",)},
        {"runtimes": ()},
        {"precisions": ("fp16",)},
        {"finetune_steps": -1},
        {"finetune_steps": 1.5},
    ):
        with pytest.raises(InvalidInputError):
            export_avatar_pack("astronaut", tmp_path / "p", progress=False, **kw)
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("version", [1, 2])
def test_old_schema_manifest_is_refused_naming_re_enrolment(avatar_pack, tmp_path, version):
    pack = Path(shutil.copytree(avatar_pack, tmp_path / "pack"))
    raw = json.loads((pack / MANIFEST_NAME).read_text())
    old = dict(raw, schema_version=version)
    old.pop("generator")
    old["files"] = {k: v for k, v in raw["files"].items() if k != RIG_NAME}
    (pack / RIG_NAME).unlink()
    (pack / MANIFEST_NAME).write_text(json.dumps(old))
    with pytest.raises(PackError, match=rf"schema_version {version}.*enrol the face again"):
        open_pack(pack)
    with pytest.raises(PackError, match="enrol the face again"):
        Avatar.create_from_pack(pack, precision="int8")
    assert main(["verify", str(pack)]) == 2


# ----------------------------------------------------------------------------- bad photos


def test_face_index_out_of_range(astronaut):
    assert enrol_photo(astronaut, face_index=0).mesh.shape == (478, 3)
    for bad in (1, 5, -1):
        with pytest.raises(InvalidInputError, match="face"):
            enrol_photo(astronaut, face_index=bad)


def test_photo_with_no_face():
    from skimage import data

    with pytest.raises(NoFaceError):
        enrol_photo(data.coffee())
    with pytest.raises(NoFaceError):
        enrol_photo(np.full((300, 300, 3), 127, np.uint8))


@pytest.mark.slow  # enrols and exports a pack
def test_face_at_the_photos_edge_gives_a_pack_and_a_warning(astronaut, landmarks, tmp_path, caplog):
    # Cut the photo just left of the face: the crop's box runs past the photo's edge.
    x0 = int(landmarks[:, 0].min()) - 4
    edge = np.ascontiguousarray(astronaut[:, x0:])
    with caplog.at_level("WARNING"):
        pack, figures = export_fp32(edge, tmp_path / "pack")
    assert any("edge" in w for w in figures["warnings"])
    assert any("edge" in r.getMessage() for r in caplog.records)
    manifest = load_manifest(pack)
    assert any("edge" in w for w in manifest.provenance["enrol_warnings"])
    with Avatar.create_from_pack(pack, precision="fp32") as avatar:
        frames = avatar.animate(3, seed=2)
    assert frames.shape == (3, 256, 256, 3) and frames.std() > 5


def _occluded(photo: np.ndarray, lm: np.ndarray, what: str) -> np.ndarray:
    img = Image.fromarray(photo.copy())
    draw = ImageDraw.Draw(img)
    if what == "glasses":
        for eye in (lm[36:42], lm[42:48]):
            (cx, cy), r = eye.mean(axis=0), 0.9 * np.ptp(eye[:, 0])
            draw.ellipse([cx - r, cy - 0.7 * r, cx + r, cy + 0.7 * r], fill=(15, 15, 20))
        draw.line([tuple(lm[39]), tuple(lm[42])], fill=(15, 15, 20), width=5)
        draw.line([tuple(lm[36]), tuple(lm[0])], fill=(15, 15, 20), width=5)
        draw.line([tuple(lm[45]), tuple(lm[16])], fill=(15, 15, 20), width=5)
    else:  # a hand over the mouth and chin
        x0, x1 = lm[:, 0].min() - 10, lm[:, 0].max() + 10
        y0, y1 = lm[33, 1], lm[8, 1] + 25
        draw.rounded_rectangle([x0, y0, x1, y1], radius=25, fill=(224, 172, 140))
        for k in range(1, 4):  # fingers
            y = y0 + k * (y1 - y0) / 4
            draw.line([(x0 + 10, y), (x1 - 10, y)], fill=(190, 140, 110), width=3)
    return np.asarray(img)


@pytest.mark.parametrize("what", ["glasses", "hand"])
def test_occluded_face_enrols_or_fails_typed(astronaut, landmarks, what):
    photo = _occluded(astronaut, landmarks, what)
    assert np.abs(photo.astype(int) - astronaut).sum() > 0
    try:
        face = enrol_photo(photo)
    except TalkingHeadError as e:
        assert str(e)  # a typed error naming the problem, never a crash
        return
    # Enrolled: the rig is whole and warps the occluded photo like any other.
    assert face.mesh.shape == (478, 3) and np.isfinite(face.mesh).all()
    out = warp_to(face.rig, face.mesh)
    assert np.abs(out.image.astype(int) - face.crop.astype(int)).max() <= 1


# ----------------------------------------------------------------------------- driving videos


def test_driver_video_with_no_face(tmp_path):
    from skimage import data

    frames = [np.ascontiguousarray(np.roll(data.coffee(), 8 * i, axis=1)) for i in range(4)]
    video = write_mp4(frames, tmp_path / "coffee.mp4")
    with pytest.raises(NoFaceError, match="no face"):
        track_video(video)


def test_driver_whose_face_leaves_the_frame_still_renders(avatar_pack, astronaut, tmp_path):
    empty = np.full_like(astronaut, 90)
    clip = [astronaut] * 4 + [empty] * 4 + [astronaut] * 2
    video = write_mp4(clip, tmp_path / "leaves.mp4")
    track = track_video(video)
    meshes = track.meshes
    assert meshes.shape == (10, 478, 3) and meshes.dtype == np.float32 and track.fps > 0
    assert track.found.all() and track.first_found == 0
    assert np.all(np.diff(track.timestamps_ms) > 0)
    assert np.isfinite(meshes).all()
    for t in range(4, 8):  # lost: the last face is held
        np.testing.assert_array_equal(meshes[t], meshes[3])
    with Avatar.create_from_pack(avatar_pack, precision="int8") as avatar:
        frames = avatar.drive(meshes)
    assert frames.shape == (10, 256, 256, 3) and frames.dtype == np.uint8
    for t in range(4, 8):
        np.testing.assert_array_equal(frames[t], frames[3])
