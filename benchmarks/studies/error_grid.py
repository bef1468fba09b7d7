"""The demo's remaining false captions as pictures: a PNG grid for docs/results.md.

Reads an experiment's JSON written by `truth_recipe.py --keep-captions` (the test captions of one
decoding) and the shapes dataset it was trained on, and draws every false caption (up to
--max) under its picture, with the truth check's reason and the first-mistake label of
`diagnose.py`. Pictures are the dataset's own PNGs, scaled up without smoothing.

    .venv/bin/python benchmarks/studies/error_grid.py \
        benchmarks/studies/out/truth/final.json --decoding beam-5 --out docs/img/demo-errors.png --max 32

It also prints how often the captions of two-object pictures are false when both objects have
one colour, and when they have two. This script knows JSON, PNGs and the truth check; not models.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, os.path.dirname(__file__))

from diagnose import diagnose  # noqa: E402

from rnncap.data import check_caption, load_data  # noqa: E402
from rnncap.evaluate import split_images  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("result", help="truth_recipe.py JSON (with --keep-captions)")
    p.add_argument("--decoding", default="greedy", help="which decoding's captions: greedy, beam-5...")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--max", type=int, default=24, help="at most this many pictures")
    p.add_argument("--cols", type=int, default=4)
    a = p.parse_args()

    res = json.loads(Path(a.result).read_text())
    opts = {"num_train": res["num_train_images"]}
    data = load_data(res["config"]["data"]["path"], "shapes", **opts)
    split = res["split"]
    images = split_images(data, split)
    captions = res["results"][a.decoding]["captions"]
    wrong = []
    for k, caption in enumerate(captions):
        objects = data[f"{split}_truth"][images[k]]
        ok, reason = check_caption(caption, objects)
        if not ok:
            wrong.append((images[k], caption, diagnose(caption, objects), reason))
    print(f"{len(wrong)} false captions of {len(captions)}; drawing {min(len(wrong), a.max)}")
    # two-object pictures whose objects share a colour against the others: n, false
    pairs = {True: [0, 0], False: [0, 0]}
    for k, caption in enumerate(captions):
        objects = data[f"{split}_truth"][images[k]]
        if len(objects) == 2:
            same = pairs[objects[0]["colour"] == objects[1]["colour"]]
            same[0] += 1
            same[1] += not check_caption(caption, objects)[0]
    print(f"two objects of one colour: {pairs[True][1]} of {pairs[True][0]} false; "
          f"of two colours: {pairs[False][1]} of {pairs[False][0]} false")
    wrong = wrong[:a.max]

    scale, text_h, cell_w = 2, 66, 240
    side = 64 * scale
    font = ImageFont.load_default(size=11)
    rows = (len(wrong) + a.cols - 1) // a.cols
    sheet = Image.new("RGB", (a.cols * cell_w, max(rows, 1) * (side + text_h)), "white")
    draw = ImageDraw.Draw(sheet)
    files = data[f"{split}_image_files"]
    for n, (i, caption, label, reason) in enumerate(wrong):
        x, y = (n % a.cols) * cell_w, (n // a.cols) * (side + text_h)
        im = Image.open(files[i]).convert("RGB").resize((side, side), Image.NEAREST)
        sheet.paste(im, (x + (cell_w - side) // 2, y))
        lines = textwrap.wrap(caption, 40)[:3] + [f"[{label}]"]
        for j, line in enumerate(lines):
            draw.text((x + 6, y + side + 2 + 13 * j), line, fill="black" if j < len(lines) - 1
                      else (170, 0, 0), font=font)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.png")
    sheet.save(tmp, optimize=True)
    os.replace(tmp, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
