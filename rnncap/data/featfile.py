"""The HDF5 features file that ``rnncap features`` writes and the loaders read.

One row per image, in the dataset's order::

    features   float16|float32 (I, D)        pooled features (when asked for)
    grid       float16|float32 (I, G, G, C)  grid features (when asked for)
    status     uint8 (I,)                    0 not yet computed, 1 done, 2 unreadable (skipped)
    files      str (I,)                      image paths, relative to the dataset root
    image_ids  int64 (I,)                    COCO image ids (COCO layout only)
    extractor/                               the feature extractor: attribute ``spec`` (JSON)
                                             and one dataset per saved array
    attributes: rnncap_features (format version), backbone, preprocessing (JSON),
                weights_sha256, fingerprint, job (JSON: what was asked for), complete, skipped

Crash safety without a journal: every dataset is created at its full size, contiguous and
allocated at creation, in a temporary file that is renamed to ``<out>.partial`` when whole. After
that, writing a chunk of rows only overwrites bytes at fixed places in the file; no HDF5 metadata
changes, so a kill cannot leave the structure half-updated. A chunk's rows are written and flushed
before its ``status`` entries, so a kill loses at most the chunks in flight and a rerun computes
exactly the rows whose status is still 0. When every row is done the file gets its final
attributes and is renamed to ``<out>``; a file under the final name is always complete.

This module does NOT know images, extractors' mathematics or data layouts; it stores arrays and
their provenance.
"""

import hashlib
import json
import os
from typing import NamedTuple

import numpy as np

from rnncap import atomic

FORMAT_VERSION = 1
PENDING, DONE, SKIPPED = 0, 1, 2


def fingerprint(spec, arrays):
    """SHA-256 of an extractor's saved form: its JSON spec and every array's name, dtype, shape, bytes.

    Two extractors with the same fingerprint map pixels to the same features.
    """
    h = hashlib.sha256(json.dumps(spec, sort_keys=True).encode())
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def describe(spec, arrays):
    """Provenance attributes of an extractor: backbone name, preprocessing, weights hash, fingerprint.

    ``weights_sha256`` is the spec's own (a pretrained backbone's spec names the SHA-256 of the
    weights file in its package); an extractor whose arrays are its weights (the built-in one)
    gets the fingerprint.
    """
    fp = fingerprint(spec, arrays)
    prep = spec.get("preprocessing", spec.get("options", {}))
    weights = spec.get("weights")
    sha = weights.get("sha256", fp) if isinstance(weights, dict) else fp
    return {"backbone": str(spec.get("name")), "preprocessing": json.dumps(prep, sort_keys=True),
            "weights_sha256": str(sha), "fingerprint": fp}


def _h5py():
    import h5py

    return h5py


def _early_dcpl():
    """Dataset creation properties: storage allocated at creation, never pre-filled."""
    h5py = _h5py()
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    return dcpl


def create(path, *, files, job, spec, arrays, pooled_dim=None, grid_shape=None,
           dtype="float16", image_ids=None):
    """Create a features file with every dataset at full size and no row done; atomic.

    Args:
        path: where the file goes (written under a temporary name and renamed,
            :func:`rnncap.atomic.write_with`).
        files: I image paths (relative to the dataset root).
        job: JSON-able description of what is computed (compared on resume).
        spec, arrays: the extractor's saved form (``extractor.json`` and ``arrays.npz``).
        pooled_dim: D, or None for no pooled features.
        grid_shape: (G, G, C), or None for no grid.
        dtype: 'float16' or 'float32'.
        image_ids: COCO image ids (I,), or None.
    """
    h5py = _h5py()
    path = os.fspath(path)
    n = len(files)
    # leftovers of a create that was killed (hidden, named by atomic.temp_name)
    atomic.remove_stale(os.path.dirname(path) or ".", os.path.basename(path))

    def write(fh):
        with h5py.File(fh, "w") as f:
            if pooled_dim is not None:
                f.create_dataset("features", (n, pooled_dim), dtype=dtype, dcpl=_early_dcpl())
            if grid_shape is not None:
                f.create_dataset("grid", (n, *grid_shape), dtype=dtype, dcpl=_early_dcpl())
            f.create_dataset("status", data=np.zeros(n, np.uint8), dcpl=_early_dcpl())
            f.create_dataset("files", data=np.array(files, dtype=object),
                             dtype=h5py.string_dtype())
            if image_ids is not None:
                f.create_dataset("image_ids", data=np.asarray(image_ids, dtype=np.int64))
            g = f.create_group("extractor")
            g.attrs["spec"] = json.dumps(spec, sort_keys=True)
            for k, a in arrays.items():
                g.create_dataset(k, data=a)
            f.attrs["rnncap_features"] = FORMAT_VERSION
            f.attrs["job"] = json.dumps(job, sort_keys=True)
            f.attrs["complete"] = False
            for k, v in describe(spec, arrays).items():
                f.attrs[k] = v

    atomic.write_with(path, write)
    return path


