"""Properties of the launch's shell boundary, over arbitrary text (hypothesis):

- runner/plan/script.py quotes any word so that bash reads back exactly that word and runs none of
  it, under a UTF-8 locale and under LANG=C;
- the script rendered for arbitrary paths and run ids, run by the real bash with the Ray launch
  replaced by a recorder, hands the trainer exactly the plan's argv and job environment, executes
  nothing it was given, and otherwise the plan refuses the value in one line (exit 2).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.errors import RecipeError
from runner.plan.options import RunOptions
from runner.plan.render import plan_for
from runner.plan.script import render_script, word
from runner.recipe import load_recipe

# Pieces a shell would act on, mixed into arbitrary text.
NASTY = ["$(touch {canary})", "`touch {canary}`", "'", '"', "\\", "\t", "\n", " ", "$'", "~", "*", "#", "é", "\x01",
         "\x7f", "${IFS}", ";touch {canary};", "&", "|", "!", "--flag"]
# bash arguments cannot hold NUL; everything else goes.
ANY_CHAR = st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))


def nasty_text(min_size: int = 0):
    return st.lists(st.one_of(st.sampled_from(NASTY), st.text(ANY_CHAR, max_size=6)), min_size=min_size,
                    max_size=6).map("".join)


@settings(max_examples=150, deadline=None)
@given(words=st.lists(nasty_text(), max_size=5), c_locale=st.booleans())
def test_a_quoted_word_reads_back_exactly_and_runs_nothing(words, c_locale, tmp_path_factory):
    canary = tmp_path_factory.mktemp("q") / "pwned"
    words = [w.replace("{canary}", str(canary)) for w in words]
    env = {"LC_ALL": "C"} if c_locale else {"LANG": "C.UTF-8"}
    script = "printf '%s\\0' " + " ".join(word(w) for w in words) if words else "true"
    out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, check=True).stdout
    assert out.split(b"\0")[:-1] == [w.encode() for w in words] and not canary.exists()


NANO = load_recipe("nemotron3_nano")
TINY = load_recipe("nemotron3_nano_tiny")
# The rendered script with the Ray launch replaced: what it would submit, as JSON.
RECORDER = ('recipe_launch_job() { shift 3; python3 -c \'import json, os, sys; '
            'print(json.dumps({"argv": sys.argv[1:], "env": json.loads(sys.argv[1 + sys.argv.index("--env")])}))\' '
            '"$@"; }\n')


@pytest.mark.parametrize("recipe", [NANO, TINY], ids=lambda r: r.name)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=nasty_text(1), data=nasty_text(1), run_id=nasty_text(1).filter(bool))
def test_the_rendered_script_passes_arbitrary_paths_literally(recipe, model, data, run_id):
    with tempfile.TemporaryDirectory() as tmp:
        canary = Path(tmp) / "pwned"
        model, data, run_id = (v.replace("{canary}", str(canary)) for v in (model, data, run_id))
        model_dir, data_dir = Path(tmp) / "m" / model, Path(tmp) / "d" / data
        try:
            opts = RunOptions.resolve(recipe, {"model_dir": model_dir, "data_dir": data_dir})
            plan = plan_for(opts, run_dir=Path(tmp) / "run", run_id=run_id, environ={"NCCL_NVLS_ENABLE": "0"})
        except RecipeError as e:  # refused: one line, naming what it refused
            assert "\n" not in e.message and e.code == 2
            assert any(c in model + data + run_id for c in "\n\r") or "control character" in e.message
            return
        text = render_script(plan, lib=str(ROOT / "recipes" / "lib" / "launch.sh"))
        # run it up to the launch: mkdir and the exports happen, the launch is recorded
        text = text.replace("recipe_launch_job ", RECORDER + "recipe_launch_job ", 1)
        text = text.replace('"$(recipe_runtime_env_json "${job_env[@]}")" -- \\',
                            '"$(recipe_runtime_env_json "${job_env[@]}")" -- "--env" '
                            '"$(recipe_runtime_env_json "${job_env[@]}")" \\', 1)
        p = subprocess.run(["bash", "-c", text], capture_output=True, text=True, timeout=60,
                           env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
        assert p.returncode == 0, p.stderr
        got = json.loads(p.stdout)
        assert got["argv"][got["argv"].index("--env") + 2:] == [*plan.entrypoint, *plan.argv]
        assert got["env"] == {"env_vars": plan.runtime_env}
        assert not canary.exists()
        assert not (ROOT / "recipes" / recipe.name / "pwned").exists()
