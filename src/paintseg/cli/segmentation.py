"""The commands of episodes and segmentation models: split, data check, train, predict, evaluate."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import List, Optional

import typer

from paintseg.config import SplitRecipe, TrainConfig

from .common import _fail, _file, _folder, _run, _threads, app, config_options, group

data_app = group("data", "Inspect and validate episodes.")


@app.command()
@config_options(SplitRecipe)
def split(
    out: Path = typer.Option(..., callback=_folder, help="New episode folder to write (OpenEarthMap few-shot layout)."),
    config: SplitRecipe = None,  # the --config file and the generated options, validated (config_options)
) -> None:
    """Build a few-shot episode from any fully labelled dataset, or a built-in one (--dataset).

    Trainset labels keep the base classes only (novel pixels become background 0), each support label keeps only its
    novel class, query labels keep everything - as in the OpenEarthMap few-shot challenge. Deterministic for a seed.
    The episode is checked as `paintseg data check` checks it before it is complete.
    """
    from paintseg.data.datasets import split_recipe
    from paintseg.data.split import format_summary

    summary = _run(split_recipe, config, out, echo=typer.echo)
    typer.echo(format_summary(summary))
    typer.echo(f"episode written to {out} (checked: `paintseg data check {out}` passes)")


# ------------------------------------------------------------------------------------------------- data
@data_app.command("check")
def data_check(
    episode: Path = typer.Argument(..., help="Episode folder (train.txt, val.json, trainset/, valset/)."),
    split: str = typer.Option("valset", help="Which evaluation split to check: valset or testset."),
    shots: Optional[int] = typer.Option(None, show_default=False, help="Support images every novel class must have "
                                        "[default: the shots the episode was split for (its split.json), else 5]"),
) -> None:
    """Validate an episode and print every problem; exit code 1 if there is any (an episode that cannot be read at
    all included), 2 for bad options."""
    from paintseg.data.episode import Episode
    from paintseg.errors import PaintsegError

    try:
        ep = Episode(episode, split)
    except PaintsegError as e:
        typer.echo(f"- {e}")
        typer.secho(f"1 problem in {episode}: it cannot be read as an episode", fg=typer.colors.RED)
        raise typer.Exit(1)
    problems, warnings = ep.check(expected_shots=shots)
    for p in problems:
        typer.echo(f"- {p}")
    for w in warnings:
        typer.secho(f"warning: {w}", fg=typer.colors.YELLOW)
    n = len(ep.train) + len(ep.support_samples) + len(ep.query)
    if problems:
        typer.secho(f"{len(problems)} problem(s) in {episode} ({n} images checked)", fg=typer.colors.RED)
        raise typer.Exit(1)
    typer.secho(f"ok: {episode} ({len(ep.train)} train, {len(ep.support_samples)} support, {len(ep.query)} query "
                f"images; novel classes {', '.join(ep.classes.name(c) for c in ep.classes.novel_ids)})",
                fg=typer.colors.GREEN)


# ------------------------------------------------------------------------------------------------- train
@app.command()
@config_options(TrainConfig)
def train(
    episode: Path = typer.Argument(..., help="Episode folder."),
    out: Path = typer.Option(..., callback=_folder,
                             help="Run folder: config, checkpoints, log and model.pt are written here."),
    synthetic: List[Path] = typer.Option([], metavar="<path>, repeatable",
                                         help="Synthetic set(s) (images/ + labels/) to mix in; repeatable."),
    split: str = typer.Option("valset", help="Which split's support set to train on: valset or testset."),
    resume: bool = typer.Option(False, help="Continue an interrupted run from checkpoints/last.pt."),
    config: TrainConfig = None,  # the --config file and the generated options, validated (config_options)
) -> None:
    """Train a segmentation model on base + novel classes: trainset + support set (+ synthetic sets)."""
    from paintseg.data.episode import Episode
    from paintseg.segment.train import train as train_model

    ep = _run(Episode, episode, split)
    _threads()
    _run(train_model, ep, out, config, synthetic=list(synthetic), resume=resume)


# ------------------------------------------------------------------------------------------------- predict
def _expand(patterns: list[str]) -> list[Path]:
    paths: list[Path] = []
    for p in patterns:
        matches = sorted(glob.glob(p, recursive=True)) if any(ch in p for ch in "*?[") else [p]
        if not matches:
            _fail(f"--images {p!r} matched no file; check the pattern (quote it so the shell does not expand it)")
        paths.extend(Path(m) for m in matches)
    return paths


@app.command()
def predict(
    run: Path = typer.Argument(..., help="Run folder written by `paintseg train` (holds model.pt)."),
    out: Path = typer.Option(..., callback=_folder, help="Folder for the predicted labels (+ color/ previews)."),
    images: List[str] = typer.Option([], metavar="<path or glob>, repeatable",
                                     help="Image file, folder or quoted glob; repeatable."),
    episode: Optional[Path] = typer.Option(None, help="Predict this episode's query images (instead of --images)."),
    split: str = typer.Option("valset", help="With --episode: valset or testset."),
    window: Optional[int] = typer.Option(None, help="Sliding-window size (default: the training crop)."),
    overlap: float = typer.Option(0.25, help="Overlap between neighbouring windows, 0..0.9."),
    batch: int = typer.Option(4, help="Windows per forward pass."),
) -> None:
    """Sliding-window prediction on images of any size: one single-band label per image, same stem, same format
    (JPEG input gives PNG labels) and georeference, plus a colour preview in OUT/color/."""
    from paintseg.segment.predict import predict as predict_images

    paths = _expand(list(images))
    if episode is not None:
        from paintseg.data.episode import Episode

        paths += [s.image for s in _run(Episode, episode, split).query]
    if not paths:
        _fail("nothing to predict: pass --images PATH (file, folder or glob) or --episode DIR")
    _threads()
    written = _run(predict_images, run, paths, out, window=window, overlap=overlap, batch=batch)
    typer.echo(f"{len(written)} label(s) written to {out}")


# ------------------------------------------------------------------------------------------------- evaluate
@app.command()
def evaluate(
    pred: Path = typer.Option(..., help="Folder of predicted labels (same stems as the query images)."),
    episode: Path = typer.Option(..., help="Episode folder whose query labels are the ground truth."),
    split: str = typer.Option("valset", help="valset or testset."),
    out: Optional[Path] = typer.Option(None, callback=_file, help="Write the metrics JSON here."),
    skip_absent: bool = typer.Option(False, help="Leave classes with an empty union out of the means "
                                     "(default: they score 0, as in the challenge)."),
) -> None:
    """OpenEarthMap few-shot protocol: one confusion matrix over the query set; per-class IoU, base mIoU, novel
    mIoU and score = 0.4 x base + 0.6 x novel (background not scored, ignore 255 not counted)."""
    from paintseg.data.episode import Episode
    from paintseg.evaluate.metrics import evaluate_predictions, format_table, to_json

    ep = _run(Episode, episode, split)
    metrics = _run(evaluate_predictions, pred, ep, skip_absent=skip_absent)
    typer.echo(format_table(metrics))
    if out is not None:
        from paintseg.files import write_text

        write_text(out, to_json(metrics))
        typer.echo(f"metrics written to {out}")
