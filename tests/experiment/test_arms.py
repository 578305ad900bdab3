"""The one table of arms and backends (paintseg.experiment.arms) is what spec, graph, summary and the report read."""

from __future__ import annotations

from pathlib import Path

from paintseg.experiment import arms, graph, spec, summary


def test_every_arm_reads_from_the_one_table() -> None:
    assert len(set(arms.ARMS)) == len(arms.TABLE) and arms.ARMS[0] == "baseline"
    assert all(a.backend is None or a.backend in arms.BACKENDS for a in arms.TABLE)
    assert spec.ARMS is arms.ARMS and spec.DEFAULT_ARMS is arms.DEFAULT_ARMS
    assert summary.PAINTING_ARMS == ("diffusion", "diffusion-noise") and graph.ARM_CURATION is arms.ARM_CURATION
    assert arms.DIFFUSION_ARMS == ("diffusion", "diffusion-noise", "diffusion-no-filter", "diffusion-no-refine")
    assert arms.ARM_CURATION["diffusion-no-refine"] == ("diffusion", True, False)
    assert all(f"{a.name} = " in arms.legend() for a in arms.TABLE)  # the report's reading guide names every arm
    described = spec.ExperimentConfig.model_fields["arms"].description
    assert all(a.name in described for a in arms.TABLE)  # and so does the configuration reference


def test_each_backend_is_built_as_its_row_says(tiny_episode: Path) -> None:
    """The settings each synthetic set records (part of its stage's hash) are what the rows say, and what the
    per-backend calls gave before the table: finished stages keep their hashes."""
    from paintseg.data.episode import Episode

    config = spec.ExperimentConfig(episode={"path": str(tiny_episode)}, arms=["baseline", "copy-paste"])
    expected = {"copy-paste": {}, "copy-paste-match": {"paste_colour": "match"},
                "copy-paste-poisson": {"paste_colour": "poisson"},
                "copy-paste-noise": {"paste_noise": config.generation.paste_noise}}
    for name, settings in expected.items():
        backend, recorded = graph._backend(name, None, None, 0, config, Episode(tiny_episode))
        assert recorded == settings, name
    assert {n for n, b in arms.BACKENDS.items() if b.noise} == {"copy-paste-noise", "diffusion-noise"}
