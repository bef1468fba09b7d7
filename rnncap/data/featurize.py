"""``rnncap features``: a dataset of image files -> one HDF5 features file the loaders read.

Three layouts are recognised from the path given:

- Karpathy: ``dataset.json`` (or a folder holding it), images under ``image_root`` (default: its
  folder) at ``filepath/filename``; one row per entry of ``images``, in order (Flickr8k/30k/COCO);
- COCO: a folder with ``captions_<split>*.json``, images in ``<split dir>/`` (``train2014/``,
  ``val2014/``), ``images/`` or the folder itself; rows keyed by ``image_ids``;
- a plain folder of image files (searched recursively, sorted by path).

The extractor comes from the registry of :mod:`rnncap.data.features` by name; one that needs
fitting (the built-in ``randconv``'s PCA) is fitted first on a seeded sample of the training
images and stored, fitted, in the file. Rows are computed in chunks, by ``workers`` processes, and
written as they come (:mod:`rnncap.data.featfile`), so a rerun after a kill continues where the
file stopped; a file of other settings, or whose datasets' shapes and types differ from those
this run makes, is refused in one line naming the difference, whether partial or complete. An unreadable image is named; by default the command fails after the readable
images are written (a rerun then only retries the unreadable ones), with ``skip_bad`` it is
recorded as skipped and the loaders leave it out.

Grids (``grid``) are the extractor's grid as an attention model reads it when it captions an
image file (``extract_files(grid=True)``), stored (I, G, G, D): for the pretrained backbone and an
ONNX model the feature map; for ``randconv`` its standardised cells with their position features.
A model trained on the file therefore gets, from a photo at captioning time, the grid it was
trained on.

This module does NOT know captions, vocabularies or models; it turns file lists into arrays.
"""

import math
import os
import sys
import tempfile
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from rnncap.data import featfile

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
DTYPES = ("float16", "float32")


@dataclass
class ImageList:
    """The images of a dataset, one per row of its features file."""

    layout: str           # 'karpathy', 'coco' or 'folder'
    root: str             # files are relative to this folder
    files: list           # I relative paths
    train: list           # row numbers of training images (the extractor is fitted on these)
    image_ids: list | None = None  # COCO ids (I,)
    default_out: str = ""

    def path(self, row):
        return os.path.join(self.root, self.files[row])


@dataclass
class FeaturesOptions:
    """What ``rnncap features`` computes and how."""

    extractor: str = "efficientnet-lite0"
    extractor_options: dict = field(default_factory=dict)
    pooled: bool = True
    grid: bool = False
    dtype: str = "float16"
    workers: int = 1
    chunk_size: int = 128
    skip_bad: bool = False
    fit_images: int = 2000
    seed: int = 0
    progress: bool = True
    dask: str | None = None  # a Dask scheduler address or local:N (rnncap.distributed); None: here
    retries: int = 2  # with dask: reruns of a chunk whose task raised


def list_images(source, image_root=None):
    """Find the layout of ``source`` and list its images (see the module docstring)."""
    source = os.fspath(source)
    if not os.path.exists(source):
        raise FileNotFoundError(f"dataset not found: {source}")
    if os.path.isfile(source) or os.path.isfile(os.path.join(source, "dataset.json")):
        return _list_karpathy(source, image_root)
    names = os.listdir(source)
    if any(n.startswith("captions_") and n.endswith(".json") for n in names):
        return _list_coco(source)
    return _list_folder(source)


def _list_karpathy(source, image_root):
    from rnncap.data.karpathy import _read_json

    json_path = source if os.path.isfile(source) else os.path.join(source, "dataset.json")
    folder = os.path.dirname(json_path)
    d = _read_json(json_path)
    if not isinstance(d, dict) or not isinstance(d.get("images"), list):
        raise ValueError(f"{json_path}: expected a JSON object with an 'images' list")
    files, train = [], []
    for n, im in enumerate(d["images"]):
        if not isinstance(im, dict) or "filename" not in im:
            raise ValueError(f"{json_path}: images[{n}] lacks 'filename'")
        files.append(os.path.join(im.get("filepath", ""), im["filename"]))
        if im.get("split") in ("train", "restval"):
            train.append(n)
    root = folder if image_root is None else os.fspath(image_root)
    if files and not os.path.isfile(os.path.join(root, files[0])):
        raise FileNotFoundError(f"image file not found: {os.path.join(root, files[0])} (the images "
                                f"of {json_path} are looked up under {root}; pass the folder that "
                                f"holds them as --image-root)")
    return ImageList("karpathy", root, files, train or list(range(len(files))),
                     default_out=os.path.join(folder, "features.h5"))


