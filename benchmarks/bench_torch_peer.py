"""rnncap against an equivalent PyTorch CPU model: training step and decoding, side by side.

What it times, at CS231n's full size (N=100 captions of 17 tokens, so T=16 inputs,
V=1004, W=256, H=512, D=512, float32), for the vanilla RNN and the LSTM:

* train: one training step, loss and every gradient, no optimizer update.
  rnncap: `CaptioningRNN.fast_loss(features, captions)` (what the trainer runs), split
  into row groups on threads by `rnncap.parallel.data_parallel` as the trainer does.
  PyTorch: nn.Linear (image -> h0), nn.Embedding, nn.RNN(tanh) / nn.LSTM, nn.Linear
  (vocabulary), cross-entropy with `<NULL>` targets ignored, summed and divided by N,
  `loss.backward()` after setting every `.grad` to None.
* greedy: 1,000 images decoded greedily for 16 steps. rnncap: what `rnncap caption`
  and `rnncap evaluate` run, `evaluate.decode_features` (decode.greedy over
  `model.decoder_step(logits=True)`, batches of 500 images); PyTorch: the same modules
  stepped one token at a time under `torch.inference_mode()`, argmax of the scores,
  same early stop.
* beam: beam-5 over the same 1,000 images. rnncap: `evaluate.decode_features` with
  beam search on the raw scores (`decode.beam_search(..., logits=True)`: each row's
  best tokens picked, then only those normalized); PyTorch: a plain batched beam search
  (N*k rows per step, topk over k*V, finished beams extended only by <NULL> at no cost).
* gemm: NumPy's float32 matrix product (2048 x 2048 x 2048, written into a preallocated
  array) on `--threads` BLAS threads, and `gemm_threads`: `--threads` such products at
  once, one per Python thread with one BLAS thread each (the way rnncap uses the cores).
  The machine's GEMM rate is the higher of the two; PyTorch's (MKL) for reference.

rnncap computes with `rnncap.parallel.set_threads(--rnncap-threads)` (default
`--threads`): a training batch is split into that many row groups and decoding runs
that many image batches at once, each on its own thread with one BLAS thread, as the
CLI's --threads does. `--rnncap-threads 1` runs rnncap on `--threads` BLAS threads
instead (how rnncap computed before rnncap.parallel).

Each library runs in its OWN worker process (multiprocessing, spawn), so the two
thread pools never share a process; the parent alternates turns between them (gemm,
rnncap, torch, gemm, rnncap, torch, ...; the order inside a round alternates) and
reports medians, because the machine is shared. A turn is `--calls` calls back to back
of which the last is timed: the first absorbs the switch (the other library's threads
still spinning, cold caches). Both libraries get the same thread count (NumPy's
OpenBLAS through OPENBLAS_NUM_THREADS, set before NumPy loads and inherited by the
workers; PyTorch through torch.set_num_threads).

Both models hold the SAME weights (copied from rnncap's; the LSTM gate blocks are
permuted from rnncap's i, f, o, g to PyTorch's i, f, g, o), so before timing the
script checks that the two agree: loss and every gradient (relative error), and the
greedy captions (share of identical rows). A disagreement is printed, not hidden.

GFLOP/s counts the matrix products only (see `train_flops`/`greedy_flops`): the same
count for both libraries, so the achieved rate is just a rescaled time.

Usage (from the repository root; PyTorch is a benchmark-only dependency,
`pip install torch==2.13.0` takes the local CPU wheel here):

    .venv/bin/python benchmarks/bench_torch_peer.py                      # everything
    .venv/bin/python benchmarks/bench_torch_peer.py --only train --reps 30
    .venv/bin/python benchmarks/bench_torch_peer.py --cells lstm --only greedy beam
    .venv/bin/python benchmarks/bench_torch_peer.py --json results.json

This script does not know how rnncap computes anything: it only calls the public model
and decode functions, so it measures whatever the core currently does.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

# Run from a checkout without installing: the repository root goes first on the path.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SIZES = dict(N=100, T=16, V=1004, W=256, H=512, D=512)
NULL, START, END = 0, 1, 2
ITEMS = ("train", "greedy", "beam")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", nargs="+", default=["rnn", "lstm"], choices=["rnn", "lstm"])
    p.add_argument("--only", nargs="+", default=list(ITEMS), choices=ITEMS)
    p.add_argument("--reps", type=int, default=20, help="interleaved rounds per item (train)")
    p.add_argument("--decode-reps", type=int, default=7, help="interleaved rounds for decoding")
    p.add_argument("--images", type=int, default=1000, help="images decoded per run")
    p.add_argument("--steps", type=int, default=16, help="decoding steps (max_length)")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--rnncap-threads", type=int, default=None,
                   help="rnncap.parallel.set_threads for rnncap (default: --threads); 1: rnncap "
                        "on --threads BLAS threads instead")
    p.add_argument("--gap", type=float, default=0.0,
                   help="seconds of idle between turns (lets worker threads go to sleep)")
    p.add_argument("--calls", type=int, default=2,
                   help="calls per turn, back to back; only the last is timed")
    p.add_argument("--json", help="also write the results to this JSON file")
    return p.parse_args(argv)


def pin_threads(threads):
    """Re-executes the script once with BLAS/OpenMP thread counts in the environment.

    OpenBLAS reads OPENBLAS_NUM_THREADS when NumPy is first imported, which has already
    happened here; the re-executed process imports it with the right value.
    """
    want = str(threads)
    names = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    if all(os.environ.get(k) == want for k in names):
        return
    os.environ.update({k: want for k in names})
    os.execv(sys.executable, [sys.executable] + sys.argv)


# ---------------------------------------------------------------------------- machine


def openblas_info():
    """OpenBLAS's core name, config and thread count, read from the library NumPy loaded."""
    import ctypes
    import glob

    libs = glob.glob(os.path.join(os.path.dirname(np.__file__) + ".libs", "*openblas*"))
    info = {}
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for key, names in (("corename", ("scipy_openblas_get_corename64_", "openblas_get_corename")),
                           ("config", ("scipy_openblas_get_config64_", "openblas_get_config")),
                           ("threads", ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads"))):
            for name in names:
                fn = getattr(lib, name, None)
                if fn is None:
                    continue
                if key == "threads":
                    fn.restype = ctypes.c_int
                    info[key] = fn()
                else:
                    fn.restype = ctypes.c_char_p
                    info[key] = fn().decode()
                break
    return info


def machine_info():
    """The parent's view of the machine; the workers report their libraries' own."""
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = {k: blas.get(k) for k in ("name", "version", "openblas configuration")}
    except Exception:  # older NumPy without mode="dicts"
        blas = {}
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numpy_blas": blas,
        "loadavg_start": os.getloadavg(),
    }


# ---------------------------------------------------------------------------- FLOPs


def train_flops(N, T, V, W, H, D, G):
    """Matrix-product FLOPs (2 per multiply-add) of one training step, forward + backward.

    Forward: image projection (N,D)x(D,H); input projection (NT,W)x(W,G); recurrence T x
    (N,H)x(H,G); vocabulary (NT,H)x(H,V). Backward: each product's weight gradient plus
    its input gradient, except the image features (not learned: no gradient needed).
    """
    fwd = 2 * N * D * H + 2 * N * T * W * G + 2 * N * T * H * G + 2 * N * T * H * V
    bwd = 2 * N * D * H + 2 * (2 * N * T * W * G) + 2 * (2 * N * T * H * G) + 2 * (2 * N * T * H * V)
    return fwd + bwd


def packed_train_flops(lengths, V, W, H, D, G):
    """`train_flops` counting only positions up to each row's last target (what a
    padding-free implementation must compute; the padding's share is all skippable)."""
    N, P = len(lengths), int(np.sum(lengths))
    per_pos = W * G + H * G + H * V
    return 2 * N * D * H * 2 + 2 * P * per_pos * 3


def greedy_flops(N, steps, V, W, H, D, G):
    """Matrix-product FLOPs of decoding N rows for `steps` steps: image projection once,
    then per step the input projection, the recurrent product and the vocabulary."""
    return 2 * N * D * H + steps * 2 * N * (W * G + H * G + H * V)


# ---------------------------------------------------------------------------- models


def make_rnncap(cell, seed=0):
    from rnncap.model import CaptioningRNN

    s = SIZES
    vocab = {"<NULL>": NULL, "<START>": START, "<END>": END, "<UNK>": 3}
    vocab.update({f"w{i}": i for i in range(4, s["V"])})
    return CaptioningRNN(vocab, input_dim=s["D"], wordvec_dim=s["W"], hidden_dim=s["H"],
                         cell_type=cell, dtype=np.float32, seed=seed)


def _gate_perm(cell, H):
    """Column order taking rnncap's gate blocks (i, f, o, g) to PyTorch's (i, f, g, o).
    Swapping two blocks is its own inverse, so the same order maps back."""
    if cell == "rnn":
        return np.arange(H)
    blocks = np.arange(4 * H).reshape(4, H)
    return blocks[[0, 1, 3, 2]].reshape(-1)


def make_torch_peer(torch, model):
    """The same network in PyTorch modules, with rnncap's weights copied in."""
    nn = torch.nn
    s, p, cell = SIZES, model.params, model.cell_type

    class Peer(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(s["D"], s["H"])
            self.embed = nn.Embedding(s["V"], s["W"])
            rnn_cls = nn.LSTM if cell == "lstm" else nn.RNN
            kw = {} if cell == "lstm" else {"nonlinearity": "tanh"}
            self.rnn = rnn_cls(s["W"], s["H"], batch_first=True, **kw)
            self.vocab = nn.Linear(s["H"], s["V"])

        def initial(self, features):
            h0 = self.proj(features)[None]  # (1, N, H)
            return (h0, torch.zeros_like(h0)) if cell == "lstm" else h0

        def forward(self, features, captions):
            N = captions.shape[0]
            x = self.embed(captions[:, :-1])  # (N, T, W)
            h, _ = self.rnn(x, self.initial(features))  # (N, T, H)
            scores = self.vocab(h)  # (N, T, V)
            return torch.nn.functional.cross_entropy(
                scores.reshape(-1, s["V"]), captions[:, 1:].reshape(-1),
                ignore_index=NULL, reduction="sum") / N

        def forward_packed(self, features, captions, lengths):
            """The same loss with PyTorch's PackedSequence: padding never computed.
            lengths: (N,) int64 CPU tensor, one past each row's last non-<NULL> target
            (all >= 1 here)."""
            pack = torch.nn.utils.rnn.pack_padded_sequence
            N = captions.shape[0]
            x = pack(self.embed(captions[:, :-1]), lengths, batch_first=True,
                     enforce_sorted=False)
            h, _ = self.rnn(x, self.initial(features))  # hx is permuted by PyTorch
            y = pack(captions[:, 1:], lengths, batch_first=True, enforce_sorted=False)
            return torch.nn.functional.cross_entropy(
                self.vocab(h.data), y.data, ignore_index=NULL, reduction="sum") / N

    peer = Peer()
    perm = _gate_perm(cell, s["H"])
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    with torch.no_grad():
        peer.proj.weight.copy_(t(p["W_proj"].T))
        peer.proj.bias.copy_(t(p["b_proj"]))
        peer.embed.weight.copy_(t(p["W_embed"]))
        peer.rnn.weight_ih_l0.copy_(t(p["Wx"][:, perm].T))
        peer.rnn.weight_hh_l0.copy_(t(p["Wh"][:, perm].T))
        peer.rnn.bias_ih_l0.copy_(t(p["b"][perm]))
        peer.rnn.bias_hh_l0.zero_()
        peer.vocab.weight.copy_(t(p["W_vocab"].T))
        peer.vocab.bias.copy_(t(p["b_vocab"]))
    return peer


def torch_grads_as_rnncap(peer, cell):
    """The peer's gradients in rnncap's names and layouts."""
    perm = _gate_perm(cell, SIZES["H"])
    g = lambda prm: prm.grad.numpy()  # noqa: E731
    return {
        "W_embed": g(peer.embed.weight),
        "W_proj": g(peer.proj.weight).T,
        "b_proj": g(peer.proj.bias),
        "Wx": g(peer.rnn.weight_ih_l0).T[:, perm],
        "Wh": g(peer.rnn.weight_hh_l0).T[:, perm],
        "b": g(peer.rnn.bias_ih_l0)[perm],  # == bias_hh's gradient: both are d a / N-summed
        "W_vocab": g(peer.vocab.weight).T,
        "b_vocab": g(peer.vocab.bias),
    }


def torch_train_step(torch, peer, features, captions, lengths=None):
    """Zero the gradients (set to None), loss, backward; packed when lengths is given."""
    for prm in peer.parameters():
        prm.grad = None
    loss = peer(features, captions) if lengths is None else \
        peer.forward_packed(features, captions, lengths)
    loss.backward()
    return loss


def target_lengths(captions):
    """One past the last non-<NULL> target of every row: the positions that matter."""
    mask = captions[:, 1:] != NULL
    T = mask.shape[1]
    return np.where(mask.any(axis=1), T - np.argmax(mask[:, ::-1], axis=1), 0)


def torch_greedy(torch, peer, features, steps):
    """Straightforward batched greedy decoding with the peer's modules."""
    with torch.inference_mode():
        N = features.shape[0]
        state = peer.initial(features)
        tokens = torch.full((N,), START, dtype=torch.long)
        out = torch.full((N, steps), NULL, dtype=torch.long)
        done = torch.zeros(N, dtype=torch.bool)
        for t in range(steps):
            h, state = peer.rnn(peer.embed(tokens)[:, None], state)  # (N, 1, H)
            tokens = peer.vocab(h[:, 0]).argmax(dim=1)
            out[:, t] = torch.where(done, NULL, tokens)
            done |= tokens == END
            if bool(done.all()):
                break
    return out


def torch_beam(torch, peer, features, steps, k):
    """Plain batched beam search: N*k rows per step, topk over k*V per image.

    A finished beam (it emitted <END>) stays in its image's beam and can only be
    extended by <NULL> at log-probability 0, so it keeps its score; no length penalty.
    """
    V = SIZES["V"]
    with torch.inference_mode():
        N = features.shape[0]
        state = peer.initial(features)
        state = tuple(a.repeat_interleave(k, dim=1) for a in state) if isinstance(state, tuple) \
            else state.repeat_interleave(k, dim=1)  # (1, N*k, H)
        beam_lp = torch.full((N, k), float("-inf"))
        beam_lp[:, 0] = 0.0  # only beam 0 is real at the start
        finished = torch.zeros(N, k, dtype=torch.bool)
        seqs = torch.full((N, k, steps), NULL, dtype=torch.long)
        tokens = torch.full((N * k,), START, dtype=torch.long)
        base = (torch.arange(N) * k)[:, None]
        for t in range(steps):
            h, state = peer.rnn(peer.embed(tokens)[:, None], state)
            logp = torch.log_softmax(peer.vocab(h[:, 0]), dim=1)  # (N*k, V)
            fin = finished.reshape(-1)
            logp[fin] = float("-inf")
            logp[fin, NULL] = 0.0
            cand = (beam_lp[:, :, None] + logp.reshape(N, k, V)).reshape(N, k * V)
            beam_lp, idx = cand.topk(k, dim=1)  # (N, k), best first
            src, tok = idx // V, idx % V
            seqs = seqs.gather(1, src[:, :, None].expand(N, k, steps)).clone()
            seqs[:, :, t] = tok
            finished = finished.gather(1, src) | (tok == END)
            rows = (base + src).reshape(-1)
            state = tuple(a[:, rows] for a in state) if isinstance(state, tuple) else state[:, rows]
            tokens = tok.reshape(-1)
            if bool(finished.all()):
                break
    return seqs[:, 0]


# ---------------------------------------------------------------------------- data


def make_batch(rng, N, T, V, D):
    """Features ~ N(0, 1) and captions <START> w1..wL <END> <NULL>..., L in [5, T-1]."""
    features = rng.standard_normal((N, D)).astype(np.float32)
    captions = np.full((N, T + 1), NULL, dtype=np.int64)
    captions[:, 0] = START
    lengths = rng.integers(5, T, size=N)
    for n, L in enumerate(lengths):
        captions[n, 1:L + 1] = rng.integers(4, V, size=L)
        captions[n, L + 1] = END
    return features, captions


# ---------------------------------------------------------------------------- timing


def rel_error(a, b):
    """Largest absolute difference relative to the largest magnitude: elementwise
    relative errors blow up on entries that are ~0 in float32 for both libraries."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(1e-30, np.max(np.abs(a)), np.max(np.abs(b))))


def summarize(times):
    arr = np.asarray(times)
    return {"median_s": float(np.median(arr)), "q25_s": float(np.percentile(arr, 25)),
            "q75_s": float(np.percentile(arr, 75)), "n": len(arr)}


def gemm_fn(side, torch=None, n=2048):
    """One side's float32 GEMM (n x n x n into a preallocated array) and its FLOPs."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    if side == "rnncap":
        out = np.empty((n, n), np.float32)
        return (lambda: np.matmul(a, b, out=out)), 2 * n ** 3
    ta, tb, tout = torch.from_numpy(a), torch.from_numpy(b), torch.empty(n, n)
    return (lambda: torch.mm(ta, tb, out=tout)), 2 * n ** 3


def gemm_threads_fn(threads, n=2048):
    """`threads` n x n x n float32 GEMMs at once, each on its own Python thread with one
    BLAS thread (rnncap.parallel.map_threads); their FLOPs are threads * 2 n^3."""
    from rnncap.parallel import map_threads

    rng = np.random.default_rng(1)
    work = [(rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32),
             np.empty((n, n), np.float32)) for _ in range(threads)]
    return lambda: map_threads(lambda w: np.matmul(w[0], w[1], out=w[2]), work, threads)


# ---------------------------------------------------------------------------- workers


def make_inputs(args):
    """The training batch and the decoding features; the same in every process."""
    s = SIZES
    rng = np.random.default_rng(0)
    features, captions = make_batch(rng, s["N"], s["T"], s["V"], s["D"])
    feats = rng.standard_normal((args.images, s["D"])).astype(np.float32)
    return features, captions, feats


def side_items(side, cell, args):
    """name -> (run, result) for one library: `run()` is what is timed, `result()`
    returns what the parent compares across libraries (called once, untimed)."""
    model = make_rnncap(cell)
    features, captions, feats = make_inputs(args)
    if side == "rnncap":
        from rnncap.evaluate import DecodeOptions, decode_features
        from rnncap.parallel import data_parallel, set_threads, split_rows

        threads = args.threads if args.rnncap_threads is None else args.rnncap_threads
        set_threads(threads)
        groups = split_rows(model.row_costs(captions), threads)

        def decoder(options):
            return lambda: decode_features(model, feats, options)

        gemm, _ = gemm_fn(side)
        gemm_threads = gemm_threads_fn(args.threads)
        train = lambda: data_parallel(model.fast_loss, (features, captions), groups)  # noqa: E731
        greedy = decoder(DecodeOptions("greedy", max_length=args.steps))
        beam = decoder(DecodeOptions("beam", beam_size=args.beam, max_length=args.steps))

        def train_result():
            loss, grads = train()
            return {"loss": float(loss), "grads": grads}

        return {"gemm": (gemm, None), "gemm_threads": (gemm_threads, None),
                "train": (train, train_result),
                "greedy": (greedy, greedy), "beam": (beam, beam)}

    import torch

    torch.set_num_threads(args.threads)
    peer = make_torch_peer(torch, model)
    tf, tc = torch.from_numpy(features), torch.from_numpy(captions)
    tl = torch.from_numpy(target_lengths(captions).astype(np.int64))
    tfeats = torch.from_numpy(feats)
    gemm, _ = gemm_fn(side, torch)

    def result(lengths):
        def fn():
            loss = torch_train_step(torch, peer, tf, tc, lengths)
            return {"loss": loss.item(), "grads": torch_grads_as_rnncap(peer, cell)}
        return fn

    greedy = lambda: torch_greedy(torch, peer, tfeats, args.steps).numpy()  # noqa: E731
    beam = lambda: torch_beam(torch, peer, tfeats, args.steps, args.beam).numpy()  # noqa: E731
    return {"gemm": (gemm, None),
            "train": (lambda: torch_train_step(torch, peer, tf, tc), result(None)),
            "train_packed": (lambda: torch_train_step(torch, peer, tf, tc, tl), result(tl)),
            "greedy": (greedy, greedy), "beam": (beam, beam)}


def worker(conn, side, cell, args):
    """One library in its own process: builds its items, then answers the parent's
    requests ("time", item) -> seconds of one call, ("result", item) -> outputs,
    ("info",) -> library versions and thread counts, ("stop",)."""
    items = side_items(side, cell, args)
    while True:
        msg = conn.recv()
        if msg[0] == "stop":
            conn.close()
            return
        if msg[0] == "info":
            info = {"openblas_runtime": openblas_info()}
            if side == "torch":
                import torch

                info.update(torch=torch.__version__, torch_threads=torch.get_num_threads(),
                            torch_blas="MKL" if torch.backends.mkl.is_available() else "other",
                            torch_parallel=torch.__config__.parallel_info().splitlines()[:4])
            conn.send(info)
        elif msg[0] == "result":
            conn.send(items[msg[1]][1]())
        else:  # ("time", item, calls): run it `calls` times back to back, time the last
            run = items[msg[1]][0]
            for _ in range(msg[2] - 1):
                run()
            t0 = time.perf_counter()
            run()
            conn.send(time.perf_counter() - t0)


class Workers:
    """The two libraries' worker processes for one cell (spawned: nothing shared)."""

    def __init__(self, cell, args):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.conns, self.procs = {}, []
        for side in ("rnncap", "torch"):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker, args=(child, side, cell, args), daemon=True)
            proc.start()
            self.conns[side] = parent
            self.procs.append(proc)

    def ask(self, side, *msg):
        self.conns[side].send(msg)
        return self.conns[side].recv()

    def close(self):
        for side in self.conns:
            self.conns[side].send(("stop",))
        for proc in self.procs:
            proc.join(timeout=30)


