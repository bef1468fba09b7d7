"""Checkpoints: a folder of JSON documents and pickle-free `.npz` arrays, written atomically.

A checkpoint is a folder::

    ckpt-00001200/
        manifest.json     format version, and the SHA-256 and size of every file below
        <name>.json       JSON documents (config, vocabulary, solver state, history ...)
        <name>.npz        named arrays (weights, optimizer moments ...), loaded with allow_pickle=False
        <name>/           copied folders (the feature extractor's specification)

It is first written under a temporary name beside its final place and renamed when complete
(rnncap.atomic), and a run folder's ``checkpoints/latest`` pointer is replaced atomically after
that, so a kill at any moment leaves the previous checkpoint whole and pointed to. Old checkpoints
are pruned by renaming them to a hidden name before deleting them, so a kill while pruning leaves
no half-deleted checkpoint under a real name; the next save removes such leftovers.

Reading checks the manifest (its own shape, then the size and SHA-256 of every file, each of which
must lie inside the checkpoint folder), so a truncated or edited file is reported by name instead of
failing deep inside NumPy or JSON. What the documents mean is checked by their users
(rnncap.schema for training checkpoints).

Nested state that mixes scalars and arrays (an optimizer's config, say) is stored with
:func:`pack`/:func:`unpack`: arrays go to an `.npz`, the rest to JSON, bit for bit.

This module knows files, JSON and arrays. It does not know models, optimizers or what the
documents mean.
"""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from tokenize import TokenError  # what numpy raises for a garbled .npy header
from typing import Any

import numpy as np

from rnncap import atomic
from rnncap.atomic import sha256_file

__all__ = ["CheckpointError", "Checkpoint", "write_checkpoint", "read_checkpoint",
           "save_to_run", "resolve", "find_latest", "pack", "unpack", "write_text_atomic",
           "FORMAT_VERSION"]

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
LATEST = "latest"
_NAME = re.compile(r"^(?P<stem>.+?-(?P<n>\d+))(?:\.(?P<k>\d+))?$")  # ckpt-00000040[.1]
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

#: The one atomic text writer (rnncap.atomic.write_text), under the name earlier callers use.
write_text_atomic = atomic.write_text


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


def unpack(obj: Any, arrays: dict[str, np.ndarray], where: str = "checkpoint") -> Any:
    """Inverse of :func:`pack`; a reference to an array that is not there is a CheckpointError."""
    if isinstance(obj, dict):
        if "__array__" in obj:
            key = obj["__array__"]
            if not isinstance(key, str) or key not in arrays:
                raise CheckpointError(f"{where} refers to array {key!r}, which is not stored")
            value = arrays[key]
            if obj.get("scalar"):
                if value.ndim != 0:
                    raise CheckpointError(f"{where}: array {key!r} should be a scalar, "
                                          f"has shape {value.shape}")
                return value[()]
            return value
        return {k: unpack(v, arrays, where) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unpack(v, arrays, where) for v in obj]
    return obj



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
    named_arrays = {}
    for name, named in arrays.items():
        named = {k: np.asarray(v) for k, v in named.items()}
        for k, v in named.items():
            if v.dtype == object:
                raise TypeError(f"array {name}/{k} has dtype object; checkpoints store no pickles")
        named_arrays[name] = named
    texts = {name: json.dumps(doc, indent=1, allow_nan=False).encode() for name, doc in documents.items()}
    with atomic.atomic_folder(folder) as tmp:
        for name, text in texts.items():
            atomic.write_bytes(tmp / f"{name}.json", text)
        for name, named in named_arrays.items():
            atomic.write_with(tmp / f"{name}.npz", lambda f, a=named: np.savez(f, **a))
        for name, src in (dirs or {}).items():
            shutil.copytree(src, tmp / name)
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        manifest = {"format_version": FORMAT_VERSION,
                    "files": {p.relative_to(tmp).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                              for p in files}}
        text = json.dumps(manifest, indent=1).encode()
        atomic.write_bytes(tmp / MANIFEST, text)
    return folder


def _sort_key(folder: Path) -> tuple:
    """Checkpoints in save order: by iteration, then by the suffix of a repeated save."""
    m = _NAME.match(folder.name)
    return (int(m["n"]), int(m["k"] or 0), folder.name) if m else (-1, 0, folder.name)


