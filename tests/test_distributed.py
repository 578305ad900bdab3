"""Several processes through accelerate (2 CPU processes, gloo): `accelerate launch -m paintseg generate` shards the
placements and writes the very synthetic set one process writes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("accelerate")
pytestmark = pytest.mark.slow
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PAINTSEG_THREADS": "1"}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tree(root: Path, other: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes().replace(str(root).encode(), str(other).encode())
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.endswith("_summary.json")}  # timings


def test_two_processes_paint_the_same_synthetic_set_as_one(tiny_episode: Path, tmp_path: Path) -> None:
    args = ["generate", str(tiny_episode), "--generator", "copy-paste", "--per-class", "9", "--candidates", "2",
            "--batch", "2", "--refine", "grabcut", "--select", "best"]
    one, two = tmp_path / "one", tmp_path / "two"
    done = subprocess.run([sys.executable, "-m", "paintseg", *args, "--out", str(one)], env=ENV, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    # accelerate's torchrun launcher (--multi_gpu); on a machine without GPUs its processes join over gloo
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(_port()), "-m", "paintseg", *args, "--out", str(two)]
    done = subprocess.run(launch, env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not list((two / "candidates").glob("manifest.rank*.jsonl"))  # merged
    a, b = _tree(one, two), _tree(two, two)
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a), [k for k in a if a.get(k) != b.get(k)][:5]
    summary = __import__("json").loads((two / "generate_summary.json").read_text())
    assert summary["processes"] == 2 and summary["painted_now"] == 9
