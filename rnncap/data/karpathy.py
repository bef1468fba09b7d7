"""Karpathy-split ``dataset.json`` (neuraltalk's format) -> the data dictionary.

``dataset.json`` is ``{"images": [...]}``; each image has ``split``
(train/val/test, or restval in the COCO split), ``filename`` (and optionally
``filepath``, a folder relative to the dataset root), ``imgid`` and
``sentences``, each with ``raw`` text and/or ``tokens``. rnncap's shapes
dataset adds ``objects`` (the ground truth), which becomes ``s_truth``.

Features come from one file with one row per image, in the order of the
``images`` list: ``.npy`` (I, D), ``.h5`` with dataset ``features`` (the file
``rnncap features`` writes, whose skipped images are left out and whose
feature extractor is kept for the checkpoint), or neuraltalk's own
``vgg_feats.mat`` (``feats`` (D, I), column ``imgid`` for each image; read with
scipy, an optional dependency). Without a features file, features are computed
from the image files with the built-in extractor (fitted on the training split)
and cached in the dataset folder.

This module does NOT know the CS231n or COCO layouts, pixels (it delegates
to rnncap.data.features) or models.
"""

import hashlib
import json
import os
from tokenize import TokenError

import numpy as np

from rnncap.data.layout import SPLITS, build_data, check_feature_array, nonfinite_rows

FEATURE_NAMES = ("features.npy", "features.h5", "vgg_feats.mat")


def read_feature_file(path, key="features"):
    """A (I, D) array, or an (I, L, D) grid, of real numbers from ``.npy``, ``.h5`` (dataset ``key``) or ``.mat``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"features file not found: {path}")
    if path.endswith(".npy"):
        try:
            a = np.load(path, allow_pickle=False, mmap_mode="r")
        except (ValueError, EOFError, OSError, TokenError) as e:  # TokenError: a garbled header
            raise ValueError(f"{path}: not a .npy array file ({type(e).__name__}: {e})") from None
    elif path.endswith((".h5", ".hdf5")):
        from rnncap.data.cs231n import _read_h5, open_h5

        with open_h5(path) as f:
            a = _read_h5(f, key, path)
    elif path.endswith(".mat"):
        a = read_mat_features(path)
    else:
        raise ValueError(f"{path}: features must be a .npy, .h5 or .mat file")
    if key == "grid" and a.ndim == 4:  # rnncap features' (I, G, G, C) -> (I, G*G, C), reading order
        a = a.reshape(a.shape[0], a.shape[1] * a.shape[2], a.shape[3])
    return check_feature_array(a, path, grid_ok=True)


def _has_grid(path):
    from rnncap.data.cs231n import open_h5

    with open_h5(path) as f:
        return "grid" in f


def read_mat_features(path, key="feats"):
    """neuraltalk's ``vgg_feats.mat``: ``feats`` (D, I), one column per image -> (I, D).

    MATLAB v5 files are read with scipy (an optional dependency); v7.3 files are HDF5, read
    with h5py, where MATLAB's column-major (D, I) already appears as (I, D).
    """
    try:
        import scipy.io
    except ImportError:
        raise ValueError(f"{path}: reading MATLAB .mat features needs scipy; install it with "
                         f"`pip install scipy` (or `pip install 'rnncap[mat]'`)") from None
    try:
        mat = scipy.io.loadmat(path, variable_names=[key])
    except NotImplementedError:  # MATLAB v7.3: an HDF5 file
        from rnncap.data.cs231n import open_h5

        with open_h5(path) as f:
            if key not in f:
                raise ValueError(f"{path}: missing variable '{key}' (has: {sorted(f.keys())})") from None
            return f[key][()]
    except (ValueError, OSError, TypeError) as e:
        raise ValueError(f"{path}: not a readable MATLAB .mat file ({e})") from None
    if key not in mat:
        raise ValueError(f"{path}: missing variable '{key}' (has: "
                         f"{sorted(name for name, _, _ in scipy.io.whosmat(path))})")
    a = mat[key]
    if a.ndim != 2:
        raise ValueError(f"{path}: '{key}' must be 2-D (D, I), got shape {a.shape}")
    return a.T


def _read_json(path):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deeply to read") from None


_OBJECT_FIELDS = (("shape", str), ("colour", str), ("size", str), ("row", int), ("col", int))


def _check_objects(objects, where):
    """The shapes dataset's ground truth: a list of {shape, colour, size, row, col} objects."""
    if not isinstance(objects, list):
        raise ValueError(f"{where} must be a list of objects, got {type(objects).__name__}")
    for i, ob in enumerate(objects):
        if not isinstance(ob, dict):
            raise ValueError(f"{where}[{i}] must be an object, got {type(ob).__name__}")
        for k, kind in _OBJECT_FIELDS:
            if not isinstance(ob.get(k), kind) or isinstance(ob.get(k), bool):
                raise ValueError(f"{where}[{i}].{k} must be a {kind.__name__}, got {ob.get(k)!r:.60}")
    return objects


