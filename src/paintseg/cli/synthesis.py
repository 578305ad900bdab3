"""The commands of the synthetic data: the painters (generator, harmoniser, convert), place, generate, curate
and painting-quality."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from paintseg import distributed
from paintseg.config import (CurateConfig, GenerateConfig, GeneratorConfig, HarmoniserConfig, PaintConfig, PlaceConfig,
                             stage_part)

from paintseg.paint.painters import generator_help

from .common import _configured, _fail, _field, _file, _folder, _run, _threads, app, config_options, group

generator_app = group("generator", "Train the exemplar-conditioned inpainting generator.")


@generator_app.command("train")
@config_options(GeneratorConfig)
def generator_train(
    episode: Path = typer.Argument(..., help="Episode folder; the generator learns from its trainset + support scenes "
                                   "(no novel-class labels needed)."),
    out: Path = typer.Option(..., callback=_folder,
                             help="Generator folder (GEN): config, checkpoints, sample grids, model.pt."),
    split: str = typer.Option("valset", help="Which split's support scenes to include: valset or testset."),
    resume: bool = typer.Option(False, help="Continue an interrupted run from checkpoints/last.pt."),
    init: Optional[str] = typer.Option(None, help="Fine-tune this pretrained Paint-by-Example-family pipeline "
                                       "(a diffusers folder or hub id, e.g. a converted RS-Paint) instead of training "
                                       "paintseg's own model; OUT becomes a pipeline folder."),
    mixed_precision: str = typer.Option("no", help="With --init: no (fp32), fp16 or bf16 (GPUs)."),
    gradient_checkpointing: bool = typer.Option(True, "--gradient-checkpointing/--no-gradient-checkpointing",
                                                help="With --init: recompute UNet activations to save memory."),
    device: Optional[str] = typer.Option(None, help="cuda, cuda:1 or cpu (default: cuda when there is one)."),
    config: GeneratorConfig = None,  # the --config file and the generated options, validated (config_options)
) -> None:
    """Self-supervised training: hide an instance (or a random region) of a real scene under an inpaint mask and
    learn to paint it back from a strongly augmented crop of itself, so the model learns to paint what a reference
    shows, fitted to its surroundings. With --init, the same recipe fine-tunes a pretrained pipeline's UNet and
    reference mapper in its latent space (accelerate; `accelerate launch -m paintseg generator train ...` for
    several GPUs)."""
    from paintseg.data.episode import Episode
    from paintseg.paint.diffusion.train import train_generator

    ep = _run(Episode, episode, split)
    _threads()
    if init is not None:
        from paintseg.paint.finetune import finetune_pipeline

        _run(finetune_pipeline, ep, init, out, config, resume=resume, device=device, mixed_precision=mixed_precision,
             gradient_checkpointing=gradient_checkpointing)
        return
    _run(train_generator, ep, out, config, resume=resume, device=device)


@generator_app.command("curve")
def generator_curve(
    gen: Path = typer.Argument(..., help="Generator folder (GEN) trained with --snapshots N (a folder without "
                               "snapshots gives one point)."),
    episode: Path = typer.Argument(..., help="Episode folder; its query images are the held-out test scenes."),
    out: Path = typer.Option(..., callback=_file,
                             help="JSON file for the curve: one point per snapshot and strength, and the "
                             "copy-paste controls."),
    figure: Optional[Path] = typer.Option(None, callback=_file,
                                          help="PNG of the curve (class rate, ΔE, novelty/diversity against "
                                          "training minutes); with it also FIGURE_samples.png (the first --samples "
                                          "tests painted by every point)."),
    strengths: list[float] = typer.Option([0.3], "--strength", metavar="<float>, repeatable",
                                          help="Painting strength, repeatable (1: from noise)."),
    tests: int = typer.Option(24, "--tests", "--per-class", help="Held-out tests per novel class (--per-class: its "
                              "former name)."),
    candidates: int = typer.Option(2, help="Candidates painted per test (2 or more measure diversity)."),
    paste_noise: float = typer.Option(17.5, help="The copy-paste-noise control's noise (grey levels); 0: leave it "
                                      "out."),
    config: Optional[Path] = typer.Option(None, help="YAML with the painting settings, or a run config (its generation "
                                          "section): paint as that run paints; options here override it."),
    steps: Optional[int] = _field(PaintConfig, "steps"),
    guidance: Optional[float] = _field(PaintConfig, "guidance"),
    samples: int = typer.Option(4, help="Tests shown in FIGURE_samples.png."),
    seed: int = typer.Option(0, help="Seed for the test windows and the noise."),
    split: str = typer.Option("valset", help="valset or testset."),
) -> None:
    """The painter's learning curve: paint the same held-out query tests with every snapshot of a generator run
    (and the finished generator) beside copy-paste and copy-paste-noise, and measure how often the class probe
    calls the painted object the class, how close its colours are to the real instances, how far it is from its
    reference and how much two candidates differ."""
    import shutil
    import tempfile

    from paintseg.data.episode import Episode
    from paintseg.evaluate.curve import curve_lines, painting_curve
    from paintseg.files import write_bytes, write_text
    from paintseg.place.references import extract_references

    if candidates < 1:
        _fail(f"--candidates {candidates}: paint at least 1 per test (2 or more to measure diversity)")
    if any(not 0 < s <= 1 for s in strengths):
        _fail(f"--strength {strengths}: each strength is in (0, 1] (0.3: from the copy-paste composite, 1: from noise)")
    paint = _configured(PaintConfig, config, locals())
    ep = _run(Episode, episode, split)
    _threads()
    folder = Path(tempfile.mkdtemp(prefix="paintseg-curve-")) if figure is not None else None
    curve = _run(painting_curve, ep, gen, _run(extract_references, ep), strengths=strengths, paint=paint,
                 tests=tests, seed=seed, candidates=candidates, paste_noise=paste_noise or None,
                 samples_dir=folder, samples=samples)
    if figure is not None:
        from paintseg.experiment.figures import curve_chart, painting_samples_figure, png_bytes

        write_bytes(figure, png_bytes(curve_chart(curve)))
        write_bytes(figure.with_name(f"{figure.stem}_samples.png"),
                    png_bytes(painting_samples_figure(curve["quality"], folder)))
        shutil.rmtree(folder, ignore_errors=True)
    curve["quality"].pop("samples", None)
    write_text(out, json.dumps(curve, indent=1, default=str) + "\n")
    for line in curve_lines(curve):
        typer.echo(line)
    typer.echo(f"written {out}" + (f", {figure}" if figure is not None else ""))


@app.command()
@config_options(PlaceConfig)
def place(
    episode: Path = typer.Argument(..., help="Episode folder (references from its support set, scenes from its "
                                   "trainset)."),
    out: Path = typer.Option(..., callback=_folder, help="Folder for placements.jsonl, place.yaml, prior.json and "
                             "placement_quality.json; `paintseg generate --out` on the same folder paints these very "
                             "placements."),
    seed: int = typer.Option(0, help="Seed for scenes, boxes, windows and mask shapes."),
    split: str = typer.Option("valset", help="valset or testset support and query set."),
    config: PlaceConfig = None,  # the --config file and the generated options, validated (config_options)
) -> None:
    """Plan where new instances go (scene, box, context window, mask shape) and measure the plan: the fit rate per
    novel class is the share of placements whose surroundings look more like a real query instance's than a random
    spot's do (0.5: no better than uniform). Several backends can then paint the same plan."""
    from paintseg.data.episode import Episode
    from paintseg.evaluate.placement_fit import placement_quality
    from paintseg.place.plan import place as run_place

    ep = _run(Episode, episode, split)
    summary = _run(run_place, ep, out, config, seed)
    typer.echo(f"{summary['placements']} placements written to {out / 'placements.jsonl'}")
    quality = placement_quality(ep, summary["plan"], summary["references"], out, seed=seed)
    for name, q in quality.items():
        labels = f", {q['fit_rate_labels']:.2f} by base-class shares" if "fit_rate_labels" in q else ""
        typer.echo(f"{name}: fit rate {q['fit_rate']:.2f} by colour/texture{labels} ({q['placements']} placements vs "
                   f"{q['query_instances']} real query instances; 0.5 = no better than random spots)")
        o = q.get("orientation") or {}
        if o.get("query") is not None and o.get("placed") is not None:
            typer.echo(f"{name}: alignment with the surrounding structure cos 2Δ {o['placed']:.2f} placed vs "
                       f"{o['query']:.2f} real (1 = along it, -1 = across it, 0 = random)")
    if not quality:
        typer.echo("fit rate: not measured (no labelled novel-class instances in the query set)")


