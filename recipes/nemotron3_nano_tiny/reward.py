"""Rule-based reward of the tiny recipe: exact arithmetic answers, with credit for a well-formed number.

A randomly initialised policy almost never writes the right answer, so an exact-match reward alone
would give every GRPO group zero variance (and zero advantage). The format credit gives groups a
spread from step 0, the way the 30B's `deepscaler` reward rewards a well-formed final answer.
"""

from __future__ import annotations

import re

CORRECT = 1.0
WELL_FORMED = 0.25
_INTEGER = re.compile(r"-?[0-9]+")


def score(response: str, label: str) -> float:
    """1.0 for exactly the label; 0.25 for another integer (digits, optional leading '-'); else 0."""
    text = response.strip()
    if text == label.strip():
        return CORRECT
    if _INTEGER.fullmatch(text):
        return WELL_FORMED
    return 0.0


def arithmetic_reward(completions: list[str], label: list[str], **_: object) -> list[float]:
    """TRL reward-function signature: one float per completion; `label` is the data set column."""
    return [score(c, lab) for c, lab in zip(completions, label, strict=True)]


def all_zero_fraction(rewards: list[float], group_size: int) -> float:
    """Share of prompt groups whose every sample scored 0 (miles' rollout/zero_std/all_zero_percentage)."""
    if group_size < 1 or len(rewards) % group_size:
        raise ValueError(f"{len(rewards)} rewards do not split into groups of {group_size}")
    groups = [rewards[i:i + group_size] for i in range(0, len(rewards), group_size)]
    return sum(all(r == 0.0 for r in g) for g in groups) / len(groups)
