"""`recipe`: the command-line entry point.

Verbs are loaded lazily from `runner.commands.<module>` so that `recipe --help` and cheap verbs
never import torch, ray or transformers. To add a verb: write `runner/commands/<module>.py`
exposing a click command, then add one line to COMMANDS.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys

import click

from runner import __version__
from runner.console import safe
from runner.errors import EXIT_FAIL, EXIT_INTERRUPTED, EXIT_OK, EXIT_STDOUT_CLOSED, RecipeError, StdoutClosed

# verb -> (module under runner.commands, attribute, one-line help shown by `recipe --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "list": ("recipes", "list_cmd", "List the recipes in this bundle."),
    "show": ("recipes", "show_cmd", "Show a recipe: pins, hardware, parallelism cells, files."),
    "plan": ("plan", "plan_cmd", "Print the fully resolved launch of a recipe, with no side effects."),
    "run": ("run", "run_cmd", "Preflight, then launch a recipe and record the run."),
    "exec": ("run", "exec_cmd", "Carry out a run's frozen plan.json where its job runs (docker, Slurm)."),
    "lint": ("lint", "lint_cmd", "Catch silent mistakes (model args vs config.json, R3, layouts, memory)."),
    "replay": ("replay", "replay_cmd", "Re-execute a recorded run and compare its metrics (bitwise or bands)."),
    "resume": ("resume", "resume_cmd", "Continue a stopped run from its last complete checkpoint, guarded."),
    "sbatch": ("slurm", "sbatch_cmd", "Print (or submit) the sbatch script that runs a recipe on Slurm."),
    "image": ("slurm", "image_cmd", "Stage the pinned image for clusters (enroot .sqsh keyed by digest)."),
    "doctor": ("doctor", "doctor_cmd", "Check this container against the image lock (commits, versions, kernels)."),
    "verify": ("inputs", "verify_cmd", "Check inputs (or --recipe-files) against the sha256 manifest."),
    "fetch": ("inputs", "fetch_cmd", "Download model and data at the pinned revisions, hashed."),
    "lock": ("inputs", "lock_cmd", "Rewrite the inputs manifest from Hub metadata (or --recipe-files)."),
    "check": ("gate", "check_cmd", "Check a run's metrics against the recipe's expected metrics (the gate)."),
    "bless": ("gate", "bless_cmd", "Make a trusted run the recipe's reference series for band rules."),
    "report": ("gate", "report_cmd", "Plot each gated metric with its bounds and verdicts (PNG + HTML)."),
    "diff": ("diff", "diff_cmd", "What differs between two runs (or a run and the reference): provenance, metrics."),
    "export": ("export", "export_cmd", "Write a run's metrics as TensorBoard event files (--tensorboard DIR)."),
    "runs": ("runs", "runs_cmd", "List recorded runs: time, recipe, cell, status, gate verdict, blessed."),
    "logs": ("logs", "logs_cmd", "Print a run's logs/run.log (--follow: until the run's verdict)."),
}

# Verbs that only read and print: when their reader goes away (`recipe plan X | head -1`) they stop
# quietly, as git does. Any other verb was cut short doing something, and says so (exit 130).
READ_ONLY = frozenset({"list", "show", "plan", "lint", "doctor", "verify", "diff", "runs", "logs", "check",
                       "sbatch"})

EPILOG = """\b
Typical session:
  recipe list                          what recipes exist
  recipe show NAME                     pins, cells, files
  recipe plan NAME                     the exact argv and environment a run would use
  recipe run NAME                      preflight, then launch
"""


class LazyGroup(click.Group):
    def make_context(self, *args, **kw) -> click.Context:
        try:  # `recipe --help | head -1`: help is printed while parsing, before any verb
            return super().make_context(*args, **kw)
        except BrokenPipeError:
            raise StdoutClosed() from None

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise StdoutClosed(ctx.invoked_subcommand) from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(f"runner.commands.{module}"), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help text comes from the table so that `--help` imports no command module.
        rows = [(name, help_) for name, (_, _, help_) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="recipe")
def cli() -> None:
    """Launch pinned, checkable, replayable LLM RL recipes.

    Every recipe pins its image by digest, its model and data by revision and sha256, and its
    launch arguments in files you can read. Nothing is downloaded or started unless a verb says so.
    """


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every verb unwinds through the same cleanup and exits 130."""


def _terminate(signum, _frame):
    raise Terminated(f"signal {signum}")


def main(argv: list[str] | None = None) -> None:
    # SIGTERM (kill, scancel, docker stop) means the same as Ctrl-C for every verb: unwind, let each
    # verb record what it must (a run finalizes run.json as "interrupted"), exit 130. A verb that
    # runs a child installs its own forwarding handler for that time (runner/launch/script.py).
    signal.signal(signal.SIGTERM, _terminate)
    try:
        rc = cli.main(args=argv, prog_name="recipe", standalone_mode=False)
        # What is still buffered goes out now, where a closed stdout is caught, not at interpreter exit.
        sys.stdout.flush()
    except BaseException:
        # Leaving anyway: a second SIGTERM must not interrupt the one-line message below.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            raise
        except RecipeError as e:
            # one line, and nothing in it (a value quoted from a record or a file) drives the terminal
            click.echo(f"recipe: error: {safe(e.message)}", err=True)
            sys.exit(e.code)
        except click.exceptions.Abort:
            click.echo("recipe: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except click.UsageError as e:   # a bad flag or RECIPE_* value: one line naming it, as our own errors
            click.echo(f"recipe: error: {safe(e.format_message())}", err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("recipe: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except (BrokenPipeError, StdoutClosed) as e:
            from runner.launch.script import stdout_to_devnull

            stdout_to_devnull()
            verb = e.verb if isinstance(e, StdoutClosed) else _verb(argv)
            if verb is None or verb in READ_ONLY:   # None: --help, --version
                # `recipe plan X | head -1`: the reader has what it wanted. No message, and the status
                # a shell reports for git or cat in the same place (128 + SIGPIPE).
                sys.exit(EXIT_STDOUT_CLOSED)
            # a verb that was doing something (run, fetch, bless...) was cut short: say so
            click.echo("recipe: interrupted: stdout was closed", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except Exception as e:  # noqa: BLE001 - last resort: one line, not a traceback
            if os.environ.get("RECIPE_DEBUG"):
                raise
            click.echo(f"recipe: internal error: {type(e).__name__}: {safe(e)} (set RECIPE_DEBUG=1 for a traceback)",
                       err=True)
            sys.exit(EXIT_FAIL)
    # The one way out of a command that finished: the EXIT_* code it returned (None: it printed and is done).
    sys.exit(rc if isinstance(rc, int) else EXIT_OK)


def _verb(argv: list[str] | None) -> str | None:
    """The verb of a command line: its first word that is not an option."""
    return next((w for w in (sys.argv[1:] if argv is None else argv) if not w.startswith("-")), None)


if __name__ == "__main__":
    main()
