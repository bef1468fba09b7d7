"""Hostile input through the `rnncap` command: one line naming the file, field or flag; exit 1.

Each case here once ended in a traceback or, worse, in a silent wrong result (issue 16).
"""

import json
import shutil

import numpy as np
import pytest

from rnncap.cli import main


@pytest.fixture(scope="module")
def run(tiny_shapes, tiny_train_flags, tmp_path_factory):
    out = tmp_path_factory.mktemp("hostile") / "run"
    assert main(["train", "--data", str(tiny_shapes), "--format", "karpathy", "--epochs", "1",
                 "--out", str(out), *tiny_train_flags]) == 0
    return out


def _error(capsys, command):
    """The CLI's stderr for a failing command: exactly one line starting 'rnncap CMD: error:'."""
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"rnncap {command}: error: "), err
    return lines[0]


@pytest.mark.parametrize("flag, field", [("--lr-decay", "train.lr_decay"), ("--grad-clip", "train.grad_clip"),
                                         ("--lr", "train.learning_rate")])
def test_infinite_rates_are_refused_before_training(tiny_shapes, tmp_path, capsys, flag, field):
    assert main(["train", "--data", str(tiny_shapes), "--out", str(tmp_path / "r"), flag, "inf"]) == 1
    line = _error(capsys, "train")
    assert field in line and "must be > 0 and finite" in line
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("flag, value, says", [
    ("--hidden-dim", "200000", "model.hidden_dim 200000"),
    ("--wordvec-dim", "1000000000", "model.wordvec_dim 1000000000"),
    ("--batch-size", "1000000000", "train.batch_size 1000000000"),
    ("--max-length", "1000000000", "max_length 1000000000"),
])
def test_sizes_beyond_memory_are_refused_before_allocating(tiny_shapes, tiny_train_flags, tmp_path,
                                                          capsys, flag, value, says):
    flags = [f for f in tiny_train_flags]
    if flag in flags:
        i = flags.index(flag)
        del flags[i:i + 2]
    assert main(["train", "--data", str(tiny_shapes), "--format", "karpathy", "--out",
                 str(tmp_path / "r"), *flags, flag, value]) == 1
    line = _error(capsys, "train")
    assert says in line and "would need at least" in line and "this machine has" in line


def _as_shapes_checkpoint(run, tmp_path, rehash, data_path):
    """A copy of `run` whose checkpoint says it was trained on the built-in shapes data."""
    copy = shutil.copytree(run, tmp_path / "shapes-run")
    from rnncap.checkpoint import resolve

    folder = resolve(copy)
    config = json.loads((folder / "config.json").read_text())
    config["data"].update(format="shapes", path=str(data_path))
    (folder / "config.json").write_text(json.dumps(config))
    rehash(folder)
    return copy


def test_evaluate_never_generates_data_at_a_mistyped_path(run, tmp_path, rehash, capsys):
    typo = tmp_path / "typo"
    shapes_run = _as_shapes_checkpoint(run, tmp_path, rehash, tmp_path / "gone")
    assert main(["evaluate", str(shapes_run), "--data", str(typo), "--no-meteor"]) == 1
    assert str(typo) in _error(capsys, "evaluate")
    assert main(["evaluate", str(shapes_run), "--no-meteor"]) == 1  # the checkpoint's path is gone
    assert "gone" in _error(capsys, "evaluate")
    typo.mkdir()  # an existing folder without the dataset: still nothing generated
    assert main(["evaluate", str(shapes_run), "--data", str(typo), "--no-meteor"]) == 1
    assert "no shapes dataset" in _error(capsys, "evaluate")
    assert not (tmp_path / "gone").exists() and list(typo.iterdir()) == []


def test_evaluate_outside_a_run_folder_writes_nowhere_unasked(run, tmp_path, capsys):
    from rnncap.checkpoint import resolve

    lone = shutil.copytree(resolve(run), tmp_path / "a" / "b" / "ckpt")
    assert main(["evaluate", str(lone), "--no-meteor", "--limit", "2"]) == 1
    assert "--out" in _error(capsys, "evaluate")
    assert sorted(p.name for p in tmp_path.rglob("*.json") if p.parent.name != "ckpt"
                  and "extractor" not in p.parts) == []


