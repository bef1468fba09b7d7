"""SIGKILL a training run again and again, resume it each time, and compare with a run never killed.

Half the kills land at a random moment, half the moment a checkpoint is being written or pruned
(a watcher polls the checkpoints/ folder for a temporary name and kills at once). After every kill
the run folder must hold no corrupt checkpoint: the newest complete one must read and restore.
Once a resumed run finishes, its final checkpoint must equal the uninterrupted run's byte for byte
(weights, optimizer state, solver state) and its metrics.jsonl must list the same epochs with the
same losses, each once.

Run it alone (the figures go to stdout, and to a JSON file if RNNCAP_KILL_REPORT names one):

    RNNCAP_KILLS=150 .venv/bin/python -m pytest tests/test_kill.py -m slow -s

RNNCAP_KILLS sets the number of kills (default 40); RNNCAP_KILL_SEED the seed of the kill times.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rnncap.checkpoint import find_latest, read_checkpoint

pytestmark = pytest.mark.slow

FLAGS = ["--format", "karpathy", "--cell", "lstm", "--hidden-dim", "16", "--wordvec-dim", "8",
         "--batch-size", "40", "--epochs", "25", "--val-images", "0", "--keep-checkpoints", "2",
         "--seed", "3", "--no-progress"]
SAME_BYTES = ["weights.npz", "solver.npz", "solver.json", "model.json", "vocab.json", "config.json"]


def _env():
    return dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def _command(data, run):
    fresh = not (run / "config.json").exists()
    base = [sys.executable, "-m", "rnncap", "train", "--out", str(run)]
    # a resume keeps the checkpoint's own config; only a fresh start gives the flags
    return base + (["--data", str(data), *FLAGS] if fresh else ["--resume", "--no-progress"])


def _temporaries(checkpoints: Path) -> set:
    """Temporary names in checkpoints/: a checkpoint or the latest pointer being written, or an
    old checkpoint being pruned (or what a killed process left of one)."""
    try:
        return {e.name for e in os.scandir(checkpoints) if ".tmp-" in e.name}
    except FileNotFoundError:
        return set()


def _epochs(run):
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["kind"], r["epoch"], r["iteration"], r["train_loss"], r["learning_rate"]) for r in recs]


def test_sigkill_at_random_moments_and_during_checkpoint_writes_then_resume_is_bit_exact(
        tiny_shapes, tmp_path):
    kills_wanted = int(os.environ.get("RNNCAP_KILLS", "40"))
    rng = np.random.default_rng(int(os.environ.get("RNNCAP_KILL_SEED", "0")))
    data = tiny_shapes
    # warm the features cache, then the uninterrupted reference run, timed
    subprocess.run([sys.executable, "-m", "rnncap", "train", "--out", str(tmp_path / "warm"),
                    "--data", str(data), *FLAGS, "--epochs", "1"],
                   check=True, env=_env(), capture_output=True)
    reference = tmp_path / "reference"
    t0 = time.perf_counter()
    subprocess.run(_command(data, reference), check=True, env=_env(), capture_output=True)
    duration = time.perf_counter() - t0

    run = tmp_path / "killed"
    stats = {"kills": 0, "kills_during_writes": 0, "kills_other_moments": 0, "corrupt": 0,
             "resumes": 0, "finished_without_kill": 0}
    while True:
        proc = subprocess.Popen(_command(data, run), env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        if stats["kills"] < kills_wanted:
            during_write = stats["kills"] % 2 == 1
            deadline = time.perf_counter() + rng.uniform(0.0, 0.7 * duration)
            leftovers = _temporaries(run / "checkpoints")  # of earlier kills, not this process's
            while proc.poll() is None:
                if during_write and _temporaries(run / "checkpoints") - leftovers:
                    break
                if not during_write and time.perf_counter() >= deadline:
                    break
                time.sleep(0.0005)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                stats["kills"] += 1
                # this process was writing (or pruning) when it died: a temporary of its own is left
                in_write = bool(_temporaries(run / "checkpoints") - leftovers)
                stats["kills_during_writes" if in_write else "kills_other_moments"] += 1
                latest, _ = find_latest(run / "checkpoints")
                if latest is not None:
                    try:
                        read_checkpoint(latest)
                    except ValueError:
                        stats["corrupt"] += 1
                stats["resumes"] += 1
                continue
        err = proc.communicate()[1].decode()
        assert proc.returncode == 0, err
        if stats["kills"] < kills_wanted:  # finished before the kill: start over in a new folder
            stats["finished_without_kill"] += 1
            import shutil

            shutil.rmtree(run)
            continue
        break

    a, b = read_checkpoint(reference), read_checkpoint(run)
    same = {name: (a.folder / name).read_bytes() == (b.folder / name).read_bytes() for name in SAME_BYTES}
    stats["bit_exact"] = all(same.values())
    stats["metrics_same_epochs_once"] = _epochs(run) == _epochs(reference)
    stats["reference_run_s"] = round(duration, 2)
    print("\nkill test:", json.dumps(stats))
    if os.environ.get("RNNCAP_KILL_REPORT"):
        Path(os.environ["RNNCAP_KILL_REPORT"]).write_text(json.dumps(stats, indent=1))
    assert stats["corrupt"] == 0
    assert same == {name: True for name in SAME_BYTES}
    assert stats["metrics_same_epochs_once"]
    assert a.folder.name == b.folder.name
