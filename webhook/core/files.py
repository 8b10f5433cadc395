"""The data dir's files and the credential files: private modes, no symlinks in the data dir,
durable directory entries."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import structlog

from webhook.errors import ConfigError, StorageError

__all__ = ["ensure_private_dir", "fsync_dir", "open_private", "read_secret_file", "replace_private"]

log = structlog.get_logger(__name__)

_FILE_MODE = 0o600
_DIR_MODE = 0o700


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) with mode 0700; tighten it if we own it and it is wider."""
    path.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid == os.geteuid() and info.st_mode & 0o077:
        path.chmod(_DIR_MODE)
        log.warning("data_dir.permissions_tightened", path=str(path))


def open_private(path: Path, flags: int, mode: int = _FILE_MODE) -> int:
    """``os.open`` for a file of the data dir: never through a symlink, only a regular file.

    Whoever can plant a link in the data dir could otherwise have us append records to,
    chmod, truncate or replay a file elsewhere. Raises StorageError naming the file."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StorageError(f"{path} is a symbolic link; refusing to follow it") from None
        if exc.errno in (errno.EISDIR, errno.ENXIO):  # a directory; a FIFO with no reader
            raise StorageError(f"{path} is not a regular file") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StorageError(f"{path} is not a regular file")
    os.set_blocking(fd, True)
    return fd


def read_secret_file(path: Path, what: str, *, max_bytes: int) -> bytes:
    """A credential file's bytes (at most ``max_bytes``), if only its owner (and its group,
    read-only) may read it; ``ConfigError`` names ``what`` and ``path`` otherwise. Raises
    ``OSError`` when it cannot be opened.

    Symlinks are followed, unlike in the data dir: a Kubernetes Secret volume mounts each key
    as a link into ``..data/``, and grants group read to the pod's fsGroup so that a non-root
    container can read it. Anything for others, or group write, is refused."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ConfigError(f"{what} {path} is not a regular file")
        if mode & 0o027:
            raise ConfigError(
                f"{what} {path} is accessible by others or writable by its group "
                f"(mode {stat.S_IMODE(mode):04o}); restrict it to 0600 (or 0440 in a Secret volume)"
            )
        chunks = []
        size = 0
        while size < max_bytes and (chunk := os.read(fd, max_bytes - size)):
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_private(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically: written whole and fsync'd to a temporary file
    beside it (mode 0600, no symlink followed), then renamed over it. A reader sees the old
    content or the new, never a part; fsync the directory too where the rename must survive a
    power loss."""
    tmp = path.with_suffix(".tmp")
    fd = open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
