"""A second, independent truth check for shapes captions, used by the tests as an oracle.

``rnncap.data.truth`` *parses* a caption and checks what it claims. This module works the other
way round: it *generates* every sentence of the shapes captions' language that is true of a scene,
and a caption is true when it is one of them. It was written from the generator
(``rnncap.data.shapes``: its templates and word lists) and docs/data.md, without reading
``rnncap.data.truth``, so the two share no code and no parsing decisions; where they disagree,
one of them is wrong (docs/truth-check.md lists what was found).

The language (after the normalisation below) is the generator's templates with any phrase of a
kind allowed in any slot of that kind:

    NP      a [small|large] [colour] shape  |  a [small|large] shape that is colour
    PLACE   any phrase of ``CELL_PHRASES`` (with or without "corner")
    REL     to the left of | to the right of | above | below
    one object    NP  |  the image shows NP  |  there is NP PLACE  |  NP is PLACE  |  NP PLACE
    relation      NP REL NP  |  NP is REL NP  |  there is NP REL NP
    list          [the image shows] NP NP ... and NP                 (two or more NPs)
    list+places   NP PLACE NP PLACE ... and NP PLACE                 (two or more)
    count         there is one shape in the image  |  there are N shapes in the image
                  |  the image shows N shapes  |  there are N circles  |  N red shapes

What is true:
- an NP is true of an object when every attribute it names is the object's (a missing size or
  colour claims nothing);
- a caption with one NP claims that such an object exists (not that it is the only one);
- a relation or a list claims *distinct* objects, one per NP; a relation compares grid cells
  exactly as ``shapes.relation_holds`` does (columns for left/right, rows for above/below);
- a place names exactly one cell ("at the top" is the top-middle cell, "on the left" the
  middle-left one), as ``CELL_PHRASES`` defines;
- a count is exact: "there are two shapes" needs exactly two objects, "there are two circles"
  exactly two circles, "two red shapes" exactly two red objects; "there is one shape in the
  image" exactly one object.

Normalisation (words that change nothing in the meaning): lower case; punctuation dropped
(the generator's commas are not tokens either); the synonyms big/large, little/small,
violet/purple, picture/image, object/shape, objects/shapes; "an" read as "a" (a wrong article is
a slip of grammar, not a false claim).

Everything else is *not true*: words the language lacks (``<UNK>`` included), repeated or
reordered words ("a red red circle", "a red large circle"), a caption cut short by the decoding
limit, "there is" + NP with nothing after it, or a count of one with a plural noun. A caption is
only counted true when its meaning is the one the dataset's own language gives it.

This module does NOT know vocabularies, models or files. It enumerates lists of up to three
objects only (more would be thousands of orderings), so it refuses scenes with more than three
objects; the default data and the demo have at most two.
"""

from __future__ import annotations

import functools
import itertools
import re

from rnncap.data.shapes import CELL_PHRASES, COLOURS, NUMBERS, RELATIONS, SHAPES, relation_holds

MAX_OBJECTS = 3
SYNONYMS = {"big": "large", "little": "small", "violet": "purple", "picture": "image",
            "object": "shape", "objects": "shapes", "an": "a"}


def normalise(caption: str) -> str:
    """Lower case, words only (letters and digits), synonyms mapped to one word."""
    words = re.findall(r"[a-z0-9]+", caption.lower())
    return " ".join(SYNONYMS.get(w, w) for w in words)


def noun_phrases(o: dict) -> list[str]:
    """Every normalised noun phrase that is true of object ``o``."""
    out = []
    for size in ("", o["size"]):
        for colour in ("", o["colour"]):
            out.append(" ".join(w for w in ("a", size, colour, o["shape"]) if w))
        out.append(" ".join(w for w in ("a", size, o["shape"], "that is", o["colour"]) if w))
    return out


def places(o: dict) -> tuple[str, ...]:
    return CELL_PHRASES[(o["row"], o["col"])]


def _true_counts(objects: list[dict]) -> set[str]:
    k = len(objects)
    out = set()
    if k == 1:
        out.add("there is one shape in the image")
    else:
        out |= {f"there are {NUMBERS[k]} shapes in the image", f"the image shows {NUMBERS[k]} shapes"}
    for shape in SHAPES:
        n = sum(o["shape"] == shape for o in objects)
        if n >= 2:
            out.add(f"there are {NUMBERS[n]} {shape}s")
    for colour in COLOURS:
        n = sum(o["colour"] == colour for o in objects)
        if n >= 2:
            out.add(f"{NUMBERS[n]} {colour} shapes")
    return out


def _join(items: list[str]) -> str:
    return " ".join(items[:-1]) + " and " + items[-1]


