"""The documents of a training checkpoint: their types and ranges, checked before any is used.

rnncap.checkpoint proves that a checkpoint's files are the ones that were written (SHA-256), but
anyone can edit a document and write a new manifest. So every document a training checkpoint
holds is checked here, field by field, before the model is built or the solver restored:

    config.json    a RunConfig (rnncap.config.from_dict: keys, types, ranges)
    model.json     CaptioningRNN's constructor arguments
    vocab.json     a Vocabulary (ids 0..V-1, the special tokens)
    info.json      max_length, input_dim, iteration, epoch of the save
    solver.json    iteration, epoch, loss history, optimizer state, minibatch RNG state
    history.json   a list of per-epoch records
    weights.npz    one finite array per parameter, of the model's shape and dtype

A failed check raises CheckpointError naming the file and the field. The sizes are checked
against the machine's memory (rnncap.memory) before anything that big is allocated.

This module knows what the documents of a training checkpoint hold. It does not read files,
build models or train.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rnncap.checkpoint import Checkpoint, CheckpointError, unpack

__all__ = ["check_training_checkpoint", "DOCUMENTS"]

DOCUMENTS = ("config", "model", "vocab", "info", "solver", "history")
_MAX_LENGTH_LIMIT = 1_000_000  # generated tokens; far beyond any caption


def _int(where: str, value: Any, lo: int = 0, hi: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise CheckpointError(f"{where} must be an integer, got {type(value).__name__} {value!r:.60}")
    if value < lo or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"between {lo} and {hi}"
        raise CheckpointError(f"{where} must be {bound}, got {value}")
    return value


def _number(where: str, value: Any, positive: bool = False) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise CheckpointError(f"{where} must be a finite number, got {value!r:.60}")
    if positive and not value > 0:
        raise CheckpointError(f"{where} must be > 0, got {value!r}")
    return float(value)


def _object(where: str, value: Any, keys: tuple[str, ...] = ()) -> dict:
    if not isinstance(value, dict):
        raise CheckpointError(f"{where} must be a JSON object, got {type(value).__name__} {value!r:.60}")
    missing = [k for k in keys if k not in value]
    if missing:
        raise CheckpointError(f"{where} lacks {', '.join(missing)}")
    return value


def _check_rnn_model(f, doc, vocab, weights) -> tuple[dict, str]:
    """CaptioningRNN's model.json against the stored weights; returns its sizes and dtype."""
    from rnncap import config as cfg
    from rnncap import memory

    model = _object(f"{f}/model.json", doc,
                    ("input_dim", "wordvec_dim", "hidden_dim", "cell_type", "dtype"))
    known = {"input_dim", "wordvec_dim", "hidden_dim", "cell_type", "dtype", "image_every_step", "init"}
    if set(model) - known:
        raise CheckpointError(f"{f}/model.json: unknown key(s) {', '.join(sorted(set(model) - known))}")
    dims = {k: _int(f"{f}/model.json: {k}", model[k], 1) for k in ("input_dim", "wordvec_dim", "hidden_dim")}
    if model["cell_type"] not in cfg.CELLS:
        raise CheckpointError(f"{f}/model.json: cell_type must be one of {', '.join(cfg.CELLS)}, "
                              f"got {model['cell_type']!r:.60}")
    if model["dtype"] not in cfg.DTYPES:
        raise CheckpointError(f"{f}/model.json: dtype must be one of {', '.join(cfg.DTYPES)}, "
                              f"got {model['dtype']!r:.60}")
    from rnncap.model import INITS

    if model.get("init", INITS[0]) not in INITS:
        raise CheckpointError(f"{f}/model.json: init must be one of {', '.join(INITS)}, "
                              f"got {model['init']!r:.60}")
    if not isinstance(model.get("image_every_step", False), bool):
        raise CheckpointError(f"{f}/model.json: image_every_step must be true or false")
    # The sizes must be those of the stored weights (CS231n's parameter names), checked before
    # a model of those sizes is built: an edited hidden_dim is refused, not allocated.
    V, D, W, H = (len(vocab.idx_to_word), dims["input_dim"], dims["wordvec_dim"], dims["hidden_dim"])
    for name, shape in (("W_embed", (V, W)), ("W_proj", (D, H)), ("Wh", None)):
        if name not in weights:
            raise CheckpointError(f"{f}/weights.npz lacks {name}")
        if shape is not None and weights[name].shape != shape:
            raise CheckpointError(f"{f}/weights.npz: {name} has shape {weights[name].shape}, but "
                                  f"model.json and vocab.json say {shape}")
    if weights["Wh"].ndim != 2 or weights["Wh"].shape[0] != H:
        raise CheckpointError(f"{f}/weights.npz: Wh has shape {weights['Wh'].shape}, but "
                              f"model.json says hidden_dim {H}")
    itemsize = np.dtype(model["dtype"]).itemsize
    try:
        memory.require(memory.model_bytes(V, D, W, H, model["cell_type"], itemsize,
                                          model.get("image_every_step", False)),
                       f"{f}/model.json: the model (hidden_dim {H}, wordvec_dim {W}, input_dim {D})")
    except memory.MemoryEstimateError as err:
        raise CheckpointError(str(err)) from None

    return dims, model["dtype"]


