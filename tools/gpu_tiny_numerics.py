"""The tiny recipe's two numerics claims, measured on a GPU (or the CPU), in fp32 and bf16.

    python3 tools/gpu_tiny_numerics.py [--device cuda]

Prints a table of mean/max |delta log-prob| over the real tokens of 32 problems: the noise floor,
router scale 2.5 -> 1.0, routing replay against a perturbed expert bias (free vs replayed), and
bf16 vs fp32. A measurement script, not a test: CI never has a GPU.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import sys
from pathlib import Path

import torch
import transformers

TINY = Path(__file__).resolve().parent.parent / "recipes" / "nemotron3_nano_tiny"
MODEL, DATA = TINY / "inputs" / "model", TINY / "inputs" / "data" / "arithmetic.jsonl"
spec = importlib.util.spec_from_file_location("routing_replay", TINY / "routing_replay.py")
rr = importlib.util.module_from_spec(spec)
sys.modules["routing_replay"] = rr
spec.loader.exec_module(rr)


def logps(model, ids, mask):
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
    lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    return lp[mask[:, 1:].bool() & mask[:, :-1].bool()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    dev = ap.parse_args().device
    tok = transformers.AutoTokenizer.from_pretrained(MODEL)
    rows = [json.loads(line) for line in DATA.read_text().splitlines()[:32]]
    enc = tok([r["prompt"] + r["label"] + tok.eos_token for r in rows], return_tensors="pt", padding=True)
    ids, mask = enc.input_ids.to(dev), enc.attention_mask.to(dev)

    def load(dtype, **kw):
        return transformers.AutoModelForCausalLM.from_pretrained(MODEL, dtype=dtype, **kw).to(dev).eval()

    rows_out = []

    def row(name, a, b):
        d = (a - b).abs()
        rows_out.append((name, d.mean().item(), d.max().item()))

    for dtype in (torch.float32, torch.bfloat16):
        tag = str(dtype).split(".")[1]
        m = load(dtype)
        ref = logps(m, ids, mask)
        single = torch.cat([logps(m, ids[i:i + 1], mask[i:i + 1]) for i in range(ids.shape[0])])
        row(f"{tag}: noise (batched vs one at a time)", ref, single)
        row(f"{tag}: router scale 1.0 instead of 2.5", ref, logps(load(dtype, routed_scaling_factor=1.0), ids, mask))
        other = copy.deepcopy(m)
        g = torch.Generator().manual_seed(0)
        for r in rr.moe_routers(other).values():
            b = r.e_score_correction_bias
            b.data.add_((torch.randn(b.shape, generator=g) * 0.05).to(b.device, b.dtype))
        replay = rr.RoutingReplay(m)
        with replay.recording() as routes:
            logps(m, ids, mask)
        row(f"{tag}: perturbed expert bias, free routing", ref, logps(other, ids, mask))
        with rr.RoutingReplay(other).replaying(routes):
            row(f"{tag}: perturbed expert bias, routes replayed", ref, logps(other, ids, mask))
        if dtype == torch.float32:
            fp32_ref = ref
        else:
            row("bf16 vs fp32 (same weights)", ref, fp32_ref)

    name = torch.cuda.get_device_name() if dev == "cuda" else "cpu"
    print(f"device {name}, torch {torch.__version__}, transformers {transformers.__version__}")
    print(f"{'comparison':<48} {'mean':>10} {'max':>10}")
    for n, mean, top in rows_out:
        print(f"{n:<48} {mean:10.3g} {top:10.3g}")


if __name__ == "__main__":
    main()