@pytest.mark.parametrize("content, says", [
    (b"", "not a .npy array file"),
    (lambda p: np.save(p, np.float32(3.0)), "2-D"),
    (lambda p: np.save(p, np.ones((2, 3, 4), np.float32)), "one feature vector per image, shape (I, D)"),
    (lambda p: np.save(p, np.ones((2, 0), np.float32)), "D >= 1"),
    (lambda p: np.save(p, np.ones((2, 512), np.complex64)), "real numbers"),
    (lambda p: np.save(p, np.array([["a"] * 512])), "real numbers"),
    (lambda p: np.save(p, np.ones((2, 7), np.float32)), "needs features of shape (I, 512); got (2, 7)"),
    (lambda p: np.save(p, np.full((2, 512), np.nan, np.float32)), "row 0 holds NaN"),
    (lambda p: np.save(p, np.array([{"a": 1}], dtype=object)), "not a .npy array file"),
])
def test_caption_refuses_bad_features_files(run, tmp_path, capsys, content, says):
    path = tmp_path / "f.npy"
    if callable(content):
        content(path)
    else:
        path.write_bytes(content)
    assert main(["caption", str(run), "--features", str(path)]) == 1
    line = _error(capsys, "caption")
    assert str(path) in line and says in line


@pytest.mark.parametrize("field, value, says", [
    ("split", ["train"], "split must be a non-empty string"),
    ("filename", 3, "filename must be a non-empty string"),
    ("filepath", None, "filepath must be a string"),
    ("sentences", [{"tokens": [1, 2]}], "sentences[0] has neither"),
    ("objects", "oops", "objects must be a list"),
])
def test_training_refuses_dataset_json_fields_of_the_wrong_type(tiny_shapes, tmp_path, capsys,
                                                                field, value, says):
    data = tmp_path / "data"
    data.mkdir()
    d = json.loads((tiny_shapes / "dataset.json").read_text())
    d["images"][4][field] = value
    (data / "dataset.json").write_text(json.dumps(d))
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "r"), "--no-progress"]) == 1
    line = _error(capsys, "train")
    assert "dataset.json: images[4]" in line and says in line


def test_same_size_edit_of_a_checkpoints_config_is_refused_by_name(run, tmp_path, capsys):
    from rnncap.checkpoint import resolve

    copy = shutil.copytree(run, tmp_path / "run")
    config = resolve(copy) / "config.json"
    text = config.read_text()
    edited = text.replace('"seed": 0', '"seed": 7')
    assert edited != text and len(edited) == len(text)
    config.write_text(edited)
    assert main(["caption", str(copy), "--features", "x.npy"]) == 1
    line = _error(capsys, "caption")
    assert "config.json is corrupt: its SHA-256 does not match" in line


def test_resume_after_the_latest_pointer_is_deleted(run, tmp_path, capsys):
    copy = shutil.copytree(run, tmp_path / "run")
    (copy / "checkpoints" / "latest").unlink()
    assert main(["train", "--out", str(copy), "--resume", "--epochs", "2", "--no-progress"]) == 0
    assert "latest is missing; using ckpt-" in capsys.readouterr().out
    assert (copy / "checkpoints" / "latest").read_text().startswith("ckpt-")


