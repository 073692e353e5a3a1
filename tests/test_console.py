"""Issue 21, the console while a run runs: tools' banners only in logs/run.log, no colour off a
terminal or under NO_COLOR, tables and command lists fitted to the width, progress from the events.
Issue 28: the trainer's own output reaches the console only under --verbose.

Runs go through the real CLI on the one-second echo test recipe, with stdout a pipe or a pty."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest
from conftest import RECIPE_BIN, ROOT, clean_env, make_bundle, recipe
from test_records import only_run

from runner.gate import evaluate as gate
from runner.gate import metrics
from runner.gate.expected import load_expected
from runner.launch.progress import Progress, plain_lines

SGR = re.compile(r"\x1b\[[0-9;]*m")   # a colour code
GREEN = r"\033[32mgreen words\033[0m"


@pytest.fixture
def bundle(tmp_path):
    return make_bundle(tmp_path, ROOT / "tests" / "data" / "echo_recipe", "echo")


def env_for(bundle: Path, **extra: str) -> dict[str, str]:
    env = clean_env(RECIPE_BUNDLE_ROOT=str(bundle), **extra)
    env.pop("NO_COLOR", None)
    env.pop("COLUMNS", None)
    env.update(extra)
    return env


def in_pty(args: list[str], env: dict[str, str], cwd: Path, cols: int = 80, timeout: float = 120) -> tuple[int, str]:
    """Run args with stdin/stdout/stderr on a pty of `cols` columns; (exit code, all it wrote)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd, close_fds=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:   # EIO: every writer closed
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=30), out.decode(errors="replace")


def test_piped_run_shows_a_line_per_step_and_no_colour(bundle, tmp_path):
    runs = tmp_path / "runs"
    p = recipe("run", "echo", "--runs-dir", str(runs), "--verbose", cwd=bundle,
               env=env_for(bundle, TEST_SAY=GREEN, TEST_STEP_SLEEP="1.2"))
    assert p.returncode == 0, p.stderr
    assert "\x1b" not in p.stdout + p.stderr
    assert "green words" in p.stdout
    steps = re.findall(r"^recipe: step (\d)/3, elapsed \d+:\d\d, (.*)$", p.stderr, re.M)
    assert [s for s, _ in steps] == ["1", "2", "3"], p.stderr
    assert steps[1][1].startswith("about ") and steps[2][1] == "all steps done"
    log = (only_run(runs) / "logs" / "run.log").read_text()
    assert "green words" in log and "\x1b" not in log   # run.log: colour codes stripped


def test_terminal_run_keeps_a_status_line_and_colour(bundle, tmp_path):
    runs = tmp_path / "runs"
    rc, out = in_pty([*RECIPE_BIN, "run", "echo", "--runs-dir", str(runs), "--verbose"],
                     env_for(bundle, TEST_SAY=GREEN, TEST_STEP_SLEEP="1.2"), bundle)
    assert rc == 0, out
    assert "\x1b[32mgreen words\x1b[0m" in out          # the script's own colour, on a terminal
    assert re.search(r"\r\x1b\[2Krecipe: step [12]/3, elapsed", out), out   # redrawn in place
    assert "recipe: step 3/3, elapsed" in out and "all steps done\r\n" in out  # the last one stays
    drawn = [d for line in out.split("\r\n") for d in line.split("\r\x1b[2K") if d.startswith("recipe: step")]
    assert drawn and all(len(d) <= 80 for d in drawn), drawn   # the status line never wraps


def test_no_color_is_honoured_on_a_terminal(bundle, tmp_path):
    runs = tmp_path / "runs"
    rc, out = in_pty([*RECIPE_BIN, "run", "echo", "--runs-dir", str(runs), "-v"],
                     env_for(bundle, TEST_SAY=GREEN, NO_COLOR="1"), bundle)
    assert rc == 0, out
    assert "green words" in out and not SGR.search(out), out
    # the preflight table: coloured on a terminal, plain under NO_COLOR
    rc, coloured = in_pty([*RECIPE_BIN, "run", "echo", "--dry-run"], env_for(bundle), bundle)
    assert rc == 0 and SGR.search(coloured) and "ok  lint" in SGR.sub("", coloured), coloured
    rc, plain = in_pty([*RECIPE_BIN, "run", "echo", "--dry-run"], env_for(bundle, NO_COLOR="1"), bundle)
    assert rc == 0 and "ok  lint" in plain and not SGR.search(plain), plain


