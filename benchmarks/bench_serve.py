"""Load test of `rnncap serve` on loopback: N requests from C concurrent clients.

Starts `rnncap serve CHECKPOINT` in a child process on a free 127.0.0.1 port, waits for /healthz,
then posts the checkpoint's own example pictures (or, without examples, a generated PNG) to
/api/caption from C client threads until N requests are done. Prints errors, requests/s and the
p50/p90/p99 latency; with --compare-batching it runs the same load twice in one go, once with
concurrent requests decoded together (the server's default) and once one at a time, alternating.

    .venv/bin/python benchmarks/bench_serve.py runs/demo --requests 200 --clients 8 --compare-batching

The numbers depend on the machine and what else runs on it; docs/performance.md records them
with the machine. This is a benchmark, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(checkpoint: str, batching: bool) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "rnncap", "serve", checkpoint, "--port", str(port),
                             "--max-batch", "32" if batching else "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.time() + 120
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited: {proc.stderr.read().decode()}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if time.time() > deadline:
            proc.kill()
            raise SystemExit("the server did not answer /healthz within 120 s")
        time.sleep(0.2)


def _pictures(url: str) -> list[bytes]:
    import httpx

    examples = httpx.get(url + "/api/examples").json()
    if examples:
        return [httpx.get(url + e["url"]).content for e in examples]
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 40, 40)).save(buf, format="PNG")
    return [buf.getvalue()]


def load(url: str, pictures: list[bytes], requests: int, clients: int, beam_size: int) -> dict:
    """Post `requests` pictures from `clients` threads; latencies and errors."""
    import httpx

    latencies, errors, lock = [], [], threading.Lock()
    counter = iter(range(requests))

    def client():
        with httpx.Client(timeout=60) as c:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                t0 = time.perf_counter()
                try:
                    r = c.post(f"{url}/api/caption?beam_size={beam_size}",
                               files={"image": ("p.png", pictures[i % len(pictures)], "image/png")})
                    ok = r.status_code == 200 and "greedy" in r.json()
                except httpx.HTTPError as err:
                    ok, r = False, err
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
                    if not ok:
                        errors.append(str(getattr(r, "status_code", r)))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = np.array(latencies) * 1000
    return {"requests": requests, "clients": clients, "errors": len(errors),
            "requests_per_s": round(requests / wall, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 1),
            "p90_ms": round(float(np.percentile(lat, 90)), 1),
            "p99_ms": round(float(np.percentile(lat, 99)), 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="checkpoint or run folder (e.g. runs/demo)")
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--beam-size", type=int, default=3)
    p.add_argument("--rounds", type=int, default=1, help="rounds per setting (alternating)")
    p.add_argument("--compare-batching", action="store_true",
                   help="also run with one request decoded at a time, alternating with batching")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    settings = [True, False] if args.compare_batching else [True]
    results = []
    for rnd in range(args.rounds):
        for batching in settings:
            proc, url = _start(args.checkpoint, batching)
            try:
                pictures = _pictures(url)
                load(url, pictures, min(20, args.requests), args.clients, args.beam_size)  # warm up
                res = load(url, pictures, args.requests, args.clients, args.beam_size)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            res.update(batching=batching, round=rnd + 1, beam_size=args.beam_size)
            results.append(res)
            print(json.dumps(res))
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump({"machine": f"{os.cpu_count()} CPUs", "results": results}, f, indent=1)
        os.replace(args.json + ".tmp", args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
