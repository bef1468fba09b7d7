import numpy as np
import pytest

from rnncap.data.vocab import Vocabulary
from rnncap.evaluate import DecodeOptions, decode_features, evaluate_split, split_images
from rnncap.model import CaptioningRNN

WORDS = ["<NULL>", "<START>", "<END>", "<UNK>", "a", "red", "blue", "circle", "square"]


@pytest.fixture
def model():
    vocab = Vocabulary(WORDS)
    return CaptioningRNN(vocab.word_to_idx, input_dim=6, wordvec_dim=5, hidden_dim=7,
                         cell_type="lstm", seed=3)


def _data(rng):
    vocab = Vocabulary(WORDS)
    caps = vocab.encode(["a red circle", "a blue square", "a red square", "blue circle"], max_length=4)
    return vocab, {"val_captions": caps, "val_image_idxs": np.array([0, 1, 1, 2], np.int32),
                   "val_features": rng.standard_normal((3, 6)).astype(np.float32)}


def test_beam_decoding_equals_beam_search_over_model_step(model):
    """decode_features runs beam search on the raw scores of decoder_step(logits=True);
    it must give what beam search over the plain log-probability step gives."""
    from rnncap.decode import beam_search

    feats = np.random.default_rng(3).standard_normal((7, 6)).astype(np.float32)
    got = decode_features(model, feats, DecodeOptions("beam", beam_size=3, length_penalty=0.5,
                                                      max_length=9))
    want = beam_search(model.step, model.init_state(feats), start_id=1, end_id=2, max_length=9,
                       beam_size=3, length_penalty=0.5).tokens
    np.testing.assert_array_equal(got, want)


def test_greedy_decoding_equals_model_sample(model):
    feats = np.random.default_rng(0).standard_normal((7, 6)).astype(np.float32)
    got = decode_features(model, feats, DecodeOptions("greedy", max_length=9), batch_size=3)
    np.testing.assert_array_equal(got, model.sample(feats, max_length=9))
    beam1 = decode_features(model, feats, DecodeOptions("beam", beam_size=1, max_length=9))
    np.testing.assert_array_equal(beam1, got)


@pytest.mark.parametrize("options", [DecodeOptions("greedy", max_length=9),
                                     DecodeOptions("beam", beam_size=3, max_length=9)])
def test_decoding_on_several_threads_gives_the_captions_of_one(model, options):
    feats = np.random.default_rng(2).standard_normal((11, 6)).astype(np.float32)
    one = decode_features(model, feats, options, batch_size=3, workers=1)
    assert one.shape == (11, 9)
    for workers in (2, 3, 8):
        np.testing.assert_array_equal(decode_features(model, feats, options, batch_size=3,
                                                      workers=workers), one)


def test_references_fall_back_to_decoded_caption_arrays(model):
    vocab, data = _data(np.random.default_rng(1))
    scores, records = evaluate_split(model, data, vocab, "val", DecodeOptions(max_length=5),
                                     meteor=False)
    assert scores["num_images"] == 3 and scores["split"] == "val" and scores["method"] == "greedy"
    assert [r["references"] for r in records] == [["a red circle"], ["a blue square", "a red square"],
                                                  ["blue circle"]]
    assert "true" not in records[0]  # no ground truth, no verdict


def test_limit_takes_the_first_images(model):
    vocab, data = _data(np.random.default_rng(1))
    assert list(split_images(data, "val", limit=2)) == [0, 1]
    with pytest.raises(ValueError, match="no 'test' split; it has val"):
        split_images(data, "test")


def test_bad_decode_options():
    with pytest.raises(ValueError, match="greedy' or 'beam'"):
        DecodeOptions("sample")
    with pytest.raises(ValueError, match="beam size"):
        DecodeOptions("beam", beam_size=0)
    assert DecodeOptions("beam", beam_size=5).name == "beam-5"
