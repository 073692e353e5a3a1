"""TRL's GRPOTrainer with the measurements miles makes: rollout log-probs vs train log-probs, PPO KL.

What changes against stock GRPOTrainer, and why:
- Rollout: generation keeps the sampled tokens' log-probs as the generating engine computed them
  (token by token, with the KV and SSM caches), as SGLang returns them to miles.
- Train-side log-probs: one no-grad training forward over the whole rollout before the update (miles'
  `log_probs`). They are the PPO "old" log-probs, and |train - rollout| of the sampled tokens is
  `train/train_rollout_logprob_abs_diff` (mean over samples of the per-sample token mean).
- `ppo_kl` = mean over samples of the token-mean (old - new) log-prob in the loss forward; with one
  optimizer step per rollout it measures whether the training forward reproduces the old log-probs.
- Prompt order follows the rollout seed (miles' --rollout-seed), not the trainer seed.
- Zero-std group shares by reward value, as miles' rollout/zero_std/*.
- Rollout routing replay (miles' --use-rollout-routing-replay), optional: the experts each MoE router
  chose for every token during generation are recorded and forced in both training forwards
  (routing_replay.py); gate weights still come from the trainer's own router.
"""

from __future__ import annotations

import copy
import time
from collections import Counter
from contextlib import contextmanager, nullcontext

import torch
from trl import GRPOTrainer
from trl.trainer.utils import RepeatSampler, pad

# isort: split
from reward import all_zero_fraction  # sibling files: this directory is the job's sys.path[0]
from routing_replay import RoutingReplay, as_calls, fit_positions, routes_from_generation


def masked_sample_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sample token mean over the mask, then the mean over samples."""
    m = mask.to(x.dtype)
    return ((x * m).sum(-1) / m.sum(-1).clamp(min=1.0)).mean()


class TinyGRPOTrainer(GRPOTrainer):
    def __init__(self, *args, rollout_seed: int, routing_replay: bool = False, **kwargs):
        self.rollout_seed = rollout_seed
        self._rollout_config = None  # the trainer's generation config, returning raw logits too
        super().__init__(*args, **kwargs)
        self._replay = RoutingReplay(self.model) if routing_replay else None
        self._rollout_routes = None  # (batch, positions, routers, k) of the latest generation

    @contextmanager
    def _routed(self, routes):
        """Force the rollout's experts in the forwards inside, when routing replay is on."""
        if self._replay is None:
            yield
            return
        if routes is None:
            raise RuntimeError("routing replay is on but this batch carries no rollout routes")
        with self._replay.replaying(as_calls(routes, list(self._replay.routers))):
            yield

    # -- data order -------------------------------------------------------------------------------
    def _get_train_sampler(self, dataset=None):
        return RepeatSampler(
            data_source=self.train_dataset if dataset is None else dataset,
            mini_repeat_count=self.num_generations,
            batch_size=self.args.generation_batch_size // self.num_generations,
            repeat_count=self.num_iterations * self.args.steps_per_generation,
            shuffle=True,
            seed=self.rollout_seed,
        )

    # -- rollout ------------------------------------------------------------------------------------
    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        start = time.perf_counter()
        pad_id = self._tokenizer.pad_token_id
        prompts = [torch.tensor(ids) for ids in prompt_ids]
        input_ids = pad(prompts, padding_value=pad_id, padding_side="left")
        attention_mask = pad([torch.ones_like(p) for p in prompts], padding_value=0, padding_side="left")
        model = self.accelerator.unwrap_model(self.model)
        if self._rollout_config is None:
            self._rollout_config = copy.deepcopy(self.generation_config)
            self._rollout_config.output_logits = True
            self._rollout_config.return_dict_in_generate = True
        recording = self._replay.recording() if self._replay is not None else nullcontext()
        with torch.no_grad(), recording as recorded:
            out = model.generate(input_ids=input_ids, attention_mask=attention_mask,
                                 generation_config=self._rollout_config)
        if self._replay is not None:
            self._rollout_routes = routes_from_generation(recorded, input_ids.size(0), input_ids.size(1))
        tokens = out.sequences[:, input_ids.size(1):]
        # Raw logits of each step, scaled by the sampling temperature: the distribution sampled from
        # (top-k/top-p are off in this recipe, so no processor changes it).
        logits = torch.stack(out.logits, dim=1).float() / self.temperature
        logps = torch.log_softmax(logits, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        eos = torch.tensor(self.eos_token_ids)
        completion_ids, completion_logps = [], []
        for row, row_lp in zip(tokens.tolist(), logps.tolist(), strict=True):
            n = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))  # through the first EOS
            completion_ids.append(row[:n])
            completion_logps.append(row_lp[:n])
        self._metrics["train"]["rollout_time"].append(time.perf_counter() - start)
        return completion_ids, completion_logps

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        rewards = rewards_per_func.nansum(dim=1).tolist()
        n = self.num_generations
        groups = [rewards[i:i + n] for i in range(0, len(rewards), n)]
        zero_std = Counter(str(round(g[0], 1)) for g in groups if max(g) == min(g))
        m = self._metrics["train"]
        m["zero_std/all_zero_percentage"].append(all_zero_fraction(rewards, n))
        m["zero_std/all_one_percentage"].append(sum(all(r == 1.0 for r in g) for g in groups) / len(groups))
        for reward, count in zero_std.items():
            m[f"zero_std/count_{reward}"].append(float(count))
        return rewards_per_func

    # -- train-side log-probs of the rollout ----------------------------------------------------------
    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        input_ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
        attention_mask = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
        routes = None
        if self._replay is not None:
            routes = fit_positions(self._rollout_routes, input_ids.size(1))
            out["routed_experts"] = routes  # shuffled and split with the batch by TRL
            self._rollout_routes = None
        # In the training micro-batch size, each chunk with its own rollout routes.
        size, parts = self.args.per_device_train_batch_size, []
        for s in range(0, input_ids.size(0), size):
            chunk = slice(s, s + size)
            with torch.no_grad(), self._routed(None if routes is None else routes[chunk]):
                logps, _, _ = self._get_per_token_logps_and_entropies(
                    self.model, input_ids[chunk], attention_mask[chunk], out["completion_ids"].size(1),
                    batch_size=size)
            parts.append(logps)
        train_logps = torch.cat(parts)
        # Ours even where TRL computed its own (several optimizer steps per rollout): only ours is routed.
        out["old_per_token_logps"] = train_logps
        diff = masked_sample_mean((train_logps - out["sampling_per_token_logps"]).abs(), out["completion_mask"])
        self._metrics["train"]["train_rollout_logprob_abs_diff"].append(diff.item())
        return out

    # -- loss ----------------------------------------------------------------------------------------
    def _compute_loss(self, model, inputs):
        seen: dict[str, torch.Tensor] = {}
        forward = self._get_per_token_logps_and_entropies

        def spy(*args, **kwargs):
            result = forward(*args, **kwargs)
            seen["logps"] = result[0].detach()
            return result

        self._get_per_token_logps_and_entropies = spy  # instance attribute shadows the method for this call
        try:
            with self._routed(inputs.get("routed_experts")):
                loss = super()._compute_loss(model, inputs)
        finally:
            del self._get_per_token_logps_and_entropies
        m = self._metrics["train"]
        m["ppo_kl"].append(masked_sample_mean(inputs["old_per_token_logps"] - seen["logps"],
                                              inputs["completion_mask"]).item())
        m["pg_loss"].append(loss.detach().item() * self.current_gradient_accumulation_steps)
        return loss
