"""ScPO (Prasad et al. 2024, arXiv 2411.04109): self-consistency preference optimisation.

Per round (ScPO's iteration M_t -> M_t+1): sample ``group`` answers to every training question
with the current model, vote (:func:`attractor.consistency.votes.preference_pair`), keep the
questions whose most-voted answer holds at least ``vote_threshold`` of the votes, and pair a
sample of the most-voted answer (chosen) with one of the least-voted (rejected), weighted by
w = (V(y+) - V(y-)) / k. Then train on the pairs, the round's starting model as reference:

    loss = mean over pairs of  w * ( -log sigmoid(beta * [(log pi(y+) - log ref(y+))
                                                         - (log pi(y-) - log ref(y-))])
                                     - alpha * log pi(y+) / |y+| )

(ScPO's Eq. 2: DPO plus the chosen sample's length-normalised NLL, both weighted by the vote
margin). TRL's ``DPOTrainer`` precomputes the reference log-probabilities and runs the loop on
the pairs as token ids (the sampled ones: its own tokenisation of text is skipped); its loss has no per-pair weights (only WPO's), so :class:`ScPOTrainer`
replaces ``compute_loss`` with the weighted loss above.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from attractor.consistency.trl_support import quiet, shared_args
from attractor.consistency.votes import Pair, answer_classes, preference_pair
from attractor.engines.base import Rollout


def scpo_loss(chosen_logps: torch.Tensor, rejected_logps: torch.Tensor,
              ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor,
              chosen_lengths: torch.Tensor, weights: torch.Tensor, beta: float,
              nll_weight: float) -> torch.Tensor:
    """ScPO's weighted loss over a batch of pairs (sequence log-probabilities summed over the
    completion tokens; ``chosen_lengths`` in tokens)."""
    margin = beta * ((chosen_logps - ref_chosen_logps) - (rejected_logps - ref_rejected_logps))
    per_pair = -F.logsigmoid(margin) - nll_weight * chosen_logps / chosen_lengths.clamp(min=1)
    return (weights * per_pair).mean()


def sequence_logps(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   completion_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the summed log-probability of its completion tokens and their count."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    logp = logits[:, :-1].float().log_softmax(-1).gather(-1, input_ids[:, 1:, None])[..., 0]
    mask = completion_mask[:, 1:].to(logp.dtype)
    return (logp * mask).sum(-1), mask.sum(-1)


class WeightedPairs:
    """DPOTrainer's collator plus each pair's ``weight`` as a tensor."""

    def __init__(self, base) -> None:
        self.base = base

    def __call__(self, examples: list[dict]) -> dict:
        out = self.base(examples)
        out["weight"] = torch.tensor([float(e["weight"]) for e in examples])
        return out


def scpo_trainer_class():
    """``ScPOTrainer``: TRL's DPOTrainer with ScPO's weighted loss (built on first use so that
    importing this module does not import TRL)."""
    from trl import DPOTrainer

    class ScPOTrainer(DPOTrainer):
        """DPOTrainer whose loss is :func:`scpo_loss` (per-pair vote-margin weights)."""

        nll_weight: float = 1.0

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            # the rows are already the sampled token ids (build_pairs): TRL's preparation
            # would re-tokenise text; only a text dataset goes through it
            if "prompt_ids" in next(iter(dataset)):
                return dataset
            return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

        def compute_ref_log_probs(self, model, inputs):
            return super().compute_ref_log_probs(
                model, {k: v for k, v in inputs.items() if k != "weight"})

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            logps, lengths = sequence_logps(model, inputs["input_ids"], inputs["attention_mask"],
                                            inputs["completion_mask"])
            chosen, rejected = logps.chunk(2)
            loss = scpo_loss(chosen, rejected, inputs["ref_chosen_logps"],
                             inputs["ref_rejected_logps"], lengths.chunk(2)[0],
                             inputs["weight"].to(chosen.device), self.beta, self.nll_weight)
            return (loss, {}) if return_outputs else loss

    return ScPOTrainer


def build_pairs(problems, groups: list[list[Rollout]], threshold: float,
                reading: str = "strict") -> tuple[list[dict], list[Pair | None]]:
    """ScPO's preference rows from each question's sampled rollouts, and each question's pair
    (None where it is filtered out), the answers read in ``reading``. A row holds token ids, not text: the prompt the samples
    were drawn from and each completion as the model produced it (its stop token included);
    a decode and re-encode would not give back the sampled ids on a BPE tokenizer."""
    rows, pairs = [], []
    for p, group in zip(problems, groups):
        pair = preference_pair(answer_classes([r.text for r in group], p.kind, reading=reading,
                                              question=p.question), threshold)
        pairs.append(pair)
        if pair is None:
            continue
        chosen, rejected = group[pair.chosen], group[pair.rejected]
        rows.append({"prompt_ids": list(chosen.prompt_token_ids),
                     "chosen_ids": produced_ids(chosen), "rejected_ids": produced_ids(rejected),
                     "weight": pair.weight, "qid": p.id})
    return rows, pairs


def produced_ids(r: Rollout) -> list[int]:
    """The completion's tokens followed by the stop token that ended it, if one did."""
    return list(r.completion_token_ids) + ([r.stop_token_id] if r.stop_token_id is not None
                                           else [])


def train_round(model, tok, rows: list[dict], cfg, seed: int, device: str,
                callbacks: list) -> tuple[int, float]:
    """DPO epochs over one round's pairs with ScPO's loss; the reference is the model as the
    round starts (its log-probabilities precomputed). Returns the tokens trained on (prompt
    twice, chosen, rejected, per epoch) and the seconds the epochs took."""
    from datasets import Dataset
    from trl import DPOConfig
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    args = DPOConfig(**shared_args(f"{cfg.out}/trl", seed, device, cfg.lr),
                     per_device_train_batch_size=cfg.questions_per_step,
                     num_train_epochs=cfg.epochs, beta=cfg.dpo_beta,
                     precompute_ref_log_probs=True, remove_unused_columns=False,
                     max_length=None)
    trainer_cls = scpo_trainer_class()
    trainer = trainer_cls(model=model, args=args, train_dataset=Dataset.from_list(rows),
                          processing_class=tok, callbacks=callbacks,
                          data_collator=WeightedPairs(DataCollatorForPreference(
                              pad_token_id=tok.pad_token_id if tok.pad_token_id is not None
                              else tok.eos_token_id)))
    trainer.nll_weight = cfg.nll_weight
    quiet(trainer)
    result = trainer.train()
    tokens = sum(2 * len(r["prompt_ids"]) + len(r["chosen_ids"]) + len(r["rejected_ids"])
                 for r in trainer.train_dataset) * cfg.epochs
    return tokens, float(result.metrics["train_runtime"])
