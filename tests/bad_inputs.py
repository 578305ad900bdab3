"""The bad-input cases: each builds a broken input in a folder, runs one paintseg command on it and names what the
message must say. tests/test_bad_inputs.py asserts them; run as a script, this file writes the table of the cases and
the message each gives (docs/bad_inputs.md):

    python tests/bad_inputs.py > docs/bad_inputs.md
"""

from __future__ import annotations

import errno
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import rasterio
import yaml

from conftest import make_dataset, make_tiny_episode, tiny_classes


@dataclass
class Case:
    name: str  # what is wrong, as the table says it
    build: Callable[[Path], tuple[list[str], Path]]  # folder -> (command args, the file the message must name)
    says: str  # a phrase the message must contain
    patch: Callable | None = None  # monkeypatch(monkeypatch) for simulated faults (read-only folder, full disk)


def _episode(root: Path, fmt: str = ".png") -> Path:
    return make_tiny_episode(root / "episode", fmt=fmt)


def _check(ep: Path) -> list[str]:
    return ["data", "check", str(ep), "--shots", "2"]


def truncated(fmt: str):
    def build(root: Path):
        ep = _episode(root, fmt)
        path = ep / "trainset/images" / f"train_0{fmt}"
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return _check(ep), path
    return build


def corrupt_png(root: Path):
    ep = _episode(root)
    path = ep / "trainset/images/train_1.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    return _check(ep), path


def size_mismatch(root: Path):
    ep = _episode(root)
    path = ep / "trainset/labels/train_0.png"
    from PIL import Image

    Image.fromarray(np.zeros((40, 64), np.uint8)).save(path)
    return _check(ep), path


def unknown_value(root: Path):
    ep = _episode(root)
    path = ep / "trainset/labels/train_2.png"
    from PIL import Image

    label = np.asarray(Image.open(path)).copy()
    label[0, 0] = 77
    Image.fromarray(label).save(path)
    return _check(ep), path


def unknown_colour(root: Path):
    data = make_dataset(root / "data")
    path = sorted(data.glob("*/labels/*.png"))[0]
    from PIL import Image

    label = np.asarray(Image.open(path).convert("RGB")).copy()
    label[:4, :4] = (1, 2, 3)
    Image.fromarray(label).save(path)
    classes = tiny_classes().save(root / "classes.json")
    return ["split", "--images", str(data / "*/images/*.png"), "--labels", str(data / "*/labels/*.png"),
            "--classes", str(classes), "--novel", "pool", "--group", r"area_\d+", "--tile", "64", "--shots", "2",
            "--out", str(root / "ep")], path


def bands(count: int, dtype: str = "uint8", nan: bool = False):
    def build(root: Path):
        ep = _episode(root, ".tif")
        path = ep / "trainset/images/train_0.tif"
        data = np.full((count, 64, 64), 100, dtype)
        if nan:
            data[0, :8, :8] = np.nan
        path.unlink()
        with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=count, dtype=dtype) as dst:
            dst.write(data)
        return ["train", str(ep), "--out", str(root / "run"), "--steps", "1", "--batch", "2", "--crop", "32"], path
    return build


def empty_support(root: Path):
    ep = _episode(root)
    path = ep / "valset/labels/support_0.png"
    from PIL import Image

    Image.fromarray(np.zeros((64, 64), np.uint8)).save(path)
    return _check(ep), path


def no_support_image(root: Path):
    ep = _episode(root)
    val = json.loads((ep / "val.json").read_text())
    val["support_set"]["4"] = []
    (ep / "val.json").write_text(json.dumps(val))
    return _check(ep), ep / "val.json"


def odd_path(root: Path):
    ep = make_tiny_episode(root / "épisode avec espaces ünd Ümlaut")
    return _check(ep), ep


def not_an_episode(root: Path):
    folder = root / "photos"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"")
    return _check(folder), folder


def config(change: Callable[[dict], None]):
    def build(root: Path):
        data = {"episode": {"demo": {"scenes": 2}}, "train": {"steps": 1}}
        change(data)
        path = root / "experiment.yaml"
        path.write_text(yaml.safe_dump(data))
        return ["run", str(path), "--out", str(root / "exp")], path
    return build


def one_scene(root: Path):
    """One scene in its own group: the split needs --block."""
    from PIL import Image

    from conftest import tiny_scene

    image, label = tiny_scene(np.random.default_rng(0), size=768, pools=12)
    for part in ("images", "labels"):
        (root / part).mkdir()
    Image.fromarray(image).save(root / "images" / "big.png")
    Image.fromarray(label).save(root / "labels" / "big.png")
    return ["split", "--images", str(root / "images" / "big.png"), "--labels", str(root / "labels" / "big.png"),
            "--classes", str(_classes(root)), "--novel", "pool", "--out", str(root / "ep"), "--tile", "128"], \
        root / "images" / "big.png"


def _classes(root: Path) -> Path:
    path = root / "classes.json"
    tiny_classes().save(path)
    return path


