"""The tiny recipe's packages: installed from a hash lock, recorded in run.json as the job's
interpreter has them, compared by `recipe diff`, and a bitwise replay across versions refused."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import ROOT, clean_env, make_bundle, recipe

TINY = ROOT / "recipes" / "nemotron3_nano_tiny"
LOCK = TINY / "requirements.lock"
RECORDED = ["click", "rich", "no-such-distribution"]


def lock_entries(text: str) -> dict[str, list[str]]:
    """name==version -> its hashes, from a `--require-hashes` file (each hash line but the last ends in \\)."""
    entries = re.findall(r"^([A-Za-z0-9_.-]+==[^\s=]+) \\\n((?:    --hash=sha256:[0-9a-f]{64} \\\n)*"
                         r"    --hash=sha256:[0-9a-f]{64}$)", text, re.M)
    return {pin: re.findall(r"[0-9a-f]{64}", hashes) for pin, hashes in entries}


def test_every_entry_of_the_tiny_lock_is_one_pinned_version_with_its_wheels_sha256():
    text = LOCK.read_text()
    reqs = [ln for ln in text.splitlines() if ln and not ln.startswith((" ", "#"))]
    assert len(reqs) > 50
    for ln in reqs:
        assert re.fullmatch(r"[A-Za-z0-9_.-]+==[^\s=]+ \\", ln), ln
    entries = lock_entries(text)
    assert len(entries) == len(reqs), "every pin is followed by its hash lines and nothing else"
    assert sum(map(len, entries.values())) == len(re.findall(r"^    --hash=sha256:", text, re.M))
    assert "torch==2.13.0+cpu" in entries, "the CPU build CI uses"


def test_the_tiny_lock_names_every_wheel_an_installer_may_pick():
    """uv took multiprocess's py310 wheel where pip took the py311 one, and failed the one-hash lock:
    each of the version's wheels for CPython 3.11 is hashed (sha256 as PyPI lists them)."""
    assert set(lock_entries(LOCK.read_text())["multiprocess==0.70.19"]) == {
        "0d4b4397ed669d371c81dcd1ef33fd384a44d6c3de1bd0ca7ac06d837720d3c5",   # py39-none-any
        "97404393419dcb2a8385910864eedf47a3cadf82c66345b44f036420eb0b5d87",   # py310-none-any
        "928851ae7973aea4ce0eaf330bbdafb2e01398a91518d5c8818802845564f45c",   # py311-none-any
    }


def test_the_lock_covers_the_tiny_extra_and_pyproject_names_it():
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert py["tool"]["recipe-bundle"]["locks"]["tiny"] == "recipes/nemotron3_nano_tiny/requirements.lock"
    locked = {m.lower().replace("_", "-") for m in re.findall(r"^([A-Za-z0-9_.-]+)==", LOCK.read_text(), re.M)}
    for req in py["project"]["optional-dependencies"]["tiny"] + py["project"]["dependencies"]:
        assert re.split(r"[<>=!~\[ ]", req)[0].lower() in locked, req


def test_bootstrap_installs_the_lock_with_require_hashes(tmp_path):
    """The real bootstrap, with a pip that logs its argv: the lock goes through --require-hashes --no-deps."""
    venv = tmp_path / "venv"
    subprocess.run(["python3", "-m", "venv", "--without-pip", str(venv)], check=True)
    log = tmp_path / "pip.argv"
    (venv / "bin" / "pip-shim.py").write_text(
        f"import sys, json\nopen({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n")
    real = venv / "bin" / "python"
    shim = venv / "bin" / "python-shim"
    shim.write_text(f'#!/bin/bash\nif [[ "$1" == -m && "$2" == pip ]]; then shift 2; exec {real} '
                    f'{venv}/bin/pip-shim.py "$@"; fi\nexec {real} "$@"\n')
    shim.chmod(0o755)
    # bootstrap runs "$venv/bin/python": put the shim there
    real_target = venv / "bin" / "python-real"
    real.rename(real_target)
    shim.write_text(shim.read_text().replace(str(real), str(real_target)))
    shim.rename(real)
    p = subprocess.run(["bash", str(ROOT / "ci" / "bootstrap.sh"), "tiny"], capture_output=True, text=True,
                       env=clean_env(RECIPE_VENV=str(venv), RECIPE_INSTALLER="pip", RECIPE_LINK_DIR=""), cwd=ROOT)
    calls = [json.loads(x) for x in log.read_text().splitlines()]
    locked = [c for c in calls if str(LOCK.relative_to(ROOT)) in c]
    assert locked, (calls, p.stderr)
    assert all("--require-hashes" in c and "--no-deps" in c for c in locked)
    assert "installing 98 locked packages" in p.stderr or "locked packages from" in p.stderr


