"""Reading untrusted files and writing outputs without destroying a user's files.

Reading: a pack or a photo may name a FIFO (an open for reading waits for a writer),
``/dev/zero`` (never ends) or a link. Every file is therefore opened with ``O_NONBLOCK``,
checked with ``fstat`` to be a regular file, and capped in size before one byte is read.

Writing: every output goes to a temporary name beside its target and is renamed into
place when complete, so a failed or interrupted command leaves the old file as it was.
An existing target is refused unless ``force`` is given, and ``force`` replaces only the
files the command itself writes: never a folder's other files.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from talkinghead.errors import InvalidInputError, OutputExistsError, TalkingHeadError

# Caps, shared with bindings/src/pack.cpp: a manifest is a few kB, a model a few MB.
MAX_MANIFEST_BYTES = 16 << 20
MAX_PACK_FILE_BYTES = 1 << 30
# Decoded parity arrays (inputs and reference outputs of a few frames).
MAX_PARITY_BYTES = 256 << 20
_CHUNK = 1 << 20


# ----------------------------------------------------------------------------- reading


def open_regular(
    path: str | os.PathLike[str],
    max_bytes: int,
    error: type[TalkingHeadError],
    *,
    follow_links: bool = False,
) -> int:
    """An fd of ``path`` opened without blocking, after fstat shows a regular file <= ``max_bytes``.

    Raises ``error`` naming the problem (missing, a link when ``follow_links`` is False, a
    FIFO or device, too large). The caller closes the fd.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow_links:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise error(f"file not found: {path}") from None
    except OSError as e:
        if not follow_links and os.path.islink(path):
            raise error(f"{path} is a symbolic link") from None
        raise error(f"cannot open {path}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{path} is not a regular file")
        if st.st_size > max_bytes:
            raise error(f"{path} is too large ({st.st_size} bytes, limit {max_bytes})")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _chunks(
    fd: int, max_bytes: int, path: object, error: type[TalkingHeadError]
) -> Iterator[bytes]:
    total = 0
    while chunk := os.read(fd, _CHUNK):
        total += len(chunk)
        if total > max_bytes:  # the file grew after fstat
            raise error(f"{path} is too large (more than {max_bytes} bytes)")
        yield chunk


