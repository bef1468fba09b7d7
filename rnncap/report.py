"""The run report: one self-contained `report.html` that reads well without knowing rnncap.

`write_report(run_dir)` reads what a run folder already holds — config.json, metrics.jsonl, the
latest checkpoint's loss history, eval-*.json results, timings.json — and writes `report.html`:
a summary of model, data, training settings and timings in plain words; a table of scores, one
row per evaluation with its image count (a run limited to a split's first images is marked);
the training-loss and validation curves; and a grid of images with the generated caption, its
truth verdict for the shapes data and the reference captions. Curves and images are embedded
as PNG data, so the page is one file that can be mailed or archived alone.

The page's HTML lives in the package file `templates/report.html` (a string.Template); this
module fills it.

This module reads run folders and draws. It does not train, decode or score: when a run has no
evaluation of a whole split yet, it asks rnncap.evaluate for one of the test split, and says so.
"""

from __future__ import annotations

import base64
import html
import io
import json
import string
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = ["write_report", "smooth", "SCORE_LABELS"]

GRID_IMAGES = 24
ATTENTION_IMAGES = 4  # test images whose attention maps an attention model's report shows
THUMB = 128
#: Score keys of rnncap.metrics, as the report's columns name them.
SCORE_LABELS = {"truth_rate": "true of the image", "Bleu_1": "BLEU-1", "Bleu_4": "BLEU-4",
                "METEOR": "METEOR", "ROUGE_L": "ROUGE-L", "CIDEr": "CIDEr"}
TIMING_LABELS = {"data_s": "data and features", "train_s": "training", "eval_s": "test evaluation"}
TRAIN_LABELS = {"update_rule": "optimizer", "learning_rate": "learning rate",
                "lr_decay": "learning rate multiplied after each epoch by",
                "lr_schedule": "learning-rate schedule",
                "batch_size": "captions per batch", "num_epochs": "epochs",
                "grad_clip": "gradient norm clipped at", "seed": "seed",
                "val_images": "validation images scored after each epoch",
                "keep_checkpoints": "epoch checkpoints kept"}


def _read_jsonl(path: Path) -> list[dict]:
    """Records of a JSON-lines file; a torn last line (a kill mid-write) is skipped."""
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    records = []
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except ValueError as err:
            if i < len(lines) - 1:
                raise ValueError(f"{path}, line {i + 1}: not JSON ({err})") from None
    return records


# ---------------------------------------------------------------------------- curves

def smooth(values, window: int) -> np.ndarray:
    """Trailing moving average: entry i is the mean of values[max(0, i-window+1) : i+1]."""
    v = np.asarray(values, dtype=np.float64)
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    c = np.concatenate([[0.0], np.cumsum(v)])
    i = np.arange(1, len(v) + 1)
    lo = np.maximum(0, i - window)
    return (c[i] - c[lo]) / (i - lo)


def _axes():
    """A new figure and axes on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6, 3.5), dpi=100)


def _png_data(fig) -> str:
    """The figure as a data: URL (PNG), and the figure closed."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def loss_figure(loss_history, epochs):
    """Training loss on a log scale: each iteration faint, a moving average, the epoch means.

    The log scale and the average keep the first iterations' high loss from flattening the rest.
    """
    fig, ax = _axes()
    if len(loss_history):
        x = np.arange(1, len(loss_history) + 1)
        window = len(loss_history) // 50  # the average spans 2% of the run
        if window > 1:
            ax.plot(x, loss_history, lw=0.5, alpha=0.3, color="tab:blue", label="iteration")
            ax.plot(x, smooth(loss_history, window), lw=1.5, color="tab:blue",
                    label=f"mean of the last {window} iterations")
        else:
            ax.plot(x, loss_history, lw=1, color="tab:blue", label="iteration")
    pts = [(e["iteration"], e["train_loss"]) for e in epochs if e.get("train_loss") is not None]
    if pts:
        ax.plot(*zip(*pts), "o", color="tab:orange", label="epoch mean")
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("training loss (log scale)")
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3, which="both")
    return fig