def true_sentences(objects: list[dict]) -> set[str]:
    """The set of every normalised sentence of the language that is true of the scene."""
    if not 1 <= len(objects) <= MAX_OBJECTS:
        raise ValueError(f"the oracle handles 1..{MAX_OBJECTS} objects, got {len(objects)}")
    out = _true_counts(objects)
    for o in objects:
        for np_ in noun_phrases(o):
            out |= {np_, f"the image shows {np_}"}
            for p in places(o):
                out |= {f"there is {np_} {p}", f"{np_} is {p}", f"{np_} {p}"}
    for a, b in itertools.permutations(objects, 2):
        for rel in RELATIONS:
            if not relation_holds(rel, a, b):
                continue
            for na in noun_phrases(a):
                for nb in noun_phrases(b):
                    out |= {f"{na} {rel} {nb}", f"{na} is {rel} {nb}",
                            f"there is {na} {rel} {nb}"}
    for k in range(2, len(objects) + 1):
        for group in itertools.permutations(objects, k):
            for nps in itertools.product(*(noun_phrases(o) for o in group)):
                text = _join(list(nps))
                out |= {text, f"the image shows {text}"}
            with_places = [[f"{np_} {p}" for np_ in noun_phrases(o) for p in places(o)]
                           for o in group]
            for parts in itertools.product(*with_places):
                out.add(_join(list(parts)))
    return out


_KEYS = ("shape", "colour", "size", "row", "col")


@functools.lru_cache(maxsize=256)
def _cached_sentences(scene: tuple) -> frozenset:
    return frozenset(true_sentences([dict(zip(_KEYS, o)) for o in scene]))


def is_true(caption: str, objects: list[dict]) -> bool:
    """Whether ``caption`` is a sentence of the language that is true of ``objects``."""
    scene = tuple(tuple(o[k] for k in _KEYS) for o in objects)
    return normalise(caption) in _cached_sentences(scene)



# ------------------------------------------------------------- perturbations

_CATEGORIES = {
    "colour": [w for c in COLOURS for w in ((c, "violet") if c == "purple" else (c,))],
    "size": ["small", "little", "large", "big"],
    "shape": list(SHAPES),
    "shapes": [s + "s" for s in SHAPES],
    "number": list(NUMBERS[1:]),
}
_PHRASES = {
    "relation": list(RELATIONS),
    "place": [p for ps in CELL_PHRASES.values() for p in ps],
}


def word_substitutions(caption: str) -> list[tuple[str, str]]:
    """Every caption made by changing one colour, size, shape, number, relation or place.

    Returns (what was changed, new caption) pairs. A change may leave the caption true (another
    object may have the new colour); the point is that both checks must agree on it.
    """
    words = caption.replace(",", " ,").split()
    out = []
    for kind, options in _CATEGORIES.items():
        for i, w in enumerate(words):
            if w in options:
                for new in options:
                    if new != w:
                        out.append((kind, " ".join(words[:i] + [new] + words[i + 1:])))
    text = " ".join(words)
    for kind, options in _PHRASES.items():
        for phrase in options:
            if f" {phrase} " in f" {text} ":
                for new in options:
                    if new != phrase and not new.startswith(phrase) and not phrase.startswith(new):
                        out.append((kind, f" {text} ".replace(f" {phrase} ", f" {new} ", 1).strip()))
    return [(kind, c.replace(" ,", ",")) for kind, c in out]


def scene_swaps(objects: list[dict]) -> list[tuple[str, list[dict]]]:
    """For a two-object scene: the scenes made by swapping one attribute between the objects.

    Returns (attribute, new scene) pairs, only where the swap changes the scene.
    """
    if len(objects) != 2:
        return []
    a, b = objects
    out = []
    for keys in (("colour",), ("shape",), ("size",), ("row", "col")):
        if any(a[k] != b[k] for k in keys):
            na, nb = dict(a), dict(b)
            for k in keys:
                na[k], nb[k] = b[k], a[k]
            out.append(("cell" if keys == ("row", "col") else keys[0], [na, nb]))
    return out


def malformations(caption: str) -> list[tuple[str, str]]:
    """Captions a model can say that the generator never writes, made from a true one.

    Every proper prefix (a caption cut short), every caption with one word dropped, doubled, or
    swapped with the next, and with one word replaced by ``<UNK>``. Returns (what, caption).
    """
    w = caption.replace(",", "").split()
    out = [("cut", " ".join(w[:k])) for k in range(1, len(w))]
    for i in range(len(w)):
        out.append(("dropped", " ".join(w[:i] + w[i + 1:])))
        out.append(("doubled", " ".join(w[:i + 1] + w[i:])))
        out.append(("unk", " ".join(w[:i] + ["<UNK>"] + w[i + 1:])))
        if i + 1 < len(w):
            out.append(("swapped", " ".join(w[:i] + [w[i + 1], w[i]] + w[i + 2:])))
    return [(kind, c) for kind, c in out if c]
