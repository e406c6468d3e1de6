"""Looking inside continuous thoughts: the logit lens of each thought (its top tokens and, on
ProsQA, the graph node it points at and whether that node lies t hops from the root along the
path, or among the nodes t hops away: Coconut's breadth-first reading, or t hops above the
question's first option: the backward proof the tiny model's curriculum replaces; on ProntoQA,
whether it names step t of the backward proof of :mod:`attractor.tasks.prontoqa_proof`), and
the answer flip rate under Gaussian noise on one thought (the latent-stability measure; the
other interventions are in :mod:`attractor.latent.slr.interventions`).

Thought t's row reads the state h_t that thought t produced (and that is fed back as thought
t + 1); thought 0 is the state after the question."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch

from attractor.errors import ConfigError
from attractor.grading.extract import extract_answer
from attractor.latent.command_config import InspectConfig
from attractor.latent.slr.interventions import intervening, noise, texts
from attractor.latent.slr.loop import LatentLoop
from attractor.tasks.prosqa import distances


@torch.no_grad()
def thought_table(loop: LatentLoop, problems, prompts: list[list[int]], top: int = 5,
                  cot_format: str = "backward-proof") -> pd.DataFrame:
    """One row per (question, thought): top tokens of the logit lens and, for ProsQA problems
    with their graph, the node with the highest lens probability among the graph's nodes; on
    ProntoQA, step t of the backward proof in ``cot_format`` (the format the loop replaced)."""
    rows: list[dict[str, Any]] = []
    for i in range(0, len(prompts), 32):
        out = loop.generate(prompts[i:i + 32], max_new_tokens=1)
        for p, states in zip(problems[i:i + 32], out.states):
            lens = loop.logit_lens(states.to(loop.device))  # (T + 1, vocab)
            node_ids = _node_token_ids(loop.tok, p)
            reach = (distances(len(p.meta["idx_to_symbol"]), p.meta["edges"], p.meta["root"])
                     if node_ids else None)
            path = _path_nodes(p) if node_ids else None
            above = _above_first_option(p) if node_ids else None
            proof = _proof_tokens(loop.tok, p, cot_format)
            for t in range(lens.shape[0]):
                probs = lens[t].exp()
                vals, idx = probs.topk(top)
                row = {"question_id": p.id, "thought": t,
                       "top_tokens": [loop.tok.decode([j]).strip() for j in idx.tolist()],
                       "top_probs": [round(v, 4) for v in vals.tolist()]}
                if node_ids:
                    node_p = probs[[tid for _, tid in node_ids]]
                    best = int(node_p.argmax())
                    node = node_ids[best][0]
                    row.update({"node": p.meta["idx_to_symbol"][node],
                                "node_prob": float(node_p[best]),
                                "node_hops_from_root": int(reach[node]),
                                "on_path_at_t": bool(path is not None and t < len(path)
                                                     and path[t] == node),
                                "on_chain_at_t": bool(above is not None and above[node] == t),
                                "frontier_mass": float(sum(node_p[k] for k, (n, _) in
                                                           enumerate(node_ids) if reach[n] == t))})
                if proof is not None:
                    step, tids = proof[t] if t < len(proof) else (None, [])
                    row.update({"proof_step": step,
                                "proof_token_prob": float(probs[tids].sum()) if tids else 0.0,
                                "on_proof_at_t": bool(tids and int(idx[0]) in tids)})
                rows.append(row)
    return pd.DataFrame(rows)


@torch.no_grad()
def flip_rates(loop: LatentLoop, problems, prompts: list[list[int]], sigmas: list[float],
               seed: int = 0, max_new_tokens: int = 32, on_step=None) -> pd.DataFrame:
    """Share of questions whose extracted answer changes when thought t gets Gaussian noise of
    relative scale sigma, for every t < T and sigma. ``on_step()`` follows each of the
    1 + T x len(sigmas) runs of the loop (progress)."""
    base = _answers(loop, problems, prompts, max_new_tokens)
    if on_step:
        on_step()
    rows = []
    for t in range(1, loop.cfg.max_thoughts + 1):
        for sigma in sigmas:
            with intervening(loop, noise(t, sigma, torch.Generator().manual_seed(seed))):
                got = _answers(loop, problems, prompts, max_new_tokens)
            if on_step:
                on_step()
            flips = [a != b for a, b in zip(base, got)]
            rows.append({"thought": t, "sigma": sigma, "flip_rate": sum(flips) / len(flips),
                         "n": len(flips)})
    return pd.DataFrame(rows)


def _answers(loop, problems, prompts, max_new_tokens) -> list[str | None]:
    return [extract_answer(t, p.kind)
            for t, p in zip(texts(loop, prompts, max_new_tokens), problems)]


def _node_token_ids(tok, p) -> list[tuple[int, int]]:
    """(node index, its one-token id) for the graph's nodes; empty without a graph or when a
    node name is not one token."""
    sym = (p.meta or {}).get("idx_to_symbol")
    if not sym:
        return []
    out = []
    for i, name in enumerate(sym):
        ids = tok(" " + name, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            return []
        out.append((i, ids[0]))
    return out


def _proof_tokens(tok, p, cot_format: str = "backward-proof"
                  ) -> list[tuple[str, list[int]]] | None:
    """(step, the token ids that name it) for each step of a ProntoQA problem's backward proof;
    None for other tasks or a question the proof cannot read. A one-name step is named by its
    first token; a sentence step (``backward-sentences``) by its subject concept in any form
    ("lorpus", "lorpuses", "Lorpuses") or the person, and "." by itself."""
    if p.kind != "prontoqa":
        return None
    from attractor.errors import DataError
    from attractor.tasks.prontoqa import plural
    from attractor.tasks.prontoqa_proof import prontoqa_backward_proof, prontoqa_sentence_proof

    def first(word: str) -> int:
        return tok(" " + word, add_special_tokens=False)["input_ids"][0]

    try:
        steps, _ = prontoqa_backward_proof(p)
        if cot_format != "backward-sentences":
            return [(s, [first(s)]) for s in steps]
        sentences, _ = prontoqa_sentence_proof(p)
    except DataError:
        return None
    # the sentence proof is the one-name proof without its predicate steps (the first, and the
    # one after "."): sentence i names concept i of that list
    concepts = [s for i, s in enumerate(steps) if i > 0 and steps[i - 1] != "."]
    named = []
    for sentence, c in zip(sentences, concepts):
        forms = {c} if c == "." or c[:1].isupper() else {c, plural(c), plural(c).capitalize()}
        named.append((sentence, sorted({first(f) for f in forms})))
    return named


def _above_first_option(p) -> list[int] | None:
    """Hops from the question's first option up to each node (-1: not an ancestor)."""
    from attractor.tasks.prosqa import QUESTION_RE

    m = QUESTION_RE.search(p.question)
    sym = p.meta["idx_to_symbol"]
    if m is None or m.group(2) not in sym:
        return None
    reverse = [[b, a] for a, b in p.meta["edges"]]
    return distances(len(sym), reverse, sym.index(m.group(2)))


