"""Checkpoints: a folder of JSON documents and pickle-free `.npz` arrays, written atomically.

A checkpoint is a folder::

    ckpt-00001200/
        manifest.json     format version, and the SHA-256 and size of every file below
        <name>.json       JSON documents (config, vocabulary, solver state, history ...)
        <name>.npz        named arrays (weights, optimizer moments ...), loaded with allow_pickle=False
        <name>/           copied folders (the feature extractor's specification)

It is first written under a temporary name beside its final place and renamed when complete, and a
run folder's ``checkpoints/latest`` pointer is replaced atomically after that, so a kill at any
moment leaves the previous checkpoint whole and pointed to. Reading checks the manifest, so a
truncated or edited file is reported by name instead of failing deep inside NumPy or JSON.

Nested state that mixes scalars and arrays (an optimizer's config, say) is stored with
:func:`pack`/:func:`unpack`: arrays go to an `.npz`, the rest to JSON, bit for bit.

This module knows files, JSON and arrays. It does not know models, optimizers or what the
documents mean.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CheckpointError", "Checkpoint", "write_checkpoint", "read_checkpoint",
           "save_to_run", "resolve", "pack", "unpack", "write_text_atomic", "FORMAT_VERSION"]

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
LATEST = "latest"


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, truncated or incompatible."""


@dataclass
class Checkpoint:
    """What :func:`read_checkpoint` returns: the folder's documents, arrays and sub-folders."""

    folder: Path
    documents: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    dirs: dict[str, Path] = field(default_factory=dict)


