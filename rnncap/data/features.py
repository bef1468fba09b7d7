"""Image files -> float32 feature vectors, from pixels only.

CS231n fed its captioner VGG-16 fc7 activations reduced by PCA to 512
dimensions. rnncap's built-in extractor follows the same recipe with no
pretrained network and no dependency beyond NumPy and Pillow:

1. resize to ``image_size`` x ``image_size`` RGB, scale to [-1, 1];
2. convolve with ``num_filters`` fixed random filters (seeded; half of them
   zero-mean, which respond to edges and corners, half not, which respond to
   colour), stride ``stride``, and keep both rectified halves ReLU(z), ReLU(-z);
3. pool each channel over the cells of a ``grid`` x ``grid`` grid, by mean
   and by max (the grid keeps *where* things are, the max keeps small objects
   from being averaged away; whole-image pooling would add nothing a linear
   map of the cell means cannot make);
4. PCA fitted on the training split to ``pca_dim`` dimensions, scaled by one
   number so the average feature variance is 1.

The same pooled cells also make a *grid* for attention models (``grid``):
one vector per cell, (N, grid*grid, 4K + 2*grid + grid*grid): the cell's
pooled responses, standardised per channel (mean and scale fitted on the
training split like the PCA) and divided by sqrt(4K), so that a cell's
vector has a norm of about 1 (an attention layer's tanh then starts in its
linear range; at norm ~sqrt(4K) it saturated and never learned where the
objects are, see docs/results.md), followed by one-hot row, column and cell
position features. With grid = 3 the cells are the 3x3 layout the shapes
generator places its objects in.

Everything that defines the mapping (filters, PCA mean and components, the
scale, the grid statistics, the options) is saved as ``extractor.json`` + ``arrays.npz`` (no
pickle), so a trained model can caption a new image file later.

Extractors are pluggable: a class with ``name``, ``dim``, ``extract(images)``,
``save(folder)`` and a ``from_saved(spec, arrays)`` classmethod, registered
with ``@register_extractor``, can be made by name and loaded from a folder.
The pretrained backbones (``rnncap.vision``) are such classes; they subclass
``PretrainedExtractor``, which gives them the fit/transform protocol as no-ops.

This module does NOT know captions, vocabularies, the shapes generator's
ground truth, or any data format; it sees pixels and file paths.
"""

import json
import math
import os
import zipfile
from tokenize import TokenError  # what numpy raises for a garbled .npy header

import numpy as np

SPEC_FILE = "extractor.json"
ARRAYS_FILE = "arrays.npz"
_REGISTRY = {}
# Extractors defined outside this module, imported the first time their name is asked for.
_ELSEWHERE = {"efficientnet-lite0": "rnncap.vision.backbone", "onnx": "rnncap.vision.onnx_backbone"}


def register_extractor(cls):
    """Class decorator: make an extractor class available by its ``name``."""
    _REGISTRY[cls.name] = cls
    return cls


class PretrainedExtractor:
    """Base of extractors with nothing to fit (a pretrained network): the built-in
    extractor's ``raw_features``/``fit``/``transform`` protocol done as no-ops around
    ``extract``, so code written for fitted extractors (``fit_extract_files``) takes them too."""

    def raw_features(self, images):
        return self.extract(images)

    def fit(self, raw):
        return self

    def transform(self, raw):
        return np.asarray(raw, dtype=np.float32)


def _registered(name):
    if name not in _REGISTRY and name in _ELSEWHERE:
        import importlib

        importlib.import_module(_ELSEWHERE[name])
    return name in _REGISTRY


def make_extractor(name="randconv", **options):
    """A new (unfitted) extractor by registry name."""
    if not _registered(name):
        raise ValueError(f"unknown feature extractor {name!r}; known: {sorted(set(_REGISTRY) | set(_ELSEWHERE))}")
    return _REGISTRY[name](**options)


def load_extractor(folder):
    """Load an extractor saved with ``save(folder)``.

    Raises:
        FileNotFoundError / ValueError naming the file and what is wrong (see :func:`read_saved`).
    """
    folder = os.fspath(folder)
    spec, arrays = read_saved(folder)
    name = spec.get("name")
    if not isinstance(name, str) or not _registered(name):
        raise ValueError(f"{os.path.join(folder, SPEC_FILE)}: unknown extractor name {name!r}; "
                         f"known: {sorted(set(_REGISTRY) | set(_ELSEWHERE))}")
    return _REGISTRY[name].from_saved(spec, arrays, source=folder)


