"""The `rnncap` command (also `python -m rnncap`): parse, dispatch, report errors plainly.

    rnncap demo                      the main job on the built-in shapes dataset
    rnncap train --data PATH --out RUN_DIR [--resume] [hyperparameters] [--config FILE]
    rnncap caption CHECKPOINT IMAGE... [--features FILE] [--method greedy|beam]
    rnncap evaluate CHECKPOINT --split val|test [--method greedy|beam]
    rnncap report RUN_DIR
    rnncap classify IMAGE... [--json]  ImageNet top-5 with the pretrained backbone
    rnncap serve CHECKPOINT_OR_RUN [--host 127.0.0.1] [--port 8000]
    rnncap features DATASET [--extractor NAME] [--grid] [--dtype float16|float32] [--workers N]

Training flags are made from the fields of :mod:`rnncap.config`, so every hyperparameter has a flag
of the right type and a config file and the flags can never disagree on names. A user's mistake
(an unknown flag, a missing folder, a corrupt checkpoint, a file that is not an image) ends with
one line naming it and exit status 1 or 2; set RNNCAP_DEBUG=1 to see the traceback instead.

This module does no math; the files it touches are the user's (--features, a demo's marker
and timings), everything else is read and written by the modules it calls.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import textwrap
import time
import types
import typing
from pathlib import Path

from rnncap import config as cfg

__all__ = ["main", "build_parser"]

# Flag names that differ from the config field names (the rest are --field-name). The short ones
# also accept the field's own name (--num-epochs for --epochs), so both names work; data.path is
# --data alone.
_FLAG_NAMES = {("data", "path"): "--data", ("model", "cell_type"): "--cell", ("model", "kind"): "--model",
               ("train", "learning_rate"): "--lr", ("train", "num_epochs"): "--epochs"}
_CHOICES = {("data", "format"): cfg.FORMATS, ("data", "level"): cfg.LEVELS,
            ("model", "cell_type"): cfg.CELLS, ("model", "dtype"): cfg.DTYPES, ("model", "kind"): cfg.MODELS,
            ("model", "init"): cfg.INITS, ("train", "update_rule"): cfg.UPDATE_RULES,
            ("train", "lr_schedule"): cfg.LR_SCHEDULES}
_DEMO_MARK = ".rnncap-demo"
SHAPES_CACHE = ".cache/rnncap/shapes"  # rnncap.data.shapes.DEFAULT_CACHE (not imported: it loads NumPy)
_MANY_IMAGES = 100  # `caption` shows its progress from this many images on


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One typed flag per RunConfig field; unset flags stay absent (argparse.SUPPRESS)."""
    for part in dataclasses.fields(cfg.RunConfig):
        group = parser.add_argument_group(f"{part.name} options")
        cls = type(getattr(cfg.RunConfig(), part.name))
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            flags = ["--" + f.name.replace("_", "-")]
            if (part.name, f.name) == ("data", "path"):
                flags = [_FLAG_NAMES[("data", "path")]]
            elif (part.name, f.name) in _FLAG_NAMES:
                flags.insert(0, _FLAG_NAMES[(part.name, f.name)])
            kind = hints[f.name]
            if isinstance(kind, types.UnionType):
                kind = next(t for t in typing.get_args(kind) if t is not type(None))
            # A None default means something the field's help says in words ("default: ...").
            default = "" if f.default is None else f" (default: {f.default})"
            kw = dict(dest=f"{part.name}.{f.name}", default=argparse.SUPPRESS,
                      help=f.metadata.get("help", "") + default + f"; config key {part.name}.{f.name}")
            if kind is bool:
                group.add_argument(*flags, action=argparse.BooleanOptionalAction, **kw)
            else:
                group.add_argument(*flags, type=kind, choices=_CHOICES.get((part.name, f.name)),
                                   metavar=None if (part.name, f.name) in _CHOICES else (
                                       "PATH" if f.name in ("path", "features") else kind.__name__.upper()),
                                   **kw)


def _overrides(args: argparse.Namespace) -> dict:
    out: dict = {}
    for key, value in vars(args).items():
        if "." in key:
            part, name = key.split(".", 1)
            out.setdefault(part, {})[name] = value
    return out