def pack(obj: Any, arrays: dict[str, np.ndarray], prefix: str = "") -> Any:
    """Replace every array (and NumPy scalar) in a nested structure by a reference into `arrays`.

    Returns the JSON-able structure; `arrays` receives the arrays under path-like keys.
    """
    if isinstance(obj, (np.ndarray, np.generic)):
        key = prefix or "value"
        arrays[key] = np.asarray(obj)
        return {"__array__": key, "scalar": isinstance(obj, np.generic)}
    if isinstance(obj, dict):
        for k in obj:
            if not isinstance(k, str) or "/" in k:
                raise TypeError(f"cannot store key {k!r} at {prefix!r}: keys must be strings without '/'")
        return {k: pack(v, arrays, f"{prefix}/{k}" if prefix else k) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [pack(v, arrays, f"{prefix}/{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix!r} in a checkpoint")


def unpack(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Inverse of :func:`pack`."""
    if isinstance(obj, dict):
        if "__array__" in obj:
            value = arrays[obj["__array__"]]
            return value[()] if obj.get("scalar") else value
        return {k: unpack(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unpack(v, arrays) for v in obj]
    return obj


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_synced(path: Path, write) -> None:
    with open(path, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
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


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write a small text file under a temporary name, then rename it into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    _write_synced(tmp, lambda f: f.write(text.encode()))
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return path


def write_checkpoint(folder: str | Path, *, documents: dict[str, Any],
                     arrays: dict[str, dict[str, np.ndarray]],
                     dirs: dict[str, str | Path] | None = None) -> Path:
    """Write a checkpoint folder atomically.

    Args:
        folder: where the checkpoint ends up. It must not exist yet.
        documents: name -> JSON-able object, written as `<name>.json`.
        arrays: name -> {key: array}, written as `<name>.npz` (no pickle).
        dirs: name -> an existing folder to copy in as `<name>/`.
    Returns:
        The checkpoint folder.
    """
    folder = Path(folder)
    if folder.exists():
        raise CheckpointError(f"refusing to overwrite existing checkpoint {folder}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        for name, doc in documents.items():
            text = json.dumps(doc, indent=1, allow_nan=False).encode()
            _write_synced(tmp / f"{name}.json", lambda f, t=text: f.write(t))
        for name, named in arrays.items():
            named = {k: np.asarray(v) for k, v in named.items()}
            for k, v in named.items():
                if v.dtype == object:
                    raise TypeError(f"array {name}/{k} has dtype object; checkpoints store no pickles")
            _write_synced(tmp / f"{name}.npz", lambda f, a=named: np.savez(f, **a))
        for name, src in (dirs or {}).items():
            shutil.copytree(src, tmp / name)
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        manifest = {"format_version": FORMAT_VERSION,
                    "files": {str(p.relative_to(tmp)): {"sha256": _digest(p), "bytes": p.stat().st_size}
                              for p in files}}
        text = json.dumps(manifest, indent=1).encode()
        _write_synced(tmp / MANIFEST, lambda f: f.write(text))
        os.rename(tmp, folder)
        _fsync_dir(folder.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def resolve(path: str | Path) -> Path:
    """The checkpoint folder meant by `path`: a checkpoint, a run folder or its checkpoints/ folder."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if (path / MANIFEST).exists():
        return path
    for pointer in (path / LATEST, path / "checkpoints" / LATEST):
        if pointer.is_file():
            target = pointer.parent / pointer.read_text().strip()
            if not (target / MANIFEST).exists():
                raise CheckpointError(f"{pointer} points to {target}, which is not a complete checkpoint")
            return target
    raise CheckpointError(f"{path} is not a checkpoint (no {MANIFEST}) and holds no checkpoints/{LATEST} pointer")


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read and verify a checkpoint (or the latest one of a run folder)."""
    folder = resolve(path)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        version, files = manifest["format_version"], manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{folder / MANIFEST} is unreadable or corrupt: {err}") from None
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{folder} has checkpoint format {version}; this rnncap reads format {FORMAT_VERSION}")
    for rel, meta in files.items():
        p = folder / rel
        if not isinstance(meta, dict) or not {"bytes", "sha256"} <= set(meta):
            raise CheckpointError(f"{folder / MANIFEST} is corrupt: bad entry for {rel}")
        if not p.is_file():
            raise CheckpointError(f"checkpoint file {p} is missing")
        if p.stat().st_size != meta["bytes"]:
            raise CheckpointError(f"checkpoint file {p} is truncated or changed: {p.stat().st_size} bytes, "
                                  f"expected {meta['bytes']}")
        if _digest(p) != meta["sha256"]:
            raise CheckpointError(f"checkpoint file {p} is corrupt: its SHA-256 does not match the manifest")
    ckpt = Checkpoint(folder)
    for rel in files:
        p = folder / rel
        if "/" in rel:
            top = rel.split("/", 1)[0]
            ckpt.dirs[top] = folder / top
        elif rel.endswith(".json"):
            ckpt.documents[rel[:-5]] = json.loads(p.read_text())
        elif rel.endswith(".npz"):
            try:
                with np.load(p, allow_pickle=False) as z:
                    ckpt.arrays[rel[:-4]] = {k: z[k] for k in z.files}
            except (ValueError, OSError, zipfile.BadZipFile) as err:
                raise CheckpointError(f"checkpoint file {p} cannot be read as arrays: {err}") from None
    return ckpt


def save_to_run(run_dir: str | Path, name: str, keep: int | None = None, **contents) -> Path:
    """Write checkpoint `run_dir/checkpoints/<name>`, point `latest` at it, keep the newest `keep`.

    `contents` are :func:`write_checkpoint`'s keyword arguments. Names sort in save order; a name
    already taken (the same iteration saved twice) gets a suffix, so no checkpoint is ever replaced.
    """
    base = Path(run_dir) / "checkpoints"
    if base.is_dir():  # leftovers of a write that was killed
        for stale in base.glob(".*.tmp"):
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink()
    final, k = base / name, 0
    while final.exists():
        k += 1
        final = base / f"{name}.{k}"
    write_checkpoint(final, **contents)
    pointer_tmp = base / f".{LATEST}.tmp"
    _write_synced(pointer_tmp, lambda f: f.write(final.name.encode()))
    os.replace(pointer_tmp, base / LATEST)
    _fsync_dir(base)
    if keep:
        done = sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")
                      and (p / MANIFEST).exists())
        for old in done[:-keep]:
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    return final
