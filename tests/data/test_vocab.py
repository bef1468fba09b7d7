import json

import numpy as np
import pytest

from rnncap.data.vocab import (END, NULL, START, UNK, Vocabulary, decode_captions,
                               tokenize)


def test_tokenize_lowercases_and_drops_punctuation():
    assert tokenize("A Red circle, left of the BLUE square.") == [
        "a", "red", "circle", "left", "of", "the", "blue", "square"]
    assert tokenize("a man's hat") == ["a", "man's", "hat"]
    assert tokenize("Hi,  there!", level="char") == list("hi there")


def test_build_orders_by_count_then_alphabet_and_applies_min_count():
    caps = ["b a", "a c", "a b", "d"]
    v = Vocabulary.build(caps, min_count=1)
    # counts: a=3, b=2, c=1, d=1 -> ties alphabetical
    assert v.idx_to_word == ["<NULL>", "<START>", "<END>", "<UNK>", "a", "b", "c", "d"]
    v2 = Vocabulary.build(caps, min_count=2)
    assert v2.idx_to_word[4:] == ["a", "b"]
    v3 = Vocabulary.build(caps, max_size=5)
    assert v3.idx_to_word[4:] == ["a"]
    # order of input does not matter
    assert Vocabulary.build(caps[::-1]).idx_to_word == v.idx_to_word


def test_encode_layout_padding_unknown_and_truncation():
    v = Vocabulary(["<NULL>", "<START>", "<END>", "<UNK>", "a", "red", "circle"])
    out = v.encode(["A red circle", "a blue circle", "a a a a a a"], max_length=4)
    assert out.dtype == np.int32 and out.shape == (3, 6)
    # hand-written expectations
    np.testing.assert_array_equal(out[0], [START, 4, 5, 6, END, NULL])
    np.testing.assert_array_equal(out[1], [START, 4, UNK, 6, END, NULL])
    np.testing.assert_array_equal(out[2], [START, 4, 4, 4, 4, END])  # cut, keeps <END>


def test_default_length_matches_cs231n():
    v = Vocabulary.build(["a b"])
    assert v.encode(["a b"]).shape == (1, 17)


def test_decode_cs231n_semantics_and_clean():
    idx_to_word = ["<NULL>", "<START>", "<END>", "<UNK>", "a", "cat"]
    caps = np.array([[1, 4, 5, 2, 0, 0],
                     [1, 4, 0, 5, 2, 4]])  # NULL dropped; stops at first END
    assert decode_captions(caps, idx_to_word) == ["<START> a cat <END>", "<START> a cat <END>"]
    assert decode_captions(caps[0], idx_to_word) == "<START> a cat <END>"
    v = Vocabulary(idx_to_word)
    assert v.decode(caps) == ["<START> a cat <END>"] * 2
    assert v.decode_clean(np.array([1, 4, 3, 5, 2, 4])) == "a <UNK> cat"


def test_decode_rejects_out_of_range_ids():
    v = Vocabulary(["<NULL>", "<START>", "<END>", "<UNK>"])
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        v.decode(np.array([1, 7, 2]))


def test_word_round_trip():
    caps = ["a large red circle above a small blue square", "two shapes"]
    v = Vocabulary.build(caps)
    assert v.decode_clean(v.encode(caps)) == caps


def test_char_level_round_trip_and_space_token():
    caps = ["a red circle.", "Two  shapes"]
    v = Vocabulary.build(caps, level="char")
    assert " " in v.word_to_idx
    enc = v.encode(caps)
    assert enc.shape == (2, 82)
    assert v.decode_clean(enc) == ["a red circle", "two shapes"]
    assert v.decode(enc[1]) == "<START>two shapes<END>"


def test_save_load_round_trip_in_cs231n_layout(tmp_path):
    v = Vocabulary.build(["a red circle", "a blue square"])
    p = tmp_path / "coco2014_vocab.json"
    v.save(p)
    d = json.loads(p.read_text())
    assert set(d) == {"idx_to_word", "word_to_idx"}  # exactly CS231n's keys
    assert d["word_to_idx"]["<END>"] == 2
    w = Vocabulary.load(p)
    assert w.idx_to_word == v.idx_to_word and w.level == "word"

    c = Vocabulary.build(["ab"], level="char")
    c.save(p)
    assert json.loads(p.read_text())["level"] == "char"
    assert Vocabulary.load(p).level == "char"


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        Vocabulary.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"idx_to_word": ["a", "b"]}))
    with pytest.raises(ValueError, match="bad.json.*<NULL>"):
        Vocabulary.load(bad)
    bad.write_text(json.dumps({"idx_to_word": ["<NULL>", "<START>", "<END>", "<UNK>", "x"],
                               "word_to_idx": {"x": 1}}))
    with pytest.raises(ValueError, match="bad.json.*inverse"):
        Vocabulary.load(bad)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        Vocabulary.load(bad)