def _path_nodes(p) -> list[int] | None:
    """Root, then the node each step reaches ("Every X is a Y." -> Y), from the problem's steps."""
    sym = p.meta["idx_to_symbol"]
    nodes = [p.meta["root"]]
    for step in p.steps or []:
        last = step.rstrip(".").split()[-1]
        if last not in sym:
            return None
        nodes.append(sym.index(last))
    return nodes


def check_donors(cfg: InspectConfig, n_questions: int) -> None:
    """``swap`` puts another question's thought in place: it needs two questions at least."""
    if "swap" in cfg.kinds and n_questions < 2:
        raise ConfigError(f"--kinds swap: needs at least 2 questions (another question's thought "
                          f"is swapped in), the task gives {n_questions} (--limit)")


def run_inspect(checkpoint: Path, cfg: InspectConfig, out: Path, data_dir: str | None = None,
                on_start: Callable[[int], None] | None = None,
                on_step: Callable[[], None] | None = None) -> dict[str, Any]:
    """``attractor latent inspect``: the lens table, the noise flip rates and the causal
    interventions of a loop checkpoint on ``cfg.task``, written to ``out`` (Parquet, figures and
    ``index.html``). ``on_start(total)`` gets the number of full loop runs ahead (1 for the
    lens, 1 + T x sigmas for the noise, 1 + (T + 1) x kinds for the interventions) and
    ``on_step()`` is called after each. Returns the tables and the page's path."""
    from attractor.latent.checkpoint import cot_format_of, load_loop, read_meta, require_loop
    from attractor.latent.slr.interventions import intervention_table
    from attractor.latent.report import write_latent_report
    from attractor.models.load import load
    from attractor.store.run_store import atomic_write_bytes
    from attractor.tasks.loaders import load_task
    from attractor.tasks.prompts import prompt_ids

    from attractor.checks import check_destination

    check_destination(out)
    step = on_step or (lambda: None)
    if read_meta(checkpoint).get("method") == "colar":
        return _inspect_colar(checkpoint, cfg, out, data_dir, on_start, step)
    require_loop(checkpoint)
    problems, _ = load_task(cfg.task, data_dir=data_dir, limit=cfg.limit)
    check_donors(cfg, len(problems))
    base, tok = load(cfg.model, dtype="float32", device="cpu")
    loop, meta = load_loop(checkpoint, base, tok)
    prompts = [prompt_ids(p, tok, True) for p in problems]
    T = loop.cfg.max_thoughts
    if on_start:
        on_start(1 + (1 + T * len(cfg.sigmas))
                 + (1 + (T + 1) * len(cfg.kinds) if cfg.kinds else 0))
    thoughts = thought_table(loop, problems, prompts, cot_format=cot_format_of(meta))
    step()
    robust = flip_rates(loop, problems, prompts, list(cfg.sigmas), on_step=step)
    causal = (intervention_table(loop, problems, prompts, cfg.kinds, on_step=step)
              if cfg.kinds else None)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "thoughts.parquet", thoughts.to_parquet(index=False))
    atomic_write_bytes(out / "robustness.parquet", robust.to_parquet(index=False))
    if causal is not None:
        atomic_write_bytes(out / "interventions.parquet", causal.to_parquet(index=False))
    page = write_latent_report(out, f"latent thoughts: {checkpoint} on {cfg.task}", thoughts,
                               robust, causal)
    return {"thoughts": thoughts, "robustness": robust, "interventions": causal, "page": page}


