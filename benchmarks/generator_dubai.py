"""Generator on real aerial data: Dubai (novel = building), the exemplar-conditioned inpainting model `small`.

Trains `small` for a fixed budget through the CLI (`paintseg generator train`), then measures on instances of the
QUERY tiles (never seen in generator training, which reads the trainset + support scenes only):

1. conditioning: a held-out instance is hidden under an inpaint mask and painted from a crop of itself (true
   reference, augmented like the training references) and from an instance of another class (wrong reference);
   PSNR and SSIM inside the mask against the real window, per class (true must be better). The same noise is used
   for both, and once more with no reference at all (the null embedding, guidance 0) as a control;
2. class faithfulness: a small CNN trained on 32x32 real patches of the 5 classes (trainset tiles, full labels)
   classifies the painted region as the reference's class (chance 20 %); the same classifier on the real patch and
   on the real patch sent through the model's resolution and back tells what accuracy a perfect painting could get;
3. speed and memory: s/step training, s/candidate painting (`paintseg generate`, diffusion vs copy-paste), peak RSS.

It also saves a grid PNG (reference | scene window | K candidates | composed window) of the `paintseg generate` run
and the last training sample grid, and writes benchmarks/results/generator_dubai.json with the metrics, the budget,
the wall time of every stage and the exact command. Re-running resumes: a finished stage is skipped, an interrupted
training continues from its checkpoint, held-out painting continues after the last finished chunk.

    OMP_NUM_THREADS=1 python benchmarks/generator_dubai.py            # the recorded budget (~45 min at 1 thread)
    OMP_NUM_THREADS=1 python benchmarks/generator_dubai.py --quick    # a smoke run (a few minutes; own files)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DUBAI = REPO.parent / "shared" / "data" / "dubai_aerial"
CLASS_NAMES = ("land", "road", "vegetation", "water", "building")
PATCH = 32  # classifier patch side (native pixels)
PURITY = 0.7  # least share of the patch's centre class in a real training / test patch
CHUNK = 6  # held-out instances painted per batch


def _repo_relative(path: str) -> str:
    p = Path(path).resolve()
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else path


# Runs a command and writes its peak RSS (KiB). A child forked from this (large) process would start with this
# process's high-water mark, so the command is started from a small fresh interpreter instead.
PEAK_RSS = ("import os, subprocess, sys; p = subprocess.Popen(sys.argv[2:]); _, s, u = os.wait4(p.pid, 0); "
            "open(sys.argv[1], 'w').write(str(u.ru_maxrss)); sys.exit(os.waitstatus_to_exitcode(s))")


def run(cmd: list[str], stage: str, stages: dict, stages_path: Path) -> None:
    """Run a CLI stage; record its wall time and its own peak RSS in ``stages`` (saved to ``stages_path``)."""
    print("$ " + shlex.join(cmd), flush=True)
    t = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        peak = Path(tmp) / "peak_rss"
        code = subprocess.run([sys.executable, "-c", PEAK_RSS, str(peak)] + cmd).returncode
        if code:
            sys.exit(f"stage {stage!r} failed with exit code {code}: {shlex.join(cmd)}")
        stages["peak_rss_mb"][stage] = round(int(peak.read_text()) / 1024, 1)  # KiB on Linux
    stages["seconds"][stage] = round(time.time() - t, 1)
    _write_json(stages_path, stages)


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def _save_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial.png")
    Image.fromarray(array).save(tmp, format="PNG", optimize=True)
    os.replace(tmp, path)


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


# ================================================================================================ patches
def sample_patches(image: np.ndarray, label: np.ndarray, class_ids: list[int], per_class: int,
                   rng: np.random.Generator) -> tuple[list[np.ndarray], list[int]]:
    """Up to ``per_class`` random PATCH x PATCH patches per class whose centre pixel is the class and whose pixels
    are at least PURITY of it; returns patches and class indices (into ``class_ids``)."""
    h, w = label.shape
    half = PATCH // 2
    interior = np.zeros((h, w), bool)
    interior[half : h - half + 1, half : w - half + 1] = True
    patches, ys = [], []
    for k, cid in enumerate(class_ids):
        own = (label == cid).astype(np.float32)
        if own.sum() < PATCH * PATCH * PURITY:
            continue
        # cv2.blur with an even kernel anchors at (half, half): the mean over [y - half, y + half)
        purity = cv2.blur(own, (PATCH, PATCH), borderType=cv2.BORDER_CONSTANT)
        cy, cx = np.nonzero((own > 0) & (purity >= PURITY) & interior)
        if not len(cy):
            continue
        for i in rng.choice(len(cy), min(per_class, len(cy)), replace=False):
            y, x = int(cy[i]), int(cx[i])
            patches.append(image[y - half : y + half, x - half : x + half].copy())
            ys.append(k)
    return patches, ys


def patch_at(image: np.ndarray, cy: int, cx: int) -> np.ndarray:
    """The PATCH x PATCH patch centred at (cy, cx), shifted to lie inside the image (which must be >= PATCH)."""
    h, w = image.shape[:2]
    y0 = min(max(cy - PATCH // 2, 0), h - PATCH)
    x0 = min(max(cx - PATCH // 2, 0), w - PATCH)
    return image[y0 : y0 + PATCH, x0 : x0 + PATCH]


def build_classifier():
    import torch
    from torch import nn

    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]

    return nn.Sequential(*block(3, 32), *block(32, 64), *block(64, 96), nn.Flatten(), nn.Dropout(0.2),
                         nn.Linear(96 * 4 * 4, len(CLASS_NAMES)))


def _as_input(patches: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(patches)).permute(0, 3, 1, 2).float() / 127.5 - 1


def classify(model, patches: list[np.ndarray] | np.ndarray) -> np.ndarray:
    import torch

    if len(patches) == 0:
        return np.zeros(0, np.int64)
    with torch.inference_mode():
        x = _as_input(np.stack(patches))
        return torch.cat([model(x[i : i + 512]) for i in range(0, len(x), 512)]).argmax(1).numpy()


def patch_classifier(episode, args, classes, work: Path, timings: dict):
    """Train (or load) the patch CNN on real trainset patches with their FULL labels; test on query patches."""
    import torch
    from paintseg.data.classes import ClassMap
    from paintseg.data.raster import read_image, read_label, to_uint8
    from paintseg.data.split import find_pairs

    weights, report = work / "patch_classifier.pt", work / "patch_classifier.json"
    model = build_classifier()
    if weights.is_file() and report.is_file():
        model.load_state_dict(torch.load(weights, weights_only=True))
        return model.eval(), json.loads(report.read_text())
    t0 = time.time()
    class_ids = [classes.by_name(n).id for n in CLASS_NAMES]
    split = json.loads((episode.root / "split.json").read_text())
    train_groups = set(split["summary"]["train"]["groups"])
    raw_classes = ClassMap.load(args.data / "classes-paintseg.json")
    pairs = [p for p in find_pairs(str(args.data / "*" / "images" / "*.jpg"), str(args.data / "*" / "masks" / "*.png"),
                                   split["config"]["group"]) if p.group in train_groups]
    if not pairs:
        sys.exit(f"no raw Dubai pairs of the train groups {sorted(train_groups)} under {args.data}")
    rng = np.random.default_rng([args.seed, 11])
    per_image = max(1, -(-args.patches_per_class // len(pairs)) * 2)
    xs, ys = [], []
    for p in pairs:  # the original masks: building is labelled here (the episode's trainset has it as 0)
        image = to_uint8(read_image(p.image).array)
        label = read_label(p.label, raw_classes).array
        px, py = sample_patches(image, label, [raw_classes.by_name(n).id for n in CLASS_NAMES], per_image, rng)
        xs += px
        ys += py
    x_train, y_train = np.stack(xs), np.array(ys)
    keep = np.concatenate([rng.permutation(np.flatnonzero(y_train == k))[: args.patches_per_class]
                           for k in range(len(CLASS_NAMES))])
    x_train, y_train = x_train[keep], y_train[keep]
    xs, ys = [], []
    for s in episode.query:  # held-out real patches (query labels carry every class)
        px, py = sample_patches(to_uint8(episode.read_image(s).array), episode.read_label(s).array, class_ids,
                                4, rng)
        xs += px
        ys += py
    x_test, y_test = np.stack(xs), np.array(ys)
    keep = np.concatenate([rng.permutation(np.flatnonzero(y_test == k))[: args.patches_per_class // 4]
                           for k in range(len(CLASS_NAMES))])
    x_test, y_test = x_test[keep], y_test[keep]

    torch.manual_seed(args.seed)
    counts = np.bincount(y_train, minlength=len(CLASS_NAMES)).astype(np.float64)
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(counts.sum() / (len(counts) * np.maximum(counts, 1)),
                                                            dtype=torch.float32))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    epochs = args.classifier_epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=epochs * -(-len(x_train) // 128))
    gen = torch.Generator().manual_seed(args.seed)
    xt, yt = _as_input(x_train), torch.from_numpy(y_train)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(xt), generator=gen)
        epoch_loss = []
        for i in range(0, len(xt), 128):
            idx = order[i : i + 128]
            xb = xt[idx]
            k, flip = int(torch.randint(4, (1,), generator=gen)), bool(torch.randint(2, (1,), generator=gen))
            xb = torch.rot90(xb, k, (2, 3))
            xb = xb.flip(3) if flip else xb
            loss = loss_fn(model(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            epoch_loss.append(loss.item())
        print(f"patch classifier: epoch {epoch + 1}/{epochs}, mean loss {np.mean(epoch_loss):.3f}", flush=True)
    model.eval()
    pred_train, pred_test = classify(model, x_train), classify(model, x_test)
    confusion = np.zeros((len(CLASS_NAMES),) * 2, np.int64)
    np.add.at(confusion, (y_test, pred_test), 1)
    result = {
        "model": "3 conv blocks (32-64-96, BN, ReLU, max-pool) + linear; flips/rot90 augmentation, class-weighted CE",
        "patch": PATCH, "purity": PURITY, "epochs": epochs,
        "train_source": f"raw Dubai masks of the train groups {sorted(train_groups)} ({len(pairs)} images, full "
                        f"labels incl. building)",
        "test_source": f"episode query tiles ({len(episode.query)} tiles, groups "
                       f"{split['summary']['query']['groups']})",
        "train_patches": {n: int((y_train == k).sum()) for k, n in enumerate(CLASS_NAMES)},
        "test_patches": {n: int((y_test == k).sum()) for k, n in enumerate(CLASS_NAMES)},
        "train_accuracy": round(float((pred_train == y_train).mean()) * 100, 1),
        "test_accuracy": round(float((pred_test == y_test).mean()) * 100, 1),
        "test_balanced_accuracy": round(float(np.mean([(pred_test[y_test == k] == k).mean()
                                                       for k in range(len(CLASS_NAMES))])) * 100, 1),
        "test_accuracy_per_class": {n: round(float((pred_test[y_test == k] == k).mean()) * 100, 1)
                                    for k, n in enumerate(CLASS_NAMES)},
        "test_confusion": {"rows_true_cols_pred": list(CLASS_NAMES), "matrix": confusion.tolist()},
        "seconds": round(time.time() - t0, 1),
    }
    torch.save(model.state_dict(), weights)
    _write_json(report, result)
    timings["patch_classifier"] = result["seconds"]
    return model, result


# ================================================================================================ held-out painting
def select_instances(sampler, names: list[str], class_ids: list[int], count: int, seed: int) -> dict[int, list]:
    """Up to ``count`` query instances per class (the training rule's components, box 24..160 px, >= 400 px),
    preferring distinct source images, then distinct tiles."""
    chosen: dict[int, list] = {}
    for cid in class_ids:
        pool = [inst for found in sampler.instances for inst in found
                if inst.class_id == cid and inst.mask.sum() >= 400 and min(inst.box.width, inst.box.height) >= 24
                and max(inst.box.width, inst.box.height) <= 160]
        rng = np.random.default_rng([seed, 21, cid])
        pool = [pool[i] for i in rng.permutation(len(pool))]
        picked: list = []
        for key in (lambda i: re.sub(r"_r\d+_c\d+\..*$", "", names[i.scene]), lambda i: i.scene, lambda i: id(i)):
            used = {key(i) for i in picked}
            taken = {id(i) for i in picked}
            for inst in pool:
                if len(picked) >= count:
                    break
                if id(inst) not in taken and key(inst) not in used:
                    picked.append(inst)
                    used.add(key(inst))
                    taken.add(id(inst))
        chosen[cid] = picked
    return chosen


def masked_psnr(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    diff = pred.astype(np.float64)[mask] - target.astype(np.float64)[mask]
    return float(10 * np.log10(255.0**2 / max(float(np.mean(diff**2)), 1e-10)))


def masked_ssim(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    _, full = structural_similarity(target, pred, channel_axis=2, data_range=255, full=True)
    return float(full.mean(axis=2)[mask].mean())


def heldout(episode, gen: Path, classifier, classes, args, work: Path, timings: dict) -> tuple[list[dict], dict]:
    """Paint held-out query instances with their true, a wrong and no reference; PSNR/SSIM and classifier labels."""
    import torch
    from paintseg.data.raster import to_uint8 as raster_uint8
    from paintseg.generate.diffusion import PairSampler, load_generator, paint, to_tensor, to_uint8
    from paintseg.generate.masks import make_mask
    from paintseg.generate.placement import window_for

    folder = work / f"heldout_s{args.steps}_n{args.instances}_e{args.eval_steps}"
    folder.mkdir(parents=True, exist_ok=True)
    records_path = folder / "records.jsonl"
    records = [json.loads(x) for x in records_path.read_text().splitlines() if x.strip()] \
        if records_path.is_file() else []
    done_chunks = {r["chunk"] for r in records}

    model, config = load_generator(gen)
    R = model.spec.resolution
    query = episode.query
    images = [raster_uint8(episode.read_image(s).array) for s in query]
    labels = [episode.read_label(s).array for s in query]
    sampler = PairSampler(images, labels, config, [s.name for s in query])
    class_ids = [classes.by_name(n).id for n in CLASS_NAMES]
    chosen = select_instances(sampler, [s.name for s in query], class_ids, args.instances, args.seed)
    jobs = []  # (class id, index within class, instance, wrong class id, wrong instance)
    for c in class_ids:
        others = [o for o in class_ids if o != c]
        for i, inst in enumerate(chosen[c]):
            oc = others[i % len(others)]
            if chosen[oc]:
                jobs.append((c, i, inst, oc, chosen[oc][i % len(chosen[oc])]))
    stats = {"instances_per_class": {classes.name(c): len(chosen[c]) for c in class_ids}, "resolution": R}
    t0 = time.time()
    for chunk_start in range(0, len(jobs), CHUNK):
        chunk = chunk_start // CHUNK
        if chunk in done_chunks:
            continue
        items = []
        for c, i, inst, oc, other in jobs[chunk_start : chunk_start + CHUNK]:
            image = images[inst.scene]
            rng = np.random.default_rng([args.seed, 31, c, i])
            win = window_for(inst.box, image.shape[:2], rng, tuple(config.box_fraction))
            window = image[win.y0 : win.y1, win.x0 : win.x1]
            side = win.width
            obj = np.zeros((side, side), np.uint8)  # the instance's pixels in the window (it may stick out)
            ys, xs = np.nonzero(inst.mask)
            ys, xs = ys + inst.box.y0 - win.y0, xs + inst.box.x0 - win.x0
            ok = (ys >= 0) & (ys < side) & (xs >= 0) & (xs < side)
            obj[ys[ok], xs[ok]] = 1
            obj_r = cv2.resize(obj, (R, R), interpolation=cv2.INTER_NEAREST) > 0
            box_r = inst.box.shift(-win.x0, -win.y0).scale(R / side).clip(R, R)
            if not obj_r.any():
                obj_r[box_r.y0 : box_r.y1, box_r.x0 : box_r.x1] = True
            kind = "rectangle" if i % 2 == 0 else "silhouette"
            mask_r = make_mask(kind, (R, R), box_r, rng, ref_mask=obj_r)
            # references through the training path: square crop around the instance, resized, augmented (fixed rng)
            ref_true = sampler._reference(image, inst, np.random.default_rng([args.seed, 32, c, i]))
            ref_wrong = sampler._reference(images[other.scene], other, np.random.default_rng([args.seed, 33, c, i]))
            items.append(dict(c=c, i=i, inst=inst, oc=oc, win=win, window=window, kind=kind, mask_r=mask_r,
                              ref_true=ref_true, ref_wrong=ref_wrong))
        window_t = torch.cat([to_tensor(it["window"], R) for it in items])
        mask_t = torch.from_numpy(np.stack([it["mask_r"] for it in items]).astype(np.float32))[:, None]
        out, seconds = {}, {}
        for variant in ("true", "wrong", "null"):
            ref = torch.stack([it["ref_true" if variant != "wrong" else "ref_wrong"][0] for it in items])
            ref_mask = torch.stack([it["ref_true" if variant != "wrong" else "ref_wrong"][1] for it in items])
            generator = torch.Generator().manual_seed(int(np.random.default_rng([args.seed, 34, chunk])
                                                          .integers(2**62)))  # same noise for every variant
            t = time.perf_counter()
            painted = paint(model, window_t, mask_t, ref, ref_mask, steps=args.eval_steps,
                            guidance=0.0 if variant == "null" else args.guidance, generator=generator)
            seconds[variant] = (time.perf_counter() - t) / len(items)
            out[variant] = to_uint8(painted)
        gt = to_uint8(window_t)  # the real window at model resolution, as the model sees it
        new = []
        for n, it in enumerate(items):
            mask_r = it["mask_r"]
            side = it["win"].width
            rec = {"chunk": chunk, "class": classes.name(it["c"]), "index": it["i"], "wrong_class":
                   classes.name(it["oc"]), "scene": query[it["inst"].scene].name, "box": list(it["inst"].box),
                   "window": list(it["win"]), "mask_kind": it["kind"], "mask_share": round(float(mask_r.mean()), 3),
                   "paint_seconds": {v: round(s, 3) for v, s in seconds.items()}}
            for variant in ("true", "wrong", "null"):
                rec[f"psnr_{variant}"] = round(masked_psnr(out[variant][n], gt[n], mask_r), 3)
                rec[f"ssim_{variant}"] = round(masked_ssim(out[variant][n], gt[n], mask_r), 4)
            # classification at native resolution: the painting resized back and pasted inside the mask (as the
            # diffusion backend does), a PATCH x PATCH patch at the mask's deepest point
            mask_n = cv2.resize(mask_r.astype(np.uint8), (side, side), interpolation=cv2.INTER_NEAREST) > 0
            dist = cv2.distanceTransform(mask_n.astype(np.uint8), cv2.DIST_L2, 3)
            cy, cx = np.unravel_index(int(np.argmax(dist)), dist.shape)
            interp = cv2.INTER_CUBIC if side > R else cv2.INTER_AREA

            def native(small: np.ndarray) -> np.ndarray:
                composite = it["window"].copy()
                composite[mask_n] = cv2.resize(small, (side, side), interpolation=interp)[mask_n]
                return composite

            patches = [patch_at(native(out[v][n]), cy, cx) for v in ("true", "wrong", "null")]
            patches += [patch_at(it["window"], cy, cx), patch_at(cv2.resize(gt[n], (side, side),
                                                                            interpolation=interp), cy, cx)]
            pred = classify(classifier, patches)
            for v, p in zip(("true", "wrong", "null", "real", "real_roundtrip"), pred):
                rec[f"pred_{v}"] = CLASS_NAMES[int(p)]
            rec["patch_in_mask"] = round(float(patch_at(mask_n.astype(np.uint8), cy, cx).mean()), 3)
            rec["window_side"] = side
            stem = f"{rec['class']}_{it['i']:02d}"
            for v in ("true", "wrong", "null"):
                _save_png(folder / f"{stem}_{v}.png", out[v][n])
            _save_png(folder / f"{stem}_real.png", gt[n])
            _save_png(folder / f"{stem}_masked.png", np.where(mask_r[..., None], 255, gt[n]).astype(np.uint8))
            for v in ("true", "wrong"):
                ref, rm = it[f"ref_{v}"]
                _save_png(folder / f"{stem}_ref_{v}.png", to_uint8((ref * (0.6 + 0.4 * rm))[None])[0])
            new.append(rec)
        with open(records_path, "a") as f:
            f.write("".join(json.dumps(r) + "\n" for r in new))
        records += new
        print(f"held-out: chunk {chunk + 1}/{-(-len(jobs) // CHUNK)} painted "
              f"({time.time() - t0:.0f} s)", flush=True)
    if len(done_chunks) < -(-len(jobs) // CHUNK):
        timings["heldout"] = round(time.time() - t0, 1)
    if records:  # per painting, from the chunks' own timings (a resumed run keeps those of earlier chunks)
        stats["seconds_per_painting_guided"] = round(float(np.mean([r["paint_seconds"][v] for r in records
                                                                    for v in ("true", "wrong")])), 3)
        stats["seconds_per_painting_null"] = round(float(np.mean([r["paint_seconds"]["null"] for r in records])), 3)
    records.sort(key=lambda r: (CLASS_NAMES.index(r["class"]), r["index"]))
    return records, {**stats, "folder": _repo_relative(str(folder))}


def _sign_test(wins: int, n: int) -> float:
    """Two-sided exact binomial (sign) test p-value of ``wins`` out of ``n`` against 1/2."""
    if n == 0:
        return 1.0
    k = max(wins, n - wins)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k, n + 1)) / 2**n)


def summarise(records: list[dict]) -> tuple[dict, dict]:
    """Per class and overall: conditioning (PSNR/SSIM true vs wrong vs null) and faithfulness (accuracy)."""
    def cond(rs):
        if not rs:
            return {"n": 0}
        out = {"n": len(rs)}
        for m in ("psnr", "ssim"):
            for v in ("true", "wrong", "null"):
                out[f"{m}_{v}"] = round(float(np.mean([r[f"{m}_{v}"] for r in rs])), 3 if m == "psnr" else 4)
            wins = sum(r[f"{m}_true"] > r[f"{m}_wrong"] for r in rs)
            out[f"{m}_true_beats_wrong"] = round(100 * wins / len(rs), 1)
            out[f"{m}_true_beats_null"] = round(100 * sum(r[f"{m}_true"] > r[f"{m}_null"] for r in rs) / len(rs), 1)
            out[f"{m}_sign_test_p"] = round(_sign_test(wins, len(rs)), 4)
        return out

    def faith(rs, wrong_rs):
        if not rs:
            return {"n": 0}
        acc = lambda rows, v, target: round(100 * float(np.mean([r[f"pred_{v}"] == r[target] for r in rows])), 1)
        return {"n": len(rs), "painted_true_ref": acc(rs, "true", "class"),
                "painted_wrong_ref_as_wrong_class": acc(wrong_rs, "wrong", "wrong_class") if wrong_rs else None,
                "painted_null_ref_as_instance_class": acc(rs, "null", "class"),
                "real_patch": acc(rs, "real", "class"), "real_patch_roundtrip": acc(rs, "real_roundtrip", "class"),
                "patch_in_mask": round(float(np.mean([r["patch_in_mask"] for r in rs])), 3)}

    conditioning = {n: cond([r for r in records if r["class"] == n]) for n in CLASS_NAMES}
    conditioning["all"] = cond(records)
    conditioning["by_mask_kind"] = {k: cond([r for r in records if r["mask_kind"] == k])
                                    for k in ("rectangle", "silhouette")}
    # faithfulness per reference class: true-reference paintings of class c, and wrong-reference paintings whose
    # wrong reference is of class c
    faithfulness = {n: faith([r for r in records if r["class"] == n], [r for r in records if r["wrong_class"] == n])
                    for n in CLASS_NAMES}
    faithfulness["all"] = faith(records, records)
    faithfulness["chance"] = round(100 / len(CLASS_NAMES), 1)
    return conditioning, faithfulness


# ================================================================================================ figures
def _darken_outside(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return (image.astype(np.float32) * (0.6 + 0.4 * mask[..., None])).astype(np.uint8)


def _fit(image: np.ndarray, size: int) -> np.ndarray:
    """Pad to a square (grey) and resize to size x size."""
    h, w = image.shape[:2]
    side = max(h, w)
    canvas = np.full((side, side, 3), 128, np.uint8)
    canvas[(side - h) // 2 : (side - h) // 2 + h, (side - w) // 2 : (side - w) // 2 + w] = image[..., :3]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(canvas, (size, size), interpolation=interp)


def _panel_grid(rows: list[list[np.ndarray]], header: list[str], size: int,
                row_labels: list[str] | None = None) -> np.ndarray:
    from PIL import Image, ImageDraw

    gap, top = 3, 16
    cols = max(len(r) for r in rows)
    grid = np.full((top + len(rows) * (size + gap) + gap, cols * (size + gap) + gap, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, panel in enumerate(row):
            y, x = top + gap + i * (size + gap), gap + j * (size + gap)
            grid[y : y + size, x : x + size] = _fit(panel, size)
    im = Image.fromarray(grid)
    draw = ImageDraw.Draw(im)
    for j, text in enumerate(header):
        draw.text((gap + j * (size + gap) + 2, 2), text, fill=(0, 0, 0))
    for i, text in enumerate(row_labels or []):
        y = top + gap + i * (size + gap)
        box = draw.textbbox((gap + 2, y + 2), text)
        draw.rectangle(box, fill=(255, 255, 255))
        draw.text((gap + 2, y + 2), text, fill=(0, 0, 0))
    return np.asarray(im)


def _save_small_png(path: Path, make, size: int, limit: int = 1_500_000) -> int:
    """Save make(size); shrink the panels until the file is under ``limit`` bytes."""
    while True:
        _save_png(path, make(size))
        if path.stat().st_size < limit or size <= 48:
            return size
        size = int(size * 0.85)


def generate_grid(episode, syn: Path, out_png: Path, placements: int = 6) -> dict:
    """reference | scene window (inpaint mask outlined) | K candidates | composed window, for a few placements."""
    from PIL import Image

    from paintseg.data.raster import read_image, to_uint8

    cand_dir = syn / "candidates"
    entries = [json.loads(x) for x in (cand_dir / "manifest.jsonl").read_text().splitlines() if x.strip()]
    by_placement: dict[int, list[dict]] = {}
    for e in entries:
        by_placement.setdefault(e["placement"], []).append(e)
    keys = sorted(by_placement)
    picked = [keys[i] for i in np.linspace(0, len(keys) - 1, min(placements, len(keys))).round().astype(int)]
    refs = [json.loads(x) for x in (syn / "references" / "references.jsonl").read_text().splitlines() if x.strip()]
    composed = {}
    if (syn / "manifest.jsonl").is_file():
        lines = [json.loads(x) for x in (syn / "manifest.jsonl").read_text().splitlines() if x.strip()]
        composed = {e["placement"]: e["image"] for e in lines}
    scenes = {s.name: s for s in episode.train}
    rows = []
    k_max = 0
    for p in picked:
        cands = sorted(by_placement[p], key=lambda e: e["candidate"])
        k_max = max(k_max, len(cands))
        first = cands[0]
        x0, y0, x1, y1 = first["window"]
        ref = refs[first["reference"]]
        ref_img = _read_png(syn / "references" / ref["file"])
        ref_mask = _read_png(syn / "references" / ref["mask"])[..., 0] > 127
        scene = to_uint8(read_image(scenes[first["scene"]].image).array)[y0:y1, x0:x1].copy()
        inpaint = np.asarray(Image.open(cand_dir / first["inpaint_file"])) > 127
        contours, _ = cv2.findContours(inpaint.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(scene, contours, -1, (255, 0, 0), max(1, (x1 - x0) // 96))
        row = [_darken_outside(ref_img, ref_mask), scene] + [_read_png(cand_dir / e["file"]) for e in cands]
        if p in composed:
            row.append(to_uint8(read_image(syn / "images" / composed[p]).array)[y0:y1, x0:x1])
        rows.append(row)
    header = ["reference", "scene + mask"] + [f"candidate {k}" for k in range(k_max)] + ["composed"]
    size = _save_small_png(out_png, lambda s: _panel_grid(rows, header, s), 128)
    return {"placements": picked, "panel_px": size, "bytes": out_png.stat().st_size}


def heldout_grid(records: list[dict], folder: Path, out_png: Path) -> dict:
    """One held-out instance per class: true ref | wrong ref | masked | painted true | wrong | null | real."""
    rows, labels = [], []
    for name in CLASS_NAMES:
        mine = [r for r in records if r["class"] == name]
        if not mine:
            continue
        stem = f"{name}_{mine[0]['index']:02d}"
        labels.append(f"{name} (wrong: {mine[0]['wrong_class']})")
        rows.append([_read_png(folder / f"{stem}_{v}.png")
                     for v in ("ref_true", "ref_wrong", "masked", "true", "wrong", "null", "real")])
    header = ["true ref", "wrong ref", "masked", "painted: true", "painted: wrong", "painted: null", "real"]
    size = _save_small_png(out_png, lambda s: _panel_grid(rows, header, s, labels), 112)
    return {"panel_px": size, "bytes": out_png.stat().st_size}


# ================================================================================================ main
def resolve_budget(args, defaults: dict[str, tuple], name: str) -> str:
    """Fill unset budget flags with their full or --quick value, pick the work folder and results file (a quick run
    never writes the recorded figures) and check the data folder."""
    for key, (full, quick) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    tag = f"{name}_quick" if args.quick else name
    args.work = args.work or REPO / "benchmarks" / "work" / tag
    args.out = args.out or REPO / "benchmarks" / "results" / f"{tag}.json"
    if not args.data.is_dir():
        sys.exit(f"{args.data}: Dubai data not found; pass --data PATH/TO/dubai_aerial")
    if "OMP_NUM_THREADS" not in os.environ:
        print("note: OMP_NUM_THREADS is not set; torch uses all cores (the recorded run used OMP_NUM_THREADS=1)")
    return tag


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DUBAI, help="dubai_aerial folder (default: ../shared/data/...)")
    ap.add_argument("--work", type=Path, default=None, help="work folder (default: benchmarks/work/generator_dubai"
                    "[_quick])")
    ap.add_argument("--out", type=Path, default=None, help="results JSON (default: benchmarks/results/"
                    "generator_dubai[_quick].json); the PNGs go beside it")
    ap.add_argument("--steps", type=int, default=None, help="generator training steps (default 700; quick 10)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", default="small")
    ap.add_argument("--instances", type=int, default=None, help="held-out query instances per class (default 12; "
                    "quick 2)")
    ap.add_argument("--eval-steps", type=int, default=None, help="DDIM steps for held-out painting (default 50; "
                    "quick 10)")
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--per-class", type=int, default=None, help="placements for `paintseg generate` (default 16; "
                    "quick 2)")
    ap.add_argument("--candidates", type=int, default=None, help="candidates per placement (default 4; quick 2)")
    ap.add_argument("--gen-steps", type=int, default=None, help="DDIM steps for `paintseg generate` (default 50; "
                    "quick 10)")
    ap.add_argument("--patches-per-class", type=int, default=None, help="classifier training patches per class "
                    "(default 2000; quick 300)")
    ap.add_argument("--classifier-epochs", type=int, default=None, help="default 12; quick 2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="tiny smoke budget; writes its own work folder and "
                    "results file, never the recorded figures")
    args = ap.parse_args()
    defaults = dict(steps=(700, 10), instances=(12, 2), eval_steps=(50, 10), per_class=(16, 2), candidates=(4, 2),
                    gen_steps=(50, 10), patches_per_class=(2000, 300), classifier_epochs=(12, 2))
    tag = resolve_budget(args, defaults, "generator_dubai")

    import torch

    from paintseg.data.episode import Episode

    paintseg = [sys.executable, "-m", "paintseg"]
    # wall seconds and peak RSS of every stage, kept across resumed runs (a stage's last execution counts)
    stages_path = args.work / "stages.json"
    stages = json.loads(stages_path.read_text()) if stages_path.is_file() else {"seconds": {}, "peak_rss_mb": {}}
    timings: dict[str, float] = stages["seconds"]
    rss: dict[str, float] = stages["peak_rss_mb"]
    t0 = time.time()
    load_start = [round(x, 2) for x in os.getloadavg()]
    args.work.mkdir(parents=True, exist_ok=True)

    # ---- episode: the baseline's if it is there, else built the same way
    episode_dir = REPO / "benchmarks" / "work" / "baseline_dubai" / "episode"
    if not (episode_dir / "val.json").is_file():
        episode_dir = args.work / "episode"
        if not (episode_dir / "val.json").is_file():
            run(paintseg + ["split", "--images", str(args.data / "*" / "images" / "*.jpg"),
                            "--labels", str(args.data / "*" / "masks" / "*.png"),
                            "--classes", str(args.data / "classes-paintseg.json"), "--novel", "building",
                            "--group", r"Tile \d+", "--tile", "512", "--shots", "5", "--seed", str(args.seed),
                            "--out", str(episode_dir)], "split", stages, stages_path)
    episode = Episode(episode_dir)
    classes = episode.classes

    # ---- 1. train the generator (trainset + support scenes only; resumes)
    gen = args.work / f"gen_{args.size}_s{args.steps}"
    train_cmd = paintseg + ["generator", "train", str(episode_dir), "--out", str(gen), "--size", args.size,
                            "--steps", str(args.steps), "--batch", str(args.batch), "--seed", str(args.seed)]
    if (gen / "checkpoints" / "last.pt").is_file() or (gen / "model.pt").is_file():
        train_cmd.append("--resume")
    if not ((gen / "model.pt").is_file() and (gen / "train_summary.json").is_file()
            and json.loads((gen / "train_summary.json").read_text())["steps"] == args.steps):
        run(train_cmd, "train_generator", stages, stages_path)
    train_summary = json.loads((gen / "train_summary.json").read_text())
    log = [json.loads(x) for x in (gen / "log.jsonl").read_text().splitlines() if x.strip()]
    step_seconds = np.array([r["seconds"] for r in log], np.float64)
    losses = np.array([r["loss"] for r in log], np.float64)
    training = {
        "steps": train_summary["steps"], "parameters": train_summary["parameters"],
        "seconds_per_step": round(float(np.mean(step_seconds)), 3),
        "seconds_per_step_median": round(float(np.median(step_seconds)), 3),
        "seconds_per_step_summary": train_summary["seconds_per_step"],
        "seconds_per_step_note": "mean/median of log.jsonl 'seconds' (optimisation steps only); the summary's "
                                 "value is wall/steps of the last run and includes painting the sample grids",
        "loss_first_50": round(float(losses[:50].mean()), 4), "loss_last_50": round(float(losses[-50:].mean()), 4),
        "peak_rss_mb": train_summary["peak_rss_mb"], "torch_threads": train_summary["torch_threads"],
        "resumed_from": train_summary["resumed_from"], "wall_seconds_last_run": train_summary["wall_seconds"],
    }
    samples = sorted((gen / "samples").glob("step_*.png"))
    out_stem = args.work / tag if args.quick else args.out.with_suffix("")  # quick figures stay in the work folder
    if samples:
        shutil.copyfile(samples[-1], f"{out_stem}_samples.png")

    # ---- 2. patch classifier on real trainset patches (full labels)
    classifier, classifier_report = patch_classifier(episode, args, classes, args.work, timings)

    # ---- 3. held-out query instances: true vs wrong vs null reference
    records, heldout_stats = heldout(episode, gen, classifier, classes, args, args.work, timings)
    conditioning, faithfulness = summarise(records)
    heldout_png = Path(f"{out_stem}_heldout.png")
    heldout_grid(records, REPO / heldout_stats["folder"], heldout_png)

    # ---- 4. speed of the real user path: paintseg generate, diffusion and copy-paste
    gen_runs = {}
    for backend in ("diffusion", "copy-paste"):
        syn = args.work / (f"syn_{backend}_s{args.steps}_pc{args.per_class}_k{args.candidates}_e{args.gen_steps}"
                           if backend == "diffusion" else f"syn_{backend}_pc{args.per_class}_k{args.candidates}")
        if not (syn / "generate_summary.json").is_file():
            run(paintseg + ["generate", str(episode_dir), "--generator", str(gen) if backend == "diffusion"
                            else "copy-paste", "--out", str(syn), "--per-class", str(args.per_class),
                            "--candidates", str(args.candidates), "--steps", str(args.gen_steps),
                            "--seed", str(args.seed)], f"generate_{backend}", stages, stages_path)
        summary = json.loads((syn / "generate_summary.json").read_text())
        gen_runs[backend] = {"folder": _repo_relative(str(syn)), "candidates": summary["candidates"],
                             "placements": summary["placements"], "seconds": summary["seconds"],
                             "seconds_per_candidate": summary["seconds_per_candidate"],
                             "peak_rss_mb": rss.get(f"generate_{backend}")}
    grid_png = Path(f"{out_stem}_grid.png")
    grid_info = generate_grid(episode, args.work / Path(gen_runs["diffusion"]["folder"]).name, grid_png)

    import resource

    result = {
        "benchmark": "generator_dubai",
        "command": ("OMP_NUM_THREADS=" + os.environ["OMP_NUM_THREADS"] + " " if "OMP_NUM_THREADS" in os.environ
                    else "") + "python " + shlex.join([_repo_relative(sys.argv[0])] + sys.argv[1:]),
        "quick": args.quick,
        "episode": _repo_relative(str(episode_dir)),
        "generator": _repo_relative(str(gen)),
        "budget": {"size": args.size, "steps": args.steps, "batch": args.batch, "seed": args.seed,
                   "threads": os.environ.get("OMP_NUM_THREADS"), "torch_threads": torch.get_num_threads(),
                   "heldout_instances_per_class": args.instances, "eval_ddim_steps": args.eval_steps,
                   "guidance": args.guidance, "generate_per_class": args.per_class,
                   "generate_candidates": args.candidates, "generate_ddim_steps": args.gen_steps},
        "conditioning": conditioning,
        "faithfulness": faithfulness,
        "patch_classifier": classifier_report,
        "heldout": heldout_stats,
        "training": training,
        "generate": gen_runs,
        "speed": {"train_seconds_per_step": training["seconds_per_step"],
                  "paint_seconds_per_candidate_diffusion": gen_runs["diffusion"]["seconds_per_candidate"],
                  "paint_seconds_per_candidate_copy_paste": gen_runs["copy-paste"]["seconds_per_candidate"],
                  "heldout_seconds_per_painting_guided": heldout_stats.get("seconds_per_painting_guided")},
        "peak_rss_mb": {"train_generator": training["peak_rss_mb"],
                        "benchmark_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                        "cli_stages": dict(rss),
                        "note": "train_generator: the trainer's own train_summary.json; cli_stages: each CLI "
                                "command's peak RSS as the OS reports it; benchmark_process: this script (patch "
                                "classifier and held-out painting)"},
        "figures": {"grid": _repo_relative(str(grid_png)), "grid_info": grid_info,
                    "heldout": _repo_relative(str(heldout_png)),
                    "samples": _repo_relative(f"{out_stem}_samples.png") if samples else None},
        "protocol": {
            "heldout": "query-tile instances (the training rule's connected components, >= 400 px, box sides "
                       "24..160 px), at most one per source image first; context window by placement.window_for "
                       "(box covers 10-25 %), resized to the model resolution; inpaint mask alternately "
                       "'rectangle' and 'silhouette' (masks.make_mask, as in training); true reference = the "
                       "instance's square crop through PairSampler._reference (training crop + augmentation, fixed "
                       "rng); wrong reference = an instance of another class (cycling over the other 4); null = "
                       "guidance 0; the same initial noise for the three; DDIM; PSNR and SSIM (mask-weighted mean "
                       "of the SSIM map) inside the mask at model resolution against the real window",
            "faithfulness": "painting resized back to the window's native size and pasted inside the mask; a "
                            f"{PATCH}x{PATCH} patch at the mask's deepest point; 'real_patch' = the real window "
                            "there, 'real_patch_roundtrip' = the real window through model resolution and back "
                            "(the ceiling for a perfect painting at this resolution)",
        },
        "stage_seconds": timings,
        "wall_seconds_this_run": round(time.time() - t0, 1),
        "wall_seconds_all_stages": round(sum(timings.values()), 1),
        "machine": {"cpu_count": os.cpu_count(), "load_average_1_5_15_min": {"start": load_start, "end": [
                        round(x, 2) for x in os.getloadavg()]}, "platform": platform.platform(),
                    "python": platform.python_version(), "torch": torch.__version__},
        "date": time.strftime("%Y-%m-%d"),
    }
    _write_json(stages_path, stages)
    _write_json(args.out, result)

    # ---- table
    print()
    print(f"{'class':<11} {'n':>3} {'PSNR true':>9} {'wrong':>6} {'null':>6} {'t>w %':>6} {'SSIM true':>9} "
          f"{'wrong':>6} {'t>w %':>6} | {'cls true':>8} {'wrong':>6} {'real':>5} {'rt':>5}")
    for name in (*CLASS_NAMES, "all"):
        c, f = conditioning[name], faithfulness[name]
        if not c.get("n"):
            print(f"{name:<11}   0")
            continue
        print(f"{name:<11} {c['n']:>3} {c['psnr_true']:>9.2f} {c['psnr_wrong']:>6.2f} {c['psnr_null']:>6.2f} "
              f"{c['psnr_true_beats_wrong']:>6.1f} {c['ssim_true']:>9.3f} {c['ssim_wrong']:>6.3f} "
              f"{c['ssim_true_beats_wrong']:>6.1f} | {f['painted_true_ref']:>8.1f} "
              f"{f['painted_wrong_ref_as_wrong_class'] or 0:>6.1f} {f['real_patch']:>5.1f} "
              f"{f['real_patch_roundtrip']:>5.1f}")
    print(f"classifier on real query patches: {classifier_report['test_accuracy']} % "
          f"(balanced {classifier_report['test_balanced_accuracy']} %), chance {faithfulness['chance']} %")
    print(f"train {training['seconds_per_step']} s/step ({args.steps} steps, peak RSS {training['peak_rss_mb']} MB); "
          f"paint {gen_runs['diffusion']['seconds_per_candidate']} s/candidate diffusion vs "
          f"{gen_runs['copy-paste']['seconds_per_candidate']} s/candidate copy-paste")
    print(f"results written to {args.out}; grid {grid_png}")
    print("command: " + result["command"])


if __name__ == "__main__":
    main()
