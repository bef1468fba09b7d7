"""The shapes truth check: is a caption a sentence of the shapes captions' language, and true?

A caption is parsed with a grammar built from the phrases and sentence frames of the captions
``rnncap.data.shapes`` writes: its noun phrases, places, relations and counts, in any frame the
generator puts a phrase of that kind in (tokens are lower-cased words; the generator's commas
are not tokens):

    np       := (a|an) [size] [colour] shape  |  (a|an) [size] shape "that is" colour
    place    := a phrase of CELL_PHRASES      ("in the top left [corner]", "at the top", ...)
    rel      := to the left of | to the right of | above | below
    item     := np [place]
    body     := item  |  np rel np  |  item item* "and" item             (a list: two or more)
    caption  := ["there is" | "the" picture "shows"] body  |  np "is" place  |  np "is" rel np
                |  count
    count    := "there is one" object ["in the" picture]
                |  "there are" quantity ["in the" picture]  |  "the" picture "shows" quantity
                |  quantity
    quantity := N objects  |  N shape-plural  |  N colour objects              N: two .. nine
    synonyms:   big/large, little/small, violet/purple, image/picture, shape/object

Semantics: a noun phrase asserts that an object with the attributes it names exists; a list or
a relation asserts *distinct* objects, one per noun phrase (so "a red circle and a red circle"
needs two); a relation compares the grid cells of the two objects (``relation_holds``); a place
names one cell exactly ("at the top" is the top-middle cell, not the top-left corner); a count
is exact ("there are two circles": exactly two circles). A caption is true when one assignment
of distinct objects satisfies all of it.

Anything else is "not true", however close: a word the language lacks (``<UNK>`` included), a
repeated or reordered word ("a red red circle", "a red big circle"), a missing word ("a red
circle a blue square"), a doubled frame ("there is a red circle is above ..."), a caption cut
inside a phrase ("... in the bottom"), an agreement slip ("there is two shapes"), another
determiner ("the red circle", "one red circle"). Reading such a caption as if it were whole
would be a guess at what was meant, and the check never guesses. docs/truth-check.md says how
this check was audited against an independent second implementation.

This module does NOT know images, pixels, vocabularies or models; it knows caption strings and
the ground-truth object lists written by ``rnncap.data.shapes``.
"""

from itertools import permutations

from rnncap.data.shapes import (CELL_PHRASES, COLOUR_WORDS, NUMBERS, OBJECT_WORDS,
                                PICTURE_WORDS, RELATIONS, SHAPES, SIZE_WORDS, relation_holds)
from rnncap.data.vocab import tokenize

_SIZE = {w: s for s, ws in SIZE_WORDS.items() for w in ws}
_COLOUR = {w: c for c, ws in COLOUR_WORDS.items() for w in ws}
_SHAPE_PLURAL = {s + "s": s for s in SHAPES}
_OBJECT_PLURAL = tuple(w + "s" for w in OBJECT_WORDS)
_NUMBER = {w: i for i, w in enumerate(NUMBERS) if i >= 2}  # "one" only in "there is one ..."
# Longest first, so that "in the top left corner" wins over "in the top left".
_PLACES = sorted(((tuple(p.split()), cell) for cell, ps in CELL_PHRASES.items() for p in ps),
                 key=lambda pc: -len(pc[0]))
_RELATIONS = [(tuple(r.split()), r) for r in RELATIONS]
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

    def word(self, table, what):
        """Consume the next word if it is a key of ``table``; return its value."""
        w = self.peek()
        if w not in table:
            raise _NoParse(f"expected {what} at {w!r}")
        self.i += 1
        return table[w] if isinstance(table, dict) else w

    def done(self):
        return self.i >= len(self.t)


def _picture(r):
    """'the image' / 'the picture' after 'in' or before 'shows'."""
    if not (r.take("the") and r.word(PICTURE_WORDS, "'image' or 'picture'")):
        raise _NoParse(f"expected 'the image' at {r.peek()!r}")


def _shows(r):
    """Consume 'the image shows' if it comes next; return whether it did."""
    return any(r.take("the", pic, "shows") for pic in PICTURE_WORDS)


