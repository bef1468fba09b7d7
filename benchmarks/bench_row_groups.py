"""What splitting a training batch into g row groups costs, measured on one core.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_row_groups.py [--rounds 7]

Data parallelism (rnncap.parallel.data_parallel) computes a batch's loss and gradients
as g row groups, each on its own thread, and sums them. With g cores the step takes
about as long as one group, so its speed-up is g * T_1 / T_g, where T_g is the CPU time
of computing all g groups one after another on ONE thread (every group's work, the
per-group overheads, and the weighting and summing of g gradient sets): T_1 / T_g is
the efficiency that splitting leaves. This script measures T_g for g = 1, 2, 4, 8, 16
with `data_parallel(..., workers=1)`, so it needs only one core and says what many
cores could do; what it cannot see is cores competing for memory bandwidth, so the
projection is an upper bound. rnncap.parallel.DEFAULT_MAX_THREADS is chosen from it
(docs/performance.md).

Sizes: CS231n's full model (batch 100, V = 1004, W = 256, H = 512, D = 512) and the
demo's (batch 64, V = 52, W = 128, H = 256, image at every step), rnn and lstm, float32,
captions of 5..15 words padded to 17 tokens. Groups are rotated every round and the
median CPU time of `--rounds` rounds is reported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from rnncap.model import CaptioningRNN
from rnncap.parallel import data_parallel, split_rows

SIZES = {"full": dict(N=100, V=1004, W=256, H=512, D=512, every=False),
         "demo": dict(N=64, V=52, W=128, H=256, D=512, every=True)}
GROUPS = (1, 2, 4, 8, 16)


def setup(size, cell, seed=0):
    s = SIZES[size]
    rng = np.random.default_rng(seed)
    words = ["<NULL>", "<START>", "<END>", "<UNK>"] + [f"w{i}" for i in range(s["V"] - 4)]
    model = CaptioningRNN({w: i for i, w in enumerate(words)}, input_dim=s["D"],
                          wordvec_dim=s["W"], hidden_dim=s["H"], cell_type=cell,
                          dtype=np.float32, seed=seed, image_every_step=s["every"])
    captions = np.zeros((s["N"], 17), dtype=np.int32)
    captions[:, 0] = 1
    for n in range(s["N"]):
        length = rng.integers(5, 16)
        captions[n, 1:length + 1] = rng.integers(4, s["V"], size=length)
        captions[n, length + 1] = 2
    features = rng.standard_normal((s["N"], s["D"])).astype(np.float32)
    return model, features, captions


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, CPU time of one "
          f"thread, median of {args.rounds}")
    print(f"{'size':5} {'cell':5} " + " ".join(f"{'T_' + str(g):>9}" for g in GROUPS)
          + "   efficiency T_1/T_g, g = " + ", ".join(map(str, GROUPS[1:])))
    for size in SIZES:
        for cell in ("rnn", "lstm"):
            model, features, captions = setup(size, cell)
            parts = {g: split_rows(model.row_costs(captions), g) for g in GROUPS}
            times = {g: [] for g in GROUPS}
            for r in range(args.rounds + 1):
                for g in GROUPS[r % len(GROUPS):] + GROUPS[:r % len(GROUPS)]:
                    c0 = time.process_time()
                    data_parallel(model.fast_loss, (features, captions), parts[g], workers=1)
                    if r:  # the first round warms up
                        times[g].append(time.process_time() - c0)
            med = {g: statistics.median(times[g]) for g in GROUPS}
            print(f"{size:5} {cell:5} " + " ".join(f"{med[g] * 1e3:6.1f} ms" for g in GROUPS)
                  + "   " + ", ".join(f"{med[1] / med[g]:.2f}" for g in GROUPS[1:]))


if __name__ == "__main__":
    main()
