"""TTRL (Zuo et al. 2025, arXiv 2504.16084; PRIME-RL/TTRL): GRPO on unlabelled questions whose
reward is agreement with the group's majority answer, run on TRL's ``GRPOTrainer``.

Per step: ``questions_per_step`` questions, ``group`` samples each at ``temperature``; each
sample earns 1 if its answer class equals the majority class of its own group (the vote is
taken over the samples trained on; TTRL votes over 64 and trains on 32 of them), else 0;
TRL's GRPO turns rewards into group-normalised advantages. One gradient step per generation.

The run is cut into chunks of ``ckpt_every`` steps, each one ``GRPOTrainer.train()`` call on the
chunk's questions (in the run's own seeded order) with a seed of its own, and the optimiser is
the run's (passed in): a run resumed from a chunk's saved state therefore repeats exactly the
steps an uninterrupted run takes.
"""
from __future__ import annotations

from typing import Callable

from attractor.consistency.trl_support import completion_text, quiet, shared_args, trl_prompt
from attractor.consistency.votes import answer_classes, majority_rewards
from attractor.errors import ConfigError


def majority_reward(kind: str, group: int, task: str, check_first: bool,
                    reading: str = "strict", questions: dict[str, str] | None = None
                    ) -> Callable:
    """TRL reward function: per consecutive block of ``group`` completions (one prompt's
    samples), 1.0 for each sample in the block's majority class, the answers read in
    ``reading`` (``questions``: id -> text, for the flexible reading of ProsQA's options).
    With ``check_first`` the first call refuses a batch in which no sample has an
    extractable answer (the reward is undefined for this model on this task)."""
    state = {"checked": not check_first}

    def ttrl_majority(prompts, completions, qid=None, **_) -> list[float]:
        texts = [completion_text(c) for c in completions]
        rewards: list[float] = []
        any_answer = False
        for i in range(0, len(texts), group):
            if qid is not None and len(set(qid[i:i + group])) != 1:
                raise RuntimeError("a TRL generation block mixes questions: the votes would be "
                                   "taken across questions")
            question = (questions or {}).get(qid[i]) if qid is not None else None
            classes = answer_classes(texts[i:i + group], kind, reading=reading,
                                     question=question)
            any_answer |= any(c is not None for c in classes)
            rewards += majority_rewards(classes)
        if not state["checked"]:
            state["checked"] = True
            if not any_answer:
                raise ConfigError(
                    f"--task {task}: none of the first step's {len(texts)} samples has an "
                    f"extractable {kind} answer in the {reading} reading, so the majority-vote "
                    "reward is undefined; use a model that answers in the task's format, or "
                    "--reading flexible (see 'attractor sample')")
        return rewards

    return ttrl_majority


def train_chunk(model, tok, problems, opt, cfg, steps: int, seed: int, device: str,
                first_chunk: bool, callbacks: list) -> None:
    """``steps`` GRPO steps over ``problems`` (``steps * questions_per_step`` of them, in
    order) with the run's optimiser ``opt``."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    kinds = {p.kind for p in problems}
    if len(kinds) != 1:
        raise ConfigError(f"--task {cfg.task}: questions of several kinds ({sorted(kinds)}) "
                          "share no answer format to vote on")
    ds = Dataset.from_list([{"prompt": trl_prompt(p, tok), "qid": p.id} for p in problems])
    args = GRPOConfig(**shared_args(f"{cfg.out}/trl", seed, device, cfg.lr),
                      per_device_train_batch_size=cfg.questions_per_step * cfg.group,
                      num_generations=cfg.group, steps_per_generation=1, num_iterations=1,
                      max_completion_length=cfg.max_new_tokens, max_steps=steps, beta=cfg.beta,
                      temperature=cfg.temperature, top_p=1.0, shuffle_dataset=False,
                      remove_unused_columns=False)
    trainer = GRPOTrainer(model=model, reward_funcs=majority_reward(
        next(iter(kinds)), cfg.group, cfg.task, first_chunk, cfg.reading,
        {p.id: p.question for p in problems}), args=args, train_dataset=ds,
        processing_class=tok, optimizers=(opt, None), callbacks=callbacks)
    quiet(trainer)
    trainer.train()
