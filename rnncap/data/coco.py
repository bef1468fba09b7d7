"""COCO caption annotations (``captions_*.json``) -> the data dictionary.

A folder holds one annotation file per split, named ``captions_<split>*.json``
(``captions_train2014.json``, ``captions_val2014.json``, ...), each with
``images`` (``id``, ``file_name``) and ``annotations`` (``image_id``,
``caption``), plus features keyed by image id: ``features.npz`` or
``features.h5`` holding ``image_ids`` int (I,) and ``features`` float (I, D).
Images without captions are skipped. Without a features file, features are
computed from the image files (looked up as ``<folder>/<split dir>/<file_name>``,
``<folder>/images/<file_name>`` or ``<folder>/<file_name>``) with the built-in
extractor and cached.

This module does NOT know the CS231n or Karpathy layouts, pixels or models.
"""

import hashlib
import os
import re
from tokenize import TokenError  # what numpy raises for a garbled .npy header

import numpy as np

from rnncap.data.karpathy import _read_json
from rnncap import memory
from rnncap.data.layout import SPLITS, build_data, check_feature_array, nonfinite_rows
from rnncap.memory import MemoryEstimateError

_NAME_RE = re.compile(r"^captions_(train|val|test)(\w*)\.json$")
FEATURE_NAMES = ("features.npz", "features.h5")


def find_caption_files(folder):
    """dict split -> path of its captions_<split>*.json file in ``folder``."""
    folder = os.fspath(folder)
    found = {}
    for name in sorted(os.listdir(folder)):
        m = _NAME_RE.match(name)
        if m:
            if m.group(1) in found:
                raise ValueError(f"{folder}: two caption files for split '{m.group(1)}': "
                                 f"{os.path.basename(found[m.group(1)])} and {name}")
            found[m.group(1)] = os.path.join(folder, name)
    if "train" not in found:
        raise FileNotFoundError(f"{folder}: no captions_train*.json (found: {sorted(found)})")
    return found


def parse_caption_file(path):
    """(list of image ids, dict id -> file_name, dict id -> list of captions)."""
    d = _read_json(path)
    for k in ("images", "annotations"):
        if not isinstance(d, dict) or not isinstance(d.get(k), list):
            raise ValueError(f"{path}: expected a JSON object with an '{k}' list")
    ids, names = [], {}
    for n, im in enumerate(d["images"]):
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            raise ValueError(f"{path}: images[{n}] needs 'id' and 'file_name'")
        if not isinstance(im["id"], int) or isinstance(im["id"], bool):
            raise ValueError(f"{path}: images[{n}].id must be an integer, got {im['id']!r:.60}")
        if not isinstance(im["file_name"], str) or not im["file_name"]:
            raise ValueError(f"{path}: images[{n}].file_name must be a file name, "
                             f"got {im['file_name']!r:.60}")
        ids.append(im["id"])
        names[im["id"]] = im["file_name"]
    caps = {}
    for n, a in enumerate(d["annotations"]):
        if not isinstance(a, dict) or "image_id" not in a or not isinstance(a.get("caption"), str):
            raise ValueError(f"{path}: annotations[{n}] needs 'image_id' and a 'caption' string")
        if not isinstance(a["image_id"], int) or isinstance(a["image_id"], bool):
            raise ValueError(f"{path}: annotations[{n}].image_id must be an integer, "
                             f"got {a['image_id']!r:.60}")
        if a["image_id"] not in names:
            raise ValueError(f"{path}: annotations[{n}] refers to image_id {a['image_id']}, "
                             "which is not in 'images'")
        caps.setdefault(a["image_id"], []).append(a["caption"].strip())
    return [i for i in ids if i in caps], names, caps


def read_keyed_features(path):
    """(image_ids int64 (I,), features (I, D)) from .npz or .h5."""
    import zipfile

    from rnncap.data.cs231n import MissingKeyError, _read_h5, open_h5

    path = os.fspath(path)
    if path.endswith(".npz"):
        try:
            z = np.load(path, allow_pickle=False)
            if not hasattr(z, "files"):
                raise ValueError("a single array, not an .npz archive of named arrays")
            with z:
                for k in ("image_ids", "features"):
                    if k not in z.files:
                        raise MissingKeyError(f"{path}: missing key '{k}' (has: {sorted(z.files)})")
                    _require_unpacked_size(z, k, path)
                ids, feats = z["image_ids"], z["features"]
        except (MissingKeyError, MemoryEstimateError):
            raise
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, TokenError) as e:
            raise ValueError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from None
    else:
        from rnncap.data import featfile

        with open_h5(path) as f:  # only what is needed: such a file may also hold a large grid
            ids, feats = _read_h5(f, "image_ids", path), _read_h5(f, "features", path)
        status = featfile.read_status(path)
        if status is not None and status.shape == ids.shape and feats.shape[:1] == ids.shape:
            keep = status != featfile.SKIPPED  # images `rnncap features` found unreadable
            ids, feats = ids[keep], feats[keep]
    check_feature_array(feats, path, "'features'")
    if ids.shape != (feats.shape[0],) or ids.dtype.kind not in "iu":
        raise ValueError(f"{path}: 'image_ids' is {ids.dtype} {ids.shape} and 'features' "
                         f"{feats.shape}; expected integers (I,) and (I, D)")
    return ids.astype(np.int64), feats


