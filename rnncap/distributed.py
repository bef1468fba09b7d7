"""Features and captions for many images on a Dask cluster: partitions, retries, resumption.

`rnncap features ... --dask ADDRESS` and `rnncap caption ... --dask ADDRESS` hand their work to
a Dask scheduler (`tcp://host:8786`; `local:N` starts a LocalCluster of N worker processes on
127.0.0.1, without a dashboard). The work is cut into partitions that each give the same rows
the single-process run computes, by the same functions:

- features: one partition per chunk of rnncap.data.featurize (`--chunk-size` images); each
  worker builds the extractor once from the spec and arrays scattered to it, and the client
  writes every partition's rows at their fixed places in the HDF5 file as they arrive. A rerun
  continues from the file's status column, whatever ran the first part.
- captions: partitions of rows of a features file (.npy, or the HDF5 file `rnncap features`
  writes, read through rnncap.data.featfile as `rnncap caption --features` reads it: pooled
  features or, for an attention model, grids; rows recorded unreadable left out); each worker
  restores the checkpoint once (a path every worker can read) and decodes its rows; the client
  stores each partition's lines in `OUT.parts/` (written atomically), and joins them into OUT,
  in row order, when all are there. A rerun skips the stored partitions.

A partition whose task raises is retried (`retries`, Dask's own mechanism); a worker that dies
is reported, and the scheduler gives its partitions to the others (Dask's allowed-failures). An
unreachable scheduler is a one-line error naming the address.

This module does NOT know the mathematics of extractors or decoders, nor HDF5's layout; it
knows partitions, the cluster and which partitions are done.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from tokenize import TokenError

import numpy as np

__all__ = ["DaskError", "connect", "run_partitions", "caption_file"]

LOOPBACK_ANY_PORT = "127.0.0.1:0"

#: Times a partition whose task raises is run again before the job stops.
DEFAULT_RETRIES = 2


class DaskError(ValueError):
    """The cluster cannot be reached, or a partition failed on every try (a ValueError: the CLI
    prints it as one line)."""


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise DaskError("--dask needs dask's distributed scheduler: pip install 'rnncap[dask]'") from None
    return distributed


class connect:
    """`with connect(address) as client:` a Dask client of the scheduler at `address`.

    `address` is a scheduler address (`tcp://host:8786`, `host:8786`) or `local:N` (a
    LocalCluster of N single-threaded worker processes on 127.0.0.1, no dashboard), or a
    distributed.Client already made (used as it is, not closed). The clients it makes are not
    the process's default client: a caller's own client stays the one Dask uses.
    """

    def __init__(self, address, timeout: float = 10.0):
        self.address = address
        self.timeout = timeout
        self._client = self._cluster = None
        self._own = True

    def __enter__(self):
        distributed = _import_distributed()
        if isinstance(self.address, distributed.Client):
            self._own = False
            return self.address
        address = str(self.address)
        if address.startswith("local:"):
            n = address.split(":", 1)[1]
            if not n.isdigit() or int(n) < 1:
                raise DaskError(f"--dask {address}: expected local:N with N >= 1 workers")
            # no dashboard; the scheduler's small HTTP server (health, metrics) still starts,
            # so it gets a free port on loopback instead of 8787 on every interface
            self._cluster = distributed.LocalCluster(
                n_workers=int(n), threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address=LOOPBACK_ANY_PORT, scheduler_kwargs={"dashboard": False})
            self._client = distributed.Client(self._cluster, set_as_default=False)
            return self._client
        try:
            self._client = distributed.Client(address, timeout=self.timeout, set_as_default=False)
        except (OSError, TimeoutError) as err:
            raise DaskError(f"cannot reach the Dask scheduler at {address} "
                            f"({type(err).__name__} after {self.timeout:g} s); is it running, "
                            f"and is the address right?") from None
        return self._client

    def __exit__(self, *exc):
        if self._own:
            if self._client is not None:
                self._client.close()
            if self._cluster is not None:
                self._cluster.close()
        return False


def _workers(client) -> set:
    try:
        return set(client.scheduler_info()["workers"])
    except Exception:  # the scheduler is gone: the next result says so
        return set()


def run_partitions(client, fn, partitions: list, on_result, *, shared=(), retries: int = DEFAULT_RETRIES,
                   name: str = "rnncap", say=None) -> None:
    """Run fn(*shared, partition) for every partition on the cluster; on_result(i, result) per
    partition, in the order they finish, on the calling thread.

    `shared` values are scattered to every worker once. A task that raises is rerun up to
    `retries` times; a worker that leaves the cluster while the job runs is reported through
    `say`, and the scheduler reruns its partitions elsewhere.

    Raises:
        DaskError: a partition failed on every try, or killed the workers that ran it.
    """
    distributed = _import_distributed()
    say = say or (lambda msg: print(msg, file=sys.stderr))
    import uuid

    # hash=False: a key of this job's own. Scattered by content hash, the same data would share
    # its key with an interrupted earlier job, whose release could drop it under this one.
    scattered = [client.scatter(v, broadcast=True, hash=False) for v in shared]
    futures = {}
    job = uuid.uuid4().hex  # keys never shared with an earlier job's partitions on the cluster
    for i, part in enumerate(partitions):
        fut = client.submit(fn, *scattered, part, retries=retries, pure=False, key=f"{name}-{job}-{i}")
        futures[fut] = i
    seen = _workers(client)
    try:
        # loop=: as_completed otherwise waits on the loop of Dask's *current* client, which is
        # another client's whenever one was opened with `with Client(...)`. A result lost with a
        # worker after it was reported done is then awaited on two loops: RuntimeError.
        for fut in distributed.as_completed(futures, loop=client.loop):
            i = futures[fut]
            now = _workers(client)
            if now:
                for gone in sorted(seen - now):
                    say(f"dask worker {gone} left the cluster (it died or was stopped); the "
                        f"scheduler reruns its partitions on the other workers")
                seen = now
            try:
                result = fut.result()
            except distributed.KilledWorker as err:
                raise DaskError(f"partition {i} of {len(partitions)} killed every worker that ran it "
                                f"({err}); it is not retried again") from None
            except Exception as err:
                raise DaskError(f"partition {i} of {len(partitions)} failed {retries + 1} times; last "
                                f"error: {type(err).__name__}: {err}") from None
            on_result(i, result)
        now = _workers(client)
        for gone in sorted(seen - now) if now else ():
            say(f"dask worker {gone} left the cluster (it died or was stopped)")
    finally:
        for fut in futures:
            fut.cancel()


# ------------------------------------------------------------------ features

_EXTRACTORS: dict = {}  # per worker process: fingerprint -> extractor


def _features_task(spec_arrays, part):
    """One chunk of rows' features on a worker (the extractor made once per worker)."""
    from threadpoolctl import threadpool_limits

    from rnncap.data import featurize
    from rnncap.data.featfile import fingerprint

    spec, arrays = spec_arrays
    rows, paths, pooled, grid = part
    key = fingerprint(spec, arrays)
    if key not in _EXTRACTORS:
        _EXTRACTORS[key] = featurize._from_saved(spec, arrays, "features file")
    with threadpool_limits(1):
        return featurize._compute(_EXTRACTORS[key], rows, paths, pooled, grid)


