"""Train a model for a given CPU budget expressed in iterations (study 2's character-level run).

The CLI trains whole epochs; study 2 needs the character model stopped after the number of
iterations that costs the same CPU time as the word model's 3 epochs. `rnncap.run.train` has a
`stop_after` argument for that: the run ends as if interrupted after exactly that many iterations
and saves a checkpoint that `rnncap evaluate` reads like any other. Everything else (config,
checkpoint, metrics.jsonl) is the CLI's own code path.

The budget: iterations = word_iterations * word_cpu_per_step / char_cpu_per_step, with the per-step
CPU times measured by benchmarks/studies/step_time.py (its JSON output, --step-time).

    OPENBLAS_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/studies/train_budget.py \
        --out /tmp/studies/char --step-time /tmp/studies/step_time.json

This script does not know how to decode or score; `rnncap evaluate` does that afterwards.
"""

from __future__ import annotations

import argparse
import json
import time

from rnncap import run
from rnncap.config import RunConfig, from_dict


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--data", default="/tmp/demo/cache/shapes")
    p.add_argument("--level", default="char")
    p.add_argument("--cell", default="lstm")
    p.add_argument("--step-time", required=True, help="JSON written by step_time.py")
    p.add_argument("--word-iterations", type=int, default=3 * 781,
                   help="the word model's iterations: 3 epochs of 50,000 // 64 minibatches")
    a = p.parse_args()
    with open(a.step_time) as f:
        st = json.load(f)
    ratio = st["word"]["cpu_s_per_step"] / st[a.level]["cpu_s_per_step"]
    stop_after = round(a.word_iterations * ratio)
    print(f"budget: {a.word_iterations} word iterations x {ratio:.4f} = {stop_after} {a.level} iterations")
    config = from_dict(RunConfig, {
        "data": {"path": a.data, "format": "shapes", "level": a.level},
        "model": {"cell_type": a.cell, "hidden_dim": 256, "wordvec_dim": 128, "image_every_step": True},
        "train": {"learning_rate": 5e-3, "lr_decay": 0.8, "batch_size": 64, "num_epochs": 3,
                  "grad_clip": 5.0, "seed": 0},
    }, "train_budget.py")
    c0, w0 = time.process_time(), time.perf_counter()
    summary = run.train(config, a.out, progress=False, stop_after=stop_after)
    out = {"stop_after": stop_after, "iterations": summary["iterations"], "status": summary["status"],
           "timings": summary["timings"], "final_train_loss": summary["final_train_loss"],
           "process_cpu_s": time.process_time() - c0, "wall_s": time.perf_counter() - w0}
    print(json.dumps(out, indent=1))
    with open(f"{a.out}/budget.json", "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
