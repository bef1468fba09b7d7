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
from rnncap.checkpoint import (CheckpointError, find_latest, pack, read_checkpoint, save_to_run,
                               unpack)
from rnncap.config import RunConfig, from_dict, load_config, to_dict
from rnncap.evaluate import DecodeOptions, evaluate_split
from rnncap.schema import check_training_checkpoint
from rnncap.parallel import get_threads

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
    feature_stats: object = None  # rnncap.ood.FeatureStats, or None (a checkpoint without them)


def load_run_data(config: RunConfig, progress: bool = True, generate: bool = True) -> dict:
    """Load the data a config names.

    The built-in shapes dataset is generated where it is missing only with `generate` (a new
    training run asks for it; evaluating or resuming does not, so a mistyped or moved path
    is an error instead of 12,000 new images there).
    """
    from rnncap.data import detect_format, load_data

    d = config.data
    opts = {"level": d.level, "min_count": d.min_count, "max_train": d.max_train,
            "progress": progress}
    if d.format == "shapes":
        opts["generate"] = generate
    if d.features is not None:
        from rnncap.config import ConfigError

        fmt = d.format or detect_format(d.path)
        if fmt not in ("karpathy", "coco"):
            raise ConfigError(f"data.features names a features file, which only the karpathy and coco "
                              f"formats read (format here: {fmt})")
        opts["features"] = d.features
    if d.max_length is not None:
        opts["max_length"] = d.max_length
    if d.shapes_train_images is not None:
        opts["num_train"] = d.shapes_train_images
    if d.shapes_train_two_objects is not None:  # the generator's 1..2 objects, weighted
        opts["train_object_weights"] = (1 - d.shapes_train_two_objects, d.shapes_train_two_objects)
    if d.shapes_train_same_colour is not None:
        opts["train_same_colour"] = d.shapes_train_same_colour
    if d.shapes_feature_stride is not None:
        opts["extractor_options"] = {"stride": d.shapes_feature_stride}
    attention = config.model.kind == "attention"
    fmt = d.format if d.format is not None or d.path is None else detect_format(d.path)
    if attention and fmt in ("shapes", "karpathy"):
        # Features computed from the images: the extractor's grid, not its pooled vectors.
        opts["grid"] = True
    return load_data(d.path, fmt, **opts)


def check_feature_rank(features, attention: bool, source) -> None:
    """Raise ValueError naming `source` unless features (I, ...) suit the model kind:
    grids (I, L, D) for the attention model, vectors (I, D) for CaptioningRNN."""
    shape = np.shape(features)
    got = "(I, " + ", ".join(str(s) for s in shape[1:]) + ")"  # I: however many images
    if attention and len(shape) != 3:
        raise ValueError(f"{source}: the attention model needs grid features of shape (I, L, D); "
                         f"got {got} (pooled features are for --model rnn)")
    if not attention and len(shape) != 2:
        raise ValueError(f"{source}: --model rnn needs one feature vector per image, shape (I, D); "
                         f"got {got} (grid features are for --model attention)")


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
    m = config.model
    if m.kind == "attention":
        from rnncap.attention_model import AttentionCaptioner

        return AttentionCaptioner(word_to_idx, input_dim=input_dim, wordvec_dim=m.wordvec_dim,
                                  hidden_dim=m.hidden_dim, attention_dim=m.attention_dim,
                                  dtype=m.dtype, seed=config.train.seed,
                                  doubly_stochastic=m.doubly_stochastic)
    from rnncap.model import CaptioningRNN

    return CaptioningRNN(word_to_idx, input_dim=input_dim, wordvec_dim=m.wordvec_dim,
                         hidden_dim=m.hidden_dim, cell_type=m.cell_type, dtype=m.dtype,
                         seed=config.train.seed, image_every_step=m.image_every_step,
                         init=m.init)


