"""The `model` preflight's own logic (runner/frameworks/miles_model.py): the comparison of a built
provider with the recipe, the plugin warnings, and what it says where it cannot run. The real stack
builds the provider in tests/test_upstream_model.py; here the provider fields are given."""

from __future__ import annotations

import pytest
from conftest import ROOT
from test_argcheck import launch

from runner.errors import UsageError
from runner.frameworks import miles_model as mm
from runner.plan.render import render_plan
from runner.recipe import load_recipe

NANO = load_recipe("nemotron3_nano")


def built(**provider):
    """A child's result for the shipped model args, with `provider` changing the built fields."""
    fields = {"num_layers": 52, "hidden_size": 2688, "num_moe_experts": 128, "moe_router_topk": 6,
              "moe_router_topk_scaling_factor": 2.5, "share_embeddings_and_output_weights": False,
              "moe_router_pre_softmax": False, "moe_aux_loss_coeff": 0.0, "hybrid_override_pattern": "ME*"}
    fields.update(provider)
    args = {"num_layers": 52, "hidden_size": 2688, "num_experts": 128, "moe_router_topk": 6,
            "moe_router_topk_scaling_factor": 2.5, "untie_embeddings_and_output_weights": True,
            "moe_router_pre_softmax": True, "moe_aux_loss_coeff": 0.0, "group_query_attention": True}
    return {"status": "built", "provider": fields, "args": args,
            "dests": {f"--{k.replace('_', '-')}": k for k in args}}


MODEL_ARGS = ["--num-layers", "52", "--hidden-size", "2688", "--num-experts", "128", "--moe-router-topk", "6",
              "--moe-router-topk-scaling-factor", "2.5", "--untie-embeddings-and-output-weights",
              "--moe-router-pre-softmax", "--moe-aux-loss-coeff", "0", "--group-query-attention"]


def by_field(rows):
    return {r.field: r for r in rows}


def test_equal_fields_pass_and_names_are_megatrons():
    rows = by_field(mm.compare(built(), MODEL_ARGS, [("hybrid_override_pattern", "ME*", "hf_config.json x")],
                               {"moe_router_pre_softmax": "no effect with sigmoid"}))
    assert rows["num_moe_experts"].source == "model_args.txt --num-experts"  # Megatron's rename
    assert rows["share_embeddings_and_output_weights"].claimed is False  # --untie-... negated
    assert "group_query_attention" not in rows  # no TransformerConfig field of its own
    assert rows["moe_aux_loss_coeff"].built_from == "copied from the argv by miles"
    assert rows["hybrid_override_pattern"].status == "ok"
    assert rows["moe_router_pre_softmax"].status == "accepted"
    assert {r.status for r in rows.values()} == {"ok", "accepted"}


def test_a_differing_field_is_one_line_naming_both_values_and_their_sources():
    (row,) = [r for r in mm.compare(built(moe_router_topk_scaling_factor=1.0), MODEL_ARGS, [], {})
              if r.status == "differs" and r.field != "moe_router_pre_softmax"]
    assert row.line() == ("moe_router_topk_scaling_factor: built 1.0 (config.json via the bridge), recipe 2.5 "
                          "(model_args.txt --moe-router-topk-scaling-factor)")


def test_an_unaccepted_difference_fails_and_a_family_claim_is_compared():
    rows = by_field(mm.compare(built(hybrid_override_pattern="MM*"), MODEL_ARGS,
                               [("hybrid_override_pattern", "ME*", "hf_config.json hybrid_override_pattern"),
                                ("mamba_state_dim", 128, "hf_config.json ssm_state_size")], {}))
    assert rows["moe_router_pre_softmax"].status == "differs"
    assert rows["hybrid_override_pattern"].status == "differs"
    assert rows["mamba_state_dim"].built == "(no such field)" and rows["mamba_state_dim"].status == "differs"


def test_none_is_not_zero_and_ints_equal_floats():
    assert not mm._same(None, 128) and not mm._same(None, False) and mm._same(0, 0.0) and mm._same(True, True)


@pytest.mark.parametrize("line", [
    "miles megatron.bridge plugins failed to load: No module named 'x'",
    "miles nemotron_h plugin failed to load: boom",
    "miles nemotron_h shim _build_bridge_subclass not applied: boom",
])
def test_each_plugin_warning_miles_logs_is_a_problem(line):
    (p,) = mm.plugin_problems(["deep_ep is not installed, some functionalities may be limited.", line])
    assert p.startswith("plugin: ") and line in p


def test_outside_the_image_it_is_skipped_naming_what_is_missing(tmp_path, monkeypatch):
    c = mm.check_model(NANO, launch(tmp_path, monkeypatch, miles=tmp_path / "none").plan)
    assert c.status == "skipped" and "miles is not importable" in c.detail and "not inside the pinned image" in c.detail


