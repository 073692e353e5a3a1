"""The README's commands work as typed: every `recipe VERB --flag` it shows is a verb and a flag of
the CLI, every `just NAME` a recipe of the Justfile, and the Justfile's recipes named like a verb
run that verb. Also what the README's first steps lean on: `recipe show` with no name lists the
recipes, and `just run` of the tiny recipe installs the report extra that `recipe report` needs."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

import click
from conftest import ROOT, recipe

from runner.cli import COMMANDS, cli

README = (ROOT / "README.md").read_text()
JUSTFILE = (ROOT / "Justfile").read_text()


def readme_commands() -> list[str]:
    """Each command line of a ```bash block and each inline `recipe ...` / `just ...` span."""
    cmds = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.splitlines():
            line = re.split(r"\s+#", line)[0].strip()
            cmds += [c.strip() for c in line.split("&&") if c.strip()]
    prose = re.sub(r"```.*?```", "", README, flags=re.S)
    for span in re.findall(r"`([^`\n]+)`", prose):
        cmds += [c.strip() for c in span.split("&&") if re.match(r"(recipe|just|ci/just) ", c.strip())]
    return cmds


def words(cmd: str) -> list[str]:
    return shlex.split(cmd.replace("\\|", "|").split("|")[0].replace("[", "").replace("]", ""))


def just_recipes() -> dict[str, str]:
    """Justfile recipe name -> its body."""
    out = {}
    for m in re.finditer(r"^([a-z][a-z0-9-]*)\b.*:\n((?:    .*\n?)*)", JUSTFILE, re.M):
        out[m.group(1)] = m.group(2)
    return out


def verb_flags(verb: str) -> set[str]:
    cmd = cli.get_command(click.Context(cli), verb)
    assert cmd is not None, verb
    return {o for p in cmd.params for o in [*p.opts, *p.secondary_opts] if o.startswith("-")} | {"--help", "-h"}


def check_verb_args(cmd: str, verb: str, args: list[str]) -> None:
    assert verb in COMMANDS, f"README: `{cmd}`: no verb {verb!r} (recipe --help lists {sorted(COMMANDS)})"
    flags = verb_flags(verb)
    for a in args:
        if a.startswith("-"):
            assert a.split("=")[0] in flags, f"README: `{cmd}`: {verb} has no option {a} ({sorted(flags)})"


def test_the_readme_shows_commands_to_check():
    cmds = readme_commands()
    assert sum(c.startswith("recipe ") for c in cmds) > 20 and sum(c.startswith("just ") for c in cmds) > 5


def test_every_recipe_verb_and_flag_the_readme_shows_exists():
    for cmd in readme_commands():
        w = words(cmd)
        if w[:1] == ["recipe"] and len(w) > 1 and not w[1].startswith(("...", "VERB")):
            check_verb_args(cmd, w[1], w[2:])


def test_every_just_recipe_the_readme_shows_exists_and_forwards_flags_its_verb_has():
    recipes = just_recipes()
    for cmd in readme_commands():
        w = words(cmd)
        if w[:1] not in (["just"], ["ci/just"]) or len(w) < 2:
            continue
        assert w[1] in recipes, f"README: `{cmd}`: the Justfile has no recipe {w[1]!r} ({sorted(recipes)})"
        forwarded = re.search(r"\{\{recipe_bin\}\} ([a-z]+) \"\$@\"", recipes[w[1]])
        if forwarded:
            check_verb_args(cmd, forwarded.group(1), w[2:])


def test_justfile_recipes_named_like_a_verb_are_that_verb():
    """`just lint nemotron3_nano` is `recipe lint nemotron3_nano`, not the code's static checks."""
    for name, body in just_recipes().items():
        if name in COMMANDS:
            assert re.search(rf"\{{\{{recipe_bin\}}\}} {name} \"\$@\"", body), (name, body)
    assert "ruff check" in just_recipes()["check-code"]


def test_ci_and_docs_call_no_justfile_recipe_that_is_gone():
    recipes = just_recipes()
    for f in [*ROOT.glob("docs/*.md"), *ROOT.glob("ci/*.sh"), ROOT / ".ci" / "run", ROOT / "README.md"]:
        for m in re.finditer(r"(?:^|[`\s(])(?:ci/)?just ([a-z][a-z0-9-]*)", f.read_text(), re.M):
            if m.group(1) not in ("is", "does", "or", "fetches", "from"):
                assert m.group(1) in recipes, f"{f.relative_to(ROOT)}: just {m.group(1)}"


def test_show_with_no_name_lists_the_recipes():
    p = recipe("show")
    assert p.returncode == 0, p.stderr
    names = p.stdout.split()
    assert "nemotron3_nano_tiny" in names and names == recipe("list").stdout.split()
    j = recipe("show", "--json")
    assert j.returncode == 0 and json.loads(j.stdout) == json.loads(recipe("list", "--json").stdout)
    assert {"name", "title", "hardware", "determinism", "verified", "status"} == set(json.loads(j.stdout)[0])


def test_just_run_of_the_tiny_recipe_installs_the_report_extra():
    out = subprocess.run([sys.executable, str(ROOT / "ci" / "recipe_extras.py"), "nemotron3_nano_tiny"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out.split(",") == ["tiny", "report"]
    # a recipe that runs in its image needs nothing on the host
    assert subprocess.run([sys.executable, str(ROOT / "ci" / "recipe_extras.py"), "nemotron3_nano"],
                          capture_output=True, text=True, check=True).stdout.strip() == ""


def test_the_readmes_recipe_table_is_what_recipe_list_prints():
    table = recipe("list", "--markdown").stdout
    assert table.startswith("| recipe | title | hardware | determinism | last verified |")
    assert table in (ROOT / "README.md").read_text(), "README's recipe table is stale: paste `recipe list --markdown`"
