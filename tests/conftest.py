"""Shared test helpers: the repository root, and running the real `recipe` CLI as a subprocess."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RECIPE_BIN = [sys.executable, "-m", "runner.cli"]


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without RECIPE_* / secrets, so tests see the defaults."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RECIPE_") and k not in ("WANDB_API_KEY", "HF_TOKEN", "NCCL_NVLS_ENABLE")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


@functools.cache
def _script_env(name: str) -> tuple[tuple[str, str], ...]:
    p = recipe("plan", name, "--format", "json")
    assert p.returncode == 0, p.stderr
    return tuple(json.loads(p.stdout)["script_env"].items())


def plan_env(name: str, **extra: str) -> dict[str, str]:
    """clean_env() with the RECIPE_* values `recipe run` gives NAME's run script (from recipe.toml,
    through its plan), then `extra`: a run script run by hand the way the runner runs it."""
    return clean_env(**{**dict(_script_env(name)), **extra})


def recipe(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `recipe ARGS...` for real and capture its output."""
    return subprocess.run([*RECIPE_BIN, *args], env=env or clean_env(), cwd=cwd or ROOT, capture_output=True,
                          text=True, timeout=timeout, check=False)


def required() -> bool:
    """Under CI (CI=true) a test that cannot run fails instead of skipping: CI installs everything."""
    return os.environ.get("CI") == "true"


def importorskip(module: str):
    """pytest.importorskip, except that under CI a missing module (ray, trl, torch...) fails the test."""
    if required():
        try:
            return __import__(module)
        except ImportError as e:
            pytest.fail(f"CI=true but {module} is not importable ({e}); install the 'tiny' extra")
    return pytest.importorskip(module)


def make_bundle(tmp_path: Path, recipe_src: Path, name: str) -> Path:
    """A bundle root under tmp_path: the shared launch lib plus one test recipe, as recipes/<name>."""
    import shutil

    root = tmp_path / "bundle"
    shutil.copytree(ROOT / "recipes" / "lib", root / "recipes" / "lib")
    shutil.copytree(recipe_src, root / "recipes" / name)
    return root


def load_tiny_module(name: str):
    """Import recipes/nemotron3_nano_tiny/<name>.py (the recipe's own code is no package)."""
    import importlib.util

    path = ROOT / "recipes" / "nemotron3_nano_tiny" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"tiny_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def run_recipe():
    return recipe


@pytest.fixture(autouse=True)
def _no_recipe_env(monkeypatch):
    for k in list(os.environ):
        if k.startswith(("RECIPE_REQUIRE_", "RECIPE_TEST_")):  # switches of the test suite itself
            continue
        if k.startswith("RECIPE_") or k in ("WANDB_API_KEY", "HF_TOKEN", "NCCL_NVLS_ENABLE"):
            monkeypatch.delenv(k, raising=False)
