"""Features and captions on a Dask cluster (rnncap.distributed) against the single-process run.

A LocalCluster on 127.0.0.1 with 2 workers and no dashboard: threads in one process where a
test patches a function the workers run (a partition that fails once), worker processes where a
test kills one.
"""

import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from rnncap.data import featfile  # noqa: E402
from rnncap.data import featurize  # noqa: E402
from rnncap.data.featurize import FeaturesOptions, make_features  # noqa: E402
from rnncap.distributed import DaskError, caption_file, connect, run_partitions  # noqa: E402

OPTS = {"image_size": 32, "num_filters": 8, "pca_dim": 16}


def opts(**kw):
    base = dict(extractor="randconv", extractor_options=OPTS, chunk_size=16, progress=False,
                fit_images=40, dtype="float32")
    return FeaturesOptions(**{**base, **kw})


@pytest.fixture(scope="module")
def client():
    from rnncap.distributed import LOOPBACK_ANY_PORT

    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                       protocol="tcp://", host="127.0.0.1",
                                       dashboard_address=LOOPBACK_ANY_PORT,
                                       scheduler_kwargs={"dashboard": False})
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


@pytest.fixture
def shapes_copy(tiny_shapes, tmp_path):
    return shutil.copytree(tiny_shapes, tmp_path / "shapes")


def _arrays(path):
    import h5py

    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in ("features", "status", "files")}


@pytest.fixture
def local_file(shapes_copy, tmp_path):
    return make_features(shapes_copy, tmp_path / "local.h5", options=opts())["out"]


def _same_file(a, b):
    x, y = _arrays(a), _arrays(b)
    for k in x:
        assert np.array_equal(x[k], y[k]), k
    assert featfile.read_attrs(a)["job"] == featfile.read_attrs(b)["job"]


def test_features_on_dask_equal_the_single_process_file(shapes_copy, local_file, client, tmp_path):
    out = make_features(shapes_copy, tmp_path / "dask.h5", options=opts(dask=client))
    assert out["computed"] == 100
    _same_file(local_file, out["out"])


def test_a_partition_that_fails_once_is_retried(shapes_copy, local_file, client, tmp_path, monkeypatch):
    real, calls = featurize._compute, []

    def fails_once(extractor, rows, paths, pooled, grid):
        calls.append(int(rows[0]))
        if int(rows[0]) == 16 and calls.count(16) == 1:
            raise RuntimeError("transient failure")
        return real(extractor, rows, paths, pooled, grid)

    monkeypatch.setattr(featurize, "_compute", fails_once)
    out = make_features(shapes_copy, tmp_path / "dask.h5", options=opts(dask=client))
    assert calls.count(16) == 2 and len(calls) == 8  # 7 chunks of 16 rows, one run twice
    _same_file(local_file, out["out"])


def test_a_partition_that_always_fails_is_named(shapes_copy, client, tmp_path, monkeypatch):
    def broken(extractor, rows, paths, pooled, grid):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(featurize, "_compute", broken)
    with pytest.raises(DaskError, match=r"partition \d+ of 7 failed 2 times; last error: "
                                        r"RuntimeError: disk on fire"):
        make_features(shapes_copy, tmp_path / "dask.h5", options=opts(dask=client, retries=1))


def test_an_interrupted_dask_run_resumes_on_dask(shapes_copy, local_file, client, tmp_path):
    def stop_after_two(done):
        if done >= 32:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make_features(shapes_copy, tmp_path / "dask.h5", options=opts(dask=client),
                      on_chunk=stop_after_two)
    status = featfile.read_status(str(tmp_path / "dask.h5") + ".partial")
    assert 32 <= int((status == 1).sum()) < 100
    out = make_features(shapes_copy, tmp_path / "dask.h5", options=opts(dask=client))
    assert out["computed"] == 100 - int((status == 1).sum())
    _same_file(local_file, out["out"])


def _slow_part(part):
    import time

    time.sleep(0.2)
    return part


def _in_process_cluster():
    from rnncap.distributed import LOOPBACK_ANY_PORT

    return distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                    protocol="tcp://", host="127.0.0.1",
                                    dashboard_address=LOOPBACK_ANY_PORT,
                                    scheduler_kwargs={"dashboard": False})


