"""recipe.toml's `gpu` may name alternatives ("H100/H200"); preflight accepts either, refuses others."""
from __future__ import annotations

import pytest

from runner import hostinfo
from runner.launch import preflight


def _gpus(name):
    return [{"name": name, "memory_mib": "81559", "driver": "580.1"}] * 8


@pytest.mark.parametrize("name, ok", [("NVIDIA H100 80GB HBM3", True), ("NVIDIA H200", True),
                                      ("NVIDIA A100-SXM4-80GB", False)])
def test_gpu_alternatives(monkeypatch, name, ok):
    monkeypatch.setattr(hostinfo, "gpus", lambda: _gpus(name))
    c = preflight.check_gpus(8, "H100/H200", 79)
    assert (c.status == "ok") is ok, c