def _noun_phrase(r):
    """(a|an) [size] [colour] shape, or (a|an) [size] shape that is colour."""
    r.word(("a", "an"), "'a' or 'an'")
    attrs = {}
    if r.peek() in _SIZE:
        attrs["size"] = r.word(_SIZE, "a size")
    if r.peek() in _COLOUR:
        attrs["colour"] = r.word(_COLOUR, "a colour")
    attrs["shape"] = r.word({s: s for s in SHAPES}, "a shape")
    if "colour" not in attrs and r.take("that", "is"):
        attrs["colour"] = r.word(_COLOUR, "a colour after 'that is'")
    return {"attrs": attrs, "cell": None}


def _place(r):
    """Consume a place phrase if one comes next; return its cell or None."""
    for words, cell in _PLACES:
        if r.take(*words):
            return cell
    return None


def _relation(r):
    for words, rel in _RELATIONS:
        if r.take(*words):
            return rel
    return None


def _in_the_picture(r):
    """An optional 'in the image' closing a 'there is/are' count."""
    if r.take("in"):
        _picture(r)


def _count(r):
    """A count caption, or None (nothing consumed) if the caption is not one."""
    start = r.i
    if r.take("there", "is", "one"):
        r.word(OBJECT_WORDS, "'shape' or 'object'")
        _in_the_picture(r)
        return {"kind": "count", "count": 1, "attrs": {}}
    there_are = r.take("there", "are")
    if not there_are and _shows(r) and r.peek() not in _NUMBER:
        r.i = start  # 'the image shows' a noun phrase
        return None
    if r.i > start or r.peek() in _NUMBER:
        n = r.word(_NUMBER, "a number from two to nine")
        if r.peek() in _SHAPE_PLURAL:
            attrs = {"shape": r.word(_SHAPE_PLURAL, "")}
        else:
            attrs = {"colour": r.word(_COLOUR, "")} if r.peek() in _COLOUR else {}
            r.word(_OBJECT_PLURAL, "'shapes', 'objects', 'circles', 'squares' or 'triangles'")
        if there_are:
            _in_the_picture(r)
        return {"kind": "count", "count": n, "attrs": attrs}
    r.i = start
    return None


def _fail(r, what):
    raise _NoParse(f"expected {what} at {r.peek()!r}")


def _caption(r):
    count = _count(r)
    if count is not None:
        return count
    framed = _shows(r) or r.take("there", "is")
    first = _noun_phrase(r)
    if not framed and r.take("is"):
        rel = _relation(r)
        if rel is not None:
            return {"kind": "relation", "relation": rel, "objects": [first, _noun_phrase(r)]}
        first["cell"] = _place(r)
        if first["cell"] is None:
            _fail(r, "a place or a relation after 'is'")
        return {"kind": "objects", "objects": [first]}
    rel = _relation(r)
    if rel is not None:
        return {"kind": "relation", "relation": rel, "objects": [first, _noun_phrase(r)]}
    first["cell"] = _place(r)
    items = [first]
    while not r.done():  # a list: items, then 'and' and the last one
        last = r.take("and")
        item = _noun_phrase(r)
        item["cell"] = _place(r)
        items.append(item)
        if last:
            break
        if r.done():
            raise _NoParse("a list needs 'and' before its last item")
    return {"kind": "objects", "objects": items}


def parse_caption(caption):
    """Parse a caption into assertions.

    Returns:
        dict with "kind" in {"count", "relation", "objects"}: a count has "count" and "attrs"
        (what the counted objects share); a relation has "relation" and two "objects"; both
        "relation" and "objects" hold noun phrases, dicts with "attrs" (shape, and size and
        colour where named) and "cell" ((row, col) or None).

    Raises:
        ValueError: the caption is outside the grammar (with the reason).
    """
    text = caption
    for m in _MARKERS:
        text = text.replace(m, " ")
    if "<" in text or ">" in text:
        raise ValueError(f"cannot parse {caption!r}: contains a special token")
    tokens = tokenize(text)
    if not tokens:
        raise ValueError(f"cannot parse {caption!r}: empty")
    r = _Reader(tokens)
    try:
        result = _caption(r)
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
