"""The ``attractor`` command line: thin wrappers that parse options, call the library and print
a rich summary. Heavy imports (torch, transformers) happen inside the commands, so
``attractor --help`` starts fast."""
from __future__ import annotations

import sys
from typing import Optional

import typer

from attractor.errors import ConfigError, UserError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Measure and improve the stability of LLM reasoning.")


@app.callback()
def _root() -> None:
    """Measure and improve the stability of LLM reasoning (run a command with --help)."""


@app.command("train-tiny")
def train_tiny_cmd(
    out: str = typer.Option("train-out/tiny", help="Output directory (checkpoint, log, model)."),
    steps: int = typer.Option(9000, help="Optimiser steps (look-up warm-up included)."),
    batch_size: int = typer.Option(32, help="Problems per step."),
    lr: float = typer.Option(1e-3, help="Peak learning rate."),
    lookup_steps: int = typer.Option(6000, help="Steps of look-up warm-up on small random sentence sets before ProsQA graphs."),
    lookup_gate: float = typer.Option(0.85, help="Warm-up drill accuracy above which a sentence is added."),
    lookup_max: int = typer.Option(40, help="Most sentences in a warm-up problem."),
    lookup_start: int = typer.Option(3, help="Sentences a warm-up problem starts with."),
    eval_size: int = typer.Option(128, help="Generated dev problems per evaluation."),
    seed: int = typer.Option(0, help="Seed of initialisation and data."),
    eval_every: int = typer.Option(500, help="Steps between dev evaluations."),
    threads: int = typer.Option(2, help="torch CPU threads."),
    init_from: Optional[str] = typer.Option(None, help="Start from a saved model directory (e.g. src/attractor/models/tiny) to continue its training."),
    drill: float = typer.Option(0.5, help="Share of examples that are look-up drills (concept -> parent pairs) instead of proofs."),
    root_drill: float = typer.Option(0.0, help="Share of examples that are root drills (is this person the one asked about?)."),
    warmup: int = typer.Option(300, help="Linear learning-rate warm-up steps."),
    stop_after: Optional[int] = typer.Option(None, help="Stop after this step (the learning-rate schedule still follows --steps)."),
    curriculum: int = typer.Option(1000, help="Steps over which graphs grow from 8-10 nodes to full ProsQA size (0: full size throughout)."),
    export_to: Optional[str] = typer.Option(None, help="Afterwards, evaluate on ProsQA validation and install the model here (the package's models/tiny to ship it)."),
    data_dir: Optional[str] = typer.Option(None, help="Folder of prosqa_valid.json (for --export-to)."),
) -> None:
    """Train the embedded tiny reasoning model (seeded, resumable: run it again to resume)."""
    from pathlib import Path

    from attractor.models.train_tiny import TinyTrainConfig, train_tiny
    from attractor.ui import console

    cfg = TinyTrainConfig(out=out, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                          eval_every=eval_every, threads=threads, curriculum=curriculum,
                          drill=drill, init_from=init_from, lookup_steps=lookup_steps,
                          lookup_gate=lookup_gate, lookup_max=lookup_max, eval_size=eval_size,
                          root_drill=root_drill, warmup=warmup, stop_after=stop_after,
                          lookup_start=lookup_start)
    result = train_tiny(cfg, log=console.print)
    console.print(f"trained: {result}")
    if export_to:
        from attractor.models.export_tiny import export_tiny

        record = export_tiny(Path(out), Path(export_to), data_dir)
        pv = record["prosqa_valid"]
        if pv:
            console.print(f"ProsQA validation, greedy CoT: {pv['overall']:.3f} overall; by hops "
                          + ", ".join(f"{h}: {v['accuracy']:.3f} (n={v['n']})"
                                      for h, v in pv["by_hops"].items()))
        console.print(f"installed in {export_to}")


