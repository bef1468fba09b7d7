import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from rnncap.data.shapes import (COLOURS, make_captions, prepare_shapes, render,
                                sample_scene)
from rnncap.data.truth import check_caption

SMALL = dict(num_train=12, num_val=4, num_test=4, progress=False)


def digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_same_seed_gives_byte_identical_files(tmp_path):
    a = prepare_shapes(tmp_path / "a", seed=3, **SMALL)
    b = prepare_shapes(tmp_path / "b", seed=3, **SMALL)
    assert a.name == b.name
    assert digest(a) == digest(b)
    c = prepare_shapes(tmp_path / "a", seed=4, **SMALL)
    assert c != a and digest(c) != digest(a)


def test_parameters_key_the_folder_and_cache_is_reused(tmp_path):
    a = prepare_shapes(tmp_path, seed=0, **SMALL)
    mtime = (a / "dataset.json").stat().st_mtime_ns
    assert prepare_shapes(tmp_path, seed=0, **SMALL) == a
    assert (a / "dataset.json").stat().st_mtime_ns == mtime  # not regenerated
    b = prepare_shapes(tmp_path, seed=0, image_size=48, **SMALL)
    assert b != a
    # no temporary folder is left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([a.name, b.name])


def test_generation_is_announced_and_a_cached_dataset_is_not(tmp_path, capsys):
    a = prepare_shapes(tmp_path, seed=0, **SMALL)
    assert capsys.readouterr().err == f"shapes: generating 20 images into {a} (made once, then cached)\n"
    prepare_shapes(tmp_path, seed=0, **SMALL)
    assert capsys.readouterr().err == ""


def test_partial_dataset_is_never_taken_as_complete(tmp_path):
    a = prepare_shapes(tmp_path / "x", seed=0, **SMALL)
    # simulate a crash: a folder with the final name but no dataset.json
    target = tmp_path / "y" / a.name
    (target / "images").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="no dataset.json"):
        prepare_shapes(tmp_path / "y", seed=0, **SMALL)
    assert not (target / "dataset.json").exists()


def test_dataset_json_is_karpathy_format_with_truth(tmp_path):
    folder = prepare_shapes(tmp_path, seed=1, min_objects=1, max_objects=3, **SMALL)
    d = json.loads((folder / "dataset.json").read_text())
    imgs = d["images"]
    assert [im["split"] for im in imgs].count("train") == 12
    assert [im["split"] for im in imgs].count("test") == 4
    sentids = [s["sentid"] for im in imgs for s in im["sentences"]]
    assert sentids == list(range(len(sentids)))
    for im in imgs:
        assert 1 <= len(im["objects"]) <= 3
        assert len(im["sentences"]) >= 5 and len({s["raw"] for s in im["sentences"]}) >= 5
        for s in im["sentences"]:
            assert s["imgid"] == im["imgid"] and s["tokens"] == s["raw"].replace(",", "").split()
            ok, why = check_caption(s["raw"], im["objects"])
            assert ok, (s["raw"], im["objects"], why)
        pixels = np.asarray(Image.open(folder / im["filepath"] / im["filename"]))
        assert pixels.shape == (64, 64, 3) and pixels.dtype == np.uint8
        for o in im["objects"]:  # the pixel at each object's centre has its colour
            got = pixels[int(o["y"]), int(o["x"])]
            np.testing.assert_array_equal(got, COLOURS[o["colour"]])


def test_empty_cells_show_background_and_objects_stay_inside():
    rng = np.random.default_rng(0)
    for _ in range(50):
        bg, objects = sample_scene(rng, 64, 1, 4)
        px = render(objects, bg, 64)
        used = {(o["row"], o["col"]) for o in objects}
        assert len(used) == len(objects)  # one object per cell
        for r in range(3):
            for c in range(3):
                if (r, c) not in used:
                    block = px[r * 21 + 3:(r + 1) * 21 - 3, c * 21 + 3:(c + 1) * 21 - 3]
                    assert (block == bg).all()


def test_two_object_captions_fit_cs231n_length():
    rng = np.random.default_rng(7)
    longest = 0
    for _ in range(3000):
        _, objects = sample_scene(rng, 64, 1, 2)
        longest = max(longest, max(len(c.replace(",", "").split())
                                   for c in make_captions(objects, rng)))
    assert longest <= 15


