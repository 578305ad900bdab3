"""Episode: loading the challenge layout and finding every problem in it, each message naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_tiny_episode, tiny_classes
from paintseg.data.episode import Episode, EpisodeError
from paintseg.data.raster import write_label


def one_problem(root: Path, expected_shots: int = 2) -> str:
    problems = Episode(root).problems(expected_shots=expected_shots)
    assert len(problems) == 1, problems
    return problems[0]


def test_tiny_episode_has_no_problems(tiny_episode: Path):
    ep = Episode(tiny_episode)
    assert ep.problems(expected_shots=2) == []
    assert (len(ep.train), len(ep.support_samples), len(ep.query), ep.shots) == (6, 2, 3, 2)
    assert ep.classes.novel_ids == [4]
    summary = ep.summary()
    assert [summary[r]["images"] for r in ("train", "support", "query")] == [6, 2, 3]
    assert "pool" not in summary["train"]["pixels"] and summary["query"]["pixels"]["pool"] > 0


def test_tiny_geotiff_episode_has_no_problems(tmp_path: Path):
    root = make_tiny_episode(tmp_path / "ep", fmt=".tif")
    assert Episode(root).problems(expected_shots=2) == []


# --------------------------------------------------------------------------------------------- damaged episodes
def test_missing_image(tiny_episode: Path):
    (tiny_episode / "trainset/images/train_2.png").unlink()
    msg = one_problem(tiny_episode)
    assert msg.startswith(f"{tiny_episode / 'trainset/images/train_2.png'}: image listed in the episode but missing")


def test_missing_label(tiny_episode: Path):
    (tiny_episode / "valset/labels/query_1.png").unlink()
    msg = one_problem(tiny_episode)
    assert msg.startswith(f"{tiny_episode / 'valset/images/query_1.png'}: no label with stem 'query_1' in "
                          f"{tiny_episode / 'valset/labels'}")


def test_size_mismatch(tiny_episode: Path):
    label = tiny_episode / "valset/labels/query_0.png"
    write_label(label, np.ones((32, 40), np.uint8), classes=tiny_classes())
    msg = one_problem(tiny_episode)
    assert msg.startswith(f"{label}: label is 40x32 but its image query_0.png is 64x64")


def test_unknown_label_value(tiny_episode: Path):
    label = tiny_episode / "trainset/labels/train_0.png"
    values = np.ones((64, 64), np.uint8)
    values[:3, :3] = 7
    write_label(label, values, classes=tiny_classes())
    msg = one_problem(tiny_episode)
    assert msg.startswith(f"{label}: unknown label value(s) [7]; known ids are [0, 1, 2, 3, 4, 255]")


def test_empty_support_mask(tiny_episode: Path):
    label = tiny_episode / "valset/labels/support_1.png"
    write_label(label, np.zeros((64, 64), np.uint8), classes=tiny_classes())
    msg = one_problem(tiny_episode)
    assert msg.startswith(f"{label}: support mask for class 4 (pool) is empty")


def test_support_label_with_other_classes(tiny_episode: Path):
    label = tiny_episode / "valset/labels/support_0.png"
    values = np.full((64, 64), 2, np.uint8)
    values[10:20, 10:20] = 4
    write_label(label, values, classes=tiny_classes())
    msg = one_problem(tiny_episode)
    assert msg.startswith(f"{label}: support label for class 4 also holds [2]")


def test_novel_class_in_train_label(tiny_episode: Path):
    label = tiny_episode / "trainset/labels/train_3.png"
    values = np.ones((64, 64), np.uint8)
    values[5:15, 5:15] = 4
    write_label(label, values, classes=tiny_classes())
    msg = one_problem(tiny_episode)
    assert msg.startswith(f"{label}: trainset label holds non-base class(es) [4]")


@pytest.mark.parametrize("where", ["valset/images/query_2.png", "valset/labels/query_2.png"])
def test_unreadable_file(tiny_episode: Path, where: str):
    (tiny_episode / where).write_bytes(b"\x89PNG garbage, not an image")
    msg = one_problem(tiny_episode)
    assert msg.startswith(f"{tiny_episode / where}: unreadable PNG")


def test_fewer_support_images_than_shots(tiny_episode: Path):
    msg = one_problem(tiny_episode, expected_shots=5)
    assert msg.startswith(f"{tiny_episode / 'val.json'}: novel class 4 (pool) has 2 support image(s), fewer than 5 "
                          f"shots")
    assert "--shots 2" in msg


def test_name_listed_twice(tiny_episode: Path):
    (tiny_episode / "train.txt").write_text("train_0.png\ntrain_0.png\n")
    msg = one_problem(tiny_episode)
    assert msg.startswith(f"{tiny_episode / 'trainset/images/train_0.png'}: listed twice")


def test_colour_coded_label_with_unknown_colour(tiny_episode: Path):
    label = tiny_episode / "valset/labels/query_0.png"
    rgb = tiny_classes().lut()[np.ones((64, 64), np.uint8)]
    rgb[0, 0] = (0x12, 0x34, 0x56)
    Image.fromarray(rgb).save(label)
    msg = one_problem(tiny_episode)
    assert msg.startswith(f"{label}: colour #123456 (1 pixels) is not in the class map")


# --------------------------------------------------------------------------------------------- loading
def test_names_without_extension_resolve(tiny_episode: Path):
    (tiny_episode / "train.txt").write_text("train_0\ntrain_1\n")
    val = json.loads((tiny_episode / "val.json").read_text())
    val = {"support_set": {"4": [n.removesuffix(".png") for n in val["support_set"]["4"]]},
           "query_set": [n.removesuffix(".png") for n in val["query_set"]]}
    (tiny_episode / "val.json").write_text(json.dumps(val))
    ep = Episode(tiny_episode)
    assert ep.train[0].image == tiny_episode / "trainset/images/train_0.png"
    assert ep.train[0].label == tiny_episode / "trainset/labels/train_0.png" and ep.train[0].stem == "train_0"
    assert ep.problems(expected_shots=2) == []


def test_without_classes_json_the_challenge_classes_are_used(tiny_episode: Path):
    (tiny_episode / "classes.json").unlink()
    with pytest.raises(EpisodeError, match=r"val.json: support class 4 \(agric land type 1\) has role 'base'"):
        Episode(tiny_episode)
    val = json.loads((tiny_episode / "val.json").read_text())
    (tiny_episode / "val.json").write_text(json.dumps({"support_set": {"8": val["support_set"]["4"]},
                                                       "query_set": val["query_set"]}))
    ep = Episode(tiny_episode)
    assert ep.classes.novel_ids == [8, 9, 10, 11] and ep.classes.name(8) == "road type 2"
    assert ep.classes.base_ids == list(range(1, 8)) and ep.classes.num_classes == 12
    assert [s.class_id for s in ep.support_samples] == [8, 8]


def test_testset_uses_test_json_and_its_class_names(tiny_episode: Path):
    (tiny_episode / "classes.json").unlink()
    (tiny_episode / "test.json").write_text(json.dumps({"support_set": {"11": []}, "query_set": []}))
    ep = Episode(tiny_episode, split="testset")
    assert ep.classes.name(11) == "building type 2" and ep.support == {11: []}


def test_missing_train_txt(tiny_episode: Path):
    (tiny_episode / "train.txt").unlink()
    with pytest.raises(EpisodeError, match=rf"^{tiny_episode / 'train.txt'}: missing"):
        Episode(tiny_episode)


def test_missing_or_malformed_val_json(tiny_episode: Path):
    (tiny_episode / "val.json").write_text('{"support": {}}')
    with pytest.raises(EpisodeError, match=rf"^{tiny_episode / 'val.json'}: cannot read support_set/query_set"):
        Episode(tiny_episode)
    (tiny_episode / "val.json").unlink()
    with pytest.raises(EpisodeError, match=rf"^{tiny_episode / 'val.json'}: missing"):
        Episode(tiny_episode)


def test_missing_folder_and_bad_split(tmp_path: Path, tiny_episode: Path):
    with pytest.raises(EpisodeError, match=rf"^{tmp_path / 'nowhere'}: no such episode folder"):
        Episode(tmp_path / "nowhere")
    with pytest.raises(EpisodeError, match="unknown split 'trainset'"):
        Episode(tiny_episode, split="trainset")


def test_support_class_missing_from_class_map(tiny_episode: Path):
    (tiny_episode / "val.json").write_text(json.dumps({"support_set": {"9": []}, "query_set": []}))
    with pytest.raises(EpisodeError, match=r"support class 9 is not in the class map"):
        Episode(tiny_episode)


def test_read_label_of_sample_without_label(tiny_episode: Path):
    (tiny_episode / "trainset/labels/train_0.png").unlink()
    ep = Episode(tiny_episode)
    with pytest.raises(EpisodeError, match=rf"{tiny_episode / 'trainset/images/train_0.png'}: no label"):
        ep.read_label(ep.train[0])
