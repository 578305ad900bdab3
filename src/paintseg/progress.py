"""Progress output that reads well in a log: when stderr is not a terminal, tqdm's redrawn bars (a ``\\r`` per
update, hundreds of kilobytes in a redirected log) become one plain line per 10 % of a bar, plus its last state.

``plain_lines()`` is installed by the CLI when stderr is not a terminal; every ``tqdm(...)`` in paintseg and the
libraries it calls then writes through :class:`LineWriter`.
"""

from __future__ import annotations

import re
import sys
import time
from functools import partialmethod
from typing import TextIO

PERCENT = re.compile(r"(\d+)%\|")


class LineWriter:
    """A file for tqdm that turns its ``\\r``-redrawn status into whole lines: one when a bar passes another
    ``step`` percent (or, for a bar without a total, every ``every`` seconds) and one when it closes."""

    def __init__(self, out: TextIO | None = None, step: int = 10, every: float = 60.0):
        self._out, self.step, self.every = out, step, every
        self.last = ""  # the latest status
        self.written = ""  # the latest line written
        self.bucket: tuple[str, int] | None = None  # (bar description, percent // step) of the latest line
        self.when = 0.0

    def write(self, text: str) -> int:
        for part in text.replace("\n", "\r").split("\r"):
            if part.strip():
                self._status(part.strip())
        if "\n" in text and self.last:  # tqdm ends a closed bar with a newline: its final state
            self._emit(self.last)
        return len(text)

    def _status(self, status: str) -> None:
        self.last = status
        m = PERCENT.search(status)
        if m:
            bucket = (status.split(":", 1)[0], int(m.group(1)) // self.step)
            if bucket != self.bucket:
                self.bucket = bucket
                self._emit(status)
        elif time.monotonic() - self.when >= self.every:
            self._emit(status)

    @property
    def out(self) -> TextIO:
        return self._out or sys.stderr  # the stderr of the moment (a test runner swaps it)

    def _emit(self, status: str) -> None:
        if status != self.written:
            self.out.write(status + "\n")
            self.out.flush()
            self.written = status
        self.when = time.monotonic()

    def flush(self) -> None:
        self.out.flush()

    def isatty(self) -> bool:
        return False


_installed = False


def plain_lines() -> None:
    """Make every tqdm bar created from now on write plain lines to stderr (once per process)."""
    global _installed
    if _installed:
        return
    from tqdm import tqdm

    tqdm.__init__ = partialmethod(tqdm.__init__, file=LineWriter(), ascii=True, ncols=100, mininterval=1.0)
    _installed = True
