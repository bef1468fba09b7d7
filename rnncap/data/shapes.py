"""The built-in shapes captioning dataset: seeded pictures of coloured shapes.

Each image is an RGB picture (default 64x64) on a plain light-grey
background holding ``min_objects``..``max_objects`` objects. The picture is
split into a 3x3 grid; every object sits in its own cell, so objects never
overlap and every position and relation is unambiguous. An object has

- a shape: circle, square, triangle
- a colour: red, green, blue, yellow, purple, orange
- a size: small or large (half-extent 9% or 16% of the side)
- a position: its grid cell (row top/middle/bottom, column left/center/right)
  and its pixel centre (small objects are jittered inside their cell).

That list of dicts is the image's ground truth; it is stored next to the
captions and is what the truth check (``rnncap.data.truth``) judges
captions against. Every image gets ``captions_per_image`` (>= 5) captions,
one from each of five template families (with at most two objects every
caption has at most 15 words, CS231n's caption length), with synonyms (big/large,
little/small, violet/purple, image/picture, shapes/objects) and different
word orders; pictures with several objects get spatial relations ("to the
left of", "above") and counts ("there are two shapes").

Generation is deterministic: image ``i`` of a split draws from
``np.random.default_rng([seed, split_code, i])``, so it does not depend on
the size of other splits, and PNGs plus ``dataset.json`` are byte-identical
for the same parameters. The folder is written under a temporary name and
renamed when complete, and its name hashes every parameter, so a changed
parameter makes a new dataset and a half-written one is never read.

This module does NOT know features, vocabularies or models; the captions it
writes are raw text, read back by the Karpathy-format loader like real data.
"""

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from rnncap import atomic

GENERATOR_VERSION = 2
SHAPES = ("circle", "square", "triangle")
COLOURS = {
    "red": (215, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 215),
    "yellow": (235, 205, 30),
    "purple": (135, 60, 175),
    "orange": (245, 130, 20),
}
SIZES = ("small", "large")
HALF_EXTENT = {"small": 0.09, "large": 0.16}  # fraction of the image side
ROWS = ("top", "middle", "bottom")
COLS = ("left", "center", "right")
SPLITS = ("train", "val", "test")
#: The cache folder `rnncap demo`, `rnncap train --format shapes` and `load_shapes()` share.
DEFAULT_CACHE = ".cache/rnncap/shapes"
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# Synonyms used when writing captions; the truth check accepts all of them.
SIZE_WORDS = {"small": ("small", "little"), "large": ("large", "big")}
COLOUR_WORDS = {c: (c,) for c in COLOURS}
COLOUR_WORDS["purple"] = ("purple", "violet")
PICTURE_WORDS = ("image", "picture")
OBJECT_WORDS = ("shape", "object")
# How each grid cell is named; the first phrase of each is the canonical one.
CELL_PHRASES = {
    (0, 0): ("in the top left corner", "in the top left"),
    (0, 1): ("at the top",),
    (0, 2): ("in the top right corner", "in the top right"),
    (1, 0): ("on the left",),
    (1, 1): ("in the center", "in the middle"),
    (1, 2): ("on the right",),
    (2, 0): ("in the bottom left corner", "in the bottom left"),
    (2, 1): ("at the bottom",),
    (2, 2): ("in the bottom right corner", "in the bottom right"),
}
RELATIONS = ("to the left of", "to the right of", "above", "below")
_SUPERSAMPLE = 4  # draw at 4x and box-filter down: smooth edges, still deterministic


def relation_holds(rel, a, b):
    """Whether object ``a`` stands in relation ``rel`` to object ``b`` (grid cells)."""
    if rel == "to the left of":
        return a["col"] < b["col"]
    if rel == "to the right of":
        return a["col"] > b["col"]
    if rel == "above":
        return a["row"] < b["row"]
    if rel == "below":
        return a["row"] > b["row"]
    raise ValueError(f"unknown relation {rel!r}; expected one of {RELATIONS}")


# ---------------------------------------------------------------- scenes

