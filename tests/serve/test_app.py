"""The JSON API of `rnncap serve`, through FastAPI's TestClient."""

import io
import json
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from rnncap.serve.app import create_app  # noqa: E402
from rnncap.serve.captioner import Batcher, Captioner, Limits  # noqa: E402


@pytest.fixture(scope="module")
def captioner(served_run):
    return Captioner(served_run, Limits(max_upload_bytes=200_000, max_pixels=250_000))


@pytest.fixture(scope="module")
def client(captioner):
    with TestClient(create_app(captioner)) as c:
        yield c


@pytest.fixture(scope="module")
def test_images(tiny_shapes):
    return sorted((tiny_shapes / "images" / "test").glob("*.png"))


def _post_image(client, path, beam_size=3, name=None, ctype="image/png"):
    data = Path(path).read_bytes() if not isinstance(path, bytes) else path
    return client.post(f"/api/caption?beam_size={beam_size}",
                       files={"image": (name or "pic.png", data, ctype)})


def _cli_captions(run, images, method="greedy", beam_size=3):
    """The captions `rnncap caption` prints, the reference the server must agree with."""
    import contextlib

    from rnncap.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["caption", str(run), *map(str, images), "--json", "--method", method,
                     "--beam-size", str(beam_size)]) == 0
    return [json.loads(line)["caption"] for line in out.getvalue().splitlines()]


def test_health_and_model_card(client, captioner, served_run):
    assert client.get("/healthz").json() == {"status": "ok"}
    card = client.get("/api/model").json()
    ckpt = captioner.restored.checkpoint
    assert card["vocabulary_size"] == len(captioner.restored.vocab.idx_to_word)
    assert card["iteration"] == ckpt.documents["info"]["iteration"] > 0
    assert card["model"]["cell_type"] == "lstm" and card["model"]["hidden_dim"] == 16
    assert card["backbone"]["name"] == captioner.extractor.name
    assert card["trained_on"]["format"] == "karpathy"
    assert card["attention"] is False
    assert "/api/caption" in client.get("/openapi.json").json()["paths"]


