"""ClassMap: classes.json round trip, roles, colours, and errors that name the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_classes
from paintseg.data.classes import ClassInfo, ClassMap, ClassMapError, format_color, parse_color

DUBAI_LIKE = {"classes": [
    {"id": 0, "name": "background", "role": "background", "color": "#010101"},
    {"id": 1, "name": "land", "role": "base", "color": "#8429F6"},
    {"id": 5, "name": "building", "role": "base", "color": "#3C1098"},
    {"id": 255, "name": "unlabeled", "role": "ignore", "color": ["#9B9B9B", "#000000"]},
]}


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_save_load_round_trip(tmp_path: Path):
    classes = tiny_classes()
    path = classes.save(tmp_path / "classes.json")
    assert ClassMap.load(path) == classes
    assert [p.name for p in tmp_path.iterdir()] == ["classes.json"]  # no temporary left behind
    assert json.loads(path.read_text())["classes"][4] == {"id": 4, "name": "pool", "role": "novel", "color": "#00E6E6"}


def test_list_of_colours_round_trips_and_decodes_to_one_class(tmp_path: Path):
    classes = ClassMap.load(write_json(tmp_path / "c.json", DUBAI_LIKE))
    assert classes[255].colors == ("#9B9B9B", "#000000")
    assert classes.to_dict() == DUBAI_LIKE
    assert ClassMap.load(classes.save(tmp_path / "again.json")) == classes
    rgb = np.array([[[0x9B, 0x9B, 0x9B], [0, 0, 0], [0x3C, 0x10, 0x98], [0x84, 0x29, 0xF6]]], np.uint8)
    assert classes.decode_colors(rgb).tolist() == [[255, 255, 5, 1]]


def test_with_novel_sets_roles():
    classes = ClassMap.from_dict(DUBAI_LIKE).with_novel(["building"])
    assert classes.novel_ids == [5] and classes.base_ids == [1]
    assert classes.scored_ids == [1, 5]
    again = classes.with_novel(["land"])  # the earlier novel class becomes base again
    assert again.novel_ids == [1] and again.base_ids == [5]
    assert again[0].role == "background" and again[255].role == "ignore"


def test_with_novel_refuses_unknown_and_special_classes():
    classes = ClassMap.from_dict(DUBAI_LIKE, "dubai.json")
    with pytest.raises(ClassMapError, match=r"dubai.json: no class named 'boat'; known classes: 'background'"):
        classes.with_novel(["boat"])
    with pytest.raises(ClassMapError, match=r"'unlabeled' has role 'ignore' and cannot be a novel class"):
        classes.with_novel(["unlabeled"])


def test_num_classes_valid_values_and_names():
    assert tiny_classes().num_classes == 5  # ids 0..4; ignore 255 is no output channel
    assert ClassMap.from_dict(DUBAI_LIKE).num_classes == 6
    oem = ClassMap.openearthmap_fewshot()
    assert oem.num_classes == 12 and oem.novel_ids == [8, 9, 10, 11] and oem.base_ids == list(range(1, 8))
    assert oem.name(9) == "river" and ClassMap.openearthmap_fewshot("testset").name(11) == "building type 2"
    assert tiny_classes().valid_values == {0, 1, 2, 3, 4, 255}
    assert tiny_classes().name(77) == "class 77"


def test_lut_and_colorize():
    classes = tiny_classes()
    lut = classes.lut()
    assert lut.shape == (256, 3) and tuple(lut[1]) == (0x28, 0xA0, 0x28) and tuple(lut[255]) == (255, 0, 255)
    rgb = classes.colorize(np.array([[4, 9]], np.uint8))
    assert rgb.tolist() == [[[0, 0xE6, 0xE6], [0, 0, 0]]]  # unknown id 9 is black
    assert np.array_equal(classes.decode_colors(classes.colorize(np.array([[0, 1, 2, 3, 4, 255]], np.uint8))),
                          [[0, 1, 2, 3, 4, 255]])


def test_parse_and_format_colour():
    assert parse_color("#3C1098") == (0x3C, 0x10, 0x98) == parse_color("#3c1098")
    assert format_color((60, 16, 152)) == "#3C1098"


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([{"id": 1, "name": "a", "color": "#000000"}, {"id": 1, "name": "b", "color": "#FFFFFF"}],
         "id 1 is used by more than one class"),
        ([{"id": 1, "name": "a", "color": "green"}], "colour 'green' is not of the form '#RRGGBB'"),
        ([{"id": 1, "name": "a", "color": "#GG0000"}], "colour '#GG0000' is not of the form"),
        ([{"id": 1, "name": "a", "role": "novelty"}],
         "class 'a' has role 'novelty'; use one of background, base, novel, ignore"),
        ([{"id": 1, "name": "a"}, {"id": 2, "name": "a"}], "name 'a' is used twice"),
        ([{"id": 300, "name": "a"}], "class 'a' has id 300; ids must be 0..255"),
        ([{"name": "a"}], "entry 0 .* needs at least an integer 'id' and a 'name'"),
    ],
)
def test_errors_name_the_file(tmp_path: Path, entries: list, message: str):
    path = write_json(tmp_path / "classes.json", {"classes": entries})
    with pytest.raises(ClassMapError, match=rf"^{path}: {message}"):
        ClassMap.load(path)


def test_file_level_errors_name_the_file(tmp_path: Path):
    with pytest.raises(ClassMapError, match=rf"^{tmp_path / 'none.json'}: no such classes file"):
        ClassMap.load(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ClassMapError, match=rf"^{tmp_path / 'bad.json'}: not valid JSON"):
        ClassMap.load(tmp_path / "bad.json")
    path = write_json(tmp_path / "list.json", [{"id": 0, "name": "x"}])
    with pytest.raises(ClassMapError, match=rf'^{path}: expected {{"classes"'):
        ClassMap.load(path)


def test_decode_colors_unknown_colour_and_wrong_shape():
    classes = tiny_classes()
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[1, 1:] = (0x12, 0x34, 0x56)
    with pytest.raises(ClassMapError, match=r"^mask.png: colour #123456 \(2 pixels\) is not in the class map"):
        classes.decode_colors(rgb, "mask.png")
    with pytest.raises(ClassMapError, match=r"mask.png: a colour-coded label needs 3 bands"):
        classes.decode_colors(np.zeros((2, 3), np.uint8), "mask.png")
    empty = ClassMap([ClassInfo(1, "a", "base")])
    with pytest.raises(ClassMapError, match="colour #000000 \\(6 pixels\\)"):
        empty.decode_colors(np.zeros((2, 3, 3), np.uint8))