def interleaved(workers, names, reps, gap, calls):
    """Times every (side, item) `reps` times, round-robin, alternating the order per
    round. Each turn runs in its library's own process: `calls` calls back to back, of
    which the last is timed (the first ones absorb the switch from the other library:
    its worker threads, OpenBLAS's thread server or PyTorch's OpenMP pool, spin for a
    while after a call, and caches are cold). Between turns the parent waits `gap`
    seconds. One warm-up call of each item precedes the timing.

    Returns:
        dict "side:item" -> list of seconds.
    """
    for side, item in names:
        workers.ask(side, "time", item, 1)
    times = {f"{s}:{i}": [] for s, i in names}
    for r in range(reps):
        for side, item in names if r % 2 == 0 else names[::-1]:
            time.sleep(gap)
            times[f"{side}:{item}"].append(workers.ask(side, "time", item, calls))
    return times


def bench_cell(cell, args):
    s = SIZES
    G = s["H"] * (4 if cell == "lstm" else 1)
    res = {"cell": cell}
    workers = Workers(cell, args)
    try:
        res["workers"] = {side: workers.ask(side, "info") for side in ("rnncap", "torch")}
        gemm_flop = 2 * 2048 ** 3
        rename = {"rnncap:gemm": "gemm_numpy", "rnncap:gemm_threads": "gemm_threads",
                  "torch:gemm": "gemm_torch", "rnncap:train": "rnncap",
                  "torch:train": "torch", "torch:train_packed": "torch_packed"}
        if "train" in args.only:
            _, captions, _ = make_inputs(args)
            lengths = target_lengths(captions)
            ours = workers.ask("rnncap", "result", "train")
            theirs = workers.ask("torch", "result", "train")
            packed = workers.ask("torch", "result", "train_packed")
            grads = ours["grads"]
            check = {"loss_rnncap": ours["loss"], "loss_torch": theirs["loss"],
                     "loss_torch_packed": packed["loss"],
                     "grad_rel_error_max": max(rel_error(grads[k], theirs["grads"][k])
                                               for k in grads),
                     "grad_rel_error_max_packed": max(rel_error(grads[k], packed["grads"][k])
                                                      for k in grads),
                     "grad_dtypes": sorted({str(g.dtype) for g in grads.values()})}
            flops = train_flops(s["N"], s["T"], s["V"], s["W"], s["H"], s["D"], G)
            names = [("rnncap", "gemm"), ("rnncap", "gemm_threads"), ("torch", "gemm"),
                     ("rnncap", "train"), ("torch", "train"), ("torch", "train_packed")]
            times = interleaved(workers, names, args.reps, args.gap, args.calls)
            times = {rename[k]: v for k, v in times.items()}
            res["train"] = _report(times, flops, gemm_flop, check, threads=args.threads)
            packed_flop = packed_train_flops(lengths, s["V"], s["W"], s["H"], s["D"], G)
            t_ours = res["train"]["rnncap"]["median_s"]
            res["train"].update({
                "padding_share": 1 - lengths.sum() / lengths.size / s["T"],
                "gflop_packed": packed_flop / 1e9,
                "rnncap_gflops_packed": packed_flop / t_ours / 1e9,
                "rnncap_share_of_gemm_packed":
                    packed_flop / t_ours / 1e9 / res["train"]["gemm_numpy_gflops"],
                "speedup_vs_torch_packed": res["train"]["torch_packed"]["median_s"] / t_ours,
            })
        for item in ("greedy", "beam"):
            if item not in args.only:
                continue
            ours = workers.ask("rnncap", "result", item)
            theirs = workers.ask("torch", "result", item)
            key = "identical_captions" if item == "greedy" else "identical_best_captions"
            check = {key: float(np.mean(np.all(ours == theirs, axis=1)))}
            names = [("rnncap", "gemm"), ("rnncap", "gemm_threads"), ("rnncap", item),
                     ("torch", item)]
            times = interleaved(workers, names, args.decode_reps, args.gap, args.calls)
            times = {rename.get(k, k.split(":")[0]): v for k, v in times.items()}
            rows = args.images * (args.beam if item == "beam" else 1)
            flops = greedy_flops(rows, args.steps, s["V"], s["W"], s["H"], s["D"], G)
            res[item] = _report(times, flops, gemm_flop, check, per=args.images,
                                threads=args.threads)
    finally:
        workers.close()
    return res