def sample_scene(rng, image_size=64, min_objects=1, max_objects=2, object_weights=None,
                 same_colour=None):
    """Draw one scene's ground truth.

    Args:
        rng: the picture's own generator.
        image_size: side of the picture, in pixels.
        min_objects, max_objects: how many objects the picture may hold.
        object_weights: None for a uniform number of objects, or one weight for each number
            from ``min_objects`` to ``max_objects`` (for training pictures that show more of
            one kind of scene than the test split does).
        same_colour: None, or the probability that every object is given the first one's
            colour (scenes where colour cannot tell the objects apart).

    Returns:
        (background grey level int, list of object dicts with keys shape,
        colour, size, row, col, x, y), objects in reading order of their cells.
    """
    if object_weights is None:
        k = int(rng.integers(min_objects, max_objects + 1))
    else:
        w = np.asarray(object_weights, dtype=np.float64)
        k = min_objects + int(rng.choice(len(w), p=w / w.sum()))
    cells = sorted(rng.choice(9, size=k, replace=False).tolist())
    cell = image_size / 3
    objects = []
    for c in cells:
        row, col = divmod(c, 3)
        size = SIZES[rng.integers(len(SIZES))]
        half = HALF_EXTENT[size] * image_size
        jitter = max(0.0, cell / 2 - half - 1)
        x = (col + 0.5) * cell + rng.uniform(-jitter, jitter)
        y = (row + 0.5) * cell + rng.uniform(-jitter, jitter)
        objects.append({
            "shape": SHAPES[rng.integers(len(SHAPES))],
            "colour": list(COLOURS)[rng.integers(len(COLOURS))],
            "size": size,
            "row": row, "col": col,
            "x": round(float(x), 2), "y": round(float(y), 2),
        })
    if same_colour is not None and len(objects) > 1 and rng.random() < same_colour:
        for o in objects[1:]:
            o["colour"] = objects[0]["colour"]
    background = int(rng.integers(185, 241))
    return background, objects


def render(objects, background, image_size=64):
    """Draw a scene. Returns uint8 (image_size, image_size, 3)."""
    from PIL import Image, ImageDraw

    s = _SUPERSAMPLE
    big = Image.new("RGB", (image_size * s, image_size * s), (background,) * 3)
    draw = ImageDraw.Draw(big)
    for o in objects:
        h = HALF_EXTENT[o["size"]] * image_size * s
        cx, cy = o["x"] * s, o["y"] * s
        fill = COLOURS[o["colour"]]
        if o["shape"] == "circle":
            draw.ellipse([cx - h, cy - h, cx + h, cy + h], fill=fill)
        elif o["shape"] == "square":
            q = 0.9 * h  # a square of the same extent looks bigger than a circle
            draw.rectangle([cx - q, cy - q, cx + q, cy + q], fill=fill)
        elif o["shape"] == "triangle":
            draw.polygon([(cx, cy - h), (cx - h, cy + h), (cx + h, cy + h)], fill=fill)
        else:
            raise ValueError(f"unknown shape {o['shape']!r}")
    small = big.resize((image_size, image_size), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.uint8)


# -------------------------------------------------------------- captions

def _pick(rng, options):
    return options[int(rng.integers(len(options)))]


def _article(word):
    return "an" if word[0] in "aeiou" else "a"


def noun_phrase(o, rng, style="full"):
    """'a large red circle' (full), 'a red circle' (colour), with synonyms."""
    size = _pick(rng, SIZE_WORDS[o["size"]])
    colour = _pick(rng, COLOUR_WORDS[o["colour"]])
    if style == "full":
        return f"{_article(size)} {size} {colour} {o['shape']}"
    if style == "colour":
        return f"{_article(colour)} {colour} {o['shape']}"
    if style == "that_is":
        return f"{_article(size)} {size} {o['shape']} that is {colour}"
    raise ValueError(f"unknown noun phrase style {style!r}")


def _where(o, rng, short=False):
    phrases = CELL_PHRASES[(o["row"], o["col"])]
    if short:  # keeps two-object captions within CS231n's 15 words
        phrases = [p for p in phrases if "corner" not in p]
    return _pick(rng, phrases)


def _plural(shape):
    return shape + "s"


def _count_caption(objects, rng):
    k = len(objects)
    pic = _pick(rng, PICTURE_WORDS)
    if k == 1:
        return f"there is one {_pick(rng, OBJECT_WORDS)} in the {pic}"
    num = NUMBERS[k] if k < len(NUMBERS) else str(k)
    shapes = {o["shape"] for o in objects}
    colours = {o["colour"] for o in objects}
    options = [f"there are {num} {_pick(rng, OBJECT_WORDS)}s in the {pic}",
               f"the {pic} shows {num} {_pick(rng, OBJECT_WORDS)}s"]
    if len(shapes) == 1:
        options.append(f"there are {num} {_plural(shapes.pop())}")
    if len(colours) == 1:
        options.append(f"{num} {_pick(rng, COLOUR_WORDS[colours.pop()])} "
                       f"{_pick(rng, OBJECT_WORDS)}s")
    return _pick(rng, options)


