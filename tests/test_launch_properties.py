"""Properties of the launch's shell boundary, over arbitrary text (hypothesis):

- bash's `printf %q` followed by runner/plan/shellwords.py gives back exactly the words that went
  in, under a UTF-8 locale and under LANG=C (where non-ASCII comes out as $'\\ooo' bytes);
- the reader, given any line at all, returns words or raises ShellWordsError, nothing else;
- a run script's dry run, given arbitrary paths and names, never executes any of it, never ends
  in a traceback, and puts each value into the argv literally (or the plan refuses it in one line).
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from runner.plan.shellwords import ShellWordsError, split

from runner.errors import RecipeError
from runner.plan.options import RunOptions
from runner.plan.render import plan_for
from runner.recipe import load_recipe

# Pieces a shell would act on, mixed into arbitrary text.
NASTY = ["$(touch {canary})", "`touch {canary}`", "'", '"', "\\", "\t", "\n", " ", "$'", "~", "*", "#", "é", "\x01",
         "\x7f", "${IFS}", ";touch {canary};", "&", "|", "!", "--flag"]
# bash arguments cannot hold NUL; everything else goes.
ANY_CHAR = st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))


def nasty_text(min_size: int = 0):
    return st.lists(st.one_of(st.sampled_from(NASTY), st.text(ANY_CHAR, max_size=6)), min_size=min_size,
                    max_size=6).map("".join)


def printf_q(words: list[str], env: dict[str, str]) -> bytes:
    script = 'printf "+"; for w in "$@"; do printf " %q" "$w"; done; printf "\\n"'
    return subprocess.run(["bash", "-c", script, "-", *words], env=env, capture_output=True, check=True).stdout


@settings(max_examples=150, deadline=None)
@given(words=st.lists(nasty_text(), max_size=5), c_locale=st.booleans())
def test_printf_q_output_reads_back_exactly(words, c_locale):
    words = [w.replace("{canary}", "/nonexistent") for w in words]
    env = {"LC_ALL": "C"} if c_locale else {"LANG": "C.UTF-8"}
    out = printf_q(words, env)
    assert out.endswith(b"\n") and out.count(b"\n") == 1  # one line whatever the words hold
    assert split(out[2:-1]) == words


@settings(max_examples=300, deadline=None)
@given(line=st.one_of(st.text(), st.binary()))
def test_the_reader_returns_words_or_says_why_not(line):
    try:
        words = split(line)
    except ShellWordsError:
        return
    assert isinstance(words, list) and all(isinstance(w, str) for w in words)


NANO = load_recipe("nemotron3_nano")
TINY = load_recipe("nemotron3_nano_tiny")


@pytest.mark.parametrize("recipe", [NANO, TINY], ids=lambda r: r.name)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=nasty_text(1), data=nasty_text(1), run_id=nasty_text(1).filter(bool))
def test_dry_run_puts_arbitrary_paths_into_argv_literally(recipe, model, data, run_id):
    with tempfile.TemporaryDirectory() as tmp:
        canary = Path(tmp) / "pwned"
        model, data, run_id = (v.replace("{canary}", str(canary)) for v in (model, data, run_id))
        model_dir, data_dir = Path(tmp) / "m" / model, Path(tmp) / "d" / data
        try:
            opts = RunOptions.resolve(recipe, {"model_dir": model_dir, "data_dir": data_dir}, environ={})
            plan = plan_for(opts, run_dir=Path(tmp) / "run", run_id=run_id)
        except RecipeError as e:  # refused: one line, naming what it refused
            assert "\n" not in e.message and e.code == 2
            assert any(c in model + data + run_id for c in "\n\r") or "control character" in e.message
            return
        assert not canary.exists()
        argv = plan.argv
        assert argv[argv.index("--hf-checkpoint") + 1] == str(opts.model_dir)
        prompt = argv[argv.index("--prompt-data") + 1]
        assert prompt.startswith(str(opts.data_dir) + "/")
        submit = next(c for c in plan.commands if c[:3] == ["ray", "job", "submit"])
        assert submit[submit.index("--submission-id") + 1] == run_id
        assert not (ROOT / "recipes" / recipe.name / "pwned").exists()