def test_page_is_served(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'id="drop"' in r.text and "/api/caption" in r.text


def test_uploaded_picture_gets_the_cli_captions(client, served_run, test_images):
    for path in test_images[:3]:
        r = _post_image(client, path, beam_size=2)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["greedy"]["caption"] == _cli_captions(served_run, [path])[0]
        assert body["beam_size"] == 2 and 1 <= len(body["beam"]) <= 2
        assert body["beam"][0]["caption"] == _cli_captions(served_run, [path], "beam", 2)[0]
        logprobs = [h["logprob"] for h in body["beam"]]
        assert logprobs == sorted(logprobs, reverse=True)  # no length penalty: best first
        assert body["truth"] is None  # an upload's truth is unknown


def test_greedy_logprob_is_the_sum_of_its_steps(client, captioner, test_images):
    """Recompute the greedy caption's log-probability word by word through model.step."""
    from rnncap.data.features import extract_files

    body = _post_image(client, test_images[0]).json()
    model, vocab = captioner.model, captioner.restored.vocab
    ids = [vocab.word_to_idx[w] for w in body["greedy"]["caption"].split()] + [model.word_to_idx["<END>"]]
    state = model.init_state(extract_files(captioner.extractor, [str(test_images[0])]).astype(model.dtype))
    prev, total = model.word_to_idx["<START>"], 0.0
    for tok in ids:
        logp, state = model.step(np.array([prev]), state)
        total += float(logp[0, tok])
        prev = tok
    assert body["greedy"]["logprob"] == pytest.approx(total, abs=1e-3)


def test_example_pictures_come_with_a_truth_verdict(client, captioner):
    from rnncap.data.truth import caption_is_true

    examples = client.get("/api/examples").json()
    assert len(examples) == len(captioner.examples) > 0
    png = client.get(examples[0]["url"])
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    for ex in examples[:3]:
        body = client.post("/api/caption", json={"example": ex["id"]}).json()
        objects = captioner.examples[ex["id"]]["objects"]
        assert body["truth"] == bool(caption_is_true(body["greedy"]["caption"], objects))
        assert body["example"] == ex["id"]
    assert client.get("/api/examples/999.png").status_code == 404


def test_json_features_give_the_same_captions_as_the_picture(client, captioner, test_images):
    from rnncap.data.features import extract_files

    feats = extract_files(captioner.extractor, [str(test_images[1])])[0]
    by_features = client.post("/api/caption", json={"features": feats.tolist()}).json()
    by_picture = _post_image(client, test_images[1]).json()
    assert by_features["greedy"] == by_picture["greedy"]
    assert by_features["beam"] == by_picture["beam"]


def _png(w, h):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("case,status,words", [
    ("too big", 413, "limit"),
    ("not an image", 400, "not an image"),
    ("truncated", 400, ""),
    ("empty", 400, "empty"),
    ("too many pixels", 400, "pixels"),
    ("text content type", 415, "not an image"),
    ("plain text body", 415, "not accepted"),
    ("bad features", 400, "features"),
    ("bad example", 400, "example"),
    ("bad json", 400, "JSON"),
    ("beam too wide", 422, ""),
])
def test_bad_requests_are_refused_plainly_and_the_server_goes_on(client, test_images, case, status, words):
    good = test_images[0].read_bytes()
    if case == "too big":
        r = _post_image(client, good + b"\0" * 250_000)
    elif case == "not an image":
        r = _post_image(client, b"hello, I am not a picture" * 10)
    elif case == "truncated":
        r = _post_image(client, good[: len(good) // 2])
    elif case == "empty":
        r = _post_image(client, b"")
    elif case == "too many pixels":
        r = _post_image(client, _png(600, 600))  # 360,000 > the fixture's 250,000
    elif case == "text content type":
        r = _post_image(client, good, ctype="text/plain")
    elif case == "plain text body":
        r = client.post("/api/caption", content=b"hello", headers={"content-type": "text/plain"})
    elif case == "bad features":
        r = client.post("/api/caption", json={"features": [1.0, 2.0]})
    elif case == "bad example":
        r = client.post("/api/caption", json={"example": 10_000})
    elif case == "bad json":
        r = client.post("/api/caption", content=b"{not json", headers={"content-type": "application/json"})
    else:
        r = _post_image(client, good, beam_size=99)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, (str, list)) and words.lower() in str(detail).lower()
    assert "Traceback" not in r.text
    assert client.get("/healthz").status_code == 200
    assert _post_image(client, good).status_code == 200  # still serving


def test_uploads_leave_nothing_behind(client, test_images, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    for data in (test_images[0].read_bytes(), b"garbage", test_images[0].read_bytes()[:100]):
        _post_image(client, data)
    assert list(tmp_path.iterdir()) == []


def test_concurrent_requests_each_get_their_own_captions(client, test_images):
    alone = {p: _post_image(client, p).json() for p in test_images[:6]}
    results, errors = {}, []

    def worker(i):
        p = test_images[i % 6]
        try:
            results[i] = (p, _post_image(client, p).json())
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 24
    for p, body in results.values():
        assert body == alone[p]


def test_batcher_decodes_together_what_it_would_decode_alone():
    calls = []

    def decode(features, k):
        calls.append(len(features))
        return [{"row": float(f.sum()), "k": k} for f in features]

    b = Batcher(decode)
    try:
        out = [None] * 10
        threads = [threading.Thread(target=lambda i=i: out.__setitem__(
            i, b.submit(np.full((1, 2), i, np.float32), 1 + i % 2))) for i in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert out == [{"row": 2.0 * i, "k": 1 + i % 2} for i in range(10)]
        assert sum(calls) == 10
    finally:
        b.close()


def test_batcher_passes_a_decoding_error_to_the_request():
    def decode(features, k):
        raise ValueError("boom")

    b = Batcher(decode)
    try:
        with pytest.raises(ValueError, match="boom"):
            b.submit(np.zeros((1, 2)), 1)
    finally:
        b.close()


def _coffee_jpeg() -> bytes:
    import io as _io

    skdata = pytest.importorskip("skimage.data")
    from PIL import Image

    photo = Image.open(Path(skdata.__file__).parent / "coffee.png").convert("RGB").resize((300, 200))
    buf = _io.BytesIO()
    photo.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_a_photo_is_flagged_as_unlike_the_training_pictures(client, test_images):
    """The checkpoint's training-feature statistics (rnncap.ood) reach the API and the page."""
    body = _post_image(client, _coffee_jpeg(), name="coffee.jpg", ctype="image/jpeg").json()
    assert body["out_of_distribution"] is True
    assert body["warning"].startswith("this picture looks unlike the images this model was trained on")
    shapes = _post_image(client, test_images[0]).json()
    assert isinstance(shapes["out_of_distribution"], bool)


@pytest.fixture(scope="module")
def attention_client(served_attention_run):
    captioner = Captioner(served_attention_run)
    with TestClient(create_app(captioner)) as c:
        yield c, captioner


def test_attention_model_says_where_it_looked_for_each_word(attention_client, test_images):
    from rnncap.data.features import extract_files

    client, captioner = attention_client
    assert client.get("/api/model").json()["attention"] is True
    body = _post_image(client, test_images[0]).json()
    words = body["greedy"]["caption"].split()
    assert body["grid"] == [3, 3]
    assert len(body["attention"]) == len(words) > 0
    # the same weights, recomputed by teacher forcing the caption through the model
    model, vocab = captioner.model, captioner.restored.vocab
    grid = extract_files(captioner.extractor, [str(test_images[0])], grid=True).astype(model.dtype)
    tokens = np.array([[vocab.word_to_idx[w] for w in words] + [model.word_to_idx["<END>"]]])
    expected = model.attention_weights(grid, tokens)[0, :len(words)]
    np.testing.assert_allclose(body["attention"], expected, atol=1e-4)
    np.testing.assert_allclose(np.sum(body["attention"], axis=1), 1.0, atol=1e-3)
    # grid features sent as JSON give the same answer; a pooled vector is refused by shape
    by_features = client.post("/api/caption", json={"features": grid[0].tolist()}).json()
    assert by_features["greedy"] == body["greedy"] and by_features["attention"] == body["attention"]
    r = client.post("/api/caption", json={"features": grid[0, 0].tolist()})
    assert r.status_code == 400 and "grid" in r.json()["detail"]


def test_an_attention_model_flags_a_photo_too(attention_client, test_images):
    """An attention checkpoint keeps statistics of its grids' cell means: a photo gets the warning."""
    client, captioner = attention_client
    assert captioner.restored.feature_stats.info["summary"] == "mean over grid cells"
    body = _post_image(client, _coffee_jpeg(), name="coffee.jpg", ctype="image/jpeg").json()
    assert body["out_of_distribution"] is True and body["attention"] is not None
    assert body["warning"].startswith("this picture looks unlike the images this model was trained on")
    shapes = _post_image(client, test_images[0]).json()
    assert isinstance(shapes["out_of_distribution"], bool)
    assert (shapes["warning"] is None) == (not shapes["out_of_distribution"])


def test_pooled_model_has_no_attention(client, test_images):
    body = _post_image(client, test_images[0]).json()
    assert body["attention"] is None and body["grid"] is None
