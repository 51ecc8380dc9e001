"""An AutoScale experiment end to end: config (YAML, pydantic), run store (SQLite), executors
(inline, Ray, command) and the resumable pipeline behind `autoscale run` / `autoscale status`.

    from autoscale.experiment.config import load_config
    from autoscale.experiment.pipeline import run_experiment

    result = run_experiment(load_config("experiment.yaml"))   # ExperimentResult; files in result.directory
"""
