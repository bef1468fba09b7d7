"""The run report: one self-contained `report.html` with pictures, beside its PNG curves.

`write_report(run_dir)` reads what a run folder already holds — config.json, metrics.jsonl, the
latest checkpoint's loss history, eval-<split>-<method>.json files, timings.json — and writes:

    report.html       summary of model, data and timings; test scores; a grid of test images
                      (embedded as PNG data) with the generated caption, its truth verdict for the
                      shapes data, and the reference captions
    loss.png          training loss per iteration and per epoch
    validation.png    validation truth rate / BLEU-4 / CIDEr per epoch

This module reads run folders and draws. It does not train, decode or score: when a run has no
test evaluation yet, it asks rnncap.evaluate for one.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from pathlib import Path

__all__ = ["write_report"]

GRID_IMAGES = 24
THUMB = 128


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


def _axes():
    """A new figure and axes on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6, 3.5), dpi=100)


def _finish(fig, ax, path: Path) -> None:
    import matplotlib.pyplot as plt

    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    os.replace(tmp, path)


def _plot_loss(loss_history, epochs, path: Path) -> bool:
    if not loss_history and not epochs:
        return False
    fig, ax = _axes()
    if loss_history:
        ax.plot(range(1, len(loss_history) + 1), loss_history, lw=0.6, alpha=0.6, label="iteration")
    pts = [(e["iteration"], e["train_loss"]) for e in epochs if e.get("train_loss") is not None]
    if pts:
        ax.plot(*zip(*pts), "o-", label="epoch mean")
    ax.set_xlabel("iteration")
    ax.set_ylabel("training loss")
    _finish(fig, ax, path)
    return True


def _plot_validation(epochs, path: Path) -> bool:
    rows = [e for e in epochs if e.get("val")]
    keys = [k for k in ("truth_rate", "Bleu_4", "CIDEr", "ROUGE_L") if rows and k in rows[0]["val"]]
    if not keys:
        return False
    fig, ax = _axes()
    epochs_x = [e["epoch"] for e in rows]
    for k in keys:
        if k != "CIDEr":
            ax.plot(epochs_x, [e["val"][k] for e in rows], "o-", label=k)
    if "CIDEr" in keys:  # CIDEr runs to ~10: its own axis, so the others stay readable
        right = ax.twinx()
        right.plot(epochs_x, [e["val"]["CIDEr"] for e in rows], "s--", color="tab:gray", label="CIDEr")
        right.set_ylabel("CIDEr")
        right.legend(loc="lower right")
    ax.set_xticks(epochs_x)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation ({rows[-1]['val'].get('num_images')} images)")
    _finish(fig, ax, path)
    return True


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


def _evaluations(run_dir: Path) -> list[dict]:
    out = []
    for p in sorted(run_dir.glob("eval-*.json")):
        try:
            out.append(json.loads(p.read_text()))
        except ValueError:
            continue
    return out


def _ensure_test_eval(run_dir: Path) -> None:
    """Evaluate the latest checkpoint on the test split (greedy) when the run has no evaluation."""
    from rnncap.evaluate import DecodeOptions, evaluate_and_save
    from rnncap.run import load_run_data, restore

    r = restore(run_dir)
    data = load_run_data(r.config, progress=False)
    split = "test" if "test_features" in data else "val"
    evaluate_and_save(r, data, split, DecodeOptions("greedy", max_length=r.max_length),
                   out=run_dir / f"eval-{split}-greedy.json")


def _table(rows: list[tuple[str, object]]) -> str:
    return "<table>" + "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                               for k, v in rows) + "</table>"