def test_two_jobs_in_one_process_each_wait_on_their_own_client(tmp_path):
    """A job on one cluster, then a job on another while the first client is still the current
    one (as `with Client(...) as c:` makes it): the second job waits on its own client's event
    loop, so a result lost with a closed worker after it was reported done is recomputed, not
    a RuntimeError about an asyncio Event bound to a different event loop."""
    import time

    def broken(part):
        raise RuntimeError("disk on fire")

    cluster_a, cluster_b = _in_process_cluster(), _in_process_cluster()
    try:
        with distributed.Client(cluster_a) as first:  # the current client from here on
            with pytest.raises(DaskError, match="disk on fire"):
                run_partitions(first, broken, [0, 1], lambda i, r: None, retries=0)
            second = distributed.Client(cluster_b, set_as_default=False)
            results, said, closed = {}, [], []

            def on_result(i, result):
                results[i] = result
                if closed:
                    return
                # every partition done; then the worker holding another one's result closes
                states = {k: st for k, st in second.futures.items() if k.startswith("rnncap-")}
                deadline = time.monotonic() + 30
                while not all(st.status == "finished" for st in states.values()):
                    assert time.monotonic() < deadline, "the partitions did not finish"
                    time.sleep(0.01)
                lost, where = next((k, ws[0]) for k, ws in second.who_has().items()
                                   if k in states and not k.endswith(f"-{i}"))
                worker = next(w for w in cluster_b.workers.values() if w.address == where)
                cluster_b.sync(worker.close)
                closed.append(where)
                while states[lost].status == "finished":  # the client hears of the loss
                    assert time.monotonic() < deadline, f"{lost} was never reported lost"
                    time.sleep(0.005)

            run_partitions(second, _slow_part, list(range(6)), on_result, say=said.append)
            second.close()
        assert results == {i: i for i in range(6)}
        assert any(closed[0] in m and "left the cluster" in m for m in said), said
    finally:
        cluster_b.close()
        cluster_a.close()


def test_a_garbled_npy_file_to_caption_is_named(tmp_path):
    from rnncap.distributed import caption_rows

    (tmp_path / "f.npy").write_bytes(b"\x93NUMPY\x01\x00\x01\x00{")  # cut inside its header
    with pytest.raises(ValueError, match=r"f\.npy is not a \.npy array file"):
        caption_rows(tmp_path / "f.npy", grid=False)


def test_an_unreachable_scheduler_is_one_line_naming_the_address(shapes_copy, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "rnncap", "features", str(shapes_copy), "--out",
                           str(tmp_path / "f.h5"), "--extractor", "randconv", "--extractor-options",
                           json.dumps(OPTS), "--fit-images", "40", "--no-progress", "--dask",
                           "tcp://127.0.0.1:9"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnncap features: error: cannot reach the Dask "
                                                   "scheduler at tcp://127.0.0.1:9"), proc.stderr


@pytest.fixture(scope="module")
def checkpoint_and_features(tiny_shapes, tmp_path_factory):
    from rnncap.config import RunConfig, with_overrides
    from rnncap.data import load_data
    from rnncap.run import train

    data = load_data(tiny_shapes, "karpathy")
    config = with_overrides(RunConfig(), {
        "data": {"path": str(tiny_shapes), "format": "karpathy"},
        "model": {"cell_type": "lstm", "hidden_dim": 16, "wordvec_dim": 8},
        "train": {"batch_size": 50, "num_epochs": 2, "val_images": 0, "seed": 1, "row_groups": 1}})
    folder = tmp_path_factory.mktemp("cap")
    train(config, folder / "run", progress=False, data=data)
    feats = np.concatenate([data["val_features"], data["test_features"], data["train_features"]])
    np.save(folder / "feats.npy", feats)
    return folder / "run", folder / "feats.npy"


