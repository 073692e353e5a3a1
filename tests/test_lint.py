"""`recipe lint`: the shipped recipe is clean; each planted silent mistake is caught by name."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import ROOT, clean_env, recipe

from runner.frameworks.miles_traps import recipe_findings
from runner.lint import lint_recipe
from runner.recipe import list_recipes, load_recipe

NANO_DIR = ROOT / "recipes" / "nemotron3_nano"
MODEL_ARGS = (NANO_DIR / "model_args.txt").read_text()
HF_CONFIG = json.loads((NANO_DIR / "hf_config.json").read_text())


def test_shipped_recipe_lints_clean_against_the_real_config():
    report = lint_recipe("nemotron3_nano")
    assert report.errors == [], [f.message for f in report.errors]
    assert report.checked == ["provenance", "model", "recipe", "layout"]
    assert report.skipped == {}
    # what the shipped recipe does on purpose is still said, as notes
    assert {f.rule for f in report.notes} == {"recipe.kl_zero", "recipe.pause_mode", "recipe.miles_router",
                                              # bridge mode: what of model_args.txt reaches the model
                                              "bridge.model_from_config", "bridge.pre_softmax",
                                              "bridge.load_balancing", "model.scaling_factor"}


def test_cli_clean_exit_0_and_json():
    p = recipe("lint", "nemotron3_nano", "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["ok"] and d["counts"]["errors"] == 0
    assert p.stderr == ""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    f = tmp_path / name
    f.write_text(text)
    return f


def _args(tmp_path: Path, old: str, new: str) -> Path:
    assert old in MODEL_ARGS
    return _write(tmp_path, "model_args.txt", MODEL_ARGS.replace(old, new))


def _config(tmp_path: Path, **changes) -> Path:
    cfg = {k: v for k, v in HF_CONFIG.items() if changes.get(k, 0) is not None}
    cfg.update({k: v for k, v in changes.items() if v is not None})
    return _write(tmp_path, "config.json", json.dumps(cfg, indent=2))


# (how to plant it, the rule, words the message must contain)
PLANTED = [
    ("scaling factor removed", lambda t: {"args_file": _args(t, "--moe-router-topk-scaling-factor 2.5\n", "")},
     "model.scaling_factor", ["--moe-router-topk-scaling-factor", "routed_scaling_factor", "2.5", "1.0",
                              "bridge mode", "does not reach"]),
    ("top-k 5", lambda t: {"args_file": _args(t, "--moe-router-topk 6", "--moe-router-topk 5")},
     "model.topk", ["--moe-router-topk 5", "num_experts_per_tok", "6", "drift"]),
    ("query groups 8", lambda t: {"args_file": _args(t, "--num-query-groups 2", "--num-query-groups 8")},
     "model.query_groups", ["--num-query-groups 8", "num_key_value_heads", "2"]),
    ("experts 64", lambda t: {"args_file": _args(t, "--num-experts 128", "--num-experts 64")},
     "model.num_experts", ["--num-experts 64", "n_routed_experts", "128"]),
    ("Mamba n_groups taken for the router's n_group",
     lambda t: {"args_file": _args(t, "--moe-router-num-groups 1", "--moe-router-num-groups 8")},
     "model.router_groups", ["--moe-router-num-groups 8", "n_group = 1", "n_groups", "Mamba"]),
    ("config.json n_group changed", lambda t: {"hf_config": _config(t, n_group=8)},
     "model.router_groups", ["--moe-router-num-groups 1", "n_group = 8"]),
    ("config.json topk_group changed", lambda t: {"hf_config": _config(t, topk_group=2)},
     "model.router_group_topk", ["--moe-router-group-topk 1", "topk_group = 2"]),
    ("config.json without routed_scaling_factor",
     lambda t: {"hf_config": _config(t, routed_scaling_factor=None)},
     "model.scaling_factor", ["routed_scaling_factor (absent; transformers default)", "1.0", "2.5"]),
    ("softmax scoring", lambda t: {"args_file": _args(t, "--moe-router-score-function sigmoid\n", "")},
     "model.score_function", ["--moe-router-score-function", "softmax", "sigmoid"]),
    ("expert bias off", lambda t: {"args_file": _args(t, "--moe-router-enable-expert-bias\n", "")},
     "model.expert_bias", ["--moe-router-enable-expert-bias", "e_score_correction_bias"]),
    ("RoPE default", lambda t: {"args_file": _args(t, "--position-embedding-type none\n", "")},
     "model.position_embedding", ["--position-embedding-type", "learned_absolute"]),
    ("tied embeddings", lambda t: {"args_file": _args(t, "--untie-embeddings-and-output-weights\n", "")},
     "model.tied_embeddings", ["--untie-embeddings-and-output-weights", "tie_word_embeddings = false"]),
    ("head_dim", lambda t: {"args_file": _args(t, "--kv-channels 128\n", "")},
     "model.kv_channels", ["--kv-channels", "head_dim = 128", "84"]),
    ("vocab", lambda t: {"args_file": _args(t, "--vocab-size 131072", "--vocab-size 128000")},
     "model.vocab_size", ["--vocab-size 128000", "vocab_size = 131072"]),
    ("shared expert", lambda t: {"args_file": _args(t, "--moe-shared-expert-intermediate-size 3712",
                                                    "--moe-shared-expert-intermediate-size 1856")},
     "model.shared_expert", ["moe_shared_expert_intermediate_size = 3712", "1856"]),
    ("layers", lambda t: {"args_file": _args(t, "--num-layers 52", "--num-layers 48")},
     "model.num_layers", ["--num-layers 48", "hybrid_override_pattern", "52"]),
    ("no GQA flag", lambda t: {"args_file": _args(t, "--group-query-attention\n", "")},
     "model.query_groups", ["--group-query-attention", "32 K/V heads", "num_key_value_heads = 2"]),
    ("norm_topk_prob false", lambda t: {"hf_config": _config(t, norm_topk_prob=False)},
     "model.norm_topk_prob", ["norm_topk_prob", "renormalizes"]),
]


@pytest.mark.parametrize("plant,rule,words", [p[1:] for p in PLANTED], ids=[p[0] for p in PLANTED])
def test_each_planted_mistake_is_caught_by_name(tmp_path, plant, rule, words):
    report = lint_recipe("nemotron3_nano", **plant(tmp_path))
    assert [f.rule for f in report.errors] == [rule], [f.message for f in report.errors]
    msg = report.errors[0].message
    for w in words:
        assert w in msg, msg
    assert "\n" not in msg


def test_planted_mistake_fails_the_cli_with_exit_1(tmp_path):
    args = _args(tmp_path, "--moe-router-topk-scaling-factor 2.5\n", "")
    p = recipe("lint", "nemotron3_nano", "--args", str(args), env=clean_env(COLUMNS="300"))   # one line a row
    assert p.returncode == 1
    line = next(ln for ln in p.stdout.splitlines() if ln.startswith("error"))
    assert "model.scaling_factor" in line and "routed_scaling_factor = 2.5" in line and "does not reach" in line
    assert "1 error(s)" in p.stdout


@pytest.mark.parametrize("argv,why", [
    (["--args", "/nonexistent/model_args.txt"], "cannot read args file"),
    (["--hf-config", "/nonexistent/config.json"], "no such file"),
    (["--cell", "tp9"], "unknown cell 'tp9'"),
])
def test_bad_input_is_one_line_and_exit_2(argv, why):
    p = recipe("lint", "nemotron3_nano", *argv)
    assert p.returncode == 2
    assert why in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_config_that_is_not_json_is_a_usage_error(tmp_path):
    bad = _write(tmp_path, "config.json", "{not json")
    p = recipe("lint", "nemotron3_nano", "--hf-config", str(bad))
    assert p.returncode == 2 and "not valid JSON" in p.stderr


# -- recipe-level rules, on the rendered argv ---------------------------------------------------
def _rules(argv, moe=True):
    return {f.rule: f.severity for f in recipe_findings(argv, moe)}


def test_recipe_rules_on_argv():
    r3 = ["--use-rollout-routing-replay", "--colocate", "--pause-generation-mode", "abort"]
    assert _rules(r3) == {}
    assert _rules(["--colocate"]) == {"recipe.r3": "error"}
    assert _rules(["--colocate"], moe=False) == {}
    assert _rules([*r3[:2], "--pause-generation-mode", "retract"]) == {"recipe.pause_mode": "warning"}
    assert _rules(r3[:2]) == {"recipe.pause_mode": "note"}  # default retract, nothing in flight
    assert _rules([r3[0], "--partial-rollout"]) == {"recipe.pause_mode": "warning"}
    bridge = [*r3, "--megatron-to-hf-mode", "bridge", "--hf-checkpoint", "/m/a", "--ref-load"]
    assert _rules([*bridge, "/m/a/"]) == {}
    assert _rules([*bridge, "/m/b"]) == {"recipe.ref_load": "warning"}
    assert _rules([*r3, "--use-kl-loss", "--kl-loss-coef", "0.00"]) == {"recipe.kl_zero": "note"}
    assert _rules([*r3, "--use-kl-loss", "--kl-loss-coef", "0.01"]) == {}
    assert _rules([*r3, "--use-rollout-logprobs"]) == {"recipe.rollout_logprobs": "warning"}
    assert _rules([*r3, "--use-miles-router"]) == {"recipe.miles_router": "note"}


def test_miles_router_note_says_what_the_flag_is_and_is_not():
    (note,) = [f for f in recipe_findings(["--use-rollout-routing-replay", "--colocate", "--pause-generation-mode",
                                           "abort", "--use-miles-router"], True)]
    assert note.flag == "--use-miles-router"
    assert "Python HTTP router" in note.message and "sgl-router" in note.message
    assert "not routing replay" in note.message and "--use-rollout-routing-replay" in note.message


def test_miles_router_note_follows_the_recipes_row(bundle):
    toml = bundle / "nemotron3_nano" / "recipe.toml"
    env = clean_env(RECIPE_BUNDLE_ROOT=str(bundle.parent))
    assert "recipe.miles_router" in recipe("lint", "nemotron3_nano", env=env).stdout
    toml.write_text(toml.read_text().replace("use_miles_router = true", "use_miles_router = false"))
    p = recipe("lint", "nemotron3_nano", env=env)
    assert p.returncode == 0 and "recipe.miles_router" not in p.stdout


@pytest.fixture
def bundle(tmp_path, monkeypatch):
    """A copy of the bundle's recipes to plant mistakes in; RECIPE_BUNDLE_ROOT points at it."""
    shutil.copytree(ROOT / "recipes" / "lib", tmp_path / "recipes" / "lib")
    shutil.copytree(NANO_DIR, tmp_path / "recipes" / "nemotron3_nano")
    monkeypatch.setenv("RECIPE_BUNDLE_ROOT", str(tmp_path))
    return tmp_path / "recipes"