def _require_unpacked_size(z, key, path):
    """Read a member's .npy header (shape, dtype) and refuse it if it would not fit in memory:
    a compressed archive of a few kilobytes can unpack to gigabytes."""
    with z.zip.open(f"{key}.npy") as f:
        version = np.lib.format.read_magic(f)
        shape, _, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                           else np.lib.format.read_array_header_2_0(f))
    memory.require(int(np.prod(shape, dtype=np.float64)) * dtype.itemsize,
                   f"{path}: '{key}' of shape {shape} ({dtype})")


def _image_path(folder, caption_file, file_name):
    stem = _NAME_RE.match(os.path.basename(caption_file))
    split_dir = stem.group(1) + stem.group(2)  # captions_train2014.json -> train2014
    candidates = [os.path.join(folder, split_dir, file_name),
                  os.path.join(folder, "images", file_name), os.path.join(folder, file_name)]
    for c in candidates:
        if os.path.isfile(c):
            return c
    return candidates[0]


def load_coco(folder, features=None, *, extractor="randconv", extractor_options=None,
              progress=False, **build_opts):
    """Load COCO caption annotations and features into the data dictionary.

    Args:
        folder: the folder with captions_<split>*.json files.
        features: .npz/.h5 file with image_ids and features; default
            features.npz/features.h5 in ``folder``, else computed from images.
        extractor, extractor_options, progress: used when computing features.
        **build_opts: see rnncap.data.layout.build_data.

    Returns:
        the data dictionary (``extractor_dir`` set when features were computed).
    """
    folder = os.fspath(folder)
    files = find_caption_files(folder)
    images, id_lists = {}, {}
    for split in SPLITS:
        if split not in files:
            continue
        ids, names, caps = parse_caption_file(files[split])
        images[split] = [{"file": _image_path(folder, files[split], names[i]),
                          "captions": caps[i]} for i in ids]
        id_lists[split] = ids
    if features is None:
        found = [os.path.join(folder, n) for n in FEATURE_NAMES
                 if os.path.isfile(os.path.join(folder, n))]
        features = found[0] if found else None
    extractor_dir = None
    if features is not None:
        ids, all_feats = read_keyed_features(features)
        row = {int(i): n for n, i in enumerate(ids)}
        feats = {}
        skipped = _skipped_ids(features)
        for split in list(id_lists):
            if skipped:
                kept = [k for k, i in enumerate(id_lists[split]) if int(i) not in skipped]
                id_lists[split] = [id_lists[split][k] for k in kept]
                images[split] = [images[split][k] for k in kept]
        for split, wanted in id_lists.items():
            missing = [i for i in wanted if int(i) not in row]
            if missing:
                raise ValueError(f"{features}: no features for image_id {missing[0]} of "
                                 f"{os.path.basename(files[split])} ({len(missing)} missing)")
            feats[split] = np.asarray(all_feats[[row[int(i)] for i in wanted]], dtype=np.float32)
            bad = nonfinite_rows(feats[split])
            if bad.size:
                raise ValueError(f"{features}: the features of image_id {wanted[bad[0]]} hold NaN or "
                                 f"infinite values ({bad.size} such images in "
                                 f"{os.path.basename(files[split])})")
    else:
        from rnncap.data.features import cached_split_features

        h = hashlib.sha1()
        for split in sorted(files):
            with open(files[split], "rb") as f:
                h.update(f.read())
        paths = {s: [im["file"] for im in ims] for s, ims in images.items()}
        feats, extractor_dir = cached_split_features(
            folder, paths, key=h.hexdigest(), name=extractor, options=extractor_options,
            progress=progress)
    data = build_data(images, feats, source=files["train"], **build_opts)
    if extractor_dir is not None:
        data["extractor_dir"] = extractor_dir
    if features is not None and os.fspath(features).endswith((".h5", ".hdf5")):
        from rnncap.data import featfile

        attrs = featfile.read_attrs(features)
        if attrs is not None:
            data["features_file"] = {"path": os.path.abspath(features), "attrs": attrs,
                                     "extractor": featfile.read_extractor(features)}
    return data


def _skipped_ids(path):
    """Image ids an ``rnncap features`` file recorded as unreadable (empty for other files)."""
    if not os.fspath(path).endswith((".h5", ".hdf5")):
        return set()
    from rnncap.data import featfile
    from rnncap.data.cs231n import open_h5

    status = featfile.read_status(path)
    if status is None:
        return set()
    with open_h5(path) as f:
        if "image_ids" not in f:
            return set()
        ids = f["image_ids"][()]
    return {int(i) for i in ids[status == featfile.SKIPPED]}
