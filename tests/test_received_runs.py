"""Issue 26: a received run directory is data, never code or control.

Each test plants one thing in a run directory as a colleague could send it (control sequences in
run.json and in metric names, a `report` symlink, a mathtext run id, a 5,000-digit integer, an
environment name with `=`, gate counts, run.json as a symlink to /dev/zero or a FIFO, a 1.2 MB log
line) and runs the real CLI on it: one line and exit 2 where the input is malformed, never a
traceback, a hang or a byte of terminal control on the console.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from conftest import ROOT, clean_env, recipe
from test_records import env_for, only_run, run_echo

from runner.errors import EXIT_USAGE

EVENTS = ROOT / "tests" / "data" / "events"
# A window title (OSC 0, BEL- and ST-terminated), clear screen and cursor home (CSI), a row moved up
# (CSI 1A), the 8-bit CSI and OSC (C1: 0x9b, 0x9d), a carriage return and a bidi override.
EVIL = "\x1b]0;PWNED\x07\x1b]8;;http://x\x1b\\\x1b[2J\x1b[H\x1b[1A\x9b2J\x9d0;t\x07\r\u202e"


def nano_files() -> dict[str, str]:
    from runner.recipe import load_recipe
    from runner.records.record import recipe_file_hashes

    return recipe_file_hashes(load_recipe("nemotron3_nano"))


def make_run(where: Path, name: str = "run", **fields) -> Path:
    from runner.records.record import recipe_digest

    d = where / name
    shutil.copytree(EVENTS / "healthy", d / "events")
    files = nano_files()
    rec = {"schema": 1, "status": "succeeded", "exit_code": 0, "recipe": "nemotron3_nano",
           "run_id": f"20260821T100000Z-{name}", "cell": "default", "backend": "local",
           "recipe_digest": recipe_digest(files), "recipe_files": files, "started_at": "2026-08-21T10:00:00+00:00",
           "preflight": [{"name": "gpus", "status": "ok"}], "preflight_skipped": [], **fields}
    (d / "run.json").write_text(json.dumps(rec))
    (d / "logs").mkdir()
    (d / "logs" / "run.log").write_text("step 1\n")
    return d


def unsafe(text: str) -> list[str]:
    """Characters a terminal would act on: anything not printable except newline."""
    return sorted({repr(c) for c in text if not c.isprintable() and c != "\n"})


def one_line(p) -> str:
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("recipe: error: "), p.stderr
    assert "internal error" not in p.stderr and "Traceback" not in p.stderr
    return p.stderr


@pytest.fixture
def bundle(tmp_path) -> dict[str, str]:
    root = tmp_path / "bundle"
    shutil.copytree(ROOT / "recipes", root / "recipes", ignore=shutil.ignore_patterns("reference_metrics.jsonl"))
    return clean_env(RECIPE_BUNDLE_ROOT=str(root), COLUMNS="100")


# -- terminal control -------------------------------------------------------------------------------

def planted_run(tmp_path: Path) -> Path:
    """Control sequences in run.json strings, in a metric name and value of the events, in run.log and
    in the directory's own name."""
    d = make_run(tmp_path / "runs", "run" + EVIL.replace("\x1b\\", "").replace("/", ""),
                 cell="default" + EVIL, status="succeeded" + EVIL, image="img" + EVIL,
                 job_env={"NCCL_DEBUG": "INFO" + EVIL}, argv=["--seed", "1" + EVIL],
                 gate={"status": "failed" + EVIL, "counts": {"fail" + EVIL: 1}})
    ev = d / "events" / "main.jsonl"
    ev.write_text(ev.read_text() + json.dumps({"type": "metric", "source": {"component": "main" + EVIL},
                                               "metrics": {"rollout/step": 1, "perf/x" + EVIL: 1.0,
                                                           "rollout/raw_reward": "not a number" + EVIL}}) + "\n")
    (d / "logs" / "run.log").write_text("line 1" + EVIL + "\nline 2\n")
    return d