def read_saved(folder):
    """(spec, arrays) of an extractor folder written by ``save``.

    Only the files' form is checked here: ``extractor.json`` is a JSON object, ``arrays.npz`` an
    uncompressed archive of numeric arrays (as ``np.savez`` writes it), read without pickle. What
    they mean is the extractor class's ``from_saved``'s to check.

    Raises:
        FileNotFoundError: a file is missing (named).
        ValueError: a file is damaged; the message names it and what was expected.
    """
    folder = os.fspath(folder)
    return _read_spec(os.path.join(folder, SPEC_FILE)), _read_arrays(os.path.join(folder, ARRAYS_FILE))


def _read_spec(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"feature extractor file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
    except (ValueError, RecursionError) as e:  # ValueError: bad JSON, or bytes that are not UTF-8
        raise ValueError(f"{path}: not valid JSON ({type(e).__name__}: {e}); expected the feature "
                         f"extractor's specification, a JSON object") from None
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: expected a JSON object (the feature extractor's specification), "
                         f"got {type(spec).__name__}")
    return spec


def _read_arrays(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"feature extractor file not found: {path}")
    expected = "expected an uncompressed .npz archive of numeric arrays, as an extractor's save() writes it"
    unreadable = (ValueError, OSError, EOFError, zipfile.BadZipFile, TokenError)
    try:
        with zipfile.ZipFile(path) as zf:
            members = zf.infolist()
    except unreadable as e:
        raise ValueError(f"{path}: not a readable .npz archive ({type(e).__name__}: {e}); "
                         f"{expected}") from None
    # Checked before anything is unpacked: an edited archive whose compressed member inflates
    # to gigabytes is refused by its header, not by running out of memory.
    size = os.path.getsize(path)
    for info in members:
        if info.compress_type != zipfile.ZIP_STORED or info.file_size > size:
            raise ValueError(f"{path}: member {info.filename} is compressed ({info.file_size} "
                             f"bytes unpacked); {expected}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except unreadable as e:  # a truncated member, a bad CRC, a garbled header, pickled objects
        raise ValueError(f"{path}: cannot be read ({type(e).__name__}: {e}); {expected}") from None
    for key, a in arrays.items():
        if a.dtype.kind not in "biuf":
            raise ValueError(f"{path}: array '{key}' has dtype {a.dtype}; {expected}")
    return arrays


def save_spec(folder, spec, arrays):
    """Write an extractor's saved form (spec, arrays) as a folder ``load_extractor`` reads."""
    _save_folder(folder, spec, arrays)


def spec_error(source, what, err, spec):
    """The one-line ValueError for a saved extractor's spec that lacks a key (KeyError) or
    holds a value of the wrong type (TypeError); `what` names the extractor's kind."""
    where = f"{source}/{SPEC_FILE}: {what}"
    if isinstance(err, KeyError):
        return ValueError(f"{where} has no {err} (it holds: {', '.join(map(repr, sorted(spec)))})")
    return ValueError(f"{where} is malformed ({err})")


def _save_folder(folder, spec, arrays):
    """Write spec + arrays into ``folder`` atomically (temp folder, then rename)."""
    from rnncap import atomic

    with atomic.atomic_folder(folder, exists="replace") as tmp:
        atomic.write_text(tmp / SPEC_FILE, json.dumps(spec, sort_keys=True, indent=1))
        atomic.write_with(tmp / ARRAYS_FILE, lambda f: np.savez(f, **arrays))


# ------------------------------------------------------------------ images

def load_image(path, size):
    """Read any image file as uint8 RGB (size, size, 3), squashed to a square.

    Decoding, orientation, colour conversion and refusals of bad files are
    :func:`rnncap.vision.image.open_rgb`'s, shared with the pretrained backbones.

    Raises:
        FileNotFoundError, or ValueError (``ImageError``) naming the file.
    """
    from PIL import Image

    from rnncap.vision.image import open_rgb

    im = open_rgb(path)
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.uint8)


def resize_batch(images, size):
    """uint8 (N, H, W, C) with C in {1, 3, 4} -> uint8 (N, size, size, 3)."""
    from PIL import Image

    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise ValueError(f"images must have shape (N, H, W, 3) (or 1/4 channels), got {images.shape}")
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 in [0, 255], got dtype {images.dtype}")
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    elif images.shape[-1] == 4:
        alpha = images[..., 3:].astype(np.float32) / 255
        images = (images[..., :3] * alpha + 255 * (1 - alpha)).round().astype(np.uint8)
    if images.shape[1:3] == (size, size):
        return images
    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BILINEAR))
                     for im in images])


