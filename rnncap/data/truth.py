"""The shapes truth check: is everything a caption asserts true of the image?

A caption is parsed with a small grammar that covers every caption the
shapes generator writes, and the natural variants of them:

    caption  := [prefix] body ["in the" PICTURE]
    prefix   := "there is" | "there are" | "the" PICTURE "shows"
    body     := count | np [is] relation np | np_at ([and] np_at)*
    np_at    := np [[is] place]
    np       := det adj* noun ["that is" adj ["and" adj]]      adj: size or colour word
    det      := a | an | the | one            ("one" = exactly one such object)
    count    := number adj* plural-noun        ("two red shapes" = exactly two)
    place    := (in|at|on) the <cell name> [corner] [of the PICTURE]
    relation := to the left of | to the right of | above | below

Semantics: a noun phrase asserts that an object with those attributes exists;
a list asserts *distinct* objects for its noun phrases (so "a red circle and
a red circle" needs two); a relation compares the grid cells of two distinct
objects; a count is exact. A caption is true when one assignment of distinct
objects satisfies all of it. Anything the grammar cannot parse (the
ungrammatical output of a half-trained model, an unknown word, ``<UNK>``) is
"not true": the check never guesses.

This module does NOT know images, pixels, vocabularies or models; it knows
caption strings and the ground-truth object lists written by
``rnncap.data.shapes``.
"""

from itertools import permutations

from rnncap.data.shapes import (CELL_PHRASES, COLOUR_WORDS, NUMBERS, OBJECT_WORDS,
                                PICTURE_WORDS, RELATIONS, SHAPES, SIZE_WORDS, relation_holds)
from rnncap.data.vocab import tokenize

_SIZE = {w: s for s, ws in SIZE_WORDS.items() for w in ws}
_COLOUR = {w: c for c, ws in COLOUR_WORDS.items() for w in ws}
_NOUN = {**{s: s for s in SHAPES}, **{w: None for w in OBJECT_WORDS}}
_PLURAL = {w + "s": v for w, v in _NOUN.items()}
_NUMBER = {w: i for i, w in enumerate(NUMBERS) if i >= 1}
_PLACE = {}
for _cell, _phrases in CELL_PHRASES.items():
    for _p in _phrases:
        _words = tuple(_p.split()[2:])  # drop "in the" / "at the" / "on the"
        if _words[-1] == "corner":
            _words = _words[:-1]
        _PLACE[_words] = _cell
_RELATIONS = {tuple(r.split()): r for r in RELATIONS}
_MARKERS = ("<START>", "<END>", "<NULL>")


class _NoParse(Exception):
    pass


class _Reader:
    """A cursor over the token list."""

    def __init__(self, tokens):
        self.t, self.i = tokens, 0

    def peek(self, k=0):
        j = self.i + k
        return self.t[j] if j < len(self.t) else None

    def take(self, *words):
        """Consume ``words`` if they come next; return whether they did."""
        if tuple(self.t[self.i:self.i + len(words)]) == words:
            self.i += len(words)
            return True
        return False

    def done(self):
        return self.i >= len(self.t)


def _adjectives(r, attrs):
    while r.peek() in _SIZE or r.peek() in _COLOUR:
        w = r.t[r.i]
        key, val = ("size", _SIZE[w]) if w in _SIZE else ("colour", _COLOUR[w])
        if key in attrs and attrs[key] != val:
            raise _NoParse(f"contradictory {key} words")
        attrs[key] = val
        r.i += 1


def _described_noun(r, nouns, what):
    """Adjectives then a noun from `nouns` (word -> shape, or None for 'shape'/'object')."""
    attrs = {}
    _adjectives(r, attrs)
    noun = r.peek()
    if noun not in nouns:
        raise _NoParse(f"expected {what} at {noun!r}")
    r.i += 1
    if nouns[noun]:
        attrs["shape"] = nouns[noun]
    return attrs


def _noun_phrase(r):
    det = r.peek()
    if det not in ("a", "an", "the", "one"):
        raise _NoParse(f"expected a noun phrase at {det!r}")
    r.i += 1
    attrs = _described_noun(r, _NOUN, "a shape noun")
    if r.take("that", "is"):
        n_before = len(attrs)
        _adjectives(r, attrs)
        if r.take("and"):
            _adjectives(r, attrs)
        if len(attrs) == n_before:
            raise _NoParse("'that is' without a size or colour")
    return {"attrs": attrs, "exactly_one": det == "one", "cell": None}


