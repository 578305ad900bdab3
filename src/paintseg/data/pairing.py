"""Pairing a dataset's images with their labels, by file stem within a *group* (a place: a tile, a city, a scene),
before :mod:`.split` cuts them into an episode::

    pairs = find_pairs("data/*/images/*.jpg", "data/*/masks/*.png", group=r"Tile \\d+")
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from pathlib import Path

from paintseg.errors import PaintsegError

from .raster import is_raster


class SplitError(PaintsegError):
    """A dataset that cannot be split as asked; the message names the file or setting and what to change."""


@dataclass(frozen=True)
class Pair:
    """An image, its label, the group (place) it belongs to and the stem that paired them."""

    image: Path
    label: Path
    group: str
    stem: str


def _glob(pattern: str, what: str) -> list[Path]:
    paths = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if is_raster(p) and Path(p).is_file())
    if not paths:
        raise SplitError(f"no {what} match {pattern!r}; check the pattern (quote it so the shell does not expand "
                         f"it; ** matches any folders) and that the files end in .tif, .png or .jpg")
    return paths


def _group_of(path: Path, regex: re.Pattern) -> str:
    m = regex.search(str(path))
    if m is None:
        raise SplitError(f"{path}: --group \"{regex.pattern}\" does not match this path; give a regex that matches "
                         f"every image and label path (e.g. --group \"Tile \\d+\")")
    return m.group(1) if regex.groups else m.group(0)


def find_pairs(images: str, labels: str, group: str | None = None, key: str | None = None,
               skip_unlabelled: bool = False) -> list[Pair]:
    """Pair the files matched by two glob patterns by stem, within the group each path's ``group`` regex names.

    The group is the whole regex match, or its first capture group if it has one. Without ``group`` every pair is
    its own group (named by its stem) and stems must be unique. ``key`` (a regex on the file name; its first group,
    else its whole match) pairs files whose stems differ (``top_potsdam_2_10_RGB`` with ``top_potsdam_2_10_label``).
    An image without a label is an error, or skipped with ``skip_unlabelled`` (releases that ship unlabelled test
    images). Returns the pairs sorted by group, then stem.
    """
    return pair_files(images, labels, group, key, skip_unlabelled)[0]


def pair_files(images: str, labels: str, group: str | None, key: str | None,
          skip_unlabelled: bool) -> tuple[list[Pair], list[Path]]:
    """:func:`find_pairs` and the images it skipped for want of a label."""
    regex, key_regex = _regex(group, "--group"), _regex(key, "the pairing key")

    def stem(p: Path) -> str:
        if key_regex is None:
            return p.stem
        m = key_regex.search(p.name)
        if m is None:
            raise SplitError(f"{p}: the pairing key \"{key_regex.pattern}\" does not match this file name; check "
                             f"that --images and --labels match only the dataset's images and labels")
        return m.group(1) if key_regex.groups else m.group(0)

    def index(paths: list[Path], what: str) -> dict[tuple[str, str], Path]:
        found: dict[tuple[str, str], Path] = {}
        for p in paths:
            k = (_group_of(p, regex) if regex else "", stem(p))
            if k in found:
                where = f" in group {k[0]!r}" if regex else ""
                fix = ("make --group match a part of the path that tells them apart" if regex else
                       "pass --group REGEX to pair files by stem within a group, e.g. --group \"Tile \\d+\"")
                raise SplitError(f"two {what} have the stem {k[1]!r}{where}: {found[k]} and {p}; {fix}")
            found[k] = p
        return found

    image_index = index(_glob(images, "images"), "images")
    label_index = index(_glob(labels, "labels"), "labels")
    missing = [p for k, p in image_index.items() if k not in label_index]
    if missing and not skip_unlabelled:
        shown = ", ".join(str(p) for p in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise SplitError(f"{len(missing)} image(s) have no label with the same stem"
                         f"{' in the same group' if regex else ''} among {labels!r}: {shown}; "
                         f"fix the --labels pattern or add the labels")
    pairs = [Pair(p, label_index[k], k[0] if regex else k[1], k[1])
             for k, p in sorted(image_index.items()) if k in label_index]
    if not pairs:
        raise SplitError(f"none of the images matched by {images!r} has a label among {labels!r}; fix the patterns")
    return pairs, missing


def _regex(pattern: str | None, what: str) -> re.Pattern | None:
    try:
        return re.compile(pattern) if pattern else None
    except re.error as e:
        raise SplitError(f"{what} \"{pattern}\" is not a valid regular expression ({e})") from None
