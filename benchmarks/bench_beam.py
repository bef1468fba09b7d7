"""Beam search speed: captions per second for greedy, beam 3 and beam 5 over 1,000 images.

A CaptioningRNN at CS231n's full size (V=1004, W=256, H=512, D=512, float32),
max_length 16, seeded random weights and features. Untrained weights almost never
make <END> the best token, so every beam runs all 16 steps: this is the worst
case (a trained model finishes early and stops sooner). All beams of all images
in a batch advance in one `step` call per time step; the table splits the time
into the model's `step` and the decoder's own bookkeeping (top-k selection,
reordering of state and sequences). Wall-clock seconds are the best of several
runs; CPU seconds (all threads) are shown too, since they move less when other
processes share the machine.

Run:  .venv/bin/python -m benchmarks.bench_beam [--images 1000] [--batch 1000]
          [--cells rnn,lstm] [--repeats 3]
"""

import argparse
import time

import numpy as np

from benchmarks.torch_peer import SIZES
from benchmarks.torch_peer import make_rnncap as make_model
from rnncap.decode import beam_search, greedy

V, W, H, D, T = (SIZES[k] for k in ("V", "W", "H", "D", "T"))


def run(model, features, method, k, batch):
    """Decode all images once; return (seconds, CPU seconds, seconds inside step, steps, tokens)."""
    inside = [0.0, 0]
    step = model.decoder_step()  # the decoders' step (the fast path)

    def timed_step(tokens, state):
        t0 = time.perf_counter()
        out = step(tokens, state)
        inside[0] += time.perf_counter() - t0
        inside[1] += 1
        return out

    ids = dict(start_id=model.word_to_idx["<START>"], end_id=model.word_to_idx["<END>"],
               null_id=model.word_to_idx["<NULL>"], max_length=T)
    out = []
    c0, t0 = time.process_time(), time.perf_counter()
    for lo in range(0, len(features), batch):
        state = model.init_state(features[lo:lo + batch])
        if method == "greedy":
            out.append(greedy(timed_step, state, **ids))
        else:
            out.append(beam_search(timed_step, state, beam_size=k, **ids).tokens)
    return (time.perf_counter() - t0, time.process_time() - c0, inside[0], inside[1],
            np.concatenate(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=1000, help="images decoded together")
    ap.add_argument("--cells", default="rnn,lstm")
    ap.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    features = rng.standard_normal((args.images, D)).astype(np.float32)
    print(f"{args.images} images, batch {args.batch}, V={V} W={W} H={H} D={D} float32, "
          f"max_length {T}, best of {args.repeats}")
    print(f"{'cell':5} {'method':7} {'seconds':>8} {'captions/s':>11} {'CPU s':>7} "
          f"{'in step':>8} {'steps':>6} {'ended':>6}")
    for cell in args.cells.split(","):
        model = make_model(cell)
        for method, k in [("greedy", 1), ("beam", 3), ("beam", 5)]:
            best = min((run(model, features, method, k, args.batch)
                        for _ in range(args.repeats)), key=lambda r: r[0])
            secs, cpu, inside, steps, tokens = best
            ended = np.mean((tokens == model.word_to_idx["<END>"]).any(axis=1))
            name = "greedy" if method == "greedy" else f"beam-{k}"
            print(f"{cell:5} {name:7} {secs:8.2f} {args.images / secs:11.0f} {cpu:7.2f} "
                  f"{inside / secs:8.0%} {steps:6d} {ended:6.0%}")


if __name__ == "__main__":
    main()
