"""A trained captioner ready to answer requests: image bytes or features in, captions out.

:class:`Captioner` holds one restored checkpoint (model, vocabulary, feature extractor) and turns
an uploaded picture into everything the web page shows: the greedy caption, the beam-k
alternatives with their log-probabilities, the out-of-distribution flag where the checkpoint
keeps statistics of its training features, the attention weights of each word where the model
attends, and the truth verdict when the picture is one of the model's own shapes test images.

Concurrent requests are decoded together: :class:`Batcher` collects the requests waiting at the
same moment and decodes them as one batch (the model is read-only, so a batch gives each request
exactly the captions it would get alone), which keeps the server's throughput up under load.

This module does NOT know HTTP, HTML or how checkpoints are written; it calls the same functions
as ``rnncap caption``.
"""

from __future__ import annotations

import io
import json
import math
import os
import queue
import tempfile
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnncap.serve import MAX_PIXELS

__all__ = ["Captioner", "Batcher", "ImageError", "Limits"]


class ImageError(ValueError):
    """An uploaded file is not a usable picture (the message says why)."""


@dataclass(frozen=True)
class Limits:
    """What one request may send.

    ``max_pixels`` may be lower than the image loader's limit (rnncap.vision.image.MAX_PIXELS),
    never higher: a picture between the two would pass the header check and then be refused by
    the loader with another limit in its message.
    """

    max_upload_bytes: int = 10 * 1024 * 1024   # bigger bodies get 413
    max_pixels: int = MAX_PIXELS                # width * height; bigger pictures get 400
    max_beam_size: int = 10

    def __post_init__(self):
        from rnncap.vision.image import MAX_PIXELS as LOADER_MAX_PIXELS

        if not 1 <= self.max_pixels <= LOADER_MAX_PIXELS:
            raise ValueError(f"max_pixels must be between 1 and {LOADER_MAX_PIXELS:,} (the most "
                             f"rnncap's image loader decodes), got {self.max_pixels:,}")


