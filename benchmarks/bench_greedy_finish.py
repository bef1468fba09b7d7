"""Greedy decoding of a trained-like model: finished rows leaving the batch, measured.

`rnncap.decode.greedy` drops a row from the batch once it has emitted <END>. On the
untrained weights of bench_torch_peer.py that changes nothing (they rarely emit
<END>), so this script first trains CaptioningRNN at CS231n's full size (W=256,
H=512, D=512, V=1004, float32) for a few hundred Adam iterations on synthetic
captions: <START>, 5..15 words drawn from a Zipf-like distribution (so there is
something to learn), <END>. Such a model ends its captions the way a trained one
does: well before max_length, at lengths that vary by image.

Then it times, interleaved (A B A B, medians), greedy decoding of 1,000 images for
16 steps over the same `model.decoder_step()`:

* rnncap: `rnncap.decode.greedy` (finished rows leave the batch);
* full batch: the same loop with every row stepped until all have finished (what
  greedy did before), written out here as the reference.

It checks that both return identical captions and prints the caption lengths.

Usage (from the repository root):

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_greedy_finish.py
    OPENBLAS_NUM_THREADS=2 .venv/bin/python benchmarks/bench_greedy_finish.py --cells lstm

This script knows only rnncap's public model, optimizer and decoder.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The full-size model and its sizes, as the PyTorch comparison builds them.
from benchmarks.torch_peer import END, NULL, SIZES, START  # noqa: E402
from benchmarks.torch_peer import make_rnncap as make_model  # noqa: E402


def synthetic_batch(rng, N, T, V, D):
    """Features ~ N(0, 1); captions <START> w.. <END> <NULL>.., 5..15 Zipf-like words."""
    features = rng.standard_normal((N, D)).astype(np.float32)
    captions = np.full((N, T + 1), NULL, dtype=np.int64)
    captions[:, 0] = START
    p = 1.0 / np.arange(1, V - 4 + 1) ** 1.1
    p /= p.sum()
    for n, L in enumerate(rng.integers(5, T, size=N)):
        captions[n, 1:L + 1] = 4 + rng.choice(V - 4, size=L, p=p)
        captions[n, L + 1] = END
    return features, captions


def train(model, iters, rng, lr=5e-3):
    from rnncap.optim import adam

    s = SIZES
    configs = {k: {"learning_rate": lr} for k in model.params}
    for _ in range(iters):
        features, captions = synthetic_batch(rng, s["N"], s["T"], s["V"], s["D"])
        loss, grads = model.fast_loss(features, captions)
        for k, w in model.params.items():
            model.params[k], configs[k] = adam(w, grads[k], configs[k])
    return float(loss)


def greedy_full_batch(step, state, start_id, end_id, max_length, null_id=0):
    """The reference: every row is stepped until all rows have finished."""
    n = state[0].shape[0]
    out = np.full((n, max_length), null_id, dtype=np.int32)
    tokens = np.full(n, start_id, dtype=np.int64)
    done = np.zeros(n, dtype=bool)
    for t in range(max_length):
        logprobs, state = step(tokens, state)
        tokens = np.argmax(logprobs, axis=1)
        out[:, t] = np.where(done, null_id, tokens)
        done |= tokens == end_id
        if done.all():
            break
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", nargs="+", default=["rnn", "lstm"], choices=["rnn", "lstm"])
    p.add_argument("--iters", type=int, default=200, help="Adam iterations of training")
    p.add_argument("--reps", type=int, default=9)
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--steps", type=int, default=16)
    args = p.parse_args(argv)
    from rnncap.decode import greedy

    print(f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}, "
          f"load average {os.getloadavg()}")
    for cell in args.cells:
        rng = np.random.default_rng(0)
        model = make_model(cell)
        t0 = time.perf_counter()
        loss = train(model, args.iters, rng)
        print(f"{cell}: trained {args.iters} iterations in {time.perf_counter() - t0:.0f} s, "
              f"last loss {loss:.2f}")
        feats = rng.standard_normal((args.images, SIZES["D"])).astype(np.float32)
        fns = {
            "rnncap": lambda: greedy(model.decoder_step(), model.init_state(feats), START, END,
                                     args.steps, null_id=NULL),
            "full_batch": lambda: greedy_full_batch(model.decoder_step(), model.init_state(feats),
                                                    START, END, args.steps, null_id=NULL),
        }
        ours, ref = fns["rnncap"](), fns["full_batch"]()
        ended = np.any(ours == END, axis=1)
        lengths = np.where(ended, np.argmax(ours == END, axis=1) + 1, args.steps)
        times = {k: [] for k in fns}
        names = list(fns)
        for r in range(args.reps):
            for k in names if r % 2 == 0 else names[::-1]:
                t0 = time.perf_counter()
                fns[k]()
                times[k].append(time.perf_counter() - t0)
        med = {k: float(np.median(v)) for k, v in times.items()}
        print(f"{cell}: identical captions {np.mean(np.all(ours == ref, axis=1)):.1%}; "
              f"caption length (tokens incl. <END>) mean {lengths.mean():.1f}, "
              f"quartiles {np.percentile(lengths, [25, 50, 75]).tolist()}, "
              f"{ended.mean():.0%} end before {args.steps}")
        print(f"{cell}: greedy {args.images} images: rnncap {args.images / med['rnncap']:.0f}/s, "
              f"full batch {args.images / med['full_batch']:.0f}/s "
              f"({med['full_batch'] / med['rnncap']:.2f}x), medians of {args.reps}")
    print(f"load average end {os.getloadavg()}")


if __name__ == "__main__":
    main()
