"""The twin experiment: the demo model trained by rnncap and by PyTorch from the same start.

Issue 12 reported that a PyTorch model of the demo's shape trained to better captions than rnncap.
Either rnncap's maths differs from PyTorch's (a bug), or the PyTorch prototype's *recipe* differed
(its initialisation, loss normalisation, second LSTM bias). This script separates the two.

Both trainers start from the *same* weights (drawn by `CaptioningRNN`, copied into the torch
module) and see the *same* minibatches (the solver's own generator: `default_rng(seed)`,
`integers(0, M, size=batch)`), with the same Adam, clipping and per-epoch decay. The torch twin
is the demo model written with `torch.nn.LSTM`: the image enters every step as extra LSTM input
columns ([word vector; image features], so weight_ih = [Wx; W_img] with PyTorch's gate order
i, f, g, o), h0 = features W_proj + b_proj, c0 = 0.

Variants (`--variant`), each changing one thing on the torch side only:
  same        identical recipe: CS231n's initialisation, loss summed over time / N, b_hh frozen at 0
  mean        the loss averaged over tokens (PyTorch's CrossEntropyLoss default) instead of / N
  two-biases  b_hh trainable too (as nn.LSTM has it): Adam then moves the bias twice as fast
  torch-init  PyTorch's own initialisation (nn.Embedding N(0,1), U(+-1/sqrt(fan)) elsewhere),
              copied into rnncap too, so both sides still start equal
The `same` variant should give the same loss at every iteration up to float rounding (which
grows slowly, as training is chaotic); printing both curves side by side shows it.

With --val, after training the torch weights are copied back into a `CaptioningRNN` and its
greedy captions for the first 200 val images are checked by the truth check (the same scorer for
both sides).

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/studies/torch_twin.py --variant same \
        --iterations 400 --cache /tmp/truth/cache

torch is needed here only (`pip install torch==2.13.0`); this script is not a test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from rnncap import config as cfg
from rnncap.data import load_data
from rnncap.evaluate import DecodeOptions, decode_features, split_images
from rnncap.data.truth import caption_is_true
from rnncap.model import CaptioningRNN
from rnncap.solver import CaptioningSolver

OUT = Path(__file__).parent / "out" / "truth"
VARIANTS = ("same", "mean", "two-biases", "torch-init")


def to_torch_gates(a):
    """rnncap's packed gate order i, f, o, g (last axis) -> PyTorch's i, f, g, o."""
    i, f, o, g = np.split(a, 4, axis=-1)
    return np.concatenate([i, f, g, o], axis=-1)


def from_torch_gates(a):
    i, f, g, o = np.split(a, 4, axis=-1)
    return np.concatenate([i, f, o, g], axis=-1)


class Twin(torch.nn.Module):
    """The demo model in PyTorch, its weights taken from a CaptioningRNN's params."""

    def __init__(self, p, dtype, train_b_hh):
        super().__init__()
        t = lambda a: torch.nn.Parameter(torch.tensor(np.asarray(a), dtype=dtype))  # noqa: E731
        W, G = p["Wx"].shape
        H, D = p["Wh"].shape[0], p["W_proj"].shape[0]
        self.embed = torch.nn.Embedding(p["W_embed"].shape[0], W, dtype=dtype)
        self.embed.weight = t(p["W_embed"])
        self.proj = torch.nn.Linear(D, H, dtype=dtype)
        self.proj.weight, self.proj.bias = t(p["W_proj"].T), t(p["b_proj"])
        self.lstm = torch.nn.LSTM(W + D, H, batch_first=True, dtype=dtype)
        self.lstm.weight_ih_l0 = t(to_torch_gates(np.concatenate([p["Wx"], p["W_img"]])).T)
        self.lstm.weight_hh_l0 = t(to_torch_gates(p["Wh"]).T)
        self.lstm.bias_ih_l0 = t(to_torch_gates(p["b"]))
        self.lstm.bias_hh_l0 = t(np.zeros(G))
        self.lstm.bias_hh_l0.requires_grad_(train_b_hh)
        self.vocab = torch.nn.Linear(H, p["W_vocab"].shape[1], dtype=dtype)
        self.vocab.weight, self.vocab.bias = t(p["W_vocab"].T), t(p["b_vocab"])

    def forward(self, feats, words):
        x = self.embed(words)  # (N, T, W)
        img = feats[:, None, :].expand(-1, words.shape[1], -1)  # (N, T, D)
        h0 = self.proj(feats)[None]  # (1, N, H)
        h, _ = self.lstm(torch.cat([x, img], dim=2), (h0, torch.zeros_like(h0)))
        return self.vocab(h)  # (N, T, V)

    def to_rnncap(self):
        """The weights as CaptioningRNN params (the two LSTM biases summed)."""
        g = lambda a: a.detach().cpu().numpy()  # noqa: E731
        wih = from_torch_gates(g(self.lstm.weight_ih_l0).T)
        W = self.embed.weight.shape[1]
        return {"W_embed": g(self.embed.weight), "W_proj": g(self.proj.weight).T,
                "b_proj": g(self.proj.bias), "Wx": wih[:W], "W_img": wih[W:],
                "Wh": from_torch_gates(g(self.lstm.weight_hh_l0).T),
                "b": from_torch_gates(g(self.lstm.bias_ih_l0) + g(self.lstm.bias_hh_l0)),
                "W_vocab": g(self.vocab.weight).T, "b_vocab": g(self.vocab.bias)}