def _batches(n, batch_size, progress, desc):
    starts = range(0, n, batch_size)
    if progress:
        from rnncap.progress import bar as progress_bar
        bar = progress_bar(n, desc, unit="img")
        for s in starts:
            yield s
            bar.update(min(batch_size, n - s))
        bar.close()
    else:
        yield from starts


def extract_files(extractor, paths, batch_size=256, progress=False, raw=False, grid=False):
    """Features of image files, in batches.

    Args:
        extractor: a (fitted) extractor.
        paths: list of N image paths (any size, RGB/grayscale/RGBA).
        batch_size: images decoded and processed at once.
        progress: show a tqdm bar.
        raw: return the extractor's pre-PCA features (``raw_features``), used
            to fit the PCA.
        grid: return the extractor's grid features (``grid``) instead.

    Returns:
        float32 (N, D), or (N, *extractor.feature_shape) for extractors that have one,
        or (N, L, D_grid) with ``grid``.
    """
    paths = [os.fspath(p) for p in paths]
    size = extractor.image_size
    if grid and not hasattr(extractor, "grid"):
        raise ValueError(f"feature extractor {extractor.name!r} gives no grid features")
    # An extractor may read files its own way (a backbone crops them: ``read_image``, then
    # ``extract_prepared``) and give grids, not vectors (``feature_shape``).
    own_read = getattr(extractor, "read_image", None)
    read = own_read or (lambda p: load_image(p, size))
    if grid:
        run, shape = extractor.grid, tuple(extractor.grid_shape)
    else:
        run = extractor.extract_prepared if own_read else (
            extractor.raw_features if raw else extractor.extract)
        shape = (extractor.raw_dim,) if raw and not own_read else tuple(
            getattr(extractor, "feature_shape", (extractor.dim,)))
    out = np.empty((len(paths),) + shape, dtype=np.float32)
    for s in _batches(len(paths), batch_size, progress, f"features ({extractor.name})"):
        images = np.stack([read(p) for p in paths[s:s + batch_size]])
        out[s:s + len(images)] = run(images)
    return out


# --------------------------------------------------------------- extractor

