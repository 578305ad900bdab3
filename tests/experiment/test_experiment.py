"""paintseg run: config validation, stage caching by settings hash, results, resume after a kill, paintseg demo."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from paintseg.config import ConfigError
from paintseg.experiment.spec import ExperimentConfig, check_experiment, load_experiment
from paintseg.experiment.demo_run import DEMO_CONFIG, demo_config
from paintseg.experiment.results import Results
from paintseg.experiment.run import folder_bytes, planned_stages, run_experiment
from paintseg.experiment.stages import Stages, settings_hash
from paintseg.experiment.summary import summarize_runs

REPO = Path(__file__).resolve().parents[2]

TINY = {
    "name": "tiny",
    "episode": {"path": "episode"},
    "generator": {"train": {"size": "tiny", "steps": 4, "batch": 2, "checkpoint_every": 2, "sample_every": 4,
                            "warmup_steps": 1}},
    # every arm of the graph (the ablations too), painted from noise and refined as they need
    "arms": ["baseline", "copy-paste", "diffusion", "diffusion-no-filter", "diffusion-no-refine"],
    "generation": {"per_class": 3, "candidates": 2, "steps": 2, "batch": 4, "strength": 1.0, "refine": "grabcut",
                   "prior": "context"},
    "models": [{"arch": "unet", "encoder": "resnet18"}],
    "train": {"steps": 3, "batch": 2, "crop": 64, "checkpoint_every": 2, "warmup_steps": 1},
    "seeds": [0],
}


def write_config(folder: Path, data: dict) -> Path:
    (folder / "episode").mkdir(parents=True, exist_ok=True)  # TINY's episode.path must exist when it is loaded
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# ------------------------------------------------------------------------------------------------- config
def test_config_paths_are_relative_to_the_file(tmp_path):
    config = load_experiment(write_config(tmp_path, TINY))
    assert config.episode.path == str(tmp_path / "episode")
    (tmp_path / "models").mkdir()
    for part in ("encoder", "decoder"):
        (tmp_path / "models" / f"taef2_{part}.pth").write_bytes(b"")
    latent = {**TINY, "generator": {"train": {**TINY["generator"]["train"], "space": "latent",
                                              "autoencoder": "models"}}}
    assert load_experiment(write_config(tmp_path, latent)).generator.train.autoencoder == str(tmp_path / "models")
    assert config.arms == ["baseline", "copy-paste", "diffusion", "diffusion-no-filter", "diffusion-no-refine"]
    assert config.train_config(config.models[0], 7).seed == 7


@pytest.mark.parametrize("change, message", [
    ({"arms": ["baseline", "painting"]}, "arms ['baseline', 'painting']: choose one or more of"),
    ({"arms": ["baseline", "baseline"]}, "lists an arm twice"),
    ({"generator": None}, "the diffusion arms need a generator"),
    ({"episode": {"path": "a", "demo": {}}}, "give exactly one of episode.path, episode.split or episode.demo"),
    ({"generation": {"refine": "none"}}, "use grabcut or sam, or drop the diffusion-no-refine arm"),
    ({"generation": {"filter": "none", "refine": "grabcut"}}, "or drop the diffusion-no-filter arm"),
    ({"arms": ["baseline", "diffusion-noise"]}, "set generation.strength below 1 (e.g. 0.3) or drop the arm"),
    ({"generation": {"refine": "sam"}}, "refine: sam needs sam_checkpoint"),
    ({"seeds": [1, 1]}, "lists a seed twice"),
    ({"train": {"crop": 100}}, "crop 100 is not a multiple of 32"),
    ({"models": [{"arch": "unet"}, {"arch": "unet"}]}, "lists a model twice"),
    ({"models": [{"encoder": "resnet1800"}]}, "models.0: unknown encoder 'resnet1800'; did you mean resnet18"),
    ({"models": [{"encoder": "tu-tf_efficientnet_lite9"}]}, "unknown timm encoder 'tu-tf_efficientnet_lite9'"),
    ({"models": [{"encoder": "resnet18", "encoder_weights": "imagenet22k"}]},
     "encoder_weights 'imagenet22k' for 'resnet18': choose one of imagenet, ssl, swsl"),
    ({"generator": {"path": "gen/old/painter"}}, "generator.path:"),
    ({"generation": {"filter": "generator:nowhere", "refine": "grabcut"}}, "generation.filter: "),
    ({"episode": {"split": {"images": "x/*.png", "labels": "y/*.png", "classes": "c.json", "novel": ["a"]}}},
     "episode.split.images: no file matches"),
    ({"episode": {"split": {"dataset": "loveda", "root": "LoveDA", "novel": ["building"]}}},
     "episode.split.root: "),
    ({"episode": {"split": {"dataset": "deepglobe", "root": "x", "novel": ["a"]}}},
     "episode.split.dataset: Input should be 'loveda', 'potsdam', 'vaihingen' or 'openearthmap'"),
    ({"generator": {"train": {"space": "latent"}}}, "give autoencoder: the folder with taef2_encoder.pth"),
    ({"generator": {"train": {"space": "latent", "autoencoder": "taef2"}}},
     "generator.train.autoencoder: " + "{tmp}/taef2: no such folder; give the folder that holds taef2_encoder.pth"),
])
def test_bad_configs_name_the_file_and_the_field(tmp_path, change, message):
    path = write_config(tmp_path, {**TINY, **change})
    with pytest.raises(ConfigError) as e:
        load_experiment(path)
    assert str(path) in str(e.value) and message.format(tmp=tmp_path) in str(e.value)


def test_demo_configs_validate_and_configs_folder_is_the_packaged_one():
    assert (REPO / "configs" / "demo.yaml").resolve() == DEMO_CONFIG.resolve()
    full, quick = demo_config(), demo_config(quick=True)
    assert full.arms == quick.arms and quick.train.steps < full.train.steps and quick.seeds == [0]
    # the demo's painter trains for a budget in minutes; --quick for a fixed (reproducible) step count
    assert full.generator.train.minutes > 0 and quick.generator.train.minutes is None
    assert quick.generator.train.steps == 40 and quick.generator.train.snapshots == 2
    ablations = load_experiment(REPO / "configs" / "demo_ablations.yaml")
    assert ablations.generator.train == full.generator.train and full.generation.refine == "none"
    assert ablations.generation.model_copy(update={"refine": "none"}) == full.generation  # refine is what it ablates
    assert set(full.arms) < set(ablations.arms) and len(ablations.models) == 2
    for name in ("dubai.yaml", "oem_fewshot.yaml", "demo_painting.yaml", "demo_ablations.yaml"):
        config = load_experiment(REPO / "configs" / name, check=name != "oem_fewshot.yaml")
        assert {"copy-paste", "copy-paste-noise"} <= set(config.arms), name  # both controls in every config
    paper = load_experiment(REPO / "configs" / "oem_fewshot.yaml", check=False)  # the paper's setting
    # the files a user brings are named at load time, and nothing else is wrong with it
    missing = check_experiment(paper)
    assert [p.split(":")[0] for p in missing] == ["episode.path", "generator.path", "generation.sam_checkpoint",
                                                  "generation.filter"]
    assert all("does not exist" in p for p in missing)
    g = paper.generation
    assert paper.generator.path.endswith("weights/rs_paint") and paper.generator.train is None
    assert g.filter.startswith("open_clip:ViT-L-14:") and g.filter.endswith("RemoteCLIP-ViT-L-14.pt")
    assert (g.refine, g.sam_model_type, g.window, g.scheduler) == ("sam", "vit_h", 512, "pndm")
    assert [(m.arch, m.encoder_weights) for m in paper.models] == [("segformer", "imagenet"), ("unet", "imagenet")]


def test_settings_hash_is_stable_and_sensitive():
    assert settings_hash({"a": 1, "b": [1, 2]}) == settings_hash({"b": [1, 2], "a": 1})
    assert settings_hash({"a": 1}) != settings_hash({"a": 2})
    assert len(settings_hash("x")) == 10


def test_options_added_later_keep_finished_stages_valid():
    """A field added after stages were cached enters the stage hash only when set: at its neutral value the recipe
    is what it was before the field existed."""
    from paintseg.config import GeneratorConfig, TrainConfig, added_later
    from paintseg.config import SplitRecipe
    from paintseg.config import recipe
    from paintseg.runs import config_differences

    plain, border = TrainConfig(), TrainConfig(synthetic_border=2)
    assert "synthetic_border" not in recipe(plain) and recipe(border)["synthetic_border"] == 2
    assert added_later(TrainConfig) == {"synthetic_border": 0}  # declared on the field: later(0, ...)
    assert set(recipe(plain)) == set(plain.model_dump()) - set(added_later(TrainConfig))
    assert added_later(GeneratorConfig) == {"minutes": None, "snapshots": 0, "snr_gamma": None, "spatial_hint": False,
                                            "max_strength": 1.0, "novel_share": None, "space": "pixel",
                                            "autoencoder": None, "latent_pool": 1024, "hint_jitter": 1.0,
                                            "cross_reference": 0.0}
    # a pixel painter's recipe (its stage key) is what it was before the latent painter's fields came
    assert recipe(GeneratorConfig(size="tiny")) == {k: v for k, v in GeneratorConfig(size="tiny").model_dump(
        mode="json").items() if k not in added_later(GeneratorConfig)}
    assert set(added_later(SplitRecipe)) == {"dataset", "root", "layout", "block", "gap"}
    from paintseg.config import PlaceConfig  # a field whose better default came with it: its neutral is the old value

    assert added_later(PlaceConfig) == {"reference_weights": "uniform", "orient": False, "near": [],
                                        "selectivity": 8.0, "appearance_cell": 8}
    assert recipe(PlaceConfig(selectivity=8.0))["prior"] == "auto" and "selectivity" not in recipe(
        PlaceConfig(selectivity=8.0)) and recipe(PlaceConfig())["selectivity"] == 16.0
    assert config_differences({"place": {}}, {"place": {"selectivity": 16.0}}, [], "place", [], PlaceConfig) == [
        "selectivity: run has 8.0, now 16.0"]  # recorded before the field: it read as 8
    from paintseg.config import CurateConfig  # a curation stage's key: its config's fields, as first recorded

    assert CurateConfig(filter="none", refine="none").curation_key() == {
        "filter": None, "mode": "window", "keep": "all", "refine": "none", "sam_checkpoint": None,
        "sam_model_type": "vit_b", "sam_prompt": "point", "min_cover": 0.2, "max_cover": 1.0}
    assert CurateConfig(score_mode="region").curation_key() | {"mode": "window"} == CurateConfig().curation_key()
    assert "max_strength" not in recipe(GeneratorConfig()) and recipe(GeneratorConfig(max_strength=0.3))
    # a run recorded before synthetic_border existed resumes; one that differs from it does not
    old = {"train": {k: v for k, v in plain.model_dump().items() if k != "synthetic_border"}}
    assert config_differences(old, {"train": plain.model_dump()}, [], "train", ["steps"], TrainConfig) == []
    assert config_differences(old, {"train": border.model_dump()}, [], "train", ["steps"], TrainConfig) == [
        "synthetic_border: run has 0, now 2"]


def test_summary_mean_std_and_gain():
    def run(arm, seed, novel, base):
        return {"arm": arm, "model": "m", "seed": seed, "metrics": {
            "base_miou": base, "novel_miou": novel, "score": 0.4 * base + 0.6 * novel,
            "per_class_iou": {"a": base, "n": novel}}}

    runs = [run("baseline", 0, 2.0, 40.0), run("baseline", 1, 4.0, 42.0),
            run("copy-paste", 0, 10.0, 40.0), run("copy-paste", 1, 14.0, 40.0)]
    rows = {r["arm"]: r for r in summarize_runs(runs, ["baseline", "copy-paste"], ["m"])}
    assert rows["baseline"]["novel_miou"] == {"mean": 3.0, "std": round(2 ** 0.5, 3)}
    assert rows["copy-paste"]["gain"]["novel_miou"] == 9.0
    assert rows["copy-paste"]["gain"]["base_miou"] == -1.0
    assert rows["copy-paste"]["per_class_iou"]["n"]["mean"] == 12.0
    assert rows["baseline"]["n"] == 2


def test_stage_lines_count_stages_and_estimate_the_time_left(tmp_path, capsys, monkeypatch):
    stages = Stages(tmp_path, progress=True, planned=["generator", "train", "evaluate", "train", "evaluate"],
                    priors={"generator": 60.0})
    clock = iter([0.0, 55.0, 100.0, 110.0, 200.0, 202.0])  # the painter takes 55 s, train 10 s, evaluate 2 s
    with monkeypatch.context() as m:
        m.setattr(time, "perf_counter", lambda: next(clock))
        stages.run("generator", tmp_path / "g", lambda: None)
        stages.run("train a", tmp_path / "t1", lambda: None)
        stages.run("evaluate a", tmp_path / "e1", lambda: None)
    stages.run("train b", tmp_path / "t1", lambda: None)  # complete already: cached
    err = capsys.readouterr().err
    # the painter's budget is known before it runs; stages of a kind not measured yet are counted, not guessed
    assert "[stage 1/5, about 60 s left + 4 not timed yet: train, evaluate] generator" in err
    assert "[stage 2/5, 4 not timed yet: train, evaluate] train a" in err
    # once a train ran, the trains are timed: this evaluate (untimed) and the train (10 s) still to come
    assert "[stage 3/5, about 10 s left + 2 not timed yet: evaluate] evaluate a" in err
    assert "[cached 4/5] train b" in err
    assert stages.upcoming == ["evaluate"] and stages.estimate_left() == (2.0, {})


def test_plain_progress_lines_when_stderr_is_not_a_terminal():
    import io

    from tqdm import tqdm

    from paintseg.progress import LineWriter

    out = io.StringIO()
    for _ in tqdm(range(200), desc="train", file=LineWriter(out), mininterval=0, miniters=1):
        pass
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and 10 <= len(lines) <= 12, lines  # one line per 10 %, and the last state
    assert lines[0].startswith("train:   0%") and lines[-1].startswith("train: 100%")


def test_planned_stages_follow_the_config():
    config = ExperimentConfig.model_validate({**TINY, "seeds": [0, 1], "arms": ["baseline", "copy-paste"],
                                              "generator": None})
    assert planned_stages(config) == (["painting"] + ["placements", "paint", "curate"] * 2 + ["train", "evaluate"] * 4)
    full = ExperimentConfig.model_validate(TINY)
    assert planned_stages(full)[:4] == ["generator", "painting", "placements", "paint"] and \
        len(planned_stages(full)) == 1 + 1 + 1 + 2 + 4 + 2 * 5
    harm = ExperimentConfig.model_validate({**TINY, "arms": ["baseline", "copy-paste", "copy-paste-match", "harmonise"],
                                            "generator": None, "generation": {"quality_tests": 0}})
    assert planned_stages(harm) == ["harmoniser", "placements", "paint", "paint", "paint", "curate", "curate",
                                    "curate"] + ["train", "evaluate"] * 4


# ------------------------------------------------------------------------------------------------ running
@pytest.mark.slow
def test_run_with_the_harmonise_and_colour_matched_arms(tmp_path, tiny_episode):
    data = {**TINY, "generator": None, "arms": ["baseline", "copy-paste", "copy-paste-match", "copy-paste-noise",
                                                 "harmonise"],
            "harmoniser": {"train": {"steps": 3, "batch": 2, "crop": 32, "encoder_weights": None,
                                     "validation_pairs": 4}},
            "generation": {**TINY["generation"], "quality_tests": 3}}
    config = load_experiment(write_config(tmp_path, data))
    exp = tmp_path / "exp"
    saved = run_experiment(config, exp, progress=False).dump()
    names = [s["stage"] for s in saved["stages"]]
    assert [n.split()[0] for n in names] == planned_stages(config)
    assert names.count("harmoniser") == 1 and names.count("painting quality") == 1
    assert {"paint copy-paste s0", "paint copy-paste-match s0", "paint copy-paste-noise s0",
            "paint harmonise s0"} <= set(names)
    paint = saved["synthetic"][0]["paint"]
    backends = {json.loads(line)["backend"] for arm in ("copy-paste-match", "harmonise")
                for line in (exp / paint[arm] / "candidates" / "manifest.jsonl").read_text().splitlines()}
    assert backends == {"copy-paste", "harmonise"}
    assert "paste_colour: match" in (exp / paint["copy-paste-match"] / "generate.yaml").read_text()
    assert "paste_noise: 17.5" in (exp / paint["copy-paste-noise"] / "generate.yaml").read_text()
    quality = saved["painting_quality"]
    assert set(quality["backends"]) == {"copy-paste", "copy-paste-match", "copy-paste-noise", "harmonise"}
    assert quality["backends"]["harmonise"]["tests"] == 3 and quality["against"] == "copy-paste"
    assert set(quality["paired"]) == {"copy-paste-match", "copy-paste-noise", "harmonise"}
    assert quality["filter_quality"] == {} and quality["conditioning"] == {}  # no painter: nothing to judge
    page = (exp / "report.html").read_text()
    assert "3b. Painting quality" in page and 'alt="painting quality samples"' in page
    assert [c["arm"] for c in saved["comparisons"] if c["against"] == "copy-paste"] == [
        "copy-paste-match", "copy-paste-noise", "harmonise"]


@pytest.mark.slow
def test_run_every_arm_then_rerun_with_a_new_budget_reuses_the_paintings(tmp_path, tiny_episode):
    config = load_experiment(write_config(tmp_path, TINY))
    exp = tmp_path / "exp"
    results = run_experiment(config, exp, progress=False)

    saved = json.loads((exp / "results.json").read_text())
    assert saved["complete"] is True and saved["novel"] == ["pool"]
    # every stage the plan counted ran, in the planned order; the folder's size is recorded
    assert [s["stage"].split()[0] for s in saved["stages"]] == planned_stages(config)
    assert saved["disk_mb"] == round(folder_bytes(exp) / 2**20, 1) > 0
    quality = saved["synthetic"][0]["placement_quality"]
    assert set(quality) == {"pool"} and 0 <= quality["pool"]["fit_rate"] <= 1
    assert "Placement fit rate" in (exp / "report.html").read_text()
    masks = saved["painting_quality"]["mask_quality"]["per_class"]["pool"]
    assert set(masks) == {"none", "grabcut"} and masks["grabcut"]["instances"] == 5  # every query pool of >= 64 px
    assert "Mask refinement on real held-out query instances" in (exp / "report.html").read_text()
    filtering = saved["painting_quality"]["filter_quality"]  # the filtering arms choose among 2 candidates
    assert list(filtering) == ["diffusion"]  # the first painter's, as before results version 2
    filtering = filtering["diffusion"]
    assert filtering["candidates"] == 2 and filtering["tests"] > 0 and "records" not in filtering
    assert set(filtering["filters"]) == {config.generation.filter}
    assert -1 <= filtering["filters"][config.generation.filter]["p_class_gain"] <= 1
    assert (f"Filter {config.generation.filter} on diffusion's paintings, {filtering['tests']} held-out tests"
            in (exp / "report.html").read_text())
    assert not list(exp.glob("stages/*/checkpoints"))  # finished trainings drop their resume state
    assert [(r["arm"], r["seed"]) for r in saved["runs"]] == [(a, 0) for a in config.arms]
    for r in saved["runs"]:
        assert set(r["metrics"]["per_class_iou"]) == {"field", "water", "road", "pool"}
        assert (exp / r["predictions"]).is_dir() and (exp / r["run"] / "model.pt").is_file()
    assert [row["arm"] for row in saved["summary"]] == config.arms
    assert saved["summary"][0]["gain"]["novel_miou"] == 0.0
    # one generator, one placement plan per seed, one painting per backend, shared by the three diffusion arms
    names = [s["stage"] for s in saved["stages"]]
    assert names.count("generator") == 1 and names.count("placements s0") == 1
    assert names.count("paint diffusion s0") == 1 and names.count("paint copy-paste s0") == 1
    sources = {arm: yaml.safe_load((exp / path / "curate.yaml").read_text())["source"]
               for arm, path in saved["synthetic"][0]["curated"].items()}
    assert sources["diffusion"] == sources["diffusion-no-filter"] == sources["diffusion-no-refine"]
    assert sources["copy-paste"] != sources["diffusion"]
    place = (exp / saved["synthetic"][0]["paint"]["diffusion"] / "placements.jsonl").read_text()
    assert place == (exp / saved["synthetic"][0]["paint"]["copy-paste"] / "placements.jsonl").read_text()
    assert saved["synthetic"][0]["summaries"]["diffusion-no-filter"]["encoder"] is None
    assert saved["synthetic"][0]["summaries"]["diffusion-no-refine"]["refine"] == "none"
    for s in saved["stages"]:
        assert s["seconds"] >= 0 and s["peak_rss_mb"] > 50 and s["cached"] is False
    assert (exp / "report.html").is_file() and yaml.safe_load((exp / "config.yaml").read_text())["name"] == "tiny"
    assert results.dump()["runs"] == saved["runs"] and saved["version"] == 2
    assert json.dumps(Results.load(exp).dump()) == json.dumps(results.dump())  # written and read through one schema

    longer = load_experiment(write_config(tmp_path, {**TINY, "train": {**TINY["train"], "steps": 4}}))
    again = run_experiment(longer, exp, progress=False, report=False).dump()
    cached = {s["stage"]: s["cached"] for s in again["stages"]}
    assert all(cached[k] for k in cached if not k.startswith(("train", "evaluate")))
    assert not any(cached[k] for k in cached if k.startswith(("train", "evaluate")))
    assert all(json.loads((exp / r["run"] / "train_summary.json").read_text())["steps"] == 4 for r in again["runs"])


@pytest.mark.slow
def test_a_killed_run_resumes_where_it_stopped(tmp_path, tiny_episode):
    data = {**TINY, "arms": ["baseline", "copy-paste"], "generator": None,
            "train": {**TINY["train"], "steps": 30, "checkpoint_every": 2}}
    config = write_config(tmp_path, data)
    exp = tmp_path / "exp"
    cmd = [sys.executable, "-m", "paintseg", "run", str(config), "--out", str(exp), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    try:
        while time.time() < deadline:  # kill it in the middle of the first training (baseline)
            ckpts = list(exp.glob("stages/train-baseline-*/checkpoints/last.pt"))
            if ckpts and not list(exp.glob("stages/train-baseline-*/model.pt")):
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.02)
        else:
            pytest.fail("no checkpoint of the first training appeared within 120 s")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (exp / "results.json").is_file() or not json.loads((exp / "results.json").read_text())["complete"]

    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    results = json.loads((exp / "results.json").read_text())
    assert results["complete"] and [r["arm"] for r in results["runs"]] == ["baseline", "copy-paste"]
    cached = {s["stage"]: s["cached"] for s in results["stages"]}
    assert cached["placements s0"] and cached["paint copy-paste s0"] and cached["curate copy-paste s0"]
    assert not cached["train baseline unet-resnet18 s0"] and not cached["train copy-paste unet-resnet18 s0"]
    run = exp / results["runs"][0]["run"]
    summary = json.loads((run / "train_summary.json").read_text())
    assert 0 < summary["resumed_from"] < 30 and summary["steps"] == 30
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 31))  # the log was cut back to the checkpoint: no step twice, none missing


def test_cli_run_reports_a_bad_config_without_traceback(tmp_path):
    path = write_config(tmp_path, {**TINY, "arms": ["nope"]})
    done = subprocess.run([sys.executable, "-m", "paintseg", "run", str(path), "--out", str(tmp_path / "e")],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "choose one or more of baseline" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "e").exists()


@pytest.mark.slow
def test_cli_run_seeds_replace_the_configs(tmp_path, tiny_episode):
    path = write_config(tmp_path, {**TINY, "episode": {"path": str(tiny_episode)}, "arms": ["baseline"]})
    cmd = [sys.executable, "-m", "paintseg", "run", str(path), "--out", str(tmp_path / "e"), "--no-progress"]
    for seeds, message in (("1,x", "--seeds '1,x': give comma-separated whole numbers"), ("2,2", "lists a seed twice")):
        done = subprocess.run(cmd + ["--seeds", seeds], capture_output=True, text=True)
        assert done.returncode != 0 and message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "e").exists()
    done = subprocess.run(cmd + ["--seeds", "3"], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "e" / "results.json").read_text())
    assert results["seeds"] == [3] and [r["seed"] for r in results["runs"]] == [3]
    assert results["command"].endswith("--seeds 3")


@pytest.mark.slow
def test_run_with_the_auto_prior_orientation_and_painting_from_the_composite(tmp_path, tiny_episode):
    data = {**TINY, "arms": ["baseline", "copy-paste", "copy-paste-noise", "diffusion", "diffusion-noise"],
            "generator": {"train": {**TINY["generator"]["train"], "snapshots": 2}},
            "generation": {**TINY["generation"], "prior": "auto", "orient": True, "strength": 0.5,
                           "quality_tests": 2}}
    config = load_experiment(write_config(tmp_path, data))
    exp = tmp_path / "exp"
    results = run_experiment(config, exp, progress=False).dump()
    assert results["complete"]
    paint = {name: exp / folder for name, folder in results["synthetic"][0]["paint"].items()}
    prior = json.loads((paint["diffusion"] / "prior.json").read_text())
    assert set(prior) == {"labels", "appearance", "mix"} and "pool" in prior["mix"]
    settings = yaml.safe_load((paint["diffusion"] / "generate.yaml").read_text())
    assert settings["strength"] == 0.5 and settings["prior"] == "auto" and settings["orient"] is True
    same = [(paint[name] / "placements.jsonl").read_text() for name in ("copy-paste", "diffusion", "diffusion-noise")]
    assert same[0] == same[1] == same[2]  # every backend paints the very same (turned) placements
    noisy = yaml.safe_load((paint["diffusion-noise"] / "generate.yaml").read_text())
    assert noisy["paste_noise"] == 17.5 and noisy["strength"] == 0.5 and "paste_noise" not in settings
    # painting is judged against the strongest control too, and the headline names it
    assert {(c["arm"], c["against"]) for c in results["comparisons"]} >= {
        ("diffusion", "copy-paste-noise"), ("diffusion-noise", "copy-paste-noise"), ("diffusion-noise", "copy-paste")}
    page = (exp / "report.html").read_text()
    assert "from the copy-paste composite at strength 0.5" in page and "placement prior auto, oriented" in page
    # the generator's training is recorded, and its snapshots give the painter's learning curve in the report
    assert results["generator"]["steps"] == 4 and results["generator"]["train_seconds"] > 0
    curve = results["painting_quality"]["curve"]
    assert [(p["step"], p["strength"]) for p in curve["points"]] == [(2, 0.5), (4, 0.5)]
    assert set(curve["controls"]) == {"copy-paste", "copy-paste-noise"}
    assert "The painter's learning curve" in page and 'alt="painter learning curve"' in page
    quality = results["painting_quality"]["backends"]
    assert all({"novelty", "novelty_support", "diversity"} <= set(row) for row in quality.values())
    assert "<th>novelty</th><th>novelty_support</th><th>diversity</th>" in page


def test_refine_and_filter_none_are_allowed_without_the_arm_they_would_duplicate():
    config = ExperimentConfig.model_validate({**TINY, "arms": ["baseline", "copy-paste", "diffusion"],
                                              "generation": {"refine": "none", "filter": "none", "strength": 0.3}})
    assert config.generation.refine == "none" and config.generation.filter == "none"


def test_a_split_episode_is_the_same_stage_from_any_spelling_of_its_paths_and_old_keys_are_kept(tmp_path):
    """Key rule 2 normalises the split recipe's paths (the same data through a `..` detour or a link is one stage);
    a folder finished under rule 1 (the paths as spelled) is reused, so old experiments do not re-split and retrain."""
    from conftest import make_dataset, tiny_classes
    from paintseg.config import recipe
    from paintseg.data.episode import Episode
    from paintseg.experiment.graph import _episode

    data = make_dataset(tmp_path / "data")
    tiny_classes().save(data / "classes.json")
    (tmp_path / "link").symlink_to(data)
    (tmp_path / "configs").mkdir()

    def config(root: str) -> ExperimentConfig:
        split = {"images": f"{root}/*/images/*.png", "labels": f"{root}/*/labels/*.png", "classes": f"{root}/classes.json",
                 "novel": ["pool"], "shots": 2, "group": r"area_\d+", "tile": 64, "min_pixels": 16}
        return ExperimentConfig(episode={"split": split}, arms=["baseline"])

    exp = tmp_path / "exp"
    spellings = [str(data), f"{tmp_path}/configs/../data", str(tmp_path / "link")]
    found = [_episode(config(root), Stages(exp, progress=False), False) for root in spellings]
    assert len({key for _, key in found}) == 1 and len(list((exp / "stages").glob("episode-*"))) == 1
    assert Episode(found[0][0]).classes.novel_ids  # a real episode, split once
    # an experiment that finished its episode under rule 1 keeps that folder and key
    old = config(f"{tmp_path}/configs/../data")
    rule1 = settings_hash("split", recipe(old.episode.split))
    assert rule1 != found[0][1] and recipe(old.episode.split.normalised())["images"] == f"{data}/*/images/*.png"
    before = tmp_path / "exp_before"  # an experiment folder written before rule 2
    shutil.copytree(found[0][0].parent, before / "stages" / f"episode-{rule1}")
    assert _episode(old, Stages(before, progress=False), False)[1] == rule1
    assert _episode(config(str(tmp_path / "link")), Stages(before, progress=False), False)[1] == found[0][1]
