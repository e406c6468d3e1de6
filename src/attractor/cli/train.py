"""``attractor train consistency``: label-free training for agreement with the model's own
majority answer (:mod:`attractor.consistency`)."""
from __future__ import annotations

from attractor.cli.app import train_app
from attractor.cli.options import config_command
from attractor.consistency.config import ConsistencyConfig


@config_command(train_app, "consistency", ConsistencyConfig)
def consistency_cmd(cfg: ConsistencyConfig) -> None:
    """TTRL or ScPO on --task's questions (no gold answers read), scored before and after on
    --eval-task (and --check-task); resumable: run the same command again."""
    from attractor.consistency.run import run_consistency
    from attractor.ui import console, table

    outcome = run_consistency(cfg, log=console.print)
    if outcome.rows is None:
        return
    console.print(table(
        f"{cfg.method}: before vs after ({outcome.steps_done} "
        f"{'steps' if cfg.method == 'ttrl' else 'rounds'}); difference with a paired 95% "
        "bootstrap interval over questions",
        ["metric", "set", "before", "after", "after - before", "95% low", "95% high", "n"],
        [[r["metric"], r["set"], r["before"], r["after"], r["difference"], r["diff_low"],
          r["diff_high"], r["questions"]] for r in outcome.rows]))
    from attractor.consistency.run import verdicts

    for line in verdicts(outcome.rows, cfg.eval_samples):
        console.print(line)
    if outcome.tokens_per_s:
        console.print(f"training throughput: {outcome.tokens_per_s:,.0f} tokens/s "
                      "(prompt + completion tokens per second of optimiser steps)")
    console.print(f"model: {cfg.out}/model  (attractor sample --model {cfg.out}/model ...)")