def _is_complete(folder: Path) -> bool:
    """A valid manifest and every file it lists present: a checkpoint that was fully written and
    not partly deleted. Whether the files are intact is :func:`read_checkpoint`'s check, which
    names a damaged file rather than passing over it."""
    try:
        files = _read_manifest(folder)
        return all((folder / rel).is_file() for rel in files)
    except (CheckpointError, OSError):
        return False


def _checkpoints(base: Path) -> list[Path]:
    """The checkpoint-named folders in a run's checkpoints/ folder, oldest first."""
    if not base.is_dir():
        return []
    found = [p for p in base.iterdir() if not p.name.startswith(".") and p.is_dir()
             and not p.is_symlink() and _NAME.match(p.name)]
    return sorted(found, key=_sort_key)


def find_latest(base: str | Path) -> tuple[Path | None, str | None]:
    """The checkpoint a run's `checkpoints/` folder points to, or its newest complete one.

    Returns:
        (folder or None when there is no complete checkpoint, a note saying why the `latest`
        pointer was not used, or None when it was).
    """
    base = Path(base)
    pointer = base / LATEST
    note = None
    if pointer.is_file() and not pointer.is_symlink():
        try:
            name = pointer.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            name = None
        # the pointer names a checkpoint folder right beside it, nothing else
        if name and "/" not in name and "\\" not in name and name not in (".", "..") \
                and _NAME.match(name) and (base / name).is_dir() and not (base / name).is_symlink():
            if _is_complete(base / name):
                return base / name, None
            note = f"{pointer} points to {name}, which is not a complete checkpoint"
        else:
            note = f"{pointer} does not name a checkpoint folder in {base}"
    elif base.is_dir():
        note = f"{pointer} is missing"
    complete = [p for p in _checkpoints(base) if _is_complete(p)]
    if not complete:
        return None, note
    return complete[-1], f"{note}; using {complete[-1].name}, the newest complete checkpoint"


