"""Atomic writes: a file is either its old self or complete, never half-written.

Write to a temporary name in the same folder, flush and fsync it, rename it
over the target (atomic on POSIX), then fsync the folder so the rename itself
survives a power cut. On any failure, the temporary file is removed and the
target is untouched.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def temporary_name(path: Path) -> Path:
    """The hidden sibling a write of ``path`` goes through (one per process)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write ``path`` through (by any means: a database,
    a library's save call); on success it is fsynced and renamed over ``path``."""
    path = Path(path)
    tmp = temporary_name(path)
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_folder(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def open_atomic(path: Path, mode: str = "w") -> Iterator[IO]:
    """``open(path, mode)`` that replaces ``path`` only once the block completes."""
    with replacing(path) as tmp, open(tmp, mode) as handle:
        yield handle
        handle.flush()


def write_text(path: Path, text: str) -> None:
    with open_atomic(path, "w") as handle:
        handle.write(text)
