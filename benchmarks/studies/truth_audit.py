"""Audit the shapes truth check (rnncap.data.truth) against an independent second check.

The second check is tests/data/truth_oracle.py: it enumerates every sentence of the shapes
captions' language that is true of a scene, where truth.py parses the caption. This script runs
both and prints how often they disagree, with every disagreement (docs/truth-check.md):

1. generated: captions the generator writes for fresh scenes (seed 12, split code 7, so none is
   a dataset image), all of which should be true; every one-word change of a colour, size,
   shape, number, relation or place in them; the same captions judged against the scene
   with one attribute swapped between its two objects; and captions a model might say that
   the generator never writes: every cut, one word dropped, doubled, swapped with the next or
   made <UNK>, and five random insertions of a dataset word per caption;
2. stored (with --stored): the captions of the earlier studies (benchmarks/studies/out/
   captions.json: word- and character-level models, greedy and beam search);
3. demo (with --eval): a model's captions from an `rnncap evaluate` JSON (for `make demo`:
   runs/demo/eval-test-greedy.json), judged against the ground truth in the shapes
   dataset.json (found under --data, matched by file name).

    .venv/bin/python benchmarks/studies/truth_audit.py --captions 2000 \
        --stored benchmarks/studies/out/captions.json \
        --eval runs/demo/eval-test-greedy.json --data .cache/rnncap

`--check FILE` audits another version of the check (a truth.py taken from git history) instead.

It decodes and trains nothing; it takes about 10 CPU seconds.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import sys
from collections import Counter

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "data"))
from truth_oracle import is_true, malformations, scene_swaps, word_substitutions  # noqa: E402

from rnncap.data.shapes import make_captions, sample_scene  # noqa: E402
import rnncap.data.truth  # noqa: E402

check_caption = rnncap.data.truth.check_caption


class Tally:
    """Counts of one comparison: checked, true by each check, and the disagreements."""

    def __init__(self, name):
        self.name, self.n, self.oracle, self.truth, self.diff = name, 0, 0, 0, []

    def add(self, caption, objects, label=""):
        o = is_true(caption, objects)
        t, why = check_caption(caption, objects)
        self.n += 1
        self.oracle += o
        self.truth += t
        if o != t:
            self.diff.append((label, caption, objects, o, why))

    def report(self, show):
        print(f"{self.name:<34} {self.n:>7} checked  oracle true {self.oracle:>6}  "
              f"truth.py true {self.truth:>6}  disagree {len(self.diff):>4} "
              f"({len(self.diff) / max(self.n, 1):.2%})")
        kinds = Counter(label for label, *_ in self.diff)
        if kinds:
            print("    by kind: " + ", ".join(f"{k or '-'} {v}" for k, v in kinds.most_common()))
        for label, caption, objects, o, why in self.diff[:show]:
            scene = "; ".join(f"{x['size']} {x['colour']} {x['shape']} at ({x['row']},{x['col']})"
                              for x in objects)
            print(f"    [{label}] {caption!r}  oracle={o}  truth.py={not o} ({why})\n"
                  f"        scene: {scene}")


def generated(n_captions, min_objects, max_objects, show):
    plain, words, swaps, broken, inserted = (
        Tally("generated captions"), Tally("one-word changes"),
        Tally("scene with a swapped attribute"), Tally("cut, dropped, doubled, swapped, <UNK>"),
        Tally("a word inserted (5 per caption)"))
    vocabulary = sorted({w for i in range(200) for c in make_captions(
        sample_scene(np.random.default_rng([12, 9, i]), 64, 1, 2)[1],
        np.random.default_rng([12, 10, i]), 5) for w in c.replace(",", "").split()})
    pick = np.random.default_rng([12, 11])
    i = 0
    while plain.n < n_captions:
        rng = np.random.default_rng([12, 7, i])
        _, objects = sample_scene(rng, 64, min_objects, max_objects)
        for caption in make_captions(objects, rng, 5)[:n_captions - plain.n]:
            plain.add(caption, objects)
            for kind, changed in word_substitutions(caption):
                words.add(changed, objects, kind)
            for kind, scene in scene_swaps(objects):
                swaps.add(caption, scene, kind)
            for kind, changed in malformations(caption):
                broken.add(changed, objects, kind)
            w = caption.replace(",", "").split()
            for _ in range(5):
                at, new = int(pick.integers(len(w) + 1)), vocabulary[pick.integers(len(vocabulary))]
                inserted.add(" ".join(w[:at] + [new] + w[at:]), objects, new)
        i += 1
    print(f"generated: {i} scenes of {min_objects}..{max_objects} objects")
    print(f"vocabulary for insertions: {len(vocabulary)} words")
    for t in (plain, words, swaps, broken, inserted):
        t.report(show)
    return plain, words, swaps, broken, inserted


def demo(eval_path, data_dir, show):
    with open(eval_path) as f:
        records = json.load(f)["images"]
    paths = glob.glob(os.path.join(data_dir, "**", "dataset.json"), recursive=True)
    truth = {}
    for path in paths:
        with open(path) as f:
            for im in json.load(f)["images"]:
                truth.setdefault(im["filename"], []).append(im["objects"])
    tally = Tally(f"model captions ({os.path.basename(eval_path)})")
    recorded = 0
    for rec in records:
        scenes = truth.get(os.path.basename(rec["file"]))
        if not scenes or any(s != scenes[0] for s in scenes):
            raise SystemExit(f"no single ground truth for {rec['file']} under {data_dir}")
        tally.add(rec["caption"], scenes[0])
        recorded += rec.get("true", False)
    print(f"demo: {len(records)} images; the eval file's own verdicts: {recorded} true")
    tally.report(show)
    return tally


def stored(path, show):
    """The captions of earlier studies (benchmarks/studies/out/captions.json: run -> decoding ->
    1,000 test captions of the default shapes data, in image order), against scenes regenerated
    from the generator's seed. The file's own truth_rate is printed beside both checks."""
    with open(path) as f:
        runs = json.load(f)
    scenes = []
    for i in range(1000):
        rng = np.random.default_rng([0, 2, i])  # seed 0, split code 2 = test, image i
        scenes.append(sample_scene(rng, 64, 1, 2)[1])
    tallies = []
    for run, methods in runs.items():
        for method, res in methods.items():
            tally = Tally(f"{run} {method}")
            for caption, objects in zip(res["captions"], scenes, strict=True):
                tally.add(caption, objects)
            print(f"{run} {method}: the file's truth_rate {res['scores']['truth_rate']:.3f}")
            tally.report(show)
            tallies.append(tally)
    return tallies


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--captions", type=int, default=2000, help="generated captions to check")
    p.add_argument("--min-objects", type=int, default=1)
    p.add_argument("--max-objects", type=int, default=2)
    p.add_argument("--eval", help="an `rnncap evaluate` JSON whose captions to check")
    p.add_argument("--data", default=".cache/rnncap", help="folder holding the shapes dataset.json")
    p.add_argument("--stored", help="a captions.json of earlier studies to check as well "
                   "(benchmarks/studies/out/captions.json)")
    p.add_argument("--show", type=int, default=20, help="disagreements to print per comparison")
    p.add_argument("--check", help="a .py file whose check_caption to audit instead of "
                   "rnncap.data.truth's (e.g. an older truth.py, from `git show`)")
    args = p.parse_args(argv)
    if args.check:
        global check_caption
        spec = importlib.util.spec_from_file_location("truth_under_audit", args.check)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        check_caption = module.check_caption
        print(f"auditing check_caption from {args.check}")
    generated(args.captions, args.min_objects, args.max_objects, args.show)
    if args.eval:
        demo(args.eval, args.data, args.show)
    if args.stored:
        tallies = stored(args.stored, args.show)
        print(f"stored captions, all runs: {sum(t.n for t in tallies)} checked, "
              f"disagree {sum(len(t.diff) for t in tallies)}")


if __name__ == "__main__":
    main()
