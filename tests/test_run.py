import os
import signal

import numpy as np
import pytest

from rnncap.checkpoint import read_checkpoint
from rnncap.config import RunConfig, with_overrides
from rnncap.run import TrainingError, restore, train


def _config(folder, **train):
    return with_overrides(RunConfig(), {
        "data": {"path": str(folder), "format": "karpathy"},
        "model": {"cell_type": "lstm", "hidden_dim": 16, "wordvec_dim": 8, "image_every_step": True},
        "train": {"batch_size": 40, "num_epochs": 3, "val_images": 0, "seed": 5, "row_groups": 1,
                  **train}})


@pytest.fixture(scope="module")
def tiny_data(tiny_shapes):
    from rnncap.data import load_data

    return load_data(tiny_shapes, "karpathy")


@pytest.fixture(scope="module")
def uninterrupted(tiny_shapes, tiny_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("full")
    summary = train(_config(tiny_shapes), run, progress=False, data=tiny_data)
    return run, summary


def test_uninterrupted_run_writes_checkpoints_and_metrics(uninterrupted):
    run, summary = uninterrupted
    assert summary["status"] == "finished"
    assert summary["iterations"] == summary["num_iterations"] == 3 * (300 // 40)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3
    r = restore(run)
    assert r.checkpoint.documents["info"]["iteration"] == summary["iterations"]


@pytest.mark.parametrize("stop_at", [3, 7, 10])  # mid-epoch, at an epoch end, mid-epoch
def test_interrupted_then_resumed_equals_uninterrupted(tiny_shapes, tiny_data, uninterrupted,
                                                       tmp_path, stop_at):
    full_run, _ = uninterrupted
    first = train(_config(tiny_shapes), tmp_path, progress=False, data=tiny_data, stop_after=stop_at)
    assert first["status"] == "interrupted" and first["iterations"] == stop_at
    second = train(_config(tiny_shapes), tmp_path, resume=True, progress=False, data=tiny_data)
    assert second["status"] == "finished"
    a, b = restore(full_run), restore(tmp_path)
    for k in a.model.params:
        assert np.array_equal(a.model.params[k], b.model.params[k]), k
    sa = read_checkpoint(full_run).documents["solver"]
    sb = read_checkpoint(tmp_path).documents["solver"]
    assert sa["loss_history"] == sb["loss_history"]
    assert sa["rng_state"] == sb["rng_state"]
    # the epoch records agree too (an epoch's mean loss spans the interruption)
    keys = ("epoch", "iteration", "train_loss", "learning_rate")
    ha = [{k: h[k] for k in keys} for h in read_checkpoint(full_run).documents["history"]]
    hb = [{k: h[k] for k in keys} for h in read_checkpoint(tmp_path).documents["history"]
          if h["kind"] == "epoch"]
    assert ha == hb


def test_resume_keeps_the_runs_row_groups_whatever_the_thread_count(tiny_shapes, tiny_data, tmp_path,
                                                                    monkeypatch):
    from rnncap import parallel

    groups = []
    real = parallel.data_parallel

    def spy(loss_fn, batch, parts, workers=None):
        groups.append(len(parts))
        return real(loss_fn, batch, parts, workers)

    monkeypatch.setattr(parallel, "data_parallel", spy)
    config = _config(tiny_shapes, num_epochs=2, row_groups=None)  # None: the thread count
    previous = parallel.set_threads(2)  # batches split into two row groups on two threads
    try:
        train(config, tmp_path / "full", progress=False, data=tiny_data)
        first = train(config, tmp_path / "cut", progress=False, data=tiny_data, stop_after=5)
        assert first["status"] == "interrupted"
        parallel.set_threads(1)  # the run keeps its two row groups, on one thread
        train(config, tmp_path / "cut", resume=True, progress=False, data=tiny_data)
    finally:
        parallel.set_threads(previous)
    assert restore(tmp_path / "cut").config.train.row_groups == 2
    assert groups and set(groups) == {2}  # every training step ran as two row groups
    a, b = restore(tmp_path / "full"), restore(tmp_path / "cut")
    for k in a.model.params:
        assert np.array_equal(a.model.params[k], b.model.params[k]), k


def test_sigint_saves_a_checkpoint_and_resume_matches(tiny_shapes, tiny_data, uninterrupted,
                                                      tmp_path, monkeypatch):
    from rnncap.model import CaptioningRNN

    calls = {"n": 0}
    real_loss = CaptioningRNN.fast_loss  # the loss the trainer runs

    def loss_then_ctrl_c(self, features, captions):
        calls["n"] += 1
        if calls["n"] == 4:
            os.kill(os.getpid(), signal.SIGINT)  # as if the user pressed Ctrl-C mid-iteration
        return real_loss(self, features, captions)

    monkeypatch.setattr(CaptioningRNN, "fast_loss", loss_then_ctrl_c)
    first = train(_config(tiny_shapes), tmp_path, progress=False, data=tiny_data)
    assert first["status"] == "interrupted" and first["iterations"] == 4
    monkeypatch.setattr(CaptioningRNN, "fast_loss", real_loss)
    train(_config(tiny_shapes), tmp_path, resume=True, progress=False, data=tiny_data)
    a, b = restore(uninterrupted[0]), restore(tmp_path)
    for k in a.model.params:
        assert np.array_equal(a.model.params[k], b.model.params[k]), k


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_shapes, tiny_data, tmp_path, monkeypatch):
    from rnncap.model import CaptioningRNN

    calls = {"n": 0}
    real_loss = CaptioningRNN.fast_loss  # the loss the trainer runs

    def loss_goes_nan(self, features, captions):
        calls["n"] += 1
        loss, grads = real_loss(self, features, captions)
        return (float("nan"), grads) if calls["n"] == 9 else (loss, grads)

    monkeypatch.setattr(CaptioningRNN, "fast_loss", loss_goes_nan)
    with pytest.raises(TrainingError, match="last good checkpoint"):
        train(_config(tiny_shapes), tmp_path, progress=False, data=tiny_data)
    r = restore(tmp_path)
    assert r.checkpoint.documents["info"]["iteration"] == 7  # the epoch-1 checkpoint
    assert all(np.isfinite(v).all() for v in r.model.params.values())


def test_existing_run_needs_resume(uninterrupted, tiny_shapes, tiny_data):
    with pytest.raises(FileExistsError, match="--resume"):
        train(_config(tiny_shapes), uninterrupted[0], progress=False, data=tiny_data)


def test_resume_with_other_data_is_refused(tiny_shapes, tmp_path, tiny_data):
    train(_config(tiny_shapes), tmp_path, progress=False, data=tiny_data, stop_after=2)
    other = dict(tiny_data, vocab=type(tiny_data["vocab"])(tiny_data["vocab"].idx_to_word[:-1]))
    with pytest.raises(ValueError, match="vocabulary differs"):
        train(_config(tiny_shapes), tmp_path, resume=True, progress=False, data=other)


def test_resume_keeps_the_checkpoints_epochs_unless_told(tiny_shapes, tiny_data, tmp_path):
    train(_config(tiny_shapes, num_epochs=2), tmp_path, progress=False, data=tiny_data, stop_after=3)
    done = train(None, tmp_path, resume=True, progress=False, data=tiny_data)
    assert done["num_iterations"] == done["iterations"] == 2 * 7
    more = train(None, tmp_path, resume=True, num_epochs=3, progress=False, data=tiny_data)
    assert more["iterations"] == 3 * 7


def test_learning_rate_recorded_is_the_one_each_epoch_trained_at(uninterrupted):
    run, _ = uninterrupted
    lrs = [h["learning_rate"] for h in read_checkpoint(run).documents["history"]]
    assert lrs[0] == 5e-3 and lrs[1] == 5e-3 * 0.995


def test_data_path_is_stored_absolute(tiny_shapes, tiny_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tiny_shapes.parent)
    train(_config(tiny_shapes.name), tmp_path, progress=False, data=tiny_data, stop_after=1)
    assert restore(tmp_path).config.data.path == str(tiny_shapes.resolve())


def _same_params(run_a, run_b):
    a, b = restore(run_a), restore(run_b)
    return all(np.array_equal(a.model.params[k], b.model.params[k]) for k in a.model.params)


def test_resume_without_latest_pointer_continues_from_the_newest_complete(tiny_shapes, tiny_data,
                                                                         uninterrupted, tmp_path):
    train(_config(tiny_shapes), tmp_path, progress=False, data=tiny_data, stop_after=10)
    (tmp_path / "checkpoints" / "latest").unlink()
    done = train(None, tmp_path, resume=True, progress=False, data=tiny_data)
    assert done["status"] == "finished" and _same_params(uninterrupted[0], tmp_path)


def test_a_run_killed_before_its_first_checkpoint_can_resume_or_start_again(
        tiny_shapes, tiny_data, uninterrupted, tmp_path):
    """A kill during the first save leaves config.json, a metrics line and a temporary folder."""
    train(_config(tiny_shapes), tmp_path, progress=False, data=tiny_data, stop_after=3)
    import shutil

    shutil.rmtree(tmp_path / "checkpoints")
    (tmp_path / "checkpoints" / ".ckpt-00000007.tmp-99999999-abcdef").mkdir(parents=True)
    done = train(None, tmp_path, resume=True, progress=False, data=tiny_data)
    assert done["status"] == "finished" and _same_params(uninterrupted[0], tmp_path)
    import json

    def losses(run):
        return [(r["kind"], r["epoch"], r["train_loss"])
                for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]

    assert losses(tmp_path) == losses(uninterrupted[0])  # the killed attempt's line is gone
    # and a new run in a folder with no complete checkpoint is no "already holds a run"
    other = tmp_path / "again"
    (other / "checkpoints").mkdir(parents=True)
    train(_config(tiny_shapes), other, progress=False, data=tiny_data, stop_after=1)


def test_epochs_logged_after_the_last_checkpoint_are_not_logged_twice(tiny_shapes, tiny_data,
                                                                     uninterrupted, tmp_path):
    """A kill between the metrics.jsonl append and the checkpoint, simulated by its result."""
    train(_config(tiny_shapes), tmp_path, progress=False, data=tiny_data, stop_after=7)  # epoch 1 saved
    metrics = tmp_path / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    ghost = dict(__import__("json").loads(lines[0]), epoch=2, iteration=14)
    metrics.write_text("\n".join(lines + [__import__("json").dumps(ghost)]) + "\n")
    train(None, tmp_path, resume=True, progress=False, data=tiny_data)
    import json

    recs = [json.loads(x) for x in metrics.read_text().splitlines()]
    epochs = [r["epoch"] for r in recs if r["kind"] == "epoch"]
    assert epochs == [1, 2, 3]
    assert [r["train_loss"] for r in recs if r["kind"] == "epoch"] == \
        [json.loads(x)["train_loss"] for x in (uninterrupted[0] / "metrics.jsonl").read_text().splitlines()]


def test_resuming_a_finished_run_writes_nothing(uninterrupted, tiny_data, tmp_path):
    import shutil

    run = shutil.copytree(uninterrupted[0], tmp_path / "run")

    def snapshot():
        return {str(p.relative_to(run)): (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None)
                for p in sorted(run.rglob("*"))}

    before = snapshot()
    done = train(None, run, resume=True, progress=False, data=tiny_data)
    assert done["status"] == "finished" and done["checkpoint"] == str(restore(run).checkpoint.folder)
    assert snapshot() == before


def test_failure_before_the_first_save_does_not_claim_a_kept_checkpoint(tiny_shapes, tiny_data,
                                                                        tmp_path, monkeypatch):
    from rnncap.model import CaptioningRNN

    real_loss = CaptioningRNN.fast_loss  # the loss the trainer runs
    monkeypatch.setattr(CaptioningRNN, "fast_loss",
                        lambda self, f, c: (float("nan"), real_loss(self, f, c)[1]))
    with pytest.raises(TrainingError, match="No checkpoint was saved") as err:
        train(_config(tiny_shapes), tmp_path, progress=False, data=tiny_data)
    assert "kept" not in str(err.value)


def test_full_disk_at_a_checkpoint_keeps_the_previous_and_resumes(tiny_shapes, tiny_data,
                                                                 uninterrupted, tmp_path, monkeypatch):
    from rnncap import checkpoint
    from rnncap.checkpoint import CheckpointError

    real = checkpoint.write_checkpoint
    calls = {"n": 0}

    def full_on_second(folder, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device", str(folder))
        return real(folder, **kw)

    monkeypatch.setattr(checkpoint, "write_checkpoint", full_on_second)
    with pytest.raises(CheckpointError, match="No space left on device.*ckpt-00000007 is kept"):
        train(_config(tiny_shapes), tmp_path, progress=False, data=tiny_data)
    monkeypatch.undo()
    assert restore(tmp_path).checkpoint.folder.name == "ckpt-00000007"
    train(None, tmp_path, resume=True, progress=False, data=tiny_data)
    assert _same_params(uninterrupted[0], tmp_path)


def test_read_only_metrics_file_is_a_training_error(tiny_shapes, tiny_data, tmp_path, monkeypatch):
    import builtins

    from rnncap import run as run_module

    def read_only(path, mode="r", *a, **kw):
        if mode == "a":
            raise OSError(30, "Read-only file system", str(path))
        return builtins.open(path, mode, *a, **kw)

    monkeypatch.setattr(run_module, "open", read_only, raising=False)
    with pytest.raises(TrainingError, match=r"metrics\.jsonl: Read-only file system; no checkpoint "
                                            r"was saved before it"):
        train(_config(tiny_shapes), tmp_path, progress=False, data=tiny_data)
    monkeypatch.undo()
    other = tmp_path / "other"
    train(_config(tiny_shapes), other, progress=False, data=tiny_data, stop_after=7)  # epoch 1 saved
    monkeypatch.setattr(run_module, "open", read_only, raising=False)
    with pytest.raises(TrainingError, match=r"Read-only file system; the last checkpoint, .*"
                                            r"ckpt-00000007, is kept"):
        train(None, other, resume=True, progress=False, data=tiny_data)


def test_inconsistent_epoch_in_a_checkpoint_is_refused(tiny_shapes, tiny_data, tmp_path, rehash):
    """solver t=-100 once reported '220 iterations' as 120/120; t and epoch must agree."""
    from rnncap.checkpoint import CheckpointError

    train(_config(tiny_shapes), tmp_path, progress=False, data=tiny_data, stop_after=7)
    folder = restore(tmp_path).checkpoint.folder
    import json

    for name, key in (("solver.json", "epoch"), ("info.json", "epoch")):
        doc = json.loads((folder / name).read_text())
        doc[key] = 5
        (folder / name).write_text(json.dumps(doc))
    rehash(folder)
    with pytest.raises(CheckpointError, match="iteration 7 is in epoch 1"):
        train(None, tmp_path, resume=True, progress=False, data=tiny_data)


def test_resume_cannot_shorten_a_run(uninterrupted, tiny_data, tmp_path):
    """--epochs below what is done once reported '21/14 iterations' as finished."""
    import shutil

    run = shutil.copytree(uninterrupted[0], tmp_path / "run")
    with pytest.raises(ValueError, match="--epochs 2 is fewer than the 3 epochs"):
        train(None, run, resume=True, num_epochs=2, progress=False, data=tiny_data)


def test_cosine_schedule_and_pytorch_init_resume_bit_for_bit(tiny_shapes, tiny_data, tmp_path):
    config = with_overrides(_config(tiny_shapes, lr_schedule="cosine", lr_decay=1.0),
                            {"model": {"init": "pytorch"}})
    train(config, tmp_path / "full", progress=False, data=tiny_data)
    first = train(config, tmp_path / "part", progress=False, data=tiny_data, stop_after=10)
    assert first["status"] == "interrupted"
    train(config, tmp_path / "part", resume=True, progress=False, data=tiny_data)
    a, b = restore(tmp_path / "full"), restore(tmp_path / "part")
    assert a.model.init == b.model.init == "pytorch" and b.config.train.lr_schedule == "cosine"
    for k in a.model.params:
        assert np.array_equal(a.model.params[k], b.model.params[k]), k
    sa = read_checkpoint(tmp_path / "full").documents["solver"]
    sb = read_checkpoint(tmp_path / "part").documents["solver"]
    assert sa["loss_history"] == sb["loss_history"]
    # the last iteration (t = 20 of 21) trained at 5e-3 * (1 + cos(pi 20 / 21)) / 2
    assert sa["optim_configs"]["Wx"]["learning_rate"] == pytest.approx(
        5e-3 * (1 + np.cos(np.pi * 20 / 21)) / 2, rel=1e-12)