@app.command("sample")
def sample_cmd(
    model: str = typer.Option("tiny", "--model", help="'tiny', a local model directory or a hub id."),
    task: str = typer.Option(..., "--task", help="Preset, file, synthetic:NAME[:k=v,...] or hf:NAME:SPLIT."),
    out: str = typer.Option(..., "--out", help="Run directory (created, or resumed if it exists)."),
    samples: int = typer.Option(16, "--samples", "-n", help="Rollouts per question (N)."),
    temperature: float = typer.Option(1.0, help="Sampling temperature; 0 is greedy."),
    top_p: float = typer.Option(1.0, help="Nucleus mass in (0, 1]."),
    top_k: int = typer.Option(0, help="Top-k filter; 0 disables it."),
    max_new_tokens: int = typer.Option(256, help="Token budget per completion."),
    seed: int = typer.Option(0, help="Base seed: sample i uses seed + i."),
    limit: Optional[int] = typer.Option(None, help="Only the first Q questions."),
    data_dir: Optional[str] = typer.Option(None, help="Folder of the preset files (default: $ATTRACTOR_DATA_DIR or ../shared/data)."),
    id_field: Optional[str] = typer.Option(None, help="Field of the question id."),
    question_field: Optional[str] = typer.Option(None, help="Field of the question text."),
    answer_field: Optional[str] = typer.Option(None, help="Field of the gold answer."),
    steps_field: Optional[str] = typer.Option(None, help="Field of the CoT steps."),
    grader: str = typer.Option("auto", help="auto | math | exact."),
    chat_template: bool = typer.Option(True, "--chat-template/--no-chat-template", help="Apply the tokenizer's chat template when it has one."),
    dtype: str = typer.Option("auto", help="auto | float32 | bfloat16 | float16."),
    device: str = typer.Option("auto", help="auto | cpu | cuda[:i]."),
    engine: str = typer.Option("hf", help="Sampling engine: hf (transformers), ray (Ray Data workers running hf) or vllm."),
    workers: int = typer.Option(2, help="With --engine ray: workers in the pool."),
    early_stop: Optional[str] = typer.Option(None, "--early-stop", help="Online early stop: deepconf:warmup=W,percentile=P,window=K or consensus:min_traces=M,share=S."),
    allocate: str = typer.Option("uniform", help="With --budget: uniform (even spread) or adaptive (more samples for questions whose answers disagree)."),
    budget: Optional[int] = typer.Option(None, help="Total completion tokens for the run; up to --samples per question."),
    first_round: int = typer.Option(2, help="With --budget: samples every question gets first."),
    max_batch_rows: int = typer.Option(256, help="Rows (questions x samples) per forward batch."),
    trust_remote_code: bool = typer.Option(False, help="Allow model code from the model repo."),
) -> None:
    """Sample N chain-of-thought rollouts per question, grade them, store them in RUN."""
    from attractor.config import RunConfig, SamplingConfig
    from attractor.pipeline.sample import run_sample
    from attractor.ui import console, table

    cfg = RunConfig(task=task, model=model, limit=limit, grader=grader, chat_template=chat_template,
                    dtype=dtype, engine=engine, id_field=id_field, question_field=question_field,
                    answer_field=answer_field, steps_field=steps_field, early_stop=early_stop,
                    allocate=allocate, budget=budget, first_round=first_round,
                    sampling=SamplingConfig(samples=samples, temperature=temperature, top_p=top_p,
                                            top_k=top_k, max_new_tokens=max_new_tokens, seed=seed))
    if max_batch_rows <= 0:
        raise ConfigError(f"--max-batch-rows must be positive, got {max_batch_rows}")
    res = run_sample(cfg, out, data_dir=data_dir, device=device, max_batch_rows=max_batch_rows,
                     workers=workers,
                     trust_remote_code=trust_remote_code, log=console.print)
    if res["status"] == "done":
        console.print(table("sample", ["questions", "new rollouts", "tokens", "seconds", "tokens/s"],
                            [[res["questions"], res["new_rollouts"], res["tokens"],
                              res["elapsed_s"], res["tokens_per_s"]]]))
        console.print(f"next: attractor analyze {out}")


