"""Do the built-in extractor's features say each object's shape? Linear probes per extractor setting.

Issue 12's remaining wrong-shape captions are nearly all about small objects. This study asks
whether the features still carry the shape: for each setting of the built-in extractor given
with --options (JSON, RandomConvExtractor's keyword options), it featurises the first --train
training pictures and the test pictures of a shapes dataset folder, fits the extractor's PCA on
those training pictures, and scores `rnncap.data.probe.linear_probe` (a ridge classifier per
grid cell) on the test pictures. It prints, per setting, the probe accuracies with the number
of objects each task gets wrong, and the extraction's CPU milliseconds per picture
(`time.process_time`, this process).

    OPENBLAS_NUM_THREADS=1 python benchmarks/studies/feature_probe.py DATASET_FOLDER \
        --options '{}' --options '{"stride": 1}'

DATASET_FOLDER is a generated shapes folder (holding dataset.json), e.g. one that
`benchmarks/studies/truth_recipe.py` or `rnncap demo` made under its cache.

This script knows file paths and the probe's public calls, not models or captions.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rnncap.data.features import extract_files, make_extractor
from rnncap.data.probe import linear_probe


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("dataset", type=Path, help="a shapes dataset folder (with dataset.json)")
    p.add_argument("--options", action="append", default=[],
                   help="JSON keyword options of the built-in extractor (repeat for more rows)")
    p.add_argument("--train", type=int, default=6000, help="training pictures to fit on")
    a = p.parse_args()
    images = json.loads((a.dataset / "dataset.json").read_text())["images"]
    train = [im for im in images if im["split"] == "train"][:a.train]
    test = [im for im in images if im["split"] == "test"]
    path = lambda im: str(a.dataset / im["filepath"] / im["filename"])  # noqa: E731
    for text in a.options or ["{}"]:
        options = json.loads(text)
        extractor = make_extractor("randconv", **options)
        c0 = time.process_time()
        raw_train = extract_files(extractor, [path(im) for im in train], raw=True)
        raw_test = extract_files(extractor, [path(im) for im in test], raw=True)
        ms = 1000 * (time.process_time() - c0) / (len(train) + len(test))
        extractor.fit(raw_train)
        result = linear_probe(extractor.transform(raw_train), [im["objects"] for im in train],
                              extractor.transform(raw_test), [im["objects"] for im in test])
        cells = ", ".join(f"{task} {r['accuracy']:.4f} ({round((1 - r['accuracy']) * r['n'])} "
                          f"wrong of {r['n']})" for task, r in result.items())
        print(f"{json.dumps(options)}: {ms:.2f} CPU ms per picture; {cells}", flush=True)


if __name__ == "__main__":
    main()
