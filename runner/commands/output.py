"""`--json`: the one flag every verb that prints a result takes to print it as JSON instead.

`--format json|text` (what `show` and `plan` took first) stays as an alias; the two combine so
that `--json` or `--format json` gives JSON, and the command receives one `as_json` flag.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import click


def json_option(help_: str = "Print the result as JSON instead of text.", format_alias: bool = False) -> Callable:
    """Add `--json` (and, with format_alias, `--format text|json`) as one `as_json` parameter."""

    def decorate(f: Callable) -> Callable:
        @functools.wraps(f)
        def wrapper(*args, **kw):
            fmt = kw.pop("fmt", None)
            kw["as_json"] = bool(kw.get("as_json")) or fmt == "json"
            return f(*args, **kw)

        out = click.option("--json", "as_json", is_flag=True, help=help_)(wrapper)
        if format_alias:
            out = click.option("--format", "fmt", type=click.Choice(["text", "json"]), default=None,
                               help="Same as --json when json (kept for older scripts).")(out)
        return out

    return decorate
