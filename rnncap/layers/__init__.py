"""The CS231n captioning layers: pure forward/backward functions on NumPy arrays.

Every layer is a pair `*_forward(...) -> (out, cache)` and `*_backward(dout, cache) ->
gradients`, under the names, argument order and return tuples of CS231n assignment 3,
written as the assignment's solution, so a learner can read them line by line next to
the notebook: the sequence functions are loops of the step functions. The trainer and
the decoders run the same maths on packed, in-place buffers (rnncap.fast), tested equal
to these.

This package knows arrays and shapes only: no I/O, no state, no random numbers, no
vocabulary, no threads.
"""

from rnncap.layers.affine import (
    affine_backward,
    affine_forward,
    temporal_affine_backward,
    temporal_affine_forward,
)
from rnncap.layers.embedding import word_embedding_backward, word_embedding_forward
from rnncap.layers.losses import log_softmax, temporal_softmax_loss
from rnncap.layers.lstm import (
    lstm_backward,
    lstm_forward,
    lstm_step_backward,
    lstm_step_forward,
    sigmoid,
)
from rnncap.layers.rnn import (
    rnn_backward,
    rnn_forward,
    rnn_step_backward,
    rnn_step_forward,
)

__all__ = [
    "affine_forward",
    "affine_backward",
    "temporal_affine_forward",
    "temporal_affine_backward",
    "word_embedding_forward",
    "word_embedding_backward",
    "rnn_step_forward",
    "rnn_step_backward",
    "rnn_forward",
    "rnn_backward",
    "lstm_step_forward",
    "lstm_step_backward",
    "lstm_forward",
    "lstm_backward",
    "sigmoid",
    "log_softmax",
    "temporal_softmax_loss",
]
