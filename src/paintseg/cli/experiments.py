"""The commands of whole experiments: run, demo, report."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import _fail, _file, _folder, _run, _threads, app


def _experiment(config, out: Path, progress: bool, command: str) -> None:
    from paintseg.experiment.run import run_experiment
    from paintseg.experiment.summary import format_headline

    _threads()
    results = _run(run_experiment, config, out, progress=progress, command=command, lines=True)
    if isinstance(results, dict):  # another process of `accelerate launch`: the first one gathers and reports
        return
    typer.echo(format_headline(results))
    typer.echo(f"results: {out / 'results.json'}\nreport:  {out / 'report.html'}  (open it in a browser; "
               f"{results.wall_seconds / 60:.1f} min this run; {out} holds {results.disk_mb:.0f} MB)")


@app.command("run")
def run_cmd(
    config: Path = typer.Argument(..., help="Experiment YAML (see configs/): episode, generator, generation, arms, "
                                  "models, train, seeds."),
    out: Path = typer.Option(..., callback=_folder,
                             help="Experiment folder EXP; run again with the same --out to resume."),
    seeds: Optional[str] = typer.Option(None, help="Comma-separated seeds instead of the config's (e.g. 0,1,2,3,4: "
                                        "more seeds tell a gain from seed noise; finished seeds are reused)."),
    progress: bool = typer.Option(True, help="Progress bars on stderr (a line per stage is printed either way)."),
) -> None:
    """Run baseline vs copy-paste vs diffusion (and ablations) for every model and seed of CONFIG; writes
    EXP/results.json and EXP/report.html. Every stage is cached by a hash of its settings, so a killed or changed
    run redoes only what changed."""
    from paintseg.config import validate
    from paintseg.experiment.spec import ExperimentConfig, load_experiment

    cfg = _run(load_experiment, config)
    line = f"paintseg run {config} --out {out}"
    if seeds is not None:
        try:
            chosen = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError:
            _fail(f"--seeds {seeds!r}: give comma-separated whole numbers, e.g. --seeds 0,1,2")
        cfg = _run(validate, {**cfg.model_dump(mode="json"), "seeds": chosen}, ExperimentConfig, "--seeds")
        line += f" --seeds {seeds}"
    _experiment(cfg, out, progress, line)


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), callback=_folder,
                             help="Experiment folder to write (resumes if it exists)."),
    quick: bool = typer.Option(False, help="Smoke run of the same path with every budget shrunk."),
    progress: bool = typer.Option(True, help="Progress bars on stderr (a line per stage is printed either way)."),
) -> None:
    """The whole method on built-in procedural aerial scenes with a novel class (solar panels), as configs/demo.yaml
    sets it: demo scenes → painter → painting → curation → every arm × seed with an ImageNet Lite0 Unet →
    report.html. Its measured time and disk are in the README (generated from a run of that config)."""
    from paintseg.experiment.demo_run import demo_config

    cfg = demo_config(quick)
    _experiment(cfg, out, progress, "paintseg demo" + (" --quick" if quick else "") + f" --out {out}")


@app.command()
def report(
    exp: Path = typer.Argument(..., help="Experiment folder written by `paintseg run`."),
    screenshot: Optional[Path] = typer.Option(None, callback=_file,
                                              help="Also render the whole report with headless Chromium into this "
                                              "PNG."),
) -> None:
    """(Re)write EXP/report.html from EXP/results.json, optionally with a screenshot."""
    from paintseg.experiment.screenshot import screenshot as take_screenshot
    from paintseg.experiment.report import write_report

    html = _run(write_report, exp)
    typer.echo(f"report: {html}")
    if screenshot is not None:
        typer.echo(f"screenshot: {_run(take_screenshot, html, screenshot)}")
