"""CaptioningRNN: the CS231n image-captioning network, vanilla RNN or LSTM.

    features (N, D) --W_proj, b_proj--> h0 (N, H)
    captions[:, :-1] --W_embed--> x (N, T, W) --Wx, b--> input pre-activation (N, T, H')
    recurrence(h0, Wh) -> h (N, T, H) --W_vocab, b_vocab--> scores (N, T, V)
    softmax cross-entropy against captions[:, 1:], <NULL> targets masked

H' is H for the RNN and 4H for the LSTM (gates i, f, o, g). With `image_every_step`
(beyond CS231n) the image also enters every step: features W_img (N, H') is added to
the input pre-activation of every step.

Two paths compute the same values:

* the reference path, for reading next to the notebook: `loss()` is the composition
  of the assignment's five steps (affine, word embedding, rnn/lstm, temporal affine,
  temporal softmax loss) and their backward passes, all from rnncap.layers; `step()`
  is one token through the same layers;
* the fast path, which training (rnncap.run) and decoding (rnncap.evaluate,
  `sample()`) use: `fast_loss()` runs the batch packed (rnncap.fast: the <NULL> padding
  after each caption's last target is never computed, every step works in place on
  one contiguous block; docs/performance.md measures what that buys), and
  `decoder_step()` gathers rows of a projected word table and runs the cell in place.

tests/test_model.py checks that the two agree in float64. Decoding uses
`init_state()` and a step function, so greedy, sampling and beam search
(rnncap.decode) never need to know the cell type: the state is a tuple of arrays whose
leading axis is the batch, and a decoder may reorder it by fancy indexing.

This module knows the layers and the vocabulary's special ids (<NULL>, <START>, <END>).
It does not know files, checkpoints, optimizers, threads or how captions are turned
into text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from rnncap.fast import (
    add_to_every_step,
    lstm_cell,
    lstm_packed_backward,
    lstm_packed_forward,
    masked_softmax_loss,
    pack,
    pack_layout,
    rnn_cell,
    rnn_packed_backward,
    rnn_packed_forward,
    sum_over_steps,
    unsort_rows,
)
from rnncap.layers import (
    affine_backward,
    affine_forward,
    log_softmax,
    lstm_backward,
    lstm_forward,
    lstm_step_forward,
    rnn_backward,
    rnn_forward,
    rnn_step_forward,
    temporal_affine_backward,
    temporal_affine_forward,
    temporal_softmax_loss,
    word_embedding_backward,
    word_embedding_forward,
)

CELL_TYPES = ("rnn", "lstm")
DTYPES = ("float32", "float64")
INITS = ("cs231n", "pytorch")
_GATES = {"rnn": 1, "lstm": 4}
_SEQUENCE = {"rnn": (rnn_forward, rnn_backward), "lstm": (lstm_forward, lstm_backward)}
_PACKED = {
    "rnn": (rnn_packed_forward, rnn_packed_backward),
    "lstm": (lstm_packed_forward, lstm_packed_backward),
}
SPECIAL_TOKENS = ("<NULL>", "<START>", "<END>")


def _as_float_dtype(dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.name not in DTYPES:
        raise ValueError(f"dtype must be float32 or float64 (a numpy type or its name); got {dtype!r}")
    return dt


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


def finite_float_features(features, dtype):
    """`features` cast to `dtype`, or ValueError if they are not finite floating-point numbers."""
    if not np.issubdtype(features.dtype, np.floating):
        raise ValueError(f"features must be floating point; got dtype {features.dtype}")
    features = features.astype(dtype, copy=False)
    if not np.isfinite(features).all():
        raise ValueError("features must be finite; got NaN or inf")
    return features


def _set_vocabulary(model, word_to_idx):
    """Give a model word_to_idx, idx_to_word and the ids of <NULL>, <START> and <END>."""
    model.word_to_idx = dict(word_to_idx)
    model.idx_to_word = [None] * len(word_to_idx)
    for word, i in word_to_idx.items():
        model.idx_to_word[i] = word
    model._null = int(word_to_idx["<NULL>"])
    model._start = int(word_to_idx["<START>"])
    model._end = int(word_to_idx["<END>"])


def _check_vocabulary(word_to_idx):
    if not isinstance(word_to_idx, Mapping):
        raise ValueError(f"word_to_idx must be a dict word -> id; got {type(word_to_idx).__name__}")
    missing = [w for w in SPECIAL_TOKENS if w not in word_to_idx]
    if missing:
        raise ValueError(f"word_to_idx must contain {', '.join(SPECIAL_TOKENS)}; missing {', '.join(missing)}")
    ids = sorted(word_to_idx.values())
    if ids != list(range(len(ids))):
        raise ValueError(f"word_to_idx ids must be exactly 0..{len(ids) - 1}, each used once")


def _init_cs231n(rng, D, W, H, G, V, image_every_step):
    """CS231n's initialisation, in float64 (see CaptioningRNN.__init__)."""
    p = {}
    p["W_embed"] = rng.standard_normal((V, W)) / 100
    p["W_proj"] = rng.standard_normal((D, H)) / math.sqrt(D)
    p["b_proj"] = np.zeros(H)
    p["Wx"] = rng.standard_normal((W, G)) / math.sqrt(W)
    p["Wh"] = rng.standard_normal((H, G)) / math.sqrt(H)
    p["b"] = np.zeros(G)
    p["W_vocab"] = rng.standard_normal((H, V)) / math.sqrt(H)
    p["b_vocab"] = np.zeros(V)
    if image_every_step:  # drawn last: the other parameters do not depend on it
        p["W_img"] = rng.standard_normal((D, G)) / math.sqrt(D)
    return p