def _report(times, flops, gemm_flop, check, per=None, threads=1):
    out = {k: summarize(v) for k, v in times.items()}
    t_ours, t_theirs = out["rnncap"]["median_s"], out["torch"]["median_s"]
    # The machine's rate: the better of one GEMM on BLAS threads and one per thread.
    gemm_rate = max(gemm_flop / out["gemm_numpy"]["median_s"] / 1e9,
                    threads * gemm_flop / out["gemm_threads"]["median_s"] / 1e9)
    out["gemm_numpy_blas_threads_gflops"] = gemm_flop / out["gemm_numpy"]["median_s"] / 1e9
    out["gemm_numpy_python_threads_gflops"] = threads * gemm_flop / out["gemm_threads"]["median_s"] / 1e9
    out.update({
        "check": check,
        "gflop": flops / 1e9,
        "speedup_vs_torch": t_theirs / t_ours,
        "gemm_numpy_gflops": gemm_rate,
        "rnncap_gflops": flops / t_ours / 1e9,
        "torch_gflops": flops / t_theirs / 1e9,
        "rnncap_share_of_gemm": flops / t_ours / 1e9 / gemm_rate,
    })
    if "gemm_torch" in out:
        out["gemm_torch_gflops"] = gemm_flop / out["gemm_torch"]["median_s"] / 1e9
    if per is not None:
        out["rnncap_captions_per_s"] = per / t_ours
        out["torch_captions_per_s"] = per / t_theirs
    return out


