"""The run report: its own test evaluation, a self-contained page, plain labels, limited runs."""

import json
import re
import shutil

import numpy as np
import pytest

from rnncap.cli import main
from rnncap.report import loss_figure, smooth, write_report


@pytest.fixture(scope="module")
def trained(tiny_shapes, tiny_train_flags, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    assert main(["train", "--data", str(tiny_shapes), "--format", "karpathy", "--epochs", "2",
                 "--out", str(run), *tiny_train_flags]) == 0
    return run


@pytest.fixture
def run(trained, tmp_path):
    return shutil.copytree(trained, tmp_path / "run")  # leave the shared fixture untouched


def _eval(run, *flags):
    assert main(["evaluate", str(run), "--no-meteor", *flags]) == 0


def test_report_of_a_run_without_evaluation_scores_the_whole_test_split(run, capsys):
    """The report's own evaluation path: the test split (not val), every image, announced."""
    assert not list(run.glob("eval-*.json"))
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr()
    result = json.loads((run / "eval-test-greedy.json").read_text())
    assert result["scores"]["split"] == "test"
    assert result["scores"]["num_images"] == 20 == result["scores"]["split_images"]
    assert all("/images/test/test_" in rec["file"] for rec in result["images"])
    assert "evaluating the latest checkpoint on the test split (20 images, greedy" in out.out
    assert "decoding test (greedy): 20/20 img (100%)" in out.err  # progress, as plain lines
    assert list(run.glob("eval-*.json")) == [run / "eval-test-greedy.json"]


def test_report_is_one_self_contained_file(run):
    _eval(run)
    page = write_report(run).read_text()
    sources = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert len(sources) == 20 + 2  # 20 test images, the loss and validation curves
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert not list(run.glob("*.png"))


def test_report_labels_are_words_not_keys(run):
    _eval(run)
    page = write_report(run).read_text()
    for label in ("true of the image", "BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr", "captions per batch",
                  "learning rate", "optimizer", "Training settings"):
        assert label in page, label
    text = re.sub(r"<[^>]+>", " ", re.sub(r"(?s)<style>.*</style>", "", page))  # what a reader sees
    for key in ("truth_rate", "Bleu_1", "Bleu_4", "ROUGE_L", "batch_size", "update_rule", "data_s",
                "{"):
        assert key not in text, key


def test_a_limited_evaluation_never_replaces_the_whole_split_and_is_marked(run, capsys):
    _eval(run)
    _eval(run, "--limit", "5")
    full = json.loads((run / "eval-test-greedy.json").read_text())
    limited = json.loads((run / "eval-test-greedy-first5.json").read_text())
    assert full["scores"]["num_images"] == 20 and len(full["images"]) == 20
    assert limited["scores"]["num_images"] == 5 == len(limited["images"])
    assert "the first 5 of the split's 20 images" in capsys.readouterr().out
    page = write_report(run).read_text()
    rows = re.findall(r"<tr[^>]*><td>test</td><td>greedy</td><td>([^<]*)</td>", page)
    assert rows == ["20", "5 of 20 (limited run: the first 5)"]
    assert page.count('src="data:image/png;base64,') == 20 + 2  # the grid shows the whole split


def test_a_limit_as_large_as_the_split_is_a_whole_split_run(run):
    _eval(run, "--limit", "50")
    assert [p.name for p in run.glob("eval-*.json")] == ["eval-test-greedy.json"]


def test_smooth_is_a_trailing_mean():
    np.testing.assert_allclose(smooth([1.0, 2.0, 3.0, 7.0], 2), [1.0, 1.5, 2.5, 5.0])
    np.testing.assert_allclose(smooth([4.0, 2.0, 3.0], 5), [4.0, 3.0, 3.0])
    np.testing.assert_allclose(smooth([4.0, 2.0], 1), [4.0, 2.0])


def test_loss_curve_has_a_log_axis_so_the_first_iterations_do_not_flatten_the_rest():
    import matplotlib.pyplot as plt

    loss = np.concatenate([np.linspace(60, 10, 50), np.full(950, 5.0)])
    fig = loss_figure(loss, [{"iteration": 500, "train_loss": 6.0}])
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    smoothed = ax.get_lines()[1].get_ydata()
    np.testing.assert_allclose(smoothed, smooth(loss, 20))
    plt.close(fig)


def test_attention_report_shows_each_words_map_for_the_first_test_images(tiny_shapes, tmp_path):
    """The report of an attention model draws its maps; their words are the greedy captions."""
    import re

    from rnncap.cli import main
    from rnncap.report import ATTENTION_IMAGES

    run = tmp_path / "att"
    assert main(["train", "--data", str(tiny_shapes), "--format", "karpathy", "--epochs", "1",
                 "--out", str(run), "--model", "attention", "--hidden-dim", "12", "--wordvec-dim", "8",
                 "--attention-dim", "8", "--batch-size", "50", "--val-images", "5", "--no-progress"]) == 0
    assert main(["evaluate", str(run), "--split", "test", "--no-meteor"]) == 0
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    assert "Where the model looked" in page
    section = page[page.index("Where the model looked"):]
    alts = re.findall(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+" alt="([^"]*)"', section)
    greedy = json.loads((run / "eval-test-greedy.json").read_text())["images"]
    assert alts == [rec["caption"] for rec in greedy[:ATTENTION_IMAGES]]


def test_the_summary_says_how_the_training_pictures_were_made():
    from rnncap.report import _data_text

    plain = {"path": ".cache/rnncap/shapes", "format": "shapes"}
    assert _data_text(plain) == ".cache/rnncap/shapes (shapes)"
    demo = {**plain, "shapes_train_images": 20000, "shapes_train_two_objects": 0.9,
            "shapes_train_same_colour": 0.25, "shapes_feature_stride": 1}
    assert _data_text(demo) == (".cache/rnncap/shapes (shapes); 20,000 training pictures, 90% of "
                                "the training pictures with two objects (validation and test: the "
                                "even draw), objects given one colour in 25% of the training "
                                "pictures, feature stride 1")
