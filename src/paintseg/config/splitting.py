"""How ``paintseg split`` builds an episode from a labelled dataset: :class:`SplitRecipe`, the options of the command
and a run config's ``episode.split``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .core import later

# the datasets paintseg.data.datasets knows (kept here as names, so that checking a config reads no data code)
DATASETS = ("loveda", "potsdam", "vaihingen", "openearthmap")


class SplitRecipe(BaseModel):
    """Build the episode with ``paintseg split`` from a fully labelled dataset (see that command's options): a
    built-in ``dataset`` under ``root``, or any dataset by ``images``, ``labels`` and ``classes``."""

    model_config = ConfigDict(extra="forbid")

    dataset: Literal[DATASETS] | None = later(
        None, description="A built-in dataset (loveda, potsdam, vaihingen, openearthmap) under root, as released or as "
        "converted by mmsegmentation: its class map, file patterns and groups are built in.")
    root: str | None = later(None, description="With dataset: the folder that holds the dataset.")
    layout: Literal["release", "mmseg"] | None = later(
        None, description="With dataset: release or mmseg (default: the one found).")
    images: str | None = Field(None, description="Glob of the images, e.g. 'data/*/images/*.jpg' (quote it on a "
                               "command line); ** recurses. Not with dataset.")
    labels: str | None = Field(None, description="Glob of the labels; paired with the images by file stem (within "
                               "a group). Not with dataset.")
    classes: str | None = Field(None, description="classes.json with every class's id, name, role and colour(s) "
                                "(with dataset: replaces the built-in map).")
    novel: list[str] = Field(..., min_length=1, description="Novel class name(s); every other class becomes base "
                             "(on a command line: repeat the option, or separate the names by commas).")
    shots: int = Field(5, ge=1, description="Support images per novel class.")
    seed: int = Field(0, description="Seed for the group assignment and the support choice.")
    group: str | None = Field(None, description="Regex on the path naming a group (e.g. 'Tile \\d+'); train, "
                              "support and query never share a group, so nearby pixels never leak between training "
                              "and evaluation.")
    block: int | None = later(None, ge=64, description="Cut every scene into square spatial blocks of this many "
                              "pixels that serve as the groups: for a few large scenes, or one.")
    gap: int = later(64, ge=0, description="With block: pixels between the tiles of neighbouring blocks (no train "
                     "tile touches a support or query tile).")
    tile: int = Field(512, ge=0, description="Cut larger images into tiles of this size (0 keeps images whole).")
    query_fraction: float = Field(0.25, gt=0, lt=1, description="Share of the groups used as the query set.")
    min_pixels: int = Field(64, ge=1, description="Least pixels of a novel class for an image to serve as its "
                            "support.")

    def normalised(self) -> "SplitRecipe":
        """The recipe with its paths as real, normalised paths (``a/configs/../data`` → ``a/data``, links followed;
        a glob keeps its pattern): the same data reached from another folder is the same recipe."""
        import os

        return self.model_copy(update={k: os.path.realpath(getattr(self, k)) for k in ("root", "images", "labels",
                                                                                      "classes")
                                       if getattr(self, k) is not None})

    @model_validator(mode="after")
    def _source(self) -> "SplitRecipe":
        if self.dataset is not None:
            if self.root is None or self.images or self.labels:
                raise ValueError("dataset needs root (the dataset's folder) and no images/labels")
        elif not (self.images and self.labels and self.classes):
            raise ValueError("give dataset + root (built in: loveda, potsdam, vaihingen, openearthmap), or images, "
                             "labels and classes")
        return self
