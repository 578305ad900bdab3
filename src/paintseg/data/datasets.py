"""The field's common datasets in the layouts they are released in: class maps, file patterns and groups built in.

``paintseg split --dataset loveda --root DATA/LoveDA --novel building --out EPISODE`` needs no hand-made class map:
a :class:`DatasetPreset` knows the dataset's classes (names, colours, ids, which source value is no-data or
boundary and becomes ignore 255), the file patterns of each :class:`Layout` it ships in, how an image finds its label
and the groups (places) that keep train, support and query apart:

==========  =====================================================  =========================================
dataset     release layout (groups)                                mmsegmentation layout (groups)
==========  =====================================================  =========================================
loveda      ``{Train,Val}/{Urban,Rural}/images_png|masks_png``     ``img_dir/``, ``ann_dir/`` (each image;
            (the four Train/Val × Urban/Rural parts)               the converter drops Urban/Rural)
potsdam     ``2_Ortho_RGB/top_potsdam_S_RGB.tif`` +                ``img_dir/``, ``ann_dir/`` patches
            ``5_Labels_all[_noBoundary]/…_label*.tif`` (scene)     ``S_R_C_…png`` (scene ``S``)
vaihingen   ``top/top_mosaic_09cm_areaN.tif`` (IRRG) + ground      ``img_dir/``, ``ann_dir/`` patches
            truth ``…areaN[_noBoundary].tif`` (area)               ``areaN_…png`` (area)
openearthmap ``REGION/images/``, ``REGION/labels/`` (region)       ``img_dir/``, ``ann_dir/`` (region from
                                                                   the file name ``REGION_N``)
==========  =====================================================  =========================================

Release layouts ship test images without labels; those are skipped (and counted in the split summary). ISPRS
scenes are few and large (6000² px): ``--block`` cuts them into spatial blocks that serve as groups.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from .classes import BACKGROUND, IGNORE, ClassInfo, ClassMap
from .pairing import SplitError

SEP = r"[/\\]"


@dataclass(frozen=True)
class Layout:
    """Where a dataset's images and labels lie below its root, how they pair and which group each belongs to."""

    name: str                 # "release" or "mmseg"
    images: str               # glob below the root
    labels: tuple[str, ...]   # candidate globs below the root: the first that matches any file is used
    key: str | None           # regex on the file name whose first group pairs an image with its label (None: stem)
    group: str | None         # regex on the path naming the group (see split.find_pairs); None: each image its own
    about: str                # one line for the docs and the summary


@dataclass(frozen=True)
class DatasetPreset:
    name: str
    title: str
    classes: ClassMap
    layouts: tuple[Layout, ...]

    def layout(self, root: Path, name: str | None = None) -> Layout:
        """The layout ``root`` holds (or the named one), checked to find images there."""
        choices = [lay for lay in self.layouts if name in (None, lay.name)]
        if not choices:
            raise SplitError(f"--layout {name!r}: {self.name} comes in {', '.join(lay.name for lay in self.layouts)}")
        for lay in choices:
            if _any(root, lay.images):
                return lay
        want = "; ".join(f"{lay.name}: {lay.images}" for lay in choices)
        raise SplitError(f"{root}: no {self.title} images found (looked for {want}); pass --root the folder that "
                         f"holds the dataset as released or as converted by mmsegmentation")

    def patterns(self, root: Path, layout: Layout) -> tuple[str, str]:
        """The image and label glob patterns of ``layout`` below ``root``."""
        for labels in layout.labels:
            if _any(root, labels):
                return str(root / layout.images), str(root / labels)
        raise SplitError(f"{root}: {self.title} images found but no labels ({' or '.join(layout.labels)}); the "
                         f"labels are a separate download for some releases - put them below --root")


def _any(root: Path, pattern: str) -> bool:
    for p in glob.iglob(os.path.join(glob.escape(str(root)), pattern), recursive=True):
        if Path(p).is_file():
            return True
    return False


def _classes(name: str, entries: list[tuple]) -> ClassMap:
    return ClassMap([ClassInfo(i, n, role, (color,) if color else (), tuple(values))
                     for i, n, role, color, values in entries], f"{name} preset")


# LoveDA (Wang et al. 2021): 0 no-data, 1 background (a scored class in LoveDA's benchmark), 2 building ... 7
# agriculture; the mmsegmentation converter keeps these values (reduce_zero_label happens when loading).
LOVEDA = DatasetPreset(
    "loveda", "LoveDA",
    _classes("LoveDA", [
        (BACKGROUND, "unlabelled", "background", "#000000", []),
        (1, "background", "base", "#FFFFFF", []), (2, "building", "base", "#FF0000", []),
        (3, "road", "base", "#FFFF00", []), (4, "water", "base", "#0000FF", []),
        (5, "barren", "base", "#9F81B7", []), (6, "forest", "base", "#00FF00", []),
        (7, "agriculture", "base", "#FFC380", []),
        (IGNORE, "no-data", "ignore", "", [0]),
    ]),
    (Layout("release", "**/images_png/*.png", ("**/masks_png/*.png",), None,
            rf"(?:Train|Val|Test){SEP}(?:Urban|Rural)", "Train/Val × Urban/Rural, images_png + masks_png"),
     Layout("mmseg", "**/img_dir/**/*.png", ("**/ann_dir/**/*.png",), None, None,
            "mmsegmentation's img_dir/ + ann_dir/ (every image its own group)")))

