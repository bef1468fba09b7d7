"""Edited-and-re-hashed training checkpoints: every document is checked before use, by name."""

import json
import shutil

import numpy as np
import pytest

from rnncap.checkpoint import CheckpointError
from rnncap.config import RunConfig, with_overrides
from rnncap.run import restore, train


@pytest.fixture(scope="module")
def checkpoint(tiny_shapes, tmp_path_factory):
    from rnncap.data import load_data

    config = with_overrides(RunConfig(), {
        "data": {"path": str(tiny_shapes), "format": "karpathy"},
        "model": {"cell_type": "lstm", "hidden_dim": 8, "wordvec_dim": 4},
        "train": {"batch_size": 100, "num_epochs": 1, "val_images": 0}})
    run = tmp_path_factory.mktemp("schema")
    train(config, run, progress=False, data=load_data(tiny_shapes, "karpathy"))
    return restore(run).checkpoint.folder


def _edit_json(folder, name, change):
    path = folder / name
    doc = json.loads(path.read_text())
    doc = change(doc)
    path.write_text(json.dumps(doc))


def _set(keys, value):
    def change(doc):
        d = doc
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
        return doc
    return change


EDITS = {
    # name: (file, change, what the message must say)
    "rng_state is a string": ("solver.json", _set(["rng_state"], "x"), "rng_state"),
    "rng_state of another generator": ("solver.json", _set(["rng_state", "bit_generator"], "MT19937"),
                                       "rng_state"),
    "solver t = -100": ("solver.json", _set(["t"], -100), "t must be >= 0"),
    "t and info disagree": ("solver.json", _set(["t"], 2), "differ from info.json"),
    "array reference that does not exist": (
        "solver.json", lambda d: _set(["optim_configs", "W_embed", "m"], {"__array__": "nope"})(d),
        "'nope'"),
    "learning rate negative": ("solver.json", _set(["optim_configs", "Wx", "learning_rate"], -1.0),
                               "learning_rate must be > 0"),
    "loss history of strings": ("solver.json", lambda d: _set(["loss_history"], ["a"] * len(d["loss_history"]))(d),
                                "loss_history[0]"),
    "huge hidden_dim": ("model.json", _set(["hidden_dim"], 200000), "(512, 200000)"),
    "hidden_dim of another model": ("model.json", _set(["hidden_dim"], 9), "W_proj has shape"),
    "unknown cell": ("model.json", _set(["cell_type"], "gru"), "cell_type"),
    "history is a string": ("history.json", lambda d: "oops", "history.json must be a list"),
    "history record of the wrong kind": ("history.json", lambda d: [dict(d[0], kind=3)], "kind"),
    "max_length huge": ("info.json", _set(["max_length"], 10**12), "max_length"),
    "max_length a string": ("info.json", _set(["max_length"], "16"), "max_length must be an integer"),
    "config with a wrong type": ("config.json", _set(["model", "hidden_dim"], "8"), "hidden_dim"),
    "vocab without specials": ("vocab.json", lambda d: {"idx_to_word": ["a", "b"]}, "vocab.json"),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_edited_and_rehashed_document_is_refused_by_name(checkpoint, tmp_path, rehash, edit):
    name, change, says = EDITS[edit]
    folder = shutil.copytree(checkpoint, tmp_path / "ck")
    _edit_json(folder, name, change)
    rehash(folder)
    with pytest.raises(CheckpointError) as err:
        restore(folder)
    message = str(err.value)
    assert says in message and "\n" not in message
    assert str(folder) in message


def test_weights_that_are_not_finite_are_refused(checkpoint, tmp_path, rehash):
    """All-NaN weights once captioned every image with an empty string."""
    folder = shutil.copytree(checkpoint, tmp_path / "ck")
    with np.load(folder / "weights.npz") as z:
        weights = {k: z[k] for k in z.files}
    weights["W_vocab"] = np.full_like(weights["W_vocab"], np.nan)
    np.savez(folder / "weights.npz", **weights)
    rehash(folder)
    with pytest.raises(CheckpointError, match=r"weights\.npz: W_vocab holds NaN"):
        restore(folder)


def test_missing_document_is_named(checkpoint, tmp_path, rehash):
    folder = shutil.copytree(checkpoint, tmp_path / "ck")
    (folder / "history.json").unlink()
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["files"]["history.json"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"lacks history\.json"):
        restore(folder)


def test_the_unedited_checkpoint_restores(checkpoint):
    r = restore(checkpoint)
    assert r.max_length == 16 and r.model.hidden_dim == 8
