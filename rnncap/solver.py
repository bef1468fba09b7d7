"""CaptioningSolver: minibatch training with CS231n's keyword arguments.

    solver = CaptioningSolver(model, data, update_rule='adam',
                              optim_config={'learning_rate': 5e-3}, lr_decay=0.95,
                              batch_size=25, num_epochs=50, print_every=10, verbose=True)
    solver.train()
    plt.plot(solver.loss_history)

Each iteration draws `batch_size` captions uniformly WITH replacement (as CS231n's
`sample_coco_minibatch` does) from a `np.random.Generator(seed)`, so the whole training
run is reproducible and resumable from `state_dict()`: the generator's state is all the
minibatch order there is. An "epoch" is CS231n's `max(M // batch_size, 1)` iterations;
the learning rate of every parameter is multiplied by `lr_decay` at each epoch's end,
then the callbacks run (validation metrics and checkpoints hook in there).

Beyond CS231n: `lr_schedule='cosine'`, which sets every iteration's learning rate to
``learning_rate * lr_decay**epoch * (1 + cos(pi * t / num_iterations)) / 2`` (t iterations
done): half a cosine from the initial rate down to 0 at the end of the run, a function of
t alone, so resuming needs no extra state; `seed`, `grad_clip` (global norm), `progress`
(a tqdm bar instead of print lines), `callbacks`, a `stop_requested` flag that ends
`train()` cleanly after the current iteration, a FloatingPointError before any non-finite
update, state_dict() / load_state_dict() for bit-identical resumption, `loss_fn` (another
function with the contract of `model.loss`, e.g. CaptioningRNN.fast_loss) and `row_groups`
(each batch split into that many row groups whose gradients are computed on threads and
summed: rnncap.parallel.data_parallel).

This module knows the model contract (`params`, `loss(features, captions)`, and
optionally `row_costs(captions)` to balance row groups), the update rules and three data
keys (train_captions, train_image_idxs, train_features). It knows nothing about images,
words, files or what the model computes.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping

import numpy as np

from rnncap import optim, parallel

_DEFAULTS = {
    "update_rule": "sgd",
    "optim_config": None,  # {} (a fresh dict per solver)
    "lr_decay": 1.0,
    "lr_schedule": "step",
    "batch_size": 100,
    "num_epochs": 10,
    "print_every": 10,
    "verbose": True,
    "seed": None,
    "grad_clip": None,
    "progress": False,
    "callbacks": (),
    "iteration_callbacks": (),
    "loss_fn": None,  # model.loss
    "row_groups": 1,
    "reducer": None,  # rnncap.mpi.Reducer: this process's share of each batch, summed over ranks
}
LR_SCHEDULES = ("step", "cosine")
_STATE_KEYS = ("t", "epoch", "loss_history", "optim_configs", "rng_state")


def _check_data(data):
    """Returns (captions (M, T), image_idxs (M,), features (I, D)) or raises ValueError."""
    if not isinstance(data, Mapping):
        raise ValueError(f"data must be a dict in the CS231n layout; got {type(data).__name__}")
    missing = [k for k in ("train_captions", "train_image_idxs", "train_features") if k not in data]
    if missing:
        raise ValueError(f"data is missing {', '.join(missing)} (CS231n layout)")
    captions = np.asarray(data["train_captions"])
    idxs = np.asarray(data["train_image_idxs"])
    features = np.asarray(data["train_features"])
    if captions.ndim != 2 or not np.issubdtype(captions.dtype, np.integer) or captions.shape[0] == 0:
        raise ValueError(
            f"data['train_captions'] must be a non-empty integer array (M, T); got {captions.dtype} {captions.shape}"
        )
    if idxs.shape != (captions.shape[0],) or not np.issubdtype(idxs.dtype, np.integer):
        raise ValueError(
            f"data['train_image_idxs'] must be integers of shape ({captions.shape[0]},), one per caption; "
            f"got {idxs.dtype} {idxs.shape}"
        )
    if features.ndim != 2:
        raise ValueError(f"data['train_features'] must have shape (I, D); got {features.shape}")
    if idxs.min() < 0 or idxs.max() >= features.shape[0]:
        raise ValueError(
            f"data['train_image_idxs'] must index data['train_features'] rows [0, {features.shape[0]}); "
            f"got values in [{idxs.min()}, {idxs.max()}]"
        )
    return captions, idxs, features


class CaptioningSolver:
    """Trains a captioning model with minibatch gradient descent.

    Attributes:
        model: the model being trained; its `params` are replaced after every update.
        loss_history: training loss of every iteration done (Python floats).
        epoch: epochs completed.
        t: iterations completed.
        num_iterations: num_epochs * iterations_per_epoch.
        iterations_per_epoch: max(M // batch_size, 1).
        optim_configs: dict param name -> the update rule's config (hyperparameters and
            state).
        stop_requested: set to True (from a callback or a signal handler) and `train()`
            returns after the current iteration; `interrupted` then becomes True.
    """

    def __init__(self, model, data, **kwargs):
        """Checks the arguments and the data; trains nothing yet.

        Args:
            model: object with `params` (dict name -> array) and
                `loss(features, captions) -> (loss, grads)`.
            data: dict with train_captions (M, T) int, train_image_idxs (M,) int and
                train_features (I, D); other keys (val_*, vocabulary...) are ignored.
            **kwargs: update_rule ('sgd', 'sgd_momentum', 'rmsprop' or 'adam'),
                optim_config (dict, copied per parameter), lr_decay (1.0), batch_size
                (100), lr_schedule ('step' or 'cosine', see the module docstring),
                num_epochs (10), print_every (10), verbose (True), seed (None),
                grad_clip (None: no clipping; else the global norm), progress (False),
                callbacks (iterable of cb(solver), called at every epoch's end),
                iteration_callbacks (iterable of cb(solver), called after every iteration,
                before the epoch's callbacks), loss_fn (None: model.loss; else a
                function with its contract), row_groups (1: each batch in one piece;
                n: split into n groups of rows of about equal cost, computed on up to
                rnncap.parallel.get_threads() threads and summed; the rounding of the
                gradient depends on n, so a resumed run must keep it), reducer (None;
                an rnncap.mpi.Reducer: each batch's rows are shared among MPI ranks and
                the gradients summed by one Allreduce, so every rank updates alike).

        Raises:
            ValueError: unknown keyword arguments, an unknown update rule, bad values,
                data not in the CS231n layout.
        """
        unknown = sorted(set(kwargs) - set(_DEFAULTS))
        if unknown:
            raise ValueError(f"Unrecognized arguments {', '.join(unknown)}; known: {', '.join(_DEFAULTS)}")
        opts = {**_DEFAULTS, **kwargs}
        rule = opts["update_rule"]
        if rule not in optim.UPDATE_RULES:
            raise ValueError(f"update_rule must be one of {', '.join(optim.UPDATE_RULES)}; got {rule!r}")
        for name in ("batch_size", "print_every", "row_groups"):
            if isinstance(opts[name], bool) or not isinstance(opts[name], (int, np.integer)) or opts[name] < 1:
                raise ValueError(f"{name} must be a positive integer; got {opts[name]!r}")
        if isinstance(opts["num_epochs"], bool) or not isinstance(opts["num_epochs"], (int, np.integer)) or opts["num_epochs"] < 0:
            raise ValueError(f"num_epochs must be a non-negative integer; got {opts['num_epochs']!r}")
        if not (isinstance(opts["lr_decay"], (int, float)) and opts["lr_decay"] > 0):
            raise ValueError(f"lr_decay must be a positive number; got {opts['lr_decay']!r}")
        if opts["lr_schedule"] not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}; got {opts['lr_schedule']!r}")
        if opts["lr_schedule"] == "cosine" and "learning_rate" not in (opts["optim_config"] or {}):
            raise ValueError("lr_schedule='cosine' needs optim_config['learning_rate'], the rate it starts from")
        if opts["grad_clip"] is not None and not (isinstance(opts["grad_clip"], (int, float)) and opts["grad_clip"] > 0):
            raise ValueError(f"grad_clip must be None or a positive number; got {opts['grad_clip']!r}")
        callbacks = tuple(opts["callbacks"])
        iteration_callbacks = tuple(opts["iteration_callbacks"])
        if not all(callable(cb) for cb in callbacks + iteration_callbacks):
            raise ValueError("callbacks and iteration_callbacks must be callables taking the solver")
        if opts["loss_fn"] is not None and not callable(opts["loss_fn"]):
            raise ValueError(f"loss_fn must be None or a function like model.loss; got {opts['loss_fn']!r}")

        self.model = model
        self.data = data
        self._captions, self._image_idxs, self._features = _check_data(data)
        self.update_rule = getattr(optim, rule)
        self.optim_config = dict(opts["optim_config"] or {})
        self.lr_decay = float(opts["lr_decay"])
        self.lr_schedule = opts["lr_schedule"]
        self.batch_size = int(opts["batch_size"])
        self.num_epochs = int(opts["num_epochs"])
        self.print_every = int(opts["print_every"])
        self.verbose = bool(opts["verbose"])
        self.seed = opts["seed"]
        self.grad_clip = opts["grad_clip"]
        self.progress = bool(opts["progress"])
        self.callbacks = callbacks
        self.iteration_callbacks = iteration_callbacks
        self.loss_fn = opts["loss_fn"]  # None: model.loss, looked up at every step
        self.row_groups = int(opts["row_groups"])
        self.reducer = opts["reducer"]
        self.iterations_per_epoch = max(self._captions.shape[0] // self.batch_size, 1)
        self.num_iterations = self.num_epochs * self.iterations_per_epoch
        self._rng = np.random.default_rng(self.seed)
        self._reset()

    def _reset(self):
        """Bookkeeping for a fresh run (CS231n's _reset)."""
        self.epoch = 0
        self.t = 0
        self.loss_history = []
        self.optim_configs = {p: copy.deepcopy(self.optim_config) for p in self.model.params}
        self.stop_requested = False
        self.interrupted = False

    def _step(self):
        """One minibatch, one gradient, one update of every parameter."""
        idx = self._rng.integers(0, self._captions.shape[0], size=self.batch_size)
        captions = self._captions[idx]  # (N, T)
        features = self._features[self._image_idxs[idx]]  # (N, D)
        loss_fn = self.loss_fn or self.model.loss
        if self.row_groups == 1 and self.reducer is None:
            loss, grads = loss_fn(features, captions)
        else:
            row_costs = getattr(self.model, "row_costs", None)
            costs = row_costs(captions) if row_costs is not None else np.ones(len(captions))
            if self.reducer is not None:  # this rank's share, summed over the MPI ranks
                loss, grads = self.reducer(loss_fn, (features, captions), costs, self.row_groups)
                if self.reducer.stop:
                    self.stop_requested = True
            else:
                groups = parallel.split_rows(costs, self.row_groups)
                loss, grads = parallel.data_parallel(loss_fn, (features, captions), groups)
        loss = float(loss)
        bad = [k for k, g in grads.items() if not np.isfinite(g).all()]
        if not math.isfinite(loss) or bad:
            raise FloatingPointError(
                f"iteration {self.t + 1}: loss {loss}"
                + (f", non-finite gradient for {', '.join(bad)}" if bad else "")
                + "; parameters were left at their last finite values"
            )
        if self.grad_clip is not None:
            optim.clip_grad_norm(grads, self.grad_clip)
        if self.lr_schedule == "cosine":
            lr = self.learning_rate_at(self.t)
            for config in self.optim_configs.values():
                config["learning_rate"] = lr
        for p, w in self.model.params.items():
            next_w, next_config = self.update_rule(w, grads[p], self.optim_configs[p])
            self.model.params[p] = next_w
            self.optim_configs[p] = next_config
        self.loss_history.append(loss)
        self.t += 1
        return loss

    def train(self):
        """Runs iterations t+1 .. num_iterations (all of them on a fresh solver).

        Returns early, after a complete iteration, when `stop_requested` is set; calling
        train() again continues from there.
        """
        self.stop_requested = False
        self.interrupted = False
        bar = None
        if self.progress:
            from rnncap.progress import bar as progress_bar

            bar = progress_bar(self.num_iterations, "train", unit="it", initial=self.t)
        try:
            while self.t < self.num_iterations:
                loss = self._step()
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4f}", epoch=self.epoch, refresh=False)
                elif self.verbose and (self.t - 1) % self.print_every == 0:
                    print(f"(Iteration {self.t} / {self.num_iterations}) loss: {loss:f}")
                for cb in self.iteration_callbacks:
                    cb(self)
                if self.t % self.iterations_per_epoch == 0:
                    self.epoch += 1
                    for config in self.optim_configs.values():
                        if "learning_rate" in config and self.lr_schedule == "step":
                            config["learning_rate"] = float(config["learning_rate"]) * self.lr_decay
                    for cb in self.callbacks:
                        cb(self)
                if self.stop_requested:
                    self.interrupted = True
                    break
        finally:
            if bar is not None:
                bar.close()

    def learning_rate_at(self, t):
        """The cosine schedule's learning rate for the iteration after `t` done ones."""
        cosine = 0.5 * (1.0 + math.cos(math.pi * t / max(self.num_iterations, 1)))
        epoch = t // self.iterations_per_epoch
        return float(self.optim_config["learning_rate"]) * self.lr_decay**epoch * cosine

    def state_dict(self):
        """Everything needed, with the model's params, to resume bit-identically.

        Returns:
            dict with t, epoch, loss_history (list of floats), optim_configs (per
            parameter: Python scalars and copies of numpy arrays) and rng_state (the
            generator's bit_generator.state, a JSON-able dict).
        """
        return {
            "t": self.t,
            "epoch": self.epoch,
            "loss_history": [float(x) for x in self.loss_history],
            "optim_configs": {
                p: {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in c.items()}
                for p, c in self.optim_configs.items()
            },
            "rng_state": copy.deepcopy(self._rng.bit_generator.state),
        }

    def load_state_dict(self, state):
        """Restores what `state_dict()` returned (the model's params are restored apart).

        Raises:
            ValueError: missing keys, or optimizer state for other parameters than the
                model's.
        """
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            raise ValueError(f"solver state is missing {', '.join(missing)}")
        if set(state["optim_configs"]) != set(self.model.params):
            raise ValueError(
                f"solver state has optimizer state for {sorted(state['optim_configs'])}; "
                f"the model has parameters {sorted(self.model.params)}"
            )
        self.t = int(state["t"])
        self.epoch = int(state["epoch"])
        self.loss_history = [float(x) for x in state["loss_history"]]
        self.optim_configs = {
            p: {k: (np.array(v, copy=True) if isinstance(v, np.ndarray) else v) for k, v in c.items()}
            for p, c in state["optim_configs"].items()
        }
        self._rng.bit_generator.state = copy.deepcopy(state["rng_state"])
