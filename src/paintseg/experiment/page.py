"""The pieces of the report's HTML page: its style sheet, how a value, a gain, a table cell, a figure or a missing
piece is written, and the errors a section may meet without failing the report."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

from paintseg.errors import PaintsegError

from .figures import data_uri
from .results import Stat

# what one section may meet in a half-written or hand-edited experiment folder; drawn as a note, never fatal
SOFT_ERRORS = (PaintsegError, OSError, KeyError, IndexError, TypeError, ValueError)

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1360px;
       color: #222; padding: 0 16px; }
h1 { margin-bottom: 4px; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 36px; }
.meta { color: #555; font-size: 14px; line-height: 1.6; } code { background: #f4f4f4; padding: 1px 4px; }
table { border-collapse: collapse; font-size: 14px; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 4px 10px; } th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.up { color: #1a7f37; } .down { color: #cf222e; } .novel { color: #8250df; }
.verdict { font-size: 17px; margin: 6px 0 10px; }
.missing { color: #9a6700; background: #fff8c5; padding: 4px 8px; display: inline-block; }
img { max-width: 100%; display: block; margin: 8px 0; }
.swatch { display: inline-block; width: 12px; height: 12px; border: 1px solid #888; margin: 0 4px 0 12px; }
"""


class ReportError(PaintsegError):
    """No report can be written: results.json is missing or malformed, or no browser renders the screenshot."""


# --------------------------------------------------------------------------------------------- formatting
def esc(value) -> str:
    return html.escape(str(value))


def ok(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def pm(stat: Stat | None, n: int | None = None) -> str:
    """``Stat(mean=40.3, std=0.5)`` → ``40.30 ± 0.50``; the mean alone from one seed (``n`` 1: no spread known)."""
    if stat is None or not ok(stat.mean):
        return "n/a"
    return f"{stat.mean:.2f} ± {stat.std:.2f}" if ok(stat.std) and (n is None or n > 1) else f"{stat.mean:.2f}"


def gain(value) -> str:
    if not ok(value):
        return "—"
    css = "up" if value > 0 else "down" if value < 0 else ""
    return f'<span class="{css}">{value:+.2f}</span>'


def hms(seconds) -> str:
    """Seconds as h:mm:ss."""
    if not ok(seconds):
        return "n/a"
    s = round(float(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def missing(text: str) -> str:
    return f'<p class="missing">{esc(text)}</p>'


def img(fig, alt: str) -> str:
    return f'<img alt="{esc(alt)}" src="{data_uri(fig)}">'


def table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def td(text: str, num: bool = True, bold: bool = False) -> str:
    inner = f"<b>{text}</b>" if bold else text
    return f'<td class="num">{inner}</td>' if num else f"<td>{inner}</td>"


def path_in(exp: Path, value: str | None) -> Path | None:
    if not value:
        return None
    p = Path(value)
    return p if p.is_absolute() else exp / p


def read_json(path: Path) -> dict:
    """The JSON object in ``path``, or {} when it is missing or unreadable (the report shows what there is)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
