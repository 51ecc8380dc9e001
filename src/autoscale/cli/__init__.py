"""Command-line entry point: one command per verb.

Each group of commands lives in its own module and is imported only when used, so `autoscale fit`
never pays for importing torch. `AutoscaleError` and a usage error (unknown option, missing
argument, a value of the wrong type) become one ``error:`` line on stderr and exit status 2, the
usage error naming the command whose ``--help`` to read. ``-h`` is ``--help`` everywhere.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import click

from autoscale.errors import AutoscaleError

# command name -> (module, attribute, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "plan": ("autoscale.cli.core", "plan", "Write a method's runs table to fill in (DDO's by default)."),
    "fit": ("autoscale.cli.core", "fit", "Fit a method to a filled runs table: its mixture (--score: predictions)."),
    "predict": ("autoscale.cli.core", "predict", "Extrapolate optimal mixtures to a larger budget (AutoScale)."),
    "data": ("autoscale.cli.data", "data", "Build the demo corpus, tokenise corpora, inspect token stores."),
    "train": ("autoscale.cli.train", "train", "Train one proxy model on a mixture."),
    "eval": ("autoscale.cli.train", "evaluate", "Score a run on downstream tasks (lm-evaluation-harness)."),
    "check": ("autoscale.cli.train", "check", "Validate a run's metrics.json (your trainer's), naming every problem."),
    "init": ("autoscale.cli.experiment", "init", "Write a commented starter experiment YAML."),
    "run": ("autoscale.cli.experiment", "run", "Run an AutoScale experiment end to end (resumable)."),
    "status": ("autoscale.cli.experiment", "status", "Show what an experiment has done, is running, failed."),
    "schema": ("autoscale.cli.experiment", "schema", "Write the JSON Schemas of metrics.json and the result files."),
    "report": ("autoscale.cli.report", "report", "Write plots and an HTML report for an experiment."),
    "demo": ("autoscale.cli.report", "demo", "Run AutoScale on the embedded demo corpus."),
    "bench": ("autoscale.cli.report", "bench", "Benchmark of record: validation with several seeds."),
    "export": ("autoscale.cli.export", "export", "Write a mixture in a trainer's config format."),
}


#: -h works as --help on every command (subcommands inherit it from the group's context).
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if self._available(name)]

    def _available(self, name: str) -> bool:
        module = COMMANDS[name][0]
        return importlib.util.find_spec(module) is not None

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS or not self._available(name):
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="autoscale")
def cli() -> None:
    """autoscale: find the data mixture for your training budget (AutoScale, arXiv 2407.20177)."""


def main(argv: list[str] | None = None) -> None:
    """Console-script entry: run the CLI, turning user errors into one line and exit status 2."""
    try:
        # Without standalone mode click returns ctx.exit()'s code instead of raising it.
        code = cli.main(args=argv, prog_name="autoscale", standalone_mode=False)
    except AutoscaleError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        # Unknown option, missing argument, a value of the wrong type: one line like every other
        # mistake, naming the command whose --help tells the usage.
        where = exc.ctx.command_path if exc.ctx is not None else "autoscale"
        message = " ".join(exc.format_message().split())
        click.echo(f"error: {message} (see '{where} --help')", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
