"""Issue 19 §3: a run whose log shows miles' plugins failing to load is ended at once, failed/1,
with the line as its reason; any other warning lets it run on."""

from __future__ import annotations

import re
import shlex
import tarfile
import time
from pathlib import Path

import pytest
from conftest import ROOT, clean_env, make_bundle, recipe, required
from test_records import group_ends

from runner.frameworks import adapter, names
from runner.frameworks.miles_log import MILES_PATTERNS
from runner.launch.watch import watcher_for

VENDOR = ROOT.parent / "shared" / "vendor" / "upstream"
# The three warnings as miles writes them (the `%s` filled in), in Python logging's default format.
MILES_LINES = [
    "WARNING:root:miles megatron.bridge plugins failed to load: No module named 'megatron.bridge'",
    "WARNING:miles_plugins.megatron_bridge:miles nemotron_h plugin failed to load: cannot import name 'X'",
    "WARNING:miles_plugins.megatron_bridge.nemotron_h:miles nemotron_h shim _build_bridge_subclass not applied: boom",
]


def bundle_of(tmp_path: Path, framework: str) -> Path:
    root = make_bundle(tmp_path, ROOT / "tests" / "data" / "echo_recipe", "echo")
    toml = root / "recipes" / "echo" / "recipe.toml"
    toml.write_text(toml.read_text().replace('framework = "script"', f'framework = "{framework}"'))
    return root


def run_echo(bundle: Path, runs: Path, **env: str):
    return recipe("run", "echo", "--runs-dir", str(runs), env=clean_env(RECIPE_BUNDLE_ROOT=str(bundle), **env),
                  cwd=bundle, timeout=120)


def run_watched(tmp_path: Path, framework: str, say: str, sleep: int = 0):
    """A script that prints `say` (then sleeps), run as the local backend runs a launch's run.sh, with
    the log watcher of `framework`'s recipes: (exit code, interrupted, matches, script pid)."""
    from runner.launch.script import run_script
    from runner.launch.watch import watcher_for

    script = tmp_path / "run.sh"
    script.write_text(f"#!/usr/bin/env bash\nprintf '%s\\n' {shlex.quote(say)}\nsleep {sleep}\n")
    matches, pids = [], []
    rc, interrupted = run_script(script, {}, tmp_path / "logs" / "run.log", echo=False, on_start=pids.append,
                                 watcher=watcher_for(framework), on_failure=matches.append)
    return rc, interrupted, matches, pids[0]


@pytest.mark.parametrize("line", MILES_LINES)
def test_a_miles_plugin_failure_ends_the_script_with_its_reason(tmp_path, line):
    # The script would sleep 60 s after the line: only the watcher can end it sooner.
    t0 = time.monotonic()
    rc, interrupted, matches, pid = run_watched(tmp_path, "miles", f"(MegatronTrainRayActor pid=42) {line}", 60)
    assert time.monotonic() - t0 < 30 and rc != 0 and not interrupted
    assert len(matches) == 1 and line in matches[0].line and line in matches[0].message()
    assert group_ends(pid)   # the script and its sleep are gone


def test_an_unrelated_warning_lets_the_script_finish(tmp_path):
    # A sibling warning of the same module that does not decide how the model is built.
    rc, _, matches, _ = run_watched(
        tmp_path, "miles", "WARNING:miles_plugins.megatron_bridge:miles Qwen3-VL THD packed mRoPE patch not applied: x")
    assert rc == 0 and matches == []


def test_another_frameworks_run_is_not_watched_for_miles_lines(tmp_path):
    rc, _, matches, _ = run_watched(tmp_path, "trl", MILES_LINES[0])
    assert rc == 0 and matches == []


def vendored_warnings() -> list[str]:
    """The format strings of the three warnings, read from the vendored miles sources."""
    tars = sorted(VENDOR.glob("miles-78527b91*.tar.gz"))
    if not tars:
        if required():
            pytest.fail(f"CI=true but no vendored miles under {VENDOR}")
        pytest.skip(f"no vendored miles under {VENDOR}")
    wanted = {"miles/backends/megatron_utils/__init__.py": "plugins failed to load",
              "miles_plugins/megatron_bridge/__init__.py": "nemotron_h plugin failed to load",
              "miles_plugins/megatron_bridge/nemotron_h.py": "shim %s not applied"}
    found = []
    with tarfile.open(tars[0]) as tf:
        for member in tf.getmembers():
            for suffix, marker in wanted.items():
                if member.name.endswith(suffix):
                    text = tf.extractfile(member).read().decode()
                    found += [m for m in re.findall(r'warning\(\s*"([^"]*)"', text) if marker in m]
    assert len(found) == 3, found
    return found


def test_the_patterns_match_the_warnings_in_the_vendored_miles():
    fmts = vendored_warnings()
    for fmt in fmts:
        # Logged as miles does: each %s filled in (the shim's is the function's name).
        line = "WARNING:x:" + fmt.replace("%s", "_build_bridge_subclass", 1).replace("%s", "some error")
        w = watcher_for("miles")
        assert w.feed(line), f"no pattern matches {line!r}"
    # and every pattern stands for one of them
    for pattern, _ in MILES_PATTERNS:
        assert any(re.search(pattern, f.replace("%s", "_build_bridge_subclass", 1)) for f in fmts), pattern


def test_the_watcher_takes_the_table_it_is_given():
    table = {"other": [(r"fatal thing", "the other framework's reason")]}
    w = watcher_for("other", table)
    assert w.feed("ok line") is None
    m = w.feed("a fatal thing happened")
    assert m and m.reason == "the other framework's reason" and m.line == "a fatal thing happened"
    assert w.feed("a fatal thing again") is None   # once
    assert watcher_for("trl").feed(MILES_LINES[0]) is None
    assert [n for n in names() if adapter(n).FATAL_LOG_LINES] == ["miles"]
