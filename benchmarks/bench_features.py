"""`rnncap features` on folders of photo-sized JPEGs: CPU time per 1,000 images and peak memory.

Makes folders of N JPEG files of 500 x 375 pixels (Flickr8k's typical size), cut at seeded random
places from the photos that ship with scikit-image and matplotlib, then runs the real command
under ``/usr/bin/time -v`` for each N and extractor, and records the process's CPU seconds
(user + system), wall seconds and maximum resident set size. Peak memory should not grow with N:
rows go to the HDF5 file chunk by chunk.

    OPENBLAS_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_features.py \
        --work /tmp/bench_features --counts 200,1000 --json /tmp/bench_features.json

This script measures; it changes nothing in the package.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys

import numpy as np


def photos():
    import matplotlib.cbook
    import skimage.data

    folder = os.path.dirname(skimage.data.__file__)
    return [os.path.join(folder, n) for n in ("coffee.png", "chelsea.png", "astronaut.png",
                                              "motorcycle_right.png", "rocket.jpg")] + [
        matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)]


def make_folder(folder, n, seed=0):
    """n JPEGs of 500 x 375: a random crop of a random photo, resized."""
    from PIL import Image

    if os.path.isdir(folder) and len(os.listdir(folder)) == n:
        return folder
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    sources = [Image.open(p).convert("RGB") for p in photos()]
    for i in range(n):
        im = sources[rng.integers(len(sources))]
        w, h = im.size
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        x, y = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
        im.crop((x, y, x + cw, y + ch)).resize((500, 375)).save(
            os.path.join(folder, f"{i:05d}.jpg"), quality=90)
    return folder


def measure(cmd):
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True,
                          env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    err = proc.stderr

    def field(name):
        return re.search(rf"{re.escape(name)}: (.+)", err).group(1).strip()

    wall = field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")
    wall_s = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall)))
    return {"cpu_s": round(float(field("User time (seconds)")) + float(field("System time (seconds)")), 1),
            "wall_s": round(wall_s, 1), "max_rss_mib": round(int(field("Maximum resident set size (kbytes)")) / 1024, 1)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", required=True)
    p.add_argument("--counts", default="200,1000")
    p.add_argument("--extractors", default="efficientnet-lite0,randconv")
    p.add_argument("--grid", action="store_true", help="also write grid features")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--json", required=True)
    a = p.parse_args()
    rows = []
    for n in [int(x) for x in a.counts.split(",")]:
        folder = make_folder(os.path.join(a.work, f"photos-{n}"), n)
        for name in a.extractors.split(","):
            out = os.path.join(a.work, f"{name}-{n}.h5")
            for f in (out, out + ".partial"):
                if os.path.exists(f):
                    os.remove(f)
            cmd = [sys.executable, "-m", "rnncap", "features", folder, "--out", out, "--extractor", name,
                   "--no-progress", "--workers", str(a.workers)] + (["--grid"] if a.grid else [])
            row = dict(measure(cmd), images=n, extractor=name, grid=a.grid, workers=a.workers,
                       file_mib=round(os.path.getsize(out) / 2**20, 1))
            row["cpu_s_per_1000"] = round(row["cpu_s"] / n * 1000, 1)
            print(json.dumps(row), flush=True)
            rows.append(row)
    with open(a.json, "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
