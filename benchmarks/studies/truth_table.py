"""The markdown tables of docs/results.md's demo-recipe section, from truth_recipe.py's JSON files.

    .venv/bin/python benchmarks/studies/truth_table.py base pt-cos ... [--decoding greedy,beam-5]

One row per experiment and decoding: test truth, truth by caption kind (true / captions of that
kind: one object, one object with a place, a list, a list with places, a relation, a count),
truth on the one- and two-object pictures, and the CPU seconds of data, training and decoding.
A second table counts the false captions by their first mistake (diagnose.py).

This script knows the JSON files only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).parent / "out" / "truth"
KINDS = ("one object", "one object with place", "list", "list with place", "relation", "count")


def cell(d):
    return f"{d['true']}/{d['n']}" if d and d["n"] else "–"


def main(names, decodings=None):
    rows, mistakes = [], []
    head = ("| experiment | decoding | truth | " + " | ".join(KINDS)
            + " | 1-object pictures | 2-object pictures | CPU s: data / train / decode |")
    rows += [head, "|" + "---|" * (head.count("|") - 1)]
    keys = set()
    for name in names:
        r = json.loads((OUT / f"{name}.json").read_text())
        for dec, res in r["results"].items():
            if decodings and dec not in decodings:
                continue
            rows.append(f"| {name} | {dec} | **{res['truth']:.3f}** | "
                        + " | ".join(cell(res["by_kind"].get(k)) for k in KINDS)
                        + f" | {cell(res['by_objects'].get('1'))} | {cell(res['by_objects'].get('2'))}"
                        + f" | {r['data_cpu_s']:.0f} / {r['train_cpu_s']:.0f} / {res['decode_cpu_s']:.1f} |")
            mistakes.append((name, dec, res["mistakes"]))
            keys |= set(res["mistakes"])
    print("\n".join(rows))
    print()
    keys = sorted(keys)
    print("| experiment | decoding | " + " | ".join(keys) + " |")
    print("|" + "---|" * (len(keys) + 2))
    for name, dec, m in mistakes:
        print(f"| {name} | {dec} | " + " | ".join(str(m.get(k, 0)) for k in keys) + " |")


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("names", nargs="+", help="experiment names (their JSON files in out/truth)")
    p.add_argument("--decoding", default=None,
                   help="comma-separated decodings to show (default: every one in the files)")
    a = p.parse_args()
    main(a.names, a.decoding.split(",") if a.decoding else None)