def _inspect_colar(checkpoint: Path, cfg: InspectConfig, out: Path, data_dir: str | None,
                   on_start: Callable[[int], None] | None, step: Callable[[], None]
                   ) -> dict[str, Any]:
    """A colar checkpoint: :func:`~attractor.latent.colar_inspect.random_latent_table`, with the
    No-CoT accuracy of the base model, written to ``out/random_latents.parquet``."""
    from attractor.grading.grade import correct_answers
    from attractor.latent.checkpoint import load_colar
    from attractor.latent.colar.inspect import random_latent_table
    from attractor.latent.evaluate import eval_cot
    from attractor.models.load import load
    from attractor.store.run_store import atomic_write_bytes
    from attractor.tasks.loaders import load_task
    from attractor.tasks.problem import ANSWER_MARK
    from attractor.tasks.prompts import prompt_ids

    problems, _ = load_task(cfg.task, data_dir=data_dir, limit=cfg.limit)
    base, tok = load(cfg.model, dtype="float32", device="cpu")
    prompts = [prompt_ids(p, tok, True) for p in problems]
    if on_start:
        on_start(1 + 2 * len(cfg.compression))
    direct = eval_cot(base, tok, problems, prompts, 32, " " + ANSWER_MARK)
    no_cot = sum(correct_answers(direct["texts"], problems)) / len(problems)
    step()
    colar, _ = load_colar(checkpoint, base, tok)
    table = random_latent_table(colar, problems, prompts, cfg.compression, no_cot, on_step=step)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "random_latents.parquet", table.to_parquet(index=False))
    return {"colar": table, "path": str(out / "random_latents.parquet")}
