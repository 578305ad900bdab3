"""ClassMap: which label value means which class, how it is drawn, and what role it plays in a few-shot episode.

The on-disk form is ``classes.json``::

    {"classes": [{"id": 0, "name": "background", "role": "background", "color": "#000000"},
                 {"id": 1, "name": "tree", "role": "base", "color": "#22aa22"},
                 {"id": 255, "name": "unlabeled", "role": "ignore", "color": ["#9B9B9B", "#000000"]}]}

``color`` is one ``#RRGGBB`` string or a list of them (several palette colours meaning one class). Label value 0 is
background (never scored) and 255 is ignore (never counted): the class with role ``background`` has id 0, the one
with role ``ignore`` id 255.

``values`` (optional) says which values of a *source* dataset's single-band labels mean the class, when they differ
from the id - LoveDA's no-data 0 is ``{"id": 255, "name": "no-data", "role": "ignore", "values": [0]}``. A class
without ``values`` is read from the value equal to its id, unless another class claims that value. ``paintseg split``
reads the source labels through the values and writes the episode's labels as ids (its ``classes.json`` has none).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable

import numpy as np

from paintseg.errors import PaintsegError

BACKGROUND = 0
IGNORE = 255
ROLES = ("background", "base", "novel", "ignore")


class ClassMapError(PaintsegError):
    """A classes.json file (or a colour-coded label) that cannot be understood."""


def parse_color(value: str, where: str = "classes.json") -> tuple[int, int, int]:
    text = str(value).strip()
    if not (len(text) == 7 and text.startswith("#")):
        raise ClassMapError(f"{where}: colour {value!r} is not of the form '#RRGGBB' (for example '#22aa22')")
    try:
        return int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16)
    except ValueError:
        raise ClassMapError(f"{where}: colour {value!r} is not of the form '#RRGGBB' (for example '#22aa22')") from None


def format_color(rgb: Iterable[int]) -> str:
    r, g, b = (int(v) for v in rgb)
    return f"#{r:02X}{g:02X}{b:02X}"


@dataclass(frozen=True)
class ClassInfo:
    """One class: label value, name, role in the episode and display colour(s)."""

    id: int
    name: str
    role: str
    colors: tuple[str, ...] = field(default_factory=tuple)
    values: tuple[int, ...] = field(default_factory=tuple)  # source label values meaning this class (default: id)

    @property
    def color(self) -> tuple[int, int, int]:
        """The display colour (the first of ``colors``), as RGB."""
        return parse_color(self.colors[0]) if self.colors else (0, 0, 0)


class ClassMap:
    """The classes of a dataset or episode, ordered by id."""

    def __init__(self, classes: Iterable[ClassInfo], source: str = "classes.json"):
        items = sorted(classes, key=lambda c: c.id)
        seen_ids: set[int] = set()
        seen_names: set[str] = set()
        claimed: dict[int, str] = {}
        for c in items:
            if not 0 <= c.id <= 255:
                raise ClassMapError(f"{source}: class {c.name!r} has id {c.id}; ids must be 0..255 (255 is ignore)")
            if c.role not in ROLES:
                raise ClassMapError(f"{source}: class {c.name!r} has role {c.role!r}; use one of {', '.join(ROLES)}")
            fixed = {"background": BACKGROUND, "ignore": IGNORE}.get(c.role)
            if fixed is not None and c.id != fixed:
                raise ClassMapError(
                    f"{source}: class {c.name!r} has role {c.role!r} but id {c.id}; in an episode the {c.role} is "
                    f"label value {fixed}: give it \"id\": {fixed}, \"values\": [{c.id}] (read from value {c.id} of "
                    f"the source labels), or make it a base class (\"role\": \"base\") if it should be scored")
            for v in c.values:
                if not 0 <= v <= 255:
                    raise ClassMapError(f"{source}: class {c.name!r} lists value {v}; label values are 0..255")
                if v in claimed:
                    raise ClassMapError(f"{source}: value {v} is listed by {claimed[v]!r} and {c.name!r}; a source "
                                        f"label value means one class")
                claimed[v] = c.name
            if c.id in seen_ids:
                raise ClassMapError(f"{source}: id {c.id} is used by more than one class; give each class its own id")
            if c.name in seen_names:
                raise ClassMapError(f"{source}: name {c.name!r} is used twice; class names must be unique")
            for col in c.colors:
                parse_color(col, source)
            seen_ids.add(c.id)
            seen_names.add(c.name)
        self.classes: list[ClassInfo] = items
        self.source = source

    # ----------------------------------------------------------------- construction and storage
    @classmethod
    def from_dict(cls, data: dict, source: str = "classes.json") -> "ClassMap":
        if not isinstance(data, dict) or not isinstance(data.get("classes"), list):
            raise ClassMapError(
                f'{source}: expected {{"classes": [{{"id": 0, "name": "background", "role": "background", '
                f'"color": "#000000"}}, ...]}}'
            )
        items = []
        for i, entry in enumerate(data["classes"]):
            try:
                color = entry.get("color", [])
                colors = (color,) if isinstance(color, str) else tuple(color)
                raw = entry.get("values", [])
                values = (int(raw),) if isinstance(raw, int) else tuple(int(v) for v in raw)
                items.append(ClassInfo(int(entry["id"]), str(entry["name"]), str(entry.get("role", "base")), colors,
                                       values))
            except (KeyError, TypeError, ValueError, AttributeError):
                raise ClassMapError(
                    f"{source}: entry {i} ({entry!r}) needs at least an integer 'id' and a 'name' ('values': integers)"
                ) from None
        return cls(items, source)

    @classmethod
    def load(cls, path: str | Path) -> "ClassMap":
        path = Path(path)
        if not path.is_file():
            raise ClassMapError(f"{path}: no such classes file; pass a classes.json path (schema in the README)")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ClassMapError(f"{path}: not valid JSON ({e}); fix the file or regenerate it") from None
        return cls.from_dict(data, str(path))

    def to_dict(self) -> dict:
        out = []
        for c in self.classes:
            entry: dict = {"id": c.id, "name": c.name, "role": c.role}
            if c.colors:
                entry["color"] = c.colors[0] if len(c.colors) == 1 else list(c.colors)
            if c.values:
                entry["values"] = list(c.values)
            out.append(entry)
        return {"classes": out}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def openearthmap_fewshot(cls, split: str = "valset") -> "ClassMap":
        """The OpenEarthMap few-shot challenge classes. Novel names differ between the valset and the testset."""
        base = [
            ClassInfo(0, "background", "background", ("#000000",)),
            ClassInfo(1, "tree", "base", ("#226126",)),
            ClassInfo(2, "rangeland", "base", ("#00FF24",)),
            ClassInfo(3, "bareland", "base", ("#800000",)),
            ClassInfo(4, "agric land type 1", "base", ("#4BB549",)),
            ClassInfo(5, "road type 1", "base", ("#FFFFFF",)),
            ClassInfo(6, "sea, lake, & pond", "base", ("#0045FF",)),
            ClassInfo(7, "building type 1", "base", ("#DE1F07",)),
        ]
        if split == "testset":
            novel = ["vehicle & cargo-trailer", "parking space", "sport field", "building type 2"]
        else:
            novel = ["road type 2", "river", "boat & ship", "agric land type 2"]
        colors = ["#F0A000", "#00A0F0", "#F000F0", "#A0F000"]
        items = base + [ClassInfo(8 + i, n, "novel", (colors[i],)) for i, n in enumerate(novel)]
        items.append(ClassInfo(IGNORE, "ignore", "ignore", ()))
        return cls(items, f"OpenEarthMap few-shot ({split})")

    # ----------------------------------------------------------------- queries
    def __iter__(self):
        return iter(self.classes)

    def __len__(self) -> int:
        return len(self.classes)

    def __eq__(self, other) -> bool:
        return isinstance(other, ClassMap) and self.classes == other.classes

    def __repr__(self) -> str:
        return "ClassMap(" + ", ".join(f"{c.id}:{c.name}[{c.role}]" for c in self.classes) + ")"

    def __getitem__(self, class_id: int) -> ClassInfo:
        for c in self.classes:
            if c.id == class_id:
                return c
        raise KeyError(f"no class with id {class_id} in {self.source}")

    def by_name(self, name: str) -> ClassInfo:
        for c in self.classes:
            if c.name == name:
                return c
        known = ", ".join(repr(c.name) for c in self.classes)
        raise ClassMapError(f"{self.source}: no class named {name!r}; known classes: {known}")

    def ids(self, *roles: str) -> list[int]:
        return [c.id for c in self.classes if c.role in roles]

    @property
    def base_ids(self) -> list[int]:
        return self.ids("base")

    @property
    def novel_ids(self) -> list[int]:
        return self.ids("novel")

    @property
    def scored_ids(self) -> list[int]:
        """Classes that enter the score: base then novel, by id."""
        return self.ids("base", "novel")

    @property
    def valid_values(self) -> set[int]:
        """Label values allowed in a label file: every class id, plus background 0 and ignore 255."""
        return {c.id for c in self.classes} | {BACKGROUND, IGNORE}

    @property
    def num_classes(self) -> int:
        """Model output channels: largest non-ignore id + 1 (channel i predicts label value i)."""
        return max(c.id for c in self.classes if c.role != "ignore") + 1

    def name(self, class_id: int) -> str:
        try:
            return self[class_id].name
        except KeyError:
            return {BACKGROUND: "background", IGNORE: "ignore"}.get(class_id, f"class {class_id}")

    def with_novel(self, names: Iterable[str]) -> "ClassMap":
        """A copy where the named classes are novel and every other base/novel class is base."""
        names = list(names)
        for n in names:
            c = self.by_name(n)
            if c.role in ("background", "ignore"):
                raise ClassMapError(f"{self.source}: {n!r} has role {c.role!r} and cannot be a novel class")
        items = [
            replace(c, role="novel" if c.name in names else ("base" if c.role in ("base", "novel") else c.role))
            for c in self.classes
        ]
        return ClassMap(items, self.source)

    # ----------------------------------------------------------------- source label values
    @property
    def has_values(self) -> bool:
        """Whether some class reads its pixels from other source label values than its id (see ``values``)."""
        return any(c.values for c in self.classes)

    def episode_map(self) -> "ClassMap":
        """This map without ``values``: the class map of labels that already hold ids (what split writes)."""
        return ClassMap([replace(c, values=()) for c in self.classes], self.source)

    def value_lut(self) -> np.ndarray:
        """256-entry table: source label value → class id, -1 for a value no class reads."""
        table = np.full(256, -1, np.int16)
        claimed = {v for c in self.classes for v in c.values}
        for v in self.valid_values - claimed:
            table[v] = v
        for c in self.classes:
            table[list(c.values)] = c.id
        return table

    def decode_values(self, raw: np.ndarray, source: str | Path = "label") -> np.ndarray:
        """Single-band source label values → class ids through ``values``; an unknown value is an error naming the
        file. Without ``values`` the labels already hold ids and are returned as they are."""
        if not self.has_values:
            return raw
        table = self.value_lut()
        ids = table[raw]
        if (ids < 0).any():
            bad = sorted(np.unique(raw[ids < 0]).tolist())
            read = ", ".join(f"{v}={self.name(int(table[v]))}" for v in range(256) if table[v] >= 0)
            raise ClassMapError(f"{source}: label value(s) {bad} mean no class of {self.source} (it reads {read}); "
                                f"list them under a class's \"values\" in classes.json")
        return ids.astype(np.uint8)

    # ----------------------------------------------------------------- colours
    def lut(self) -> np.ndarray:
        """256×3 uint8 table: class id → display colour (unknown ids black, ignore grey)."""
        table = np.zeros((256, 3), np.uint8)
        table[IGNORE] = (128, 128, 128)
        for c in self.classes:
            if c.colors:
                table[c.id] = c.color
        return table

    def colorize(self, label: np.ndarray) -> np.ndarray:
        """HxW class ids → HxWx3 display colours."""
        return self.lut()[label]

    def decode_colors(self, rgb: np.ndarray, source: str | Path = "label") -> np.ndarray:
        """HxWx3 colour-coded label → HxW class ids. An unknown colour is an error naming the file and the colour."""
        if rgb.ndim != 3 or rgb.shape[2] < 3:
            raise ClassMapError(f"{source}: a colour-coded label needs 3 bands, got shape {rgb.shape}")
        rgb = rgb[..., :3]
        code = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
        keys, ids = self._color_codes()
        # searchsorted over the few known colours is linear in the pixels (np.unique would sort them all)
        pos = np.minimum(np.searchsorted(keys, code), max(len(keys) - 1, 0))
        found = keys[pos] == code if len(keys) else np.zeros(code.shape, bool)
        if not found.all():
            bad = code[~found]
            u = int(bad.min())
            n = int((bad == u).sum())
            known = ", ".join(f"{col}={c.name}" for c in self.classes for col in c.colors)
            raise ClassMapError(
                f"{source}: colour {format_color(((u >> 16) & 255, (u >> 8) & 255, u & 255))} ({n} pixels) is "
                f"not in the class map ({known}); add it to classes.json (a class's 'color' may be a list)"
            )
        return ids[pos]

    def _color_codes(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted 24-bit colour codes (0xRRGGBB) of every class colour, and the class id of each."""
        table: dict[int, int] = {}
        for c in self.classes:
            for col in c.colors:
                r, g, b = parse_color(col, self.source)
                table[(r << 16) | (g << 8) | b] = c.id
        keys = np.array(sorted(table), np.uint32)
        return keys, np.array([table[k] for k in keys.tolist()], np.uint8)