convert_app = group("convert", "Convert released checkpoints into generator folders that --generator paints with.")


@convert_app.command("rs-paint")
def convert_rs_paint_command(
    ckpt: Path = typer.Option(..., help="RS-Paint's LDM checkpoint (sd_inpaint_samrs_ep74.ckpt)."),
    out: Path = typer.Option(..., callback=_folder,
                             help="The diffusers Paint-by-Example folder to write (must not exist yet)."),
    remoteclip: Optional[Path] = typer.Option(None, help="RemoteCLIP's open_clip checkpoint (RemoteCLIP-ViT-L-14.pt); "
                                              "needed only when the checkpoint holds no image tower."),
    remoteclip_model: str = typer.Option("ViT-L-14", help="open_clip architecture of the image tower (or a model "
                                         "config .json)."),
    config: Optional[Path] = typer.Option(None, help="The checkpoint's LDM yaml (default: RS-Paint's "
                                          "configs/rs_remoteclip.yaml architecture)."),
) -> None:
    """Convert RS-Paint's released generator into a diffusers PaintByExamplePipeline folder: diffusers' own LDM
    converters for the UNet and VAE, the RemoteCLIP tower and mapper mapped key by key (paintseg.paint.convert)
    and checked against open_clip. Then: paintseg generate EPISODE --generator OUT ..."""
    import yaml

    from paintseg.paint.convert import convert_rs_paint

    original = None
    if config is not None:
        try:
            original = yaml.safe_load(config.read_text())
        except (OSError, yaml.YAMLError) as e:
            _fail(f"{config}: not a readable yaml ({e})")
    record = _run(convert_rs_paint, ckpt, out, remoteclip=remoteclip, remoteclip_model=remoteclip_model,
                  config=original)
    typer.echo(f"wrote {out} (image tower from {record['image_encoder']['from']}, max error vs open_clip "
               f"{record['image_encoder']['max_abs_error_vs_open_clip']:.1e}); paint with --generator {out}")