def _place(r):
    """Parse a place phrase if one starts here; return its cell or None."""
    start = r.i
    r.take("is")
    if r.peek() in ("in", "at", "on") and r.peek(1) == "the":
        r.i += 2
        for n in (2, 1):
            words = tuple(r.t[r.i:r.i + n])
            if len(words) == n and words in _PLACE:
                r.i += n
                if n == 2:
                    r.take("corner")
                if r.peek() == "of" and r.peek(1) == "the" and r.peek(2) in PICTURE_WORDS:
                    r.i += 3
                return _PLACE[words]
    r.i = start
    return None


def _relation(r):
    start = r.i
    r.take("is")
    for words, rel in _RELATIONS.items():
        if r.take(*words):
            return rel
    r.i = start
    return None


def parse_caption(caption):
    """Parse a caption into assertions.

    Returns:
        dict with "kind" in {"count", "relation", "objects"} and its parts.

    Raises:
        ValueError: the caption is outside the grammar (with the reason).
    """
    text = caption
    for m in _MARKERS:
        text = text.replace(m, " ")
    if "<" in text or ">" in text:
        raise ValueError(f"cannot parse {caption!r}: contains a special token")
    tokens = tokenize(text)
    if tokens[-3:-1] == ["in", "the"] and tokens[-1] in PICTURE_WORDS:
        tokens = tokens[:-3]
    if not tokens:
        raise ValueError(f"cannot parse {caption!r}: empty")
    r = _Reader(tokens)
    try:
        if not (r.take("there", "is") or r.take("there", "are")):
            for pic in PICTURE_WORDS:
                if r.take("the", pic, "shows"):
                    break
        if r.peek() in _NUMBER and r.peek() != "one":
            count = _NUMBER[r.t[r.i]]
            r.i += 1
            attrs = _described_noun(r, _PLURAL, "a plural noun")
            result = {"kind": "count", "count": count, "attrs": attrs}
        else:
            first = _noun_phrase(r)
            rel = _relation(r)
            if rel is not None:
                result = {"kind": "relation", "relation": rel,
                          "objects": [first, _noun_phrase(r)]}
            else:
                first["cell"] = _place(r)
                objects = [first]
                while not r.done():
                    r.take("and")
                    nxt = _noun_phrase(r)
                    nxt["cell"] = _place(r)
                    objects.append(nxt)
                result = {"kind": "objects", "objects": objects}
        if not r.done():
            raise _NoParse(f"unexpected words after a complete caption: {r.t[r.i:]}")
    except _NoParse as e:
        raise ValueError(f"cannot parse {caption!r}: {e}") from None
    return result


def _matches(attrs, o):
    return all(o[k] == v for k, v in attrs.items())


def check_caption(caption, objects):
    """Decide whether a caption is true of an image, with the reason.

    Args:
        caption: a caption string (may hold <START>/<END>, which are ignored).
        objects: the image's ground truth, a list of dicts from
            ``rnncap.data.shapes`` (keys shape, colour, size, row, col).

    Returns:
        (bool, str): whether every assertion holds, and why not.
    """
    try:
        p = parse_caption(caption)
    except ValueError as e:
        return False, str(e)
    if p["kind"] == "count":
        n = sum(_matches(p["attrs"], o) for o in objects)
        if n != p["count"]:
            return False, f"counted {n} objects matching {p['attrs']}, caption says {p['count']}"
        return True, "true"
    nps = p["objects"]
    for np_ in nps:
        if np_["exactly_one"]:
            n = sum(_matches(np_["attrs"], o) for o in objects)
            if n != 1:
                return False, f"'one' {np_['attrs']}: the image has {n}"
    if len(nps) > len(objects):
        return False, f"caption names {len(nps)} objects, the image has {len(objects)}"
    for chosen in permutations(objects, len(nps)):
        ok = all(_matches(np_["attrs"], o) and
                 (np_["cell"] is None or np_["cell"] == (o["row"], o["col"]))
                 for np_, o in zip(nps, chosen))
        if ok and p["kind"] == "relation":
            ok = relation_holds(p["relation"], chosen[0], chosen[1])
        if ok:
            return True, "true"
    return False, f"no distinct objects satisfy {p}"


def caption_is_true(caption, objects):
    """Whether everything the caption asserts is true of the image (see check_caption)."""
    return check_caption(caption, objects)[0]


def truth_rate(captions, truths):
    """Share of captions that are fully true of their images.

    Args:
        captions: list of N caption strings.
        truths: list of N ground-truth object lists (``s_truth`` of the data dict).

    Returns:
        float in [0, 1].
    """
    captions, truths = list(captions), list(truths)
    if len(captions) != len(truths):
        raise ValueError(f"got {len(captions)} captions but {len(truths)} ground truths")
    if not captions:
        raise ValueError("truth_rate needs at least one caption")
    return sum(caption_is_true(c, t) for c, t in zip(captions, truths)) / len(captions)
