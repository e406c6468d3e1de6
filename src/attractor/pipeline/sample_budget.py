"""The budgeted sampling loop of ``attractor sample --budget`` (plan in
:mod:`attractor.scaling.allocate`): each engine call becomes one shard, and the next call is
planned from the shards on disk, so a killed run resumes with the rollouts an uninterrupted run
makes."""
from __future__ import annotations

from typing import Any, Callable

from attractor.config import RunConfig
from attractor.engines.hf import generate_requests
from attractor.scaling.allocate import QuestionState, next_batch
from attractor.store.run_store import RunStore
from attractor.tasks.problem import Problem
from attractor.ui import progress_bar


def states_from_store(store: RunStore, problems: list[Problem]) -> list[QuestionState]:
    """Each question's answer classes (in sample order) and tokens, from the stored shards."""
    states = {p.id: QuestionState([], 0) for p in problems}
    if store.rollout_shards():
        df = store.rollouts(["question_id", "sample_id", "answer_class", "n_tokens"])
        for qid, sub in df.sort_values("sample_id").groupby("question_id", sort=False):
            states[qid] = QuestionState(
                [c if isinstance(c, str) else None for c in sub["answer_class"]],
                int(sub["n_tokens"].sum()))
    return [states[p.id] for p in problems]


def probe_scores(store: RunStore, problems: list[Problem], states: list[QuestionState],
                 scorer: Callable[[], dict[str, float]]) -> None:
    """Fill each state's probe score once the first round is stored: read from
    ``allocation/probe_scores.parquet`` when an earlier (killed) run wrote it, else computed by
    ``scorer`` and written, so a resumed run plans from the same scores."""
    import pandas as pd

    from attractor.store.atomic import atomic_write_table

    path = store.sub("allocation") / "probe_scores.parquet"
    if path.exists():
        got = dict(pd.read_parquet(path)[["question_id", "score"]].itertuples(index=False))
    else:
        import pyarrow as pa

        got = scorer()
        atomic_write_table(path, pa.table({"question_id": list(got),
                                           "score": [float(v) for v in got.values()]}))
    for p, st in zip(problems, states):
        st.score = got.get(p.id, float("nan"))


def run_budgeted(store: RunStore, problems: list[Problem], prompts: list[list[int]], engine,
                 cfg: RunConfig, max_rows: int,
                 to_rows: Callable[[list, Problem], list[dict[str, Any]]],
                 show_progress: bool = True,
                 scorer: Callable[[], dict[str, float]] | None = None) -> tuple[int, int]:
    """Sample until the budget is spent; returns (new rollouts, new tokens). ``scorer``: the
    probe's question scores (``--allocate probe:PATH``)."""
    new_rows = new_tokens = 0
    states = states_from_store(store, problems)
    index = {p.id: q for q, p in enumerate(problems)}
    with progress_bar(show_progress) as bar:
        task = bar.add_task(f"{cfg.allocate} allocation (tokens)", total=cfg.budget,
                            completed=min(cfg.budget, sum(s.tokens for s in states)))
        while True:
            if scorer is not None and states[0].score is None and all(
                    st.count >= cfg.first_round for st in states):
                probe_scores(store, problems, states, scorer)
            batch = next_batch(states, cfg.allocate, cfg.budget, cfg.first_round,
                               cfg.sampling.samples, max_rows)
            if not batch:
                break
            groups = generate_requests(engine, [(problems[q].id, prompts[q], first, count)
                                                for q, first, count in batch], cfg.sampling)
            rows: list[dict[str, Any]] = []
            for (q, _, _), group in zip(batch, groups):
                rows += to_rows(group, problems[q])
            store.write_rollouts(store.shard_path(len(store.rollout_shards())), rows)
            tokens = sum(r["n_tokens"] for r in rows)
            new_rows += len(rows)
            new_tokens += tokens
            for r in rows:  # rows of a question come in sample order
                st = states[index[r["question_id"]]]
                st.classes.append(r["answer_class"])
                st.tokens += r["n_tokens"]
            bar.update(task, advance=tokens)
    return new_rows, new_tokens
