"""kill -9 in the middle of a command, then the same command again: it completes, and what it wrote is what an
uninterrupted run writes - nothing corrupt, partial or duplicated. (`paintseg run` is killed in test_experiment.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from conftest import make_dataset, make_tiny_episode, tiny_classes

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PAINTSEG_THREADS": "1"}
pytestmark = pytest.mark.slow


def paintseg(*args) -> list[str]:
    return [sys.executable, "-m", "paintseg", *map(str, args)]


def kill_when(cmd: list[str], ready: Callable[[], bool], timeout: float = 120) -> None:
    """Start ``cmd``, SIGKILL it as soon as ``ready()`` holds (polled every 2 ms); fail if it ends first."""
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                pytest.fail(f"{cmd[3]} finished before the kill point was reached")
            if time.time() > deadline:
                pytest.fail(f"{cmd[3]}: kill point not reached within {timeout} s")
            time.sleep(0.002)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def finish(cmd: list[str]) -> None:
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def tree(root: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Every file under ``root`` by relative path (partial files would show up here under their temporary names)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not any(s in p.name for s in skip)}


@pytest.fixture(scope="module")
def big_episode(tmp_path_factory) -> Path:
    return make_tiny_episode(tmp_path_factory.mktemp("kill") / "episode", n_train=24, size=96)


GENERATE = ["--generator", "copy-paste", "--per-class", "60", "--candidates", "2", "--refine", "none",
            "--batch", "2"]


@pytest.mark.parametrize("point", ["painting", "composing"])
def test_generate_killed_while_painting_or_composing(point: str, big_episode: Path, tmp_path: Path) -> None:
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    finish(paintseg("generate", big_episode, "--out", straight, *GENERATE))
    cands = killed / "candidates" / "manifest.jsonl"
    ready = (lambda: cands.is_file() and cands.stat().st_size > 0) if point == "painting" else \
        (lambda: (killed / "images").is_dir() and any((killed / "images").iterdir()))
    kill_when(paintseg("generate", big_episode, "--out", killed, *GENERATE), ready)
    finish(paintseg("generate", big_episode, "--out", killed, *GENERATE))
    skip = ("generate_summary.json", "curate_summary.json")  # timings differ
    assert tree(killed, skip).keys() == tree(straight, skip).keys()
    got = tree(killed, skip)
    for name, data in tree(straight, skip).items():
        data = data.replace(str(straight).encode(), str(killed).encode())  # settings files record their folder
        if name.endswith("manifest.jsonl"):  # same lines; the order follows what was done before the kill
            assert sorted(got[name].splitlines()) == sorted(data.splitlines()), name
        else:
            assert got[name] == data, name


def test_train_killed_after_a_checkpoint_resumes_to_the_same_model(big_episode: Path, tmp_path: Path) -> None:
    import torch

    args = ["--steps", "40", "--batch", "2", "--crop", "64", "--checkpoint-every", "5"]
    finish(paintseg("train", big_episode, "--out", tmp_path / "straight", *args))
    run = tmp_path / "killed"
    kill_when(paintseg("train", big_episode, "--out", run, *args), lambda: (run / "checkpoints/last.pt").is_file())
    finish(paintseg("train", big_episode, "--out", run, *args, "--resume"))
    steps = [json.loads(x)["step"] for x in (run / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 41))
    a = torch.load(tmp_path / "straight/model.pt", weights_only=True)["state_dict"]
    b = torch.load(run / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)


def test_predict_and_split_killed_midway_complete_identically(big_episode: Path, tmp_path: Path) -> None:
    finish(paintseg("train", big_episode, "--out", tmp_path / "run", "--steps", "2", "--batch", "2", "--crop", "64"))
    images = big_episode / "trainset" / "images"
    finish(paintseg("predict", tmp_path / "run", "--out", tmp_path / "p1", "--images", images))
    out = tmp_path / "p2"
    kill_when(paintseg("predict", tmp_path / "run", "--out", out, "--images", images),
              lambda: out.is_dir() and len(list(out.glob("*.png"))) >= 3)
    finish(paintseg("predict", tmp_path / "run", "--out", out, "--images", images))
    assert tree(out) == tree(tmp_path / "p1")

    data = make_dataset(tmp_path / "data", groups=12, per_group=3)
    classes = tiny_classes().save(tmp_path / "classes.json")
    split = ["--images", data / "*/images/*.png", "--labels", data / "*/labels/*.png", "--classes", classes,
             "--novel", "pool", "--group", r"area_\d+", "--tile", "48", "--shots", "2"]
    finish(paintseg("split", *split, "--out", tmp_path / "e1"))
    ep = tmp_path / "e2"
    kill_when(paintseg("split", *split, "--out", ep),
              lambda: (ep / "trainset/images").is_dir() and len(list((ep / "trainset/images").iterdir())) >= 4)
    finish(paintseg("split", *split, "--out", ep))
    assert tree(ep, ("split_summary",)) == tree(tmp_path / "e1", ("split_summary",))


def test_generator_train_killed_after_a_checkpoint_resumes(big_episode: Path, tmp_path: Path) -> None:
    args = ["--size", "tiny", "--steps", "12", "--batch", "2", "--checkpoint-every", "3", "--sample-every", "100"]
    gen = tmp_path / "gen"
    kill_when(paintseg("generator", "train", big_episode, "--out", gen, *args),
              lambda: (gen / "checkpoints/last.pt").is_file())
    assert not (gen / "model_index.json").exists()
    finish(paintseg("generator", "train", big_episode, "--out", gen, *args, "--resume"))
    steps = [json.loads(x)["step"] for x in (gen / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 13)) and (gen / "model_index.json").is_file()
    assert not [p for p in gen.rglob("*.partial")]


def test_curate_killed_while_composing_completes_identically(big_episode: Path, tmp_path: Path) -> None:
    paint = ["--generator", "copy-paste", "--per-class", "60", "--candidates", "2", "--select", "none"]
    finish(paintseg("generate", big_episode, "--out", tmp_path / "cands", *paint))
    curate = ["--refine", "grabcut", "--keep", "top:0.8"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    finish(paintseg("curate", tmp_path / "cands", "--episode", big_episode, "--out", straight, *curate))
    kill_when(paintseg("curate", tmp_path / "cands", "--episode", big_episode, "--out", killed, *curate),
              lambda: (killed / "images").is_dir() and any((killed / "images").iterdir()))
    finish(paintseg("curate", tmp_path / "cands", "--episode", big_episode, "--out", killed, *curate))
    skip = ("curate_summary.json",)
    got, want = tree(killed, skip), tree(straight, skip)
    assert got.keys() == want.keys()
    for name, data in want.items():
        data = data.replace(str(straight).encode(), str(killed).encode())
        assert (sorted(got[name].splitlines()) == sorted(data.splitlines())) if name.endswith(".jsonl") else \
            got[name] == data, name
