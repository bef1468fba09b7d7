"""Attention vs the pooled LSTM on the shapes data: truth by caption kind, attention precision.

Trains two models with the demo's training settings (rnncap.config.DEMO: Adam 4e-3, decay 0.8
per epoch, minibatches of 64, clipping at 5, seed 0), one epoch at a time (each epoch a
`--resume` of the run, which continues bit for bit), and after every epoch decodes the test
split greedily and with beam 3 and records:

- the training CPU seconds so far (`time.process_time()` around the training calls only; one
  BLAS thread; no per-epoch validation);
- the truth rate overall, by caption kind (benchmarks/studies/diagnose.caption_kind) and by
  number of objects in the image;
- for the attention model, attention precision (rnncap.data.precision) of every colour or shape
  word, by caption kind and number of objects.

Models: `lstm` is the demo's (LSTM, H 256, W 128, pooled 512-d features at every step); `attention`
is AttentionCaptioner (H 256, W 128, A 128, no doubly stochastic penalty) on the built-in
extractor's 3x3 grid with position features (9 x 271).

    OPENBLAS_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/studies/attention_study.py \
        --data /tmp/attention-study/cache/shapes --out /tmp/attention-study --epochs 5

Writes OUT/attention_study.json; `attention_study.py --tables FILE.json...` prints the
markdown tables docs/results.md quotes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from diagnose import caption_kind  # noqa: E402

from rnncap import run  # noqa: E402
from rnncap.config import DEMO, with_overrides  # noqa: E402
from rnncap.data.precision import word_precisions  # noqa: E402
from rnncap.evaluate import DecodeOptions, decode_features  # noqa: E402
from rnncap.metrics import caption_is_true  # noqa: E402

MODELS = {
    "lstm": {},
    "attention": {"kind": "attention", "attention_dim": 128},
}


def _summary(rows, key):
    """Mean of `key` over rows grouped by caption kind and by objects in the image."""
    out = {}
    for group in ("kind", "n_objects_image"):
        by = defaultdict(list)
        for r in rows:
            by[str(r[group])].append(r[key])
        out[group] = {k: {"n": len(v), "mean": float(np.mean(v))} for k, v in sorted(by.items())}
    out["all"] = {"n": len(rows), "mean": float(np.mean([r[key] for r in rows])) if rows else None}
    return out


def score(model, vocab, data, method, attention):
    """Decode the test split; truth and (attention) precision records."""
    feats = data["test_features"]
    truths = data["test_truth"]
    opts = DecodeOptions(method, beam_size=3, max_length=16)
    t0 = time.process_time()
    tokens = decode_features(model, feats, opts)
    decode_cpu = time.process_time() - t0
    captions = vocab.decode_clean(tokens)
    rows, words_rows = [], []
    if attention:
        from rnncap.attention_maps import word_attention

        maps = word_attention(model, vocab, feats, tokens)
    for i, cap in enumerate(captions):
        kind = caption_kind(cap)
        rows.append({"kind": kind, "n_objects_image": len(truths[i]),
                     "true": float(caption_is_true(cap, truths[i]))})
        if attention:
            words, weights = maps[i]
            for p in word_precisions(words, weights, truths[i]):
                if p["n_objects"] == 1:  # unambiguous words only
                    words_rows.append({"kind": kind, "n_objects_image": len(truths[i]),
                                       "precision": p["precision"],
                                       "above_half": float(p["precision"] > 0.5)})
    result = {"truth": _summary(rows, "true"), "decode_cpu_s": round(decode_cpu, 2),
              "captions": captions}
    if attention:
        result["precision"] = _summary(words_rows, "precision")
        result["precision_above_half"] = _summary(words_rows, "above_half")
    return result


KINDS = ("one object", "one object with place", "list", "list with place", "relation", "count")


def tables(paths):
    """Markdown tables of attention_study.json files; an argument LABEL=PATH renames the
    models of that file to LABEL (for two runs of the same model)."""
    results = {}
    for arg in paths:
        label, _, path = arg.rpartition("=")
        for name, r in json.loads(Path(path).read_text()).items():
            results[label or name] = r
    lines = ["| model | epoch | train CPU s | method | truth | " + " | ".join(KINDS)
             + " | 1-object images | 2-object images |",
             "|---" * (7 + len(KINDS)) + "|"]
    for name, r in results.items():
        for e in r["epochs"]:
            for method in ("greedy", "beam"):
                t = e[method]["truth"]
                kinds = [t["kind"].get(k) for k in KINDS]
                cells = [f"{k['mean']:.3f} ({k['n']})" if k else "–" for k in kinds]
                objs = [t["n_objects_image"].get(str(n)) for n in (1, 2)]
                cells += [f"{o['mean']:.3f}" if o else "–" for o in objs]
                lines.append(f"| {name} | {e['epoch']} | {e['train_cpu_s']:.0f} | "
                             f"{'beam-3' if method == 'beam' else method} | "
                             f"{t['all']['mean']:.3f} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    print()
    lines = ["| model | epoch | method | precision, all words | share above 0.5 | 1-object images | "
             "2-object images | " + " | ".join(KINDS) + " |", "|---" * (7 + len(KINDS)) + "|"]
    rows = [(name, e) for name, r in results.items() for e in r["epochs"] if "precision" in e["greedy"]]
    for name, e in rows:
        for method in ("greedy", "beam"):
            pr, ab = e[method]["precision"], e[method]["precision_above_half"]
            objs = [pr["n_objects_image"].get(str(n)) for n in (1, 2)]
            objs_ab = [ab["n_objects_image"].get(str(n)) for n in (1, 2)]
            kinds = [pr["kind"].get(k) for k in KINDS]
            lines.append(
                f"| {name} | {e['epoch']} | {'beam-3' if method == 'beam' else method} | "
                f"{pr['all']['mean']:.3f} ({pr['all']['n']} words) | {ab['all']['mean']:.3f} | "
                + " | ".join(f"{o['mean']:.3f} ({a['mean']:.2f} > 0.5)" if o else "–"
                             for o, a in zip(objs, objs_ab)) + " | "
                + " | ".join(f"{k['mean']:.3f}" if k else "–" for k in kinds) + " |")
    print("\n".join(lines))


def main():
    if sys.argv[1:2] == ["--tables"]:
        return tables(sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="shapes cache folder")
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--models", default="lstm,attention")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "attention_study.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for name in a.models.split(","):
        config = with_overrides(DEMO, {"data": {"path": a.data}, "model": MODELS[name],
                                       "train": {"val_images": 0, "keep_checkpoints": 1,
                                                 "num_epochs": a.epochs}})
        data = run.load_run_data(config, progress=False)
        run_dir = out / name
        records, cpu = [], 0.0
        for epoch in range(1, a.epochs + 1):
            t0 = time.process_time()
            summary = run.train(config if epoch == 1 else None, run_dir, resume=epoch > 1,
                                num_epochs=epoch, data=data, progress=False)
            cpu += time.process_time() - t0
            rec = {"epoch": epoch, "train_cpu_s": round(cpu, 1), "iterations": summary["iterations"],
                   "train_loss": summary["final_train_loss"]}
            model, vocab = summary["model"], summary["vocab"]
            for method in ("greedy", "beam"):
                rec[method] = score(model, vocab, data, method, name == "attention")
            records.append(rec)
            g = rec["greedy"]["truth"]["all"]["mean"]
            b = rec["beam"]["truth"]["all"]["mean"]
            extra = ""
            if name == "attention":
                extra = f"  precision {rec['greedy']['precision']['all']['mean']:.3f}"
            print(f"{name} epoch {epoch}: train CPU {cpu:.0f} s  truth greedy {g:.3f} beam-3 {b:.3f}{extra}",
                  flush=True)
            results[name] = {"config": config.model.__dict__, "epochs": records}
            tmp = results_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(results, indent=1))
            os.replace(tmp, results_path)


if __name__ == "__main__":
    main()
