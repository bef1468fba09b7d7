"""`rnncap features` (rnncap.data.featurize + featfile): layouts, resume after a kill, bad images."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from rnncap.data import featfile
from rnncap.data.featurize import FeaturesOptions, list_images, make_features

OPTS = {"image_size": 32, "num_filters": 8, "pca_dim": 16}


def opts(**kw):
    base = dict(extractor="randconv", extractor_options=OPTS, chunk_size=16, progress=False, fit_images=40)
    return FeaturesOptions(**{**base, **kw})


@pytest.fixture
def shapes_copy(tiny_shapes, tmp_path):
    """A private copy of the tiny shapes dataset (the session fixture must stay without features)."""
    return shutil.copytree(tiny_shapes, tmp_path / "shapes")


@pytest.fixture
def one_blas_thread():
    """The killed child computes with one BLAS thread; the resumed and clean runs of this
    process must too, or their rows round differently (BLAS thread counts change the sums)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def direct_features(h5_path, files, root):
    """The stored extractor applied to the image files directly (a second path to the same rows)."""
    from rnncap.data.features import _REGISTRY, extract_files

    spec, arrays = featfile.read_extractor(h5_path)
    ex = _REGISTRY[spec["name"]].from_saved(spec, arrays)
    return ex, extract_files(ex, [os.path.join(root, f) for f in files])


def read(path, key):
    import h5py

    with h5py.File(path, "r") as f:
        return f[key][()]


def test_karpathy_features_are_the_extractors_rows_in_dataset_order(shapes_copy):
    out = make_features(shapes_copy, options=opts(dtype="float32"))
    assert out["out"] == str(shapes_copy / "features.h5") and out["computed"] == out["images"] == 100
    files = read(out["out"], "files").astype(str)
    listed = json.loads((shapes_copy / "dataset.json").read_text())["images"]
    assert list(files) == [os.path.join(im.get("filepath", ""), im["filename"]) for im in listed]
    ex, expect = direct_features(out["out"], files, shapes_copy)
    got = read(out["out"], "features")
    assert got.dtype == np.float32 and got.shape == (100, 16)
    np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-5)
    assert (read(out["out"], "status") == featfile.DONE).all()
    attrs = featfile.read_attrs(out["out"])
    assert attrs["backbone"] == "randconv" and attrs["complete"]
    assert attrs["preprocessing"]["image_size"] == 32 and len(attrs["weights_sha256"]) == 64


def test_loader_reads_the_file_and_keeps_its_extractor(shapes_copy):
    from rnncap.data.karpathy import load_karpathy

    out = make_features(shapes_copy, options=opts(dtype="float16"))["out"]
    assert read(out, "features").dtype == np.float16
    data = load_karpathy(shapes_copy)  # finds features.h5 beside dataset.json
    assert data["train_features"].dtype == np.float32 and data["train_features"].shape == (60, 16)
    files = read(out, "files").astype(str)
    _, expect = direct_features(out, files, shapes_copy)
    rows = [list(files).index(os.path.relpath(f, shapes_copy)) for f in data["test_image_files"]]
    # float16 storage: about 3 significant digits
    np.testing.assert_allclose(data["test_features"], expect[rows], rtol=2e-3, atol=2e-3)
    spec, arrays = data["features_file"]["extractor"]
    assert spec["name"] == "randconv" and set(arrays) == {"filters", "mean", "components", "grid_mean", "grid_scale"}


def test_grid_features_are_the_grid_the_extractor_gives_an_attention_model(shapes_copy):
    """The grid stored is the one `caption` computes from the image file for an attention model
    (extract_files(grid=True)): standardised cells and their position features, 3x3 in reading
    order; not the raw cell responses, which a model trained on the file would never see again."""
    out = make_features(shapes_copy, options=opts(grid=True, pooled=False, dtype="float32"))["out"]
    grid = read(out, "grid")
    files = read(out, "files").astype(str)
    ex, _ = direct_features(out, files, shapes_copy)
    from rnncap.data.features import extract_files

    L, D = ex.grid_shape
    assert (L, D) == (9, 4 * 8 + 3 + 3 + 9) and grid.shape == (100, 3, 3, D)
    np.testing.assert_allclose(grid[3].reshape(L, D), extract_files(ex, [shapes_copy / files[3]], grid=True)[0],
                               rtol=1e-5, atol=1e-6)
    import h5py

    with h5py.File(out) as f:
        assert "features" not in f