@app.command("analyze")
def analyze_cmd(
    run: str = typer.Argument(..., help="Run directory."),
    window: int = typer.Option(2048, help="DeepConf sliding-window size in tokens."),
) -> None:
    """Grade what is ungraded; write metrics/questions.parquet, samples.parquet, signals.parquet,
    latent.parquet (when latents were captured) and summary.json."""
    from attractor.pipeline.analyze import run_analyze
    from attractor.pipeline.summary_print import print_summary

    if window <= 0:
        raise ConfigError(f"--window must be positive, got {window}")
    print_summary(run_analyze(run, window=window))


@app.command("capture")
def capture_cmd(
    run: str = typer.Argument(..., help="Run directory."),
    layers: str = typer.Option("all", help="all | every:K | a list like 0,4,8 (0 = embeddings, L = after the final norm)."),
    positions: str = typer.Option("frac:0.5,last:1", help="Comma-separated: frac:F, every:K, chunk:W, last:K, answer."),
    model: Optional[str] = typer.Option(None, help="Model spec (default: the run's model; needed for imported runs)."),
    max_tokens_per_batch: int = typer.Option(16384, help="Memory budget: rows x padded length per forward."),
    device: str = typer.Option("auto", help="auto | cpu | cuda[:i]."),
    dtype: str = typer.Option("auto", help="auto | float32 | bfloat16 | float16."),
) -> None:
    """Capture hidden states at chosen layers and positions of every rollout (resumable)."""
    from attractor.pipeline.capture import run_capture
    from attractor.ui import console

    res = run_capture(run, layers=layers, positions=positions, model=model,
                      max_tokens_per_batch=max_tokens_per_batch, device=device, dtype=dtype)
    console.print(f"captured {res['vectors']} vectors of {res['rollouts']} rollouts at layers "
                  f"{res['layers']} and positions {', '.join(res['positions'])} into {run}/latents")


@app.command("report")
def report_cmd(
    run: str = typer.Argument(..., help="Run directory (after attractor analyze)."),
    layer: Optional[int] = typer.Option(None, help="Layer of the PCA and t-SNE of latents (default: the last)."),
    position: Optional[str] = typer.Option(None, help="Position of the PCA and t-SNE of latents."),
) -> None:
    """Write RUN/report/index.html (self-contained) and the figures as PNG files."""
    from attractor.report.html import build_report
    from attractor.ui import console

    console.print(f"report: {build_report(run, layer=layer, position=position)}")


@app.command("vote")
def vote_cmd(
    run: str = typer.Argument(..., help="Run directory (after attractor analyze)."),
    draws: int = typer.Option(300, help="Random k-subsets per question and k."),
    eta: str = typer.Option("10,90", help="DeepConf filtering: keep the top eta% traces (comma-separated)."),
    layer: Optional[int] = typer.Option(None, help="Layer of the latents for tightness weights (default: the last)."),
    position: Optional[str] = typer.Option(None, help="Position of the latents for tightness weights."),
) -> None:
    """Majority vs confidence-, trajectory-, consistency- and tightness-weighted votes at each k."""
    from attractor.pipeline.vote import run_vote
    from attractor.ui import console, table

    if draws <= 0:
        raise ConfigError(f"--draws must be positive, got {draws}")
    try:
        etas = tuple(float(x) for x in eta.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"--eta: expected numbers like 10,90, got '{eta}'") from None
    if any(not 0 < e <= 100 for e in etas):
        raise ConfigError(f"--eta: each value must be in (0, 100], got '{eta}'")
    t = run_vote(run, draws=draws, etas=etas, layer=layer, position=position)
    kmax = int(t["k"].max())
    rows = [[r.method, r.accuracy, f"[{r.ci_low:.3f}, {r.ci_high:.3f}]", r.majority,
             r.delta_vs_majority, r.tokens] for r in t[t["k"] == kmax].itertuples()]
    console.print(table(f"voting at k={kmax} (all k in {run}/metrics/vote.parquet)",
                        ["method", "accuracy", "95% CI", "majority", "delta", "tokens"], rows))


