"""Time of one training step (loss and gradients) of CaptioningRNN, rnn and lstm.

The shape is CS231n's COCO setting: batch N=100, captions of 17 tokens (16 inputs,
16 targets), vocabulary V=1004, word vectors W=256, hidden H=512, image features
D=512, float32. One "step" is one `model.fast_loss(features, captions)` call (the loss the
trainer runs): forward,
softmax loss and every gradient, excluding the optimizer update. Each configuration is
warmed up, then timed `--repeats` times with time.perf_counter; the median (and the
min and max) is printed. Captions have random lengths with <NULL> padding, as real
ones do; ids follow a Zipf law.

Run:  .venv/bin/python benchmarks/bench_step.py [--repeats 20] [--image-every-step]
Noise: other processes on the machine slow some runs; compare medians on a quiet box.
The process CPU time is printed too: with OPENBLAS_NUM_THREADS=1 it is the single-core
compute cost, which busy neighbours barely change.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

from rnncap.model import CaptioningRNN

N, T, V, W, H, D = 100, 17, 1004, 256, 512, 512


def make_batch(rng):
    words = ["<NULL>", "<START>", "<END>", "<UNK>"] + [f"w{i}" for i in range(V - 4)]
    word_to_idx = {w: i for i, w in enumerate(words)}
    captions = np.zeros((N, T), dtype=np.int32)
    captions[:, 0] = 1
    for n in range(N):
        length = rng.integers(8, T - 1)
        captions[n, 1 : length + 1] = np.minimum(rng.zipf(1.3, size=length) + 3, V - 1)
        captions[n, length + 1] = 2
    features = rng.standard_normal((N, D)).astype(np.float32)
    return word_to_idx, features, captions


def time_step(model, features, captions, warmup, repeats):
    for _ in range(warmup):
        model.fast_loss(features, captions)
    times, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        loss, grads = model.fast_loss(features, captions)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    assert all(g.dtype == np.float32 for g in grads.values())
    return times, cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--image-every-step", action="store_true")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    word_to_idx, features, captions = make_batch(rng)
    print(f"numpy {np.__version__}, python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"N={N} T={T} V={V} W={W} H={H} D={D} float32, image_every_step={args.image_every_step}, "
          f"{args.repeats} timed runs after {args.warmup} warm-up")
    for cell in ("rnn", "lstm"):
        model = CaptioningRNN(word_to_idx, input_dim=D, wordvec_dim=W, hidden_dim=H, cell_type=cell,
                              dtype=np.float32, seed=0, image_every_step=args.image_every_step)
        times, cpu = time_step(model, features, captions, args.warmup, args.repeats)
        print(f"{cell:4s}  wall: median {statistics.median(times) * 1e3:7.1f} ms   "
              f"min {min(times) * 1e3:7.1f} ms   max {max(times) * 1e3:7.1f} ms   "
              f"| CPU time (all threads): median {statistics.median(cpu) * 1e3:7.1f} ms")


if __name__ == "__main__":
    main()
