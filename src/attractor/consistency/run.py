"""``attractor train consistency``: score the model, train it for agreement with its own
majority (TTRL or ScPO), save it, score it again.

Run directory:
- ``run.json``: the options (a rerun with other options is refused; with the same, it resumes);
- ``train-state/``: weights, optimiser moments and position as safetensors + JSON, replaced
  atomically after every chunk (ttrl) or round (scpo);
- ``train_log.jsonl``: one line per optimiser step (reward, loss, tokens, seconds);
- ``model/``: the trained model (safetensors) and tokenizer, a ``--model`` for every command;
- ``eval_questions.parquet``: per held-out question, before and after; ``eval.parquet``: the
  means with paired 95% bootstrap intervals of the differences.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from attractor.consistency.config import ConsistencyConfig
from attractor.consistency.evaluate import COLUMNS, Scored, paired_difference, score
from attractor.store.atomic import atomic_write_bytes, atomic_write_table, settled
from attractor.errors import ConfigError, DataError, RunMismatchError

# options that change where, how fast or how far a run goes, not what it trains
LOGISTICS = ("out", "threads", "device", "stop_after", "data_dir")


@dataclass
class TrainingOutcome:
    """What a run ends with: the summary rows (None when it stopped early to resume later)."""

    rows: list[dict] | None
    steps_done: int
    tokens_per_s: float | None


def chunk_seed(seed: int, method: str, start: int) -> int:
    """The seed of the chunk (or round) that starts at ``start``."""
    return int(hashlib.sha256(f"consistency:{method}:{seed}:{start}".encode()).hexdigest()[:8], 16)


def question_order(n: int, needed: int, seed: int) -> list[int]:
    """``needed`` question indices: seeded shuffles of 0..n-1, epoch after epoch."""
    from attractor.training.state import epoch_order

    order: list[int] = []
    epoch = 0
    while len(order) < needed:
        order += epoch_order(n, seed, 0, epoch)
        epoch += 1
    return order[:needed]


def _check_run_dir(cfg: ConsistencyConfig, out: Path) -> None:
    """Refuse an --out that cannot be written or holds a run with other options (nothing is
    written here: :func:`_claim_run_dir` records the run once it has started)."""
    from attractor.checks import check_destination

    check_destination(out)
    path = out / "run.json"
    if path.exists():
        try:
            saved = json.loads(path.read_text())
        except ValueError:
            raise DataError(f"{path}: not valid JSON (damaged); remove it to start over") \
                from None
        saved.setdefault("reading", "strict")   # runs made before the option existed
        mine = _identity(cfg)
        diff = sorted(k for k in mine if saved.get(k) != mine[k])
        if diff:
            raise RunMismatchError(f"{out}: holds a run with other options ({', '.join(diff)}); "
                                   "use another --out")


def _identity(cfg: ConsistencyConfig) -> dict:
    return {k: v for k, v in asdict(cfg).items() if k not in LOGISTICS}


def _claim_run_dir(cfg: ConsistencyConfig, out: Path) -> None:
    """Write ``out/run.json`` (atomically) once the data and model loaded, so a refused command
    leaves nothing that blocks the corrected one."""
    from attractor.store.atomic import atomic_write_json

    if not (out / "run.json").exists():
        atomic_write_json(out / "run.json", _identity(cfg))


def _load_problems(cfg: ConsistencyConfig):
    from attractor.tasks.loaders import load_task

    train = load_task(cfg.task, data_dir=cfg.data_dir)[0]
    held = load_task(cfg.eval_task, data_dir=cfg.data_dir)[0]
    shared = {p.question for p in train} & {p.question for p in held}
    if shared:
        raise ConfigError(f"--eval-task {cfg.eval_task}: shares {len(shared)} questions with "
                          f"--task {cfg.task}; held-out questions must be new")
    check = (load_task(cfg.check_task, data_dir=cfg.data_dir, limit=cfg.check_limit)[0]
             if cfg.check_task else [])
    return train, held, check


class _Scores:
    """eval_questions.parquet: per question, set and stage (before / after)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict] = []
        if path.exists():
            import pyarrow.parquet as pq

            self.rows = pq.read_table(path).to_pylist()

    def get(self, name: str, stage: str) -> Scored | None:
        rows = [r for r in self.rows if r["set"] == name and r["stage"] == stage]
        if not rows:
            return None
        cols = {c: [r[c] for r in rows] for c in COLUMNS if rows[0].get(c) is not None}
        return Scored([r["question_id"] for r in rows], cols)

    def put(self, name: str, stage: str, s: Scored) -> None:
        import pyarrow as pa

        for i, qid in enumerate(s.question_ids):
            self.rows.append({"set": name, "stage": stage, "question_id": qid,
                              **{c: s.columns[c][i] if c in s.columns else None
                                 for c in COLUMNS}})
        atomic_write_table(self.path, pa.Table.from_pylist(self.rows))