def test_a_tools_banner_reaches_run_log_only(bundle, tmp_path):
    runs = tmp_path / "runs"
    banner = r"\033[1m--------------------\nRay runtime started.\n--------------------\033[0m"
    p = recipe("run", "echo", "--runs-dir", str(runs), cwd=bundle, env=env_for(bundle, TEST_TOOL_SAY=banner))
    assert p.returncode == 0, p.stderr
    assert "Ray runtime started" not in p.stdout + p.stderr
    log = (only_run(runs) / "logs" / "run.log").read_text()
    assert "\nRay runtime started.\n" in log and "\x1b" not in log
    p = recipe("run", "echo", "--runs-dir", str(runs), "--verbose", cwd=bundle,
               env=env_for(bundle, TEST_TOOL_SAY=banner))
    assert "Ray runtime started" not in p.stdout + p.stderr   # not even under --verbose
    assert "echo recipe: seed 7" in p.stdout                  # while the trainer's lines show


# What a trainer prints that is not the runner's: TRL's per-step dict, a tqdm bar, library warnings.
CHATTER = (r"{'loss': '0', 'grad_norm': '6.17'}\n 10%|#         | 1/10 [00:00<00:04]\r"
           r"\n[transformers] causal_conv1d_fn is falling back to its reference PyTorch implementation"
           r"\nx.py:1: FutureWarning: deprecated")


def test_the_trainers_chatter_reaches_run_log_only(bundle, tmp_path):
    runs = tmp_path / "runs"
    p = recipe("run", "echo", "--runs-dir", str(runs), cwd=bundle,
               env=env_for(bundle, TEST_SAY=CHATTER + r"\n[recipe 12:00:00] a runner line"))
    assert p.returncode == 0, p.stderr
    shown = p.stdout + p.stderr
    for chatter in ("'loss'", "1/10", "falling back", "FutureWarning", "echo recipe: seed 7"):
        assert chatter not in shown, shown
    assert "[recipe 12:00:00] a runner line" in p.stdout      # the runner's own lines of the script
    assert "recipe: step 3/3" in p.stderr and "succeeded" in p.stderr   # its progress and its verdict
    log = (only_run(runs) / "logs" / "run.log").read_text()
    assert "'grad_norm': '6.17'" in log and "falling back" in log and "FutureWarning" in log


def test_a_failed_quiet_run_shows_the_end_of_its_log(bundle, tmp_path):
    # The trainer's traceback was not streamed: its last lines come with the verdict.
    runs = tmp_path / "runs"
    p = recipe("run", "echo", "--runs-dir", str(runs), cwd=bundle,
               env=env_for(bundle, TEST_SAY=r"Traceback (most recent call last):\nValueError: \aboom",
                           TEST_EXIT="7"))
    assert p.returncode == 1, p.stderr
    assert "the last " in p.stderr and "ValueError: \\x07boom" in p.stderr, p.stderr   # escaped
    assert "run script exited 7" in p.stderr


def test_the_gate_table_fits_80_columns(monkeypatch):
    expected = load_expected(ROOT / "recipes" / "nemotron3_nano_tiny" / "expected_metrics.toml")
    result = gate.evaluate(expected, metrics.Series())   # nothing measured: no rule plainly passes
    wide = gate.format_table(result, columns=400)
    assert wide.splitlines()[0].split() == ["rule", "observed", "bound", "verdict", "why"]
    assert max(len(line) for line in wide.splitlines()) > 120   # the rules' why texts are long
    monkeypatch.setenv("COLUMNS", "80")
    table = gate.format_table(result)
    rows = table.split("\ngate ")[0].splitlines()
    assert rows[0].split() == ["rule", "observed", "bound", "verdict"]   # too narrow for a why column
    assert max(len(line) for line in rows) <= 80, table
    firsts, whys = [], []   # each rule's first line, then its why under it, word for word
    for line in rows[1:]:
        if not line[:1].isspace():
            firsts.append(line)
            whys.append("")
        elif line.startswith("    why: ") or whys[-1]:
            whys[-1] += " " + line.strip().removeprefix("why: ")
    assert len(firsts) == len(result.rows), table
    for r, first, why in zip(result.rows, firsts, whys, strict=True):
        assert first.startswith(r.rule.name + " ")
        assert " ".join(why.split()) == " ".join(r.why_text().split())


