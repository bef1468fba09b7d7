"""Two checkouts of rnncap side by side: training step and decoding speed, interleaved.

    .venv/bin/python benchmarks/bench_versions.py /path/to/tree_a /path/to/tree_b \
        [--rounds 7] [--threads 1] [--images 1000] [--items train,greedy,beam]

Each tree gets a worker process of its own that imports `rnncap` from that tree
(PYTHONPATH), so the two versions never share a process or a thread pool. The parent
alternates them item by item (the order flips every round), and every turn makes
`--calls` calls back to back of which only the last is timed (the first absorbs a
cold cache after the switch). The table gives medians of wall time and of the
worker's CPU time (all its threads) and the ratios a/b (> 1: tree b is faster); with
one thread, CPU time is the compute cost that busy neighbours change least. The machine is shared: compare the ratios of one run.

Items, at CS231n's full size (bench_step.py's batch: N = 100 captions of 17 tokens,
V = 1004, W = 256, H = 512, D = 512, float32), rnn and lstm:

* train: the loss the trainer runs, forward, loss and every gradient: where the tree has
  `CaptioningRNN.fast_loss`, through `rnncap.parallel.data_parallel` in `--threads` row
  groups, else `CaptioningRNN.loss` (whose threads are inside the model);
* greedy, beam: `rnncap.evaluate.decode_features` on `--images` images, 16 steps
  (what `rnncap caption` and `rnncap evaluate` run), beam size 5.

Both workers build the same model from the same seed and report a checksum of what
they computed (the loss; the token ids), printed beside the times: equal losses to
printing precision and equal captions say the two trees compute the same thing.
`--threads n` calls `rnncap.parallel.set_threads(n)` in both workers, with one BLAS
thread per Python thread.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

N, T, V, W, H, D = 100, 17, 1004, 256, 512, 512


def _worker(threads: int, images: int) -> None:
    """Serve timing requests on stdin/stdout with the rnncap found on PYTHONPATH."""
    import numpy as np

    import rnncap
    from rnncap.evaluate import DecodeOptions, decode_features
    from rnncap.model import CaptioningRNN
    from rnncap.parallel import set_threads

    from bench_step import make_batch  # this script's folder comes first on sys.path

    set_threads(threads)
    rng = np.random.default_rng(0)
    word_to_idx, features, captions = make_batch(rng)  # bench_step's batch
    image_features = rng.standard_normal((images, D)).astype(np.float32)
    models = {cell: CaptioningRNN(word_to_idx, input_dim=D, wordvec_dim=W, hidden_dim=H,
                                  cell_type=cell, dtype=np.float32, seed=0)
              for cell in ("rnn", "lstm")}
    print(json.dumps({"rnncap": os.path.dirname(os.path.dirname(rnncap.__file__))}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        model = models[req["cell"]]
        if req["item"] == "train" and hasattr(model, "fast_loss"):
            # what the trainer runs: the fast path, in `threads` row groups on threads
            from rnncap.parallel import data_parallel, split_rows

            groups = split_rows(model.row_costs(captions), threads)
            call = lambda: data_parallel(model.fast_loss, (features, captions), groups)[0]  # noqa: E731
        elif req["item"] == "train":  # a tree whose loss() is the trainer's (threads inside)
            call = lambda: model.loss(features, captions)[0]  # noqa: E731
        else:
            options = DecodeOptions(req["item"], beam_size=5, max_length=T - 1)
            call = lambda: decode_features(model, image_features, options)  # noqa: E731
        for _ in range(req["calls"] - 1):
            call()
        t0, c0 = time.perf_counter(), time.process_time()
        out = call()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        check = f"{out:.6f}" if req["item"] == "train" else str(int(np.sum(out * np.arange(out.shape[1]))))
        print(json.dumps({"s": seconds, "cpu": cpu, "check": check}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tree_a")
    ap.add_argument("tree_b")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--items", default="train,greedy,beam")
    ap.add_argument("--cells", default="rnn,lstm")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        _worker(args.threads, args.images)
        return

    workers = {}
    for name, tree in (("a", args.tree_a), ("b", args.tree_b)):
        env = dict(os.environ, PYTHONPATH=os.path.abspath(tree), OPENBLAS_NUM_THREADS="1",
                   OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        workers[name] = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "a", "b", "--worker", "--threads",
             str(args.threads), "--images", str(args.images)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=tree)
        print(f"{name}: rnncap from {json.loads(workers[name].stdout.readline())['rnncap']}")
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs, threads {args.threads}, "
          f"{args.rounds} rounds, {args.images} images")

    jobs = [(item, cell) for item in args.items.split(",") for cell in args.cells.split(",")]
    results = {(job, w): [] for job in jobs for w in workers}
    cpu = {(job, w): [] for job in jobs for w in workers}
    checks = {(job, w): set() for job in jobs for w in workers}
    for r in range(args.rounds):
        for job in jobs:
            for w in (("a", "b") if r % 2 == 0 else ("b", "a")):
                p = workers[w]
                p.stdin.write(json.dumps({"item": job[0], "cell": job[1], "calls": args.calls}) + "\n")
                p.stdin.flush()
                reply = json.loads(p.stdout.readline())
                results[job, w].append(reply["s"])
                cpu[job, w].append(reply["cpu"])
                checks[job, w].add(reply["check"])
    for p in workers.values():
        p.stdin.close()
        p.wait()
    print(f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'item':7} {'cell':5} {'wall a':>10} {'wall b':>10} {'a/b':>5} {'CPU a':>10} "
          f"{'CPU b':>10} {'a/b':>5}  same result")
    for job in jobs:
        unit, label = (1e3, "ms") if job[0] == "train" else (1, "s")
        row = f"{job[0]:7} {job[1]:5}"
        for times in (results, cpu):
            a, b = statistics.median(times[job, "a"]), statistics.median(times[job, "b"])
            row += f" {a * unit:7.2f} {label:2} {b * unit:7.2f} {label:2} {a / b:5.2f}"
        same = checks[job, "a"] == checks[job, "b"] and len(checks[job, "a"]) == 1
        print(row + ("  yes" if same else f"  no: {sorted(checks[job, 'a'])} {sorted(checks[job, 'b'])}"))


if __name__ == "__main__":
    main()