def test_a_moe_recipe_without_r3_is_an_error_end_to_end(bundle):
    toml = bundle / "nemotron3_nano" / "recipe.toml"
    toml.write_text(toml.read_text().replace("use_rollout_routing_replay = true", "use_rollout_routing_replay = false"))
    p = recipe("lint", "nemotron3_nano", env=clean_env(RECIPE_BUNDLE_ROOT=str(bundle.parent)))
    assert p.returncode == 1
    assert "recipe.r3" in p.stdout and "--use-rollout-routing-replay" in p.stdout


def test_shipped_config_that_is_not_the_pinned_one_is_an_error(bundle):
    cfg = bundle / "nemotron3_nano" / "hf_config.json"
    cfg.write_text(cfg.read_text().replace('"routed_scaling_factor": 2.5', '"routed_scaling_factor": 2.0'))
    report = lint_recipe("nemotron3_nano")
    rules = [f.rule for f in report.errors]
    assert "provenance.hf_config" in rules and "model.scaling_factor" in rules


def _add_cell(bundle: Path, name: str, tp: int, ep: int, sp: bool = True) -> None:
    toml = bundle / "nemotron3_nano" / "recipe.toml"
    toml.write_text(toml.read_text() + f"\n[cells.{name}]\ntp = {tp}\npp = 1\ncp = 1\nep = {ep}\netp = 1\n"
                    f"sp = {'true' if sp else 'false'}\nmax_tokens_per_gpu = 1024\n")