@app.command("early-stop")
def early_stop_cmd(
    run: str = typer.Argument(..., help="Run directory (graded)."),
    window: int = typer.Option(2048, help="DeepConf sliding-window size in tokens."),
    layer: Optional[int] = typer.Option(None, help="Layer of the latents for the latent rule."),
    position: Optional[str] = typer.Option(None, help="Position of the latents for the latent rule."),
    max_loss: float = typer.Option(0.01, help="Accuracy loss allowed when picking each rule's best setting."),
) -> None:
    """Replay DeepConf, consensus and latent-variance early stopping on stored traces."""
    from attractor.pipeline.early_stop import best_within, run_early_stop
    from attractor.ui import console, table

    if window <= 0:
        raise ConfigError(f"--window must be positive, got {window}")
    t = run_early_stop(run, window=window, layer=layer, position=position)
    ref = t[t["rule"] == "majority"].iloc[0]
    best = best_within(t, max_loss)
    console.print(table(f"early stopping vs majority over all samples (accuracy {ref.accuracy:.3f}, "
                        f"{ref.tokens:.0f} tokens): best setting per rule losing <= {max_loss:.1%}",
                        ["rule", "setting", "tokens saved", "accuracy", "accuracy loss"],
                        [[r.rule, r.setting, r.tokens_saved, r.accuracy, r.accuracy_loss]
                         for r in best.itertuples()]))
    console.print(f"all {len(t)} settings: {run}/metrics/early_stop.parquet")


@app.command("sweep")
def sweep_cmd(
    model: str = typer.Option("tiny", "--model", help="Model spec."),
    task: str = typer.Option(..., "--task", help="Task spec."),
    out: str = typer.Option(..., "--out", help="Sweep directory (one run per cell inside)."),
    temperature: str = typer.Option("0,0.3,0.5,0.7,1.0,1.2", help="Temperatures (comma-separated)."),
    max_new_tokens: str = typer.Option("64,128,256", help="Token budgets (comma-separated)."),
    samples: int = typer.Option(16, "--samples", "-n", help="Rollouts per question."),
    top_p: float = typer.Option(1.0, help="Nucleus mass."),
    top_k: int = typer.Option(0, help="Top-k filter."),
    seed: int = typer.Option(0, help="Base seed."),
    limit: Optional[int] = typer.Option(None, help="Only the first Q questions."),
    data_dir: Optional[str] = typer.Option(None, help="Folder of the preset files."),
    grader: str = typer.Option("auto", help="auto | math | exact."),
    device: str = typer.Option("auto", help="auto | cpu | cuda[:i]."),
    dtype: str = typer.Option("auto", help="auto | float32 | bfloat16 | float16."),
    max_batch_rows: int = typer.Option(256, help="Rows per forward batch."),
) -> None:
    """Sample and analyse one run per (temperature, budget) cell; resumable, finished cells skipped."""
    from attractor.config import RunConfig, SamplingConfig
    from attractor.pipeline.sweep import parse_list, run_sweep
    from attractor.ui import console

    temps = parse_list(temperature, float, "--temperature")
    budgets = parse_list(max_new_tokens, int, "--max-new-tokens")
    base = RunConfig(task=task, model=model, limit=limit, grader=grader, dtype=dtype,
                     sampling=SamplingConfig(samples=samples, temperature=temps[0], top_p=top_p,
                                             top_k=top_k, max_new_tokens=budgets[0], seed=seed))
    cells = run_sweep(base, temps, budgets, out, data_dir=data_dir, device=device,
                      max_batch_rows=max_batch_rows, log=console.print)
    console.print(f"{len(cells)} cells in {out}; next: attractor report {out}")


