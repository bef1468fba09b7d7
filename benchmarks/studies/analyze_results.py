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

Without the run folders, `--stored benchmarks/studies/out/captions.json` (the file `--captions`
wrote) judges the stored captions again with the current truth check: the ground truth is
regenerated from the dataset's seed (scenes only, no pictures), the truth rate is recomputed
from the new verdicts, and the other scores are the stored ones. `--char-runs` names the
character-level runs, whose decoding limit is counted in characters.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from collections import Counter

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from diagnose import caption_kind, diagnose, noun_phrase_errors  # noqa: E402

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


def regenerated_test_scenes(n=1000, seed=0, min_objects=1, max_objects=2, image_size=64) -> list:
    """The default shapes data's test scenes, in image order, drawn as the generator draws them
    (image i of the test split from np.random.default_rng([seed, 2, i]))."""
    from rnncap.data.shapes import SPLITS, sample_scene

    code = SPLITS.index("test")
    return [sample_scene(np.random.default_rng([seed, code, i]), image_size, min_objects,
                         max_objects)[1] for i in range(n)]


def cut_at_limit(run: str):
    """A function caption -> whether it was cut at the run's max_length (read from its checkpoint)."""
    from rnncap.run import restore

    r = restore(run)
    tokens = (lambda c: c.split()) if r.vocab.level == "word" else list
    return lambda caption: len(tokens(caption)) == r.max_length


def evals_from_runs(run: str, truth: dict):
    """(method, scores, captions, ground truths, recorded verdicts) per eval JSON in a run folder."""
    for method in METHODS:
        path = os.path.join(run, f"eval-test-{method}.json")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            ev = json.load(f)
        recs = ev["images"]
        yield (method, ev["scores"], [r["caption"] for r in recs],
               [truth[os.path.basename(r["file"])] for r in recs], [r["true"] for r in recs])


def evals_from_stored(run: str, methods: dict, scenes: list):
    """The same, from one run's entry of a captions.json (captions in test-image order)."""
    for method, res in methods.items():
        if len(res["captions"]) != len(scenes):
            raise SystemExit(f"{run} {method}: {len(res['captions'])} captions, expected one per "
                             f"test image ({len(scenes)})")
        yield (method, res["scores"], res["captions"], scenes, [t == "1" for t in res["true"]])


def noun_phrase_error_rate(caps: list, objs: list) -> dict:
    """Share of first and second noun phrases (captions with two or more) that fit no object."""
    pos = {}
    for c, o in zip(caps, objs):
        errs = noun_phrase_errors(c, o)
        if errs and len(errs) >= 2:
            for i, e in enumerate(errs[:2]):
                pos.setdefault(i, []).append(e)
    return {f"noun phrase {i + 1}": [float(np.mean(v)), len(v)] for i, v in sorted(pos.items())}


def stored_cut(char_level: bool):
    """cut_at_limit for a stored run: the studies decoded up to 16 words or 81 characters."""
    return (lambda c: len(c) == 81) if char_level else (lambda c: len(c.split()) == 16)


def analyze(evals, is_cut, stored: bool = False) -> dict:
    out = {}
    for method, scores, caps, objs, recorded in evals:
        kinds = [caption_kind(c) for c in caps]
        verdicts = [diagnose(c, o) for c, o in zip(caps, objs)]
        changed = sum((v == "true") != r for v, r in zip(verdicts, recorded))
        if not stored:
            assert changed == 0, "truth check disagrees with the eval file"
        scores = dict(scores)
        if stored:  # the file's truth rate is that of the check that wrote it; recompute it
            scores["stored_truth_rate"] = scores["truth_rate"]
            scores["truth_rate"] = sum(v == "true" for v in verdicts) / len(verdicts)
        by_kind = {}
        for k in sorted(set(kinds)):
            idx = [i for i, x in enumerate(kinds) if x == k]
            by_kind[k] = {"n": len(idx), "true": sum(verdicts[i] == "true" for i in idx)}
        by_objects = {}
        for n in sorted({len(o) for o in objs}):
            idx = [i for i, o in enumerate(objs) if len(o) == n]
            by_objects[n] = {"n": len(idx), "true": sum(verdicts[i] == "true" for i in idx)}
        out[method] = {
            "scores": {k: scores.get(k) for k in SCORES + ("num_images", "eval_s")
                       + (("stored_truth_rate",) if stored else ())},
            "verdicts_changed": changed,
            "captions": caps,
            "true": "".join("1" if v == "true" else "0" for v in verdicts),
            "by_kind": by_kind,
            "by_objects": by_objects,
            "errors": dict(Counter(v for v in verdicts if v != "true").most_common()),
            "noun_phrase_error_rate": noun_phrase_error_rate(caps, objs),
            "mean_words": sum(len(c.split()) for c in caps) / len(caps),
            "distinct": len(set(caps)),
            "cut_at_max_length": [c for c in caps if is_cut(c)],
            "unparseable": [c for c, k in zip(caps, kinds) if k == "unparseable"],
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
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--runs", nargs="+", help="run folders holding eval-test-*.json")
    src.add_argument("--stored", help="a captions.json written by --captions, judged again")
    p.add_argument("--char-runs", nargs="*", default=[],
                   help="with --stored: the character-level runs (decoding limit 81 characters; "
                        "word-level runs: 16 words)")
    p.add_argument("--data", default="/tmp/demo/cache/shapes")
    p.add_argument("--json", help="write everything (minus the caption lists) to this JSON file")
    p.add_argument("--captions", help="write the scores and every caption with its truth verdict "
                                      "(the eval JSONs without their references) to this JSON file")
    a = p.parse_args()
    if a.stored:
        with open(a.stored) as f:
            stored = json.load(f)
        unknown = sorted(set(a.char_runs) - set(stored))
        if unknown:
            raise SystemExit(f"--char-runs: no run {unknown} in {a.stored} (runs: {sorted(stored)})")
        scenes = regenerated_test_scenes()
        results = {run: analyze(evals_from_stored(run, methods, scenes),
                                stored_cut(run in a.char_runs), stored=True)
                   for run, methods in stored.items()}
    else:
        truth = load_truth(a.data)
        results = {os.path.basename(r.rstrip("/")): analyze(evals_from_runs(r, truth), cut_at_limit(r))
                   for r in a.runs}

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
            nps = ", ".join(f"{k} {v[0]:.1%} of {v[1]}" for k, v in r["noun_phrase_error_rate"].items())
            print(f"{run} {m}: noun phrases fitting no object (captions with two): {nps}")
            if "stored_truth_rate" in r["scores"]:
                print(f"{run} {m}: verdicts changed from the stored ones: {r['verdicts_changed']} "
                      f"(stored truth rate {r['scores']['stored_truth_rate']:.3f})")
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
