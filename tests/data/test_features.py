import json
import os

import numpy as np
import pytest
from PIL import Image

from rnncap.data.features import (RandomConvExtractor, _top_eigenvectors, extract_files,
                                  fit_extract_files, load_extractor, load_image,
                                  make_extractor, register_extractor)

OPTS = dict(image_size=32, num_filters=8, filter_size=5, stride=2, grid=3, pca_dim=16, seed=0)


def images(n, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def fitted(n=40):
    ex = make_extractor("randconv", **OPTS)
    ex.fit(ex.raw_features(images(n)))
    return ex


def test_raw_features_match_a_direct_loop():
    """Second implementation: explicit loops over positions and cells."""
    ex = make_extractor("randconv", **OPTS)
    img = images(2, seed=1)
    got = ex.raw_features(img)
    x = img.astype(np.float64) / 127.5 - 1
    k, st, K = 5, 2, 8
    P = (32 - k) // st + 1  # 14 -> cropped to 12, cells of 4
    z = np.zeros((2, P, P, K))
    for i in range(P):
        for j in range(P):
            patch = x[:, i * st:i * st + k, j * st:j * st + k, :].reshape(2, -1)
            z[:, i, j] = patch @ ex.filters.astype(np.float64)
    c = P // 3
    expect = []
    for n in range(2):
        feats = []
        for a in range(3):
            for b in range(3):
                cell = z[n, a * c:(a + 1) * c, b * c:(b + 1) * c].reshape(-1, K)
                for f in range(K):
                    v = cell[:, f]
                    feats += [np.maximum(v, 0).mean(), np.maximum(-v, 0).mean(),
                              np.maximum(v, 0).max(), np.maximum(-v, 0).max()]
        expect.append(feats)
    np.testing.assert_allclose(got, np.array(expect), rtol=1e-4, atol=1e-5)
    assert got.dtype == np.float32 and got.shape == (2, ex.raw_dim)


def test_pca_matches_svd_of_the_data():
    ex = make_extractor("randconv", **OPTS)
    raw = ex.raw_features(images(60))
    ex.fit(raw)
    centred = raw.astype(np.float64) - raw.mean(0, dtype=np.float64)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    # same subspace, component by component, up to sign
    dots = np.abs(np.sum(vt[:16].T * ex.components, axis=0))
    np.testing.assert_allclose(dots, 1.0, atol=1e-3)
    out = ex.transform(raw)
    assert out.dtype == np.float32 and out.shape == (60, 16)
    np.testing.assert_allclose(out.var(0, ddof=1).mean(), 1.0, rtol=1e-3)  # unit average variance
    np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-4)


def test_randomized_eigenvectors_match_exact():
    rng = np.random.default_rng(0)
    R, k = 300, 20
    basis = np.linalg.qr(rng.standard_normal((R, R)))[0]
    vals = 1.0 / np.arange(1, R + 1) ** 1.5
    cov = (basis * vals) @ basis.T
    vecs, got_vals = _top_eigenvectors(cov, k, rng, oversample=30, exact_below=0)
    np.testing.assert_allclose(got_vals, vals[:k], rtol=1e-6)
    np.testing.assert_allclose(np.abs(np.sum(vecs * basis[:, :k], axis=0)), 1.0, atol=1e-6)


def test_deterministic_and_save_load_round_trip(tmp_path):
    a, b = fitted(), fitted()
    x = images(5, seed=9)
    np.testing.assert_array_equal(a.extract(x), b.extract(x))
    a.save(tmp_path / "ex")
    assert sorted(p.name for p in (tmp_path / "ex").iterdir()) == ["arrays.npz", "extractor.json"]
    c = load_extractor(tmp_path / "ex")
    assert isinstance(c, RandomConvExtractor) and c.dim == 16
    np.testing.assert_array_equal(c.extract(x), a.extract(x))
    a.save(tmp_path / "ex")  # overwriting works and leaves no temp folder
    assert [p.name for p in tmp_path.iterdir()] == ["ex"]


