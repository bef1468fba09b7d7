"""Study 1's tables, from the eval JSONs `rnncap evaluate` wrote (docs/results.md).

For each run folder and each decoding method found (eval-test-greedy.json, eval-test-beam-3.json,
eval-test-beam-5.json): the scores; the template kinds the captions use and how often each kind is
true; the kinds of mistakes (benchmarks/studies/diagnose.py); how many captions beam search
changes relative to greedy; caption length and the number of distinct captions; how many captions
were cut at the decoding limit (max_length tokens with no <END>: the caption string has exactly
max_length words, or characters for a character-level run, since <END> is never printed).

    .venv/bin/python benchmarks/studies/analyze_results.py --runs /tmp/studies/lstm /tmp/studies/rnn

The ground truth comes from the shapes dataset.json (each image's "objects"), matched to the
records by file name. This script decodes and trains nothing.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from diagnose import caption_kind, diagnose  # noqa: E402

from rnncap.atomic import write_text as write_text_atomic  # noqa: E402

METHODS = ("greedy", "beam-3", "beam-5")
SCORES = ("truth_rate", "Bleu_1", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")


def load_truth(data_dir: str) -> dict:
    """file name -> ground-truth objects, from the shapes dataset.json under data_dir."""
    paths = glob.glob(os.path.join(data_dir, "**", "dataset.json"), recursive=True)
    if len(paths) != 1:
        raise SystemExit(f"expected one dataset.json under {data_dir}, found {paths}")
    with open(paths[0]) as f:
        images = json.load(f)["images"]
    return {im["filename"]: im["objects"] for im in images if im["split"] == "test"}


def cut_at_limit(run: str):
    """A function caption -> whether it was cut at the run's max_length (read from its checkpoint)."""
    from rnncap.run import restore

    r = restore(run)
    tokens = (lambda c: c.split()) if r.vocab.level == "word" else list
    return lambda caption: len(tokens(caption)) == r.max_length


def analyze(run: str, truth: dict) -> dict:
    out = {}
    is_cut = cut_at_limit(run)
    for method in METHODS:
        path = os.path.join(run, f"eval-test-{method}.json")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            ev = json.load(f)
        recs = ev["images"]
        objs = [truth[os.path.basename(r["file"])] for r in recs]
        caps = [r["caption"] for r in recs]
        kinds = [caption_kind(c) for c in caps]
        verdicts = [diagnose(c, o) for c, o in zip(caps, objs)]
        assert all((v == "true") == r["true"] for v, r in zip(verdicts, recs)), "truth check disagrees"
        by_kind = {}
        for k in sorted(set(kinds)):
            idx = [i for i, x in enumerate(kinds) if x == k]
            by_kind[k] = {"n": len(idx), "true": sum(verdicts[i] == "true" for i in idx)}
        by_objects = {}
        for n in sorted({len(o) for o in objs}):
            idx = [i for i, o in enumerate(objs) if len(o) == n]
            by_objects[n] = {"n": len(idx), "true": sum(verdicts[i] == "true" for i in idx)}
        out[method] = {
            "scores": {k: ev["scores"].get(k) for k in SCORES + ("num_images", "eval_s")},
            "captions": caps,
            "true": "".join("1" if v == "true" else "0" for v in verdicts),
            "by_kind": by_kind,
            "by_objects": by_objects,
            "errors": dict(Counter(v for v in verdicts if v != "true").most_common()),
            "mean_words": sum(len(c.split()) for c in caps) / len(caps),
            "distinct": len(set(caps)),
            "cut_at_max_length": [c for c in caps if is_cut(c)],
            "examples": {v: next((c, o) for c, o, x in zip(caps, objs, verdicts) if x == v)
                         for v in set(verdicts) if v != "true"},
        }
    if "greedy" in out:
        for m in METHODS[1:]:
            if m in out:
                out[m]["changed_vs_greedy"] = sum(a != b for a, b in zip(out[m]["captions"],
                                                                         out["greedy"]["captions"]))
    return out


def fmt(x, digits=3):
    return "—" if x is None else f"{x:.{digits}f}"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", nargs="+", required=True)
    p.add_argument("--data", default="/tmp/demo/cache/shapes")
    p.add_argument("--json", help="write everything (minus the caption lists) to this JSON file")
    p.add_argument("--captions", help="write the scores and every caption with its truth verdict "
                                      "(the eval JSONs without their references) to this JSON file")
    a = p.parse_args()
    truth = load_truth(a.data)
    results = {os.path.basename(r.rstrip("/")): analyze(r, truth) for r in a.runs}

    print("| model | decoding | images | truth | BLEU-1 | BLEU-4 | METEOR | ROUGE-L | CIDEr "
          "| words/caption | distinct | changed vs greedy | cut at max_length |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for run, res in results.items():
        for m, r in res.items():
            s = r["scores"]
            print(f"| {run} | {m} | {s['num_images']} | {fmt(s['truth_rate'])} | {fmt(s['Bleu_1'])} | "
                  f"{fmt(s['Bleu_4'])} | {fmt(s['METEOR'])} | {fmt(s['ROUGE_L'])} | {fmt(s['CIDEr'])} | "
                  f"{r['mean_words']:.1f} | {r['distinct']} | {r.get('changed_vs_greedy', '—')} | "
                  f"{len(r['cut_at_max_length'])} |")
    print()
    for run, res in results.items():
        for m, r in res.items():
            kinds = ", ".join(f"{k} {v['n']} ({v['true'] / v['n']:.0%} true)" for k, v in r["by_kind"].items())
            objs = ", ".join(f"{n} object(s): {v['true'] / v['n']:.0%} true of {v['n']}"
                             for n, v in r["by_objects"].items())
            print(f"{run} {m}: kinds: {kinds}")
            print(f"{run} {m}: by image: {objs}")
            print(f"{run} {m}: errors: {r['errors']}")
            for c in r["cut_at_max_length"]:
                print(f"    cut at max_length: {c!r}")
            for v, (c, o) in sorted(r["examples"].items()):
                desc = "; ".join(f"{x['size']} {x['colour']} {x['shape']} at {x['row']},{x['col']}" for x in o)
                print(f"    {v}: {c!r}  [{desc}]")
        print()
    if a.captions:
        keep = {run: {m: {"scores": r["scores"], "captions": r["captions"], "true": r["true"]}
                      for m, r in res.items()} for run, res in results.items()}
        write_text_atomic(a.captions, json.dumps(keep, indent=0))
    if a.json:
        for res in results.values():
            for r in res.values():
                r.pop("captions")
                r.pop("true")
        write_text_atomic(a.json, json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