def model_from_document(word_to_idx, document: dict):
    """The model a checkpoint's model.json describes: CaptioningRNN, or the class its
    "kind" names."""
    document = dict(document)
    if document.pop("kind", None) == "attention":
        from rnncap.attention_model import AttentionCaptioner

        return AttentionCaptioner(word_to_idx, **document)
    from rnncap.model import CaptioningRNN

    return CaptioningRNN(word_to_idx, **document)


def restore(path: str | Path) -> Restored:
    """Rebuild the model of a checkpoint (a checkpoint folder, or a run folder's latest)."""

    ckpt = read_checkpoint(path)
    checked = check_training_checkpoint(ckpt)  # every document's types and ranges, first
    config, vocab = checked["config"], checked["vocab"]
    try:
        model = model_from_document(vocab.word_to_idx, ckpt.documents["model"])
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
    stats = None
    if "feature_stats" in ckpt.documents:
        from rnncap import ood

        try:
            stats = ood.from_checkpoint(ckpt.documents["feature_stats"], ckpt.arrays.get("feature_stats", {}),
                                        source=f"{ckpt.folder}/feature_stats")
        except ValueError as err:  # the message names the file; the type says a checkpoint is damaged
            raise CheckpointError(str(err)) from None
        if stats.mean.shape[0] != model.input_dim:
            raise CheckpointError(f"{ckpt.folder}/feature_stats.npz has {stats.mean.shape[0]}-d statistics, "
                                  f"the model reads {model.input_dim}-d features")
    return Restored(model, vocab, config, ckpt, max_length, stats)


def data_backbone(data: dict) -> dict | None:
    """{"name", "fingerprint"} of the feature extractor that made the data's features, if known."""
    from rnncap.data.featfile import fingerprint
    from rnncap.data.features import read_saved

    if data.get("features_file"):
        attrs = data["features_file"]["attrs"]
        return {"name": attrs.get("backbone"), "fingerprint": attrs.get("fingerprint")}
    if data.get("extractor_dir"):
        spec, arrays = read_saved(data["extractor_dir"])
        return {"name": spec.get("name"), "fingerprint": fingerprint(spec, arrays)}
    return None


def checkpoint_backbone(ckpt) -> dict | None:
    """{"name", "fingerprint"} of the feature extractor a checkpoint holds, or None."""
    from rnncap.data.featfile import fingerprint
    from rnncap.data.features import read_saved

    if "extractor" not in ckpt.dirs:
        return None
    spec, arrays = read_saved(ckpt.dirs["extractor"])
    return {"name": spec.get("name"), "fingerprint": fingerprint(spec, arrays)}


def check_backbone(ckpt, data: dict, where: str) -> None:
    """Refuse data whose features another extractor made than the one the checkpoint was trained on."""
    theirs, ours = data_backbone(data), checkpoint_backbone(ckpt)
    if theirs is None or ours is None or theirs["fingerprint"] == ours["fingerprint"]:
        return
    raise CheckpointError(f"the features of {where} were made by backbone {theirs['name']!r} "
                         f"(fingerprint {theirs['fingerprint'][:12]}), but checkpoint {ckpt.folder} was "
                         f"trained on backbone {ours['name']!r} (fingerprint {ours['fingerprint'][:12]}); "
                         f"make the features with the checkpoint's backbone")


def _trained_on(config: RunConfig, data: dict) -> str:
    """One line naming what a model was trained on, for the out-of-distribution warning."""
    n = len(data["train_features"])
    backbone = data_backbone(data)
    feats = f"{backbone['name']} features" if backbone else "precomputed features"
    if config.data.format == "shapes":
        return f"the built-in shapes dataset ({n} training images of coloured shapes, {feats})"
    name = Path(config.data.path).name if config.data.path else "data"
    return f"{config.data.format or 'the'} data {name!r} ({n} training images, {feats})"


