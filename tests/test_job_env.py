"""The 30B recipe's job environment, as upstream's launcher builds it (miles 78527b91,
miles/utils/external_utils/command_utils.py): the NCCL/Gloo interface and debug settings are
forwarded when set, and an existing PYTHONPATH comes after miles' and Megatron's. Seen through
`recipe plan`, which is the run script's own dry run."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, clean_env, recipe

FORWARDED = ("NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME", "NCCL_DEBUG", "NCCL_DEBUG_FILE")


def job_env(**env: str) -> dict[str, str]:
    base = clean_env()
    for name in FORWARDED:
        base.pop(name, None)
    base.update(env)
    p = recipe("plan", "nemotron3_nano", "--format", "json", env=base)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)["env"]


def test_unset_interfaces_stay_out_of_the_job_env():
    env = job_env()
    assert not set(FORWARDED) & set(env)
    # the runner's own bundle root (on PYTHONPATH for the CLI) is the runner's path, not the job's
    assert env["PYTHONPATH"] == "/root/miles:/root/Megatron-LM"


@pytest.mark.parametrize("name", FORWARDED)
def test_each_set_variable_is_forwarded_verbatim(name):
    value = "eth0,^docker0 with space" if "IFNAME" in name else "/tmp/nccl.%h.%p"
    env = job_env(**{name: value})
    assert env[name] == value
    assert not (set(FORWARDED) - {name}) & set(env)


def test_set_but_empty_is_forwarded_as_upstream_does():
    assert job_env(NCCL_DEBUG="")["NCCL_DEBUG"] == ""


def test_existing_pythonpath_comes_after_miles_and_megatron_without_duplicates():
    env = job_env(PYTHONPATH=f"{ROOT}:/opt/extra::/root/miles:/opt/more")
    assert env["PYTHONPATH"] == "/root/miles:/root/Megatron-LM:/opt/extra:/opt/more"


def test_relocated_miles_and_megatron_stay_first():
    env = job_env(PYTHONPATH="/opt/extra", RECIPE_MILES_DIR="/work/miles", RECIPE_MEGATRON_DIR="/work/meg")
    assert env["PYTHONPATH"] == "/work/miles:/work/meg:/opt/extra"


def test_the_job_env_reaches_ray_as_the_runtime_env_of_the_submit():
    base = clean_env(NCCL_SOCKET_IFNAME="ib0", PYTHONPATH=f"{ROOT}:/opt/extra")
    p = recipe("plan", "nemotron3_nano", "--format", "json", env=base)
    runtime = json.loads(p.stdout)["env"]  # what the script hands Ray as the runtime env (no secret set here)
    assert runtime["NCCL_SOCKET_IFNAME"] == "ib0"
    assert runtime["PYTHONPATH"] == "/root/miles:/root/Megatron-LM:/opt/extra"
