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


def _module_imports(path: Path) -> set[str]:
    """The paintseg modules (dotted, relative to the package) that ``path`` imports anywhere in it (function-level
    imports too): ``from a.b import c`` counts ``a.b.c`` when that is a module, else ``a.b``."""
    rel = path.relative_to(SRC).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    known = {".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
             for p in SRC.rglob("*.py")}
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        bases: list[list[str]] = []
        names: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1] + (node.module.split(".") if node.module else [])
            elif node.module and node.module.startswith("paintseg"):
                base = node.module.split(".")[1:]
            else:
                continue
            bases, names = [base], [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            bases = [a.name.split(".")[1:] for a in node.names if a.name.startswith("paintseg.")]
        for base in bases:
            for name in names or [None]:
                dotted = ".".join(base + [name]) if name and ".".join(base + [name]) in known else ".".join(base)
                if dotted in known:
                    found.add(dotted)
    return found


def test_no_import_circle_between_modules():
    """No two modules import each other, directly or round a loop - function-level imports included (a circle
    hidden inside a function is still one piece of code split over two files)."""
    graph = {".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__"): _module_imports(p)
             for p in SRC.rglob("*.py")}
    assert "place.context" in graph["place.placement"]  # the walk sees `from .context import ...`
    circles, state = [], {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if nxt == node or nxt == "":
                continue
            if state.get(nxt) == "open":
                circles.append(trail[trail.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    # a package's __init__ handing names on from its own modules is not a circle of code
    circles = [c for c in circles if not any(m.count(".") < c[0].count(".") and c[0].startswith(m) for m in c)]
    assert circles == []


def test_no_module_over_500_lines():
    """A module a newcomer reads in one sitting: none of the package's over 500 lines."""
    long = {str(p.relative_to(SRC)): n for p in sorted(SRC.rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > 500}
    assert long == {}
