"""Property tests for every file rnncap reads: it loads, or it raises rnncap's own error.

For each kind of file (dataset.json, COCO caption annotations, features files, checkpoint
documents, config files, vocabulary files), Hypothesis generates inputs from nonsense to
almost-valid, and the reader must either load it or raise the error type rnncap reports to users
(ValueError and its kin: ConfigError, CheckpointError, MissingKeyError) with a one-line message
naming the file. Any other exception (TypeError, KeyError, EOFError, AttributeError,
IndexError ...) would reach the user as a traceback, and fails the property.

The default suite runs a few dozen examples per property; the `slow` suite (make test-slow)
reruns every property with many more (the THOROUGH settings below).
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

FAST = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
THOROUGH = settings(FAST, max_examples=600)

# ------------------------------------------------------------------ strategies

json_scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats()
                | st.text(max_size=12))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10)


def maybe(valid, p_valid=0.8):
    """Mostly a valid value, sometimes any JSON value at all."""
    return st.one_of(valid, json_values) if p_valid < 1 else valid


words = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)
sentence = st.one_of(st.fixed_dictionaries({"raw": maybe(words)}),
                     st.fixed_dictionaries({"tokens": maybe(st.lists(maybe(words), max_size=5))}),
                     json_values)
karpathy_image = st.fixed_dictionaries(
    {"split": maybe(st.sampled_from(["train", "val", "test", "restval"])),
     "filename": maybe(st.text(min_size=1, max_size=10)),
     "sentences": maybe(st.lists(sentence, max_size=3))},
    optional={"filepath": maybe(st.text(max_size=10)), "imgid": json_values,
              "objects": maybe(st.lists(st.fixed_dictionaries(
                  {"shape": maybe(st.sampled_from(["circle", "square"])),
                   "colour": maybe(st.sampled_from(["red", "blue"])),
                   "size": maybe(st.sampled_from(["small", "large"])),
                   "row": maybe(st.integers(0, 2)), "col": maybe(st.integers(0, 2))}), max_size=2))})
karpathy_docs = st.one_of(json_values, st.fixed_dictionaries(
    {"images": maybe(st.lists(karpathy_image, min_size=1, max_size=6))}))

ids = st.integers(0, 5)
coco_docs = st.one_of(json_values, st.fixed_dictionaries({
    "images": maybe(st.lists(st.fixed_dictionaries({"id": maybe(ids), "file_name": maybe(st.text(min_size=1, max_size=8))}),
                             max_size=4)),
    "annotations": maybe(st.lists(st.fixed_dictionaries({"image_id": maybe(ids), "caption": maybe(words)}),
                                  max_size=6))}))

dtypes = st.one_of(hnp.floating_dtypes(), hnp.integer_dtypes(), hnp.complex_number_dtypes(),
                   hnp.boolean_dtypes(), hnp.unicode_string_dtypes(max_len=3),
                   hnp.datetime64_dtypes())
arrays = hnp.arrays(dtypes, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))


def _npy_bytes(a):
    import io

    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


features_bytes = st.one_of(
    st.binary(max_size=200),
    arrays.map(_npy_bytes),
    st.tuples(arrays.map(_npy_bytes), st.floats(0, 1)).map(lambda t: t[0][:int(len(t[0]) * t[1])]),
)


def _assert_own_error(err, path=None):
    """The error is one rnncap reports as `rnncap CMD: error: ...`: a ValueError with a one-line
    message (naming the file, when given)."""
    assert isinstance(err, ValueError), f"{type(err).__name__}: {err}"
    message = str(err)
    assert message.strip() and "\n" not in message.strip(), repr(message)
    if path is not None:
        assert os.path.basename(os.fspath(path)) in message, message


def _loads_or_own_error(fn, *args, path=None, **kwargs):
    try:
        return fn(*args, **kwargs)
    except ValueError as err:
        _assert_own_error(err, path)
        return None


# ------------------------------------------------------------------ dataset.json


def check_dataset_json(doc):
    from rnncap.data.karpathy import load_karpathy

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "dataset.json"
        path.write_text(json.dumps(doc))
        n = len(doc["images"]) if isinstance(doc, dict) and isinstance(doc.get("images"), list) else 1
        feats = Path(d) / "features.npy"
        np.save(feats, np.arange(n * 3, dtype=np.float32).reshape(n, 3))
        data = _loads_or_own_error(load_karpathy, d, path=path)
        if data is not None:
            assert data["train_captions"].dtype == np.int32 and data["train_features"].shape[1] == 3


@FAST
@given(doc=karpathy_docs)
def test_dataset_json_loads_or_names_the_error(doc):
    check_dataset_json(doc)


@pytest.mark.slow
@THOROUGH
@given(doc=karpathy_docs)
def test_dataset_json_loads_or_names_the_error_thoroughly(doc):
    check_dataset_json(doc)


# ------------------------------------------------------------------ COCO annotations


def check_coco(doc, val_doc):
    from rnncap.data.coco import load_coco

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "captions_train2014.json").write_text(json.dumps(doc))
        if val_doc is not None:
            (Path(d) / "captions_val2014.json").write_text(json.dumps(val_doc))
        np.savez(Path(d) / "features.npz", image_ids=np.arange(6), features=np.ones((6, 3), np.float32))
        try:
            load_coco(d)
        except ValueError as err:
            _assert_own_error(err)
            assert "captions_" in str(err) or "features.npz" in str(err) or d in str(err), str(err)


@FAST
@given(doc=coco_docs, val_doc=st.none() | coco_docs)
def test_coco_annotations_load_or_name_the_error(doc, val_doc):
    check_coco(doc, val_doc)


@pytest.mark.slow
@THOROUGH
@given(doc=coco_docs, val_doc=st.none() | coco_docs)
def test_coco_annotations_load_or_name_the_error_thoroughly(doc, val_doc):
    check_coco(doc, val_doc)


# ------------------------------------------------------------------ features files


#: A .npy file cut inside its header dict.
GARBLED_NPY = b"\x93NUMPY\x01\x00\x01\x00{"


def check_features(content, keyed):
    from rnncap.data.coco import read_keyed_features
    from rnncap.data.karpathy import read_feature_file

    with tempfile.TemporaryDirectory() as d:
        if keyed is None:
            path = Path(d) / "features.npy"
            path.write_bytes(content)
            a = _loads_or_own_error(read_feature_file, path, path=path)
            if a is not None:  # (I, D) vectors or (I, L, D) grids
                assert a.ndim in (2, 3) and a.dtype.kind in "fiu"
        else:
            path = Path(d) / "features.npz"
            ids_array, feats = keyed
            np.savez(path, image_ids=ids_array, features=feats)
            if content:  # sometimes damage the archive
                raw = path.read_bytes()
                path.write_bytes(raw[:len(raw) // 2] + content)
            out = _loads_or_own_error(read_keyed_features, path, path=path)
            if out is not None:
                assert out[0].dtype == np.int64 and out[1].ndim == 2 and out[1].dtype.kind in "fiu"


@FAST
@given(content=features_bytes, keyed=st.none() | st.tuples(arrays, arrays))
@example(content=GARBLED_NPY, keyed=None)  # numpy's header parser raises tokenize.TokenError
@example(content=b"\x93NUMPY\x01\x00v\x00{'descr':'<f2','fortran_order':False,'shape':(0,1,1),}",
         keyed=None)  # an empty grid
def test_features_files_load_or_name_the_error(content, keyed):
    check_features(content, keyed)


@pytest.mark.slow
@THOROUGH
@given(content=features_bytes, keyed=st.none() | st.tuples(arrays, arrays))
def test_features_files_load_or_name_the_error_thoroughly(content, keyed):
    check_features(content, keyed)


def check_h5_features(layout):
    import h5py

    from rnncap.data.karpathy import read_feature_file

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "features.h5"
        with h5py.File(path, "w") as f:
            for name, value in layout.items():
                if value is None:
                    f.create_group(name)
                else:
                    f.create_dataset(name, data=value)
        a = _loads_or_own_error(read_feature_file, path, path=path)
        if a is not None:
            assert a.ndim in (2, 3) and a.dtype.kind in "fiu"  # vectors, or grids (I, L, D)


h5_arrays = hnp.arrays(st.one_of(hnp.floating_dtypes(endianness="="), hnp.integer_dtypes(endianness="="),
                                 hnp.complex_number_dtypes(endianness="="), hnp.boolean_dtypes()),
                       hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3))
h5_layouts = st.dictionaries(st.sampled_from(["features", "other"]), st.none() | h5_arrays, max_size=2)


@FAST
@given(layout=h5_layouts)
def test_h5_features_load_or_name_the_error(layout):
    check_h5_features(layout)


@pytest.mark.slow
@THOROUGH
@given(layout=h5_layouts)
def test_h5_features_load_or_name_the_error_thoroughly(layout):
    check_h5_features(layout)


def check_features_file_for_captioning(layout, complete, grid):
    """The file `rnncap features` writes, with any datasets in place of its own."""
    import h5py

    from rnncap.data.featfile import read_computed

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "features.h5"
        with h5py.File(path, "w") as f:
            f.attrs["rnncap_features"] = 1
            if complete is not None:
                f.attrs["complete"] = complete
            for name, value in layout.items():
                if value is None:
                    f.create_group(name)
                elif isinstance(value, list):
                    f.create_dataset(name, data=np.array(value, dtype=object), dtype=h5py.string_dtype())
                else:
                    f.create_dataset(name, data=value)
        out = _loads_or_own_error(read_computed, path, grid=grid, path=path)
        if out is not None:
            assert out.features.ndim == (3 if grid else 2) and out.features.dtype.kind in "fiu"
            assert len(out.names) == len(out.features) and all(isinstance(n, str) for n in out.names)


file_arrays = hnp.arrays(st.one_of(hnp.floating_dtypes(endianness="="), hnp.integer_dtypes(endianness="="),
                                   hnp.boolean_dtypes()),
                         hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=3))
status_arrays = hnp.arrays(hnp.integer_dtypes(endianness="="), hnp.array_shapes(min_dims=0, max_dims=2,
                                                                                max_side=3),
                           elements=st.integers(0, 3))
file_layouts = st.fixed_dictionaries(
    {}, optional={"features": st.none() | file_arrays, "grid": st.none() | file_arrays,
                  "status": st.none() | status_arrays | file_arrays,
                  "files": st.none() | st.lists(st.text(max_size=5), max_size=3) | file_arrays})


@FAST
@given(layout=file_layouts, complete=st.none() | st.booleans(), grid=st.booleans())
def test_features_files_for_captioning_load_or_name_the_error(layout, complete, grid):
    check_features_file_for_captioning(layout, complete, grid)


@pytest.mark.slow
@THOROUGH
@given(layout=file_layouts, complete=st.none() | st.booleans(), grid=st.booleans())
def test_features_files_for_captioning_load_or_name_the_error_thoroughly(layout, complete, grid):
    check_features_file_for_captioning(layout, complete, grid)


def check_cs231n(key, value):
    import h5py

    from rnncap.data.cs231n import load_coco_data, write_coco_folder

    words = ["<NULL>", "<START>", "<END>", "<UNK>", "a", "b"]
    data = {"idx_to_word": words}
    for s in ("train", "val"):
        data[f"{s}_captions"] = np.tile(np.array([[1, 4, 5, 2, 0]], np.int32), (6, 1))
        data[f"{s}_image_idxs"] = np.arange(6, dtype=np.int32) % 3
        data[f"{s}_features"] = np.ones((3, 4), np.float32)
        data[f"{s}_urls"] = np.array(["u0", "u1", "u2"])
    with tempfile.TemporaryDirectory() as d:
        write_coco_folder(d, data)
        name = "coco2014_captions.h5" if "captions" in key or "idxs" in key else key.split(":")[0]
        dataset = key.split(":")[-1]
        with h5py.File(Path(d) / name, "a") as f:
            del f[dataset]
            if value is None:
                f.create_group(dataset)
            else:
                f[dataset] = value
        out = _loads_or_own_error(load_coco_data, d)
        if out is not None:
            assert out["train_captions"].dtype == np.int32 and out["train_features"].dtype == np.float32


cs231n_keys = st.sampled_from(["train_captions", "val_captions", "train_image_idxs", "val_image_idxs",
                               "train2014_vgg16_fc7_pca.h5:features"])


@FAST
@given(key=cs231n_keys, value=st.none() | h5_arrays)
def test_cs231n_folder_loads_or_names_the_error(key, value):
    check_cs231n(key, value)


@pytest.mark.slow
@THOROUGH
@given(key=cs231n_keys, value=st.none() | h5_arrays)
def test_cs231n_folder_loads_or_names_the_error_thoroughly(key, value):
    check_cs231n(key, value)


# ------------------------------------------------------------------ config and vocabulary files


def check_config(content):
    from rnncap.config import ConfigError, RunConfig, load_config

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "config.json"
        path.write_bytes(content)
        try:
            config = load_config(path)
        except ValueError as err:
            assert isinstance(err, ConfigError), f"{type(err).__name__}: {err}"
            _assert_own_error(err, path)
        else:
            assert isinstance(config, RunConfig)


config_docs = st.one_of(
    st.binary(max_size=50),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({}, optional={
        part: st.dictionaries(st.sampled_from(fields), json_scalars, max_size=3)
        for part, fields in {"data": ["path", "format", "level", "max_length", "min_count", "max_train"],
                             "model": ["cell_type", "wordvec_dim", "hidden_dim", "image_every_step", "dtype"],
                             "train": ["update_rule", "learning_rate", "lr_decay", "batch_size",
                                       "num_epochs", "grad_clip", "seed", "val_images",
                                       "keep_checkpoints"]}.items()}).map(lambda v: json.dumps(v).encode()))


@FAST
@given(content=config_docs)
def test_config_files_load_or_name_the_error(content):
    check_config(content)


@pytest.mark.slow
@THOROUGH
@given(content=config_docs)
def test_config_files_load_or_name_the_error_thoroughly(content):
    check_config(content)


def check_vocab(doc):
    from rnncap.data.vocab import Vocabulary

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "coco2014_vocab.json"
        path.write_text(json.dumps(doc))
        v = _loads_or_own_error(Vocabulary.load, path, path=path)
        if v is not None:
            assert v.decode_clean(np.zeros((1, 2), np.int32)) == [""]


vocab_docs = st.one_of(json_values, st.fixed_dictionaries(
    {"idx_to_word": maybe(st.lists(maybe(words), max_size=6).map(
        lambda w: ["<NULL>", "<START>", "<END>", "<UNK>"] + w))},
    optional={"word_to_idx": json_values, "level": maybe(st.sampled_from(["word", "char"]))}))


@FAST
@given(doc=vocab_docs)
def test_vocabulary_files_load_or_name_the_error(doc):
    check_vocab(doc)


@pytest.mark.slow
@THOROUGH
@given(doc=vocab_docs)
def test_vocabulary_files_load_or_name_the_error_thoroughly(doc):
    check_vocab(doc)


# ------------------------------------------------------------------ image files

image_specs = st.tuples(
    st.sampled_from(["1", "L", "P", "RGB", "RGBA", "LA", "I;16", "I", "F", "CMYK"]),
    st.integers(1, 12), st.integers(1, 12),
    st.sampled_from(["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"]),
    st.integers(0, 2**32 - 1),
    st.one_of(st.none(), st.tuples(st.just("flip"), st.floats(0, 1), st.integers(1, 255)),
              st.tuples(st.just("truncate"), st.floats(0, 1), st.just(0)),
              st.tuples(st.just("garbage"), st.floats(0, 1), st.integers(0, 255))))


def _encode(mode, w, h, fmt, seed):
    import io

    from hypothesis import assume
    from PIL import Image

    rng = np.random.default_rng(seed)
    im = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    try:
        im.save(buf, format=fmt)
    except (OSError, ValueError, KeyError):
        assume(False)  # Pillow cannot write this mode in this format
    return buf.getvalue()


def check_image(spec):
    from rnncap.data.features import load_image

    mode, w, h, fmt, seed, damage = spec
    raw = bytearray(_encode(mode, w, h, fmt, seed))
    if damage is not None:
        kind, where, byte = damage
        i = min(int(where * len(raw)), len(raw) - 1)
        if kind == "flip":
            raw[i] ^= byte
        elif kind == "truncate":
            raw = raw[:i]
        else:
            raw = bytearray(np.random.default_rng(byte).integers(0, 256, len(raw), dtype=np.uint8))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"picture.{fmt.lower()}"
        path.write_bytes(bytes(raw))
        pixels = _loads_or_own_error(load_image, path, 8, path=path)
        if pixels is not None:
            assert pixels.shape == (8, 8, 3) and pixels.dtype == np.uint8


@FAST
@given(spec=image_specs)
def test_image_files_load_or_name_the_error(spec):
    check_image(spec)


@pytest.mark.slow
@THOROUGH
@given(spec=image_specs)
def test_image_files_load_or_name_the_error_thoroughly(spec):
    check_image(spec)


# ------------------------------------------------------------------ checkpoint documents


@pytest.fixture(scope="module")
def checkpoint(tiny_shapes, tmp_path_factory):
    from rnncap.config import RunConfig, with_overrides
    from rnncap.data import load_data
    from rnncap.run import restore, train

    config = with_overrides(RunConfig(), {
        "data": {"path": str(tiny_shapes), "format": "karpathy"},
        "model": {"cell_type": "lstm", "hidden_dim": 4, "wordvec_dim": 4},
        "train": {"batch_size": 100, "num_epochs": 1, "val_images": 0}})
    run = tmp_path_factory.mktemp("fuzz-ckpt")
    train(config, run, progress=False, data=load_data(tiny_shapes, "karpathy"))
    return restore(run).checkpoint.folder


def _paths(doc, prefix=()):
    """Every path into a JSON document (the root included)."""
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:3]):
            yield from _paths(v, prefix + (i,))


def _replace(doc, path, value):
    if not path:
        return value
    doc[path[0]] = _replace(doc[path[0]], path[1:], value)
    return doc


DOCS = ["config.json", "model.json", "vocab.json", "info.json", "solver.json", "history.json",
        "manifest.json", "extractor/extractor.json", "feature_stats.json"]


def check_checkpoint(folder, name, pick, value, rehash):
    from rnncap.checkpoint import CheckpointError
    from rnncap.data.features import load_extractor
    from rnncap.run import restore

    with tempfile.TemporaryDirectory() as d:
        copy = shutil.copytree(folder, Path(d) / "ck")
        doc = json.loads((copy / name).read_text())
        paths = list(_paths(doc))
        doc = _replace(doc, paths[pick % len(paths)], value)
        (copy / name).write_text(json.dumps(doc))
        if name != "manifest.json":
            rehash(copy)
        try:
            r = restore(copy)
        except ValueError as err:
            assert isinstance(err, CheckpointError), f"{type(err).__name__}: {err}"
            _assert_own_error(err)
            assert str(copy) in str(err), str(err)
        else:  # it loaded: then it is a usable model, and `caption` can load its extractor
            assert all(np.isfinite(v).all() for v in r.model.params.values())
            _loads_or_own_error(load_extractor, r.checkpoint.dirs["extractor"])


@FAST
@given(name=st.sampled_from(DOCS), pick=st.integers(0, 10**6), value=json_values)
def test_edited_checkpoint_documents_load_or_name_the_error(checkpoint, rehash, name, pick, value):
    check_checkpoint(checkpoint, name, pick, value, rehash)


@pytest.mark.slow
@THOROUGH
@given(name=st.sampled_from(DOCS), pick=st.integers(0, 10**6), value=json_values)
def test_edited_checkpoint_documents_load_or_name_the_error_thoroughly(checkpoint, rehash, name, pick, value):
    check_checkpoint(checkpoint, name, pick, value, rehash)
