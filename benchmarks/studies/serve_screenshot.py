"""The screenshot of `rnncap serve`'s page in docs/serve.png, made from a run folder.

Starts `rnncap serve RUN` on 127.0.0.1 on a free port, opens the page in Debian's Chromium
through Playwright (the system browser, `apt-get install chromium`; Playwright's own browser
download is never used), clicks one of the model's own test pictures, waits until its greedy
caption, the truth verdict and the beam alternatives are shown, saves a screenshot of the whole
page and stops the server.

    .venv/bin/python benchmarks/studies/serve_screenshot.py runs/demo --out docs/serve.png

The run folder must have its dataset on disk where it was trained (the page offers its test
pictures only then). The model card shows the run as it is, the data path it was trained on
included. This script knows the page's element ids; not models.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

# The flags of tests/serve/test_page.py: Chromium in a container, with nothing fetched from outside.
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, server: subprocess.Popen, timeout: float) -> None:
    """Poll `url` until it answers 200; fail if the server exits or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            raise SystemExit(f"rnncap serve exited with status {server.returncode} before it answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"rnncap serve did not answer {url} within {timeout:.0f} s")
        time.sleep(0.2)


def screenshot(base: str, out: Path, *, example: int, beam_size: int, width: int, height: int) -> str:
    """Caption example `example` on the page at `base` and save the page; returns the caption shown."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("no chromium on PATH (apt-get install -y chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(base + "/")
            page.wait_for_selector("#card dt:has-text('vocabulary')")
            buttons = page.locator("#examples button")
            buttons.first.wait_for()
            if not 0 <= example < buttons.count():
                raise SystemExit(f"--example {example}: the page offers {buttons.count()} test pictures")
            page.select_option("#k", str(beam_size))
            buttons.nth(example).click()
            page.wait_for_selector("#verdict")
            page.wait_for_function(f"document.querySelectorAll('#beams tbody tr').length === {beam_size}")
            page.wait_for_function("document.getElementById('picture').complete")
            caption = " ".join(page.locator("#caption .w").all_inner_texts())
            verdict = page.inner_text("#verdict")
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), full_page=True)
        finally:
            browser.close()
    return f"{caption} ({verdict})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="run folder (or checkpoint) to serve")
    ap.add_argument("--out", default="docs/serve.png", help="the PNG to write")
    ap.add_argument("--example", type=int, default=1, help="which of the page's test pictures to caption (0-based)")
    ap.add_argument("--beam-size", type=int, default=3, help="beam width chosen on the page")
    ap.add_argument("--width", type=int, default=1100, help="browser window width (CSS pixels)")
    ap.add_argument("--height", type=int, default=800, help="browser window height; the whole page is saved")
    ap.add_argument("--timeout", type=float, default=120, help="seconds to wait for the server to start")
    args = ap.parse_args(argv)

    port = free_port()
    rnncap = [sys.executable, "-m", "rnncap", "serve", args.run, "--host", "127.0.0.1", "--port", str(port)]
    env = dict(os.environ, OPENBLAS_NUM_THREADS=os.environ.get("OPENBLAS_NUM_THREADS", "1"))
    server = subprocess.Popen(rnncap, env=env, stdout=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base + "/healthz", server, args.timeout)
        shown = screenshot(base, Path(args.out), example=args.example, beam_size=args.beam_size,
                           width=args.width, height=args.height)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    print(f"{args.out}: example {args.example}, beam width {args.beam_size}: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
