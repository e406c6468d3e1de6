"""``attractor`` commands over token-space runs (sample, analyze, capture, report, vote,
early-stop, sweep, import, demo) and ``train-tiny``. Options of commands with a config dataclass
are generated from its fields (:mod:`attractor.cli.options`); the others share the option
definitions there."""
from __future__ import annotations

from typing import Optional

import typer

from attractor.cli.app import app
from attractor.cli.options import (DATA_DIR, DEVICE, DTYPE, GRADER, LAYER, POSITION, RUN,
                                   WINDOW, config_command)
from attractor.config import RunConfig
from attractor.errors import ConfigError
from attractor.models.train_tiny_config import TinyTrainConfig


@config_command(app, "train-tiny", TinyTrainConfig)
def train_tiny_cmd(
    cfg: TinyTrainConfig,
    export_to: Optional[str] = typer.Option(None, help="Afterwards, evaluate on ProsQA validation and install the model here (the package's models/tiny to ship it)."),
    data_dir: Optional[str] = typer.Option(None, help="Folder of prosqa_valid.json (for --export-to)."),
) -> None:
    """Train the embedded tiny reasoning model (seeded, resumable: run it again to resume)."""
    from pathlib import Path

    from attractor.models.train_tiny import train_tiny
    from attractor.ui import console

    result = train_tiny(cfg, log=console.print)
    console.print(f"trained: {result}")
    if export_to:
        from attractor.models.export_tiny import export_tiny

        record = export_tiny(Path(cfg.out), Path(export_to), data_dir)
        pv = record["prosqa_valid"]
        if pv:
            console.print(f"ProsQA validation, greedy CoT: {pv['overall']:.3f} overall; by hops "
                          + ", ".join(f"{h}: {v['accuracy']:.3f} (n={v['n']})"
                                      for h, v in pv["by_hops"].items()))
        console.print(f"installed in {export_to}")


@config_command(app, "sample", RunConfig, required=("task",), short={"samples": "-n"})
def sample_cmd(
    cfg: RunConfig,
    out: str = typer.Option(..., "--out", help="Run directory (created, or resumed if it exists)."),
    data_dir: Optional[str] = DATA_DIR,
    device: str = DEVICE,
    workers: int = typer.Option(2, help="With --engine ray: workers in the pool."),
    max_batch_rows: int = typer.Option(256, help="Rows (questions x samples) per forward batch."),
    trust_remote_code: bool = typer.Option(False, help="Allow model code from the model repo."),
) -> None:
    """Sample N chain-of-thought rollouts per question, grade them, store them in RUN."""
    from attractor.pipeline.sample import run_sample
    from attractor.ui import console, table

    res = run_sample(cfg, out, data_dir=data_dir, device=device, max_batch_rows=max_batch_rows,
                     workers=workers,
                     trust_remote_code=trust_remote_code, log=console.print)
    if res.status == "done":
        console.print(table("sample", ["questions", "new rollouts", "tokens", "seconds", "tokens/s"],
                            [[res.questions, res.new_rollouts, res.tokens, res.elapsed_s,
                              res.tokens_per_s]]))
        console.print(f"next: attractor analyze {out}")


@app.command("analyze")
def analyze_cmd(
    run: str = RUN,
    window: int = WINDOW,
    tail: int = typer.Option(2048, help="DeepConf tail length in tokens (conf_tail), as in the paper."),
    partial: bool = typer.Option(False, "--partial", help="Analyse a run whose sampling has not finished (every output then says partial)."),
    reading: Optional[str] = typer.Option(None, help="Answer reading the metrics use: strict (the requested format) or flexible (the last number, or the last option named); default: the run's --reading."),
) -> None:
    """Grade what is ungraded; write metrics/questions.parquet, samples.parquet, signals.parquet,
    latent.parquet (when latents were captured) and summary.json."""
    from attractor.pipeline.analyze import run_analyze
    from attractor.pipeline.summary_print import print_summary

    print_summary(run_analyze(run, window=window, tail=tail, show_progress=True, partial=partial,
                              reading=reading))