def test_nothing_printed_from_a_record_or_events_controls_the_terminal(tmp_path, bundle):
    d = planted_run(tmp_path)
    other = make_run(tmp_path / "runs", "base")
    runs = tmp_path / "runs"
    for args in (("runs", "--runs-dir", str(runs)), ("runs", "--runs-dir", str(runs), "--json"),
                 ("diff", str(other), str(d)), ("diff", str(other), str(d), "--json"),
                 ("check", str(d)), ("check", str(d), "--json"), ("logs", str(d)),
                 ("export", str(d), "--tensorboard", str(tmp_path / "tb")), ("bless", str(d))):
        p = recipe(*args, env=bundle)
        assert "internal error" not in p.stderr, (args, p.stderr)
        assert unsafe(p.stdout) == [] and unsafe(p.stderr) == [], (args, p.stdout + p.stderr)
    # escaped, not dropped: the reader sees that something was planted
    p = recipe("runs", "--runs-dir", str(runs), env={**bundle, "COLUMNS": "400"})
    assert "\\x1b]0;PWNED" in p.stdout, p.stdout
    assert "line 1\\x1b]0;PWNED" in recipe("logs", str(d), env=bundle).stdout


def test_safe_text_escapes_every_control_and_keeps_what_is_printable():
    from runner.console import safe

    assert safe("plain text: ünïcödé 数据") == "plain text: ünïcödé 数据"
    assert safe("a\x1b]0;t\x07b") == "a\\x1b]0;t\\x07b"
    assert safe("\x9b2J\x9d\x7f\u202e\r\n\t") == "\\x9b2J\\x9d\\x7f\\u202e\\r\\n\\t"
    assert safe("a\nb\tc\rd", keep="\n\t") == "a\nb\tc\\rd"
    assert unsafe(safe(EVIL)) == []


# -- report --------------------------------------------------------------------------------------

def test_report_refuses_a_report_symlink_out_of_the_run(tmp_path):
    pytest.importorskip("matplotlib")
    d = make_run(tmp_path, "run")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "index.html").write_text("precious")
    (d / "report").symlink_to(elsewhere)
    p = recipe("report", str(d))
    assert p.returncode == EXIT_USAGE and "report" in one_line(p)
    assert (elsewhere / "index.html").read_text() == "precious" and list(elsewhere.iterdir()) == [
        elsewhere / "index.html"]


def test_report_writes_through_no_planted_link_inside_its_directory(tmp_path):
    pytest.importorskip("matplotlib")
    d = make_run(tmp_path, "run")
    target = tmp_path / "target"
    target.write_text("precious")
    (d / "report").mkdir()
    from runner.gate.report import png_name
    for name in ("index.html", png_name("train/grad_norm"), f".{png_name('train/grad_norm')}.tmp"):
        (d / "report" / name).symlink_to(target)
    p = recipe("report", str(d))
    assert p.returncode == 0, p.stderr
    assert target.read_text() == "precious"
    assert not (d / "report" / "index.html").is_symlink()


def test_report_draws_a_mathtext_run_id_literally(tmp_path):
    pytest.importorskip("matplotlib")
    d = make_run(tmp_path, "run", run_id="$\\foo{$")
    p = recipe("report", str(d))
    assert p.returncode == 0, p.stderr
    assert "$\\foo{$" in (d / "report" / "index.html").read_text()


# -- malformed records ---------------------------------------------------------------------------

def huge_int(d: Path) -> None:
    text = (d / "run.json").read_text()
    (d / "run.json").write_text(text.replace('"exit_code": 0', '"exit_code": ' + "9" * 5000))


@pytest.mark.parametrize("verb", ["check", "diff", "bless", "export", "runs"])
def test_a_5000_digit_integer_is_one_line_naming_the_field(tmp_path, bundle, verb):
    d = make_run(tmp_path / "runs", "run")
    huge_int(d)
    args = {"check": ("check", str(d)), "diff": ("diff", str(d)), "bless": ("bless", str(d)),
            "export": ("export", str(d), "--tensorboard", str(tmp_path / "tb")),
            "runs": ("runs", "--runs-dir", str(tmp_path / "runs"))}[verb]
    p = recipe(*args, env=bundle)
    if verb == "runs":   # listed as unreadable, with why; the others still listed
        assert p.returncode == 0 and "unreadable" in p.stdout and "exit_code" in p.stdout, p.stdout + p.stderr
        return
    assert p.returncode == EXIT_USAGE and "'exit_code'" in one_line(p) and "digits" in p.stderr


