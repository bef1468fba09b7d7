"""Atomic writes: a file or a folder appears complete under its name, or not at all.

Every file rnncap writes for later use (checkpoints, vocabularies, caches, results) is written
under a temporary name beside its final place, flushed to disk, and renamed into place; a rename
inside one folder is atomic on POSIX, so a kill or a full disk at any moment leaves either the old
content or the new one, never half of either.

Temporary names are hidden and carry the writer's process id (``.NAME.tmp-PID-RANDOM``), so two
processes never share one, and :func:`remove_stale` can tell a dead writer's leftovers (removed)
from a live writer's work in progress (left alone).

It also gives a file's SHA-256 (:func:`sha256_file`), with which checkpoints, weights and
models are checked against what they should hold.

This module knows files, folders and renames. It does not know what any file holds.
"""

from __future__ import annotations

import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

__all__ = ["sha256_file", "write_bytes", "write_text", "write_with", "atomic_folder", "fsync_dir",
           "rename_durably", "temp_name", "remove_stale", "remove_tree"]

_TMP = ".tmp-"


def sha256_file(path: str | Path) -> str:
    """The hex SHA-256 of a file's bytes, read in 1 MiB pieces."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def temp_name(path: str | Path) -> Path:
    """A fresh hidden temporary name beside `path`: ``.NAME.tmp-PID-RANDOM``."""
    path = Path(path)
    return path.with_name(f".{path.name}{_TMP}{os.getpid()}-{secrets.token_hex(3)}")


def fsync_dir(folder: str | Path) -> None:
    """Make a rename inside `folder` durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def rename_durably(src: str | Path, dst: str | Path) -> Path:
    """Rename the finished, closed file `src` to `dst` so that it survives a power loss whole.

    Its bytes are synced before the rename (else the new name could point at a file whose data
    never reached the disk), and the folder after it (else the rename itself could be lost).
    """
    src, dst = Path(src), Path(dst)
    fd = os.open(src, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(src, dst)
    fsync_dir(dst.parent)
    return dst


def write_with(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(f)`` on a temporary file beside `path`, sync it, rename it to `path`.

    On any failure (a full disk, a kill signal turned into an exception) the temporary file is
    removed and `path` keeps what it held before.
    """
    path = Path(path)
    tmp = temp_name(path)
    try:
        with open(tmp, "w+b") as f:  # readable too: h5py reads back what it writes
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        _unlink(tmp)
        if err.errno is None or err.filename not in (str(tmp), tmp):
            raise
        # name the file the user asked for, not its temporary name
        raise type(err)(err.errno, err.strerror, str(path)) from None
    except BaseException:
        _unlink(tmp)
        raise
    fsync_dir(path.parent)
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    return write_with(path, lambda f: f.write(data))


def write_text(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    return write_bytes(path, text.encode("utf-8"))


@contextmanager
def atomic_folder(final: str | Path, *,
                  exists: str | Callable[[Path], str] = "error") -> Iterator[Path]:
    """Yield an empty temporary folder; rename it to `final` when the block ends without error.

    Args:
        final: where the folder ends up.
        exists: what to do when `final` exists by then (another process may have finished
            first): "error" raises FileExistsError, "replace" swaps the old folder out (renamed
            aside, then removed), "keep" keeps it and drops the new one; or a function of the
            existing folder that returns one of these.
    On an error inside the block, the temporary folder is removed and `final` is untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(final)
    tmp.mkdir()
    try:
        yield tmp
        while True:
            if not final.exists():
                try:
                    os.rename(tmp, final)  # fails if a folder appeared there meanwhile
                    break
                except OSError:
                    if not final.exists():
                        raise
            policy = exists(final) if callable(exists) else exists
            if policy == "keep":
                remove_tree(tmp)
                break
            if policy != "replace":
                raise FileExistsError(f"{final} already exists")
            old = temp_name(final)
            os.rename(final, old)
            remove_tree(old)
    except BaseException:
        remove_tree(tmp)
        raise
    fsync_dir(final.parent)


def remove_tree(path: str | Path) -> None:
    """Delete a folder so that a kill midway leaves no half-deleted folder under its name.

    The folder is first renamed to a hidden temporary name (atomic), then deleted; a kill during
    the deletion leaves only that hidden name, which :func:`remove_stale` cleans up later.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink() or not path.is_dir():
        _unlink(path)
        return
    if _TMP not in path.name:
        doomed = temp_name(path)
        try:
            os.rename(path, doomed)
        except OSError:
            doomed = path
        path = doomed
    shutil.rmtree(path, ignore_errors=True)


def remove_stale(folder: str | Path, name: str | None = None) -> list[Path]:
    """Remove the temporary files and folders that dead writers left in `folder`.

    Args:
        folder: where to look.
        name: only the leftovers of writes to this name (default: of any name).
    Returns:
        The paths removed. Leftovers of a process that still runs are kept.
    """
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    prefix = f".{name}{_TMP}" if name is not None else "."
    for p in folder.iterdir():
        if not p.name.startswith(prefix) or _TMP not in p.name:
            continue
        pid = p.name.rsplit(_TMP, 1)[1].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue
        if pid.isdigit() and int(pid) == os.getpid():
            continue  # this process's own writes in progress (threads)
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            _unlink(p)
        removed.append(p)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
