"""recipes/lib/ray_node.sh checks every number it is given before bash arithmetic sees it.

Bash evaluates the text of a variable inside $((...)): `a[$(cmd)]` there runs cmd. The worker's
wait for its head computes a deadline from RECIPE_RAY_READY_TIMEOUT; these values used to reach
that arithmetic unchecked. No Ray is started: the checks come first.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT

RAY_NODE = ROOT / "recipes" / "lib" / "ray_node.sh"


def ray_node(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith("RECIPE_")}
    e.update(env)
    return subprocess.run(["bash", str(RAY_NODE), *args], env=e, cwd=tmp_path, capture_output=True, text=True,
                          timeout=30)


@pytest.mark.parametrize("value", ["a[$(touch pwned)]", "BASH_VERSINFO[$(touch pwned)]", "-1", "1e3", " 5"])
def test_a_worker_refuses_a_timeout_that_is_not_a_number(tmp_path, value):
    # The head address is unreachable: the old code waited (deadline from the bad value) and ran touch.
    p = ray_node(tmp_path, "worker", "127.0.0.2", "0", "127.0.0.1:1", RECIPE_RAY_READY_TIMEOUT=value)
    assert p.returncode == 2 and "RECIPE_RAY_READY_TIMEOUT must be an integer" in p.stderr, p.stderr
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("args, words", [
    (["wait", "127.0.0.1:1", "a[$(touch pwned)]", "0"], "NODES must be an integer"),
    (["wait", "127.0.0.1:1", "2", "$(touch pwned)"], "TOTAL_GPUS must be an integer"),
    (["head", "127.0.0.2", "x[$(touch pwned)]"], "NUM_GPUS must be an integer"),
    (["worker", "127.0.0.2", "0", "$(touch pwned)"], "HEAD_ADDRESS must be HOST:PORT"),
])
def test_arguments_are_checked(tmp_path, args, words):
    p = ray_node(tmp_path, *args)
    assert p.returncode == 2 and words in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not (tmp_path / "pwned").exists()


def test_a_port_that_is_not_a_number_is_refused(tmp_path):
    p = ray_node(tmp_path, "head", "127.0.0.2", "0", RECIPE_RAY_PORT="6379; touch pwned")
    assert p.returncode == 2 and "RECIPE_RAY_PORT must be an integer" in p.stderr
    assert not (tmp_path / "pwned").exists()
