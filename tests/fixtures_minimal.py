"""A real interpreter with nothing but click and pydantic: the runner's floor. It stands for the base
install (`pip install .` minus rich) and for the pinned miles image, where the pyxis path runs
`python3 -m runner.cli` from the bundle mounted into the base: click and pydantic come with Ray and
SGLang there, rich may not. (Import `base_install_fixture` into a test module.)"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module", name="base_install")
def base_install_fixture(tmp_path_factory) -> dict[str, str]:
    """{"python": ..., env...}: a venv without pip from this interpreter's base, plus a copy of click."""
    root = tmp_path_factory.mktemp("base-install")
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip",
                    str(root / "venv")], check=True, capture_output=True)
    site = root / "site"
    shutil.copytree(Path(click.__file__).parent, site / "click")
    # pydantic (the recipe.toml schema) and what it imports: the miles image has them (Ray, SGLang)
    import annotated_types
    import pydantic
    import pydantic_core
    import typing_extensions
    import typing_inspection

    for mod in (pydantic, pydantic_core, annotated_types, typing_inspection):
        shutil.copytree(Path(mod.__file__).parent, site / mod.__name__)
    shutil.copy(typing_extensions.__file__, site / "typing_extensions.py")
    py = root / "venv" / "bin" / "python"
    env = {"PATH": f"{root / 'venv' / 'bin'}:/usr/bin:/bin", "PYTHONPATH": f"{ROOT}:{site}", "HOME": str(root),
           "LANG": "C.UTF-8"}
    for module in ("torch", "rich", "ray"):
        probe = subprocess.run([str(py), "-c", f"import {module}"], env=env, capture_output=True)
        assert probe.returncode != 0, f"{module} is importable: not a bare interpreter"
    return {"python": str(py), **env}


def cli(base_install: dict[str, str], *args: str, cwd: Path, **extra: str) -> subprocess.CompletedProcess:
    # wide: the tests read a check's whole detail from one line (the console wraps to the width)
    env = {k: v for k, v in base_install.items() if k != "python"} | {"COLUMNS": "400"}
    env.update(extra)
    return subprocess.run([base_install["python"], "-m", "runner.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)
