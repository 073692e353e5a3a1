"""Build the tiny recipe's inputs, deterministically: model weights, tokenizer, prompt set.

    python3 recipes/nemotron3_nano_tiny/make_inputs.py [--out DIR] [--check]

Writes, under DIR (default: the recipe's committed inputs/):
    model/config.json            NemotronH-MoE config of the toy model (same architecture as the 30B)
    model/model.safetensors      bf16 weights, like the 30B's BF16 checkpoint
    model/tokenizer.json         character-level tokenizer built from the prompt set's alphabet
    model/tokenizer_config.json
    data/arithmetic.jsonl        {"prompt": "12+7=", "label": "19"} rows
and then inputs.sha256 next to recipe.toml (sha256sum -c --strict format, relative to DIR, with
`# size:` comments) unless --out is given. Run it with the bundle's venv (it imports runner.inputs.manifest).
`--check` rebuilds into a temporary directory and compares byte for byte with the committed files
(exit 1 on any difference).

Determinism does not rest on torch's or Python's RNGs: problems are chosen by sha256 order, weights come
from numpy's legacy RandomState (whose stream NumPy freezes) seeded per tensor from sha256(seed:name),
and JSON is written with sorted keys. Only the fp32 -> bf16 cast uses torch (round to nearest even).
"""

from __future__ import annotations

import argparse
import filecmp
import hashlib
import json
import math
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 20260828

# ---- the model ------------------------------------------------------------------------------------
# The 30B's pattern "MEMEM*EMEMEM*E...ME" at toy depth: Mamba2 (M), MoE (E), attention without RoPE (*).
PATTERN = "MEMEM*EME"
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]


def model_config(vocab_size: int) -> dict:
    """The frozen HF config. Every routing field is explicit: an omitted routed_scaling_factor is 1.0."""
    return {
        "architectures": ["NemotronHForCausalLM"],
        "model_type": "nemotron_h",
        "vocab_size": vocab_size,
        "hidden_size": 128,
        "hybrid_override_pattern": PATTERN,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 32,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "hidden_dropout": 0.0,
        "intermediate_size": 256,
        "mlp_hidden_act": "relu2",
        "mlp_bias": False,
        "mamba_num_heads": 8,
        "mamba_head_dim": 16,
        "n_groups": 2,
        "ssm_state_size": 16,
        "conv_kernel": 4,
        "chunk_size": 16,
        "expand": 1,
        "use_conv_bias": True,
        "mamba_proj_bias": False,
        "mamba_hidden_act": "silu",
        "n_routed_experts": 16,
        "num_experts_per_tok": 4,
        "moe_intermediate_size": 64,
        "moe_shared_expert_intermediate_size": 128,
        "n_shared_experts": 1,
        "routed_scaling_factor": 2.5,
        "n_group": 1,
        "topk_group": 1,
        "norm_topk_prob": True,
        "layer_norm_epsilon": 1e-5,
        "residual_in_fp32": False,
        "rescale_prenorm_residual": True,
        "initializer_range": 0.02,
        "max_position_embeddings": 256,
        "tie_word_embeddings": False,
        "pad_token_id": 0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "use_cache": True,
        "torch_dtype": "bfloat16",
    }


def _rng(name: str):
    import numpy as np

    digest = hashlib.sha256(f"{SEED}:{name}".encode()).digest()
    return np.random.RandomState(int.from_bytes(digest[:4], "little"))


def init_tensor(name: str, shape: tuple[int, ...], n_layers: int):
    """One parameter's fp32 values, chosen by its role (Mamba2 / router conventions), from its own stream."""
    import numpy as np

    leaf = name.rsplit(".", 1)[-1]
    if name.endswith("norm.weight") or name.endswith("norm_f.weight") or leaf == "D":
        return np.ones(shape, np.float32)
    if leaf == "A_log":  # A = -exp(A_log) spread over [1, 16], as Mamba2 initialises it
        return np.log(np.linspace(1.0, 16.0, shape[0])).astype(np.float32)
    if leaf == "dt_bias":  # softplus(dt_bias) log-spaced over [1e-3, 1e-1]
        dt = np.exp(np.linspace(math.log(1e-3), math.log(1e-1), shape[0]))
        return (dt + np.log(-np.expm1(-dt))).astype(np.float32)
    if name.endswith("conv1d.bias"):
        return np.zeros(shape, np.float32)
    std = 0.02
    if name.endswith("conv1d.weight"):
        std = 0.25
    elif name.endswith("gate.weight"):
        std = 0.1  # router logits of order 1: routing is decided, not a coin toss
    elif leaf == "e_score_correction_bias":
        std = 0.02  # a non-zero expert-score-correction bias, so choice != weights as in the 30B
    elif name.endswith(("out_proj.weight", "o_proj.weight", "down_proj.weight", "down_proj")):
        std = 0.02 / math.sqrt(2 * n_layers)
    return (_rng(name).standard_normal(shape) * std).astype(np.float32)


