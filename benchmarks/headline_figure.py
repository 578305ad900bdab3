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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(RUNS), figsize=(10, 3.2), constrained_layout=True)
    for ax, (title, name) in zip(axes, RUNS.items()):
        rows = {r["arm"]: r for r in json.loads((RESULTS / name).read_text())["summary"]}
        arms = [a for a in ORDER if a in rows]
        means = [rows[a]["novel_miou"]["mean"] for a in arms]
        stds = [rows[a]["novel_miou"]["std"] or 0.0 for a in arms]
        colours = ["#9e9e9e" if a == "baseline" else "#4c78a8" if a.startswith("copy") else "#e45756" for a in arms]
        ax.bar(range(len(arms)), means, yerr=stds, color=colours, capsize=3)
        ax.set_xticks(range(len(arms)), [a.replace("-", "-\n", 1) for a in arms], fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("novel IoU (%)")
        for i, m in enumerate(means):
            ax.text(i, m + stds[i] + 1, f"{m:.1f}", ha="center", fontsize=8)
    fig.suptitle("Novel-class IoU by arm: grey no synthetic data, blue copy-paste controls, red painting", fontsize=10)
    target = RESULTS / "headline.png"
    fig.savefig(target, dpi=110)
    print(f"written {target}\n$ python benchmarks/headline_figure.py")


if __name__ == "__main__":
    main()
