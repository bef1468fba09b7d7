"""The NumPy EfficientNet-Lite0 against ONNX Runtime running the same weights.

The ONNX graph is built here with onnx.helper from the same folded weights the NumPy
network uses (BN folded, channels first for ONNX): Conv with auto_pad=SAME_UPPER (which is
TensorFlow's "same" padding, the extra row at the end), Clip(0, 6) for ReLU6, grouped Conv
for the depthwise layers, Add for the residuals, GlobalAveragePool. ONNX Runtime then
applies its own graph optimisations (all levels) and kernels. Before timing, the script
prints the largest difference between the two networks' pooled features.

Both run a batch of 32 preprocessed images at each size (224 x 224 and 128 x 128) with 1
and 2 threads, interleaved (NumPy, ORT, NumPy, ORT, ... so that a neighbour's load hits
both alike). NumPy's threads are rnncap.parallel's (chunks of the batch side by side, one
BLAS thread each: `EfficientNetLite0.forward(threads=...)`); ORT's are its intra-op threads.
Reported per configuration: median images/s (wall clock) and images per CPU-second (the
process's CPU time, all threads), plus the NumPy/ORT ratio of each.

Run (ONNX Runtime and onnx come with the test extra):

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_backbone.py [--reps 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from rnncap.vision.efficientnet import EfficientNetLite0  # noqa: E402


def build_onnx(weights, path):
    """The folded network as an ONNX graph: image (N, 3, H, W) -> pooled (N, 1280)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits, nodes = [], []
    count = [0]

    def name(prefix):
        count[0] += 1
        return f"{prefix}{count[0]}"

    def const(a, prefix):
        n = name(prefix)
        inits.append(numpy_helper.from_array(np.ascontiguousarray(a, dtype=np.float32), n))
        return n

    zero, six = const(np.array(0), "zero"), const(np.array(6), "six")

    def conv(x, w_oihw, b, stride=1, group=1, relu6=True):
        out = name("conv")
        nodes.append(helper.make_node("Conv", [x, const(w_oihw, "w"), const(b, "b")], [out],
                                      strides=[stride, stride], group=group, auto_pad="SAME_UPPER",
                                      kernel_shape=list(w_oihw.shape[2:])))
        if relu6:
            clipped = name("relu6")
            nodes.append(helper.make_node("Clip", [out, zero, six], [clipped]))
            out = clipped
        return out

    h = conv("image", weights.stem_w.transpose(3, 2, 0, 1), weights.stem_b, stride=2)
    for blk in weights.blocks:
        y = h
        if blk.expand_w is not None:
            y = conv(y, blk.expand_w.T[:, :, None, None], blk.expand_b)
        C = blk.dw_w.shape[2]
        y = conv(y, blk.dw_w.transpose(2, 0, 1)[:, None], blk.dw_b, stride=blk.stride, group=C)
        y = conv(y, blk.project_w.T[:, :, None, None], blk.project_b, relu6=False)
        if blk.residual:
            s = name("add")
            nodes.append(helper.make_node("Add", [y, h], [s]))
            y = s
        h = y
    h = conv(h, weights.head_w.T[:, :, None, None], weights.head_b)
    nodes.append(helper.make_node("GlobalAveragePool", [h], ["gap"]))
    nodes.append(helper.make_node("Flatten", ["gap"], ["pooled"]))
    graph = helper.make_graph(
        nodes, "efficientnet_lite0",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["N", 1280])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def ort_session(path, threads):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions of each configuration")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 128])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()

    import onnxruntime

    net = EfficientNetLite0()
    tmp = tempfile.mkdtemp()
    path = os.path.join(tmp, "efficientnet_lite0.onnx")
    build_onnx(net.weights, path)
    print(f"# {platform.machine()} {os.cpu_count()} cores, numpy {np.__version__}, "
          f"onnxruntime {onnxruntime.__version__}, batch {args.batch}, {args.reps} reps, "
          f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}", file=sys.stderr)
    rng = np.random.default_rng(0)
    rows = []
    for size in args.sizes:
        x = rng.uniform(-1, 1, (args.batch, size, size, 3)).astype(np.float32)  # NHWC, scaled
        x_nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        for threads in args.threads:
            sess = ort_session(path, threads)
            ours = net.forward(x, "pooled", threads=threads)["pooled"]
            theirs = sess.run(["pooled"], {"image": x_nchw})[0]  # also the warm-up
            diff = float(np.abs(ours - theirs).max() / np.abs(theirs).max())
            t_np, t_ort = [], []
            for _ in range(args.reps):
                t_np.append(timed(lambda: net.forward(x, "pooled", threads=threads)))
                t_ort.append(timed(lambda: sess.run(["pooled"], {"image": x_nchw})))
            row = {"size": size, "threads": threads, "max_rel_diff": diff}
            for label, ts in (("numpy", t_np), ("ort", t_ort)):
                wall = statistics.median(t for t, _ in ts)
                cpu = statistics.median(c for _, c in ts)
                row[f"{label}_img_s"] = args.batch / wall
                row[f"{label}_img_cpu_s"] = args.batch / cpu
            row["ratio_img_s"] = row["numpy_img_s"] / row["ort_img_s"]
            row["ratio_img_cpu_s"] = row["numpy_img_cpu_s"] / row["ort_img_cpu_s"]
            rows.append(row)
            print(f"{size:4d}px {threads} thr | numpy {row['numpy_img_s']:6.1f} img/s "
                  f"{row['numpy_img_cpu_s']:6.1f} img/cpu-s | ort {row['ort_img_s']:6.1f} img/s "
                  f"{row['ort_img_cpu_s']:6.1f} img/cpu-s | numpy/ort {row['ratio_img_s']:.2f} "
                  f"(per cpu-s {row['ratio_img_cpu_s']:.2f}) | max rel diff {diff:.1e}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
