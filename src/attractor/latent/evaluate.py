"""``attractor latent eval``: accuracy, forward passes, wall time, iterations and final state
change of No-CoT, CoT and latent-loop checkpoints on a task, as one Parquet table.

- ``no-cot`` and ``cot``: a trained baseline checkpoint of that method when one is given
  (greedy decoding of its fine-tuned model), else the base model (no-cot: ``###`` is fed right
  after the question; cot: its own greedy chain of thought).
- ``soft-thinking``: the CoT model the loops start from (a trained ``cot`` checkpoint of the
  loops' ``cot_format`` when one is given, else the base, whose own CoT row is then kept beside
  any ``cot`` checkpoint of another format), with no further training, with T soft thoughts
  (Soft Thinking / CoT2: each thought is the logit lens's probability-weighted mix of token
  embeddings), then text.
- every loop checkpoint: its loop (its own halting), and with ``adaptive`` also state-halting
  (``<method>-adaptive``).
- every ``colar`` checkpoint: ``colar@c`` per compression factor c (greedy latents until the LM
  head names the marker, then the answer); ``iterations`` is the number of latents.
The ``checkpoint`` column names where each row's weights came from (``base`` or a directory),
``cot_format`` the chain of thought it was trained on (``--cot-format``; "-" for the base), so
two CoT checkpoints of different formats are two rows.
Forward passes count every model call per question: prefill, thoughts, marker, decoding steps.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch

from attractor.errors import UserError
from attractor.grading.extract import extract_answer
from attractor.grading.grade import correct_answers
from attractor.latent.command_config import EvalConfig
from attractor.latent.checkpoint import (RELEASED, cot_format_of, load_colar, load_hybrid,
                                         load_loop, read_meta, released_checkpoints)
from attractor.latent.slr.config import preset
from attractor.latent.slr.curriculum import BASELINES
from attractor.tasks.problem import ANSWER_MARK
from attractor.latent.slr.loop import LatentLoop


def _source(ck: Path) -> str:
    """How a row names its checkpoint: ``released:<kind>/<method>`` for a shipped one."""
    try:
        return "released:" + Path(ck).resolve().relative_to(RELEASED.resolve()).as_posix()
    except ValueError:
        return str(ck)


@torch.no_grad()
def eval_cot(model, tok, problems, prompts, max_new_tokens: int, prefix: str = ""
             ) -> dict[str, Any]:
    """Greedy decoding after each prompt (plus ``prefix``), batched with left padding."""
    t0 = time.perf_counter()
    texts, passes = [], []
    extra = tok(prefix, add_special_tokens=False)["input_ids"] if prefix else []
    for i in range(0, len(prompts), 32):
        chunk = [p + extra for p in prompts[i:i + 32]]
        width = max(len(p) for p in chunk)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in chunk], device=model.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk],
                            device=model.device)
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=pad)
        for row in out[:, width:].tolist():
            eos = tok.eos_token_id
            n = row.index(eos) + 1 if eos in row else len(row)
            texts.append((prefix if prefix else "") + tok.decode(row[:n], skip_special_tokens=True))
            passes.append(n)  # the prefill makes the first token; each later token one pass
    wall = time.perf_counter() - t0
    return {"texts": texts, "forward_passes": passes, "wall_s": wall / len(prompts),
            "iterations": float("nan"), "final_change": float("nan")}


def _batched(prompts, run: Callable[[list, int], tuple]) -> dict[str, Any]:
    """Run ``run(chunk, start)`` -> (texts, passes, iterations, final changes, states) over
    chunks of 32 prompts and gather the row's numbers (``state_norm``: the mean norm of the
    states after the question's)."""
    t0 = time.perf_counter()
    texts, passes, iters, change, norms = [], [], [], [], []
    for i in range(0, len(prompts), 32):
        t, f, it, ch, states = run(prompts[i:i + 32], i)
        texts += t
        passes += f
        iters += it
        change += ch
        norms += [float(s[1:].norm(dim=-1).mean()) for s in states if len(s) > 1]
    wall = time.perf_counter() - t0
    return {"texts": texts, "forward_passes": passes, "wall_s": wall / len(prompts),
            "iterations": sum(iters) / len(iters), "per_question_iterations": iters,
            "final_change": float(pd.Series(change, dtype=float).mean()),
            "state_norm": sum(norms) / len(norms) if norms else None}


@torch.no_grad()
def eval_loop(loop: LatentLoop, prompts, max_new_tokens: int, n_thoughts: int | None = None
              ) -> dict[str, Any]:
    """The loop on every prompt, batched (``n_thoughts``: a fixed thought count instead of the
    loop's halting); ``state_norm`` is the mean norm of the thought states."""
    def run(chunk, _):
        out = loop.generate(chunk, max_new_tokens=max_new_tokens, n_thoughts=n_thoughts)
        return out.texts, out.forward_passes, out.iterations, out.final_change, out.states
    return _batched(prompts, run)


