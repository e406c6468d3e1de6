"""The one registry of signal directions: for every signal, which way means "correct", fixed in
advance (the paper's stated direction, or a documented choice), never chosen after seeing the
data. AUROCs are reported in this direction, so an AUROC below 0.5 is a finding, not an error.

A column name is matched by its base: ``traj_net_change[chunk:32]@L4`` -> ``traj_net_change``,
``tightness[frac:0.5@L4]`` -> ``tightness``.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Direction:
    """Which way a signal points to a correct answer, its family and where that comes from."""

    higher_is_correct: bool
    family: str
    source: str

    @property
    def word(self) -> str:
        """``higher`` or ``lower`` (means correct)."""
        return "higher" if self.higher_is_correct else "lower"


_DEEPCONF = "DeepConf (Fu et al. 2025): higher confidence, correct"
_LT = "Tracing the Traces (Vilas et al. 2025), LT-signals multi_sample_experiments low_is_good"
REGISTRY: dict[str, Direction] = {
    "conf_mean": Direction(True, "deepconf", _DEEPCONF),
    "conf_lowest_group": Direction(True, "deepconf", _DEEPCONF),
    "conf_bottom10": Direction(True, "deepconf", _DEEPCONF),
    "conf_tail": Direction(True, "deepconf", _DEEPCONF),
    "mean_token_entropy": Direction(False, "token", "choice: a less uncertain trace"),
    "mean_token_logprob": Direction(True, "token", "choice: a more likely trace"),
    "n_tokens": Direction(False, "length", _LT + " (n_think_tokens; Shortest@k)"),
    "traj_net_change": Direction(True, "trajectory", _LT),
    "traj_cumulative_change": Direction(False, "trajectory", _LT),
    "traj_aligned_change": Direction(True, "trajectory", _LT),
    "consistency": Direction(True, "consistency", "Xie et al. 2024: higher, correct"),
    "consistency_frac": Direction(True, "consistency", "Xie et al. 2024: higher, correct"),
    "answer_entropy_nats": Direction(False, "answer", "self-consistency: agreement, correct"),
    "answer_entropy_bits": Direction(False, "answer", "self-consistency: agreement, correct"),
    "top1_share": Direction(True, "answer", "self-consistency: agreement, correct"),
    "n_unique_answers": Direction(False, "answer", "self-consistency: agreement, correct"),
    "tightness": Direction(True, "tightness",
                           "choice (seed study): tighter latents across samples, stable"),
}


def base_name(column: str) -> str:
    """The registry key of a signal column."""
    return column.split("[", 1)[0].split("@", 1)[0]


def direction_of(column: str) -> Direction | None:
    """The fixed direction of a signal column, or None when it is not a registered signal."""
    return REGISTRY.get(base_name(column))