def test_a_cell_that_cannot_fit_is_an_error(bundle):
    _add_cell(bundle, "tp4_ep2", 4, 2)
    report = lint_recipe("nemotron3_nano", cell="tp4_ep2")
    assert [f.rule for f in report.errors] == ["layout.memory"]
    assert "cell tp4_ep2 (TP4 PP1 CP1 EP2 ETP1 +SP)" in report.errors[0].message
    assert "out of memory" in report.errors[0].message
    assert lint_recipe("nemotron3_nano", cell="ep4").ok


def test_a_cell_breaking_megatron_rules_is_an_error(bundle):
    _add_cell(bundle, "tp3", 3, 1)
    report = lint_recipe("nemotron3_nano", cell="tp3")
    msgs = [f.message for f in report.errors if f.rule == "layout.divisibility"]
    assert any("32 attention heads are not divisible by TP=3" in m for m in msgs), msgs
    assert "plan could not be rendered" in report.skipped["recipe"]  # the launch itself refuses this cell


def test_ep_and_tp_without_sequence_parallel_warns(bundle):
    _add_cell(bundle, "tp2_ep4_nosp", 2, 4, sp=False)
    report = lint_recipe("nemotron3_nano", cell="tp2_ep4_nosp")
    assert report.ok
    assert any("sequence parallel" in f.message for f in report.warnings)