def parse_dataset_json(path, root=None, restval="train"):
    """Read ``dataset.json`` into per-split image records.

    Args:
        path: the dataset.json file.
        root: folder image paths are relative to (default: its folder).
        restval: 'train' to merge COCO's restval split into train, 'drop' to skip it.

    Returns:
        (dict split -> list of {"file", "captions", ["truth"]}, dict split ->
        list of row numbers of those images in the file's ``images`` list, the number
        of images the file lists).
    """
    path = os.fspath(path)
    root = os.path.dirname(path) if root is None else os.fspath(root)
    d = _read_json(path)
    if not isinstance(d, dict) or not isinstance(d.get("images"), list):
        raise ValueError(f"{path}: expected a JSON object with an 'images' list")
    if restval not in ("train", "drop"):
        raise ValueError(f"restval must be 'train' or 'drop', got {restval!r}")
    images = {s: [] for s in SPLITS}
    rows = {s: [] for s in SPLITS}
    for n, im in enumerate(d["images"]):
        where = f"{path}: images[{n}]"
        if not isinstance(im, dict):
            raise ValueError(f"{where} is not an object")
        for k in ("split", "filename", "sentences"):
            if k not in im:
                raise ValueError(f"{where} lacks '{k}'")
        for k, kind in (("split", str), ("filename", str), ("sentences", list)):
            if not isinstance(im[k], kind) or (kind is str and not im[k]):
                raise ValueError(f"{where}.{k} must be a {'non-empty string' if kind is str else 'list'}, "
                                 f"got {type(im[k]).__name__} {im[k]!r:.60}")
        if not isinstance(im.get("filepath", ""), str):
            raise ValueError(f"{where}.filepath must be a string (a folder), got "
                             f"{type(im['filepath']).__name__} {im['filepath']!r:.60}")
        split = im["split"]
        if split == "restval":
            if restval == "drop":
                continue
            split = "train"
        if split not in images:
            raise ValueError(f"{where}: unknown split {split!r}; expected one of "
                             f"{list(SPLITS) + ['restval']}")
        caps = []
        for j, s in enumerate(im["sentences"]):
            if isinstance(s, dict) and isinstance(s.get("raw"), str):
                caps.append(s["raw"])
            elif (isinstance(s, dict) and isinstance(s.get("tokens"), list)
                  and all(isinstance(t, str) for t in s["tokens"])):
                caps.append(" ".join(s["tokens"]))
            else:
                raise ValueError(f"{where}.sentences[{j}] has neither 'raw' text nor 'tokens' "
                                 f"(a list of strings)")
        if not caps:
            raise ValueError(f"{where} has no sentences")
        rec = {"file": os.path.join(root, im.get("filepath", ""), im["filename"]),
               "captions": caps}
        if "objects" in im:
            rec["truth"] = _check_objects(im["objects"], f"{where}.objects")
        images[split].append(rec)
        rows[split].append(n)
    images = {s: v for s, v in images.items() if v}
    rows = {s: rows[s] for s in images}
    if "train" not in images:
        raise ValueError(f"{path}: lists no images of the 'train' split "
                         f"({len(d['images'])} images in all); training needs some")
    return images, rows, len(d["images"])


