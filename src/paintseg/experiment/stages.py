"""The stage executor of ``paintseg run``: :class:`Stages` runs each stage into its own folder unless it is complete,
records its time and peak memory and estimates the time left; :func:`settings_hash` (of
:func:`paintseg.config.recipe`'s fields) makes the cache key of a stage from the settings that decide its output."""

from __future__ import annotations

import hashlib
import json
import statistics
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from paintseg.files import write_text


def settings_hash(*parts: Any) -> str:
    """A short, stable hash of JSON-able settings (keys sorted, paths as strings)."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:10]


class PeakMemory:
    """Peak resident memory of this process while the block runs, sampled every ``interval`` seconds."""

    def __init__(self, interval: float = 0.05):
        import psutil

        self._process, self.interval = psutil.Process(), interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakMemory":
        self.peak = self._process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def mb(self) -> float:
        return round(self.peak / 2**20, 1)


class Stages:
    """Runs stages into EXP/stages/<name>-<hash>/, skipping complete ones, and records time and peak memory.

    With ``planned`` (the kinds of the stages the run will pass through, :func:`planned_stages`) every stage line
    says "stage N/M" and an estimate of the time left that only counts what was measured: each stage still to come
    takes as long as the stages of its kind (its name's first word: train, evaluate, paint, ...) took on average in
    this call, or its ``priors`` entry (seconds; e.g. the painter's budget in minutes); stages of a kind neither
    measured nor known are counted, not guessed ("+ 24 not timed yet: train, evaluate"), so the estimate does not
    jump when a slow kind is first measured."""

    def __init__(self, exp: Path, progress: bool = True, planned: list[str] | None = None, tag: str = "",
                 priors: dict[str, float] | None = None, lines: bool | None = None):
        """``progress``: the stages' progress bars; ``lines`` (default: as ``progress``): a line per stage."""
        self.exp, self.root, self.progress, self.tag = exp, exp / "stages", progress, tag
        self.lines = progress if lines is None else lines
        self.records: list[dict] = []
        self.upcoming = list(planned or [])  # the kinds of the stages still to run (see estimate_left)
        self.total = len(self.upcoming) or None
        self.priors = dict(priors or {})

    def folder(self, name: str, key: str) -> Path:
        return self.root / f"{name}-{key}"

    def keyed(self, name: str, keys: dict[int, str]) -> str:
        """The key of a stage whose key rule changed: ``keys`` maps key-rule versions to the key each gives. The
        newest rule's key, unless only a folder of an older rule is complete: a finished stage (and, through its key,
        every stage after it) is reused, not redone, while new experiments get the newest rule."""
        newest = keys[max(keys)]
        for version in sorted(keys, reverse=True):
            if (self.folder(name, keys[version]) / "stage.json").is_file():
                return keys[version]
        return newest

    def estimate_left(self) -> tuple[float, dict[str, int]]:
        """Seconds the stages in ``upcoming`` (this one included) will take, from the stages this call ran and the
        priors, and how many upcoming stages of each kind that neither covers are left out."""
        by_kind: dict[str, list[float]] = {}
        for r in self.records:
            if not r["cached"]:
                by_kind.setdefault(r["stage"].split()[0], []).append(r["seconds"])
        seconds, untimed = 0.0, {}
        for kind in self.upcoming:
            if kind in by_kind:
                seconds += statistics.fmean(by_kind[kind])
            elif kind in self.priors:
                seconds += self.priors[kind]
            else:
                untimed[kind] = untimed.get(kind, 0) + 1
        return seconds, untimed

    def _position(self) -> str:
        n = len(self.records) + 1
        if not self.total:
            return f"{n}"
        seconds, untimed = self.estimate_left()
        text = f"{n}/{self.total}"
        if sum(untimed.values()) == len(self.upcoming):  # nothing of what is left was measured or is known
            return text + (f", {len(self.upcoming)} not timed yet: {', '.join(untimed)}"
                           if any(not r["cached"] for r in self.records) else "")
        text += f", about {_duration(seconds)} left"
        if untimed:
            text += f" + {sum(untimed.values())} not timed yet: {', '.join(untimed)}"
        return text

    def run(self, name: str, folder: Path, work: Callable[[], Any]) -> dict:
        """``work()`` fills ``folder`` unless ``folder/stage.json`` says it is complete; returns the stage record."""
        marker = folder / "stage.json"
        rel = _rel(folder, self.exp)
        count = f" {len(self.records) + 1}/{self.total}" if self.total else ""
        line = (f"[cached{count}] {name}  ({rel})" if marker.is_file()
                else f"[stage {self._position()}] {name}  -> {rel}")
        self._say(line)
        if self.upcoming and self.upcoming[0] == name.split()[0]:
            self.upcoming.pop(0)
        if marker.is_file():
            record = dict(json.loads(marker.read_text()), cached=True)
        else:
            folder.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            with PeakMemory() as memory:
                work()
            record = {"stage": name, "folder": rel, "seconds": round(time.perf_counter() - start, 2),
                      "peak_rss_mb": memory.mb, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            write_text(marker, json.dumps(record, indent=1) + "\n")
            record = dict(record, cached=False)
            self._say(f"[done]  {name}  {record['seconds']:.1f} s, peak {record['peak_rss_mb']:.0f} MB")
        self.records.append(record)
        return record

    def _say(self, text: str) -> None:
        if self.lines:
            print(f"{self.tag}{text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------- stages

def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _rel(path: Path, exp: Path) -> str:
    return str(path.relative_to(exp)) if path.is_relative_to(exp) else str(path.resolve())
