"""A training run: config -> data -> model -> solver, watched, checkpointed and resumable.

A run folder holds everything about one training run::

    RUN/
        config.json          the whole RunConfig
        metrics.jsonl        one line per epoch (and per interruption): loss, lr, validation scores
        checkpoints/         ckpt-<iteration>/ folders and the `latest` pointer (rnncap.checkpoint)

Every checkpoint holds the config, the vocabulary, the model's constructor arguments and weights, the
solver's state (iteration, epoch, optimizer moments, minibatch RNG) and the feature extractor's
specification, so `--resume` continues bit for bit and `rnncap caption` needs nothing else.

This module wires the parts together. It does no math, parses no flags and reads no data files
itself.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnncap import __version__
from rnncap.atomic import write_text
from rnncap.checkpoint import CheckpointError, pack, read_checkpoint, save_to_run, unpack
from rnncap.config import RunConfig, from_dict, to_dict
from rnncap.evaluate import DecodeOptions, evaluate_split
from rnncap.schema import check_training_checkpoint

__all__ = ["TrainingError", "Restored", "train", "restore", "load_run_data", "say"]


class TrainingError(RuntimeError):
    """Training stopped on an error (a non-finite loss, say); the last good checkpoint remains."""


def say(message: str) -> None:
    """Print a line without breaking a progress bar."""
    from tqdm import tqdm

    tqdm.write(message)


@dataclass
class Restored:
    """A model rebuilt from a checkpoint, with what is needed to use it."""

    model: object
    vocab: object
    config: RunConfig
    checkpoint: object  # rnncap.checkpoint.Checkpoint
    max_length: int  # tokens the model was trained to generate, <END> included


def load_run_data(config: RunConfig, progress: bool = True, generate: bool = True) -> dict:
    """Load the data a config names.

    The built-in shapes dataset is generated where it is missing only with `generate` (a new
    training run asks for it; evaluating or resuming does not, so a mistyped or moved path
    is an error instead of 12,000 new images there).
    """
    from rnncap.data import load_data

    d = config.data
    opts = {"level": d.level, "min_count": d.min_count, "max_train": d.max_train,
            "progress": progress}
    if d.format == "shapes":
        opts["generate"] = generate
    if d.max_length is not None:
        opts["max_length"] = d.max_length
    return load_data(d.path, d.format, **opts)


def check_training_memory(config: RunConfig, V: int, D: int, T: int) -> None:
    """Refuse (MemoryEstimateError) sizes whose training could not fit in this machine's memory.

    Counted: the parameters four times (values, gradients, two Adam moments) and one training
    step's largest activations (rnncap.memory).
    """
    from rnncap import memory

    m, t = config.model, config.train
    itemsize = 4 if m.dtype == "float32" else 8
    params = memory.model_bytes(V, D, m.wordvec_dim, m.hidden_dim, m.cell_type, itemsize,
                                m.image_every_step)
    step = memory.training_step_bytes(t.batch_size, T, V, m.wordvec_dim, m.hidden_dim,
                                      m.cell_type, itemsize)
    memory.require(4 * params + step,
                   f"training with model.hidden_dim {m.hidden_dim}, model.wordvec_dim "
                   f"{m.wordvec_dim}, train.batch_size {t.batch_size} ({V} words, {D}-d features, "
                   f"{T} tokens per caption)")


def _build_model(word_to_idx, input_dim: int, config: RunConfig):
    from rnncap.model import CaptioningRNN

    m = config.model
    return CaptioningRNN(word_to_idx, input_dim=input_dim, wordvec_dim=m.wordvec_dim,
                         hidden_dim=m.hidden_dim, cell_type=m.cell_type, dtype=m.dtype,
                         seed=config.train.seed, image_every_step=m.image_every_step)


def restore(path: str | Path) -> Restored:
    """Rebuild the model of a checkpoint (a checkpoint folder, or a run folder's latest)."""
    from rnncap.model import CaptioningRNN

    ckpt = read_checkpoint(path)
    checked = check_training_checkpoint(ckpt)  # every document's types and ranges, first
    config, vocab = checked["config"], checked["vocab"]
    try:
        model = CaptioningRNN(vocab.word_to_idx, **ckpt.documents["model"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {ckpt.folder} is incompatible: {err}") from None
    weights = ckpt.arrays["weights"]
    max_length = ckpt.documents["info"]["max_length"]
    if set(weights) != set(model.params):
        raise CheckpointError(f"{ckpt.folder}/weights.npz holds {sorted(weights)}, the model needs "
                              f"{sorted(model.params)}")
    for k, v in weights.items():
        if v.shape != model.params[k].shape or v.dtype != model.params[k].dtype:
            raise CheckpointError(f"{ckpt.folder}/weights.npz: {k} is {v.dtype} {v.shape}, the model "
                                  f"needs {model.params[k].dtype} {model.params[k].shape}")
        model.params[k] = v
    return Restored(model, vocab, config, ckpt, max_length)


def _save(run_dir, config, model, vocab, solver, data, history, keep):
    solver_arrays: dict = {}
    solver_doc = pack(solver.state_dict(), solver_arrays)
    info = {"rnncap_version": __version__, "max_length": int(data["train_captions"].shape[1] - 1),
            "input_dim": int(data["train_features"].shape[1]), "iteration": int(solver.t),
            "epoch": int(solver.epoch), "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    dirs = {"extractor": data["extractor_dir"]} if data.get("extractor_dir") else {}
    return save_to_run(
        run_dir, f"ckpt-{solver.t:08d}", keep=keep, dirs=dirs,
        documents={"config": to_dict(config), "model": model.config, "vocab": vocab.to_json(),
                   "solver": solver_doc, "history": history, "info": info},
        arrays={"weights": dict(model.params), "solver": solver_arrays})


def _learning_rate(solver) -> float:
    """The learning rate the solver's next iteration uses (the same for every parameter)."""
    return float(solver.optim_configs[next(iter(solver.optim_configs))]["learning_rate"])


def _append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def train(config: RunConfig | None, run_dir: str | Path, *, resume: bool = False,
          num_epochs: int | None = None, progress: bool = True, data: dict | None = None,
          stop_after: int | None = None) -> dict:
    """Train (or resume) a run; checkpoint every epoch, on Ctrl-C and at the end.

    Args:
        config: the run's configuration; ignored on resume, which uses the checkpoint's own.
        run_dir: the run folder.
        resume: continue from the run folder's latest checkpoint.
        num_epochs: train for this many epochs in all instead (on resume: to train longer).
        progress: show a progress bar.
        data: already loaded data (tests, the demo); loaded from config.data when None.
        stop_after: stop (as if interrupted) once this many iterations are done in total.
    Returns:
        A summary: status ('finished' or 'interrupted'), checkpoint path, iterations, timings,
        final training loss and the last validation scores.
    """
    from rnncap.solver import CaptioningSolver

    run_dir = Path(run_dir)
    timings = {}
    restored = None
    if resume:
        restored = restore(run_dir)
        config = restored.config
    elif config is None:
        raise ValueError("a new run needs a config")
    elif (run_dir / "checkpoints").exists():
        raise FileExistsError(f"{run_dir} already holds a run; pass --resume to continue it, "
                              f"or choose a new --out folder")
    elif config.data.path is not None:  # evaluate/report/resume may run from another folder
        config = from_dict(RunConfig, {"data": {"path": str(Path(config.data.path).resolve())}},
                           "config", base=config)
    if num_epochs is not None:
        config = from_dict(RunConfig, {"train": {"num_epochs": num_epochs}}, "num_epochs", base=config)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.json", json.dumps(to_dict(config), indent=1))

    t0 = time.perf_counter()
    if data is None:
        data = load_run_data(config, progress, generate=not resume)
    timings["data_s"] = time.perf_counter() - t0
    vocab = data["vocab"]
    check_training_memory(config, len(vocab.idx_to_word), data["train_features"].shape[1],
                          data["train_captions"].shape[1])
    model = _build_model(data["word_to_idx"], data["train_features"].shape[1], config)
    history: list = []
    if restored is not None:
        if restored.vocab.idx_to_word != vocab.idx_to_word:
            raise CheckpointError(f"the data's vocabulary differs from the checkpoint's in {run_dir}; "
                                  f"resume needs the same data")
        model.params.update(restored.model.params)
        history = list(restored.checkpoint.documents.get("history", []))

    tc = config.train
    val_options = DecodeOptions("greedy", max_length=data["train_captions"].shape[1] - 1)
    metrics_path = run_dir / "metrics.jsonl"
    epoch_start = {"t": 0, "time": time.perf_counter(), "lr": tc.learning_rate}
    saved = {"t": None, "ckpt": None}

    def record(solver, kind):
        losses = solver.loss_history[epoch_start["t"]:]
        rec = {"kind": kind, "epoch": solver.epoch, "iteration": solver.t,
               "train_loss": float(np.mean(losses)) if losses else None,
               "learning_rate": epoch_start["lr"],  # the rate this epoch trained at
               "epoch_s": round(time.perf_counter() - epoch_start["time"], 3)}
        if kind == "epoch" and tc.val_images and "val_features" in data:
            t = time.perf_counter()
            scores, _ = evaluate_split(model, data, vocab, "val", val_options,
                                       limit=tc.val_images, meteor=False)
            rec["val"] = scores
            rec["val_s"] = round(time.perf_counter() - t, 3)
        history.append(rec)
        _append_jsonl(metrics_path, rec)
        return rec

    def on_epoch_end(solver):
        rec = record(solver, "epoch")
        line = (f"epoch {solver.epoch}/{tc.num_epochs}  iter {solver.t}  "
                f"train loss {rec['train_loss']:.4f}  lr {rec['learning_rate']:.2e}")
        val = rec.get("val", {})
        for key, name in (("truth_rate", "truth"), ("Bleu_4", "BLEU-4"), ("CIDEr", "CIDEr")):
            if key in val:
                line += f"  val {name} {val[key]:.3f}"
        say(line)
        saved["ckpt"] = _save(run_dir, config, model, vocab, solver, data, history, tc.keep_checkpoints)
        saved["t"] = solver.t
        epoch_start.update(t=solver.t, time=time.perf_counter(), lr=_learning_rate(solver))

    def on_iteration(solver):
        if stop_after is not None and solver.t >= stop_after:
            solver.stop_requested = True

    solver = CaptioningSolver(
        model, data, update_rule=tc.update_rule, optim_config={"learning_rate": tc.learning_rate},
        lr_decay=tc.lr_decay, batch_size=tc.batch_size, num_epochs=tc.num_epochs, verbose=False,
        progress=progress, seed=tc.seed, grad_clip=tc.grad_clip, callbacks=[on_epoch_end],
        **({"iteration_callbacks": [on_iteration]} if stop_after is not None else {}))
    if restored is not None:
        solver.load_state_dict(unpack(restored.checkpoint.documents["solver"],
                                      restored.checkpoint.arrays.get("solver", {})))
        solver.num_epochs = tc.num_epochs
        solver.num_iterations = tc.num_epochs * solver.iterations_per_epoch
        # this epoch's mean loss covers its iterations from before the interruption too
        epoch_start.update(t=solver.epoch * solver.iterations_per_epoch, lr=_learning_rate(solver))

    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):
        if solver.stop_requested:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        solver.stop_requested = True
        say("Ctrl-C: finishing this iteration, then saving a checkpoint (Ctrl-C again to abort)")

    t0 = time.perf_counter()
    try:
        signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread: no handler, Ctrl-C just raises
        previous = None
    try:
        solver.train()
    except FloatingPointError as err:
        raise TrainingError(f"training stopped: {err}. The last good checkpoint is kept in "
                            f"{run_dir / 'checkpoints'}") from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    timings["train_s"] = time.perf_counter() - t0
    status = "interrupted" if solver.stop_requested and solver.t < solver.num_iterations else "finished"
    if status == "interrupted":
        record(solver, "interrupted")
        say(f"stopped at iteration {solver.t}; resume with --resume")
    ckpt = saved["ckpt"]
    if saved["t"] != solver.t:
        ckpt = _save(run_dir, config, model, vocab, solver, data, history, tc.keep_checkpoints)
    last_val = next((h["val"] for h in reversed(history) if "val" in h), None)
    return {"status": status, "checkpoint": str(ckpt), "iterations": solver.t,
            "num_iterations": solver.num_iterations, "timings": timings,
            "final_train_loss": history[-1]["train_loss"] if history else None,
            "val": last_val, "model": model, "data": data, "vocab": vocab}
