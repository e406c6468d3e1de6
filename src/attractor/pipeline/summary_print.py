"""Printing the answer-stability summary as rich tables."""
from __future__ import annotations

from typing import Any

from attractor.ui import console, table


def print_summary(summary: dict[str, Any], title: str = "answer stability") -> None:
    """Means with 95% intervals, then the stability gap and AUROCs."""
    rows = []
    for name, v in summary["means"].items():
        if name.startswith(("pass@", "maj@")) and name not in _shown_k(summary):
            continue
        rows.append([name, v["mean"], v["ci_low"], v["ci_high"]])
    console.print(table(f"{title}: {summary['n_questions']} questions, "
                        f"{summary['n_samples']} samples", ["metric", "mean", "95% low",
                                                            "95% high"], rows))
    readings = summary.get("readings")
    if readings:
        console.print(table(f"answer readings (accuracy uses: {readings['used']})",
                            ["reading", "accuracy", "answered share"],
                            [[name, v["accuracy"], v["answered_share"]] if v else
                             [name, "not graded", "-"]
                             for name, v in readings.items() if name != "used"]))
    gap = summary["stability_gap"]
    keys = ["n_questions", "accuracy", "answer_entropy_nats", "top1_share", "n_unique_answers",
            "truncation_rate", "mean_tokens"]
    console.print(table("stability gap: questions whose majority is correct vs wrong",
                        ["metric", "majority correct", "majority wrong"],
                        [[k, gap["majority_correct"].get(k), gap["majority_wrong"].get(k)]
                         for k in keys]))
    if summary.get("by_hops"):
        console.print(table("by reasoning hops", ["hops", "questions", "accuracy",
                                                  "majority accuracy"],
                            [[h, v["n_questions"], v["accuracy"], v["majority_accuracy"]]
                             for h, v in summary["by_hops"].items()]))
    sig = summary.get("signals") or []
    if sig:
        for target in ("sample_correct", "majority_correct"):
            top = [r for r in sig if r["target"] == target][:8]
            if top:
                console.print(table(
                    f"signals predicting {target.replace('_', ' ')} (AUROC in each signal's "
                    f"fixed direction; 95% interval: {top[0].get('interval', 'bootstrap')})",
                    ["signal", "AUROC", "correct when", "95% low", "95% high", "n", "n+", "n-"],
                    [[r["signal"], r["auroc"], r["direction"], r["ci_low"], r["ci_high"], r["n"],
                      r.get("n_positive"), r.get("n_negative")] for r in top]))
    if summary.get("vote", "").startswith("deepconf"):
        console.print(f"majority = DeepConf vote ({summary['vote']})")
    for note in summary.get("notes") or []:
        console.print(f"[yellow]note[/yellow]: {note}")
    au = summary["auroc_majority_correct"]
    console.print(f"AUROC for a correct majority: top-1 share {_f(au['top1_share'])}, "
                  f"-entropy {_f(au['neg_answer_entropy'])}")


def _shown_k(summary: dict[str, Any]) -> set[str]:
    ks = sorted({int(k.split("@")[1]) for k in summary["means"] if "@" in k})
    keep = {ks[0], ks[-1]} | ({ks[len(ks) // 2]} if ks else set())
    return {f"{p}@{k}" for p in ("pass", "maj") for k in keep}


def _f(x: Any) -> str:
    return "n/a" if x is None else f"{x:.3f}"