def print_table(results):
    print()
    print(f"{'cell':5} {'item':7} {'rnncap':>10} {'torch':>10} {'speedup':>8} "
          f"{'rnncap GF/s':>11} {'torch GF/s':>10} {'GEMM GF/s':>9} {'share':>6}  check")
    for r in results:
        for item in ITEMS:
            if item not in r:
                continue
            x = r[item]
            if "rnncap_captions_per_s" in x:
                a, b = f"{x['rnncap_captions_per_s']:.0f}/s", f"{x['torch_captions_per_s']:.0f}/s"
            else:
                a, b = f"{x['rnncap']['median_s'] * 1e3:.1f}ms", f"{x['torch']['median_s'] * 1e3:.1f}ms"
            check = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in x["check"].items())
            print(f"{r['cell']:5} {item:7} {a:>10} {b:>10} {x['speedup_vs_torch']:7.2f}x "
                  f"{x['rnncap_gflops']:11.1f} {x['torch_gflops']:10.1f} "
                  f"{x['gemm_numpy_gflops']:9.1f} {x['rnncap_share_of_gemm']:6.0%}  {check}")
    for r in results:
        x = r.get("train")
        if x:
            print(f"{r['cell']:5} train, padding-free count ({x['padding_share']:.0%} of positions "
                  f"are padding): {x['gflop_packed']:.2f} of {x['gflop']:.2f} GFLOP -> rnncap "
                  f"{x['rnncap_gflops_packed']:.1f} GFLOP/s = {x['rnncap_share_of_gemm_packed']:.0%} "
                  f"of GEMM; torch with PackedSequence {x['torch_packed']['median_s'] * 1e3:.1f}ms "
                  f"(rnncap {x['speedup_vs_torch_packed']:.2f}x faster)")
    print("(train: median time of one step; decode: captions per second; GF/s counts the "
          "matrix products of the padded batch, the same for both; share = rnncap's GFLOP/s "
          "over NumPy's float32 GEMM rate measured in the same rounds, the better of one "
          "product on BLAS threads and one product per thread)")


def main(argv=None):
    args = parse_args(argv)
    pin_threads(args.threads)
    info = machine_info()
    print(json.dumps(info, indent=1))
    results = []
    for cell in args.cells:
        r = bench_cell(cell, args)
        results.append(r)
        print(json.dumps(r, indent=1, default=float))
    info["loadavg_end"] = os.getloadavg()
    print_table(results)
    print(f"rnncap: rnncap.parallel.set_threads({args.threads if args.rnncap_threads is None else args.rnncap_threads}), "
          f"{args.threads} BLAS thread(s) outside its parallel sections")
    print(f"load average start {info['loadavg_start']}, end {info['loadavg_end']}")
    if args.json:
        from rnncap.atomic import write_text as write_text_atomic

        write_text_atomic(args.json, json.dumps({"machine": info, "sizes": SIZES, "args": vars(args),
                                                 "results": results}, indent=1, default=float))


if __name__ == "__main__":
    main()