@torch.no_grad()
def eval_colar(colar, prompts, c: int, max_new_tokens: int, latent_temperature: float = 1.0
               ) -> dict[str, Any]:
    """A CoLaR model at compression ``c`` on every prompt, batched: latents sampled at
    ``latent_temperature`` (0: the head's mean) from question i's own generator (seed i), end
    of thinking and answer greedy; ``iterations`` is the mean number of latents,
    ``state_norm`` the mean norm of the states after them."""
    def run(chunk, start):
        out = colar.generate(chunk, c, max_new_tokens=max_new_tokens,
                             latent_temperature=latent_temperature,
                             seeds=list(range(start, start + len(chunk))))
        return out.texts, out.forward_passes, out.latents, [], out.states
    return _batched(prompts, run)


@torch.no_grad()
def eval_hybrid(hm, prompts, max_new_tokens: int) -> dict[str, Any]:
    """An hrpo (or grpo) model decoding greedily, its hybrid inputs mixed until the answer
    marker; ``iterations`` is the mean gate share a (the token embedding's weight) over the
    mixed inputs (1 for grpo)."""
    from attractor.config import SamplingConfig

    shares: list[float] = []

    def run(chunk, _):
        out = hm.generate(chunk, SamplingConfig(samples=1, temperature=0.0,
                                                max_new_tokens=max_new_tokens))
        if out.gate_share == out.gate_share:
            shares.append(out.gate_share)
        passes = [len(t) + int(f) for t, f in zip(out.tokens, out.finished)]
        return out.texts, passes, [1.0] * len(chunk), [], []
    res = _batched(prompts, run)
    res["iterations"] = sum(shares) / len(shares) if shares else 1.0
    res["per_question_iterations"] = None
    return res