def test_a_narrow_gate_table_gives_the_why_of_rules_that_did_not_plainly_pass(tmp_path):
    from runner.gate.rules import Verdict

    expected = load_expected(ROOT / "recipes" / "nemotron3_nano_tiny" / "expected_metrics.toml")
    result = gate.evaluate(expected, metrics.Series())
    result.rows[0].verdict = Verdict.PASS   # a plain pass: its why stays in gate.json
    table = gate.format_table(result, columns=80)
    assert table.count("\n    why: ") == len(result.rows) - 1, table
    head = table.split("\n" + result.rows[1].rule.name)[0]   # the header and the first rule's lines
    assert "why:" not in head and "why: " + " ".join(result.rows[1].why_text().split()[:3]) in " ".join(table.split())


def test_a_refusal_elides_its_commands_and_names_the_full_text(tmp_path):
    cache = tmp_path / "cache"
    p = recipe("run", "nemotron3_nano", cwd=tmp_path,
               env=clean_env(COLUMNS="80", XDG_CACHE_HOME=str(cache), RECIPE_RUNS_DIR=str(tmp_path / "runs")))
    assert p.returncode == 3, p.stderr
    shown = p.stderr.split("It would have run:\n")[1].split("\n\n")[0].splitlines()
    commands = [line for line in shown if line.startswith("  ")]
    assert commands and all(len(line) <= 80 for line in commands), shown
    assert any(line.endswith("…") for line in commands)
    m = re.search(r"\(full commands:\s+(\S+)\)", p.stderr)
    assert m, p.stderr
    full = Path(m.group(1)).read_text().splitlines()
    assert len(full) == len(commands) and max(len(c) for c in full) > 80
    for line, cmd in zip(commands, full, strict=True):
        assert cmd.startswith(line.strip().rstrip("…"))
    assert str(cache) in m.group(1)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # no run dir made


def test_progress_counts_steps_as_they_are_written(tmp_path):
    events = tmp_path / "events"
    events.mkdir()
    now = [100.0]
    prog = Progress(events, total=4, now=lambda: now[0])
    assert not prog.poll() and prog.text() == "step 0/4, elapsed 0:00, estimate after two steps"

    def event(step: int) -> str:
        return json.dumps({"type": "metric", "metrics": {"train/step": step, "train/loss": 1.0}}) + "\n"

    f = (events / "main.jsonl").open("w")
    now[0] = 130.0           # 30 s of start-up, then the first step
    f.write(event(0))
    f.write(event(1)[:10])   # half a line: not counted until it is whole
    f.flush()
    assert prog.poll() and prog.done == 1
    # the first step's 30 s are mostly start-up: no estimate rests on them
    assert prog.text() == "step 1/4, elapsed 0:30, estimate after the next step"
    now[0] = 140.0
    f.write(event(1)[10:])
    f.flush()
    assert prog.poll() and prog.done == 2
    assert prog.text() == "step 2/4, elapsed 0:40, about 0:20 left"   # 10 s a step since the first
    (events / "metrics.jsonl").write_text(event(9))    # not an event file
    assert not prog.poll() and prog.done == 2
    f.write(event(3))
    f.close()
    assert prog.poll() and prog.text().endswith("all steps done")


def test_progress_counts_a_step_when_it_is_trained_not_when_it_is_generated(tmp_path):
    """The tiny recipe's events: a rollout generated is shown beside the steps trained, and with two
    optimizer steps per rollout a step is done at the second."""
    events = tmp_path / "events"
    events.mkdir()
    prog = Progress(events, total=3, steps_per_rollout=2)
    with (events / "rollout_manager.jsonl").open("w") as f:
        f.write(json.dumps({"type": "metric", "metrics": {"rollout/step": 0}}) + "\n")
    assert not prog.poll() and prog.done == 0 and prog.generated == 1
    assert prog.text().startswith("step 0/3 (step 1 generated), elapsed ")
    with (events / "actor_cell0_rank0.jsonl").open("w") as f:
        f.write(json.dumps({"type": "metric", "metrics": {"train/step": 0}}) + "\n")
        f.flush()
        assert not prog.poll() and prog.done == 0      # one optimizer step of two
        f.write(json.dumps({"type": "metric", "metrics": {"train/step": 1}}) + "\n")
    assert prog.poll() and prog.done == 1 and prog.text().startswith("step 1/3, elapsed ")


