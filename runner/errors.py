"""One exception type and the exit codes every command shares.

Each code means one thing, so a script (or Slurm) can tell "you typed it wrong" from
"this machine cannot run it" from "the weights are corrupt" without parsing text.
"""

EXIT_OK = 0
EXIT_FAIL = 1  # the thing ran and failed: a job, a gate, a lint error, a replay difference
EXIT_USAGE = 2  # bad flag, unknown recipe or cell, invalid layout, malformed file
EXIT_PREFLIGHT = 3  # this machine cannot run the recipe (missing GPU, runtime, driver...)
EXIT_MISSING = 4  # inputs missing (files absent or of the wrong size)
EXIT_CORRUPT = 5  # inputs present but their content does not match the manifest
EXIT_REFUSED = 6  # a guard refused to proceed (replay of a changed recipe or image, doctor mismatch)
EXIT_INTERRUPTED = 130  # SIGINT / SIGTERM, or stdout closed under a verb that was doing something
EXIT_STDOUT_CLOSED = 141  # a read-only verb's reader went away (`| head -1`): 128 + SIGPIPE, as for git


class RecipeError(Exception):
    """An error the user can act on: printed as one line, exits with `code`, never a traceback."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.message = message
        self.code = code


class UsageError(RecipeError):
    def __init__(self, message: str):
        super().__init__(message, EXIT_USAGE)


class StdoutClosed(Exception):
    """stdout's reader went away (`recipe ... | head -1`). Not an OSError, so that click does not turn it
    into a silent exit 1."""

    def __init__(self, verb: str | None = None):
        super().__init__(verb)
        self.verb = verb
