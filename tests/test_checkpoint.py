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


def test_same_size_still_valid_edit_of_a_document_is_refused_by_name(tmp_path):
    """Only the SHA-256 catches this: the size is the same and the JSON still parses."""
    _, _, contents = _contents()
    contents["documents"]["config"] = {"a": 1, "lr": 0.005}
    folder = write_checkpoint(tmp_path / "ck", **contents)
    path = folder / "config.json"
    text = path.read_text()
    edited = text.replace("0.005", "0.009")
    assert len(edited) == len(text) and json.loads(edited)["lr"] == 0.009
    path.write_text(edited)
    with pytest.raises(CheckpointError, match=r"config\.json is corrupt: its SHA-256"):
        read_checkpoint(folder)


@pytest.mark.parametrize("files", [[1, 2], "x", {"../escape.json": None},
                                   {"weights.npz": {"sha256": "0" * 64, "bytes": "12"}},
                                   {"weights.npz": {"sha256": "zz", "bytes": 1}},
                                   {"/etc/hostname": {"sha256": "0" * 64, "bytes": 1}},
                                   {"../../etc/hostname": {"sha256": "0" * 64, "bytes": 1}}])
def test_manifest_of_the_wrong_shape_is_refused(tmp_path, files):
    _, _, contents = _contents()
    folder = write_checkpoint(tmp_path / "ck", **contents)
    (folder / "manifest.json").write_text(json.dumps({"format_version": 1, "files": files}))
    with pytest.raises(CheckpointError, match="manifest.json is corrupt"):
        read_checkpoint(folder)


def test_manifest_entry_that_links_outside_is_refused(tmp_path, rehash):
    _, _, contents = _contents()
    folder = write_checkpoint(tmp_path / "ck", **contents)
    outside = tmp_path / "secret.json"
    outside.write_text('{"a": 1}')
    (folder / "config.json").unlink()
    (folder / "config.json").symlink_to(outside)
    rehash(folder)
    with pytest.raises(CheckpointError, match="outside the checkpoint folder"):
        read_checkpoint(folder)


def test_missing_array_reference_is_a_checkpoint_error():
    with pytest.raises(CheckpointError, match="'nope'"):
        unpack({"m": {"__array__": "nope"}}, {}, "solver.json")


def test_latest_pointer_is_not_followed_out_of_the_run(tmp_path):
    _, _, contents = _contents()
    other = save_to_run(tmp_path / "other", "ckpt-00000099", **contents)
    mine = save_to_run(tmp_path / "run", "ckpt-00000001", **contents)
    pointer = tmp_path / "run" / "checkpoints" / "latest"
    for escape in ("../../other/checkpoints/ckpt-00000099", str(other), ".."):
        pointer.write_text(escape)
        assert resolve(tmp_path / "run") == mine  # the run's own newest checkpoint


def test_missing_or_broken_latest_falls_back_to_the_newest_complete(tmp_path):
    _, _, contents = _contents()
    save_to_run(tmp_path, "ckpt-00000010", **contents)
    second = save_to_run(tmp_path, "ckpt-00000020", **contents)
    base = tmp_path / "checkpoints"
    (base / "latest").unlink()
    assert resolve(tmp_path) == second
    (base / "latest").write_text("ckpt-00000030")  # a folder that was never completed
    assert resolve(tmp_path) == second
    (second / "manifest.json").unlink()  # half-deleted
    assert resolve(tmp_path).name == "ckpt-00000010"


def test_no_complete_checkpoint_is_named(tmp_path):
    base = tmp_path / "checkpoints"
    (base / "ckpt-00000010").mkdir(parents=True)  # never completed
    with pytest.raises(CheckpointError, match="holds no complete checkpoint"):
        resolve(tmp_path)