def background_not_zero(root: Path):
    """A classes.json whose background role is value 1 (LoveDA's natural map)."""
    data = make_dataset(root / "data")
    cmap = json.loads(_classes(root).read_text())
    for c in cmap["classes"]:
        if c["role"] == "background":
            c["id"] = 1 if not any(d["id"] == 1 for d in cmap["classes"]) else 254
    path = root / "classes.json"
    path.write_text(json.dumps(cmap))
    return ["split", "--images", str(data / "*/images/*.png"), "--labels", str(data / "*/labels/*.png"),
            "--classes", str(path), "--novel", "pool", "--out", str(root / "ep")], path


def missing_config(root: Path):
    return ["run", str(root / "nowhere.yaml"), "--out", str(root / "exp")], root / "nowhere.yaml"


def latent_autoencoder(broken: str):
    """`generator train --space latent` with an autoencoder folder that lacks its decoder, or holds a text file."""
    def build(root: Path):
        import torch

        from paintseg.paint.autoencoder import TinyAutoencoder

        ep = _episode(root)
        folder = root / "taef2"
        folder.mkdir()
        torch.save(TinyAutoencoder(4, 8).encoder.state_dict(), folder / "taef2_encoder.pth")
        named = folder
        if broken == "text":
            named = folder / "taef2_decoder.pth"
            named.write_text("<html>404</html>")
        return ["generator", "train", str(ep), "--out", str(root / "gen"), "--space", "latent", "--autoencoder",
                str(folder), "--size", "tiny", "--steps", "1"], named
    return build


def _deny(error: int):
    """Writes fail like on a read-only folder (EACCES) or a full disk (ENOSPC) - simulated, as root may write
    anywhere."""
    def patch(monkeypatch):
        import paintseg.files as files

        def refuse(path, data):
            raise OSError(error, {errno.EACCES: "Permission denied", errno.ENOSPC: "No space left on device"}[error],
                          str(path))

        monkeypatch.setattr(files, "write_bytes", refuse)
    return patch


def unwritable(root: Path):
    ep = _episode(root)
    return ["generate", str(ep), "--generator", "copy-paste", "--out", str(root / "syn"), "--per-class", "1",
            "--refine", "none"], root / "syn"


def train_on(change: Callable[[Path], tuple[list[str], Path]]):
    """`paintseg train` on a tiny episode, broken by ``change(episode) -> (extra args, the path named)``."""
    def build(root: Path):
        ep = _episode(root)
        extra, named = change(ep)
        return ["train", str(ep), "--out", str(root / "run"), "--steps", "1", "--crop", "32", *extra], named
    return build


def _truncate(ep: Path) -> tuple[list[str], Path]:
    path = ep / "trainset/images/train_1.png"
    path.write_bytes(path.read_bytes()[:80])
    return [], path


def no_query_pixels(root: Path):
    """An episode whose query labels lost every novel pixel: its novel IoU could not be measured."""
    from PIL import Image

    ep = _episode(root)
    for path in sorted((ep / "valset/labels").glob("query_*.png")):
        label = np.asarray(Image.open(path)).copy()
        label[label == 4] = 1
        Image.fromarray(label).save(path)
    return _check(ep), ep / "val.json"


def run_on_folder(root: Path):
    """A run config whose episode.path is a folder of photos, not an episode."""
    folder = root / "photos"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"")
    path = root / "experiment.yaml"
    path.write_text(yaml.safe_dump({"episode": {"path": str(folder)}, "arms": ["baseline"], "train": {"steps": 1}}))
    return ["run", str(path), "--out", str(root / "exp")], folder


def out_is_a_file(command: str):
    """--out names an existing file where the command writes a folder."""
    def build(root: Path):
        ep = _episode(root)
        target = root / "notes.txt"
        target.write_text("my notes")
        args = {"train": ["train", str(ep)], "split": ["split", "--images", "x/*.png", "--labels", "y/*.png",
                                                       "--novel", "pool"],
                "predict": ["predict", str(root / "run"), "--images", str(ep / "trainset/images")],
                "generate": ["generate", str(ep), "--generator", "copy-paste"],
                "demo": ["demo", "--quick"], "run": ["run", str(root / "experiment.yaml")]}[command]
        return [*args, "--out", str(target)], target
    return build


def out_is_a_folder(command: str):
    """--out names an existing folder where the command writes one file."""
    def build(root: Path):
        ep = _episode(root)
        target = root / "results"
        target.mkdir()
        args = {"evaluate": ["evaluate", "--pred", str(root / "pred"), "--episode", str(ep)],
                "generator curve": ["generator", "curve", str(root / "gen"), str(ep)]}[command]
        return [*args, "--out", str(target)], target
    return build