def _init_pytorch(rng, D, W, H, G, V, image_every_step):
    """PyTorch's default initialisation of the same network, in float64 (see __init__)."""

    def uniform(shape, fan_in):
        bound = 1 / math.sqrt(fan_in)
        return rng.uniform(-bound, bound, shape)

    p = {}
    p["W_embed"] = rng.standard_normal((V, W))  # nn.Embedding: N(0, 1)
    p["W_proj"] = uniform((D, H), D)  # nn.Linear(D, H)
    p["b_proj"] = uniform(H, D)
    p["Wx"] = uniform((W, G), H)  # nn.LSTM / nn.RNN: every weight and bias U(+-1/sqrt(H))
    p["Wh"] = uniform((H, G), H)
    p["b"] = uniform(G, H) + uniform(G, H)  # b_ih + b_hh: one bias here
    p["W_vocab"] = uniform((H, V), H)  # nn.Linear(H, V)
    p["b_vocab"] = uniform(V, H)
    if image_every_step:  # drawn last: the other parameters do not depend on it
        p["W_img"] = uniform((D, G), D)  # nn.Linear(D, H', bias=False)
    return p


class CaptioningRNN:
    """CS231n's captioning RNN, with a decoding interface and input checks.

    Attributes:
        params: plain dict name -> array, read on every call (assigning a new array to
            a key takes effect). Keys W_embed (V, W), W_proj (D, H), b_proj (H,),
            Wx (W, H'), Wh (H, H'), b (H',), W_vocab (H, V), b_vocab (V,), and W_img
            (D, H') only with image_every_step; H' = H (rnn) or 4H (lstm).
        word_to_idx: the vocabulary, word -> id.
        idx_to_word: list, id -> word.
        cell_type: 'rnn' or 'lstm'.
        dtype: np.dtype of every parameter, activation and gradient.
        image_every_step: whether the image enters every step (beyond CS231n).
    """

    def __init__(
        self,
        word_to_idx,
        input_dim=512,
        wordvec_dim=128,
        hidden_dim=128,
        cell_type="rnn",
        dtype=np.float32,
        seed=None,
        image_every_step=False,
        init="cs231n",
    ):
        """Builds the parameters, initialised as CS231n does (or as PyTorch does).

        init='cs231n' (the default, CS231n's own): W_embed ~ N(0, 1) / 100; every other
        weight matrix ~ N(0, 1) / sqrt(fan_in); biases 0.
        init='pytorch' (beyond CS231n): what PyTorch's nn.Embedding, nn.Linear and nn.LSTM
        (or nn.RNN) draw for the same network: W_embed ~ N(0, 1); W_proj, b_proj ~
        U(+-1/sqrt(D)); Wx, Wh ~ U(+-1/sqrt(H)) and b the sum of the cell's two biases
        b_ih + b_hh, each U(+-1/sqrt(H)); W_vocab, b_vocab ~ U(+-1/sqrt(H)); W_img ~
        U(+-1/sqrt(D)). Word vectors 100 times larger make the first steps of training
        move much faster (docs/results.md measures it on the shapes demo).
        Values are drawn in float64 and then cast, so one seed gives the same network (up
        to rounding) in float32 and float64.

        Args:
            word_to_idx: dict word -> id, ids exactly 0..V-1, containing <NULL>,
                <START> and <END>.
            input_dim: image feature size D.
            wordvec_dim: word vector size W.
            hidden_dim: hidden state size H.
            cell_type: 'rnn' or 'lstm'.
            dtype: np.float32 / np.float64 or 'float32' / 'float64'.
            seed: None, an int or a np.random.Generator for the initialisation.
            image_every_step: also add features W_img to every step's input.
            init: 'cs231n' or 'pytorch', the initialisation (see above).

        Raises:
            ValueError: bad cell_type, dtype, sizes, vocabulary or init.
        """
        if cell_type not in CELL_TYPES:
            raise ValueError(f"cell_type must be one of {', '.join(CELL_TYPES)}; got {cell_type!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}; got {init!r}")
        _check_vocabulary(word_to_idx)
        self.cell_type = cell_type
        self.dtype = _as_float_dtype(dtype)
        self.image_every_step = bool(image_every_step)
        self.init = init
        _set_vocabulary(self, word_to_idx)
        D = self.input_dim = _positive_int("input_dim", input_dim)
        W = self.wordvec_dim = _positive_int("wordvec_dim", wordvec_dim)
        H = self.hidden_dim = _positive_int("hidden_dim", hidden_dim)
        V = len(word_to_idx)
        G = _GATES[cell_type] * H  # H' = width of the recurrent pre-activation

        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        init_params = _init_cs231n if init == "cs231n" else _init_pytorch
        p = init_params(rng, D, W, H, G, V, self.image_every_step)
        self.params = {k: v.astype(self.dtype) for k, v in p.items()}

    @property
    def config(self):
        """JSON-serialisable constructor arguments: CaptioningRNN(word_to_idx, **config)
        rebuilds a model with the same parameter shapes and dtypes."""
        return {
            "input_dim": self.input_dim,
            "wordvec_dim": self.wordvec_dim,
            "hidden_dim": self.hidden_dim,
            "cell_type": self.cell_type,
            "dtype": self.dtype.name,
            "image_every_step": self.image_every_step,
            "init": self.init,
        }

    # ------------------------------------------------------------------ input checks

    def _check_features(self, features):
        """Returns features (N, D) in the model's dtype, or raises ValueError."""
        features = np.asarray(features)
        if features.ndim != 2 or features.shape[1] != self.input_dim:
            raise ValueError(f"features must have shape (N, {self.input_dim}); got {features.shape}")
        return finite_float_features(features, self.dtype)

    def _check_ids(self, name, ids):
        if not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"{name} must hold integer token ids; got dtype {ids.dtype}")
        V = len(self.idx_to_word)
        if ids.size and (ids.min() < 0 or ids.max() >= V):
            raise ValueError(f"{name} must hold ids in [0, {V}); got values in [{ids.min()}, {ids.max()}]")

    def _check_captions(self, captions, N):
        captions = np.asarray(captions)
        if captions.ndim != 2 or captions.shape[1] < 2:
            raise ValueError(f"captions must have shape (N, T) with T >= 2; got {captions.shape}")
        if captions.shape[0] != N:
            raise ValueError(f"captions and features must have the same N; got {captions.shape[0]} and {N}")
        self._check_ids("captions", captions)
        return captions

    # ------------------------------------------------------------------ training

    def loss(self, features, captions):
        """Training loss and gradients for a minibatch (teacher forcing): the reference path.

        captions[:, :-1] are the inputs and captions[:, 1:] the targets; targets equal to
        <NULL> are masked. The loss is summed over unmasked targets and divided by N.
        Written as the assignment's solution: five forward steps, then their backward
        passes in reverse order. `fast_loss` computes the same values faster.

        Args:
            features: image features, shape (N, D), floating point (cast to the model's
                dtype).
            captions: integer token ids, shape (N, T + 1).

        Returns:
            (loss, grads): loss is a Python float; grads has exactly the keys, shapes and
            dtypes of `params`.

        Raises:
            ValueError: features or captions of the wrong shape or dtype, a batch size
                mismatch, ids outside the vocabulary, non-finite features.
        """
        features = self._check_features(features)
        captions = self._check_captions(captions, features.shape[0])
        p = self.params
        captions_in, captions_out = captions[:, :-1], captions[:, 1:]
        mask = captions_out != self._null
        sequence_forward, sequence_backward = _SEQUENCE[self.cell_type]
        Wx = p["Wx"]
        if self.image_every_step:
            # The image term features W_img enters every step's input pre-activation:
            # the same as feeding [x_t, features] through the stacked weights [Wx; W_img].
            Wx = np.concatenate([p["Wx"], p["W_img"]])  # (W + D, H')

        # (1) image features -> initial hidden state
        h0, proj_cache = affine_forward(features, p["W_proj"], p["b_proj"])  # (N, H)
        # (2) input words -> word vectors
        x, embed_cache = word_embedding_forward(captions_in, p["W_embed"])  # (N, T, W)
        if self.image_every_step:
            T = x.shape[1]
            x = np.concatenate([x, np.repeat(features[:, None], T, axis=1)], axis=2)  # (N, T, W + D)
        # (3) the recurrence over all time steps
        h, rnn_cache = sequence_forward(x, h0, Wx, p["Wh"], p["b"])  # (N, T, H)
        # (4) hidden states -> vocabulary scores at every step
        scores, out_cache = temporal_affine_forward(h, p["W_vocab"], p["b_vocab"])  # (N, T, V)
        # (5) softmax cross-entropy against the next words, <NULL> masked
        loss, dscores = temporal_softmax_loss(scores, captions_out, mask)

        grads = {}
        dh, grads["W_vocab"], grads["b_vocab"] = temporal_affine_backward(dscores, out_cache)
        dx, dh0, dWx, grads["Wh"], grads["b"] = sequence_backward(dh, rnn_cache)
        W = p["W_embed"].shape[1]
        grads["Wx"] = dWx[:W]
        if self.image_every_step:
            grads["W_img"] = dWx[W:]
        grads["W_embed"] = word_embedding_backward(dx[:, :, :W], embed_cache)
        _, grads["W_proj"], grads["b_proj"] = affine_backward(dh0, proj_cache)
        return loss, {k: grads[k] for k in p}

    def fast_loss(self, features, captions):
        """`loss()` on the fast path (rnncap.fast): the same values up to float rounding.

        The batch is packed: rows sorted by length, time-major, the padding after each
        caption's last target dropped, so every layer sees P <= N*T rows; the
        recurrence works in place. The trainer and the benchmarks use this.

        Args, returns and raises: as `loss()`.
        """
        features = self._check_features(features)
        captions = self._check_captions(captions, features.shape[0])
        N = features.shape[0]
        p = self.params
        rec_forward, rec_backward = _PACKED[self.cell_type]
        captions_in, captions_out = captions[:, :-1], captions[:, 1:]
        # Pack: drop the padding after each caption's last target, rows longest first,
        # time-major (rnncap.fast.packing). Every layer below then sees P <= N*T rows.
        layout = pack_layout(captions_out != self._null)
        words_in = pack(captions_in, layout)  # (P,)
        targets = pack(captions_out, layout)  # (P,)

        h0 = (features @ p["W_proj"] + p["b_proj"])[layout.order]  # (N, H), sorted like the rows
        x, embed_cache = word_embedding_forward(words_in, p["W_embed"])  # (P, W)
        a_x, in_cache = affine_forward(x, p["Wx"], p["b"])  # (P, H'), all steps at once
        if self.image_every_step:
            img = features[layout.order] @ p["W_img"]  # (N, H'), once per batch
            add_to_every_step(a_x, img, layout)
        h, rec_cache = rec_forward(a_x, h0, p["Wh"], layout.batch_sizes)  # (P, H)
        scores, out_cache = affine_forward(h, p["W_vocab"], p["b_vocab"])  # (P, V)
        loss, dscores = masked_softmax_loss(scores, targets, targets != self._null, N,
                                            overwrite_x=True)

        grads = {}
        dh, grads["W_vocab"], grads["b_vocab"] = affine_backward(dscores, out_cache)
        da_x, dh0, grads["Wh"] = rec_backward(dh, rec_cache)
        dx, grads["Wx"], grads["b"] = affine_backward(da_x, in_cache)
        if self.image_every_step:  # (D, H'): summed over every row's steps
            grads["W_img"] = features[layout.order].T @ sum_over_steps(da_x, layout, N)
        grads["W_embed"] = word_embedding_backward(dx, embed_cache)
        dh0 = unsort_rows(dh0, layout)  # (N, H); zero for captions with no target
        # The features are not learned: only the weight gradients of the projection.
        grads["W_proj"] = features.T @ dh0  # (D, H)
        grads["b_proj"] = dh0.sum(axis=0)
        return loss, {k: grads[k] for k in p}

    def row_costs(self, captions):
        """The work each caption costs `fast_loss`: its positions up to its last target.

        Used to split a batch into row groups of about equal work
        (rnncap.parallel.split_rows).

        Args:
            captions: integer token ids, shape (N, T + 1).

        Returns:
            int array (N,).
        """
        return pack_layout(np.asarray(captions)[:, 1:] != self._null).lengths

    # ------------------------------------------------------------------ decoding

    def init_state(self, features):
        """The recurrent state before the first word, for `step()`.

        Args:
            features: image features, shape (N, D).

        Returns:
            Tuple of arrays, each with leading axis N: (h,) for rnn, (h, c) for lstm,
            followed by the image term features W_img (N, H') when image_every_step.
        """
        features = self._check_features(features)
        p = self.params
        h0 = features @ p["W_proj"] + p["b_proj"]  # (N, H)
        state = (h0,) if self.cell_type == "rnn" else (h0, np.zeros_like(h0))
        if self.image_every_step:
            state += (features @ p["W_img"],)  # (N, H')
        return state

    def _check_state(self, state):
        n_arrays = (1 if self.cell_type == "rnn" else 2) + self.image_every_step
        if not isinstance(state, tuple) or len(state) != n_arrays:
            raise ValueError(
                f"state must be the tuple of {n_arrays} arrays made by init_state(); got "
                f"{type(state).__name__} of length {len(state) if isinstance(state, tuple) else '?'}"
            )
        N = state[0].shape[0]
        if any(s.shape[0] != N for s in state):
            raise ValueError(f"every state array must have the same leading axis N; got {[s.shape for s in state]}")
        return N

    def step(self, tokens, state):
        """Feeds one token per row and returns next-token log-probabilities.

        The reference path, through the CS231n layers: word embedding, one
        rnn/lstm step (the image term, if any, joins the bias), affine, log-softmax.
        `decoder_step()` computes the same values faster. Pure: the state passed in
        is never modified.

        Args:
            tokens: integer ids, shape (N,).
            state: tuple from `init_state()` or a previous `step()`.

        Returns:
            (logprobs, new_state): logprobs (N, V) in the model's dtype, the log-softmax
            of the output scores; new_state has the structure of `state`.
        """
        N = self._check_state(state)
        tokens = self._check_tokens(tokens, N)
        p = self.params
        x, _ = word_embedding_forward(tokens, p["W_embed"])  # (N, W)
        b = p["b"] + state[-1] if self.image_every_step else p["b"]  # (N, H') or (H',)
        if self.cell_type == "rnn":
            h, _ = rnn_step_forward(x, state[0], p["Wx"], p["Wh"], b)
            new_state = (h,)
        else:
            h, c, _ = lstm_step_forward(x, state[0], state[1], p["Wx"], p["Wh"], b)
            new_state = (h, c)
        if self.image_every_step:
            new_state += (state[-1],)
        scores, _ = affine_forward(h, p["W_vocab"], p["b_vocab"])  # (N, V)
        return log_softmax(scores, axis=1), new_state

    def _check_tokens(self, tokens, N):
        tokens = np.asarray(tokens)
        if tokens.shape != (N,):
            raise ValueError(f"tokens must have shape ({N},) to match the state; got {tokens.shape}")
        self._check_ids("tokens", tokens)
        return tokens

    def decoder_step(self, logits=False):
        """A step function equal to `step`, on the fast path, for a whole decoding run.

        The input term of a token does not depend on the state, so the projected word
        table W_embed Wx + b (V, H') is computed once here and every step gathers rows
        of it instead of multiplying (N, W) x (W, H') again: 25% of an LSTM step's
        matrix products, 14% of an RNN's. The cell then runs in place
        (rnncap.fast.rnn_cell / lstm_cell). It pays as soon as a run feeds about V
        tokens in all (e.g. 1,000 images x 16 steps; `sample` decides this by itself).

        The returned function uses the parameters as they are now (it keeps references
        to the arrays): make a new one after training further.

        Args:
            logits: return the output scores h W_vocab + b_vocab instead of their
                log-softmax. Greedy decoding only needs each row's argmax, which the
                log-softmax does not move (up to float rounding: two scores closer than
                its rounding can tie after it), and skips the softmax's passes over the
                (N, V) scores (CS231n's `sample` takes the argmax of the scores too).

        Returns:
            ``step(tokens (N,), state) -> (logprobs (N, V), new_state)``, pure (scores
            instead of logprobs with `logits=True`).
        """
        p = dict(self.params)
        table = p["W_embed"] @ p["Wx"]  # (V, H')
        table += p["b"]
        return lambda tokens, state: self._fast_step(p, table, tokens, state, logits)

    def _fast_step(self, p, table, tokens, state, logits=False):
        """`step` on the fast path with the parameters p and, if not None, the
        projected word table; the raw scores instead of log-probabilities if `logits`."""
        N = self._check_state(state)
        tokens = self._check_tokens(tokens, N)
        # Pre-activation x Wx + h Wh + b, accumulated in one (N, H') array; the cell,
        # the output scores and the log-softmax then work in place.
        if table is not None:
            a = table[tokens]  # (N, H'), bias included
        else:
            words, rows = np.unique(tokens, return_inverse=True)
            if 2 * len(words) <= N:
                # Many repeats (every row starts with <START>): the input term once per
                # distinct token, then copied out.
                a = (p["W_embed"][words] @ p["Wx"])[rows.reshape(-1)]  # (N, H')
            else:
                a = p["W_embed"][tokens] @ p["Wx"]  # (N, H')
            a += p["b"]
        a += state[0] @ p["Wh"]
        if self.image_every_step:
            a += state[-1]
        if self.cell_type == "rnn":
            h = rnn_cell(a)  # (N, H)
            new_state = (h,)
        else:
            H = self.hidden_dim
            h, c, tanh_c = (np.empty((N, H), dtype=a.dtype) for _ in range(3))
            lstm_cell(a, state[1], h, c, tanh_c, scratch=tanh_c)  # scratch used before tanh_c
            new_state = (h, c)
        if self.image_every_step:
            new_state += (state[-1],)
        scores = h @ p["W_vocab"]  # (N, V)
        scores += p["b_vocab"]
        if logits:
            return scores, new_state
        return log_softmax(scores, axis=1, out=scores), new_state

    def sample(self, features, max_length=30):
        """Greedy captions for a batch of images (CS231n's test-time sampling).

        Args:
            features: image features, shape (N, D).
            max_length: number of generated tokens T.

        Returns:
            int32 array (N, T): the first column is the first generated word (not
            <START>); <END> is kept and every position after it is <NULL>.
        """
        from rnncap.decode import greedy

        state = self.init_state(features)
        # The projected word table costs about as much as feeding V tokens one by one.
        # The argmax of the scores is the argmax of the log-probabilities.
        if state[0].shape[0] * int(max_length) >= len(self.idx_to_word):
            step = self.decoder_step(logits=True)
        else:
            p = self.params
            step = lambda tokens, s: self._fast_step(p, None, tokens, s, logits=True)  # noqa: E731
        return greedy(
            step,
            state,
            start_id=self._start,
            end_id=self._end,
            max_length=max_length,
            null_id=self._null,
        )
