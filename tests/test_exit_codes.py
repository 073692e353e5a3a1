"""The exit codes as documented: the README's table, docs/commands.md's, and each verb's --help agree."""

from __future__ import annotations

import re

import click
from conftest import ROOT

from runner.cli import COMMANDS as CLI_VERBS
from runner.cli import cli


def exit_table(path, heading: str) -> dict[int, str]:
    """code -> meaning, from the first table under `heading` ('| 0 | meaning | ...')."""
    text = (ROOT / path).read_text().split(heading, 1)[1]
    rows = re.findall(r"^\| (\d+) \| ([^|\n]*(?:\\\|[^|\n]*)*) \|", text, re.M)
    table: dict[int, str] = {}
    for code, meaning in rows:
        if int(code) in table:
            break   # the next table
        table[int(code)] = meaning
    return table


README = exit_table("README.md", "## When something fails")
COMMANDS_MD = exit_table("docs/commands.md", "## Exit codes")
VERBS = sorted(CLI_VERBS)


def named(table: dict[int, str]) -> dict[str, set[int]]:
    """verb -> the codes whose meaning names it (as `verb`)."""
    out: dict[str, set[int]] = {}
    for code, meaning in table.items():
        for verb in re.findall(r"`(?:recipe )?([a-z-]+)", meaning):
            if verb in VERBS:
                out.setdefault(verb, set()).add(code)
    return out


def help_codes(verb: str) -> set[int] | None:
    """The codes a verb's --help lists in an 'Exit 0: ...; N: ...' sentence, or None if it has none."""
    doc = " ".join((cli.get_command(click.Context(cli), verb).help or "").split())
    m = re.search(r"Exit 0:(.*?)(?:\.\s|$)", doc)
    return None if not m else {0} | {int(n) for n in re.findall(r"[;,] (\d+):", m.group(1))}


def test_the_readme_and_commands_md_list_the_same_codes():
    assert len(README) >= 9 and set(README) == set(COMMANDS_MD), (README, COMMANDS_MD)


def test_each_verb_named_in_one_table_is_named_under_the_same_codes_in_the_other():
    readme, commands = named(README), named(COMMANDS_MD)
    assert "doctor" in readme, readme
    for verb in sorted(set(readme) | set(commands)):
        assert readme.get(verb) == commands.get(verb), (verb, readme.get(verb), commands.get(verb))


def test_a_verb_whose_help_lists_its_exit_codes_lists_those_the_tables_give_it():
    readme = named(README)
    listed = {v: help_codes(v) for v in VERBS if help_codes(v) is not None}
    assert "doctor" in listed and "verify" in listed, listed
    for verb, codes in listed.items():
        assert codes <= set(README), (verb, codes)
        assert readme.get(verb, set()) <= codes, (verb, readme.get(verb), codes)
