"""Study 2's numbers: a word-level against a character-level captioner (docs/word-vs-character.md).

Given the two run folders (each already scored by `rnncap evaluate ... --split test`), this prints:
parameter counts (embedding, output layer, total), vocabulary sizes and sequence lengths, CPU time
per training step (from step_time.py's JSON) and per caption decoded (measured here: greedy and
beam 3 over the test images, `time.process_time` with one BLAS thread), the scores from the eval
JSONs, and the errors: mistake kinds (diagnose.py), non-words in the character model's captions
(words not in the word model's training vocabulary), number agreement between a determiner or
number and its noun, and how often the first and the second noun phrase of a caption names
attributes no object has (the second one sits ~40 characters or ~6 words after the first).

    OPENBLAS_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/studies/analyze_char.py \
        --word /tmp/studies/lstm --char /tmp/studies/char --step-time /tmp/studies/step_time.json

This script trains nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from analyze_results import load_truth, noun_phrase_error_rate  # noqa: E402
from diagnose import caption_kind, diagnose  # noqa: E402

from rnncap.atomic import write_text as write_text_atomic  # noqa: E402
from rnncap.data.shapes import NUMBERS, OBJECT_WORDS, PICTURE_WORDS, SHAPES  # noqa: E402

SINGULAR = set(SHAPES) | set(OBJECT_WORDS) | set(PICTURE_WORDS)
PLURAL = {w + "s" for w in SINGULAR}
PLURAL_DETERMINERS = set(NUMBERS[2:])
SINGULAR_DETERMINERS = {"a", "an", "one"}


def agreement_errors(caption: str) -> list[str]:
    """Determiner-noun number mismatches: 'a ... circles', 'two ... circle', 'there are a ...'."""
    words = caption.split()
    errors = []
    for i, w in enumerate(words):
        if w in SINGULAR_DETERMINERS or w in PLURAL_DETERMINERS:
            noun = next((x for x in words[i + 1:] if x in SINGULAR or x in PLURAL), None)
            if noun is None:
                continue
            if (w in SINGULAR_DETERMINERS) != (noun in SINGULAR):
                errors.append(f"{w} ... {noun}")
    if words[:2] == ["there", "are"] and len(words) > 2 and words[2] in SINGULAR_DETERMINERS:
        errors.append(f"there are {words[2]}")
    if words[:2] == ["there", "is"] and len(words) > 2 and words[2] in PLURAL_DETERMINERS:
        errors.append(f"there is {words[2]}")
    return errors


def decode_cpu(restored, features, method: str, beam_size: int = 3) -> tuple[float, np.ndarray]:
    """CPU seconds to decode `features` (all at once, in the evaluator's batches of 500)."""
    from rnncap.evaluate import DecodeOptions, decode_features

    opts = DecodeOptions(method, beam_size, 0.0, restored.max_length)
    decode_features(restored.model, features[:50], opts)  # warm-up
    t0 = time.process_time()
    tokens = decode_features(restored.model, features, opts)
    return time.process_time() - t0, tokens


def model_summary(restored) -> dict:
    p = {k: int(v.size) for k, v in restored.model.params.items()}
    return {"V": len(restored.vocab), "T": restored.max_length + 1,
            "embedding": p["W_embed"], "output": p["W_vocab"] + p["b_vocab"],
            "recurrent": p["Wx"] + p["Wh"] + p["b"], "total": sum(p.values()), "params": p}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--word", required=True)
    ap.add_argument("--char", required=True)
    ap.add_argument("--step-time", required=True)
    ap.add_argument("--data", default="/tmp/demo/cache/shapes")
    ap.add_argument("--json", help="write the results to this JSON file")
    a = ap.parse_args()

    from rnncap.data import load_data
    from rnncap.run import restore

    truth = load_truth(a.data)
    data = load_data(a.data, "shapes")
    features = data["test_features"]
    train_words = set(data["vocab"].idx_to_word)
    from rnncap.data.vocab import tokenize

    train_captions = {" ".join(tokenize(c)) for refs in data["train_references"] for c in refs}
    longest_train = max(len(c) for c in train_captions)
    with open(a.step_time) as f:
        step = json.load(f)
    out = {}
    for level, run in (("word", a.word), ("char", a.char)):
        r = restore(run)
        res = model_summary(r)
        res["train_ms_per_step"] = 1e3 * step[level]["cpu_s_per_step"]
        for method in ("greedy", "beam"):
            cpu, tokens = decode_cpu(r, features, method)
            name = "greedy" if method == "greedy" else "beam-3"
            res[f"decode_ms_per_caption_{name}"] = 1e3 * cpu / len(features)
            if method == "greedy":
                ends = (tokens == r.model.word_to_idx["<END>"]).any(axis=1)
                res["no_end_within_max_length"] = int((~ends).sum())
        with open(os.path.join(run, "eval-test-greedy.json")) as f:
            ev = json.load(f)
        res["scores"] = {k: ev["scores"].get(k) for k in ("truth_rate", "Bleu_1", "Bleu_4", "METEOR",
                                                            "ROUGE_L", "CIDEr", "num_images")}
        caps = [x["caption"] for x in ev["images"]]
        objs = [truth[os.path.basename(x["file"])] for x in ev["images"]]
        res["errors"] = dict(Counter(diagnose(c, o) for c, o in zip(caps, objs)).most_common())
        res["kinds"] = dict(Counter(caption_kind(c) for c in caps).most_common())
        words = [w for c in caps for w in c.split()]
        nonwords = Counter(w for w in words if w not in train_words)
        res["words"] = len(words)
        res["nonword_tokens"] = sum(nonwords.values())
        res["captions_with_nonword"] = sum(any(w not in train_words for w in c.split()) for c in caps)
        res["nonwords_top"] = nonwords.most_common(15)
        res["nonword_only_in_last_word"] = sum(
            all(w in train_words for w in c.split()[:-1])
            for c in caps if c.split() and c.split()[-1] not in train_words)
        res["longest_train_caption_chars"] = longest_train
        res["captions_longer_than_any_train_caption"] = sum(len(c) > longest_train for c in caps)
        res["captions_not_in_train_set"] = sum(c not in train_captions for c in caps)
        res["there_is_list_blends"] = sum(c.startswith("there is") and " and " in c for c in caps)
        res["train_there_is_list_blends"] = sum(c.startswith("there is") and " and " in c
                                                for c in train_captions)
        res["nonword_examples"] = [c for c in caps if any(w not in train_words for w in c.split())][:8]
        agree = [agreement_errors(c) for c in caps]
        res["captions_with_agreement_error"] = sum(bool(e) for e in agree)
        res["agreement_top"] = Counter(e for es in agree for e in es).most_common(8)
        res["agreement_examples"] = [c for c, e in zip(caps, agree) if e][:6]
        res["np_attribute_error_rate"] = noun_phrase_error_rate(caps, objs)
        res["mean_chars"] = float(np.mean([len(c) for c in caps]))
        res["mean_words"] = float(np.mean([len(c.split()) for c in caps]))
        res["distinct"] = len(set(caps))
        res["examples"] = caps[:10]
        out[level] = res
        print(f"== {level}: {run}")
        for k, v in res.items():
            if k != "params":
                print(f"  {k}: {v}")
    if a.json:
        write_text_atomic(a.json, json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
