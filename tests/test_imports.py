"""The package's imports follow the data flow (DESIGN.md): a stage imports only stages before it, and the shared
helpers (paintseg/*.py) import no stage."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "paintseg"
FLOW = ["data", "generate", "curate", "segment", "evaluate", "experiment"]  # each may import those before it
TOP = {"cli", "__main__"}  # the command line may import anything


def imported_packages(path: Path) -> list[tuple[int, str]]:
    """(line, top-level paintseg package) of every paintseg import in ``path``, relative ones resolved."""
    rel = path.relative_to(SRC)
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            parts = list(rel.parts[:-1])[: len(rel.parts) - node.level]
            target = parts + (node.module.split(".") if node.module else [])
            if target:
                found.append((node.lineno, target[0]))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("paintseg."):
            found.append((node.lineno, node.module.split(".")[1]))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split(".")[1]) for a in node.names if a.name.startswith("paintseg.")]
    return found


def test_no_import_from_a_later_stage_and_helpers_import_no_stage():
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        owner = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        if owner in TOP:
            continue
        for line, package in imported_packages(path):
            if package not in FLOW:
                continue
            if owner not in FLOW:  # a shared helper
                wrong.append(f"{rel}:{line} (a shared helper) imports the stage {package}")
            elif FLOW.index(package) > FLOW.index(owner):
                wrong.append(f"{rel}:{line} ({owner}) imports the later stage {package}")
    assert wrong == []


def test_the_walk_sees_relative_and_absolute_imports():
    relative = {pkg for _, pkg in imported_packages(SRC / "generate" / "pipeline.py")}
    assert "generate" in relative  # `from .placement import ...` inside generate/
    absolute = {pkg for _, pkg in imported_packages(SRC / "curate" / "compose.py")}
    assert {"data", "generate"} <= absolute
