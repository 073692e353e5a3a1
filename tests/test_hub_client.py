"""`recipe fetch` and `recipe lock` without their optional part, and against a Hub that never answers.

Both run the real CLI in a subprocess: huggingface_hub is made unimportable there by a
sitecustomize on PYTHONPATH (as in a base install without the `hub` extra), and the silent Hub is
a real socket that accepts connections and never writes a byte.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest
from fixtures_hub import REPO_ROOT, SmallRepos, hub_env, hub_fixture, make_bundle, recipe_cli, small_repos_fixture

from runner.errors import EXIT_PREFLIGHT

BLOCK_HUB = ("import sys\n"
             "sys.modules['huggingface_hub'] = None  # import huggingface_hub -> ModuleNotFoundError, as if absent\n")


@pytest.fixture
def without_hub(tmp_path):
    d = tmp_path / "no_hub"
    d.mkdir()
    (d / "sitecustomize.py").write_text(BLOCK_HUB)
    return f"{d}:{REPO_ROOT}"


@pytest.mark.parametrize("verb", [["fetch", "nemotron3_nano"], ["lock", "nemotron3_nano", "--check"]])
def test_without_the_hub_extra_fetch_and_lock_say_how_to_get_it(without_hub, tmp_path, verb):
    env = {**hub_env_no_hub(tmp_path), "PYTHONPATH": without_hub}
    probe = recipe_cli(["--help"], env)
    assert probe.returncode == 0  # the base install works
    r = recipe_cli([*verb, "--inputs", str(tmp_path / "in")] if verb[0] == "fetch" else verb, env)
    assert r.returncode == EXIT_PREFLIGHT, r.stderr
    line = r.stderr.strip()
    assert "\n" not in line and "Traceback" not in line and "internal error" not in line
    assert f"recipe {verb[0]} needs the optional part 'hub'" in line
    assert "pip install 'recipe-bundle[hub]'" in line and "just fetch" in line


def test_lock_of_the_recipe_files_needs_no_hub(without_hub, tmp_path):
    r = recipe_cli(["lock", "nemotron3_nano", "--recipe-files", "--check"],
                   {**hub_env_no_hub(tmp_path), "PYTHONPATH": without_hub})
    assert r.returncode == 0, r.stderr


def hub_env_no_hub(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "RECIPE_"))}
    env["HF_HOME"] = str(tmp_path / "hf_home")
    return env


class SilentServer:
    """Accepts every connection and never answers (a hung proxy or Hub)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.conns: list[socket.socket] = []
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)  # held open, never read from or written to
            self.accepted += 1

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.fixture
def silent():
    s = SilentServer()
    yield s
    s.close()


@pytest.mark.parametrize("verb", ["lock", "fetch"])
def test_a_hub_that_accepts_and_never_answers_is_a_bounded_one_line_failure(small_repos: SmallRepos, tmp_path,
                                                                          silent, verb):
    bundle = make_bundle(tmp_path, small_repos)
    good = hub_env(small_repos.hub, tmp_path, bundle)
    assert recipe_cli(["lock", "tiny_hub", "--no-image"], good).returncode == 0  # a manifest to fetch by
    env = {**good, "HF_ENDPOINT": silent.url, "RECIPE_HUB_TIMEOUT": "1"}
    args = ["lock", "tiny_hub", "--no-image", "--check"] if verb == "lock" else \
        ["fetch", "tiny_hub", "--inputs", str(tmp_path / "in")]
    t0 = time.monotonic()
    r = recipe_cli(args, env, timeout=90)  # without a bound this waits forever (TimeoutExpired)
    took = time.monotonic() - t0
    assert silent.accepted >= 1  # it did connect: the wait was for an answer
    assert r.returncode == EXIT_PREFLIGHT, r.stderr
    line = r.stderr.strip()
    assert "\n" not in line and "cannot reach the Hub for tiny-org/tiny-model" in line
    assert "no answer within 1 s" in line and "RECIPE_HUB_TIMEOUT" in line
    assert took < 30


def test_a_bad_hub_timeout_setting_is_a_usage_error(small_repos: SmallRepos, tmp_path):
    bundle = make_bundle(tmp_path, small_repos)
    r = recipe_cli(["lock", "tiny_hub", "--no-image"], {**hub_env(small_repos.hub, tmp_path, bundle),
                                                        "RECIPE_HUB_TIMEOUT": "soon"})
    assert r.returncode == 2 and "RECIPE_HUB_TIMEOUT='soon': expected seconds" in r.stderr


__all__ = ["hub_fixture", "small_repos_fixture"]  # fixtures used by name
