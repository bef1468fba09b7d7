"""AttentionCaptioner: Show, Attend and Tell's soft-attention LSTM captioner.

    grid features feats (N, L, D) --mean, W_h0/W_c0, tanh--> h0, c0 (N, H)
    feats --W_a, b_a--> proj (N, L, A)                      once per image
    captions[:, :-1] --W_embed--> x (N, T, W)
    attention LSTM (rnncap.layers.attention): at each step alpha = softmax over the L
        locations, context = sum alpha feats, z = beta context; LSTM on [x_t, z_t]
    h (N, T, H) --W_vocab, b_vocab--> scores (N, T, V)
    softmax cross-entropy against captions[:, 1:], <NULL> targets masked
    (+ optionally SAT's doubly stochastic penalty on the alphas)

It keeps CaptioningRNN's contract where it can: `params` is a plain dict read on every
call, `loss(features, captions) -> (loss, grads)` with grads exactly like params, and
`init_state()/step()` for rnncap.decode's greedy, sampling and beam search (the state is
(h, c, proj, fz), every array with leading axis N, so a decoder may reorder it by fancy
indexing). `attention_weights(features, tokens)` gives the (N, T, L) weights each
generated word was produced with, whichever decoder produced the tokens.

Training sorts the batch's rows longest caption first and runs step t on the rows whose
caption is still going (`batch_sizes`, as rnncap.layers.packing lays them out), so no step
computes a finished caption's padding.

This module knows the layers and the vocabulary's special ids. It does not know files,
checkpoints, optimizers, grid geometry or how captions are turned into text.
"""

from __future__ import annotations

import math

import numpy as np

from rnncap.fast import masked_softmax_loss, pack_layout
from rnncap.layers import (
    attention_init_backward,
    attention_init_forward,
    attention_lstm_backward,
    attention_lstm_forward,
    doubly_stochastic_loss,
    log_softmax,
    sigmoid,
    temporal_affine_backward,
    temporal_affine_forward,
    word_embedding_backward,
    word_embedding_forward,
)
from rnncap.layers.attention import gates_inplace
from rnncap.model import (CaptioningRNN, _as_float_dtype, _check_vocabulary, _positive_int,
                          _set_vocabulary, finite_float_features)

#: What `model.kind` in a run's config may name: CaptioningRNN ('rnn') or this model.
MODEL_KINDS = ("rnn", "attention")

#: The order of the parameters (and of `params`' keys).
PARAM_NAMES = ("W_embed", "W_h0", "b_h0", "W_c0", "b_c0", "W_a", "b_a", "W_h", "w_att",
               "W_beta", "b_beta", "Wx", "Wh", "Wz", "b", "W_vocab", "b_vocab")


