"""Evaluation: decode a split's images with a model and score the captions.

The glue between a model, a decoder, a vocabulary and the caption metrics: it turns features into
token arrays through :mod:`rnncap.decode`, tokens into strings through the vocabulary, and strings
into numbers through :mod:`rnncap.metrics`, keeping one record per image for reports.

This module does not know how models are trained or stored, nor how data files are read.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnncap import decode
from rnncap.atomic import write_text

METHODS = ("greedy", "beam")

__all__ = ["METHODS", "DecodeOptions", "decode_features", "evaluate_split", "evaluate_and_save",
           "split_images", "results_name"]


@dataclass(frozen=True)
class DecodeOptions:
    """How captions are decoded: 'greedy' or 'beam' (with beam_size and length_penalty)."""

    method: str = "greedy"
    beam_size: int = 3
    length_penalty: float = 0.0
    max_length: int = 16  # generated tokens, <END> included

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"decoding method must be {' or '.join(map(repr, METHODS))}, got {self.method!r}")
        if self.beam_size < 1:
            raise ValueError(f"beam size must be >= 1, got {self.beam_size}")

    @property
    def name(self) -> str:
        """A label for reports, e.g. 'greedy' or 'beam-5'."""
        return "greedy" if self.method == "greedy" else f"beam-{self.beam_size}"


def decode_features(model, features: np.ndarray, options: DecodeOptions,
                    batch_size: int = 500, workers: int | None = None,
                    progress: str | None = None) -> np.ndarray:
    """Caption token ids for image features.

    The images are decoded in batches of up to `batch_size`; with several workers, the
    batches run on that many threads at once, each with one BLAS thread
    (rnncap.parallel). The batches do not depend on the number of workers, so neither
    do the captions.

    Args:
        model: anything with init_state(features), step(tokens, state) and word_to_idx;
            its step functions must be safe to call from several threads (pure).
        features: (N, D) image features.
        options: the decoding method.
        batch_size: images decoded together (beam search holds beam_size times as many rows).
        workers: threads to decode with; None: `rnncap.parallel.get_threads()` (the
            CLI's --threads).
        progress: a label to show progress under (rnncap.progress; one step per
            finished batch); None: no progress.
    Returns:
        int32 (N, options.max_length): first generated token first, <NULL> after <END>.
    """
    from rnncap.parallel import map_threads

    ids = dict(start_id=model.word_to_idx["<START>"], end_id=model.word_to_idx["<END>"],
               null_id=model.word_to_idx["<NULL>"], max_length=options.max_length)
    # A model may offer a faster step for whole decoding runs (CaptioningRNN does) that
    # returns raw scores: greedy needs only each row's argmax, and beam search
    # normalizes only the entries it keeps.
    step, logits = model.step, False
    if hasattr(model, "decoder_step"):
        step, logits = model.decoder_step(logits=True), True

    def decode_batch(lo: int) -> np.ndarray:
        state = model.init_state(features[lo:lo + batch_size])
        if options.method == "greedy":
            tokens = decode.greedy(step, state, **ids)
        else:
            tokens = decode.beam_search(step, state, beam_size=options.beam_size,
                                        length_penalty=options.length_penalty, logits=logits,
                                        **ids).tokens
        if bar is not None:
            bar.update(len(tokens))
        return tokens

    bar = None
    if progress is not None:
        from rnncap.progress import bar as progress_bar

        bar = progress_bar(len(features), progress, unit="img")
    try:
        out = map_threads(decode_batch, range(0, len(features), batch_size), workers)
    finally:
        if bar is not None:
            bar.close()
    if not out:
        return np.zeros((0, options.max_length), np.int32)
    return np.concatenate(out).astype(np.int32, copy=False)


def split_images(data: dict, split: str, limit: int | None = None) -> np.ndarray:
    """Indices of the split's images that have at least one caption (the first `limit` of them)."""
    if f"{split}_features" not in data:
        have = sorted(k[:-len("_features")] for k in data if k.endswith("_features"))
        raise ValueError(f"the data has no '{split}' split; it has {', '.join(have) or 'none'}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 image, got {limit}")
    images = np.unique(data[f"{split}_image_idxs"])
    return images[:limit] if limit is not None else images


def evaluate_split(model, data: dict, vocab, split: str, options: DecodeOptions, *,
                   limit: int | None = None, meteor: bool = True,
                   progress: bool = False) -> tuple[dict, list[dict]]:
    """Decode a split's images and score the captions against their references.

    Args:
        model: the captioner (see decode_features).
        data: the data dictionary (CS231n layout plus `<split>_references` where known).
        vocab: the Vocabulary that turns ids into strings.
        split: 'train', 'val' or 'test'.
        options: the decoding method.
        limit: score only the split's first `limit` images (a fixed subset, for per-epoch checks).
        meteor: include METEOR (slow: it starts Java); per-epoch validation leaves it out.
        progress: show decoding progress and say when scoring starts (rnncap.progress).
    Returns:
        (scores, records): the metric values with split, method and number of images, and one
        record per image (index, file, caption, references, truth verdict where known).
    """
    from rnncap import metrics

    images = split_images(data, split, limit)
    tokens = decode_features(model, data[f"{split}_features"][images], options,
                             progress=f"decoding {split} ({options.name})" if progress else None)
    captions = vocab.decode_clean(tokens)
    if progress:
        from tqdm import tqdm

        tqdm.write(f"scoring {len(images):,} captions (BLEU, {'METEOR, ' if meteor else ''}"
                   f"ROUGE-L, CIDEr)", file=sys.stderr)
    references = _references(data, vocab, split, images)
    truths = None
    if f"{split}_truth" in data:
        truths = [data[f"{split}_truth"][i] for i in images]
    scores = metrics.evaluate_captions(captions, references, split=split, method=options.name,
                                       truths=truths, meteor=meteor)
    files = data.get(f"{split}_image_files")
    records = []
    for k, i in enumerate(images):
        rec = {"image": int(i), "caption": captions[k], "references": references[k]}
        if files is not None:
            rec["file"] = str(files[i])
        if truths is not None:
            rec["true"] = bool(metrics.caption_is_true(captions[k], truths[k]))
        records.append(rec)
    return scores, records


def _references(data, vocab, split, images):
    """Raw reference strings per image; decoded from the caption arrays when the loader had none."""
    if f"{split}_references" in data:
        refs = data[f"{split}_references"]
        return [list(refs[i]) for i in images]
    by_image: dict[int, list[str]] = {int(i): [] for i in images}
    idxs = data[f"{split}_image_idxs"]
    wanted = np.isin(idxs, images)
    for row, i in zip(data[f"{split}_captions"][wanted], idxs[wanted]):
        by_image[int(i)].append(vocab.decode_clean(row[None])[0])
    return [by_image[int(i)] for i in images]


def results_name(split: str, options: DecodeOptions, num_images: int, split_size: int) -> str:
    """The run folder's file name for an evaluation's results.

    A whole split's results are eval-<split>-<method>.json; a run limited to the split's first N
    images writes eval-<split>-<method>-first<N>.json, so it never replaces the whole split's.
    """
    limited = f"-first{num_images}" if num_images < split_size else ""
    return f"eval-{split}-{options.name}{limited}.json"


def evaluate_and_save(restored, data: dict, split: str, options: DecodeOptions, *,
                      limit: int | None = None, meteor: bool = True, out=None,
                      progress: bool = False) -> tuple[dict, Path]:
    """Evaluate a restored checkpoint (rnncap.run.Restored) and write the per-image results JSON.

    The file goes to `out`, or else to the run folder under :func:`results_name`; it holds the
    checkpoint path, the scores (with the evaluation's wall time and `split_images`, the size of
    the whole split, so a limited run can be told from a full one) and the per-image records. A
    checkpoint outside a run folder (not in a `checkpoints/` folder) needs `out`.
    """
    folder = restored.checkpoint.folder
    if out is None and folder.parent.name != "checkpoints":
        raise ValueError(f"checkpoint {folder} is not inside a run folder's checkpoints/; "
                         f"say where to write the results (--out FILE)")
    t0 = time.perf_counter()
    scores, records = evaluate_split(restored.model, data, restored.vocab, split, options,
                                     limit=limit, meteor=meteor, progress=progress)
    split_size = len(split_images(data, split))
    scores = dict(scores, split_images=split_size, eval_s=round(time.perf_counter() - t0, 3))
    if out is None:
        out = (folder.parent.parent
               / results_name(split, options, scores["num_images"], split_size))
    write_text(out, json.dumps({"checkpoint": str(restored.checkpoint.folder),
                                       "scores": scores, "images": records}, indent=1))
    return scores, Path(out)