def _decode_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", choices=cfg.METHODS, default="greedy",
                        help="decoding method (default: greedy)")
    parser.add_argument("--beam-size", type=int, default=3, metavar="K", help="beam width for --method beam (default: 3)")
    parser.add_argument("--length-penalty", type=float, default=0.0, metavar="ALPHA",
                        help="beam search length penalty alpha (default: 0, none)")


def _flag(part: str, name: str) -> str:
    """The flag of config field part.name (see _add_config_flags)."""
    return _FLAG_NAMES.get((part, name), "--" + name.replace("_", "-"))


def _preset_flags(preset: "cfg.RunConfig") -> str:
    """The flags that turn the defaults into `preset`: every field whose value differs."""
    out = []
    default = cfg.RunConfig()
    for part in dataclasses.fields(cfg.RunConfig):
        mine, base = getattr(preset, part.name), getattr(default, part.name)
        for f in dataclasses.fields(mine):
            value = getattr(mine, f.name)
            if value == getattr(base, f.name):
                continue
            flag = _flag(part.name, f.name)
            if isinstance(value, bool):
                out.append(flag if value else "--no-" + flag[2:])
            else:
                out.append(f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}")
    return " ".join(out)


def _presets_help() -> str:
    """The presets `train --preset` takes, each described from its own config."""
    lines = ["presets (--preset NAME; flags and --config apply on top):"]
    for name, preset in cfg.PRESETS.items():
        text = f"{name}: {cfg.PRESET_HELP[name]}: {_preset_flags(preset)}"
        lines += textwrap.wrap(text, 90, initial_indent="  ", subsequent_indent="      ")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rnncap", description="Image captioning with recurrent networks, in NumPy.")
    p.add_argument("--version", action="version", version=f"rnncap {__import__('rnncap').__version__}")
    p.add_argument("--threads", type=int, default=None,
                   help="threads to compute with (default: the cores, at most 4): a new "
                        "training run splits each batch into that many row groups (kept on "
                        "resume), and decoding runs up to that many batches of 500 images at "
                        "once, each on its own thread with one BLAS thread. Without this flag a "
                        "set OPENBLAS_NUM_THREADS/OMP_NUM_THREADS/MKL_NUM_THREADS is left to BLAS "
                        "and rnncap uses one thread. `rnncap demo` computes on one thread unless "
                        "this flag says otherwise")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("demo", help="train and evaluate on the built-in shapes dataset, write a report",
                       description="The main job: generate the shapes dataset (cached), extract features "
                                   "(cached), train, evaluate on the test split, write the report.")
    d.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo; a previous demo there is replaced)")
    d.add_argument("--cache", default=SHAPES_CACHE,
                   help=f"dataset cache folder, as load_shapes(CACHE) takes it (default: {SHAPES_CACHE})")
    d.add_argument("--epochs", type=int, metavar="N", help=f"training epochs (default: {cfg.DEMO.train.num_epochs})")
    d.add_argument("--method", choices=cfg.METHODS, default=cfg.DEMO_DECODE.method,
                   help=f"how the test captions are decoded (default: {cfg.DEMO_DECODE.method})")
    d.add_argument("--beam-size", type=int, default=cfg.DEMO_DECODE.beam_size,
                   help=f"beam width for --method beam (default: {cfg.DEMO_DECODE.beam_size})")
    d.add_argument("--no-progress", action="store_true", help="no progress bars")

    t = sub.add_parser("train", help="train a captioner", description=textwrap.fill(
                       "Train a captioner; checkpoints every epoch and on Ctrl-C into "
                       "RUN_DIR/checkpoints. Settings come from, in increasing priority: the "
                       "defaults, --preset, --config, the flags. Under `mpiexec -n K` the K ranks share every "
                       "batch and rank 0 writes the run (docs/scaling.md).", 90),
                       epilog=_presets_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder")
    t.add_argument("--preset", choices=sorted(cfg.PRESETS),
                   help="start from a named preset's settings, listed below (default: none, "
                        "the settings of rnncap/config.py)")
    t.add_argument("--config", metavar="FILE.json", help="JSON config file: any subset of the "
                   "data/model/train fields, named by their config keys (default: none)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_config_flags(t)

    c = sub.add_parser("caption", help="caption image files with a checkpoint",
                       description="Caption image files through the checkpoint's own feature "
                                   "extractor (or precomputed --features); one line per image.")
    c.add_argument("checkpoint", help="checkpoint folder or run folder (its latest checkpoint)")
    c.add_argument("images", nargs="*", help="image files")
    c.add_argument("--features", metavar="FILE", help="precomputed features: a .npy/.mat file, one row per "
                                      "image, or the HDF5 file `rnncap features` writes (its pooled "
                                      "features, or its grid for an attention model; rows named by "
                                      "their image files) (default: none, extract them from the images)")
    c.add_argument("--json", action="store_true", help="print JSON lines (default: tab-separated)")
    c.add_argument("--attention", metavar="OUT.png",
                   help="attention model: draw each image with every generated word's attention "
                        "map over it (one row of panels per image) into this PNG file (default: none)")
    c.add_argument("--dask", metavar="ADDRESS",
                   help="caption --features FILE on a Dask cluster (tcp://host:8786, or local:N) "
                        "into --out, resumably (pip install 'rnncap[dask]'; docs/scaling.md; default: none, "
                         "caption in this process)")
    c.add_argument("--out", help="with --dask: the JSON-lines file to write (default: none; "
                                 "required with --dask)")
    c.add_argument("--partition-rows", type=int, default=1000,
                   help="with --dask: feature rows per partition (default: 1000)")
    _decode_flags(c)

    e = sub.add_parser("evaluate", help="score a checkpoint's captions on a split",
                       description="Decode a split's images, score the captions (BLEU, METEOR, "
                                   "ROUGE-L, CIDEr; truth rate on the shapes data) and write the "
                                   "per-image results.")
    e.add_argument("checkpoint", help="checkpoint folder or run folder (its latest checkpoint)")
    e.add_argument("--split", choices=("val", "test"), default="test",
                   help="which split's images to caption and score (default: test)")
    e.add_argument("--data", metavar="PATH", help="data folder (default: the one the checkpoint was trained on)")
    e.add_argument("--limit", type=int, metavar="N", help="score only the split's first N images (default: all); "
                                             "results go to eval-<split>-<method>-first<N>.json")
    e.add_argument("--no-meteor", action="store_true", help="skip METEOR (it starts Java; "
                                                            "default: METEOR when Java is installed)")
    e.add_argument("--out", metavar="FILE.json", help="where to write the per-image results JSON (default: the run "
                                 "folder's eval-<split>-<method>.json, -first<N> for --limit N)")
    _decode_flags(e)

    r = sub.add_parser("report", help="write RUN_DIR/report.html",
                       description="Write RUN_DIR/report.html, one self-contained page: summary, "
                                   "scores, curves, images with captions. A run with no evaluation "
                                   "of a whole split is first evaluated on its test split (greedy).")
    r.add_argument("run_dir", help="run folder")

    k = sub.add_parser("classify", help="ImageNet top-5 of image files (the pretrained backbone)",
                       description="Classify image files with the pretrained EfficientNet-Lite0 "
                                   "backbone: the ImageNet classes it finds most probable.")
    k.add_argument("images", nargs="+", help="image files")
    k.add_argument("--top", type=int, default=5, help="how many classes per image")
    k.add_argument("--json", action="store_true",
                   help="print one JSON line per image: labels and probabilities, best first")
    s = sub.add_parser("serve", help="a web page and JSON API over a checkpoint (pip install 'rnncap[serve]')",
                       description="Serve a checkpoint: a page to drop pictures on and a JSON API "
                                   "(POST /api/caption, GET /api/model, /healthz, /docs).")
    s.add_argument("checkpoint", help="checkpoint folder or run folder")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 for all)")
    s.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    s.add_argument("--max-upload-mb", type=float, default=10.0,
                   help="largest upload accepted, in MiB; bigger ones get 413 (default: 10)")
    from rnncap.serve import MAX_PIXELS as SERVE_MAX_PIXELS
    from rnncap.vision.image import MAX_PIXELS

    s.add_argument("--max-pixels", type=int, default=SERVE_MAX_PIXELS,
                   help=f"largest picture accepted, width x height; bigger ones get 400 (default: "
                        f"{SERVE_MAX_PIXELS}, stricter than the {MAX_PIXELS} pixels rnncap reads "
                        f"from files, since a server decodes several uploads at once; at most {MAX_PIXELS})")
    s.add_argument("--max-batch", type=int, default=32,
                   help="most concurrent requests decoded together (1: one at a time; default: 32)")
    from rnncap import cli_features

    cli_features.add_parser(sub)
    return p


def train_config(args: argparse.Namespace) -> cfg.RunConfig:
    """The config `rnncap train` runs with: defaults < --preset < --config < flags."""
    config = cfg.PRESETS[args.preset] if args.preset else cfg.RunConfig()
    if args.config:
        config = cfg.load_config(args.config, base=config)
    return cfg.with_overrides(config, _overrides(args))


def _cmd_train(args) -> int:
    from rnncap.run import train

    overrides = _overrides(args)
    if args.resume:
        extra = {(p, k) for p, d in overrides.items() for k in d} - {("train", "num_epochs")}
        if extra or args.config or args.preset:
            raise cfg.ConfigError("--resume continues with the checkpoint's own config; only --epochs may "
                                  "change (got " + ", ".join(sorted(f"{p}.{k}" for p, k in extra)
                                                             or ["--config" if args.config else "--preset"]) + ")")
        summary = train(None, args.out, resume=True, progress=not args.no_progress,
                        num_epochs=overrides.get("train", {}).get("num_epochs"))
        return _train_summary(summary)
    config = train_config(args)
    if config.data.path is None:
        if config.data.format != "shapes":
            raise cfg.ConfigError("--data PATH is required (or --format shapes for the built-in dataset)")
        config = cfg.with_overrides(config, {"data": {"path": SHAPES_CACHE}})
    if not Path(config.data.path).exists() and config.data.format != "shapes":
        raise FileNotFoundError(f"data folder {config.data.path} does not exist")
    return _train_summary(train(config, args.out, progress=not args.no_progress))


def _train_summary(summary: dict) -> int:
    from rnncap.run import say

    if summary.get("rank", 0) != 0:  # under mpiexec rank 0 alone reports
        return 130 if summary["status"] == "interrupted" else 0
    say(f"{summary['status']}: {summary['iterations']}/{summary['num_iterations']} iterations, "
        f"checkpoint {summary['checkpoint']}")
    return 130 if summary["status"] == "interrupted" else 0


def _cmd_caption(args) -> int:
    import numpy as np

    from rnncap.evaluate import DecodeOptions, decode_features
    from rnncap.run import restore

    if args.dask:
        from rnncap.distributed import cli_caption

        return cli_caption(args)
    r = restore(args.checkpoint)
    attention = getattr(r.model, "kind", None) == "attention"
    if args.attention and not attention:
        raise ValueError(f"--attention needs an attention model; checkpoint {r.checkpoint.folder} "
                         f"holds a CaptioningRNN")
    if args.attention and not args.images:
        raise ValueError("--attention draws over the images: give image files (with or without "
                         "--features)")
    if args.features:
        from rnncap.run import check_feature_rank
        from rnncap.data.featfile import read_computed
        from rnncap.data.karpathy import read_feature_file
        from rnncap.data.layout import nonfinite_rows

        path = Path(args.features)
        if not path.is_file():
            raise FileNotFoundError(f"features file {path} does not exist")
        # `rnncap features`' HDF5 file: its pooled 'features' or its 'grid', as the model needs,
        # the computed rows only, named by the file's own image paths
        hdf5 = path.name.removesuffix(".partial").endswith((".h5", ".hdf5"))  # .partial: unfinished
        computed = read_computed(path, grid=attention) if hdf5 else None
        if computed is not None:
            feats, file_names = computed.features, computed.names
            if computed.skipped:
                print(f"rnncap caption: note: {path} records {len(computed.skipped)} unreadable "
                      f"image(s), left out: " + ", ".join(computed.skipped[:5])
                      + (" ..." if len(computed.skipped) > 5 else ""), file=sys.stderr)
        else:
            feats = np.asarray(read_feature_file(path))  # real numbers, (I, D) or (I, L, D), or a ValueError
            file_names = [f"{path.name}[{i}]" for i in range(len(feats))]
        check_feature_rank(feats, attention, path)
        bad = nonfinite_rows(feats)
        if bad.size:
            raise ValueError(f"{path}: row {bad[0]} holds NaN or infinite values ({bad.size} such rows)")
        want = r.model.input_dim
        if feats.shape[-1] != want:
            shape = f"(I, L, {want})" if attention else f"(I, {want})"
            raise ValueError(f"{path}: the checkpoint's model needs features of shape {shape}; "
                             f"got {feats.shape}")
        names = args.images or file_names
    elif args.images:
        from rnncap.data.features import extract_files, load_extractor

        if "extractor" not in r.checkpoint.dirs:
            raise ValueError(f"checkpoint {r.checkpoint.folder} was trained on precomputed features and "
                             f"has no feature extractor; pass --features FILE")
        extractor = load_extractor(r.checkpoint.dirs["extractor"])
        feats = extract_files(extractor, args.images, grid=attention,
                              progress=len(args.images) >= _MANY_IMAGES)
        names = args.images
    else:
        raise ValueError("give image files to caption, or --features FILE")
    feats = np.asarray(feats, dtype=r.model.dtype)
    if len(names) != len(feats):
        raise ValueError(f"{len(names)} image names but {len(feats)} feature rows in {args.features}")
    options = DecodeOptions(args.method, args.beam_size, args.length_penalty, r.max_length)
    label = f"captioning ({options.name})" if len(feats) >= _MANY_IMAGES else None
    tokens = decode_features(r.model, feats, options, progress=label)
    captions = r.vocab.decode_clean(tokens)
    from rnncap import ood

    scores, flagged = ood.flag(feats, r.feature_stats)
    if scores is None:
        print(f"rnncap caption: note: checkpoint {r.checkpoint.folder} keeps no statistics of its "
              f"training features; images are not checked for being unlike them", file=sys.stderr)
    for i, (name, caption) in enumerate(zip(names, captions)):
        if flagged is not None and flagged[i]:
            print(f"rnncap caption: warning: {ood.warning(name, scores[i], r.feature_stats)}", file=sys.stderr)
        unfamiliar = None if flagged is None else bool(flagged[i])
        print(json.dumps({"image": name, "caption": caption, "out_of_distribution": unfamiliar})
              if args.json else f"{name}\t{caption}")
    if args.attention:
        from rnncap.attention_maps import word_attention, write_attention_png
        from rnncap.data.features import load_image

        rows = word_attention(r.model, r.vocab, feats, tokens)
        pictures = [load_image(p, 256) for p in args.images]
        out = write_attention_png(args.attention, pictures, rows)
        print(f"attention maps: {out}", file=sys.stderr)
    return 0


def _cmd_evaluate(args) -> int:
    from rnncap.evaluate import DecodeOptions, evaluate_and_save
    from rnncap.metrics import format_scores
    from rnncap.run import load_run_data, restore

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    r = restore(args.checkpoint)
    config = r.config
    if args.data:
        if not Path(args.data).exists():  # never generate data at a mistyped path
            raise FileNotFoundError(f"data folder {args.data} does not exist")
        config = cfg.with_overrides(config, {"data": {"path": args.data}})
    elif config.data.path is None or not Path(config.data.path).exists():
        raise FileNotFoundError(f"the checkpoint's data folder {config.data.path} does not exist; "
                                f"pass --data PATH")
    data = load_run_data(config, progress=True, generate=False)
    from rnncap.run import check_backbone

    check_backbone(r.checkpoint, data, config.data.path)
    got, want = data["train_features"].shape, r.model.input_dim
    if got[-1] != want:
        expected = f"(I, L, {want})" if len(got) == 3 else f"(I, {want})"
        raise ValueError(f"{data.get('features_source', config.data.path)}: the checkpoint's model "
                         f"needs features of shape {expected}; got (I, "
                         + ", ".join(str(s) for s in got[1:]) + ")")
    if data["vocab"].idx_to_word != r.vocab.idx_to_word:
        raise ValueError(f"the vocabulary of {config.data.path} differs from the checkpoint's; "
                         f"evaluate on the data the model was trained on")
    options = DecodeOptions(args.method, args.beam_size, args.length_penalty, r.max_length)
    scores, out = evaluate_and_save(r, data, args.split, options, limit=args.limit,
                                    meteor=not args.no_meteor, out=args.out, progress=True)
    print(format_scores(scores))
    if scores["num_images"] < scores["split_images"]:
        print(f"a limited run: the first {scores['num_images']} of the split's "
              f"{scores['split_images']} images (a whole split's results are kept apart)")
    print(f"per-image results: {out}")
    return 0


def _cmd_classify(args) -> int:
    from rnncap.vision.imagenet import classify_files

    results = classify_files(args.images, k=args.top)
    for name, top in zip(args.images, results):
        if args.json:
            print(json.dumps({"image": name, "labels": [n for n, _ in top],
                              "probabilities": [round(p, 6) for _, p in top]}))
        else:
            print(name)
            for label, p in top:
                print(f"  {p:7.2%}  {label}")
    return 0


def _cmd_report(args) -> int:
    from rnncap.report import write_report
    from rnncap.run import say

    path = write_report(args.run_dir, log=say, progress=True)
    print(f"report: {path}")
    return 0


def _cmd_demo(args) -> int:
    from rnncap.atomic import remove_tree, write_text
    from rnncap.evaluate import DecodeOptions, evaluate_and_save
    from rnncap.metrics import format_scores
    from rnncap.report import write_report
    from rnncap.run import load_run_data, restore, say, train

    t_start = time.perf_counter()
    decoding = cfg.DecodeConfig(method=args.method, beam_size=args.beam_size)
    # the config first: a bad flag must not cost the previous demo its folder
    config = cfg.with_overrides(cfg.DEMO, {"data": {"path": args.cache}})
    if args.epochs is not None:  # --epochs 0 is an error, not the default
        config = cfg.with_overrides(config, {"train": {"num_epochs": args.epochs}})
    out = Path(args.out)
    if out.exists():
        if not (out / _DEMO_MARK).exists():
            raise FileExistsError(f"{out} exists and is not a demo run folder; choose another --out")
        remove_tree(out)
    out.mkdir(parents=True)
    write_text(out / _DEMO_MARK, "written by `rnncap demo`; the next demo replaces this folder\n")
    progress = not args.no_progress
    say(f"[1/4] shapes dataset and features in {config.data.path} (made once, then cached)")
    t0 = time.perf_counter()
    data = load_run_data(config, progress)
    data_s = time.perf_counter() - t0
    n_img = {s: len(data[f"{s}_features"]) for s in ("train", "val", "test") if f"{s}_features" in data}
    say(f"      {n_img} images, {len(data['train_captions'])} training captions, "
        f"vocabulary {len(data['idx_to_word'])}, features {data['train_features'].shape[1]}-d ({data_s:.1f} s)")
    m = config.model
    say(f"[2/4] training {'an' if m.cell_type == 'lstm' else 'a'} {m.cell_type.upper()} (hidden {m.hidden_dim}, image at every step: "
        f"{m.image_every_step}) for {config.train.num_epochs} epochs")
    summary = train(config, out, progress=progress, data=data)
    if summary["status"] != "finished":
        return 130
    say(f"[3/4] evaluating on the test split ({decoding.method}"
        f"{f', beam size {decoding.beam_size}' if decoding.method == 'beam' else ''})")
    r = restore(out)
    scores, eval_path = evaluate_and_save(r, data, "test", DecodeOptions(
        decoding.method, beam_size=decoding.beam_size, max_length=r.max_length), progress=progress)
    say("[4/4] writing the report")
    timings = {"data_s": round(data_s, 1), "train_s": round(summary["timings"]["train_s"], 1),
               "eval_s": scores["eval_s"]}
    write_text(out / "timings.json", json.dumps(timings, indent=1))
    report = write_report(out)
    total = time.perf_counter() - t_start
    say("")
    say(format_scores(scores))
    say(f"done in {total:.0f} s (data {data_s:.0f} s, training {summary['timings']['train_s']:.0f} s)")
    say(f"  run folder:    {out}")
    say(f"  checkpoint:    {summary['checkpoint']}")
    say(f"  metrics:       {out / 'metrics.jsonl'}")
    say(f"  test results:  {eval_path}")
    say(f"  report:        {report}")
    say(_caption_suggestion(out, eval_path))
    return 0


def _caption_suggestion(run: Path, eval_path: Path) -> str:
    """A `rnncap caption` command for a test image, with what the model said of it.

    The image is the first one whose test caption is true of it (the first one when none is),
    and the line says the caption and its verdict, so what the user sees is no surprise.
    """
    records = [rec for rec in json.loads(Path(eval_path).read_text())["images"] if rec.get("file")]
    if not records:
        return f"  try:           rnncap caption {run} IMAGE.png"
    rec = next((rec for rec in records if rec.get("true")), records[0])
    verdict = {True: "true of the image", False: "not true of the image"}.get(rec.get("true"), "")
    return (f"  try:           rnncap caption {run} {rec['file']}\n"
            f"                 (its test caption: \"{rec['caption']}\"{', ' + verdict if verdict else ''})")


def _set_threads(threads: int | None) -> None:
    """Set the threads rnncap computes with and the BLAS thread count (see --threads).

    Without --threads, rnncap computes on `rnncap.parallel.default_threads()` threads,
    unless OPENBLAS_NUM_THREADS/OMP_NUM_THREADS/MKL_NUM_THREADS is set: then threading
    is left to BLAS and rnncap computes on one thread.
    """
    if threads is not None and threads < 1:
        raise SystemExit(f"rnncap: error: --threads must be >= 1, got {threads}")
    from rnncap.parallel import default_threads, set_threads

    if threads is None and any(os.environ.get(v) for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                                           "MKL_NUM_THREADS")):
        set_threads(1)
        return
    import numpy  # noqa: F401  (loads the BLAS library, so that its thread pool exists to limit)
    from threadpoolctl import threadpool_limits

    threads = threads or default_threads()
    # Training steps and decoding split their work over `threads` Python threads with one
    # BLAS thread each (rnncap.parallel); BLAS gets the same count for everything else.
    set_threads(threads)
    threadpool_limits(threads, user_api="blas")