@app.command("import")
def import_cmd(
    file: str = typer.Argument(..., help="JSONL, JSON or Parquet file of rollouts."),
    out: str = typer.Option(..., "--out", help="Run directory to create."),
    response_field: Optional[str] = typer.Option(None, help="Field of one response (a row per sample)."),
    responses_field: Optional[str] = typer.Option(None, help="Field of a list of responses (a row per question)."),
    id_field: str = typer.Option("id", help="Field of the question id ('' numbers questions by first appearance)."),
    question_field: str = typer.Option("question", help="Field of the question text."),
    answer_field: str = typer.Option("answer", help="Field of the gold answer."),
    correct_field: Optional[str] = typer.Option(None, help="Field of the harness's own correctness label(s), kept as label_correct."),
    finish_reason_field: Optional[str] = typer.Option(None, help="Field of the finish reason(s) ('stop' / 'length')."),
    kind: str = typer.Option("auto", help="auto | math | prosqa | prontoqa | arith (decides grading)."),
    grader: str = typer.Option("auto", help="auto | math | exact."),
) -> None:
    """Import rollouts made elsewhere into a run directory (then: attractor analyze RUN)."""
    from attractor.pipeline.import_rollouts import run_import
    from attractor.ui import console

    res = run_import(file, out, response_field=response_field, responses_field=responses_field,
                     id_field=id_field or None, question_field=question_field,
                     answer_field=answer_field, correct_field=correct_field,
                     finish_reason_field=finish_reason_field, kind=kind, grader=grader)
    if res["status"] == "complete":
        console.print(f"{out}: already imported ({res['questions']} questions, {res['rollouts']} "
                      "rollouts); nothing to do")
    else:
        console.print(f"imported {res['rollouts']} rollouts of {res['questions']} questions into "
                      f"{out}; next: attractor analyze {out}")


@app.command("demo")
def demo_cmd(
    out: str = typer.Option("runs/demo", "--out", help="Run directory."),
    questions: int = typer.Option(50, help="ProsQA questions."),
    samples: int = typer.Option(16, help="Samples per question."),
    temperature: float = typer.Option(1.0, help="Sampling temperature."),
    data_dir: Optional[str] = typer.Option(None, help="Folder of the benchmark files."),
) -> None:
    """The main job on the embedded tiny model: sample ProsQA, analyse, print the stability gap."""
    from attractor.pipeline.demo import run_demo

    run_demo(out, questions=questions, samples=samples, temperature=temperature,
             data_dir=data_dir)

latent_app = typer.Typer(no_args_is_help=True,
                         help="Stable Latent Reasoning: train and evaluate continuous-thought loops.")
app.add_typer(latent_app, name="latent")