def test_with_miles_but_no_megatron_bridge_it_is_skipped_naming_it(tmp_path, monkeypatch):
    c = mm.check_model(NANO, launch(tmp_path, monkeypatch).plan)  # tests/data/fake_miles: no megatron.bridge
    assert c.status == "skipped" and "megatron.bridge is not importable" in c.detail


def planted(tmp_path, miles_init: str):
    """A miles and an (empty) megatron.bridge on the job's path, miles' package body being miles_init."""
    root = tmp_path / "planted"
    for pkg in ("miles", "megatron", "megatron/bridge"):
        (root / pkg).mkdir(parents=True, exist_ok=True)
        (root / pkg / "__init__.py").write_text("")
    (root / "miles" / "__init__.py").write_text(miles_init)
    return root


def test_a_stack_that_cannot_be_imported_fails_naming_the_error(tmp_path, monkeypatch):
    lc = launch(tmp_path, monkeypatch, miles=planted(tmp_path, ""))  # no miles.backends
    c = mm.check_model(NANO, lc.plan)
    assert c.status == "fail" and "could not be imported: ModuleNotFoundError" in c.detail
    assert "miles.backends" in c.detail


def test_a_hanging_build_is_ended_at_the_timeout(tmp_path, monkeypatch):
    lc = launch(tmp_path, monkeypatch, miles=planted(tmp_path, "import time\ntime.sleep(60)\n"))
    monkeypatch.setenv("RECIPE_MODEL_CHECK_TIMEOUT", "2")
    c = mm.check_model(NANO, lc.plan)
    assert c.status == "fail" and "did not finish within 2 s" in c.detail and c.data["seconds"] < 30


def test_the_framework_table_must_be_a_table(tmp_path):
    from runner.recipe import load_recipe_dir

    text = (ROOT / "recipes" / "nemotron3_nano" / "recipe.toml").read_text()
    text = text[:text.index("[miles]")] + text[text.index("[hardware]"):]
    (tmp_path / "nemotron3_nano").mkdir()
    bad = text.replace("schema = 1", 'schema = 1\nmiles = "MilesNemotronHBridge"')
    (tmp_path / "nemotron3_nano" / "recipe.toml").write_text(bad)
    with pytest.raises(UsageError, match=r"recipe.toml: \[miles\] must be a table"):
        load_recipe_dir(tmp_path / "nemotron3_nano")


def test_the_shipped_recipe_names_its_bridge_and_why_each_accepted_difference_is_harmless():
    opts = NANO.framework_options
    assert opts["bridge"] == "MilesNemotronHBridge"
    assert set(opts["accepted_model_differences"]) == {"moe_router_pre_softmax"}


def test_doctor_shows_one_row_per_field_and_per_problem(monkeypatch):
    from runner import doctor
    from runner.checks import fail
    from runner.frameworks.miles import Miles

    rows = mm.compare(built(moe_router_topk_scaling_factor=1.0), MODEL_ARGS, [], {"moe_router_pre_softmax": "why"})
    check = fail("model", "differs", "fix")
    check.data = {"rows": [r.as_dict() for r in rows], "bridge": {"name": "NemotronHBridge", "module": "m"},
                  "problems": [{"kind": "plugin", "line": "plugin: miles' plugins failed (logged: x)"},
                               {"kind": "finalize", "line": "finalize() failed (E at f:1): boom"},
                               {"kind": "field", "line": rows[4].line()}]}
    monkeypatch.setattr(Miles, "preflight_check", lambda self, name, launch: check)
    got = doctor.model_rows(NANO, render_plan(NANO))
    assert (got[0].name, got[0].expected, got[0].found, got[0].status) == \
        ("bridge", "MilesNemotronHBridge", "NemotronHBridge", doctor.ERROR)
    by_name = {r.name: r for r in got}
    assert by_name["moe_router_topk_scaling_factor"].status == doctor.ERROR
    assert by_name["moe_router_topk_scaling_factor"].found == "1.0"
    accepted = by_name["moe_router_pre_softmax"]
    assert accepted.status == doctor.OK and "accepted: why" in accepted.detail
    assert by_name["plugin"].status == doctor.ERROR and by_name["finalize"].status == doctor.ERROR
    assert len(got) == 1 + len(rows) + 2


def test_doctor_outside_the_image_says_not_checked():
    from runner import doctor

    (row,) = doctor.model_rows(NANO, render_plan(NANO))
    assert row.status == doctor.SKIPPED and row.found == "not checked" and "not run" in row.detail


def test_the_run_record_keeps_the_rows(tmp_path, monkeypatch):
    from runner.checks import fail
    from runner.launch.run import provenance

    lc = launch(tmp_path, monkeypatch)
    check = fail("model", "differs", "fix")
    check.data = {"rows": [r.as_dict() for r in mm.compare(built(num_layers=48), MODEL_ARGS, [], {})]}
    (row,) = [c for c in provenance(lc, [check])["preflight"] if c["name"] == "model"]
    first = row["data"]["rows"][0]
    assert row["status"] == "fail" and (first["field"], first["built"], first["claimed"]) == ("num_layers", 48, 52)
