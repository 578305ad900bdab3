"""placement: context windows, the context prior, the base predictor and plans, on tiny episodes in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from paintseg.config import PlaceConfig
from paintseg.data.classes import ClassInfo, ClassMap
from paintseg.data.episode import Episode
from paintseg.data.raster import read_label, write_image, write_label
from paintseg.data.split import split_dataset
from paintseg.place.context import ContextPrior, PixelClassifier, PlacementError, prior_summary, ring_histogram
from paintseg.place.masks import MASK_KINDS, Box
from paintseg.place.placement import (Placement, Priors, load_placements, plan_placements, save_placements,
                                      window_for)
from paintseg.place.references import Reference, extract_references

from conftest import SHARED_DATA, make_water_episode, paint_label, tiny_classes

WATER, FIELD_WATER_ROAD = 2, [1, 2, 3]


def _plan(ep: Episode, refs: list, per_class: int, prior: str = "context", seed: int = 0,
          context: ContextPrior | None = None, **config) -> list[Placement]:
    """plan_placements under PlaceConfig(per_class, prior, **config), with a label prior fitted once (``context``)."""
    priors = Priors(context, None, "context") if context is not None else None
    return plan_placements(ep, refs, PlaceConfig(per_class=per_class, prior=prior, **config), seed, progress=False,
                           priors=priors)


def _overlap(a: Box, b: Box) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def _inside(inner: Box, outer: Box) -> bool:
    return outer.x0 <= inner.x0 and outer.y0 <= inner.y0 and inner.x1 <= outer.x1 and inner.y1 <= outer.y1


# --------------------------------------------------------------------------------------------- windows
def test_window_for_coverage_and_bounds_for_many_boxes():
    rng = np.random.default_rng(0)
    height, width = 200, 300
    coverages = []
    for _ in range(2000):
        w, h = (int(v) for v in rng.integers(1, 41, 2))
        x0 = int(rng.choice([0, width - w, rng.integers(0, width - w + 1)]))  # at the edges or anywhere
        y0 = int(rng.choice([0, height - h, rng.integers(0, height - h + 1)]))
        box = Box(x0, y0, x0 + w, y0 + h)
        win = window_for(box, (height, width), rng)
        assert win.width == win.height and _inside(win, Box(0, 0, width, height)) and _inside(box, win)
        if max(w, h) <= int(np.floor(np.sqrt(w * h / 0.10))):  # not too elongated for 10 % coverage
            coverages.append(box.area / win.area)
    assert len(coverages) > 1500
    assert 0.10 <= min(coverages) < 0.12 and 0.23 < max(coverages) <= 0.25


def test_window_for_small_scenes_take_the_largest_square():
    rng = np.random.default_rng(1)
    for _ in range(200):
        win = window_for(Box(5, 3, 25, 23), (30, 50), rng)  # ideal side 40..63 > 30
        assert win.width == win.height == 30 and _inside(win, Box(0, 0, 50, 30)) and _inside(Box(5, 3, 25, 23), win)
    win = window_for(Box(10, 5, 50, 15), (30, 60), rng)  # box wider than the scene is high
    assert win.width == 30 and _inside(win, Box(0, 0, 60, 30))
    win = window_for(Box(2, 2, 42, 4), (200, 200), rng)  # elongated: the window is at least the long side
    assert win.width == 40 and _inside(Box(2, 2, 42, 4), win)
    with pytest.raises(PlacementError, match="coverage"):
        window_for(Box(0, 0, 4, 4), (64, 64), rng, coverage=(0.3, 0.2))


# --------------------------------------------------------------------------------------------- predictor and prior
def test_base_predictor_is_accurate_on_tiny_scenes(tiny_episode: Path):
    ep = Episode(tiny_episode)
    predictor = PixelClassifier.fit(ep)
    assert sorted(predictor.class_ids.tolist()) == FIELD_WATER_ROAD
    correct = total = 0
    for s in ep.query:  # unseen scenes
        label = read_label(s.label).array
        pred = predictor(ep.read_image(s).array)
        known = np.isin(label, FIELD_WATER_ROAD)
        correct += int((pred[known] == label[known]).sum())
        total += int(known.sum())
    assert correct / total > 0.8


def test_context_prior_prefers_water_and_guides_placement(tmp_path: Path):
    ep = Episode(make_water_episode(tmp_path / "ep"))
    refs = extract_references(ep)
    prior = ContextPrior.fit(ep, refs)
    summary = prior_summary(prior, ep.classes)
    assert list(summary) == ["pool"] and list(summary["pool"])[0] == "water" and summary["pool"]["water"] > 0.9
    assert prior.instances == {4: 3}
    assert prior.score(4, np.array([0.0, 1.0, 0.0])) == pytest.approx(np.sqrt(prior.histograms[4][1]))
    assert ContextPrior.from_dict(json.loads(json.dumps(prior.to_dict()))).histograms[4] == pytest.approx(
        prior.histograms[4])

    labels = {n: read_label(tmp_path / "ep/trainset/labels" / n).array for n in ep.train_names}

    def water_share(plan: list[Placement]) -> float:
        shares = [ring_histogram(labels[p.scene], p.box, 8, FIELD_WATER_ROAD)[1] for p in plan]
        return float(np.mean([s > 0.5 for s in shares]))

    context = water_share(_plan(ep, refs, 40, context=prior))
    uniform = water_share(_plan(ep, refs, 40, "uniform"))
    print(f"ring mostly water: context {context:.2f}, uniform {uniform:.2f}")
    assert context > 0.7 and uniform < 0.45 and context - uniform > 0.3


def test_fit_rate_tells_placements_that_follow_the_real_surroundings(tmp_path: Path):
    """Pools lie on water: context placements' surroundings look like the real query pools', uniform ones do not."""
    from paintseg.evaluate.placement_fit import fit_rate, query_instances, ring_descriptor

    ep = Episode(make_water_episode(tmp_path / "ep", n_train=8, queries=6))
    refs = extract_references(ep)
    assert len(query_instances(ep, 4)) == 6
    context = fit_rate(ep, _plan(ep, refs, 60, "context"), ring=6)
    uniform = fit_rate(ep, _plan(ep, refs, 60, "uniform"), ring=6)
    print(f"fit rate: context {context['pool']['fit_rate']}, uniform {uniform['pool']['fit_rate']}")
    assert context["pool"]["query_instances"] == 6 and context["pool"]["placements"] == 60
    assert context["pool"]["fit_rate"] > 0.75 and 0.25 < uniform["pool"]["fit_rate"] < 0.75
    assert ring_descriptor(np.zeros((8, 8, 3), np.uint8), Box(0, 0, 8, 8), 4) is None  # no frame around it

    from typer.testing import CliRunner

    from paintseg.cli import app

    done = CliRunner().invoke(app, ["place", str(tmp_path / "ep"), "--out", str(tmp_path / "plan"), "--per-class",
                                    "20"])
    assert done.exit_code == 0, done.output
    assert "20 placements written" in done.output and "pool: fit rate" in done.output
    assert len((tmp_path / "plan/placements.jsonl").read_text().splitlines()) == 20
    assert json.loads((tmp_path / "plan/placement_quality.json").read_text())["pool"]["placements"] == 20


def test_near_places_where_the_user_says_the_class_lives_when_the_support_is_narrow(tmp_path: Path):
    """Every support pool lies on water, the query's lie by roads among fields: the context prior follows the
    support onto the water; `near: [field, road]` (the user's word for where pools live) places them by roads, and
    the fit rate against the query's real surroundings rises from below random to well above it."""
    from paintseg.evaluate.placement_fit import fit_rate

    root = make_water_episode(tmp_path / "ep", n_train=8, queries=6)
    rng = np.random.default_rng(5)
    for i in range(6):  # the query's pools: beside a road that crosses a field, no water
        lab = np.full((64, 64), 1, np.uint8)
        r0, x0 = int(rng.integers(16, 40)), int(rng.integers(8, 48))
        lab[r0 : r0 + 6, :] = 3
        lab[r0 - 8 : r0, x0 : x0 + 8] = 4
        write_image(root / f"valset/images/query_{i}.png", paint_label(lab, rng))
        write_label(root / f"valset/labels/query_{i}.png", lab, classes=tiny_classes())
    ep = Episode(root)
    refs = extract_references(ep)
    priors = {"context": ContextPrior.fit(ep, refs), "near": ContextPrior.from_classes(ep, ["field", "road"])}
    fit = {name: fit_rate(ep, _plan(ep, refs, 40, context=prior), ring=6,
                          space="labels")["pool"]["fit_rate"] for name, prior in priors.items()}
    print("fit rate against the query (base-class shares):", fit)
    assert fit["context"] < 0.5 and fit["near"] > 0.7
    assert prior_summary(priors["near"], ep.classes)["pool"] == {"field": 0.5, "road": 0.5, "water": 0.0}
    with pytest.raises(PlacementError, match=r"near \['lake'\]: not a base class .* field, water, road"):
        ContextPrior.from_classes(ep, ["lake"])
    with pytest.raises(ValueError, match="set prior: context"):
        PlaceConfig(prior="auto", near=["road"])


def test_appearance_prior_places_on_water_where_the_labels_cannot_tell(tmp_path: Path):
    """Pools lie on water. With full labels, auto keeps the label prior's lead; with every base pixel relabelled to
    one class (an object dataset's background), the label prior is blind and auto follows appearance."""
    from paintseg.place.appearance import fit_scorer

    root = make_water_episode(tmp_path / "ep", n_train=8)
    ep = Episode(root)
    refs = extract_references(ep)
    labels = {n: read_label(root / "trainset/labels" / n).array for n in ep.train_names}

    def water_share(plan: list[Placement]) -> float:
        return float(np.mean([ring_histogram(labels[p.scene], p.box, 8, FIELD_WATER_ROAD)[1] > 0.5 for p in plan]))

    share = {prior: water_share(_plan(ep, refs, 40, prior))
             for prior in ("uniform", "context", "appearance", "auto")}
    print("ring mostly water, full labels:", share)
    assert share["uniform"] < 0.45 and share["appearance"] > 0.65 and share["auto"] > 0.9 and share["context"] > 0.9

    for n, lab in labels.items():  # every base pixel becomes 'field': the labels say nothing about water
        write_label(root / "trainset/labels" / n, np.where(lab == 255, 255, 1).astype(np.uint8), classes=ep.classes)
    ep = Episode(root)
    plans = {prior: _plan(ep, refs, 40, prior)
             for prior in ("context", "auto")}
    blind = {prior: water_share(plan) for prior, plan in plans.items()}
    print("ring mostly water, one base class:", blind)
    assert blind["context"] < 0.45 and blind["auto"] > 0.65
    from paintseg.evaluate.placement_fit import fit_rate

    follows = {prior: fit_rate(ep, plan, ring=6, against="support")["pool"]["fit_rate"]
               for prior, plan in plans.items()}
    print("fit rate against the support surroundings:", follows)
    assert follows["auto"] > 0.6 and follows["auto"] - follows["context"] > 0.15  # context: about 0.5, blind
    with pytest.raises(ValueError, match="'support' with 'image'"):
        fit_rate(ep, plans["auto"], against="support", space="labels")
    scorer = fit_scorer(ep, refs, PlaceConfig(prior="auto"))
    assert scorer.alpha[4] >= 0.75, scorer.selection  # the held-out check found the labels uninformative
    aucs = scorer.selection["4"]["held_out_auc"]
    assert aucs["0"] < 0.6 < aucs["1"] and scorer.selection["4"]["instances"] == 3


# --------------------------------------------------------------------------------------------- plans
def test_plan_is_deterministic_non_overlapping_and_inside(tiny_episode: Path, tmp_path: Path):
    ep = Episode(tiny_episode)
    refs = extract_references(ep)
    prior = ContextPrior.fit(ep, refs)
    plan = _plan(ep, refs, 40, seed=3, context=prior)
    again = _plan(ep, refs, 40, seed=3, context=prior)
    other = _plan(ep, refs, 40, seed=4, context=prior)
    assert [p.to_dict() for p in plan] == [p.to_dict() for p in again] != [p.to_dict() for p in other]
    assert len(plan) == 40 and {p.class_id for p in plan} == {4}
    assert {p.reference for p in plan[:2]} == {0, 1}  # references are cycled: both used in every two placements
    assert {p.mask_kind for p in plan} == set(MASK_KINDS) and len({p.seed for p in plan}) == 40
    scene = Box(0, 0, 64, 64)
    for i, p in enumerate(plan):
        assert p.scene in ep.train_names and _inside(p.box, p.window) and _inside(p.window, scene)
        inst = refs[p.reference].instance_box
        assert 0.8 * inst.width - 1 <= p.box.width <= 1.2 * inst.width + 1
        for q in plan[i + 1 :]:
            assert p.scene != q.scene or not _overlap(p.box, q.box)
    path = save_placements(plan, tmp_path / "plan/placements.jsonl")
    assert len(path.read_text().splitlines()) == 40 and load_placements(path) == plan
    assert Placement.from_dict(json.loads(json.dumps(plan[0].to_dict()))) == plan[0]


def test_area_weights_pick_references_by_their_pixels(tiny_episode: Path):
    ep = Episode(tiny_episode)
    refs = extract_references(ep)
    big = Reference(**{**refs[0].__dict__, "mask": np.ones_like(refs[0].mask)})  # many pixels
    small = Reference(**{**refs[1].__dict__, "mask": np.zeros_like(refs[1].mask)})
    small.mask[0, 0] = True  # one pixel
    plan = _plan(ep, [big, small], 40, "uniform", seed=1, reference_weights="area")
    share = big.mask.sum() / (big.mask.sum() + 1)
    assert sum(p.reference == 0 for p in plan) >= min(40, round(40 * share) - 2)
    uniform = _plan(ep, [big, small], 40, "uniform", seed=1)
    assert sum(p.reference == 0 for p in uniform) == 20  # cycled: each instance equally often
    with pytest.raises(ValidationError, match="reference_weights\n  Input should be 'uniform' or 'area'"):
        PlaceConfig(reference_weights="size")


def test_boxes_never_cover_mostly_ignore(tiny_episode: Path):
    ep = Episode(tiny_episode)
    for s in ep.train:
        label = read_label(s.label).array.copy()
        label[:, :40] = 255
        write_label(s.label, label, classes=ep.classes)
    refs = extract_references(ep)
    plan = _plan(ep, refs, 20, "uniform", mask_kinds=("rectangle",))
    assert len(plan) == 20 and {p.mask_kind for p in plan} == {"rectangle"}
    for p in plan:
        label = read_label(tiny_episode / "trainset/labels" / p.scene).array
        assert (label[p.box.y0 : p.box.y1, p.box.x0 : p.box.x1] == 255).mean() <= 0.5


def test_bad_settings_are_errors(tiny_episode: Path, tmp_path: Path):
    ep = Episode(tiny_episode)
    with pytest.raises(ValidationError, match=r"prior\n  Input should be 'context', 'uniform', 'appearance' or 'auto'"):
        PlaceConfig(prior="nearby")
    with pytest.raises(ValidationError, match=r"unknown mask kind\(s\) \['circle'\]; use rectangle, bezier, silhouette"):
        PlaceConfig(mask_kinds=["circle"])
    with pytest.raises(PlacementError, match="no references"):
        _plan(ep, [], 1)
    with pytest.raises(PlacementError, match="no such placements file"):
        load_placements(tmp_path / "none.jsonl")


# --------------------------------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def dubai(tmp_path_factory: pytest.TempPathFactory) -> Episode:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    data = SHARED_DATA / "dubai_aerial"
    out = tmp_path_factory.mktemp("dubai") / "episode"
    split_dataset(str(data / "*/images/*.jpg"), str(data / "*/masks/*.png"),
                  ClassMap.load(data / "classes-paintseg.json"), ["building"], out, shots=5, group=r"Tile \d+",
                  tile=512, progress=False)
    return Episode(out)


@pytest.mark.slow
@pytest.mark.realdata
def test_dubai_references_and_placements(shared_data: Path, dubai: Episode):
    refs = extract_references(dubai)
    assert len(refs) >= 5 and {r.class_id for r in refs} == {5}
    prior = ContextPrior.fit(dubai, refs)
    print("building prior:", prior_summary(prior, dubai.classes))
    plan = _plan(dubai, refs, 20, context=prior)
    assert len(plan) == 20
    for p in plan:
        height, width = read_label(dubai.train[dubai.train_names.index(p.scene)].label).array.shape
        assert _inside(p.box, Box(0, 0, width, height)) and _inside(p.window, Box(0, 0, width, height))
        assert p.box.width >= 1 and p.box.height >= 1


# --------------------------------------------------------------------------------------------- object on water
WATER_RGB, ASPHALT_RGB = (52, 62, 78), (58, 60, 66)  # alike by mean colour; asphalt is textured, water smooth


def boat_classes() -> ClassMap:
    return ClassMap([ClassInfo(0, "background", "background", ("#000000",)),
                     ClassInfo(1, "field", "base", ("#28A028",)), ClassInfo(2, "building", "base", ("#C83C3C",)),
                     ClassInfo(3, "road", "base", ("#969696",)), ClassInfo(4, "boat", "novel", ("#FFFFFF",)),
                     ClassInfo(255, "ignore", "ignore", ())])


def boat_scene(rng: np.random.Generator, size: int = 128, boats: int = 0):
    """(image, label, water mask): grass with a 44-px water band, a 40-px asphalt car park with parking lines and an
    18-px roof; ``boats`` white 10x6 boats on open water. Water is no labelled class (0)."""
    kind = np.full((size, size), 1, np.uint8)  # 1 grass, 0 water, 3 asphalt, 2 roof
    w0 = int(rng.integers(0, size - 48))
    kind[:, w0 : w0 + 44] = 0
    a0, b0 = (int(v) for v in rng.integers(0, size - 40, 2))
    park = np.zeros_like(kind, bool)
    park[a0 : a0 + 40, b0 : b0 + 40] = True
    kind[park & (kind != 0)] = 3
    r0, c0 = (int(v) for v in rng.integers(0, size - 20, 2))
    roof = np.zeros_like(kind, bool)
    roof[r0 : r0 + 18, c0 : c0 + 18] = True
    kind[roof & (kind == 1)] = 2
    img = np.zeros((size, size, 3), np.float32)
    img[kind == 1], img[kind == 2] = (60, 120, 50), (170, 70, 60)
    img[kind == 0], img[kind == 3] = WATER_RGB, ASPHALT_RGB
    img += rng.normal(0, 4, img.shape)
    lines = np.zeros(kind.shape, np.float32)
    lines[:, ::7] = 70
    texture = rng.normal(0, 22, kind.shape) + lines
    img[kind == 3] += texture[kind == 3][:, None]
    label = np.where(kind == 0, 0, kind).astype(np.uint8)
    water = kind == 0
    for _ in range(boats):
        for _ in range(50):
            y, x = int(rng.integers(4, size - 12)), int(rng.integers(w0 + 10, w0 + 44 - 16))
            if water[y - 4 : y + 10, x - 4 : x + 14].all():
                break
        img[y : y + 6, x : x + 10] = (235, 235, 235)
        label[y : y + 6, x : x + 10] = 4
    return np.clip(img, 0, 255).astype(np.uint8), label, water


def make_boat_episode(root: Path, n_train: int = 8, shots: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """Trainset scenes labelled without water; support images with one boat each on open water. Returns the water
    mask of every trainset scene."""
    rng = np.random.default_rng(seed)
    classes = boat_classes()
    root.mkdir(parents=True)
    classes.save(root / "classes.json")
    waters, support = {}, []
    for i in range(n_train):
        img, lab, water = boat_scene(rng)
        write_image(root / f"trainset/images/t{i}.png", img)
        write_label(root / f"trainset/labels/t{i}.png", lab, classes=classes)
        waters[f"t{i}.png"] = water
    for i in range(shots):
        img, lab, _ = boat_scene(rng, boats=1)
        write_image(root / f"valset/images/s{i}.png", img)
        write_label(root / f"valset/labels/s{i}.png", np.where(lab == 4, 4, 0).astype(np.uint8), classes=classes)
        support.append(f"s{i}.png")
    (root / "train.txt").write_text("\n".join(waters) + "\n")
    (root / "val.json").write_text(json.dumps({"support_set": {"4": support}, "query_set": []}))
    return waters


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_boats_go_on_water_where_the_labels_point_to_asphalt(tmp_path: Path, seed: int):
    """Water is no class and the pixel classifier calls the support boats' water the nearest labelled class, asphalt:
    the label prior sends boats to car parks. `auto` must see that the label prior's favourite spots look unlike the
    support surroundings, refuse it, and follow appearance (two ring scales: what the boat touches, where it is)."""
    from paintseg.place.appearance import fit_scorer

    waters = make_boat_episode(tmp_path / "ep", seed=seed)
    ep = Episode(tmp_path / "ep")
    refs = extract_references(ep)

    def on_water(plan: list[Placement]) -> float:
        return float(np.mean([waters[p.scene][p.box.y0 : p.box.y1, p.box.x0 : p.box.x1].mean() > 0.5 for p in plan]))

    share = {prior: on_water(_plan(ep, refs, 40, prior, seed=seed))
             for prior in ("uniform", "context", "auto")}
    print("boats on water:", share)
    assert share["context"] <= share["uniform"] + 0.05  # the label prior is misled (water looks like asphalt to it)
    assert share["auto"] >= 0.9
    selection = fit_scorer(ep, refs, PlaceConfig(prior="auto"), seed=seed).selection["4"]
    assert selection["alpha"] == 1.0 and selection["label_agreement"] < 0.6
    assert selection["why"].startswith("label prior refused")


def test_a_plan_records_its_settings_by_the_one_cache_key_rule():
    """plan_settings is the config's recipe plus the seed: the fields added after the first plans (reference_weights,
    orient, near, selectivity, appearance_cell) only away from their neutral values, the appearance features only
    for the priors that look at appearance - so a plan recorded before a field existed keeps its settings and hash,
    and the new defaults of selectivity (16, was 8) and appearance_cell (4, was 8) give new ones."""
    from paintseg.place.plan import plan_settings

    kinds = ["rectangle", "bezier", "silhouette"]
    before = {"selectivity": 8.0, "appearance_cell": 8, "prior": "context"}  # what every plan did before those fields
    # (context was the default prior then; auto is now: a plan without prior set is a new plan, as it should be)
    assert plan_settings(PlaceConfig(**before), 0) == {"seed": 0, "per_class": 30, "prior": "context",
                                                       "mask_kinds": kinds}
    assert plan_settings(PlaceConfig(**{**before, "prior": "auto"}, orient=True, per_class=5), 2) == {
        "seed": 2, "per_class": 5, "prior": "auto", "appearance": "colour", "orient": True, "mask_kinds": kinds}
    assert plan_settings(PlaceConfig(near=["road"], reference_weights="area", appearance="colour+lite0",
                                     **before), 1) == {
        "seed": 1, "per_class": 30, "prior": "context", "mask_kinds": kinds, "near": ["road"],
        "reference_weights": "area"}
    assert plan_settings(PlaceConfig(prior="context"), 0) == {"seed": 0, "per_class": 30, "prior": "context",
                                                              "mask_kinds": kinds, "selectivity": 16.0}  # no cell
    assert plan_settings(PlaceConfig(), 0)["prior"] == "auto"
    assert plan_settings(PlaceConfig(prior="appearance"), 0)["appearance_cell"] == 4
    assert "selectivity" not in plan_settings(PlaceConfig(prior="uniform"), 0)  # it scores no spot