def test_non_miles_recipe_skips_miles_rules(tmp_path, monkeypatch):
    d = tmp_path / "recipes" / "toy_trl"
    d.mkdir(parents=True)
    (d / "recipe.toml").write_text(
        'schema = 1\nname = "toy_trl"\nframework = "trl"\ndefault_cell = "cpu"\n'
        '[files]\nmodel_args = "model_args.txt"\n'
        'run_script = "run.sh"\nexpected_metrics = "expected_metrics.toml"\nmanifest = "inputs.sha256"\n'
        '[image]\nreference = "none"\n[hardware]\nnodes = 1\ngpus_per_node = 0\n'
        '[trl]\nrollout_batch_size = 1\nn_samples_per_prompt = 1\nrollout_max_response_len = 1\n'
        'global_batch_size = 1\nlr = "1e-3"\n'
        '[run]\nnum_rollout = 1\nseed = 1\nrollout_seed = 1\n'
        '[cells.cpu]\ntp = 1\npp = 1\ncp = 1\nep = 1\netp = 1\nmax_tokens_per_gpu = 256\n')
    (d / "model_args.txt").write_text("--learning_rate 1e-5\n")
    monkeypatch.setenv("RECIPE_BUNDLE_ROOT", str(tmp_path))
    report = lint_recipe(load_recipe("toy_trl"))
    assert report.ok and report.findings == []
    assert set(report.skipped) == {"provenance", "model", "recipe", "layout"}
    p = recipe("lint", "toy_trl", env=clean_env(RECIPE_BUNDLE_ROOT=str(tmp_path)))
    assert p.returncode == 0 and "not applicable: framework 'trl': no trainer model flags" in p.stdout


