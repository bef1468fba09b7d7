"""CS231n's ``coco_captioning`` folder, read exactly as the assignment does.

The folder holds::

    coco2014_captions.h5      train_captions (M, 17), train_image_idxs (M,),
                              val_captions, val_image_idxs
    train2014_vgg16_fc7_pca.h5  features (I_train, 512)   [or train2014_vgg16_fc7.h5, 4096-d]
    val2014_vgg16_fc7_pca.h5    features (I_val, 512)     [or val2014_vgg16_fc7.h5]
    coco2014_vocab.json       idx_to_word, word_to_idx
    train2014_urls.txt        one URL per feature row
    val2014_urls.txt

Names, arguments and return values follow the assignment's ``coco_utils.py``
(``load_coco_data``, ``sample_coco_minibatch``, ``decode_captions``), with two
deliberate differences: randomness is explicit (a seed / np.random.Generator
instead of the global RNG) and ``max_train`` samples *without* replacement.
Everything is validated: a missing file or key, or arrays whose shapes
disagree, raise an error naming the file, the key and the shapes.

Memory: each HDF5 dataset is read once into a NumPy array of its stored
dtype; a cast happens only if the file's dtype differs from int32/float32.

This module does NOT know how the features were computed, what a model is,
or any other data format.
"""

import contextlib
import os

import numpy as np

from rnncap.data.layout import check_feature_array, nonfinite_rows, subsample_train
from rnncap.data.vocab import Vocabulary, decode_captions  # noqa: F401  (re-exported)

CAPTIONS_FILE = "coco2014_captions.h5"
VOCAB_FILE = "coco2014_vocab.json"
FEATURE_FILES = {True: "{split}2014_vgg16_fc7_pca.h5", False: "{split}2014_vgg16_fc7.h5"}
URL_FILE = "{split}2014_urls.txt"
SPLITS = ("train", "val")