# ISPRS 2D semantic labelling (Potsdam, Vaihingen): colour-coded labels; the eroded ("noBoundary") labels draw object
# boundaries black, which is ignored. mmsegmentation's converters turn the colours into 0 boundary, 1 impervious
# surface, 2 building, 3 low vegetation, 4 tree, 5 car, 6 clutter.
_ISPRS = [
    (BACKGROUND, "unlabelled", "background", "", []),
    (1, "impervious surface", "base", "#FFFFFF", []), (2, "building", "base", "#0000FF", []),
    (3, "low vegetation", "base", "#00FFFF", []), (4, "tree", "base", "#00FF00", []),
    (5, "car", "base", "#FFFF00", []), (6, "clutter", "base", "#FF0000", []),
    (IGNORE, "boundary", "ignore", "#000000", [0]),
]
POTSDAM = DatasetPreset(
    "potsdam", "ISPRS Potsdam", _classes("ISPRS Potsdam", _ISPRS),
    (Layout("release", "**/top_potsdam_*_RGB.tif",
            ("**/top_potsdam_*_label.tif", "**/top_potsdam_*_label_noBoundary.tif"),
            r"top_potsdam_(\d+_\d+)_", r"top_potsdam_(\d+_\d+)_",
            "2_Ortho_RGB + 5_Labels_all (or _noBoundary), one group per scene"),
     Layout("mmseg", "**/img_dir/**/*.png", ("**/ann_dir/**/*.png",), None, r"(\d+_\d+)_\d+_\d+_\d+_\d+\.png$",
            "mmsegmentation's img_dir/ + ann_dir/ patches, one group per scene")))
VAIHINGEN = DatasetPreset(
    "vaihingen", "ISPRS Vaihingen", _classes("ISPRS Vaihingen", _ISPRS),
    (Layout("release", "**/top/top_mosaic_09cm_area*.tif",
            ("**/*ground_truth_COMPLETE/top_mosaic_09cm_area*.tif", "**/gts_for_participants/top_mosaic_09cm_area*.tif",
             "**/*eroded*/top_mosaic_09cm_area*_noBoundary.tif"),
            r"area(\d+)", r"area\d+", "top/ (IRRG false colour) + the ground truth, one group per area"),
     Layout("mmseg", "**/img_dir/**/*.png", ("**/ann_dir/**/*.png",), None, r"(area\d+)_\d+_\d+_\d+_\d+\.png$",
            "mmsegmentation's img_dir/ + ann_dir/ patches, one group per area")))

# OpenEarthMap (Xia et al. 2023): single-band ids, 0 unknown (not scored).
OPENEARTHMAP = DatasetPreset(
    "openearthmap", "OpenEarthMap",
    _classes("OpenEarthMap", [
        (BACKGROUND, "unknown", "background", "#000000", []),
        (1, "bareland", "base", "#800000", []), (2, "rangeland", "base", "#00FF24", []),
        (3, "developed space", "base", "#949494", []), (4, "road", "base", "#FFFFFF", []),
        (5, "tree", "base", "#226126", []), (6, "water", "base", "#0045FF", []),
        (7, "agriculture land", "base", "#4BB549", []), (8, "building", "base", "#DE1F07", []),
    ]),
    (Layout("release", "**/images/*.tif", ("**/labels/*.tif",), None, rf"([^/\\]+){SEP}(?:images|labels){SEP}",
            "REGION/images + REGION/labels, one group per region"),
     Layout("mmseg", "**/img_dir/**/*.tif", ("**/ann_dir/**/*.tif",), None, r"([^/\\]+)_\d+\.tif$",
            "img_dir/ + ann_dir/, one group per region (from the file name REGION_N)")))

PRESETS: dict[str, DatasetPreset] = {p.name: p for p in (LOVEDA, POTSDAM, VAIHINGEN, OPENEARTHMAP)}


def preset(name: str) -> DatasetPreset:
    key = name.lower().replace("-", "").replace("_", "").replace("isprs", "")
    if key not in PRESETS:
        raise SplitError(f"--dataset {name!r} is not built in; choose one of {', '.join(PRESETS)}, or pass --images, "
                         f"--labels and --classes for any other dataset")
    return PRESETS[key]


def split_recipe(recipe, out: Path, progress: bool = True, echo=None) -> dict:
    """``paintseg split`` from its settings (any object with the fields of
    :class:`paintseg.config.SplitRecipe`: ``dataset``/``root``/``layout`` or ``images``/``labels``/
    ``classes``, and ``novel``, ``shots``, ``seed``, ``group``, ``block``, ``gap``, ``tile``, ``query_fraction``,
    ``min_pixels``); ``echo`` receives the line that says which dataset and layout were found."""
    from .split import split_dataset

    options = dict(shots=recipe.shots, seed=recipe.seed, tile=recipe.tile or None, query_fraction=recipe.query_fraction,
                   min_pixels=recipe.min_pixels, block=recipe.block, gap=recipe.gap, progress=progress)
    if recipe.dataset is None:
        return split_dataset(recipe.images, recipe.labels, ClassMap.load(recipe.classes), list(recipe.novel), out,
                             group=recipe.group, **options)
    found = preset(recipe.dataset)
    root = Path(recipe.root)
    lay = found.layout(root, recipe.layout)
    images, labels = found.patterns(root, lay)
    classes = ClassMap.load(recipe.classes) if recipe.classes else found.classes
    if echo is not None:
        echo(f"{found.title}, {lay.name} layout ({lay.about}): {images} + {labels}")
    return split_dataset(images, labels, classes, list(recipe.novel), out, group=recipe.group or lay.group,
                         key=lay.key, skip_unlabelled=True, dataset=f"{found.name}/{lay.name}", **options)
