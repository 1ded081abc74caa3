"""``EMPGGRPOTrainer``: TRL's ``GRPOTrainer`` (trl 1.16.x) with EMPG-modulated token advantages.

How it hooks in. ``GRPOTrainer._generate_and_score_completions`` builds the generation batch and
its ``(B,)`` outcome advantages (GRPO / Dr. GRPO / ... as configured). This subclass then

1. runs TRL's own ``_get_per_token_logps_and_entropies(..., compute_entropy=True)`` on the
   prompt + completion tokens with the current (old, pre-update) policy, under ``no_grad`` and at
   TRL's sampling temperature: ``(B, T)`` per-token entropies;
2. takes the loss mask ``completion_mask * tool_mask`` (``tool_mask`` is TRL's name for the
   ``env_mask`` a ``rollout_func`` returns): every maximal run of 1s is one step;
3. calls :func:`empg.modulate_token_advantages` (via :func:`modulate_sharded`) and stores the
   ``(B, T)`` result under ``"advantages"``, which ``GRPOTrainer._compute_loss`` accepts as is.

Several processes: entropies, masks and advantages are gathered from all processes (padded to
one width), modulated as one batch, and each process keeps its own rows, so the min-max and
normalisations span the whole generation batch as in the core. Only text models are supported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from empg.algos.modulation import EMPGConfig
from empg.errors import ConfigError, InputError
from empg.integrations.trl.knobs import modulate_sharded

try:
    from trl import GRPOTrainer
    from trl.models.utils import disable_gradient_checkpointing
except ImportError as exc:  # pragma: no cover - exercised only without trl
    raise ImportError(
        "empg.integrations.trl needs TRL 1.16.x: pip install 'empg[trl]' "
        "(or pip install 'trl>=1.16,<1.17')"
    ) from exc

#: inputs of a vision-language batch; EMPG's extra forward pass does not forward them
_MULTIMODAL_KEYS = ("pixel_values", "image_grid_thw", "num_images", "token_type_ids")


@dataclass
class EMPGBatchRecord:
    """What the last generation batch of this process looked like (for inspection and tests).

    Attributes:
        prompt_ids: ``(B, P)`` long, left-padded prompts.
        prompt_mask: ``(B, P)`` long, 1 on prompt tokens.
        completion_ids: ``(B, T)`` long, right-padded completions.
        completion_mask: ``(B, T)`` long, 1 on completion tokens (model and environment).
        loss_mask: ``(B, T)`` long, completion mask x env mask: the model's tokens.
        token_entropy: ``(B, T)`` float32, old-policy entropy from TRL's forward.
        outcome_advantages: ``(B,)`` float32, TRL's advantages before EMPG.
        advantages: ``(B, T)`` float32, what ``_compute_loss`` receives.
    """

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    loss_mask: torch.Tensor
    token_entropy: torch.Tensor
    outcome_advantages: torch.Tensor
    advantages: torch.Tensor


class EMPGGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` whose advantages are EMPG-modulated per step (see the module docstring).

    Args:
        *args, **kwargs: everything ``trl.GRPOTrainer`` takes (model, reward_funcs, args,
            train_dataset, processing_class, rollout_func, ...).
        empg_config: the EMPG settings, :class:`empg.EMPGConfig` (the trainer's ``algo.empg``
            type; default: the authors' knobs).
        empg_enabled: False turns the modulation off (plain TRL, for A/B runs); so does
            ``empg_config.enable=False``.
    """

    def __init__(
        self, *args: Any, empg_config: EMPGConfig | None = None, empg_enabled: bool = True, **kw
    ) -> None:
        cfg = EMPGConfig() if empg_config is None else empg_config
        if not isinstance(cfg, EMPGConfig):
            raise ConfigError(
                f"empg_config must be an empg.EMPGConfig, got {type(cfg).__name__}; build one "
                "with empg.EMPGConfig(k=..., zeta=...)"
            )
        self.empg_config = cfg
        self.empg_enabled = bool(empg_enabled) and cfg.enable
        self.empg_last: EMPGBatchRecord | None = None
        super().__init__(*args, **kw)

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        output = super()._generate_and_score_completions(inputs)
        if self.empg_enabled:
            output["advantages"] = self._empg_advantages(output)
        return output

    # -- EMPG ---------------------------------------------------------------------------------
    def _empg_token_entropy(self, output: dict[str, Any]) -> torch.Tensor:
        """``(B, T)`` old-policy entropies of the completion tokens, by TRL's own forward."""
        present = [k for k in _MULTIMODAL_KEYS if output.get(k) is not None]
        if present:
            raise InputError(
                f"EMPGGRPOTrainer supports text-only models; the batch carries {present}"
            )
        prompt_ids, completion_ids = output["prompt_ids"], output["completion_ids"]
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attention = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
        mode = "train" if self.model.training else "eval"
        bs = (
            self.args.per_device_train_batch_size
            if mode == "train"
            else self.args.per_device_eval_batch_size
        )
        gc_kwargs = self.args.gradient_checkpointing_kwargs
        with torch.no_grad(), disable_gradient_checkpointing(self.model, gc_kwargs):
            _, ent, _ = self._get_per_token_logps_and_entropies(
                self.model,
                input_ids,
                attention,
                completion_ids.size(1),
                batch_size=bs,
                compute_entropy=True,
            )
        return ent.float()

    def _empg_advantages(self, output: dict[str, Any]) -> torch.Tensor:
        """``(B, T)`` float32 EMPG advantages for this process's rows of the batch."""
        adv = output["advantages"]
        if adv.dim() != 1:
            raise InputError(
                f"expected TRL's (B,) outcome advantages, got shape {tuple(adv.shape)}; "
                "is another subclass already producing token advantages?"
            )
        mask = output["completion_mask"].long()
        if output.get("tool_mask") is not None:
            mask = mask * output["tool_mask"].long()
        ent = self._empg_token_entropy(output)
        acc = self.accelerator
        if acc.num_processes > 1:
            b, t = ent.shape
            ents = acc.gather(acc.pad_across_processes(ent, dim=1, pad_index=0)).split(b)
            masks = acc.gather(acc.pad_across_processes(mask, dim=1, pad_index=0)).split(b)
            advs = acc.gather(adv.float()).split(b)
            mine = modulate_sharded(ents, masks, advs, self.empg_config)[acc.process_index]
            mod = mine[:, :t].contiguous()
        else:
            mod = modulate_sharded([ent], [mask], [adv], self.empg_config)[0]
        mod = mod.to(device=adv.device, dtype=torch.float32)
        self.empg_last = EMPGBatchRecord(
            prompt_ids=output["prompt_ids"].detach().cpu(),
            prompt_mask=output["prompt_mask"].detach().cpu(),
            completion_ids=output["completion_ids"].detach().cpu(),
            completion_mask=output["completion_mask"].detach().cpu(),
            loss_mask=mask.detach().cpu(),
            token_entropy=ent.detach().cpu(),
            outcome_advantages=adv.detach().float().cpu(),
            advantages=mod.detach().cpu(),
        )
        self._empg_log(ent, mask, mod)
        return mod

    def _empg_log(self, ent: torch.Tensor, mask: torch.Tensor, mod: torch.Tensor) -> None:
        mode = "train" if self.model.training else "eval"
        m = mask.bool()
        steps = (mask[:, 1:] > mask[:, :-1]).sum() + mask[:, 0].sum()  # runs of 1s
        mean_h = ent[m].mean() if m.any() else ent.new_zeros(())
        abs_adv = mod[m].abs().mean() if m.any() else mod.new_zeros(())
        stats = torch.stack([mean_h.float(), abs_adv.float(), steps.float()])
        stats = self.accelerator.gather(stats.unsqueeze(0)).float().mean(0)
        self._metrics[mode]["empg/token_entropy_mean"].append(stats[0].item())
        self._metrics[mode]["empg/abs_advantage_mean"].append(stats[1].item())
        self._metrics[mode]["empg/steps_per_process"].append(stats[2].item())
