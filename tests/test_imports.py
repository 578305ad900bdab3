"""The package's imports follow the data flow (DESIGN.md): a stage imports only stages before it, and the shared
helpers (paintseg/*.py) import no stage."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "paintseg"
# each may import those before it: where instances go, then how they are painted, then curation ...
FLOW = ["data", "place", "paint", "curate", "segment", "evaluate", "experiment"]
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
    relative = {pkg for _, pkg in imported_packages(SRC / "place" / "plan.py")}
    assert "place" in relative  # `from .placement import ...` inside place/
    absolute = {pkg for _, pkg in imported_packages(SRC / "curate" / "compose.py")}
    assert {"data", "paint"} <= absolute


def test_module_names_are_unique_within_the_package():
    """One `placement.py`, one `pipeline.py`, one `config.py`: a name says which module it is. The painting backends
    with their own trainers (paint/diffusion/, paint/harmonise/) share one shape on purpose - backend, data, model,
    train - and are named by their package."""
    stems: dict[str, list[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        if path.name != "__init__.py" and len(path.relative_to(SRC).parts) <= 2:
            stems.setdefault(path.stem, []).append(str(path.relative_to(SRC)))
    assert {stem: paths for stem, paths in stems.items() if len(paths) > 1} == {}


def test_the_tests_mirror_the_package():
    """tests/<stage>/ holds the tests of paintseg/<stage>/, one folder per stage of the flow; the tests of the shared
    modules (cli, runs, threads, ...) sit in tests/ itself."""
    tests = SRC.parents[1] / "tests"
    folders = sorted(p.name for p in tests.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))
    assert folders == sorted(FLOW)
    for stage in FLOW:
        assert list((tests / stage).glob("test_*.py")), stage
