"""Watch a run's job log for lines that mean the run is already lost, and say why.

Some frameworks log a fatal problem as a warning and carry on: miles imports its Megatron-Bridge
plugins inside try/except and only logs when they fail, after which the model is built by the
stock bridge (for Nemotron-H: other router scaling, or no MoE at all). Such a run would burn hours
and then look like a numerics problem. The runner ends it at the first such line.

The patterns belong to the framework, not to the runner: FRAMEWORK_PATTERNS maps a recipe's
`framework` (recipe.toml) to its (pattern, reason) table. A framework adapter can own its table;
the watcher only takes the table it is given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# -- miles ---------------------------------------------------------------------------------------
# Quoted from miles 78527b9102b3a5f15891128cbec3ac6c2dc4089e (github.com/radixark/miles):
#   miles/backends/megatron_utils/__init__.py:23-26
#       logging.warning("miles megatron.bridge plugins failed to load: %s", _e)
#   miles_plugins/megatron_bridge/__init__.py:74-77
#       logger.warning("miles nemotron_h plugin failed to load: %s", _e)
#   miles_plugins/megatron_bridge/nemotron_h.py:211-217 (fn is _build_bridge_subclass)
#       logger.warning("miles nemotron_h shim %s not applied: %s", fn.__name__, e)
MILES_PATTERNS: list[tuple[str, str]] = [
    (r"miles megatron\.bridge plugins failed to load: ",
     "miles' Megatron-Bridge plugins failed to load: the model would be built without miles' bridges"),
    (r"miles nemotron_h plugin failed to load: ",
     "miles' Nemotron-H bridge plugin failed to load: the model would be built by the stock bridge"),
    (r"miles nemotron_h shim \S+ not applied: ",
     "miles' Nemotron-H bridge subclass was not registered: the model would be built by the stock bridge"),
]

FRAMEWORK_PATTERNS: dict[str, list[tuple[str, str]]] = {
    "miles": MILES_PATTERNS,
}

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
        self.patterns = [(re.compile(p), p, reason) for p, reason in patterns]
        self.matched: Match | None = None

    def feed(self, line: str) -> Match | None:
        if self.matched or not self.patterns:
            return None
        for rx, pattern, reason in self.patterns:
            if rx.search(line):
                text = line.strip()
                if len(text) > MAX_LINE:
                    text = text[: MAX_LINE - 1] + "…"
                self.matched = Match(reason, text, pattern)
                return self.matched
        return None


def watcher_for(framework: str, table: dict[str, list[tuple[str, str]]] | None = None) -> Watcher:
    """The watcher for a recipe's framework (no patterns, nothing ever matches, for the others)."""
    return Watcher((FRAMEWORK_PATTERNS if table is None else table).get(framework, []))
