"""Typed exceptions raised by every public entry point.

Each names what was wrong, so that a caller never sees a traceback from deep
inside a native library. All derive from :class:`TalkingHeadError`.
"""

from __future__ import annotations


class TalkingHeadError(Exception):
    """Base class of every error the SDK raises on purpose."""


class InvalidInputError(TalkingHeadError, ValueError):
    """An argument has the wrong type, shape, dtype, range or value."""


class ImageReadError(TalkingHeadError, OSError):
    """An image or video file is missing, unreadable or not decodable."""


class NoFaceError(TalkingHeadError):
    """The tracker found no face where one was required."""


class ModelAssetError(TalkingHeadError, OSError):
    """A model asset (e.g. face_landmarker.task) is missing or fails its hash check."""


class CheckpointError(TalkingHeadError):
    """A weights file is missing, corrupt, or belongs to another model variant."""


class PackError(TalkingHeadError):
    """An avatar pack is malformed: bad manifest, unknown schema, missing file."""


class PackIntegrityError(PackError):
    """A file in an avatar pack does not match the sha256 in its manifest."""


class ParityError(PackError):
    """A pack's model does not reproduce its reference outputs within the manifest's tolerance."""


class BackendError(TalkingHeadError):
    """A runtime backend is unavailable or failed to load or run a model."""


class TimestampError(InvalidInputError):
    """Timestamps handed to a VIDEO or LIVE_STREAM tracker or avatar did not increase."""


class CameraError(ImageReadError):
    """A camera is absent, cannot be opened, or stopped delivering frames."""


class OutputExistsError(InvalidInputError):
    """An output file or a non-empty output folder exists and ``force`` was not given."""


class SignatureError(PackError):
    """A pack is unsigned, or not signed by a trusted key, where a signature is required."""


class ContentCredentialsError(TalkingHeadError):
    """A C2PA manifest could not be made (c2pa-python missing, or it refused the credentials)."""
