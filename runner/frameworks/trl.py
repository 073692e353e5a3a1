"""The TRL adapter: a recipe whose trainer is Hugging Face TRL on the host's Python (no image).

Its model is built from config.json by transformers itself, so there are no trainer model flags
to lint; its one framework check is that the job's interpreter has the recipe's packages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.frameworks.base import Framework

if TYPE_CHECKING:
    from runner.checks import Check
    from runner.plan.resolve import Launch


class Trl(Framework):
    NAME = "trl"
    PREFLIGHT = ("packages",)

    def preflight_check(self, name: str, launch: Launch) -> Check | None:
        if name == "packages":
            from runner.frameworks.packages import check_packages

            return check_packages(launch.recipe, launch.plan)
        return None


ADAPTER = Trl()
