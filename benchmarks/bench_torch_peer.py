"""rnncap against the same model in PyTorch (benchmarks/torch_peer.py): training step, greedy, beam.

For each cell (rnn, lstm) at CS231n's full size (N=100 captions of 17 tokens, V=1004,
W=256, H=512, D=512, float32; `--image-every-step` adds the demo's image input):

* train: loss and every gradient, no update. rnncap: `CaptioningRNN.fast_loss`, split
  into `--threads` row groups by `rnncap.parallel.data_parallel`, as the trainer does.
  PyTorch: `TorchPeer.loss_and_grads` (autograd).
* greedy / beam: `--images` images, 16 steps, beam size `--beam`. rnncap:
  `evaluate.decode_features` (what `rnncap caption` and `evaluate` run: batches of 500
  images, that many at once on `--threads` threads); PyTorch: `TorchPeer.greedy`/`beam`.

Method: each library runs in its own worker process (spawn), both with `--threads`
threads (OPENBLAS/OMP/MKL_NUM_THREADS set before NumPy loads, `torch.set_num_threads`,
`rnncap.parallel.set_threads`). Before timing, the parent compares their results (loss,
largest gradient difference relative to the gradient's largest entry, share of identical
greedy and best beam captions); that first call of each item is also the warm-up. Then
it alternates turns, rnncap and PyTorch, the order reversed every round, and reports the
medians of wall time and of the process's CPU time (all its threads) with their ratios.

    .venv/bin/python benchmarks/bench_torch_peer.py --threads 1
    .venv/bin/python benchmarks/bench_torch_peer.py --threads 2 --reps 7 --decode-reps 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.torch_peer import SIZES, TorchPeer, make_batch, make_rnncap, rel_error  # noqa: E402

ITEMS = ("train", "greedy", "beam")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", nargs="+", default=["rnn", "lstm"], choices=["rnn", "lstm"])
    p.add_argument("--only", nargs="+", default=list(ITEMS), choices=ITEMS)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=7, help="alternating rounds for the training step")
    p.add_argument("--decode-reps", type=int, default=3, help="alternating rounds for decoding")
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--image-every-step", action="store_true")
    p.add_argument("--json", help="also write the results here")
    return p.parse_args(argv)


def items(side, cell, args):
    """item -> function, for one library; the same seeded model, batch and images."""
    model = make_rnncap(cell, image_every_step=args.image_every_step)
    rng = np.random.default_rng(0)
    features, captions = make_batch(rng, SIZES["N"], SIZES["T"], SIZES["V"], SIZES["D"])
    images = rng.standard_normal((args.images, SIZES["D"])).astype(np.float32)
    if side == "rnncap":
        from rnncap.evaluate import DecodeOptions, decode_features
        from rnncap.parallel import data_parallel, set_threads, split_rows

        set_threads(args.threads)
        groups = split_rows(model.row_costs(captions), args.threads)
        return {"train": lambda: data_parallel(model.fast_loss, (features, captions), groups),
                "greedy": lambda: decode_features(model, images, DecodeOptions("greedy")),
                "beam": lambda: decode_features(model, images, DecodeOptions("beam", beam_size=args.beam))}
    import torch

    torch.set_num_threads(args.threads)
    peer = TorchPeer(torch, model)
    return {"train": lambda: peer.loss_and_grads(features, captions),
            "greedy": lambda: peer.greedy(images),
            "beam": lambda: peer.beam(images, k=args.beam)}


def worker(conn, side, cell, args):
    """Answers ("result", item) with the item's output and ("time", item) with
    (wall s, CPU s) of one call, until ("stop",)."""
    fns = items(side, cell, args)
    while (msg := conn.recv())[0] != "stop":
        if msg[0] == "result":
            conn.send(fns[msg[1]]())
        else:
            w, c = time.perf_counter(), time.process_time()
            fns[msg[1]]()
            conn.send((time.perf_counter() - w, time.process_time() - c))


def agreement(item, ours, theirs):
    if item == "train":
        return {"loss": (ours[0], theirs[0]),
                "grad_rel_error": max(rel_error(ours[1][k], theirs[1][k]) for k in ours[1])}
    return {"identical_captions": float(np.mean(np.all(ours == theirs, axis=1)))}


def bench_cell(cell, args):
    import multiprocessing as mp

    ctx, conns, procs = mp.get_context("spawn"), {}, []
    for side in ("rnncap", "torch"):
        conns[side], child = ctx.Pipe()
        procs.append(ctx.Process(target=worker, args=(child, side, cell, args), daemon=True))
        procs[-1].start()

    def ask(side, *msg):
        conns[side].send(msg)
        return conns[side].recv()

    out = {}
    try:
        for item in args.only:
            check = agreement(item, ask("rnncap", "result", item), ask("torch", "result", item))
            times = {"rnncap": [], "torch": []}
            for r in range(args.reps if item == "train" else args.decode_reps):
                for side in ("rnncap", "torch") if r % 2 == 0 else ("torch", "rnncap"):
                    times[side].append(ask(side, "time", item))
            med = {s: np.median(np.array(t), axis=0) for s, t in times.items()}  # (wall, cpu)
            out[item] = {"check": check, "rounds": len(times["rnncap"]),
                         **{f"{s}_{k}_s": float(med[s][i]) for s in med for i, k in enumerate(("wall", "cpu"))},
                         "torch_over_rnncap_wall": float(med["torch"][0] / med["rnncap"][0]),
                         "torch_over_rnncap_cpu": float(med["torch"][1] / med["rnncap"][1])}
    finally:
        for side in conns:
            conns[side].send(("stop",))
        for proc in procs:
            proc.join(timeout=30)
    return out


def main(argv=None):
    args = parse_args(argv)
    want = {k: str(args.threads) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if any(os.environ.get(k) != v for k, v in want.items()):  # BLAS reads these when it loads
        os.environ.update(want)
        os.execv(sys.executable, [sys.executable] + sys.argv)
    load = [os.getloadavg()[0]]
    results = {cell: bench_cell(cell, args) for cell in args.cells}
    load.append(os.getloadavg()[0])
    print(f"threads {args.threads}, images {args.images}, beam {args.beam}, image_every_step "
          f"{args.image_every_step}; load average {load[0]:.1f} -> {load[1]:.1f}; medians; "
          "ratio = PyTorch / rnncap (above 1: rnncap faster)")
    print(f"{'cell':5} {'item':7} {'rnncap wall':>12} {'torch wall':>11} {'ratio':>6} "
          f"{'rnncap CPU':>11} {'torch CPU':>10} {'ratio':>6}  agreement")
    for cell, res in results.items():
        for item, x in res.items():
            print(f"{cell:5} {item:7} {x['rnncap_wall_s']:11.3f}s {x['torch_wall_s']:10.3f}s "
                  f"{x['torch_over_rnncap_wall']:6.2f} {x['rnncap_cpu_s']:10.3f}s "
                  f"{x['torch_cpu_s']:9.3f}s {x['torch_over_rnncap_cpu']:6.2f}  {x['check']}")
    if args.json:
        from rnncap.atomic import write_text as write_text_atomic

        write_text_atomic(args.json, json.dumps({"args": vars(args), "load": load,
                                                 "results": results}, indent=1, default=float))


if __name__ == "__main__":
    main()