#: Datasets of rows that only some files have (the others every file has).
OPTIONAL_DATASETS = ("features", "grid", "image_ids")


def layout(n, *, pooled_dim=None, grid_shape=None, dtype="float16", image_ids=False):
    """{dataset: (shape, dtype name)} of the file :func:`create` makes with these arguments for
    ``n`` images ('files' has the dtype name 'str')."""
    out = {}
    if pooled_dim is not None:
        out["features"] = ((n, int(pooled_dim)), str(np.dtype(dtype)))
    if grid_shape is not None:
        out["grid"] = ((n, *(int(x) for x in grid_shape)), str(np.dtype(dtype)))
    out["status"] = ((n,), "uint8")
    out["files"] = ((n,), "str")
    if image_ids:
        out["image_ids"] = ((n,), "int64")
    return out


def _held(f, key):
    """(shape, dtype name) of dataset ``key`` of an open file; None if absent; 'a group'."""
    h5py = _h5py()
    if key not in f:
        return None
    ds = f[key]
    if not isinstance(ds, h5py.Dataset):
        return "a group"
    kind = "str" if h5py.check_string_dtype(ds.dtype) is not None else str(ds.dtype)
    return tuple(ds.shape) if ds.shape is not None else None, kind


def mismatch(path, expected):
    """The first dataset of the file that differs from ``expected`` (a :func:`layout`), in words
    naming it, what the file holds and what is expected; None when the file agrees.

    A dataset of :data:`OPTIONAL_DATASETS` that ``expected`` lacks counts as a difference too.
    """
    def words(held, absent):
        if held is None or isinstance(held, str):
            return held or absent
        shape, kind = held
        return f"{kind} {shape}"

    with _h5py().File(os.fspath(path), "r") as f:
        extra = [k for k in OPTIONAL_DATASETS if k not in expected]
        for key in (*expected, *extra):
            held, want = _held(f, key), expected.get(key)
            if held != want:
                return (f"its '{key}' is {words(held, 'missing')}, expected "
                        f"{words(want, 'none')}")
    return None


class Writer:
    """Rows into a features file made by :func:`create`, chunk by chunk (see module docstring)."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self.f = _h5py().File(self.path, "r+")
        self.status = self.f["status"][()]  # (I,) uint8, kept in step with the file

    def pending(self):
        """Row numbers not yet computed, ascending."""
        return np.flatnonzero(self.status == PENDING)

    def write(self, rows, pooled=None, grid=None, skipped=()):
        """Store one chunk.

        Args:
            rows: ascending row numbers whose features are given.
            pooled, grid: their features, aligned with ``rows`` (or None).
            skipped: row numbers to record as unreadable.
        """
        rows = np.asarray(rows, dtype=np.int64)
        skipped = np.asarray(skipped, dtype=np.int64)
        for key, given in (("features", pooled), ("grid", grid)):
            if given is None:
                continue
            ds = self.f.get(key)
            held = ds.shape[1:] if isinstance(ds, _h5py().Dataset) and ds.shape else None
            if held != np.shape(given)[1:]:  # h5py's own error would be a bare broadcast error
                raise ValueError(f"{self.path}: '{key}' holds rows of shape {held}, got rows of "
                                 f"shape {np.shape(given)[1:]} to write")
        if rows.size:
            contiguous = rows[-1] - rows[0] + 1 == rows.size
            sel = slice(int(rows[0]), int(rows[-1]) + 1) if contiguous else rows
            if pooled is not None:
                self.f["features"][sel] = pooled
            if grid is not None:
                self.f["grid"][sel] = grid
            self.f.flush()  # the rows before their status: a kill never marks unwritten rows done
        self.status[rows] = DONE
        self.status[skipped] = SKIPPED
        touched = np.concatenate([rows, skipped])
        if touched.size:
            lo, hi = int(touched.min()), int(touched.max()) + 1
            self.f["status"][lo:hi] = self.status[lo:hi]
            self.f.flush()

    def finish(self, out):
        """Mark complete and rename to ``out``; every row must be done or skipped."""
        if (self.status == PENDING).any():
            raise RuntimeError(f"{self.path}: {int((self.status == PENDING).sum())} rows not done")
        files = self.f["files"].asstr()[()]
        self.f.attrs["skipped"] = json.dumps([str(x) for x in files[self.status == SKIPPED]])
        self.f.attrs["complete"] = True
        self.close()
        # Not atomic.write_with: the .partial file is filled over many runs under a name a rerun
        # finds, so only this last step is a rename, made durable as atomic.py's are.
        atomic.rename_durably(self.path, out)

    def close(self):
        if self.f:
            self.f.close()
            self.f = None


def read_attrs(path):
    """The file's provenance attributes as a dict (JSON attributes decoded), or None if it has none."""
    h5py = _h5py()
    with h5py.File(os.fspath(path), "r") as f:
        if "rnncap_features" not in f.attrs:
            return None
        out = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
    for k in ("job", "preprocessing", "skipped"):
        if isinstance(out.get(k), str):
            out[k] = _json_attr(out[k], path, f"attribute '{k}'")
    return out


