"""Split any fully labelled dataset into a few-shot episode in the OpenEarthMap challenge layout.

::

    pairs = find_pairs("data/*/images/*.jpg", "data/*/masks/*.png", group=r"Tile \\d+")  # .pairing
    summary = split_dataset("data/*/images/*.jpg", "data/*/masks/*.png", ClassMap.load("classes.json"),
                            novel=["building"], out=Path("episode"), shots=5, group=r"Tile \\d+")
    print(format_summary(summary))

Images and labels are paired by file stem within a *group* (a place: a tile, a city, a scene; without ``group`` every
pair is its own group). Large images are cut into ``tile``×``tile`` tiles. Whole groups go to one of three parts, so
no place is seen in two of them:

- query: about ``query_fraction`` of the groups; every tile with its full label (base and novel classes);
- support: as few groups as needed to give each novel class ``shots`` tiles holding at least ``min_pixels`` of it;
  a support label keeps only its one class (the rest 0, ignore 255 stays 255), a tile serves one class only; the
  matching takes distinct source images first and overlapping tiles last (five overlapping tiles of one image would
  show the same few objects several times);
- train: the other groups; every tile with novel pixels set to background 0.

Everything is random for the seed and deterministic: the same call writes the same bytes. The lists that make the
folder an episode (``val.json``, then ``train.txt``) are written last, so a killed split never looks complete.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from paintseg.files import write_text

from .classes import BACKGROUND, IGNORE, ClassMap, ClassMapError
from .pairing import Pair, SplitError, pair_files
from .raster import (IMAGE_SUFFIX, LABEL_SUFFIX, RasterError, raster_format, read_image, read_label,
                     write_image, write_label)

log = logging.getLogger(__name__)
ROLES = ("train", "support", "query")
SEARCH_PIXELS = 150_000_000  # up to this many pixels in all, a failed split searches for a --block that works


@dataclass(frozen=True)
class _Tile:
    pair: int  # index into the pairs
    row: int
    col: int
    height: int
    width: int
    name: str  # output file name without suffix
    group: str  # the pair's group, or its spatial block with --block


# ------------------------------------------------------------------------------------------------ tiling
def _offsets(size: int, tile: int | None) -> list[int]:
    """Tile starts along one axis; the last tile ends at the edge (and may overlap the one before)."""
    if tile is None or size <= tile:
        return [0]
    n = -(-size // tile)
    return [i * tile for i in range(n - 1)] + [size - tile]


def _blocks(size: int, block: int | None, gap: int) -> list[tuple[int, int]]:
    """The [start, end) of each block's usable part along one axis: ``size // block`` equal blocks (at least one),
    each giving up ``gap // 2`` pixels on every side it shares with another block, so tiles of different blocks are
    at least ``gap`` pixels apart."""
    if block is None:
        return [(0, size)]
    n = max(1, size // block)
    edges = [round(i * size / n) for i in range(n + 1)]
    half = gap // 2
    return [(a + (half if i else 0), b - (half if i < n - 1 else 0)) for i, (a, b) in enumerate(zip(edges, edges[1:]))]


def _block_options(sizes: list[tuple[int, int]], tile: int | None, gap: int) -> list[tuple[int, int]]:
    """(block, tile) pairs to try, in the order advice prefers them: the given tile first, then smaller tiles; per
    tile, the largest blocks that cut the scenes into at least 3 places first (bigger blocks keep more context)."""
    tiles = [t for t in (tile or 512, 256, 128, 64) if t <= (tile or 512)]
    biggest = max(max(h, w) for h, w in sizes)
    options = []
    for t in dict.fromkeys(tiles):
        blocks = [b for b in range(biggest // 2 // 16 * 16, t + gap - 1, -16)
                  if sum(max(1, h // b) * max(1, w // b) for h, w in sizes) >= 3]
        options += [(b, t) for b in blocks[:12]]  # the 12 largest of each tile size: enough to find one that works
    return options


def _sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name)


def _probe(path: Path) -> tuple[int, int, int]:
    """Height, width and band count of an image, from its header."""
    try:
        if raster_format(path) == "GTiff":
            import rasterio

            with rasterio.open(path) as src:
                return src.height, src.width, src.count
        with Image.open(path) as im:
            return im.height, im.width, len(im.getbands())
    except (OSError, RasterError) as e:
        raise SplitError(f"{path}: unreadable image ({e}); re-export or remove it") from None


def _label(path: Path, classes: ClassMap, window: tuple[int, int, int, int] | None = None) -> np.ndarray:
    try:
        return read_label(path, classes, window).array
    except (RasterError, ClassMapError) as e:
        raise SplitError(str(e)) from None


def _windowed(path: Path) -> bool:
    """GeoTIFFs are read tile by tile from disk (bounded memory for any size); PNG/JPEG whole, once."""
    return raster_format(path) == "GTiff"


# ------------------------------------------------------------------------------------------------ assignment
def _match(novel: list[int], shots: int, tiles: list[int], eligible: dict[int, np.ndarray]) -> dict[int, list[int]]:
    """Up to ``shots`` distinct tiles per novel class (maximum bipartite matching; tiles tried in the given order)."""
    slots = [c for c in novel for _ in range(shots)]
    options = {c: [t for t in tiles if eligible[c][t]] for c in novel}
    owner: dict[int, int] = {}  # tile -> slot

    def augment(slot: int, seen: set[int]) -> bool:
        for t in options[slots[slot]]:
            if t not in seen:
                seen.add(t)
                if t not in owner or augment(owner[t], seen):
                    owner[t] = slot
                    return True
        return False

    for slot in range(len(slots)):
        augment(slot, set())
    chosen: dict[int, list[int]] = {c: [] for c in novel}
    for t, slot in sorted(owner.items(), key=lambda kv: kv[1]):
        chosen[slots[slot]].append(t)
    return chosen


def _overlap(a: _Tile, b: _Tile) -> bool:
    return (a.pair == b.pair and a.row < b.row + b.height and b.row < a.row + a.height
            and a.col < b.col + b.width and b.col < a.col + a.width)


def _support_order(tiles: list[_Tile], candidates: list[int]) -> list[int]:
    """``candidates`` (tile indices, in the seed's order) reordered so that support shots are as distinct as
    possible: every source image's first tile, then every image's second one, and so on, where an image's tiles
    that overlap one listed before them come last. The matching takes tiles in this order."""
    layered: list[tuple[int, int, int]] = []  # (layer, overlaps, position)
    listed: dict[int, list[int]] = {}
    for pos, t in enumerate(candidates):
        mine = listed.setdefault(tiles[t].pair, [])
        overlaps = any(_overlap(tiles[t], tiles[u]) for u in mine)
        layered.append((int(overlaps), len(mine), pos))
        mine.append(t)
    return [candidates[pos] for _, _, pos in sorted(layered)]


def _assign(tiles: list[_Tile], tile_groups: list[str], counts: np.ndarray, classes: ClassMap, shots: int,
            min_pixels: int, query_fraction: float,
            rng: np.random.Generator) -> tuple[dict[str, list[str]], dict[int, list[int]]]:
    """The groups of each role, and the support tiles of each novel class.

    ``tile_groups[t]`` is tile t's group and ``counts[t]`` its pixels per label value."""
    names = sorted(set(tile_groups))
    if len(names) < 3:
        shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
        raise SplitError(f"found {len(names)} group(s) ({shown}); an episode needs at least 3 (train, support, query "
                         f"kept apart by group)")
    order = [names[i] for i in rng.permutation(len(names))]
    tile_rank = rng.permutation(len(tile_groups))
    members: dict[str, list[int]] = {g: [] for g in names}
    for t in np.argsort(tile_rank, kind="stable").tolist():
        members[tile_groups[t]].append(t)
    novel = classes.novel_ids
    eligible = {c: counts[:, c] >= min_pixels for c in novel}

    support: list[str] = []
    while True:  # greedy: add the group that best fills the missing shots, first in the seed's order on ties
        chosen = _match(novel, shots, _support_order(tiles, [t for g in support for t in members[g]]), eligible)
        deficit = {c: shots - len(chosen[c]) for c in novel}
        if not any(deficit.values()):
            break
        free = [g for g in order if g not in support]
        gains = [sum(min(d, int(eligible[c][members[g]].sum())) for c, d in deficit.items()) for g in free]
        if len(free) <= 2 or max(gains) == 0:
            short = [c for c in novel if deficit[c]]
            lines = "; ".join(
                f"novel class {classes.name(c)!r} (id {c}) has {len(chosen[c])} usable support tile(s) with >= "
                f"{min_pixels} pixels of it ({int(eligible[c].sum())} such tiles in all {len(names)} groups), "
                f"needs {shots}" for c in short)
            raise SplitError(f"not enough support images: {lines}. One group must stay for train and one for query "
                             f"and a tile serves one class only; lower --shots, lower --min-pixels, use a smaller "
                             f"--tile (more, smaller tiles) or a --group regex that makes smaller groups")
        support.append(free[gains.index(max(gains))])

    rest = [g for g in order if g not in support]
    n_query = min(max(1, round(query_fraction * len(names))), len(rest) - 1)
    present = {g: sum(int(counts[members[g], c].sum() > 0) for c in novel) for g in rest}
    query = sorted(rest, key=lambda g: -present[g])[:n_query]  # prefer groups showing every novel class
    groups = {"train": sorted(g for g in rest if g not in query), "support": sorted(support), "query": sorted(query)}
    return groups, {c: sorted(ts) for c, ts in chosen.items()}


def _relabel(label: np.ndarray, role: str, classes: ClassMap, class_id: int | None) -> np.ndarray:
    if role == "train":
        return np.where(np.isin(label, classes.novel_ids), BACKGROUND, label).astype(np.uint8)
    if role == "support":
        keep = (label == class_id) | (label == IGNORE)
        return np.where(keep, label, BACKGROUND).astype(np.uint8)
    return label


def _count(counts: np.ndarray, role: str, classes: ClassMap, class_id: int | None) -> np.ndarray:
    """Pixels per label value after :func:`_relabel`, from the tile's original counts."""
    c = counts.copy()
    if role == "train":
        novel = classes.novel_ids
        c[BACKGROUND] += c[novel].sum()
        c[novel] = 0
    elif role == "support":
        kept = np.zeros_like(c)
        kept[[class_id, IGNORE]] = c[[class_id, IGNORE]]
        kept[BACKGROUND] = c.sum() - kept.sum()
        c = kept
    return c


def _scan(pairs: list[Pair], sizes: list[tuple[int, int]], classes: ClassMap, tile: int | None, block: int | None,
          gap: int, group: str | None, cache: dict[int, np.ndarray] | None,
          progress: bool = False) -> tuple[list[_Tile], np.ndarray]:
    """The tiles of every pair (per block with ``block``) and each tile's pixels per label value; labels are
    checked (size, known values). With a ``cache``, labels are read whole once and kept there (a search of block
    sizes scans them again); without, GeoTIFF labels are read tile by tile (bounded memory for any size)."""
    valid = classes.valid_values
    tiles: list[_Tile] = []
    counts: list[np.ndarray] = []
    for i, pair in enumerate(tqdm(pairs, desc="scan labels", unit="pair", disable=not progress)):
        height, width = sizes[i]
        windowed = _windowed(pair.label) and cache is None  # read tile by tile (a GeoTIFF, unless kept whole)
        if windowed:
            lh, lw, _ = _probe(pair.label)
        else:
            label = cache[i] if cache is not None and i in cache else _label(pair.label, classes)
            if cache is not None:
                cache[i] = label
            lh, lw = label.shape
        if (lh, lw) != (height, width):
            raise SplitError(f"{pair.label}: label is {lw}x{lh} but its image {pair.image} is "
                             f"{width}x{height}; image and label must have the same size")
        prefix = f"{pair.group}_{pair.stem}" if group else pair.stem
        for bi, (r0, r1) in enumerate(_blocks(height, block, gap)):
            for bj, (c0, c1) in enumerate(_blocks(width, block, gap)):
                where = f"_b{bi}-{bj}" if block else ""
                th, tw = min(r1 - r0, tile or r1 - r0), min(c1 - c0, tile or c1 - c0)
                for ri, row in enumerate(_offsets(r1 - r0, tile)):
                    for ci, col in enumerate(_offsets(c1 - c0, tile)):
                        tl = _Tile(i, r0 + row, c0 + col, th, tw, _sanitize(f"{prefix}{where}_r{ri}_c{ci}"),
                                   pair.group + where)
                        tiles.append(tl)
                        box = (tl.row, tl.col, th, tw)
                        cut = _label(pair.label, classes, box) if windowed else \
                            label[tl.row : tl.row + th, tl.col : tl.col + tw]
                        hist = np.bincount(cut.reshape(-1), minlength=256)
                        unknown = sorted(set(np.flatnonzero(hist).tolist()) - valid)
                        if unknown:
                            raise SplitError(f"{pair.label}: unknown label value(s) {unknown}; known ids are "
                                             f"{sorted(valid)} (add them to classes.json or fix the label)")
                        counts.append(hist)
    seen: dict[str, _Tile] = {}
    for t in tiles:
        if t.name in seen:
            raise SplitError(f"{pairs[seen[t.name].pair].image} and {pairs[t.pair].image} both give the tile name "
                             f"{t.name!r} (names keep only A-Z a-z 0-9 _ . -); rename one of them")
        seen[t.name] = t
    return tiles, np.stack(counts)


def _split_groups(tiles: list[_Tile], counts: np.ndarray, classes: ClassMap, shots: int, min_pixels: int,
                  query_fraction: float, seed: int) -> tuple[dict[str, list[str]], dict[int, list[int]]]:
    """:func:`_assign` for the seed, and an error when a novel class would have no pixels in the query set (its IoU
    could not be measured: the episode `paintseg data check` rejects)."""
    groups, support = _assign(tiles, [t.group for t in tiles], counts, classes, shots, min_pixels, query_fraction,
                              np.random.default_rng(seed))
    query = set(groups["query"])
    in_query = counts[[t for t, tl in enumerate(tiles) if tl.group in query]].sum(axis=0)
    missing = [c for c in classes.novel_ids if in_query[c] == 0]
    if missing:
        names = ", ".join(f"{classes.name(c)!r} (id {c})" for c in missing)
        raise SplitError(f"novel class {names} would have no pixels in the query set ({len(query)} of "
                         f"{len(set(t.group for t in tiles))} groups), so its IoU could not be measured: every group "
                         f"that shows it is needed for its {shots} support shots; lower --shots, try another --seed "
                         f"or a larger --query-fraction")
    return groups, support


def _working_block(pairs: list[Pair], sizes: list[tuple[int, int]], classes: ClassMap, tile: int | None, gap: int,
                   group: str | None, cache: dict[int, np.ndarray] | None, shots: int, min_pixels: int,
                   query_fraction: float, seed: int) -> tuple[int, int, int] | None:
    """The largest ``--block`` (and the ``--tile`` it needs) whose split succeeds for this seed with query pixels
    of every novel class - found by running the assignment itself on the labels - as (block, tile, blocks); None if
    no size does (or the scenes are too large to search in memory: then none is claimed)."""
    if cache is None:
        return None
    for block, t in _block_options(sizes, tile, gap):
        try:
            tiles, counts = _scan(pairs, sizes, classes, t, block, gap, group, cache)
            _split_groups(tiles, counts, classes, shots, min_pixels, query_fraction, seed)
        except SplitError:
            continue
        return block, t, len({tl.group for tl in tiles})
    return None


# ------------------------------------------------------------------------------------------------ the split
def split_dataset(images: str, labels: str, classes: ClassMap, novel: list[str], out: Path, shots: int = 5,
                  seed: int = 0, group: str | None = None, tile: int | None = 512, query_fraction: float = 0.25,
                  min_pixels: int = 64, progress: bool = True, key: str | None = None,
                  skip_unlabelled: bool = False, block: int | None = None, gap: int = 64,
                  dataset: str | None = None) -> dict:
    """Write a few-shot episode of ``novel`` classes to ``out`` from a fully labelled dataset; return its summary.

    ``images``/``labels`` are glob patterns (see :func:`find_pairs`, also for ``key`` and ``skip_unlabelled``),
    ``classes`` decodes the labels (colour-coded ones through the class colours, single-band ones through the
    classes' ``values``) and is saved, with ``novel`` made the novel classes, as ``out/classes.json``.

    ``block`` (pixels) makes square spatial blocks of every image the groups - for a few large scenes, or one - with
    ``gap`` pixels between the tiles of neighbouring blocks, so that no train tile touches a support or query tile.
    Before the episode's lists are written, the episode is checked as ``paintseg data check`` checks it; a problem
    there is an error (a split never leaves an episode its own check rejects). ``dataset`` only labels the record.
    """
    out = Path(out)
    if (out / "train.txt").exists():
        raise SplitError(f"{out / 'train.txt'} exists: {out} already holds an episode; pass a new --out or delete it")
    if not novel:
        raise SplitError("no novel class given; pass --novel NAME (one of the class names in classes.json)")
    if shots < 1 or min_pixels < 1 or tile is not None and tile < 1 or not 0 < query_fraction < 1:
        raise SplitError(f"need shots >= 1, min_pixels >= 1, tile >= 1 and 0 < query_fraction < 1; got shots={shots}, "
                         f"min_pixels={min_pixels}, tile={tile}, query_fraction={query_fraction}")
    if block is not None and (gap < 0 or block - gap < (tile or 1)):
        raise SplitError(f"--block {block} with --gap {gap} leaves no room for a {tile} px tile; a block must be at "
                         f"least --tile + --gap pixels (e.g. --block {(tile or 256) * 2 + gap})")
    try:
        classes = classes.with_novel(novel)
    except ClassMapError as e:
        raise SplitError(str(e)) from None
    pairs, unlabelled = pair_files(images, labels, group, key, skip_unlabelled)

    # pass 1: check every pair, cut its label into tiles and count the pixels of each class in each tile
    probed = [_probe(pair.image) for pair in pairs]
    sizes, bands = [(h, w) for h, w, _ in probed], [b for _, _, b in probed]
    # labels read whole are kept for a search of --block sizes when the split fails (small datasets only)
    cache: dict[int, np.ndarray] | None = {} if block is None and sum(h * w for h, w in sizes) <= SEARCH_PIXELS \
        else None
    tiles, count_matrix = _scan(pairs, sizes, classes, tile, block, gap, group, cache, progress)
    try:
        groups, support = _split_groups(tiles, count_matrix, classes, shots, min_pixels, query_fraction, seed)
    except SplitError as e:
        if block is not None:
            raise
        found = _working_block(pairs, sizes, classes, tile, gap, group, cache, shots, min_pixels, query_fraction,
                               seed)
        advice = (f"the {len(pairs)} image(s) matched, such as {pairs[0].image}, give too few places to keep train, "
                  f"support and query apart; cut the scenes into spatial blocks that serve as groups: "
                  f"--block {found[0]}" + (f" --tile {found[1]}" if found[1] != tile else "") +
                  f" (checked with this --seed: it gives {found[2]} blocks and query pixels of every novel class)"
                  if found else "add images, or lower --shots / --min-pixels")
        raise SplitError(f"{e}; {advice}") from None
    role_of_group = {g: role for role, names in groups.items() for g in names}
    jobs: dict[int, tuple[str, int | None]] = {}  # tile -> (role, support class)
    for t, tl in enumerate(tiles):
        role = role_of_group[tl.group]
        if role != "support":
            jobs[t] = (role, None)
    for cid, chosen in support.items():
        jobs.update({t: ("support", cid) for t in chosen})

    # pass 2: read the pairs again; cut, relabel and write the tiles that are used
    log.info("writing episode to %s", out)
    out.mkdir(parents=True, exist_ok=True)
    classes.episode_map().save(out / "classes.json")
    by_pair: dict[int, list[int]] = {}
    for t in sorted(jobs):
        by_pair.setdefault(tiles[t].pair, []).append(t)
    names: dict[str, list[str]] = {role: [] for role in ROLES}
    support_names: dict[int, list[str]] = {cid: [] for cid in support}
    for i in tqdm(sorted(by_pair), desc="write tiles", unit="pair", disable=not progress):
        pair = pairs[i]
        fmt = raster_format(pair.image)
        every_band = tuple(range(1, bands[i] + 1)) if fmt == "GTiff" else None
        whole_image = whole_label = None
        try:
            if not _windowed(pair.image):
                whole_image = read_image(pair.image, every_band)
        except RasterError as e:
            raise SplitError(str(e)) from None
        if cache is not None and i in cache:  # read whole in pass 1
            whole_label = cache[i]
        elif not _windowed(pair.label):
            whole_label = _label(pair.label, classes)
        for t in by_pair[i]:
            tl, (role, cid) = tiles[t], jobs[t]
            box = (tl.row, tl.col, tl.height, tl.width)
            folder = out / ("trainset" if role == "train" else "valset")
            try:
                window = whole_image.window(*box) if whole_image is not None else \
                    read_image(pair.image, every_band, box)
            except RasterError as e:
                raise SplitError(str(e)) from None
            cut = whole_label[tl.row : tl.row + tl.height, tl.col : tl.col + tl.width] \
                if whole_label is not None else _label(pair.label, classes, box)
            lab = _relabel(cut, role, classes, cid)
            file_name = tl.name + IMAGE_SUFFIX[fmt]
            write_image(folder / "images" / file_name, window.array, like=window)
            write_label(folder / "labels" / (tl.name + LABEL_SUFFIX[fmt]), lab, like=window, classes=classes)
            names[role].append(file_name)
            if cid is not None:
                support_names[cid].append(file_name)

    summary = _summary(tiles, count_matrix, jobs, groups, classes)
    summary["unlabelled_images"] = len(unlabelled)
    config = {"dataset": dataset, "images": images, "labels": labels, "group": group, "key": key,
              "skip_unlabelled": skip_unlabelled, "novel": list(novel), "shots": shots, "seed": seed, "tile": tile,
              "block": block, "gap": gap if block else None, "query_fraction": query_fraction,
              "min_pixels": min_pixels}
    write_text(out / "split.json", json.dumps({"config": config, "summary": summary}, indent=1) + "\n")
    val = {"support_set": {str(c): sorted(v) for c, v in sorted(support_names.items())},
           "query_set": sorted(names["query"])}
    write_text(out / "val.json", json.dumps(val, indent=1) + "\n")
    write_text(out / "train.txt", "".join(n + "\n" for n in sorted(names["train"])))
    _self_check(out, shots)
    return summary


def _self_check(out: Path, shots: int) -> None:
    """``paintseg data check`` on the episode just written; on any problem the lists go (the folder is no episode)
    and the error names the problems - a bug in the split, reported rather than handed on."""
    from .episode import Episode

    problems = Episode(out).problems(expected_shots=shots)
    if problems:
        for name in ("train.txt", "val.json"):
            (out / name).unlink(missing_ok=True)
        shown = "; ".join(problems[:5]) + (f" and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise SplitError(f"{out}: the episode split wrote fails its own check ({len(problems)} problem(s): {shown}); "
                         f"this is a paintseg bug - please report it with the command you ran")


def _summary(tiles: list[_Tile], counts: np.ndarray, jobs: dict[int, tuple[str, int | None]],
             groups: dict[str, list[str]], classes: ClassMap) -> dict:
    totals = {role: np.zeros(256, np.int64) for role in ROLES}
    images = dict.fromkeys(ROLES, 0)
    for t, (role, cid) in jobs.items():
        totals[role] += _count(counts[t], role, classes, cid)
        images[role] += 1
    summary: dict = {role: {"images": images[role], "groups": groups[role],
                            "pixels": {classes.name(v): int(n) for v, n in enumerate(totals[role]) if n}}
                     for role in ROLES}
    summary["unused_tiles"] = len(tiles) - len(jobs)
    summary["warnings"] = [f"base class {classes.name(c)!r} (id {c}) has no pixels in the training set: no model "
                           f"can learn it and its IoU will be 0; try another --seed, or add its value to the "
                           f"'values' of the class with role 'ignore' in classes.json if the dataset hardly has it"
                           for c in classes.base_ids if totals["train"][c] == 0]
    return summary


def format_summary(summary: dict) -> str:
    """The summary of :func:`split_dataset` as a text table: images, groups and pixels per class per part."""
    classes = list(dict.fromkeys(name for role in ROLES for name in summary[role]["pixels"]))
    rows = [["", *ROLES], ["images", *(f"{summary[r]['images']:,}" for r in ROLES)],
            ["groups", *(f"{len(summary[r]['groups']):,}" for r in ROLES)]]
    rows += [[name, *(f"{summary[r]['pixels'].get(name, 0):,}" for r in ROLES)] for name in classes]
    width = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, width)))
             for row in rows]
    if summary.get("unlabelled_images"):
        lines.append(f"{summary['unlabelled_images']:,} image(s) without a label skipped (a release's test images)")
    if summary.get("unused_tiles"):
        lines.append(f"{summary['unused_tiles']:,} tile(s) of the support groups are not used (not a support shot)")
    lines += [f"warning: {w}" for w in summary.get("warnings", [])]
    return "\n".join(lines)