def _list_coco(folder):
    from rnncap.data.coco import _NAME_RE, _image_path, find_caption_files
    from rnncap.data.karpathy import _read_json

    files, ids, train, seen = [], [], [], set()
    for split, caption_file in sorted(find_caption_files(folder).items()):
        d = _read_json(caption_file)
        if not isinstance(d, dict) or not isinstance(d.get("images"), list):
            raise ValueError(f"{caption_file}: expected a JSON object with an 'images' list")
        assert _NAME_RE.match(os.path.basename(caption_file))
        for n, im in enumerate(d["images"]):
            if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
                raise ValueError(f"{caption_file}: images[{n}] needs 'id' and 'file_name'")
            if im["id"] in seen:
                continue
            seen.add(im["id"])
            if split == "train":
                train.append(len(files))
            files.append(os.path.relpath(_image_path(folder, caption_file, im["file_name"]), folder))
            ids.append(int(im["id"]))
    return ImageList("coco", folder, files, train, ids, os.path.join(folder, "features.h5"))


def _list_folder(folder):
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        files += [os.path.relpath(os.path.join(dirpath, f), folder) for f in sorted(filenames)
                  if f.lower().endswith(IMAGE_EXTENSIONS)]
    if not files:
        raise ValueError(f"{folder}: found no dataset.json, no captions_*.json and no image files "
                         f"({', '.join(IMAGE_EXTENSIONS)})")
    return ImageList("folder", folder, files, list(range(len(files))),
                     default_out=os.path.join(folder, "features.h5"))


# ------------------------------------------------------------------ pixels -> rows

_WORKER = {}


def _load(extractor, path):
    """One image as the extractor wants it: a backbone crops it itself (``read_image``)."""
    if hasattr(extractor, "read_image"):
        return extractor.read_image(path)
    from rnncap.data.features import load_image

    return load_image(path, extractor.image_size)


def _features(extractor, batch, pooled, grid, prepared):
    """(pooled (N, D) or None, grid (N, G, G, C) or None) of a batch, in one pass if possible."""
    if hasattr(extractor, "features_prepared"):  # the pretrained backbone: both from one forward
        outputs = ("pooled",) * pooled + ("grid",) * grid
        out = (extractor.features_prepared if prepared else extractor.features)(batch, outputs)
        return out.get("pooled"), out.get("grid")
    if prepared:
        return extractor.extract_prepared(batch), None
    cells = None
    if grid:  # the grid an attention model reads at captioning time (extract_files(grid=True)):
        cells = extractor.grid(batch)  # (N, L, D), L = G*G cells in reading order
        side = math.isqrt(cells.shape[1])
        cells = cells.reshape(len(cells), side, side, cells.shape[2])  # (N, G, G, D), as stored
    return (extractor.extract(batch) if pooled else None), cells


def _compute(extractor, rows, paths, pooled, grid):
    """Features of one chunk; unreadable images become (row, message) pairs, not exceptions."""
    images, good, bad = [], [], []
    for r, p in zip(rows, paths):
        try:
            images.append(_load(extractor, p))
            good.append(r)
        except (ValueError, OSError) as err:
            bad.append((r, str(err)))
    out_p = out_g = None
    if images:
        out_p, out_g = _features(extractor, np.stack(images), pooled, grid,
                                 prepared=hasattr(extractor, "read_image"))
    return rows, good, out_p, out_g, bad


def _from_saved(spec, arrays, source):
    from rnncap.data.features import _REGISTRY, _registered

    if not _registered(spec.get("name")):
        raise ValueError(f"{source}: unknown extractor {spec.get('name')!r}")
    return _REGISTRY[spec["name"]].from_saved(spec, arrays, source=source)


def _init_worker(spec, arrays):
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # one BLAS thread per process: `workers` processes share the cores
    _WORKER["extractor"] = _from_saved(spec, arrays, "features file")


def _worker_compute(rows, paths, pooled, grid):
    return _compute(_WORKER["extractor"], rows, paths, pooled, grid)


def _saved_form(extractor):
    """(spec, arrays) of an extractor, through its own ``save``."""
    from rnncap.data.features import read_saved

    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "extractor")
        extractor.save(folder)
        return read_saved(folder)


