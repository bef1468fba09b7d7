"""`rnncap features`: flags and summary for turning a dataset of image files into a features file.

The work is done by :mod:`rnncap.data.featurize`; this module parses the command's flags, prints
what was written and says how to train on it.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(sub) -> argparse.ArgumentParser:
    f = sub.add_parser(
        "features", help="compute a features file (HDF5) from a dataset of image files",
        description="Features for every image of a Karpathy dataset.json (Flickr8k/30k/COCO), of COCO "
                    "caption annotations (captions_*.json with train2014/ and val2014/) or of a plain "
                    "folder of images, written in chunks to an HDF5 file the loaders read. A rerun "
                    "after an interruption continues where it stopped.")
    f.add_argument("dataset", help="dataset.json, a Karpathy or COCO folder, or a folder of images")
    f.add_argument("--out", help="HDF5 file to write (default: features.h5 in the dataset's folder)")
    f.add_argument("--image-root", help="folder a dataset.json's image files are in (default: its folder)")
    f.add_argument("--extractor", default="efficientnet-lite0",
                   help="feature extractor (backbone): efficientnet-lite0 (default; pretrained on "
                        "ImageNet), randconv (the built-in one, fitted on the training images) or "
                        "onnx:PATH")
    f.add_argument("--extractor-options", default="{}",
                   help='JSON object of the extractor\'s options, e.g. \'{"image_size": 64}\'')
    f.add_argument("--grid", action="store_true", help="also write grid features (dataset 'grid')")
    f.add_argument("--no-pooled", action="store_true", help="no pooled features (only with --grid)")
    f.add_argument("--dtype", choices=("float16", "float32"), default="float16",
                   help="stored precision (default: float16; the loaders read float32)")
    f.add_argument("--workers", type=int, default=1, help="processes computing features (default: 1)")
    f.add_argument("--chunk-size", type=int, default=128,
                   help="images per chunk; a kill loses at most the chunks in flight (default: 128)")
    f.add_argument("--skip-bad", action="store_true",
                   help="skip unreadable images and record them in the file (default: fail, naming them)")
    f.add_argument("--fit-images", type=int, default=2000,
                   help="training images an extractor that needs fitting (randconv's PCA) is fitted on")
    f.add_argument("--seed", type=int, default=0, help="seed of that sample")
    f.add_argument("--dask", metavar="ADDRESS",
                   help="compute the chunks on a Dask cluster: a scheduler address (tcp://host:8786) "
                        "or local:N for N local worker processes (pip install 'rnncap[dask]'; "
                        "docs/scaling.md)")
    f.add_argument("--retries", type=int, default=2,
                   help="with --dask: reruns of a chunk whose task failed (default: 2)")
    f.add_argument("--no-progress", action="store_true", help="no progress bar")
    return f


def run(args) -> int:
    from rnncap.data.featurize import FeaturesOptions, make_features

    try:
        extractor_options = json.loads(args.extractor_options)
    except json.JSONDecodeError as err:
        raise ValueError(f"--extractor-options is not valid JSON: {err}") from None
    if not isinstance(extractor_options, dict):
        raise ValueError(f"--extractor-options must be a JSON object, got {args.extractor_options}")
    opts = FeaturesOptions(extractor=args.extractor, extractor_options=extractor_options,
                           pooled=not args.no_pooled, grid=args.grid, dtype=args.dtype,
                           workers=args.workers, chunk_size=args.chunk_size, skip_bad=args.skip_bad,
                           fit_images=args.fit_images, seed=args.seed, progress=not args.no_progress,
                           dask=args.dask, retries=args.retries)
    summary = make_features(args.dataset, args.out, image_root=args.image_root, options=opts)
    if summary["up_to_date"]:
        print(f"{summary['out']} is complete ({summary['images']} images); nothing to do")
    else:
        rate = summary["computed"] / summary["seconds"] if summary["seconds"] else 0.0
        print(f"wrote {summary['out']}: {summary['images']} images, {summary['computed']} computed "
              f"now in {summary['seconds']:.1f} s ({rate:.1f} images/s)")
    if summary["skipped"]:
        print(f"skipped {len(summary['skipped'])} unreadable image(s), left out of training: "
              + ", ".join(summary["skipped"][:10]) + (" ..." if len(summary["skipped"]) > 10 else ""),
              file=sys.stderr)
    return 0