@register_extractor
class RandomConvExtractor:
    """Fixed random convolution filters + grid pooling + PCA (see module docstring).

    Attributes:
        dim: D, the output size (``pca_dim``).
        raw_dim: the pooled feature size before PCA.
    """

    name = "randconv"
    OPTIONS = ("image_size", "num_filters", "filter_size", "stride", "grid", "pca_dim", "seed")

    def __init__(self, *, image_size=64, num_filters=64, filter_size=5, stride=2, grid=3,
                 pca_dim=512, seed=0):
        sizes = {"image_size": image_size, "num_filters": num_filters, "filter_size": filter_size,
                 "stride": stride, "grid": grid, "pca_dim": pca_dim}
        for name, value in sizes.items():  # a stride of 0 would divide by zero below
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"extractor option {name} must be an integer >= 1, got {value!r}")
        if image_size < filter_size + stride:
            raise ValueError(f"image_size {image_size} too small for filter_size {filter_size}")
        self.options = {"image_size": int(image_size), "num_filters": int(num_filters),
                        "filter_size": int(filter_size), "stride": int(stride),
                        "grid": int(grid), "pca_dim": int(pca_dim), "seed": int(seed)}
        self.image_size = image_size
        rng = np.random.default_rng(seed)
        k, K = filter_size, num_filters
        w = rng.standard_normal((k * k * 3, K))  # (k*k*3, K)
        half = K // 2
        # zero-mean filters see edges/corners, whatever the colour
        per_channel = w[:, :half].reshape(k * k, 3, half)
        w[:, :half] = (per_channel - per_channel.mean(axis=0, keepdims=True)).reshape(-1, half)
        w /= np.linalg.norm(w, axis=0, keepdims=True)
        self.filters = w.astype(np.float32)
        n_pos = (image_size - filter_size) // stride + 1
        if n_pos < grid:
            raise ValueError(f"grid {grid} is finer than the {n_pos}x{n_pos} response map")
        self.raw_dim = grid * grid * K * 4  # cells x filters x (+/-) x (mean, max)
        self.dim = int(pca_dim)
        if self.dim > self.raw_dim:
            raise ValueError(f"pca_dim {pca_dim} exceeds the raw feature size {self.raw_dim}")
        self.mean = self.components = None
        self.scale = 1.0
        self.grid_mean = self.grid_scale = None  # (4K,) each, fitted with the PCA

    @property
    def fitted(self):
        return self.components is not None

    def raw_features(self, images):
        """uint8 (N, H, W, 3) -> float32 (N, raw_dim), before PCA."""
        o = self.options
        k, st, g = o["filter_size"], o["stride"], o["grid"]
        x = resize_batch(images, self.image_size).astype(np.float32) / 127.5 - 1.0  # (N, S, S, 3)
        N = x.shape[0]
        win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))[:, ::st, ::st]
        P = win.shape[1]  # win: (N, P, P, 3, k, k)
        cols = win.transpose(0, 1, 2, 4, 5, 3).reshape(N * P * P, k * k * 3)
        z = (cols @ self.filters).reshape(N, P, P, -1)  # (N, P, P, K)
        # Crop the response map to a multiple of the grid (at most g-1 border
        # positions go), so each cell is a reshape, not a Python loop.
        c = P // g
        z = z[:, :c * g, :c * g].reshape(N, g, c, g, c, -1)  # (N, g, c, g, c, K)
        # Pool ReLU(z) and ReLU(-z) without materialising both: per cell,
        # mean ReLU(-z) = mean ReLU(z) - mean z, max ReLU(-z) = ReLU(-min z).
        pos_mean = np.maximum(z, 0).mean(axis=(2, 4))  # (N, g, g, K)
        pooled = [pos_mean, pos_mean - z.mean(axis=(2, 4)),
                  np.maximum(z.max(axis=(2, 4)), 0), np.maximum(-z.min(axis=(2, 4)), 0)]
        return np.stack(pooled, axis=-1).reshape(N, -1).astype(np.float32)  # (N, raw_dim)

    @property
    def grid_shape(self):
        """(L, D_grid) of one image's grid features: grid*grid cells, each its 4K pooled
        responses plus one-hot row (grid), column (grid) and cell (grid*grid) features."""
        g = self.options["grid"]
        return (g * g, self.raw_dim // (g * g) + 2 * g + g * g)

    def _positions(self):
        """(L, 2g + g*g) one-hot row, column and cell of every cell, in reading order."""
        g = self.options["grid"]
        cell = np.arange(g * g)
        pos = np.zeros((g * g, 2 * g + g * g), dtype=np.float32)
        pos[cell, cell // g] = 1
        pos[cell, g + cell % g] = 1
        pos[cell, 2 * g + cell] = 1
        return pos

    def grid_from_raw(self, raw):
        """Raw features (N, raw_dim) -> float32 grid features (N, L, D_grid)."""
        if self.grid_mean is None:
            raise RuntimeError("the extractor has no fitted grid statistics; call fit() on "
                               "training features")
        L, _ = self.grid_shape
        N = raw.shape[0]
        cells = (raw.reshape(N, L, -1) - self.grid_mean) * self.grid_scale  # (N, L, 4K)
        pos = np.broadcast_to(self._positions(), (N, *self._positions().shape))
        return np.concatenate((cells, pos), axis=2).astype(np.float32)

    def grid(self, images):
        """uint8 images (N, H, W, 3) of any size -> float32 grid features (N, L, D_grid)."""
        return self.grid_from_raw(self.raw_features(images))

    def fit(self, raw):
        """Fit the PCA on raw training features (N, raw_dim); returns self."""
        raw = np.asarray(raw, dtype=np.float32)
        if raw.ndim != 2 or raw.shape[1] != self.raw_dim:
            raise ValueError(f"raw features must have shape (N, {self.raw_dim}), got {raw.shape}")
        if raw.shape[0] < 2:
            raise ValueError(f"need at least 2 images to fit the PCA, got {raw.shape[0]}")
        mean = raw.mean(axis=0, dtype=np.float64)
        centred = raw - mean.astype(np.float32)  # (N, R); the float32 product is the slow part
        cov = (centred.T @ centred).astype(np.float64) / (raw.shape[0] - 1)  # (R, R)
        comps, evals = _top_eigenvectors(cov, self.dim, np.random.default_rng(self.options["seed"]))
        # a deterministic sign: each component's largest entry is positive
        comps *= np.where(comps[np.abs(comps).argmax(axis=0), np.arange(self.dim)] < 0, -1, 1)
        total = max(float(evals.clip(min=0).sum()), 1e-12)
        self.mean = mean.astype(np.float32)
        self.components = comps.astype(np.float32)  # (R, D)
        self.scale = float(np.sqrt(self.dim / total))  # average output variance 1
        # Grid: every cell's 4K channels standardised with statistics over all cells.
        L = self.grid_shape[0]
        cells = raw.reshape(raw.shape[0] * L, -1)  # (N L, 4K)
        self.grid_mean = cells.mean(axis=0, dtype=np.float64).astype(np.float32)
        std = cells.std(axis=0, dtype=np.float64)
        # Standardised, then / sqrt(4K): cell vectors of norm ~1 (see the module docstring).
        self.grid_scale = (1 / (np.maximum(std, 1e-6) * np.sqrt(cells.shape[1]))).astype(np.float32)
        return self

    def transform(self, raw):
        """Raw features (N, raw_dim) -> float32 (N, D)."""
        if not self.fitted:
            raise RuntimeError("the extractor's PCA is not fitted; call fit() on training features")
        return ((raw - self.mean) @ self.components * np.float32(self.scale)).astype(np.float32)

    def extract(self, images):
        """uint8 images (N, H, W, 3) of any size -> float32 (N, D)."""
        return self.transform(self.raw_features(images))

    def save(self, folder):
        """Write ``extractor.json`` + ``arrays.npz`` into ``folder`` atomically."""
        if not self.fitted:
            raise RuntimeError("save a fitted extractor (call fit() first)")
        spec = {"name": self.name, "options": self.options, "dim": self.dim,
                "raw_dim": self.raw_dim, "scale": self.scale}
        _save_folder(folder, spec, {"filters": self.filters, "mean": self.mean,
                                    "components": self.components, "grid_mean": self.grid_mean,
                                    "grid_scale": self.grid_scale})

    @classmethod
    def from_saved(cls, spec, arrays, source="extractor"):
        missing = [key for key in ("filters", "mean", "components") if key not in arrays]
        if missing:
            raise ValueError(f"{source}/{ARRAYS_FILE}: missing array(s) {', '.join(missing)} "
                             f"(it holds: {', '.join(sorted(arrays)) or 'nothing'}); a saved "
                             f"{cls.name} extractor has filters, mean and components")
        where = f"{source}/{SPEC_FILE}"
        if "options" not in spec:
            raise ValueError(f"{where}: saved extractor has no 'options' (it holds: "
                             f"{_keys(sorted(spec)) or 'nothing'}); expected the "
                             f"extractor's settings, a JSON object of integers")
        options = spec["options"]
        # integer options, and the saved filters' shape, before the seeded filters are made
        if not isinstance(options, dict) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in options.values()):
            raise ValueError(f"{where}: 'options' must be a JSON object of non-negative integers, "
                             f"got {options!r:.80}")
        unknown = sorted(set(options) - set(cls.OPTIONS))
        if unknown:
            raise ValueError(f"{where}: 'options' has unknown key(s) {_keys(unknown)}; "
                             f"expected some of {', '.join(cls.OPTIONS)}")
        scale = spec.get("scale", 1.0)  # absent in a spec written by hand: no rescaling
        try:  # an integer beyond float's range overflows math.isfinite
            finite = not isinstance(scale, bool) and isinstance(scale, (int, float)) and math.isfinite(scale)
        except OverflowError:
            finite = False
        if not finite:
            raise ValueError(f"{where}: 'scale' must be a finite number, got {scale!r:.40}")
        k, K = options.get("filter_size", 5), options.get("num_filters", 64)
        if arrays["filters"].shape != (k * k * 3, K):
            raise ValueError(f"{source}/{ARRAYS_FILE}: 'filters' has shape {arrays['filters'].shape}, "
                             f"the options in {SPEC_FILE} say {(k * k * 3, K)}")
        try:
            ex = cls(**options)
        except ValueError as e:  # sizes that do not fit together: the message says which
            raise ValueError(f"{where}: 'options' are inconsistent ({e})") from None
        ex.scale = float(scale)
        expect = {"filters": ex.filters.shape, "mean": (ex.raw_dim,),
                  "components": (ex.raw_dim, ex.dim)}
        for key, shape in expect.items():
            if arrays[key].shape != shape:
                raise ValueError(f"{source}/{ARRAYS_FILE}: '{key}' has shape {arrays[key].shape}, "
                                 f"expected {shape}")
        for key in ("filters", "mean", "components", "grid_mean", "grid_scale"):
            if key in arrays and not np.isfinite(arrays[key]).all():
                raise ValueError(f"{source}/{ARRAYS_FILE}: '{key}' holds NaN or infinite values; "
                                 f"expected finite numbers")
        # the saved filters are authoritative (they also equal the seeded ones)
        ex.filters = arrays["filters"].astype(np.float32)
        ex.mean = arrays["mean"].astype(np.float32)
        ex.components = arrays["components"].astype(np.float32)
        if "grid_mean" in arrays and "grid_scale" in arrays:  # absent: pooled features only
            c = ex.raw_dim // ex.grid_shape[0]
            for key in ("grid_mean", "grid_scale"):
                if arrays[key].shape != (c,):
                    raise ValueError(f"{source}/{ARRAYS_FILE}: '{key}' has shape "
                                     f"{arrays[key].shape}, expected {(c,)}")
            ex.grid_mean = arrays["grid_mean"].astype(np.float32)
            ex.grid_scale = arrays["grid_scale"].astype(np.float32)
        return ex


def _keys(keys, most=8):
    """Keys of a JSON object for a one-line message: repr'd (newlines escaped), long ones cut."""
    shown = [repr(k) if len(k) <= 40 else repr(k[:40]) + "..." for k in keys[:most]]
    return ", ".join(shown) + (f" and {len(keys) - most} more" if len(keys) > most else "")


def _top_eigenvectors(cov, k, rng, oversample=64, iterations=4, exact_below=1024):
    """The k leading eigenpairs of a symmetric PSD matrix (R, R).

    An exact ``eigh`` of a 2304 x 2304 matrix takes ~15 s on 2 cores, so for
    large R this uses randomized subspace iteration (Halko, Martinsson and
    Tropp 2011, the default solver of scikit-learn's PCA at these sizes): a
    few products with an (R, k + oversample) block and one small ``eigh``.

    Returns:
        (vectors (R, k), values (k,)) in decreasing order of the values.
    """
    R = cov.shape[0]
    if R <= exact_below or k + oversample >= R:
        evals, evecs = np.linalg.eigh(cov)
        order = np.argsort(evals)[::-1][:k]
        return evecs[:, order], evals[order]
    q = np.linalg.qr(cov @ rng.standard_normal((R, k + oversample)))[0]
    for _ in range(iterations):
        q = np.linalg.qr(cov @ q)[0]
    evals, v = np.linalg.eigh(q.T @ cov @ q)  # small (k + oversample)^2 problem
    order = np.argsort(evals)[::-1][:k]
    return q @ v[:, order], evals[order]


def fit_extract_files(extractor, split_paths, fit_split="train", batch_size=256, progress=False,
                      grid=False):
    """Fit an extractor's PCA on one split's images and featurise every split.

    Each image is decoded once: raw features for all splits are computed,
    the PCA is fitted on ``fit_split``'s, and all are projected.

    Args:
        extractor: an unfitted extractor with ``raw_features``/``fit``/``transform``.
        split_paths: dict split -> list of image paths.

        grid: also return the grid features (an extractor with ``grid_from_raw``).

    Returns:
        dict split -> float32 (I_split, D); with ``grid``, a pair of that and
        dict split -> float32 (I_split, L, D_grid).
    """
    if fit_split not in split_paths or not split_paths[fit_split]:
        raise ValueError(f"cannot fit the extractor: split {fit_split!r} has no images")
    raw = {s: extract_files(extractor, p, batch_size, progress, raw=True)
           for s, p in split_paths.items()}
    extractor.fit(raw[fit_split])
    pooled = {s: extractor.transform(r) for s, r in raw.items()}
    if not grid:
        return pooled
    return pooled, {s: extractor.grid_from_raw(r) for s, r in raw.items()}


#: Part of every cache folder's name hash: a folder written with another layout (e.g.
#: without the grid files) is never read as this one.
CACHE_LAYOUT = 3


def cached_split_features(cache_root, split_paths, *, key="", name="randconv", options=None,
                          batch_size=256, progress=False, grid=False):
    """Features for image files by split, computed once and cached on disk.

    The built-in extractor is fitted on the "train" split, every split is
    featurised, and the result is written as ``<split>.npy`` files plus the
    saved extractor (``extractor/``) into a folder under ``cache_root`` whose
    name hashes the extractor's name and options, ``key`` (what identifies
    the images, e.g. a dataset's hash) and the file list. The folder is
    written under a temporary name and renamed when complete. Processes that
    compute the same folder at once do not harm each other: the first rename
    wins, the others drop their copy (it holds the same features) and keep the
    winner's, which is never deleted.

    Extractors with grid features (``grid_from_raw``) also get ``<split>-grid.npy``
    files, (I, L, D_grid), written at the same time.

    Args:
        grid: return the grid features instead of the pooled ones.

    Returns:
        (dict split -> float32 (I, D) (or (I, L, D_grid) with ``grid``), extractor
        folder path str).

    Raises:
        ValueError: ``grid`` for an extractor without grid features.
    """
    import hashlib

    options = dict(options or {})
    if grid and not hasattr(_REGISTRY.get(name), "grid_from_raw"):
        raise ValueError(f"feature extractor {name!r} gives no grid features (the attention "
                         f"model needs them)")
    ident = json.dumps({"name": name, "options": options, "key": key, "layout": CACHE_LAYOUT,
                        "paths": {s: [os.path.abspath(p) for p in ps]
                                  for s, ps in sorted(split_paths.items())}}, sort_keys=True)
    folder = os.path.join(os.fspath(cache_root),
                          f"features-{name}-{hashlib.sha1(ident.encode()).hexdigest()[:10]}")
    has_grid = hasattr(_REGISTRY.get(name), "grid_from_raw")
    files = {s: os.path.join(folder, f"{s}.npy") for s in split_paths}
    grid_files = {s: os.path.join(folder, f"{s}-grid.npy") for s in split_paths} if has_grid else {}
    wanted = grid_files if grid else files
    if all(os.path.isfile(f) for f in [*files.values(), *grid_files.values()]):
        feats = {s: _load_cached(f, folder) for s, f in wanted.items()}
        return feats, os.path.join(folder, "extractor")
    extractor = make_extractor(name, **options)
    if has_grid:
        feats, grids = fit_extract_files(extractor, split_paths, batch_size=batch_size,
                                         progress=progress, grid=True)
    else:
        feats, grids = fit_extract_files(extractor, split_paths, batch_size=batch_size,
                                         progress=progress), {}
    from rnncap import atomic

    atomic.remove_stale(cache_root, os.path.basename(folder))  # left by killed writers

    def in_the_way(existing):
        # Another process finished first: keep its folder (it holds the same features).
        # Something incomplete (not written by this function, which only ever renames
        # complete folders into place): replace it.
        return "keep" if all(os.path.isfile(f) for f in [*files.values(), *grid_files.values()]) else "replace"

    with atomic.atomic_folder(folder, exists=in_the_way) as tmp:
        extractor.save(tmp / "extractor")
        for s, f in feats.items():
            atomic.write_with(tmp / f"{s}.npy", lambda fh, a=f: np.save(fh, a))
        for s, f in grids.items():
            atomic.write_with(tmp / f"{s}-grid.npy", lambda fh, a=f: np.save(fh, a))
    return (grids if grid else feats), os.path.join(folder, "extractor")


def _load_cached(path, folder):
    """A cached features file as a float32 array, or a ValueError that names it and says what to do."""
    try:
        a = np.load(path, allow_pickle=False)
        if a.dtype != np.float32 or a.ndim < 2:
            raise ValueError(f"holds {a.dtype} {a.shape}")
    except (ValueError, OSError, EOFError, TokenError) as e:
        raise ValueError(f"{path}: damaged features cache ({type(e).__name__}: {e}); expected a "
                         f"float32 .npy array with one row per image; delete {folder} to "
                         f"compute the features again") from None
    return a