def read_regular(
    path: str | os.PathLike[str],
    max_bytes: int,
    error: type[TalkingHeadError],
    *,
    follow_links: bool = False,
) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (see :func:`open_regular`)."""
    fd = open_regular(path, max_bytes, error, follow_links=follow_links)
    try:
        return b"".join(_chunks(fd, max_bytes, path, error))
    except OSError as e:
        raise error(f"cannot read {path}: {e.strerror or e}") from None
    finally:
        os.close(fd)


def sha256_regular(
    path: str | os.PathLike[str], max_bytes: int, error: type[TalkingHeadError]
) -> str:
    """Hex sha256 of a regular file (no links), read in 1 MB chunks."""
    fd = open_regular(path, max_bytes, error)
    digest = hashlib.sha256()
    try:
        for chunk in _chunks(fd, max_bytes, path, error):
            digest.update(chunk)
    except OSError as e:
        raise error(f"cannot read {path}: {e.strerror or e}") from None
    finally:
        os.close(fd)
    return digest.hexdigest()


def check_regular(
    path: str | os.PathLike[str],
    max_bytes: int,
    error: type[TalkingHeadError],
    *,
    follow_links: bool = True,
) -> None:
    """Raise ``error`` unless ``path`` is a regular file of at most ``max_bytes``.

    For files a library then opens by name (Pillow, FFmpeg): a user's photo may be a link,
    but never a FIFO or a device.
    """
    os.close(open_regular(path, max_bytes, error, follow_links=follow_links))


# ----------------------------------------------------------------------------- writing


def _is_empty_dir(p: Path) -> bool:
    with os.scandir(p) as it:
        return next(it, None) is None


def check_output_file(path: str | os.PathLike[str], force: bool, flag: str = "--force") -> Path:
    """``path`` as a Path, once it is known that writing it destroys nothing unasked.

    Raises OutputExistsError when a file is there and ``force`` is False, and
    InvalidInputError when it is a folder or something else that is not a file, or when
    its folder exists but cannot be written. Call it before any expensive step.
    """
    p = Path(path)
    if p.is_dir():
        raise InvalidInputError(f"{p} is a folder, expected a file name")
    if p.exists() or p.is_symlink():
        if not (p.is_file() or p.is_symlink()):
            raise InvalidInputError(f"{p} exists and is not a regular file")
        if not force:
            raise OutputExistsError(f"{p} exists; pass {flag} to replace it")
    _check_parent(p)
    return p


def check_output_folder(path: str | os.PathLike[str], force: bool, flag: str = "--force") -> Path:
    """``path`` as a Path, once it is known to be absent, an empty folder, or ``force`` given.

    With ``force`` a non-empty folder is accepted: :func:`output_folder` then replaces only
    the files the command writes and leaves every other file there.
    """
    p = Path(path)
    if p.exists() or p.is_symlink():
        if p.is_symlink() or not p.is_dir():
            raise InvalidInputError(f"{p} exists and is not a folder")
        if not _is_empty_dir(p) and not force:
            raise OutputExistsError(
                f"{p} exists and is not empty; pass {flag} to replace the files this command "
                "writes there (other files are kept)"
            )
        if not os.access(p, os.W_OK | os.X_OK):
            raise InvalidInputError(f"cannot write into {p}: permission denied")
    else:
        _check_parent(p)
    return p


def _check_parent(p: Path) -> None:
    parent = p.parent
    while not parent.exists():  # created later; the nearest existing ancestor must be writable
        if parent == parent.parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        raise InvalidInputError(f"cannot write {p}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InvalidInputError(f"cannot write {p}: {parent} is not writable")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mkdir(p: Path) -> None:
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InvalidInputError(f"cannot create the folder {p}: {e.strerror or e}") from None


@contextlib.contextmanager
def output_file(path: str | os.PathLike[str], force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); rename it onto ``path`` on success.

    The temporary file is removed on every other path, Ctrl-C included.
    """
    p = check_output_file(path, force)
    _mkdir(p.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.stem}.", suffix=f".tmp{p.suffix}", dir=p.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp's 0600 is for the temporary only
        yield tmp_path
        if not force and (p.exists() or p.is_symlink()):  # appeared while we worked
            raise OutputExistsError(f"{p} exists; pass --force to replace it")
        os.replace(tmp_path, p)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


@contextlib.contextmanager
def output_folder(path: str | os.PathLike[str], force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success move its files into ``path``.

    An absent or empty target is replaced by the temporary folder in one rename. With
    ``force`` and a non-empty target, each written file replaces its namesake there and
    every other file stays. The temporary folder is removed on every path.
    """
    p = check_output_folder(path, force)
    _mkdir(p.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 is for the temporary only
        yield tmp
        if p.is_dir() and _is_empty_dir(p):
            p.rmdir()
        if not p.exists():
            os.rename(tmp, p)
            return
        if not force:
            raise OutputExistsError(f"{p} exists and is not empty; pass --force")
        for dirpath, _, filenames in os.walk(tmp):
            rel = Path(dirpath).relative_to(tmp)
            _mkdir(p / rel)
            for fn in filenames:
                os.replace(Path(dirpath) / fn, p / rel / fn)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


__all__ = [
    "MAX_MANIFEST_BYTES",
    "MAX_PACK_FILE_BYTES",
    "MAX_PARITY_BYTES",
    "check_output_file",
    "check_output_folder",
    "check_regular",
    "open_regular",
    "output_file",
    "output_folder",
    "read_regular",
    "sha256_regular",
]
