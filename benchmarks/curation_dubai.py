"""Curation on real aerial data: Dubai (novel = building, 5 shots, split by tile) - refiners, filters, kept share.

Three measurements, all through the library's public code (and the `paintseg` CLI where a user would use it):

1. refinement on real objects: every building instance of the support set (the references,
   ``extract_references``) and up to ``--query-instances`` building instances of the query tiles gets a context
   window (``placement.window_for``, as placements do) and an inpaint mask around it - ``rectangle`` (the
   pipeline's rectangle mask, ``masks.rectangle_mask``) and ``box20`` (the tight box grown by 20 % of its size per
   side, clipped) - and each refiner (``none``, ``grabcut``, ``sam`` with --sam-checkpoint) recovers the object
   from it; IoU with the true instance mask (``refine_iou``), time per instance, GrabCut fallbacks and the
   coverage-check rejections (``mask_coverage_check``) at the function's defaults (0.2..0.98) and the CLI's
   (0.2..1.0). Support and query are reported separately;
2. filter quality: a trained generator paints N placements x K candidates of 'building'
   (`paintseg generate ... --select none`); a candidate is *positive* when the patch classifier of
   benchmarks/generator_dubai.py (a CNN on 32x32 real patches of the 5 classes) calls the 32x32 patch at the
   inpaint mask's deepest point 'building'. Every encoder (handcrafted, efficientnet-lite0, generator:GEN,
   open_clip with --open-clip) x mode (region, window) scores the candidates (``score_manifest``); ROC-AUC (``ranking_auc``) of
   score vs positive over all candidates, and within placements (mean over placements with both labels), with
   bootstrap CIs over placements. The best overall AUC is the suggested default;
3. the full curation through the CLI (`paintseg curate ... --keep top:0.5 --refine grabcut`) for a few settings:
   kept fraction, rejection reasons, seconds per stage (curate_summary.json), and the share of kept placements
   whose chosen candidate is positive.

Writes benchmarks/results/curation_dubai.json (with the exact command) and prints a compact table. Re-running
resumes: painting and finished curation runs are skipped.

    OMP_NUM_THREADS=1 python benchmarks/curation_dubai.py             # the recorded configuration
    OMP_NUM_THREADS=1 python benchmarks/curation_dubai.py --quick     # a smoke run (own work folder and results)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DUBAI = REPO.parent / "shared" / "data" / "dubai_aerial"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from generator_dubai import (
    CLASS_NAMES,
    PATCH,
    _as_input,
    build_classifier,
    patch_at,
    patch_classifier,
    resolve_budget,
)

NOVEL = "building"
MODES = ("region", "window")
MASK_SHAPES = ("rectangle", "box20")
COVERAGE_FUNCTION = (0.2, 0.98)  # mask_coverage_check's own defaults
COVERAGE_CLI = (0.2, 1.0)  # `paintseg curate` / curate()'s defaults
BOOTSTRAP = 1000


def _repo_relative(path) -> str:
    p = Path(path).resolve()
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(path)


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


STAGES_FILE = "stages.json"  # wall seconds of every CLI stage, kept across resumed runs (in the work folder)


def run(cmd: list[str], stage: str, timings: dict) -> float:
    """Run a CLI stage; record its wall time in ``timings`` (and in the work folder's stages.json, if known)."""
    print("$ " + shlex.join(cmd), flush=True)
    t = time.time()
    code = subprocess.run(cmd, check=False).returncode
    if code:
        sys.exit(f"stage {stage!r} failed with exit code {code}: {shlex.join(cmd)}")
    timings[stage] = round(time.time() - t, 1)
    if "_file" in timings:
        _write_json(Path(timings["_file"]), {k: v for k, v in timings.items() if k != "_file"})
    return timings[stage]


def _stats(values) -> dict:
    v = np.asarray(values, np.float64)
    if not v.size:
        return {"n": 0}
    q25, med, q75 = np.quantile(v, [0.25, 0.5, 0.75])
    return {"n": int(v.size), "mean": round(float(v.mean()), 4), "median": round(float(med), 4),
            "q25": round(float(q25), 4), "q75": round(float(q75), 4)}


# ================================================================================================ refinement
def support_instances(episode, class_id: int) -> list[dict]:
    """The references (support-set instances) as full-image masks with their source image."""
    from paintseg.data.raster import to_uint8
    from paintseg.generate.references import extract_references

    samples = {s.name: s for s in episode.support_samples}
    images, labels, out = {}, {}, []
    for i, ref in enumerate(r for r in extract_references(episode) if r.class_id == class_id):
        if ref.source not in images:
            images[ref.source] = to_uint8(episode.read_image(samples[ref.source]).array)
            labels[ref.source] = episode.read_label(samples[ref.source]).array == class_id
        mask = np.zeros(labels[ref.source].shape, bool)
        b = ref.box
        mask[b.y0 : b.y1, b.x0 : b.x1] = ref.mask
        out.append({"source": ref.source, "index": i, "image": images[ref.source], "mask": mask,
                    "class_pixels": labels[ref.source]})
    return out


def query_instances(episode, class_id: int, cap: int, seed: int) -> tuple[list[dict], int]:
    """Up to ``cap`` random building instances of the query tiles (the references' instance rule)."""
    from paintseg.data.raster import to_uint8
    from paintseg.generate.references import instance_masks

    found = []  # (sample index, instance index) - masks recomputed for the chosen ones only
    labels = {}
    for si, s in enumerate(episode.query):
        lab = episode.read_label(s).array == class_id
        n = len(instance_masks(lab))
        if n:
            labels[si] = lab
            found += [(si, k) for k in range(n)]
    rng = np.random.default_rng([seed, 40])
    picked = sorted(rng.choice(len(found), min(cap, len(found)), replace=False).tolist()) if found else []
    out, cache = [], {}
    for j in picked:
        si, k = found[j]
        if si not in cache:
            cache = {si: (to_uint8(episode.read_image(episode.query[si]).array), instance_masks(labels[si]))}
        image, masks = cache[si]
        out.append({"source": episode.query[si].name, "index": k, "image": image, "mask": masks[k],
                    "class_pixels": labels[si]})
    return out, len(found)


def build_refiners(args) -> list:
    from paintseg.curate.refine import GrabCutRefiner, NoneRefiner, SamRefiner

    refiners = [("none", NoneRefiner()), ("grabcut", GrabCutRefiner())]
    if args.sam_checkpoint:
        for prompt in args.sam_prompts.split(","):
            refiners.append((f"sam_{prompt}", SamRefiner(args.sam_checkpoint, args.sam_model_type, prompt)))
    return refiners


def refine_instances(instances: list[dict], refiners: list, set_id: int, seed: int) -> list[dict]:
    from paintseg.curate.refine import dilate, mask_coverage_check, refine_iou
    from paintseg.generate.masks import Box, mask_box, rectangle_mask
    from paintseg.generate.placement import window_for
    from paintseg.generate.references import padded_box

    records = []
    for n, inst in enumerate(instances):
        image, full = inst["image"], inst["mask"]
        tight = mask_box(full)
        rng = np.random.default_rng([seed, 41, set_id, n])
        win = window_for(tight, full.shape, rng)
        rows, cols = slice(win.y0, win.y1), slice(win.x0, win.x1)
        window, gt, cls = np.ascontiguousarray(image[rows, cols]), full[rows, cols], inst["class_pixels"][rows, cols]
        box = tight.shift(-win.x0, -win.y0)
        h, w = gt.shape
        grown = padded_box(box, 0.2, h, w)
        box20 = np.zeros((h, w), bool)
        box20[grown.y0 : grown.y1, grown.x0 : grown.x1] = True
        shapes = {"rectangle": rectangle_mask((h, w), box, rng), "box20": box20}
        rec = {"source": inst["source"], "instance": inst["index"], "area": int(full.sum()),
               "box": list(tight), "window": list(win), "window_side": win.width}
        for shape, inpaint in shapes.items():
            band = dilate(inpaint, 8)
            cls_gt = cls & band  # every building pixel the refiners could reach (neighbours included)
            rec[shape] = {"inpaint_pixels": int(inpaint.sum()), "gt_in_mask": round(float((gt & inpaint).sum()
                                                                                          / gt.sum()), 4)}
            for name, refiner in refiners:
                t = time.perf_counter()
                refined = refiner.refine(window, inpaint, Box(*box))
                seconds = time.perf_counter() - t
                r = {"iou": round(refine_iou(refined, gt), 4), "iou_class": round(refine_iou(refined, cls_gt), 4),
                     "seconds": round(seconds, 4), "pixels": int(refined.sum())}
                if name != "none":
                    r["coverage_function"] = mask_coverage_check(refined, inpaint, *COVERAGE_FUNCTION)
                    r["coverage_cli"] = mask_coverage_check(refined, inpaint, *COVERAGE_CLI)
                if name == "grabcut":
                    r["fallback"] = refiner.last_fallback
                rec[shape][name] = r
        records.append(rec)
        if (n + 1) % 25 == 0:
            print(f"  refined {n + 1}/{len(instances)} instances", flush=True)
    return records


def _reason(why: str | None) -> str:
    return "accepted" if why is None else why.split(":")[0]


def summarise_refinement(records: list[dict], refiners: list) -> dict:
    out = {"instances": len(records), "area": _stats([r["area"] for r in records]),
           "window_side": _stats([r["window_side"] for r in records])}
    for shape in MASK_SHAPES:
        per = {"gt_in_mask": _stats([r[shape]["gt_in_mask"] for r in records]),
               "inpaint_iou_note": "refiner 'none' = the inpaint mask itself"}
        for name, _ in refiners:
            rs = [r[shape][name] for r in records]
            s = {"iou": _stats([x["iou"] for x in rs]), "iou_class": _stats([x["iou_class"] for x in rs]),
                 "seconds_per_instance": round(float(np.mean([x["seconds"] for x in rs])), 4) if rs else None}
            if name != "none":
                for key, thresholds in (("coverage_function", COVERAGE_FUNCTION), ("coverage_cli", COVERAGE_CLI)):
                    reasons = [_reason(x[key]) for x in rs]
                    acc = [x["iou"] for x in rs if x[key] is None]
                    rej = [x["iou"] for x in rs if x[key] is not None]
                    base = [r[shape]["none"]["iou"] for r, x in zip(records, rs) if x[key] is None]
                    s[key] = {"thresholds": list(thresholds),
                              "counts": {k: reasons.count(k) for k in sorted(set(reasons))},
                              "iou_mean_accepted": round(float(np.mean(acc)), 4) if acc else None,
                              "iou_mean_rejected": round(float(np.mean(rej)), 4) if rej else None,
                              # the inpaint mask's IoU on the same accepted instances, for comparison
                              "none_iou_mean_on_accepted": round(float(np.mean(base)), 4) if base else None}
            if name == "grabcut":
                s["fallbacks"] = sum(x["fallback"] is not None for x in rs)
                ran = [(x["iou"], r[shape]["none"]["iou"]) for r, x in zip(records, rs) if x["fallback"] is None]
                s["without_fallback"] = {"n": len(ran), "iou_mean": round(float(np.mean([a for a, _ in ran])), 4)
                                         if ran else None, "none_iou_mean": round(float(np.mean([b for _, b in ran])),
                                                                                  4) if ran else None}
            per[name] = s
        # by object size (pixels): IoU mean per refiner
        bins = (("<400", 0, 400), ("400-2000", 400, 2000), (">=2000", 2000, 10**12))
        per["iou_mean_by_area"] = {
            label: {"n": sum(lo <= r["area"] < hi for r in records),
                    **{name: round(float(np.mean([r[shape][name]["iou"] for r in records if lo <= r["area"] < hi])), 4)
                       for name, _ in refiners if any(lo <= r["area"] < hi for r in records)}}
            for label, lo, hi in bins}
        # paired: how often grabcut beats the inpaint mask
        if records:
            per["grabcut_beats_none_pct"] = round(100 * float(np.mean([r[shape]["grabcut"]["iou"]
                                                                       > r[shape]["none"]["iou"] for r in records])), 1)
        out[shape] = per
    return out


# ================================================================================================ generator
def find_generator(args, paintseg: list[str], timings: dict) -> tuple[Path, dict]:
    """The GEN folder to paint and score with: --generator, else the newest the generator benchmark wrote, else a
    `tiny` generator trained here (flagged)."""
    if args.generator:
        gen = Path(args.generator)
        if not (gen / "model.pt").is_file():
            sys.exit(f"{gen}: no model.pt; pass a GEN folder written by `paintseg generator train`")
        return gen, {"source": "--generator", "fallback": False}
    src = REPO / "benchmarks" / "work" / ("generator_dubai_quick" if args.quick else "generator_dubai")
    found = sorted(src.glob("gen_*/model.pt"), key=lambda p: p.stat().st_mtime)
    if found:
        return found[-1].parent, {"source": _repo_relative(src), "fallback": False}
    gen = args.work / f"gen_tiny_s{args.fallback_steps}"
    print(f"NOTE: no trained generator under {src}; training a `tiny` generator for {args.fallback_steps} steps "
          f"as a FALLBACK (results flagged)", flush=True)
    if not (gen / "model.pt").is_file():
        cmd = paintseg + ["generator", "train", str(args.episode), "--out", str(gen), "--size", "tiny",
                          "--steps", str(args.fallback_steps), "--batch", "8", "--seed", str(args.seed)]
        if (gen / "checkpoints" / "last.pt").is_file():
            cmd.append("--resume")
        run(cmd, "train_fallback_generator", timings)
    return gen, {"source": "trained here (fallback)", "fallback": True, "size": "tiny", "steps": args.fallback_steps}


def load_classifier(episode, args, timings: dict):
    """The generator benchmark's patch classifier if it is there (read-only), else trained here the same way."""
    import torch

    src = REPO / "benchmarks" / "work" / ("generator_dubai_quick" if args.quick else "generator_dubai")
    if (src / "patch_classifier.pt").is_file() and (src / "patch_classifier.json").is_file():
        model = build_classifier()
        model.load_state_dict(torch.load(src / "patch_classifier.pt", weights_only=True))
        return model.eval(), {**json.loads((src / "patch_classifier.json").read_text()),
                              "loaded_from": _repo_relative(src)}
    ns = SimpleNamespace(data=args.data, seed=args.seed, patches_per_class=args.patches_per_class,
                         classifier_epochs=args.classifier_epochs)
    model, report = patch_classifier(episode, ns, episode.classes, args.work, timings)
    return model.eval(), {**report, "loaded_from": _repo_relative(args.work) + " (trained here)"}


def class_probabilities(model, patches: list[np.ndarray]) -> np.ndarray:
    import torch

    with torch.inference_mode():
        x = _as_input(np.stack(patches))
        return torch.cat([torch.softmax(model(x[i : i + 512]), 1) for i in range(0, len(x), 512)]).numpy()


def _patch(image: np.ndarray, cy: int, cx: int) -> np.ndarray:
    """patch_at, with windows smaller than PATCH reflect-padded first (centre shifted accordingly)."""
    h, w = image.shape[:2]
    py, px = max(0, PATCH - h), max(0, PATCH - w)
    if py or px:
        image = cv2.copyMakeBorder(image, py // 2, py - py // 2, px // 2, px - px // 2, cv2.BORDER_REFLECT_101)
        cy, cx = cy + py // 2, cx + px // 2
    return patch_at(image, cy, cx)


def label_candidates(episode, syn: Path, classifier) -> tuple[list[dict], list[dict]]:
    """Per candidate: the classifier's class for the patch at the inpaint mask's deepest point (and for the same
    patch of the unpainted scene, a control)."""
    from paintseg.generate.candidates import SceneCache, load_candidate, read_manifest

    cand_dir = syn / "candidates"
    entries = read_manifest(cand_dir / "manifest.jsonl")
    scenes = SceneCache(episode)
    patches, meta = [], []
    real_done = {}
    for e in entries:
        cand, win = load_candidate(cand_dir, e)
        mask = cand.paint_mask
        dist = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
        cy, cx = np.unravel_index(int(np.argmax(dist)), dist.shape)
        index = len(patches)
        patches.append(_patch(cand.image, cy, cx))
        p = int(e["placement"])
        if p not in real_done:  # the unpainted scene at the same spot, once per placement
            scene = scenes.image(e["scene"])[win.y0 : win.y1, win.x0 : win.x1]
            real_done[p] = len(patches)
            patches.append(_patch(np.ascontiguousarray(scene), cy, cx))
        in_mask = float(_patch(mask.astype(np.uint8), cy, cx).mean())
        meta.append({"placement": p, "candidate": int(e["candidate"]), "window_side": win.width,
                     "mask_pixels": int(mask.sum()), "patch_in_mask": round(in_mask, 3), "index": index})
    probs = class_probabilities(classifier, patches)
    b = CLASS_NAMES.index(NOVEL)
    labels = []
    for m in meta:
        pr = probs[m.pop("index")]
        real = probs[real_done[m["placement"]]]
        labels.append({**m, "pred": CLASS_NAMES[int(pr.argmax())], "p_building": round(float(pr[b]), 4),
                       "positive": bool(pr.argmax() == b), "real_pred": CLASS_NAMES[int(real.argmax())],
                       "real_p_building": round(float(real[b]), 4)})
    return entries, labels


def _aucs(scores: np.ndarray, pos: np.ndarray, groups: np.ndarray, members: dict) -> tuple[float | None, float | None,
                                                                                         int]:
    from paintseg.curate.score import ranking_auc

    overall = ranking_auc(scores, pos) if 0 < pos.sum() < pos.size else None
    within = [ranking_auc(scores[idx], pos[idx]) for idx in members.values() if 0 < pos[idx].sum() < idx.size]
    return overall, (float(np.mean(within)) if within else None), len(within)


def filter_quality(entries: list[dict], labels: list[dict], references, cand_dir: Path, specs: list[str]) -> dict:
    from scipy.stats import spearmanr

    from paintseg.curate.score import build_encoder, score_manifest

    order = {(l["placement"], l["candidate"]): i for i, l in enumerate(labels)}
    pos = np.array([l["positive"] for l in labels])
    pb = np.array([l["p_building"] for l in labels])
    groups = np.array([l["placement"] for l in labels])
    placements = sorted(set(groups.tolist()))
    members = {p: np.flatnonzero(groups == p) for p in placements}
    in_mask = np.array([l["patch_in_mask"] for l in labels])
    context_building = np.array([l["real_pred"] == NOVEL for l in labels])  # the scene there is 'building' unpainted
    results, all_scores, within_rhos = {}, {}, {}
    for spec in specs:
        t = time.time()
        encoder = build_encoder(spec)
        load_s = time.time() - t
        for mode in MODES:
            t = time.time()
            scores = score_manifest(encoder, cand_dir, entries, references, mode)
            secs = time.time() - t
            s = np.zeros(len(labels))
            for p, arr in scores.items():
                for k, v in enumerate(arr):
                    s[order[(p, k)]] = v
            key = f"{spec.split(':')[0]}/{mode}"
            all_scores[key] = s
            overall, within, n_mixed = _aucs(s, pos, groups, members)
            sub = in_mask >= 0.5
            sub_overall = _aucs(s[sub], pos[sub], groups[sub], {p: np.flatnonzero(groups[sub] == p)
                                                                for p in placements})[0] if sub.any() else None
            ctx = ~context_building
            ctx_overall = _aucs(s[ctx], pos[ctx], groups[ctx], {})[0] if ctx.any() else None
            rho = spearmanr(s, pb).correlation if np.ptp(s) > 0 else None
            rho_within = {p: spearmanr(s[idx], pb[idx]).correlation for p, idx in members.items()
                          if np.ptp(s[idx]) > 0 and np.ptp(pb[idx]) > 0}
            rho_within = {p: r for p, r in rho_within.items() if np.isfinite(r)}
            within_rhos[key] = rho_within
            results[key] = {
                "encoder": spec, "mode": mode, "auc": overall, "auc_within_placement": within,
                "placements_mixed": n_mixed, "auc_patch_in_mask_ge_0.5": sub_overall,
                "auc_unpainted_patch_not_building": ctx_overall,
                "spearman_within_placement_mean": round(float(np.mean(list(rho_within.values()))), 4)
                if rho_within else None, "spearman_within_placements": len(rho_within),
                "spearman_score_vs_p_building": None if rho is None else round(float(rho), 4),
                "score_mean_positive": round(float(s[pos].mean()), 4) if pos.any() else None,
                "score_mean_negative": round(float(s[~pos].mean()), 4) if (~pos).any() else None,
                "seconds": round(secs, 2), "seconds_per_candidate": round(secs / len(labels), 5),
                "encoder_load_seconds": round(load_s, 2),
                # best-of-K with this score: share of placements whose chosen candidate is positive
                "best_of_k_positive_pct": round(100 * float(np.mean([pos[idx[np.argmax(s[idx])]]
                                                                     for idx in members.values()])), 1),
            }
    # bootstrap over placements (the same resamples for every encoder/mode)
    rng = np.random.default_rng(12345)
    boot = {k: {"auc": [], "within": []} for k in all_scores}
    for _ in range(BOOTSTRAP):
        pick = rng.choice(len(placements), len(placements), replace=True)
        idx = np.concatenate([members[placements[i]] for i in pick])
        g = np.concatenate([np.full(members[placements[i]].size, j) for j, i in enumerate(pick)])
        mem = {j: np.flatnonzero(g == j) for j in range(len(pick))}
        for k, s in all_scores.items():
            o, w, _ = _aucs(s[idx], pos[idx], g, mem)
            boot[k]["auc"].append(np.nan if o is None else o)
            boot[k]["within"].append(np.nan if w is None else w)
    rng = np.random.default_rng(54321)
    for k, per in within_rhos.items():
        v = np.array(list(per.values()))
        if v.size:
            means = [v[rng.integers(0, v.size, v.size)].mean() for _ in range(BOOTSTRAP)]
            results[k]["spearman_within_placement_ci95"] = [round(float(x), 4) for x in np.quantile(means,
                                                                                                    [0.025, 0.975])]
    for k, res in results.items():
        for name, field in (("auc", "auc_ci95"), ("within", "auc_within_placement_ci95")):
            v = np.array(boot[k][name])
            v = v[np.isfinite(v)]
            res[field] = [round(float(x), 4) for x in np.quantile(v, [0.025, 0.975])] if v.size else None
        for f in ("auc", "auc_within_placement", "auc_patch_in_mask_ge_0.5", "auc_unpainted_patch_not_building"):
            if res[f] is not None:
                res[f] = round(float(res[f]), 4)
    ranked = sorted((k for k in results if results[k]["auc"] is not None), key=lambda k: -results[k]["auc"])
    ranked_within = sorted((k for k in results if results[k]["auc_within_placement"] is not None),
                           key=lambda k: -results[k]["auc_within_placement"])
    paired = {}
    if len(ranked) >= 2:
        best = ranked[0]
        for k in ranked[1:]:
            a, b = np.array(boot[best]["auc"]), np.array(boot[k]["auc"])
            ok = np.isfinite(a) & np.isfinite(b)
            paired[f"{best} > {k}"] = round(100 * float(np.mean(a[ok] > b[ok])), 1) if ok.any() else None
    counts = {"candidates": len(labels), "placements": len(placements), "positives": int(pos.sum()),
              "negatives": int((~pos).sum()), "placements_all_positive": sum(bool(pos[i].all()) for i in
                                                                            members.values()),
              "placements_all_negative": sum(not pos[i].any() for i in members.values()),
              "placements_mixed": sum(bool(0 < pos[i].sum() < i.size) for i in members.values()),
              # references for best_of_k_positive_pct: candidate 0 (no filter), a random pick, an oracle
              "candidate0_positive_pct": round(100 * float(np.mean([pos[i[0]] for i in members.values()])), 1),
              "random_pick_positive_pct": round(100 * float(pos.mean()), 1),
              "oracle_positive_pct": round(100 * float(np.mean([pos[i].any() for i in members.values()])), 1),
              "predicted_class": {c: sum(l["pred"] == c for l in labels) for c in CLASS_NAMES},
              "unpainted_patch_predicted_class": {c: sum(l["real_pred"] == c for l in labels
                                                         if l["candidate"] == 0) for c in CLASS_NAMES},
              "patch_in_mask": _stats(in_mask), "candidates_patch_in_mask_ge_0.5": int((in_mask >= 0.5).sum()),
              "positives_patch_in_mask_ge_0.5": int(pos[in_mask >= 0.5].sum()),
              "candidates_unpainted_patch_building": int(context_building.sum()),
              "positives_unpainted_patch_building": int(pos[context_building].sum()),
              "positives_unpainted_patch_not_building": int(pos[~context_building].sum()),
              "window_side": _stats([l["window_side"] for l in labels])}
    return {"counts": counts, "by_encoder_mode": results, "ranking_by_auc": ranked,
            "ranking_by_auc_within_placement": ranked_within,
            "bootstrap_pct_best_beats_other": paired, "bootstrap_resamples": BOOTSTRAP,
            "chosen_default": ranked[0] if ranked else None,
            "chosen_by_within_placement": ranked_within[0] if ranked_within else None}


# ================================================================================================ curation runs
def _hardlink_copy(src: Path, dst: Path) -> None:
    """A fresh source folder for one curation setting (hard links; new files written there stay there), so the
    refined-mask cache of one run never times another."""
    if dst.exists():
        return
    tmp = dst.with_name(dst.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, copy_function=os.link,
                    ignore=lambda d, names: [n for n in names if "_refined_" in n or n in ("images", "labels")])
    os.replace(tmp, dst)


def curation_runs(args, paintseg, syn: Path, labels: list[dict], settings: list[tuple[str, list[str]]],
                  timings: dict) -> dict:
    pos = {(l["placement"], l["candidate"]): l["positive"] for l in labels}
    out = {}
    for tag, options in settings:
        src, dst = args.work / f"curate_{tag}_src", args.work / f"curate_{tag}"
        if not (dst / "curate_summary.json").is_file():
            _hardlink_copy(syn, src)
            run(paintseg + ["curate", str(src), "--episode", str(args.episode), "--out", str(dst)] + options,
                f"curate_{tag}", timings)
        summary = json.loads((dst / "curate_summary.json").read_text())
        lines = [json.loads(x) for x in (dst / "manifest.jsonl").read_text().splitlines() if x.strip()]
        kept = [e for e in lines if e.get("kept")]
        kept_pos = [pos[(int(e["placement"]), int(e["candidate"]))] for e in kept]
        out[tag] = {"options": options, "placements": summary["placements"], "kept": summary["kept"],
                    "kept_fraction": round(summary["kept"] / max(summary["placements"], 1), 4),
                    "rejected": summary["rejected"], "seconds": summary["seconds"],
                    "cli_wall_seconds": timings.get(f"curate_{tag}"),
                    "kept_positive_pct": round(100 * float(np.mean(kept_pos)), 1) if kept_pos else None,
                    "folder": _repo_relative(dst)}
    return out


# ================================================================================================ main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DUBAI, help="dubai_aerial folder (default: ../shared/data/...)")
    ap.add_argument("--work", type=Path, default=None, help="default benchmarks/work/curation_dubai[_quick]")
    ap.add_argument("--out", type=Path, default=None, help="default benchmarks/results/curation_dubai[_quick].json")
    ap.add_argument("--generator", default=None, help="GEN folder to paint and score with (default: the newest "
                    "benchmarks/work/generator_dubai/gen_*/ with a model.pt; else a tiny one is trained here)")
    ap.add_argument("--fallback-steps", type=int, default=None, help="steps of the fallback tiny generator "
                    "(default 300; quick 20)")
    ap.add_argument("--per-class", type=int, default=None, help="placements painted (default 40; quick 3)")
    ap.add_argument("--candidates", type=int, default=None, help="candidates per placement (default 4; quick 2)")
    ap.add_argument("--gen-steps", type=int, default=None, help="DDIM steps for painting (default 50; quick 5)")
    ap.add_argument("--query-instances", type=int, default=None, help="query buildings refined (default 200; "
                    "quick 10)")
    ap.add_argument("--sam-checkpoint", type=Path, default=None)
    ap.add_argument("--sam-model-type", default="vit_b")
    ap.add_argument("--sam-prompts", default="point", help="comma-separated SAM prompts to test (point,box,both)")
    ap.add_argument("--open-clip", default=None, metavar="MODEL:CKPT", help="also score with open_clip:MODEL:CKPT")
    ap.add_argument("--patches-per-class", type=int, default=None, help="classifier training patches per class, "
                    "when it is trained here (default 2000; quick 300)")
    ap.add_argument("--classifier-epochs", type=int, default=None, help="default 12; quick 2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="tiny smoke budget; own work folder and results file")
    args = ap.parse_args()
    defaults = {"fallback_steps": (300, 20), "per_class": (40, 3), "candidates": (4, 2), "gen_steps": (50, 5),
                "query_instances": (200, 10), "patches_per_class": (2000, 300), "classifier_epochs": (12, 2)}
    resolve_budget(args, defaults, "curation_dubai")
    args.work.mkdir(parents=True, exist_ok=True)

    import torch

    from paintseg.data.episode import Episode
    from paintseg.generate.references import load_references

    paintseg = [sys.executable, "-m", "paintseg"]
    stages_path = args.work / STAGES_FILE
    cli_stages = json.loads(stages_path.read_text()) if stages_path.is_file() else {}
    timings: dict = {**cli_stages, "_file": str(stages_path)}  # CLI stages of earlier (resumed) runs kept
    t0 = time.time()
    load_start = [round(x, 2) for x in os.getloadavg()]

    # ---- episode: the baseline's, else built the same way
    args.episode = REPO / "benchmarks" / "work" / "baseline_dubai" / "episode"
    if not (args.episode / "val.json").is_file():
        args.episode = args.work / "episode"
        if not (args.episode / "val.json").is_file():
            run(paintseg + ["split", "--images", str(args.data / "*" / "images" / "*.jpg"),
                            "--labels", str(args.data / "*" / "masks" / "*.png"),
                            "--classes", str(args.data / "classes-paintseg.json"), "--novel", NOVEL,
                            "--group", r"Tile \d+", "--tile", "512", "--shots", "5", "--seed", str(args.seed),
                            "--out", str(args.episode)], "split", timings)
    episode = Episode(args.episode)
    building = episode.classes.by_name(NOVEL).id

    # ---- 1. refinement on real objects
    t = time.time()
    refiners = build_refiners(args)
    support = support_instances(episode, building)
    query, query_total = query_instances(episode, building, args.query_instances, args.seed)
    print(f"refinement: {len(support)} support instances, {len(query)} of {query_total} query instances; "
          f"refiners {[n for n, _ in refiners]}", flush=True)
    refinement = {}
    names, computed = [n for n, _ in refiners], False
    for set_id, (name, instances) in enumerate((("support", support), ("query", query))):
        path = args.work / f"refine_{name}.json"
        saved = json.loads(path.read_text()) if path.is_file() else None
        if isinstance(saved, dict) and saved["refiners"] == names and saved["instances"] == len(instances):
            records = saved["records"]  # resumed (same instances and refiners)
        else:
            records, computed = refine_instances(instances, refiners, set_id, args.seed), True
            _write_json(path, {"refiners": names, "instances": len(instances), "records": records})
        refinement[name] = summarise_refinement(records, refiners)
    refinement["query"]["instances_available"] = query_total
    del support, query
    if computed or "refinement" not in timings:  # a resumed run keeps the time of the run that refined
        timings["refinement"] = round(time.time() - t, 1)

    # ---- 2. filter quality on painted candidates
    gen, gen_info = find_generator(args, paintseg, timings)
    gen_info["folder"] = _repo_relative(gen)
    gen_record = gen / "train_summary.json"
    if gen_record.is_file():
        gen_info["train_steps"] = json.loads(gen_record.read_text()).get("steps")
    syn = args.work / f"syn_{gen.name}_pc{args.per_class}_k{args.candidates}_e{args.gen_steps}"
    if not (syn / "generate_summary.json").is_file():
        run(paintseg + ["generate", str(args.episode), "--generator", str(gen), "--out", str(syn),
                        "--per-class", str(args.per_class), "--candidates", str(args.candidates),
                        "--steps", str(args.gen_steps), "--seed", str(args.seed), "--select", "none"],
            "generate", timings)
    gen_summary = json.loads((syn / "generate_summary.json").read_text())
    t = time.time()
    classifier, classifier_report = load_classifier(episode, args, timings)
    entries, labels = label_candidates(episode, syn, classifier)
    _write_json(args.work / "candidate_labels.json", labels)
    timings["label_candidates"] = round(time.time() - t, 1)
    specs = (["handcrafted", "efficientnet-lite0", f"generator:{gen}"]
             + ([f"open_clip:{args.open_clip}"] if args.open_clip else []))
    t = time.time()
    filt = filter_quality(entries, labels, load_references(syn / "references"), syn / "candidates", specs)
    timings["filter_quality"] = round(time.time() - t, 1)
    c = filt["counts"]
    if min(c["positives"], c["negatives"]) < 0.1 * c["candidates"]:
        filt["warning"] = (f"unbalanced labels: {c['positives']} positive vs {c['negatives']} negative candidates; "
                           f"the AUCs rest on few examples of one side")

    # ---- 3. the full curation through the CLI
    winner = filt["chosen_default"]
    settings = [("none", ["--filter", "none", "--keep", "all", "--refine", "none"]),
                ("handcrafted_region", ["--filter", "handcrafted", "--score-mode", "region", "--keep", "top:0.5",
                                        "--refine", "grabcut"])]
    if winner and winner != "handcrafted/region":
        spec = next(s for s in specs if s.split(":")[0] == winner.split("/")[0])
        settings.append((winner.replace("/", "_"), ["--filter", spec, "--score-mode", winner.split("/")[1],
                                                    "--keep", "top:0.5", "--refine", "grabcut"]))
    curation = curation_runs(args, paintseg, syn, labels, settings, timings)

    result = {
        "benchmark": "curation_dubai",
        "command": ("OMP_NUM_THREADS=" + os.environ["OMP_NUM_THREADS"] + " " if "OMP_NUM_THREADS" in os.environ
                    else "") + "python " + shlex.join([_repo_relative(sys.argv[0])] + sys.argv[1:]),
        "quick": args.quick,
        "episode": _repo_relative(args.episode),
        "generator": gen_info,
        "budget": {"per_class": args.per_class, "candidates": args.candidates, "gen_ddim_steps": args.gen_steps,
                   "query_instances": args.query_instances, "seed": args.seed, "sam_checkpoint":
                   str(args.sam_checkpoint) if args.sam_checkpoint else None, "sam_model_type": args.sam_model_type
                   if args.sam_checkpoint else None, "open_clip": args.open_clip,
                   "threads": os.environ.get("OMP_NUM_THREADS"), "torch_threads": torch.get_num_threads()},
        "refinement": refinement,
        "filter": filt,
        "patch_classifier": {k: classifier_report.get(k) for k in (
            "loaded_from", "epochs", "train_patches", "test_accuracy", "test_balanced_accuracy",
            "test_accuracy_per_class", "test_confusion")},
        "paint": {"folder": _repo_relative(syn), "candidates": gen_summary["candidates"],
                  "placements": gen_summary["placements"], "seconds": gen_summary["seconds"],
                  "seconds_per_candidate": gen_summary["seconds_per_candidate"],
                  "cli_wall_seconds": timings.get("generate")},
        "curation": curation,
        "protocol": {
            "refinement": "instances: support = extract_references (every building reference), query = random "
                          f"instance_masks components of the query labels (cap {args.query_instances}); window = "
                          "placement.window_for (box covers 10-25 %); inpaint masks: 'rectangle' = "
                          "masks.rectangle_mask (box grown by up to 20 % of the free space per side, the "
                          "pipeline's), 'box20' = tight box + 20 % of its size per side; refiners get the window, "
                          "the inpaint mask and the tight box; iou = refine_iou vs the instance; iou_class = vs "
                          "every building pixel within the inpaint mask + 8 px (neighbouring buildings count); "
                          "coverage = mask_coverage_check at (0.2, 0.98) (function defaults) and (0.2, 1.0) "
                          "(CLI/curate defaults)",
            "filter": "candidates painted by `paintseg generate --select none`; label = patch classifier "
                      f"(generator_dubai.py) on the {PATCH}x{PATCH} patch at the inpaint mask's deepest point of "
                      "the painted window (native size; windows under 32 px reflect-padded): positive = "
                      "'building'; score = score_manifest(build_encoder(spec), ..., mode); auc = ranking_auc over "
                      "all candidates; auc_within_placement = mean ranking_auc over placements with both labels; "
                      f"95 % CIs from {BOOTSTRAP} bootstrap resamples of placements; chosen_default = best auc",
            "curation": "`paintseg curate` on a hard-linked copy of the painted set per setting (fresh refined-mask "
                        "cache); kept_positive_pct = share of kept placements whose chosen candidate is positive",
        },
        "stage_seconds": {k: v for k, v in timings.items() if k != "_file"},
        "stage_seconds_note": "wall seconds; CLI stages skipped on a resumed run keep their earlier time",
        "wall_seconds_this_run": round(time.time() - t0, 1),
        "wall_seconds_all_stages": round(sum(v for k, v in timings.items() if k != "_file"), 1),
        "machine": {"cpu_count": os.cpu_count(), "load_average_1_5_15_min": {"start": load_start, "end": [
            round(x, 2) for x in os.getloadavg()]}, "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__},
        "date": time.strftime("%Y-%m-%d"),
    }
    timings.pop("_file")
    _write_json(stages_path, timings)
    _write_json(args.out, result)

    # ---- table
    print()
    refs = [n for n, _ in refiners]
    print(f"refinement IoU (mean / median; s per instance)  {'  '.join(f'{n:>22}' for n in refs)}")
    for set_name in ("support", "query"):
        for shape in MASK_SHAPES:
            per = refinement[set_name][shape]
            cells = [f"{per[n]['iou'].get('mean', float('nan')):.3f}/{per[n]['iou'].get('median', float('nan')):.3f}"
                     f" {per[n]['seconds_per_instance']:.3f}s" for n in refs]
            print(f"  {set_name:<7} {shape:<9} n={refinement[set_name]['instances']:<4}"
                  f"{'':<20}{'  '.join(f'{x:>22}' for x in cells)}")
        gc = refinement[set_name]["rectangle"].get("grabcut", {})
        if gc:
            print(f"    grabcut coverage check (rectangle): function {gc['coverage_function']['counts']}, "
                  f"CLI {gc['coverage_cli']['counts']}; fallbacks {gc['fallbacks']}")
    print(f"\nfilter: {c['candidates']} candidates / {c['placements']} placements; {c['positives']} positive, "
          f"{c['negatives']} negative; {c['placements_mixed']} mixed placements")
    print(f"  best-of-K positive %: candidate 0 {c['candidate0_positive_pct']}, "
          f"random {c['random_pick_positive_pct']}, oracle {c['oracle_positive_pct']}")
    print(f"  {'encoder/mode':<22} {'AUC':>6} {'95% CI':>15} {'within':>7} {'95% CI':>15} {'best-of-K +%':>12}")
    for k, r in filt["by_encoder_mode"].items():
        fmt = lambda x: "   n/a" if x is None else f"{x:6.3f}"
        ci = lambda x: "n/a" if x is None else f"[{x[0]:.3f},{x[1]:.3f}]"
        print(f"  {k:<22} {fmt(r['auc'])} {ci(r['auc_ci95']):>15} {fmt(r['auc_within_placement'])} "
              f"{ci(r['auc_within_placement_ci95']):>15} {r['best_of_k_positive_pct']:>12.1f}")
    print(f"  context checks: positives whose unpainted patch is already 'building': "
          f"{c['positives_unpainted_patch_building']}/{c['positives']}; patch-in-mask share median "
          f"{c['patch_in_mask'].get('median')}")
    print(f"  {'encoder/mode':<22} {'AUC unpainted!=bld':>18} {'AUC in-mask>=.5':>15} {'within-placement rho':>28}")
    for k, r in filt["by_encoder_mode"].items():
        fmt = lambda x: "   n/a" if x is None else f"{x:6.3f}"
        ci = r.get("spearman_within_placement_ci95")
        print(f"  {k:<22} {fmt(r['auc_unpainted_patch_not_building']):>18} {fmt(r['auc_patch_in_mask_ge_0.5']):>15} "
              f"{fmt(r['spearman_within_placement_mean'])} (n={r['spearman_within_placements']}) "
              f"{'' if ci is None else f'[{ci[0]:.3f},{ci[1]:.3f}]'}")
    print(f"  chosen default (best AUC): {filt['chosen_default']}; best within placements: "
          f"{filt['chosen_by_within_placement']}")
    if "warning" in filt:
        print("  WARNING: " + filt["warning"])
    print("\ncuration (CLI):")
    for k, r in curation.items():
        print(f"  {k:<22} kept {r['kept']}/{r['placements']} ({100 * r['kept_fraction']:.0f} %), positive among kept "
              f"{r['kept_positive_pct']} %, rejected {r['rejected']}, seconds {r['seconds']}, "
              f"CLI {r['cli_wall_seconds']} s")
    if gen_info["fallback"]:
        print(f"\nNOTE: painted with a FALLBACK tiny generator trained here ({gen_info['folder']})")
    print(f"\nresults written to {args.out}; wall {result['wall_seconds_this_run']} s (this run)")
    print("command: " + result["command"])


if __name__ == "__main__":
    main()
