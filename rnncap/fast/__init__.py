"""The fast path: the captioning network's training maths on packed, in-place buffers.

rnncap.layers holds CS231n's functions as the assignment writes them, for reading next
to the notebook. This package computes the same values the way the trainer and the
decoders run them: captions packed (padding dropped, time-major, each step one
contiguous block), the input and output projections and the softmax over all packed
positions at once, and only the recurrence in a Python loop, writing into preallocated
arrays. Every function here is tested equal to its reference in float64
(tests/fast/); CaptioningRNN.fast_loss composes them.

This package knows arrays and shapes only: no I/O, no state, no random numbers, no
vocabulary, no threads.
"""

from rnncap.fast.losses import masked_softmax_loss
from rnncap.fast.lstm import LSTMRecurrenceCache, lstm_cell, lstm_packed_backward, lstm_packed_forward
from rnncap.fast.packing import (
    PackedLayout,
    add_to_every_step,
    pack,
    pack_layout,
    previous_states,
    sum_over_steps,
    unsort_rows,
)
from rnncap.fast.rnn import RNNRecurrenceCache, rnn_cell, rnn_packed_backward, rnn_packed_forward

__all__ = [
    "masked_softmax_loss",
    "PackedLayout",
    "pack_layout",
    "pack",
    "add_to_every_step",
    "sum_over_steps",
    "previous_states",
    "unsort_rows",
    "rnn_cell",
    "rnn_packed_forward",
    "rnn_packed_backward",
    "RNNRecurrenceCache",
    "lstm_cell",
    "lstm_packed_forward",
    "lstm_packed_backward",
    "LSTMRecurrenceCache",
]