def _image_size(data: bytes, name: str, max_pixels: int) -> tuple[int, int]:
    """Width and height from the header only, refusing bombs before any pixel is decoded."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ImageError(f"{name}: the file is empty")
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{name}: not an image Pillow can read ({err})") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: too many pixels (over Pillow's decompression-bomb limit)") from None
    if w * h > max_pixels:
        raise ImageError(f"{name}: {w}x{h} = {w * h:,} pixels; the limit is {max_pixels:,}")
    return w, h


class Captioner:
    """A restored checkpoint plus its feature extractor, for captioning single pictures.

    Args:
        checkpoint: a checkpoint folder or a run folder (its latest checkpoint).
        limits: upload limits (see :class:`Limits`).
        examples: how many of the model's own test images to offer, where its dataset is at hand.
    """

    def __init__(self, checkpoint: str | os.PathLike, limits: Limits | None = None, examples: int = 6):
        from rnncap.run import restore

        self.restored = restore(checkpoint)
        self.limits = limits or Limits()
        self.extractor = None
        dirs = self.restored.checkpoint.dirs
        if "extractor" in dirs:
            from rnncap.data.features import load_extractor

            self.extractor = load_extractor(dirs["extractor"])
        self.examples = _find_examples(self.restored, examples)
        self._card = self._model_card()
        # The model is read-only here, so its fast decoding step (raw scores; beam search
        # normalizes only what it keeps) is made once and shared by every request.
        model = self.restored.model
        self._step, self._logits = model.step, False
        if hasattr(model, "decoder_step"):
            self._step, self._logits = model.decoder_step(logits=True), True

    # ------------------------------------------------------------------ the model card
    @property
    def model(self):
        return self.restored.model

    @property
    def attends(self) -> bool:
        """Whether the model attends over a grid (and can say where it looked for each word)."""
        return getattr(self.model, "kind", None) == "attention"

    def card(self) -> dict:
        """What the page's model card shows (JSON-ready)."""
        return self._card

    def _model_card(self) -> dict:
        r = self.restored
        info = r.checkpoint.documents.get("info", {})
        model_doc = r.checkpoint.documents.get("model", {})
        data = r.config.data
        run_dir = r.checkpoint.folder.parent.parent
        scores = {}
        for p in sorted(run_dir.glob("eval-test-*.json")):
            try:
                doc = json.loads(p.read_text())
                s = doc["scores"]
                scores[p.stem[len("eval-test-"):]] = {k: v for k, v in s.items()
                                                      if isinstance(v, (int, float))}
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a results file we cannot read is simply not shown
        extractor = None
        if self.extractor is not None:
            extractor = {"name": getattr(self.extractor, "name", "?"),
                         "dim": int(getattr(self.extractor, "dim", 0) or 0)}
        return {
            "checkpoint": str(r.checkpoint.folder),
            "iteration": info.get("iteration"),
            "epoch": info.get("epoch"),
            "saved_at": info.get("saved_at"),
            "trained_on": {"format": data.format, "path": data.path, "level": data.level},
            "model": {k: v for k, v in model_doc.items() if isinstance(v, (int, float, str, bool))},
            "vocabulary_size": len(r.vocab.idx_to_word),
            "max_length": r.max_length,
            "backbone": extractor,
            "test_scores": scores,
            "attention": self.attends,
            "examples": len(self.examples),
            "limits": {"max_upload_bytes": self.limits.max_upload_bytes,
                       "max_pixels": self.limits.max_pixels,
                       "max_beam_size": self.limits.max_beam_size},
        }

    # ------------------------------------------------------------------ pixels -> features
    def features_from_bytes(self, data: bytes, name: str = "upload") -> np.ndarray:
        """(1, D) features of one uploaded picture, through the checkpoint's own extractor.

        The bytes go to a file in a private temporary folder (the extractor reads files, as
        ``rnncap caption`` does), which is removed before this returns.

        Raises:
            ImageError: empty, unreadable, broken or too large a picture; a checkpoint with no
                extractor.
        """
        if self.extractor is None:
            raise ImageError("this checkpoint was trained on precomputed features and has no "
                             "feature extractor; send JSON features instead of a picture")
        _image_size(data, name, self.limits.max_pixels)
        from rnncap.data.features import extract_files

        with tempfile.TemporaryDirectory(prefix="rnncap-serve-") as tmp:
            path = Path(tmp) / "upload"
            path.write_bytes(data)
            try:
                feats = extract_files(self.extractor, [str(path)], grid=self.attends)
            except (ValueError, OSError) as err:
                raise ImageError(str(err).replace(str(path), name)) from None
        return np.asarray(feats, dtype=self.model.dtype)

    def check_features(self, features) -> np.ndarray:
        """Client-sent features of one picture as a batch of one, in the model's dtype.

        A pooled model takes one vector of D numbers, an attention model one grid of L rows
        of D numbers. Raises ValueError naming the shape expected.
        """
        try:
            a = np.asarray(features, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError("features must be a list of numbers") from None
        want = int(self.model.config["input_dim"])
        rank = 2 if self.attends else 1  # of one picture's features
        if a.ndim == rank:
            a = a[None]
        if a.ndim != rank + 1 or a.shape[0] != 1 or a.shape[-1] != want or 0 in a.shape:
            what = f"one grid of L rows of {want} numbers" if self.attends else f"one vector of {want} numbers"
            raise ValueError(f"features must be {what}, got shape {a.shape[1:] if a.ndim else a.shape}")
        if not np.isfinite(a).all():
            raise ValueError("features must be finite numbers")
        return a.astype(self.model.dtype)

    # ------------------------------------------------------------------ decoding
    def decode(self, features: np.ndarray, beam_size: int) -> list[dict]:
        """Greedy caption and beam-k alternatives for each row of `features` (N, D)."""
        from rnncap import decode

        m, vocab, T = self.model, self.restored.vocab, self.restored.max_length
        ids = dict(start_id=m.word_to_idx["<START>"], end_id=m.word_to_idx["<END>"],
                   max_length=T)
        # Beam search with k = 1 is greedy decoding (rnncap.decode), with its log-probability.
        ids.update(null_id=m.word_to_idx["<NULL>"], logits=self._logits)
        greedy = decode.beam_search(self._step, m.init_state(features), beam_size=1, **ids)
        beams = decode.beam_search(self._step, m.init_state(features), beam_size=beam_size,
                                   n_best=beam_size, **ids)
        from rnncap import ood

        stats = self.restored.feature_stats  # None for a checkpoint without training statistics
        scores, flagged = ood.flag(features, stats)
        maps, grid = [None] * len(features), None
        if self.attends:  # where the model looked for each word of the greedy caption
            from rnncap.attention_maps import word_attention

            rows = word_attention(m, vocab, features, greedy.tokens)
            maps = [np.round(w, 4).tolist() for _, w in rows]
            side = math.isqrt(features.shape[1])
            grid = [side, side] if side * side == features.shape[1] else [1, features.shape[1]]
        out = []
        for i in range(len(features)):
            alts = [{"caption": vocab.decode_clean(np.asarray(h.tokens)[None])[0],
                     "logprob": round(float(h.logprob), 4),
                     "complete": bool(len(h.tokens) and h.tokens[-1] == ids["end_id"])}
                    for h in beams.nbest[i]]
            out.append({"greedy": {"caption": vocab.decode_clean(greedy.tokens[i:i + 1])[0],
                                   "logprob": round(float(greedy.logprobs[i]), 4)},
                        "beam_size": beam_size, "beam": alts,
                        "out_of_distribution": None if flagged is None else bool(flagged[i]),
                        "warning": (ood.warning("this picture", scores[i], stats)
                                    if flagged is not None and flagged[i] else None),
                        "attention": maps[i], "grid": grid})
        return out

    def truth(self, caption: str, example: int) -> bool | None:
        """Whether `caption` is true of example picture `example` (None when its truth is unknown)."""
        objects = self.examples[example].get("objects")
        if objects is None:
            return None
        from rnncap.metrics import caption_is_true

        return caption_is_true(caption, objects)


def _find_examples(restored, count: int) -> list[dict]:
    """Up to `count` test pictures of the checkpoint's own dataset, where it is on disk.

    For the built-in shapes dataset each comes with its ground truth, so the page can say whether
    a caption is true. Nothing is generated: a dataset that is not there gives no examples.
    """
    if count <= 0:
        return []
    data = restored.config.data
    if not data.path:
        return []
    root = Path(data.path)
    candidates = [root / "dataset.json"] + sorted(root.glob("*/dataset.json"),
                                                 key=lambda p: p.stat().st_mtime, reverse=True)
    for js in candidates:
        if not js.is_file():
            continue
        try:
            doc = json.loads(js.read_text(encoding="utf-8"))
            images = [im for im in doc["images"] if im.get("split") == "test"]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        out = []
        for im in images[:count]:
            try:
                path = (js.parent / im.get("filepath", "") / im["filename"]).resolve()
            except (KeyError, TypeError):
                continue
            if not path.is_file() or js.parent.resolve() not in path.parents:
                continue
            out.append({"path": path, "name": im["filename"], "objects": im.get("objects")})
        if out:
            return out
    return []


class Batcher:
    """Decode concurrent requests together on one worker thread.

    ``submit(features, beam_size)`` returns the request's results; requests that arrive while a
    batch is being decoded wait and go together in the next one (grouped by beam size).

    Args:
        decode: ``decode(features (N, D), beam_size) -> list of N results``.
        max_batch: most requests decoded at once.
    """

    def __init__(self, decode, max_batch: int = 32):
        self._decode = decode
        self._max = max_batch
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="rnncap-batcher", daemon=True)
        self._thread.start()

    def submit(self, features: np.ndarray, beam_size: int) -> dict:
        fut: Future = Future()
        self._queue.put((features, beam_size, fut))
        return fut.result()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < self._max:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            for k in sorted({b[1] for b in batch}):
                group = [b for b in batch if b[1] == k]
                try:
                    results = self._decode(np.concatenate([g[0] for g in group]), k)
                except BaseException as err:  # the requests learn of it; the thread goes on
                    for g in group:
                        g[2].set_exception(err)
                    continue
                for g, res in zip(group, results):
                    g[2].set_result(res)
