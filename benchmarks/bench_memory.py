"""Peak resident memory of full-size CS231n training, measured in a fresh subprocess.

The child process loads a CS231n-layout `coco_captioning` folder with
`rnncap.data.cs231n.load_coco_data` (full size: 400,135 training captions of 17 tokens,
82,783 x 512 float32 training features, plus the validation split), builds
`CaptioningRNN` at CS231n's full size (W=256, H=512, V from the folder's vocabulary),
and trains it with `CaptioningSolver` (Adam, batch 100) for a few hundred iterations.
It reports `resource.getrusage(RUSAGE_SELF).ru_maxrss` after each stage; the parent
also reads RUSAGE_CHILDREN. A subprocess is used so that nothing the parent allocated
(the folder writer, PyTorch, other benchmarks) counts.

The folder: pass one with --data-dir (benchmarks/bench_data_load.py writes such a
folder). If it does not exist, this script writes one there first, with random
captions and features of the full CS231n sizes, through
`rnncap.data.cs231n.write_coco_folder` (about 0.5 GB on disk, a few seconds).

Usage (from the repository root):

    .venv/bin/python benchmarks/bench_memory.py --data-dir .cache/coco_captioning_full
    .venv/bin/python benchmarks/bench_memory.py --cells lstm --iterations 50

This script knows the public loader, model and solver only; it does not know how they
store anything.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# CS231n's coco_captioning sizes.
FULL = dict(train_captions=400_135, train_images=82_783, val_captions=195_954,
            val_images=40_504, T=17, D=512, V=1004)


def maxrss_mib(who=resource.RUSAGE_SELF):
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


def write_full_folder(path, seed=0):
    """Random full-size data in the CS231n folder layout (captions shaped like real ones)."""
    import numpy as np

    from rnncap.data.cs231n import write_coco_folder

    rng = np.random.default_rng(seed)
    data = {"idx_to_word": ["<NULL>", "<START>", "<END>", "<UNK>"]
            + [f"w{i}" for i in range(4, FULL["V"])]}
    for split in ("train", "val"):
        M, I = FULL[f"{split}_captions"], FULL[f"{split}_images"]
        caps = np.zeros((M, FULL["T"]), dtype=np.int32)  # <NULL> = 0
        caps[:, 0] = 1
        lengths = rng.integers(5, FULL["T"] - 1, size=M)
        words = rng.integers(4, FULL["V"], size=(M, FULL["T"]), dtype=np.int32)
        pos = np.arange(FULL["T"])[None, :]
        inside = (pos >= 1) & (pos <= lengths[:, None])
        caps[inside] = words[inside]
        caps[np.arange(M), lengths + 1] = 2  # <END>
        data[f"{split}_captions"] = caps
        data[f"{split}_image_idxs"] = rng.integers(0, I, size=M, dtype=np.int32)
        data[f"{split}_features"] = rng.standard_normal((I, FULL["D"]), dtype=np.float32)
        data[f"{split}_urls"] = [f"http://example.invalid/{split}/{i}.jpg" for i in range(I)]
    write_coco_folder(path, data)


def child(data_dir, cell, iterations, threads=1):
    """Runs in the subprocess: load, build, train; prints one JSON line."""
    out = {"cell": cell, "threads": threads, "after_import_mib": maxrss_mib()}
    import numpy as np

    from rnncap.parallel import set_threads

    set_threads(threads)  # threads for the row groups below, as `rnncap --threads N` does

    from rnncap.data.cs231n import load_coco_data
    from rnncap.model import CaptioningRNN
    from rnncap.solver import CaptioningSolver

    out["after_numpy_rnncap_import_mib"] = maxrss_mib()
    t0 = time.perf_counter()
    data = load_coco_data(data_dir)
    out["load_s"] = time.perf_counter() - t0
    out["data_array_mib"] = sum(v.nbytes for v in data.values()
                                if isinstance(v, np.ndarray)) / 2 ** 20
    out["train_captions_shape"] = list(data["train_captions"].shape)
    out["train_features_shape"] = list(data["train_features"].shape)
    out["after_load_mib"] = maxrss_mib()
    model = CaptioningRNN(data["word_to_idx"], input_dim=data["train_features"].shape[1],
                          wordvec_dim=256, hidden_dim=512, cell_type=cell, dtype=np.float32,
                          seed=0)
    solver = CaptioningSolver(model, data, update_rule="adam",
                              optim_config={"learning_rate": 5e-3}, batch_size=100,
                              num_epochs=1, verbose=False, seed=0,
                              loss_fn=model.fast_loss, row_groups=threads)  # as the trainer
    solver.num_iterations = iterations  # a few hundred steps reach the steady state
    out["after_model_mib"] = maxrss_mib()
    t0 = time.perf_counter()
    solver.train()
    out["train_s_per_iter"] = (time.perf_counter() - t0) / iterations
    out["iterations"] = solver.t
    out["final_loss"] = solver.loss_history[-1]
    out["param_dtypes"] = sorted({str(p.dtype) for p in model.params.values()})
    out["peak_mib"] = maxrss_mib()
    print(json.dumps(out))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=os.path.join(ROOT, ".cache", "coco_captioning_full"))
    p.add_argument("--cells", nargs="+", default=["rnn", "lstm"], choices=["rnn", "lstm"])
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--threads", type=int, default=1, help="rnncap.parallel.set_threads in the child")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--child", nargs=2, metavar=("CELL", "ITERS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.data_dir, args.child[0], int(args.child[1]), args.threads)
        return

    if not os.path.isdir(args.data_dir):
        print(f"writing a full-size CS231n folder to {args.data_dir} ...", flush=True)
        t0 = time.perf_counter()
        write_full_folder(args.data_dir)
        print(f"  done in {time.perf_counter() - t0:.1f} s", flush=True)
    results = []
    for cell in args.cells:
        proc = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--data-dir", args.data_dir,
             "--threads", str(args.threads), "--child", cell, str(args.iterations)],
            capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            sys.exit(f"child for {cell} failed:\n{proc.stderr}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        r["children_maxrss_mib"] = maxrss_mib(resource.RUSAGE_CHILDREN)
        results.append(r)
        print(json.dumps(r, indent=1))
    print()
    print(f"{'cell':5} {'data MiB':>9} {'after load':>10} {'peak MiB':>9} {'s/iter':>7} {'target':>8}")
    for r in results:
        ok = "OK" if r["peak_mib"] < 1.5 * 1024 else "OVER"
        print(f"{r['cell']:5} {r['data_array_mib']:9.0f} {r['after_load_mib']:10.0f} "
              f"{r['peak_mib']:9.0f} {r['train_s_per_iter']:7.3f} {ok:>8} (< 1536 MiB)")
    if args.json:
        from rnncap.atomic import write_text as write_text_atomic

        write_text_atomic(args.json, json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
