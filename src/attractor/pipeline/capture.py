"""``attractor capture RUN``: hidden states of chosen layers and positions of every rollout.

Re-forwards the stored prompt and completion token ids (never re-tokenised text) through the
run's model; imported rollouts without token ids need ``--model`` and are tokenised once (the
manifest records it). Resumable: rollouts already in ``latents/index.parquet`` are skipped.
"""
from __future__ import annotations

from typing import Callable

import torch

from attractor.pipeline.results import CaptureResult
from attractor.capture.decisive import decisive_token_index, token_holding
from attractor.capture.positions import parse_layers, parse_positions, reasoning_tokens, resolve
from attractor.capture.reforward import BatchItem, capture_batch, plan_batches
from attractor.errors import UserError
from attractor.grading.extract import raw_answer
from attractor.store.environment import command_line, now
from attractor.checks import check_positive
from attractor.store.run_store import open_run
from attractor.ui import progress_bar

SHARD_VECTORS = 65536


CHUNK_SPAN = ("reasoning: up to and including </think> where the completion has one, else up to "
              "the answer marker the grader read, else the whole completion")


def answer_token_index(tokenizer, completion_ids: list[int], text: str) -> int | None:
    """Completion index of the token just before the extracted answer span (None if the
    rollout has no answer or the answer starts the completion)."""
    span, _ = raw_answer(text)
    if span is None:
        return None
    start = text.rfind(span)
    if start <= 0:
        return None
    t = token_holding(tokenizer, completion_ids, start)
    return t - 1 if t >= 1 else None


def run_capture(run: str, *, layers: str = "all", positions: str = "frac:0.5,last:1",
                model: str | None = None, max_tokens_per_batch: int = 16384,
                device: str = "auto", dtype: str = "auto", show_progress: bool = True,
                log: Callable[[str], None] = print) -> CaptureResult:
    """Capture latents into ``RUN/latents``; returns counts."""
    check_positive(max_tokens_per_batch, "--max-tokens-per-batch")
    store = open_run(run)
    specs = parse_positions(positions)
    m = store.manifest
    run_model = m.model_spec
    spec = model or run_model
    if spec is None:
        raise UserError(f"{run}: imported rollouts have no model; pass --model")
    from attractor.models.load import describe, load, weights_sha256

    sha = weights_sha256(spec)
    run_sha = m.weights_sha256
    if run_sha and sha and sha != run_sha:
        raise UserError(f"--model {spec}: weights differ from the run's model "
                        f"({run_model}, sha256 {run_sha[:12]}...); latents must come from the "
                        "model that made the rollouts")
    previous = m.stage("capture")
    lm, tok = load(spec, dtype=dtype, device=device)
    layer_list = parse_layers(layers, lm.config.num_hidden_layers)
    setup = {"model": spec, "weights_sha256": sha, "layers": layer_list,
             "positions": [s.text for s in specs]}
    chunked = any(s.kind == "chunk" for s in specs)
    if chunked:
        setup["chunk_span"] = CHUNK_SPAN
    if previous:
        for key in ("weights_sha256", "layers", "positions") + (("chunk_span",) if chunked
                                                                  else ()):
            if previous.get(key) != setup[key]:
                raise UserError(f"{run}: latents were captured with {key}={previous.get(key)}, "
                                f"this command has {setup[key]}; remove {run}/latents to "
                                "capture anew")
    cols = ["question_id", "sample_id", "prompt_token_ids", "completion_token_ids", "text"]
    df = store.rollouts(cols)
    latent = store.hidden_store
    latent.repair(log)   # damaged latent files are set aside; their rollouts are captured again
    done = set(zip(latent.index().column("question_id").to_pylist(),
                   latent.index().column("sample_id").to_pylist()))
    retokenized = df["completion_token_ids"].isna().any()
    prompts = {}
    if retokenized:
        from attractor.tasks.prompts import prompt_ids

        prompts = {p.id: prompt_ids(p, tok) for p in store.questions()}
    kinds = {p.id: p.kind for p in store.questions()}
    texts = {p.id: p.question for p in store.questions()}
    reading = (m.config or {}).get("reading", "strict")   # the run's answer reading
    items, keys = [], []
    span_sources: dict[str, int] = {}
    for r in df.itertuples(index=False):
        if (r.question_id, r.sample_id) in done:
            continue
        if r.completion_token_ids is None:
            p_ids = prompts[r.question_id]
            c_ids = tok(r.text or "", add_special_tokens=False)["input_ids"]
        else:
            p_ids, c_ids = list(r.prompt_token_ids), list(r.completion_token_ids)
        ans = answer_token_index(tok, c_ids, r.text or "") if any(
            s.kind == "answer" for s in specs) else None
        dec = decisive_token_index(tok, c_ids, r.text or "", kinds[r.question_id], reading,
                                   texts[r.question_id]) if any(
            s.kind == "decisive" for s in specs) else None
        span = None
        if chunked:
            span, source = reasoning_tokens(tok, c_ids, r.text or "")
            span_sources[source] = span_sources.get(source, 0) + 1
        targets = resolve(specs, len(p_ids), len(c_ids), ans, dec, span)
        if targets:
            items.append(BatchItem(p_ids + c_ids, targets))
            keys.append((r.question_id, int(r.sample_id)))
    if chunked:
        counts = dict(previous.get("chunk_span_ends") or {})
        for k, v in span_sources.items():
            counts[k] = counts.get(k, 0) + v
        setup["chunk_span_ends"] = counts
    store.update_stage("capture", status="running", started=now(), command=command_line(),
                       retokenized=bool(retokenized), dtype="float16", **setup)
    n_vec = 0
    buf_vecs: list[torch.Tensor] = []
    buf_rows: dict[str, list] = {k: [] for k in ("question_id", "sample_id", "layer",
                                                "position", "occurrence", "token_index")}

    def flush() -> None:
        if buf_vecs:
            latent.append(torch.cat(buf_vecs), buf_rows)
            buf_vecs.clear()
            for v in buf_rows.values():
                v.clear()

    batches = plan_batches([len(it.ids) for it in items], max_tokens_per_batch)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    with progress_bar(show_progress) as bar:
        task = bar.add_task("capturing", total=len(items))
        for batch in batches:
            got = capture_batch(lm, [items[i] for i in batch], layer_list, pad)
            for layer in layer_list:
                buf_vecs.append(got[layer])
                for i in batch:
                    qid, sid = keys[i]
                    for t in items[i].targets:
                        buf_rows["question_id"].append(qid)
                        buf_rows["sample_id"].append(sid)
                        buf_rows["layer"].append(layer)
                        buf_rows["position"].append(t.position)
                        buf_rows["occurrence"].append(t.occurrence)
                        buf_rows["token_index"].append(t.token_index)
            n_vec += sum(len(items[i].targets) for i in batch) * len(layer_list)
            if sum(v.shape[0] for v in buf_vecs) >= SHARD_VECTORS:
                flush()
            bar.update(task, advance=len(batch))
    flush()
    store.update_stage("capture", status="done", finished=now(),
                       n_vectors=latent.index().num_rows, model_info=describe(spec, lm, tok))
    return CaptureResult(len(items), n_vec, layer_list, setup["positions"])
