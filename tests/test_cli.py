"""The `rnncap` command end to end on a tiny dataset, and its errors."""

import json
import re

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
    assert page.count('src="data:image/png;base64,') == 20 + 2  # the images and two curves
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

    shutil.copytree(tiny_shapes, tmp_path / "cache")
    tiny = cfg.with_overrides(cfg.DEMO, {"data": {"format": "karpathy", "shapes_train_images": None,
                                                  "shapes_train_two_objects": None},
                                         "model": {"hidden_dim": 16, "wordvec_dim": 8},
                                         "train": {"num_epochs": 1, "batch_size": 50, "val_images": 5}})
    monkeypatch.setattr(cfg, "DEMO", tiny)
    args = ["demo", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "demo"), "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    label = "greedy" if cfg.DEMO_DECODE.method == "greedy" else f"beam-{cfg.DEMO_DECODE.beam_size}"
    assert f"test {label} (20 images)" in out and "report:" in out
    assert (tmp_path / "demo" / "report.html").is_file()
    config = json.loads((tmp_path / "demo" / "config.json").read_text())
    assert config["data"]["path"] == str((tmp_path / "cache").resolve())  # --cache, no level added
    # The suggested `rnncap caption` command names a test image and what the model said of it.
    images = json.loads((tmp_path / "demo" / f"eval-test-{label}.json").read_text())["images"]
    shown = next((r for r in images if r["true"]), images[0])
    verdict = "true of the image" if shown["true"] else "not true of the image"
    assert f"rnncap caption {tmp_path / 'demo'} {shown['file']}" in out
    assert f'(its test caption: "{shown["caption"]}", {verdict})' in out
    assert main(args + ["--method", "beam", "--beam-size", "2"]) == 0  # replaces the first
    out = capsys.readouterr().out
    assert "test beam-2 (20 images)" in out and (tmp_path / "demo" / "eval-test-beam-2.json").is_file()
    assert not (tmp_path / "demo" / "eval-test-greedy.json").exists()
    assert main(args + ["--beam-size", "0"]) == 1
    assert "decode.beam_size must be > 0" in capsys.readouterr().err
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    assert main(["demo", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "other")]) == 1
    assert (tmp_path / "other" / "keep.txt").read_text() == "mine"
    assert "not a demo run folder" in capsys.readouterr().err


def _help(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return capsys.readouterr().out


@pytest.mark.parametrize("command", ["demo", "train", "caption", "evaluate"])
def test_help_says_every_option_and_its_default(command, capsys):
    """Every option has help; every option that has a default value says it once, in words."""
    from rnncap.cli import build_parser

    text = _help(command, capsys)
    assert "(default: None)" not in text and "default: None" not in text
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    for action in sub._actions:
        if action.dest in ("help",) or not action.option_strings:
            continue
        assert action.help, action.option_strings
        takes_value = action.nargs != 0 and not action.required
        if takes_value:
            assert len(re.findall(r"\bdefault( there)?:", action.help)) == 1, action.help


def test_flags_accept_the_config_key_names_too(tmp_path):
    from rnncap.cli import build_parser, train_config

    parse = build_parser().parse_args
    short = train_config(parse(["train", "--out", "r", "--epochs", "3", "--lr", "0.01", "--cell", "lstm"]))
    long = train_config(parse(["train", "--out", "r", "--num-epochs", "3", "--learning-rate", "0.01",
                               "--cell-type", "lstm"]))
    assert short == long
    assert (long.train.num_epochs, long.train.learning_rate, long.model.cell_type) == (3, 0.01, "lstm")


def test_train_preset_is_the_demo_config_with_flags_and_config_on_top(tmp_path, capsys):
    from rnncap import config as cfg
    from rnncap.cli import build_parser, train_config

    assert cfg.PRESETS["shapes-demo"] is cfg.DEMO
    parse = build_parser().parse_args
    assert train_config(parse(["train", "--out", "r", "--preset", "shapes-demo"])) == cfg.DEMO
    (tmp_path / "c.json").write_text(json.dumps({"model": {"hidden_dim": 64}}))
    got = train_config(parse(["train", "--out", "r", "--preset", "shapes-demo",
                              "--config", str(tmp_path / "c.json"), "--epochs", "2"]))
    want = cfg.with_overrides(cfg.DEMO, {"model": {"hidden_dim": 64}, "train": {"num_epochs": 2}})
    assert got == want
    text = _help("train", capsys)
    assert "--preset {shapes-demo}" in text
    assert f"shapes-demo: what `rnncap demo` trains" in text
    listed = " ".join(text.split("shapes-demo: what `rnncap demo` trains on the built-in shapes "
                                 "dataset:")[-1].split())
    # The help lists every setting of the preset: those flags alone, on the defaults, make it.
    assert train_config(parse(["train", "--out", "r", *listed.split()])) == cfg.DEMO
    assert "--shapes-train-two-objects 0.9" in listed and "--init pytorch" in listed


def test_train_preset_with_resume_is_refused(trained, capsys):
    assert main(["train", "--out", str(trained), "--resume", "--preset", "shapes-demo"]) == 1
    assert "only --epochs may change (got --preset)" in capsys.readouterr().err


def test_demo_and_load_shapes_share_one_cache_folder():
    import inspect

    from rnncap.cli import SHAPES_CACHE, build_parser
    from rnncap.data import load_shapes, prepare_shapes
    from rnncap.data.shapes import DEFAULT_CACHE

    assert SHAPES_CACHE == DEFAULT_CACHE
    assert build_parser().parse_args(["demo"]).cache == DEFAULT_CACHE
    for fn in (load_shapes, prepare_shapes):
        assert inspect.signature(fn).parameters["cache_dir"].default == DEFAULT_CACHE


def test_caption_many_images_shows_progress(trained, capsys, tmp_path):
    import numpy as np

    from rnncap.run import restore

    d = restore(trained).model.params["W_proj"].shape[0]
    np.save(tmp_path / "f.npy", np.random.default_rng(0).standard_normal((120, d)).astype(np.float32))
    assert main(["caption", str(trained), "--features", str(tmp_path / "f.npy")]) == 0
    out = capsys.readouterr()
    assert len(out.out.splitlines()) == 120
    assert "captioning (greedy): 120/120 img (100%)" in out.err


def test_a_run_that_cannot_load_its_data_leaves_no_run_folder(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("not a dataset")
    assert main(["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run")]) == 1
    assert "cannot tell the data format" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