# Megatron's save lines as radixark/Megatron-LM megatron/training/checkpointing.py:540-541 and :742-745
# @37f91617 print them (print_rank_0, no logging prefix), forwarded by Ray from the train actor
def _save_start(it: int) -> str:
    return (f"(MegatronTrainRayActor pid=2301) [2026-08-21 10:16:41.000123] saving checkpoint "
            f"at iteration {it:7d} to /out/checkpoints in torch_dist format\n")


def _save_end(it: int) -> str:
    return (f"(MegatronTrainRayActor pid=2301)   [2026-08-21 10:17:50.000456] successfully saved "
            f"checkpoint from iteration {it:7d} to /out/checkpoints [ t 1/2, p 1/1 ]\n")


def test_progress_of_a_miles_log_shows_training_and_the_final_save(tmp_path):
    """A miles run's log (tests/data/stdout/healthy: miles' `perf K`, `rollout K` and `step K` lines as
    Ray forwards them): the count follows the train steps, and "all steps done" waits for the end
    of the final checkpoint, which for the 30B is ~412 GiB."""
    lines = (ROOT / "tests" / "data" / "stdout" / "healthy" / "logs" / "run.log").read_text().splitlines(True)
    log = tmp_path / "logs" / "run.log"
    log.parent.mkdir()
    prog = Progress(tmp_path / "events", total=10, log=log, final_save=True)
    f = log.open("w")

    def upto(pattern: str) -> None:   # the fixture's lines up to and including the first match
        while lines:
            line = lines.pop(0)
            f.write(line)
            if re.search(pattern, line):
                break
        f.flush()

    upto(r" - rollout 3: \{")              # rollout 3 generated, its training not yet logged
    prog.poll()
    assert (prog.done, prog.generated) == (3, 4) and prog.text().startswith("step 3/10 (step 4 generated), ")
    f.write(_save_start(4))
    f.flush()
    upto(r" - step 3: \{")
    prog.poll()
    assert prog.text().endswith("saving the checkpoint of step 5")
    f.write(_save_end(4))
    upto(r" - step 9: \{")                  # the last train step
    prog.poll()
    assert prog.done == 10 and not prog.finished
    assert prog.text().endswith("all steps trained, final checkpoint not yet saved")
    f.write(_save_start(9))
    f.flush()
    prog.poll()
    assert prog.text().endswith("saving the final checkpoint")
    shown: list[str] = []
    plain_lines(prog, shown.append)
    plain_lines(prog, shown.append)        # off a terminal: one line when the save starts, not one a poll
    assert [t for t in shown if t.endswith("saving the final checkpoint")] == [shown[-1]]
    f.write(_save_end(9)[:40])              # half a line: the save has not ended
    f.flush()
    prog.poll()
    assert not prog.finished
    f.write(_save_end(9)[40:])
    f.close()
    prog.poll()
    assert prog.finished and prog.text().endswith("all steps done")


def test_progress_of_a_launch_knows_its_steps_per_rollout_and_final_save(tmp_path):
    from runner.plan.options import RunOptions
    from runner.plan.render import build_launch
    from runner.recipe import load_recipe

    def of(name: str) -> Progress:
        opts = RunOptions.resolve(load_recipe(name), {"inputs_dir": tmp_path / "in"})
        return Progress.of(build_launch(opts, run_id="r", run_dir=tmp_path / name, backend="local"))

    nano, tiny = of("nemotron3_nano"), of("nemotron3_nano_tiny")
    # 32 prompts x 4 samples / global batch 128 (recipes/nemotron3_nano/expected_metrics.toml)
    assert (nano.steps_per_rollout, nano.final_save, nano.total) == (1, True, 10)
    assert nano.log == tmp_path / "nemotron3_nano" / "logs" / "run.log"
    assert tiny.final_save is False   # its TRL checkpoints (for resume) log no save line progress could wait on


def test_steps_landing_within_one_poll_still_get_a_line_each(bundle, tmp_path):
    """The echo recipe without pauses writes all three steps at once: three lines all the same."""
    p = recipe("run", "echo", "--runs-dir", str(tmp_path / "runs"), cwd=bundle, env=env_for(bundle))
    assert p.returncode == 0, p.stderr
    assert re.findall(r"^recipe: step (\d)/3, elapsed", p.stderr, re.M) == ["1", "2", "3"], p.stderr
