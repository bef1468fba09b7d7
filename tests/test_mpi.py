"""MPI data-parallel training (rnncap.mpi): K ranks under mpiexec against one process.

Each test starts `mpiexec` (the mpich wheel's Hydra) with 2 ranks of `python -m rnncap train`
on the tiny shapes dataset, whose features the fixture computes and caches first, so that the
ranks only read them.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mpi4py")
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install mpich)")

ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def shapes(tiny_shapes):
    from rnncap.data import load_data

    load_data(tiny_shapes, "karpathy")  # features computed and cached before the ranks read them
    return tiny_shapes


def _flags(shapes, epochs=2, lr="5e-3"):
    # 300 training captions / 30 = 10 iterations per epoch
    return ["--data", str(shapes), "--format", "karpathy", "--cell", "lstm", "--hidden-dim", "16",
            "--wordvec-dim", "8", "--dtype", "float64", "--batch-size", "30", "--epochs", str(epochs),
            "--val-images", "0", "--seed", "5", "--row-groups", "1", "--lr", lr, "--no-progress"]


def _train(out, flags, ranks=None, timeout=120):
    cmd = [sys.executable, "-m", "rnncap", "train", "--out", str(out), *flags]
    if ranks:
        cmd = [MPIEXEC, "-n", str(ranks), *cmd]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)


def _weights(run, iteration):
    with np.load(run / "checkpoints" / f"ckpt-{iteration:08d}" / "weights.npz") as z:
        return {k: z[k] for k in z.files}


def test_two_ranks_equal_one_process_after_20_steps(shapes, tmp_path):
    one = _train(tmp_path / "one", _flags(shapes))
    two = _train(tmp_path / "two", _flags(shapes), ranks=2)
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr + two.stdout
    assert "MPI: 2 ranks share each batch of 30" in two.stdout + two.stderr
    a, b = _weights(tmp_path / "one", 20), _weights(tmp_path / "two", 20)
    assert set(a) == set(b) and all(v.dtype == np.float64 for v in b.values())
    for k in a:
        rel = np.abs(a[k] - b[k]).max() / np.abs(a[k]).max()
        assert rel < 1e-6, (k, rel)
    assert not np.array_equal(a["W_embed"], _weights(tmp_path / "one", 10)["W_embed"])  # it trained
    # rank 0 alone wrote: one metrics line per epoch, not one per rank
    assert len((tmp_path / "two" / "metrics.jsonl").read_text().splitlines()) == 2


def test_one_allreduce_per_step_on_a_flat_buffer(shapes, tmp_path):
    script = f"""
import json, sys
from rnncap import mpi
made = []
init = mpi.Reducer.__init__
def spy(self, comm):
    init(self, comm)
    made.append(self)
mpi.Reducer.__init__ = spy
from rnncap.cli import main
main(["train", "--out", {str(tmp_path / 'run')!r}] + {_flags(shapes)!r})
r = made[0]
print(json.dumps({{"rank": r.rank, "calls": r.allreduce_calls, "bytes": r.allreduce_bytes}}))
"""
    proc = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-c", script], env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    import json

    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    assert sorted(x["rank"] for x in lines) == [0, 1]
    from rnncap.run import restore

    n_params = sum(v.size for v in restore(tmp_path / "run").model.params.values())
    for x in lines:
        assert x["calls"] == 20  # one per step
        assert x["bytes"] == (n_params + 2) * 8  # every gradient, the loss and the stop flag


def test_ranks_that_disagree_stop_at_the_start_naming_the_difference(shapes, tmp_path):
    out = str(tmp_path / "run")
    cmd = [MPIEXEC, "-n", "1", sys.executable, "-m", "rnncap", "train", "--out", out, *_flags(shapes),
           ":", "-n", "1", sys.executable, "-m", "rnncap", "train", "--out", out,
           *_flags(shapes, lr="1e-3")]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert ("rnncap train: error: MPI ranks disagree on config.train.learning_rate: rank 0 has "
            "0.005, rank 1 has 0.001") in proc.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def _rank_pid(launcher: int, rank: int) -> int | None:
    """The pid of the process started by `launcher` (mpiexec) whose environment says
    PMI_RANK=rank (other tests' MPI jobs may run at the same time)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == launcher:
            continue
        try:
            if f"PMI_RANK={rank}".encode() not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            pid = int(entry.name)
            while pid > 1 and pid != launcher:
                pid = _parent(pid)
        except (OSError, ValueError, IndexError):
            continue
        if pid == launcher:
            return int(entry.name)
    return None


@pytest.mark.slow  # two MPI jobs and a wait for the second checkpoint: 20-50 s on the shared VM
def test_a_killed_rank_stops_the_job_and_the_run_resumes(shapes, tmp_path):
    run = tmp_path / "run"
    cmd = [MPIEXEC, "-n", "2", sys.executable, "-m", "rnncap", "train", "--out", str(run),
           *_flags(shapes, epochs=2000)]
    job = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (run / "checkpoints" / "ckpt-00000020").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        pid = _rank_pid(job.pid, 1)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        out, _ = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode != 0
    assert "BAD TERMINATION" in out and "Killed (signal 9)" in out  # Hydra names the dead rank's pid
    assert f"PID {pid}" in out
    from rnncap.checkpoint import read_checkpoint

    done = read_checkpoint(run).documents["info"]
    assert done["iteration"] >= 20 and done["iteration"] % 10 == 0
    epochs = done["epoch"] + 1
    resumed = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "rnncap", "train", "--out",
                              str(run), "--resume", "--epochs", str(epochs), "--no-progress"],
                             env=ENV, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert read_checkpoint(run).documents["info"]["iteration"] == epochs * 10