def _require(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CS231n data file not found: {path}")


@contextlib.contextmanager
def open_h5(path, mode="r"):
    """h5py.File(path) whose failure to open (not HDF5, truncated) names the file."""
    import h5py

    try:
        f = h5py.File(path, mode)
    except OSError as e:
        raise ValueError(f"{path}: not a readable HDF5 file ({e})") from None
    with f:
        yield f


class MissingKeyError(KeyError, ValueError):
    """A data file lacks a key it must have.

    A KeyError, as a missing key is in Python, and a ValueError, as every other malformed
    input is, so callers that report bad input (the CLI) report this one too.
    """

    def __str__(self):
        return str(self.args[0]) if self.args else ""


def _read_h5(f, key, path):
    """One dataset from an open h5py.File, as a NumPy array, with a clear error."""
    import h5py

    if key not in f:
        raise MissingKeyError(f"{path}: missing key '{key}' (has: {sorted(f.keys())})")
    if not isinstance(f[key], h5py.Dataset):
        raise ValueError(f"{path}: '{key}' must be an array (an HDF5 dataset), got a group")
    try:
        return f[key][()]
    except (OSError, TypeError, ValueError) as e:  # damaged data, or a type NumPy cannot hold
        raise ValueError(f"{path}: '{key}' cannot be read as an array ({e})") from None


def _as_dtype(a, dtype, path, key):
    if dtype == np.int32 and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{path}: '{key}' must hold integers, got dtype {a.dtype}")
    if dtype == np.float32:  # before the cast, which would drop an imaginary part with a warning
        check_feature_array(a, path, f"'{key}'")
    return a.astype(dtype, copy=False)


def _check_split(data, split, vocab_size, files):
    """Shapes and index ranges of one split; errors name file, key and shapes."""
    caps, idxs, feats = (data[f"{split}_{k}"] for k in ("captions", "image_idxs", "features"))
    cap_file, feat_file = files
    if caps.ndim != 2 or caps.shape[1] < 2:
        raise ValueError(f"{cap_file}: '{split}_captions' must be 2-D (M, T) with T >= 2 "
                         f"(<START> ... <END>), got shape {caps.shape}")
    if idxs.shape != (caps.shape[0],):
        raise ValueError(
            f"{cap_file}: '{split}_image_idxs' has shape {idxs.shape} but '{split}_captions' "
            f"has shape {caps.shape}; expected ({caps.shape[0]},)")
    check_feature_array(feats, feat_file, "'features'")
    if idxs.size and (idxs.min() < 0 or idxs.max() >= feats.shape[0]):
        raise ValueError(
            f"{cap_file}: '{split}_image_idxs' values lie in [{idxs.min()}, {idxs.max()}] but "
            f"{feat_file} 'features' has only {feats.shape[0]} rows (shape {feats.shape})")
    if caps.size and (caps.min() < 0 or caps.max() >= vocab_size):
        raise ValueError(
            f"{cap_file}: '{split}_captions' ids lie in [{caps.min()}, {caps.max()}] but the "
            f"vocabulary has {vocab_size} words")


def load_coco_data(base_dir, max_train=None, pca_features=True, *, seed=0):
    """Load CS231n's ``coco_captioning`` folder into the data dictionary.

    Args:
        base_dir: the folder (``datasets/coco_captioning`` in the assignment).
        max_train: if given, keep this many training captions, sampled without
            replacement (CS231n samples with replacement from the global RNG).
        pca_features: read the 512-d PCA features (True) or the 4096-d fc7 ones.
        seed: int or np.random.Generator for the ``max_train`` subsample.

    Returns:
        dict with, for s in train/val: ``s_captions`` int32 (M, 17),
        ``s_image_idxs`` int32 (M,), ``s_features`` float32 (I, D),
        ``s_urls`` str array (I,); plus ``idx_to_word``, ``word_to_idx``,
        ``vocab`` (Vocabulary).

    Raises:
        FileNotFoundError, KeyError, ValueError naming the file, key and shapes.
    """
    base_dir = os.fspath(base_dir)
    if not os.path.isdir(base_dir):
        raise FileNotFoundError(f"CS231n data folder not found: {base_dir}")
    data = {}
    cap_path = os.path.join(base_dir, CAPTIONS_FILE)
    _require(cap_path)
    with open_h5(cap_path) as f:
        for split in SPLITS:
            data[f"{split}_captions"] = _as_dtype(
                _read_h5(f, f"{split}_captions", cap_path), np.int32, cap_path, f"{split}_captions")
            data[f"{split}_image_idxs"] = _as_dtype(
                _read_h5(f, f"{split}_image_idxs", cap_path), np.int32, cap_path,
                f"{split}_image_idxs")

    feat_paths = {}
    for split in SPLITS:
        path = os.path.join(base_dir, FEATURE_FILES[bool(pca_features)].format(split=split))
        _require(path)
        with open_h5(path) as f:
            data[f"{split}_features"] = _as_dtype(_read_h5(f, "features", path), np.float32,
                                                  path, "features")
        bad = nonfinite_rows(data[f"{split}_features"])
        if bad.size:
            raise ValueError(f"{path}: 'features' row {bad[0]} holds NaN or infinite values "
                             f"({bad.size} such rows); features must be finite")
        feat_paths[split] = path

    vocab_path = os.path.join(base_dir, VOCAB_FILE)
    _require(vocab_path)
    vocab = Vocabulary.load(vocab_path)
    data["idx_to_word"] = vocab.idx_to_word
    data["word_to_idx"] = vocab.word_to_idx
    data["vocab"] = vocab

    for split in SPLITS:
        _check_split(data, split, len(vocab), (cap_path, feat_paths[split]))
        url_path = os.path.join(base_dir, URL_FILE.format(split=split))
        _require(url_path)
        with open(url_path, encoding="utf-8") as f:
            urls = np.asarray([line.strip() for line in f])
        n_feat = data[f"{split}_features"].shape[0]
        if urls.shape[0] != n_feat:
            raise ValueError(
                f"{url_path}: has {urls.shape[0]} lines but {feat_paths[split]} 'features' "
                f"has {n_feat} rows; expected one URL per row")
        data[f"{split}_urls"] = urls

    if max_train is not None:
        subsample_train(data, max_train, seed)
    return data


def sample_coco_minibatch(data, batch_size=100, split="train", rng=None):
    """Sample a minibatch of captions with their image features (CS231n).

    Args:
        data: the data dictionary.
        batch_size: N, drawn with replacement as in the assignment.
        split: 'train', 'val' or 'test'.
        rng: np.random.Generator or seed; None draws fresh OS entropy (never
            the global NumPy RNG).

    Returns:
        (captions int32 (N, T), image_features float32 (N, D), urls (N,)),
        urls being the split's ``s_urls``, else ``s_image_files``, else None.
    """
    key = f"{split}_captions"
    if key not in data:
        have = sorted(k[:-len("_captions")] for k in data if k.endswith("_captions"))
        raise KeyError(f"split {split!r} not in data (has splits: {have})")
    rng = np.random.default_rng(rng)
    split_size = data[key].shape[0]
    mask = rng.choice(split_size, batch_size)
    captions = data[key][mask]
    image_idxs = data[f"{split}_image_idxs"][mask]
    image_features = data[f"{split}_features"][image_idxs]
    names = data.get(f"{split}_urls", data.get(f"{split}_image_files"))
    urls = None if names is None else np.asarray(names)[image_idxs]
    return captions, image_features, urls


def write_coco_folder(base_dir, data, pca_features=True):
    """Write a data dictionary in the exact CS231n folder layout (for tests, benchmarks).

    Args:
        base_dir: folder to create/fill.
        data: dict with train/val captions, image_idxs, features, urls and
            idx_to_word (word_to_idx is derived).
        pca_features: which feature file names to write.
    """
    import h5py

    from rnncap.atomic import write_text, write_with

    os.makedirs(base_dir, exist_ok=True)

    def write_h5(fh, arrays):
        with h5py.File(fh, "w") as f:
            for k, v in arrays.items():
                f.create_dataset(k, data=v)

    def atomic_h5(name, arrays):
        write_with(os.path.join(base_dir, name), lambda fh: write_h5(fh, arrays))

    atomic_h5(CAPTIONS_FILE, {f"{s}_{k}": data[f"{s}_{k}"]
                              for s in SPLITS for k in ("captions", "image_idxs")})
    for s in SPLITS:
        atomic_h5(FEATURE_FILES[bool(pca_features)].format(split=s),
                  {"features": data[f"{s}_features"]})
        write_text(os.path.join(base_dir, URL_FILE.format(split=s)),
                   "".join(f"{u}\n" for u in data[f"{s}_urls"]))
    Vocabulary(data["idx_to_word"]).save(os.path.join(base_dir, VOCAB_FILE))