@pytest.mark.parametrize("content, says", [
    (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
    ('{"images": [{"split": "train", "filename": "caf\xe9.png"}]}'.encode("latin-1"), "not UTF-8 text"),
])
def test_dataset_json_that_json_cannot_read_is_named(tmp_path, capsys, content, says):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dataset.json").write_bytes(content)
    assert main(["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "r"), "--no-progress"]) == 1
    line = _error(capsys, "train")
    assert "dataset.json" in line and says in line


def test_config_file_nested_too_deeply_is_named(tmp_path, capsys):
    (tmp_path / "c.json").write_text("[" * 100000 + "]" * 100000)
    assert main(["train", "--config", str(tmp_path / "c.json"), "--data", str(tmp_path),
                 "--out", str(tmp_path / "r")]) == 1
    assert "c.json is JSON nested too deeply" in _error(capsys, "train")


def test_empty_data_path_is_not_the_current_folder(tmp_path, capsys):
    (tmp_path / "c.json").write_text('{"data": {"path": ""}}')
    assert main(["train", "--config", str(tmp_path / "c.json"), "--out", str(tmp_path / "r")]) == 1
    assert "data.path must name a folder" in _error(capsys, "train")


@pytest.mark.parametrize("spec", [[1, 2], {"name": ["randconv"]}, {"name": "randconv", "options": "x"},
                                  {"name": "randconv", "options": {"num_filters": 10**12}},
                                  {"name": "randconv", "options": {}, "scale": "big"}])
def test_edited_extractor_spec_in_a_checkpoint_is_refused(run, tiny_shapes, tmp_path, rehash, capsys, spec):
    from rnncap.checkpoint import resolve

    copy = shutil.copytree(run, tmp_path / "run")
    folder = resolve(copy)
    (folder / "extractor" / "extractor.json").write_text(json.dumps(spec))
    rehash(folder)
    image = sorted((tiny_shapes / "images" / "test").glob("*.png"))[0]
    assert main(["caption", str(copy), str(image)]) == 1
    assert "extractor" in _error(capsys, "caption")


def test_negative_seed_is_named_before_any_work(tiny_shapes, tmp_path, capsys):
    assert main(["train", "--data", str(tiny_shapes), "--out", str(tmp_path / "r"), "--seed", "-1"]) == 1
    assert "train.seed must be >= 0, got -1" in _error(capsys, "train")
    assert not (tmp_path / "r").exists()


def test_demo_epochs_zero_is_an_error_not_the_default(tmp_path, capsys):
    previous = tmp_path / "demo"
    previous.mkdir()
    (previous / ".rnncap-demo").write_text("a previous demo")
    assert main(["demo", "--epochs", "0", "--out", str(previous), "--cache",
                 str(tmp_path / "cache"), "--no-progress"]) == 1
    assert "train.num_epochs must be > 0 and finite, got 0" in _error(capsys, "demo")
    assert not (tmp_path / "cache").exists()
    assert (previous / ".rnncap-demo").read_text() == "a previous demo"  # not thrown away first


def _png_claiming(path, width, height):
    """A 1x1 PNG whose header claims width x height: a decompression bomb's first bytes."""
    import io
    import struct
    import zlib

    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    raw = bytearray(buf.getvalue())
    ihdr = raw[12:29]  # b"IHDR" + 13 bytes of header
    ihdr[4:12] = struct.pack(">II", width, height)
    raw[12:29] = ihdr
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    path.write_bytes(bytes(raw))
    return path


def _damaged_images(tiny_shapes, folder):
    """name -> (path, what the message must say): a bomb, a flipped byte, a truncated file."""
    good = sorted((tiny_shapes / "images" / "test").glob("*.png"))[0].read_bytes()
    folder.mkdir(exist_ok=True)
    flipped = bytearray(good)
    idat = good.index(b"IDAT") + 20
    flipped[idat] ^= 0xFF
    (folder / "flipped.png").write_bytes(bytes(flipped))
    (folder / "truncated.png").write_bytes(good[:len(good) // 2])
    (folder / "empty.png").write_bytes(b"")
    return {"bomb": (_png_claiming(folder / "bomb.png", 30000, 30000), "decompression bomb"),
            "flipped": (folder / "flipped.png", "corrupt"),
            "truncated": (folder / "truncated.png", "corrupt or truncated"),
            "empty": (folder / "empty.png", "empty file")}


@pytest.mark.parametrize("kind", ["bomb", "flipped", "truncated", "empty"])
def test_caption_refuses_damaged_images_in_one_line(run, tiny_shapes, tmp_path, capsys, kind):
    path, says = _damaged_images(tiny_shapes, tmp_path)[kind]
    assert main(["caption", str(run), str(path)]) == 1
    line = _error(capsys, "caption")
    assert str(path) in line and says in line


def test_training_refuses_a_damaged_image_in_one_line(tiny_shapes, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(tiny_shapes, data, ignore=shutil.ignore_patterns("features-*"))
    victim = sorted((data / "images" / "train").glob("*.png"))[3]
    damaged = _damaged_images(tiny_shapes, tmp_path / "bad")
    shutil.copyfile(damaged["flipped"][0], victim)
    assert main(["train", "--data", str(data), "--format", "karpathy", "--out", str(tmp_path / "r"),
                 "--no-progress", "--epochs", "1"]) == 1
    line = _error(capsys, "train")
    assert str(victim) in line and "corrupt" in line
    _png_claiming(victim, 30000, 30000)
    assert main(["train", "--data", str(data), "--format", "karpathy", "--out", str(tmp_path / "r2"),
                 "--no-progress", "--epochs", "1"]) == 1
    line = _error(capsys, "train")
    assert str(victim) in line and "decompression bomb" in line


@pytest.mark.parametrize("option, says", [
    ("stride", "stride must be an integer >= 1, got 0"), ("grid", "grid must be an integer >= 1, got 0"),
    ("pca_dim", "pca_dim must be an integer >= 1, got 0"),
    ("filter_size", "'filters' has shape (75, 64), the options in extractor.json say (0, 64)"),
    ("num_filters", "'filters' has shape (75, 64), the options in extractor.json say (75, 0)")])
def test_extractor_option_of_zero_is_refused_not_divided_by(run, tiny_shapes, tmp_path, rehash, capsys,
                                                            option, says):
    """Found by the checkpoint property test: a stride of 0 raised ZeroDivisionError."""
    from rnncap.checkpoint import resolve

    copy = shutil.copytree(run, tmp_path / "run")
    folder = resolve(copy)
    spec_path = folder / "extractor" / "extractor.json"
    spec = json.loads(spec_path.read_text())
    spec["options"][option] = 0
    spec_path.write_text(json.dumps(spec))
    rehash(folder)
    image = sorted((tiny_shapes / "images" / "test").glob("*.png"))[0]
    assert main(["caption", str(copy), str(image)]) == 1
    assert says in _error(capsys, "caption")


@pytest.mark.parametrize("kind, says", [
    ("truncated", "arrays.npz"), ("pickled", "arrays.npz: cannot be read (ValueError: Object arrays"),
    ("no mean", "arrays.npz: missing array(s) mean"), ("bad json", "extractor.json: not valid JSON"),
    ("missing", "arrays.npz"), ("not utf-8", "extractor.json: not valid JSON (UnicodeDecodeError")])
def test_damaged_extractor_in_a_checkpoint_is_named_in_one_line(run, tiny_shapes, tmp_path, rehash,
                                                                capsys, kind, says):
    """`caption` loads the checkpoint's feature extractor: its damage is named in one line, never
    a traceback, whether the manifest was re-signed after the damage (then the extractor's loader
    finds it) or not (then the checkpoint's hashes do)."""
    from rnncap.checkpoint import resolve

    copy = shutil.copytree(run, tmp_path / "run")
    folder = resolve(copy)
    npz, spec = folder / "extractor" / "arrays.npz", folder / "extractor" / "extractor.json"
    if kind == "truncated":
        npz.write_bytes(npz.read_bytes()[:300])
    elif kind == "pickled":
        np.savez(npz, **{**dict(np.load(npz)), "filters": np.array([None], dtype=object)})
    elif kind == "no mean":
        np.savez(npz, **{k: v for k, v in np.load(npz).items() if k != "mean"})
    elif kind == "bad json":
        spec.write_text('{"name": "randconv", "options": {')
    elif kind == "not utf-8":
        spec.write_bytes(b'{"name": "\xff"}')
    else:
        npz.unlink()
        manifest = json.loads((folder / "manifest.json").read_text())
        del manifest["files"]["extractor/arrays.npz"]
        (folder / "manifest.json").write_text(json.dumps(manifest))
    damaged = spec if "json" in kind or "utf" in kind else npz
    image = sorted((tiny_shapes / "images" / "test").glob("*.png"))[0]
    assert main(["caption", str(copy), str(image)]) == 1
    assert str(damaged) in _error(capsys, "caption")
    rehash(folder)
    assert main(["caption", str(copy), str(image)]) == 1
    line = _error(capsys, "caption")
    assert str(folder / "extractor") in line and says in line, line
