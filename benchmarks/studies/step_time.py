"""CPU time of one training step, word level against character level (study 2's time budget).

A training step is exactly what the trainer's `CaptioningSolver._step` does: a minibatch of 64
captions, `model.fast_loss` (forward and backward through every time step), global-norm clipping
and an Adam update of every parameter.

Two ways to get the minibatches:
- `--data FOLDER` (default when given): the real shapes training captions at each level. Needed
  since rnncap trains on packed sequences: the padding after each caption is skipped, so a step's
  cost depends on the captions' real lengths, not only on T.
- no `--data`: random ids filling all T = 15 + 2 words (V = 52) or 80 + 2 characters (V = 28)
  columns: the cost of a padded step, where every column is computed (study 2's runs trained with
  one); an overestimate of the packed step.

Time is `time.process_time()` of this process with one BLAS thread: the machine is shared, so wall
time is noisy; CPU time is what the budget is matched on.

    OPENBLAS_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/studies/step_time.py \
        --data /tmp/demo/cache/shapes --out step_time.json

This script does not know the training CLI; it only times the model and the solver.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from rnncap.atomic import write_text as write_text_atomic
from rnncap.model import CaptioningRNN
from rnncap.solver import CaptioningSolver


def vocabulary(size: int) -> dict:
    """A word_to_idx of `size` entries with rnncap's special ids first."""
    words = ["<NULL>", "<START>", "<END>", "<UNK>"] + [f"w{i}" for i in range(size - 4)]
    return {w: i for i, w in enumerate(words)}


def synthetic_data(V: int, T: int, M: int, D: int, rng) -> dict:
    """M full-length random captions (no padding) over a V-token vocabulary, 100 images."""
    data = {"train_captions": rng.integers(4, V, size=(M, T)).astype(np.int32),
            "train_image_idxs": rng.integers(0, 100, size=M).astype(np.int32),
            "train_features": rng.standard_normal((100, D)).astype(np.float32),
            "word_to_idx": vocabulary(V)}
    data["train_captions"][:, 0] = 1
    data["train_captions"][:, -1] = 2
    return data


def time_steps(data: dict, *, steps: int, reps: int, cell: str, H: int, W: int, batch: int,
               seed: int = 0) -> dict:
    """Median CPU seconds per training step over `reps` runs of `steps` steps (after a warm-up)."""
    D = data["train_features"].shape[1]
    model = CaptioningRNN(data["word_to_idx"], input_dim=D, wordvec_dim=W, hidden_dim=H,
                          cell_type=cell, dtype=np.float32, seed=seed, image_every_step=True)

    def stop(solver):
        solver.stop_requested = solver.t >= steps

    per_step = []
    for r in range(reps + 1):
        solver = CaptioningSolver(model, data, update_rule="adam",
                                  optim_config={"learning_rate": 5e-3}, batch_size=batch,
                                  num_epochs=1, grad_clip=5.0, verbose=False, seed=r,
                                  iteration_callbacks=[stop], loss_fn=model.fast_loss)
        t0 = time.process_time()
        solver.train()
        dt = (time.process_time() - t0) / solver.t
        if r:  # the first run warms caches and allocators
            per_step.append(dt)
    params = {k: int(v.size) for k, v in model.params.items()}
    caps = data["train_captions"]
    tokens = (caps[:, 1:] != 0).sum(axis=1)  # targets per caption, <END> included
    return {"V": len(data["word_to_idx"]), "T": int(caps.shape[1]),
            "mean_targets_per_caption": float(tokens.mean()),
            "cpu_s_per_step": float(np.median(per_step)),
            "cpu_s_per_step_runs": [round(x, 5) for x in per_step],
            "params": params, "total_params": sum(params.values())}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", help="shapes cache folder: time on its real training captions")
    p.add_argument("--word-vocab", type=int, default=52)
    p.add_argument("--char-vocab", type=int, default=28)
    p.add_argument("--word-T", type=int, default=17, help="caption columns: 15 words + 2")
    p.add_argument("--char-T", type=int, default=82, help="caption columns: 80 characters + 2")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--cell", default="lstm")
    p.add_argument("--hidden-dim", type=int, default=256)
    p.add_argument("--wordvec-dim", type=int, default=128)
    p.add_argument("--input-dim", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", help="also write the results to this JSON file")
    a = p.parse_args()
    common = dict(steps=a.steps, reps=a.reps, cell=a.cell, H=a.hidden_dim, W=a.wordvec_dim,
                  batch=a.batch_size)
    if a.data:
        from rnncap.data import load_data

        word = time_steps(load_data(a.data, "shapes", level="word"), **common)
        char = time_steps(load_data(a.data, "shapes", level="char"), **common)
    else:
        rng = np.random.default_rng(0)
        M = a.batch_size * a.steps
        word = time_steps(synthetic_data(a.word_vocab, a.word_T, M, a.input_dim, rng), **common)
        char = time_steps(synthetic_data(a.char_vocab, a.char_T, M, a.input_dim, rng), **common)
    result = {"word": word, "char": char, "data": a.data or "synthetic full-length captions",
              "ratio_char_over_word": char["cpu_s_per_step"] / word["cpu_s_per_step"]}
    for name, r in (("word", word), ("char", char)):
        print(f"{name}: V={r['V']} T={r['T']}  {1e3 * r['cpu_s_per_step']:.1f} ms CPU per step "
              f"(runs {r['cpu_s_per_step_runs']})  params {r['total_params']:,}")
    print(f"char / word CPU per step: {result['ratio_char_over_word']:.2f}")
    if a.out:
        write_text_atomic(a.out, json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
