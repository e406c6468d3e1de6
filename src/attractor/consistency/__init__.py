"""Training a model for stability (``attractor train consistency``): label-free fine-tuning
that rewards agreement with the model's own majority answer.

- TTRL (Zuo et al. 2025, PRIME-RL/TTRL): GRPO whose reward is 1 for a sample whose answer
  equals its group's majority answer, else 0 (:mod:`attractor.consistency.ttrl`, on TRL's
  ``GRPOTrainer``);
- ScPO (Prasad et al. 2024, arXiv 2411.04109): preference pairs of the most- and least-voted
  answers, DPO plus a length-normalised NLL on the chosen sample, each pair weighted by its
  vote margin (:mod:`attractor.consistency.scpo`, on TRL's ``DPOTrainer``).

Both train on questions without their gold answers; gold is read only to evaluate
(:mod:`attractor.consistency.evaluate`).
"""
