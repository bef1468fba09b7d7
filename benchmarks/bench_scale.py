"""Scale-out costs: MPI data-parallel training and Dask features/captions, 1 against 2.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_scale.py params
    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_scale.py mpi --steps 10
    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_scale.py dask --images 200 --rows 20000

`params` counts the gradient bytes one Allreduce carries for CS231n's full-size captioner
(N=100, T=17, V=1004, W=256, H=512, D=512) and for the attention model at the same sizes (its
parameter shapes as rnncap/attention_model.py builds them, A=H, a 7x7 grid of D=512). `mpi`
trains that captioner (LSTM, float32, synthetic data of the same shape) for --steps steps with 1
process and with `mpiexec -n 2`, and prints captions/s, CPU seconds per step per rank and the
Allreduce's share. `dask` runs `rnncap features` (the pretrained backbone) and caption decoding
with 1 process and on a LocalCluster of 2 worker processes, and prints images/s. Results are
JSON lines on stdout; docs/scaling.md and docs/performance.md quote them.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

N, T, V, W, H, D = 100, 17, 1004, 256, 512, 512
GRID = 49


def params():
    from rnncap.model import CaptioningRNN

    vocab = {"<NULL>": 0, "<START>": 1, "<END>": 2, **{f"w{i}": i + 3 for i in range(V - 3)}}
    m = CaptioningRNN(vocab, input_dim=D, wordvec_dim=W, hidden_dim=H, cell_type="lstm",
                      dtype=np.float32)
    rnn = sum(v.size for v in m.params.values())
    A = H
    att = {"W_embed": V * W, "W_h0": D * H, "b_h0": H, "W_c0": D * H, "b_c0": H, "W_a": D * A,
           "b_a": A, "W_h": H * A, "w_att": A, "W_beta": H, "b_beta": 1, "Wx": W * 4 * H,
           "Wh": H * 4 * H, "Wz": D * 4 * H, "b": 4 * H, "W_vocab": H * V, "b_vocab": V}
    steps = T - 1
    # multiply-adds per caption and step, forward; backward is about twice that
    rnn_macs = steps * (W * 4 * H + H * 4 * H + H * V) + D * H
    att_macs = steps * (W * 4 * H + H * 4 * H + D * 4 * H + H * A + GRID * A + GRID * D + H * V) \
        + GRID * D * A + 2 * D * H
    for name, count, macs in (("lstm", rnn, rnn_macs), ("attention", sum(att.values()), att_macs)):
        print(json.dumps({"model": name, "params": int(count), "bytes_float32": int(count) * 4,
                          "bytes_float64": int(count) * 8,
                          "flops_per_step": int(3 * 2 * macs * N)}))


def _mpi_worker(steps):
    from rnncap import mpi
    from rnncap.model import CaptioningRNN
    from rnncap.solver import CaptioningSolver

    comm = mpi.world()
    rng = np.random.default_rng(0)
    vocab = {"<NULL>": 0, "<START>": 1, "<END>": 2, **{f"w{i}": i + 3 for i in range(V - 3)}}
    captions = rng.integers(3, V, size=(2000, T))
    captions[:, 0] = 1
    captions[:, -1] = 2
    data = {"train_captions": captions, "train_image_idxs": rng.integers(0, 1000, 2000),
            "train_features": rng.standard_normal((1000, D)).astype(np.float32)}
    model = CaptioningRNN(vocab, input_dim=D, wordvec_dim=W, hidden_dim=H, cell_type="lstm",
                          dtype=np.float32, seed=0)
    reducer = None if comm is None else mpi.Reducer(comm)
    solver = CaptioningSolver(model, data, update_rule="adam", optim_config={"learning_rate": 1e-3},
                              batch_size=N, num_epochs=1, verbose=False, seed=0,
                              loss_fn=model.fast_loss, reducer=reducer)
    solver.num_iterations = 1  # one warm-up step
    solver.train()
    solver.num_iterations = 1 + steps
    if comm is not None:
        comm.Barrier()
    c0, w0 = time.process_time(), time.perf_counter()
    a0 = 0.0 if reducer is None else reducer.allreduce_s
    solver.train()
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    out = {"ranks": 1 if comm is None else comm.Get_size(),
           "rank": 0 if comm is None else comm.Get_rank(), "steps": steps,
           "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
           "captions_per_s": round(steps * N / wall, 1),
           "cpu_s_per_step": round(cpu / steps, 4)}
    if reducer is not None:
        out["allreduce_s_per_step"] = round((reducer.allreduce_s - a0) / steps, 4)
        out["allreduce_bytes"] = reducer.allreduce_bytes
    print(json.dumps(out), flush=True)


def mpi_bench(steps, rounds):
    mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or "mpiexec"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    for _ in range(rounds):  # alternate, so that the machine's load hits both alike
        for cmd in ([sys.executable, __file__, "_mpi", "--steps", str(steps)],
                    [mpiexec, "-n", "2", sys.executable, __file__, "_mpi", "--steps", str(steps)]):
            subprocess.run(cmd, env=env, check=True)


def dask_bench(images, rows, skip=False):
    from rnncap import distributed
    from rnncap.data import prepare_shapes
    from rnncap.data.featurize import FeaturesOptions, make_features
    from rnncap.evaluate import DecodeOptions, decode_features

    tmp = tempfile.mkdtemp(prefix="bench_scale_")
    folder = prepare_shapes(os.path.join(tmp, "shapes"), seed=3, num_train=images - 40, num_val=20,
                            num_test=20, progress=False)
    img_dir = os.path.join(tmp, "imgs")
    shutil.copytree(os.path.join(folder, "images"), img_dir)
    base = dict(extractor="efficientnet-lite0", chunk_size=25, progress=False, dtype="float32")
    import distributed as dd

    cluster = dd.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                              dashboard_address="127.0.0.1:0", scheduler_kwargs={"dashboard": False})
    client = dd.Client(cluster)

    def workers_cpu():
        return sum(client.run(time.process_time).values())

    def timed(job, how, n, fn):
        c0, w0, k0 = time.process_time(), time.perf_counter(), workers_cpu() if "dask" in how else 0
        fn()
        wall = time.perf_counter() - w0
        cpu = time.process_time() - c0
        worker_cpu = workers_cpu() - k0 if "dask" in how else 0.0
        print(json.dumps({"job": job, "how": how, "images": n, "wall_s": round(wall, 2),
                          "images_per_s": round(n / wall, 2), "client_cpu_s": round(cpu, 2),
                          "workers_cpu_s": round(worker_cpu, 2),
                          "images_per_cpu_s": round(n / (cpu + worker_cpu), 2)}), flush=True)

    k0 = workers_cpu()
    time.sleep(20)
    print(json.dumps({"job": "idle", "how": "dask 2 workers", "wall_s": 20,
                      "workers_cpu_s": round(workers_cpu() - k0, 2)}), flush=True)
    for how, extra in (("1 process", {}), ("dask 2 workers", {"dask": client})) * (not skip):
        out = os.path.join(tmp, f"f-{len(extra)}.h5")
        timed("features", how, images,
              lambda: make_features(img_dir, out, options=FeaturesOptions(**base, **extra)))
    # captions: a trained-size model (LSTM H=512 on 512-d features), decoded greedily
    from rnncap.config import RunConfig, with_overrides
    from rnncap.run import train

    config = with_overrides(RunConfig(), {
        "data": {"path": str(folder), "format": "karpathy"},
        "model": {"cell_type": "lstm", "hidden_dim": H, "wordvec_dim": W},
        "train": {"batch_size": 50, "num_epochs": 1, "val_images": 0, "seed": 1, "row_groups": 1}})
    run = os.path.join(tmp, "run")
    train(config, run, progress=False)
    from rnncap.run import restore

    r = restore(run)
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((rows, r.model.params["W_proj"].shape[0])).astype(np.float32)
    np.save(os.path.join(tmp, "feats.npy"), feats)
    options = DecodeOptions("greedy", max_length=r.max_length)
    from rnncap import parallel

    parallel.set_threads(1)
    timed("captions", "1 process", rows, lambda: decode_features(r.model, feats, options))
    timed("captions", "dask 2 workers", rows, lambda: distributed.caption_file(
        run, os.path.join(tmp, "feats.npy"), os.path.join(tmp, "caps.jsonl"), client,
        partition_rows=2000))
    client.close()
    cluster.close()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=("params", "mpi", "_mpi", "dask"))
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--rows", type=int, default=20000)
    p.add_argument("--skip-features", action="store_true", help="dask: captions only")
    a = p.parse_args()
    if a.what == "params":
        params()
    elif a.what == "_mpi":
        _mpi_worker(a.steps)
    elif a.what == "mpi":
        mpi_bench(a.steps, a.rounds)
    else:
        dask_bench(a.images, a.rows, a.skip_features)
