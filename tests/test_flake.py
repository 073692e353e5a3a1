"""flake.nix, checked offline: it parses, and its outputs evaluate against a stub nixpkgs
(tests/nix/flake_stub_eval.nix) to the structure the bundle promises. Nothing is built here:
no Nix cache is reachable from this machine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tomllib

import pytest
from conftest import ROOT


def nix_instantiate() -> str:
    exe = shutil.which("nix-instantiate")
    if not exe:
        if os.environ.get("CI") == "true":
            pytest.fail("nix-instantiate not installed (apt-get install -y nix-bin)")
        pytest.skip("nix-instantiate not installed (apt-get install -y nix-bin)")
    return exe


def nix(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([nix_instantiate(), *args], capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_flake_parses():
    p = nix("--parse", "flake.nix")
    assert p.returncode == 0, p.stderr


def test_a_broken_nix_file_does_not_parse(tmp_path):
    bad = tmp_path / "flake.nix"
    bad.write_text((ROOT / "flake.nix").read_text().replace("outputs = {", "outputs = {{", 1))
    assert nix("--parse", str(bad)).returncode != 0


@pytest.fixture(scope="module")
def evaluated() -> dict:
    p = nix("--eval", "--json", "--strict", "tests/nix/flake_stub_eval.nix")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_outputs_package_app_shell_and_image(evaluated):
    assert evaluated["outputNames"] == ["apps", "devShells", "packages"]
    assert evaluated["systems"] == ["aarch64-linux", "x86_64-linux"]
    assert evaluated["packages"] == ["default", "image", "recipe"]
    assert evaluated["defaultIsRecipe"] == "recipe-bundle"
    assert evaluated["app"]["type"] == "app" and evaluated["app"]["program"].endswith("/bin/recipe")
    for tool in ("python-env", "just", "shellcheck", "hadolint", "python-app"):
        assert tool in evaluated["shell"]


def test_image_layers_onto_the_locked_base_by_digest(evaluated):
    lock = tomllib.loads((ROOT / "docker" / "image.lock").read_text())
    pulled = evaluated["pulled"]
    assert pulled["kind"] == "pullImage"
    assert f"{pulled['imageName']}:{pulled['finalImageTag']}@{pulled['imageDigest']}" == lock["base"]["reference"]
    assert pulled["imageDigest"] == lock["base"]["digest"]
    # The NAR hash is not known yet: the flake must use the loud fake, never a made-up real one.
    assert pulled["hash"] == lock.get("nix", {}).get("base_nar_hash", "sha256-" + "A" * 43 + "=")
    assert (pulled["arch"], evaluated["pulledArm"]) == ("amd64", "arm64")
    img = evaluated["image"]
    assert img["kind"] == "layered-image" and img["entrypoint"] == ["/usr/local/bin/recipe"]
    assert "RECIPE_IN_IMAGE=1" in img["env"]
    assert img["labels"]["org.opencontainers.image.base.digest"] == lock["base"]["digest"]