def test_any_image_file_works(tmp_path):
    ex = fitted()
    rgb = images(1, size=50)[0]
    files = {
        "rgb.png": Image.fromarray(rgb),
        "gray.png": Image.fromarray(rgb[..., 0]),
        "rgba.png": Image.fromarray(np.dstack([rgb, np.full((50, 50), 255, np.uint8)])),
        "pal.gif": Image.fromarray(rgb).convert("P"),
        "wide.jpg": Image.fromarray(images(1, size=80)[0][:40]),
        "deep.png": Image.fromarray(rgb[..., 0].astype(np.uint16) * 200),
    }
    paths = []
    for name, im in files.items():
        im.save(tmp_path / name)
        paths.append(tmp_path / name)
    out = extract_files(ex, paths, batch_size=4)
    assert out.shape == (len(paths), 16) and np.isfinite(out).all()
    # an opaque RGBA image is its RGB image
    np.testing.assert_array_equal(out[2], out[0])
    assert load_image(tmp_path / "gray.png", 32).shape == (32, 32, 3)


def test_bad_files_raise_errors_naming_them(tmp_path):
    ex = fitted()
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    with pytest.raises(ValueError, match="notes.png"):
        extract_files(ex, [bad])
    with pytest.raises(FileNotFoundError, match="gone.png"):
        extract_files(ex, [tmp_path / "gone.png"])
    with pytest.raises(FileNotFoundError, match="extractor.json"):
        load_extractor(tmp_path)
    with pytest.raises(ValueError, match="uint8"):
        ex.extract(np.zeros((1, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        ex.extract(np.zeros((1, 8, 8, 2), np.uint8))


def test_unfitted_and_malformed_extractors(tmp_path):
    ex = make_extractor("randconv", **OPTS)
    with pytest.raises(RuntimeError, match="fit"):
        ex.extract(images(1))
    with pytest.raises(ValueError, match="unknown feature extractor"):
        make_extractor("vgg99")
    fitted().save(tmp_path / "ex")
    z = dict(np.load(tmp_path / "ex" / "arrays.npz"))
    z["components"] = z["components"][:, :3]
    np.savez(tmp_path / "ex" / "arrays.npz", **z)
    with pytest.raises(ValueError, match="components.*shape"):
        load_extractor(tmp_path / "ex")


def _damage(folder, kind):
    """Damage a saved extractor folder in one of the ways a disk, a copy or an editor does."""
    npz, spec = folder / "arrays.npz", folder / "extractor.json"
    data = npz.read_bytes()
    if kind == "truncated npz":
        npz.write_bytes(data[:len(data) // 2])
    elif kind == "garbage npz":
        npz.write_bytes(bytes(range(256)) * 8)
    elif kind == "empty npz":
        npz.write_bytes(b"")
    elif kind == "missing npz":
        npz.unlink()
    elif kind == "flipped byte":  # inside the first array's data: the zip's CRC no longer matches
        i = data.index(b"NUMPY") + 200
        npz.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:])
    elif kind == "pickled array":
        arrays = dict(np.load(npz))
        np.savez(npz, **{**arrays, "mean": np.array([{"x": 1}], dtype=object)})
    elif kind == "compressed npz":
        np.savez_compressed(npz, **dict(np.load(npz)))
    elif kind == "text array":
        arrays = dict(np.load(npz))
        np.savez(npz, **{**arrays, "mean": np.full(arrays["mean"].shape, "x")})
    elif kind == "NaN array":
        arrays = dict(np.load(npz))
        np.savez(npz, **{**arrays, "components": arrays["components"] * np.nan})
    elif kind == "missing array":
        np.savez(npz, **{k: v for k, v in np.load(npz).items() if k != "mean"})
    elif kind == "malformed json":
        spec.write_text('{"name": "randconv", ')
    elif kind == "json not utf-8":
        spec.write_bytes(b"\xff\xfe{}")
    elif kind == "json nested too deeply":
        spec.write_text("[" * 100_000 + "]" * 100_000)
    elif kind == "json list":
        spec.write_text("[1, 2]")
    elif kind == "missing json":
        spec.unlink()
    elif kind.startswith("spec:"):  # an edited extractor.json: one key removed or replaced
        doc = json.loads(spec.read_text())
        key, value = SPEC_EDITS[kind]
        if value is _REMOVE:
            del doc[key]
        elif key == "options" and isinstance(value, dict):
            doc["options"] = {**doc["options"], **value}
        else:
            doc[key] = value
        spec.write_text(json.dumps(doc))
    else:
        raise AssertionError(kind)


_REMOVE = object()
SPEC_EDITS = {  # kind -> (the key of extractor.json edited, its new value or _REMOVE)
    "spec: no options": ("options", _REMOVE),
    "spec: options a list": ("options", [5, 3]),
    "spec: boolean option": ("options", {"stride": True}),
    "spec: unknown option": ("options", {"strides": 2}),
    "spec: inconsistent options": ("options", {"image_size": 4}),
    "spec: filters of other options": ("options", {"num_filters": 10**12}),
    "spec: boolean scale": ("scale", True),
    "spec: string scale": ("scale", "2.0"),
    "spec: huge scale": ("scale", 10**400),
}

DAMAGE = {  # kind -> (the file the message names, what it says)
    "truncated npz": ("arrays.npz", "not a readable .npz archive"),
    "garbage npz": ("arrays.npz", "not a readable .npz archive"),
    "empty npz": ("arrays.npz", "not a readable .npz archive"),
    "missing npz": ("arrays.npz", "feature extractor file not found"),
    "flipped byte": ("arrays.npz", "cannot be read (BadZipFile: Bad CRC-32"),
    "pickled array": ("arrays.npz", "cannot be read (ValueError: Object arrays cannot be loaded"),
    "compressed npz": ("arrays.npz", "member filters.npy is compressed"),
    "text array": ("arrays.npz", "array 'mean' has dtype <U1"),
    "NaN array": ("arrays.npz", "'components' holds NaN or infinite values"),
    "missing array": ("arrays.npz", "missing array(s) mean"),
    "malformed json": ("extractor.json", "not valid JSON (JSONDecodeError"),
    "json not utf-8": ("extractor.json", "not valid JSON (UnicodeDecodeError"),
    "json nested too deeply": ("extractor.json", "not valid JSON (RecursionError"),
    "json list": ("extractor.json", "expected a JSON object"),
    "missing json": ("extractor.json", "feature extractor file not found"),
    "spec: no options": ("extractor.json", "saved extractor has no 'options' (it holds: 'dim', 'name', "
                                           "'raw_dim', 'scale')"),
    "spec: options a list": ("extractor.json", "'options' must be a JSON object of non-negative integers, "
                                               "got [5, 3]"),
    "spec: boolean option": ("extractor.json", "'options' must be a JSON object of non-negative integers"),
    "spec: unknown option": ("extractor.json", "'options' has unknown key(s) 'strides'; expected some of "
                                               "image_size, num_filters"),
    "spec: inconsistent options": ("extractor.json", "'options' are inconsistent (image_size 4 too small "
                                                     "for filter_size 5)"),
    "spec: filters of other options": ("arrays.npz", "'filters' has shape (75, 8), the options in "
                                                     "extractor.json say (75, 1000000000000)"),
    "spec: boolean scale": ("extractor.json", "'scale' must be a finite number, got True"),
    "spec: string scale": ("extractor.json", "'scale' must be a finite number, got '2.0'"),
    "spec: huge scale": ("extractor.json", "'scale' must be a finite number, got 1000000000"),
}


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_saved_extractor_is_named_in_one_line(tmp_path, kind):
    from rnncap.data.features import read_saved

    fitted().save(tmp_path / "ex")
    _damage(tmp_path / "ex", kind)
    name, says = DAMAGE[kind]
    # read_saved checks the files' form; only the extractor's from_saved knows which arrays it needs
    meaning = kind in ("missing array", "NaN array") or kind.startswith("spec:")
    for load in (load_extractor,) if meaning else (load_extractor, read_saved):
        with pytest.raises((ValueError, FileNotFoundError)) as info:
            load(tmp_path / "ex")
        message = str(info.value)
        assert str(tmp_path / "ex" / name) in message and says in message, message
        assert "\n" not in message and message.count(str(tmp_path)) == 1, message
    if not meaning:
        assert "expected" in message or "not found" in message, message


def test_a_damaged_features_cache_is_named_with_what_to_do(tmp_path):
    from rnncap.data.features import cached_split_features

    paths = {"train": [tmp_path / f"{i}.png" for i in range(4)]}
    for i, p in enumerate(paths["train"]):
        Image.fromarray(images(1, seed=i)[0]).save(p)
    options = {"image_size": 16, "num_filters": 4, "filter_size": 3, "grid": 2, "pca_dim": 4}
    feats, ex_dir = cached_split_features(tmp_path / "cache", paths, key="k", options=options)
    cached = tmp_path / "cache" / os.path.basename(os.path.dirname(ex_dir)) / "train.npy"
    data = cached.read_bytes()
    cached.write_bytes(data[:len(data) - 8])
    with pytest.raises(ValueError) as info:
        cached_split_features(tmp_path / "cache", paths, key="k", options=options)
    message = str(info.value)
    assert message.startswith(f"{cached}: damaged features cache") and "\n" not in message, message
    assert f"delete {cached.parent} to compute the features again" in message, message
    np.save(cached, feats["train"].astype(np.float64))  # whole, but not what rnncap writes
    with pytest.raises(ValueError, match=r"damaged features cache \(ValueError: holds float64"):
        cached_split_features(tmp_path / "cache", paths, key="k", options=options)


def test_registry_is_pluggable(tmp_path):
    @register_extractor
    class MeanColour:
        name = "test-mean-colour"
        image_size, dim, raw_dim = 8, 3, 3

        def raw_features(self, images):
            return images.reshape(len(images), -1, 3).mean(1).astype(np.float32)

        def fit(self, raw):
            return self

        def transform(self, raw):
            return raw

        def extract(self, images):
            return self.raw_features(images)

    paths = []
    for i, colour in enumerate([(255, 0, 0), (0, 0, 255)]):
        Image.new("RGB", (20, 10), colour).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    out = fit_extract_files(make_extractor("test-mean-colour"), {"train": paths})
    np.testing.assert_allclose(out["train"], [[255, 0, 0], [0, 0, 255]])


def _split_files(tmp_path, n=24):
    paths = []
    for i, img in enumerate(images(n, seed=4)):
        p = tmp_path / "img" / f"{i}.png"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(img).save(p)
        paths.append(str(p))
    return {"train": paths[:16], "val": paths[16:]}


def test_cache_computes_once_then_loads(tmp_path, monkeypatch):
    from rnncap.data import features as F

    splits = _split_files(tmp_path)
    feats, ex_dir = F.cached_split_features(tmp_path / "cache", splits, key="k", options=OPTS)
    assert feats["train"].shape == (16, 16) and feats["val"].shape == (8, 16)
    monkeypatch.setattr(F, "fit_extract_files", lambda *a, **k: pytest.fail("computed again"))
    again, ex_again = F.cached_split_features(tmp_path / "cache", splits, key="k", options=OPTS)
    assert ex_again == ex_dir
    for s in feats:
        np.testing.assert_array_equal(again[s], feats[s])
    assert len(list((tmp_path / "cache").iterdir())) == 1  # no temporary folder left


def test_cache_written_by_another_process_meanwhile_is_kept(tmp_path, monkeypatch):
    """Two processes computing the same folder: the one that finishes second must not
    delete the first one's complete folder (a third process may be reading it)."""
    from pathlib import Path

    from rnncap.data import features as F

    splits = _split_files(tmp_path)
    real = F.fit_extract_files
    winner = {}

    def other_process_finishes_first(*args, **kwargs):
        monkeypatch.setattr(F, "fit_extract_files", real)  # the other run is a plain one
        winner["feats"], winner["dir"] = F.cached_split_features(tmp_path / "cache", splits, key="k",
                                                                 options=OPTS)
        (Path(winner["dir"]).parent / "winner.txt").write_text("first")  # whose folder survives
        return real(*args, **kwargs)

    monkeypatch.setattr(F, "fit_extract_files", other_process_finishes_first)
    feats, ex_dir = F.cached_split_features(tmp_path / "cache", splits, key="k", options=OPTS)
    folders = list((tmp_path / "cache").iterdir())
    assert len(folders) == 1 and (folders[0] / "winner.txt").read_text() == "first"
    assert ex_dir == winner["dir"]
    for s in feats:
        np.testing.assert_array_equal(feats[s], winner["feats"][s])


def test_cache_replaces_an_incomplete_folder_in_the_way(tmp_path):
    from rnncap.data import features as F

    splits = _split_files(tmp_path)
    F.cached_split_features(tmp_path / "cache", splits, key="k", options=OPTS)
    folder = next((tmp_path / "cache").iterdir())
    (folder / "val.npy").unlink()  # e.g. left by an interrupted older version
    feats, ex_dir = F.cached_split_features(tmp_path / "cache", splits, key="k", options=OPTS)
    assert (folder / "val.npy").is_file() and feats["val"].shape == (8, 16)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [folder.name]  # nothing stale left


# ------------------------------------------------------------------ grid features

def test_grid_is_the_standardised_cells_plus_positions():
    ex = fitted()
    img = images(3, seed=5)
    grid = ex.grid(img)
    L, Dg = ex.grid_shape
    assert grid.shape == (3, L, Dg) == (3, 9, 4 * 8 + 3 + 3 + 9) and grid.dtype == np.float32
    cells = ex.raw_features(img).reshape(3, 9, 4 * 8)
    np.testing.assert_allclose(grid[:, :, :32] / ex.grid_scale + ex.grid_mean, cells,
                               rtol=1e-4, atol=1e-4)
    for cell in range(9):
        row, col = divmod(cell, 3)
        expect = np.zeros(15)
        expect[[row, 3 + col, 6 + cell]] = 1
        np.testing.assert_array_equal(grid[:, cell, 32:], np.broadcast_to(expect, (3, 15)))


def test_grid_standardisation_fitted_on_training_cells():
    ex = make_extractor("randconv", **OPTS)
    raw = ex.raw_features(images(40))
    ex.fit(raw)
    g = ex.grid_from_raw(raw)[:, :, :32].reshape(-1, 32)
    np.testing.assert_allclose(g.mean(axis=0), 0, atol=1e-5)
    # standardised, then divided by sqrt(32): cell vectors of norm ~1 on average
    np.testing.assert_allclose(g.std(axis=0), 1 / np.sqrt(32), rtol=1e-3)
    assert np.mean(np.sum(g * g, axis=1)) == pytest.approx(1.0, rel=1e-3)


def test_a_grid_cell_sees_only_its_own_part_of_the_picture():
    # 32 px, stride 2, filter 5: 14 responses cropped to 12, cells of 4 responses, and
    # cell (0, 0)'s windows cover pixels 0..10 while the others start at pixel 8.
    ex = fitted()
    img = images(1, seed=6)
    changed = img.copy()
    changed[0, :8, :8] = 255 - changed[0, :8, :8]
    a, b = ex.grid(img), ex.grid(changed)
    assert np.abs(a[0, 0] - b[0, 0]).max() > 0.1
    np.testing.assert_array_equal(a[0, 1:], b[0, 1:])


def test_grid_survives_save_and_load(tmp_path):
    ex = fitted()
    ex.save(tmp_path / "ex")
    again = load_extractor(tmp_path / "ex")
    x = images(2, seed=7)
    np.testing.assert_array_equal(again.grid(x), ex.grid(x))


def test_extract_files_gives_grids(tmp_path):
    ex = fitted()
    paths = []
    for i, img in enumerate(images(2, seed=8)):
        Image.fromarray(img).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    got = extract_files(ex, paths, grid=True)
    np.testing.assert_allclose(got, ex.grid(np.stack([load_image(p, 32) for p in paths])), rtol=1e-6)


def test_cache_holds_pooled_and_grid_features(tmp_path, monkeypatch):
    from rnncap.data import features as F

    splits = _split_files(tmp_path)
    pooled, ex_dir = F.cached_split_features(tmp_path / "cache", splits, key="k", options=OPTS)
    monkeypatch.setattr(F, "fit_extract_files", lambda *a, **k: pytest.fail("computed again"))
    grids, ex_dir2 = F.cached_split_features(tmp_path / "cache", splits, key="k", options=OPTS,
                                             grid=True)
    assert ex_dir2 == ex_dir
    assert grids["train"].shape == (16, 9, 47) and grids["val"].shape == (8, 9, 47)
    ex = load_extractor(ex_dir)
    x = np.stack([load_image(p, 32) for p in splits["val"]])
    np.testing.assert_allclose(grids["val"], ex.grid(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pooled["val"], ex.extract(x), rtol=1e-4, atol=1e-4)


def test_cache_folders_of_another_layout_are_not_read(tmp_path, monkeypatch):
    from rnncap.data import features as F

    splits = _split_files(tmp_path)
    monkeypatch.setattr(F, "CACHE_LAYOUT", 1)
    F.cached_split_features(tmp_path / "cache", splits, key="k", options=OPTS)
    monkeypatch.setattr(F, "CACHE_LAYOUT", 3)
    F.cached_split_features(tmp_path / "cache", splits, key="k", options=OPTS)
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_grid_from_an_extractor_without_grids_is_an_error(tmp_path):
    from rnncap.data import features as F

    @register_extractor
    class PooledOnly:
        name = "test-pooled-only"

    with pytest.raises(ValueError, match="'test-pooled-only' gives no grid features"):
        F.cached_split_features(tmp_path, {"train": []}, name="test-pooled-only", grid=True)