def test_a_missing_layer_count_is_judged_not_skipped(tmp_path):
    report = lint_recipe("nemotron3_nano", args_file=_args(tmp_path, "--num-layers 52\n", ""))
    assert "model" in report.checked
    assert {f.rule for f in report.errors} == {"model.num_layers", "layout.model_args"}


def test_layout_checks_follow_the_launch_size():
    """`recipe run --gpus-per-node 4` lints the cell on 4 GPUs: EP4 alone there holds twice the Adam state."""
    assert lint_recipe("nemotron3_nano", cell="ep4").ok
    small = lint_recipe("nemotron3_nano", cell="ep4", gpus_per_node=4)
    assert [f.rule for f in small.errors] == ["layout.memory"]
    assert "on 4 GPUs" in small.errors[0].message


def test_config_without_layer_pattern_warns_and_still_checks_experts(tmp_path):
    report = lint_recipe("nemotron3_nano", hf_config=_config(tmp_path, hybrid_override_pattern=None))
    assert report.ok, [f.message for f in report.errors]
    assert {"model.layer_pattern", "layout.memory"} <= {f.rule for f in report.warnings}
    planted = lint_recipe("nemotron3_nano", args_file=_args(tmp_path, "--num-experts 128", "--num-experts 64"),
                          hf_config=_config(tmp_path, hybrid_override_pattern=None))
    assert "model.num_experts" in {f.rule for f in planted.errors}


# -- what reaches the model in bridge mode (miles 78527b91 model_provider.py) ----------------------------
def test_without_bridge_mode_the_scaling_rule_says_drift_and_no_bridge_notes(tmp_path):
    from runner.plan.render import render_plan

    argv = [w for w in render_plan(load_recipe("nemotron3_nano")).argv if w != "bridge"]
    argv = [w if w != "--megatron-to-hf-mode" else "--no-bridge-marker" for w in argv]
    report = lint_recipe("nemotron3_nano", args_file=_args(tmp_path, "--moe-router-topk-scaling-factor 2.5\n", ""),
                         argv=argv)
    (err,) = report.errors
    assert err.rule == "model.scaling_factor" and "drift" in err.message and "bridge" not in err.message
    assert not [f for f in report.findings if f.rule.startswith("bridge.")]


def test_bridge_notes_name_the_flags_the_model_does_not_share():
    from runner.frameworks.miles_bridge import COPIED_FLAGS, bridge_notes, not_reaching

    model_args = ["--num-layers", "52", "--moe-router-pre-softmax", "--moe-router-load-balancing-type",
                  "seq_aux_loss", "--moe-router-score-function", "sigmoid", "--recompute-granularity", "full"]
    argv = ["--megatron-to-hf-mode", "bridge", *model_args]
    notes = {f.rule: f for f in bridge_notes(argv, model_args)}
    assert set(notes) == {"bridge.model_from_config", "bridge.pre_softmax", "bridge.load_balancing"}
    assert "no effect" in notes["bridge.pre_softmax"].message
    assert "aux_loss" in notes["bridge.load_balancing"].message and "coefficient is 0" in notes[
        "bridge.load_balancing"].message
    assert "--recompute-granularity" in COPIED_FLAGS and not_reaching(model_args) == [
        "--num-layers", "--moe-router-pre-softmax", "--moe-router-load-balancing-type", "--moe-router-score-function"]
    # aux_loss (the provider's own) or a set coefficient: said accordingly
    assert "bridge.load_balancing" not in {f.rule for f in bridge_notes(
        ["--megatron-to-hf-mode", "bridge", "--moe-router-load-balancing-type", "aux_loss"], [])}
    set_coeff = ["--megatron-to-hf-mode", "bridge", "--moe-router-load-balancing-type", "seq_aux_loss",
                 "--moe-aux-loss-coeff", "0.01"]
    (lb,) = [f for f in bridge_notes(set_coeff, []) if f.rule == "bridge.load_balancing"]
    assert "--moe-aux-loss-coeff 0.01 is copied" in lb.message