harmoniser_app = group("harmoniser", "Train the harmoniser (copy-paste composites re-coloured to fit their scene).")


@harmoniser_app.command("train")
@config_options(HarmoniserConfig)
def harmoniser_train(
    episode: Path = typer.Argument(..., help="Episode folder; the harmoniser learns from its trainset + support "
                                   "scenes (every labelled class's instances; no novel-class labels needed)."),
    out: Path = typer.Option(..., callback=_folder,
                             help="Harmoniser folder (HARM): config, log, harmoniser.pt, samples.png."),
    split: str = typer.Option("valset", help="Which split's support scenes to include: valset or testset."),
    resume: bool = typer.Option(False, help="Continue an interrupted run from checkpoints/last.pt."),
    config: HarmoniserConfig = None,  # the --config file and the generated options, validated (config_options)
) -> None:
    """Self-supervised training: re-colour a real instance as if it had been pasted from another scene and learn
    to give back its real pixels from the composite and its mask. The held-out error of the composite (copy-paste)
    and of the harmonised window is printed and written to train_summary.json."""
    from paintseg.data.episode import Episode
    from paintseg.paint.harmonise.train import train_harmoniser

    ep = _run(Episode, episode, split)
    _threads()
    _run(train_harmoniser, ep, out, config, resume=resume)


