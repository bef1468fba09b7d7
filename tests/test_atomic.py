"""Atomic writes: a failure leaves the old content and no temporary file; leftovers of dead writers go."""

import os

import pytest

from rnncap import atomic


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_write_text_replaces_content_and_leaves_nothing_else(tmp_path):
    path = tmp_path / "a.json"
    atomic.write_text(path, "one")
    atomic.write_text(path, "two")
    assert path.read_text() == "two"
    assert _names(tmp_path) == ["a.json"]


def test_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    path = tmp_path / "a.json"
    atomic.write_text(path, "old")

    def fail_halfway(f):
        f.write(b"new, but only ha")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic.write_with(path, fail_halfway)
    assert path.read_text() == "old"
    assert _names(tmp_path) == ["a.json"]


def test_folder_appears_only_when_complete(tmp_path):
    final = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic.atomic_folder(final) as tmp:
            (tmp / "x").write_text("1")
            assert not final.exists()
            raise RuntimeError("killed")
    assert _names(tmp_path) == []
    with atomic.atomic_folder(final) as tmp:
        (tmp / "x").write_text("1")
    assert _names(final) == ["x"] and _names(tmp_path) == ["out"]


@pytest.mark.parametrize("policy, expected", [("keep", "old"), ("replace", "new")])
def test_folder_that_exists_is_kept_or_replaced(tmp_path, policy, expected):
    final = tmp_path / "out"
    final.mkdir()
    (final / "x").write_text("old")
    with atomic.atomic_folder(final, exists=policy) as tmp:
        (tmp / "x").write_text("new")
    assert (final / "x").read_text() == expected
    assert _names(tmp_path) == ["out"]


def test_folder_that_exists_is_an_error_by_default(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(FileExistsError):
        with atomic.atomic_folder(tmp_path / "out"):
            pass
    assert _names(tmp_path) == ["out"]


def test_remove_stale_removes_dead_writers_leftovers_only(tmp_path):
    dead = tmp_path / ".data.tmp-99999999-abcdef"  # above any pid_max: no such process
    dead.mkdir()
    (dead / "big.png").write_bytes(b"x" * 100)
    (tmp_path / ".data.json.tmp-99999999-123456").write_text("half")
    live = tmp_path / f".data.tmp-{os.getppid()}-abcdef"  # our parent runs
    live.mkdir()
    (tmp_path / "data").mkdir()
    removed = atomic.remove_stale(tmp_path)
    assert sorted(p.name for p in removed) == [".data.json.tmp-99999999-123456",
                                               ".data.tmp-99999999-abcdef"]
    assert _names(tmp_path) == sorted([live.name, "data"])


def test_rename_durably_syncs_the_file_then_renames_then_syncs_the_folder(tmp_path, recorded_syncs):
    (tmp_path / "a.partial").write_text("whole")
    events = recorded_syncs
    assert atomic.rename_durably(tmp_path / "a.partial", tmp_path / "a") == tmp_path / "a"
    assert events == [("fsync", str(tmp_path / "a.partial")),
                      ("replace", str(tmp_path / "a.partial"), str(tmp_path / "a")),
                      ("fsync", str(tmp_path))]
    assert _names(tmp_path) == ["a"] and (tmp_path / "a").read_text() == "whole"


def test_remove_tree_leaves_only_a_hidden_name_if_killed(tmp_path, monkeypatch):
    victim = tmp_path / "ckpt-00000010"
    victim.mkdir()
    (victim / "weights.npz").write_bytes(b"w")
    import shutil

    def killed(path, ignore_errors=False):  # the process dies inside the deletion
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        atomic.remove_tree(victim)
    monkeypatch.undo()
    left = _names(tmp_path)
    assert len(left) == 1 and left[0].startswith(".ckpt-00000010.tmp-")  # never a half "ckpt-..."


def test_errors_name_the_file_asked_for_not_its_temporary_name(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        atomic.write_text(tmp_path / "missing" / "out.json", "x")
    assert err.value.filename == str(tmp_path / "missing" / "out.json")
    (tmp_path / "adir").mkdir()
    with pytest.raises(IsADirectoryError) as err:
        atomic.write_text(tmp_path / "adir", "x")
    assert err.value.filename == str(tmp_path / "adir")
    assert _names(tmp_path) == ["adir"] and _names(tmp_path / "adir") == []
