"""Data: files -> the CS231n data dictionary; vocabularies; the built-in shapes dataset.

``load_data(path, fmt)`` is the one entry point the CLI uses. Every format
returns the same dictionary (CS231n's layout, see rnncap.data.layout):
``s_captions`` int32 (M, T), ``s_image_idxs`` int32 (M,), ``s_features``
float32 (I, D) for each split s present, ``idx_to_word``, ``word_to_idx``,
``vocab``, and where known ``s_image_files``, ``s_references``, ``s_truth``
(shapes), ``s_urls`` (cs231n), ``extractor_dir`` and ``features_source`` (the
features file or cache folder, for error messages).

Formats: 'cs231n' (the assignment's coco_captioning folder), 'karpathy'
(dataset.json + features), 'coco' (captions_*.json + features keyed by image
id), 'shapes' (the built-in dataset, generated and featurised on first use).

Length convention: ``max_length`` counts tokens between <START> and <END>, so
T = max_length + 2; the default is 15 words (CS231n's T = 17) or 80
characters.

This package does NOT know models, optimizers or metrics beyond the shapes
truth check (which needs the shapes grammar, and so lives here).
"""

import os

from rnncap.data.truth import caption_is_true, check_caption, truth_rate
from rnncap.data.vocab import END, NULL, START, UNK, Vocabulary, decode_captions

__all__ = ["load_data", "load_shapes", "prepare_shapes", "write_shapes_cs231n", "Vocabulary", "decode_captions",
           "caption_is_true", "check_caption", "truth_rate", "NULL", "START", "END", "UNK",
           "FORMATS"]

FORMATS = ("cs231n", "karpathy", "coco", "shapes")


def prepare_shapes(cache_dir=".cache/rnncap/shapes", *, seed=0, num_train=10000, num_val=1000, num_test=1000,
                   min_objects=1, max_objects=2, image_size=64, captions_per_image=5,
                   train_object_weights=None, train_same_colour=None, progress=True,
                   generate=True):
    """Generate the shapes dataset (no features); see rnncap.data.shapes.prepare_shapes."""
    from rnncap.data import shapes

    return shapes.prepare_shapes(cache_dir, seed=seed, num_train=num_train, num_val=num_val,
                                 num_test=num_test, min_objects=min_objects,
                                 max_objects=max_objects, image_size=image_size,
                                 captions_per_image=captions_per_image,
                                 train_object_weights=train_object_weights,
                                 train_same_colour=train_same_colour, progress=progress,
                                 generate=generate)


def load_shapes(cache_dir=".cache/rnncap/shapes", *, seed=0, num_train=10000, num_val=1000, num_test=1000,
                min_objects=1, max_objects=2, image_size=64, captions_per_image=5,
                train_object_weights=None, train_same_colour=None, extractor_options=None,
                progress=False, grid=False, generate=True, **build_opts):
    """The shapes dataset as a data dictionary, generating and featurising it if needed.

    ``cache_dir`` is the folder `rnncap demo --cache` and `rnncap train --format shapes
    --data` take (default: theirs, ``.cache/rnncap/shapes``), so all three find one dataset.
    Features come from the built-in extractor fitted on the training split;
    they and the saved extractor are cached inside the dataset folder, and
    ``extractor_dir`` points at the extractor. With ``grid``, ``s_features``
    are the extractor's grid features (I, L, D) (for attention models).
    ``generate=False`` only finds an
    existing dataset (FileNotFoundError if there is none).
    """
    from rnncap.data.features import cached_split_features
    from rnncap.data.karpathy import parse_dataset_json
    from rnncap.data.layout import build_data

    folder = prepare_shapes(cache_dir, seed=seed, num_train=num_train, num_val=num_val,
                            num_test=num_test, min_objects=min_objects, max_objects=max_objects,
                            image_size=image_size, captions_per_image=captions_per_image,
                            train_object_weights=train_object_weights,
                            train_same_colour=train_same_colour, progress=progress,
                            generate=generate)
    json_path = os.path.join(folder, "dataset.json")
    images, _, _ = parse_dataset_json(json_path)
    options = {"image_size": image_size, **(extractor_options or {})}
    paths = {s: [im["file"] for im in ims] for s, ims in images.items()}
    feats, extractor_dir = cached_split_features(folder, paths, key=os.path.basename(folder),
                                                 options=options, progress=progress, grid=grid)
    data = build_data(images, feats, seed=seed, source=json_path, **build_opts)
    data["extractor_dir"] = extractor_dir
    data["features_source"] = os.path.join(os.path.dirname(extractor_dir),
                                           "train-grid.npy" if grid else "train.npy")
    return data