def build_weights(config: dict) -> dict:
    """Tensors named and shaped exactly as transformers' NemotronH expects (read off an empty model)."""
    import torch
    from transformers import NemotronHConfig, NemotronHForCausalLM

    cfg = NemotronHConfig(**config)
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in NemotronHForCausalLM(cfg).state_dict().items()}
    n_layers = len(config["hybrid_override_pattern"])
    return {name: torch.from_numpy(init_tensor(name, shape, n_layers)).to(torch.bfloat16)
            for name, shape in sorted(shapes.items())}


# ---- the data -------------------------------------------------------------------------------------
N_PROBLEMS = 256


def problems() -> list[dict]:
    """A few hundred small +, -, * problems, picked by sha256 order (stable forever, no RNG)."""
    cands = []
    for a in range(20):
        for b in range(20):
            cands.append((f"{a}+{b}=", str(a + b)))
            cands.append((f"{a}-{b}=", str(a - b)))
            if a < 10 and b < 10:
                cands.append((f"{a}*{b}=", str(a * b)))
    cands.sort(key=lambda pl: hashlib.sha256(pl[0].encode()).hexdigest())
    return [{"prompt": p, "label": lab} for p, lab in cands[:N_PROBLEMS]]


def alphabet(rows: list[dict]) -> list[str]:
    return sorted({ch for r in rows for ch in r["prompt"] + r["label"]})


def build_tokenizer(chars: list[str]):
    """Character-level WordLevel tokenizer: specials, then the data's characters in sorted order."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + chars)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", model_max_length=256, padding_side="left")


# ---- writing ----------------------------------------------------------------------------------------
def _json(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def write_inputs(out: Path) -> list[str]:
    """Write every input file under `out`; return their paths relative to `out`, sorted."""
    from safetensors.torch import save_file

    rows = problems()
    chars = alphabet(rows)
    model_dir, data_dir = out / "model", out / "data"
    model_dir.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)

    config = model_config(len(SPECIAL_TOKENS) + len(chars))
    (model_dir / "config.json").write_text(_json(config))
    save_file(build_weights(config), str(model_dir / "model.safetensors"), metadata={"format": "pt"})

    tok = build_tokenizer(chars)
    tok.backend_tokenizer.save(str(model_dir / "tokenizer.json"))
    tok_config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
                  "pad_token": "<pad>", "unk_token": "<unk>", "model_max_length": 256, "padding_side": "left",
                  "clean_up_tokenization_spaces": False}
    (model_dir / "tokenizer_config.json").write_text(_json(tok_config))

    with (data_dir / "arithmetic.jsonl").open("w") as f:
        for r in rows:
            f.write(json.dumps(r, sort_keys=True) + "\n")
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())


def manifest_text(root: Path, files: list[str]) -> str:
    """The inputs manifest in the bundle's format (runner/inputs/manifest.py): `sha256sum -c --strict` lines
    relative to the inputs root, with `# size:` comments so `recipe verify` checks sizes first."""
    from runner.inputs import manifest as mf

    entries = []
    for f in files:
        data = (root / f).read_bytes()
        entries.append(mf.Entry(f, hashlib.sha256(data).hexdigest(), len(data)))
    comments = ["Inputs of recipe nemotron3_nano_tiny, built by make_inputs.py (committed under inputs/).",
                "Check: cd recipes/nemotron3_nano_tiny/inputs && sha256sum -c --strict ../inputs.sha256"
                "   (or: recipe verify nemotron3_nano_tiny)"]
    return mf.render(mf.Manifest(header={"recipe": "nemotron3_nano_tiny", "model.repo": "local/nemotron3-nano-tiny",
                                         "generator": "make_inputs.py", "seed": str(SEED)},
                                 entries=entries, comments=comments))


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, help="write here instead of the committed inputs/ (no manifest update)")
    p.add_argument("--check", action="store_true", help="rebuild in a temp dir and compare with inputs/")
    a = p.parse_args()
    committed = HERE / "inputs"

    if a.check:
        with tempfile.TemporaryDirectory() as d:
            files = write_inputs(Path(d))
            ours = sorted(str(q.relative_to(committed)) for q in committed.rglob("*") if q.is_file())
            bad = [f for f in sorted(set(files) | set(ours))
                   if f not in files or f not in ours or not filecmp.cmp(Path(d) / f, committed / f, shallow=False)]
        if bad:
            print(f"make_inputs: rebuilt inputs differ from {committed}: {', '.join(bad)}", file=sys.stderr)
            return 1
        print(f"make_inputs: {len(files)} files rebuilt byte for byte identical to {committed}")
        return 0

    if a.out:
        files = write_inputs(a.out)
        print(f"make_inputs: wrote {len(files)} files under {a.out}")
        return 0
    # Build beside the final location, then swap in: never a half-written inputs/ under its final name.
    with tempfile.TemporaryDirectory(dir=HERE) as d:
        files = write_inputs(Path(d))
        text = manifest_text(Path(d), files)
        for f in files:
            dst = committed / f
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(Path(d) / f, 0o644)  # tempfile-made files are 0600; inputs are plain readable files
            os.replace(Path(d) / f, dst)
    write_atomic(HERE / "inputs.sha256", text)
    print(f"make_inputs: wrote {len(files)} files under {committed} and {HERE / 'inputs.sha256'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