def validation_figure(epochs):
    """Validation scores per epoch (CIDEr, which runs to ~10, on its own axis); None if none."""
    rows = [e for e in epochs if e.get("val")]
    keys = [k for k in ("truth_rate", "Bleu_4", "ROUGE_L", "CIDEr") if rows and k in rows[0]["val"]]
    if not keys:
        return None
    fig, ax = _axes()
    epochs_x = [e["epoch"] for e in rows]
    for k in keys:
        if k != "CIDEr":
            ax.plot(epochs_x, [e["val"][k] for e in rows], "o-", label=SCORE_LABELS[k])
    if "CIDEr" in keys:
        right = ax.twinx()
        right.plot(epochs_x, [e["val"]["CIDEr"] for e in rows], "s--", color="tab:gray", label="CIDEr")
        right.set_ylabel("CIDEr")
        right.legend(loc="lower right")
    ax.set_xticks(epochs_x)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation, {rows[-1]['val'].get('num_images')} images")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    return fig


def _thumbnail(path: str | None) -> str:
    """An <img> tag with the image embedded as PNG data, or a placeholder."""
    if not path:
        return '<div class="noimg">no image file</div>'
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            scale = THUMB / max(im.size)
            im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                           Image.NEAREST if scale >= 1 else Image.BILINEAR)
            buf = io.BytesIO()
            im.save(buf, format="PNG")
    except OSError:
        return f'<div class="noimg">cannot read {html.escape(str(path))}</div>'
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}" alt="">'


# ---------------------------------------------------------------------------- evaluations

def _evaluations(run_dir: Path) -> list[dict]:
    out = []
    for p in sorted(run_dir.glob("eval-*.json")):
        try:
            record = json.loads(p.read_text())
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("scores"), dict):
            out.append(record)
    # whole splits first, test before val, greedy before beam
    return sorted(out, key=lambda e: (_is_limited(e["scores"]), e["scores"].get("split") != "test",
                                      str(e["scores"].get("method"))))


def _is_limited(scores: dict) -> bool:
    """Whether an evaluation covered only the first images of its split (evaluate --limit)."""
    whole = scores.get("split_images")
    return isinstance(whole, int) and scores.get("num_images", whole) < whole


def _ensure_test_eval(run_dir: Path, log: Callable[[str], None], progress: bool) -> None:
    """Evaluate the latest checkpoint on the whole test split (greedy), saying so first."""
    from rnncap.evaluate import DecodeOptions, evaluate_and_save, split_images
    from rnncap.run import load_run_data, restore

    r = restore(run_dir)
    log(f"report: {run_dir} has no evaluation of a whole split; loading its data from "
        f"{r.config.data.path}")
    data = load_run_data(r.config, progress=progress)
    split = "test" if "test_features" in data else "val"
    log(f"report: evaluating the latest checkpoint on the {split} split "
        f"({len(split_images(data, split)):,} images, greedy decoding); "
        f"`rnncap evaluate` chooses the split and method")
    evaluate_and_save(r, data, split, DecodeOptions("greedy", max_length=r.max_length),
                      progress=progress)


def _image_count(scores: dict) -> str:
    n = scores.get("num_images")
    if _is_limited(scores):
        return f"{n:,} of {scores['split_images']:,} (limited run: the first {n:,})"
    return f"{n:,}" if isinstance(n, int) else "?"


def _score_cell(key: str, value) -> str:
    if not isinstance(value, (int, float)):
        return "<td>–</td>"
    text = f"{100 * value:.1f}%" if key == "truth_rate" else f"{value:.3f}"
    return f'<td class="num">{text}</td>'


