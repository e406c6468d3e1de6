"""Evaluate a trained tiny model on the released ProsQA validation split and install it (with
its training record) as the embedded default model."""
from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

from attractor.store.atomic import atomic_write_bytes
from attractor.store.environment import command_line
from attractor.store.run_store import atomic_write_json

SHIPPED_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                 "tokenizer_config.json")


def evaluate_prosqa(model_dir: Path, data_dir: str | None = None) -> dict[str, Any] | None:
    """Greedy CoT accuracy on ``prosqa_valid.json``, overall and by hop count (None when the
    file is not available)."""
    from attractor.errors import UserError
    from attractor.models.load import load
    from attractor.models.train_tiny import greedy_accuracy
    from attractor.tasks.loaders import load_task

    try:
        problems, src = load_task("prosqa", data_dir=data_dir)
    except UserError:
        return None
    model, tok = load(str(model_dir), device="cpu")
    from attractor.grading.extract import extract_answer

    _, texts = greedy_accuracy(model, tok, problems, max_new_tokens=160)
    by_hops: dict[str, list[bool]] = defaultdict(list)
    ok_all = []
    for p, t in zip(problems, texts):
        ok = extract_answer(t, "prosqa") == extract_answer(p.gold, "prosqa", gold=True)
        by_hops[str(p.meta["hops"])].append(ok)
        ok_all.append(ok)
    return {"file": src.path, "sha256": src.sha256, "n": len(problems),
            "overall": sum(ok_all) / len(ok_all),
            "by_hops": {h: {"n": len(v), "accuracy": sum(v) / len(v)}
                        for h, v in sorted(by_hops.items())},
            "no_answer": sum(extract_answer(t, "prosqa") is None for t in texts)}


def export_tiny(train_out: Path, dest: Path, data_dir: str | None = None,
                command: str | None = None) -> dict[str, Any]:
    """Copy ``train_out/model`` to ``dest`` with ``training.json`` (command, config, log
    summary, ProsQA validation accuracy)."""
    model_dir = train_out / "model"
    log = [json.loads(x) for x in (train_out / "train_log.jsonl").read_text().splitlines() if x]
    state = json.loads((train_out / "checkpoint" / "state.json").read_text())
    record = {
        "command": command or " ".join(command_line()),
        "config": state["config"],
        "steps": state["step"],
        "final_loss": next((r["loss"] for r in reversed(log) if "loss" in r), None),
        "dev_accuracy": [{"step": r["step"], "accuracy": r["dev_accuracy"]}
                         for r in log if "dev_accuracy" in r],
        "tokens_per_s": [r["tokens_per_s"] for r in log if "tokens_per_s" in r][-1:],
        "prosqa_valid": evaluate_prosqa(model_dir, data_dir),
    }
    init = state["config"].get("init_from")
    if init and (Path(init) / "training_stage.json").exists():
        record["previous_stage"] = json.loads((Path(init) / "training_stage.json").read_text())
    dest.mkdir(parents=True, exist_ok=True)
    for name in SHIPPED_FILES:
        shutil.copyfile(model_dir / name, dest / name)
    atomic_write_json(dest / "training.json", record)
    atomic_write_bytes(dest / "TRAINING.md", training_markdown(record).encode())
    return record


def training_markdown(record: dict[str, Any]) -> str:
    """A human-readable card of the training record."""
    cfg = record["config"]
    lines = ["# The embedded tiny model: how it was trained", "",
             "Reproduce (seeded; a killed run resumes when the same command runs again):", "",
             "```bash"] + ([record["previous_stage"]["command"]] if record.get("previous_stage")
                           else []) + [record["command"], "```", "",
             f"Steps {record['steps']}, batch {cfg['batch_size']}, peak lr {cfg['lr']}, "
             f"warm-up {cfg['warmup']}, curriculum {cfg.get('curriculum', 0)} steps, seed "
             f"{cfg['seed']}; final training loss {record['final_loss']} "
             f"(mean over completion tokens).", "",
             ] + _previous_lines(record) + [
             "Greedy accuracy on generated dev problems (another seed than training) during "
             "training:", "", "| step | dev accuracy |", "|---|---|"]
    lines += [f"| {r['step']} | {r['accuracy']:.3f} |" for r in record["dev_accuracy"]]
    pv = record.get("prosqa_valid")
    if pv:
        lines += ["", f"Greedy CoT accuracy on the released ProsQA validation split "
                      f"(`prosqa_valid.json`, {pv['n']} questions, never trained or tuned on): "
                      f"**{pv['overall']:.3f}** ({pv['no_answer']} without an answer).", "",
                  "| hops | questions | accuracy |", "|---|---|---|"]
        lines += [f"| {h} | {v['n']} | {v['accuracy']:.3f} |" for h, v in pv["by_hops"].items()]
    return "\n".join(lines) + "\n"


def _previous_lines(record: dict[str, Any]) -> list[str]:
    prev = record.get("previous_stage")
    if not prev:
        return []
    c = prev["config"]
    return [f"It continues a first stage (the first command): {prev['steps']} steps "
            f"(schedule of {c['steps']}), look-up warm-up {c.get('lookup_steps', 0)} steps "
            f"reaching {prev.get('lookup_sentences')} sentences, curriculum "
            f"{c.get('curriculum', 0)} steps, batch {c['batch_size']}, peak lr {c['lr']}, "
            f"seed {c['seed']}.", ""]
