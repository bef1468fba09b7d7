"""Vocabularies: caption strings <-> fixed-length int32 arrays (CS231n layout).

The special ids are fixed, as in CS231n's ``coco2014_vocab.json``:
``<NULL>``=0 (padding), ``<START>``=1, ``<END>``=2, ``<UNK>``=3.

Length convention (used everywhere in rnncap.data): ``max_length`` counts the
tokens *between* ``<START>`` and ``<END>``; an encoded array has
``T = max_length + 2`` columns. CS231n's (M, 17) arrays are ``max_length=15``,
which is the word-level default. A caption longer than ``max_length`` is cut
to its first ``max_length`` tokens and still ends with ``<END>``.

Two levels run through the same code: ``'word'`` (tokens are lower-cased
words; punctuation separates words and is dropped) and ``'char'`` (tokens are
the characters of the same normalised text, the space included), so that a
word-level and a character-level model see exactly the same sentences.

This module does NOT know files other than its own JSON, images, features,
or any model; it never sees the network that consumes the ids.
"""

import json
import os
import re
from collections import Counter

import numpy as np

NULL, START, END, UNK = 0, 1, 2, 3
SPECIAL_TOKENS = ("<NULL>", "<START>", "<END>", "<UNK>")
LEVELS = ("word", "char")
DEFAULT_MAX_LENGTH = {"word": 15, "char": 80}

# A word is a run of letters/digits, optionally with an inner apostrophe
# ("man's"); everything else (punctuation, symbols) separates words.
_WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")


