"""``EXP/results.json`` as one typed, versioned model: ``paintseg run`` writes it through :class:`Results`, the
report, the headline and the benchmarks read it through :meth:`Results.load`.

    results = Results.load("runs/dubai")       # validated; an older version is migrated, a newer one refused
    results.summary[0].novel_miou.mean         # typed rows, the config as the ExperimentConfig that ran
    results.write("runs/dubai")

Versions (:data:`VERSION`): 1 — no ``version`` field; painting quality paired with copy-paste under
``paired_vs_copy_paste`` and one ``filter_quality`` for the first painter. 2 — ``version``; painting quality in
the shape :func:`paintseg.evaluate.assess.assess_painting` writes for both the run and ``paintseg
painting-quality``: ``against`` + ``paired``, ``filter_quality`` per generator, ``conditioning`` per generator.
:func:`migrate` turns a version-1 file into version 2 on reading; the file is rewritten only by the next run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from paintseg.errors import PaintsegError
from paintseg.files import write_text

from .spec import ExperimentConfig

VERSION = 2
FIX = "run `paintseg run CONFIG --out EXP` first"


class ResultsError(PaintsegError):
    """results.json is missing, malformed, or of a version this paintseg cannot read."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Stat(_Model):
    """Mean and sample standard deviation over seeds (std 0 with one seed)."""

    mean: float | None
    std: float | None = None


class Metrics(_Model):
    """A run's query metrics (IoU in %): what results.json keeps of its metrics.json."""

    per_class_iou: dict[str, float | None]
    roles: dict[str, str] = {}
    base_miou: float | None
    novel_miou: float | None
    score: float | None


class Run(_Model):
    arm: str
    model: str
    seed: int
    run: str | None = Field(None, description="The training folder, relative to EXP.")
    predictions: str | None = Field(None, description="Its query predictions, relative to EXP.")
    metrics: Metrics


class Gain(_Model):
    base_miou: float | None = None
    novel_miou: float | None = None
    score: float | None = None


class SummaryRow(_Model):
    """Mean ± std over the seeds of one arm × model, and the gain of the means over the baseline's."""

    arm: str
    model: str
    n: int
    base_miou: Stat
    novel_miou: Stat
    score: Stat
    per_class_iou: dict[str, Stat] = {}
    gain: Gain | None = None


class Comparison(_Model):
    """One arm against another for one model (:func:`paintseg.evaluate.significance.compare` per metric)."""

    arm: str
    against: str
    model: str
    novel_miou: dict[str, Any]
    base_miou: dict[str, Any] | None = None

    def beyond(self, metric: str = "novel_miou") -> bool:
        found = getattr(self, metric) or {}
        return bool(found.get("beyond"))

    def seed_mean(self, metric: str = "novel_miou") -> float | None:
        return ((getattr(self, metric) or {}).get("seeds") or {}).get("mean")


class Synthetic(_Model):
    """One seed's synthetic sets: paint and curated folders per backend / arm (relative to EXP), the placements'
    fit rates and every curated set's summary."""

    seed: int
    paint: dict[str, str] = {}
    placement_quality: dict[str, Any] | None = None
    curated: dict[str, str] = {}
    summaries: dict[str, dict[str, Any]] = {}


class Stage(BaseModel):
    model_config = ConfigDict(extra="allow")

    stage: str
    folder: str | None = None
    seconds: float | None = None
    peak_rss_mb: float | None = None
    cached: bool = False


class PaintingQuality(BaseModel):
    """What :func:`paintseg.evaluate.assess.assess_painting` measured (less its per-test records)."""

    model_config = ConfigDict(extra="allow")

    metrics: list[str]
    backends: dict[str, dict[str, Any]]
    probe: dict[str, Any] | None = None
    samples: list[dict[str, Any]] | None = None
    against: str | None = None
    paired: dict[str, dict[str, Any]] = {}
    mask_quality: dict[str, Any] | None = None
    filter_quality: dict[str, dict[str, Any]] = {}
    conditioning: dict[str, dict[str, Any]] = {}
    curve: dict[str, Any] | None = None
    folder: str | None = Field(None, description="The stage folder (its samples/), relative to EXP.")