def _scores_table(evals: list[dict]) -> str:
    keys = [k for k in SCORE_LABELS if any(k in e["scores"] for e in evals)]
    head = ("<tr><th>split</th><th>decoding</th><th>images</th>"
            + "".join(f"<th>{html.escape(SCORE_LABELS[k])}</th>" for k in keys) + "</tr>")
    rows = []
    for e in evals:
        s = e["scores"]
        cls = ' class="limited"' if _is_limited(s) else ""
        rows.append(f"<tr{cls}><td>{html.escape(str(s.get('split')))}</td>"
                    f"<td>{html.escape(str(s.get('method')))}</td>"
                    f"<td>{html.escape(_image_count(s))}</td>"
                    + "".join(_score_cell(k, s.get(k)) for k in keys) + "</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


# ---------------------------------------------------------------------------- page

def _table(rows: list[tuple[str, object]]) -> str:
    return "<table>" + "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                               for k, v in rows) + "</table>"


def _data_text(data_cfg: dict) -> str:
    """The data line of the summary: the folder, the format, and how the shapes generator
    was asked to make the training pictures (when the config says)."""
    text = f"{data_cfg.get('path')} ({data_cfg.get('format') or 'format detected from the folder'})"
    extras = []
    if data_cfg.get("shapes_train_images") is not None:
        extras.append(f"{data_cfg['shapes_train_images']:,} training pictures")
    if data_cfg.get("shapes_train_two_objects") is not None:
        extras.append(f"{data_cfg['shapes_train_two_objects']:.0%} of the training pictures with "
                      f"two objects (validation and test: the even draw)")
    if data_cfg.get("shapes_train_same_colour") is not None:
        extras.append(f"objects given one colour in {data_cfg['shapes_train_same_colour']:.0%} of "
                      f"the training pictures")
    if data_cfg.get("shapes_feature_stride") is not None:
        extras.append(f"feature stride {data_cfg['shapes_feature_stride']}")
    return text + ("; " + ", ".join(extras) if extras else "")


def _training_rows(train: dict) -> list[tuple[str, object]]:
    rows = []
    for key, value in train.items():
        if key == "grad_clip" and value is None:
            value = "no clipping"
        rows.append((TRAIN_LABELS.get(key, key.replace("_", " ")), value))
    return rows


def _card(rec: dict) -> str:
    verdict = ""
    if "true" in rec:
        verdict = ('<span class="ok">true of the image</span>' if rec["true"]
                   else '<span class="bad">not true of the image</span>')
    refs = "".join(f"<li>{html.escape(r)}</li>" for r in rec.get("references", [])[:5])
    caption = html.escape(rec.get("caption", "")) or "<i>(empty)</i>"
    return (f'<div class="card">{_thumbnail(rec.get("file"))}<p class="gen">{caption}</p>'
            f"<p>{verdict}</p><ol>{refs}</ol></div>")


def _attention_maps(run_dir: Path, records: list[dict]) -> str:
    """For an attention model: the first test images with each greedy word's attention map.

    The words are decoded again from the images (greedy), so the maps are exactly those of the
    captions shown; a model without attention, or a run without image files, gives "".
    """
    from rnncap.run import restore

    r = restore(run_dir)
    paths = [rec["file"] for rec in records if rec.get("file")][:ATTENTION_IMAGES]
    if getattr(r.model, "kind", None) != "attention" or "extractor" not in r.checkpoint.dirs or not paths:
        return ""
    from rnncap import decode
    from rnncap.attention_maps import attention_png, word_attention
    from rnncap.data.features import extract_files, load_extractor
    from rnncap.vision.image import open_rgb

    extractor = load_extractor(r.checkpoint.dirs["extractor"])
    try:
        feats = extract_files(extractor, paths, grid=True).astype(r.model.dtype)
    except (OSError, ValueError) as err:
        return f"<p>attention maps not drawn: {html.escape(str(err))}</p>"
    m = r.model
    tokens = decode.greedy(m.step, m.init_state(feats), start_id=m.word_to_idx["<START>"],
                           end_id=m.word_to_idx["<END>"], max_length=r.max_length,
                           null_id=m.word_to_idx["<NULL>"])
    out = []
    for path, (words, weights) in zip(paths, word_attention(m, r.vocab, feats, tokens)):
        picture = np.asarray(open_rgb(path))
        png = base64.b64encode(attention_png(picture, words, weights)).decode()
        out.append(f'<p><img src="data:image/png;base64,{png}" alt="{html.escape(" ".join(words))}"></p>')
    return ("<h2>Where the model looked</h2><p>Each word of the greedy caption of the first "
            f"{len(out)} test images, with its attention over the picture's grid (brighter: more "
            "weight).</p>" + "".join(out))


def write_report(run_dir: str | Path, *, log: Callable[[str], None] | None = None,
                 progress: bool = False) -> Path:
    """Write `run_dir/report.html`; return its path.

    Args:
        run_dir: the run folder.
        log: called with a line before anything slow (a test evaluation); default: silent.
        progress: show the progress of such an evaluation (rnncap.progress).
    """
    from rnncap.checkpoint import read_checkpoint, unpack, write_text_atomic

    log = log or (lambda line: None)
    run_dir = Path(run_dir)
    if not (run_dir / "checkpoints").is_dir():
        raise FileNotFoundError(f"{run_dir} is not a run folder (it has no checkpoints/)")
    ckpt = read_checkpoint(run_dir)
    solver = unpack(ckpt.documents.get("solver", {}), ckpt.arrays.get("solver", {}))
    config = ckpt.documents.get("config", {})
    info = ckpt.documents.get("info", {})
    epochs = [e for e in _read_jsonl(run_dir / "metrics.jsonl") if e.get("kind") == "epoch"]
    if not any(not _is_limited(e["scores"]) for e in _evaluations(run_dir)):
        _ensure_test_eval(run_dir, log, progress)
    evals = _evaluations(run_dir)
    timings_path = run_dir / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}

    curves = []
    loss_history = list(solver.get("loss_history", []))
    if loss_history or epochs:
        curves.append(("training loss", _png_data(loss_figure(loss_history, epochs))))
    fig = validation_figure(epochs)
    if fig is not None:
        curves.append(("validation scores", _png_data(fig)))

    model = ckpt.documents.get("model", {})
    vocab = ckpt.documents.get("vocab", {})
    data_cfg = config.get("data", {})
    n_params = sum(int(a.size) for a in ckpt.arrays.get("weights", {}).values())
    summary = _table([
        ("model", f"{str(model.get('cell_type', '?')).upper()}, word vectors {model.get('wordvec_dim')}, "
                  f"hidden state {model.get('hidden_dim')}, "
                  f"{'image at every time step' if model.get('image_every_step') else 'image into the first hidden state'}, "
                  f"{model.get('dtype')}, {n_params:,} parameters"
                  + (f", {model['init']} initialisation" if model.get("init") else "")),
        ("vocabulary", f"{len(vocab.get('idx_to_word', []))} tokens ({vocab.get('level', 'word')} level)"),
        ("data", _data_text(data_cfg)),
        ("trained for", f"{info.get('iteration')} iterations ({info.get('epoch')} epochs)"),
        ("checkpoint", str(ckpt.folder)),
        *[(f"time for {TIMING_LABELS.get(k, k)}", f"{v} s") for k, v in timings.items()],
    ])
    summary += "<h3>Training settings</h3>" + _table(_training_rows(config.get("train", {})))
    notes = sorted({f"{m} not reported: {why}" for e in evals
                    for m, why in e["scores"].get("omitted", {}).items()})

    shown = next((e for e in evals if e["scores"].get("method") == "greedy"),
                 evals[0] if evals else None)
    cards = [_card(rec) for rec in (shown["images"][:GRID_IMAGES] if shown else [])]
    if shown:
        s = shown["scores"]
        grid_intro = (f"<p>The first {len(cards)} images of the {html.escape(str(s.get('split')))} "
                      f"split: the caption made by {html.escape(str(s.get('method')))} decoding in "
                      f"bold{', whether it is true of the image,' if any('true' in r for r in shown['images'][:1]) else ''} "
                      f"and the human reference captions below.</p>")
    else:
        grid_intro = "<p>No evaluation to show.</p>"
    title = f"rnncap run report — {run_dir.name}"
    template = string.Template(resources.files("rnncap").joinpath("templates/report.html")
                               .read_text(encoding="utf-8"))
    page = template.substitute(
        title=html.escape(title), thumb=THUMB, summary=summary, scores=_scores_table(evals),
        notes="".join(f"<p><small>{html.escape(n)}</small></p>" for n in notes),
        curves="".join(f'<img src="{src}" alt="{html.escape(alt)}"> ' for alt, src in curves)
        or "<p>no curves recorded</p>",
        grid_intro=grid_intro, cards="".join(cards),
        attention=_attention_maps(run_dir, shown["images"] if shown else []))
    return write_text_atomic(run_dir / "report.html", page)
