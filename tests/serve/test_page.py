"""The page of `rnncap serve` in a real browser: Debian's Chromium driven by Playwright.

The server runs on uvicorn on a free loopback port; the browser is the system's Chromium
(`apt-get install chromium`; Playwright's own browser download is never used). Where Chromium is
missing the tests skip, unless RNNCAP_REQUIRE_BROWSER=1 (CI sets it), when they fail.
Screenshots go to RNNCAP_SCREENSHOTS (default: the test's temporary folder).
"""

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("playwright")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    if os.environ.get("RNNCAP_REQUIRE_BROWSER") == "1":
        raise RuntimeError("RNNCAP_REQUIRE_BROWSER=1 but no chromium on PATH (apt-get install -y chromium)")
    pytest.skip("no chromium on PATH (apt-get install -y chromium)", allow_module_level=True)

BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(served_run):
    import uvicorn

    from rnncap.serve.app import create_app
    from rnncap.serve.captioner import Captioner

    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(Captioner(served_run)), host="127.0.0.1",
                                        port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started:
        assert time.time() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    pg = browser.new_page(viewport={"width": 1100, "height": 800})
    pg.goto(server + "/")
    pg.wait_for_selector("#card dt:has-text('vocabulary')")
    yield pg
    pg.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = Path(os.environ.get("RNNCAP_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_page_loads_with_the_model_card(page, served_run, shots):
    from rnncap.run import restore

    r = restore(served_run)
    card = page.inner_text("#card")
    assert f"{len(r.vocab.idx_to_word)} tokens" in card
    assert f"iteration {r.checkpoint.documents['info']['iteration']}" in card
    assert page.locator("#examples img").count() > 0
    page.screenshot(path=str(shots / "page-loaded.png"))


def test_uploaded_picture_shows_its_caption_and_alternatives(page, server, tiny_shapes, shots):
    import httpx

    picture = sorted((tiny_shapes / "images" / "test").glob("*.png"))[2]
    page.select_option("#k", "4")
    page.set_input_files("#file", str(picture))
    page.wait_for_selector("#result #caption .w")
    with picture.open("rb") as f:
        api = httpx.post(server + "/api/caption?beam_size=4", files={"image": ("p.png", f, "image/png")}).json()
    words = page.locator("#caption .w").all_inner_texts()
    assert " ".join(words) == api["greedy"]["caption"]
    rows = page.locator("#beams tbody tr")
    assert rows.count() == len(api["beam"])
    assert rows.nth(0).locator("td").nth(1).inner_text().rstrip(" …") == api["beam"][0]["caption"]
    assert page.locator("#verdict").count() == 0  # an upload has no known truth
    page.screenshot(path=str(shots / "upload.png"), full_page=True)
    # a narrower beam re-asks the server
    page.select_option("#k", "1")
    page.wait_for_function("document.querySelectorAll('#beams tbody tr').length === 1")


def test_example_picture_shows_the_truth_verdict(page, server, shots):
    import httpx

    page.locator("#examples button").first.click()
    page.wait_for_selector("#verdict")
    api = httpx.post(server + "/api/caption", json={"example": 0}).json()
    expected = "true of the picture" if api["truth"] else "not true of the picture"
    assert page.inner_text("#verdict") == expected
    page.screenshot(path=str(shots / "example.png"), full_page=True)


def test_broken_file_shows_the_error_and_the_page_goes_on(page, tmp_path, tiny_shapes, shots):
    bad = tmp_path / "broken.png"
    good = sorted((tiny_shapes / "images" / "test").glob("*.png"))[0]
    bad.write_bytes(good.read_bytes()[:60])
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#error", state="visible")
    assert "broken.png" in page.inner_text("#error") or "image" in page.inner_text("#error")
    page.screenshot(path=str(shots / "error.png"), full_page=True)
    page.set_input_files("#file", str(good))
    page.wait_for_selector("#error", state="hidden")
    page.wait_for_selector("#caption .w")
