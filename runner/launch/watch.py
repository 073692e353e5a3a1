"""Watch a run's job log for lines that mean the run is already lost, and say why.

Some frameworks log a fatal problem as a warning and carry on: miles imports its Megatron-Bridge
plugins inside try/except and only logs when they fail, after which the model is built by the
stock bridge (another router scaling, or no MoE at all). Such a run would burn hours
and then look like a numerics problem. The runner ends it at the first such line.

The patterns belong to the framework, not to the runner: each framework adapter
(runner/frameworks/) holds its (pattern, reason) table as FATAL_LOG_LINES; the watcher only takes
the table it is given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from runner.frameworks.base import fatal_reason

MAX_LINE = 400  # the matched line as kept in run.json


@dataclass(frozen=True)
class Match:
    reason: str    # what it means, one line
    line: str      # the log line that matched (clipped)
    pattern: str

    def message(self) -> str:
        return f"{self.reason} (log: {self.line})"

    def as_dict(self) -> dict[str, str]:
        return {"reason": self.reason, "line": self.line, "pattern": self.pattern}


class Watcher:
    """Feed it log lines; the first line matching a pattern is returned as a Match, once."""

    def __init__(self, patterns: list[tuple[str, str]]) -> None:
        self.patterns = [(re.compile(p), reason) for p, reason in patterns]  # compiled once, for every line
        self.matched: Match | None = None

    def feed(self, line: str) -> Match | None:
        if self.matched or not self.patterns:
            return None
        found = fatal_reason(self.patterns, line)
        if found is None:
            return None
        text = line.strip()
        if len(text) > MAX_LINE:
            text = text[: MAX_LINE - 1] + "…"
        self.matched = Match(found[1], text, found[0].pattern)
        return self.matched


def watcher_for(framework: str, table: dict[str, list[tuple[str, str]]] | None = None) -> Watcher:
    """The watcher for a recipe's framework: its adapter's FATAL_LOG_LINES, or `table`'s entry if given."""
    if table is not None:
        return Watcher(table.get(framework, []))
    from runner.frameworks import adapter

    return Watcher(list(adapter(framework).FATAL_LOG_LINES))