@app.command("capture")
def capture_cmd(
    run: str = RUN,
    layers: str = typer.Option("all", help="all | every:K | a list like 0,4,8 (0 = embeddings, L = after the final norm)."),
    positions: str = typer.Option("frac:0.5,last:1", help="Comma-separated: frac:F, every:K, chunk:W (bare chunk = chunk:500), last:K, answer, decisive (the token before the first token where right and wrong answers differ)."),
    model: Optional[str] = typer.Option(None, help="Model spec (default: the run's model; needed for imported runs)."),
    max_tokens_per_batch: int = typer.Option(16384, help="Memory budget: rows x padded length per forward."),
    device: str = DEVICE,
    dtype: str = DTYPE,
) -> None:
    """Capture hidden states at chosen layers and positions of every rollout (resumable)."""
    from attractor.pipeline.capture import run_capture
    from attractor.ui import console

    res = run_capture(run, layers=layers, positions=positions, model=model,
                      max_tokens_per_batch=max_tokens_per_batch, device=device, dtype=dtype)
    console.print(f"captured {res.vectors} vectors of {res.rollouts} rollouts at layers "
                  f"{res.layers} and positions {', '.join(res.positions)} into {run}/latents")


@app.command("report")
def report_cmd(
    run: str = typer.Argument(..., help="Run directory (after attractor analyze)."),
    layer: Optional[int] = LAYER,
    position: Optional[str] = POSITION,
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


@app.command("verify")
def verify_cmd(run: str = RUN) -> None:
    """Check every rollout shard of RUN against the size and sha256 recorded when it was
    written; list the damaged ones (exit 2) without changing anything."""
    from attractor.pipeline.verify import verify_lines, verify_run
    from attractor.ui import console

    checked, damage = verify_run(run)
    for line in verify_lines(run, checked, damage):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if damage:
        raise typer.Exit(2)


@app.command("vote")
def vote_cmd(
    run: str = typer.Argument(..., help="Run directory (after attractor analyze)."),
    draws: int = typer.Option(300, help="Random k-subsets per question and k."),
    eta: str = typer.Option("10,90", help="DeepConf filtering: keep the top eta% traces (comma-separated)."),
    layer: Optional[int] = LAYER,
    position: Optional[str] = POSITION,
) -> None:
    """Majority vs confidence-, trajectory-, consistency- and tightness-weighted votes at each k."""
    from attractor.pipeline.vote import run_vote
    from attractor.ui import console, table

    try:
        etas = tuple(float(x) for x in eta.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"--eta: expected numbers like 10,90, got '{eta}'") from None
    t = run_vote(run, draws=draws, etas=etas, layer=layer, position=position,
                 show_progress=True)
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
    run: str = RUN,
    window: int = WINDOW,
    layer: Optional[int] = LAYER,
    position: Optional[str] = POSITION,
    max_loss: float = typer.Option(0.01, help="Accuracy loss allowed when picking each rule's best setting."),
    probe: Optional[str] = typer.Option(None, help="A saved probe (attractor probe) to replay as a rule too (loads the run's model)."),
    device: str = DEVICE,
) -> None:
    """Replay DeepConf, consensus, latent-variance and probe early stopping on stored traces."""
    from attractor.pipeline.early_stop import reported, run_early_stop
    from attractor.ui import console, table

    t = run_early_stop(run, window=window, layer=layer, position=position, max_loss=max_loss,
                       probe=probe, device=device)
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


@config_command(app, "sweep", RunConfig, required=("task",), short={"samples": "-n"},
                skip=("temperature", "max_new_tokens", "engine", "backend", "early_stop",
                      "allocate", "budget", "first_round", "prompt", "alpha"))
