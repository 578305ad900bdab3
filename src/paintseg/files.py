"""Atomic file writes (no torch import, so configs and episodes can use them): write to a temporary name in the same
folder, then rename, so a killed process never leaves half a file under the real name."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` (parent folders created) through ``.NAME.partial``."""
    return write_bytes(path, text.encode())


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` (parent folders created) through ``.NAME.partial``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def save_png(path: str | Path, array: np.ndarray) -> Path:
    """Save an image array as PNG at ``path`` (parent folders created) through ``.NAME.partial``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    Image.fromarray(array).save(tmp, format="PNG")
    os.replace(tmp, path)
    return path


def append_jsonl(path: str | Path, records: Iterable[dict]) -> Path:
    """Append one JSON line per record to ``path`` in a single write, flushed and fsync'ed. A tail that a killed
    writer left without its newline (a torn last line) is cut off first, so every line in the file stays whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in records)
    with open(path, "a+b") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        if size:
            f.seek(size - 1)
            if f.read(1) != b"\n":  # torn tail: back to the end of the last whole line
                f.seek(0)
                data = f.read()
                f.truncate(data.rfind(b"\n") + 1)
        f.seek(0, os.SEEK_END)
        f.write(text.encode())
        f.flush()
        os.fsync(f.fileno())
    return path


def read_jsonl(path: str | Path) -> list[dict]:
    """The JSON objects of a JSON-lines file ([] when it does not exist yet; blank lines skipped). A last line cut
    short by a kill is ignored (its record was not complete); a bad line elsewhere is an error naming the file."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = path.read_text().split("\n")
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:  # no newline after it: a torn tail
                break
            from paintseg.errors import PaintsegError

            raise PaintsegError(f"{path}: line {i + 1} is not JSON ({line[:60]!r}); the file was edited or damaged - "
                                f"restore it or delete the folder to redo this stage") from None
    return out


def sha256(path: str | Path) -> str:
    """The hex SHA-256 of a file, read in 1 MiB chunks."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