def load_karpathy(path, features=None, *, image_root=None, restval="train", extractor="randconv",
                  extractor_options=None, progress=False, grid=False, **build_opts):
    """Load a Karpathy-split dataset into the data dictionary.

    Args:
        path: dataset.json, or the folder holding it.
        features: feature file (.npy/.h5, one row per image of dataset.json);
            default: ``features.npy``/``features.h5`` beside dataset.json, else
            computed from the images with the built-in extractor and cached.
        image_root: folder image paths are relative to (default: dataset.json's).
        restval: 'train' (merge) or 'drop'.
        extractor, extractor_options: the extractor used when computing features.
        progress: progress bars while computing features.
        grid: when computing features, take the extractor's grid features (I, L, D)
            (for attention models); a features file is read as it is.
        **build_opts: level, min_count, max_size, max_length, max_train, seed
            (see rnncap.data.layout.build_data).

    Returns:
        the data dictionary; ``extractor_dir`` is set when features were computed.
    """
    path = os.fspath(path)
    json_path = os.path.join(path, "dataset.json") if os.path.isdir(path) else path
    folder = os.path.dirname(json_path)
    images, rows, n_listed = parse_dataset_json(json_path, image_root, restval)
    extractor_dir = None
    if features is None:
        found = [os.path.join(folder, n) for n in FEATURE_NAMES
                 if os.path.isfile(os.path.join(folder, n))]
        features = found[0] if found else None
    saved = None
    if features is not None:
        features = os.fspath(features)
        # An attention model reads the grid that `rnncap features --grid` stored beside the
        # pooled vectors; other feature files are read as they are.
        all_feats = read_feature_file(features, key="grid" if grid and features.endswith(
            (".h5", ".hdf5")) and _has_grid(features) else "features")
        if features.endswith(".mat"):  # neuraltalk indexes its columns by imgid
            all_feats = all_feats[_imgids(json_path, n_listed, all_feats.shape[0], features)]
        elif features.endswith((".h5", ".hdf5")):
            images, rows, saved = _drop_skipped(features, images, rows)
        if all_feats.shape[0] != n_listed:  # one row per image, in the file's order
            raise ValueError(f"{features}: has {all_feats.shape[0]} rows (shape "
                             f"{all_feats.shape}) but {json_path} lists {n_listed} images; "
                             f"expected one row per image, in the same order")
        feats = {s: np.asarray(all_feats[rows[s]], dtype=np.float32) for s in images}
        for s, f in feats.items():
            bad = nonfinite_rows(f)
            if bad.size:
                raise ValueError(f"{features}: row {rows[s][bad[0]]} holds NaN or infinite values "
                                 f"({bad.size} such rows in the {s} split)")
    else:
        from rnncap.data.features import cached_split_features

        with open(json_path, "rb") as f:
            key = hashlib.sha1(f.read()).hexdigest()
        paths = {s: [im["file"] for im in ims] for s, ims in images.items()}
        feats, extractor_dir = cached_split_features(
            folder, paths, key=key, name=extractor, options=extractor_options, progress=progress,
            grid=grid)
    data = build_data(images, feats, source=json_path, **build_opts)
    if extractor_dir is not None:
        data["extractor_dir"] = extractor_dir
    data["features_source"] = str(features) if features is not None else os.path.dirname(extractor_dir)
    if saved is not None:
        data["features_file"] = saved
    return data


def _imgids(json_path, n_listed, n_columns, mat_path):
    """Column of each listed image in a .mat features file: its ``imgid`` (neuraltalk's rule)."""
    ids = []
    for n, im in enumerate(_read_json(json_path)["images"]):
        i = im.get("imgid", n)
        if not isinstance(i, int) or not 0 <= i < n_columns:
            raise ValueError(f"{json_path}: images[{n}] has imgid {i!r}, but {mat_path} has "
                             f"{n_columns} columns")
        ids.append(i)
    return np.asarray(ids, dtype=np.int64)


def _drop_skipped(path, images, rows):
    """Leave out the images an ``rnncap features`` file recorded as unreadable.

    Returns (images, rows, provenance) where provenance is None for a plain .h5 file, else
    {"path", "attrs", "extractor": (spec, arrays)} (rnncap.data.featfile).
    """
    from rnncap.data import featfile

    attrs = featfile.read_attrs(path)
    if attrs is None:
        return images, rows, None
    if not attrs.get("complete"):
        raise ValueError(f"{path}: an unfinished features file; rerun `rnncap features` to "
                         f"complete it")
    status = featfile.read_status(path)
    if status is not None and (status == featfile.SKIPPED).any():
        kept = {s: [k for k, r in enumerate(rows[s]) if status[r] != featfile.SKIPPED]
                for s in images}
        images = {s: [images[s][k] for k in kept[s]] for s in images}
        rows = {s: [rows[s][k] for k in kept[s]] for s in rows if kept[s]}
        images = {s: v for s, v in images.items() if v}
        if not images.get("train"):
            raise ValueError(f"{path}: every training image was skipped as unreadable")
    return images, rows, {"path": os.path.abspath(path), "attrs": attrs,
                          "extractor": featfile.read_extractor(path)}