def _json_attr(text, path, what):
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as err:
        raise ValueError(f"{path}: {what} is not valid JSON ({type(err).__name__}: {err})") from None


def read_extractor(path):
    """(spec, arrays) of the extractor stored in a features file, or None if it has none.

    Raises:
        ValueError naming the file when the group is not what ``create`` writes: a JSON object
        in attribute ``spec`` and one numeric dataset per array.
    """
    h5py = _h5py()
    with h5py.File(os.fspath(path), "r") as f:
        if "extractor" not in f:
            return None
        g = f["extractor"]
        if not isinstance(g, h5py.Group) or not isinstance(g.attrs.get("spec"), str):
            raise ValueError(f"{path}: 'extractor' must be a group with a JSON attribute 'spec' "
                             f"and one dataset per array, as `rnncap features` writes it")
        spec = _json_attr(g.attrs["spec"], path, "the extractor's attribute 'spec'")
        if not isinstance(spec, dict):
            raise ValueError(f"{path}: the extractor's attribute 'spec' must be a JSON object, "
                             f"got {type(spec).__name__}")
        arrays = {k: _dataset(g, k, f"{path}: extractor") for k in g.keys()}
    for k, a in arrays.items():
        if a.dtype.kind not in "biuf":
            raise ValueError(f"{path}: the extractor's array '{k}' has dtype {a.dtype}; expected numbers")
    return spec, arrays


def read_status(path):
    """uint8 (I,) row status of a features file, or None if it has none."""
    h5py = _h5py()
    with h5py.File(os.fspath(path), "r") as f:
        return f["status"][()] if "status" in f else None


def _true(flag) -> bool:
    """An HDF5 boolean attribute, whatever NumPy type it comes back as (never an array's truth)."""
    return isinstance(flag, (bool, np.bool_)) and bool(flag)