def features_on_dask(address, chunks, images, spec, arrays, opts, store, say=None) -> None:
    """rnncap.data.featurize's chunks computed on a cluster; store(result) per chunk."""
    parts = [(rows, [images.path(r) for r in rows], opts.pooled, opts.grid) for rows in chunks]
    with connect(address) as client:
        run_partitions(client, _features_task, parts, lambda i, result: store(result),
                       shared=[(spec, arrays)], retries=opts.retries, name="rnncap-features",
                       say=say)


# ------------------------------------------------------------------ captions

_RESTORED: dict = {}  # per worker process: checkpoint path -> rnncap.run.Restored


def read_feature_rows(path, key, rows) -> np.ndarray:
    """Rows ``rows`` (ascending) of a features file: an .npy array (``key`` None), or an HDF5
    file's dataset ``key`` ("features", or "grid" read as (n, L, C))."""
    path = str(path)
    rows = np.asarray(rows, dtype=np.int64)
    if key is None:
        a = np.load(path, mmap_mode="r", allow_pickle=False)
        return np.asarray(a[rows[0]:rows[-1] + 1][rows - rows[0]] if rows.size else a[:0])
    from rnncap.data.featfile import read_rows

    return read_rows(path, key, rows)


def caption_rows(path, grid: bool):
    """(dataset key or None, row numbers (n,), image names (n,), skipped names) of a features
    file, as `rnncap caption --features` reads it: an .npy file, or the HDF5 file of `rnncap
    features` (its pooled features, or its grid for an attention model; rows it records as
    unreadable left out)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"features file {path} does not exist")
    if path.suffix == ".npy":
        try:
            n = int(np.load(path, mmap_mode="r", allow_pickle=False).shape[0])
        except (ValueError, OSError, IndexError, TokenError) as err:  # TokenError: a garbled header
            raise ValueError(f"{path} is not a .npy array file: {err}") from None
        return None, np.arange(n), [f"{path.name}[{i}]" for i in range(n)], []
    from rnncap.data.featfile import caption_rows as file_rows

    which = file_rows(str(path), grid=grid)
    if which is not None:
        return which.key, which.rows, which.names, which.skipped
    import h5py  # another program's HDF5 file: its 'features' dataset, every row

    try:
        with h5py.File(path, "r") as f:
            n = int(f["features"].shape[0])
            names = list(f["files"].asstr()[()]) if "files" in f else [f"{path.name}[{i}]" for i in range(n)]
    except (OSError, KeyError, TypeError, IndexError, ValueError) as err:
        raise ValueError(f"{path} is neither a .npy array nor an HDF5 features file with a "
                         f"'features' dataset: {err}") from None
    if len(names) != n:
        raise ValueError(f"{path}: 'files' names {len(names)} images, 'features' has {n} rows")
    return "features", np.arange(n), names, []


def _caption_task(job, part):
    """Captions (and out-of-distribution flags) of the job's rows lo:hi, on a worker."""
    from threadpoolctl import threadpool_limits

    from rnncap import ood
    from rnncap.evaluate import DecodeOptions, decode_features
    from rnncap.run import restore

    checkpoint, features, key, rows, method, beam_size, length_penalty = job
    lo, hi = part
    if checkpoint not in _RESTORED:
        _RESTORED[checkpoint] = restore(checkpoint)
    r = _RESTORED[checkpoint]
    feats = np.asarray(read_feature_rows(features, key, rows[lo:hi]), dtype=r.model.dtype)
    options = DecodeOptions(method, beam_size, length_penalty, r.max_length)
    with threadpool_limits(1):
        captions = r.vocab.decode_clean(decode_features(r.model, feats, options))
        scores, flagged = ood.flag(feats, r.feature_stats)
    return captions, (None if flagged is None else [bool(x) for x in flagged]), \
        (None if scores is None else [float(x) for x in scores])