@latent_app.command("train")
def latent_train_cmd(
    task: str = typer.Option("synthetic:prosqa:n=2000,seed=11", help="Training task with CoT steps (never a test split)."),
    model: str = typer.Option("tiny", help="Base model spec."),
    method: str = typer.Option("slr", help="coconut, slr, slr-minus-timestep|lora|residual|norm, or the baselines cot, no-cot."),
    out: str = typer.Option(..., "--out", help="Checkpoint directory (resumed if it exists)."),
    init: Optional[str] = typer.Option(None, help="Start from this checkpoint's weights (e.g. a cot checkpoint)."),
    cot_format: str = typer.Option("task", help="CoT steps: the task's (task), the tiny model's backward proof on ProsQA or ProntoQA, one name per step (backward-proof; backward-proof-first takes the parent stated first in the question where the proof would draw one), or that proof in the question's own sentences, one per step (backward-sentences)."),
    stages: int = typer.Option(6, help="Latent stages; the last makes every step latent."),
    first_stage: int = typer.Option(0, help="First stage (1 skips the CoT stage when the base already writes this CoT)."),
    thoughts_per_step: int = typer.Option(1, help="c: thoughts replacing one CoT step."),
    epochs_per_stage: int = typer.Option(1, help="Passes over the data per stage."),
    mix: float = typer.Option(0.0, help="Chance of training an example at an earlier stage."),
    thought_loss: float = typer.Option(0.0, help="Weight of a logit-lens loss pointing each thought at the first token of the CoT step it replaces (0: off, Coconut's recipe)."),
    feedback: str = typer.Option("hidden", help="What a thought feeds back: hidden (the last hidden state, Coconut) or soft (the logit lens's mix of token embeddings, as soft thinking; here trained)."),
    soft_temperature: float = typer.Option(0.3, help="Temperature of the soft feedback."),
    batch_size: int = typer.Option(16, help="Questions per step."),
    lr: float = typer.Option(3e-4, help="AdamW learning rate."),
    halting: str = typer.Option("fixed", help="fixed, state, kl or token."),
    epsilon: float = typer.Option(1e-2, help="Halting threshold (> 0)."),
    seed: int = typer.Option(0, help="Seed of the data order."),
    dev_task: Optional[str] = typer.Option(None, help="Task scored after every stage (the stage curve in loop.json; never a test split)."),
    dev_limit: int = typer.Option(200, help="Questions of --dev-task scored."),
    threads: int = typer.Option(2, help="torch CPU threads."),
    device: str = typer.Option("auto", help="cpu, cuda[:i] or auto (bfloat16 autocast on a GPU)."),
    data_dir: Optional[str] = typer.Option(None, help="Folder of preset data files."),
) -> None:
    """Train a latent loop with the Coconut curriculum (resumable: run it again to resume)."""
    from attractor.latent.train import LatentTrainConfig, train_latent
    from attractor.ui import console, table

    cfg = LatentTrainConfig(task=task, model=model, method=method, out=out, init=init,
                            cot_format=cot_format, first_stage=first_stage, stages=stages,
                            thoughts_per_step=thoughts_per_step, epochs_per_stage=epochs_per_stage,
                            mix=mix, thought_loss=thought_loss, feedback=feedback,
                            soft_temperature=soft_temperature, batch_size=batch_size, lr=lr,
                            halting=halting, epsilon=epsilon,
                            seed=seed, dev_task=dev_task, dev_limit=dev_limit, threads=threads,
                            device=device)
    res = train_latent(cfg, log=console.print, data_dir=data_dir)
    if res.get("stage_curve"):
        cols = ["stage", "thoughts", "loss", "dev_accuracy", "state_norm"]
        console.print(table(f"stage curve on {dev_task}", cols,
                            [[pt[c] for c in cols] for pt in res["stage_curve"]]))
    console.print(f"checkpoint: {res['out']} ({res['steps']} steps, final loss {res['final_loss']:.3f})")


@latent_app.command("eval")
def latent_eval_cmd(
    checkpoints: Optional[list[str]] = typer.Argument(None, help="Checkpoint directories (default: the released ones)."),
    task: list[str] = typer.Option(["prosqa"], "--task", help="Task(s) to evaluate on (repeatable)."),
    model: str = typer.Option("tiny", help="Base model spec the checkpoints were trained on."),
    limit: Optional[int] = typer.Option(None, help="Only the first Q questions."),
    out: Optional[str] = typer.Option(None, help="Directory for latent_eval.parquet."),
    epsilon: float = typer.Option(1e-2, help="Threshold of the adaptive-halting rows."),
    halting: list[str] = typer.Option(["state"], "--halting", help="Adaptive halting of the extra row per fixed-T loop (repeatable): state, kl or token (stop where the lens names the answer marker; loops trained with --thought-loss learn it)."),
    soft_thoughts: int = typer.Option(12, help="Most soft thoughts of the training-free soft-thinking row (0: no row)."),
    device: str = typer.Option("auto", help="cpu, cuda[:i] or auto."),
    data_dir: Optional[str] = typer.Option(None, help="Folder of preset data files."),
) -> None:
    """No-CoT, CoT, soft thinking and each checkpoint: accuracy, forward passes, wall time, iterations."""
    from pathlib import Path

    import pandas as pd

    from attractor.latent.evaluate import evaluate
    from attractor.ui import console, frame_table

    if epsilon <= 0:
        raise ConfigError(f"--epsilon must be > 0, got {epsilon}")
    if soft_thoughts < 0:
        raise ConfigError(f"--soft-thoughts must be >= 0, got {soft_thoughts}")
    bad = [h for h in halting if h not in ("state", "kl", "token")]
    if bad:
        raise ConfigError(f"--halting must be state, kl or token, got {bad[0]!r}")
    frames = [evaluate(t, [Path(c) for c in checkpoints] if checkpoints else None,
                       model_spec=model, limit=limit, data_dir=data_dir, epsilon=epsilon,
                       haltings=tuple(dict.fromkeys(halting)),
                       soft_thoughts=soft_thoughts, device=device)
              for t in task]
    df = pd.concat(frames, ignore_index=True)
    if out:
        from attractor.store.run_store import atomic_write_bytes

        Path(out).mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(Path(out) / "latent_eval.parquet", df.to_parquet(index=False))
    cols = ["method", "accuracy", "forward_passes", "wall_s", "iterations", "final_change",
            "cot_format"]
    heads = ["method", "accuracy", "passes", "wall_s", "iters", "change", "cot"]  # fits 80 columns
    for name, sub in df.groupby("task", sort=False):
        console.print(frame_table(f"latent eval: {name} ({int(sub['n'].iloc[0])} questions)",
                                  sub[cols], heads))


