"""docs/your_own_data.md cannot go stale: every `paintseg` command in it parses with today's options, its classes
map and run config load, and its Python runs on a tiny episode, a trained model and a georeferenced scene."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from conftest import make_tiny_episode, tiny_scene

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "your_own_data.md"


def _blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", GUIDE.read_text(), re.S)


def test_every_command_of_the_guide_parses_with_todays_options() -> None:
    import typer

    from paintseg.cli import app

    group = typer.main.get_command(app)  # typer's own click: its groups resolve commands, its parser raises
    commands = [shlex.split(line) for block in _blocks("bash") for line in block.replace("\\\n", " ").splitlines()
                if line.strip()]
    assert len(commands) >= 8 and all(c[0] == "paintseg" for c in commands)
    parsed = 0
    for args in commands:
        ctx = group.make_context("paintseg", args[1:], resilient_parsing=False)  # unknown options raise here
        sub = group
        rest = args[1:]
        while hasattr(sub, "resolve_command"):
            name, sub, rest = sub.resolve_command(ctx, rest)
            ctx = sub.make_context(name, rest, parent=ctx)  # parses every option: a stale name fails the test
        parsed += bool(ctx.params)
    assert parsed == len(commands)
    with pytest.raises(Exception, match="No such option: --imagez"):  # the check can fail
        sub = group.resolve_command(group.make_context("paintseg", ["split"]), ["split"])[1]
        sub.make_context("split", ["--imagez", "x", "--novel", "a", "--out", "o"])


def test_the_guides_class_map_and_run_config_load(tmp_path: Path) -> None:
    from paintseg.data.classes import ClassMap
    from paintseg.experiment.spec import load_experiment

    (tmp_path / "classes.json").write_text(_blocks("json")[0])
    classes = ClassMap.load(tmp_path / "classes.json").with_novel(["solar_panel"])
    assert classes.name(classes.novel_ids[0]) == "solar_panel"
    make_tiny_episode(tmp_path / "episodes" / "mine")
    (tmp_path / "mine.yaml").write_text(_blocks("yaml")[0])
    config = load_experiment(tmp_path / "mine.yaml")
    assert config.episode.path == str(tmp_path / "episodes" / "mine")
    assert config.generation.strength == 0.3 and config.generator.train.max_strength == 0.3


@pytest.mark.slow
def test_the_guides_python_runs(tmp_path: Path, monkeypatch) -> None:
    import rasterio
    from rasterio.crs import CRS
    from rasterio.transform import from_origin
    from typer.testing import CliRunner

    from paintseg.cli import app

    make_tiny_episode(tmp_path / "episodes" / "mine", shots=5)
    trained = CliRunner().invoke(app, ["train", str(tmp_path / "episodes" / "mine"), "--out", str(tmp_path / "models"
                                                                                               / "mine"),
                                       "--steps", "2", "--crop", "64", "--batch", "2"])
    assert trained.exit_code == 0, trained.output
    image, _ = tiny_scene(np.random.default_rng(1), 96)
    profile = {"driver": "GTiff", "height": 96, "width": 96, "count": 3, "dtype": "uint8",
               "crs": CRS.from_epsg(32640), "transform": from_origin(300000.0, 2800000.0, 0.3, 0.3)}
    with rasterio.open(tmp_path / "scene.tif", "w", **profile) as dst:
        dst.write(np.moveaxis(image, -1, 0))
    monkeypatch.chdir(tmp_path)
    exec(compile(_blocks("python")[0], str(GUIDE), "exec"), {})
    with rasterio.open(tmp_path / "predictions" / "scene.tif") as src:
        assert src.crs == profile["crs"] and src.transform == profile["transform"] and src.shape == (96, 96)
    assert json.loads((tmp_path / "models" / "mine" / "classes.json").read_text())["classes"]
