"""The CS231n captioning layers: pure forward/backward functions on NumPy arrays.

Every layer is a pair `*_forward(...) -> (out, cache)` and `*_backward(dout, cache) ->
gradients`, under the names, argument order and return tuples of CS231n assignment 3,
so a learner can read them line by line next to the notebook. The `*_recurrence_*`
helpers are the pure recurrences the sequence layers are built from (input projection
done beforehand for all steps at once); the `*_packed_*` ones run the same recurrence
over packed sequences (`packing`: padding dropped, time-major), which is what the model
trains with.

This package knows arrays and shapes only: no I/O, no state, no random numbers, no
vocabulary.
"""

from rnncap.layers.affine import (
    affine_backward,
    affine_forward,
    temporal_affine_backward,
    temporal_affine_forward,
)
from rnncap.layers.attention import (
    attention_backward,
    attention_forward,
    attention_init_backward,
    attention_init_forward,
    attention_lstm_backward,
    attention_lstm_forward,
    attention_lstm_step_backward,
    attention_lstm_step_forward,
    doubly_stochastic_loss,
)
from rnncap.layers.embedding import word_embedding_backward, word_embedding_forward
from rnncap.layers.losses import log_softmax, masked_softmax_loss, temporal_softmax_loss
from rnncap.layers.lstm import (
    lstm_backward,
    lstm_forward,
    lstm_gates_inplace,
    lstm_packed_backward,
    lstm_packed_forward,
    lstm_recurrence_backward,
    lstm_recurrence_forward,
    lstm_step_backward,
    lstm_step_forward,
    sigmoid,
)
from rnncap.layers.packing import (
    PackedLayout,
    add_to_every_step,
    pack,
    pack_layout,
    row_groups,
    sum_over_steps,
    unsort_rows,
)
from rnncap.layers.rnn import (
    rnn_backward,
    rnn_forward,
    rnn_packed_backward,
    rnn_packed_forward,
    rnn_recurrence_backward,
    rnn_recurrence_forward,
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
    "rnn_recurrence_forward",
    "rnn_recurrence_backward",
    "rnn_packed_forward",
    "rnn_packed_backward",
    "lstm_step_forward",
    "lstm_step_backward",
    "lstm_forward",
    "lstm_backward",
    "lstm_recurrence_forward",
    "lstm_recurrence_backward",
    "lstm_packed_forward",
    "lstm_packed_backward",
    "lstm_gates_inplace",
    "sigmoid",
    "log_softmax",
    "masked_softmax_loss",
    "temporal_softmax_loss",
    "PackedLayout",
    "pack_layout",
    "row_groups",
    "pack",
    "add_to_every_step",
    "sum_over_steps",
    "unsort_rows",
    "attention_forward",
    "attention_backward",
    "attention_init_forward",
    "attention_init_backward",
    "attention_lstm_step_forward",
    "attention_lstm_step_backward",
    "attention_lstm_forward",
    "attention_lstm_backward",
    "doubly_stochastic_loss",
]