class Results(_Model):
    """Everything ``paintseg run`` found, rewritten after every finished run (``complete`` False until the last)."""

    version: int = VERSION
    name: str
    config: ExperimentConfig
    episode: str | None
    generator: dict[str, Any] | None = None
    novel: list[str] = []
    arms: list[str]
    models: list[str]
    seeds: list[int]
    runs: list[Run] = []
    summary: list[SummaryRow] = []
    comparisons: list[Comparison] = []
    synthetic: list[Synthetic] = []
    painting_quality: PaintingQuality | None = None
    stages: list[Stage] = []
    complete: bool = False
    wall_seconds: float | None = None
    environment: dict[str, Any] = {}
    command: str | None = None
    disk_mb: float | None = None

    # --- reading and writing: the one schema
    @classmethod
    def load(cls, exp: str | Path) -> "Results":
        """``EXP/results.json`` (or the file itself), migrated to :data:`VERSION` and validated."""
        path = Path(exp)
        path = path / "results.json" if path.is_dir() or path.suffix != ".json" else path
        if not path.is_file():
            raise ResultsError(f"{path}: missing; {FIX}")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ResultsError(f"{path}: not valid JSON ({e}); {FIX} (or let it finish writing)") from None
        return cls.parse(data, path)

    @classmethod
    def parse(cls, data: Any, where: str | Path = "results.json") -> "Results":
        if not isinstance(data, dict):
            raise ResultsError(f"{where}: expected a JSON object with runs and summary; {FIX}")
        for key in ("arms", "models", "runs", "summary"):
            if not isinstance(data.get(key), list):
                raise ResultsError(f"{where}: {key!r} is missing or not a list; {FIX}")
        version = data.get("version", 1)
        if not isinstance(version, int) or version > VERSION:
            raise ResultsError(f"{where}: results version {version!r} is newer than this paintseg reads ({VERSION}); "
                               f"upgrade paintseg to read it")
        try:
            return cls.model_validate(migrate(data))
        except ValidationError as e:
            first = e.errors()[0]
            at = ".".join(str(p) for p in first["loc"])
            raise ResultsError(f"{where}: {at}: {first['msg']} ({len(e.errors())} problem(s)); this paintseg reads "
                               f"results version {VERSION}: run the experiment again (`paintseg run CONFIG --out "
                               f"EXP` resumes from its cached stages) to rewrite it") from None

    def dump(self) -> dict:
        """The JSON object results.json holds (python mode: a NaN stays NaN wherever it is, as json.dumps writes it;
        the config in JSON mode, as it was echoed)."""
        return self.model_dump(exclude={"config"}) | {"config": self.config.model_dump(mode="json")}

    def write(self, exp: str | Path) -> Path:
        return write_text(Path(exp) / "results.json", json.dumps(self.dump(), indent=1) + "\n")

    # --- what the report and the headline ask of it
    def comparison(self, arm: str, against: str, model: str | None = None) -> Comparison | None:
        return next((c for c in self.comparisons if c.arm == arm and c.against == against
                     and (model is None or c.model == model)), None)


def migrate(data: dict) -> dict:
    """A results.json object of any known version as version :data:`VERSION` (a copy; ``data`` is not changed)."""
    data = dict(data)
    if data.get("version", 1) == 1:
        if isinstance(data.get("painting_quality"), dict):
            data["painting_quality"] = migrate_painting_quality(data["painting_quality"])
        data["version"] = 2
    return data


def migrate_painting_quality(quality: dict) -> dict:
    """A painting-quality dict of run version 1 (``paired_vs_copy_paste``; one ``filter_quality`` judged on the
    first painter) or of ``paintseg painting-quality`` before version 2 (``paired_vs_first``) in the version-2
    shape; a version-2 dict unchanged."""
    quality = dict(quality)
    for old, against in (("paired_vs_copy_paste", "copy-paste"), ("paired_vs_first", None)):
        if old in quality:
            paired = quality.pop(old)
            quality["paired"] = paired
            quality["against"] = against if against is not None else next(
                (n for n in quality.get("backends", {}) if n not in paired), None)
    found = quality.get("filter_quality")
    if isinstance(found, dict) and "filters" in found:  # one judged painter: the first diffusion backend
        painters = sorted(n for n in quality.get("backends", {}) if n.startswith("diffusion"))
        quality["filter_quality"] = {painters[0] if painters else "diffusion": found}
    return quality
