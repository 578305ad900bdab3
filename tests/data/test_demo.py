"""The built-in demo episode: layout, label conventions, determinism, georeference, reuse and argument checks."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from paintseg.data.classes import BACKGROUND, IGNORE
from paintseg.data.demo import DEMO_CLASSES, SOLAR, DemoError, demo_scene, make_demo_episode
from paintseg.data.episode import Episode
from paintseg.data.raster import read_image, read_label
from paintseg.errors import PaintsegError

SMALL = {"scenes": 4, "size": 64, "shots": 2, "query": 3, "seed": 0, "progress": False}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_episode(tmp_path_factory.mktemp("demo") / "episode", **SMALL)


def test_classes():
    assert DEMO_CLASSES.base_ids == [1, 2, 3, 4, 5]
    assert DEMO_CLASSES.novel_ids == [SOLAR] == [6]
    assert DEMO_CLASSES[SOLAR].name == "solar panel"
    assert DEMO_CLASSES[0].role == "background" and DEMO_CLASSES[IGNORE].role == "ignore"
    assert all(c.colors for c in DEMO_CLASSES)


def test_episode_loads_without_problems(demo):
    episode = Episode(demo)
    assert episode.classes == DEMO_CLASSES
    assert episode.problems(expected_shots=SMALL["shots"]) == []
    assert (len(episode.train), len(episode.support_samples), len(episode.query)) == (4, 2, 3)
    assert episode.support == {SOLAR: ["demo_support_000.tif", "demo_support_001.tif"]}
    assert episode.shots == 2
    assert json.loads((demo / "demo.json").read_text())["args"] == {k: v for k, v in SMALL.items() if k != "progress"}
    assert not [p for p in demo.parent.iterdir() if p.name != demo.name]  # no temporary folder left behind


def test_default_shots_pass_default_check(tmp_path):
    out = make_demo_episode(tmp_path / "ep", scenes=1, size=64, query=1, progress=False)
    assert Episode(out).problems() == []
    assert len(Episode(out).support_samples) == 5


def test_label_conventions(demo):
    episode = Episode(demo)
    for s in episode.support_samples:
        values = set(np.unique(episode.read_label(s).array).tolist())
        assert SOLAR in values and values <= {BACKGROUND, SOLAR, IGNORE}
    for s in episode.train:
        label = episode.read_label(s).array
        assert not (label == SOLAR).any()
        assert set(np.unique(label).tolist()) <= set(DEMO_CLASSES.base_ids)
    query = np.concatenate([episode.read_label(s).array.ravel() for s in episode.query])
    assert set(DEMO_CLASSES.scored_ids) <= set(np.unique(query).tolist())


def test_train_images_hold_no_panels(demo):
    """Trainset scenes are drawn without panels (not drawn with them and relabelled); the files are those scenes."""
    episode = Episode(demo)
    for i, s in enumerate(episode.train):
        image, label = demo_scene("train", i, SMALL["size"], SMALL["seed"])
        assert not (label == SOLAR).any()
        assert np.array_equal(read_image(s.image).array, image)
        assert np.array_equal(read_label(s.label).array, label)
    for i, s in enumerate(episode.support_samples):
        image, label = demo_scene("support", i, SMALL["size"], SMALL["seed"])
        assert np.array_equal(read_image(s.image).array, image)
        assert np.array_equal(read_label(s.label).array, np.where(label == SOLAR, SOLAR, 0))


def test_deterministic(tmp_path, demo):
    other = make_demo_episode(tmp_path / "again", **SMALL)
    for folder in ("trainset/images", "trainset/labels", "valset/images", "valset/labels"):
        names = sorted(p.name for p in (demo / folder).iterdir())
        assert names == sorted(p.name for p in (other / folder).iterdir()) and names
        for name in names:
            read = read_label if folder.endswith("labels") else read_image
            assert np.array_equal(read(demo / folder / name).array, read(other / folder / name).array)
    different = make_demo_episode(tmp_path / "seed1", **{**SMALL, "seed": 1})
    name = "trainset/images/demo_train_000.tif"
    assert not np.array_equal(read_image(demo / name).array, read_image(different / name).array)


def test_georeferenced(demo):
    episode = Episode(demo)
    origins = set()
    for s in episode.train + episode.query:
        image = read_image(s.image)
        label = read_label(s.label)
        assert image.array.shape == (64, 64, 3) and image.array.dtype == np.uint8
        assert image.crs is not None and image.crs.to_epsg() == 32640 and label.crs == image.crs
        assert image.transform.a == 0.5 and image.transform.e == -0.5 and label.transform == image.transform
        origins.add((image.transform.c, image.transform.f))
    assert len(origins) == len(episode.train) + len(episode.query)


def test_reuse_returns_without_rewriting(demo):
    files = sorted(p for p in demo.rglob("*") if p.is_file())
    before = {p: p.stat().st_mtime_ns for p in files}
    assert make_demo_episode(demo, **SMALL) == demo
    assert {p: p.stat().st_mtime_ns for p in files} == before


def test_other_arguments_or_content_raise(tmp_path, demo):
    with pytest.raises(DemoError, match=str(demo)) as info:
        make_demo_episode(demo, **{**SMALL, "seed": 7})
    assert "delete" in str(info.value) and isinstance(info.value, PaintsegError)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DemoError, match=str(foreign)):
        make_demo_episode(foreign, **SMALL)
    assert (foreign / "notes.txt").read_text() == "mine"
    partial = make_demo_episode(tmp_path / "partial", **{**SMALL, "scenes": 1})
    (partial / "train.txt").unlink()
    with pytest.raises(DemoError, match="incomplete"):
        make_demo_episode(partial, **{**SMALL, "scenes": 1})
    empty = tmp_path / "empty"
    empty.mkdir()
    assert Episode(make_demo_episode(empty, **SMALL)).problems(expected_shots=2) == []


@pytest.mark.parametrize("bad, word", [({"scenes": 0}, "scenes"), ({"shots": 0}, "shots"), ({"query": -1}, "query"),
                                       ({"size": 100}, "size"), ({"size": 32}, "size"), ({"seed": -1}, "seed"),
                                       ({"scenes": 2.5}, "scenes")])
def test_bad_arguments(tmp_path, bad, word):
    with pytest.raises(DemoError, match=word):
        make_demo_episode(tmp_path / "ep", **{**SMALL, **bad})
    assert not (tmp_path / "ep").exists()


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    import paintseg.data.demo as demo_module

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(demo_module, "write_label", boom)
    with pytest.raises(RuntimeError):
        make_demo_episode(tmp_path / "ep", **SMALL)
    assert os.listdir(tmp_path) == []


def test_colour_alone_is_not_enough(tmp_path):
    """A nearest-mean colour classifier fitted on trainset pixels is clearly above chance on the query pixels but
    far from perfect: the classes overlap in colour, so a model has to use texture and shape."""
    episode = Episode(make_demo_episode(tmp_path / "ep", scenes=6, size=128, shots=1, query=3, progress=False))

    def pixels(samples):
        x = np.concatenate([episode.read_image(s).array.reshape(-1, 3) for s in samples]).astype(np.float32)
        return x, np.concatenate([episode.read_label(s).array.ravel() for s in samples])

    x, y = pixels(episode.train)
    ids = np.unique(y)
    means = np.stack([x[y == c].mean(0) for c in ids])
    qx, qy = pixels(episode.query)
    pred = ids[((qx[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)]
    accuracy = (pred == qy).mean()
    assert 0.4 < accuracy < 0.95