def test_replay_of_a_5000_digit_integer_or_an_env_name_with_equals_is_one_line(tmp_path):
    from conftest import make_bundle

    bundle = make_bundle(tmp_path, ROOT / "tests" / "data" / "echo_recipe", "echo")
    assert run_echo(bundle, tmp_path / "runs").returncode == 0
    d = only_run(tmp_path / "runs")
    rec = json.loads((d / "run.json").read_text())
    for field, value in (("exit_code", "9" * 5000), ("environment", '{"RECIPE_A=B": "x"}'),
                         ("script_env", '{"RECIPE_A=B": "x"}')):
        (d / "run.json").write_text(json.dumps({**rec, field: "@@"}).replace('"@@"', value))
        p = recipe("replay", str(d), "--runs-dir", str(tmp_path / "replays"), env=env_for(bundle), cwd=bundle)
        assert p.returncode == EXIT_USAGE and f"'{field}'" in one_line(p), p.stderr
        assert not (tmp_path / "replays").exists()


def test_an_environment_name_with_equals_is_refused_by_every_reader(tmp_path, bundle):
    d = make_run(tmp_path, "run", environment={"HF_X=Y": "1"})
    p = recipe("diff", str(d), str(d), env=bundle)
    assert p.returncode == EXIT_USAGE and "'environment'" in one_line(p) and "HF_X=Y" in p.stderr


def test_recorded_environment_keeps_only_names_it_can_read_back():
    from runner.records.record import recorded_env

    assert recorded_env({"HF_HOME": "/h", "HF_A=B": "x", "NCCL_\x1b]0;t": "y", "PATH": "/bin"}) == {"HF_HOME": "/h"}


# -- runs' gate column -----------------------------------------------------------------------------

def test_runs_says_no_more_than_the_gate_did(tmp_path, bundle):
    make_run(tmp_path / "runs", "a", gate={"status": "failed", "counts": {"fail": 17, "unreferenced": 3}})
    make_run(tmp_path / "runs", "b", gate={"status": "failed", "counts": {"pass": 5, "blocked": 2, "fail": 1,
                                                                          "bogus": 40}})
    rows = {r["run"]: r for r in json.loads(recipe("runs", "--runs-dir", str(tmp_path / "runs"), "--json",
                                                   env=bundle).stdout)}
    assert rows["a"]["gate"] == "failed (17 of 20 rules)"
    assert rows["b"]["gate"] == "failed (3 of 8 rules)"


def test_runs_table_fits_columns(tmp_path, bundle):
    make_run(tmp_path / "runs", "20260821T100000Z-nemotron3_nano-default-abcdef" + "x" * 30,
             status="a long status " * 5)
    (tmp_path / "runs" / "broken").mkdir()
    (tmp_path / "runs" / "broken" / "run.json").write_text("{not json")
    for cols in (60, 80, 120):
        p = recipe("runs", "--runs-dir", str(tmp_path / "runs"), env={**bundle, "COLUMNS": str(cols)})
        assert p.returncode == 0, p.stderr
        assert max(map(len, p.stdout.splitlines())) <= cols, p.stdout
    assert "unreadable" in p.stdout    # wide enough: words stay whole


def test_diff_tables_fit_columns(tmp_path, bundle):
    make_run(tmp_path, "a", job_env={"X": "a" * 200})
    make_run(tmp_path, "b", job_env={"X": "b" * 200})
    for cols in (60, 100):
        p = recipe("diff", "a", "b", env={**bundle, "COLUMNS": str(cols)}, cwd=tmp_path)
        assert p.returncode == 0, p.stderr
        assert max(map(len, p.stdout.splitlines())) <= cols, p.stdout
        assert "job_env X" in p.stdout


# -- what a record or events file may be --------------------------------------------------------

def plant(d: Path, rel: str, kind: str, tmp_path: Path) -> None:
    f = d / rel
    f.unlink(missing_ok=True)
    if kind == "devzero":
        f.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(f)
    elif kind == "outside":
        (tmp_path / "secret.json").write_text(json.dumps({"schema": 1, "status": "succeeded"}))
        f.symlink_to(tmp_path / "secret.json")