@app.command()
@config_options(GenerateConfig)
def generate(
    episode: Path = typer.Argument(..., help="Episode folder (references come from its support set, scenes from "
                                   "its trainset)."),
    generator: str = typer.Option(..., help=generator_help()),
    out: Path = typer.Option(..., callback=_folder,
                             help="Synthetic set folder (SYN): candidates/, images/, labels/, manifest.jsonl."),
    prompt: list[str] = typer.Option([], metavar="CLASS=TEXT, repeatable",
                                     help="SD inpainting: the prompt of a novel class "
                                     "(repeat per class; added to the config's prompts; default 'a top-down "
                                     "satellite image of a {class}')."),
    paste_colour: str = typer.Option("none", help="Copy-paste and harmonise: 'match' moves the pasted pixels from "
                                     "the colour statistics of the reference's surroundings to the new ones' (Lab "
                                     "mean/std) and flips each paste at random; 'poisson' blends the paste into "
                                     "its new surroundings by Poisson image editing; 'none': as cut."),
    paste_noise: float = typer.Option(0.0, help="Copy-paste: add smooth colour noise of this std (grey levels) to "
                                      "each paste and its seam - a control for painting from the composite."),
    seed: int = typer.Option(0, help="Seed for placements, masks and sampling noise."),
    select: str = typer.Option("best", help="'best': score candidates with --filter and keep the best per "
                               "placement; 'first': candidate 0, unscored; 'none': write candidates only."),
    split: str = typer.Option("valset", help="valset or testset support set."),
    config: GenerateConfig = None,  # the --config file and the generated options, validated (config_options)
) -> None:
    """Paint novel-class references into trainset scenes (N placements per class x K candidates), keep the best
    candidate per placement, refine its mask and compose a synthetic set that `paintseg train --synthetic` reads:
    `paintseg place`, the painting and `paintseg curate` in one command."""
    from paintseg.data.episode import Episode
    from paintseg.paint.generate import generate as run_generate
    from paintseg.paint.generate import make_backend

    if select not in ("best", "first", "none"):
        _fail(f"--select {select!r}: use best, first or none")
    ep = _run(Episode, episode, split)
    prompts = dict(config.prompts)
    for item in prompt:
        name, sep, text = item.partition("=")
        if not sep or not text:
            _fail(f"--prompt {item!r}: give CLASS=TEXT, e.g. --prompt 'pool=a swimming pool seen from above'")
        prompts[name.strip()] = text.strip()
    paint = stage_part(config, PaintConfig).model_copy(update={"prompts": prompts})
    if paint.device is None and distributed.world_size() > 1:  # accelerate launch: this process's device
        paint = paint.model_copy(update={"device": distributed.device()})
    novel = {c: ep.classes.name(c) for c in ep.classes.novel_ids}
    backend, settings = _run(make_backend, generator, paint, seed=seed, paste_colour=paste_colour,
                             paste_noise=paste_noise, class_names=novel)
    curation = None
    if select != "none":  # built before painting, so a bad filter or SAM checkpoint stops the command at once
        from paintseg.curate.pipeline import CurationModels

        cur = stage_part(config, CurateConfig)
        cur = cur.model_copy(update={"filter": "none"}) if select == "first" else cur
        curation = cur, _run(CurationModels.build, cur)
    _threads()
    summary = _run(run_generate, ep, backend, out, stage_part(config, PlaceConfig), paint, seed=seed,
                   backend_settings=settings)
    if "rank" in summary:  # another process of `accelerate launch`: the first one curates and reports
        return
    typer.echo(json.dumps({k: summary[k] for k in ("placements", "candidates", "painted_now", "prior", "seconds")},
                          indent=1))
    if curation is not None:  # the curation stage on the candidates just painted: the best, or candidate 0 unscored
        from paintseg.curate.pipeline import curate, format_summary

        typer.echo(format_summary(_run(curate, ep, out, out, curation[0], models=curation[1])))
    typer.echo(f"synthetic set written to {out}")


