"""Progress of long loops: a tqdm bar on a terminal, plain periodic lines anywhere else.

A tqdm bar redraws itself with carriage returns, which a terminal turns into one moving line
and a log file keeps as one endless line of redraws. :func:`bar` therefore gives a tqdm bar
only when its stream is a terminal (or a notebook, where tqdm draws a widget), and otherwise a
:class:`LineProgress`, which writes one ordinary line when it starts, at most one line every
`interval` seconds while it runs, and one when it ends::

    train: 0/1560 it
    train: 412/1560 it (26%), 30 s, 13.7 it/s, loss=2.0871, epoch=1
    train: 1560/1560 it (100%), 114 s, 13.7 it/s, loss=1.2406, epoch=5

Both offer the part of tqdm's interface rnncap uses: update(n), set_postfix(**kw), close(),
and use as a context manager.

This module knows streams and clocks. It does not know what is being counted.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import IO

__all__ = ["bar", "LineProgress", "INTERVAL_S"]

#: Seconds between two progress lines in a log file.
INTERVAL_S = 30.0


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def bar(total: int, desc: str, unit: str = "it", initial: int = 0, file: IO | None = None,
        interval: float = INTERVAL_S):
    """A progress bar for `total` steps: tqdm on a terminal, periodic lines elsewhere.

    Args:
        total: steps in all.
        desc: what is counted ("train", "decoding test (greedy)").
        unit: the step's unit, after the count.
        initial: steps already done (a resumed run).
        file: the stream to write to (default: sys.stderr, tqdm's own default).
        interval: seconds between lines when the stream is not a terminal.
    """
    stream = sys.stderr if file is None else file
    if _is_terminal(stream) or "ipykernel" in sys.modules:
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=file)
    return LineProgress(total, desc, unit=unit, initial=initial, file=stream, interval=interval)


class LineProgress:
    """Progress written as whole lines: at the start, every `interval` seconds, at the end."""

    def __init__(self, total: int, desc: str, unit: str = "it", initial: int = 0,
                 file: IO | None = None, interval: float = INTERVAL_S):
        self.total, self.desc, self.unit = int(total), desc, unit
        self.n = self._start_n = int(initial)
        self.file = sys.stderr if file is None else file
        self.interval = interval
        self.postfix: dict = {}
        self._start = self._last = time.monotonic()
        self._lock = threading.Lock()  # decoding threads update one bar
        self._closed = False
        self._pending = False
        self._line()

    def _line(self) -> None:
        text = f"{self.desc}: {self.n}/{self.total} {self.unit}"
        elapsed = time.monotonic() - self._start
        if self.n > self._start_n or self._closed:
            if self.total:
                text += f" ({100 * self.n / self.total:.0f}%)"
            text += f", {elapsed:.0f} s"
            if elapsed > 0 and self.n > self._start_n:
                text += f", {(self.n - self._start_n) / elapsed:.1f} {self.unit}/s"
        if self.postfix:
            text += ", " + ", ".join(f"{k}={v}" for k, v in self.postfix.items())
        print(text, file=self.file, flush=True)

    def update(self, n: int = 1) -> None:
        with self._lock:
            self.n += n
            now = time.monotonic()
            if now - self._last >= self.interval and self.n < self.total:
                self._last = now
                if self.postfix:  # a caller that sets a postfix sets it after update():
                    self._pending = True  # the line waits for this step's values
                else:
                    self._line()

    def set_postfix(self, refresh: bool = False, **values) -> None:
        with self._lock:
            self.postfix = {k: str(v) for k, v in values.items()}
            if self._pending:
                self._pending = False
                self._line()

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._line()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
