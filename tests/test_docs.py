"""The documentation cannot drift: its generated pages (configuration and CLI references, history, the code-made
blocks) and every result block of README.md and docs/ match what the code and benchmarks/results give now, the
README stays a front page, and the site builds in strict mode (broken links, missing pages, stale API names fail)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True)


def test_generated_pages_and_result_blocks_are_current() -> None:
    for script in ("docs/gen.py", "benchmarks/readme_tables.py"):
        done = _run(script, "--check")
        assert done.returncode == 0, (script, done.stdout + done.stderr)


def test_the_checks_pass_in_a_checkout_in_another_folder(tmp_path: Path) -> None:
    """Generated text must not depend on where the checkout lives (a command recorded with this machine's absolute
    path once made every other clone's pages stale)."""
    import shutil

    elsewhere = tmp_path / "another" / "checkout"
    shutil.copytree(REPO, elsewhere, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "work", "__pycache__", "*.egg-info", ".pytest_cache", "site", "runs"))
    for script in ("docs/gen.py", "benchmarks/readme_tables.py"):
        done = subprocess.run([sys.executable, script, "--check"], cwd=elsewhere, capture_output=True, text=True)
        assert done.returncode == 0, (script, done.stdout + done.stderr)


def test_recorded_commands_are_shown_relative_to_the_checkout() -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from readme_tables import portable
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    assert (portable("paintseg run configs/demo.yaml --out /home/me/code/paintseg/benchmarks/work/x --seeds 0")
            == "paintseg run configs/demo.yaml --out benchmarks/work/x --seeds 0")
    assert portable("python /ci/x/benchmarks/a.py --config /ci/x/configs/d.yaml") == "python benchmarks/a.py --config configs/d.yaml"
    assert portable("cp /etc/hosts ../shared/data/x") == "cp /etc/hosts ../shared/data/x"


def test_a_stale_generated_page_fails_the_check(tmp_path: Path) -> None:
    page = REPO / "docs" / "reference" / "configuration.md"
    kept = page.read_text()
    try:
        page.write_text(kept.replace("| `steps` |", "| `stepz` |", 1))
        done = _run("docs/gen.py", "--check")
        assert done.returncode == 1 and "docs/reference/configuration.md" in done.stderr
    finally:
        page.write_text(kept)


def test_the_readme_is_a_front_page() -> None:
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    setup = text.split("## Set up")[1].split("\n## ")[0]
    assert re.findall(r"```bash\n(.*?)\n```", setup, re.S) == ["pip install -e . && paintseg demo",
                                                               'pip install -e ".[dev]" && python -m pytest -q']
    for target in re.findall(r"\]\(((?:docs|benchmarks)/[^)#]+)", text):  # every link of the README resolves
        assert (REPO / target).exists(), target


@pytest.mark.slow
def test_the_site_builds_in_strict_mode_and_its_home_page_renders(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    site = tmp_path / "site"
    for page in ("index.html", "reference/configuration/index.html", "reference/cli/index.html",
                 "reference/api/index.html", "your_own_data/index.html", "results/index.html"):
        assert (site / page).is_file(), page
    api = (site / "reference/api/index.html").read_text()
    assert "split_dataset" in api and "load_model" in api  # read from the docstrings
    assert (site / "assets/results/headline.png").is_file()  # the figures travel with the site
    from paintseg.experiment.screenshot import find_browser, screenshot

    if find_browser() is None:
        pytest.skip("no headless browser (chromium) to render the home page")
    shot = screenshot(site / "index.html", tmp_path / "home.png", width=1200, height=1400)
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    r, g, b = image.getpixel((300, 20))
    assert image.size[0] == 1200 and g > 100 and r < 100  # the theme's teal header: the stylesheets loaded
    assert len(image.convert("L").getcolors(256)) > 20  # text and the headline figure, not a blank page


def test_every_mean_and_spread_in_prose_is_one_a_generated_block_shows() -> None:
    """A "mean ± std" written in the prose of README.md or docs/ restates a figure of a generated result block
    (the drift this catches: "−3.4 ± 3.9" beside a table's "−3.4 ± 3.1"). Code spans and fenced blocks are not prose."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    block = re.compile(r"<!-- (RESULTS|CODE):(\w+) -->.*?<!-- /\1:\2 -->", re.S)
    shown = " ".join(m.group(0) for page in pages for m in block.finditer(page.read_text()))

    def norm(text: str) -> str:
        return text.replace("−", "-").replace("+", "")

    figure = re.compile(r"[−+-]?\d+(?:\.\d+)? ± \d+(?:\.\d+)?")
    unsourced = []
    for page in pages:
        prose = re.sub(r"```.*?```", "", block.sub("", page.read_text()), flags=re.S)
        prose = re.sub(r"`[^`\n]*`", "", prose)
        unsourced += [f"{page.relative_to(REPO)}: {x}" for x in figure.findall(prose) if norm(x) not in norm(shown)]
    assert unsourced == [], unsourced


# decimals in prose that are no measurement: the paper's arXiv id, the Python version, SD's latent scale factor
CONSTANTS = {"2503.03785", "3.11", "0.18215"}


def test_every_decimal_figure_in_prose_is_one_a_generated_block_shows() -> None:
    """A measured figure (a decimal number or a percentage) in the prose of README.md or the hand-written docs pages appears in a
    generated result block: prose may point at a figure, not keep its own copy that drifts (the generated reference
    pages and the bad-input table are generated whole)."""
    generated = {"configuration.md", "cli.md", "history.md", "bad_inputs.md"}
    pages = [p for p in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))] if p.name not in generated]
    block = re.compile(r"<!-- (RESULTS|CODE):(\w+) -->.*?<!-- /\1:\2 -->", re.S)
    shown = " ".join(m.group(0) for page in pages for m in block.finditer(page.read_text())).replace("−", "-")
    unsourced = []
    for page in pages:
        prose = re.sub(r"```.*?```", "", block.sub("", page.read_text()), flags=re.S)
        prose = re.sub(r"`[^`\n]*`", "", prose)
        unsourced += [f"{page.relative_to(REPO)}: {x}" for x in re.findall(r"(?<![\w.])[−-]?\d+\.\d+(?![\w.])", prose)
                      if x.replace("−", "-") not in shown and x not in CONSTANTS]
        for share in re.findall(r"(?<![\w.])(\d+(?:–\d+)?) ?%", prose):  # percentages, ranges as 20–35 %
            if not all(re.search(rf"(?<![\d.]){x} ?%", shown) for x in share.split("–")):
                unsourced.append(f"{page.relative_to(REPO)}: {share} %")
    assert unsourced == [], unsourced