def _score_sets(model, tok, cfg, sets, stage: str, scores: _Scores, log) -> None:
    for name, problems, greedy_only in sets:
        if not problems or scores.get(name, stage) is not None:
            continue
        log(f"scoring {stage} training on {name} ({len(problems)} questions)")
        model.eval()
        scores.put(name, stage, score(model, tok, problems, samples=cfg.eval_samples,
                                      max_new_tokens=cfg.max_new_tokens, seed=cfg.seed,
                                      confident=cfg.confident, greedy_only=greedy_only,
                                      reading=cfg.reading))


class _Log:
    """train_log.jsonl, cut back to the saved position on resume (each line's ``unit`` is the
    ttrl step or scpo round it belongs to)."""

    def __init__(self, path: Path, keep_until: int) -> None:
        self.path = path
        lines = path.read_text().splitlines() if path.exists() else []
        kept = [ln for ln in lines if json.loads(ln)["unit"] <= keep_until]
        atomic_write_bytes(path, "".join(ln + "\n" for ln in kept).encode())

    def write(self, record: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def _callback(bar, task_id, logfile: _Log, unit: Callable[[int], int], stats: dict):
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        """Advances the rich bar and writes one log line per optimiser step."""

        def on_step_begin(self, args, state, control, **kw):
            stats["t0"] = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kw):
            if not logs or "loss" not in logs:
                return
            secs = time.perf_counter() - stats.get("t0", time.perf_counter())
            tokens = logs.get("num_tokens")
            new = tokens - stats.get("last_tokens", 0) if tokens is not None else None
            stats["last_tokens"] = tokens or 0
            record = {"unit": unit(state.global_step), "step": state.global_step, "loss": logs.get("loss"),
                      "reward": logs.get("reward"), "reward_std": logs.get("reward_std"),
                      "completion_length": logs.get("completions/mean_length"),
                      "tokens": new, "seconds": secs}
            logfile.write(record)
            if new:
                stats["tokens"] = stats.get("tokens", 0) + new
                stats["seconds"] = stats.get("seconds", 0.0) + secs
            bar.update(task_id, advance=1)

    return Progress()


def run_consistency(cfg: ConsistencyConfig, log: Callable[[str], None] = print) -> TrainingOutcome:
    """Train ``cfg.model`` with ``cfg.method`` (resuming ``cfg.out`` when it holds the same
    run) and score it before and after on the held-out (and check) questions."""
    import torch
    from safetensors.torch import load_file

    from attractor.consistency.trl_support import require_trl
    from attractor.training.state import load_optimizer, save_state
    from attractor.models.load import load, resolve_device
    from attractor.ui import progress_bar

    require_trl("GRPOTrainer" if cfg.method == "ttrl" else "DPOTrainer", cfg.method)
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    _check_run_dir(cfg, out)
    train, held, check = _load_problems(cfg)
    dev = resolve_device(cfg.device)
    model, tok = load(cfg.model, dtype="float32", device=dev)
    _claim_run_dir(cfg, out)
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    scores = _Scores(out / "eval_questions.parquet")
    sets = [("held-out", held, False), ("check", check, True)]
    _score_sets(model, tok, cfg, sets, "before", scores, log)

    state_dir = out / "train-state"
    total = cfg.steps if cfg.method == "ttrl" else cfg.rounds
    done = 0
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    if (settled(state_dir) / "state.json").exists():
        saved = json.loads((state_dir / "state.json").read_text())
        missing, unexpected = model.load_state_dict(
            load_file(state_dir / "model.safetensors", device=dev), strict=False)
        if unexpected or any(not k.endswith("lm_head.weight") for k in missing):
            raise RunMismatchError(f"{state_dir}: its weights do not fit --model {cfg.model}")
        if cfg.method == "ttrl":
            load_optimizer(opt, model, state_dir, dev)
        done = saved["pos"]["done"]
        log(f"resumed after {'step' if cfg.method == 'ttrl' else 'round'} {done} of {total}")
    logfile = _Log(out / "train_log.jsonl", keep_until=done)
    stop = min(total, cfg.stop_after) if cfg.stop_after else total
    stats: dict = {}
    with progress_bar() as bar:
        if cfg.method == "ttrl":
            from attractor.consistency.ttrl import train_chunk

            task_id = bar.add_task(f"ttrl ({cfg.questions_per_step}x{cfg.group} per step)",
                                   total=total, completed=done)
            order = question_order(len(train), total * cfg.questions_per_step, cfg.seed)
            while done < stop:
                n = min(cfg.ckpt_every, total - done)
                idx = order[done * cfg.questions_per_step:(done + n) * cfg.questions_per_step]
                stats["last_tokens"] = 0
                model.train()
                train_chunk(model, tok, [train[i] for i in idx], opt, cfg, n,
                            chunk_seed(cfg.seed, "ttrl", done), dev, done == 0,
                            [_callback(bar, task_id, logfile, lambda s, d=done: d + s, stats)])
                done += n
                save_state(model, opt, state_dir, cfg, {"done": done}, drop_lm_head=tied)
        else:
            done = _scpo_rounds(model, tok, train, cfg, dev, done, stop, bar, logfile, stats,
                                state_dir, tied, log)
    if done < total:
        log(f"stopped after {done} of {total}; run the same command again to resume")
        return TrainingOutcome(None, done, None)
    model.eval()
    model.save_pretrained(out / "model")
    tok.save_pretrained(out / "model")
    _score_sets(model, tok, cfg, sets, "after", scores, log)
    rows = summarise(scores, out)
    if cfg.method == "scpo":  # DPO logs no token counts: the pairs' own, per round
        speed = (stats["round_tokens"] / stats["round_seconds"]
                 if stats.get("round_seconds") else None)
    else:
        speed = stats["tokens"] / stats["seconds"] if stats.get("seconds") else None
    return TrainingOutcome(rows, done, speed)


