"""rnncap's CaptioningRNN rebuilt in PyTorch from an rnncap model's weights: the benchmarks' peer.

`TorchPeer(torch, model)` holds the same network as a `rnncap.model.CaptioningRNN`
(vanilla RNN or LSTM, with or without `image_every_step`) in PyTorch modules:
nn.Linear (image -> h0), nn.Embedding, nn.RNN(tanh) / nn.LSTM, nn.Linear (vocabulary),
cross-entropy with <NULL> targets ignored, summed and divided by N. It offers what the
benchmarks compare: `loss_and_grads` (autograd; gradients returned in rnncap's names and
layouts), `greedy` and `beam` decoding under `torch.inference_mode()`.

Weight layout: rnncap's gate blocks are i, f, o, g and PyTorch's i, f, g, o, so the
columns are permuted on the way in and the gradients on the way out. With
`image_every_step` the step input is [word vector, image features] and PyTorch's
input weight is rnncap's [Wx; W_img], which is exactly how rnncap's `loss` computes it.

This module does not know how rnncap computes (it only reads `model.params` and the
model's sizes), and it does not time anything: bench_torch_peer.py does. torch is a
benchmark-only dependency, passed in so that importing this module needs only NumPy.
"""

from __future__ import annotations

import numpy as np

SIZES = dict(N=100, T=16, V=1004, W=256, H=512, D=512)  # CS231n's full size
NULL, START, END = 0, 1, 2


def make_rnncap(cell, seed=0, image_every_step=False, sizes=SIZES):
    """A float32 CaptioningRNN with V words (<NULL>, <START>, <END>, <UNK>, w4, w5, ...)."""
    from rnncap.model import CaptioningRNN

    vocab = {"<NULL>": NULL, "<START>": START, "<END>": END, "<UNK>": 3}
    vocab.update({f"w{i}": i for i in range(4, sizes["V"])})
    return CaptioningRNN(vocab, input_dim=sizes["D"], wordvec_dim=sizes["W"],
                         hidden_dim=sizes["H"], cell_type=cell, dtype=np.float32, seed=seed,
                         image_every_step=image_every_step)


def make_batch(rng, N, T, V, D):
    """Features ~ N(0, 1) (N, D) and captions (N, T + 1): <START> w1..wL <END> <NULL>...,
    L uniform in [5, T - 1], so about a third of the T target positions are padding."""
    features = rng.standard_normal((N, D)).astype(np.float32)
    captions = np.full((N, T + 1), NULL, dtype=np.int64)
    captions[:, 0] = START
    for n, L in enumerate(rng.integers(5, T, size=N)):
        captions[n, 1:L + 1] = rng.integers(4, V, size=L)
        captions[n, L + 1] = END
    return features, captions


def gate_perm(cell, H):
    """Column order taking rnncap's gate blocks (i, f, o, g) to PyTorch's (i, f, g, o);
    it swaps two blocks, so it is its own inverse."""
    if cell == "rnn":
        return np.arange(H)
    return np.arange(4 * H).reshape(4, H)[[0, 1, 3, 2]].reshape(-1)