def test_bootstrap_installs_the_lock_with_the_pinned_uv_told_pips_sources(tmp_path):
    """With uv at hand, the real bootstrap gives it the lock with --require-hashes --no-deps and pip's
    sources, pip's main index first (a partial mirror first made uv pick another wheel than pip)."""
    version = re.search(r"^UV_VERSION=(\S+)$", (ROOT / "ci" / "bootstrap.sh").read_text(), re.M).group(1)
    tools, venv, log = tmp_path / "tools", tmp_path / "venv", tmp_path / "uv.argv"
    uv = tools / f"uv-{version}" / "bin" / "uv"
    uv.parent.mkdir(parents=True)
    # a stand-in uv that logs its argv and installs nothing (so the bootstrap ends finding no runner)
    uv.write_text(f"#!{sys.executable}\nimport sys, json\n"
                  f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n")
    uv.chmod(0o755)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    pip_conf = tmp_path / "pip.conf"   # a config file's sources, and the environment's, which win
    pip_conf.write_text(f"[global]\nextra-index-url = file://{tmp_path}\nfind-links = /no/such/dir\n")
    p = subprocess.run(["bash", str(ROOT / "ci" / "bootstrap.sh"), "tiny"], capture_output=True, text=True,
                       env=clean_env(RECIPE_VENV=str(venv), RECIPE_TOOLS=str(tools), RECIPE_LINK_DIR="",
                                     PIP_CONFIG_FILE=str(pip_conf), PIP_FIND_LINKS=str(tmp_path)), cwd=ROOT)
    assert f"installer: uv {version}" in p.stderr, p.stderr
    calls = [json.loads(x) for x in log.read_text().splitlines()]
    (locked,) = [c for c in calls if str(LOCK.relative_to(ROOT)) in c]
    assert locked[:2] == ["pip", "install"] and "--require-hashes" in locked and "--no-deps" in locked
    sources = [(a, b) for a, b in zip(locked, locked[1:], strict=False) if a in ("--index", "--find-links")]
    assert sources[0] == ("--index", "https://pypi.org/simple"), sources
    assert ("--index", f"file://{tmp_path}") in sources and ("--find-links", str(tmp_path)) in sources


@pytest.fixture
def bundle(tmp_path):
    b = make_bundle(tmp_path, ROOT / "tests" / "data" / "echo_recipe", "echo")
    toml = b / "recipes" / "echo" / "recipe.toml"
    toml.write_text(toml.read_text().replace('framework = "script"\n',
                                             f'framework = "script"\nrecord_packages = {json.dumps(RECORDED)}\n'))
    assert recipe("lock", "echo", "--recipe-files", env=clean_env(RECIPE_BUNDLE_ROOT=str(b)), cwd=b).returncode == 0
    return b


def run_once(bundle: Path, runs: Path) -> Path:
    before = set(runs.iterdir()) if runs.is_dir() else set()
    p = recipe("run", "echo", "--runs-dir", str(runs), env=clean_env(RECIPE_BUNDLE_ROOT=str(bundle)), cwd=bundle)
    assert p.returncode == 0, p.stderr
    (new,) = set(runs.iterdir()) - before
    return new


def job_versions(interpreter: str) -> dict:
    code = ("import importlib.metadata as md, json, sys\nout = {}\nfor n in sys.argv[1:]:\n"
            "    try: out[n] = md.version(n)\n    except md.PackageNotFoundError: out[n] = None\n"
            "print(json.dumps(out))")
    return json.loads(subprocess.run([interpreter, "-c", code, *RECORDED], capture_output=True, text=True,
                                     check=True).stdout)


def test_run_json_records_the_versions_of_the_recipes_packages(bundle, tmp_path):
    rec = json.loads((run_once(bundle, tmp_path / "runs") / "run.json").read_text())
    pk = rec["packages"]
    assert Path(pk["interpreter"]).name.startswith("python")
    assert pk["versions"] == job_versions(pk["interpreter"])
    assert pk["versions"]["click"] and pk["versions"]["no-such-distribution"] is None


def plant(run_dir: Path, name: str, version: str) -> None:
    f = run_dir / "run.json"
    rec = json.loads(f.read_text())
    rec["packages"]["versions"][name] = version
    f.write_text(json.dumps(rec))


def test_diff_lists_a_planted_version_difference(bundle, tmp_path):
    runs = tmp_path / "runs"
    a = run_once(bundle, runs)
    b = run_once(bundle, runs)
    env = clean_env(RECIPE_BUNDLE_ROOT=str(bundle))
    same = recipe("diff", str(a), str(b), env=env, cwd=bundle)
    assert same.returncode == 0 and "packages: 0 version(s) differ" in same.stdout, same.stdout + same.stderr
    plant(b, "click", "0.0.1")
    p = recipe("diff", str(a), str(b), env=env, cwd=bundle)
    assert "packages: 1 version(s) differ" in p.stdout, p.stdout
    row = next(ln for ln in p.stdout.splitlines() if ln.startswith("click "))
    assert "0.0.1" in row
    j = json.loads(recipe("diff", str(a), str(b), "--json", env=env, cwd=bundle).stdout)
    assert [r["package"] for r in j["packages"]] == ["click"]


def test_replay_across_versions_is_refused_then_allowed_saying_so(bundle, tmp_path):
    runs = tmp_path / "runs"
    orig = run_once(bundle, runs)
    plant(orig, "rich", "0.0.1")
    env = clean_env(RECIPE_BUNDLE_ROOT=str(bundle))
    p = recipe("replay", str(orig), env=env, cwd=bundle)
    assert p.returncode == 6, p.stderr
    assert "rich: recorded 0.0.1, now" in p.stderr and "--allow-changed-packages" in p.stderr
    assert len(list(runs.iterdir())) == 1, "a refused replay starts nothing"
    p = recipe("replay", str(orig), "--allow-changed-packages", env=env, cwd=bundle)
    assert p.returncode == 0, p.stderr
    assert "across versions" in p.stderr
    new = next(d for d in runs.iterdir() if d != orig)
    rep = json.loads((new / "replay.json").read_text())
    assert rep["across_versions"] and rep["across_versions"][0].startswith("rich: recorded 0.0.1")


def test_a_failed_install_says_which_and_shows_the_installers_last_lines(tmp_path):
    version = re.search(r"^UV_VERSION=(\S+)$", (ROOT / "ci" / "bootstrap.sh").read_text(), re.M).group(1)
    uv = tmp_path / "tools" / f"uv-{version}" / "bin" / "uv"
    uv.parent.mkdir(parents=True)
    uv.write_text("#!/bin/sh\n[ \"$1\" = venv ] && exec python3 -m venv --without-pip \"$5\"\n"
                  "echo 'Resolved 98 packages'; echo 'error: Hash mismatch for `multiprocess==0.70.19`' >&2; exit 2\n")
    uv.chmod(0o755)
    p = subprocess.run(["bash", str(ROOT / "ci" / "bootstrap.sh"), "tiny"], capture_output=True, text=True,
                       env=clean_env(RECIPE_VENV=str(tmp_path / "venv"), RECIPE_TOOLS=str(tmp_path / "tools"),
                                     RECIPE_LINK_DIR=""), cwd=ROOT)
    assert p.returncode == 1, p.stderr
    assert f"installing {LOCK.relative_to(ROOT)} failed; see {tmp_path / 'venv' / 'bootstrap.log'}" in p.stderr
    assert p.stderr.rstrip().endswith("error: Hash mismatch for `multiprocess==0.70.19`"), p.stderr
