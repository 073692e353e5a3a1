"""The `model` preflight (runner/frameworks/miles_model.py) against the REAL upstream stack on CPU.

The child does what miles does in bridge mode (miles 78527b91 model_provider.py:163-169): imports
miles' bridge plugin the way miles does, parses the launch's argv with miles' parse_args,
`AutoBridge.from_hf_pretrained(..., trust_remote_code=True).to_megatron_provider(load_weights=False)`,
`_apply_bridge_runtime_config`, `finalize()`; all real code of miles 78527b91, radixark/Megatron-LM
37f91617 and NVIDIA-NeMo/Megatron-Bridge 73eb4b27 or 98dd9f95 (tests/upstream_stack.py).

Not real, and why: Transformer Engine is tests/data/te_names_only (names only: it needs CUDA to
install, and building a provider instantiates no TE layer; that module says what megatron imports
of it); the three GPU answers of ci/upstream/recipe_upstream_gpu_shim.py, as in the args tests; the
remote configuration file (tests/upstream_stack.py). megatron.bridge reaches the job through
PYTHONPATH here; the image installs it.

Differs from the image: the image's bridge is radixark/Megatron-Bridge 7f0fb345, which cannot be
fetched here; 73eb4b27 is the newest NVIDIA-NeMo commit that imports against radixark's Megatron-LM
fork, and 98dd9f95 is the commit before upstream's Nemotron-3-Nano support. Whether 7f0fb345 builds
like either is exactly what this check answers when it runs inside the image.
"""

from __future__ import annotations

import json

import pytest
from upstream_stack import BRIDGES, NANO, TE_NAMES_ONLY, launch, make_inputs

from runner.frameworks.miles_model import check_model

pytestmark = pytest.mark.slow  # each builds a provider in a child (~20 s on 2 cores)


def model_check(lc, bridge="73eb4b27", before=()):
    """The check with megatron.bridge at `bridge` on the job's PYTHONPATH (after miles and Megatron),
    and `before` ahead of everything (planted packages)."""
    env = lc.plan.job_env
    env["PYTHONPATH"] = ":".join([*map(str, before), env["PYTHONPATH"], str(BRIDGES[bridge]), str(TE_NAMES_ONLY)])
    return check_model(lc.recipe, lc.plan)


def rows(c):
    return {r["field"]: r for r in c.data["rows"]}


def failing_plugin(tmp_path):
    """A miles_plugins package that fails on import, ahead of miles' own on the path."""
    pkg = tmp_path / "planted" / "miles_plugins"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text('raise ImportError("planted: miles_plugins made to fail on import")\n')
    return pkg.parent


def test_upstream_model_shipped_recipe_builds_as_stated_with_bridge_73eb4b27(tmp_path, monkeypatch):
    c = model_check(launch(tmp_path, monkeypatch))
    assert c.status == "ok", c.detail
    assert c.data["bridge"] == {"name": "MilesNemotronHBridge", "module": "miles_plugins.megatron_bridge.nemotron_h"}
    r = rows(c)
    assert r["moe_router_topk_scaling_factor"]["built"] == 2.5 and r["num_moe_experts"]["built"] == 128
    assert r["moe_router_topk"]["built"] == 6 and r["moe_router_score_function"]["built"] == "sigmoid"
    assert r["hybrid_override_pattern"]["status"] == "ok" and r["mamba_num_heads"]["built"] == 64
    assert r["moe_router_pre_softmax"]["status"] == "accepted" and "note: moe_router_pre_softmax" in c.detail
    assert {x["status"] for x in c.data["rows"]} == {"ok", "accepted"} and len(r) >= 30
    print("\n" + "\n".join(f"{f:38} {x['status']:9} built {x['built']!r:12} recipe {x['claimed']!r:12} {x['source']}"
                           for f, x in r.items()))


def test_upstream_model_plugin_failing_on_import_fails_naming_the_plugin(tmp_path, monkeypatch):
    c = model_check(launch(tmp_path, monkeypatch), before=[failing_plugin(tmp_path)])
    assert c.status == "fail"
    plugin = [x for x in c.data["lines"] if x.startswith("plugin:")]
    assert plugin and "miles megatron.bridge plugins failed to load: planted" in plugin[0], c.detail
    assert any(x.startswith("bridge: NemotronHBridge") and "expects MilesNemotronHBridge" in x
               for x in c.data["lines"]), c.detail
    assert rows(c)["moe_router_topk_scaling_factor"]["built"] == 2.5  # the stock bridge still reads 2.5
    kinds = {p["kind"] for p in c.data["problems"]}  # what `recipe doctor` reads, without parsing lines
    assert {"plugin", "bridge"} <= kinds and [p["line"] for p in c.data["problems"]] == c.data["lines"]


def test_upstream_model_config_with_routed_scaling_factor_1_fails_naming_the_field(tmp_path, monkeypatch):
    cfg = json.loads((NANO / "hf_config.json").read_text())
    cfg["routed_scaling_factor"] = 1.0  # what the model gets; the command line still says 2.5
    c = model_check(launch(tmp_path, monkeypatch, inputs=make_inputs(tmp_path, json.dumps(cfg).encode())))
    assert c.status == "fail"
    assert c.data["lines"] == ["moe_router_topk_scaling_factor: built 1.0 (config.json via the bridge), recipe 2.5 "
                               "(model_args.txt --moe-router-topk-scaling-factor)"], c.detail


def test_upstream_model_bridge_98dd9f95_without_the_plugin_fails(tmp_path, monkeypatch):
    c = model_check(launch(tmp_path, monkeypatch), bridge="98dd9f95", before=[failing_plugin(tmp_path)])
    assert c.status == "fail"
    lines = c.data["lines"]
    assert any(x.startswith("finalize() failed") and "num_moe_experts must be non None" in x for x in lines), lines
    assert "finalize" in {p["kind"] for p in c.data["problems"]}
    assert rows(c)["num_moe_experts"]["built"] is None and rows(c)["num_moe_experts"]["status"] == "differs"
    assert rows(c)["moe_router_score_function"]["built"] == "softmax"


def test_upstream_model_bridge_98dd9f95_with_the_plugin_names_the_load_balancing_type(tmp_path, monkeypatch):
    c = model_check(launch(tmp_path, monkeypatch), bridge="98dd9f95")
    assert c.data["bridge"]["name"] == "MilesNemotronHBridge"
    assert c.status == "fail" and [x.split(":")[0] for x in c.data["lines"]] == ["moe_router_load_balancing_type"], \
        c.detail