def _dataset(f, key, path, strings=False):
    """Dataset ``key`` of an open file as an array (strings decoded), None if absent; a ValueError
    naming the file if it is a group or cannot be read."""
    if key not in f:
        return None
    h5py = _h5py()
    if not isinstance(f[key], h5py.Dataset):
        raise ValueError(f"{path}: '{key}' must be an array (an HDF5 dataset), got a group")
    try:
        if strings:
            if h5py.check_string_dtype(f[key].dtype) is None:
                raise ValueError(f"{path}: 'files' must hold strings, got {f[key].dtype}")
            return f[key].asstr()[()]
        return f[key][()]
    except (OSError, TypeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: '{key}' cannot be read ({err})") from None


class CaptionRows(NamedTuple):
    """Which rows of a features file to caption, before any feature is read."""

    key: str               # the dataset: "features" (pooled) or "grid"
    rows: np.ndarray       # (n,) int64 ascending row numbers the file marks computed
    names: list            # n image paths, relative to the dataset root (the file's ``files``)
    skipped: list          # paths of the images the file records as unreadable (left out)


class Computed(NamedTuple):
    """The rows of a features file that were computed, for captioning them."""

    features: np.ndarray   # (n, D) pooled, or (n, G*G, C) grids with cells in reading order
    names: list            # n image paths, relative to the dataset root (the file's ``files``)
    skipped: list          # paths of the images the file records as unreadable (left out)


def caption_rows(path, *, grid: bool):
    """The rows of a file ``rnncap features`` wrote that can be captioned, and their names.

    Args:
        path: the HDF5 file.
        grid: the ``grid`` dataset (for an attention model) instead of ``features``.

    Returns:
        a :class:`CaptionRows`, or None when the file is HDF5 but not an rnncap features file.

    Raises:
        ValueError naming the file: not HDF5, unfinished, without the dataset asked for (and the
        flag of ``rnncap features`` that makes it), or a dataset of the wrong shape.
    """
    h5py = _h5py()
    path = os.fspath(path)
    key, rank = ("grid", 4) if grid else ("features", 2)
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path}: not a readable HDF5 file ({err})") from None
    with f:
        if "rnncap_features" not in f.attrs:
            return None
        status = _dataset(f, "status", path)
        if status is not None and (status.ndim != 1 or status.dtype.kind not in "iu"):
            raise ValueError(f"{path}: 'status' must be a vector (I,) of integers, got "
                             f"{status.dtype} {status.shape}")
        if not _true(f.attrs.get("complete", False)):
            pending = "" if status is None else f" ({int((status == PENDING).sum())} of {len(status)} rows not computed)"
            raise ValueError(f"{path} is an unfinished features file{pending}; finish it by running "
                             f"`rnncap features` again with the same flags")
        if not isinstance(f.get(key), h5py.Dataset):
            has = [k for k in ("features", "grid") if isinstance(f.get(k), h5py.Dataset)]
            need = ("an attention model needs grids: make them with `rnncap features --grid`" if grid
                    else "a CaptioningRNN needs pooled features: make them with `rnncap features` "
                         "without --no-pooled")
            raise ValueError(f"{path} has no '{key}' dataset (it has {has}); {need}")
        shape = f[key].shape
        if status is None and shape:  # a complete file without a status column: every row done
            status = np.full(shape[0], DONE, np.uint8)
        if shape is None or len(shape) != rank or len(status) != shape[0] or 0 in shape[1:]:
            want = "(I, G, G, C)" if grid else "(I, D)"
            raise ValueError(f"{path}: '{key}' must have shape {want} with one row per entry of "
                             f"'status' ({'?' if status is None else len(status)}), got {shape}")
        files = _dataset(f, "files", path, strings=True)
        if files is None:
            files = np.array([f"{os.path.basename(path)}[{i}]" for i in range(len(status))])
        elif files.shape != status.shape:
            raise ValueError(f"{path}: 'files' must hold one image path per entry of 'status' "
                             f"({len(status)}), got shape {files.shape}")
    done = status == DONE
    return CaptionRows(key, np.flatnonzero(done), [str(x) for x in files[done]],
                       [str(x) for x in files[status == SKIPPED]])


def read_rows(path, key: str, rows) -> np.ndarray:
    """Rows ``rows`` (ascending) of dataset ``key``: (n, D), or grids (n, G*G, C) for ``grid``.

    Reads the span from the first row to the last and keeps the rows asked for, so a few
    skipped rows cost no per-row HDF5 selection. Raises ValueError naming the file for data
    that are not real numbers.
    """
    from rnncap.data.layout import check_feature_array

    h5py = _h5py()
    path = os.fspath(path)
    rows = np.asarray(rows, dtype=np.int64)
    with h5py.File(path, "r") as f:
        ds = f[key]
        if not rows.size:
            a = np.zeros((0,) + ds.shape[1:], ds.dtype)
        else:
            try:
                a = ds[int(rows[0]):int(rows[-1]) + 1]
            except (OSError, TypeError) as err:
                raise ValueError(f"{path}: '{key}' cannot be read ({err})") from None
            if len(a) != rows.size:
                a = a[rows - rows[0]]
    if key == "grid":  # (n, G, G, C) -> (n, G*G, C), reading order, as the loaders read it
        a = a.reshape(a.shape[0], a.shape[1] * a.shape[2], a.shape[3])
    return check_feature_array(a, path, f"'{key}'", grid_ok=True)


def read_computed(path, *, grid: bool):
    """The computed rows of a file ``rnncap features`` wrote: pooled features, or grids.

    Returns a :class:`Computed`, or None when the file is HDF5 but not an rnncap features file;
    raises what :func:`caption_rows` and :func:`read_rows` raise.
    """
    which = caption_rows(path, grid=grid)
    if which is None:
        return None
    return Computed(read_rows(path, which.key, which.rows), which.names, which.skipped)
