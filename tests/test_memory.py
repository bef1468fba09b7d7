"""Memory estimates: counted by hand for a small model, and refusals that name what was asked."""

import pytest

from rnncap import memory


def test_model_bytes_counts_every_parameter():
    # V=10, D=6, W=4, H=3, LSTM (G=12): W_embed 40, W_proj 18, b_proj 3, Wx 48, Wh 36, b 12,
    # W_vocab 30, b_vocab 10 = 197 numbers; image_every_step adds W_img D*G = 72
    assert memory.model_bytes(10, 6, 4, 3, "lstm", 4) == 197 * 4
    assert memory.model_bytes(10, 6, 4, 3, "lstm", 8, image_every_step=True) == (197 + 72) * 8
    # RNN (G=H=3): 40 + 18 + 3 + 12 + 9 + 3 + 30 + 10 = 125
    assert memory.model_bytes(10, 6, 4, 3, "rnn", 4) == 125 * 4


def test_the_model_counted_is_the_model_built():
    import numpy as np

    from rnncap.model import CaptioningRNN

    words = {w: i for i, w in enumerate(["<NULL>", "<START>", "<END>", "<UNK>", "a", "b"])}
    for cell in ("rnn", "lstm"):
        for every in (False, True):
            m = CaptioningRNN(words, input_dim=7, wordvec_dim=5, hidden_dim=3, cell_type=cell,
                              image_every_step=every)
            built = sum(v.nbytes for v in m.params.values())
            assert memory.model_bytes(6, 7, 5, 3, cell, np.dtype(np.float32).itemsize, every) == built


def test_require_names_what_was_asked_and_what_there_is():
    memory.require(100, "small", limit=100)
    with pytest.raises(memory.MemoryEstimateError, match=r"big would need at least 1.0 KiB of memory; "
                                                         r"this machine has 100 bytes"):
        memory.require(1024, "big", limit=100)


def test_available_memory_is_known_here():
    assert memory.physical_bytes() > 2**20