def _caption_here(run, feats):
    proc = subprocess.run([sys.executable, "-m", "rnncap", "caption", str(run), "--features",
                           str(feats), "--json"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_captions_on_dask_equal_the_single_process_run_and_resume(checkpoint_and_features, client,
                                                                  tmp_path):
    run, feats = checkpoint_and_features
    here = _caption_here(run, feats)
    assert len(here.splitlines()) == 100
    out = tmp_path / "caps.jsonl"
    # a partition already stored by an earlier, interrupted run is kept and not recomputed
    first = caption_file(run, feats, out, client, partition_rows=30)
    assert first["partitions"] == 4 and first["computed"] == 4
    assert out.read_text() == here
    parts = tmp_path / "again.jsonl.parts"
    parts.mkdir()
    (parts / "job.json").write_text(json.dumps({
        "checkpoint": str(run.resolve()), "checkpoint_folder": str(
            __import__("rnncap.run", fromlist=["restore"]).restore(run).checkpoint.folder),
        "features": str(feats.resolve()), "dataset": None, "rows": 100, "method": "greedy", "beam_size": 3,
        "length_penalty": 0.0, "partition_rows": 30}, indent=1))
    (parts / "part-000001.jsonl").write_text("".join(here.splitlines(True)[30:60]))
    again = caption_file(run, feats, tmp_path / "again.jsonl", client, partition_rows=30)
    assert again["computed"] == 3
    assert (tmp_path / "again.jsonl").read_text() == here
    assert not parts.exists()


@pytest.mark.slow  # starts 2 worker processes and a replacement: ~30 s on the shared 2 cores
def test_a_dead_worker_is_reported_and_its_partitions_rerun(checkpoint_and_features):
    from rnncap.distributed import _caption_task

    run, feats = checkpoint_and_features
    here = [json.loads(x)["caption"] for x in _caption_here(run, feats).splitlines()]
    parts = [(lo, lo + 5) for lo in range(0, 100, 5)]
    messages, results = [], {}
    with connect("local:2") as c:
        pids = c.run(os.getpid)  # worker address -> pid

        def on_result(i, result):
            results[i] = result[0]
            if len(results) == 1:
                os.kill(next(iter(pids.values())), signal.SIGKILL)

        run_partitions(c, _caption_task, parts, on_result,
                       shared=[(str(run), str(feats), None, np.arange(100), "greedy", 3, 0.0)],
                       say=messages.append)
    assert any("left the cluster" in m and m.split()[2] in pids for m in messages), messages
    assert [cap for i in range(len(parts)) for cap in results[i]] == here


def test_captions_of_an_hdf5_features_file_are_named_by_its_files(checkpoint_and_features, client,
                                                                   tmp_path):
    import h5py

    run, feats = checkpoint_and_features
    here = [json.loads(x) for x in _caption_here(run, feats).splitlines()]
    names = [f"img/{i:03d}.jpg" for i in range(100)]
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["features"] = np.load(feats).astype(np.float16).astype(np.float32)
        f["files"] = names
        f.attrs["rnncap_features"] = 1  # as rnncap.data.featfile marks its files
        f.attrs["complete"] = True
    caption_file(run, tmp_path / "f.h5", tmp_path / "caps.jsonl", client, partition_rows=40)
    got = [json.loads(x) for x in (tmp_path / "caps.jsonl").read_text().splitlines()]
    assert [g["image"] for g in got] == names
    # float16 storage rounds the features; most captions survive it
    same = sum(g["caption"] == h["caption"] for g, h in zip(got, here))
    assert same >= 90, same
    with h5py.File(tmp_path / "f.h5", "a") as f:
        f.attrs["complete"] = False
    with pytest.raises(ValueError, match="unfinished features file"):
        caption_file(run, tmp_path / "f.h5", tmp_path / "other.jsonl", client)


def test_dask_captions_an_attention_models_grids_and_leaves_out_unreadable_rows(tiny_shapes, client,
                                                                               tmp_path, capsys):
    """The grid of `rnncap features`' file for an attention model, rows marked unreadable left out:
    the same lines as `rnncap caption --features` in one process."""
    from rnncap.config import RunConfig, with_overrides
    from rnncap.data import load_data
    from rnncap.run import train

    data = load_data(tiny_shapes, "karpathy", grid=True)
    config = with_overrides(RunConfig(), {
        "data": {"path": str(tiny_shapes), "format": "karpathy"},
        "model": {"kind": "attention", "hidden_dim": 16, "wordvec_dim": 8, "attention_dim": 8},
        "train": {"batch_size": 50, "num_epochs": 1, "val_images": 0, "row_groups": 1}})
    train(config, tmp_path / "run", progress=False, data=data)
    grids = data["test_features"]  # (20, 9, D)
    h5 = tmp_path / "grid.h5"
    featfile.create(h5, files=[f"t{i:02d}.png" for i in range(20)], job={}, spec={"name": "test"},
                    arrays={}, grid_shape=(3, 3, grids.shape[2]), dtype="float32")
    w = featfile.Writer(h5)
    done = [i for i in range(20) if i not in (3, 11)]
    w.write(done, grid=grids[done].reshape(-1, 3, 3, grids.shape[2]), skipped=[3, 11])
    w.finish(h5)
    here = _caption_here(tmp_path / "run", h5)
    assert [json.loads(x)["image"] for x in here.splitlines()] == [f"t{i:02d}.png" for i in done]
    said = []
    caption_file(tmp_path / "run", h5, tmp_path / "caps.jsonl", client, partition_rows=7,
                 say=said.append)
    assert (tmp_path / "caps.jsonl").read_text() == here
    assert f"rnncap caption: note: {h5} records 2 unreadable image(s), left out: t03.png, t11.png" in said
    # pooled features given to an attention model: refused before the cluster is involved
    np.save(tmp_path / "pooled.npy", np.zeros((4, grids.shape[2]), np.float32))
    with pytest.raises(ValueError, match="the attention model needs grid features of shape"):
        caption_file(tmp_path / "run", tmp_path / "pooled.npy", tmp_path / "x.jsonl", client)