@app.command("painting-quality")
def painting_quality_command(
    episode: Path = typer.Argument(..., help="Episode folder; its query images are the held-out test scenes."),
    generator: list[str] = typer.Option(..., metavar="<backend>, repeatable",
                                        help="A backend to test, repeatable: 'copy-paste', a HARM or GEN "
                                        "folder; ':match' at the end pastes colour-matched, '@S' after a GEN folder "
                                        "paints from the composite at strength S (e.g. gen@0.3)."),
    out: Path = typer.Option(..., callback=_file,
                             help="JSON file for the distances (per backend, per class, per test)."),
    tests: int = typer.Option(24, "--tests", "--per-class", help="Held-out tests per novel class (--per-class: its "
                              "former name)."),
    figure: Optional[Path] = typer.Option(None, callback=_file,
                                          help="PNG of the first --samples tests: the query window, then "
                                          "every backend's painting (object outlined); with --conditioning also "
                                          "FIGURE_conditioning.png (references, masked window, three paintings, "
                                          "real window)."),
    samples: int = typer.Option(6, help="Tests shown in --figure."),
    conditioning: int = typer.Option(0, help="For every GEN backend also paint N held-out query instances per class "
                                     "back from their own, a wrong-class and no reference (PSNR/SSIM in the mask; "
                                     "paintseg.evaluate.conditioning); 0: off."),
    filter_quality: int = typer.Option(0, "--filter-quality", help="For every GEN backend also paint K candidates "
                                       "per test (half the tests) and measure what each --filter's pick gains over "
                                       "a random one (class probe, ΔE; paintseg.evaluate.curation); 0: off."),
    filters: list[str] = typer.Option(["handcrafted"], "--filter", metavar="<encoder>, repeatable",
                                      help="Encoders judged by --filter-quality, repeatable (as `paintseg curate "
                                      "--filter`)."),
    config: Optional[Path] = typer.Option(None, help="YAML with the generation settings, or a run config (its "
                                          "generation section): paint and score as that run does; options here "
                                          "override it."),
    score_mode: Optional[str] = _field(GenerateConfig, "score_mode"),
    steps: Optional[int] = _field(GenerateConfig, "steps"),
    guidance: Optional[float] = _field(GenerateConfig, "guidance"),
    seed: int = typer.Option(0, help="Seed for the test windows and the references they paint."),
    split: str = typer.Option("valset", help="valset or testset."),
) -> None:
    """Paint the same references into the same windows of held-out query images with every backend, and measure
    how far each painted object's colours are from the real instances of its class in that image (CIE76 distance
    of the mean Lab colour, lightness-spread difference, histogram distance; lower is better) and whether a linear
    probe on frozen ImageNet features calls it the class."""
    from paintseg.data.episode import Episode
    from paintseg.evaluate.assess import Assessment, assess_painting, generators
    from paintseg.files import write_bytes, write_text
    from paintseg.paint.generate import make_backend

    import shutil
    import tempfile

    if filter_quality == 1 or filter_quality < 0:
        _fail(f"--filter-quality {filter_quality}: a filter needs at least 2 candidates to choose from (0: off)")
    cfg = _configured(GenerateConfig, config, locals())
    paint = stage_part(cfg, PaintConfig)
    ep = _run(Episode, episode, split)
    backends = {}
    for spec in generator:
        path, colour = (spec[: -len(":match")], "match") if spec.endswith(":match") else (spec, "none")
        path, _, strength = path.partition("@")
        at = paint.model_copy(update={"strength": float(strength)}) if strength else paint
        backends[spec] = _run(make_backend, path, at, seed=seed, paste_colour=colour)[0]
    _threads()
    work = Path(tempfile.mkdtemp(prefix="paintseg-quality-")) if figure is not None else None
    what = Assessment(tests=tests, seed=seed, against=generator[0], samples=samples, paint=paint,
                      curation=stage_part(cfg, CurateConfig), conditioning=conditioning,
                      samples_dir=work / "samples" if work is not None else None,
                      conditioning_dirs=(lambda name: work / f"conditioning-{name.replace('/', '_')}")
                      if work is not None else None)
    if filter_quality:
        from paintseg.curate.score import build_encoder

        what.filters = {spec: _run(build_encoder, spec) for spec in filters}
        what.filter_candidates = filter_quality
    painters = generators(backends)

    def conditioned(name: str, found: dict) -> None:  # its figure, and one line
        if work is not None:
            from paintseg.experiment.figures import conditioning_figure, png_bytes

            n = painters.index(name) if len(painters) > 1 else ""
            target = figure.with_name(f"{figure.stem}_conditioning{n}.png")
            write_bytes(target, png_bytes(conditioning_figure(found, what.conditioning_dirs(name))))
            found["summary"]["figure"] = str(target)
        s = found["summary"]
        if s["instances"]:
            typer.echo(f"conditioning of {name}: PSNR true {s['psnr_true']:.2f} / wrong {s['psnr_wrong']:.2f} / "
                       f"none {s['psnr_null']:.2f} dB, true beats wrong {s['psnr_true_beats_wrong']['wins']}/"
                       f"{s['instances']} (p {s['psnr_true_beats_wrong']['p']:.3f})")

    quality = _run(assess_painting, ep, backends, what, on_conditioning=conditioned)
    if work is not None:
        from paintseg.experiment.figures import painting_samples_figure, png_bytes

        write_bytes(figure, png_bytes(painting_samples_figure(quality, work / "samples")))
        shutil.rmtree(work, ignore_errors=True)
        quality.pop("samples")
    for name, found in quality["filter_quality"].items():
        for spec, row in found["filters"].items():
            if row["p_class_gain"] is not None:
                typer.echo(f"filter {spec} on {name}: pick vs random p_class {row['p_class_gain']:+.3f}, "
                           f"delta_e {row['delta_e_gain']:+.2f} ({row['tests']} tests of {filter_quality})")
    write_text(out, json.dumps(quality, indent=1) + "\n")
    for name, row in quality["backends"].items():
        typer.echo(f"{name}: {row['tests']} tests, " + ", ".join(f"{m} {row.get(m, float('nan')):.2f}"
                                                               for m in quality["metrics"]))
    typer.echo(f"written {out}")


@app.command()
@config_options(CurateConfig)
def curate(
    source: Path = typer.Argument(..., help="Folder written by `paintseg generate` (references/, candidates/)."),
    episode: Path = typer.Option(..., help="The episode the candidates were painted for."),
    out: Optional[Path] = typer.Option(None, callback=_folder,
                                       help="Synthetic set to write (default: SOURCE itself). Use a new "
                                       "folder per setting to compare filters or refiners on the same paintings."),
    split: str = typer.Option("valset", help="valset or testset."),
    config: CurateConfig = None,  # the --config file and the generated options, validated (config_options)
) -> None:
    """Re-curate painted candidates without repainting: score, keep the best per placement, filter per class,
    refine the object masks, compose a synthetic set and print what was kept and why the rest was rejected."""
    from paintseg.curate.pipeline import curate as run_curate
    from paintseg.curate.pipeline import CurationModels, format_summary
    from paintseg.data.episode import Episode

    models = _run(CurationModels.build, config)
    summary = _run(run_curate, _run(Episode, episode, split), source, out, config, models=models)
    typer.echo(format_summary(summary))
    typer.echo(f"synthetic set written to {out or source}")
