"""Does a generator follow its reference? Held-out query instances painted back from the true, a wrong and no reference.

For up to ``count`` instances per class of the query images (never seen in generator training, which reads the
trainset and support scenes), cut with the generator's own training rule (``PairSampler``: connected components
whose box covers a share in ``box_fraction`` of a window), a window around the instance is painted at the model's
resolution under a rectangle (even instances) or silhouette (odd) inpaint mask, three times with the same noise:
from a crop of the instance itself augmented as in training (``true``), from an instance of another class
(``wrong``) and with the null embedding and guidance 0 (``null``). PSNR and SSIM inside the mask against the real
window tell whether the reference steers the painting: ``true`` must beat ``wrong`` (the share of instances where
it does, with a two-sided sign test), and a ``true`` no better than ``null`` means the reference is ignored.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import cv2
import numpy as np

from paintseg.config import PaintConfig
from paintseg.data.episode import Episode
from paintseg.data.raster import to_uint8 as raster_uint8
from paintseg.errors import PaintsegError
from paintseg.files import save_png

from .significance import sign_test

VARIANTS = ("true", "wrong", "null")


def masked_psnr(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB, 8-bit range) over the pixels of ``mask``."""
    diff = pred.astype(np.float64)[mask] - target.astype(np.float64)[mask]
    return float(10 * np.log10(255.0**2 / max(float(np.mean(diff**2)), 1e-10)))


