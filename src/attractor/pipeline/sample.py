"""``attractor sample``: task + model -> graded rollouts in a resumable run directory.

Questions are cut into fixed chunks by position (``questions_per_shard``, stored in the
manifest); each chunk is sampled, graded and written as one shard. A rerun skips the shards that
exist, so a killed run resumes with exactly the rollouts an uninterrupted run makes.
"""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import attractor
from attractor.pipeline.results import SampleResult
from attractor.config import RunConfig
from attractor.engines.base import Engine, Rollout, StreamingEngine
from attractor.engines.confidence import CONVENTION as CONFIDENCE_CONVENTION
from attractor.errors import ConfigError, UserError
from attractor.grading.grade import grade_question, grader_for
from attractor.grading.math_equiv import MathVerifier
from attractor.scaling.online import parse_rule, sample_with_rule
from attractor.store.environment import command_line, environment, now
from attractor.store.manifest import Manifest
from attractor.store.run_store import RunStore
from attractor.tasks.loaders import load_task
from attractor.tasks.problem import Problem
from attractor.ui import progress_bar

EXTRACTION_DOC = ("last \\boxed{}, else last '#### n', else text after last '###', else last "
                  "'The answer is'; no fallback")


def identity_of(cfg: RunConfig) -> dict[str, Any]:
    """The fields a rerun into the same directory must share (flattened). Batch sizes are not
    among them: a run resumes with a smaller ``--max-batch-rows`` after running out of memory."""
    ident = {k: v for k, v in asdict(cfg).items() if k != "sampling"}
    if ident["backend"] == "hf":  # the default, and what runs made before the option hold
        del ident["backend"]
    # options added later: at their defaults they are absent, so older runs still resume
    del ident["reading"]  # which stored reading the metrics use: no part of the rollouts
    for key, default in (("offset", 0), ("prompt", None), ("steer", None), ("alpha", 0.0)):
        if ident.get(key) == default:
            del ident[key]
    if cfg.steer:  # the vector's content, not where it lies, is what the run used
        from attractor.steering.vector import file_sha256

        ident["steer"] = "sha256:" + file_sha256(cfg.steer) if Path(cfg.steer).is_file() \
            else cfg.steer
    ident.update({f"sampling.{k}": v for k, v in asdict(cfg.sampling).items()})
    return ident


def rollout_rows(group: list[Rollout], problem: Problem, cfg: RunConfig, engine: str,
                 verifier: MathVerifier | None) -> list[dict[str, Any]]:
    """Rows of the rollouts table for one question's samples, graded."""
    grades = grade_question([r.text for r in group], problem.gold, problem.kind, cfg.grader,
                            verifier, problem.question)
    s = cfg.sampling
    rows = []
    for r, g in zip(group, grades):
        if r.finish_reason == "early_stop":  # a cut trace never votes (DeepConf drops it)
            g = type(g)(answer=None, answer_class=None, correct=False, extraction="early_stop",
                        answer_flexible=None, answer_class_flexible=None,
                        correct_flexible=False)
        rows.append({
            "question_id": r.question_id, "sample_id": r.sample_id, "seed": r.seed,
            "prompt_token_ids": r.prompt_token_ids, "completion_token_ids": r.completion_token_ids,
            "text": r.text, "n_tokens": r.n_tokens, "finish_reason": r.finish_reason,
            "token_logprobs": r.token_logprobs, "token_entropies": r.token_entropies,
            "token_confidences": r.token_confidences,
            "temperature": s.temperature, "top_p": s.top_p, "top_k": s.top_k,
            "max_new_tokens": s.max_new_tokens, "engine": engine, "answer": g.answer,
            "answer_class": g.answer_class, "correct": g.correct, "extraction": g.extraction,
            "answer_flexible": g.answer_flexible, "answer_class_flexible":
                g.answer_class_flexible, "correct_flexible": g.correct_flexible,
        })
    return rows