def evaluate(task: str, checkpoints: list[Path] | None, model_spec: str = "tiny",
             limit: int | None = None, data_dir: str | None = None,
             haltings: tuple[str, ...] = ("state",), epsilon: float = 1e-2,
             max_new_tokens: int = 96, soft_thoughts: int = 12, device: str = "auto",
             questions: list[dict[str, Any]] | None = None,
             on_row: Callable[[str], None] | None = None,
             compressions: tuple[int, ...] = (1, 2, 3, 5),
             latent_temperature: float = 1.0) -> pd.DataFrame:
    """One row per method on ``task``; ``checkpoints=None``: the released ones for the task's
    kind (ProsQA or ProntoQA). A loop trained with fixed halting gets one more row per entry
    of ``haltings`` (``<method>-adaptive`` for ``state``, ``<method>-adaptive-<halting>`` for
    ``kl`` and ``token``), at ``epsilon``. ``soft_thoughts`` > 0 adds ``soft-thinking``: the
    loops' CoT model (see the module docstring), untrained, with that many soft thoughts before
    it goes on in text. A ``colar`` checkpoint gets one row ``colar@c`` per entry of
    ``compressions`` (latents sampled at ``latent_temperature``, at compression c). ``questions``, when given, receives one dict per (row, question):
    task, method, checkpoint, id, hops, correct, answer, text, forward_passes, iterations.
    ``on_row(method)`` is called as each row is done (progress)."""
    from attractor.models.load import load, resolve_device
    from attractor.tasks.loaders import load_task
    from attractor.tasks.prompts import prompt_ids

    problems, _ = load_task(task, data_dir=data_dir, limit=limit)
    if checkpoints is None:
        checkpoints = released_checkpoints(problems[0].kind)
        if not checkpoints:
            raise UserError(f"{task}: no released latent checkpoints for {problems[0].kind} "
                            "tasks; name checkpoint directories (made by 'attractor latent "
                            "train')")
    dev = resolve_device(device)
    model, tok = load(model_spec, dtype="float32", device=dev)
    prompts = [prompt_ids(p, tok, True) for p in problems]
    rows = []

    def add(method: str, source: str, res: dict[str, Any], cot_format: str = "-") -> None:
        ok = correct_answers(res["texts"], problems)
        if questions is not None:
            iters = res.get("per_question_iterations") or [None] * len(problems)
            questions.extend(
                {"task": task, "method": method, "checkpoint": source, "id": p.id,
                 "hops": len(p.steps) if p.steps else None, "correct": c,
                 "answer": extract_answer(t, p.kind), "text": t, "forward_passes": f,
                 "iterations": i}
                for p, c, t, f, i in zip(problems, ok, res["texts"], res["forward_passes"], iters))
        rows.append({"task": task, "method": method, "n": len(problems),
                     "accuracy": sum(ok) / len(ok),
                     "forward_passes": sum(res["forward_passes"]) / len(ok),
                     "wall_s": res["wall_s"], "iterations": res["iterations"],
                     "final_change": res["final_change"], "cot_format": cot_format,
                     "checkpoint": source})
        if on_row:
            on_row(method)

    metas = {ck: read_meta(ck) for ck in checkpoints}
    # the CoT the loops were distilled from: the first cot checkpoint of the loops' own format,
    # else the base model's chain (its row then stays beside cot rows of other formats)
    loop_formats = {cot_format_of(m) for m in metas.values() if m["method"] not in BASELINES}
    cot_model, cot_source, cot_format = model, "base", "-"
    for method in BASELINES[::-1]:  # no-cot, then cot (every checkpoint of each, in order)
        trained = [ck for ck in checkpoints if metas[ck]["method"] == method]
        main = [ck for ck in trained if method == "no-cot" or not loop_formats
                or cot_format_of(metas[ck]) in loop_formats]
        if not main:
            prefix = " " + ANSWER_MARK if method == "no-cot" else ""
            add(method, "base", eval_cot(model, tok, problems, prompts, max_new_tokens, prefix))
        for ck in trained:
            base, btok = load(model_spec, dtype="float32", device=dev)
            loop, meta = load_loop(ck, base, btok, device=dev)
            fmt = cot_format_of(meta)
            add(method, _source(ck), eval_cot(loop.base, btok, problems, prompts,
                                              max_new_tokens), fmt)
            if method == "cot" and main and ck == main[0]:
                cot_model, cot_source, cot_format = loop.base, _source(ck), fmt
    if soft_thoughts:
        add("soft-thinking", cot_source,
            eval_loop(LatentLoop(cot_model, tok, preset("soft-thinking", soft_thoughts)),
                      prompts, max_new_tokens), cot_format)
    for ck in checkpoints:
        if metas[ck]["method"] in BASELINES:
            continue
        base, btok = load(model_spec, dtype="float32", device=dev)
        if metas[ck]["method"] in ("hrpo", "grpo"):
            hm, meta = load_hybrid(ck, base, btok, device=dev)
            add(meta["method"], _source(ck), eval_hybrid(hm, prompts, max_new_tokens),
                cot_format_of(meta))
            continue
        if metas[ck]["method"] == "colar":
            colar, meta = load_colar(ck, base, btok, device=dev)
            for c in compressions:
                add(f"colar@{c}", _source(ck), eval_colar(colar, prompts, c, max_new_tokens,
                                                          latent_temperature),
                    cot_format_of(meta))
            continue
        loop, meta = load_loop(ck, base, btok, device=dev)
        fmt = cot_format_of(meta)
        label = meta.get("variant") or meta["method"]  # slr+lora_rank=8 for a --loop override
        add(label, _source(ck), eval_loop(loop, prompts, max_new_tokens), fmt)
        if loop.cfg.halting != "fixed":
            continue
        fixed_cfg = loop.cfg
        for halting in haltings:
            loop.cfg = replace(fixed_cfg, halting=halting, epsilon=epsilon)
            name = label + "-adaptive" + ("" if halting == "state" else f"-{halting}")
            add(name, _source(ck), eval_loop(loop, prompts, max_new_tokens), fmt)
    return pd.DataFrame(rows)


def run_eval(cfg: EvalConfig, checkpoints: list[Path] | None = None, out: Path | None = None,
             data_dir: str | None = None, on_row: Callable[[str, str], None] | None = None
             ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``attractor latent eval``: :func:`evaluate` on every task of ``cfg``; returns (a row per
    task and method, a row per task, method and question). With ``out``, both are written as
    ``latent_eval.parquet`` and ``latent_questions.parquet`` (atomically)."""
    from attractor.checks import check_destination
    from attractor.store.run_store import atomic_write_bytes

    if out is not None:
        check_destination(out)
    per_question: list[dict[str, Any]] = []
    frames = [evaluate(t, checkpoints, model_spec=cfg.model, limit=cfg.limit, data_dir=data_dir,
                       epsilon=cfg.epsilon, haltings=tuple(cfg.halting),
                       max_new_tokens=cfg.max_new_tokens, soft_thoughts=cfg.soft_thoughts,
                       device=cfg.device, questions=per_question,
                       compressions=tuple(cfg.compression),
                       latent_temperature=cfg.latent_temperature,
                       on_row=(lambda m, t=t: on_row(t, m)) if on_row else None)
              for t in cfg.task]
    table, questions = pd.concat(frames, ignore_index=True), pd.DataFrame(per_question)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out / "latent_eval.parquet", table.to_parquet(index=False))
        atomic_write_bytes(out / "latent_questions.parquet", questions.to_parquet(index=False))
    return table, questions
