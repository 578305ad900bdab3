"""The trainers' shared run-folder helpers (paintseg.runs)."""

from __future__ import annotations

import json
from pathlib import Path

from paintseg.runs import write_summary


def test_every_trainer_writes_the_same_summary_fields_then_its_own(tmp_path: Path) -> None:
    losses = [float(i) for i in range(20)]
    summary = write_summary(tmp_path, 30, 10, 8.0, losses, "cpu", 2, seconds=6.0, parameters=123)
    assert json.loads((tmp_path / "train_summary.json").read_text()) == summary
    assert summary["steps"] == 30 and summary["resumed_from"] == 10 and summary["steps_this_run"] == 20
    assert summary["seconds_per_step"] == 0.3 and summary["wall_seconds"] == 8.0  # training seconds, not the wall
    assert summary["final_loss"] == 14.5 and summary["last_loss"] == 19.0  # mean of the last 10
    assert summary["processes"] == 2 and summary["torch_threads"] >= 1 and summary["peak_rss_mb"] > 10
    assert summary["parameters"] == 123 and list(summary)[-1] == "parameters"
    nothing = write_summary(tmp_path, 30, 30, 1.0, [], "cuda:0", 1)  # a resumed, finished run: no step this call
    assert nothing["seconds_per_step"] is None and nothing["final_loss"] is None and nothing["steps_this_run"] == 0
