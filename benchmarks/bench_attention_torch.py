"""rnncap's attention captioner against the same model in PyTorch (CPU): training step and greedy.

The model is AttentionCaptioner at the size the shapes study trains (N=64 captions of up to 15
words, so T=16 inputs, L=9 grid cells of D=271, W=128, H=256, A=128, V=52, float32); `--size
large` uses an EfficientNet-like grid instead (L=49, D=1280, W=256, H=512, A=512, V=1004).

* train: one training step, loss and every gradient, no optimizer update. rnncap:
  `AttentionCaptioner.loss`. PyTorch: the same equations written with torch tensors
  (embedding lookup, the attention, beta, an LSTM step on [x, beta context], the vocabulary
  projection, cross-entropy ignoring <NULL> targets, summed and divided by N), autograd
  `loss.backward()` with every `.grad` set to None first. Both run the batch's full T steps.
* greedy: 1,000 images decoded greedily for 16 steps, in batches of 500. rnncap:
  `evaluate.decode_features` (what `rnncap evaluate` runs); PyTorch: the same step in
  `torch.inference_mode()`, argmax of the scores, rows dropped once they emit <END>.

Both hold the SAME weights (PyTorch's are copies of rnncap's), and before timing the script
checks that they agree: the loss, every gradient (largest relative error, float32), and the
greedy captions (share of identical rows); a disagreement is printed, not hidden. Turns
alternate (rnncap, torch, rnncap, ...) and medians of `--reps` timed calls are reported, each
after one untimed warm-up call, because the machine is shared. Time is CPU time of the process
(`time.process_time`) divided by the thread count when it is above 1, and wall time; both are
printed.

Threads: `--threads N` gives PyTorch N intra-op threads (torch.set_num_threads) and rnncap
`rnncap.parallel.set_threads(N)` (N row groups / image batches on N Python threads with one
BLAS thread each), the way the CLI's --threads does.

    .venv/bin/pip install torch==2.13.0          # benchmark-only; local CPU wheel
    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_attention_torch.py --threads 1
    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_attention_torch.py --threads 2

This script does not know how rnncap computes anything: it calls the public model and
decoding functions only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SIZES = {"shapes": dict(N=64, T=16, L=9, D=271, W=128, H=256, A=128, V=52),
         "large": dict(N=64, T=16, L=49, D=1280, W=256, H=512, A=512, V=1004)}
NULL, START, END = 0, 1, 2


def make_model(s, seed=0):
    from rnncap.attention_model import AttentionCaptioner

    words = {"<NULL>": NULL, "<START>": START, "<END>": END}
    words.update({f"w{i}": i for i in range(3, s["V"])})
    m = AttentionCaptioner(words, input_dim=s["D"], wordvec_dim=s["W"], hidden_dim=s["H"],
                           attention_dim=s["A"], seed=seed)
    rng = np.random.default_rng(seed + 1)
    for k, v in m.params.items():  # non-zero biases: a generic point
        if v.ndim == 1:
            m.params[k] = (0.1 * rng.standard_normal(v.shape)).astype(np.float32)
    return m


def make_batch(s, seed=2):
    rng = np.random.default_rng(seed)
    feats = rng.standard_normal((s["N"], s["L"], s["D"])).astype(np.float32)
    caps = rng.integers(3, s["V"], size=(s["N"], s["T"] + 1))
    caps[:, 0] = START
    lengths = rng.integers(5, s["T"], size=s["N"])
    lengths[0] = s["T"] - 1  # the batch's longest caption uses every step
    for n, l in enumerate(lengths):
        caps[n, l + 1] = END
        caps[n, l + 2:] = NULL
    return feats, caps


class TorchAttention:
    """The same equations in PyTorch, on copies of an AttentionCaptioner's weights."""

    def __init__(self, model):
        import torch

        self.torch = torch
        self.p = {k: torch.tensor(v, requires_grad=True) for k, v in model.params.items()}
        self.H, self.A = model.hidden_dim, model.attention_dim

    def _init(self, feats):
        p, t = self.p, self.torch
        mean = feats.mean(dim=1)
        h = t.tanh(mean @ p["W_h0"] + p["b_h0"])
        c = t.tanh(mean @ p["W_c0"] + p["b_c0"])
        proj = feats @ p["W_a"] + p["b_a"]
        fz = feats @ p["Wz"]
        return h, c, proj, fz

    def _step(self, x_pre, h, c, proj, fz):
        p, t, H, A = self.p, self.torch, self.H, self.A
        u = t.tanh(proj + (h @ p["W_h"])[:, None, :])
        alpha = t.softmax(u @ p["w_att"], dim=1)
        zc = t.bmm(alpha[:, None, :], fz)[:, 0]
        beta = t.sigmoid(h @ p["W_beta"] + p["b_beta"])
        a = x_pre + h @ p["Wh"] + beta * zc
        i, f, o = t.sigmoid(a[:, :H]), t.sigmoid(a[:, H:2 * H]), t.sigmoid(a[:, 2 * H:3 * H])
        g = t.tanh(a[:, 3 * H:])
        c = f * c + i * g
        h = o * t.tanh(c)
        return h, c

    def loss(self, feats, caps):
        t, p = self.torch, self.p
        for v in p.values():
            v.grad = None
        feats = t.from_numpy(feats)
        caps = t.from_numpy(caps)
        N, T = caps.shape[0], caps.shape[1] - 1
        h, c, proj, fz = self._init(feats)
        x_pre = p["W_embed"][caps[:, :-1]] @ p["Wx"] + p["b"]  # (N, T, 4H)
        hs = []
        for step in range(T):
            h, c = self._step(x_pre[:, step], h, c, proj, fz)
            hs.append(h)
        scores = t.stack(hs, dim=1) @ p["W_vocab"] + p["b_vocab"]
        loss = t.nn.functional.cross_entropy(scores.reshape(N * T, -1), caps[:, 1:].reshape(-1),
                                             ignore_index=NULL, reduction="sum") / N
        loss.backward()
        return float(loss.detach()), {k: v.grad.numpy() for k, v in p.items()}

    def greedy(self, feats, steps, batch=500):
        t, p = self.torch, self.p
        out = np.full((len(feats), steps), NULL, np.int32)
        with t.inference_mode():
            table = p["W_embed"] @ p["Wx"] + p["b"]
            for lo in range(0, len(feats), batch):
                f = t.from_numpy(feats[lo:lo + batch])
                h, c, proj, fz = self._init(f)
                rows = t.arange(f.shape[0]) + lo
                tokens = t.full((f.shape[0],), START, dtype=t.long)
                for s in range(steps):
                    h, c = self._step(table[tokens], h, c, proj, fz)
                    tokens = (h @ p["W_vocab"] + p["b_vocab"]).argmax(dim=1)
                    out[rows.numpy(), s] = tokens.numpy()
                    alive = tokens != END
                    if not bool(alive.any()):
                        break
                    h, c, proj, fz, tokens, rows = (a[alive] for a in (h, c, proj, fz, tokens, rows))
        return out


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def _rel_to_max(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(1e-30, np.abs(b).max()))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", choices=sorted(SIZES), default="shapes")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--decode-reps", type=int, default=3)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args(argv)

    import torch
    from threadpoolctl import threadpool_limits

    from rnncap import parallel
    from rnncap.evaluate import DecodeOptions, decode_features

    torch.set_num_threads(a.threads)
    threadpool_limits(1, user_api="blas")  # rnncap: one BLAS thread per Python thread
    parallel.set_threads(a.threads)
    s = SIZES[a.size]
    model = make_model(s)
    peer = TorchAttention(model)
    feats, caps = make_batch(s)
    images = np.random.default_rng(3).standard_normal((a.images, s["L"], s["D"])).astype(np.float32)

    # Agreement before timing.
    loss_np, g_np = model.loss(feats, caps)
    loss_t, g_t = peer.loss(feats, caps)
    agree = {"loss_rel": _rel(loss_np, loss_t),
             "grad_rel_to_max": max(_rel_to_max(g_np[k], g_t[k]) for k in g_np)}
    opts = DecodeOptions("greedy", max_length=16)
    tok_np = decode_features(model, images, opts)
    tok_t = peer.greedy(images, 16)
    agree["greedy_identical_rows"] = float(np.mean((tok_np == tok_t).all(axis=1)))
    print(f"agreement: loss rel {agree['loss_rel']:.1e}, gradients max|diff|/max|g| "
          f"{agree['grad_rel_to_max']:.1e}, greedy rows identical {agree['greedy_identical_rows']:.3f}")

    def timed(fn, reps):
        cpu, wall = [], []
        for _ in range(reps):
            fn()  # warm-up / switch
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall.append(time.perf_counter() - t0)
            cpu.append((time.process_time() - c0) / a.threads)
        return float(np.median(cpu)), float(np.median(wall))

    results = {"size": a.size, "sizes": s, "threads": a.threads, "agreement": agree,
               "torch": torch.__version__, "numpy": np.__version__, "loadavg": os.getloadavg()}
    items = {
        "train": (lambda: model.loss(feats, caps), lambda: peer.loss(feats, caps), a.reps),
        "greedy": (lambda: decode_features(model, images, opts), lambda: peer.greedy(images, 16),
                   a.decode_reps),
    }
    for name, (f_np, f_t, reps) in items.items():
        rn, pt = [], []
        for _ in range(reps):  # alternate turns
            rn.append(timed(f_np, 1))
            pt.append(timed(f_t, 1))
        r_cpu, r_wall = np.median([x[0] for x in rn]), np.median([x[1] for x in rn])
        t_cpu, t_wall = np.median([x[0] for x in pt]), np.median([x[1] for x in pt])
        results[name] = {"rnncap_cpu_s": r_cpu, "rnncap_wall_s": r_wall, "torch_cpu_s": t_cpu,
                         "torch_wall_s": t_wall, "torch_over_rnncap_cpu": t_cpu / r_cpu,
                         "torch_over_rnncap_wall": t_wall / r_wall}
        print(f"{name}: rnncap {r_cpu * 1e3:.1f} ms CPU ({r_wall * 1e3:.1f} wall), torch "
              f"{t_cpu * 1e3:.1f} ms CPU ({t_wall * 1e3:.1f} wall); torch/rnncap CPU "
              f"{t_cpu / r_cpu:.2f}, wall {t_wall / r_wall:.2f}", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
