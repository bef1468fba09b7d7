"""Shared test fixtures: a tiny shapes dataset in Karpathy format, made once per session."""

import pytest


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory):
    """Folder of a 60/20/20-image shapes dataset (PNG files + dataset.json, no features yet)."""
    from rnncap.data import prepare_shapes

    return prepare_shapes(tmp_path_factory.mktemp("shapes"), seed=1, num_train=60, num_val=20,
                          num_test=20, progress=False)


@pytest.fixture(scope="session")
def tiny_train_flags():
    """`rnncap train` flags for a model small enough to train in a second."""
    return ["--cell", "lstm", "--hidden-dim", "16", "--wordvec-dim", "8", "--batch-size", "50",
            "--val-images", "5", "--no-progress"]



def _rehash(folder):
    """Rewrite a checkpoint's manifest for its files as they now are: an edit that re-hashes."""
    import json

    from rnncap.atomic import sha256_file

    manifest = json.loads((folder / "manifest.json").read_text())
    for rel in manifest["files"]:
        p = folder / rel
        manifest["files"][rel] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture
def rehash():
    """rehash(folder): re-sign a checkpoint after editing it, as a careful attacker would."""
    return _rehash


@pytest.fixture(autouse=True)
def _thread_count_restored():
    """rnncap's thread count is process-wide (the CLI's main() sets it): every test starts
    from the default and leaves it there."""
    from rnncap.parallel import default_threads, set_threads

    set_threads(default_threads())
    yield
    set_threads(default_threads())


@pytest.fixture
def recorded_syncs(monkeypatch):
    """A list that gets ("fsync", path) for every os.fsync and ("replace", src, dst) for every
    os.replace from now on (an fsync'ed descriptor named by the path /proc gives for it)."""
    import os

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc to name a file descriptor")
    events, fsync, replace = [], os.fsync, os.replace

    def recording_fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    def recording_replace(src, dst):
        events.append(("replace", os.fspath(src), os.fspath(dst)))
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    return events
