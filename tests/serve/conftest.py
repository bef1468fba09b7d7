"""A tiny trained checkpoint for the server's tests (trained once per session)."""

import pytest


@pytest.fixture(scope="session")
def served_run(tiny_shapes, tiny_train_flags, tmp_path_factory):
    """A run folder trained for 3 epochs on the tiny shapes dataset (LSTM, hidden 16)."""
    from rnncap.cli import main

    run = tmp_path_factory.mktemp("served") / "run"
    assert main(["train", "--data", str(tiny_shapes), "--format", "karpathy", "--epochs", "3",
                 "--out", str(run), *tiny_train_flags]) == 0
    return run
