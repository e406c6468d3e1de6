"""The ``attractor`` command line: thin wrappers that parse options, call the library and print
a rich summary. Heavy imports (torch, transformers) happen inside the commands, so
``attractor --help`` starts fast."""
from __future__ import annotations

import sys
from typing import Optional

import typer

from attractor.cli_latent import latent_app
from attractor.errors import ConfigError, UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
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
    window: int = typer.Option(2048, help="DeepConf sliding-window size in tokens (group confidence)."),
    tail: int = typer.Option(2048, help="DeepConf tail length in tokens (conf_tail), as in the paper."),
    partial: bool = typer.Option(False, "--partial", help="Analyse a run whose sampling has not finished (every output then says partial)."),
) -> None:
    """Grade what is ungraded; write metrics/questions.parquet, samples.parquet, signals.parquet,
    latent.parquet (when latents were captured) and summary.json."""
    from attractor.pipeline.analyze import run_analyze
    from attractor.pipeline.summary_print import print_summary

    if window <= 0:
        raise ConfigError(f"--window must be positive, got {window}")
    if tail <= 0:
        raise ConfigError(f"--tail must be positive, got {tail}")
    print_summary(run_analyze(run, window=window, tail=tail, show_progress=True, partial=partial))


@app.command("capture")
def capture_cmd(
    run: str = typer.Argument(..., help="Run directory."),
    layers: str = typer.Option("all", help="all | every:K | a list like 0,4,8 (0 = embeddings, L = after the final norm)."),
    positions: str = typer.Option("frac:0.5,last:1", help="Comma-separated: frac:F, every:K, chunk:W (bare chunk = chunk:500), last:K, answer, decisive (the token before the first token where right and wrong answers differ)."),
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
    from attractor.ui import console, progress_bar

    with progress_bar() as bar:
        job = bar.add_task("report", total=None)
        path = build_report(run, layer=layer, position=position,
                            on_figure=lambda name: bar.update(job, advance=1,
                                                              description=f"report: {name}"))
    console.print(f"report: {path}")


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
             r.delta_vs_majority, r.tokens, r.n_questions]
            for r in t[t["k"] == kmax].itertuples()]
    console.print(table(f"voting at k={kmax} (all k in {run}/metrics/vote.parquet); majority "
                        "on the same questions as each method",
                        ["method", "accuracy", "95% CI", "majority", "delta", "tokens",
                         "questions"], rows))


@app.command("early-stop")
def early_stop_cmd(
    run: str = typer.Argument(..., help="Run directory (graded)."),
    window: int = typer.Option(2048, help="DeepConf sliding-window size in tokens."),
    layer: Optional[int] = typer.Option(None, help="Layer of the latents for the latent rule."),
    position: Optional[str] = typer.Option(None, help="Position of the latents for the latent rule."),
    max_loss: float = typer.Option(0.01, help="Accuracy loss allowed when picking each rule's best setting."),
) -> None:
    """Replay DeepConf, consensus and latent-variance early stopping on stored traces."""
    from attractor.pipeline.early_stop import reported, run_early_stop
    from attractor.ui import console, table

    if window <= 0:
        raise ConfigError(f"--window must be positive, got {window}")
    t = run_early_stop(run, window=window, layer=layer, position=position, max_loss=max_loss)
    ref = t[t["row"] == "reference"].iloc[0]
    best = reported(t)
    best = best[best["row"] == "cross-fit"]
    console.print(table(f"early stopping vs majority over all samples (accuracy {ref.accuracy:.3f}, "
                        f"{ref.tokens:.0f} tokens), cross-fitted: each half of the questions "
                        f"uses the setting that saved most within {max_loss:.1%} loss on the "
                        "other half",
                        ["rule", "settings chosen", "tokens saved", "accuracy", "accuracy loss"],
                        [[r.rule, r.setting, r.tokens_saved, r.accuracy, r.accuracy_loss]
                         for r in best.itertuples()]))
    console.print(f"all {int((t['row'] == 'grid').sum())} grid settings on all questions: "
                  f"{run}/metrics/early_stop.parquet")


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
        check = res.get("label_check")
        if check:
            console.print(
                f"grading agrees with the file's labels on all {check['labelled']} labelled "
                "rollouts" if not check["disagree"] else
                f"grading disagrees with the file's labels on {check['disagree']} of "
                f"{check['labelled']} rollouts (first: {', '.join(check['first'])})")


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

app.add_typer(latent_app, name="latent")


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
