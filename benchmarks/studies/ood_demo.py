"""How the out-of-distribution check behaves on the demo's shapes data and on real photos.

Loads the shapes dataset of a demo cache (generated and featurised by `rnncap demo`), computes the
training-feature statistics exactly as `rnncap train` does (rnncap.run._feature_stats: statistics
of the training split, threshold from the validation split), and reports the share of test images
flagged and the score of every shipped photo, through the cached extractor. With ``--grid`` it
does the same for an attention model's features: the extractor's 3x3 grids, summarised by their
mean over cells (rnncap.ood); the grids are computed, and cached beside the pooled features, on
first use.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/studies/ood_demo.py \
        --cache .cache/rnncap/shapes --json /tmp/ood_demo.json [--grid [--flat-grid]]

This script measures; it trains nothing.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from rnncap import config as cfg
from rnncap import ood
from rnncap.data import load_data
from rnncap.data.features import extract_files, load_extractor
from rnncap.run import _feature_stats


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cache", default=".cache/rnncap/shapes")
    p.add_argument("--json", required=True)
    p.add_argument("--grid", action="store_true", help="grid features, as an attention model reads")
    p.add_argument("--flat-grid", action="store_true",
                   help="with --grid: statistics of the whole grid (L*D numbers per image) instead "
                        "of its mean over cells; the alternative rnncap does not use, for comparison")
    a = p.parse_args()
    data = load_data(a.cache, "shapes", grid=a.grid)
    flat = (lambda x: x.reshape(len(x), -1)) if a.grid and a.flat_grid else (lambda x: x)
    for split in ("train", "val", "test"):
        data[f"{split}_features"] = flat(data[f"{split}_features"])
    config = cfg.with_overrides(cfg.DEMO, {"data": {"path": a.cache}})
    doc, arrays = _feature_stats(config, data)
    stats = ood.from_checkpoint(doc, arrays)
    out = {"stats": doc}
    for split in ("train", "val", "test"):
        s, f = ood.flag(data[f"{split}_features"], stats)
        out[split] = {"images": int(len(s)), "flagged": int(f.sum()), "median": float(np.median(s)),
                      "max": float(s.max())}
    import matplotlib.cbook
    import skimage.data

    folder = os.path.dirname(skimage.data.__file__)
    photos = [os.path.join(folder, n) for n in ("coffee.png", "chelsea.png", "motorcycle_right.png",
                                                "astronaut.png", "rocket.jpg", "camera.png")]
    photos.append(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    s, f = ood.flag(flat(extract_files(load_extractor(data["extractor_dir"]), photos, grid=a.grid)), stats)
    out["photos"] = {os.path.basename(p): {"score": round(float(x), 2), "flagged": bool(y)}
                     for p, x, y in zip(photos, s, f)}
    print(json.dumps(out, indent=1))
    with open(a.json, "w") as fh:
        json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
