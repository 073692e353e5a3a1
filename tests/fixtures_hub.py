"""Shared fixtures for tests that talk to the loopback Hub (tests/hub_server.py).

Import the fixtures into a test module: `from fixtures_hub import hub_fixture, small_repos_fixture`
(they register as `hub` and `small_repos`; the tests/conftest.py is the lead's).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hub_server import FakeRepo, HubServer

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL_REPO = "tiny-org/tiny-model"
DATA_REPO = "tiny-org/tiny-data"
DATA_FILE = "train.jsonl"


def model_files(seed: int) -> dict[str, bytes]:
    rnd = hashlib.sha256(str(seed).encode()).digest()
    shards = {f"model-0000{i}-of-00003.safetensors": (rnd * (4096 * i + 7))[: 100_000 * i + 12345]
              for i in range(1, 4)}
    index = {"metadata": {"total_size": sum(len(v) for v in shards.values())},
             "weight_map": {f"w{i}": name for i, name in enumerate(shards)}}
    return {
        **shards,
        "model.safetensors.index.json": json.dumps(index, indent=1).encode(),
        "config.json": json.dumps({"model_type": "nemotron_h", "seed": seed}).encode(),
        "tokenizer.json": b'{"version": "1.0", "model": {"type": "BPE"}}',
        "chat_template.jinja": b"{% for m in messages %}{{ m.content }}{% endfor %}",
        ".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
    }


REMOTE_CODE_REPO = "tiny-org/tiny-remote-code"
REMOTE_CONFIG_PY = b'''"""A model type transformers does not know: AutoConfig needs this file (trust_remote_code)."""
from transformers import PretrainedConfig


class TinyRemoteConfig(PretrainedConfig):
    model_type = "tiny_remote"

    def __init__(self, hidden_size=8, n_groups=1, **kwargs):
        self.hidden_size = hidden_size
        self.n_groups = n_groups
        super().__init__(**kwargs)
'''
REMOTE_MODELING_PY = b'''"""Named by auto_map; AutoConfig does not import it, AutoModel would."""
from transformers import PreTrainedModel

from .configuration_tiny_remote import TinyRemoteConfig


class TinyRemoteForCausalLM(PreTrainedModel):
    config_class = TinyRemoteConfig
'''


def remote_code_files() -> dict[str, bytes]:
    """A model repo whose config.json has an auto_map, as Nemotron-3-Nano's has, with its .py files."""
    config = {"model_type": "tiny_remote", "architectures": ["TinyRemoteForCausalLM"], "hidden_size": 24,
              "n_groups": 3, "auto_map": {"AutoConfig": "configuration_tiny_remote.TinyRemoteConfig",
                                          "AutoModelForCausalLM": "modeling_tiny_remote.TinyRemoteForCausalLM"}}
    shard = hashlib.sha256(b"remote").digest() * 5000
    return {
        "config.json": json.dumps(config, indent=2).encode(),
        "configuration_tiny_remote.py": REMOTE_CONFIG_PY,
        "modeling_tiny_remote.py": REMOTE_MODELING_PY,
        "model.safetensors": shard,
        "README.md": b"# tiny remote-code model\n",
        ".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
    }


def data_files() -> dict[str, bytes]:
    rows = [json.dumps({"prompt": f"What is {i} + {i}?", "label": str(2 * i)}) for i in range(3000)]
    return {DATA_FILE: ("\n".join(rows) + "\n").encode(), "README.md": b"# tiny data\n"}


@dataclass
class SmallRepos:
    hub: HubServer
    model: FakeRepo
    data: FakeRepo
    old_rev: str  # the pinned model revision
    new_rev: str  # a later revision (main) with different weights
    data_rev: str

    def files_at(self, rev: str) -> dict[str, bytes]:
        return self.model.revisions[rev]


@pytest.fixture(name="hub")
def hub_fixture():
    with HubServer() as server:
        yield server


@pytest.fixture(name="small_repos")
def small_repos_fixture(hub: HubServer) -> SmallRepos:
    model = hub.add_repo(FakeRepo(MODEL_REPO, "model"))
    old = model.add_revision(model_files(1))
    new = model.add_revision(model_files(2))
    data = hub.add_repo(FakeRepo(DATA_REPO, "dataset"))
    data_rev = data.add_revision(data_files())
    return SmallRepos(hub, model, data, old, new, data_rev)


RECIPE_TOML = """\
schema = 1
name = "{name}"
title = "test recipe on a loopback Hub"
framework = "miles"
default_cell = "default"

[files]
model_args = "model_args.txt"
run_script = "run.sh"
expected_metrics = "expected_metrics.toml"
manifest = "inputs.sha256"
recipe_manifest = "recipe.sha256"

[image]
reference = "example/image:v1@sha256:{digest}"

[pins]
miles_commit = "78527b9102b3a5f15891128cbec3ac6c2dc4089e"

[model]
repo = "{model_repo}"
revision = "{model_rev}"
dir = "model"

[data]
repo = "{data_repo}"
repo_type = "dataset"
revision = "{data_rev}"
file = "{data_file}"
dir = "data"

[cells.default]
tp = 1
pp = 1
cp = 1
ep = 1
etp = 1
max_tokens_per_gpu = 1024
"""


def make_bundle(tmp: Path, repos: SmallRepos, name: str = "tiny_hub", model_rev: str | None = None,
                model_repo: str = MODEL_REPO) -> Path:
    """A bundle root (RECIPE_BUNDLE_ROOT) with one recipe pinned to the loopback repos."""
    d = tmp / "bundle" / "recipes" / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "recipe.toml").write_text(RECIPE_TOML.format(
        name=name, digest="ab" * 32, model_repo=model_repo, model_rev=model_rev or repos.old_rev,
        data_repo=DATA_REPO, data_rev=repos.data_rev, data_file=DATA_FILE))
    (d / "model_args.txt").write_text("--num-layers 2\n")
    (d / "run.sh").write_text("#!/usr/bin/env bash\necho run\n")
    return tmp / "bundle"


def hub_env(hub: HubServer, tmp: Path, bundle: Path | None = None, **extra: str) -> dict[str, str]:
    """Environment for a `recipe` subprocess: HF_ENDPOINT set before huggingface_hub is imported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "RECIPE_"))}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp / "hf_home"), HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_XET="1", NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
               **extra)
    if bundle is not None:
        env["RECIPE_BUNDLE_ROOT"] = str(bundle)
    return env


def recipe_cli(args: list[str], env: dict[str, str], cwd: Path | None = None, timeout: float = 120
               ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner.cli", *args], env=env, cwd=cwd or REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout)