def resolve(path: str | Path) -> Path:
    """The checkpoint folder meant by `path`: a checkpoint, a run folder or its checkpoints/ folder.

    In a run folder whose `latest` pointer is missing, broken or points outside its checkpoints/
    folder, the newest complete checkpoint is used.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if (path / MANIFEST).exists():
        return path
    bases = [path / "checkpoints"]
    if path.name == "checkpoints" or (path / LATEST).exists():
        bases.insert(0, path)
    for base in bases:
        if (base / LATEST).exists() or _checkpoints(base):
            folder, note = find_latest(base)
            if folder is None:
                raise CheckpointError(f"{base} holds no complete checkpoint ({note})")
            return folder
    raise CheckpointError(f"{path} is not a checkpoint (no {MANIFEST}) and holds no checkpoints/{LATEST} pointer")


def _read_manifest(folder: Path) -> dict[str, dict]:
    """The manifest's file table, after checking its shape; every path stays inside `folder`."""
    where = folder / MANIFEST
    try:
        manifest = json.loads(where.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as err:
        raise CheckpointError(f"{where} is unreadable or corrupt: {err}") from None
    if not isinstance(manifest, dict) or "format_version" not in manifest or "files" not in manifest:
        raise CheckpointError(f"{where} is corrupt: expected an object with format_version and files")
    version, files = manifest["format_version"], manifest["files"]
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise CheckpointError(f"{folder} has checkpoint format {version!r}; this rnncap reads format "
                              f"{FORMAT_VERSION}")
    if not isinstance(files, dict):
        raise CheckpointError(f"{where} is corrupt: 'files' must be an object of name -> "
                              f"{{sha256, bytes}}, got {type(files).__name__}")
    for rel, meta in files.items():
        parts = PurePosixPath(rel).parts
        if (not rel or rel.startswith("/") or "\\" in rel or any(p in ("..", ".") for p in parts)
                or rel == MANIFEST or rel != PurePosixPath(rel).as_posix()):
            raise CheckpointError(f"{where} is corrupt: file name {rel!r} is not a plain path inside "
                                  f"the checkpoint")
        if (not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str)
                or not _SHA256.match(meta["sha256"]) or not isinstance(meta.get("bytes"), int)
                or isinstance(meta["bytes"], bool) or meta["bytes"] < 0):
            raise CheckpointError(f"{where} is corrupt: the entry for {rel} must be "
                                  f"{{\"sha256\": 64 hex digits, \"bytes\": an integer >= 0}}")
    return files


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read and verify a checkpoint (or the latest one of a run folder)."""
    folder = resolve(path)
    files = _read_manifest(folder)
    root = folder.resolve()
    for rel, meta in files.items():
        p = folder / rel
        if p.is_symlink() or not p.resolve().is_relative_to(root):
            raise CheckpointError(f"checkpoint file {p} lies outside the checkpoint folder; refused")
        if not p.is_file():
            raise CheckpointError(f"checkpoint file {p} is missing")
        if p.stat().st_size != meta["bytes"]:
            raise CheckpointError(f"checkpoint file {p} is truncated or changed: {p.stat().st_size} bytes, "
                                  f"expected {meta['bytes']}")
        if sha256_file(p) != meta["sha256"]:
            raise CheckpointError(f"checkpoint file {p} is corrupt: its SHA-256 does not match the manifest")
    ckpt = Checkpoint(folder)
    for rel in files:
        p = folder / rel
        if rel.endswith(".npz"):  # the copied folders' arrays too (the feature extractor's)
            _check_stored(p)
        if "/" in rel:
            top = rel.split("/", 1)[0]
            ckpt.dirs[top] = folder / top
        elif rel.endswith(".json"):
            try:
                ckpt.documents[rel[:-5]] = json.loads(p.read_text(encoding="utf-8"))
            except (ValueError, RecursionError) as err:
                raise CheckpointError(f"checkpoint file {p} is not valid JSON: {err}") from None
        elif rel.endswith(".npz"):
            try:
                with np.load(p, allow_pickle=False) as z:
                    ckpt.arrays[rel[:-4]] = {k: z[k] for k in z.files}
            except (ValueError, OSError, EOFError, zipfile.BadZipFile, TokenError) as err:
                raise CheckpointError(f"checkpoint file {p} cannot be read as arrays: {err}") from None
    return ckpt


def _check_stored(path: Path) -> None:
    """Refuse an `.npz` with compressed members: rnncap writes arrays uncompressed (np.savez), so
    each array is at most as big as the file, while a compressed member can inflate a small edited
    file into gigabytes (a zip bomb) before anything could check its shape."""
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if info.compress_type != zipfile.ZIP_STORED or info.file_size > path.stat().st_size:
                    raise CheckpointError(f"checkpoint file {path}: member {info.filename} is "
                                          f"compressed ({info.file_size} bytes unpacked); rnncap "
                                          f"writes and reads uncompressed arrays only")
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"checkpoint file {path} cannot be read as arrays: {err}") from None


def _os_message(err: OSError) -> str:
    """One line for an OSError (shutil.Error holds a list of (src, dst, why) instead)."""
    if isinstance(err, shutil.Error) and err.args and isinstance(err.args[0], list) and err.args[0]:
        first = err.args[0][0]
        return str(first[-1]) if isinstance(first, tuple) else str(first)
    if err.strerror:
        return f"{err.strerror} ({err.filename})" if err.filename else err.strerror
    return str(err)


def save_to_run(run_dir: str | Path, name: str, keep: int | None = None, **contents) -> Path:
    """Write checkpoint `run_dir/checkpoints/<name>`, point `latest` at it, keep the newest `keep`.

    `contents` are :func:`write_checkpoint`'s keyword arguments. Names sort in save order; a name
    already taken (the same iteration saved twice) gets a suffix, so no checkpoint is ever replaced.
    Leftovers of a killed write or prune are removed first.

    Raises:
        CheckpointError: the checkpoint could not be written (a full disk, a read-only folder);
            the message names the cause and the previous checkpoint, which is kept.
    """
    base = Path(run_dir) / "checkpoints"
    previous = None
    try:
        base.mkdir(parents=True, exist_ok=True)
        atomic.remove_stale(base)
        previous, _ = find_latest(base)
        for old in _checkpoints(base):  # half-deleted by an interrupted prune
            if old != previous and not (old / MANIFEST).exists():
                atomic.remove_tree(old)
        final, k = base / name, 0
        while final.exists():
            k += 1
            final = base / f"{name}.{k}"
        write_checkpoint(final, **contents)
        atomic.write_text(base / LATEST, final.name)
    except OSError as err:
        kept = (f"the previous checkpoint {previous} is kept" if previous is not None
                else "no checkpoint of this run has been saved yet")
        raise CheckpointError(f"cannot write checkpoint {base / name}: {_os_message(err)}; {kept}") from None
    if keep:
        done = [p for p in _checkpoints(base) if (p / MANIFEST).exists()]
        for old in done[:-keep]:
            if old != final:
                atomic.remove_tree(old)
    return final
