"""Why a shapes caption is false: a finer verdict than the truth check's one line (both studies).

`rnncap.data.check_caption` says whether a caption is true and, when not, gives the parser's or the
matcher's reason. For a study we want the *kind* of mistake, counted: a caption that cannot be
parsed; a wrong count; a noun phrase whose attributes no object has, and which attribute (shape,
colour or size: found by dropping one attribute at a time and asking whether the caption's objects
then exist; when no single one explains it but every attribute value named is in the image, the
attributes are swapped between the objects; when each phrase fits an object but not distinct ones,
one object is named twice); more objects named than the image has; or the right
objects in the wrong relation or place. The caption's template kind (count, relation, one object,
a list) is reported beside it.

This module knows caption strings, the shapes parser and ground-truth object lists; not models,
files or metrics.
"""

from __future__ import annotations

from itertools import permutations

from rnncap.data import check_caption
from rnncap.data.truth import parse_caption

ATTRIBUTES = ("shape", "colour", "size")


def caption_kind(caption: str) -> str:
    """The template family of a caption: count, relation, one object (+place), list (+places)."""
    try:
        p = parse_caption(caption)
    except ValueError:
        return "unparseable"
    if p["kind"] in ("count", "relation"):
        return p["kind"]
    nps = p["objects"]
    placed = any(np_["cell"] is not None for np_ in nps)
    base = "one object" if len(nps) == 1 else "list"
    return base + (" with place" if placed else "")


def _objects_exist(nps, objects, drop=None) -> bool:
    """Whether distinct objects carry the noun phrases' attributes (ignoring places, relations)."""
    for chosen in permutations(objects, len(nps)):
        if all(all(o[k] == v for k, v in np_["attrs"].items() if k != drop)
               for np_, o in zip(nps, chosen)):
            return True
    return False


def diagnose(caption: str, objects: list) -> str:
    """One label for a caption: 'true' or the kind of its first mistake (see the module doc)."""
    ok, _ = check_caption(caption, objects)
    if ok:
        return "true"
    try:
        p = parse_caption(caption)
    except ValueError:
        return "ungrammatical"
    if p["kind"] == "count":
        return "wrong count"
    nps = p["objects"]
    if len(nps) > len(objects):
        return "names more objects than there are"
    if not _objects_exist(nps, objects):
        if len(nps) > 1 and all(_objects_exist([np_], objects) for np_ in nps):
            return "one object named twice"
        wrong = [a for a in ATTRIBUTES if _objects_exist(nps, objects, drop=a)]
        if len(wrong) == 1:
            return f"wrong {wrong[0]}"
        present = all(any(o[k] == v for o in objects) for np_ in nps for k, v in np_["attrs"].items())
        return "attributes swapped between objects" if present else "several attributes wrong"
    if any(np_.get("exactly_one") for np_ in nps):
        return "'one' but more than one"
    return "wrong relation" if p["kind"] == "relation" else "wrong place"


def noun_phrase_errors(caption: str, objects: list) -> list[bool] | None:
    """Per noun phrase, in caption order: does some object carry its attributes? None: no phrases.

    Used for long-range binding: the second noun phrase of a list or relation comes 30 to 40
    characters (5 to 8 words) after the first, so a model that loses track shows more errors there.
    """
    try:
        p = parse_caption(caption)
    except ValueError:
        return None
    if p["kind"] == "count":
        return None
    return [not _objects_exist([np_], objects) for np_ in p["objects"]]
