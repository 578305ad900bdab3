"""A screenshot of the report: the whole page rendered with headless Chromium (in parts for a long page)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from .page import ReportError

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_browser() -> str | None:
    """The path of a Chromium-family browser on PATH, or None."""
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


def screenshot(html_file: str | Path, png: str | Path, width: int = 1400, height: int | None = None,
               browser: str | None = None, part: int = 6000) -> Path:
    """Render ``html_file`` with headless Chromium into ``png``, ``width`` pixels wide and as high as the whole page
    (or ``height`` pixels); return its path. A page higher than ``part`` pixels is rendered in parts, each with the
    page shifted up, and stitched into one PNG (one headless window cannot be arbitrarily tall)."""
    from PIL import Image

    html_file, png = Path(html_file), Path(png)
    browser = browser or find_browser()
    if browser is None:
        raise ReportError(f"no Chromium-family browser ({', '.join(BROWSERS)}) on PATH to render {html_file}; "
                          f"install Debian's chromium: apt-get install chromium")
    if not html_file.is_file():
        raise ReportError(f"{html_file}: no such page; write it with write_report first")
    png.parent.mkdir(parents=True, exist_ok=True)
    png = png.resolve()
    png.unlink(missing_ok=True)
    page = html_file.read_text()
    total = height or _page_height(browser, page, width, html_file)
    with tempfile.TemporaryDirectory() as tmp:
        shots = []
        for i, top in enumerate(range(0, total, part)):
            # beside the page, so that its relative links (a site's stylesheets and images) resolve
            shifted = html_file.with_name(f".screenshot-{os.getpid()}-part{i}.html")
            shifted.write_text(page.replace("</head>", f"<style>html{{margin-top:-{top}px}}</style></head>", 1))
            shot = Path(tmp) / f"part{i}.png"
            try:
                _chromium(browser, [f"--window-size={width},{min(part, total - top)}", f"--screenshot={shot}",
                                    shifted.resolve().as_uri()], html_file)
            finally:
                shifted.unlink(missing_ok=True)
            if not shot.is_file() or shot.stat().st_size == 0:
                raise ReportError(f"{browser} wrote no screenshot of {html_file} (part {i + 1})")
            shots.append(Image.open(shot).convert("RGB"))
        whole = Image.new("RGB", (width, sum(s.height for s in shots)), "white")
        y = 0
        for s in shots:
            whole.paste(s, (0, y))
            y += s.height
        whole.save(png)
    return png


def _chromium(browser: str, args: list[str], html_file: Path) -> str:
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--disable-background-networking", "--hide-scrollbars", "--virtual-time-budget=5000", *args]
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        raise ReportError(f"{browser} did not render {html_file} within 180 s") from None
    except OSError as e:
        raise ReportError(f"{browser}: cannot run it ({e}); install Debian's chromium: apt-get install chromium") \
            from None
    return proc.stdout


def _page_height(browser: str, page: str, width: int, html_file: Path) -> int:
    """The rendered height of the page in pixels at ``width``: Chromium dumps the DOM after a script has written
    the height into it."""
    probe = page.replace("</body>", "<script>document.body.setAttribute('data-height', "
                         "document.documentElement.scrollHeight)</script></body>", 1)
    path = html_file.with_name(f".screenshot-{os.getpid()}-probe.html")  # beside the page: its links resolve
    path.write_text(probe)
    try:
        dom = _chromium(browser, [f"--window-size={width},1000", "--dump-dom", path.resolve().as_uri()], html_file)
    finally:
        path.unlink(missing_ok=True)
    m = re.search(r'data-height="(\d+)"', dom)
    if m is None:
        raise ReportError(f"{browser} could not measure the height of {html_file}; pass a height")
    return max(1, int(m.group(1)))