def write_shapes_cs231n(base_dir, cache_dir=".cache/rnncap/shapes", **shapes_options):
    """Write the shapes dataset as CS231n's ``coco_captioning`` folder; return its path.

    The folder holds what the assignment's ``get_coco_dataset.sh`` leaves (captions as word
    ids in ``coco2014_captions.h5``, features in ``train2014_vgg16_fc7_pca.h5`` and
    ``val2014_vgg16_fc7_pca.h5``, ``coco2014_vocab.json``, the URL lists), so
    ``rnncap.data.cs231n.load_coco_data(base_dir)`` reads it as it reads the real one. The
    features are the built-in extractor's, not VGG-16's; the URLs are the PNG files' paths;
    CS231n has no test split, so the shapes test images are left out.

    Args:
        base_dir: the folder to write (created; files in it are replaced).
        cache_dir: where the shapes dataset is generated or found (see load_shapes).
        **shapes_options: load_shapes' options (num_train, num_val, seed, ...).
    """
    from rnncap.data.cs231n import write_coco_folder

    data = load_shapes(cache_dir, **shapes_options)
    for split in ("train", "val"):
        data[f"{split}_urls"] = [str(f) for f in data[f"{split}_image_files"]]
    write_coco_folder(base_dir, data)
    return os.fspath(base_dir)


def detect_format(path):
    """'cs231n', 'karpathy' or 'coco' from a folder's contents (or a dataset.json path)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"data folder not found: {path}")
    if os.path.isfile(path):
        if os.path.basename(path).endswith(".json"):
            return "karpathy"
        raise ValueError(f"{path}: a data path must be a folder (or a dataset.json file)")
    names = os.listdir(path)
    if "coco2014_captions.h5" in names:
        return "cs231n"
    if "dataset.json" in names:
        return "karpathy"
    if any(n.startswith("captions_") and n.endswith(".json") for n in names):
        return "coco"
    raise ValueError(
        f"cannot tell the data format of {path}: looked for coco2014_captions.h5 (cs231n), "
        f"dataset.json (karpathy) and captions_*.json (coco); for the built-in dataset "
        f"use format 'shapes' (rnncap train --format shapes)")


def load_data(path, fmt=None, *, max_length=None, min_count=1, max_size=None, level="word",
              max_train=None, seed=0, progress=False, **fmt_opts):
    """Load any supported data into the CS231n data dictionary.

    Args:
        path: the data folder; for 'shapes', the cache folder to generate into.
        fmt: one of FORMATS, or None to detect it from the folder's contents.
        max_length: tokens between <START> and <END> (T = max_length + 2);
            default 15 words / 80 characters. Ignored by 'cs231n' (pre-encoded).
        min_count: words seen fewer times in training captions become <UNK>
            (use ~5 for real COCO; the shapes vocabulary is tiny).
        max_size: cap on the vocabulary size, specials included.
        level: 'word' or 'char' tokens (not for 'cs231n', which is word ids).
        max_train: keep this many training captions (sampled without replacement).
        seed: seeds that sample (and, for 'shapes', the dataset generator).
        progress: show progress bars for generation and feature extraction.
        **fmt_opts: passed to the format's loader (e.g. pca_features for
            cs231n; features, image_root, restval for karpathy; num_train,
            min_objects, max_objects, image_size, extractor_options, grid for
            shapes).

    Returns:
        the data dictionary.
    """
    if fmt is None:
        fmt = detect_format(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown data format {fmt!r}; expected one of {FORMATS}")
    build = {"level": level, "min_count": min_count, "max_size": max_size,
             "max_length": max_length, "max_train": max_train, "seed": seed}
    if fmt == "shapes":
        return load_shapes(path, progress=progress, **build, **fmt_opts)
    if not os.path.exists(path):
        raise FileNotFoundError(f"data folder not found: {path}")
    if fmt == "cs231n":
        from rnncap.data.cs231n import load_coco_data

        if level != "word":
            raise ValueError("the cs231n format holds word ids; level='char' needs raw text "
                             "(karpathy, coco or shapes)")
        return load_coco_data(path, max_train=max_train, seed=seed, **fmt_opts)
    if fmt == "karpathy":
        from rnncap.data.karpathy import load_karpathy

        return load_karpathy(path, progress=progress, **build, **fmt_opts)
    from rnncap.data.coco import load_coco

    return load_coco(path, progress=progress, **build, **fmt_opts)
