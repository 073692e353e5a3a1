"""The unit of a metric, for axis labels: from the metric's name, as miles and TRL name them.

Only names whose unit is certain by construction are listed; anything else is labelled by its
name alone rather than with a guessed unit.
"""

from __future__ import annotations

import re

# (pattern on the metric name, unit) - first match wins
UNITS: tuple[tuple[str, str], ...] = (
    (r"(^|/)step_time$", "s"),                              # wall seconds per step
    (r"tokens_per_gpu_per_sec$", "tokens/s per GPU"),
    (r"tok_per_s$", "tokens/s"),
    (r"response_len(/|$)", "tokens"),
    (r"clipfrac$", "fraction of tokens"),
    (r"logprob_abs_diff$", "nats"),                         # |log p - log q|, natural logarithms
    (r"(^|/)ppo_kl$", "nats"),
)


def unit_of(metric: str) -> str | None:
    return next((unit for pattern, unit in UNITS if re.search(pattern, metric)), None)


def axis_label(metric: str) -> str:
    unit = unit_of(metric)
    return f"{metric} ({unit})" if unit else metric
