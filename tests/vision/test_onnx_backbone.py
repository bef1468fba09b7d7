"""A user's ONNX model as a backbone, on a tiny graph built here with onnx.helper."""

import json

import numpy as np
import pytest

from rnncap.data.features import extract_files, load_extractor
from rnncap.vision.backbone import make_backbone

onnx = pytest.importorskip("onnx")  # the test extra installs onnx and onnxruntime
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

PRE = {"size": 16, "crop_fraction": 1.0, "mean": [0, 0, 0], "std": [255, 255, 255]}


def tiny_model(path, pooled=True, seed=0):
    """image (N, 3, 16, 16) -> 3x3 conv (4 filters, pad 1) -> ReLU [-> global mean -> (N, 4)]."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    nodes = [helper.make_node("Conv", ["image", "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv"], ["relu"])]
    if pooled:
        nodes += [helper.make_node("GlobalAveragePool", ["relu"], ["gap"]),
                  helper.make_node("Flatten", ["gap"], ["features"])]
        out = helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 4])
    else:
        nodes += [helper.make_node("Identity", ["relu"], ["features"])]
        out = helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 4, 16, 16])
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [out], initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return w, b


def numpy_reference(pixels, w, b):
    """The same network by hand: (N, 16, 16, 3) uint8 -> (N, 16, 16, 4) ReLU maps."""
    x = np.pad(pixels / 255.0, ((0, 0), (1, 1), (1, 1), (0, 0)))
    win = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(1, 2))  # (N, 16, 16, 3, 3, 3)
    return np.maximum(np.einsum("nhwcij,ocij->nhwo", win, w) + b, 0)


def test_onnx_model_features_equal_the_same_network_by_hand(tmp_path):
    w, b = tiny_model(tmp_path / "m.onnx")
    ex = make_backbone(f"onnx:{tmp_path / 'm.onnx'}", preprocessing=PRE)
    assert ex.dim == 4 and ex.feature_shape == (4,) and ex.layout == "nchw"
    pixels = np.random.default_rng(1).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    np.testing.assert_allclose(ex.extract(pixels), numpy_reference(pixels, w, b).mean(axis=(1, 2)),
                               rtol=1e-5, atol=1e-5)


def test_feature_maps_give_pooled_or_grid(tmp_path):
    w, b = tiny_model(tmp_path / "g.onnx", pooled=False)
    pixels = np.random.default_rng(2).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    ref = numpy_reference(pixels, w, b)
    grid = make_backbone(f"onnx:{tmp_path / 'g.onnx'}", output="grid", preprocessing=PRE)
    assert grid.feature_shape == (16, 16, 4)
    np.testing.assert_allclose(grid.extract(pixels), ref, rtol=1e-5, atol=1e-5)
    pooled = make_backbone(f"onnx:{tmp_path / 'g.onnx'}", preprocessing=PRE)
    np.testing.assert_allclose(pooled.extract(pixels), ref.mean(axis=(1, 2)), rtol=1e-5, atol=1e-5)


def test_saved_spec_reloads_and_refuses_a_changed_model(tmp_path):
    from PIL import Image

    tiny_model(tmp_path / "m.onnx")
    ex = make_backbone(f"onnx:{tmp_path / 'm.onnx'}", preprocessing=PRE)
    ex.save(tmp_path / "ex")
    spec = json.loads((tmp_path / "ex" / "extractor.json").read_text())
    assert spec["name"] == "onnx" and spec["sha256"] == ex.sha256 and spec["path"] == str(tmp_path / "m.onnx")
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    again = load_extractor(tmp_path / "ex")
    np.testing.assert_array_equal(extract_files(again, [tmp_path / "a.png"]),
                                  extract_files(ex, [tmp_path / "a.png"]))
    for edit, says in [({"output": "fc7"}, "extractor.json: backbone output must be one of"),
                       ({"preprocessing": "x"}, "extractor.json: saved ONNX backbone is malformed")]:
        (tmp_path / "ex" / "extractor.json").write_text(json.dumps({**spec, **edit}))
        with pytest.raises(ValueError, match=f"{tmp_path / 'ex'}.*{says}"):
            load_extractor(tmp_path / "ex")
    (tmp_path / "ex" / "extractor.json").write_text(
        json.dumps({k: v for k, v in spec.items() if k != "layout"}))
    with pytest.raises(ValueError, match="extractor.json: saved ONNX backbone has no 'layout' "
                                         r"\(it holds: .*'sha256'"):
        load_extractor(tmp_path / "ex")
    (tmp_path / "ex" / "extractor.json").write_text(json.dumps(spec))
    tiny_model(tmp_path / "m.onnx", seed=1)  # the file changes under the checkpoint
    with pytest.raises(ValueError, match=r"m\.onnx has changed"):
        load_extractor(tmp_path / "ex")


def test_bad_models_are_named(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match=r"junk\.onnx: ONNX Runtime cannot load it"):
        make_backbone(f"onnx:{tmp_path / 'junk.onnx'}")
    with pytest.raises(FileNotFoundError, match="none.onnx"):
        make_backbone(f"onnx:{tmp_path / 'none.onnx'}")
    tiny_model(tmp_path / "v.onnx")
    with pytest.raises(ValueError, match="it has no grid"):
        make_backbone(f"onnx:{tmp_path / 'v.onnx'}", output="grid", preprocessing=PRE)


def test_features_command_with_an_onnx_backbone_writes_onnx_runtimes_output(tmp_path, capsys):
    """`rnncap features DIR --extractor onnx:m.onnx`: the file holds, row by row, what ONNX Runtime
    itself returns for each image (and what the network computes by hand)."""
    import h5py
    import onnxruntime
    from PIL import Image

    from rnncap.atomic import sha256_file
    from rnncap.cli import main
    from rnncap.data.featfile import read_attrs, read_extractor

    w, b = tiny_model(tmp_path / "m.onnx")
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)  # the model's own input size:
    for i, p in enumerate(pixels):                                   # no resampling in between
        Image.fromarray(p).save(folder / f"img{i}.png")
    out = tmp_path / "f.h5"
    assert main(["features", str(folder), "--extractor", f"onnx:{tmp_path / 'm.onnx'}",
                 "--extractor-options", json.dumps({"preprocessing": PRE}), "--dtype", "float32",
                 "--chunk-size", "4", "--out", str(out), "--no-progress"]) == 0
    assert f"wrote {out}: 6 images, 6 computed" in capsys.readouterr().out
    with h5py.File(out, "r") as f:
        files, feats, status = list(f["files"].asstr()[()]), f["features"][()], f["status"][()]
    assert feats.shape == (6, 4) and feats.dtype == np.float32 and (status == 1).all()
    order = [int(name.removeprefix("img").removesuffix(".png")) for name in files]
    assert sorted(order) == list(range(6))

    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x = (pixels[order].astype(np.float32) / 255).transpose(0, 3, 1, 2)  # (N, 3, 16, 16), PRE's scaling
    by_ort = session.run(None, {"image": x})[0]  # (N, 4)
    np.testing.assert_allclose(feats, by_ort, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(feats, numpy_reference(pixels[order], w, b).mean(axis=(1, 2)),
                               rtol=1e-5, atol=1e-5)
    # the file names its backbone; the extractor inside refers to the model by path and hash
    assert read_attrs(out)["backbone"] == "onnx"
    spec, _ = read_extractor(out)
    assert spec["path"] == str(tmp_path / "m.onnx") and spec["sha256"] == sha256_file(tmp_path / "m.onnx")


def test_features_command_stores_an_onnx_feature_map_as_grid_and_its_mean_as_pooled(tmp_path, capsys):
    import h5py
    import onnxruntime
    from PIL import Image

    from rnncap.cli import main

    tiny_model(tmp_path / "g.onnx", pooled=False)  # (N, 4, 16, 16) feature maps
    folder = tmp_path / "images"
    folder.mkdir()
    pixels = np.random.default_rng(6).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    for i, p in enumerate(pixels):
        Image.fromarray(p).save(folder / f"img{i}.png")
    out = tmp_path / "g.h5"
    assert main(["features", str(folder), "--extractor", f"onnx:{tmp_path / 'g.onnx'}", "--grid",
                 "--extractor-options", json.dumps({"preprocessing": PRE}), "--dtype", "float32",
                 "--out", str(out), "--no-progress"]) == 0
    with h5py.File(out, "r") as f:
        files, pooled, grid = list(f["files"].asstr()[()]), f["features"][()], f["grid"][()]
    order = [int(name.removeprefix("img").removesuffix(".png")) for name in files]
    session = onnxruntime.InferenceSession(str(tmp_path / "g.onnx"), providers=["CPUExecutionProvider"])
    maps = session.run(None, {"image": (pixels[order].astype(np.float32) / 255).transpose(0, 3, 1, 2)})[0]
    assert grid.shape == (3, 16, 16, 4) and pooled.shape == (3, 4)
    np.testing.assert_allclose(grid, maps.transpose(0, 2, 3, 1), rtol=1e-6, atol=1e-6)  # (N, h, w, C)
    np.testing.assert_allclose(pooled, maps.mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)
    # the extractor kept for captioning gives an attention model the same grid, cells in reading order
    ex = make_backbone(f"onnx:{tmp_path / 'g.onnx'}", preprocessing=PRE)
    assert ex.grid_shape == (256, 4)
    np.testing.assert_allclose(extract_files(ex, [folder / files[0]], grid=True)[0],
                               grid[0].reshape(256, 4), rtol=1e-6, atol=1e-6)
    # a model that gives one vector per image has no grid, said in one line
    tiny_model(tmp_path / "v.onnx")
    assert main(["features", str(folder), "--extractor", f"onnx:{tmp_path / 'v.onnx'}", "--grid",
                 "--extractor-options", json.dumps({"preprocessing": PRE}), "--out",
                 str(tmp_path / "v.h5"), "--no-progress"]) == 1
    assert capsys.readouterr().err == (f"rnncap features: error: {tmp_path / 'v.onnx'}: output "
                                       f"'features' is a vector per image (1, 4); it has no grid\n")