def sweep_cmd(
    cfg: RunConfig,
    out: str = typer.Option(..., "--out", help="Sweep directory (one run per cell inside)."),
    temperature: str = typer.Option("0,0.3,0.5,0.7,1.0,1.2", help="Temperatures (comma-separated)."),
    max_new_tokens: str = typer.Option("64,128,256", help="Token budgets (comma-separated)."),
    prompt: Optional[list[str]] = typer.Option(None, "--prompt", help="Prompt templates as a sweep axis: NAME=TEMPLATE[,NAME=TEMPLATE...] (repeatable; {question} required, {instruction} optional; a template may be a file's path)."),
    alpha: Optional[str] = typer.Option(None, "--alpha", help="Steering strengths as a sweep axis (comma-separated, with --steer), e.g. 0,0.05,0.1,0.15."),
    capture_positions: Optional[str] = typer.Option(None, help="Also capture latents at every layer at these positions (e.g. last:1), for latent tightness per cell."),
    data_dir: Optional[str] = DATA_DIR,
    device: str = DEVICE,
    max_batch_rows: int = typer.Option(256, help="Rows per forward batch."),
) -> None:
    """Sample and analyse one run per cell (temperature x budget [x prompt] [x alpha]);
    resumable, finished cells skipped."""
    from attractor.pipeline.sweep import parse_list, parse_prompts, run_sweep
    from attractor.ui import console

    temps = parse_list(temperature, float, "--temperature")
    budgets = parse_list(max_new_tokens, int, "--max-new-tokens")
    alphas = parse_list(alpha, float, "--alpha") if alpha is not None else None
    prompts = parse_prompts(prompt) if prompt else None
    cells = run_sweep(cfg, temps, budgets, out, prompts=prompts, alphas=alphas,
                      capture_positions=capture_positions, data_dir=data_dir, device=device,
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
    grader: str = GRADER,
) -> None:
    """Import rollouts made elsewhere into a run directory (then: attractor analyze RUN)."""
    from attractor.pipeline.import_rollouts import run_import
    from attractor.ui import console

    res = run_import(file, out, response_field=response_field, responses_field=responses_field,
                     id_field=id_field or None, question_field=question_field,
                     answer_field=answer_field, correct_field=correct_field,
                     finish_reason_field=finish_reason_field, kind=kind, grader=grader)
    if res.status == "complete":
        console.print(f"{out}: already imported ({res.questions} questions, {res.rollouts} "
                      "rollouts); nothing to do")
    else:
        how = "detected from the file; --kind to choose" if res.kind_detected else "--kind"
        console.print(f"imported {res.rollouts} rollouts of {res.questions} questions into "
                      f"{out}, graded as {res.kind} ({how}); next: attractor analyze {out}")
        check = res.label_check
        if check:
            console.print(
                f"grading agrees with the file's labels on all {check.labelled} labelled "
                "rollouts" if not check.disagree else
                f"grading disagrees with the file's labels on {check.disagree} of "
                f"{check.labelled} rollouts (first: {', '.join(check.first)})")


@app.command("demo")
def demo_cmd(
    out: str = typer.Option("runs/demo", "--out", help="Run directory."),
    model: str = typer.Option("tiny", help="tiny (ProsQA), or a real model: smollm2, a "
                                           "directory or a .gguf file (one-step arithmetic)."),
    task: Optional[str] = typer.Option(None, help="Task spec instead of the model's default."),
    questions: Optional[int] = typer.Option(None, help="Questions (default 50 for tiny, 24 "
                                                       "for a real model)."),
    samples: Optional[int] = typer.Option(None, help="Samples per question (default 16 for "
                                                     "tiny, 8 for a real model)."),
    temperature: Optional[float] = typer.Option(None, help="Sampling temperature (default 1.0 "
                                                           "for tiny, 0.7 for a real model)."),
    data_dir: Optional[str] = DATA_DIR,
) -> None:
    """The main job: sample, analyse, print the stability gap (the embedded tiny model on
    ProsQA by default; --model smollm2 for a real pretrained model)."""
    from attractor.pipeline.demo import run_demo

    run_demo(out, model=model, task=task, questions=questions, samples=samples,
             temperature=temperature, data_dir=data_dir)