def masked_ssim(pred: np.ndarray, target: np.ndarray, mask: np.ndarray, sigma: float = 1.5) -> float:
    """Mean SSIM (Wang et al. 2004, Gaussian window ``sigma``, per channel then averaged) over ``mask``'s pixels."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    x, y = pred.astype(np.float64), target.astype(np.float64)
    blur = lambda a: cv2.GaussianBlur(a, (0, 0), sigma)  # noqa: E731
    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    ssim = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(ssim.mean(axis=2)[mask].mean())


def conditioning_quality(episode: Episode, generator, paint_settings: PaintConfig | None = None, count: int = 8,
                         seed: int = 0, samples_dir: Path | None = None, samples: int = 6,
                         autoencoder=None) -> dict:
    """PSNR/SSIM of held-out query instances painted from the true, a wrong and no reference (``generator``: a
    GEN folder or a loaded ``(PaintModel, GeneratorConfig)``; ``paint_settings``' sampler: steps, guidance, scheduler),
    overall and per class. With ``samples_dir``, the
    first ``samples`` instances (one class after another) are written there as PNGs at model resolution - both
    references, the masked window, the three paintings, the real window - and listed under "samples". A latent
    painter paints through its ``autoencoder`` (read from the GEN folder when ``generator`` is one)."""
    import torch

    from paintseg.paint.diffusion import PairSampler, augment_reference, load_generator, paint, to_tensor, to_uint8

    how = paint_settings or PaintConfig()
    from paintseg.paint.diffusion.latent import paint_windows
    from paintseg.paint.diffusion.model import load_autoencoder_of
    from paintseg.place.masks import make_mask
    from paintseg.place.placement import window_for

    if isinstance(generator, tuple):
        model, config = generator
    else:
        model, config = load_generator(generator)
        autoencoder = load_autoencoder_of(generator, model)
    if model.spec.latent and autoencoder is None:
        raise PaintsegError("conditioning_quality: a latent painter paints through its autoencoder; pass "
                            "autoencoder= (or the GEN folder)")
    r = model.spec.resolution
    query = [s for s in episode.query if s.label is not None]
    images = [raster_uint8(episode.read_image(s).array) for s in query]
    labels = [episode.read_label(s).array for s in query]
    sampler = PairSampler(images, labels, config, [s.name for s in query])
    by_class: dict[int, list] = {}
    for found in sampler.instances:
        for inst in found:
            by_class.setdefault(inst.class_id, []).append(inst)
    rng = np.random.default_rng([seed, 616161])
    chosen = {c: [v[i] for i in rng.permutation(len(v))[:count]] for c, v in sorted(by_class.items())}
    records: list[dict] = []
    shown_rows: list[dict] = []
    for c, instances in chosen.items():
        others = [o for o in chosen if o != c and chosen[o]]
        for i, inst in enumerate(instances):
            if not others:
                break
            other_class = others[i % len(others)]
            other = chosen[other_class][i % len(chosen[other_class])]
            image = images[inst.scene]
            local = np.random.default_rng([seed, 31, c, i])
            win = window_for(inst.box, image.shape[:2], local, tuple(config.box_fraction))
            window = np.ascontiguousarray(image[win.y0 : win.y1, win.x0 : win.x1])
            side = win.width
            obj = np.zeros((side, side), np.uint8)
            ys, xs = np.nonzero(inst.mask)
            ys, xs = ys + inst.box.y0 - win.y0, xs + inst.box.x0 - win.x0
            ok = (ys >= 0) & (ys < side) & (xs >= 0) & (xs < side)
            obj[ys[ok], xs[ok]] = 1
            obj_r = cv2.resize(obj, (r, r), interpolation=cv2.INTER_NEAREST) > 0
            box_r = inst.box.shift(-win.x0, -win.y0).scale(r / side).clip(r, r)
            if not obj_r.any():
                obj_r[box_r.y0 : box_r.y1, box_r.x0 : box_r.x1] = True
            kind = "rectangle" if i % 2 == 0 else "silhouette"
            mask_r = make_mask(kind, (r, r), box_r, local, ref_mask=obj_r)
            refs = {"true": augment_reference(*sampler.reference_crop(image, inst),
                                              np.random.default_rng([seed, 32, c, i])),
                    "wrong": augment_reference(*sampler.reference_crop(images[other.scene], other),
                                               np.random.default_rng([seed, 33, c, i]))}
            refs["null"] = refs["true"]
            window_t = to_tensor(window, r)
            mask_t = torch.from_numpy(mask_r.astype(np.float32))[None, None]
            real = to_uint8(window_t)[0]
            rec = {"class": episode.classes.name(c), "wrong_class": episode.classes.name(other_class),
                   "scene": query[inst.scene].name, "box": list(inst.box), "mask_kind": kind}
            shown = samples_dir is not None and i == 0 and len(shown_rows) < samples  # one per class
            if shown:
                stem = f"c{c:03d}_{i:02d}"
                files = {"masked": f"{stem}_masked.png", "real": f"{stem}_real.png"}
                save_png(Path(samples_dir) / files["masked"], np.where(mask_r[..., None], 255, real).astype(np.uint8))
                save_png(Path(samples_dir) / files["real"], real)
                for variant in ("true", "wrong"):
                    ref, ref_mask = refs[variant]
                    files[f"ref_{variant}"] = f"{stem}_ref_{variant}.png"
                    save_png(Path(samples_dir) / files[f"ref_{variant}"],
                             to_uint8((ref * (0.6 + 0.4 * ref_mask))[None])[0])
            for variant in VARIANTS:
                ref, ref_mask = refs[variant]
                noise = torch.Generator().manual_seed(int(np.random.default_rng([seed, 34, c, i]).integers(2**62)))
                settings = {"steps": how.steps, "guidance": 0.0 if variant == "null" else how.guidance,
                            "generator": noise, "scheduler": how.scheduler}
                if autoencoder is not None:  # a latent painter: encode, paint, decode (no hint: zeros)
                    painted = to_uint8(paint_windows(model, autoencoder, window_t, mask_t, ref[None],
                                                     ref_mask[None], **settings))[0]
                else:
                    hint = torch.zeros(1, 4, r, r) if model.spec.hint else None
                    painted = to_uint8(paint(model, window_t, mask_t, ref[None], ref_mask[None], hint=hint,
                                             **settings))[0]
                rec[f"psnr_{variant}"] = round(masked_psnr(painted, real, mask_r), 3)
                rec[f"ssim_{variant}"] = round(masked_ssim(painted, real, mask_r), 4)
                if shown:
                    files[variant] = f"{stem}_{variant}.png"
                    save_png(Path(samples_dir) / files[variant], painted)
            if shown:
                shown_rows.append({"class": rec["class"], "wrong_class": rec["wrong_class"], "files": files})
            records.append(rec)
    summary = _summary(records)
    summary["per_class"] = {name: _summary([x for x in records if x["class"] == name])
                            for name in dict.fromkeys(x["class"] for x in records)}
    return {"summary": summary, "records": records, "samples": shown_rows, "steps": how.steps, "guidance": how.guidance,
            "note": "held-out query instances painted back from their own (augmented) crop, an instance of another "
                    "class and no reference (same noise); PSNR (dB) and SSIM inside the inpaint mask"}


def _summary(records: list[dict]) -> dict:
    """Mean PSNR/SSIM per variant and the sign test of true vs wrong."""
    summary: dict = {"instances": len(records)}
    if records:
        for metric in ("psnr", "ssim"):
            for variant in VARIANTS:
                summary[f"{metric}_{variant}"] = round(statistics.fmean(x[f"{metric}_{variant}"] for x in records), 3)
            wins = sum(x[f"{metric}_true"] > x[f"{metric}_wrong"] for x in records)
            summary[f"{metric}_true_beats_wrong"] = {"wins": wins, "of": len(records),
                                                     "p": round(sign_test(wins, len(records)), 4)}
    return summary
