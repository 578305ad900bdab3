"""Episode: a few-shot task in exactly the OpenEarthMap few-shot challenge layout.

::

    EPISODE/
      classes.json                optional; without it the challenge's ids, names and roles are used
      train.txt                   names of the base-class training images (one per line)
      trainset/images/<name>      trainset/labels/<stem>.<tif|png>
      val.json                    {"support_set": {"8": [5 names], ...}, "query_set": [names]}
      valset/images/<name>        valset/labels/<stem>.<tif|png>
      test.json, testset/...      optional, same form as val.json / valset

Names in train.txt and the JSON files are image file names (``a.tif``) or stems (``a``); a label is found by stem
in the labels folder, so an image ``a.jpg`` may have its label in ``a.png``. Trainset labels hold base classes only,
a support label holds only its one novel class, query labels hold everything.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from paintseg.errors import PaintsegError
from .classes import BACKGROUND, IGNORE, ClassMap, ClassMapError
from .raster import FORMATS, Raster, RasterError, read_image, read_label, to_uint8

SPLIT_LISTS = {"valset": "val.json", "testset": "test.json"}


class EpisodeError(PaintsegError):
    """An episode folder that does not have the challenge layout; the message names the file and the fix."""


@dataclass(frozen=True)
class Sample:
    """One image of an episode: where its image and label live and what part it plays."""

    split: str  # "trainset" | "valset" | "testset"
    name: str  # as listed (file name or stem)
    image: Path
    label: Path | None
    role: str  # "train" | "support" | "query"
    class_id: int | None = None  # the novel class of a support image

    @property
    def stem(self) -> str:
        return Path(self.name).stem if Path(self.name).suffix.lower() in FORMATS else self.name


def _find(folder: Path, name: str) -> Path | None:
    """``folder/name`` if it exists, else the one raster in ``folder`` with the same stem."""
    exact = folder / name
    if exact.is_file():
        return exact
    stem = Path(name).stem if Path(name).suffix.lower() in FORMATS else name
    for suffix in FORMATS:
        p = folder / f"{stem}{suffix}"
        if p.is_file():
            return p
    return None


class Episode:
    """A loaded episode. ``split`` picks which evaluation list (valset/val.json or testset/test.json) is used."""

    def __init__(self, root: str | Path, split: str = "valset", classes: ClassMap | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise EpisodeError(f"{self.root}: no such episode folder; build one with `paintseg split` or pass the "
                               f"folder that holds train.txt and val.json")
        if split not in SPLIT_LISTS:
            raise EpisodeError(f"unknown split {split!r}; use 'valset' or 'testset'")
        self.split = split
        if classes is None:
            cpath = self.root / "classes.json"
            classes = ClassMap.load(cpath) if cpath.is_file() else ClassMap.openearthmap_fewshot(split)
        self.classes = classes

        train_txt = self.root / "train.txt"
        if not train_txt.is_file():
            raise EpisodeError(f"{train_txt}: missing; an episode lists its base training images in train.txt "
                               f"(one name per line)")
        self.train_names = [ln.strip() for ln in train_txt.read_text().splitlines() if ln.strip()]

        list_path = self.root / SPLIT_LISTS[split]
        if not list_path.is_file():
            raise EpisodeError(f"{list_path}: missing; it must hold {{\"support_set\": {{class id: [names]}}, "
                               f"\"query_set\": [names]}}")
        try:
            data = json.loads(list_path.read_text())
            self.support = {int(k): list(v) for k, v in data["support_set"].items()}
            self.query_names = list(data["query_set"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
            raise EpisodeError(f"{list_path}: cannot read support_set/query_set ({e!r}); expected "
                               f"{{\"support_set\": {{\"8\": [\"a.tif\", ...]}}, \"query_set\": [\"q.tif\", ...]}}") from None
        for cid in self.support:
            try:
                role = self.classes[cid].role
            except KeyError:
                raise EpisodeError(f"{list_path}: support class {cid} is not in the class map "
                                   f"({self.classes.source}); add it to classes.json") from None
            if role != "novel":
                raise EpisodeError(f"{list_path}: support class {cid} ({self.classes.name(cid)}) has role {role!r}; "
                                   f"support classes must be novel in classes.json")

    # ------------------------------------------------------------------------------------------ samples
    def _sample(self, split: str, name: str, role: str, class_id: int | None = None) -> Sample:
        image = _find(self.root / split / "images", name) or (self.root / split / "images" / name)
        label = _find(self.root / split / "labels", name)
        return Sample(split, name, image, label, role, class_id)

    @property
    def train(self) -> list[Sample]:
        return [self._sample("trainset", n, "train") for n in self.train_names]

    @property
    def support_samples(self) -> list[Sample]:
        return [self._sample(self.split, n, "support", cid) for cid, names in self.support.items() for n in names]

    @property
    def query(self) -> list[Sample]:
        return [self._sample(self.split, n, "query") for n in self.query_names]

    @property
    def shots(self) -> int:
        return min((len(v) for v in self.support.values()), default=0)

    @property
    def recorded_shots(self) -> int | None:
        """The shots the episode was split for (``split.json``, written by ``paintseg split``), or None."""
        record = self.root / "split.json"
        try:
            return int(json.loads(record.read_text())["config"]["shots"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def read_image(self, sample: Sample, rgb_bands=None) -> Raster:
        return read_image(sample.image, rgb_bands)

    def read_label(self, sample: Sample) -> Raster:
        if sample.label is None:
            raise EpisodeError(f"{sample.image}: no label with stem {sample.stem!r} in "
                               f"{sample.image.parent.parent / 'labels'}; add it or remove the name from the list")
        return read_label(sample.label, self.classes)

    def training_label(self, sample: Sample) -> np.ndarray:
        """The label as the trainer sees it: 0 in trainset and support labels is ambiguous (true background, or a
        class this split does not label), so it is returned unchanged and the trainer decides (see segment/train)."""
        return self.read_label(sample).array

    # ------------------------------------------------------------------------------------------ checking
    def problems(self, expected_shots: int | None = None) -> list[str]:
        """Every problem in the episode, one message per problem, each naming the file and what to do."""
        return self.check(expected_shots)[0]

    def check(self, expected_shots: int | None = None) -> tuple[list[str], list[str]]:
        """(problems, warnings) of the episode, as `paintseg data check` prints them. Problems make it unusable:
        unreadable or inconsistent files, fewer support shots than ``expected_shots`` (default: the shots it was
        split for, else 5), a novel class with no pixels in the query set (its IoU cannot be measured). Warnings
        do not: a base class with no training pixels (no model can learn it)."""
        out: list[str] = []
        valid = self.classes.valid_values
        base = set(self.classes.base_ids)
        expected_shots = expected_shots if expected_shots is not None else self.recorded_shots or 5
        pixels = {role: np.zeros(256, np.int64) for role in ("train", "query")}
        for cid in self.classes.novel_ids:
            n = len(self.support.get(cid, []))
            if n == 0:
                out.append(f"{self.root / SPLIT_LISTS[self.split]}: novel class {cid} ({self.classes.name(cid)}) has no "
                           f"support image; list at least one under support_set[\"{cid}\"] (few-shot needs examples)")
            elif n < expected_shots:
                out.append(f"{self.root / SPLIT_LISTS[self.split]}: novel class {cid} ({self.classes.name(cid)}) has "
                           f"{n} support image(s), fewer than {expected_shots} shots; add support images or pass "
                           f"--shots {n}")
        seen: set[tuple[str, str]] = set()
        for s in self.train + self.support_samples + self.query:
            key = (s.split, s.name)
            if key in seen and s.role != "support":
                out.append(f"{s.image}: listed twice in the {s.split} lists; remove the duplicate")
            seen.add(key)
            if not s.image.is_file():
                out.append(f"{s.image}: image listed in the episode but missing; add the file or remove its name")
                continue
            if s.label is None:
                out.append(f"{s.image}: no label with stem {s.stem!r} in {s.image.parent.parent / 'labels'}; "
                           f"add the label or remove the name")
                continue
            try:
                img = read_image(s.image)
            except (RasterError, OSError) as e:
                out.append(str(e))
                continue
            try:
                lab = read_label(s.label, self.classes).array
            except (RasterError, ClassMapError, OSError) as e:
                out.append(str(e))
                continue
            if lab.shape != img.array.shape[:2]:
                out.append(f"{s.label}: label is {lab.shape[1]}x{lab.shape[0]} but its image {s.image.name} is "
                           f"{img.width}x{img.height}; image and label must have the same size")
                continue
            if s.role in pixels:
                pixels[s.role] += np.bincount(lab.ravel(), minlength=256)
            values = set(np.unique(lab).tolist())
            unknown = sorted(values - valid)
            if unknown:
                out.append(f"{s.label}: unknown label value(s) {unknown}; known ids are {sorted(valid)} "
                           f"(add them to classes.json or fix the label)")
            if s.role == "train":
                extra = sorted(values - base - {BACKGROUND, IGNORE} - set(unknown))
                if extra:
                    out.append(f"{s.label}: trainset label holds non-base class(es) {extra}; trainset labels carry "
                               f"base classes only (set novel pixels to 0)")
            elif s.role == "support":
                if not (lab == s.class_id).any():
                    out.append(f"{s.label}: support mask for class {s.class_id} ({self.classes.name(s.class_id)}) is "
                               f"empty; pick a support image that contains the class")
                extra = sorted(values - {s.class_id, BACKGROUND, IGNORE} - set(unknown))
                if extra:
                    out.append(f"{s.label}: support label for class {s.class_id} also holds {extra}; a support label "
                               f"carries only its novel class (set the rest to 0)")
        if out:  # the pixel counts below are only sound on files that read
            return out, []
        lists = self.root / SPLIT_LISTS[self.split]
        for cid in self.classes.novel_ids:
            if pixels["query"][cid] == 0:
                out.append(f"{lists}: novel class {cid} ({self.classes.name(cid)}) has no pixels in the "
                           f"{len(self.query_names)} query image(s), so its IoU cannot be measured; add query images "
                           f"that show it (with `paintseg split`: another --seed, lower --shots or a smaller --block)")
        warnings = [f"{self.root / 'train.txt'}: base class {cid} ({self.classes.name(cid)}) has no pixels in the "
                    f"{len(self.train_names)} training image(s): no model can learn it and its IoU will be 0"
                    for cid in self.classes.base_ids if pixels["train"][cid] == 0]
        return out, warnings

    def summary(self) -> dict:
        """Images per role and pixels per class per role (computed by reading every label)."""
        out: dict = {}
        for role, samples in (("train", self.train), ("support", self.support_samples), ("query", self.query)):
            counts = np.zeros(256, np.int64)
            for s in samples:
                counts += np.bincount(self.read_label(s).array.ravel(), minlength=256)
            out[role] = {"images": len(samples),
                         "pixels": {self.classes.name(i): int(c) for i, c in enumerate(counts) if c}}
        return out


class SceneCache:
    """Trainset scenes by name, read once and kept while they are in use (a small LRU)."""

    def __init__(self, episode: Episode, size: int = 16):
        self.episode = episode
        self.size = size
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._samples = {s.name: s for s in episode.train}

    def image(self, name: str) -> np.ndarray:
        if name in self._items:
            self._items.move_to_end(name)
            return self._items[name]
        if name not in self._samples:
            raise PaintsegError(f"{self.episode.root / 'train.txt'}: placement scene {name!r} is not a trainset image; "
                                f"the placements belong to another episode - delete placements.jsonl to re-plan")
        image = to_uint8(read_image(self._samples[name].image).array)
        self._items[name] = image
        if len(self._items) > self.size:
            self._items.popitem(last=False)
        return image