def test_copied_flags_match_the_vendored_miles(tmp_path):
    """COPIED_FLAGS is read against the real _apply_bridge_runtime_config of the vendored miles."""
    import re
    import tarfile

    from conftest import ROOT

    from runner.frameworks.miles_bridge import COPIED_FLAGS

    tars = sorted((ROOT.parent / "shared" / "vendor" / "upstream").glob("miles-78527b91*.tar.gz"))
    if not tars:
        pytest.skip("the vendored miles tarball is not here (../shared/vendor/upstream)")
    with tarfile.open(tars[0]) as tf:
        member = next(m for m in tf.getmembers() if m.name.endswith("miles/backends/megatron_utils/model_provider.py"))
        src = tf.extractfile(member).read().decode()
    body = src[src.index("def _apply_bridge_runtime_config"):src.index("class LinearForLastLayer")]
    fields = set(re.findall(r"provider\.(\w+) = ", body))
    assert fields == set(COPIED_FLAGS.values()) | {"cpu_offloading"}  # cpu_offloading: derived, no flag of its own


def test_lint_judges_the_argv_it_is_given():
    from runner.plan.render import render_plan

    argv = render_plan(load_recipe("nemotron3_nano")).argv
    given = lint_recipe("nemotron3_nano", argv=[*argv, "--use-rollout-logprobs"])
    assert "recipe.rollout_logprobs" in {f.rule for f in given.warnings}
    assert "recipe.rollout_logprobs" not in {f.rule for f in lint_recipe("nemotron3_nano").warnings}


def _fake_recipe(tmp_path, name, framework, model_type):
    d = tmp_path / "recipes" / name
    d.mkdir(parents=True)
    (d / "recipe.toml").write_text(
        f'schema = 1\nname = "{name}"\nframework = "{framework}"\ndefault_cell = "a"\n'
        '[files]\nmodel_args = "model_args.txt"\n'
        'run_script = "run.sh"\nexpected_metrics = "expected_metrics.toml"\nmanifest = "inputs.sha256"\n'
        '[image]\nreference = "none"\n[hardware]\nnodes = 1\ngpus_per_node = 8\ngpu = "H100"\n'
        + (f'[{framework}]\nn_samples_per_prompt = 1\nrollout_max_response_len = 1\nglobal_batch_size = 1\n'
           'recompute = false\n' if framework == "miles" else '')
        +
        '[run]\nnum_rollout = 1\nseed = 1\nrollout_seed = 1\n'
        '[cells.a]\ntp = 1\npp = 1\ncp = 1\nep = 1\netp = 1\nmax_tokens_per_gpu = 256\n')
    (d / "model_args.txt").write_text("--num-layers 4\n--num-attention-heads 8\n--hidden-size 64\n")
    (d / "hf_config.json").write_text(json.dumps({"model_type": model_type, "num_hidden_layers": 4}))
    (d / "run.sh").write_text("#!/bin/sh\nexit 0\n")
    shutil.copytree(ROOT / "recipes" / "lib", tmp_path / "recipes" / "lib", dirs_exist_ok=True)  # a bundle's helpers
    return d


def test_a_family_without_rules_is_told_so(tmp_path, monkeypatch):
    _fake_recipe(tmp_path, "toy_qwen", "miles", "qwen3_moe")
    monkeypatch.setenv("RECIPE_BUNDLE_ROOT", str(tmp_path))
    report = lint_recipe(load_recipe("toy_qwen"))
    assert report.skipped["model"].startswith("no model rules for qwen3_moe")
    p = recipe("lint", "toy_qwen", env=clean_env(RECIPE_BUNDLE_ROOT=str(tmp_path)))
    assert "not applicable: no model rules for qwen3_moe" in p.stdout
    p = recipe("plan", "toy_qwen", "--gpus", "8", env=clean_env(RECIPE_BUNDLE_ROOT=str(tmp_path)))
    assert p.returncode == 2 and "no model rules for qwen3_moe" in p.stderr