@pytest.mark.parametrize("kind", ["devzero", "fifo", "outside"])
def test_a_planted_run_json_neither_hangs_nor_floods_any_verb(tmp_path, bundle, kind):
    runs = tmp_path / "runs"
    make_run(runs, "good")
    d = make_run(runs, "planted")
    plant(d, "run.json", kind, tmp_path)
    t0 = time.monotonic()
    p = recipe("runs", "--runs-dir", str(runs), "--json", env=bundle, timeout=30)
    rows = {r["run"]: r for r in json.loads(p.stdout)}
    assert rows["good"]["status"] == "succeeded" and rows["planted"]["status"] == "unreadable"
    for args in (("check", str(d)), ("diff", str(d), str(runs / "good")), ("bless", str(d)),
                 ("export", str(d), "--tensorboard", str(tmp_path / "tb")), ("logs", "-f", str(d))):
        p = recipe(*args, env=bundle, timeout=30)
        assert p.returncode == EXIT_USAGE and "run.json" in one_line(p), (args, p.stderr)
    assert time.monotonic() - t0 < 60


@pytest.mark.parametrize("rel", ["events/main.jsonl", "logs/run.log"])
@pytest.mark.parametrize("kind", ["devzero", "fifo", "outside"])
def test_planted_events_or_logs_neither_hang_nor_flood(tmp_path, bundle, kind, rel):
    d = make_run(tmp_path, "run")
    if rel.startswith("logs"):
        shutil.rmtree(d / "events")
    plant(d, rel, kind, tmp_path)
    for args in (("check", str(d)), ("logs", str(d))) if rel.startswith("logs") else (("check", str(d)),):
        p = recipe(*args, env=bundle, timeout=30)
        assert p.returncode == EXIT_USAGE and Path(rel).name in one_line(p), (args, p.stderr)


def test_an_oversized_record_is_refused_without_reading_it(tmp_path, bundle):
    d = make_run(tmp_path, "run")
    with open(d / "run.json", "r+b") as f:
        f.truncate(32 << 20)    # sparse: 32 MiB that take no disk, past the 16 MiB a record may be
    p = recipe("check", str(d), env=bundle, timeout=30)
    assert p.returncode == EXIT_USAGE and "larger than" in one_line(p)


# -- the log-line fallback -----------------------------------------------------------------------

def test_one_long_log_line_is_parsed_in_linear_time(tmp_path, bundle):
    log = tmp_path / "run.log"
    log.write_text("x - step 1: {" * 100_000 + "\n" + "t - step 2: {'train/loss': 1.0}\n")
    t0 = time.monotonic()
    p = recipe("check", str(log), "--recipe", "nemotron3_nano", "--json", env=bundle, timeout=60)
    assert time.monotonic() - t0 < 20
    assert p.returncode in (0, 1), p.stderr


# -- URL credentials in recorded variables -----------------------------------------------------------

def test_url_credentials_are_never_recorded(tmp_path):
    from conftest import make_bundle

    bundle = make_bundle(tmp_path, ROOT / "tests" / "data" / "echo_recipe", "echo")
    p = run_echo(bundle, tmp_path / "runs", HF_ENDPOINT="https://alice:hunter2pass@hub.example:8443/x",
                 WANDB_BASE_URL="http://tok3nvalue@wandb.example")
    assert p.returncode == 0, p.stderr
    text = (only_run(tmp_path / "runs") / "run.json").read_text()
    assert "hunter2pass" not in text and "alice" not in text and "tok3nvalue" not in text
    rec = json.loads(text)
    assert rec["environment"]["HF_ENDPOINT"] == "https://<redacted>@hub.example:8443/x"
    assert rec["environment"]["WANDB_BASE_URL"] == "http://<redacted>@wandb.example"


def test_url_userinfo_redaction_is_exact():
    from runner.records.record import redact_urls

    assert redact_urls({"a": ["see https://u:p@h/x and ssh://git@h:22/r", "file:///a@b", "user@host", "no://@x"],
                        "n": 3}) == {"a": ["see https://<redacted>@h/x and ssh://<redacted>@h:22/r", "file:///a@b",
                                           "user@host", "no://@x"], "n": 3}


def test_export_of_a_run_id_that_names_a_parent_stays_under_its_directory(tmp_path, bundle):
    d = make_run(tmp_path / "runs", "run", run_id="..")
    tb = tmp_path / "tb"
    p = recipe("export", str(d), "--tensorboard", str(tb), env=bundle)
    assert p.returncode == 0, p.stderr
    assert [f.relative_to(tb).parts[0] for f in tb.rglob("events.out.*")] == ["run"]
    assert not list(tmp_path.glob("events.out.*"))
