"""A parallel layout (TP, PP, CP, EP, ETP, sequence parallel) and its one label.

Kept apart from the divisibility rules (runner/model/parallel.py) so that the recipe's cells can
hold a Layout without the recipe module importing the rules, which read the recipe's model args.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    tp: int
    pp: int
    cp: int
    ep: int
    etp: int
    sp: bool

    def label(self, cp: str | None = None) -> str:
        """`TP2 PP2 CP1 EP2 ETP1 +SP`; `cp` replaces the CP number (the planner lists `CP1/2` for a group)."""
        s = f"TP{self.tp} PP{self.pp} CP{self.cp if cp is None else cp} EP{self.ep} ETP{self.etp}"
        return s + (" +SP" if self.sp else "")