def _check_attention_model(f, doc, vocab, weights) -> tuple[dict, str]:
    """AttentionCaptioner's model.json: sizes, dtype, and every weight's shape from them."""
    from rnncap import config as cfg

    keys = ("kind", "input_dim", "wordvec_dim", "hidden_dim", "attention_dim", "dtype")
    model = _object(f"{f}/model.json", doc, keys)
    known = set(keys) | {"doubly_stochastic"}
    if set(model) - known:
        raise CheckpointError(f"{f}/model.json: unknown key(s) {', '.join(sorted(set(model) - known))}")
    dims = {k: _int(f"{f}/model.json: {k}", model[k], 1)
            for k in ("input_dim", "wordvec_dim", "hidden_dim", "attention_dim")}
    if model["dtype"] not in cfg.DTYPES:
        raise CheckpointError(f"{f}/model.json: dtype must be one of {', '.join(cfg.DTYPES)}, "
                              f"got {model['dtype']!r:.60}")
    if _number(f"{f}/model.json: doubly_stochastic", model.get("doubly_stochastic", 0.0)) < 0:
        raise CheckpointError(f"{f}/model.json: doubly_stochastic must be >= 0")
    V, D, W = len(vocab.idx_to_word), dims["input_dim"], dims["wordvec_dim"]
    H, A = dims["hidden_dim"], dims["attention_dim"]
    shapes = {"W_embed": (V, W), "W_h0": (D, H), "b_h0": (H,), "W_c0": (D, H), "b_c0": (H,),
              "W_a": (D, A), "b_a": (A,), "W_h": (H, A), "w_att": (A,), "W_beta": (H, 1),
              "b_beta": (1,), "Wx": (W, 4 * H), "Wh": (H, 4 * H), "Wz": (D, 4 * H),
              "b": (4 * H,), "W_vocab": (H, V), "b_vocab": (V,)}
    if set(weights) != set(shapes):
        raise CheckpointError(f"{f}/weights.npz holds {sorted(weights)}, the attention model needs "
                              f"{sorted(shapes)}")
    for name, shape in shapes.items():
        if weights[name].shape != shape:
            raise CheckpointError(f"{f}/weights.npz: {name} has shape {weights[name].shape}, but "
                                  f"model.json and vocab.json say {shape}")
    return dims, model["dtype"]


def check_training_checkpoint(ckpt: Checkpoint) -> dict:
    """Check every document and array of a training checkpoint before it is used.

    Returns:
        {"config": RunConfig, "vocab": Vocabulary, "solver_state": the unpacked solver state}.
    Raises:
        CheckpointError naming the file and field that is wrong.
    """
    from rnncap import config as cfg
    from rnncap.data.vocab import Vocabulary

    f = ckpt.folder
    missing = [f"{d}.json" for d in DOCUMENTS if d not in ckpt.documents]
    missing += [f"{a}.npz" for a in ("weights", "solver") if a not in ckpt.arrays]
    if missing:
        raise CheckpointError(f"checkpoint {f} lacks {', '.join(missing)}; it was not written by "
                              f"this rnncap's training")
    docs = ckpt.documents
    try:
        config = cfg.from_dict(cfg.RunConfig, docs["config"], f"{f}/config.json")
    except cfg.ConfigError as err:
        raise CheckpointError(str(err)) from None
    try:
        vocab = Vocabulary.from_json(docs["vocab"], source=f"{f}/vocab.json")
    except (ValueError, TypeError) as err:
        raise CheckpointError(str(err) if str(err).startswith(str(f)) else f"{f}/vocab.json: {err}") from None

    if isinstance(docs["model"], dict) and docs["model"].get("kind") == "attention":
        dims, model_dtype = _check_attention_model(f, docs["model"], vocab, ckpt.arrays["weights"])
    else:
        dims, model_dtype = _check_rnn_model(f, docs["model"], vocab, ckpt.arrays["weights"])
    weights = ckpt.arrays["weights"]

    info = _object(f"{f}/info.json", docs["info"], ("max_length", "iteration", "epoch"))
    _int(f"{f}/info.json: max_length", info["max_length"], 1, _MAX_LENGTH_LIMIT)
    if "input_dim" in info and info["input_dim"] != dims["input_dim"]:
        raise CheckpointError(f"{f}/info.json: input_dim {info['input_dim']!r:.60} differs from "
                              f"model.json's {dims['input_dim']}")

    for k, v in weights.items():
        if v.dtype != np.dtype(model_dtype):
            raise CheckpointError(f"{f}/weights.npz: {k} is {v.dtype}, the model is {model_dtype}")
        if not np.isfinite(v).all():
            raise CheckpointError(f"{f}/weights.npz: {k} holds NaN or infinite values")

    solver = unpack(docs["solver"], ckpt.arrays["solver"], f"{f}/solver.json")
    _check_solver(f"{f}/solver.json", solver, weights, info)
    _check_history(f"{f}/history.json", docs["history"])
    return {"config": config, "vocab": vocab, "solver_state": solver}


