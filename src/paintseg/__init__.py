"""paintseg: few-shot segmentation of aerial imagery by painting novel-class instances into real scenes.

The Python API (each name imported on first use, so ``import paintseg`` stays light)::

    import paintseg

    episode = paintseg.Episode("episodes/mine")                 # an episode folder (paintseg split writes one)
    problems, warnings = episode.check()                          # what `paintseg data check` prints
    config = paintseg.load_experiment("mine.yaml")                # a run config, checked
    results = paintseg.run_experiment(config, "runs/mine")        # every stage; EXP/results.json, EXP/report.html
    model, classes, meta = paintseg.load_model("runs/mine/stages/train-diffusion-noise-unet-lite0-s0-.../")
    labels = paintseg.predict(run_folder, ["scene.tif"], "predictions")  # GeoTIFF in, georeferenced labels out
"""

__version__ = "0.1.0"

# public name -> the module that defines it
API = {"Episode": "paintseg.data.episode", "ClassMap": "paintseg.data.classes", "split_dataset": "paintseg.data.split",
       "load_experiment": "paintseg.experiment.spec", "run_experiment": "paintseg.experiment.run",
       "write_report": "paintseg.experiment.report", "train": "paintseg.segment.train",
       "load_model": "paintseg.segment.train", "predict": "paintseg.segment.predict",
       "predict_array": "paintseg.segment.predict", "evaluate_predictions": "paintseg.evaluate.metrics",
       "PaintsegError": "paintseg.errors"}
__all__ = [*API, "__version__"]


def __getattr__(name: str):
    if name not in API:
        raise AttributeError(f"module 'paintseg' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(API[name]), name)