def _feature_stats(config: RunConfig, data: dict):
    """(document, arrays) of the training features' statistics (rnncap.ood), or None.

    Grids (an attention model's features) are summarised by their mean over cells (rnncap.ood's
    docstring says why), so their statistics have the size D of one cell's vector.
    """
    from rnncap import ood

    stats = ood.fit_stats(data["train_features"], np.random.default_rng(config.train.seed),
                          calibration=data.get("val_features"))
    return None if stats is None else ood.to_checkpoint(stats, _trained_on(config, data))


def _save(run_dir, config, model, vocab, solver, data, history, keep, stats=None):
    import tempfile

    solver_arrays: dict = {}
    solver_doc = pack(solver.state_dict(), solver_arrays)
    info = {"rnncap_version": __version__, "max_length": int(data["train_captions"].shape[1] - 1),
            "input_dim": int(data["train_features"].shape[-1]), "iteration": int(solver.t),
            "epoch": int(solver.epoch), "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    documents = {"config": to_dict(config), "model": model.config, "vocab": vocab.to_json(),
                 "solver": solver_doc, "history": history, "info": info}
    arrays = {"weights": dict(model.params), "solver": solver_arrays}
    if stats is not None:
        documents["feature_stats"], arrays["feature_stats"] = stats
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {}
        if data.get("extractor_dir"):
            dirs["extractor"] = data["extractor_dir"]
        elif data.get("features_file") and data["features_file"].get("extractor"):
            # features from `rnncap features`: the extractor travels inside that file
            from rnncap.data.features import save_spec

            dirs["extractor"] = os.path.join(tmp, "extractor")
            save_spec(dirs["extractor"], *data["features_file"]["extractor"])
        return save_to_run(run_dir, f"ckpt-{solver.t:08d}", keep=keep, dirs=dirs,
                           documents=documents, arrays=arrays)


def _learning_rate(solver) -> float:
    """The learning rate the solver's next iteration uses (the same for every parameter)."""
    return float(solver.optim_configs[next(iter(solver.optim_configs))]["learning_rate"])


def _append_jsonl(path: Path, record: dict) -> None:
    try:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        kept, _ = find_latest(path.parent / "checkpoints")
        raise TrainingError(f"cannot append to {path}: {err.strerror or err}; " + (
            f"the last checkpoint, {kept}, is kept: resume with --resume once the folder can be "
            f"written" if kept is not None else "no checkpoint was saved before it")) from None