class AttentionCaptioner:
    """A soft-attention LSTM captioner over grids of image features.

    Attributes:
        params: plain dict name -> array (see PARAM_NAMES): W_embed (V, W); W_h0, W_c0
            (D, H) and b_h0, b_c0 (H,) for the initial state; W_a (D, A), b_a (A,),
            W_h (H, A), w_att (A,) for the attention; W_beta (H, 1), b_beta (1,) for
            the gate scalar; Wx (W, 4H), Wh (H, 4H), Wz (D, 4H), b (4H,) for the LSTM;
            W_vocab (H, V), b_vocab (V,) for the output.
        input_dim: D, the size of one grid location's feature vector.
        doubly_stochastic: lambda of SAT's attention penalty (0: none).
    """

    kind = "attention"

    def __init__(self, word_to_idx, input_dim=512, wordvec_dim=128, hidden_dim=128,
                 attention_dim=None, dtype=np.float32, seed=None, doubly_stochastic=0.0):
        """Builds the parameters: weight matrices ~ N(0, 1) / sqrt(fan_in), W_embed ~
        N(0, 1) / 100, biases 0 (as CaptioningRNN), drawn in float64 and cast.

        Args:
            word_to_idx: dict word -> id, ids exactly 0..V-1, with <NULL>, <START>, <END>.
            input_dim: D, features per grid location.
            wordvec_dim: W.
            hidden_dim: H.
            attention_dim: A, the attention's hidden size; default H.
            dtype: float32 or float64.
            seed: None, an int or a np.random.Generator.
            doubly_stochastic: lambda >= 0 of the attention penalty.
        """
        _check_vocabulary(word_to_idx)
        self.dtype = _as_float_dtype(dtype)
        _set_vocabulary(self, word_to_idx)
        D = self.input_dim = _positive_int("input_dim", input_dim)
        W = self.wordvec_dim = _positive_int("wordvec_dim", wordvec_dim)
        H = self.hidden_dim = _positive_int("hidden_dim", hidden_dim)
        A = self.attention_dim = _positive_int("attention_dim", attention_dim or hidden_dim)
        lam = float(doubly_stochastic)
        if not lam >= 0:
            raise ValueError(f"doubly_stochastic must be >= 0; got {doubly_stochastic!r}")
        self.doubly_stochastic = lam
        V = len(word_to_idx)
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        shapes = {"W_embed": (V, W), "W_h0": (D, H), "b_h0": (H,), "W_c0": (D, H), "b_c0": (H,),
                  "W_a": (D, A), "b_a": (A,), "W_h": (H, A), "w_att": (A,), "W_beta": (H, 1),
                  "b_beta": (1,), "Wx": (W, 4 * H), "Wh": (H, 4 * H), "Wz": (D, 4 * H),
                  "b": (4 * H,), "W_vocab": (H, V), "b_vocab": (V,)}
        p = {}
        for name in PARAM_NAMES:
            shape = shapes[name]
            if name == "W_embed":
                p[name] = rng.standard_normal(shape) / 100
            elif name == "w_att":
                p[name] = rng.standard_normal(shape) / math.sqrt(A)
            elif len(shape) == 2:
                p[name] = rng.standard_normal(shape) / math.sqrt(shape[0])
            else:
                p[name] = np.zeros(shape)
        self.params = {k: v.astype(self.dtype) for k, v in p.items()}

    @property
    def config(self):
        """JSON-serialisable constructor arguments plus "kind": "attention"."""
        return {"kind": self.kind, "input_dim": self.input_dim, "wordvec_dim": self.wordvec_dim,
                "hidden_dim": self.hidden_dim, "attention_dim": self.attention_dim,
                "dtype": self.dtype.name, "doubly_stochastic": self.doubly_stochastic}

    # ------------------------------------------------------------------ input checks

    def _check_features(self, features):
        """Returns features (N, L, D) in the model's dtype, or raises ValueError."""
        features = np.asarray(features)
        if features.ndim != 3 or features.shape[2] != self.input_dim or features.shape[1] < 1:
            raise ValueError(f"the attention model needs grid features of shape (N, L, "
                             f"{self.input_dim}); got {features.shape}")
        return finite_float_features(features, self.dtype)

    # Token ids and captions are checked as CaptioningRNN checks them (same vocabulary rules).
    _check_ids = CaptioningRNN._check_ids
    _check_captions = CaptioningRNN._check_captions

    # ------------------------------------------------------------------ training

    def loss(self, features, captions):
        """Training loss and gradients for a minibatch (teacher forcing).

        Cross-entropy summed over non-<NULL> targets, plus the doubly stochastic penalty
        if enabled, all divided by N (a mean over rows, so the solver's row groups,
        rnncap.parallel.data_parallel, can split a batch over threads).

        Args:
            features: grid features, shape (N, L, D).
            captions: integer token ids, shape (N, T + 1).

        Returns:
            (loss, grads): a Python float and a dict with exactly the keys, shapes and
            dtypes of `params`.
        """
        features = self._check_features(features)
        captions = self._check_captions(captions, features.shape[0])
        return self._loss(features, captions, features.shape[0])

    def _lstm_args(self, p):
        return (p["Wx"], p["Wh"], p["Wz"], p["b"], p["W_a"], p["b_a"], p["W_h"], p["w_att"],
                p["W_beta"], p["b_beta"])

    def _loss(self, features, captions, divisor):
        p = self.params
        # Rows longest first; step t runs the batch_sizes[t] rows still going (the loss
        # and the gradients are sums over rows, so their order does not matter).
        layout = pack_layout(captions[:, 1:] != self._null)
        features, captions = features[layout.order], captions[layout.order]
        T = max(len(layout.batch_sizes), 1)
        mask = captions[:, 1:T + 1] != self._null  # (N, T)
        captions_in, captions_out = captions[:, :T], captions[:, 1:T + 1]
        N = features.shape[0]
        V = p["W_vocab"].shape[1]

        h0, c0, init_cache = attention_init_forward(features, p["W_h0"], p["b_h0"], p["W_c0"],
                                                    p["b_c0"])
        x, embed_cache = word_embedding_forward(captions_in, p["W_embed"])  # (N, T, W)
        h, alphas, cache = attention_lstm_forward(x, features, h0, c0, *self._lstm_args(p),
                                                  batch_sizes=layout.batch_sizes if len(layout.batch_sizes) else None)
        scores, out_cache = temporal_affine_forward(h, p["W_vocab"], p["b_vocab"])  # (N, T, V)
        loss, dscores = masked_softmax_loss(scores.reshape(N * T, V), captions_out.reshape(-1),
                                            mask.reshape(-1), divisor, overwrite_x=True)
        dalphas = None
        if self.doubly_stochastic > 0:
            penalty, dalphas = doubly_stochastic_loss(alphas, mask, self.doubly_stochastic, divisor)
            loss += penalty

        g = {}
        dh, g["W_vocab"], g["b_vocab"] = temporal_affine_backward(dscores.reshape(N, T, V), out_cache)
        (dx, _, dh0, dc0, g["Wx"], g["Wh"], g["Wz"], g["b"], g["W_a"], g["b_a"], g["W_h"],
         g["w_att"], g["W_beta"], g["b_beta"]) = attention_lstm_backward(dh, dalphas, cache)
        g["W_embed"] = word_embedding_backward(dx, embed_cache)
        # The features are not learned: only the initial state's weight gradients.
        _, g["W_h0"], g["b_h0"], g["W_c0"], g["b_c0"] = attention_init_backward(dh0, dc0, init_cache)
        return loss, {k: g[k].astype(self.dtype, copy=False) for k in p}

    # ------------------------------------------------------------------ decoding

    def init_state(self, features):
        """The state before the first word: (h0, c0, proj, fz), leading axis N.

        Args:
            features: grid features, shape (N, L, D).

        Returns:
            (h0 (N, H), c0 (N, H), proj (N, L, A), fz (N, L, 4H)): proj = feats W_a + b_a
            and fz = feats Wz are computed here once, so that no step repeats them (a step
            needs the features only through these two; see docs/attention.md).
        """
        features = self._check_features(features)
        p = self.params
        h0, c0, _ = attention_init_forward(features, p["W_h0"], p["b_h0"], p["W_c0"], p["b_c0"])
        proj = features @ p["W_a"] + p["b_a"]  # (N, L, A)
        fz = features @ p["Wz"]  # (N, L, 4H)
        return (h0, c0, proj, fz)

    def step(self, tokens, state):
        """Feeds one token per row; returns next-token log-probabilities and the new state.

        Args:
            tokens: integer ids, shape (N,).
            state: the tuple from `init_state()` or a previous `step()`; not modified.

        Returns:
            (logprobs (N, V), new_state).
        """
        return self._step(self._decoder_tables(self.params, word_table=False), tokens, state)[:2]

    def decoder_step(self, logits=False):
        """A step function equal to `step` that precomputes, once, the projected word
        table W_embed Wx + b (V, 4H) and the joint matrix [W_h | Wh | W_beta] of the
        three products of h. With `logits`, it returns raw scores (for greedy's argmax
        and beam search, as CaptioningRNN.decoder_step). Uses the parameters as they are
        now."""
        tables = self._decoder_tables(self.params)
        if logits:
            return lambda tokens, state: self._step(tables, tokens, state, logits=True)[:2]
        return lambda tokens, state: self._step(tables, tokens, state)[:2]

    def _decoder_tables(self, p, word_table=True):
        # The word table costs about as much as feeding V tokens: only for whole runs.
        table = p["W_embed"] @ p["Wx"] + p["b"] if word_table else None  # (V, 4H)
        W_cat = np.concatenate((p["W_h"], p["Wh"], p["W_beta"]), axis=1)  # (H, A + 4H + 1)
        return dict(p, table=table, W_cat=W_cat)

    def _check_state(self, state):
        if not isinstance(state, tuple) or len(state) != 4:
            raise ValueError("state must be the tuple (h, c, proj, fz) made by init_state(); got "
                             f"{type(state).__name__} of length {len(state) if isinstance(state, tuple) else '?'}")
        N = state[0].shape[0]
        if any(s.shape[0] != N for s in state):
            raise ValueError(f"every state array must have the same leading axis N; got {[s.shape for s in state]}")
        return N

    def _step(self, t, tokens, state, logits=False):
        """One decoding step with the tables of `_decoder_tables`; returns (out, new_state,
        alpha)."""
        N = self._check_state(state)
        tokens = np.asarray(tokens)
        if tokens.shape != (N,):
            raise ValueError(f"tokens must have shape ({N},) to match the state; got {tokens.shape}")
        self._check_ids("tokens", tokens)
        h, c, proj, fz = state
        H, A = self.hidden_dim, self.attention_dim
        hw = h @ t["W_cat"]  # (N, A + 4H + 1)
        u = np.tanh(proj + hw[:, None, :A])  # (N, L, A)
        e = u @ t["w_att"]  # (N, L)
        e -= e.max(axis=1, keepdims=True)
        alpha = np.exp(e)
        alpha /= alpha.sum(axis=1, keepdims=True)
        zc = (alpha[:, None, :] @ fz)[:, 0]  # (N, 4H): context Wz = sum_l alpha_l fz_l
        zc *= sigmoid(hw[:, A + 4 * H:] + t["b_beta"])  # z Wz = beta context Wz
        if t["table"] is not None:
            a = t["table"][tokens]  # (N, 4H), bias included
        else:
            a = t["W_embed"][tokens] @ t["Wx"] + t["b"]
        a += hw[:, A:A + 4 * H]
        a += zc
        gates = gates_inplace(a)
        i, f, o, g = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:3 * H], gates[:, 3 * H:]
        c_new = f * c
        c_new += i * g
        h_new = np.tanh(c_new)
        h_new *= o
        scores = h_new @ t["W_vocab"]
        scores += t["b_vocab"]
        out = scores if logits else log_softmax(scores, axis=1, out=scores)
        return out, (h_new, c_new, proj, fz), alpha

    def attention_weights(self, features, tokens):
        """The attention weights each given word was generated with.

        Runs the decoder over `tokens` (teacher forcing, one forward pass), as greedy,
        sampling or beam search would have when choosing them.

        Args:
            features: grid features, shape (N, L, D).
            tokens: generated ids, shape (N, T): first generated word first, as the
                decoders return them; positions after <END> hold <NULL>.

        Returns:
            (N, T, L) weights in the model's dtype: row t is the attention the model paid
            when it produced tokens[:, t] (each row sums to 1); zero where tokens is <NULL>.
        """
        features = self._check_features(features)
        tokens = np.asarray(tokens)
        if tokens.ndim != 2 or tokens.shape[0] != features.shape[0]:
            raise ValueError(f"tokens must have shape ({features.shape[0]}, T); got {tokens.shape}")
        self._check_ids("tokens", tokens)
        N, T = tokens.shape
        p = self.params
        inputs = np.concatenate((np.full((N, 1), self._start, tokens.dtype), tokens[:, :-1]), axis=1)
        h0, c0, _ = attention_init_forward(features, p["W_h0"], p["b_h0"], p["W_c0"], p["b_c0"])
        x, _ = word_embedding_forward(inputs, p["W_embed"])
        _, alphas, _ = attention_lstm_forward(x, features, h0, c0, *self._lstm_args(p))
        return alphas * (tokens != self._null)[:, :, None]

    def sample(self, features, max_length=30):
        """Greedy captions, int32 (N, max_length) (as CaptioningRNN.sample)."""
        from rnncap.decode import greedy

        return greedy(self.decoder_step(logits=True), self.init_state(features),
                      start_id=self._start, end_id=self._end, max_length=max_length,
                      null_id=self._null)
