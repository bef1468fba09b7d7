import json

import numpy as np
import pytest

from rnncap.checkpoint import (CheckpointError, pack, read_checkpoint, resolve, save_to_run,
                               unpack, write_checkpoint)


def _contents(seed=0):
    rng = np.random.default_rng(seed)
    params = {"W": rng.standard_normal((3, 4)).astype(np.float32), "b": np.zeros(4, np.float64)}
    state = {"t": 7, "lr": 1e-3, "m": {"W": rng.standard_normal((3, 4)).astype(np.float32)},
             "scalar": np.float32(0.1), "history": [1.5, 2.25],
             "rng": np.random.default_rng(3).bit_generator.state}
    arrays = {}
    doc = pack(state, arrays)
    return params, state, {"documents": {"state": doc, "config": {"a": 1}},
                           "arrays": {"weights": params, "state": arrays}}


def test_pack_unpack_is_exact():
    _, state, _ = _contents()
    arrays = {}
    doc = json.loads(json.dumps(pack(state, arrays)))  # through real JSON text
    back = unpack(doc, arrays)
    assert back["t"] == 7 and back["lr"] == 1e-3 and back["history"] == [1.5, 2.25]
    assert back["scalar"].dtype == np.float32 and back["scalar"] == np.float32(0.1)
    np.testing.assert_array_equal(back["m"]["W"], state["m"]["W"])
    assert back["m"]["W"].dtype == np.float32
    g = np.random.default_rng()
    g.bit_generator.state = back["rng"]
    assert g.random() == np.random.default_rng(3).random()


def test_round_trip_and_latest_pointer(tmp_path):
    params, state, contents = _contents()
    src = tmp_path / "extractor"
    src.mkdir()
    (src / "spec.json").write_text("{}")
    first = save_to_run(tmp_path / "run", "ckpt-00000010", dirs={"extractor": src}, **contents)
    ckpt = read_checkpoint(tmp_path / "run")
    assert ckpt.folder == first
    for k, v in params.items():
        np.testing.assert_array_equal(ckpt.arrays["weights"][k], v)
        assert ckpt.arrays["weights"][k].dtype == v.dtype
    assert unpack(ckpt.documents["state"], ckpt.arrays["state"])["t"] == 7
    assert (ckpt.dirs["extractor"] / "spec.json").read_text() == "{}"
    second = save_to_run(tmp_path / "run", "ckpt-00000020", **contents)
    assert resolve(tmp_path / "run") == second
    again = save_to_run(tmp_path / "run", "ckpt-00000020", **contents)
    assert again != second and resolve(tmp_path / "run") == again


def test_keep_prunes_oldest(tmp_path):
    _, _, contents = _contents()
    for t in range(1, 5):
        save_to_run(tmp_path, f"ckpt-{t:08d}", keep=2, **contents)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.is_dir())
    assert names == ["ckpt-00000003", "ckpt-00000004"]


def test_failed_write_leaves_previous_checkpoint(tmp_path):
    _, _, contents = _contents()
    good = save_to_run(tmp_path, "ckpt-00000001", **contents)
    bad = {"documents": {}, "arrays": {"weights": {"x": np.array([object()])}}}
    with pytest.raises(TypeError, match="object"):
        save_to_run(tmp_path, "ckpt-00000002", **bad)
    assert resolve(tmp_path) == good
    assert not (tmp_path / "checkpoints" / "ckpt-00000002").exists()
    assert [p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.endswith(".tmp")] == []
    read_checkpoint(tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "manifest"])
def test_damaged_checkpoint_is_named(tmp_path, damage):
    _, _, contents = _contents()
    folder = write_checkpoint(tmp_path / "ck", **contents)
    target = folder / ("manifest.json" if damage == "manifest" else "weights.npz")
    data = target.read_bytes()
    if damage == "truncate":
        target.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        target.write_bytes(data[:-5] + bytes([data[-5] ^ 0xFF]) + data[-4:])
    elif damage == "delete":
        target.unlink()
    else:
        target.write_text("{not json")
    with pytest.raises(CheckpointError, match=target.name):
        read_checkpoint(folder)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        read_checkpoint(tmp_path)


def test_refuses_to_overwrite(tmp_path):
    _, _, contents = _contents()
    write_checkpoint(tmp_path / "ck", **contents)
    with pytest.raises(CheckpointError, match="overwrite"):
        write_checkpoint(tmp_path / "ck", **contents)