def test_captions_vary_and_use_relations_and_counts():
    rng = np.random.default_rng(5)
    text = []
    for _ in range(200):
        _, objects = sample_scene(rng, 64, 1, 2)
        text += make_captions(objects, rng)
    joined = " | ".join(text)
    for phrase in ("to the left of", "above", "below", "to the right of", "there are two",
                   "big", "little", "violet", "picture", "that is", "in the center"):
        assert phrase in joined, phrase
    with pytest.raises(ValueError, match=">= 5"):
        make_captions(objects, rng, n=3)


def test_bad_parameters_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="min_objects"):
        prepare_shapes(tmp_path, min_objects=3, max_objects=2, progress=False)
    with pytest.raises(ValueError, match="num_val"):
        prepare_shapes(tmp_path, num_val=-1, progress=False)


def test_a_killed_generation_leaves_nothing_behind_for_long(tmp_path):
    """A kill during generation leaves a hidden temporary folder; the next run removes it."""
    from rnncap.data.shapes import _params, dataset_dirname

    name = dataset_dirname(_params(0, 4, 2, 2, 1, 2, 64, 5))
    dead = tmp_path / f".{name}.tmp-99999999-abcdef"  # a writer that no longer runs
    (dead / "images" / "train").mkdir(parents=True)
    (dead / "images" / "train" / "train_000000.png").write_bytes(b"\x89PNG half")
    folder = prepare_shapes(tmp_path, seed=0, num_train=4, num_val=2, num_test=2, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name]


def test_evaluation_style_lookup_never_generates(tmp_path):
    with pytest.raises(FileNotFoundError, match="no shapes dataset"):
        prepare_shapes(tmp_path, seed=0, num_train=4, num_val=2, num_test=2, progress=False,
                       generate=False)
    assert list(tmp_path.iterdir()) == []


def test_training_only_scene_options_change_training_pictures_only(tmp_path):
    """Two-object and same-colour weights shape the training split; val and test stay the
    uniform draw, byte for byte, so a model trained either way is measured on one test set."""
    opts = dict(num_train=300, num_val=40, num_test=40, progress=False)
    plain = prepare_shapes(tmp_path, **opts)
    hard = prepare_shapes(tmp_path, train_object_weights=(1, 3), train_same_colour=0.6, **opts)
    assert hard != plain
    params = json.loads((hard / "params.json").read_text())
    assert params["train_object_weights"] == [1.0, 3.0] and params["train_same_colour"] == 0.6
    # a dataset made without them keeps the parameters it always had
    assert "train_object_weights" not in json.loads((plain / "params.json").read_text())
    images = {f: json.loads((f / "dataset.json").read_text())["images"] for f in (plain, hard)}
    for a, b in zip(images[plain], images[hard]):
        if a["split"] != "train":
            assert a["objects"] == b["objects"] and a["sentences"] == b["sentences"]
            name = f"images/{a['split']}/{a['filename']}"
            assert (plain / name).read_bytes() == (hard / name).read_bytes()
    train = [im["objects"] for im in images[hard] if im["split"] == "train"]
    two = [objs for objs in train if len(objs) == 2]
    # 300 draws: share of two objects 0.75 (sd 0.025), same colour 0.6 + 0.4/6 = 0.67 (sd 0.03)
    assert 0.65 < len(two) / len(train) < 0.85
    assert 0.55 < np.mean([a["colour"] == b["colour"] for a, b in two]) < 0.8
    plain_train = [im["objects"] for im in images[plain] if im["split"] == "train"]
    assert 0.38 < np.mean([len(o) == 2 for o in plain_train]) < 0.62
    # every caption of a same-colour scene is still true of it
    for im in images[hard]:
        for s in im["sentences"]:
            assert check_caption(s["raw"], im["objects"])[0], s["raw"]


@pytest.mark.parametrize("opts, match", [
    ({"train_object_weights": (1, 2, 3)}, "needs 2 non-negative weights"),
    ({"train_object_weights": (0, 0)}, "not all zero"),
    ({"train_object_weights": (1, -1)}, "non-negative"),
    ({"train_same_colour": 1.5}, r"probability in \[0, 1\]"),
])
def test_bad_training_scene_options_are_rejected(tmp_path, opts, match):
    with pytest.raises(ValueError, match=match):
        prepare_shapes(tmp_path, progress=False, **opts)
    assert not any(tmp_path.iterdir())