# the flags that make each command need less memory, for its out-of-memory message
_SIZE_FLAGS = {"train": "--batch-size, --hidden-dim, --wordvec-dim or --max-length",
               "caption": "--beam-size or fewer images",
               "evaluate": "--beam-size or --limit", "serve": "--max-pixels"}


def _one_line(err: BaseException) -> str:
    """The error's message on one line (an OSError without a message says what it is)."""
    text = str(err) or type(err).__name__
    if isinstance(err, OSError) and err.strerror and err.filename:
        text = f"{err.strerror}: {err.filename}"
    return " ".join(text.split())


def _cmd_features(args) -> int:
    from rnncap import cli_features

    return cli_features.run(args)


def _cmd_serve(args) -> int:
    from rnncap.serve import serve

    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be between 1 and 65535, got {args.port}")
    from rnncap.vision.image import MAX_PIXELS

    if args.max_upload_mb <= 0 or args.max_pixels < 1 or args.max_batch < 1:
        raise ValueError("--max-upload-mb, --max-pixels and --max-batch must be positive")
    if args.max_pixels > MAX_PIXELS:  # the loader would refuse what the header check let through
        raise ValueError(f"--max-pixels {args.max_pixels:,} is above {MAX_PIXELS:,}, the most pixels "
                         f"rnncap's image loader decodes; choose at most {MAX_PIXELS}")
    try:
        serve(args.checkpoint, args.host, args.port, max_upload_mb=args.max_upload_mb,
              max_pixels=args.max_pixels, max_batch=args.max_batch)
    except ImportError as err:
        raise ValueError(str(err)) from None
    return 0