def test_rerun_of_a_complete_file_does_nothing_and_other_settings_are_refused(shapes_copy):
    first = make_features(shapes_copy, options=opts())
    again = make_features(shapes_copy, options=opts())
    assert again["up_to_date"] and again["computed"] == 0
    with pytest.raises(FileExistsError, match="features.h5 exists and holds other features"):
        make_features(shapes_copy, options=opts(dtype="float32"))
    assert os.path.isfile(first["out"])


KILL = textwrap.dedent("""
    import os, sys
    from rnncap.data.featurize import FeaturesOptions, make_features
    def die(done):
        if done >= 32:
            os._exit(9)  # like a kill: no cleanup, no close of the HDF5 file
    make_features(sys.argv[1], options=FeaturesOptions(extractor="randconv",
        extractor_options={"image_size": 32, "num_filters": 8, "pca_dim": 16}, chunk_size=16,
        progress=False, fit_images=40, dtype="float32"), on_chunk=die)
""")


def test_a_killed_run_continues_where_it_stopped(shapes_copy, tmp_path, one_blas_thread):
    proc = subprocess.run([sys.executable, "-c", KILL, str(shapes_copy)], capture_output=True,
                          text=True, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert proc.returncode == 9, proc.stderr
    partial = shapes_copy / "features.h5.partial"
    assert partial.is_file() and not (shapes_copy / "features.h5").exists()
    assert (featfile.read_status(partial) == featfile.DONE).sum() == 32
    resumed = make_features(shapes_copy, options=opts(dtype="float32"))
    assert resumed["computed"] == 100 - 32 and not partial.exists()
    clean = shutil.copytree(shapes_copy, tmp_path / "clean")
    os.remove(clean / "features.h5")
    make_features(clean, options=opts(dtype="float32"))
    np.testing.assert_array_equal(read(resumed["out"], "features"), read(clean / "features.h5", "features"))


REPORT = KILL.replace("on_chunk=die", "on_chunk=lambda done: print(done, flush=True)").replace(
    "chunk_size=16", "chunk_size=4")


def test_sigkill_at_any_moment_loses_no_written_row(shapes_copy, tmp_path, one_blas_thread):
    """SIGKILL lands wherever the child is (decoding, computing or writing a chunk)."""
    import signal

    child = subprocess.Popen([sys.executable, "-c", REPORT, str(shapes_copy)], stdout=subprocess.PIPE,
                             text=True, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    for _ in range(3):  # three chunks written, the fourth under way
        child.stdout.readline()
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    status = featfile.read_status(shapes_copy / "features.h5.partial")
    assert 12 <= (status == featfile.DONE).sum() < 100
    resumed = make_features(shapes_copy, options=opts(dtype="float32", chunk_size=4))
    assert resumed["computed"] == 100 - (status == featfile.DONE).sum()
    clean = shutil.copytree(shapes_copy, tmp_path / "clean")
    os.remove(clean / "features.h5")
    make_features(clean, options=opts(dtype="float32", chunk_size=4))
    np.testing.assert_array_equal(read(resumed["out"], "features"), read(clean / "features.h5", "features"))


def test_a_partial_file_with_other_settings_is_named(shapes_copy):
    subprocess.run([sys.executable, "-c", KILL, str(shapes_copy)], capture_output=True,
                   env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    with pytest.raises(ValueError, match="features.h5.partial is an unfinished features file made "
                                         "with other settings"):
        make_features(shapes_copy, options=opts(dtype="float16"))


def stopped_grid_run(dataset, out):
    """A `--grid` run stopped after 32 of 100 rows: leaves ``out``.partial."""
    def stop(done):
        if done >= 32:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make_features(dataset, out, options=opts(grid=True), on_chunk=stop)
    return f"{out}.partial"


@pytest.fixture(scope="module")
def grid_partial(tiny_shapes, tmp_path_factory):
    """A partial `--grid` file of the tiny dataset (randconv, 8 filters: pooled (100, 16), grid
    (100, 3, 3, 47): 4*8 cell responses and 3 + 3 + 9 one-hot position features)."""
    return stopped_grid_run(tiny_shapes, tmp_path_factory.mktemp("partial") / "f.h5")


def _replace(key, shape, dtype="float16"):
    def edit(f):
        del f[key]
        f.create_dataset(key, shape, dtype=dtype)
    return edit


def _drop(key):
    def edit(f):
        del f[key]
    return edit


@pytest.mark.parametrize("key, edit, found, expected", [
    # the layout rnncap once wrote for randconv's grid: its raw cell responses, 4*8 numbers a cell
    ("grid", _replace("grid", (100, 3, 3, 32)), "float16 (100, 3, 3, 32)", "float16 (100, 3, 3, 47)"),
    ("features", _replace("features", (100, 12)), "float16 (100, 12)", "float16 (100, 16)"),
    ("features", _replace("features", (100, 16), "float32"), "float32 (100, 16)", "float16 (100, 16)"),
    ("status", _replace("status", (99,), "uint8"), "uint8 (99,)", "uint8 (100,)"),
    ("files", _drop("files"), "missing", "str (100,)"),
    ("image_ids", lambda f: f.create_dataset("image_ids", data=np.arange(100)), "int64 (100,)", "none"),
    ("grid", lambda f: (f.__delitem__("grid"), f.create_group("grid")), "a group",
     "float16 (100, 3, 3, 47)"),
], ids=["grid-width", "features-width", "features-dtype", "status-rows", "no-files", "extra-ids",
        "grid-group"])
def test_a_partial_file_of_another_layout_is_named_with_the_dataset_and_shapes(
        grid_partial, tiny_shapes, tmp_path, key, edit, found, expected):
    """Same flags, other datasets (a file from another version of rnncap, or edited): refused in
    one line naming the file, the dataset, what it holds and what this run writes, before any row
    is computed, instead of h5py's broadcast error at the first chunk."""
    import h5py

    partial = tmp_path / "f.h5.partial"
    shutil.copy(grid_partial, partial)
    with h5py.File(partial, "r+") as f:
        edit(f)
    before = partial.read_bytes()
    with pytest.raises(ValueError) as err:
        make_features(tiny_shapes, tmp_path / "f.h5", options=opts(grid=True))
    assert str(err.value) == (f"{partial} is an unfinished features file made with other settings: "
                              f"its '{key}' is {found}, expected {expected}; remove it to start over")
    assert partial.read_bytes() == before  # left as it was


def test_a_complete_file_of_another_layout_is_not_reported_complete(grid_partial, tiny_shapes,
                                                                   tmp_path):
    import h5py

    shutil.copy(grid_partial, tmp_path / "f.h5")
    with h5py.File(tmp_path / "f.h5", "r+") as f:  # complete, its grid 32 numbers a cell
        f["status"][:] = featfile.DONE
        f.attrs["complete"] = True
        del f["grid"]
        f.create_dataset("grid", (100, 3, 3, 32), dtype="float16")
    with pytest.raises(FileExistsError) as err:
        make_features(tiny_shapes, tmp_path / "f.h5", options=opts(grid=True))
    assert str(err.value) == (f"{tmp_path / 'f.h5'} exists and holds features made with other "
                              f"settings: its 'grid' is float16 (100, 3, 3, 32), expected float16 "
                              f"(100, 3, 3, 47); remove it or choose another --out")


def test_the_layout_check_agrees_with_the_files_create_makes(tmp_path):
    for kw in ({"pooled_dim": 5}, {"grid_shape": (2, 2, 3), "dtype": "float32"},
               {"pooled_dim": 4, "grid_shape": (7, 7, 2), "image_ids": [10, 11, 12]}):
        path = featfile.create(tmp_path / "f.h5", files=["a", "b", "c"], job={}, spec={"name": "x"},
                               arrays={}, **kw)
        expect = featfile.layout(3, **{**kw, "image_ids": "image_ids" in kw})
        assert featfile.mismatch(path, expect) is None
        assert featfile.mismatch(path, featfile.layout(4, **{**kw, "image_ids": False})) is not None


@pytest.mark.parametrize("edit, says", [
    (lambda f: f.attrs.__setitem__("job", "{bad"), "attribute 'job' is not valid JSON"),
    (lambda f: f["extractor"].attrs.__setitem__("spec", "{bad"), "attribute 'spec' is not valid JSON"),
    (lambda f: f["extractor"].attrs.__setitem__("spec", "[1]"), "attribute 'spec' must be a JSON object"),
    (lambda f: f["extractor"].attrs.__delitem__("spec"), "'extractor' must be a group with a JSON attribute"),
    (lambda f: f["extractor"].create_group("mean"), "extractor: 'mean' must be an array"),
    (lambda f: f["extractor"].__setitem__("mean", np.array(["x"], "S")), "array 'mean' has dtype |S1"),
], ids=["job not JSON", "spec not JSON", "spec a list", "no spec", "array a group", "array of text"])
def test_edited_provenance_of_a_features_file_is_named(tmp_path, edit, says):
    """The extractor a features file keeps is read as carefully as a saved extractor folder."""
    import h5py

    path = featfile.create(tmp_path / "f.h5", files=["a"], job={"a": 1}, spec={"name": "x"},
                           arrays={"filters": np.ones((2, 2), np.float32)}, pooled_dim=2)
    with h5py.File(path, "r+") as f:
        edit(f)
    with pytest.raises(ValueError) as info:
        featfile.read_attrs(path)
        featfile.read_extractor(path)
    assert str(info.value).startswith(f"{path}: ") and says in str(info.value), str(info.value)


def test_a_chunk_of_the_wrong_width_is_refused_naming_the_file(tmp_path):
    path = featfile.create(tmp_path / "f.h5", files=["a", "b"], job={}, spec={"name": "x"},
                           arrays={}, pooled_dim=4)
    w = featfile.Writer(path)
    try:
        with pytest.raises(ValueError, match=r"f.h5: 'features' holds rows of shape \(4,\), got "
                                             r"rows of shape \(5,\) to write"):
            w.write([0, 1], pooled=np.zeros((2, 5), np.float32))
        with pytest.raises(ValueError, match=r"'grid' holds rows of shape None"):
            w.write([0, 1], grid=np.zeros((2, 1, 1, 4), np.float32))
        assert (w.pending() == [0, 1]).all()  # nothing marked done
    finally:
        w.close()


def test_a_finished_features_file_is_renamed_durably(tmp_path, recorded_syncs):
    """The .partial file's bytes reach the disk before it takes the final name, and the folder's
    entry after: a power loss leaves the .partial file or the whole final one, as atomic.py's
    writes do. Creating the .partial file is one atomic.write_with, whose leftovers are hidden and
    removed by the next create."""
    stale = tmp_path / ".f.h5.partial.tmp-99999999-abcdef"  # a killed create's (no such pid)
    stale.write_bytes(b"half")
    events = recorded_syncs
    partial = featfile.create(tmp_path / "f.h5.partial", files=["a", "b"], job={}, spec={"name": "x"},
                              arrays={}, pooled_dim=3)
    assert not stale.exists() and sorted(os.listdir(tmp_path)) == ["f.h5.partial"]
    assert events[-1] == ("fsync", str(tmp_path)) and events[-2][0] == "replace"
    assert events[-2][2] == partial and events[-3] == ("fsync", events[-2][1])  # the temporary
    del events[:]
    w = featfile.Writer(partial)
    w.write([0, 1], pooled=np.ones((2, 3), np.float32))
    w.finish(tmp_path / "f.h5")
    assert events == [("fsync", partial), ("replace", partial, str(tmp_path / "f.h5")),
                      ("fsync", str(tmp_path))]
    assert featfile.read_attrs(tmp_path / "f.h5")["complete"] and os.listdir(tmp_path) == ["f.h5"]


def test_a_partial_file_that_is_not_hdf5_is_named(tiny_shapes, tmp_path):
    (tmp_path / "f.h5.partial").write_text("not HDF5")
    with pytest.raises(ValueError, match=r"f.h5.partial exists and is not a readable HDF5 file "
                                         r"\(.*\); remove it to start over"):
        make_features(tiny_shapes, tmp_path / "f.h5", options=opts())


def test_two_worker_processes_write_the_same_rows(shapes_copy, tmp_path):
    one = make_features(shapes_copy, tmp_path / "one.h5", options=opts(dtype="float32"))
    two = make_features(shapes_copy, tmp_path / "two.h5", options=opts(dtype="float32", workers=2))
    assert two["computed"] == 100
    np.testing.assert_array_equal(read(one["out"], "features"), read(two["out"], "features"))


def break_images(folder, names):
    """Zero bytes for the first, text for the second."""
    (folder / names[0]).write_bytes(b"")
    (folder / names[1]).write_text("not an image")


def test_unreadable_images_fail_by_name_then_skip_bad_records_them(shapes_copy):
    listed = json.loads((shapes_copy / "dataset.json").read_text())["images"]
    train = [os.path.join(im.get("filepath", ""), im["filename"]) for im in listed
             if im["split"] == "train"]
    bad = train[5:7]
    break_images(shapes_copy, bad)
    with pytest.raises(ValueError) as err:
        make_features(shapes_copy, options=opts())
    msg = str(err.value)
    assert msg.startswith("2 unreadable image(s): ") and bad[0] in msg and bad[1] in msg
    assert "--skip-bad" in msg
    # the readable rows are kept; the unreadable ones stay pending and are retried
    status = featfile.read_status(shapes_copy / "features.h5.partial")
    assert (status == featfile.DONE).sum() == 98 and (status == featfile.PENDING).sum() == 2
    out = make_features(shapes_copy, options=opts(skip_bad=True))
    assert out["computed"] == 0 and sorted(out["skipped"]) == sorted(bad)
    assert sorted(featfile.read_attrs(out["out"])["skipped"]) == sorted(bad)
    from rnncap.data.karpathy import load_karpathy

    data = load_karpathy(shapes_copy)
    assert len(data["train_features"]) == 58
    assert not {str(shapes_copy / b) for b in bad} & set(data["train_image_files"])


def test_a_plain_folder_of_images_is_listed_recursively(tmp_path, tiny_shapes):
    src = sorted((tiny_shapes / "images" / "test").glob("*.png"))[:5]
    (tmp_path / "pics" / "sub").mkdir(parents=True)
    for i, p in enumerate(src):
        shutil.copy(p, tmp_path / "pics" / ("sub" if i % 2 else "") / p.name)
    (tmp_path / "pics" / "notes.txt").write_text("not listed")
    listed = list_images(tmp_path / "pics")
    assert listed.layout == "folder" and len(listed.files) == 5
    assert listed.files == sorted(listed.files, key=lambda f: (os.sep in f, f))
    out = make_features(tmp_path / "pics", options=opts(dtype="float32", fit_images=5))
    assert read(out["out"], "features").shape == (5, 16)


def make_coco(root, tiny_shapes):
    """A COCO-layout folder: captions_{train,val}2014.json with train2014/ and val2014/ images."""
    src = json.loads((tiny_shapes / "dataset.json").read_text())["images"]
    next_id = 100
    for split, dirname in (("train", "train2014"), ("val", "val2014")):
        (root / dirname).mkdir(parents=True)
        ims, anns = [], []
        for im in [x for x in src if x["split"] == split][:30]:
            name = f"COCO_{dirname}_{next_id:012d}.png"
            shutil.copy(tiny_shapes / im.get("filepath", "") / im["filename"], root / dirname / name)
            ims.append({"id": next_id, "file_name": name})
            anns += [{"image_id": next_id, "id": next_id * 10 + k, "caption": s["raw"]}
                     for k, s in enumerate(im["sentences"])]
            next_id += 1
        (root / f"captions_{dirname}.json").write_text(json.dumps({"images": ims, "annotations": anns}))
    return root


def test_coco_layout_is_keyed_by_image_id(tmp_path, tiny_shapes):
    from rnncap.data.coco import load_coco

    root = make_coco(tmp_path / "coco", tiny_shapes)
    out = make_features(root, options=opts(dtype="float32"))
    ids = read(out["out"], "image_ids")
    assert sorted(ids) == list(range(100, 150))  # 30 training and the 20 validation images
    files = read(out["out"], "files").astype(str)
    assert files[0].startswith("train2014" + os.sep) and files[-1].startswith("val2014" + os.sep)
    data = load_coco(root)
    assert data["train_features"].shape == (30, 16) and data["val_features"].shape == (20, 16)
    _, expect = direct_features(out["out"], files, root)
    np.testing.assert_allclose(data["val_features"][0], expect[list(ids).index(130)], rtol=1e-5, atol=1e-5)
    assert data["features_file"]["attrs"]["backbone"] == "randconv"


def test_images_of_a_dataset_json_are_looked_up_under_image_root(shapes_copy, tmp_path):
    moved = shutil.move(str(shapes_copy / "images"), str(tmp_path / "elsewhere"))
    with pytest.raises(FileNotFoundError, match="pass the folder that holds them as --image-root"):
        make_features(shapes_copy, options=opts())
    os.makedirs(tmp_path / "root")
    shutil.move(moved, str(tmp_path / "root" / "images"))
    out = make_features(shapes_copy, image_root=tmp_path / "root", options=opts())
    assert out["computed"] == 100


@pytest.mark.parametrize("bad, message", [
    (dict(dtype="float64"), "--dtype must be one of float16, float32"),
    (dict(pooled=False), "nothing to compute"),
    (dict(workers=0), "--workers and --chunk-size must be >= 1"),
])
def test_bad_options_are_named(shapes_copy, bad, message):
    with pytest.raises(ValueError, match=message):
        make_features(shapes_copy, options=opts(**bad))


def test_pretrained_backbone_gives_pooled_and_grid_from_one_pass(tmp_path, tiny_shapes):
    from rnncap.data.features import make_extractor

    (tmp_path / "pics").mkdir()
    for p in sorted((tiny_shapes / "images" / "test").glob("*.png"))[:3]:
        shutil.copy(p, tmp_path / "pics" / p.name)
    out = make_features(tmp_path / "pics", options=FeaturesOptions(
        extractor="efficientnet-lite0", grid=True, dtype="float32", progress=False))["out"]
    pooled, grid = read(out, "features"), read(out, "grid")
    assert pooled.shape == (3, 1280) and grid.shape == (3, 7, 7, 1280)
    # the pooled vector is the average of the last feature map over its 7 x 7 cells
    np.testing.assert_allclose(pooled, grid.mean(axis=(1, 2)), rtol=1e-4, atol=1e-5)
    ex = make_extractor("efficientnet-lite0")
    files = read(out, "files").astype(str)
    direct = ex.extract_prepared(np.stack([ex.read_image(tmp_path / "pics" / f) for f in files]))
    np.testing.assert_allclose(pooled, direct, rtol=1e-5, atol=1e-5)
    attrs = featfile.read_attrs(out)
    assert attrs["backbone"] == "efficientnet-lite0" and attrs["preprocessing"]["size"] == 224
