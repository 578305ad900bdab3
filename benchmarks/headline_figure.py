"""The README's headline plot: novel-class IoU per arm (mean ± std over seeds) of the committed `paintseg run`
benchmarks on the demo and on Dubai, read from their results files.

    python benchmarks/headline_figure.py      # writes benchmarks/results/headline.png
"""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
RUNS = {"demo (solar panels, 5 seeds)": "experiment_demo_5seeds.json",
        "Dubai (building, 5 seeds)": "experiment_dubai.json"}
ORDER = ("baseline", "copy-paste", "copy-paste-noise", "diffusion", "diffusion-noise")


def main() -> None:
    from matplotlib.figure import Figure

    from paintseg.experiment.figures import novel_chart, png_bytes

    fig = Figure(figsize=(12, 3.6), layout="constrained")
    for ax, (title, name) in zip(fig.subplots(1, len(RUNS)), RUNS.items()):
        r = json.loads((RESULTS / name).read_text())
        rows = {row["arm"]: row for row in r["summary"]}
        arms = [a for a in ORDER if a in rows]
        model = rows[arms[0]]["model"]
        for i, arm in enumerate(ORDER):  # every panel has every arm's slot, so an arm keeps its colour
            if arm not in rows:
                ax.text(i, 2, "not run", ha="center", fontsize=8, rotation=90)
        seeds = {(run["arm"], model): [] for run in r["runs"]}
        for run in r["runs"]:  # each seed's dot
            seeds[(run["arm"], model)].append(run["metrics"]["novel_miou"])
        novel_chart(list(ORDER), [model], {(a, model): rows[a]["novel_miou"]["mean"] for a in arms},
                    {(a, model): rows[a]["novel_miou"]["std"] for a in arms}, seeds, ylabel="novel IoU (%)", ax=ax)
        ax.set_title(f"{title}: {model}", fontsize=9)  # the report's chart, one panel per run
    target = RESULTS / "headline.png"
    target.write_bytes(png_bytes(fig))
    print(f"written {target}\n$ python benchmarks/headline_figure.py")


if __name__ == "__main__":
    main()