def test_save_cleans_up_what_a_killed_write_or_prune_left(tmp_path):
    _, _, contents = _contents()
    save_to_run(tmp_path, "ckpt-00000010", **contents)
    base = tmp_path / "checkpoints"
    half = base / "ckpt-00000005"  # an interrupted prune of an older rnncap: files gone, no manifest
    half.mkdir()
    (half / "vocab.json").write_text("{}")
    (base / ".ckpt-00000008.tmp-99999999-abcdef").mkdir()  # a killed write
    (base / ".ckpt-00000004.tmp-99999999-fedcba").mkdir()  # a killed prune
    save_to_run(tmp_path, "ckpt-00000020", keep=2, **contents)
    assert sorted(p.name for p in base.iterdir()) == ["ckpt-00000010", "ckpt-00000020", "latest"]


@pytest.mark.parametrize("errno, text", [(28, "No space left on device"), (30, "Read-only file system")])
def test_disk_full_or_read_only_is_one_line_and_keeps_the_previous(tmp_path, monkeypatch, errno, text):
    _, _, contents = _contents()
    good = save_to_run(tmp_path, "ckpt-00000010", **contents)

    def full(f, **arrays):
        f.write(b"PK\x03\x04 half an archive")
        raise OSError(errno, text)

    monkeypatch.setattr(np, "savez", full)
    with pytest.raises(CheckpointError) as err:
        save_to_run(tmp_path, "ckpt-00000020", **contents)
    message = str(err.value)
    assert "\n" not in message and text in message and "ckpt-00000020" in message
    assert f"the previous checkpoint {good} is kept" in message
    monkeypatch.undo()
    assert resolve(tmp_path) == good
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["ckpt-00000010", "latest"]
    read_checkpoint(tmp_path)


def test_copytree_failure_is_one_line(tmp_path, monkeypatch):
    import shutil

    _, _, contents = _contents()
    src = tmp_path / "extractor"
    src.mkdir()
    (src / "a.npz").write_bytes(b"x")

    def full(src, dst, **kw):
        raise shutil.Error([(str(src), str(dst), "[Errno 28] No space left on device")])

    monkeypatch.setattr(shutil, "copytree", full)
    with pytest.raises(CheckpointError, match=r"No space left on device; no checkpoint of this run"):
        save_to_run(tmp_path / "run", "ckpt-00000001", dirs={"extractor": src}, **contents)


def test_compressed_arrays_are_refused_before_they_are_inflated(tmp_path, rehash):
    """An edited weights.npz holding a compressed member could inflate to gigabytes (a zip bomb)."""
    _, _, contents = _contents()
    folder = write_checkpoint(tmp_path / "ck", **contents)
    np.savez_compressed(folder / "weights.npz", W=np.zeros((1000, 1000), np.float32))
    assert (folder / "weights.npz").stat().st_size < 100_000  # 4 MB of zeros, packed small
    rehash(folder)
    with pytest.raises(CheckpointError, match=r"weights\.npz: member W\.npy is compressed"):
        read_checkpoint(folder)


def test_an_array_with_a_garbled_header_is_a_checkpoint_error(tmp_path, rehash):
    import zipfile

    _, _, contents = _contents()
    folder = write_checkpoint(tmp_path / "ck", **contents)
    with zipfile.ZipFile(folder / "weights.npz", "w") as z:  # a header cut inside its dict
        z.writestr("W.npy", b"\x93NUMPY\x01\x00\x01\x00{")
    rehash(folder)
    with pytest.raises(CheckpointError, match=r"weights\.npz cannot be read as arrays"):
        read_checkpoint(folder)


def test_compressed_arrays_in_a_copied_folder_are_refused_too(tmp_path, rehash):
    _, _, contents = _contents()
    src = tmp_path / "extractor"
    src.mkdir()
    np.savez(src / "arrays.npz", filters=np.ones(3))
    folder = write_checkpoint(tmp_path / "ck", dirs={"extractor": src}, **contents)
    read_checkpoint(folder)
    np.savez_compressed(folder / "extractor" / "arrays.npz", filters=np.zeros(10**6))
    rehash(folder)
    with pytest.raises(CheckpointError, match=r"extractor/arrays\.npz: member filters\.npy is compressed"):
        read_checkpoint(folder)
