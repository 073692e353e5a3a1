"""The steps a gated metric must have, without ever listing 0..K.

A metric must have a value at every step its step key reached in the run, and at 0..K for a
completion rule `step = K` on that key. K comes from a file anyone can edit (`step = 1000000000000`),
so 0..K is kept as a bound, never as a set: every operation here costs at most the number of values
the run actually logged.

    steps = ExpectedSteps(reached=(0, 1, 2, 5), upto=9)
    len(steps)                -> 10 (0..9; 5 lies inside)
    steps.present(values)     -> the expected steps that have a value, sorted
    steps.missing(values)     -> [(first, last), ...] runs of expected steps without a value
    steps.head(3), steps.tail(3)
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass


@dataclass(frozen=True)
class ExpectedSteps:
    reached: tuple[int, ...] = ()   # sorted, distinct: steps the metric's step key reached
    upto: int = -1                  # every step 0..upto is expected too; -1 for none

    def extra(self) -> list[int]:
        """Reached steps outside 0..upto, sorted."""
        return [s for s in self.reached if s < 0 or s > self.upto]

    def __len__(self) -> int:
        return (self.upto + 1) + len(self.extra())

    def __bool__(self) -> bool:
        return self.upto >= 0 or bool(self.reached)

    def __contains__(self, step: int) -> bool:
        if 0 <= step <= self.upto:
            return True
        i = bisect.bisect_left(self.reached, step)
        return i < len(self.reached) and self.reached[i] == step

    def first(self) -> int:
        return min(self.head(1))

    def last(self) -> int:
        return max(self.tail(1))

    def head(self, n: int) -> list[int]:
        """The first n expected steps (fewer if there are fewer)."""
        extra = self.extra()
        below = [s for s in extra if s < 0]
        above = [s for s in extra if s > self.upto]
        out = below[:n]
        out += range(0, min(n - len(out), self.upto + 1)) if len(out) < n else []
        out += above[: n - len(out)]
        return list(out)

    def tail(self, n: int) -> list[int]:
        """The last n expected steps (fewer if there are fewer)."""
        extra = self.extra()
        below = [s for s in extra if s < 0]
        above = [s for s in extra if s > self.upto]
        out = above[-n:] if n else []
        room = n - len(out)
        if room > 0 and self.upto >= 0:
            out = list(range(max(0, self.upto + 1 - room), self.upto + 1)) + out
        room = n - len(out)
        if room > 0:
            out = below[-room:] + out
        return out

    def all(self, limit: int) -> list[int] | None:
        """Every expected step, or None if there are more than `limit`."""
        return self.head(len(self)) if len(self) <= limit else None

    def present(self, values: dict[int, float]) -> list[int]:
        """The expected steps that have a value, sorted."""
        return sorted(s for s in values if s in self)

    def missing(self, values: dict[int, float]) -> list[tuple[int, int]]:
        """Runs (first, last) of expected steps without a value, sorted."""
        runs: list[tuple[int, int]] = []
        have = sorted(s for s in values if 0 <= s <= self.upto)
        start = 0
        for s in have:
            if s > start:
                runs.append((start, s - 1))
            start = s + 1
        if start <= self.upto:
            runs.append((start, self.upto))
        runs += [(s, s) for s in self.extra() if s not in values]
        return sorted(runs)


def count(runs: list[tuple[int, int]]) -> int:
    return sum(b - a + 1 for a, b in runs)