def tokenize(text, level="word"):
    """Split one caption into tokens.

    Args:
        text: a raw caption string.
        level: 'word' or 'char'.

    Returns:
        list of str: lower-cased words, or the characters of the words joined
        by single spaces (so both levels describe the same normalised text).
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    if not isinstance(text, str):
        raise TypeError(f"caption must be a str, got {type(text).__name__}")
    words = _WORD_RE.findall(text.lower())
    if level == "word":
        return words
    return list(" ".join(words))


def decode_captions(captions, idx_to_word):
    """CS231n's ``decode_captions``: ids -> strings, keeping <START>/<END>.

    ``<NULL>`` is dropped and decoding stops after the first ``<END>``.
    Tokens are joined with spaces, exactly as in the assignment (for
    character-level text use ``Vocabulary.decode``, which joins with '').

    Args:
        captions: int array (T,) or (N, T).
        idx_to_word: list mapping id -> token.

    Returns:
        str for a 1-D input, list of N str for a 2-D input.
    """
    return _decode(captions, idx_to_word, sep=" ", clean=False)


def _decode(captions, idx_to_word, sep, clean):
    captions = np.asarray(captions)
    singleton = captions.ndim == 1
    if singleton:
        captions = captions[None]
    if captions.ndim != 2:
        raise ValueError(f"captions must have shape (T,) or (N, T), got {captions.shape}")
    V = len(idx_to_word)
    if captions.size and (captions.min() < 0 or captions.max() >= V):
        raise ValueError(
            f"caption ids must lie in [0, {V}) for a vocabulary of {V} tokens; "
            f"got values in [{captions.min()}, {captions.max()}]"
        )
    decoded = []
    for row in captions:
        tokens = []
        for idx in row:
            idx = int(idx)
            if idx == END:
                if not clean:
                    tokens.append(idx_to_word[idx])
                break
            if idx == NULL or (clean and idx == START):
                continue
            tokens.append(idx_to_word[idx])
        decoded.append(sep.join(tokens))
    return decoded[0] if singleton else decoded


class Vocabulary:
    """A token <-> id mapping with CS231n's special ids.

    Attributes:
        idx_to_word: list of V tokens; the first four are SPECIAL_TOKENS.
        word_to_idx: dict token -> id, the inverse of idx_to_word.
        level: 'word' or 'char'.
    """

    def __init__(self, idx_to_word, level="word"):
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
        idx_to_word = list(idx_to_word)
        if tuple(idx_to_word[:4]) != SPECIAL_TOKENS:
            raise ValueError(
                f"a vocabulary must start with {list(SPECIAL_TOKENS)}, got {idx_to_word[:4]}"
            )
        word_to_idx = {w: i for i, w in enumerate(idx_to_word)}
        if len(word_to_idx) != len(idx_to_word):
            dup = [w for w, c in Counter(idx_to_word).items() if c > 1]
            raise ValueError(f"vocabulary has duplicate tokens: {dup[:10]}")
        self.idx_to_word = idx_to_word
        self.word_to_idx = word_to_idx
        self.level = level

    def __len__(self):
        return len(self.idx_to_word)

    def __repr__(self):
        return f"Vocabulary(level={self.level!r}, size={len(self)})"

    @classmethod
    def build(cls, captions, *, level="word", min_count=1, max_size=None):
        """Build a vocabulary from raw caption strings.

        Tokens are ordered by decreasing count, ties broken alphabetically, so
        the result does not depend on the order of ``captions``.

        Args:
            captions: iterable of raw caption strings (the training split only).
            level: 'word' or 'char'.
            min_count: keep tokens seen at least this many times.
            max_size: if given, at most this many tokens in total, the four
                special tokens included.

        Returns:
            Vocabulary.
        """
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        if max_size is not None and max_size < len(SPECIAL_TOKENS):
            raise ValueError(f"max_size must be >= {len(SPECIAL_TOKENS)}, got {max_size}")
        counts = Counter()
        for text in captions:
            counts.update(tokenize(text, level))
        for tok in SPECIAL_TOKENS:
            counts.pop(tok, None)
        kept = sorted((t for t, c in counts.items() if c >= min_count),
                      key=lambda t: (-counts[t], t))
        if max_size is not None:
            kept = kept[: max_size - len(SPECIAL_TOKENS)]
        return cls(list(SPECIAL_TOKENS) + kept, level=level)

    def encode(self, captions, max_length=None):
        """Encode raw caption strings to a padded id array.

        Args:
            captions: list of M raw strings.
            max_length: tokens kept between <START> and <END>; defaults to
                DEFAULT_MAX_LENGTH[level] (15 words, as CS231n; 80 characters).

        Returns:
            int32 array (M, max_length + 2): <START> tokens... <END> <NULL>...;
            unknown tokens become <UNK>; longer captions are truncated and
            still end with <END>.
        """
        if isinstance(captions, str):
            raise TypeError("encode expects a list of captions, got a single str")
        if max_length is None:
            max_length = DEFAULT_MAX_LENGTH[self.level]
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        captions = list(captions)
        from rnncap import memory

        memory.require(memory.caption_array_bytes(len(captions), max_length + 2),
                       f"{len(captions)} captions of max_length {max_length}")
        out = np.zeros((len(captions), max_length + 2), dtype=np.int32)  # (M, T)
        lookup = self.word_to_idx.get
        for i, text in enumerate(captions):
            ids = [lookup(t, UNK) for t in tokenize(text, self.level)[:max_length]]
            out[i, 0] = START
            out[i, 1:len(ids) + 1] = ids
            out[i, len(ids) + 1] = END
        return out

    def decode(self, captions):
        """ids -> strings with CS231n's semantics (keeps <START>/<END>).

        Word tokens are joined with spaces, characters with ''.
        """
        return _decode(captions, self.idx_to_word, self._sep, clean=False)

    def decode_clean(self, captions):
        """ids -> plain text without special tokens, stopping at <END>.

        ``<UNK>`` is kept (it is information, not markup). Args as ``decode``.
        """
        return _decode(captions, self.idx_to_word, self._sep, clean=True)

    @property
    def _sep(self):
        return " " if self.level == "word" else ""

    def to_json(self):
        """The ``coco2014_vocab.json`` dict (plus "level" in char mode)."""
        d = {"idx_to_word": list(self.idx_to_word), "word_to_idx": dict(self.word_to_idx)}
        if self.level != "word":
            d["level"] = self.level
        return d

    def save(self, path):
        """Write CS231n's coco2014_vocab.json layout, atomically."""
        from rnncap.atomic import write_text

        write_text(path, json.dumps(self.to_json(), ensure_ascii=False))

    @classmethod
    def from_json(cls, d, source="vocabulary"):
        """Build from a ``coco2014_vocab.json``-style dict, checking it."""
        if not isinstance(d, dict) or "idx_to_word" not in d:
            raise ValueError(f"{source}: expected a JSON object with key 'idx_to_word'")
        idx_to_word = d["idx_to_word"]
        if not isinstance(idx_to_word, list) or not all(isinstance(w, str) for w in idx_to_word):
            raise ValueError(f"{source}: 'idx_to_word' must be a list of strings")
        try:
            vocab = cls(idx_to_word, level=d.get("level", "word"))
        except ValueError as e:
            raise ValueError(f"{source}: {e}") from None
        if "word_to_idx" in d and d["word_to_idx"] != vocab.word_to_idx:
            raise ValueError(f"{source}: 'word_to_idx' is not the inverse of 'idx_to_word'")
        return vocab

    @classmethod
    def load(cls, path):
        """Read a ``coco2014_vocab.json`` file (CS231n's or one we saved)."""
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except FileNotFoundError:
            raise FileNotFoundError(f"vocabulary file not found: {path}") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: not UTF-8 text ({e})") from None
        except RecursionError:
            raise ValueError(f"{path}: JSON nested too deeply to read") from None
        return cls.from_json(d, source=path)
