"""Running the CLI in-process as a user would, for tests."""

from autoscale.cli import main


def run_cli(*args: str) -> int:
    """Run `autoscale ARGS...` and return its exit status."""
    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
