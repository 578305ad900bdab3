"""Write the README's result tables from benchmarks/results/*.json, so every figure there is one a benchmark printed.

    python benchmarks/readme_tables.py            # rewrites the blocks between <!-- RESULTS:name --> markers

Each block is rebuilt from its JSON file; a benchmark that has not been run leaves its block as it is.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def _pct(value) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def baseline_dubai(r: dict) -> str:
    m = r["metrics"]
    names = list(m["per_class_iou"])
    head = "| " + " | ".join(["model", "steps"] + names + ["base mIoU", "novel mIoU", "score"]) + " |"
    sep = "|" + "---|" * (len(names) + 5)
    row = "| " + " | ".join([f"{r['model']['arch']}-{r['model']['encoder']} (no pretraining)",
                             str(r["budget"]["steps"])] + [_pct(m["per_class_iou"][n]) for n in names]
                            + [_pct(m["base_miou"]), _pct(m["novel_miou"]), _pct(m["score"])]) + " |"
    t = r["train"]
    return "\n".join([
        f"**Dubai baseline** (novel = building, 5 shots, split by tile; {r['query_images']} query tiles of 512 px; "
        f"IoU in %, OpenEarthMap protocol):",
        "",
        head, sep, row,
        "",
        f"Batch {r['budget']['batch']}, crop {r['budget']['crop']}, seed {r['budget']['seed']}; training "
        f"{t['seconds_per_step']} s/step on {t['torch_threads']} CPU thread(s), peak RSS {t['peak_rss_mb']:.0f} MB; "
        f"whole benchmark {r['wall_seconds'] / 60:.0f} min on {r['machine']['cpu_count']} cores ({r['date']}).",
        f"Produced by `{r['command']}` → `benchmarks/results/baseline_dubai.json`.",
    ])


BLOCKS = {"baseline_dubai": baseline_dubai}


def main() -> None:
    readme = REPO / "README.md"
    text = readme.read_text()
    for name, render in BLOCKS.items():
        path = RESULTS / f"{name}.json"
        if not path.is_file():
            print(f"{path}: not there yet; block {name} left as it is")
            continue
        block = render(json.loads(path.read_text()))
        pattern = re.compile(rf"(<!-- RESULTS:{name} -->\n).*?(\n<!-- /RESULTS:{name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no <!-- RESULTS:{name} --> block; add the two marker lines")
        text = pattern.sub(lambda m: m.group(1) + block + m.group(2), text)
        print(f"README block {name} written from {path.relative_to(REPO)}")
    readme.write_text(text)


if __name__ == "__main__":
    main()
