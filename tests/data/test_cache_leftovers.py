"""The features cache: what a killed computation left behind is removed by the next one."""

import os

import numpy as np


def test_a_killed_features_computation_leaves_nothing_behind(tiny_shapes, tmp_path):
    from rnncap.data.features import cached_split_features

    paths = {"train": sorted(str(p) for p in (tiny_shapes / "images" / "train").glob("*.png"))[:8]}
    options = {"num_filters": 4, "pca_dim": 4}
    feats, extractor = cached_split_features(tmp_path, paths, key="k", options=options)
    folder = os.path.basename(os.path.dirname(extractor))
    dead = tmp_path / f".{folder}.tmp-99999999-abcdef"
    dead.mkdir()
    (dead / "train.npy").write_bytes(b"half")
    live = tmp_path / f".{folder}.tmp-{os.getppid()}-abcdef"  # another process still writing
    live.mkdir()
    import shutil

    shutil.rmtree(tmp_path / folder)  # force a recomputation
    again, _ = cached_split_features(tmp_path, paths, key="k", options=options)
    np.testing.assert_array_equal(again["train"], feats["train"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([folder, live.name])