def caption_file(checkpoint, features, out, address, *, method="greedy", beam_size=3,
                 length_penalty=0.0, partition_rows=1000, retries=DEFAULT_RETRIES, say=None) -> dict:
    """Caption every row of a features file on a cluster into OUT (JSON lines, as
    `rnncap caption --json` prints them); resumable from OUT.parts/.

    Returns:
        a summary: out, images, partitions, computed (partitions computed now).
    """
    from rnncap import ood
    from rnncap.atomic import write_text as write_text_atomic
    from rnncap.run import restore

    say = say or (lambda msg: print(msg, file=sys.stderr))
    if partition_rows < 1:
        raise ValueError(f"--partition-rows must be >= 1, got {partition_rows}")
    checkpoint = str(Path(checkpoint).resolve())
    features = str(Path(features).resolve())
    r = restore(checkpoint)  # refuses a bad checkpoint here, before the cluster is involved
    key, rows, names, skipped = caption_rows(features, grid=getattr(r.model, "kind", None) == "attention")
    if skipped:
        say(f"rnncap caption: note: {features} records {len(skipped)} unreadable image(s), left "
            f"out: " + ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else ""))
    n = len(rows)
    if n:  # the model's shape, checked here in one line rather than failing on every worker
        from rnncap.run import check_feature_rank

        first = read_feature_rows(features, key, rows[:1])
        check_feature_rank(first, getattr(r.model, "kind", None) == "attention", features)
        if first.shape[-1] != r.model.input_dim:
            raise ValueError(f"{features}: the checkpoint's model needs features of "
                             f"{r.model.input_dim} numbers per row (or grid cell); got "
                             f"{first.shape[-1]}")
    out = Path(out)
    parts_dir = Path(str(out) + ".parts")
    job = {"checkpoint": checkpoint, "checkpoint_folder": str(r.checkpoint.folder),
           "features": features, "dataset": key, "rows": n, "method": method,
           "beam_size": beam_size, "length_penalty": length_penalty,
           "partition_rows": partition_rows}
    parts_dir.mkdir(parents=True, exist_ok=True)
    job_file = parts_dir / "job.json"
    if job_file.exists():
        if json.loads(job_file.read_text()) != job:
            raise ValueError(f"{parts_dir} holds partitions of another job; remove it to start over")
    else:
        write_text_atomic(job_file, json.dumps(job, indent=1))
    bounds = [(lo, min(lo + partition_rows, n)) for lo in range(0, n, partition_rows)]
    part_file = [parts_dir / f"part-{i:06d}.jsonl" for i in range(len(bounds))]
    todo = [i for i in range(len(bounds)) if not part_file[i].exists()]

    def store(k, result):
        i = todo[k]
        captions, flagged, scores = result
        lo, hi = bounds[i]
        lines = []
        for j, caption in enumerate(captions):
            unfamiliar = None if flagged is None else flagged[j]
            if unfamiliar:
                say(f"rnncap caption: warning: {ood.warning(names[lo + j], scores[j], r.feature_stats)}")
            lines.append(json.dumps({"image": names[lo + j], "caption": caption,
                                     "out_of_distribution": unfamiliar}) + "\n")
        write_text_atomic(part_file[i], "".join(lines))

    if todo:
        with connect(address) as client:
            run_partitions(client, _caption_task, [bounds[i] for i in todo], store,
                           shared=[(checkpoint, features, key, rows, method, beam_size,
                                    length_penalty)],
                           retries=retries, name="rnncap-caption", say=say)
    write_text_atomic(out, "".join(p.read_text() for p in part_file))
    for p in part_file:
        p.unlink()
    job_file.unlink()
    parts_dir.rmdir()
    return {"out": str(out), "images": n, "partitions": len(bounds), "computed": len(todo)}


def cli_caption(args) -> int:
    """`rnncap caption CHECKPOINT --features FILE --dask ADDRESS --out FILE`."""
    if args.images or not args.features:
        raise ValueError("--dask captions a features file: give --features FILE (.npy, or the HDF5 "
                         "file `rnncap features` writes, which `--dask` makes on a cluster too), "
                         "not image files")
    if not args.out:
        raise ValueError("--dask needs --out FILE (JSON lines; a rerun continues from FILE.parts/)")
    summary = caption_file(args.checkpoint, args.features, args.out, args.dask, method=args.method,
                           beam_size=args.beam_size, length_penalty=args.length_penalty,
                           partition_rows=args.partition_rows)
    print(f"wrote {summary['out']}: {summary['images']} captions, {summary['computed']} of "
          f"{summary['partitions']} partitions computed now", file=sys.stderr)
    return 0
