"""Data loading, generation and feature extraction: time and memory.

Two parts (run either or both):

--cs231n  Writes a full-size CS231n ``coco_captioning`` folder (400,135 train
          and 195,954 val captions x 17, 82,783 x 512 and 40,504 x 512 float32
          PCA features, a 1,004-word vocabulary, URL files; random content),
          then loads it with ``load_coco_data`` in a fresh process and reports
          the load time and that process's peak resident memory next to the
          size of the arrays it returns (a loader that copied every array
          would peak near twice that).

--shapes  Generates the default shapes dataset (10,000/1,000/1,000 images)
          into a fresh folder, runs the default feature extractor on all
          12,000 images (PCA fitted on train), and fits linear probes from
          the val features to the ground truth (colour, shape, size of the
          object in each grid cell, occupancy of each cell, object count).

Wall-clock and CPU seconds (all threads) are both shown; CPU seconds move less
when other processes share the machine. Nothing here is asserted.

Run:  .venv/bin/python -m benchmarks.bench_data_load [--cs231n] [--shapes] [--dir DIR]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

SIZES = {"train": (400135, 82783), "val": (195954, 40504)}
V, D, T = 1004, 512, 17


def write_full_cs231n(folder):
    from rnncap.data.cs231n import write_coco_folder

    rng = np.random.default_rng(0)
    data = {"idx_to_word": ["<NULL>", "<START>", "<END>", "<UNK>"] + [f"w{i}" for i in range(V - 4)]}
    for split, (m, n) in SIZES.items():
        caps = np.zeros((m, T), np.int32)
        length = rng.integers(5, 16, size=m)
        caps[:, 0] = 1
        body = rng.integers(4, V, size=(m, T - 2), dtype=np.int32)
        cols = np.arange(T - 2)[None]
        caps[:, 1:T - 1] = np.where(cols < length[:, None], body, 0)
        caps[np.arange(m), length + 1] = 2
        data[f"{split}_captions"] = caps
        data[f"{split}_image_idxs"] = rng.integers(0, n, size=m, dtype=np.int32)
        data[f"{split}_features"] = rng.standard_normal((n, D), dtype=np.float32)
        data[f"{split}_urls"] = [f"http://images.cocodataset.org/{split}2014/{i:012d}.jpg"
                                 for i in range(n)]
    write_coco_folder(folder, data)


# Peak memory is the kernel's VmHWM of the child (ru_maxrss would include the
# parent's footprint, which a forked child inherits on Linux).
_HWM = "int([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]) / 1024"
_CHILD = """
import sys, time
t0, c0 = time.perf_counter(), time.process_time()
from rnncap.data.cs231n import load_coco_data
d = load_coco_data(sys.argv[1])
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
nbytes = sum(v.nbytes for k, v in d.items() if k.endswith(('_captions', '_image_idxs', '_features')))
print(wall, cpu, nbytes / 2**20, %s)
""" % _HWM


def bench_cs231n(root):
    folder = os.path.join(root, "coco_captioning")
    t0 = time.perf_counter()
    write_full_cs231n(folder)
    print(f"wrote full-size CS231n folder in {time.perf_counter() - t0:.1f} s "
          f"({sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)) / 2**20:.0f} MiB)")
    base = subprocess.run([sys.executable, "-c",
                           "import numpy, h5py, rnncap.data.cs231n; print(%s)" % _HWM],
                          capture_output=True, text=True, check=True)
    runs = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", _CHILD, folder], capture_output=True,
                             text=True, check=True)
        runs.append([float(x) for x in out.stdout.split()])
    wall, cpu, mib, peak = min(runs)
    print(f"load_coco_data: best of 3 {wall:.2f} s wall ({cpu:.2f} s CPU); arrays returned "
          f"{mib:.0f} MiB; peak RSS {peak:.0f} MiB (interpreter + numpy + h5py alone: "
          f"{float(base.stdout):.0f} MiB)")


def bench_shapes(root):
    from rnncap.data import load_data, prepare_shapes
    from rnncap.data.probe import linear_probe

    cache = os.path.join(root, "shapes")
    t0, c0 = time.perf_counter(), time.process_time()
    folder = prepare_shapes(cache, progress=True)
    gen = (time.perf_counter() - t0, time.process_time() - c0)
    print(f"generation (12,000 images): {gen[0]:.1f} s wall, {gen[1]:.1f} s CPU")

    t0, c0 = time.perf_counter(), time.process_time()
    data = load_data(cache, "shapes", progress=True)
    ext = (time.perf_counter() - t0, time.process_time() - c0)
    n = sum(len(data[f"{s}_image_files"]) for s in ("train", "val", "test"))
    print(f"features ({n} images, fit + extract + cache): {ext[0]:.1f} s wall, {ext[1]:.1f} s CPU "
          f"= {ext[0] / n * 1000:.2f} s wall per 1,000 images; D = {data['train_features'].shape[1]}")
    t0 = time.perf_counter()
    again = load_data(cache, "shapes")
    print(f"second load (cached): {time.perf_counter() - t0:.1f} s")
    assert again["train_features"].shape == data["train_features"].shape

    res = linear_probe(data["train_features"], data["train_truth"],
                       data["val_features"], data["val_truth"])
    print("linear probes (ridge on train features, scored on val):")
    for task, r in res.items():
        print(f"  {task:9s} accuracy {r['accuracy']:.3f}   chance {r['chance']:.3f}   n {r['n']}")
    with open(os.path.join(folder, "dataset.json")) as f:
        d = json.load(f)
    k = np.bincount([len(im["objects"]) for im in d["images"]])
    print(f"objects per image: {dict(enumerate(k.tolist()))}; vocabulary {len(data['vocab'])} "
          f"words; longest caption {int((data['train_captions'] > 0).sum(1).max()) - 2} words")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cs231n", action="store_true")
    ap.add_argument("--shapes", action="store_true")
    ap.add_argument("--dir", default=None, help="scratch folder (default: a temporary one)")
    args = ap.parse_args()
    if not (args.cs231n or args.shapes):
        args.cs231n = args.shapes = True
    with tempfile.TemporaryDirectory(dir=args.dir) as root:
        if args.cs231n:
            bench_cs231n(root)
        if args.shapes:
            bench_shapes(root)


if __name__ == "__main__":
    main()
