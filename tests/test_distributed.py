"""Several processes through accelerate (2 CPU processes, gloo): `accelerate launch -m paintseg generate` shards the
placements and writes the very synthetic set one process writes; `train` and `generator train` train one model with
DDP (the global batch split over the processes; process 0 alone writes); `run` hands whole stages to the processes
and writes the results one process writes."""

from __future__ import annotations

import os
import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import make_tiny_episode

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


def command(*args, processes: int = 1) -> list[str]:
    """``python -m paintseg ARGS`` in one process, or under accelerate's torchrun launcher (``--multi_gpu``: on a
    machine without GPUs its processes join over gloo)."""
    launch = [sys.executable, "-m", "paintseg"] if processes == 1 else [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(_port()), "-m", "paintseg"]
    return launch + [str(a) for a in args]


def paintseg(*args, processes: int = 1, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(command(*args, processes=processes), env=ENV, capture_output=True, text=True)
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def steps_logged(run: Path) -> list[int]:
    return [json.loads(x)["step"] for x in (run / "log.jsonl").read_text().splitlines()]


def losses(run: Path) -> list[float]:
    return [json.loads(x)["loss"] for x in (run / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def episode(tmp_path_factory) -> Path:
    return make_tiny_episode(tmp_path_factory.mktemp("ddp") / "episode", n_train=16, size=96)


def test_two_processes_paint_the_same_synthetic_set_as_one(tiny_episode: Path, tmp_path: Path) -> None:
    args = ["generate", str(tiny_episode), "--generator", "copy-paste", "--per-class", "9", "--candidates", "2",
            "--batch", "2", "--refine", "grabcut", "--select", "best"]
    one, two = tmp_path / "one", tmp_path / "two"
    paintseg(*args, "--out", one)
    paintseg(*args, "--out", two, processes=2)
    assert not list((two / "candidates").glob("manifest.rank*.jsonl"))  # merged
    a, b = _tree(one, two), _tree(two, two)
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a), [k for k in a if a.get(k) != b.get(k)][:5]
    summary = __import__("json").loads((two / "generate_summary.json").read_text())
    assert summary["processes"] == 2 and summary["painted_now"] == 9


def test_ddp_train_learns_writes_once_resumes_and_loads_in_one_process(episode: Path, tmp_path: Path) -> None:
    args = ["train", episode, "--batch", "4", "--crop", "64", "--lr", "3e-3", "--checkpoint-every", "4"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    paintseg(*args, "--steps", "16", "--out", straight, processes=2)
    summary = json.loads((straight / "train_summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 16
    assert steps_logged(straight) == list(range(1, 17))  # process 0 alone writes the log
    loss = losses(straight)
    assert sum(loss[-4:]) / 4 < 0.8 * sum(loss[:4]) / 4, loss  # it learns
    assert not list(straight.rglob("*.partial")) and not (straight / "checkpoints").exists()

    # killed after step 8 (a finished 8-step run with its checkpoint kept), resumed under DDP to 16
    paintseg(*args, "--steps", "8", "--keep-checkpoint", "--out", resumed, processes=2)
    paintseg(*args, "--steps", "16", "--resume", "--out", resumed, processes=2)
    assert steps_logged(resumed) == list(range(1, 17))
    assert json.loads((resumed / "train_summary.json").read_text())["resumed_from"] == 8
    a = torch.load(straight / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(resumed / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and not any(k.startswith("module.") for k in a)
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)

    # the model written by two processes predicts in one
    paintseg("predict", straight, "--images", episode / "valset" / "images", "--out", tmp_path / "pred")
    assert len(list((tmp_path / "pred").glob("*.png"))) == len(list((episode / "valset" / "images").iterdir()))


def test_ddp_batch_must_split_evenly(episode: Path, tmp_path: Path) -> None:
    done = paintseg("train", episode, "--batch", "3", "--steps", "2", "--crop", "64", "--out", tmp_path / "r",
                    processes=2, check=False)
    assert done.returncode != 0 and "batch 3 cannot be split evenly over 2 processes" in done.stderr
    assert "Traceback" not in done.stderr.split("batch 3 cannot")[0][-200:]


def test_ddp_generator_train_matches_one_process_and_resumes(episode: Path, tmp_path: Path) -> None:
    """The generator has no BatchNorm, so two processes that each train on half of every global batch follow one
    process step for step (up to the order of float sums)."""
    args = ["generator", "train", episode, "--size", "tiny", "--batch", "4", "--checkpoint-every", "3",
            "--sample-every", "100"]
    one, two = tmp_path / "one", tmp_path / "two"
    paintseg(*args, "--steps", "6", "--out", one)
    paintseg(*args, "--steps", "3", "--keep-checkpoint", "--out", two, processes=2)
    paintseg(*args, "--steps", "6", "--resume", "--out", two, processes=2)
    assert steps_logged(two) == list(range(1, 7))
    assert losses(two) == pytest.approx(losses(one), rel=1e-3)
    summary = json.loads((two / "train_summary.json").read_text())
    assert summary["processes"] == 2 and summary["resumed_from"] == 3
    assert sorted(p.name for p in (two / "samples").iterdir()) == ["step_000003.png", "step_000006.png"]

    from safetensors.torch import load_file

    a = load_file(next((one / "unet").glob("*.safetensors")))
    b = load_file(next((two / "unet").glob("*.safetensors")))
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4


def test_ddp_finetune_of_a_pipeline_follows_one_process(episode: Path, tmp_path: Path) -> None:
    """`generator train --init PIPE` under two processes: each fine-tunes on its half of the global batch with the
    same noise, and the learning rate takes one step per training step (not one per process)."""
    pytest.importorskip("transformers")
    from tiny_pipelines import save_paint_by_example

    init = save_paint_by_example(tmp_path / "pbe")
    config = tmp_path / "finetune.yaml"
    config.write_text("resolution: 64\nwarmup_steps: 2\nlr: 0.001\n")
    args = ["generator", "train", episode, "--init", init, "--config", config, "--steps", "5", "--batch", "4",
            "--device", "cpu", "--no-gradient-checkpointing"]
    paintseg(*args, "--out", tmp_path / "one")
    paintseg(*args, "--out", tmp_path / "two", processes=2)
    one, two = ([json.loads(x) for x in (tmp_path / d / "log.jsonl").read_text().splitlines()] for d in ("one", "two"))
    assert [x["step"] for x in two] == [1, 2, 3, 4, 5]
    assert [x["lr"] for x in two] == pytest.approx([x["lr"] for x in one])
    assert [x["loss"] for x in two] == pytest.approx([x["loss"] for x in one], rel=1e-3)
    assert json.loads((tmp_path / "two" / "train_summary.json").read_text())["processes"] == 2


def test_ddp_harmoniser_train_writes_once(episode: Path, tmp_path: Path) -> None:
    out = tmp_path / "harm"
    paintseg("harmoniser", "train", episode, "--out", out, "--encoder-weights", "none", "--steps", "4", "--batch", "4",
             "--crop", "32", processes=2)
    assert steps_logged(out) == [1, 2, 3, 4]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["processes"] == 2 and summary["held_out"]["l1_composite"] > 0
    from paintseg.paint.harmonise.model import load_harmoniser

    assert load_harmoniser(out)[0].num_parameters == summary["parameters"]


def _results(exp: Path) -> dict:
    from paintseg.experiment.summary import outcome

    return outcome(json.loads((exp / "results.json").read_text()))


def test_run_over_two_processes_killed_and_resumed_gives_the_results_of_one(episode: Path, tmp_path: Path) -> None:
    import yaml

    config = tmp_path / "experiment.yaml"
    config.write_text(yaml.safe_dump({
        "name": "two", "episode": {"path": str(episode)}, "arms": ["baseline", "copy-paste", "diffusion"],
        "generator": {"train": {"size": "tiny", "steps": 4, "batch": 2, "sample_every": 4, "warmup_steps": 1}},
        "generation": {"per_class": 3, "candidates": 2, "steps": 2, "batch": 4, "quality_tests": 2},
        "models": [{"arch": "unet", "encoder": "resnet18"}],
        "train": {"steps": 3, "batch": 2, "crop": 64, "warmup_steps": 1}, "seeds": [0, 1]}))
    one, two = tmp_path / "one", tmp_path / "two"
    paintseg("run", config, "--out", one, "--no-progress")
    # two processes, killed (launcher and workers, as a cancelled job is) once a training has finished, then resumed
    proc = subprocess.Popen(command("run", config, "--out", two, processes=2), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    try:
        while not list(two.glob("stages/train-*/stage.json")):
            assert proc.poll() is None, "the run ended before the kill point"
            assert time.time() < deadline, "no training finished within 300 s"
            time.sleep(0.01)
    finally:
        import psutil

        tree = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        for pid in tree:  # torchrun starts its workers in sessions of their own
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
    finished = len(list(two.glob("stages/**/stage.json")))
    time.sleep(2)
    assert len(list(two.glob("stages/**/stage.json"))) == finished  # nothing is left running
    assert not (two / "results.json").exists() and 0 < len(list(two.glob("stages/train-*/stage.json"))) < 6
    done = paintseg("run", config, "--out", two, processes=2)
    ran = set(re.findall(r"\[process (\d)/2\] \[stage ", done.stderr))  # progress bars may share their lines
    assert ran == {"1", "2"}, done.stderr[-3000:]  # both processes ran stages
    assert _results(two) == _results(one)
    results = json.loads((two / "results.json").read_text())
    assert results["complete"] and results["environment"]["processes"] == 2 and (two / "report.html").is_file()
    assert len(results["runs"]) == 6 and all(s["cached"] for s in results["stages"])
    assert done.stdout.count("novel mIoU") == 1 and done.stdout.count("results: ") == 1  # printed by process 1


def test_barriers_wait_as_long_as_paintseg_dist_timeout_says(tmp_path: Path) -> None:
    """Processes wait for each other at barriers PAINTSEG_DIST_TIMEOUT seconds (default 24 h: torch's 10-30 min is
    shorter than a stage another process of `paintseg run` may be running)."""
    script = tmp_path / "wait.py"  # each process marks that it got through the barrier (stdout would interleave)
    script.write_text("import sys, time\nfrom pathlib import Path\nfrom paintseg import distributed\n"
                      "rank, world, barrier = distributed.processes()\ntime.sleep(4 if rank == 0 else 0)\n"
                      "barrier()\nPath(sys.argv[0]).with_name(f'through{rank}of{world}').touch()\n")
    launch = command(processes=2)[:-2] + [str(script)]  # the launcher, then the script instead of `-m paintseg`
    short = subprocess.run(launch, env={**ENV, "PAINTSEG_DIST_TIMEOUT": "1"}, capture_output=True, text=True)
    assert short.returncode != 0 and "Timed out waiting 1000ms" in short.stderr
    assert not list(tmp_path.glob("through*"))
    long = subprocess.run(launch, env=ENV, capture_output=True, text=True)
    assert long.returncode == 0, long.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.glob("through*")) == ["through0of2", "through1of2"]