_COMMANDS = {"demo": _cmd_demo, "train": _cmd_train, "caption": _cmd_caption,
             "evaluate": _cmd_evaluate, "report": _cmd_report, "serve": _cmd_serve,
             "classify": _cmd_classify, "features": _cmd_features}


def main(argv: list[str] | None = None) -> int:
    """Run the command; return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # The demo computes on one thread unless told otherwise: its small model gains nothing from
    # more, and its numbers then depend only on the machine and BLAS build, not the core count.
    _set_threads(1 if args.command == "demo" and args.threads is None else args.threads)
    if os.environ.get("RNNCAP_DEBUG"):
        return _COMMANDS[args.command](args)
    from rnncap.checkpoint import CheckpointError
    from rnncap.run import TrainingError

    try:
        return _COMMANDS[args.command](args)
    except (cfg.ConfigError, CheckpointError, TrainingError, OSError, ValueError) as err:
        # OSError: a full disk, a read-only or missing folder, named by the error itself
        print(f"rnncap {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 1
    except MemoryError:  # what rnncap.memory's estimates did not foresee
        sizes = _SIZE_FLAGS.get(args.command, "")
        print(f"rnncap {args.command}: error: out of memory" + (f"; smaller {sizes} need less" if sizes else ""),
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"rnncap {args.command}: interrupted", file=sys.stderr)
        return 130