def test_an_unknown_framework_is_a_usage_error_naming_the_field(tmp_path):
    _fake_recipe(tmp_path, "toy_x", "deepspeed", "qwen3_moe")
    p = recipe("lint", "toy_x", env=clean_env(RECIPE_BUNDLE_ROOT=str(tmp_path)))
    assert p.returncode == 2 and "key 'framework'" in p.stderr and "'deepspeed'" in p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize("name", list_recipes())
def test_every_shipped_recipe_lints_without_errors_and_says_what_it_skipped(name):
    report = lint_recipe(name)
    assert report.errors == [], [f.message for f in report.errors]
    # each group is either checked or skipped with its reason: never silently left out
    assert set(report.checked) | set(report.skipped) == {"provenance", "model", "recipe", "layout"}
    assert all(report.skipped.values())
    if load_recipe(name).framework == "miles":  # Megatron model flags: the family's rules ran
        assert "model" in report.checked and "layout" in report.checked


def test_a_run_refused_by_lint_prints_the_finding_as_a_sentence(tmp_path):
    p = recipe("run", "nemotron3_nano", "--gpus-per-node", "4", "--backend", "local",
               "--runs-dir", str(tmp_path / "runs"), env=clean_env(COLUMNS="300"))
    assert p.returncode == 3, p.stderr
    line = next(x for x in p.stderr.splitlines() if "fail  lint" in x)
    assert "Finding(" not in p.stderr and "severity=" not in p.stderr, p.stderr
    assert "1 error(s): layout.memory: cell default" in line and "out of memory" in line, line
    # the fix names the plan for this launch's GPUs: `recipe lint` checks every cell at its own size
    assert "fix: pick a cell or --gpus-per-node that fits: recipe plan nemotron3_nano --gpus 4" in p.stderr


def test_plan_prints_the_findings_run_refuses_on_in_the_same_sentences(tmp_path):
    env = clean_env(COLUMNS="300")
    run = recipe("run", "nemotron3_nano", "--gpus-per-node", "4", "--backend", "local",
                 "--runs-dir", str(tmp_path / "runs"), env=env)
    said = next(x for x in run.stderr.splitlines() if "fail  lint" in x).split("1 error(s): ", 1)[1]
    plan = recipe("plan", "nemotron3_nano", "--gpus-per-node", "4", env=env)
    assert plan.returncode == 0 and plan.stdout.startswith("# recipe nemotron3_nano"), plan.stderr
    assert f"recipe: error: {said}" in plan.stderr.splitlines(), plan.stderr   # the run's sentence, word for word
    assert "fix: pick a cell or --gpus-per-node that fits: recipe plan nemotron3_nano --gpus 4" in plan.stderr
    assert "would refuse" in plan.stderr
    lint = recipe("lint", "nemotron3_nano", "--cell", "default", "--gpus-per-node", "4", env=env)
    rows = [line.split(None, 1) for line in lint.stdout.splitlines()]
    assert lint.returncode == 1 and ["error", said] in rows, lint.stdout   # and lint's, in its table
    # the recipe's own layout: nothing to say, the plan alone
    assert recipe("plan", "nemotron3_nano", env=env).stderr == ""


def test_lint_prints_each_finding_as_its_sentence():
    from runner.lint import LintReport, format_report, sentence
    from runner.model.finding import Finding

    f = Finding("warning", "recipe.kl", "a KL of 0 with a reference model loads it for nothing")
    text = format_report(LintReport(recipe="r", cell=None, args_file="a.txt", hf_config=None, findings=[f]))
    head, row = text.splitlines()[:2]
    assert head.split() == ["severity", "finding"] and row.split(None, 1) == ["warning", sentence(f)]