def _fitted_extractor(images, opts):
    """The extractor by name, fitted on a seeded sample of training images if it needs fitting."""
    from rnncap.vision.backbone import make_backbone

    ex = make_backbone(opts.extractor, **opts.extractor_options)
    if getattr(ex, "output", "pooled") != "pooled":
        raise ValueError(f"extractor {opts.extractor!r} with output {ex.output!r}: the extractor "
                         f"kept for captioning gives pooled vectors; ask for grids with --grid")
    if not hasattr(ex, "fit") or getattr(ex, "fitted", True):
        return ex
    rng = np.random.default_rng(opts.seed)
    rows = np.sort(rng.permutation(images.train)[:opts.fit_images])
    raw = []
    for r in rows:
        try:
            raw.append(ex.raw_features(_load(ex, images.path(r))[None])[0])
        except (ValueError, OSError):
            continue  # named later, when its row is computed
    if len(raw) < 2:
        raise ValueError(f"cannot fit extractor {opts.extractor!r}: {len(raw)} of the {len(rows)} "
                         f"training images sampled could be read; it needs at least 2")
    return ex.fit(np.stack(raw))


def _job(images, opts):
    """What identifies the file's contents: compared when a rerun continues a partial file."""
    import hashlib

    return {"layout": images.layout, "images": len(images.files),
            "files_sha1": hashlib.sha1("\n".join(images.files).encode()).hexdigest(),
            "extractor": opts.extractor, "extractor_options": opts.extractor_options,
            "fit_images": opts.fit_images, "seed": opts.seed, "pooled": opts.pooled,
            "grid": opts.grid, "dtype": opts.dtype}


def _shapes(extractor, images, opts):
    """(pooled D or None, grid shape or None) by running the extractor on a tiny dummy image."""
    probe = np.zeros((1, 64, 64, 3), np.uint8) + 128
    if opts.grid and not (hasattr(extractor, "grid") or hasattr(extractor, "features")):
        raise ValueError(f"extractor {opts.extractor!r} has no grid output; use pooled features "
                         f"only (no --grid)")
    pooled, grid = _features(extractor, probe, opts.pooled, opts.grid, prepared=False)
    return (None if pooled is None else int(pooled.shape[1]),
            None if grid is None else tuple(int(x) for x in grid.shape[1:]))


def _read_attrs(path, remedy):
    """featfile.read_attrs, with a file that is not HDF5 named in a ValueError."""
    try:
        return featfile.read_attrs(path)
    except OSError as err:
        raise ValueError(f"{path} exists and is not a readable HDF5 file ({err}); remove it "
                         f"{remedy}") from None


def _layout_mismatch(path, images, opts):
    """How a features file's datasets differ from those this run would create (its extractor's
    widths, the dtype, one row per image), in words; None when they agree. Same flags do not
    guarantee the same layout: the file may come from another version of rnncap."""
    saved = featfile.read_extractor(path)
    if saved is None:
        return "it has no 'extractor' group"
    try:
        pooled_dim, grid_shape = _shapes(_from_saved(*saved, path), images, opts)
    except (ValueError, RuntimeError) as err:  # an extractor that cannot give what is asked
        return f"its extractor cannot compute these features ({err})"
    return featfile.mismatch(path, featfile.layout(
        len(images.files), pooled_dim=pooled_dim, grid_shape=grid_shape, dtype=opts.dtype,
        image_ids=images.image_ids is not None))