def val_truth(model, data, limit=200):
    images = split_images(data, "val", limit)
    opt = DecodeOptions("greedy", max_length=data["train_captions"].shape[1] - 1)
    caps = data["vocab"].decode_clean(decode_features(model, data["val_features"][images], opt))
    return float(np.mean([caption_is_true(c, data["val_truth"][i]) for c, i in zip(caps, images)]))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variant", choices=VARIANTS, default="same")
    p.add_argument("--iterations", type=int, default=400)
    p.add_argument("--cache", default="/tmp/truth/cache")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--side", choices=("both", "torch", "rnncap"), default="both")
    p.add_argument("--val", action="store_true", help="val truth (200 images) after training")
    a = p.parse_args()
    torch.set_num_threads(1)

    # The recipe of the PyTorch prototype: the demo's model and CS231n-style training
    # (x0.8 per epoch); pinned here, not read from DEMO, which has moved on since.
    D = cfg.with_overrides(cfg.DEMO, {
        "data": {"shapes_train_images": None},
        "train": {"learning_rate": 4e-3, "lr_decay": 0.8, "lr_schedule": "step", "batch_size": 64,
                  "grad_clip": 5.0, "seed": 0}})
    data = load_data(str(Path(a.cache) / "shapes"), "shapes")
    init = "pytorch" if a.variant == "torch-init" else "cs231n"
    model = CaptioningRNN(data["word_to_idx"], input_dim=data["train_features"].shape[1],
                          wordvec_dim=D.model.wordvec_dim, hidden_dim=D.model.hidden_dim,
                          cell_type="lstm", dtype=a.dtype, seed=D.train.seed,
                          image_every_step=True, init=init)
    start = {k: v.copy() for k, v in model.params.items()}
    tdtype = torch.float32 if a.dtype == "float32" else torch.float64
    twin = Twin(start, tdtype, train_b_hh=a.variant == "two-biases")
    caps, idxs, feats = data["train_captions"], data["train_image_idxs"], data["train_features"]
    per_epoch = caps.shape[0] // D.train.batch_size
    null = data["word_to_idx"]["<NULL>"]
    record = {"variant": a.variant, "dtype": a.dtype, "iterations": a.iterations}

    if a.side in ("both", "rnncap"):
        solver = CaptioningSolver(model, data, update_rule="adam",
                                  optim_config={"learning_rate": D.train.learning_rate},
                                  lr_decay=D.train.lr_decay, batch_size=D.train.batch_size,
                                  num_epochs=1, seed=D.train.seed, grad_clip=D.train.grad_clip,
                                  verbose=False, loss_fn=model.fast_loss)  # the trainer's loss
        solver.num_iterations = a.iterations
        c0 = time.process_time()
        solver.train()
        record["rnncap_cpu_s"] = time.process_time() - c0
        record["rnncap_loss"] = solver.loss_history
        if a.val:
            record["rnncap_val_truth"] = val_truth(model, data)

    if a.side in ("both", "torch"):
        params = [q for q in twin.parameters() if q.requires_grad]
        opt = torch.optim.Adam(params, lr=D.train.learning_rate, betas=(0.9, 0.999), eps=1e-8)
        rng = np.random.default_rng(D.train.seed)
        losses = []
        c0 = time.process_time()
        for t in range(a.iterations):
            idx = rng.integers(0, caps.shape[0], size=D.train.batch_size)
            c = torch.as_tensor(caps[idx].astype(np.int64))
            f = torch.as_tensor(feats[idxs[idx]]).to(tdtype)
            scores = twin(f, c[:, :-1])
            target = c[:, 1:]
            nll = torch.nn.functional.cross_entropy(scores.reshape(-1, scores.shape[-1]),
                                                    target.reshape(-1), reduction="none")
            mask = (target.reshape(-1) != null).to(tdtype)
            total = (nll * mask).sum()
            loss = total / (mask.sum() if a.variant == "mean" else c.shape[0])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, D.train.grad_clip)
            opt.step()
            losses.append(float(total.detach()) / c.shape[0])  # always reported as sum / N, comparable
            if (t + 1) % per_epoch == 0:
                for group in opt.param_groups:
                    group["lr"] *= D.train.lr_decay
        record["torch_cpu_s"] = time.process_time() - c0
        record["torch_loss"] = losses
        if a.val:
            back = CaptioningRNN(data["word_to_idx"], input_dim=feats.shape[1],
                                 wordvec_dim=D.model.wordvec_dim, hidden_dim=D.model.hidden_dim,
                                 cell_type="lstm", dtype=a.dtype, image_every_step=True)
            back.params = {k: v.astype(a.dtype) for k, v in twin.to_rnncap().items()}
            record["torch_val_truth"] = val_truth(back, data)

    if a.side == "both":
        r, t = np.array(record["rnncap_loss"]), np.array(record["torch_loss"])
        record["abs_diff_max_first_10"] = float(np.abs(r[:10] - t[:10]).max())
        for lo, hi in ((0, 100), (100, 200), (200, 400), (400, 800), (0, a.iterations)):
            if hi <= a.iterations:
                record[f"mean_rnncap_{lo}_{hi}"] = float(r[lo:hi].mean())
                record[f"mean_torch_{lo}_{hi}"] = float(t[lo:hi].mean())
        print("iter  rnncap     torch      diff")
        for k in list(range(0, 10)) + list(range(49, a.iterations, 50)):
            print(f"{k + 1:4d}  {r[k]:.6f}  {t[k]:.6f}  {t[k] - r[k]:+.2e}")
    print(json.dumps({k: v for k, v in record.items() if not k.endswith("_loss")}, indent=1))
    OUT.mkdir(parents=True, exist_ok=True)
    name = f"twin-{a.variant}-{a.dtype}-{a.side}-{a.iterations}.json"
    (OUT / name).write_text(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
