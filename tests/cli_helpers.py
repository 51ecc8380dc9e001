"""Running the CLI in-process as a user would, for tests."""

from autoscale.cli import main


def run_cli(*args: str) -> int:
    """Run `autoscale ARGS...` and return its exit status."""
    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def tiny_experiment(root, name: str = "tiny", **settings):
    """Write ``root/<name>.yaml``: a 3-domain experiment (2 DDO budgets of 7 runs, validation of 3
    mixtures) trained by the simulated world's stand-in trainer (~0.5 s a run, 2 at once; a test whose
    subject is not the executor calls it in-process with the ``simworld_in_process`` fixture).

    ``settings`` replace whole top-level sections (``target={...}``). Returns the config path.
    """
    import sys
    from pathlib import Path

    import yaml

    trainer = Path(__file__).parent / "fixtures" / "simworld_trainer.py"
    config = {
        "data": {"domains": ["web", "code", "books"], "fingerprint": "simworld-3"},
        "ddo": {"budgets": [1_000_000, 4_000_000]},
        "target": {"budget": 16_000_000, "validate": True, "compare": ["uniform", "ddo"]},
        "executor": {
            "kind": "command",
            "command": [sys.executable, str(trainer), "--world-seed", "3", "--mixture", "{mixture_json}",
                        "--seed", "{seed}", "--out", "{run_dir}"],
            "workers": 2,
        },
        **settings,
    }
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
