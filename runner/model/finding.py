"""One lint finding: a severity, the rule's name, a sentence, and the flag/field/values it is about."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Finding:
    severity: str  # "error" | "warning" | "note"
    rule: str
    message: str
    flag: str | None = None
    field: str | None = None
    expected: Any = None
    actual: Any = None
