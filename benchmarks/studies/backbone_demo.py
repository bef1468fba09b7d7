"""The shapes demo with the pretrained backbone against the built-in extractor (issue 10, item 7).

Runs the demo's own steps (generate shapes, featurise, train the DEMO preset, score greedy
captions on the test split) for each extractor on the same generated dataset, and records the
truth rate, BLEU-4, CIDEr and the CPU and wall seconds of every phase. The full demo featurises
12,000 images; pushing that many through EfficientNet-Lite0 costs about half an hour of CPU on
this machine, so the dataset size is a flag and docs/results.md states the projection.

    OPENBLAS_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/studies/backbone_demo.py \
        --cache /tmp/bdemo --num-train 2000 --num-val 200 --num-test 500 \
        --json /tmp/backbone_demo.json

This script does not decide anything; it measures.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from rnncap import config as cfg
from rnncap.data import prepare_shapes
from rnncap.data.features import cached_split_features
from rnncap.data.karpathy import parse_dataset_json
from rnncap.data.layout import build_data
from rnncap.evaluate import DecodeOptions, evaluate_and_save
from rnncap.run import restore, train


def clock():
    return time.process_time(), time.perf_counter()


def since(t):
    c, w = clock()
    return {"cpu_s": round(c - t[0], 1), "wall_s": round(w - t[1], 1)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cache", required=True)
    p.add_argument("--num-train", type=int, default=2000)
    p.add_argument("--num-val", type=int, default=200)
    p.add_argument("--num-test", type=int, default=500)
    p.add_argument("--extractors", default="randconv,efficientnet-lite0")
    p.add_argument("--epochs", type=int, default=cfg.DEMO.train.num_epochs)
    p.add_argument("--json", required=True)
    a = p.parse_args()

    t = clock()
    folder = str(prepare_shapes(os.path.join(a.cache, "shapes"), num_train=a.num_train,
                                num_val=a.num_val, num_test=a.num_test, progress=False))
    rows = {"dataset": {"train": a.num_train, "val": a.num_val, "test": a.num_test,
                        "generate": since(t)}}
    images, _, _ = parse_dataset_json(os.path.join(folder, "dataset.json"))
    paths = {s: [im["file"] for im in ims] for s, ims in images.items()}
    n_images = sum(len(v) for v in paths.values())
    for name in a.extractors.split(","):
        t = clock()
        options = {"image_size": 64} if name == "randconv" else {}
        feats, extractor_dir = cached_split_features(folder, paths, key=os.path.basename(folder),
                                                     name=name, options=options)
        feat_time = since(t)
        data = build_data(images, feats, source=folder)
        data["extractor_dir"] = extractor_dir
        config = cfg.with_overrides(cfg.DEMO, {"data": {"path": folder},
                                               "train": {"num_epochs": a.epochs}})
        out = os.path.join(a.cache, f"run-{name}")
        t = clock()
        summary = train(config, out, progress=False, data=data)
        train_time = since(t)
        t = clock()
        r = restore(out)
        scores, _ = evaluate_and_save(r, data, "test", DecodeOptions("greedy", max_length=r.max_length),
                                      meteor=False)
        rows[name] = {"features": dict(feat_time, images=n_images,
                                       images_per_cpu_s=round(n_images / max(feat_time["cpu_s"], 1e-9), 2)),
                      "dim": int(feats["train"].shape[1]), "train": train_time,
                      "eval": since(t), "iterations": summary["iterations"],
                      "truth_rate": scores.get("truth_rate"), "Bleu_4": scores.get("Bleu_4"),
                      "CIDEr": scores.get("CIDEr")}
        print(name, json.dumps(rows[name]), flush=True)
    with open(a.json, "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