def make_features(source, out=None, *, image_root=None, options=None, on_chunk=None):
    """Compute (or continue computing) a dataset's features file.

    Args:
        source: dataset.json, a Karpathy or COCO folder, or a folder of images.
        out: the HDF5 file to write (default: ``features.h5`` in the dataset's folder).
        image_root: where a dataset.json's images are (default: its folder).
        options: a :class:`FeaturesOptions`.
        on_chunk: called with the number of rows written after each chunk (tests use it).

    Returns:
        a summary dict: out, images, computed (this run), skipped (names), seconds.

    Raises:
        ValueError naming unreadable images (without ``skip_bad``), a bad option, or a partial
        file made with other settings.
    """
    import time

    opts = options or FeaturesOptions()
    if opts.dtype not in DTYPES:
        raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}, got {opts.dtype!r}")
    if not (opts.pooled or opts.grid):
        raise ValueError("nothing to compute: ask for pooled and/or grid features")
    if opts.workers < 1 or opts.chunk_size < 1:
        raise ValueError(f"--workers and --chunk-size must be >= 1, got {opts.workers} and "
                         f"{opts.chunk_size}")
    images = list_images(source, image_root)
    out = os.fspath(out or images.default_out)
    partial = out + ".partial"
    job = _job(images, opts)
    if os.path.exists(out):
        attrs = _read_attrs(out, "or choose another --out")
        differs = attrs and attrs.get("job") == job and _layout_mismatch(out, images, opts)
        if differs:
            raise FileExistsError(f"{out} exists and holds features made with other settings: "
                                  f"{differs}; remove it or choose another --out")
        if attrs and attrs.get("job") == job:
            return {"out": out, "images": len(images.files), "computed": 0,
                    "skipped": attrs.get("skipped", []), "seconds": 0.0, "up_to_date": True}
        raise FileExistsError(f"{out} exists and holds other features; remove it or choose "
                              f"another --out")
    if os.path.exists(partial):
        attrs = _read_attrs(partial, "to start over")
        if not attrs or attrs.get("job") != job:
            raise ValueError(f"{partial} is an unfinished features file made with other settings "
                             f"({attrs and attrs.get('job')}); remove it to start over")
        differs = _layout_mismatch(partial, images, opts)
        if differs:
            raise ValueError(f"{partial} is an unfinished features file made with other settings: "
                             f"{differs}; remove it to start over")
    else:
        extractor = _fitted_extractor(images, opts)
        spec, arrays = _saved_form(extractor)
        pooled_dim, grid_shape = _shapes(extractor, images, opts)
        featfile.create(partial, files=images.files, job=job, spec=spec, arrays=arrays,
                        pooled_dim=pooled_dim, grid_shape=grid_shape, dtype=opts.dtype,
                        image_ids=images.image_ids)
    spec, arrays = featfile.read_extractor(partial)
    writer = featfile.Writer(partial)
    t0 = time.perf_counter()
    try:
        todo = writer.pending()
        computed, bad = _run(writer, images, todo, spec, arrays, opts, on_chunk)
        if bad and not opts.skip_bad:
            listing = "; ".join(f"{images.files[r]}: {msg}" for r, msg in bad[:10])
            more = f" (and {len(bad) - 10} more)" if len(bad) > 10 else ""
            raise ValueError(f"{len(bad)} unreadable image(s): {listing}{more}. The other "
                             f"{computed} rows are kept in {partial}; fix or remove these files "
                             f"and rerun, or rerun with --skip-bad to skip and record them")
        skipped = [images.files[r] for r, _ in bad]
        writer.finish(out)
    finally:
        writer.close()
    return {"out": out, "images": len(images.files), "computed": computed, "skipped": skipped,
            "seconds": time.perf_counter() - t0, "up_to_date": False}


def _run(writer, images, todo, spec, arrays, opts, on_chunk):
    """Compute the rows ``todo`` chunk by chunk and write them; returns (computed, bad)."""
    from tqdm import tqdm

    chunks = [todo[s:s + opts.chunk_size] for s in range(0, len(todo), opts.chunk_size)]
    bar = tqdm(total=len(images.files), initial=len(images.files) - len(todo), unit="img",
               desc=f"features ({spec['name']})", disable=not opts.progress, file=sys.stderr)
    computed, bad = 0, []

    def store(result):
        nonlocal computed
        rows, good, pooled, grid, errs = result
        for r, msg in errs:
            bar.write(f"unreadable image {images.files[r]}: {msg}", file=sys.stderr)
        bad.extend(errs)
        # without --skip-bad an unreadable row stays pending, so a rerun retries it
        writer.write(good, pooled, grid, skipped=[r for r, _ in errs] if opts.skip_bad else ())
        computed += len(good)
        bar.update(len(rows))
        if on_chunk:
            on_chunk(computed)

    try:
        if opts.dask:
            from rnncap.distributed import features_on_dask

            features_on_dask(opts.dask, chunks, images, spec, arrays, opts, store,
                             say=lambda msg: bar.write(msg, file=sys.stderr))
        elif opts.workers == 1:
            ex = _from_saved(spec, arrays, writer.path)
            for rows in chunks:
                store(_compute(ex, rows, [images.path(r) for r in rows], opts.pooled, opts.grid))
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(opts.workers, mp_context=mp.get_context("spawn"),
                                     initializer=_init_worker, initargs=(spec, arrays)) as pool:
                inflight = deque()
                for rows in chunks:  # at most 2 chunks per worker in flight: memory stays flat
                    inflight.append(pool.submit(_worker_compute, rows,
                                                [images.path(r) for r in rows], opts.pooled,
                                                opts.grid))
                    if len(inflight) >= 2 * opts.workers:
                        store(inflight.popleft().result())
                while inflight:
                    store(inflight.popleft().result())
    finally:
        bar.close()
    return computed, bad

