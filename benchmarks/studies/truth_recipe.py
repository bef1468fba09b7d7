"""One demo-recipe experiment: train with the demo's code path, decode the test split, count truth.

Issue 12 asks which changes to the `rnncap demo` recipe make its captions true. Each call of this
script is one experiment: the DEMO preset (rnncap/config.py) with the overrides given as flags,
trained by `rnncap.run.train` (the demo's own code path: same data, model, solver, validation,
checkpoints), then the test split (or its first --limit images) decoded greedily and by beam
search, every caption checked by the truth check and sorted by the template kind it uses. The
result is one JSON file with CPU seconds (`time.process_time`, this process: independent of the
other jobs sharing the machine) for data, training and each decoding.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/studies/truth_recipe.py --name base \
        --cache /tmp/truth/cache
    ... --name cosine --set train.lr_schedule=cosine --set train.lr_decay=1.0

`--set part.field=value` takes JSON values (numbers, true/false) or plain strings; `--num-train N`
is `--set data.shapes_train_images=N`, how many training pictures the shapes generator makes (its
cache folder is keyed by it).

This script does not know the model's maths; it wires the library's public calls and counts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))

from diagnose import caption_kind, diagnose  # noqa: E402

from rnncap import config as cfg  # noqa: E402
from rnncap import run  # noqa: E402
from rnncap.evaluate import DecodeOptions, decode_features, split_images  # noqa: E402

OUT = Path(__file__).parent / "out" / "truth"


def parse_set(items):
    over: dict = {}
    for item in items:
        key, _, value = item.partition("=")
        part, _, name = key.partition(".")
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
        over.setdefault(part, {})[name] = value
    return over


def score(captions, truths):
    """Truth rate, truth by caption kind, and the first mistake of each false caption."""
    verdicts = [diagnose(c, t) for c, t in zip(captions, truths)]
    kinds = [caption_kind(c) for c in captions]
    by_kind = {}
    for k in sorted(set(kinds)):
        idx = [i for i, x in enumerate(kinds) if x == k]
        by_kind[k] = {"n": len(idx), "true": sum(verdicts[i] == "true" for i in idx)}
    by_objects = {}
    for n in sorted({len(t) for t in truths}):
        idx = [i for i, t in enumerate(truths) if len(t) == n]
        by_objects[str(n)] = {"n": len(idx), "true": sum(verdicts[i] == "true" for i in idx)}
    return {"truth": float(np.mean([v == "true" for v in verdicts])), "n": len(captions),
            "by_kind": by_kind, "by_objects": by_objects,
            "mistakes": dict(Counter(v for v in verdicts if v != "true"))}


def decode_and_score(model, vocab, data, split, limit, beams, keep):
    images = split_images(data, split, limit)
    truths = [data[f"{split}_truth"][i] for i in images]
    feats = data[f"{split}_features"][images]
    max_len = data["train_captions"].shape[1] - 1
    results = {}
    for method, k in [("greedy", 1)] + [("beam", b) for b in beams]:
        opt = DecodeOptions(method, beam_size=k, max_length=max_len)
        c0 = time.process_time()
        caps = vocab.decode_clean(decode_features(model, feats, opt))
        dec_cpu = time.process_time() - c0
        r = score(caps, truths)
        r["decode_cpu_s"] = round(dec_cpu, 1)
        if keep:
            r["captions"] = caps
        results[opt.name] = r
        print(f"{opt.name}: truth {r['truth']:.3f} on {r['n']} {split} images "
              f"(decode {dec_cpu:.1f} CPU s)", flush=True)
    return results


def rescore(a):
    path = OUT / f"{a.name}.json"
    out = json.loads(path.read_text())
    restored = run.restore(Path(a.runs) / a.name)
    config = restored.config
    if config.data.shapes_train_images is None and out["num_train_images"] != 10000:
        # a run made before the config had data.shapes_train_images: the count came beside it
        config = cfg.with_overrides(config, {"data": {"shapes_train_images": out["num_train_images"]}})
    data = run.load_run_data(config, progress=False)
    assert len(data["train_features"]) == out["num_train_images"]
    beams = [int(k.split("-")[1]) for k in out["results"] if k.startswith("beam-")]
    out["results"] = decode_and_score(restored.model, restored.vocab, data, out["split"],
                                      a.limit, beams, True)
    path.write_text(json.dumps(out, indent=1))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--name", required=True, help="experiment name: the JSON file and run folder")
    p.add_argument("--cache", default="/tmp/truth/cache", help="shapes cache folder")
    p.add_argument("--runs", default="/tmp/truth/runs", help="where run folders go")
    p.add_argument("--set", action="append", default=[], help="part.field=value override of DEMO")
    p.add_argument("--num-train", type=int, default=None,
                   help="shapes training pictures (sets data.shapes_train_images)")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=None, help="decode only the split's first N images")
    p.add_argument("--beam", type=int, action="append", default=[], help="beam sizes to decode with")
    p.add_argument("--keep-captions", action="store_true", help="store every caption in the JSON")
    p.add_argument("--rescore", action="store_true",
                   help="no training: decode the run folder's last checkpoint again and score it "
                        "with the current truth check, keeping the JSON's training figures")
    a = p.parse_args()
    if a.rescore:
        return rescore(a)

    config = cfg.with_overrides(cfg.DEMO, {"data": {"path": str(Path(a.cache) / "shapes")}})
    config = cfg.with_overrides(config, parse_set(a.set), "--set")
    if a.num_train is not None:
        config = cfg.with_overrides(config, {"data": {"shapes_train_images": a.num_train}})

    c0 = time.process_time()
    data = run.load_run_data(config, progress=False)
    data_cpu = time.process_time() - c0

    run_dir = Path(a.runs) / a.name
    if run_dir.exists():
        import shutil
        shutil.rmtree(run_dir)
    c0, w0 = time.process_time(), time.perf_counter()
    summary = run.train(config, run_dir, progress=False, data=data)
    train_cpu, train_wall = time.process_time() - c0, time.perf_counter() - w0
    model, vocab = summary["model"], summary["vocab"]
    history = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    val_curve = [h.get("val", {}).get("truth_rate") for h in history]

    results = decode_and_score(model, vocab, data, a.split, a.limit, a.beam, a.keep_captions)
    out = {"name": a.name, "argv": sys.argv[1:], "config": cfg.to_dict(config),
           "num_train_images": int(len(data["train_features"])),
           "train_captions": int(len(data["train_captions"])),
           "iterations": summary["iterations"], "data_cpu_s": round(data_cpu, 1),
           "train_cpu_s": round(train_cpu, 1), "train_wall_s": round(train_wall, 1),
           "val_truth_per_epoch": val_curve,
           "train_loss_per_epoch": [h["train_loss"] for h in history],
           "split": a.split, "results": results}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{a.name}.json").write_text(json.dumps(out, indent=1))
    print(f"{a.name}: train {train_cpu:.0f} CPU s ({train_wall:.0f} s wall), "
          f"val truth per epoch {val_curve}", flush=True)


if __name__ == "__main__":
    main()
