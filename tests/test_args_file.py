"""model_args.txt has one reader (runner/recipe.py read_args_file): the plan's model block is its
words, and what lint, the planner and the checks judge is word for word what the rendered script
passes to the trainer. A line a shell or an editor could read otherwise (a control character other
than tab: CR, NUL) is refused, naming the line."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, clean_env, make_bundle, recipe

from runner.errors import UsageError
from runner.recipe import read_args_file

ODD = ("# a comment\n   # an indented comment\n\n--num-layers\t52\n  --a 'quoted words'  \\x\n"
       "--last-line-has-no-newline 1")
ODD_WORDS = ["--num-layers", "52", "--a", "'quoted", "words'", "\\x", "--last-line-has-no-newline", "1"]


def test_the_reader_splits_on_blanks_and_skips_comments(tmp_path):
    f = tmp_path / "args.txt"
    f.write_text(ODD)
    assert read_args_file(f) == ODD_WORDS
    (tmp_path / "comments.txt").write_text("# nothing\n\n   \n")
    assert read_args_file(tmp_path / "comments.txt") == []


def test_the_plan_passes_exactly_the_words_the_runner_reads(tmp_path):
    root = make_bundle(tmp_path, ROOT / "recipes" / "nemotron3_nano", "nemotron3_nano")
    f = root / "recipes" / "nemotron3_nano" / "model_args.txt"
    f.write_text("  # odd but legal\n--odd-flag\t'two words'  \\x\n\n" + f.read_text() + "--no-newline 1")
    words = read_args_file(f)
    assert words[:4] == ["--odd-flag", "'two", "words'", "\\x"] and words[-2:] == ["--no-newline", "1"]
    p = recipe("plan", "nemotron3_nano", "--format", "json", env=clean_env(RECIPE_BUNDLE_ROOT=str(root)))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["argv"][:len(words)] == words


def test_a_carriage_return_is_refused_naming_the_line(tmp_path):
    root = make_bundle(tmp_path, ROOT / "recipes" / "nemotron3_nano", "nemotron3_nano")
    f = root / "recipes" / "nemotron3_nano" / "model_args.txt"
    f.write_bytes(f.read_bytes().replace(b"\n", b"\r\n"))
    want = f"{f}: line 1 holds a carriage return (CRLF line endings?); save it with LF endings"
    with pytest.raises(UsageError) as e:
        read_args_file(f)
    assert e.value.message == want
    p = recipe("plan", "nemotron3_nano", env=clean_env(RECIPE_BUNDLE_ROOT=str(root)))
    assert p.returncode == 2 and p.stderr.strip() == f"recipe: error: {want}", p.stderr


def test_an_unreadable_file_is_named(tmp_path):
    with pytest.raises(UsageError, match=r"nope.txt: cannot read args file \(No such file"):
        read_args_file(tmp_path / "nope.txt")


@pytest.mark.parametrize("line,what", [
    (b"--num-layers 2\x00--evil", "a NUL byte; remove it"),
    (b"--a\x0b1", "the control character '\\x0b'"),
    (b"--a 1\x1b[2J", "the control character '\\x1b'"),
])
def test_a_nul_byte_or_control_character_is_refused_naming_the_line(tmp_path, line, what):
    """bash's `read` drops a NUL byte: `--num-layers 2<NUL>--evil` reached the trainer as `2--evil`."""
    f = tmp_path / "args.txt"
    f.write_bytes(b"# ok\n--hidden-size 8\n" + line + b"\n")
    with pytest.raises(UsageError) as e:
        read_args_file(f)
    assert e.value.message == f"{f}: line 3 holds {what}"


def test_a_nul_byte_in_a_cpu_recipes_args_stops_the_plan(tmp_path):
    root = make_bundle(tmp_path, ROOT / "recipes" / "nemotron3_nano_tiny", "nemotron3_nano_tiny")
    f = root / "recipes" / "nemotron3_nano_tiny" / "model_args.txt"
    f.write_bytes(f.read_bytes() + b"--num-layers 2\x00--evil\n")
    p = recipe("plan", "nemotron3_nano_tiny", env=clean_env(RECIPE_BUNDLE_ROOT=str(root)))
    assert p.returncode == 2 and p.stderr.strip().endswith("holds a NUL byte; remove it"), p.stderr


def test_the_reader_runs_in_the_run_scripts_environment_not_the_callers_bash_env(tmp_path, monkeypatch):
    """bash -c sources $BASH_ENV first: a startup file that prints would have become flags."""
    (tmp_path / "startup.sh").write_text("echo JUNK\n")
    monkeypatch.setenv("BASH_ENV", str(tmp_path / "startup.sh"))
    f = tmp_path / "args.txt"
    f.write_text("--a 1\n")
    assert read_args_file(f) == ["--a", "1"]
