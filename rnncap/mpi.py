"""Data-parallel training over MPI: each rank a share of every batch, one Allreduce per step.

`mpiexec -n K rnncap train ...` starts K copies of the same command. Each loads the same data,
builds the same model from the same seed and draws the same minibatch indices from the same
RNG. Every step, the global minibatch's rows are dealt into K groups by `parallel.split_rows`
(the same split the threads use); rank r computes its group's share of the batch-mean loss and
gradients with `parallel.data_parallel` (on its own threads if it has row groups of its own),
the shares are summed over ranks with ONE Allreduce on a flat buffer (every gradient, then the
loss, then a stop flag), and every rank applies the same update to the same parameters. So K
ranks compute what one process computes on the whole batch, up to the rounding of the sum.

Rank 0 alone writes the run folder (config, metrics, checkpoints, report); every rank resumes
from the same checkpoint, which the run folder on a shared file system provides. Before the
first step the ranks compare their config and a digest of their data, and stop together with a
message naming the first difference. A Ctrl-C on any rank reaches all of them through the stop
flag in the Allreduce, so they stop after the same iteration.

Detection: a process is an MPI rank when the launcher's environment says so (MPICH/Hydra's
PMI_SIZE, Open MPI's OMPI_COMM_WORLD_SIZE, PMIx's PMIX_RANK with a size) with more than one
rank; then mpi4py (`pip install 'rnncap[mpi]'`) is imported. Outside mpiexec nothing here
imports mpi4py.

This module does NOT know models, optimizers or files; it knows ranks, flat buffers and the
row split.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

import numpy as np

from rnncap import parallel

__all__ = ["MPIError", "launched_size", "world", "Reducer", "check_agreement", "describe", "digest"]


class MPIError(ValueError):
    """The MPI job cannot run as asked (mpi4py missing, ranks that disagree, a batch too small).

    A ValueError, like other bad input: the CLI prints it as one line and exits 1."""


def launched_size() -> int:
    """How many ranks the MPI launcher started this process among (1: not under mpiexec)."""
    for var in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"):
        value = os.environ.get(var)
        if value and value.isdigit():
            return int(value)
    return 1


def world():
    """mpi4py's COMM_WORLD when this process runs under mpiexec with more than one rank, else None.

    Raises:
        MPIError: under mpiexec with several ranks, but mpi4py is not installed.
    """
    size = launched_size()
    if size <= 1:
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        raise MPIError(f"this process is one of {size} MPI ranks, but mpi4py is not installed; "
                       f"pip install 'rnncap[mpi]' (mpi4py and the mpich wheel)") from None
    comm = MPI.COMM_WORLD
    return comm if comm.Get_size() > 1 else None


class Reducer:
    """The solver's gradient function for one rank: its share of the batch, summed over ranks.

    Called as `reducer(loss_fn, batch, costs, row_groups) -> (loss, grads)`; the solver uses it
    instead of computing the whole batch. After each call `stop` says whether any rank asked to
    stop (its `request_stop()` ran, e.g. from a Ctrl-C handler) before this step's Allreduce.
    """

    def __init__(self, comm):
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.stop = False
        self._stop_requested = False
        self.allreduce_calls = 0  # Allreduces done (tests check there is one per step)
        self.allreduce_bytes = 0  # the size of the last buffer
        self.allreduce_s = 0.0  # wall seconds spent in Allreduce (waiting for slower ranks included)

    def request_stop(self) -> None:
        """Ask every rank to stop after the next step (safe to call from a signal handler)."""
        self._stop_requested = True

    def __call__(self, loss_fn, batch, costs, row_groups: int):
        N = len(batch[0])
        if N < self.size:
            raise MPIError(f"a batch of {N} rows cannot be shared by {self.size} MPI ranks; "
                           f"use --batch-size >= {self.size}")
        mine = parallel.split_rows(costs, self.size)[self.rank]  # (n_r,) row indices
        # the rank's rows, split again into its own threads' row groups (global indices)
        local = [mine[g] for g in parallel.split_rows(np.asarray(costs)[mine], row_groups)]
        loss, grads = parallel.data_parallel(loss_fn, batch, local)  # weighted by n_g / N
        keys = sorted(grads)
        dtype = np.result_type(*(grads[k].dtype for k in keys))
        sizes = [grads[k].size for k in keys]
        buf = np.empty(sum(sizes) + 2, dtype=dtype)  # gradients, loss, stop flag
        offset = 0
        for k, n in zip(keys, sizes):
            buf[offset:offset + n] = grads[k].ravel()
            offset += n
        buf[-2] = loss
        buf[-1] = 1.0 if self._stop_requested else 0.0
        from mpi4py import MPI

        t0 = time.perf_counter()
        self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        self.allreduce_s += time.perf_counter() - t0
        self.allreduce_calls += 1
        self.allreduce_bytes = buf.nbytes
        offset = 0
        out = {}
        for k, n in zip(keys, sizes):
            out[k] = buf[offset:offset + n].reshape(grads[k].shape).astype(grads[k].dtype, copy=False)
            offset += n
        self.stop = bool(buf[-1] > 0)
        return float(buf[-2]), out


def digest(array) -> str:
    """A short hex digest of an array's dtype, shape and bytes."""
    a = np.ascontiguousarray(array)
    return hashlib.sha256(str((a.dtype.str, a.shape)).encode() + a.tobytes()).hexdigest()[:16]


def _flat(prefix: str, value, out: dict) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = json.dumps(value, sort_keys=True, default=str)


def describe(config: dict, data: dict, extra: dict | None = None) -> dict:
    """What must be the same on every rank: flattened config fields and digests of the data."""
    out: dict = {}
    _flat("config", config, out)
    for key in ("train_captions", "train_image_idxs", "train_features"):
        if key in data:
            out[f"data {key}"] = digest(data[key])
    if "vocab" in data:
        out["data vocabulary"] = hashlib.sha256(
            "\n".join(data["vocab"].idx_to_word).encode()).hexdigest()[:16]
    for k, v in (extra or {}).items():
        out[k] = json.dumps(v, sort_keys=True, default=str)
    return out


def check_agreement(comm, facts: dict) -> None:
    """Stop every rank, with the same message, when the ranks' `facts` (`describe`) differ.

    Raises:
        MPIError: naming the first fact in which a rank differs from rank 0, and both values.
    """
    everyone = comm.allgather(facts)
    ref = everyone[0]
    for rank, theirs in enumerate(everyone[1:], start=1):
        for key in sorted(set(ref) | set(theirs)):
            a, b = ref.get(key, "(missing)"), theirs.get(key, "(missing)")
            if a != b:
                raise MPIError(f"MPI ranks disagree on {key}: rank 0 has {a}, rank {rank} has {b}; "
                               f"every rank must run the same command on the same data")