@latent_app.command("inspect")
def latent_inspect_cmd(
    checkpoint: str = typer.Argument(..., help="Checkpoint directory."),
    task: str = typer.Option("prosqa", help="Task to read the thoughts on."),
    model: str = typer.Option("tiny", help="Base model spec the checkpoint was trained on."),
    limit: Optional[int] = typer.Option(100, help="Only the first Q questions."),
    sigma: str = typer.Option("0.1,0.3,1.0", help="Relative noise scales for the flip rate."),
    interventions: str = typer.Option("zero,mean,swap", help="Causal interventions on each thought, comma-separated: zero, mean (mean ablation), swap (another question's thought); empty: none."),
    out: str = typer.Option(..., "--out", help="Directory for thoughts.parquet, robustness.parquet, interventions.parquet, figures and index.html."),
    data_dir: Optional[str] = typer.Option(None, help="Folder of preset data files."),
) -> None:
    """Logit lens of every thought (graph node, path and frontier on ProsQA; proof step on
    ProntoQA), the answer flip rate under Gaussian noise on each thought, and what zeroing,
    mean-ablating or swapping each thought does to the answers."""
    from pathlib import Path

    from attractor.latent.checkpoint import cot_format_of, load_loop
    from attractor.latent.inspect import flip_rates, thought_table
    from attractor.latent.interventions import KINDS, intervention_table
    from attractor.models.load import load
    from attractor.report.latent import per_thought, write_latent_report
    from attractor.store.run_store import atomic_write_bytes
    from attractor.tasks.loaders import load_task
    from attractor.tasks.prompts import prompt_ids
    from attractor.ui import console, frame_table

    try:
        sigmas = [float(x) for x in sigma.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--sigma must be comma-separated numbers, got {sigma!r}") from None
    if not sigmas or any(x <= 0 for x in sigmas):
        raise ConfigError(f"--sigma values must be > 0, got {sigma!r}")
    kinds = tuple(dict.fromkeys(k.strip() for k in interventions.split(",") if k.strip()))
    if any(k not in KINDS for k in kinds):
        raise ConfigError(f"--interventions must name {', '.join(KINDS)}, got {interventions!r}")
    problems, _ = load_task(task, data_dir=data_dir, limit=limit)
    base, tok = load(model, dtype="float32", device="cpu")
    loop, meta = load_loop(Path(checkpoint), base, tok)
    prompts = [prompt_ids(p, tok, True) for p in problems]
    thoughts = thought_table(loop, problems, prompts, cot_format=cot_format_of(meta))
    robust = flip_rates(loop, problems, prompts, sigmas)
    causal = intervention_table(loop, problems, prompts, kinds) if kinds else None
    dest = Path(out)
    dest.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(dest / "thoughts.parquet", thoughts.to_parquet(index=False))
    atomic_write_bytes(dest / "robustness.parquet", robust.to_parquet(index=False))
    if causal is not None:
        atomic_write_bytes(dest / "interventions.parquet", causal.to_parquet(index=False))
    if "node" in thoughts or "on_proof_at_t" in thoughts:
        per_t = per_thought(thoughts)
        console.print(frame_table("thoughts (logit lens)", per_t))
    console.print(frame_table("answer flip rate under noise on one thought", robust))
    if causal is not None:
        cols = ["thought", "scope", "intervention", "accuracy", "accuracy_change", "flip_rate"]
        console.print(frame_table(f"interventions on one thought (clean accuracy "
                                  f"{causal['clean_accuracy'].iloc[0]:.3f})", causal[cols]))
    page = write_latent_report(dest, f"latent thoughts: {checkpoint} on {task}", thoughts, robust,
                               causal)
    console.print(f"written: {dest}/thoughts.parquet, robustness.parquet"
                  f"{', interventions.parquet' if causal is not None else ''}, figures; "
                  f"report {page}")


@latent_app.command("seek")
def latent_seek_cmd(
    checkpoint: str = typer.Argument(..., help="Checkpoint directory of a loop (slr, coconut, ...)."),
    task: str = typer.Option("prosqa", help="Task to answer."),
    model: str = typer.Option("tiny", help="Base model spec the checkpoint was trained on."),
    limit: Optional[int] = typer.Option(100, help="Only the first Q questions."),
    reward: str = typer.Option("vote", help="vote (label-free: agree with the samples' majority) or oracle (reads the gold answer: an upper bound only)."),
    iterations: int = typer.Option(10, help="Most policy-gradient updates per question."),
    samples: int = typer.Option(8, help="Answers sampled per update."),
    lr: float = typer.Option(0.1, help="Adam step in units of each thought's RMS per element."),
    temperature: float = typer.Option(1.0, help="Sampling temperature of the answers."),
    threshold: float = typer.Option(0.9, help="Stop a question once its samples' mean reward reaches this."),
    seed: int = typer.Option(0, help="Sampling seed."),
    out: Optional[str] = typer.Option(None, help="Directory for latentseek.parquet (one row per question)."),
    device: str = typer.Option("cpu", help="cpu or cuda[:i]."),
    data_dir: Optional[str] = typer.Option(None, help="Folder of preset data files."),
) -> None:
    """LatentSeek: per-question policy gradient on a loop's continuous thoughts at test time
    (the weights never change); prints the loop against LatentSeek."""
    from pathlib import Path

    from attractor.latent.checkpoint import load_loop
    from attractor.latent.latentseek import SeekConfig, seek, summary
    from attractor.models.load import load
    from attractor.store.run_store import atomic_write_bytes
    from attractor.tasks.loaders import load_task
    from attractor.tasks.prompts import prompt_ids
    from attractor.ui import console, frame_table, progress_bar

    cfg = SeekConfig(iterations=iterations, samples=samples, lr=lr, temperature=temperature,
                     reward=reward, threshold=threshold, seed=seed)
    problems, _ = load_task(task, data_dir=data_dir, limit=limit)
    base, tok = load(model, dtype="float32", device=device)
    loop, _ = load_loop(Path(checkpoint), base, tok, device=device)
    prompts = [prompt_ids(p, tok, True) for p in problems]
    with progress_bar() as bar:
        job = bar.add_task(f"latentseek ({reward})", total=len(prompts))
        df = seek(loop, problems, prompts, cfg, on_batch=lambda n: bar.update(job, advance=n))
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(Path(out) / "latentseek.parquet", df.to_parquet(index=False))
    s = summary(df, reward)
    console.print(frame_table(f"latentseek: {checkpoint} on {task} ({len(df)} questions)", s))
    if reward == "oracle":
        console.print("oracle reward reads the gold answer: an upper bound, not a method's accuracy")


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point: user errors print one line and exit 2; other failures exit 1."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="attractor", standalone_mode=False)
    except UserError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as err:
        # click's usage errors (unknown option, bad type, missing argument) carry show/exit_code
        if hasattr(err, "show") and hasattr(err, "exit_code"):
            err.show()
            sys.exit(2)
        raise
    if isinstance(result, int) and result:
        sys.exit(result)