def run_sample(cfg: RunConfig, out: str, *, data_dir: str | None = None, device: str = "auto",
               max_batch_rows: int = 256, trust_remote_code: bool = False, workers: int = 2,
               log: Callable[[str], None] = print, show_progress: bool = True) -> SampleResult:
    """Sample (or resume) a run; returns a summary dict. Nothing is written before every input
    has been validated."""
    # RunConfig checked its fields when it was made (RunConfig.__post_init__)
    rule = parse_rule(cfg.early_stop, cfg.sampling.samples) if cfg.early_stop else None
    problems, source = load_task(cfg.task, data_dir=data_dir, id_field=cfg.id_field,
                                 question_field=cfg.question_field, answer_field=cfg.answer_field,
                                 steps_field=cfg.steps_field, limit=cfg.limit,
                                 offset=cfg.offset)
    if not problems:
        raise UserError(f"--task {cfg.task}: no questions")
    if max_batch_rows <= 0:
        raise ConfigError(f"--max-batch-rows must be positive, got {max_batch_rows}")
    n = cfg.sampling.samples
    store = RunStore(out)
    store.check_writable()
    if store.path.exists() and not store.exists() and any(store.path.iterdir()):
        raise UserError(f"{store.path}: exists and is not a run directory (no manifest.json)")
    identity = identity_of(cfg)
    # a run that never wrote a rollout holds nothing to protect: a corrected command restarts it
    fresh = not store.rollout_shards()
    if not fresh:
        store.check_compatible(identity)
    # the shard layout (questions per shard) is the run's own, fixed when it began; batches
    # within a shard follow this command's --max-batch-rows
    qps = (store.manifest.questions_per_shard if not fresh else None) or max(
        1, max_batch_rows // n)

    from attractor.models.load import describe, load
    from attractor.tasks.prompts import prompt_ids

    # other engines load their own copies; the driver's copy (for checksums) stays on the CPU
    model, tok = load(cfg.model, dtype=cfg.dtype, device=device if cfg.engine == "hf" else "cpu",
                      trust_remote_code=trust_remote_code)
    model_info = describe(cfg.model, model, tok)
    vector = (_steering_vector(cfg, model, model_info["weights_sha256"], problems, source)
              if cfg.steer else None)
    probe_stop = None
    if rule is not None and rule.name == "probe":
        from attractor.probes.online import ProbeStop, load_for_model

        probe_stop = ProbeStop(load_for_model(rule.params["path"], model,
                                              model_info["weights_sha256"],
                                              cfg.sampling.max_new_tokens, "--early-stop"),
                               rule.params["threshold"], tok)
    old = None if fresh else store.manifest
    for key, new in (("model.weights_sha256", model_info["weights_sha256"]),
                     ("task.sha256", source.sha256)):
        section, field = key.split(".")
        before = (getattr(old, section) or {}).get(field) if old else None
        if old and before != new:
            raise UserError(f"{store.path}: existing run used {key}={before}, now {new}; the "
                            "model or data changed -- use another --out")
    scorer = _allocation_scorer(cfg, store, problems, model, tok, model_info)
    chunks = [problems[i:i + qps] for i in range(0, len(problems), qps)]
    budgeted = cfg.budget is not None
    if old is not None:
        _set_aside_damage(store, budgeted, log)
    todo = [k for k in range(len(chunks)) if not store.shard_path(k).exists()]
    complete = (old is not None and old.stage_done("sample")) if budgeted else not todo
    if complete:
        log(f"{store.path}: run already complete ({len(problems)} questions x {n} samples); "
            "nothing to do")
        return SampleResult("complete", len(problems))
    # after the completeness check: a finished run resumes without starting Ray or vLLM
    engine = make_engine(cfg, model, tok, device, max_batch_rows, trust_remote_code, workers)
    if not old:
        manifest = Manifest(
            attractor_version=attractor.__version__,
            command=command_line(),
            created=now(),
            identity=identity,
            config=cfg.to_dict(),
            model=model_info,
            engine=engine.describe(),
            task={**asdict(source)},
            seeds={"base_seed": cfg.sampling.seed, "rule": "sample i uses base_seed + i"},
            prompt={"chat_template": cfg.chat_template and bool(getattr(tok, "chat_template",
                                                                        None))},
            grading={"grader": grader_for(source.kind, cfg.grader), "extraction": EXTRACTION_DOC,
                     "math_verify": "verify(gold, pred), gold first, per-answer timeout 5 s"},
            logprobs={"distribution": getattr(
                          engine, "logprobs_distribution",
                          "sampling distribution (after temperature, top-k, top-p); model "
                          "distribution at T=1 for greedy"), "entropy_log_base": "e",
                      "entropy_unit": "nats", "confidence": CONFIDENCE_CONVENTION},
            questions_per_shard=qps,
            **environment(),
        )
        if cfg.prompt is not None:
            manifest.prompt["template"] = cfg.prompt
        if vector is not None:
            manifest.prompt["steer"] = {"path": str(Path(cfg.steer).resolve()),
                                        "alpha": cfg.alpha, "kind": vector.meta.get("kind"),
                                        "sha256": identity["steer"]}
        store.path.mkdir(parents=True, exist_ok=True)
        store.write_questions(problems)
        store.write_manifest(manifest)
    store.update_stage("sample", status="running", started=now(), command=command_line())
    prompts = {p.id: prompt_ids(p, tok, cfg.chat_template, cfg.prompt) for p in problems}
    t0, new_tokens, new_rows = time.time(), 0, 0
    kind = grader_for(problems[0].kind, cfg.grader)
    from attractor.steering.inject import steered

    with MathVerifier(workers=2 if kind == "math" else 0) as verifier, \
            steered(model, vector, cfg.alpha):
        if budgeted:
            from attractor.pipeline.sample_budget import run_budgeted

            new_rows, new_tokens = run_budgeted(
                store, problems, [prompts[p.id] for p in problems], engine, cfg, max_batch_rows,
                lambda group, p: rollout_rows(group, p, cfg, engine.name, verifier),
                show_progress, scorer)
        else:
            with progress_bar(show_progress) as bar:
                task_id = bar.add_task("sampling", total=sum(len(chunks[k]) for k in todo) * n)
                for k, groups in _chunk_results(engine, chunks, todo, prompts, cfg, rule,
                                                verifier, max_batch_rows, probe_stop):
                    chunk = chunks[k]
                    rows: list[dict[str, Any]] = []
                    for p, group in zip(chunk, groups):
                        rows += rollout_rows(group, p, cfg, engine.name, verifier)
                    store.write_rollouts(store.shard_path(k), rows)
                    new_tokens += sum(r["n_tokens"] for r in rows)
                    new_rows += len(rows)
                    bar.update(task_id, advance=len(chunk) * n)
    elapsed = time.time() - t0
    store.update_stage("sample", **verifier.failure_record(store.manifest.stage("sample")))
    store.update_stage("sample", status="done", finished=now(),
                       n_rollouts=len(store.rollouts(["sample_id"])), elapsed_s=round(elapsed, 2))
    return SampleResult("done", len(problems), new_rows, new_tokens, elapsed)


def _set_aside_damage(store: RunStore, budgeted: bool, log: Callable[[str], None]) -> None:
    """Move every damaged rollout shard aside (sha256 checked), so that the shards missing
    after it are sampled again: a rollout is a function of its seed, so the repair gives the
    rollouts the run had. A budgeted run cannot be repaired this way (its later rounds were
    allocated from the lost rollouts): one line names the damage."""
    from attractor.store.integrity import damaged_shards, set_aside

    damage = damaged_shards(store.rollout_dir, deep=True)
    if damage and budgeted:
        raise UserError(f"{damage[0].line()}; a --budget run cannot be repaired by sampling "
                        "again (its allocation read the lost rollouts): `attractor verify "
                        f"{store.path}` lists the damage; sample into another --out")
    for d in damage:
        where = set_aside(d)
        log(f"repairing {d.line()}" + (f"; kept it as {where}" if where else ""))


def _allocation_scorer(cfg: RunConfig, store: RunStore, problems: list[Problem], model, tok,
                       model_info: dict[str, Any]):
    """``--allocate probe:PATH``: a function giving each question's probe score from its stored
    first-round samples (the probe is loaded and checked now, before any sampling)."""
    if not cfg.allocate.startswith("probe:"):
        return None
    from attractor.probes.online import load_for_model, question_scores

    path = cfg.allocate.split(":", 1)[1]
    probe = load_for_model(path, model, model_info["weights_sha256"], cfg.sampling.max_new_tokens,
                           "--allocate")
    return lambda: question_scores(model, tok, store, problems, probe, cfg.first_round)


def _steering_vector(cfg: RunConfig, model, weights_sha256: str | None,
                     problems: list[Problem], source):
    """The ``--steer`` vector, checked against the model and, for a vector built from grades
    (``stability``), against the questions it was built from."""
    from attractor.steering.vector import SteeringVector

    vector = SteeringVector.load(cfg.steer)
    vector.check_model(model, cfg.steer, weights_sha256)
    meta = vector.meta
    if meta.get("kind") == "stability" and meta.get("task_sha256") == source.sha256:
        used = set(meta.get("questions") or []) & {p.id for p in problems}
        if used:
            raise UserError(f"--steer {cfg.steer}: built from the grades of {len(used)} of these "
                            f"questions (e.g. {sorted(used)[0]}); evaluate on held-out ones "
                            "(--offset)")
    return vector


def make_engine(cfg: RunConfig, model, tok, device: str, max_batch_rows: int,
                trust_remote_code: bool, workers: int) -> Engine:
    """The engine ``cfg.engine`` names (optional engines are imported only when asked for),
    checked against the :class:`Engine` protocol."""
    if cfg.engine == "ray":
        from attractor.engines.ray_engine import RayEngine

        engine = RayEngine(cfg.model, workers=workers, dtype=cfg.dtype,
                           device="cpu" if device == "auto" else device,
                           trust_remote_code=trust_remote_code, max_batch_rows=max_batch_rows,
                           backend=cfg.backend)
    elif cfg.engine == "vllm":
        from attractor.engines.vllm_engine import VLLMEngine

        engine = VLLMEngine(cfg.model, dtype=cfg.dtype, trust_remote_code=trust_remote_code)
    else:
        from attractor.engines.hf import HFEngine

        engine = HFEngine(model, tok, max_batch_rows=max_batch_rows)
    if not isinstance(engine, Engine):
        raise TypeError(f"{type(engine).__name__} does not implement the Engine protocol")
    return engine


def _chunk_results(engine, chunks, todo, prompts, cfg: RunConfig, rule, verifier,
                   max_batch_rows: int, probe_stop=None):
    """``(chunk index, rollouts per question)`` for every chunk to do, in completion order."""
    from attractor.engines.hf import generate_capped

    if isinstance(engine, StreamingEngine):  # engines that schedule the whole run themselves
        yield from engine.stream([(k, [p.id for p in chunks[k]],
                                   [prompts[p.id] for p in chunks[k]]) for k in todo],
                                 cfg.sampling)
        return
    for k in todo:
        chunk = chunks[k]
        ids, prs = [p.id for p in chunk], [prompts[p.id] for p in chunk]
        if rule is None:
            yield k, (generate_capped(engine, ids, prs, cfg.sampling, max_batch_rows)
                      if engine.name == "hf" else engine.generate(ids, prs, cfg.sampling))
            continue
        yield k, sample_with_rule(
            engine, ids, prs, cfg.sampling, rule,
            lambda qi, texts, chunk=chunk: [g.answer_class for g in grade_question(
                texts, chunk[qi].gold, chunk[qi].kind, cfg.grader, verifier, flexible=False)],
            probe_stop)