def _scpo_rounds(model, tok, train, cfg, dev, done, stop, bar, logfile, stats, state_dir, tied,
                 log) -> int:
    from attractor.config import SamplingConfig
    from attractor.consistency.scpo import build_pairs, train_round
    from attractor.engines.hf import HFEngine, generate_capped
    from attractor.training.state import save_state
    from attractor.tasks.prompts import prompt_ids

    task_id = bar.add_task("scpo rounds", total=cfg.rounds, completed=done)
    while done < stop:
        seed = chunk_seed(cfg.seed, "scpo", done)
        model.eval()
        groups = generate_capped(HFEngine(model, tok), [p.id for p in train],
                                 [prompt_ids(p, tok) for p in train],
                                 SamplingConfig(samples=cfg.group, temperature=cfg.temperature,
                                                max_new_tokens=cfg.max_new_tokens, seed=seed),
                                 max_rows=256)
        texts = [[r.text for r in g] for g in groups]
        rows, pairs = build_pairs(train, groups, cfg.vote_threshold, cfg.reading)
        if done == 0 and not any(any(c for c in g) for g in texts):
            raise ConfigError(f"--task {cfg.task}: no sample has text to vote on")
        kept = [p for p in pairs if p is not None]
        log(f"round {done + 1}: {len(kept)} pairs from {len(train)} questions (mean weight "
            f"{sum(p.weight for p in kept) / max(len(kept), 1):.3f})")
        logfile.write({"unit": done + 1, "round": done + 1, "pairs": len(kept),
                       "mean_weight": sum(p.weight for p in kept) / max(len(kept), 1)})
        if rows:
            model.train()
            sub = bar.add_task(f"round {done + 1} DPO", total=None)
            tokens, secs = train_round(model, tok, rows, cfg, seed, dev,
                                       [_callback(bar, sub, logfile, lambda s, d=done: d + 1,
                                                  stats)])
            stats["round_tokens"] = stats.get("round_tokens", 0) + tokens
            stats["round_seconds"] = stats.get("round_seconds", 0.0) + secs
            bar.update(sub, visible=False)
        done += 1
        save_state(model, None, state_dir, cfg, {"done": done}, drop_lm_head=tied)
        bar.update(task_id, advance=1)
    return done


def summarise(scores: _Scores, out: Path) -> list[dict]:
    """Before, after and the paired difference with its 95% interval, per set and metric;
    written to ``eval.parquet``."""
    import pyarrow as pa

    rows = []
    for name in ("held-out", "check"):
        before, after = scores.get(name, "before"), scores.get(name, "after")
        if before is None or after is None:
            continue
        for col in COLUMNS:
            if col not in before.columns:
                continue
            diff, lo, hi = paired_difference(before, after, col)
            rows.append({"set": name, "metric": col, "before": before.mean(col),
                         "after": after.mean(col), "difference": diff, "diff_low": lo,
                         "diff_high": hi, "questions": len(before.question_ids)})
    atomic_write_table(out / "eval.parquet", pa.Table.from_pylist(rows))
    return rows


def verdicts(rows: list[dict], samples: int) -> list[str]:
    """The issue's three questions, answered from the summary rows: does greedy pass@1 after
    training reach the untrained maj@k, did the check set's greedy accuracy fall (its interval
    below 0), and did the consistent-but-wrong rate rise."""
    get = {(r["set"], r["metric"]): r for r in rows}
    out = []
    g, m = get.get(("held-out", "greedy_correct")), get.get(("held-out", "maj@k"))
    if g and m:
        out.append(f"greedy pass@1 after training {g['after']:.3f} vs the untrained maj@{samples} "
                   f"{m['before']:.3f}: {'reached' if g['after'] >= m['before'] else 'not reached'}")
    c = get.get(("check", "greedy_correct"))
    if c:
        fell = c["diff_high"] < 0
        out.append(f"check set greedy accuracy {c['before']:.3f} -> {c['after']:.3f} "
                   f"(difference {c['difference']:+.3f}, 95% [{c['diff_low']:+.3f}, "
                   f"{c['diff_high']:+.3f}]): {'fell' if fell else 'did not fall'}")
    w = get.get(("held-out", "consistent_wrong"))
    if w:
        rose = w["diff_low"] > 0
        out.append(f"consistent-but-wrong rate {w['before']:.3f} -> {w['after']:.3f} "
                   f"(95% [{w['diff_low']:+.3f}, {w['diff_high']:+.3f}]): "
                   + ("rose" if rose else "fell" if w["diff_high"] < 0 else "no clear change"))
    return out