def _check_solver(where: str, state: Any, weights: dict, info: dict) -> None:
    state = _object(where, state, ("t", "epoch", "loss_history", "optim_configs", "rng_state"))
    t = _int(f"{where}: t", state["t"])
    epoch = _int(f"{where}: epoch", state["epoch"])
    if info["iteration"] != t or info["epoch"] != epoch:
        raise CheckpointError(f"{where}: t {t} and epoch {epoch} differ from info.json's iteration "
                              f"{info['iteration']!r:.60} and epoch {info['epoch']!r:.60}")
    losses = state["loss_history"]
    if not isinstance(losses, list) or len(losses) != t:
        raise CheckpointError(f"{where}: loss_history must be a list of {t} numbers (one per "
                              f"iteration), got {type(losses).__name__} of length "
                              f"{len(losses) if isinstance(losses, list) else '-'}")
    for i, x in enumerate(losses):
        _number(f"{where}: loss_history[{i}]", x)
    configs = _object(f"{where}: optim_configs", state["optim_configs"])
    if set(configs) != set(weights):
        raise CheckpointError(f"{where}: optim_configs is for {sorted(configs)}, weights.npz holds "
                              f"{sorted(weights)}")
    for p, c in configs.items():
        c = _object(f"{where}: optim_configs.{p}", c, ("learning_rate",))
        for k, v in c.items():
            name = f"{where}: optim_configs.{p}.{k}"
            if isinstance(v, np.ndarray):
                if v.shape != weights[p].shape or v.dtype.kind != "f":
                    raise CheckpointError(f"{name} is {v.dtype} {v.shape}; expected a float array "
                                          f"of the parameter's shape {weights[p].shape}")
                if not np.isfinite(v).all():
                    raise CheckpointError(f"{name} holds NaN or infinite values")
            elif isinstance(v, np.generic):
                _number(name, v.item())
            else:
                _number(name, v, positive=(k == "learning_rate"))
    rng = state["rng_state"]
    try:
        np.random.PCG64().state = rng  # numpy checks every field of a generator state
    except (TypeError, ValueError, KeyError, OverflowError, AttributeError) as err:
        raise CheckpointError(f"{where}: rng_state is not a PCG64 generator state ({err})") from None


def _check_history(where: str, history: Any) -> None:
    if not isinstance(history, list):
        raise CheckpointError(f"{where} must be a list of per-epoch records, got "
                              f"{type(history).__name__} {history!r:.60}")
    for i, rec in enumerate(history):
        rec = _object(f"{where}[{i}]", rec, ("kind", "epoch", "iteration"))
        if rec["kind"] not in ("epoch", "interrupted"):
            raise CheckpointError(f"{where}[{i}].kind must be 'epoch' or 'interrupted', got {rec['kind']!r:.60}")
        _int(f"{where}[{i}].epoch", rec["epoch"])
        _int(f"{where}[{i}].iteration", rec["iteration"])
        for key in ("train_loss", "learning_rate", "epoch_s"):
            if rec.get(key) is not None:
                _number(f"{where}[{i}].{key}", rec[key])
        if "val" in rec and not isinstance(rec["val"], dict):
            raise CheckpointError(f"{where}[{i}].val must be an object of scores")
