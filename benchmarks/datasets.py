"""Bring your own dataset, as a new user would: every built-in dataset × layout, and the real Dubai data through the
generic path, each split into an episode with one `paintseg split` command, checked with `paintseg data check` (no
--shots: it reads the split's record) and run by `paintseg run` with minimal budgets through every stage to a report.

LoveDA, ISPRS Potsdam / Vaihingen and OpenEarthMap are not in ../shared/data, so their rows run on small samples
built in each release's and mmsegmentation's real layout (file names, label encodings, no-data values, unlabelled
test images) by the test suite's builders (tests/data/test_datasets.py); the Dubai row runs on the real data. One more
row splits a single 1024² Potsdam-layout scene: first without --block, then with the --block (and --tile) that split's
message advises. Writes benchmarks/results/datasets.json.

    python benchmarks/datasets.py
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "data"), str(REPO / "tests"), str(REPO / "tests" / "experiment")]  # the builders,
# the conftest they use, and the minimal run config of the property test (every stage, minimal budgets)
WORK = REPO / "benchmarks" / "work" / "datasets"
DUBAI = REPO.parent / "shared" / "data" / "dubai_aerial"


def run(args: list[str]) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "paintseg", *args], capture_output=True, text=True, cwd=REPO)
    return done.returncode, done.stdout + done.stderr


def show(args: list[str]) -> str:
    return "paintseg " + shlex.join(str(a).replace(str(REPO) + "/", "").replace(str(REPO.parent / "shared"), "../shared")
                                    for a in args)


def main() -> None:
    import numpy as np
    from test_datasets import BUILDERS, ISPRS_COLOURS, rgb, tif
    from test_run_properties import MINIMAL

    shutil.rmtree(WORK, ignore_errors=True)
    rows = []
    cases = [(name, layout) for name in BUILDERS for layout in ("release", "mmseg")]
    for name, layout in cases + [("potsdam", "one scene"), ("dubai", "generic")]:
        root = WORK / f"{name}-{layout.replace(' ', '-')}"
        out = WORK / f"episode-{name}-{layout.replace(' ', '-')}"
        extra = ["--shots", "2", "--tile", "0"]
        if layout == "generic":
            if not DUBAI.is_dir():
                print(f"{DUBAI}: not here; the Dubai row is skipped")
                continue
            args = ["split", "--images", f"{DUBAI}/*/images/*.jpg", "--labels", f"{DUBAI}/*/masks/*.png",
                    "--classes", f"{DUBAI}/classes-paintseg.json", "--novel", "building", "--group", r"Tile \d+",
                    "--tile", "512", "--shots", "5", "--min-pixels", "4096", "--seed", "0", "--out", str(out)]
            data = "real (../shared/data/dubai_aerial)"
        elif layout == "one scene":
            size, rng = 1024, np.random.default_rng(3)
            ids = np.ones((size, size), np.uint8)
            ids[:, size // 2 :] = 4
            for r in range(40, size, 128):
                for c in range(40, size, 128):
                    ids[r : r + 24, c : c + 24] = 5
            colour = np.zeros((size, size, 3), np.uint8)
            for v, col in ISPRS_COLOURS.items():
                colour[ids == v] = col
            tif(root / "2_Ortho_RGB" / "top_potsdam_2_10_RGB.tif", rgb(rng, size))
            tif(root / "5_Labels_all" / "top_potsdam_2_10_label.tif", colour)
            args = ["split", "--dataset", "potsdam", "--root", str(root), "--novel", "car", "--out", str(out),
                    "--shots", "2", "--tile", "512"]
            code, text = run(args)  # a new user's first try; the message says what to pass
            print(f"$ {show(args)}\n{text}")
            advice = re.search(r"--block (\d+)(?: --tile (\d+))?", text)
            assert code != 0 and advice, text
            args = args[:-2] + ["--tile", advice[2] or "512", "--block", advice[1]]
            data = "sample in the release layout: one 1024² scene, split as the first try's message advised"
        else:
            build, novel = BUILDERS[name]
            build(root, layout)
            args = ["split", "--dataset", name, "--root", str(root), "--novel", novel, "--out", str(out), *extra]
            data = f"sample in the {layout} layout"
        code, text = run(args)
        print(f"$ {show(args)}\n{text}")
        row = {"dataset": name, "layout": layout, "data": data, "command": show(args), "exit": code}
        if code == 0:
            split = json.loads((out / "split.json").read_text())
            check_code, check = run(["data", "check", str(out)])  # the shots come from the episode's record
            print(check)
            exp = WORK / f"exp-{name}-{layout.replace(' ', '-')}"
            (WORK / f"{exp.name}.yaml").write_text(yaml.safe_dump({**MINIMAL, "name": exp.name, "seeds": [0],
                                                                   "episode": {"path": str(out)}}))
            start = time.perf_counter()
            run_code, ran = run(["run", str(WORK / f"{exp.name}.yaml"), "--out", str(exp), "--no-progress"])
            print(ran[-2000:])
            s = split["summary"]
            row.update(images={r: s[r]["images"] for r in ("train", "support", "query")},
                       groups={r: len(s[r]["groups"]) for r in ("train", "support", "query")},
                       novel_pixels={r: sum(v for k, v in s[r]["pixels"].items() if k in split["config"]["novel"])
                                     for r in ("support", "query")},
                       unlabelled_skipped=s.get("unlabelled_images", 0), check=check.strip().splitlines()[-1],
                       check_passed=check_code == 0, check_warnings=check.count("warning:"),
                       run_exit=run_code, report=(exp / "report.html").is_file(),
                       run_seconds=round(time.perf_counter() - start, 1))
        rows.append(row)
    result = {"date": str(date.today()), "rows": rows, "command": "python benchmarks/datasets.py"}
    target = REPO / "benchmarks" / "results" / "datasets.json"
    target.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written {target}\n$ python benchmarks/datasets.py")


if __name__ == "__main__":
    main()
