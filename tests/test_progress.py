"""Progress: a tqdm bar on a terminal, whole lines (no carriage returns) in a log file."""

import io

from rnncap.progress import LineProgress, bar


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_file_gets_whole_lines_without_carriage_returns():
    log = io.StringIO()
    with bar(5, "decoding test (greedy)", unit="img", file=log, interval=0.0) as b:
        assert isinstance(b, LineProgress)
        for _ in range(5):
            b.update(1)
            b.set_postfix(loss="1.2500")
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert lines[0] == "decoding test (greedy): 0/5 img"
    # one line per update while running (interval 0), the last one at close with the total
    assert [line.split(":")[1].split()[0] for line in lines] == ["0/5", "1/5", "2/5", "3/5", "4/5", "5/5"]
    assert lines[-1].startswith("decoding test (greedy): 5/5 img (100%), ")
    assert lines[-1].endswith("loss=1.2500")


def test_a_periodic_line_shows_the_postfix_of_its_own_step():
    """The solver sets the postfix after update(): the line waits for it."""
    log = io.StringIO()
    b = bar(3, "train", file=log, interval=0.0)
    b.set_postfix(epoch=0)
    for epoch in (1, 2):
        b.update(1)
        b.set_postfix(epoch=epoch)
    assert [line.rsplit("epoch=", 1)[-1] for line in log.getvalue().splitlines()[1:]] == ["1", "2"]


def test_lines_are_periodic_not_one_per_step():
    log = io.StringIO()
    b = bar(1000, "train", file=log, interval=3600.0)
    for _ in range(1000):
        b.update(1)
    b.close()
    b.close()  # a second close writes nothing
    assert log.getvalue().splitlines() == [
        "train: 0/1000 it", log.getvalue().splitlines()[1]]
    assert log.getvalue().splitlines()[1].startswith("train: 1000/1000 it (100%)")


def test_a_terminal_gets_a_tqdm_bar():
    from tqdm import tqdm

    term = _Terminal()
    b = bar(3, "train", file=term)
    b.update(3)
    b.close()
    assert isinstance(b, tqdm)
    assert "\r" in term.getvalue()


def test_training_progress_in_a_log_file_has_no_carriage_returns(tmp_path, tiny_shapes,
                                                                tiny_train_flags):
    """`rnncap train` with its output going to a file, as under nohup or CI."""
    import os
    import subprocess
    import sys

    flags = [f for f in tiny_train_flags if f != "--no-progress"]
    with open(tmp_path / "log.txt", "w") as log:
        subprocess.run([sys.executable, "-m", "rnncap", "train", "--data", str(tiny_shapes),
                        "--format", "karpathy", "--epochs", "1", "--out", str(tmp_path / "run"),
                        *flags], stdout=log, stderr=subprocess.STDOUT, check=True,
                       env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    text = (tmp_path / "log.txt").read_text()
    assert "\r" not in text
    assert "train: 0/6 it" in text and "train: 6/6 it (100%)" in text  # 300 captions / 50
