"""Tests for rnncap.metrics against pycocoevalcap's own scorers and hand-computed values.

The oracle is pycocoevalcap called directly, the way its COCOEvalCap.evaluate
calls it (PTB tokenizer, then Bleu(4), Meteor(), Rouge(), Cider() on
{image: [tokenized caption]} dicts). Java-backed tests are skipped without
`java`; METEOR starts a JVM (~10 s), so only one is started here and reused.
"""

import math
import shutil
import warnings

import pytest

from rnncap import metrics
from rnncap.metrics import evaluate_captions, format_scores, python_tokenize

needs_java = pytest.mark.skipif(
    shutil.which("java") is None,
    reason="`java` is not on PATH: the PTB tokenizer and METEOR need it")

CANDIDATES = [
    "A man riding a horse on the beach.",
    "two dogs are playing with a frisbee",
    "A kitchen with a stove, a sink and a fridge.",
    "a cat's toy on the bed",
    "",
    "<UNK> <UNK> <UNK>",
]
REFERENCES = [
    ["A man rides a brown horse along the beach.", "A person riding a horse on sand.",
     "a man on a horse near the ocean"],
    ["Two dogs play with a frisbee in the park.", "Dogs playing frisbee on the grass"],
    ["A kitchen that has a stove, a sink, and a refrigerator.",
     "a small kitchen with white cabinets"],
    ["A toy on a bed.", "The cat's toy is lying on the bed."],
    ["A bus parked on the side of the road.", "a city bus at a stop"],
    ["A plate of food with broccoli.", "Broccoli and rice on a plate."],
]