def write_report(run_dir: str | Path) -> Path:
    """Write `run_dir/report.html` (and its PNG curves); return its path."""
    from rnncap.checkpoint import read_checkpoint, unpack, write_text_atomic

    run_dir = Path(run_dir)
    if not (run_dir / "checkpoints").is_dir():
        raise FileNotFoundError(f"{run_dir} is not a run folder (it has no checkpoints/)")
    ckpt = read_checkpoint(run_dir)
    solver = unpack(ckpt.documents.get("solver", {}), ckpt.arrays.get("solver", {}))
    config = ckpt.documents.get("config", {})
    info = ckpt.documents.get("info", {})
    epochs = [e for e in _read_jsonl(run_dir / "metrics.jsonl") if e.get("kind") == "epoch"]
    if not _evaluations(run_dir):
        _ensure_test_eval(run_dir)
    evals = _evaluations(run_dir)
    timings = json.loads((run_dir / "timings.json").read_text()) if (run_dir / "timings.json").exists() else {}

    curves = []
    if _plot_loss(list(solver.get("loss_history", [])), epochs, run_dir / "loss.png"):
        curves.append("loss.png")
    if _plot_validation(epochs, run_dir / "validation.png"):
        curves.append("validation.png")

    model = ckpt.documents.get("model", {})
    n_params = sum(int(a.size) for a in ckpt.arrays.get("weights", {}).values())
    summary = _table([
        ("model", f"{model.get('cell_type', '?').upper()}, word vectors {model.get('wordvec_dim')}, "
                  f"hidden {model.get('hidden_dim')}, image at every step {model.get('image_every_step')}, "
                  f"{model.get('dtype')}, {n_params:,} parameters"),
        ("vocabulary", f"{len(ckpt.documents.get('vocab', {}).get('idx_to_word', []))} tokens "
                       f"({ckpt.documents.get('vocab', {}).get('level', 'word')} level)"),
        ("data", f"{config.get('data', {}).get('path')} ({config.get('data', {}).get('format') or 'detected'})"),
        ("training", json.dumps(config.get("train", {}))),
        ("iterations", f"{info.get('iteration')} (epoch {info.get('epoch')})"),
        ("checkpoint", str(ckpt.folder)),
        *[(f"time: {k}", f"{v} s") for k, v in timings.items()],
    ])
    score_keys = ["truth_rate", "Bleu_1", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr"]
    score_rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(e['scores'].get(k)))}</td>" for k in ("split", "method", "num_images"))
        + "".join(f"<td>{e['scores'][k]:.3f}</td>" if isinstance(e["scores"].get(k), (int, float)) else "<td>–</td>"
                  for k in score_keys) + "</tr>" for e in evals)
    scores = ("<table><tr><th>split</th><th>decoding</th><th>images</th>"
              + "".join(f"<th>{k}</th>" for k in score_keys) + f"</tr>{score_rows}</table>")
    notes = sorted({f"{m} not reported: {why}" for e in evals for m, why in e["scores"].get("omitted", {}).items()})

    shown = next((e for e in evals if e["scores"].get("method") == "greedy"), evals[0] if evals else None)
    cards = []
    for rec in (shown["images"][:GRID_IMAGES] if shown else []):
        verdict = ""
        if "true" in rec:
            verdict = '<span class="ok">true</span>' if rec["true"] else '<span class="bad">false</span>'
        refs = "".join(f"<li>{html.escape(r)}</li>" for r in rec["references"][:5])
        cards.append(f'<div class="card">{_thumbnail(rec.get("file"))}<p class="gen">'
                     f'{html.escape(rec["caption"]) or "<i>(empty)</i>"} {verdict}</p><ol>{refs}</ol></div>')
    title = f"rnncap run report — {run_dir.name}"
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 12px; }}
.card {{ border: 1px solid #ddd; border-radius: 6px; padding: 8px; }} .card img {{ image-rendering: pixelated; }}
.gen {{ font-weight: 600; }} .ok {{ color: #080; }} .bad {{ color: #b00; }} ol {{ font-size: 0.85em; color: #555; padding-left: 1.2em; }}
.noimg {{ width: {THUMB}px; height: {THUMB}px; background: #eee; font-size: 0.8em; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<h2>Summary</h2>{summary}
<h2>Scores</h2>{scores}
{"".join(f"<p><small>{html.escape(n)}</small></p>" for n in notes)}
<h2>Curves</h2>{"".join(f'<img src="{c}" alt="{c}"> ' for c in curves) or "<p>no curves recorded</p>"}
<h2>Test images</h2>
<p>The first {len(cards)} images of the {html.escape(str(shown["scores"].get("split")) if shown else "")} split:
generated caption ({html.escape(str(shown["scores"].get("method")) if shown else "")}) in bold, references below.</p>
<div class="grid">{"".join(cards)}</div>
</body></html>
"""
    return write_text_atomic(run_dir / "report.html", page)