def _relation_caption(objects, rng):
    i, j = rng.choice(len(objects), size=2, replace=False)
    a, b = objects[i], objects[j]
    rel = _pick(rng, [r for r in RELATIONS if relation_holds(r, a, b)])
    na, nb = noun_phrase(a, rng, _pick(rng, ("full", "full", "colour"))), noun_phrase(b, rng)
    form = int(rng.integers(3))
    if form == 0:
        return f"{na} {rel} {nb}"
    if form == 1:
        return f"{na} is {rel} {nb}"
    return f"there is {na} {rel} {nb}"


def _list_caption(objects, rng, with_place):
    order = rng.permutation(len(objects))
    parts = []
    for n in order:
        o = objects[n]
        np_ = noun_phrase(o, rng, "colour" if with_place else "full")
        parts.append(f"{np_} {_where(o, rng, short=True)}" if with_place else np_)
    text = ", ".join(parts[:-1]) + " and " + parts[-1]
    if with_place:
        return text
    return _pick(rng, ("", f"the {_pick(rng, PICTURE_WORDS)} shows ")) + text


def make_captions(objects, rng, n=5):
    """``n`` captions for one scene, cycling through five template families.

    Families, one object: plain noun phrase, noun phrase with its place,
    "the image shows ...", "... that is <colour>", a count. Several objects:
    a relation, a second relation, a list, a list with places, a count.
    """
    if n < 5:
        raise ValueError(f"captions per image must be >= 5, got {n}")
    if len(objects) == 1:
        o = objects[0]
        pic = _pick(rng, PICTURE_WORDS)
        families = [
            lambda: noun_phrase(o, rng),
            lambda: _pick(rng, (f"there is {noun_phrase(o, rng)} {_where(o, rng)}",
                                f"{noun_phrase(o, rng)} is {_where(o, rng)}",
                                f"{noun_phrase(o, rng, 'colour')} {_where(o, rng)}")),
            lambda: f"the {pic} shows {noun_phrase(o, rng)}",
            lambda: noun_phrase(o, rng, "that_is"),
            lambda: _count_caption(objects, rng),
        ]
    else:
        families = [
            lambda: _relation_caption(objects, rng),
            lambda: _relation_caption(objects, rng),
            lambda: _list_caption(objects, rng, with_place=False),
            lambda: _list_caption(objects, rng, with_place=True),
            lambda: _count_caption(objects, rng),
        ]
    captions = []
    for k in range(n):
        family = families[k % len(families)]
        for _ in range(20):  # a family asked twice (n > 5) may repeat itself
            text = family()
            if text not in captions:
                break
        captions.append(text)
    order = rng.permutation(n)
    return [captions[i] for i in order]


# ------------------------------------------------------------ generation

def _params(seed, num_train, num_val, num_test, min_objects, max_objects, image_size,
            captions_per_image, train_object_weights=None, train_same_colour=None):
    if not 1 <= min_objects <= max_objects <= 9:
        raise ValueError(f"need 1 <= min_objects <= max_objects <= 9, got "
                         f"min_objects={min_objects}, max_objects={max_objects}")
    if image_size < 24:
        raise ValueError(f"image_size must be >= 24 pixels, got {image_size}")
    for name, v in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test)):
        if v < 0:
            raise ValueError(f"{name} must be >= 0, got {v}")
    params = {"generator_version": GENERATOR_VERSION, "seed": int(seed),
              "num_train": int(num_train), "num_val": int(num_val), "num_test": int(num_test),
              "min_objects": int(min_objects), "max_objects": int(max_objects),
              "image_size": int(image_size), "captions_per_image": int(captions_per_image)}
    # The training-only options enter the parameters (and so the folder name) only when set,
    # so a dataset made without them keeps its name.
    if train_object_weights is not None:
        w = [float(x) for x in train_object_weights]
        if (len(w) != max_objects - min_objects + 1 or not all(np.isfinite(w))
                or min(w) < 0 or sum(w) <= 0):
            raise ValueError(f"train_object_weights needs {max_objects - min_objects + 1} "
                             f"non-negative weights (one for each number of objects from "
                             f"{min_objects} to {max_objects}), not all zero; got {w}")
        params["train_object_weights"] = w
    if train_same_colour is not None:
        if not 0 <= train_same_colour <= 1:
            raise ValueError(f"train_same_colour is a probability in [0, 1], got "
                             f"{train_same_colour}")
        params["train_same_colour"] = float(train_same_colour)
    return params


def dataset_dirname(params):
    """Folder name that identifies a dataset by all its parameters."""
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
    return f"shapes-s{params['seed']}-{digest}"