def _write_if_changed(path: Path, text: str) -> None:
    """Write `text` atomically unless `path` already holds exactly that (a resume of a finished
    run writes nothing)."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except (OSError, UnicodeDecodeError):
        pass
    write_text(path, text)


def _prepare(config: RunConfig | None, run_dir: Path, resume: bool,
             num_epochs: int | None, ranks: int = 1) -> tuple[RunConfig, Restored | None]:
    """The run's config (the checkpoint's own on resume) and what a resume restores.

    A resume continues from the newest complete checkpoint when the `latest` pointer is missing
    or broken, and starts afresh from the run's config.json when no checkpoint was completed
    (a kill or a full disk during the first save); a new run is refused only where a complete
    checkpoint exists.
    """
    restored = None
    latest, note = find_latest(run_dir / "checkpoints")
    if resume and latest is not None:
        if note:
            say(note)
        restored = restore(latest)
        config = restored.config
    elif resume:
        if not (run_dir / "config.json").is_file():
            raise CheckpointError(f"{run_dir} holds no checkpoint and no config.json: nothing to resume")
        say(f"{run_dir} holds no complete checkpoint; starting afresh from its config.json")
        config = load_config(run_dir / "config.json")
    elif config is None:
        raise ValueError("a new run needs a config")
    elif latest is not None:
        raise FileExistsError(f"{run_dir} already holds a run; pass --resume to continue it, "
                              f"or choose a new --out folder")
    if not resume and config.data.path is not None:  # evaluate/report/resume may run from another folder
        paths = {"path": str(Path(config.data.path).resolve())}
        if config.data.features is not None:
            paths["features"] = str(Path(config.data.features).resolve())
        config = from_dict(RunConfig, {"data": paths}, "config", base=config)
    if num_epochs is not None:
        done = restored.checkpoint.documents["info"]["epoch"] if restored is not None else 0
        if num_epochs < done:
            raise ValueError(f"--epochs {num_epochs} is fewer than the {done} epochs the checkpoint "
                             f"{restored.checkpoint.folder} has trained; a run cannot be shortened")
        config = from_dict(RunConfig, {"train": {"num_epochs": num_epochs}}, "num_epochs", base=config)
    if config.train.row_groups is None:  # fixed for the whole run, resumes included
        # MPI ranks share the cores already: one row group each unless --threads says otherwise
        groups = get_threads() if ranks == 1 or _threads_set() else 1
        config = from_dict(RunConfig, {"train": {"row_groups": groups}}, "threads", base=config)
    return config, restored


def _threads_set() -> bool:
    from rnncap import parallel

    return parallel.get_threads() != parallel.default_threads()


class _Trainer:
    """One training run's bookkeeping around a CaptioningSolver, step by named step.

    The solver trains; the trainer hooks into it at two points: `on_iteration` (stop
    after a given iteration) and `on_epoch_end` (record the epoch, score a validation
    subset, checkpoint). It owns the run folder's files and the current epoch's start
    (first iteration, clock, learning rate), from which each metrics record is made.
    """

    def __init__(self, run_dir: Path, config: RunConfig, model, data: dict, history: list,
                 stop_after: int | None, stats=None, comm=None):
        self.run_dir = run_dir
        self.stats = stats  # (document, arrays) of the training features' statistics, or None
        self.config = config
        self.model = model
        self.data = data
        self.vocab = data["vocab"]
        self.history = history
        self.stop_after = stop_after
        self.comm = comm  # MPI communicator (rnncap.mpi), or None for one process
        self.reducer = None
        if comm is not None:
            from rnncap.mpi import Reducer

            self.reducer = Reducer(comm)
        self.is_root = comm is None or comm.Get_rank() == 0  # the one that writes the run folder
        self.metrics_path = run_dir / "metrics.jsonl"
        self.val_options = DecodeOptions("greedy", max_length=data["train_captions"].shape[1] - 1)
        self.checkpoint = None  # path of the last checkpoint written
        self.saved_at = None  # the iteration it holds
        self.epoch_first_t = 0  # the current epoch's first iteration (0-based)
        self.epoch_started = time.perf_counter()
        self.epoch_lr = config.train.learning_rate  # the rate the current epoch trains at

    def make_solver(self, progress: bool, state: dict | None):
        """The solver, fresh or (with `state`, a solver.state_dict()) where a run stopped."""
        from rnncap.solver import CaptioningSolver

        tc = self.config.train
        hooks = {"iteration_callbacks": [self.on_iteration]} if self.stop_after is not None else {}
        solver = CaptioningSolver(
            self.model, self.data, update_rule=tc.update_rule,
            optim_config={"learning_rate": tc.learning_rate}, lr_decay=tc.lr_decay,
            lr_schedule=tc.lr_schedule, batch_size=tc.batch_size, num_epochs=tc.num_epochs,
            verbose=False, progress=progress,
            seed=tc.seed, grad_clip=tc.grad_clip, callbacks=[self.on_epoch_end],
            loss_fn=getattr(self.model, "fast_loss", None),  # None: model.loss
            row_groups=tc.row_groups, reducer=self.reducer, **hooks)
        if state is not None:
            solver.load_state_dict(state)
            if solver.epoch != solver.t // solver.iterations_per_epoch:
                raise CheckpointError(
                    f"the checkpoint's solver state is inconsistent: iteration {solver.t} is in "
                    f"epoch {solver.t // solver.iterations_per_epoch} at "
                    f"{solver.iterations_per_epoch} iterations per epoch, not {solver.epoch}")
            # this epoch's mean loss covers its iterations from before the interruption too
            self.epoch_first_t = solver.epoch * solver.iterations_per_epoch
            self.epoch_lr = _learning_rate(solver)
        return solver

    def on_iteration(self, solver) -> None:
        if self.stop_after is not None and solver.t >= self.stop_after:
            solver.stop_requested = True

    def on_epoch_end(self, solver) -> None:
        if self.is_root:
            rec = self.record(solver, "epoch")
            say(self.epoch_line(solver, rec))
        self.save(solver)
        self.epoch_first_t = solver.t
        self.epoch_started = time.perf_counter()
        self.epoch_lr = _learning_rate(solver)

    def record(self, solver, kind: str) -> dict:
        """Append the current epoch's record ('epoch' or 'interrupted') to the history and
        to metrics.jsonl; an epoch's record includes the validation scores."""
        tc = self.config.train
        losses = solver.loss_history[self.epoch_first_t:]
        rec = {"kind": kind, "epoch": solver.epoch, "iteration": solver.t,
               "train_loss": float(np.mean(losses)) if losses else None,
               "learning_rate": self.epoch_lr,  # the rate this epoch trained at
               "epoch_s": round(time.perf_counter() - self.epoch_started, 3)}
        if kind == "epoch" and tc.val_images and "val_features" in self.data:
            t = time.perf_counter()
            scores, _ = evaluate_split(self.model, self.data, self.vocab, "val", self.val_options,
                                       limit=tc.val_images, meteor=False)
            rec["val"] = scores
            rec["val_s"] = round(time.perf_counter() - t, 3)
        self.history.append(rec)
        _append_jsonl(self.metrics_path, rec)
        return rec

    def epoch_line(self, solver, rec: dict) -> str:
        line = (f"epoch {solver.epoch}/{self.config.train.num_epochs}  iter {solver.t}  "
                f"train loss {rec['train_loss']:.4f}  lr {rec['learning_rate']:.2e}")
        val = rec.get("val", {})
        for key, name in (("truth_rate", "truth"), ("Bleu_4", "BLEU-4"), ("CIDEr", "CIDEr")):
            if key in val:
                line += f"  val {name} {val[key]:.3f}"
        return line

    def save(self, solver) -> Path:
        """Checkpoint the run as it is now (once per iteration count; rank 0 alone under MPI,
        after checking that every rank holds the same parameters)."""
        if self.saved_at != solver.t and self.comm is not None:
            from rnncap.mpi import check_agreement, digest

            check_agreement(self.comm, {f"parameter {k} after iteration {solver.t}": digest(v)
                                        for k, v in self.model.params.items()})
        if self.saved_at != solver.t and not self.is_root:
            self.saved_at = solver.t
        if self.saved_at != solver.t:
            self.checkpoint = _save(self.run_dir, self.config, self.model, self.vocab, solver,
                                    self.data, self.history, self.config.train.keep_checkpoints,
                                    self.stats)
            self.saved_at = solver.t
        return self.checkpoint

    def fit(self, solver) -> None:
        """solver.train() with Ctrl-C turned into a clean stop; a non-finite loss into a
        TrainingError."""
        previous = signal.getsignal(signal.SIGINT)

        def on_sigint(signum, frame):
            if solver.stop_requested or (self.reducer is not None and self.reducer._stop_requested):
                raise KeyboardInterrupt  # a second Ctrl-C: stop now
            if self.reducer is not None:  # every rank stops after the same iteration
                self.reducer.request_stop()
            else:
                solver.stop_requested = True
            say("Ctrl-C: finishing this iteration, then saving a checkpoint (Ctrl-C again to abort)")

        try:
            signal.signal(signal.SIGINT, on_sigint)
        except ValueError:  # not the main thread: no handler, Ctrl-C just raises
            previous = None
        try:
            solver.train()
        except FloatingPointError as err:
            kept, _ = find_latest(self.run_dir / "checkpoints")
            raise TrainingError(f"training stopped: {err}. " + (
                f"The last good checkpoint, {kept}, is kept" if kept is not None else
                "No checkpoint was saved before it")) from None
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)

    def finish(self, solver) -> str:
        """Record an interruption, write the last checkpoint; 'finished' or 'interrupted'."""
        status = "interrupted" if solver.stop_requested and solver.t < solver.num_iterations else "finished"
        if status == "interrupted" and self.is_root:
            self.record(solver, "interrupted")
            say(f"stopped at iteration {solver.t}; resume with --resume")
        self.save(solver)
        return status


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
    from rnncap import mpi

    comm = mpi.world()  # under `mpiexec -n K` with K > 1: this process is one of K ranks
    rank = 0 if comm is None else comm.Get_rank()
    run_dir = Path(run_dir)
    config, restored = _prepare(config, run_dir, resume, num_epochs,
                                1 if comm is None else comm.Get_size())
    progress = progress and rank == 0

    t0 = time.perf_counter()
    if data is None:
        data = load_run_data(config, progress, generate=restored is None)
    timings = {"data_s": time.perf_counter() - t0}
    check_feature_rank(data["train_features"], config.model.kind == "attention",
                       data.get("features_source", "the data's train_features"))
    check_training_memory(config, len(data["vocab"].idx_to_word), data["train_features"].shape[-1],
                          data["train_captions"].shape[1])
    # Only now that the data has loaded: a run that cannot start leaves no run folder behind.
    if comm is not None:
        comm.Barrier()  # every rank has checked the run folder before rank 0 writes in it
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_if_changed(run_dir / "config.json", json.dumps(to_dict(config), indent=1))
    model = _build_model(data["word_to_idx"], data["train_features"].shape[-1], config)
    history: list = []
    stats = _feature_stats(config, data)
    state = None
    if restored is not None:
        check_backbone(restored.checkpoint, data, config.data.path)
        if restored.vocab.idx_to_word != data["vocab"].idx_to_word:
            raise CheckpointError(f"the data's vocabulary differs from the checkpoint's in {run_dir}; "
                                  f"resume needs the same data")
        model.params.update(restored.model.params)
        history = list(restored.checkpoint.documents.get("history", []))
        state = unpack(restored.checkpoint.documents["solver"],
                       restored.checkpoint.arrays.get("solver", {}))

    if comm is not None:
        mpi.check_agreement(comm, mpi.describe(to_dict(config), data, {
            "resume": resume, "stop_after": stop_after,
            "resumed at iteration": None if state is None else state.get("t")}))
        if config.train.batch_size < comm.Get_size():
            raise mpi.MPIError(f"--batch-size {config.train.batch_size} is smaller than the "
                               f"{comm.Get_size()} MPI ranks that share each batch")
    if rank == 0:
        # metrics.jsonl holds exactly the records of the checkpoint resumed from: epochs logged
        # after it by a run that was killed before its next save are dropped, not logged twice
        _write_if_changed(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
    trainer = _Trainer(run_dir, config, model, data, history, stop_after, stats, comm)
    if comm is not None and rank == 0:
        say(f"MPI: {comm.Get_size()} ranks share each batch of {config.train.batch_size}; "
            f"rank 0 writes {run_dir}")
    solver = trainer.make_solver(progress, state)
    if restored is not None:  # what the checkpoint holds needs no second save
        trainer.checkpoint, trainer.saved_at = restored.checkpoint.folder, solver.t
    t0 = time.perf_counter()
    trainer.fit(solver)
    timings["train_s"] = time.perf_counter() - t0
    status = trainer.finish(solver)
    last_val = next((h["val"] for h in reversed(history) if "val" in h), None)
    return {"status": status, "checkpoint": str(trainer.checkpoint), "iterations": solver.t,
            "num_iterations": solver.num_iterations, "timings": timings,
            "final_train_loss": history[-1]["train_loss"] if history else None,
            "val": last_val, "model": model, "data": data, "vocab": data["vocab"], "rank": rank,
            "ranks": 1 if comm is None else comm.Get_size()}