CASES = [
    Case("truncated GeoTIFF", truncated(".tif"), "truncated or corrupt"),
    Case("truncated JPEG", truncated(".jpg"), "unreadable JPEG"),
    Case("corrupt PNG", corrupt_png, "unreadable PNG"),
    Case("image and label of different sizes", size_mismatch, "must have the same size"),
    Case("label value outside the class map", unknown_value, "unknown label value(s) [77]"),
    Case("label colour not in the class map", unknown_colour, "colour #010203"),
    Case("2-band imagery", bands(2), "rgb_bands"),
    Case("float imagery with NaN", bands(3, "float32", nan=True), "NaN"),
    Case("empty support mask", empty_support, "is empty"),
    Case("novel class without a support image", no_support_image, "has no support image"),
    Case("a folder that is not an episode", not_an_episode, "train.txt: missing"),
    Case("config: unknown field", config(lambda d: d.update(colour="red")), "colour"),
    Case("config: wrong type", config(lambda d: d["train"].update(steps="many")), "train.steps"),
    Case("config: unknown value", config(lambda d: d.update(generation={"filter": "handcraftd"})),
         "generation.filter"),
    Case("config: missing file", missing_config, "no such config file"),
    Case("config: unknown segmentation encoder", config(lambda d: d.update(
        arms=["baseline"], models=[{"encoder": "resnet1800"}])),
         "models.0: unknown encoder 'resnet1800'"),
    Case("config: generator folder that does not exist", config(lambda d: d.update(
        arms=["baseline", "diffusion"], generator={"path": "runs/gen/painter"})), "generator.path"),
    Case("split: one scene (fewer than 3 groups)", one_scene, "--block"),
    Case("split: class map with background at another value than 0", background_not_zero, '"values"'),
    Case("config: painting over noisy pastes from noise", config(lambda d: d.update(
        arms=["baseline", "diffusion-noise"], generator={"train": {"size": "tiny"}}, generation={"strength": 1.0})),
        "set generation.strength below 1"),
    Case("config: a painter budget of no time", config(lambda d: d.update(
        arms=["baseline", "diffusion"], generator={"train": {"size": "tiny", "minutes": 0}})),
        "generator.train.minutes"),
    Case("latent painter: autoencoder folder without its decoder", latent_autoencoder("missing"),
         "expected one *_decoder.pth file, found none"),
    Case("latent painter: autoencoder file that is not a state dict", latent_autoencoder("text"),
         "not a PyTorch state dict"),
    Case("train: an image cut short", train_on(_truncate), "unreadable PNG"),
    Case("train: unknown encoder", train_on(lambda ep: (["--encoder", "resnet1800"], ep.parent / "resnet1800")),
         "did you mean resnet18"),
    Case("train: a synthetic set that does not exist", train_on(
        lambda ep: (["--synthetic", str(ep.parent / "syn")], ep.parent / "syn")), "syn"),
    Case("run: episode.path that is not an episode", run_on_folder, "train.txt: missing"),
    Case("config: misspelt section", config(lambda d: d.update(trian=d.pop("train"))),
         "trian: unknown field; did you mean train?"),
    Case("novel class with no pixels in the query set", no_query_pixels, "has no pixels in the"),
    *[Case(f"{command}: --out names a file", out_is_a_file(command), "is a file") for command in
      ("train", "split", "predict", "generate", "demo", "run")],
    *[Case(f"{command}: --out names a folder", out_is_a_folder(command), "is a folder") for command in
      ("evaluate", "generator curve")],
    Case("read-only output folder", unwritable, "cannot write", patch=_deny(errno.EACCES)),
    Case("full disk", unwritable, "no space left", patch=_deny(errno.ENOSPC)),
]
# (what, build, a phrase of the success output)
OK_CASES = [("path with spaces and non-ASCII characters", odd_path, "ok:"),
            ("1-band imagery (read as grey)", bands(1), "model written")]


def table() -> str:
    """Every case run once (in a temporary folder) and the message it gave, as a Markdown table."""
    import re
    import tempfile

    import pytest
    from typer.testing import CliRunner

    from paintseg.cli import app

    rows = ["| bad input | command | message (the temporary folder shown as `…`) |", "|---|---|---|"]
    for case in CASES:
        with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
            args, _ = case.build(Path(tmp))
            if case.patch is not None:
                case.patch(mp)
            output = CliRunner().invoke(app, args, prog_name="paintseg").output
        lines = [x.strip() for x in output.replace("\r", "\n").splitlines() if x.strip()]
        at = next((i for i, x in enumerate(lines) if case.says.lower() in x.lower()), len(lines) - 1)
        message = lines[at] if lines[at].startswith(("error:", "Error:", "- ")) or at == 0 else f"{lines[at - 1]} {lines[at]}"
        message = re.sub(r"/\S*?/tmp\w+", "…", message.replace(tmp, "…")).replace("|", "\\|")
        rows.append(f"| {case.name} | `paintseg {args[0]}{' ' + args[1] if args[0] == 'data' else ''}` | "
                    f"{message} |")
    return "\n".join(rows)


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    print("# Bad input and the message each case gives\n")
    print("Written by `python tests/bad_inputs.py > docs/bad_inputs.md`; tests/test_bad_inputs.py asserts every case "
          "(exit code 1 or 2, no traceback, the file named, nothing written before changed).\n")
    print(table())