def prepare_shapes(cache_dir=DEFAULT_CACHE, *, seed=0, num_train=10000, num_val=1000, num_test=1000,
                   min_objects=1, max_objects=2, image_size=64, captions_per_image=5,
                   train_object_weights=None, train_same_colour=None, progress=True,
                   generate=True):
    """Generate the shapes dataset under ``cache_dir`` unless it is already there.

    Args:
        cache_dir: parent folder; the dataset goes in a subfolder named by a
            hash of all parameters (see ``dataset_dirname``). The default is the
            folder the demo uses, so its dataset is found, not made again.
        seed: int seed; same parameters -> byte-identical files.
        num_train, num_val, num_test: images per split.
        min_objects, max_objects: objects per image, drawn uniformly.
        train_object_weights, train_same_colour: None, or how the *training* pictures differ
            from the validation and test ones (``sample_scene``'s ``object_weights`` and
            ``same_colour``): more of the scenes a model finds hard to describe, while the
            splits it is measured on keep the uniform draw.
        image_size: side of the square RGB images, in pixels.
        captions_per_image: captions per image (>= 5).
        progress: show a tqdm progress bar.
        generate: False to only find an existing dataset (FileNotFoundError if there is
            none), for commands that read data but were not asked to make any.

    Returns:
        Path of the dataset folder, holding ``dataset.json`` (Karpathy format,
        each image with an extra "objects" ground-truth list), ``params.json``
        and ``images/<split>/<imgid>.png``.
    """
    params = _params(seed, num_train, num_val, num_test, min_objects, max_objects,
                     image_size, captions_per_image, train_object_weights, train_same_colour)
    cache_dir = Path(cache_dir)
    final = cache_dir / dataset_dirname(params)
    if (final / "dataset.json").is_file():
        return final
    if final.exists():
        raise FileExistsError(f"{final} exists but holds no dataset.json: it is not a complete "
                              "shapes dataset (rnncap never leaves one half-written); remove it")
    if not generate:
        raise FileNotFoundError(f"no shapes dataset in {cache_dir} (looked for {final.name}/dataset.json); "
                                "it is generated only by training (rnncap train --format shapes, "
                                "rnncap demo)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    atomic.remove_stale(cache_dir, final.name)  # what a killed generation left behind
    # Generating takes a while and tens of megabytes of disk: never do it unannounced.
    total = params["num_train"] + params["num_val"] + params["num_test"]
    print(f"shapes: generating {total:,} images into {final} (made once, then cached)",
          file=sys.stderr, flush=True)
    # a concurrent writer that finished first made the same files: keep them
    with atomic.atomic_folder(final, exists="keep") as tmp:
        _write_dataset(tmp, params, progress)
    return final


def _write_dataset(folder, params, progress):
    from PIL import Image

    counts = {"train": params["num_train"], "val": params["num_val"], "test": params["num_test"]}
    total = sum(counts.values())
    bar = None
    if progress:
        from rnncap.progress import bar as progress_bar
        bar = progress_bar(total, "shapes: generating images", unit="img")
    images, imgid, sentid = [], 0, 0
    size = params["image_size"]
    for code, split in enumerate(SPLITS):
        (folder / "images" / split).mkdir(parents=True, exist_ok=True)
        for i in range(counts[split]):
            rng = np.random.default_rng([params["seed"], code, i])
            train = {}
            if split == "train":
                train = {"object_weights": params.get("train_object_weights"),
                         "same_colour": params.get("train_same_colour")}
            background, objects = sample_scene(rng, size, params["min_objects"],
                                               params["max_objects"], **train)
            pixels = render(objects, background, size)
            filename = f"{split}_{i:06d}.png"
            Image.fromarray(pixels).save(folder / "images" / split / filename, format="PNG",
                                         compress_level=6)
            raws = make_captions(objects, rng, params["captions_per_image"])
            sentences = []
            for raw in raws:
                sentences.append({"tokens": raw.replace(",", "").split(), "raw": raw,
                                  "imgid": imgid, "sentid": sentid})
                sentid += 1
            images.append({"split": split, "filepath": f"images/{split}",
                           "filename": filename, "imgid": imgid,
                           "sentids": [s["sentid"] for s in sentences],
                           "sentences": sentences, "objects": objects})
            imgid += 1
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    with open(folder / "dataset.json", "w", encoding="utf-8") as f:
        json.dump({"dataset": "shapes", "images": images}, f, sort_keys=True)
    with open(folder / "params.json", "w", encoding="utf-8") as f:
        json.dump(params, f, sort_keys=True, indent=1)