def oracle_scores(gts, res, meteor=None):
    """pycocoevalcap's scorers called directly on already tokenized dicts."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    bleu = Bleu(4).compute_score(gts, res, verbose=0)[0]
    out = dict(zip(["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"], bleu))
    out["ROUGE_L"] = Rouge().compute_score(gts, res)[0]
    out["CIDEr"] = Cider().compute_score(gts, res)[0]
    if meteor is not None:
        out["METEOR"] = meteor.compute_score(gts, res)[0]
    return out


def as_coco(captions_by_image):
    return {k: [{"caption": c} for c in v] for k, v in captions_by_image.items()}


# --------------------------------------------------------------------------- Java path

@needs_java
def test_java_path_equals_pycocoevalcap_own_pipeline():
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    ours = evaluate_captions(CANDIDATES, REFERENCES, split="val", method="beam-3", use_java=True)
    tok = PTBTokenizer()  # as COCOEvalCap.evaluate: gts and res tokenized separately
    gts = tok.tokenize(as_coco({i: r for i, r in enumerate(REFERENCES)}))
    res = tok.tokenize(as_coco({i: [c] for i, c in enumerate(CANDIDATES)}))
    # The oracle asks the same running meteor-1.5.jar (a second JVM costs ~10 s);
    # what is independent is everything we feed it: tokens, dict layout, order.
    expected = oracle_scores(gts, res, metrics._meteor_scorer())
    assert ours["tokenizer"] == "ptb-java"
    for key, value in expected.items():
        assert ours[key] == pytest.approx(value, abs=1e-12), key
    assert set(ours) >= set(metrics.COCO_METRICS)
    assert ours["omitted"] == {"SPICE": metrics.SPICE_OMITTED}
    # an empty and an all-<UNK> caption are scored, not crashed on
    assert 0.0 < ours["METEOR"] < 1.0 and math.isfinite(ours["CIDEr"])


@needs_java
def test_java_path_survives_all_empty_captions_with_meteor():
    out = evaluate_captions(["", "<UNK>", " "], [["a dog"], ["a cat sits"], ["two birds"]],
                            split="test", method="greedy", use_java=True)
    for key in metrics.COCO_METRICS:
        assert out[key] == pytest.approx(0.0, abs=1e-6), key


@needs_java
def test_python_tokenizer_matches_java_ptb_on_captions():
    texts = CANDIDATES + [r for refs in REFERENCES for r in refs] + [
        "It's a dog, isn't it?", "They're riding; we'll see: he'd go, I'm here, you've won.",
        "I cannot go. Gonna wanna", "horses... running", "e.g. Mr. Smith at 3.5 o'clock",
        "1,000 people and 50% of $5 & #1 a+b a/b", "\"quoted\" and 'single' quotes",
        "what?! ok! no!!", "a black-and-white photo -- of a dog - alone", "(big) [box] {curly}",
        "U.S. flag.", "the dogs' bowls", "rock 'n' roll", "A MAN ON A SKATEBOARD DOING A TRICK",
        "a man in a red shirt, holding an umbrella.", "Two giraffes standing next to each other.",
    ]
    java = metrics.ptb_tokenize({i: [t] for i, t in enumerate(texts)})
    for i, t in enumerate(texts):
        assert python_tokenize(t) == java[i][0], t


@needs_java
def test_ptb_tokenize_keeps_captions_aligned_across_odd_line_breaks():
    # Raw pycocoevalcap would read "\r" as a new line and shift "two cats" away.
    out = metrics.ptb_tokenize({1: ["a dog\rruns fast"], 2: ["two cats\u2028x"], 3: ["end"]})
    assert out == {1: ["a dog runs fast"], 2: ["two cats x"], 3: ["end"]}


# --------------------------------------------------------------------------- Python path

def test_python_path_equals_pycocoevalcap_scorers_and_omits_meteor():
    ours = evaluate_captions(CANDIDATES, REFERENCES, split="test", method="greedy", use_java=False)
    gts = {i: [python_tokenize(r) for r in refs] for i, refs in enumerate(REFERENCES)}
    res = {i: [python_tokenize(c)] for i, c in enumerate(CANDIDATES)}
    for key, value in oracle_scores(gts, res).items():
        assert ours[key] == pytest.approx(value, abs=1e-12), key
    assert "METEOR" not in ours and "METEOR" in ours["omitted"] and "SPICE" in ours["omitted"]
    assert (ours["split"], ours["method"], ours["num_images"], ours["tokenizer"]) == \
        ("test", "greedy", 6, "python")


def test_python_tokenizer_by_hand():
    assert python_tokenize("A Man's HAT, isn't it red?!") == "a man 's hat is n't it red ?!"
    assert python_tokenize("  Two\tdogs...\n") == "two dogs"
    assert python_tokenize("<UNK> <unk>.") == "<unk> <unk>"
    assert python_tokenize("") == "" and python_tokenize(" . , ") == ""


def test_identical_captions_score_bleu_one_rouge_one_cider_ten():
    caps = ["a man riding a brown horse", "two dogs playing with a red frisbee",
            "a small kitchen with white cabinets"]
    out = evaluate_captions(caps, [[c] for c in caps], split="val", method="greedy",
                            use_java=False)
    for n in range(1, 5):  # pycocoevalcap smooths with 1e-9, hence not exactly 1
        assert out[f"Bleu_{n}"] == pytest.approx(1.0, abs=1e-6)
    assert out["ROUGE_L"] == pytest.approx(1.0, abs=1e-12)
    # CIDEr-D: cosine 1 for every n-gram order, no length penalty, times 10
    assert out["CIDEr"] == pytest.approx(10.0, abs=1e-9)


def test_bleu1_and_rouge_l_by_hand():
    cand, ref = "a cat sat on the mat", "the cat sat on a red mat"
    out = evaluate_captions([cand], [[ref]], split="val", method="greedy", use_java=False)
    # all 6 candidate words occur in the reference; brevity penalty exp(1 - 7/6)
    assert out["Bleu_1"] == pytest.approx(math.exp(1 - 7 / 6), abs=1e-8)
    # longest common subsequence "cat sat on mat" = 4; P = 4/6, R = 4/7, beta = 1.2
    p, r, b2 = 4 / 6, 4 / 7, 1.2 ** 2
    assert out["ROUGE_L"] == pytest.approx((1 + b2) * p * r / (r + b2 * p), abs=1e-12)


def test_dict_inputs_score_like_lists():
    keys = [f"img{i}" for i in range(len(CANDIDATES))][::-1]
    as_dict = evaluate_captions(dict(zip(keys, CANDIDATES)), dict(zip(keys, REFERENCES)),
                                split="val", method="greedy", use_java=False)
    as_list = evaluate_captions(CANDIDATES, REFERENCES, split="val", method="greedy",
                                use_java=False)
    for key in ("Bleu_4", "ROUGE_L", "CIDEr"):
        assert as_dict[key] == pytest.approx(as_list[key], abs=1e-12)


def test_missing_java_warns_once_and_falls_back(monkeypatch):
    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)
    monkeypatch.setattr(metrics, "_warned_no_java", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = evaluate_captions(["a dog"], [["a dog runs"]], split="val", method="greedy")
        evaluate_captions(["a dog"], [["a dog runs"]], split="val", method="greedy")
    assert len([w for w in caught if "METEOR is left out" in str(w.message)]) == 1
    assert a["tokenizer"] == "python" and a["omitted"]["METEOR"] == metrics.METEOR_NO_JAVA
    with pytest.raises(RuntimeError, match="use_java=True"):
        evaluate_captions(["a dog"], [["a dog runs"]], split="val", method="greedy",
                          use_java=True)


def test_bad_inputs_raise_clear_errors():
    kw = dict(split="val", method="greedy", use_java=False)
    with pytest.raises(ValueError, match="2 candidates but 1 reference"):
        evaluate_captions(["a", "b"], [["a"]], **kw)
    with pytest.raises(ValueError, match="references for image 0"):
        evaluate_captions(["a"], [[]], **kw)
    with pytest.raises(ValueError, match="references for image 0"):
        evaluate_captions(["a"], ["a dog"], **kw)
    with pytest.raises(TypeError, match="candidate for image 0"):
        evaluate_captions([None], [["a"]], **kw)
    with pytest.raises(ValueError, match="different images"):
        evaluate_captions({1: "a"}, {2: ["a"]}, **kw)
    with pytest.raises(TypeError, match="both be dicts"):
        evaluate_captions({1: "a"}, [["a"]], **kw)
    with pytest.raises(ValueError, match="empty"):
        evaluate_captions([], [], **kw)


def test_format_scores_names_split_method_and_count():
    line = format_scores({"split": "test", "method": "beam-5", "num_images": 3,
                          "Bleu_4": 0.25, "CIDEr": 1.5, "truth_rate": 0.5})
    assert line == "test beam-5 (3 images): BLEU-4 0.250 CIDEr 1.500 truth 0.500"


# --------------------------------------------------------------------------- shapes truth

def _scene():
    return [{"shape": "circle", "colour": "red", "size": "large", "row": 0, "col": 0},
            {"shape": "square", "colour": "blue", "size": "small", "row": 2, "col": 2}]


def test_truth_rate_beside_coco_metrics():
    pytest.importorskip("rnncap.data.truth", reason="the data package's truth check")
    caps = ["a large red circle and a small blue square",   # true
            "a red circle above a blue square",              # true: row 0 above row 2
            "a green triangle",                              # false: no such object
            "<UNK> <UNK>"]                                   # unparseable: not true
    refs = [["a big red circle and a small blue square"]] * 4
    out = evaluate_captions(caps, refs, split="test", method="greedy", truths=[_scene()] * 4,
                            use_java=False)
    assert out["truth_rate"] == pytest.approx(0.5, abs=1e-12)
    assert metrics.caption_is_true(caps[0], _scene()) is True
    assert metrics.caption_is_true(caps[2], _scene()) is False
    by_key = evaluate_captions({"b": caps[2], "a": caps[0]}, {"a": refs[0], "b": refs[0]},
                               split="test", method="greedy", use_java=False,
                               truths={"a": _scene(), "b": [_scene()[1]]})
    assert by_key["truth_rate"] == pytest.approx(0.5, abs=1e-12)
    with pytest.raises(ValueError, match="truths"):
        evaluate_captions(caps, refs, split="test", method="greedy", truths=[_scene()],
                          use_java=False)


def test_importing_metrics_and_decode_loads_no_optional_dependency():
    import subprocess
    import sys
    code = ("import sys, rnncap.metrics, rnncap.decode; "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('pycocoevalcap', 'h5py', 'PIL', 'matplotlib', 'tqdm')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_references_without_words_leave_cider_out_instead_of_failing():
    """pycocoevalcap's CIDEr fails with 'max() arg is an empty sequence' when no reference has a word."""
    from rnncap.metrics import evaluate_captions

    scores = evaluate_captions(["a red circle", ""], [[""], ["", " "]], split="val", method="greedy",
                               use_java=False, meteor=False)
    assert "CIDEr" not in scores and scores["omitted"]["CIDEr"] == "every reference caption is empty"
    assert scores["Bleu_1"] < 1e-9  # pycocoevalcap smooths with a tiny epsilon
