"""The `rnncap` command end to end on a tiny dataset, and its errors."""

import json

import pytest

from rnncap.cli import main


@pytest.fixture(scope="module")
def trained(tiny_shapes, tiny_train_flags, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    rc = main(["train", "--data", str(tiny_shapes), "--format", "karpathy", "--epochs", "2",
               "--out", str(run), *tiny_train_flags])
    assert rc == 0
    return run


def test_train_writes_run_folder(trained):
    assert (trained / "checkpoints" / "latest").is_file()
    lines = [json.loads(x) for x in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2]
    assert all(x["val"]["num_images"] == 5 and "Bleu_4" in x["val"] and "truth_rate" in x["val"]
               for x in lines)


def test_caption_image_files(trained, tiny_shapes, capsys):
    images = sorted((tiny_shapes / "images" / "test").glob("*.png"))[:3]
    assert main(["caption", str(trained), *map(str, images), "--json"]) == 0
    out = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [o["image"] for o in out] == [str(p) for p in images]
    assert [o["caption"] for o in out] == _greedy_by_hand(trained, images)
    assert main(["caption", str(trained), str(images[0]), "--method", "beam", "--beam-size", "2"]) == 0
    name, caption = capsys.readouterr().out.rstrip("\n").split("\t")
    assert name == str(images[0]) and caption and set(caption.split()) <= set(_vocabulary(trained))


def _vocabulary(run):
    from rnncap.run import restore

    return restore(run).vocab.idx_to_word


def _features(run, images):
    from rnncap.data.features import extract_files, load_extractor
    from rnncap.run import restore

    r = restore(run)
    return extract_files(load_extractor(r.checkpoint.dirs["extractor"]), images)


def _greedy_by_hand(run, images=None, features=None):
    """Greedy captions computed apart from the CLI: one image at a time through model.step."""
    import numpy as np

    from rnncap.run import restore

    r = restore(run)
    feats = _features(run, images) if features is None else features
    w2i, words = r.vocab.word_to_idx, r.vocab.idx_to_word
    captions = []
    for f in feats:
        state = r.model.init_state(np.asarray(f, r.model.dtype)[None])
        token, out = w2i["<START>"], []
        for _ in range(r.max_length):
            logprobs, state = r.model.step(np.array([token]), state)
            token = int(np.argmax(logprobs[0]))
            if token == w2i["<END>"]:
                break
            out.append(words[token])
        captions.append(" ".join(out))
    return captions


def test_caption_precomputed_features(trained, tmp_path, capsys):
    import numpy as np

    from rnncap.run import restore

    feats = np.random.default_rng(0).standard_normal((2, restore(trained).model.params["W_proj"].shape[0]))
    np.save(tmp_path / "f.npy", feats.astype(np.float32))
    assert main(["caption", str(trained), "--features", str(tmp_path / "f.npy")]) == 0
    lines = [x.split("\t") for x in capsys.readouterr().out.splitlines()]
    assert [n for n, _ in lines] == ["f.npy[0]", "f.npy[1]"]
    assert [c for _, c in lines] == _greedy_by_hand(trained, features=feats.astype(np.float32))


def test_caption_of_an_image_equals_caption_of_its_features(trained, tiny_shapes, tmp_path, capsys):
    import numpy as np

    images = sorted((tiny_shapes / "images" / "val").glob("*.png"))[:4]
    np.save(tmp_path / "f.npy", _features(trained, images))
    assert main(["caption", str(trained), *map(str, images)]) == 0
    from_images = capsys.readouterr().out
    assert main(["caption", str(trained), *map(str, images), "--features", str(tmp_path / "f.npy")]) == 0
    assert capsys.readouterr().out == from_images


def test_evaluate_then_report(trained, tmp_path, capsys):
    import shutil

    trained = shutil.copytree(trained, tmp_path / "run")  # leave the shared fixture untouched
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(trained), "--split", "test", "--no-meteor", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["scores"]["split"] == "test" and result["scores"]["method"] == "greedy"
    assert result["scores"]["num_images"] == 20 == len(result["images"])
    assert all("true" in rec and rec["references"] for rec in result["images"])
    assert "test greedy (20 images)" in capsys.readouterr().out
    (trained / "eval-test-greedy.json").write_text(out.read_text())
    assert main(["report", str(trained)]) == 0
    page = (trained / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 20
    assert (trained / "loss.png").stat().st_size > 1000
    assert result["images"][0]["caption"].replace("<", "&lt;") in page


def test_resume_continues_and_extends(trained, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    assert main(["train", "--out", str(run), "--resume", "--epochs", "3", "--no-progress"]) == 0
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3]


@pytest.mark.parametrize("command", ["demo", "train", "caption", "evaluate", "report"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0
    assert "usage: rnncap " + command in capsys.readouterr().out


def test_unknown_flag(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--out", "x", "--hiden-dim", "3"])
    assert stop.value.code == 2
    assert "unrecognized arguments: --hiden-dim" in capsys.readouterr().err


def test_wrong_flag_type(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--out", "x", "--hidden-dim", "big"])
    assert stop.value.code == 2
    assert "--hidden-dim" in capsys.readouterr().err


def test_missing_data_folder(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r")]) == 1
    assert f"data folder {tmp_path / 'nope'} does not exist" in capsys.readouterr().err


def test_config_file_with_unknown_key(tmp_path, tiny_shapes, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"train": {"batchsize": 4}}))
    assert main(["train", "--data", str(tiny_shapes), "--config", str(cfg), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "c.json" in err and "batchsize" in err


def test_resume_refuses_changed_hyperparameters(trained, capsys):
    assert main(["train", "--out", str(trained), "--resume", "--lr", "0.1"]) == 1
    assert "only --epochs may change" in capsys.readouterr().err


def test_corrupt_checkpoint(trained, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    ckpt = run / "checkpoints" / (run / "checkpoints" / "latest").read_text()
    weights = ckpt / "weights.npz"
    weights.write_bytes(weights.read_bytes()[:100])
    assert main(["caption", str(run), "--features", "x.npy"]) == 1
    err = capsys.readouterr().err
    assert "weights.npz" in err and "truncated" in err
    assert "Traceback" not in err


def test_image_that_is_not_an_image(trained, tmp_path, capsys):
    bad = tmp_path / "notes.png"
    bad.write_text("this is text, not pixels")
    assert main(["caption", str(trained), str(bad)]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "image" in err


def test_missing_image(trained, tmp_path, capsys):
    assert main(["caption", str(trained), str(tmp_path / "gone.png")]) == 1
    assert "gone.png" in capsys.readouterr().err


def _threads_after(args, tmp_path, **env_vars):
    """(exit status, BLAS threads, rnncap threads) in a fresh process after main(args),
    with no thread variables set but `env_vars`."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    code = ("import sys; from rnncap.cli import main; from threadpoolctl import threadpool_info; "
            "from rnncap.parallel import get_threads; "
            f"rc = main({args!r}); "
            "print(rc, max(p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas'), "
            "get_threads())")
    out = subprocess.run([sys.executable, "-c", code], env={**env, **env_vars}, capture_output=True,
                         text=True, cwd=tmp_path)
    return out.stdout.split() or out.stderr.strip().splitlines()[-1:]


def test_threads_default_to_the_cores_capped_and_follow_the_flag(tmp_path):
    import os

    from rnncap.parallel import default_threads

    n = str(default_threads())
    assert _threads_after(["report", "nowhere"], tmp_path) == ["1", n, n]
    if (os.cpu_count() or 1) >= 2:
        assert _threads_after(["--threads", "2", "report", "nowhere"], tmp_path) == ["1", "2", "2"]
        # A thread variable of the environment is left to BLAS; rnncap stays on one thread.
        assert _threads_after(["report", "nowhere"], tmp_path, OMP_NUM_THREADS="2") == ["1", "2", "1"]
    with pytest.raises(SystemExit, match="--threads must be >= 1"):
        main(["--threads", "0", "report", str(tmp_path)])


def test_evaluate_limit_must_be_positive(trained, capsys):
    assert main(["evaluate", str(trained), "--limit", "-1", "--no-meteor"]) == 1
    assert "--limit must be >= 1" in capsys.readouterr().err


def test_evaluate_names_a_missing_data_folder(tiny_shapes, tiny_train_flags, tmp_path, capsys):
    import shutil

    data = shutil.copytree(tiny_shapes, tmp_path / "data")
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--format", "karpathy", "--epochs", "1", "--out", str(run),
                 *tiny_train_flags]) == 0
    shutil.rmtree(data)
    assert main(["evaluate", str(run), "--no-meteor"]) == 1
    err = capsys.readouterr().err
    assert str(data) in err and "--data" in err


def test_config_file_that_is_a_folder(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path), "--config", str(tmp_path), "--out", str(tmp_path / "r")]) == 1
    assert f"config file {tmp_path} cannot be read" in capsys.readouterr().err


def test_demo_end_to_end_on_tiny_data(tiny_shapes, tmp_path, monkeypatch, capsys):
    """The demo's wiring (data, train, test evaluation, report, summary), with a tiny preset."""
    import shutil

    from rnncap import config as cfg

    shutil.copytree(tiny_shapes, tmp_path / "cache" / "shapes")
    tiny = cfg.with_overrides(cfg.DEMO, {"data": {"format": "karpathy"},
                                         "model": {"hidden_dim": 16, "wordvec_dim": 8},
                                         "train": {"num_epochs": 1, "batch_size": 50, "val_images": 5}})
    monkeypatch.setattr(cfg, "DEMO", tiny)
    args = ["demo", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "demo"), "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "test greedy (20 images)" in out and "report:" in out
    assert (tmp_path / "demo" / "report.html").is_file()
    assert main(args) == 0  # a second demo replaces the first
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    assert main(["demo", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "other")]) == 1
    assert (tmp_path / "other" / "keep.txt").read_text() == "mine"
    assert "not a demo run folder" in capsys.readouterr().err