class TorchPeer:
    """The model in PyTorch; every method takes and returns NumPy arrays."""

    def __init__(self, torch, model):
        nn, p = torch.nn, model.params
        self.torch, self.cell, self.every = torch, model.cell_type, model.image_every_step
        D, W, H, V = model.input_dim, model.wordvec_dim, model.hidden_dim, len(model.word_to_idx)
        self.W, self.V = W, V
        self.perm = gate_perm(self.cell, H)
        self.proj, self.embed, self.vocab = nn.Linear(D, H), nn.Embedding(V, W), nn.Linear(H, V)
        self.rnn = nn.LSTM(W + D * self.every, H, batch_first=True) if self.cell == "lstm" else \
            nn.RNN(W + D * self.every, H, nonlinearity="tanh", batch_first=True)
        Wx = np.concatenate([p["Wx"], p["W_img"]]) if self.every else p["Wx"]  # (W [+ D], H')
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
        with torch.no_grad():
            self.proj.weight.copy_(t(p["W_proj"].T))
            self.proj.bias.copy_(t(p["b_proj"]))
            self.embed.weight.copy_(t(p["W_embed"]))
            self.rnn.weight_ih_l0.copy_(t(Wx[:, self.perm].T))
            self.rnn.weight_hh_l0.copy_(t(p["Wh"][:, self.perm].T))
            self.rnn.bias_ih_l0.copy_(t(p["b"][self.perm]))
            self.rnn.bias_hh_l0.zero_()  # rnncap has one bias; PyTorch adds both
            self.vocab.weight.copy_(t(p["W_vocab"].T))
            self.vocab.bias.copy_(t(p["b_vocab"]))
        self.modules = (self.proj, self.embed, self.rnn, self.vocab)

    def _h0(self, features):
        h0 = self.proj(features)[None]  # (1, N, H)
        return (h0, self.torch.zeros_like(h0)) if self.cell == "lstm" else h0

    def _inputs(self, tokens, features):
        x = self.embed(tokens)  # (N, T, W)
        if self.every:  # the image at every step: (N, T, W + D)
            x = self.torch.cat([x, features[:, None].expand(-1, x.shape[1], -1)], dim=2)
        return x

    def loss_and_grads(self, features, captions):
        """(loss, grads) as rnncap's `CaptioningRNN.loss` returns them."""
        torch = self.torch
        f, c = torch.from_numpy(features), torch.from_numpy(np.asarray(captions, np.int64))
        for m in self.modules:
            m.zero_grad(set_to_none=True)
        h, _ = self.rnn(self._inputs(c[:, :-1], f), self._h0(f))  # (N, T, H)
        scores = self.vocab(h)  # (N, T, V)
        loss = torch.nn.functional.cross_entropy(
            scores.reshape(-1, self.V), c[:, 1:].reshape(-1), ignore_index=NULL,
            reduction="sum") / c.shape[0]
        loss.backward()
        g = lambda prm: prm.grad.numpy()  # noqa: E731
        dWx = g(self.rnn.weight_ih_l0).T[:, self.perm]  # (W [+ D], H')
        grads = {"W_embed": g(self.embed.weight), "W_proj": g(self.proj.weight).T,
                 "b_proj": g(self.proj.bias), "Wx": dWx[:self.W],
                 "Wh": g(self.rnn.weight_hh_l0).T[:, self.perm],
                 "b": g(self.rnn.bias_ih_l0)[self.perm],
                 "W_vocab": g(self.vocab.weight).T, "b_vocab": g(self.vocab.bias)}
        if self.every:
            grads["W_img"] = dWx[self.W:]
        return loss.item(), grads

    def _step(self, tokens, state, features):
        h, state = self.rnn(self._inputs(tokens[:, None], features), state)
        return self.vocab(h[:, 0]), state  # (rows, V) scores

    def greedy(self, features, steps=16):
        """(N, steps) token ids: argmax at every step, <NULL> after <END>."""
        torch = self.torch
        with torch.inference_mode():
            f = torch.from_numpy(features)
            N = f.shape[0]
            state, tokens = self._h0(f), torch.full((N,), START, dtype=torch.long)
            out = torch.full((N, steps), NULL, dtype=torch.long)
            done = torch.zeros(N, dtype=torch.bool)
            for t in range(steps):
                scores, state = self._step(tokens, state, f)
                tokens = scores.argmax(dim=1)
                out[:, t] = torch.where(done, NULL, tokens)
                done |= tokens == END
                if bool(done.all()):
                    break
        return out.numpy()

    def beam(self, features, k=5, steps=16):
        """(N, steps) best caption of a plain batched beam search: N*k rows per step,
        top-k over k*V log-probabilities per image; a finished beam is extended only by
        <NULL> at log-probability 0, so it keeps its score (no length penalty)."""
        torch, V = self.torch, self.V
        with torch.inference_mode():
            f = torch.from_numpy(features)
            N = f.shape[0]
            fk = f.repeat_interleave(k, dim=0)  # (N*k, D)
            state = self._h0(fk)
            beam_lp = torch.full((N, k), float("-inf"))
            beam_lp[:, 0] = 0.0  # all beams start equal: keep one
            finished = torch.zeros(N, k, dtype=torch.bool)
            seqs = torch.full((N, k, steps), NULL, dtype=torch.long)
            tokens = torch.full((N * k,), START, dtype=torch.long)
            base = (torch.arange(N) * k)[:, None]
            for t in range(steps):
                scores, state = self._step(tokens, state, fk)
                logp = torch.log_softmax(scores, dim=1)  # (N*k, V)
                fin = finished.reshape(-1)
                logp[fin] = float("-inf")
                logp[fin, NULL] = 0.0
                beam_lp, idx = (beam_lp[:, :, None] + logp.reshape(N, k, V)).reshape(N, k * V).topk(k, dim=1)
                src, tok = idx // V, idx % V  # (N, k) each
                seqs = seqs.gather(1, src[:, :, None].expand(N, k, steps)).clone()
                seqs[:, :, t] = tok
                finished = finished.gather(1, src) | (tok == END)
                rows = (base + src).reshape(-1)
                state = tuple(a[:, rows] for a in state) if self.cell == "lstm" else state[:, rows]
                tokens = tok.reshape(-1)
                if bool(finished.all()):
                    break
        return seqs[:, 0].numpy()


def rel_error(a, b):
    """Largest absolute difference over the largest magnitude of either array."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(1e-30, np.max(np.abs(a)), np.max(np.abs(b))))
