"""A second, independent truth check for shapes captions, used by the tests as an oracle.

``rnncap.data.truth`` *parses* a caption and checks what it claims. This module works the other
way round: it *generates* every sentence of the shapes captions' language that is true of a scene,
and a caption is true when it is one of them. It was written from the generator
(``rnncap.data.shapes``: its templates and word lists) and docs/data.md, without reading
``rnncap.data.truth``, so the two share no code; where they disagree, one of them is wrong. The
language both accept was settled during the audit (docs/truth-check.md says how, and what the
disagreements were).

The language (after the normalisation below) is built from the generator's phrases and sentence
frames: its noun phrases, places, relations and counts, in any frame the generator puts a phrase
of that kind in, and the list items with or without a place:

    NP      a [small|large] [colour] shape  |  a [small|large] shape that is colour
    PLACE   any phrase of ``CELL_PHRASES`` (with or without "corner")
    REL     to the left of | to the right of | above | below
    ITEM    NP [PLACE]
    BODY    ITEM  |  NP REL NP  |  ITEM ITEM ... and ITEM          (a list: two or more items)
    caption [there is | the image shows] BODY  |  NP is PLACE  |  NP is REL NP  |  COUNT
    COUNT   there is one shape [in the image]
            |  there are Q [in the image]  |  the image shows Q  |  Q
    Q       N shapes  |  N circles (squares, triangles)  |  N red (...) shapes     N: two .. nine

What is true:
- an NP is true of an object when every attribute it names is the object's (a missing size or
  colour claims nothing);
- a caption with one NP claims that such an object exists (not that it is the only one);
- a relation or a list claims *distinct* objects, one per NP (a list need not name them all);
  a relation compares grid cells exactly as ``shapes.relation_holds`` does (columns for
  left/right, rows for above/below);
- a place names exactly one cell ("at the top" is the top-middle cell, "on the left" the
  middle-left one), as ``CELL_PHRASES`` defines;
- a count is exact: "there are two shapes" needs exactly two objects, "there are two circles"
  exactly two circles, "two red shapes" exactly two red objects; "there is one shape in the
  image" exactly one object; "in the image" adds nothing.

Normalisation (words that change nothing in the meaning): the decoder's markers <START>, <END>,
<NULL> dropped; lower case; punctuation dropped (the generator's commas are not tokens either);
the synonyms big/large, little/small, violet/purple, picture/image, object/shape,
objects/shapes; "an" read as "a" (a wrong article is a slip of grammar, not a false claim).

Everything else is *not true*: words the language lacks (``<UNK>`` included), repeated or
reordered words ("a red red circle", "a red large circle"), a missing word ("a red circle a blue
square"), a doubled frame ("there is a red circle is above ..."), a caption cut inside a phrase
("... in the bottom"), agreement slips ("there is two shapes"), other determiners ("the red
circle", "one red circle"), clauses joined by "and" ("a red circle is on the left and a blue
square is on the right"). Each of these could be read as something true only by guessing what
was meant; the oracle never guesses.

This module does NOT know vocabularies, models or files. It enumerates every list of up to three
objects (more would be millions of sentences), so it refuses scenes with more than three
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
    """Lower case, words only (letters and digits), synonyms mapped to one word.

    The decoder's markers <START>, <END> and <NULL> are dropped first; any other <...> token
    stays (as a word the language lacks).
    """
    for marker in ("<START>", "<END>", "<NULL>"):
        caption = caption.replace(marker, " ")
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
    if k == 1:
        return {"there is one shape", "there is one shape in the image"}
    quantities = {f"{NUMBERS[k]} shapes"}
    for shape in SHAPES:
        n = sum(o["shape"] == shape for o in objects)
        if n >= 2:
            quantities.add(f"{NUMBERS[n]} {shape}s")
    for colour in COLOURS:
        n = sum(o["colour"] == colour for o in objects)
        if n >= 2:
            quantities.add(f"{NUMBERS[n]} {colour} shapes")
    out = set()
    for q in quantities:
        out |= {f"there are {q}", f"there are {q} in the image", f"the image shows {q}", q}
    return out


def _join(items: list[str]) -> str:
    return " ".join(items[:-1]) + " and " + items[-1]


def true_sentences(objects: list[dict]) -> set[str]:
    """The set of every normalised sentence of the language that is true of the scene."""
    if not 1 <= len(objects) <= MAX_OBJECTS:
        raise ValueError(f"the oracle handles 1..{MAX_OBJECTS} objects, got {len(objects)}")
    out = _true_counts(objects)
    bodies = set()
    for o in objects:
        for np_ in noun_phrases(o):
            bodies.add(np_)
            for p in places(o):
                bodies.add(f"{np_} {p}")
                out.add(f"{np_} is {p}")
    for a, b in itertools.permutations(objects, 2):
        for rel in RELATIONS:
            if not relation_holds(rel, a, b):
                continue
            for na in noun_phrases(a):
                for nb in noun_phrases(b):
                    bodies.add(f"{na} {rel} {nb}")
                    out.add(f"{na} is {rel} {nb}")
    for k in range(2, len(objects) + 1):
        for group in itertools.permutations(objects, k):
            items = [noun_phrases(o) + [f"{np_} {p}" for np_ in noun_phrases(o) for p in places(o)]
                     for o in group]
            for parts in itertools.product(*items):
                bodies.add(_join(list(parts)))
    for body in bodies:
        out |= {body, f"there is {body}", f"the image shows {body}"}
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
                        changed = f" {text} ".replace(f" {phrase} ", f" {new} ", 1)
                        out.append((kind, changed.strip()))
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
