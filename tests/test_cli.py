"""The `paintseg` command line end to end: split → data check → train → predict → evaluate, and its error paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import make_dataset, tiny_classes
from paintseg.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def classes_file(tmp_path: Path) -> Path:
    return tiny_classes().save(tmp_path / "classes.json")


def test_whole_user_path(tmp_path: Path, classes_file: Path) -> None:
    data = make_dataset(tmp_path / "data")
    episode, run, pred = tmp_path / "episode", tmp_path / "run", tmp_path / "pred"

    r = invoke("split", "--images", data / "*/images/*.png", "--labels", data / "*/labels/*.png",
               "--classes", classes_file, "--novel", "pool", "--group", r"area_\d+", "--tile", "64", "--shots", "2",
               "--min-pixels", "16", "--out", episode)
    assert r.exit_code == 0, r.output
    assert "episode written to" in r.output and (episode / "val.json").is_file()

    r = invoke("data", "check", episode, "--shots", "2")
    assert r.exit_code == 0, r.output
    assert r.output.startswith("ok:") and "novel classes pool" in r.output

    r = invoke("train", episode, "--out", run, "--arch", "unet", "--encoder", "tu-resnet10t", "--steps", "6",
               "--batch", "2", "--crop", "64", "--checkpoint-every", "3", "--keep-checkpoint")
    assert r.exit_code == 0, r.output
    assert (run / "model.pt").is_file() and (run / "checkpoints" / "last.pt").is_file()
    assert len((run / "log.jsonl").read_text().splitlines()) == 6

    r = invoke("predict", run, "--episode", episode, "--out", pred)
    assert r.exit_code == 0, r.output
    n_query = len(json.loads((episode / "val.json").read_text())["query_set"])
    assert f"{n_query} label(s) written" in r.output
    assert len(list(pred.glob("*.png"))) == n_query and len(list((pred / "color").glob("*.png"))) == n_query

    r = invoke("evaluate", "--pred", pred, "--episode", episode, "--out", tmp_path / "metrics.json")
    assert r.exit_code == 0, r.output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["per_class_iou"]) == {"field", "water", "road", "pool"}
    expected = 0.4 * metrics["base_miou"] + 0.6 * metrics["novel_miou"]
    assert metrics["score"] == pytest.approx(expected, abs=1e-3)
    assert "score (0.4 base + 0.6 novel)" in r.output

    # a second train into the same run folder without --resume is refused, and nothing is lost
    before = (run / "model.pt").read_bytes()
    r = invoke("train", episode, "--out", run, "--arch", "unet", "--encoder", "tu-resnet10t", "--steps", "6",
               "--batch", "2", "--crop", "64")
    assert r.exit_code == 2 and "--resume" in r.output
    assert (run / "model.pt").read_bytes() == before


def test_data_check_reports_problems_with_exit_1(tiny_episode: Path) -> None:
    (tiny_episode / "valset" / "labels" / "query_0.png").unlink()
    r = invoke("data", "check", tiny_episode, "--shots", "2")
    assert r.exit_code == 1
    assert "query_0.png" in r.output and "1 problem(s)" in r.output


def test_user_errors_exit_2_with_the_file_and_no_traceback(tmp_path: Path, tiny_episode: Path) -> None:
    r = invoke("split", "--images", "x/*.png", "--labels", "y/*.png", "--classes", tmp_path / "missing.json",
               "--novel", "pool", "--out", tmp_path / "ep")
    assert r.exit_code == 2
    assert "missing.json: no such classes file" in r.output and "Traceback" not in r.output

    r = invoke("train", tiny_episode, "--out", tmp_path / "run", "--crop", "60")
    assert r.exit_code == 2 and "crop" in r.output and "Traceback" not in r.output

    r = invoke("predict", tmp_path / "no-run", "--images", tiny_episode / "valset/images", "--out", tmp_path / "p")
    assert r.exit_code == 2 and "no-run" in r.output

    r = invoke("evaluate", "--pred", tmp_path / "empty", "--episode", tiny_episode)
    assert r.exit_code == 2 and "paintseg predict" in r.output

    r = invoke("predict", tmp_path / "no-run", "--images", str(tmp_path / "nothing-*.tif"), "--out", tmp_path / "p")
    assert r.exit_code == 2 and "matched no file" in r.output


def test_every_subcommand_has_help() -> None:
    for cmd in (["split"], ["data", "check"], ["train"], ["predict"], ["evaluate"]):
        r = invoke(*cmd, "--help")
        assert r.exit_code == 0 and "Usage" in r.output


def test_generator_train_generate_curate_and_train_on_the_synthetic_set(tiny_episode: Path, tmp_path: Path) -> None:
    gen, syn, run = tmp_path / "gen", tmp_path / "syn", tmp_path / "run"
    r = invoke("generator", "train", tiny_episode, "--out", gen, "--size", "tiny", "--steps", "4", "--batch", "2",
               "--checkpoint-every", "2", "--sample-every", "4")
    assert r.exit_code == 0, r.output
    assert (gen / "model_index.json").is_file() and list((gen / "samples").glob("*.png"))

    r = invoke("generate", tiny_episode, "--generator", gen, "--out", syn, "--per-class", "3", "--candidates", "2",
               "--steps", "3", "--refine", "grabcut", "--keep", "all")
    assert r.exit_code == 0, r.output
    assert "synthetic set written to" in r.output and "placements" in r.output
    lines = [json.loads(line) for line in (syn / "candidates" / "manifest.jsonl").read_text().splitlines()]
    assert len(lines) == 6 and {line["backend"] for line in lines} == {"diffusion"}
    instances = [json.loads(line) for line in (syn / "manifest.jsonl").read_text().splitlines()]
    assert len(instances) == 3 and all(i["refine"] == "grabcut" for i in instances)

    r = invoke("curate", syn, "--episode", tiny_episode, "--out", tmp_path / "syn-nofilter", "--filter", "none")
    assert r.exit_code == 0, r.output
    assert "kept" in r.output and (tmp_path / "syn-nofilter" / "manifest.jsonl").is_file()

    kept = [i for i in instances if i["kept"]]
    r = invoke("train", tiny_episode, "--out", run, "--synthetic", syn, "--arch", "unet", "--encoder",
               "tu-resnet10t", "--steps", "2", "--batch", "2", "--crop", "64", "--warmup-steps", "1",
               "--weight-decay", "0.05", "--synthetic-border", "2")
    assert r.exit_code == 0, r.output
    assert f"synthetic: {len({i['image'] for i in kept})} images" in r.output
    saved = yaml.safe_load((run / "config.yaml").read_text())["train"]
    assert (saved["warmup_steps"], saved["weight_decay"], saved["synthetic_border"]) == (1, 0.05, 2)

    r = invoke("generate", tiny_episode, "--generator", tmp_path / "no-gen", "--out", tmp_path / "x")
    assert r.exit_code == 2 and "no-gen" in r.output and "paintseg generator train" in r.output


def _commands() -> dict[tuple[str, ...], object]:
    """Every command of the CLI by its path, e.g. ("generator", "train")."""
    import typer.main

    found, todo = {}, [((), typer.main.get_command(app))]
    while todo:
        path, command = todo.pop()
        for name, sub in getattr(command, "commands", {}).items():
            todo.append(((*path, name), sub))
        if not getattr(command, "commands", None):
            found[path] = command
    return found


def test_every_option_that_sets_a_config_field_takes_that_fields_default_and_help() -> None:
    """One source for each default: a command's options that name fields of its stage config are unset unless
    given (the --config file's value or the field's default applies), show the field's default and its description;
    no other command restates a placement, painting or curation default with another value."""
    from paintseg.cli import _configured, typed
    from paintseg.config import (CurateConfig, GenerateConfig, GeneratorConfig, HarmoniserConfig, PaintConfig,
                                 PlaceConfig, TrainConfig)

    stage_configs = {("train",): TrainConfig, ("generator", "train"): GeneratorConfig,
                     ("harmoniser", "train"): HarmoniserConfig, ("place",): PlaceConfig, ("generate",): GenerateConfig,
                     ("curate",): CurateConfig, ("painting-quality",): GenerateConfig, ("generator", "curve"): PaintConfig}
    # options that share a field's name for another thing: tests per class, and candidates per test (2: diversity)
    other_meaning = {("painting-quality", "per_class"), ("generator", "curve", "per_class"),
                     ("generator", "curve", "candidates")}
    commands = _commands()
    for path, model in stage_configs.items():
        params = {p.name: p for p in commands[path].params}
        assert "config" in params, path
        named = [n for n in params if n in model.model_fields and (*path, n) not in other_meaning]
        assert len(named) >= 2, path
        for name in named:
            option, field = params[name], model.model_fields[name]
            assert option.default in (None, ()), (path, name, option.default)
            assert option.help == f"{field.description}  [default: {typed(field.default)}]", (path, name)
        assert _configured(model, None, {n: None for n in named}) == model()
        if path in (("place",), ("generate",), ("curate",), ("train",), ("generator", "train"),
                    ("harmoniser", "train")):  # every field a command line can spell: generated (config_options)
            assert set(named) == set(model.model_fields) - {"prompts", "box_fraction"}, path  # a mapping, a pair
    generation = set(GenerateConfig.model_fields)  # the commands that place, paint or curate restate none of them
    restated = [(*path, p.name, p.default) for path, model in stage_configs.items()
                if set(model.model_fields) <= generation for p in commands[path].params
                if p.name in generation and p.name not in model.model_fields and (*path, p.name) not in other_meaning]
    assert restated == []


def test_help_reads_well() -> None:
    """Help is plain, ordered (the main job first), with defaults."""
    top = invoke("--help").output
    listed = [line.split()[0] for line in top.split("Commands:")[1].splitlines() if line.strip()]
    assert listed[:3] == ["demo", "run", "report"] and "<bool>" not in top
    train_help = " ".join(invoke("train", "--help").output.split())
    assert "[default: 1000]" in train_help and "--synthetic <path>, repeatable" in train_help
    generate_help = " ".join(invoke("generate", "--help").output.split())  # unwrapped
    assert "--window, --window-size <int> Side a pretrained pipeline" in generate_help
    assert "[default: 512]" in generate_help and "[default: rectangle, bezier, silhouette]" in generate_help
    assert "[default: none]" in generate_help  # a null default as it is typed (--sam-checkpoint)
    # defaults as a user types them, user-facing names only: no Python values, no class names
    for command in _commands():
        text = invoke(*command, "--help").output
        for leak in ("None", "[\'", "<list", "Config fields", "unless --config", "True", "False"):
            assert leak not in text, (command, leak)
    assert invoke("--version").output.startswith("paintseg ")


def test_messages_offer_close_matches_and_use_the_names_users_know(tmp_path: Path) -> None:
    from paintseg.config import ConfigError, TrainConfig, load_yaml, validate
    from paintseg.experiment.spec import load_experiment

    (tmp_path / "episode").mkdir()
    path = tmp_path / "run.yaml"
    path.write_text("episode: {path: episode}\ntrain: {stesp: 3}\ngeneraton: {}\nmodels: [{archh: unet}]\n")
    with pytest.raises(ConfigError) as e:
        load_experiment(path)
    message = str(e.value)
    assert "invalid run config" in message and "ExperimentConfig" not in message
    assert "train.stesp: unknown field; did you mean steps?" in message
    assert "generaton: unknown field; did you mean generation or generator?" in message
    assert "models.0.archh: unknown field; did you mean arch?" in message
    path.write_text("steps: 3\nzzz: 1\n")
    with pytest.raises(ConfigError, match=r"zzz: unknown field \(known here: arch, encoder, "):
        load_yaml(path, TrainConfig)
    with pytest.raises(ConfigError) as e:  # a check of the whole config has no "(config)" location
        validate({"support_fraction": 0.6, "synthetic_fraction": 0.6}, TrainConfig, "train.yaml")
    assert "invalid train settings:\n  support_fraction 0.6 + synthetic_fraction 0.6 exceed 1" in str(e.value)


def test_no_progress_keeps_a_line_per_stage(tmp_path: Path, capsys) -> None:
    from paintseg.experiment.stages import Stages

    stages = Stages(tmp_path, progress=False, lines=True)
    stages.run("episode", tmp_path / "stages" / "episode-x", lambda: None)
    err = capsys.readouterr().err
    assert "[stage" in err and "[done]  episode" in err
    Stages(tmp_path, progress=False).run("episode", tmp_path / "stages" / "episode-x", lambda: None)
    assert capsys.readouterr().err == ""  # lines follow progress unless asked for (a library caller's default)


def test_single_process_commands_refuse_a_multi_process_launch(tiny_episode: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")  # what accelerate launch / torchrun set in every process they start
    result = runner.invoke(app, ["predict", str(tmp_path / "run"), "--images", str(tiny_episode / "valset" / "images"),
                                 "--out", str(tmp_path / "pred")])
    assert result.exit_code == 2 and not (tmp_path / "pred").exists()
    assert "`paintseg predict` runs in one process, but 2 were started" in result.output
    assert "Commands that use several processes: demo, run, generate, train, generator, harmoniser" in result.output


def test_trainer_options_lay_over_the_config_file(tiny_episode: Path, tmp_path: Path) -> None:
    """Options that name config fields override the --config file; the rest comes from the file; 'none' on the
    command line is random initialisation."""
    config = tmp_path / "harm.yaml"
    config.write_text("steps: 2\ncrop: 32\nlr: 0.002\nborder: 1\n")
    result = invoke("harmoniser", "train", str(tiny_episode), "--out", str(tmp_path / "h"), "--config", str(config),
                    "--encoder-weights", "none", "--batch", "2", "--steps", "1")
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((tmp_path / "h" / "config.yaml").read_text())["harmoniser"]
    assert (saved["steps"], saved["batch"], saved["crop"], saved["lr"], saved["border"]) == (1, 2, 32, 0.002, 1)
    assert saved["encoder_weights"] is None
    assert "Training pairs per step (the global batch" in invoke("harmoniser", "train", "--help").output
    result = invoke("train", str(tiny_episode), "--out", str(tmp_path / "r"), "--encoder-weights", "none",
                    "--steps", "1", "--batch", "2", "--crop", "64")
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())["train"]["encoder_weights"] is None


def test_a_run_folders_echoed_config_is_a_valid_config(tiny_episode: Path, tmp_path: Path) -> None:
    """config.yaml in a GEN / train / harmoniser folder holds the settings under one section beside the run's own
    record (episode, split, seed, version); --config reads it as the settings."""
    import yaml

    from paintseg.config import GeneratorConfig, HarmoniserConfig, TrainConfig, dump_yaml, load_yaml
    from paintseg.data.episode import Episode
    from paintseg.paint.diffusion.train import _record as generator_record
    from paintseg.segment.train import _record as train_record

    episode = Episode(tiny_episode)
    for record, model, config in (
            (generator_record(episode, GeneratorConfig(size="tiny", steps=7)), GeneratorConfig,
             GeneratorConfig(size="tiny", steps=7)),
            (train_record(episode, TrainConfig(steps=9), []), TrainConfig, TrainConfig(steps=9)),
            ({"harmoniser": HarmoniserConfig(steps=5).model_dump(mode="json"), "episode": "e", "split": "valset",
              "seed": 0, "paintseg_version": "0"}, HarmoniserConfig, HarmoniserConfig(steps=5))):
        path = dump_yaml(record, tmp_path / f"{model.__name__}.yaml")
        assert set(yaml.safe_load(path.read_text())) > {"episode", "paintseg_version"}
        assert load_yaml(path, model) == config


def test_the_stage_code_takes_its_settings_from_the_configs_and_restates_no_default() -> None:
    """Every default lives once, in its config: below the config layer (place, paint, curate, evaluate) no function
    or method keyword named like a placement or curation setting, or like the sampler's steps / guidance /
    scheduler, carries a default of its own (it takes the config object, or is required)."""
    import importlib
    import inspect
    import pkgutil

    import paintseg
    from paintseg.config import CurateConfig, PlaceConfig

    names = (set(PlaceConfig.model_fields) | set(CurateConfig.model_fields) | {"steps", "guidance", "scheduler"}) \
        - {"per_class"}  # per_class: the tests per class of the painting measures, not placements
    layers = ("paintseg.place.", "paintseg.paint.", "paintseg.curate.", "paintseg.evaluate.")
    found = []
    for info in pkgutil.walk_packages(paintseg.__path__, "paintseg."):
        if not info.name.startswith(layers):
            continue
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if getattr(obj, "__module__", None) != module.__name__:
                continue
            members = [obj] if inspect.isfunction(obj) else list(vars(obj).values()) if inspect.isclass(obj) else []
            for fn in (getattr(m, "__func__", m) for m in members):
                if not inspect.isfunction(fn):
                    continue
                for p in inspect.signature(fn).parameters.values():
                    if p.name in names and p.default not in (inspect.Parameter.empty, None):
                        found.append(f"{module.__name__}.{fn.__qualname__}({p.name}={p.default!r})")
    assert found == []
